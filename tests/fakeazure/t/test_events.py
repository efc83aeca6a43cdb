#!/usr/bin/python3
"""Event Grid announcements: with --events-webhook the fake POSTs a
subscription creation and a portal edit of a contact to a receiver, in the
Event Grid schema, after Event Grid's validation handshake, and keeps them for
GET /_fake/events.

usage: test_events.py PATH/TO/contactguard-fakeazure
"""
import http.server
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakeazure_harness import Checks, Fake  # noqa: E402

received = []
validations = []
arrived = threading.Condition()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("aeg-event-type") == "SubscriptionValidation":
            ev = json.loads(body)[0]
            validations.append(ev)
            reply = json.dumps({"validationResponse": ev["data"]["validationCode"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            return
        with arrived:
            received.append((self.headers.get("aeg-event-type"), json.loads(body)))
            arrived.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def wait_for(n):
    with arrived:
        return arrived.wait_for(lambda: len(received) >= n, timeout=15)


def main():
    c = Checks()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{srv.server_address[1]}/events"
    with Fake(sys.argv[1], "--tenants", "1", "--subscriptions-per-tenant", "5",
              "--events-webhook", hook) as fake:
        tenant = fake.tenant(0)[0]
        st, created = fake.request("POST", f"/_fake/tenants/{tenant}/subscriptions",
                                   body={"scenario": "owner-missing", "announce": True})
        c.eq(st, 201, "create a subscription")
        new = created["subscription_id"]
        c.true(wait_for(1), "the creation is posted to the webhook")
        kind, batch = received[0]
        c.eq(kind, "Notification", "aeg-event-type header")
        c.eq(len(batch), 1, "an Event Grid batch of one event")
        e = batch[0]
        c.eq((e["eventType"], e["data"]["operationName"], e["data"]["subscriptionId"],
              e["data"]["tenantId"]),
             ("Microsoft.Resources.ResourceWriteSuccess",
              "Microsoft.Subscription/aliases/write", new, tenant),
             "the creation event")
        c.true(all(k in e for k in ("id", "subject", "eventTime", "dataVersion", "topic")),
               "Event Grid schema fields")
        st, _ = fake.request("PUT", f"/_fake/subscriptions/{new}/contact",
                             body={"isEnabled": True, "emails": "soc@contoso.com"})
        c.eq(st, 200, "portal edit")
        c.true(wait_for(2), "the portal edit is posted")
        e2 = received[1][1][0]
        c.eq((e2["data"]["operationName"], e2["subject"]),
             ("Microsoft.Security/securityContacts/write",
              f"/subscriptions/{new}/providers/Microsoft.Security/securityContacts/default"),
             "the contact write event")
        st, kept = fake.request("GET", "/_fake/events")
        c.eq([x["id"] for x in kept["events"]], [e["id"], e2["id"]],
             "the control API keeps the same events")
        # The poster counts a delivery once the receiver's answer is back,
        # after the receiver has recorded it: poll the counter.
        deadline = time.monotonic() + 15
        while kept["posted"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            st, kept = fake.request("GET", "/_fake/events")
        c.eq(kept["posted"], 2, "both were delivered")
        c.eq([v["eventType"] for v in validations],
             ["Microsoft.EventGrid.SubscriptionValidationEvent"],
             "one validation handshake before the first delivery")
        c.eq(kept["validated"], True, "the receiver's echo is recorded")
        st, _ = fake.request("POST", f"/_fake/tenants/{tenant}/subscriptions",
                             body={"scenario": "compliant"})
        st, kept = fake.request("GET", "/_fake/events")
        c.eq(len(kept["events"]), 2, "a creation without announce emits nothing")
    srv.shutdown()
    c.done()


if __name__ == "__main__":
    main()
