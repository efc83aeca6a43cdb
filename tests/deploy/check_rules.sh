#!/usr/bin/env bash
# promtool over the alerts: `promtool check rules` on the PrometheusRule's
# rule groups (the file Prometheus itself would load), then
# `promtool test rules` with tests/deploy/alerts.test.yaml; and every alert
# has a test case in which it fires.
#   check_rules.sh ROOT
set -euo pipefail
root=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$root/deploy/k8s/base/prometheusrule.yaml" "$tmp/rules.yaml" <<'PY'
import sys, yaml
with open(sys.argv[1]) as f:
    rule = yaml.safe_load(f)
assert rule["kind"] == "PrometheusRule", rule["kind"]
with open(sys.argv[2], "w") as f:
    yaml.safe_dump(rule["spec"], f, sort_keys=False)
PY
cp "$root/tests/deploy/alerts.test.yaml" "$tmp/"
promtool check rules "$tmp/rules.yaml"
(cd "$tmp" && promtool test rules alerts.test.yaml)
python3 - "$tmp/rules.yaml" "$tmp/alerts.test.yaml" <<'PY'
import sys, yaml
with open(sys.argv[1]) as f:
    alerts = {r["alert"] for g in yaml.safe_load(f)["groups"]
              for r in g["rules"] if "alert" in r}
with open(sys.argv[2]) as f:
    tests = yaml.safe_load(f)["tests"]
fired = {c["alertname"] for t in tests for c in t.get("alert_rule_test", [])
         if c.get("exp_alerts")}
missing = sorted(alerts - fired)
if missing:
    sys.exit("FAIL: no test case in which these alerts fire: " +
             ", ".join(missing))
print(f"rules: {len(alerts)} alerts, each fires in a test case")
PY
