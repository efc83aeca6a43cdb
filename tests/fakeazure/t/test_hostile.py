#!/usr/bin/python3
"""Hostile requests never crash the fake: malformed heads, lying lengths,
too many headers, NUL bytes, random bytes, deep JSON, invalid UTF-8 and
forged assertions, through TLS, plus random bytes in place of a handshake.
After each batch the fake must still answer a normal request.

usage: test_hostile.py PATH/TO/contactguard-fakeazure
"""
import json
import os
import random
import socket
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakeazure_harness import Checks, Fake  # noqa: E402


def raw(host, port, data, tls_ctx=None, read=True):
    s = socket.create_connection((host, port), timeout=2)
    try:
        if tls_ctx:
            s = tls_ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(data)
        if not read:
            return b""
        s.shutdown(socket.SHUT_WR) if not tls_ctx else None
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            out += chunk
        return out
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError, socket.timeout):
        return b""
    finally:
        s.close()


def main():
    c = Checks()
    rnd = random.Random(1234)
    with Fake(sys.argv[1], "--tenants", "1", "--subscriptions-per-tenant", "5") as fake:
        host, port = "127.0.0.1", int(fake.url.rsplit(":", 1)[1])
        tenant, client, secret = fake.tenant(0)
        st, tok = fake.request("POST", f"/{tenant}/oauth2/v2.0/token", form={
            "grant_type": "client_credentials", "client_id": client,
            "client_secret": secret, "scope": "https://management.azure.com/.default"})
        auth = {"Authorization": "Bearer " + tok["access_token"]}
        sub = fake.truth[0]["subscription_id"]
        sc = f"/subscriptions/{sub}/providers/Microsoft.Security/securityContacts"

        def alive(what):
            st, body = fake.request("GET", sc + "?api-version=2023-12-01-preview",
                                    headers=auth)
            c.eq(st, 200, f"still serving after {what}")

        heads = [
            b"\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColonHere\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"GET /" + b"%" * 5000 + b" HTTP/1.1\r\n\r\n",
            b"GET /%00%ff%zz HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
            b"GET /a\x00b HTTP/1.1\r\nHost: \x00\r\n\r\n",
            b"GET / HTTP/1.1\r\n" + b"A" * 40000,
            b"GET /_fake/stats HTTP/1.1\r\n\r\n" * 300,
        ]
        plain_ctx = fake.ctx
        for h in heads:
            raw(host, port, h, plain_ctx)
        alive("malformed heads over TLS")
        for _ in range(200):
            n = rnd.randint(1, 3000)
            raw(host, port, bytes(rnd.getrandbits(8) for _ in range(n)), None, read=False)
        alive("random bytes instead of a TLS handshake")
        for _ in range(100):
            junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 4000)))
            raw(host, port, b"PUT " + sc.encode() + b"/default?api-version=2023-12-01-preview HTTP/1.1\r\n"
                + b"Authorization: " + auth["Authorization"].encode() + b"\r\n"
                + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(junk) + junk, plain_ctx)
        alive("random PUT bodies")

        bodies = [
            "[" * 100000 + "]" * 100000,
            '{"properties":' * 5000 + "1" + "}" * 5000,
            '{"properties":{"emails":"\udcff"}}',
            '{"properties":{"isEnabled":true,"notificationsSources":"x"}}',
            '{"properties":{"notificationsByRole":{"roles":{"a":1}}}}',
            '{"properties":null}',
            "null",
            '{"properties":{"emails":"' + "a" * 900000 + '"}}',
        ]
        for b in bodies:
            data = b.encode("utf-8", "surrogateescape")
            req = (b"PUT " + sc.encode() + b"/default?api-version=2023-12-01-preview HTTP/1.1\r\n"
                   + b"Authorization: " + auth["Authorization"].encode() + b"\r\n"
                   + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(data) + data)
            raw(host, port, req, plain_ctx)
        alive("hostile JSON bodies")

        forged = ["", ".", "..", "a.b.c.d", "e30.e30.", "e30.e30.AAAA",
                  "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.",
                  "eyJhbGciOiJQUzI1NiJ9." + "A" * 20000 + ".AAAA",
                  "!!!.###.$$$"]
        for a in forged:
            st, body = fake.request("POST", f"/{tenant}/oauth2/v2.0/token", form={
                "grant_type": "client_credentials", "client_id": client,
                "scope": "https://management.azure.com/.default",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": a})
            c.true(st in (400, 401), f"forged assertion {a[:20]!r} refused ({st})")
        alive("forged assertions")
        for path in ["/_fake/subscriptions/" + "x" * 5000, "/_fake/tenants//subscriptions",
                     "/_fake/subscriptions/" + sub + "/raw?api-version=nope"]:
            st, _ = fake.request("PUT", path, body={})
            c.true(400 <= st < 500, f"control route {path[:40]!r} refused ({st})")
        alive("bad control requests")
        c.eq(fake.proc.poll(), None, "the fake process is alive")
    c.done()


if __name__ == "__main__":
    main()
