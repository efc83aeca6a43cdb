#!/usr/bin/python3
"""The official Azure SDK for Python (Debian's python3-azure) against the
fake, with only the authority and base URL changed, instance discovery off
and TLS through the fake's CA: it lists subscriptions and reads security
contacts in 2017-08-01-preview; in 2020-01-01-preview its LIST fails on the
bare array exactly as against the live service, and GET works; and
azure-mgmt-authorization lists the role assignments at a subscription
($filter=atScope(), 2022-04-01) across pages, inherited ones included, and
gets 403 where a scenario denies the read.

usage: test_sdk.py PATH/TO/contactguard-fakeazure
"""
import inspect
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakeazure_harness import SKIP, Checks, Fake  # noqa: E402

try:
    from azure.core.exceptions import HttpResponseError
    from azure.core.rest import HttpRequest
    from azure.identity import ClientSecretCredential
    from azure.identity._internal.msal_credentials import MsalCredential
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.resource import SubscriptionClient
    from azure.mgmt.security import SecurityCenter
    from azure.mgmt.security import _serialization
except ImportError as e:  # python3-azure genuinely missing
    print(f"SKIP: {e}")
    sys.exit(SKIP)

ARM_SCOPE = "https://management.azure.com/.default"
OWNER_ROLE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"


class NotificationsByRole(_serialization.Model):
    """2020-01-01-preview shape, as the service's specification has it
    (Debian's SDK carries no 2020 securityContacts models)."""
    _attribute_map = {"state": {"key": "state", "type": "str"},
                      "roles": {"key": "roles", "type": "[str]"}}

    def __init__(self, **kw):
        super().__init__(**kw)
        self.state = kw.get("state")
        self.roles = kw.get("roles")


class AlertNotifications(_serialization.Model):
    _attribute_map = {"state": {"key": "state", "type": "str"},
                      "minimal_severity": {"key": "minimalSeverity", "type": "str"}}

    def __init__(self, **kw):
        super().__init__(**kw)
        self.state = kw.get("state")
        self.minimal_severity = kw.get("minimal_severity")


class SecurityContact2020(_serialization.Model):
    _attribute_map = {
        "id": {"key": "id", "type": "str"},
        "name": {"key": "name", "type": "str"},
        "emails": {"key": "properties.emails", "type": "str"},
        "phone": {"key": "properties.phone", "type": "str"},
        "alert_notifications": {"key": "properties.alertNotifications",
                                "type": "AlertNotifications"},
        "notifications_by_role": {"key": "properties.notificationsByRole",
                                  "type": "NotificationsByRole"},
    }

    def __init__(self, **kw):
        super().__init__(**kw)
        for k in self._attribute_map:
            setattr(self, k, kw.get(k))


def credential(fake, i):
    tenant, client, secret = fake.tenant(i)
    params = inspect.signature(MsalCredential.__init__).parameters
    # The keyword changed name across azure-identity releases.
    off = ({"disable_instance_discovery": True}
           if "disable_instance_discovery" in params
           else {"instance_discovery": False})
    return ClientSecretCredential(tenant, client, secret, authority=fake.url, **off)


def main():
    c = Checks()
    with Fake(sys.argv[1], "--tenants", "2", "--subscriptions-per-tenant", "40",
              "--page-size", "9") as fake:
        os.environ["REQUESTS_CA_BUNDLE"] = fake.ca
        os.environ["SSL_CERT_FILE"] = fake.ca
        cred = credential(fake, 0)
        tenant0 = fake.tenant(0)[0]

        subs = SubscriptionClient(cred, base_url=fake.url,
                                  credential_scopes=[ARM_SCOPE])
        listed = {s.subscription_id: s.state for s in subs.subscriptions.list()}
        want = {r["subscription_id"]: r["state"] for r in fake.truth
                if r["tenant_id"] == tenant0}
        c.eq(len(listed), 40, "SubscriptionClient lists every page")
        c.eq(listed, want, "... with each subscription's state")
        c.eq([t.tenant_id for t in subs.tenants.list()], [tenant0],
             "SubscriptionClient lists the tenant")

        def center(scenario):
            return SecurityCenter(cred, fake.sub_of(scenario), base_url=fake.url,
                                  credential_scopes=[ARM_SCOPE],
                                  api_version="2017-08-01-preview")

        ok = list(center("compliant").security_contacts.list())
        c.eq([(x.name, x.email, x.alerts_to_admins, x.alert_notifications) for x in ok],
             [("default1", "secops@contoso.com", "On", "On")],
             "2017-08-01-preview LIST through the SDK")
        own = center("owner-missing").security_contacts.get("default1")
        c.eq(own.alerts_to_admins, "Off", "2017-08-01-preview GET through the SDK")
        leg = list(center("legacy-only").security_contacts.list())
        c.eq([x.name for x in leg], ["default2"], "a legacy-only contact in 2017")

        ops = center("compliant").security_contacts
        try:
            list(ops.list(api_version="2020-01-01-preview"))
            c.true(False, "2020-01-01-preview LIST fails on the bare array")
        except Exception as e:  # the SDK's DeserializationError
            c.true(type(e).__name__ == "DeserializationError"
                   and "'list' object has no attribute 'get'" in str(e),
                   f"2020-01-01-preview LIST fails on the bare array ({type(e).__name__})")
        got = ops.get("default", api_version="2020-01-01-preview")
        c.eq(got.name, "default", "2020-01-01-preview GET through the SDK operation")

        client = center("compliant")._client
        sub = fake.sub_of("compliant")
        r = client.send_request(HttpRequest(
            "GET", f"{fake.url}/subscriptions/{sub}/providers/Microsoft.Security/"
            "securityContacts/default?api-version=2020-01-01-preview"))
        r.raise_for_status()
        deser = _serialization.Deserializer({
            "SecurityContact2020": SecurityContact2020,
            "AlertNotifications": AlertNotifications,
            "NotificationsByRole": NotificationsByRole})
        v2 = deser("SecurityContact2020", r.json())
        c.eq((v2.emails, v2.alert_notifications.state,
              v2.alert_notifications.minimal_severity,
              v2.notifications_by_role.roles),
             ("secops@contoso.com", "On", "Medium", ["Owner"]),
             "2020-01-01-preview GET deserialised into the 2020 model")

        other = next(r["subscription_id"] for r in fake.truth
                     if r["tenant_id"] != tenant0)
        try:
            SecurityCenter(cred, other, base_url=fake.url, credential_scopes=[ARM_SCOPE],
                           api_version="2017-08-01-preview").security_contacts.get("default1")
            c.true(False, "another tenant's subscription is refused")
        except HttpResponseError as e:
            c.eq((e.status_code, e.error.code if e.error else None),
                 (403, "AuthorizationFailed"), "another tenant's subscription is refused")

        def owners(scenario):
            sub = fake.sub_of(scenario)
            auth = AuthorizationManagementClient(
                cred, sub, base_url=fake.url, credential_scopes=[ARM_SCOPE],
                api_version="2022-04-01")
            got = list(auth.role_assignments.list_for_scope(
                f"/subscriptions/{sub}", filter="atScope()"))
            return sorted((a.principal_type, a.scope.split("/")[1] if a.scope != "/" else "/")
                          for a in got if a.role_definition_id.rsplit("/", 1)[-1] == OWNER_ROLE), got

        own, _ = owners("compliant")
        c.eq(own, [("User", "subscriptions")],
             "azure-mgmt-authorization lists a user Owner at the subscription")
        own, _ = owners("owner-service-principal")
        c.eq(own, [("ServicePrincipal", "subscriptions")], "... only a service principal")
        own, _ = owners("owner-group")
        c.eq(own, [("Group", "subscriptions")], "... only a group")
        own, every = owners("owner-none")
        c.eq((own, len(every)), ([], 2), "... no Owner among two assignments")
        own, _ = owners("owner-inherited")
        c.eq(own, [("ServicePrincipal", "subscriptions"), ("User", "providers")],
             "... a user Owner inherited from a management group")
        own, every = owners("owner-paged")
        c.eq((own, len(every)), ([("ServicePrincipal", "subscriptions"), ("User", "/")], 4),
             "... four assignments over two pages, the user Owner at the root on the second")
        try:
            owners("owner-unreadable")
            c.true(False, "a denied role assignments read is refused")
        except HttpResponseError as e:
            c.eq((e.status_code, e.error.code if e.error else None),
                 (403, "AuthorizationFailed"), "a denied role assignments read is refused")

        st, stats = fake.request("GET", "/_fake/stats")
        c.eq(stats["requests"]["roles.list"]["200"], 7,
             "the two-page LIST took two requests (6 reads, 7 pages)")
        c.eq(stats["tokens"]["client_secret"], 1,
             "the SDK asked for one token and reused it")
        c.true(stats["requests"]["discovery"]["200"] >= 1,
               "the SDK fetched the discovery document")
    c.done()


if __name__ == "__main__":
    main()
