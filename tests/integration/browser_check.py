#!/usr/bin/env python3
"""Opens a contactguard HTML report in headless Chromium and checks its DOM.

usage: browser_check.py PAGE.html EXPECT.json [SCREENSHOT.png]

EXPECT: {"rules": {RULE: {STATUS: n}}, "subscriptions": n, and optionally
"listed" (rows when not every subscription is listed), "tenants" (ranked
ids), "skipped", "unscanned", "texts" (must read as text)}.

Drives Chromium over the DevTools protocol (python3-websocket) and fails,
with one line per problem, when: a rule's counts differ from EXPECT, the
tenants are not ranked as EXPECT says, the filter or a sort does not work,
a console error or exception occurs (a CSP violation is one), any request
leaves the page, or something from Azure ran as script (EXPECT's hostile
string must read as text, and no element it could inject exists). Prints
one parseable line: bytes, load_ms, dom_ms. Chromium missing is a failure,
never a skip.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import websocket  # python3-websocket
except ImportError:
    sys.exit("browser_check: python3-websocket is missing (scripts/deps.sh)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*",
         "--window-size=1280,1600"]
START_S = 60  # a loaded machine starts Chromium slowly; a deadline, not a wait
# How long a page may take to load and answer: a deadline for a stuck or
# crashed renderer, never a figure the check judges.
PAGE_S = float(os.environ.get("CG_BROWSER_TIMEOUT_S", "300"))

# Runs in the page; returns what the checks compare.
PROBE = r"""
(function () {
  var out = {};
  out.rules = {};
  document.querySelectorAll('#rules .rule').forEach(function (d) {
    var c = {};
    d.querySelectorAll('td[data-status]').forEach(function (td) {
      c[td.dataset.status] = parseInt(td.textContent, 10);
    });
    out.rules[d.dataset.rule] = c;
  });
  out.bars = document.querySelectorAll('#rules svg').length;
  var ids = function () {
    return Array.from(document.querySelectorAll('#tenants tbody tr'))
      .filter(function (tr) { return !tr.hidden; })
      .map(function (tr) { return tr.cells[1].textContent; });
  };
  out.tenants = ids();
  out.subs = document.querySelectorAll('#subs tbody tr').length;
  out.listed = parseInt(document.getElementById('n-listed').textContent, 10);
  var f = document.getElementById('tenant-filter');
  f.value = out.tenants.length ? out.tenants[out.tenants.length - 1] : 'x';
  f.dispatchEvent(new Event('input'));
  out.filtered = ids();
  f.value = '';
  f.dispatchEvent(new Event('input'));
  out.unfiltered = ids().length;
  var th = document.querySelectorAll('#tenants thead th')[1];
  th.click();
  out.sorted_asc = ids();
  th.click();
  out.sorted_desc = ids();
  out.pwned = window.__cg_pwned === undefined ? null : window.__cg_pwned;
  out.scripts = document.scripts.length;
  out.imgs = document.images.length;
  out.iframes = document.querySelectorAll('iframe,object,embed').length;
  out.text = document.body.textContent;
  out.skipped = document.getElementById('n-skipped').textContent;
  out.unscanned = document.getElementById('n-unscanned').textContent;
  return JSON.stringify(out);
})()
"""


class Cdp:
    def __init__(self, url):
        self.ws = websocket.create_connection(url, timeout=PAGE_S,
                                              suppress_origin=True)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method,
                                 "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method):
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + PAGE_S
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError("no %s within %.0f s" % (method, PAGE_S))
            msg = json.loads(self.ws.recv())
            if msg.get("method") == method:
                return msg
            if msg.get("method") == "Inspector.targetCrashed":
                raise RuntimeError("the page's renderer crashed")
            self.events.append(msg)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    page, expect = os.path.abspath(sys.argv[1]), json.load(open(sys.argv[2]))
    shot = sys.argv[3] if len(sys.argv) > 3 else None
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        sys.exit("browser_check: chromium is not installed (scripts/deps.sh)")
    profile = tempfile.mkdtemp(prefix="cg-chromium.")
    proc = subprocess.Popen([exe] + FLAGS + ["--user-data-dir=" + profile,
                                             "about:blank"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    problems = []
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + START_S
        while not (os.path.exists(port_file) and
                   os.path.getsize(port_file) > 0):
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("browser_check: chromium did not start")
            time.sleep(0.05)
        port = open(port_file).read().split()[0]
        targets = json.load(urllib.request.urlopen(
            "http://127.0.0.1:%s/json/list" % port, timeout=START_S))
        target = next(t for t in targets if t["type"] == "page")
        cdp = Cdp(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Network", "Log"):
            cdp.call(domain + ".enable")
        cdp.events.clear()
        url = "file://" + page
        t0 = time.monotonic()
        cdp.call("Page.navigate", url=url)
        cdp.wait_event("Page.loadEventFired")
        load_ms = (time.monotonic() - t0) * 1000
        t1 = time.monotonic()
        res = cdp.call("Runtime.evaluate", expression=PROBE,
                       returnByValue=True)
        dom_ms = (time.monotonic() - t1) * 1000
        if "exceptionDetails" in res:
            problems.append("probe threw: %s" % res["exceptionDetails"])
            got = {}
        else:
            got = json.loads(res["result"]["value"])
        if shot:
            png = cdp.call("Page.captureScreenshot", format="png")
            import base64
            with open(shot, "wb") as f:
                f.write(base64.b64decode(png["data"]))
        # Anything queued since load: console errors, requests.
        cdp.call("Runtime.evaluate", expression="1")
        for e in cdp.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Network.requestWillBeSent" and \
                    p["request"]["url"] != url:
                problems.append("request: %s" % p["request"]["url"])
            elif m == "Runtime.consoleAPICalled" and \
                    p.get("type") in ("error", "assert"):
                problems.append("console error: %s" % p.get("args"))
            elif m == "Runtime.exceptionThrown":
                problems.append("exception: %s" % p["exceptionDetails"])
            elif m == "Log.entryAdded" and \
                    p["entry"]["level"] in ("error", "warning"):
                problems.append("log %s: %s" % (p["entry"]["level"],
                                                p["entry"]["text"]))
        try:
            cdp.call("Browser.close")
        except Exception:
            pass
    finally:
        try:
            proc.wait(timeout=START_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)

    if got:
        if got["rules"] != expect["rules"]:
            problems.append("rule counts %s, cache says %s" %
                            (got["rules"], expect["rules"]))
        if got["bars"] != len(expect["rules"]):
            problems.append("%d bars for %d rules" %
                            (got["bars"], len(expect["rules"])))
        if "tenants" in expect and got["tenants"] != expect["tenants"]:
            problems.append("tenant ranking %s, want %s" %
                            (got["tenants"], expect["tenants"]))
        want_rows = expect.get("listed", expect["subscriptions"])
        if got["subs"] != want_rows or got["listed"] != want_rows:
            problems.append("%d subscription rows (page says %d), want %d" %
                            (got["subs"], got["listed"], want_rows))
        if got["tenants"] and (got["filtered"] != got["tenants"][-1:] or
                               got["unfiltered"] != len(got["tenants"])):
            problems.append("filter: %s then %d rows" %
                            (got["filtered"], got["unfiltered"]))
        ids = expect.get("tenants", got["tenants"])
        if got["sorted_asc"] != sorted(ids) or \
                got["sorted_desc"] != sorted(ids, reverse=True):
            problems.append("sort by tenant: %s / %s" %
                            (got["sorted_asc"], got["sorted_desc"]))
        if got["pwned"] is not None or got["scripts"] != 1 or \
                got["imgs"] or got["iframes"]:
            problems.append("injected: pwned=%s scripts=%d imgs=%d "
                            "frames=%d" % (got["pwned"], got["scripts"],
                                           got["imgs"], got["iframes"]))
        for s in expect.get("texts", []):
            if s not in got["text"]:
                problems.append("text missing: %r" % s)
        if "skipped" in expect and int(got["skipped"]) != expect["skipped"] or \
                "unscanned" in expect and \
                int(got["unscanned"]) != expect["unscanned"]:
            problems.append("not auditable %s/%s, want %d/%d" %
                            (got["skipped"], got["unscanned"],
                             expect["skipped"], expect["unscanned"]))
    print("browser_check bytes=%d load_ms=%.0f dom_ms=%.0f problems=%d" %
          (os.path.getsize(page), load_ms, dom_ms, len(problems)))
    for p in problems:
        print("browser_check: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
