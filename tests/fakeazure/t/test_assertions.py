#!/usr/bin/python3
"""Certificate and federated client assertions against the fake's token
endpoint: PS256 (x5t#S256) and RS256 (x5t) signatures checked against the
registered app certificate, aud/iss/sub/exp/nbf, jti replay, federated
issuer and subject; then azure-identity's CertificateCredential end to end.

usage: test_assertions.py PATH/TO/contactguard-fakeazure
"""
import base64
import hashlib
import inspect
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakeazure_harness import SKIP, Checks, Fake  # noqa: E402

try:
    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(SKIP)

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE = "https://management.azure.com/.default"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def instance_discovery_off():
    """The keyword changed name across azure-identity releases."""
    from azure.identity._internal.msal_credentials import MsalCredential
    params = inspect.signature(MsalCredential.__init__).parameters
    return ({"disable_instance_discovery": True}
            if "disable_instance_discovery" in params
            else {"instance_discovery": False})


def main():
    c = Checks()
    with Fake(sys.argv[1], "--tenants", "2", "--subscriptions-per-tenant", "3") as fake:
        tls = os.path.join(fake.dir, "tls")
        key = serialization.load_pem_private_key(
            open(os.path.join(tls, "app.key"), "rb").read(), None)
        cert = x509.load_pem_x509_certificate(open(os.path.join(tls, "app.pem"), "rb").read())
        der = cert.public_bytes(serialization.Encoding.DER)
        ikey = serialization.load_pem_private_key(
            open(os.path.join(tls, "issuer.key"), "rb").read(), None)
        tenant, client, _ = fake.tenant(0)
        token_path = f"/{tenant}/oauth2/v2.0/token"
        aud = fake.url + token_path

        def assertion(alg="PS256", signer=None, **over):
            now = int(time.time())
            claims = {"aud": aud, "iss": client, "sub": client, "jti": str(uuid.uuid4()),
                      "nbf": now, "iat": now, "exp": now + 600}
            claims.update(over)
            headers = ({"x5t#S256": b64(hashlib.sha256(der).digest())} if alg == "PS256"
                       else {"x5t": b64(hashlib.sha1(der).digest())})
            return jwt.encode(claims, signer or key, algorithm=alg, headers=headers)

        def ask(a):
            return fake.request("POST", token_path, form={
                "grant_type": "client_credentials", "client_id": client, "scope": SCOPE,
                "client_assertion_type": JWT_BEARER, "client_assertion": a})

        st, body = ask(assertion("PS256"))
        c.eq((st, body.get("token_type")), (200, "Bearer"), "PS256 with x5t#S256")
        arm_token = body.get("access_token")
        st, body = ask(assertion("RS256"))
        c.eq(st, 200, "RS256 with x5t")
        a = assertion("PS256")
        c.eq(ask(a)[0], 200, "a fresh jti")
        st, body = ask(a)
        c.eq((st, body["error_codes"][0]), (401, 700025), "a replayed jti is refused")
        st, body = ask(assertion(exp=int(time.time()) - 3600))
        c.eq((st, body["error_codes"][0]), (401, 700024), "an expired assertion")
        st, body = ask(assertion(nbf=int(time.time()) + 3600))
        c.eq((st, body["error_codes"][0]), (401, 700024), "an assertion not yet valid")
        st, body = ask(assertion(aud="https://login.microsoftonline.com/other/oauth2/v2.0/token"))
        c.eq(st, 401, "a wrong audience")
        st, body = ask(assertion(sub="someone-else"))
        c.eq(st, 401, "sub must be the client id")
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        st, body = ask(assertion(signer=other))
        c.eq((st, body["error_codes"][0]), (401, 700027), "a signature by another key")
        st, body = ask(assertion("PS256").rsplit(".", 1)[0] + ".AAAA")
        c.eq(st, 401, "a broken signature")
        st, body = ask("not.a.jwt")
        c.eq(st, 400, "a malformed assertion")

        # Workload identity federation: issuer and subject as registered.
        def federated(**over):
            now = int(time.time())
            claims = {"iss": "https://oidc.fake.contactguard.test",
                      "sub": "system:serviceaccount:contactguard:worker",
                      "aud": "api://AzureADTokenExchange", "iat": now, "nbf": now,
                      "exp": now + 3600}
            claims.update(over)
            return jwt.encode(claims, ikey, algorithm="RS256", headers={"kid": "k1"})

        c.eq(ask(federated())[0], 200, "a federated assertion")
        st, body = ask(federated(sub="system:serviceaccount:other:sa"))
        c.eq((st, body["error_codes"][0]), (400, 700213), "an unregistered subject")
        st, body = ask(federated(iss="https://evil.example"))
        c.eq((st, body["error_codes"][0]), (400, 700211), "an unregistered issuer")
        st, body = ask(federated(aud="api://other"))
        c.eq(st, 400, "a wrong federated audience")
        st, body = ask(jwt.encode({"iss": "https://oidc.fake.contactguard.test",
                                   "sub": "system:serviceaccount:contactguard:worker",
                                   "aud": "api://AzureADTokenExchange",
                                   "exp": int(time.time()) + 600}, other, algorithm="RS256"))
        c.eq(st, 401, "a federated token signed by another key")

        sub = next(r["subscription_id"] for r in fake.truth if r["tenant_id"] == tenant)
        st, body = fake.request(
            "GET", f"/subscriptions/{sub}?api-version=2022-12-01",
            headers={"Authorization": f"Bearer {arm_token}"})
        c.eq((st, body.get("subscriptionId")), (200, sub),
             "a certificate-issued token opens ARM")

        st, stats = fake.request("GET", "/_fake/stats")
        c.eq((stats["tokens"]["certificate"], stats["tokens"]["federated"]), (3, 1),
             "tokens counted by method")

        try:
            from azure.identity import CertificateCredential
        except ImportError:
            print("ok - # skip azure-identity missing")
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = fake.ca
            pem = os.path.join(fake.dir, "app-with-key.pem")
            with open(pem, "wb") as f:
                f.write(open(os.path.join(tls, "app.key"), "rb").read())
                f.write(open(os.path.join(tls, "app.pem"), "rb").read())
            cred = CertificateCredential(tenant, client, pem, authority=fake.url,
                                         **instance_discovery_off())
            tok = cred.get_token(SCOPE)
            st, _ = fake.request("GET", f"/subscriptions/{sub}?api-version=2022-12-01",
                                 headers={"Authorization": f"Bearer {tok.token}"})
            c.eq(st, 200, "azure-identity CertificateCredential end to end")

    # --credentials-auth federated: the fake writes the projected token a
    # worker configuration names, and that token signs in.
    with Fake(sys.argv[1], "--tenants", "1", "--subscriptions-per-tenant", "1",
              "--credentials-auth", "federated") as fake:
        t = fake.creds["tenants"][0]
        c.eq(t["auth"], "federated", "credentials file in federated form")
        assertion = open(t["federated_token_file"]).read().strip()
        token_path = f"/{t['id']}/oauth2/v2.0/token"
        st, body = fake.request("POST", token_path, form={
            "grant_type": "client_credentials", "client_id": t["client_id"],
            "scope": SCOPE, "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion})
        c.eq(st, 200, "the written federated token signs in")
        try:
            from azure.identity import ClientAssertionCredential
        except ImportError:
            print("ok - # skip ClientAssertionCredential missing")
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = fake.ca
            # This credential talks to the token endpoint without MSAL (no
            # instance discovery); Debian's release passes its keywords on to
            # object.__init__, so the authority comes from the environment.
            os.environ["AZURE_AUTHORITY_HOST"] = fake.url
            cred = ClientAssertionCredential(t["id"], t["client_id"], lambda: assertion)
            c.true(cred.get_token(SCOPE).token.startswith("fake."),
                   "azure-identity ClientAssertionCredential with the token file")
    with Fake(sys.argv[1], "--tenants", "1", "--subscriptions-per-tenant", "1",
              "--credentials-auth", "certificate") as fake:
        t = fake.creds["tenants"][0]
        c.eq((t["auth"], os.path.basename(t["certificate_file"]),
              os.path.basename(t["private_key_file"])),
             ("certificate", "app.pem", "app.key"), "credentials file in certificate form")
    # --multi-tenant-app: one client id and secret consented in every
    # tenant; tokens stay bound to the tenant they were asked for.
    with Fake(sys.argv[1], "--tenants", "2", "--subscriptions-per-tenant", "2",
              "--multi-tenant-app") as fake:
        az = fake.creds["azure"]
        c.eq(sorted(fake.creds["tenants"][0]), ["id", "name"],
             "multi-tenant credentials: tenants carry only id and name")
        secret = open(az["client_secret_file"]).read().strip()
        toks = []
        for t in fake.creds["tenants"]:
            st, body = fake.request("POST", f"/{t['id']}/oauth2/v2.0/token", form={
                "grant_type": "client_credentials", "client_id": az["client_id"],
                "client_secret": secret, "scope": SCOPE})
            c.eq(st, 200, f"the one app signs into {t['name']}")
            toks.append(body.get("access_token"))
        other = next(r["subscription_id"] for r in fake.truth
                     if r["tenant_id"] == fake.creds["tenants"][1]["id"])
        st, body = fake.request("GET", f"/subscriptions/{other}?api-version=2022-12-01",
                                headers={"Authorization": f"Bearer {toks[0]}"})
        c.eq(st, 403, "a token of tenant 0 cannot read tenant 1")
        st, body = fake.request("GET", f"/subscriptions/{other}?api-version=2022-12-01",
                                headers={"Authorization": f"Bearer {toks[1]}"})
        c.eq(st, 200, "the token of tenant 1 can")
    c.done()


if __name__ == "__main__":
    main()
