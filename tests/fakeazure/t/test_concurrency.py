"""1,000 concurrent keep-alive HTTPS connections against one fake process:
all of them open at once, every one served twice (keep-alive) with a 2xx,
and the fake counts every answer.

The test waits on events, never on the clock: each step starts when the
previous one has finished on every connection, however slowly a loaded
machine gets there (ctest's timeout is the only bound). Throughput is
wrk's business (tests/bench/fakeazure_ceiling.sh), not this test's.
usage: test_concurrency.py PATH/TO/contactguard-fakeazure"""

import asyncio
import resource
import sys
import urllib.parse

from fakeazure_harness import Checks, Fake

CONNECTIONS = 1000
ROUNDS = 2


async def open_one(host, port, ctx):
    # The handshake may queue behind hundreds of others: no handshake timer.
    return await asyncio.open_connection(host, port, ssl=ctx,
                                         ssl_handshake_timeout=3600)


async def one_request(reader, writer, host, path, token):
    writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                  f"Authorization: Bearer {token}\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        raise RuntimeError(f"answer {status} without Content-Length")
    await reader.readexactly(length)
    return status


async def run(fake, path, token):
    url = urllib.parse.urlsplit(fake.url)
    host, port = url.hostname, url.port
    results = {"opened": 0, "statuses": [], "errors": []}

    conns = await asyncio.gather(
        *(open_one(host, port, fake.ctx) for _ in range(CONNECTIONS)),
        return_exceptions=True)
    live = [c for c in conns if not isinstance(c, BaseException)]
    results["opened"] = len(live)
    results["errors"] += [repr(c) for c in conns if isinstance(c, BaseException)]

    # Every connection is open now; each round asks on all of them at once.
    for _ in range(ROUNDS):
        got = await asyncio.gather(
            *(one_request(r, w, url.netloc, path, token) for r, w in live),
            return_exceptions=True)
        results["statuses"] += [s for s in got if not isinstance(s, BaseException)]
        results["errors"] += [repr(s) for s in got if isinstance(s, BaseException)]

    for _, w in live:
        w.close()
    return results


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(8192, hard) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < CONNECTIONS + 100:
        print(f"FAIL - cannot open {CONNECTIONS + 100} descriptors (limit {want})")
        sys.exit(1)

    c = Checks()
    with Fake(sys.argv[1], "--tenants", "1", "--subscriptions-per-tenant", "50",
              "--no-throttle") as fake:
        tenant, client, secret = fake.tenant(0)
        status, tok = fake.request("POST", f"/{tenant}/oauth2/v2.0/token", form={
            "grant_type": "client_credentials", "client_id": client,
            "client_secret": secret,
            "scope": "https://management.azure.com/.default"})
        c.eq(status, 200, "token")
        sub = fake.sub_of("compliant")
        path = (f"/subscriptions/{sub}/providers/Microsoft.Security/"
                "securityContacts?api-version=2023-12-01-preview")

        r = asyncio.run(run(fake, path, tok["access_token"]))
        for e in r["errors"][:5]:
            print(f"# error: {e}")
        c.eq(r["opened"], CONNECTIONS, f"{CONNECTIONS} connections open at once")
        c.eq(len(r["errors"]), 0, "no connection or request error")
        c.eq(len(r["statuses"]), CONNECTIONS * ROUNDS,
             f"{ROUNDS} answers on every connection (keep-alive)")
        c.eq(sorted(set(r["statuses"])), [200], "every answer is 200")

        status, stats = fake.request("GET", "/_fake/stats")
        c.true(stats["requests"]["contacts.list"]["200"] >= CONNECTIONS * ROUNDS,
               "the fake counted every answer")
    c.done()


if __name__ == "__main__":
    main()
