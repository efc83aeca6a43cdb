#!/usr/bin/env python3
"""Every series the dashboard and the alerts query exists on a running
worker; the probes and the scrape path the manifests use answer.

    check_metrics.py ROOT SCRAPER

SCRAPER is tests/deploy/deploy_worker_scrape: it runs a worker on the
harness's stack through real jobs (and dead letters) and saves what it
answers on the paths given. The queries are read from the files an
operator installs, never copied here: the expressions of
deploy/k8s/base/prometheusrule.yaml and every expression and template
query of deploy/k8s/base/contactguard-dashboard.json. For each
contactguard_* name in them, the worker's /metrics must have a sample of
that name and, for each label matcher with a literal value
(status="ERROR", outcome=~"..."), a sample that matches it. Series from
other exporters are accepted only when named in EXTERNAL.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

# Series the alerts read from kube-state-metrics (deployed with the
# Prometheus stack), not from the worker.
EXTERNAL = {
    "kube_cronjob_status_last_successful_time": "kube-state-metrics",
    "kube_pod_status_ready": "kube-state-metrics",
}

SELECTOR = re.compile(r"\b((?:contactguard|kube)_[A-Za-z0-9_]+)\b"
                      r"(\s*\{([^}]*)\})?")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?\s+\S+")


def queries(root):
    base = os.path.join(root, "deploy", "k8s", "base")
    out = []
    with open(os.path.join(base, "prometheusrule.yaml")) as f:
        rule = yaml.safe_load(f)
    for g in rule["spec"]["groups"]:
        for r in g["rules"]:
            out.append((f"alert {r.get('alert', r.get('record'))}", r["expr"]))
    with open(os.path.join(base, "contactguard-dashboard.json")) as f:
        dash = json.load(f)

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dash["panels"]):
        for t in p.get("targets", []):
            out.append((f"panel '{p['title']}'", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and q:
            out.append((f"variable ${v['name']}", q))
    return out


def exposition(text):
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = dict((k, v) for k, _, v in MATCHER.findall(m[3] or ""))
        samples.setdefault(m[1], []).append(labels)
    return samples


def main():
    root, scraper = sys.argv[1:3]
    with open(os.path.join(root, "deploy", "k8s", "base", "worker.yaml")) as f:
        dep = next(d for d in yaml.safe_load_all(f)
                   if d and d["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    probes = {c[p]["httpGet"]["path"]: p
              for p in ("livenessProbe", "readinessProbe")}
    with open(os.path.join(root, "deploy", "k8s", "base",
                           "monitoring.yaml")) as f:
        scrape = yaml.safe_load(f)["spec"]["endpoints"][0]["path"]

    failures = []
    with tempfile.TemporaryDirectory(prefix="cg-scrape-") as out:
        paths = sorted(probes) + [scrape]
        r = subprocess.run([scraper, out] + paths)
        if r.returncode != 0:
            print(f"FAIL: {scraper} exited {r.returncode}")
            return 1
        with open(os.path.join(out, "status.txt")) as f:
            status = dict(line.split() for line in f if line.strip())
        with open(os.path.join(out, scrape.strip("/").replace("/", "_") +
                               ".txt")) as f:
            samples = exposition(f.read())

    # The worker has done its jobs and is in its group: every probe the
    # Deployment declares answers 200, and so does the scrape path.
    for path in paths:
        if status.get(path) != "200":
            failures.append(f"{probes.get(path, 'scrape')} {path} answered "
                            f"{status.get(path)}, not 200")

    names = set()
    for where, expr in queries(root):
        for m in SELECTOR.finditer(expr):
            name, matchers = m[1], MATCHER.findall(m[3] or "")
            names.add(name)
            if name.startswith("kube_"):
                if name not in EXTERNAL:
                    failures.append(f"{where}: {name} comes from no known "
                                    "exporter")
                continue
            if name not in samples:
                failures.append(f"{where}: {name} is not on the worker's "
                                "/metrics")
                continue
            for label, op, value in matchers:
                if "$" in value or op in ("!=", "!~"):
                    continue  # a dashboard variable, or a negation
                if op == "=":
                    ok = any(s.get(label) == value for s in samples[name])
                else:
                    ok = any(re.fullmatch(value, s.get(label, ""))
                             for s in samples[name])
                if not ok:
                    failures.append(f"{where}: no {name} sample has "
                                    f"{label}{op}\"{value}\"")
    worker_names = sorted(n for n in names if n.startswith("contactguard_"))
    # The extraction itself must have found the queries.
    if len(worker_names) < 10:
        failures.append(f"only {len(worker_names)} worker series found in "
                        "the dashboard and alerts: the parser is broken")
    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    print(f"metrics: {len(worker_names)} worker series queried by the "
          f"dashboard and alerts, all on a running worker's /metrics; "
          f"probes {', '.join(sorted(probes))} answer 200")
    return 0


if __name__ == "__main__":
    sys.exit(main())
