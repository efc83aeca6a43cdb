#!/usr/bin/env python3
"""Write the OCSF conformance table of one schema version.

usage: derive_table.py SCHEMA_GIT_DIR TAG VERSION > tests/ocsf/VERSION.json

Reads, at the tag, the files that define the Compliance Finding class and
the objects contactguard's events carry (events/base_event.json,
events/findings/finding.json, events/findings/compliance_finding.json, the
includes and the cloud profile they pull in, objects/*.json, dictionary.json)
and writes one row per attribute: the object it belongs to, requirement,
type, array, enum (id -> caption), sibling, deprecation, and the files the
row comes from. Attributes are merged as the schema server merges them:
dictionary.json first, then each ancestor, the child last (enums merge id by
id). Profiles other than `cloud` are left out: contactguard declares only
`cloud` in metadata.profiles, so their attributes would not conform.
"""
import json
import subprocess
import sys

GIT, TAG, VERSION = sys.argv[1], sys.argv[2], sys.argv[3]
PROFILES = ["cloud"]
OBJECTS = ["metadata", "product", "finding_info", "compliance", "cloud",
           "account", "organization", "resource_details", "remediation"]


def load(path):
    out = subprocess.run(["git", "--git-dir", GIT, "show",
                          "refs/tags/%s:%s" % (TAG, path)],
                         capture_output=True, check=True)
    return json.loads(out.stdout)


DICT = load("dictionary.json")
DATTR = DICT["attributes"]
DTYPES = DICT["types"]["attributes"]


def merge(dst, src, origin):
    for name, spec in src.items():
        row = dst.setdefault(name, {"from": []})
        for k, v in spec.items():
            if k == "enum":
                row.setdefault("enum", {}).update(v)
            else:
                row[k] = v
        if origin not in row["from"]:
            row["from"].append(origin)


def attributes(path, skip_profiles):
    """Attributes of a class or object file with its includes, no parent."""
    doc = load(path)
    attrs = {}
    for inc in doc.get("attributes", {}).get("$include", []):
        if inc.startswith("profiles/"):
            name = inc[len("profiles/"):-len(".json")]
            if skip_profiles and name not in PROFILES:
                continue
            sub = load(inc)["attributes"]
            for a in sub.values():
                a["profile"] = name
            merge(attrs, sub, inc)
        else:
            merge(attrs, load(inc)["attributes"], inc)
    own = {k: v for k, v in doc.get("attributes", {}).items()
           if k != "$include"}
    merge(attrs, own, path)
    return doc, attrs


def chain(path):
    """An object file and its ancestors, root first."""
    files = []
    while path:
        doc = load(path)
        files.insert(0, path)
        parent = doc.get("extends")
        if not parent or parent == "object":
            break
        path = "objects/%s.json" % parent
    return files


def resolve(files):
    attrs = {}
    constraints = {}
    for f in files:
        doc, a = attributes(f, True)
        for name, spec in a.items():
            base = dict(DATTR.get(name, {}))
            row = attrs.get(name)
            if row is None:
                row = {"from": ["dictionary.json"]}
                merge({name: row}, {name: base}, "dictionary.json")
                row = {k: v for k, v in row.items()}
                attrs[name] = row
            for k, v in spec.items():
                if k == "from":
                    for o in v:
                        if o not in row["from"]:
                            row["from"].append(o)
                elif k == "enum":
                    row.setdefault("enum", {}).update(v)
                else:
                    row[k] = v
        for k, v in doc.get("constraints", {}).items():
            constraints[k] = {"attributes": v, "from": f}
    return attrs, constraints


def base_type(t):
    while t in DTYPES and DTYPES[t].get("type"):
        t = DTYPES[t]["type"]
    return t


def rows_for(obj, attrs):
    rows = []
    for name in sorted(attrs):
        a = attrs[name]
        t = a.get("type", "object_t")
        row = {"object": obj, "attribute": name,
               "requirement": a.get("requirement", "optional"),
               "type": t if t.endswith("_t") or t == "object" else "object",
               }
        if not (t.endswith("_t") or t == "object"):
            row["object_type"] = t
        elif t.endswith("_t") and base_type(t) != t:
            row["base_type"] = base_type(t)
        if a.get("is_array"):
            row["array"] = True
        if a.get("enum"):
            row["enum"] = {k: v.get("caption") for k, v in
                           sorted(a["enum"].items(), key=lambda kv: int(kv[0]))}
        if a.get("sibling"):
            row["sibling"] = a["sibling"]
        if a.get("@deprecated"):
            row["deprecated"] = a["@deprecated"].get("since", "yes")
        if a.get("profile"):
            row["profile"] = a["profile"]
        row["from"] = "%s %s" % (VERSION, ", ".join(a["from"]))
        rows.append(row)
    return rows


def main():
    cls_files = ["events/base_event.json", "events/findings/finding.json",
                 "events/findings/compliance_finding.json"]
    attrs, _ = resolve(cls_files)
    cls = load("events/findings/compliance_finding.json")
    cats = load("categories.json")["attributes"]
    cat = cats[cls.get("category") or
               load("events/findings/finding.json")["category"]]
    class_uid = cat["uid"] * 1000 + cls["uid"]
    origin = "%s events/findings/compliance_finding.json, categories.json" % (
        VERSION)
    # The class's own ids, as the server derives them.
    attrs["class_uid"]["enum"] = {str(class_uid): {"caption": cls["caption"]}}
    attrs["category_uid"]["enum"] = {str(cat["uid"]): {
        "caption": cat["caption"]}}
    acts = attrs["activity_id"]["enum"]
    attrs["type_uid"]["enum"] = {
        str(class_uid * 100 + int(k)): {
            "caption": "%s: %s" % (cls["caption"], v["caption"])}
        for k, v in acts.items()}
    for k in ("class_uid", "category_uid", "type_uid"):
        attrs[k]["from"].append("categories.json (derived ids)")
    rows = rows_for("compliance_finding", attrs)
    constraints = []
    for obj in OBJECTS:
        a, c = resolve(chain("objects/%s.json" % obj))
        rows += rows_for(obj, a)
        for k, v in c.items():
            constraints.append({"object": obj, "constraint": k,
                                "attributes": v["attributes"],
                                "from": "%s %s" % (VERSION, v["from"])})
    types = {t: base_type(t) for t in DTYPES}
    out = {
        "schema": "contactguard.ocsf-conformance/1",
        "ocsf_version": VERSION,
        "source": "github.com/ocsf/ocsf-schema at tag %s" % TAG,
        "class": {"name": "compliance_finding", "uid": class_uid,
                  "from": origin},
        "profiles": PROFILES,
        "types": {k: v for k, v in sorted(types.items()) if k != v},
        "constraints": constraints,
        "rows": rows,
    }
    # One row a line: the table is read by people as well as the checker.
    sys.stdout.write("{\n")
    keys = [k for k in out if k != "rows"]
    for k in keys:
        sys.stdout.write(" %s: %s,\n" % (json.dumps(k), json.dumps(out[k])))
    sys.stdout.write(' "rows": [\n')
    sys.stdout.write(",\n".join("  " + json.dumps(r) for r in rows))
    sys.stdout.write("\n ]\n}\n")


main()
