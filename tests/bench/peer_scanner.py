#!/usr/bin/python3
"""The peer that `make bench` measures contactguard against: what a team
would write instead of a fleet. One asyncio process with the official Azure
SDK for Python's identity (azure.identity.aio, one credential per tenant)
and aiohttp, N requests in flight, the four contact rules of docs/rules.md
(not owner-reachable, which reads role assignments too), one
JSON line per finding to a file. Prints one JSON summary line on stdout.

usage: peer_scanner.py --url URL --ca CA --config WORKER.json --out FILE
                       [--in-flight 256]
"""
import argparse, asyncio, inspect, json, re, ssl, sys, time

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import ClientSecretCredential

SCOPE = "https://management.azure.com/.default"
AUDITED = {"enabled", "warned", "pastdue"}
SEV = {"low": 1, "medium": 2, "high": 3}
RISK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
LEVEL = 3  # rules.alert_severity.level and rules.attack_paths.level: High
LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")


def valid_address(a):
    if a.count("@") != 1:
        return False
    local, domain = a.split("@")
    labels = domain.split(".")
    return (local != "" and not any(c.isspace() for c in local)
            and len(labels) >= 2 and all(LABEL.match(x) for x in labels)
            and len(labels[-1]) >= 2 and labels[-1].isalpha())


def low(v):
    return v.lower() if isinstance(v, str) else None


def evaluate(contacts, version):
    """contacts: the properties of every contact; version 2023 or 2020."""
    if not contacts:
        return {r: "FAIL" for r in RULES}
    on = [c for c in contacts if version == 2020 or c.get("isEnabled") is True]
    if not on:
        return {r: "FAIL" for r in RULES}
    out = {}
    out["owner-alerts"] = "PASS" if any(
        low((c.get("notificationsByRole") or {}).get("state")) == "on"
        and "owner" in [low(x) for x in (c.get("notificationsByRole") or {})
                        .get("roles") or []] for c in on) else "FAIL"
    out["additional-emails"] = "PASS" if any(
        valid_address(p.strip())
        for c in on for p in re.split("[;,]", c.get("emails") or "")
        if p.strip()) else "FAIL"
    sev, risk = [], []
    for c in on:
        if version == 2020:
            an = c.get("alertNotifications") or {}
            if low(an.get("state")) == "on":
                sev.append(SEV.get(low(an.get("minimalSeverity")), 99))
            continue
        for s in c.get("notificationsSources") or []:
            kind = low(s.get("sourceType", s.get("type")))
            if kind == "alert":
                sev.append(SEV.get(low(s.get("minimalSeverity")), 99))
            elif kind == "attackpath":
                risk.append(RISK.get(low(s.get("minimalRiskLevel")), 99))
    out["alert-severity"] = "PASS" if sev and min(sev) <= LEVEL else "FAIL"
    out["attack-paths"] = ("ERROR" if version == 2020 else
                           "PASS" if risk and min(risk) <= LEVEL else "FAIL")
    return out


RULES = ["owner-alerts", "additional-emails", "alert-severity", "attack-paths"]


class Scanner:
    def __init__(self, a):
        self.a = a
        self.ctx = ssl.create_default_context(cafile=a.ca) if a.ca else None
        self.sem = asyncio.Semaphore(a.in_flight)
        self.lat, self.in_flight, self.in_flight_max = [], 0, 0
        self.out = open(a.out, "w")

    async def get(self, url, token):
        async with self.sem:
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)
            try:
                async with self.http.get(url, ssl=self.ctx, headers={
                        "Authorization": "Bearer " + token}) as r:
                    return r.status, await r.json(content_type=None)
            finally:
                self.in_flight -= 1

    async def scan(self, sub, token, seen):
        base = f"{self.a.url}/subscriptions/{sub}/providers/Microsoft.Security/securityContacts"
        st, body = await self.get(base + "?api-version=2023-12-01-preview", token)
        version = 2023
        if st == 400 and "InvalidApiVersion" in json.dumps(body):
            version = 2020
            st, body = await self.get(base + "/default?api-version=2020-01-01-preview", token)
        if st == 200:
            items = body.get("value", []) if isinstance(body, dict) and "value" in body \
                else body if isinstance(body, list) else [body]
            verdict = evaluate([i.get("properties") or {} for i in items], version)
        elif st == 404:
            verdict = evaluate([], version)
        else:
            verdict = {r: "ERROR" for r in RULES}
        for rule in RULES:
            self.out.write(json.dumps({"subscription": sub, "rule": rule,
                                       "status": verdict[rule]}) + "\n")
        self.lat.append(time.monotonic() - seen)

    async def tenant(self, t):
        secret = open(t["client_secret_file"]).read().strip()
        cred = ClientSecretCredential(
            t["id"], t["client_id"], secret, authority=self.a.url,
            transport=AioHttpTransport(session=self.http, session_owner=False),
            **self.no_discovery)
        async with cred:
            token = (await cred.get_token(SCOPE)).token
            url, scans = f"{self.a.url}/subscriptions?api-version=2022-12-01", []
            while url:
                st, page = await self.get(url, token)
                if st != 200:
                    raise RuntimeError(f"listing {t['id']}: HTTP {st}")
                now = time.monotonic()
                for s in page.get("value", []):
                    if low(s.get("state")) in AUDITED:
                        scans.append(asyncio.create_task(
                            self.scan(s["subscriptionId"], token, now)))
                url = page.get("nextLink")
            await asyncio.gather(*scans)

    async def run(self):
        conf = json.load(open(self.a.config))
        params = inspect.signature(ClientSecretCredential.__init__).parameters
        self.no_discovery = ({"disable_instance_discovery": True}
                             if "disable_instance_discovery" in params
                             or "kwargs" in params else {})
        conn = aiohttp.TCPConnector(limit=self.a.in_flight, ssl=self.ctx)
        async with aiohttp.ClientSession(connector=conn) as self.http:
            await asyncio.gather(*(self.tenant(t) for t in conf["tenants"]))
        self.out.close()


def main():
    p = argparse.ArgumentParser()
    for k in ("--url", "--config", "--out"):
        p.add_argument(k, required=True)
    p.add_argument("--ca", default="")
    p.add_argument("--in-flight", type=int, default=256)
    a = p.parse_args()
    s = Scanner(a)
    t0 = time.monotonic()
    asyncio.run(s.run())
    lat = sorted(s.lat)
    q = (lambda f: 1000 * lat[min(len(lat) - 1, int(f * (len(lat) - 1) + 0.5))]
         if lat else 0)
    print(json.dumps({"subscriptions": len(lat), "seconds": time.monotonic() - t0,
                      "p50_ms": q(0.5), "p99_ms": q(0.99),
                      "in_flight_max": s.in_flight_max}))


if __name__ == "__main__":
    sys.exit(main())
