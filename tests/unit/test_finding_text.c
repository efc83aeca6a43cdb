/*
 * The streaming finding writer against the Jansson trees it replaced.
 *
 * ref_compact and ref_ocsf below are the tree builders findings were
 * serialised with before common/jsonw.c (kept here, and only here, as the
 * reference). Every fixture body x rule x status x OCSF version, with and
 * without previous status and job id, and reasons holding what Azure text
 * can hold, must come out byte for byte as the trees serialise, and every
 * OCSF event must pass the conformance checker. The escaping table then
 * pins what the writer does with each kind of character, invalid UTF-8
 * included (where it is stricter than Jansson, which dropped the member).
 *
 * usage: test_finding_text FIXTURES_DIR (tests/fixtures/contacts)
 */
#include "../check.h"
#include "clock.h"
#include "contacts.h"
#include "err.h"
#include "evaluate.h"
#include "finding.h"
#include "jsonw.h"
#include "mem.h"
#include "ocsf.h"
#include "ocsf_check.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the reference: findings as Jansson trees, as they were built ------ */

static json_t *ref_refs(const struct cg_rule_info *ri)
{
    json_t *a = json_array();
    for (size_t i = 0; i < ri->nrefs; i++) {
        const struct cg_rule_ref *r = &ri->refs[i];
        json_t *o = json_object();
        json_object_set_new(o, "source", json_string(r->source));
        if (r->version)
            json_object_set_new(o, "version", json_string(r->version));
        json_object_set_new(o, "control", json_string(r->control));
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *ref_standards(const struct cg_rule_info *ri)
{
    json_t *a = json_array();
    for (size_t i = 0; i < ri->nrefs; i++) {
        const struct cg_rule_ref *r = &ri->refs[i];
        char *std = r->version ? cg_asprintf("%s %s", r->source, r->version)
                               : cg_strdup(r->source);
        bool dup = false;
        size_t j;
        json_t *e;
        json_array_foreach(a, j, e)
        {
            if (strcmp(json_string_value(e), std) == 0)
                dup = true;
        }
        if (!dup)
            json_array_append_new(a, json_string(std));
        free(std);
    }
    return a;
}

static char *ref_compact(const struct cg_finding *f, bool with_refs)
{
    const struct cg_rule_info *ri = cg_rule_info(f->rule);
    char when[40];
    cg_time_iso(f->time_ms, when, sizeof(when));
    json_t *o = json_object();
    json_object_set_new(o, "schema", json_string(CG_FINDING_SCHEMA));
    json_object_set_new(o, "rule", json_string(ri ? ri->id : "unknown"));
    json_object_set_new(o, "status", json_string(cg_status_name(f->status)));
    json_object_set_new(o, "reason_code", json_string(f->reason_code));
    json_object_set_new(o, "reason", json_string(f->reason ? f->reason : ""));
    json_object_set_new(o, "subscription_id", json_string(f->subscription_id));
    json_object_set_new(o, "tenant_id", json_string(f->tenant_id));
    json_object_set_new(o, "api_version", json_string(f->api_version));
    json_object_set_new(o, "evidence",
                        f->evidence ? json_incref(f->evidence) : json_object());
    json_object_set_new(o, "time", json_string(when));
    json_object_set_new(o, "time_ms", json_integer(f->time_ms));
    if (f->previous != CG_STATUS_NONE)
        json_object_set_new(o, "previous_status",
                            json_string(cg_status_name(f->previous)));
    if (f->job_id[0])
        json_object_set_new(o, "job_id", json_string(f->job_id));
    if (with_refs)
        json_object_set_new(o, "references", ref_refs(ri));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

struct ref_status {
    int severity_id, status_id;
    const char *status;
    int compliance_id;
    const char *compliance;
};

static const struct ref_status ref_status[] = {
    [CG_STATUS_PASS] = { 1, 4, "Resolved", 1, "Pass" },
    [CG_STATUS_FAIL] = { 0, 1, "New", 3, "Fail" },
    [CG_STATUS_ERROR] = { 2, 1, "New", 2, "Warning" },
    [CG_STATUS_SKIPPED] = { 1, 99, "Skipped", 99, "Skipped" },
};

static char *ref_ocsf(struct cg_ocsf *w, const struct cg_finding *f)
{
    const struct cg_rule_info *ri = cg_rule_info(f->rule);
    const struct ref_status *os = &ref_status[f->status];
    int sev = os->severity_id ? os->severity_id : ri->fail_severity_id;
    const char *reason = f->reason ? f->reason : "";
    char uid[37];
    cg_finding_uid(f->rule, f->subscription_id, uid);

    json_t *o = json_object();
    json_object_set_new(o, "activity_id", json_integer(1));
    json_object_set_new(o, "activity_name", json_string("Create"));
    json_object_set_new(o, "category_uid", json_integer(2));
    json_object_set_new(o, "category_name", json_string("Findings"));
    json_object_set_new(o, "class_uid", json_integer(2003));
    json_object_set_new(o, "class_name", json_string("Compliance Finding"));
    json_object_set_new(o, "type_uid", json_integer(200301));
    json_object_set_new(o, "type_name",
                        json_string("Compliance Finding: Create"));
    json_object_set_new(o, "severity_id", json_integer(sev));
    json_object_set_new(o, "severity", json_string(cg_ocsf_severity_name(sev)));
    json_object_set_new(o, "status_id", json_integer(os->status_id));
    json_object_set_new(o, "status", json_string(os->status));
    json_object_set_new(o, "time", json_integer(f->time_ms));
    json_object_set_new(o, "message", json_string(reason));
    json_object_set_new(o, "metadata", cg_ocsf_metadata(w));

    json_t *fi = json_object();
    json_object_set_new(fi, "uid", json_string(uid));
    json_object_set_new(fi, "title", json_string(ri->title));
    json_object_set_new(fi, "desc", json_string(ri->desc));
    json_t *types = json_array();
    json_array_append_new(
        types, json_string(ri->finding_type ? ri->finding_type
                                            : "Defender for Cloud security "
                                              "contact"));
    json_object_set_new(fi, "types", types);
    json_object_set_new(o, "finding_info", fi);

    json_t *comp = json_object();
    json_object_set_new(comp, "standards", ref_standards(ri));
    json_object_set(comp, "requirements", cg_rule_requirements(f->rule));
    json_object_set_new(comp, "control", json_string(ri->id));
    json_object_set_new(comp, "status_id", json_integer(os->compliance_id));
    json_object_set_new(comp, "status", json_string(os->compliance));
    json_object_set_new(comp, "status_code", json_string(f->reason_code));
    cg_ocsf_set_status_detail(w, comp, reason);
    json_object_set_new(o, "compliance", comp);

    json_object_set_new(o, "cloud",
                        cg_ocsf_cloud(w, f->subscription_id, f->tenant_id));

    json_t *res = json_object();
    const char *rtype = ri->resource_type ? ri->resource_type
                                          : "Microsoft.Security/"
                                            "securityContacts";
    char *rid = cg_asprintf("/subscriptions/%s/providers/%s",
                            f->subscription_id, rtype);
    json_object_set_new(res, "uid", json_string(rid));
    free(rid);
    json_object_set_new(res, "type", json_string(rtype));
    json_object_set_new(res, "data",
                        f->evidence ? json_incref(f->evidence) : json_object());
    cg_ocsf_set_resource(w, o, res);

    json_t *rem = json_object();
    json_object_set_new(rem, "desc", json_string(ri->remediation));
    json_t *rrefs = json_array();
    json_array_append_new(
        rrefs, json_string(ri->doc ? ri->doc
                                   : "https://learn.microsoft.com/azure/"
                                     "defender-for-cloud/"
                                     "configure-email-notifications"));
    json_object_set_new(rem, "references", rrefs);
    json_object_set_new(o, "remediation", rem);

    json_t *um = json_object();
    json_object_set_new(um, "schema", json_string(CG_FINDING_SCHEMA));
    json_object_set_new(um, "rule", json_string(ri->id));
    json_object_set_new(um, "status", json_string(cg_status_name(f->status)));
    json_object_set_new(um, "reason_code", json_string(f->reason_code));
    json_object_set_new(um, "api_version", json_string(f->api_version));
    json_object_set_new(um, "references", ref_refs(ri));
    if (f->previous != CG_STATUS_NONE)
        json_object_set_new(um, "previous_status",
                            json_string(cg_status_name(f->previous)));
    if (f->job_id[0])
        json_object_set_new(um, "job_id", json_string(f->job_id));
    json_object_set_new(o, "unmapped", um);

    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* --- the comparison --------------------------------------------------- */

/* Reasons as Azure text can make them: quotes, backslashes, every kind of
 * control character, DEL, '/', non-ASCII in 2, 3 and 4 bytes. */
static const char *const reasons[] = {
    NULL,
    "",
    "Roles lack Owner.",
    "say \"hi\" \\ back/slash",
    "ctl \x01\x02\x07\b\f\n\r\t\x0b\x1b\x1f end",
    "del \x7f",
    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92 \xe2\x80\xa8",
};

static size_t compared;

static void compare_one(struct cg_ocsf_check *chk, struct cg_ocsf *w,
                        const struct cg_finding *f, const char *what)
{
    struct cg_buf b;
    char err[512];
    cg_buf_init(&b, (size_t)1 << 24);
    /* A buffer that already holds a message: the writer appends. */
    cg_buf_puts(&b, "{\"x\":1}");
    if (w) {
        struct cg_ocsf wref = *w, wheap = *w; /* the same metadata.uid */
        char *want = ref_ocsf(&wref, f);
        CHECK(cg_finding_write_ocsf(w, &b, f) == 0, "%s: write", what);
        CHECK(want && strcmp(b.data + 7, want) == 0,
              "%s: OCSF %s differs\n got %s\nwant %s", what, w->v->name,
              b.data + 7, want);
        int n =
            cg_ocsf_check_event(chk, b.data + 7, b.len - 7, err, sizeof(err));
        CHECK(n == 0, "%s: OCSF %s not conformant: %s", what, w->v->name, err);
        char *heap = cg_finding_ocsf(&wheap, f);
        CHECK(strcmp(heap, want) == 0, "%s: cg_finding_ocsf differs", what);
        free(heap);
        free(want);
    } else {
        for (int refs = 0; refs < 2; refs++) {
            char *want = ref_compact(f, refs);
            b.len = 7;
            CHECK(cg_finding_write_compact(&b, f, refs) == 0, "%s: write",
                  what);
            CHECK(want && strcmp(b.data + 7, want) == 0,
                  "%s: compact (refs %d) differs\n got %s\nwant %s", what, refs,
                  b.data + 7, want);
            free(want);
        }
    }
    compared++;
    cg_buf_free(&b);
}

static void compare_findings(struct cg_ocsf_check *chk,
                             struct cg_finding f[CG_RULE_COUNT],
                             const char *name)
{
    for (size_t vi = 0;; vi++) {
        const struct cg_ocsf_version *v =
            vi ? cg_ocsf_version_at(vi - 1) : NULL;
        if (vi && !v)
            break;
        struct cg_ocsf w;
        cg_ocsf_init(&w, v);
        for (int r = 0; r < CG_RULE_COUNT; r++) {
            struct cg_finding x = f[r];
            for (int st = CG_STATUS_PASS; st <= CG_STATUS_SKIPPED; st++) {
                for (int extra = 0; extra < 2; extra++) {
                    char what[256];
                    x.status = (enum cg_status)st;
                    x.previous = extra ? CG_STATUS_FAIL : CG_STATUS_NONE;
                    cg_strlcpy(x.job_id, extra ? "job-\"7\"" : "",
                               sizeof(x.job_id));
                    snprintf(what, sizeof(what), "%s rule %s status %s%s", name,
                             cg_rule_info(x.rule)->id, cg_status_name(x.status),
                             extra ? " +previous +job" : "");
                    compare_one(chk, v ? &w : NULL, &x, what);
                }
            }
        }
    }
}

static void test_fixtures(struct cg_ocsf_check *chk, const char *dir)
{
    static const char *const eras[] = { "2017", "2020", "2023", "hostile" };
    struct cg_rules_conf rc;
    cg_rules_conf_default(&rc);
    size_t files = 0;
    for (size_t e = 0; e < sizeof(eras) / sizeof(eras[0]); e++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, eras[e]);
        DIR *d = opendir(path);
        REQUIRE(d != NULL, "cannot open %s", path);
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strstr(de->d_name, ".json"))
                continue;
            char file[1300], err[256];
            snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
            struct cg_buf body;
            cg_buf_init(&body, 1 << 22);
            CHECK(cg_buf_read_file(&body, file, err, sizeof(err)) == 0, "%s",
                  err);
            struct cg_contacts ct;
            struct cg_finding f[CG_RULE_COUNT];
            memset(f, 0, sizeof(f));
            cg_contacts_init(&ct);
            cg_evaluate_body(body.data ? body.data : "", body.len,
                             CG_API_UNKNOWN, NULL, &rc, &ct, f);
            for (int r = 0; r < CG_RULE_COUNT; r++) {
                cg_strlcpy(f[r].subscription_id,
                           "0B1F6471-1bf0-4dda-aec3-cb9272f09590",
                           sizeof(f[r].subscription_id));
                cg_strlcpy(f[r].tenant_id,
                           "72f988bf-86f1-41af-91ab-2d7cd011db47",
                           sizeof(f[r].tenant_id));
                cg_strlcpy(f[r].api_version, "2023-12-01-preview",
                           sizeof(f[r].api_version));
                f[r].time_ms = 1795961607781LL;
            }
            compare_findings(chk, f, file);
            files++;
            for (int r = 0; r < CG_RULE_COUNT; r++)
                cg_finding_clear(&f[r]);
            cg_contacts_free(&ct);
            cg_buf_free(&body);
        }
        closedir(d);
    }
    CHECK(files >= 40, "only %zu fixture bodies found under %s", files, dir);
}

/* Reasons and evidence with every kind of character; an unknown tenant and
 * subscription (contactguard-eval) leave cloud's objects out. */
static void test_hostile_text(struct cg_ocsf_check *chk)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        struct cg_finding f[CG_RULE_COUNT];
        memset(f, 0, sizeof(f));
        for (int r = 0; r < CG_RULE_COUNT; r++) {
            f[r].rule = (enum cg_rule)r;
            cg_strlcpy(f[r].reason_code, "REASON", sizeof(f[r].reason_code));
            f[r].reason = reasons[i] ? cg_strdup(reasons[i]) : NULL;
            f[r].evidence = r % 2 ? json_pack("{s:s,s:f,s:[i,b,n]}", "text",
                                              reasons[i] ? reasons[i] : "-",
                                              "real", 0.1, "list", -3, 1)
                                  : NULL;
            if (r != 1)
                cg_strlcpy(f[r].subscription_id, "sub", 40);
            if (r != 2)
                cg_strlcpy(f[r].tenant_id, "tenant", 40);
            f[r].time_ms = 1700000000123LL;
        }
        char name[32];
        snprintf(name, sizeof(name), "reason %zu", i);
        compare_findings(chk, f, name);
        for (int r = 0; r < CG_RULE_COUNT; r++)
            cg_finding_clear(&f[r]);
    }
}

/* The writer alone: what each input becomes. */
struct esc_row {
    const char *in;
    size_t len;
    const char *out;
};

#define ROW(s, o)                                                              \
    {                                                                          \
        s, sizeof(s) - 1, o                                                    \
    }

static const struct esc_row esc_rows[] = {
    ROW("", "\"\""), ROW("plain", "\"plain\""), ROW("\"\\/", "\"\\\"\\\\/\""),
    ROW("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\""),
    ROW("\x01\x1f\x0b", "\"\\u0001\\u001F\\u000B\""),
    ROW("a\0b", "\"a\\u0000b\""), ROW("\x7f", "\"\x7f\""),
    ROW("\xc3\xa9\xf0\x9f\x94\x92", "\"\xc3\xa9\xf0\x9f\x94\x92\""),
    /* Invalid UTF-8: each bad byte becomes U+FFFD. */
    ROW("a\xff"
        "b",
        "\"a\xef\xbf\xbd"
        "b\""),
    ROW("\xc3", "\"\xef\xbf\xbd\""),                 /* cut sequence */
    ROW("\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\""), /* overlong '/' */
    ROW("\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""), /* D800 */
    ROW("\xf4\x90\x80\x80",
        "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""), /* >10FFFF */
};

static void test_escaping(void)
{
    for (size_t i = 0; i < sizeof(esc_rows) / sizeof(esc_rows[0]); i++) {
        const struct esc_row *row = &esc_rows[i];
        struct cg_buf b;
        struct cg_jsonw jw;
        cg_buf_init(&b, 1024);
        cg_jsonw_init(&jw, &b);
        cg_jsonw_strn(&jw, row->in, row->len);
        CHECK(cg_jsonw_error(&jw) == 0 && strcmp(b.data, row->out) == 0,
              "row %zu: got %s want %s", i, b.data, row->out);
        /* Where Jansson takes the string, the writer writes what it did. */
        json_t *s = json_stringn(row->in, row->len);
        if (s) {
            char *j = json_dumps(s, JSON_ENCODE_ANY);
            CHECK(strcmp(j, b.data) == 0, "row %zu: Jansson writes %s", i, j);
            free(j);
            json_decref(s);
        }
        cg_buf_free(&b);
    }
    /* Commas follow the structure, and a full buffer is a sticky error. */
    struct cg_buf b;
    struct cg_jsonw jw;
    cg_buf_init(&b, 40);
    cg_jsonw_init(&jw, &b);
    cg_jsonw_open(&jw, '{');
    cg_jsonw_kopen(&jw, "a", '[');
    cg_jsonw_int(&jw, 1);
    cg_jsonw_str(&jw, "x");
    cg_jsonw_open(&jw, '{');
    cg_jsonw_close(&jw, '}');
    cg_jsonw_close(&jw, ']');
    cg_jsonw_kint(&jw, "b", -2);
    cg_jsonw_key(&jw, "c");
    cg_jsonw_value(&jw, NULL);
    cg_jsonw_close(&jw, '}');
    CHECK(cg_jsonw_error(&jw) == 0 &&
              strcmp(b.data, "{\"a\":[1,\"x\",{}],\"b\":-2,\"c\":null}") == 0,
          "structure: %s", b.data);
    cg_jsonw_kstr(&jw, "too", "long for forty bytes");
    CHECK(cg_jsonw_error(&jw) == CG_ETOOBIG, "a full buffer is an error");
    size_t len = b.len;
    cg_jsonw_int(&jw, 5);
    CHECK(b.len == len, "nothing is written after the error");
    cg_buf_free(&b);
}

int main(int argc, char **argv)
{
    char err[2048];
    if (argc < 2) {
        fprintf(stderr, "usage: test_finding_text FIXTURES_DIR\n");
        return 2;
    }
    struct cg_ocsf_check *chk =
        cg_ocsf_check_new(CG_OCSF_CHECK_TABLES, err, sizeof(err));
    CHECK(chk != NULL, "conformance tables: %s", err);
    if (chk) {
        test_fixtures(chk, argv[1]);
        test_hostile_text(chk);
        cg_ocsf_check_free(chk);
    }
    test_escaping();
    printf("findings compared: %zu\n", compared);
    return check_done("test_finding_text");
}
