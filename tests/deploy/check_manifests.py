#!/usr/bin/env python3
"""Cross-checks the Kubernetes manifests against the configuration and the
binaries that read it.

    check_manifests.py ROOT WORKER PRODUCER

ROOT is the source tree, WORKER and PRODUCER the built contactguard-worker
and contactguard-producer. For every pod of deploy/k8s/base, the volumes a
container mounts are laid out under a temporary root (the ConfigMap's files,
the Secret's keys from deploy/k8s/secret.example.yaml, empty dirs), the
init container's contactguard-config composes the configuration from them,
and the container's own command line, paths moved under the temporary
root, is run with --dump-config. So a file the configuration names that no
volume provides, a secret key missing from the Secret, or a --set the
binary refuses, fails here as it would fail in the pod. Then the effective
configuration is compared with the manifests: ports and probes, KEDA's
group, topic and bootstrap servers, the partition rule, the grace period
against the drain timeout, Services, Ingress, NetworkPolicy and
ServiceMonitor. Each failed check is one line; exit 1 if any failed.
"""
import copy
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

import yaml

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def json_pointer(doc, path):
    """The parent and key a JSON-patch path names, or raises KeyError."""
    parts = [p.replace("~1", "/").replace("~0", "~")
             for p in path.lstrip("/").split("/")]
    node = doc
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    if isinstance(node, list):
        last = int(last)
        node[last]  # must exist for replace
    elif last not in node:
        raise KeyError(path)
    return node, last


def kustomize(dirpath, root):
    """The resources of a kustomization, with JSON 6902 patches applied:
    enough of kustomize for these overlays, checking that every file and
    every patched path exists."""
    kpath = os.path.join(dirpath, "kustomization.yaml")
    with open(kpath) as f:
        k = yaml.safe_load(f)
    rel = os.path.relpath(dirpath, root)
    docs = []
    for r in k.get("resources", []):
        p = os.path.normpath(os.path.join(dirpath, r))
        if os.path.isdir(p):
            docs.extend(kustomize(p, root)[0])
        elif check(os.path.isfile(p), f"{rel}: resource {r} does not exist"):
            docs.extend(load_docs(p))
    generated = {}
    for g in k.get("configMapGenerator", []):
        files = {}
        for fname in g.get("files", []):
            key, _, src = fname.partition("=")
            src = src or key
            p = os.path.join(dirpath, src)
            if check(os.path.isfile(p),
                     f"{rel}: configMapGenerator {g['name']}: {src} missing"):
                with open(p) as f:
                    files[os.path.basename(key)] = f.read()
        generated[g["name"]] = files
    for patch in k.get("patches", []):
        t = patch["target"]
        ops = yaml.safe_load(patch["patch"])
        hits = [d for d in docs
                if d["kind"] == t["kind"] and d["metadata"]["name"] == t["name"]]
        if not check(hits, f"{rel}: patch target {t['kind']}/{t['name']} "
                     "is not a resource"):
            continue
        for d in hits:
            for op in ops:
                try:
                    parent, key = json_pointer(d, op["path"])
                except (KeyError, IndexError, ValueError):
                    check(False, f"{rel}: patch path {op['path']} not in "
                          f"{t['kind']}/{t['name']}")
                    continue
                if op["op"] == "replace":
                    parent[key] = op["value"]
    return docs, generated


def find(docs, kind, name=None):
    out = [d for d in docs if d["kind"] == kind and
           (name is None or d["metadata"]["name"] == name)]
    return out


def pod_spec(doc):
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def pod_labels(doc):
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return doc["spec"]["template"]["metadata"]["labels"]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def listen_port(addr):
    return int(addr.rsplit(":", 1)[1])


def named_files(config_files):
    """Every file the configuration and the tenants file name."""
    out = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k.endswith("_file") and isinstance(v, str) and v:
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(json.loads(config_files["contactguard.json"]))
    for line in config_files.get("tenants.jsonl", "").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            walk(json.loads(line))
    return out


class Pod:
    """A pod's volumes laid out under a temporary root."""

    def __init__(self, doc, generated, secret_keys, tmp):
        self.doc = doc
        self.name = doc["metadata"]["name"]
        self.spec = pod_spec(doc)
        self.root = os.path.join(tmp, self.name)
        self.volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        self.generated = generated
        self.secret_keys = secret_keys

    def at(self, path):
        return self.root + path

    def lay_out(self, container):
        """Materialises the container's mounts; returns their paths."""
        mounts = []
        for m in container.get("volumeMounts", []):
            v = self.volumes.get(m["name"])
            if not check(v, f"{self.name}/{container['name']}: volume "
                         f"{m['name']} is mounted but not declared"):
                continue
            dest = self.at(m["mountPath"])
            os.makedirs(dest, exist_ok=True)
            mounts.append(m["mountPath"])
            if "configMap" in v:
                files = self.generated.get(v["configMap"]["name"])
                if check(files is not None, f"{self.name}: ConfigMap "
                         f"{v['configMap']['name']} is not generated"):
                    for fname, text in files.items():
                        with open(os.path.join(dest, fname), "w") as f:
                            f.write(text)
            elif "secret" in v:
                check(v["secret"]["secretName"] == "contactguard-secrets",
                      f"{self.name}: unknown Secret {v['secret']['secretName']}")
                for key, value in self.secret_keys.items():
                    with open(os.path.join(dest, key), "w") as f:
                        f.write(value + "\n")
        return mounts

    def provides(self, container, path):
        """Whether one of the container's own mounts holds the file."""
        for m in container.get("volumeMounts", []):
            mp = m["mountPath"]
            if not path.startswith(mp + "/"):
                continue
            rest = path[len(mp) + 1:]
            v = self.volumes.get(m["name"], {})
            if "configMap" in v:
                if rest in self.generated.get(v["configMap"]["name"], {}):
                    return True
            elif "secret" in v:
                if rest in self.secret_keys:
                    return True
            elif "emptyDir" in v:
                return True
        return False

    def moved(self, path, mounts):
        if path.startswith(self.root + "/"):
            return path
        for mp in mounts:
            if path == mp or path.startswith(mp + "/"):
                return self.at(path)
        return path

    def relocate(self, mounts):
        """Moves the absolute paths in the laid-out text files under the
        temporary root, as the pod sees them."""
        for top, _, files in os.walk(self.root):
            for fname in files:
                p = os.path.join(top, fname)
                with open(p) as f:
                    text = f.read()
                text = re.sub(r'"(/[^"]*)"',
                              lambda m: '"' + self.moved(m[1], mounts) + '"',
                              text)
                with open(p, "w") as f:
                    f.write(text)

    def run(self, container, binaries, extra):
        cmd = container.get("command") or container.get("args")
        argv = list(cmd)
        exe = binaries.get(argv[0])
        if not exe:
            return None
        argv = [exe] + [self.at(a) if a.startswith("/") else a
                        for a in argv[1:]]
        r = subprocess.run(argv + extra, capture_output=True, text=True,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        check(r.returncode == 0,
              f"{self.name}/{container['name']}: `{shlex.join(cmd + extra)}` "
              f"failed in the pod's file layout: {r.stderr.strip()}")
        return r


def main():
    root, worker, producer = sys.argv[1:4]
    k8s = os.path.join(root, "deploy", "k8s")
    base, generated = kustomize(os.path.join(k8s, "base"), root)
    overlays = {}
    for o in sorted(os.listdir(os.path.join(k8s, "overlays"))):
        overlays[o] = kustomize(os.path.join(k8s, "overlays", o), root)[0]
    secret = load_docs(os.path.join(k8s, "secret.example.yaml"))[0]
    secret_keys = secret["stringData"]
    binaries = {
        "contactguard-worker": worker,
        "contactguard-producer": producer,
        "contactguard-config": os.path.join(root, "deploy", "docker",
                                            "contactguard-config"),
    }

    with open(os.path.join(root, "deploy", "docker", "Dockerfile")) as f:
        image_uid = int(re.findall(r"^USER (\d+)", f.read(), re.M)[-1])

    effective = {}
    with tempfile.TemporaryDirectory(prefix="cg-manifests-") as tmp:
        for doc in find(base, "Deployment") + find(base, "CronJob"):
            pod = Pod(doc, generated, secret_keys, tmp)
            spec = pod.spec
            sc = spec.get("securityContext", {})
            check(sc.get("runAsNonRoot") is True,
                  f"{pod.name}: runAsNonRoot is not true")
            check(sc.get("runAsUser") == image_uid,
                  f"{pod.name}: runAsUser {sc.get('runAsUser')} is not the "
                  f"image's USER {image_uid}")
            inits = spec.get("initContainers", [])
            for c in inits + spec["containers"]:
                where = f"{pod.name}/{c['name']}"
                csc = c.get("securityContext", {})
                check(csc.get("readOnlyRootFilesystem") is True,
                      f"{where}: root file system is writable")
                check(csc.get("allowPrivilegeEscalation") is False,
                      f"{where}: allowPrivilegeEscalation is not false")
                check("ALL" in csc.get("capabilities", {}).get("drop", []),
                      f"{where}: capabilities not dropped")
                check(c.get("resources", {}).get("requests"),
                      f"{where}: no resource requests")
                check(c["image"] == "contactguard",
                      f"{where}: image {c['image']} is not the contactguard "
                      "image (kustomize images: sets its name and tag)")
                for e in c.get("env", []):
                    check("secretKeyRef" not in e.get("valueFrom", {}),
                          f"{where}: secret {e['name']} in the environment")
                for e in c.get("envFrom", []):
                    check("secretRef" not in e,
                          f"{where}: a Secret in the environment")
            # The pod's start, in order: contactguard-config, then the
            # container's command with --dump-config.
            for c in inits:
                if c["command"][0] == "contactguard-config":
                    pod.relocate(pod.lay_out(c))
                    pod.run(c, binaries, [])
            for c in spec["containers"]:
                mounts = pod.lay_out(c)
                pod.relocate(mounts)
                r = pod.run(c, binaries, ["--dump-config"])
                if r and r.returncode == 0:
                    effective[pod.name] = (c, json.loads(r.stdout))
                    for path in named_files(generated["contactguard-config"]):
                        check(pod.provides(c, path),
                              f"{pod.name}/{c['name']}: {path}, named by the "
                              "configuration, is not in a volume it mounts")
                check(all(m.startswith("/etc/contactguard") or
                          m.startswith("/run/contactguard") or m == "/tmp"
                          for m in mounts),
                      f"{pod.name}: unexpected mount in {mounts}")

    # The configuration each process runs with carries its secrets.
    for name, (c, conf) in effective.items():
        check(conf.get("kafka.sasl.password") == "***",
              f"{name}: no Kafka password (kafka-sasl-password) reached the "
              "configuration")
        if "webhook" in c["args"]:
            check(conf.get("producer.webhook_secret") == "***",
                  f"{name}: the webhook runs without producer.webhook_secret")

    def conf_of(name):
        if not check(name in effective, f"{name}: no effective configuration"):
            sys.exit(report())
        return effective[name]

    # ---- worker -------------------------------------------------------------
    wc, wconf = conf_of("contactguard-worker")
    wdep = find(base, "Deployment", "contactguard-worker")[0]
    wspec = pod_spec(wdep)
    mport = listen_port(wconf["worker.metrics_listen"])
    check(wconf["worker.metrics_listen"].startswith("0.0.0.0:"),
          "worker.metrics_listen does not listen on the pod's address")
    check(port_number(wc, "metrics") == mport,
          f"worker containerPort metrics {port_number(wc, 'metrics')} != "
          f"worker.metrics_listen port {mport}")
    for probe, path in (("livenessProbe", "/livez"),
                        ("readinessProbe", "/readyz")):
        get = wc.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path,
              f"worker {probe} path {get.get('path')} is not {path}")
        check(port_number(wc, get.get("port")) == mport,
              f"worker {probe} port {get.get('port')} is not the metrics port")
    grace = wspec["terminationGracePeriodSeconds"]
    drain = int(wconf["worker.drain_timeout_ms"])
    # A stop takes at most drain + 5 s whatever the broker does (README,
    # The worker): 10 s keeps a margin for the kubelet and a slow node.
    check(grace * 1000 >= drain + 10000,
          f"terminationGracePeriodSeconds {grace} s leaves less than 10 s "
          f"after worker.drain_timeout_ms {drain} ms")
    wlabels = pod_labels(wdep)
    check(wlabels.get("azure.workload.identity/use") == "true",
          "worker pods do not use workload identity")
    check(wspec.get("serviceAccountName") == "contactguard",
          "worker pods do not run as the contactguard service account")
    sa = find(base, "ServiceAccount", "contactguard")
    check(sa and "azure.workload.identity/client-id" in
          sa[0]["metadata"].get("annotations", {}),
          "ServiceAccount contactguard has no workload identity client id")
    check(wconf["credentials"]["auth"] == "federated",
          "the worker's default credential is not workload identity")
    pdb = find(base, "PodDisruptionBudget", "contactguard-worker")
    check(pdb and selects(pdb[0]["spec"]["selector"]["matchLabels"], wlabels),
          "no PodDisruptionBudget selects the worker pods")
    svc = find(base, "Service", "contactguard-worker-metrics")[0]
    check(selects(svc["spec"]["selector"], wlabels),
          "the metrics Service does not select the worker pods")
    sport = svc["spec"]["ports"][0]
    check(port_number(wc, sport["targetPort"]) == mport,
          "the metrics Service does not target the metrics port")
    sm = find(base, "ServiceMonitor", "contactguard-worker")[0]
    check(selects(sm["spec"]["selector"]["matchLabels"],
                  svc["metadata"]["labels"]),
          "the ServiceMonitor does not select the metrics Service")
    ep = sm["spec"]["endpoints"][0]
    check(ep["port"] == sport["name"] and ep["path"] == "/metrics",
          "the ServiceMonitor does not scrape the Service's /metrics")

    # ---- KEDA ---------------------------------------------------------------
    def keda_checks(docs, where):
        so = find(docs, "ScaledObject", "contactguard-worker")[0]
        s = so["spec"]
        check(s["scaleTargetRef"]["name"] == wdep["metadata"]["name"],
              f"{where}: ScaledObject scales {s['scaleTargetRef']['name']}")
        parts = int(so["metadata"]["annotations"]
                    ["contactguard.io/jobs-partitions"])
        check(1 <= s["minReplicaCount"] <= s["maxReplicaCount"] <= parts,
              f"{where}: replicas {s['minReplicaCount']}..."
              f"{s['maxReplicaCount']} break 1 <= min <= max <= jobs "
              f"partitions ({parts})")
        t = s["triggers"][0]
        md = t["metadata"]
        check(t["type"] == "kafka", f"{where}: trigger is not kafka")
        check(md["topic"] == wconf["topics.jobs"],
              f"{where}: KEDA topic {md['topic']} != topics.jobs "
              f"{wconf['topics.jobs']}")
        check(md["consumerGroup"] == wconf.get("kafka.group.id"),
              f"{where}: KEDA group {md['consumerGroup']} != the worker's "
              f"kafka.group.id {wconf.get('kafka.group.id')}")
        check(md["bootstrapServers"] == wconf["kafka.bootstrap.servers"],
              f"{where}: KEDA bootstrap servers differ from the worker's")
        check(int(md["lagThreshold"]) > 0, f"{where}: lagThreshold <= 0")
        check(md.get("allowIdleConsumers") == "false",
              f"{where}: KEDA may scale past the partition count")
        ta = find(docs, "TriggerAuthentication",
                  t["authenticationRef"]["name"])
        if check(ta, f"{where}: TriggerAuthentication missing"):
            for ref in ta[0]["spec"]["secretTargetRef"]:
                check(ref["name"] == secret["metadata"]["name"] and
                      ref["key"] in secret_keys,
                      f"{where}: KEDA reads {ref['name']}/{ref['key']}, "
                      "which the Secret does not hold")
    keda_checks(base, "base")
    for o, docs in overlays.items():
        keda_checks(docs, f"overlay {o}")

    # ---- producer: sweep, listen, webhook -------------------------------------
    cron = find(base, "CronJob", "contactguard-sweep")[0]
    check(cron["spec"]["concurrencyPolicy"] == "Forbid",
          "the sweep CronJob may run twice at once")
    _, sconf = conf_of("contactguard-sweep")
    check(sconf["topics.jobs"] == wconf["topics.jobs"],
          "the sweep writes another jobs topic than the workers read")
    lc, lconf = conf_of("contactguard-listen")
    check(lconf["topics.jobs"] == wconf["topics.jobs"],
          "listen writes another jobs topic than the workers read")
    check(lconf.get("kafka.group.id") not in (None, wconf.get("kafka.group.id")),
          "listen shares the workers' consumer group")
    hc, hconf = conf_of("contactguard-webhook")
    hport = listen_port(hconf["producer.webhook_listen"])
    check(port_number(hc, "http") == hport,
          f"webhook containerPort {port_number(hc, 'http')} != "
          f"producer.webhook_listen port {hport}")
    hdep = find(base, "Deployment", "contactguard-webhook")[0]
    hsvc = find(base, "Service", "contactguard-webhook")[0]
    check(selects(hsvc["spec"]["selector"], pod_labels(hdep)),
          "the webhook Service does not select the webhook pods")
    check(port_number(hc, hsvc["spec"]["ports"][0]["targetPort"]) == hport,
          "the webhook Service does not target the webhook port")
    ing = find(base, "Ingress", "contactguard-webhook")[0]["spec"]
    backend = ing["rules"][0]["http"]["paths"][0]["backend"]["service"]
    check(backend["name"] == hsvc["metadata"]["name"] and
          backend["port"].get("name") == hsvc["spec"]["ports"][0]["name"],
          "the Ingress does not route to the webhook Service")
    check(ing.get("tls") and ing["rules"][0]["host"] in ing["tls"][0]["hosts"],
          "the Ingress does not serve its host over TLS")
    for o, docs in overlays.items():
        i = find(docs, "Ingress", "contactguard-webhook")[0]["spec"]
        check(i["rules"][0]["host"] in i["tls"][0]["hosts"],
              f"overlay {o}: the Ingress host has no TLS")

    # ---- NetworkPolicy --------------------------------------------------------
    def allowed_ports(pol):
        return {p["port"] for r in pol["spec"].get("ingress", []) +
                pol["spec"].get("egress", []) for p in r.get("ports", [])}
    pols = find(base, "NetworkPolicy")
    deny = [p for p in pols if p["spec"]["podSelector"] == {} and
            not p["spec"].get("ingress") and not p["spec"].get("egress")]
    check(deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"},
          "no default-deny NetworkPolicy")
    egress = find(base, "NetworkPolicy", "contactguard-egress")[0]
    eports = allowed_ports(egress)
    kport = int(wconf["kafka.bootstrap.servers"].split(",")[0].rsplit(":", 1)[1])
    check(kport in eports, f"egress does not allow Kafka port {kport}")
    check(443 in eports, "egress does not allow HTTPS (Entra ID, ARM)")
    # Redis: Azure Cache for Redis over the processes' own TLS, no proxy.
    rport = int(wconf["redis.port"])
    check(rport in eports, f"egress does not allow Redis port {rport}")
    for name, conf in (("worker", wconf), ("sweep", sconf)):
        check(conf["redis.tls"] in (True, "true"),
              f"the {name} reaches Redis without redis.tls")
        check(conf["redis.host"] not in ("127.0.0.1", "localhost", "::1"),
              f"the {name} reaches Redis through a local proxy "
              f"({conf['redis.host']})")
    check((sconf["redis.host"], sconf["redis.port"]) ==
          (wconf["redis.host"], wconf["redis.port"]),
          "the sweep reads another Redis than the workers write")
    for doc in find(base, "Deployment") + find(base, "CronJob"):
        spec = pod_spec(doc)
        for c in spec.get("initContainers", []) + spec["containers"]:
            argv = c.get("command") or c.get("args") or []
            check(argv and argv[0].startswith("contactguard"),
                  f"{doc['metadata']['name']}/{c['name']}: runs {argv[:1]}, "
                  "not a contactguard program")
    mpol = find(base, "NetworkPolicy", "contactguard-worker-metrics")[0]
    check(selects(mpol["spec"]["podSelector"]["matchLabels"], wlabels) and
          mport in allowed_ports(mpol),
          "NetworkPolicy does not let Prometheus reach the metrics port")
    hpol = find(base, "NetworkPolicy", "contactguard-webhook-ingress")[0]
    check(selects(hpol["spec"]["podSelector"]["matchLabels"], pod_labels(hdep))
          and hport in allowed_ports(hpol),
          "NetworkPolicy does not let the ingress reach the webhook port")

    # ---- dashboard ----------------------------------------------------------
    dash = json.loads(generated["contactguard-dashboard"]
                      ["contactguard-dashboard.json"])
    check(any(p.get("targets") for p in dash["panels"]),
          "the dashboard has no queries")
    return report()


def report():
    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    print("manifests: every cross-reference holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
