"""Python twin of harness.sh: starts contactguard-fakeazure on a free
loopback port, reads the URL it prints first, and always stops it."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import ssl

SKIP = 77  # ctest SKIP_RETURN_CODE


class Fake:
    def __init__(self, binary, *flags):
        self.dir = tempfile.mkdtemp(prefix="fakeazure.")
        self.proc = subprocess.Popen(
            [binary, "--tls-self-signed", os.path.join(self.dir, "tls"),
             "--credentials", os.path.join(self.dir, "creds.json"),
             "--truth", os.path.join(self.dir, "truth.jsonl"), *flags],
            stdout=subprocess.PIPE, stderr=open(os.path.join(self.dir, "stderr"), "w"),
            text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("https://127.0.0.1:"):
            self.stop()
            raise RuntimeError("the fake did not print its URL")
        self.ca = os.path.join(self.dir, "tls", "ca.pem")
        self.creds = json.load(open(os.path.join(self.dir, "creds.json")))
        self.truth = [json.loads(l) for l in open(os.path.join(self.dir, "truth.jsonl"))]
        self.ctx = ssl.create_default_context(cafile=self.ca)

    def tenant(self, i):
        t = self.creds["tenants"][i]
        secret = open(t["client_secret_file"]).read().strip()
        return t["id"], t["client_id"], secret

    def sub_of(self, scenario):
        return next(r["subscription_id"] for r in self.truth if r["scenario"] == scenario)

    def request(self, method, path, body=None, headers=None, form=None):
        data = None
        h = dict(headers or {})
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, context=self.ctx) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()
        if not os.environ.get("FA_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Checks:
    def __init__(self):
        self.failed = 0

    def eq(self, got, want, what):
        if got == want:
            print(f"ok - {what}")
        else:
            print(f"FAIL - {what}: expected {want!r}, got {got!r}")
            self.failed += 1

    def true(self, cond, what):
        self.eq(bool(cond), True, what)

    def done(self):
        print("PASS" if not self.failed else f"{self.failed} FAILED")
        sys.exit(1 if self.failed else 0)
