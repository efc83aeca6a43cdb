#include "finding.h"

#include "clock.h"
#include "err.h"
#include "json.h"
#include "jsonw.h"
#include "mem.h"
#include "ocsf.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CIS "CIS Microsoft Azure Foundations Benchmark"

static const struct cg_rule_ref owner_refs[] = {
    { "Trend Micro Cloud One Conformity", NULL, "SecurityCenter-019" },
    { CIS, "1.3.0", "2.15" },
    { CIS, "1.4.0", "2.15" },
    { CIS, "1.5.0", "2.3.1" },
    { CIS, "2.0.0", "2.1.18" },
    { CIS, "2.1.0", "2.1.17" },
    { CIS, "3.0.0", "3.1.12" },
    { CIS, "4.0.0", "9.1.12" },
    { CIS, "5.0.0", "8.1.12" },
    { "Lacework", NULL, "lacework-global-525" },
};

static const struct cg_rule_ref email_refs[] = {
    { "Lacework", NULL, "lacework-global-526" },
    { CIS, "1.3.0", "2.13" },
    { CIS, "1.4.0", "2.13" },
    { CIS, "1.5.0", "2.3.2" },
    { CIS, "2.0.0", "2.1.19" },
    { CIS, "2.1.0", "2.1.18" },
    { CIS, "3.0.0", "3.1.13" },
    { CIS, "4.0.0", "9.1.13" },
    { CIS, "5.0.0", "8.1.13" },
    { "Trend Micro Cloud One Conformity", NULL, "SecurityCenter-016" },
    { "Azure Policy", NULL, "4f4f78b8-e367-4b10-a341-d9a4ad5cf1c7" },
};

static const struct cg_rule_ref severity_refs[] = {
    { CIS, "1.3.0", "2.14" },
    { CIS, "1.4.0", "2.14" },
    { CIS, "1.5.0", "2.3.3" },
    { CIS, "2.0.0", "2.1.20" },
    { CIS, "2.1.0", "2.1.19" },
    { CIS, "3.0.0", "3.1.14" },
    { CIS, "4.0.0", "9.1.14" },
    { CIS, "5.0.0", "8.1.14" },
    { "Trend Micro Cloud One Conformity", NULL, "SecurityCenter-018" },
    { "Azure Policy", NULL, "6e2593d9-add6-4083-9c9b-4b7d2188c899" },
};

static const struct cg_rule_ref attack_refs[] = {
    { CIS, "4.0.0", "9.1.15" },
    { CIS, "5.0.0", "8.1.15" },
};

/* No benchmark defines this check yet (CIS, Conformity, Lacework and Azure
 * Policy all stop at "Owner is notified"): the control is our own, so a
 * SIEM can still map it. */
static const struct cg_rule_ref reachable_refs[] = {
    { "contactguard", NULL, "owner-reachable" },
};

#define REFS(a) a, sizeof(a) / sizeof(a[0])

static const struct cg_rule_info rules[CG_RULE_COUNT] = {
    [CG_RULE_OWNER_ALERTS] = { "owner-alerts",
                               "Security alert emails are sent to subscription "
                               "owners",
                               "Microsoft Defender for Cloud emails users with "
                               "the Owner role of "
                               "the subscription when an alert fires.",
                               "In Defender for Cloud > Environment settings > "
                               "Email "
                               "notifications, select Owner under 'All users "
                               "with the following "
                               "roles' (notificationsByRole state On with role "
                               "Owner).",
                               3, REFS(owner_refs), NULL, NULL, NULL },
    [CG_RULE_ADDITIONAL_EMAILS] = { "additional-emails",
                                    "Additional email addresses hold a "
                                    "security contact",
                                    "At least one valid address is configured "
                                    "in 'Additional email "
                                    "addresses' so the security team receives "
                                    "alerts.",
                                    "In Defender for Cloud > Environment "
                                    "settings > Email "
                                    "notifications, enter the security team's "
                                    "address under "
                                    "'Additional email addresses' (emails, "
                                    "';'-separated).",
                                    3, REFS(email_refs), NULL, NULL, NULL },
    [CG_RULE_ALERT_SEVERITY] = { "alert-severity",
                                 "Email notifications are sent for alerts of "
                                 "high severity",
                                 "Alert email notifications are on with a "
                                 "minimal severity that "
                                 "includes High alerts.",
                                 "In Defender for Cloud > Environment settings "
                                 "> Email "
                                 "notifications, turn on 'Notify about alerts "
                                 "with the following "
                                 "severity (or higher)' and choose High or "
                                 "lower.",
                                 3, REFS(severity_refs), NULL, NULL, NULL },
    [CG_RULE_ATTACK_PATHS] = { "attack-paths",
                               "Email notifications are sent for attack paths",
                               "Attack path notifications are on with a "
                               "minimal risk level that "
                               "includes the configured level.",
                               "In Defender for Cloud > Environment settings > "
                               "Email "
                               "notifications, turn on 'Notify about attack "
                               "paths with the "
                               "following risk level (or higher)' and choose "
                               "High or lower.",
                               2, REFS(attack_refs), NULL, NULL, NULL },
    [CG_RULE_OWNER_REACHABLE] = { "owner-reachable",
                                  "A user holds the Owner role that owner "
                                  "alerts are mailed to",
                                  "Defender for Cloud mails the Owner role of "
                                  "the subscription; the "
                                  "mail reaches a person only if at least one "
                                  "Owner role assignment "
                                  "(inherited ones included) is held by a "
                                  "user, not only by service "
                                  "principals, managed identities or groups. "
                                  "No benchmark defines "
                                  "this check yet.",
                                  "Assign the Owner role on the subscription "
                                  "(or on a management "
                                  "group above it) to a named user who reads "
                                  "security mail, or rely "
                                  "on the security team's address under "
                                  "'Additional email "
                                  "addresses'. contactguard never changes role "
                                  "assignments.",
                                  3, REFS(reachable_refs),
                                  "Microsoft.Authorization/roleAssignments",
                                  "Azure role assignment",
                                  "https://learn.microsoft.com/azure/"
                                  "role-based-access-control/"
                                  "role-assignments-portal-subscription-"
                                  "admin" },
};

const struct cg_rule_info *cg_rule_info(enum cg_rule rule)
{
    return (unsigned)rule < CG_RULE_COUNT ? &rules[rule] : NULL;
}

enum cg_rule cg_rule_parse(const char *id)
{
    for (int r = 0; r < CG_RULE_COUNT; r++)
        if (id && strcmp(id, rules[r].id) == 0)
            return (enum cg_rule)r;
    return CG_RULE_COUNT;
}

static const char *const status_names[] = { "PASS", "FAIL", "ERROR", "SKIPPED",
                                            "NONE" };

const char *cg_status_name(enum cg_status s)
{
    return (unsigned)s <= CG_STATUS_NONE ? status_names[s] : "NONE";
}

enum cg_status cg_status_parse(const char *s)
{
    for (int i = 0; i < CG_STATUS_NONE; i++)
        if (s && strcasecmp(s, status_names[i]) == 0)
            return (enum cg_status)i;
    return CG_STATUS_NONE;
}

void cg_finding_set(struct cg_finding *f, enum cg_rule rule,
                    enum cg_status status, const char *reason_code,
                    const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    f->rule = rule;
    f->status = status;
    cg_strlcpy(f->reason_code, reason_code, sizeof(f->reason_code));
    free(f->reason);
    f->reason = cg_strdup(buf);
}

void cg_finding_clear(struct cg_finding *f)
{
    free(f->reason);
    json_decref(f->evidence);
    memset(f, 0, sizeof(*f));
    f->previous = CG_STATUS_NONE;
}

void cg_finding_copy(struct cg_finding *dst, const struct cg_finding *src)
{
    *dst = *src;
    dst->reason = src->reason ? cg_strdup(src->reason) : NULL;
    dst->evidence = src->evidence ? json_deep_copy(src->evidence) : NULL;
}

static json_t *refs_json(const struct cg_rule_info *ri)
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

/*
 * What every finding of a rule repeats — its references, and the OCSF
 * standards and requirements derived from them — built once per process.
 * Written once under pthread_once, read-only afterwards (shared json_t
 * values are only ever incref'd, which Jansson does atomically).
 */
struct rule_shared {
    json_t *refs;
    char *refs_text;
    json_t *standards;
    json_t *requirements;
    /* What an OCSF finding of the rule repeats, as JSON text. */
    char *standards_text;
    char *requirements_text;
    char *info_text;        /* finding_info after its uid, no braces */
    char *remediation_text; /* the remediation object */
};

/* Every OCSF finding opens the same way. */
static const char ocsf_head[] =
    "{\"activity_id\":1,\"activity_name\":\"Create\",\"category_uid\":2,"
    "\"category_name\":\"Findings\",\"class_uid\":2003,"
    "\"class_name\":\"Compliance Finding\",\"type_uid\":200301,"
    "\"type_name\":\"Compliance Finding: Create\"";

/* The members of o as text, without its braces. */
static char *members_text(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t n = strlen(s);
    memmove(s, s + 1, n - 2);
    s[n - 2] = '\0';
    json_decref(o);
    return s;
}

static char *dump_text(json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

static struct rule_shared rule_shared[CG_RULE_COUNT];
/* The contact rules' standards, once each: what a remediation event
 * concerns (owner-reachable reads role assignments, which it never
 * touches). */
static json_t *all_standards;
static pthread_once_t rule_shared_once = PTHREAD_ONCE_INIT;

static void rule_shared_init(void)
{
    all_standards = json_array();
    for (int r = 0; r < CG_RULE_COUNT; r++) {
        const struct cg_rule_info *ri = &rules[r];
        struct rule_shared *rs = &rule_shared[r];
        rs->refs = refs_json(ri);
        rs->refs_text =
            json_dumps(rs->refs, JSON_COMPACT | JSON_PRESERVE_ORDER);
        rs->standards = json_array();
        rs->requirements = json_array();
        for (size_t i = 0; i < ri->nrefs; i++) {
            const struct cg_rule_ref *ref = &ri->refs[i];
            char *std = ref->version
                            ? cg_asprintf("%s %s", ref->source, ref->version)
                            : cg_strdup(ref->source);
            bool dup = false;
            size_t j;
            json_t *e;
            json_array_foreach(rs->standards, j, e)
            {
                if (strcmp(json_string_value(e), std) == 0)
                    dup = true;
            }
            if (!dup)
                json_array_append_new(rs->standards, json_string(std));
            dup = false;
            json_array_foreach(all_standards, j, e)
            {
                if (strcmp(json_string_value(e), std) == 0)
                    dup = true;
            }
            if (!dup && !ri->resource_type)
                json_array_append_new(all_standards, json_string(std));
            char *req = cg_asprintf("%s %s", std, ref->control);
            json_array_append_new(rs->requirements, json_string(req));
            free(req);
            free(std);
        }
        rs->standards_text = dump_text(rs->standards);
        rs->requirements_text = dump_text(rs->requirements);
        json_t *fi = json_object();
        json_object_set_new(fi, "title", json_string(ri->title));
        json_object_set_new(fi, "desc", json_string(ri->desc));
        json_t *types = json_array();
        json_array_append_new(types, json_string(ri->finding_type
                                                     ? ri->finding_type
                                                     : "Defender for Cloud "
                                                       "security contact"));
        json_object_set_new(fi, "types", types);
        rs->info_text = members_text(fi);
        json_t *rem = json_object();
        json_object_set_new(rem, "desc", json_string(ri->remediation));
        json_t *rrefs = json_array();
        json_array_append_new(
            rrefs, json_string(ri->doc ? ri->doc
                                       : "https://learn.microsoft.com/azure/"
                                         "defender-for-cloud/"
                                         "configure-email-notifications"));
        json_object_set_new(rem, "references", rrefs);
        rs->remediation_text = dump_text(rem);
        json_decref(rem);
    }
}

static const struct rule_shared *shared(enum cg_rule rule)
{
    pthread_once(&rule_shared_once, rule_shared_init);
    return (unsigned)rule < CG_RULE_COUNT ? &rule_shared[rule] : NULL;
}

int cg_finding_write_compact(struct cg_buf *b, const struct cg_finding *f,
                             bool with_refs)
{
    const struct cg_rule_info *ri = cg_rule_info(f->rule);
    char when[40];
    struct cg_jsonw jw;
    cg_time_iso(f->time_ms, when, sizeof(when));
    cg_jsonw_init(&jw, b);
    cg_jsonw_open(&jw, '{');
    cg_jsonw_kstr(&jw, "schema", CG_FINDING_SCHEMA);
    cg_jsonw_kstr(&jw, "rule", ri ? ri->id : "unknown");
    cg_jsonw_kstr(&jw, "status", cg_status_name(f->status));
    cg_jsonw_kstr(&jw, "reason_code", f->reason_code);
    cg_jsonw_kstr(&jw, "reason", f->reason ? f->reason : "");
    cg_jsonw_kstr(&jw, "subscription_id", f->subscription_id);
    cg_jsonw_kstr(&jw, "tenant_id", f->tenant_id);
    cg_jsonw_kstr(&jw, "api_version", f->api_version);
    cg_jsonw_key(&jw, "evidence");
    if (f->evidence)
        cg_jsonw_value(&jw, f->evidence);
    else
        cg_jsonw_raw(&jw, "{}", 2);
    cg_jsonw_kstr(&jw, "time", when);
    cg_jsonw_kint(&jw, "time_ms", f->time_ms);
    if (f->previous != CG_STATUS_NONE)
        cg_jsonw_kstr(&jw, "previous_status", cg_status_name(f->previous));
    if (f->job_id[0])
        cg_jsonw_kstr(&jw, "job_id", f->job_id);
    if (with_refs) {
        /* The same for every finding of a rule: written once per process. */
        const struct rule_shared *rs = shared(f->rule);
        cg_jsonw_key(&jw, "references");
        if (rs)
            cg_jsonw_raw(&jw, rs->refs_text, strlen(rs->refs_text));
        else
            cg_jsonw_raw(&jw, "[]", 2);
    }
    cg_jsonw_close(&jw, '}');
    return cg_jsonw_error(&jw);
}

static char *finding_compact(const struct cg_finding *f, bool with_refs)
{
    struct cg_buf b;
    cg_buf_init(&b, CG_FINDING_TEXT_MAX);
    cg_finding_write_compact(&b, f, with_refs);
    return cg_buf_take(&b);
}

char *cg_finding_compact(const struct cg_finding *f)
{
    return finding_compact(f, true);
}

char *cg_finding_compact_lean(const struct cg_finding *f)
{
    return finding_compact(f, false);
}

void cg_finding_uid(enum cg_rule rule, const char *subscription_id,
                    char out[37])
{
    const struct cg_rule_info *ri = cg_rule_info(rule);
    cg_ocsf_uid5(ri ? ri->id : "unknown", subscription_id, out);
}

/*
 * How a contactguard status reads in OCSF, the same in every supported
 * version (finding.json's status_id, compliance.json's status_id). The
 * string beside each id is the caption of the id, as the schema asks; for
 * 99 Other it is ours. ERROR is compliance 2 Warning, "the compliance check
 * did not yield a result due to missing information", which is what an
 * unreadable or forbidden contact is; SKIPPED (the subscription cannot be
 * audited) is no check at all: Other, "Skipped".
 */
struct ocsf_status {
    int severity_id; /* 0: the rule's fail_severity_id */
    int status_id;
    const char *status;
    int compliance_id;
    const char *compliance;
};

static const struct ocsf_status ocsf_status[] = {
    [CG_STATUS_PASS] = { 1, 4, "Resolved", 1, "Pass" },
    [CG_STATUS_FAIL] = { 0, 1, "New", 3, "Fail" },
    [CG_STATUS_ERROR] = { 2, 1, "New", 2, "Warning" },
    [CG_STATUS_SKIPPED] = { 1, 99, "Skipped", 99, "Skipped" },
};

int cg_finding_write_ocsf(struct cg_ocsf *w, struct cg_buf *b,
                          const struct cg_finding *f)
{
    const struct cg_rule_info *ri = cg_rule_info(f->rule);
    const struct rule_shared *rs = shared(f->rule);
    const struct ocsf_status *os =
        &ocsf_status[(unsigned)f->status <= CG_STATUS_SKIPPED
                         ? f->status
                         : CG_STATUS_ERROR];
    int sev = os->severity_id ? os->severity_id : ri->fail_severity_id;
    const char *reason = f->reason ? f->reason : "";
    char uid[37];
    struct cg_jsonw jw;
    cg_finding_uid(f->rule, f->subscription_id, uid);
    cg_jsonw_init(&jw, b);

    cg_jsonw_raw(&jw, ocsf_head, sizeof(ocsf_head) - 1);
    cg_jsonw_kint(&jw, "severity_id", sev);
    cg_jsonw_kstr(&jw, "severity", cg_ocsf_severity_name(sev));
    cg_jsonw_kint(&jw, "status_id", os->status_id);
    cg_jsonw_kstr(&jw, "status", os->status);
    cg_jsonw_kint(&jw, "time", f->time_ms);
    cg_jsonw_kstr(&jw, "message", reason);
    cg_ocsf_write_metadata(w, &jw);

    cg_jsonw_kopen(&jw, "finding_info", '{');
    cg_jsonw_kstr(&jw, "uid", uid);
    cg_jsonw_raw(&jw, rs->info_text, strlen(rs->info_text));
    cg_jsonw_close(&jw, '}');

    cg_jsonw_kopen(&jw, "compliance", '{');
    cg_jsonw_key(&jw, "standards");
    cg_jsonw_raw(&jw, rs->standards_text, strlen(rs->standards_text));
    cg_jsonw_key(&jw, "requirements");
    cg_jsonw_raw(&jw, rs->requirements_text, strlen(rs->requirements_text));
    cg_jsonw_kstr(&jw, "control", ri->id);
    cg_jsonw_kint(&jw, "status_id", os->compliance_id);
    cg_jsonw_kstr(&jw, "status", os->compliance);
    cg_jsonw_kstr(&jw, "status_code", f->reason_code);
    cg_ocsf_write_status_detail(w, &jw, reason);
    cg_jsonw_close(&jw, '}');

    cg_ocsf_write_cloud(w, &jw, f->subscription_id, f->tenant_id);

    cg_ocsf_write_resource_begin(w, &jw);
    cg_jsonw_key(&jw, "uid");
    const char *rtype = ri->resource_type ? ri->resource_type
                                          : "Microsoft.Security/"
                                            "securityContacts";
    char rid[256];
    int rl = snprintf(rid, sizeof(rid), "/subscriptions/%s/providers/%s",
                      f->subscription_id, rtype);
    cg_jsonw_strn(&jw, rid,
                  (size_t)rl < sizeof(rid) ? (size_t)rl : sizeof(rid) - 1);
    cg_jsonw_kstr(&jw, "type", rtype);
    cg_jsonw_key(&jw, "data");
    if (f->evidence)
        cg_jsonw_value(&jw, f->evidence);
    else
        cg_jsonw_raw(&jw, "{}", 2);
    cg_ocsf_write_resource_end(w, &jw);

    cg_jsonw_key(&jw, "remediation");
    cg_jsonw_raw(&jw, rs->remediation_text, strlen(rs->remediation_text));

    /* What OCSF has no place for, and contactguard's own status word
     * (compliance.status is the schema's caption). */
    cg_jsonw_kopen(&jw, "unmapped", '{');
    cg_jsonw_kstr(&jw, "schema", CG_FINDING_SCHEMA);
    cg_jsonw_kstr(&jw, "rule", ri->id);
    cg_jsonw_kstr(&jw, "status", cg_status_name(f->status));
    cg_jsonw_kstr(&jw, "reason_code", f->reason_code);
    cg_jsonw_kstr(&jw, "api_version", f->api_version);
    cg_jsonw_key(&jw, "references");
    cg_jsonw_raw(&jw, rs->refs_text, strlen(rs->refs_text));
    if (f->previous != CG_STATUS_NONE)
        cg_jsonw_kstr(&jw, "previous_status", cg_status_name(f->previous));
    if (f->job_id[0])
        cg_jsonw_kstr(&jw, "job_id", f->job_id);
    cg_jsonw_close(&jw, '}');
    cg_jsonw_close(&jw, '}');
    return cg_jsonw_error(&jw);
}

char *cg_finding_ocsf(struct cg_ocsf *w, const struct cg_finding *f)
{
    struct cg_buf b;
    cg_buf_init(&b, CG_FINDING_TEXT_MAX);
    cg_finding_write_ocsf(w, &b, f);
    return cg_buf_take(&b);
}

json_t *cg_rule_requirements(enum cg_rule rule)
{
    const struct rule_shared *rs = shared(rule);
    return rs ? rs->requirements : NULL;
}

json_t *cg_rule_all_standards(void)
{
    pthread_once(&rule_shared_once, rule_shared_init);
    return all_standards;
}

int cg_finding_parse(const char *s, size_t len, struct cg_finding *out,
                     char *errbuf, size_t errsz)
{
    char jerr[160];
    json_t *o = cg_json_parse(s, len, jerr, sizeof(jerr));
    if (!o)
        return cg_err_set(errbuf, errsz, CG_EPARSE, "finding is not JSON: %s",
                          jerr);
    int rc = 0;
    const char *schema = cg_json_str(o, "schema");
    enum cg_rule rule = cg_rule_parse(cg_json_str(o, "rule"));
    enum cg_status status = cg_status_parse(cg_json_str(o, "status"));
    if (!schema || strcmp(schema, CG_FINDING_SCHEMA) != 0 ||
        rule == CG_RULE_COUNT || status == CG_STATUS_NONE) {
        rc = cg_err_set(errbuf, errsz, CG_EPARSE,
                        "not a %s line (schema, rule or status missing)",
                        CG_FINDING_SCHEMA);
        goto out;
    }
    struct cg_finding f;
    memset(&f, 0, sizeof(f));
    f.rule = rule;
    f.status = status;
    const char *v;
    if ((v = cg_json_str(o, "reason_code")))
        cg_strlcpy(f.reason_code, v, sizeof(f.reason_code));
    f.reason = cg_strdup((v = cg_json_str(o, "reason")) ? v : "");
    if ((v = cg_json_str(o, "subscription_id")))
        cg_strlcpy(f.subscription_id, v, sizeof(f.subscription_id));
    if ((v = cg_json_str(o, "tenant_id")))
        cg_strlcpy(f.tenant_id, v, sizeof(f.tenant_id));
    if ((v = cg_json_str(o, "api_version")))
        cg_strlcpy(f.api_version, v, sizeof(f.api_version));
    if ((v = cg_json_str(o, "job_id")))
        cg_strlcpy(f.job_id, v, sizeof(f.job_id));
    long long ms = 0;
    cg_json_int(o, "time_ms", &ms);
    f.time_ms = ms;
    f.previous = cg_status_parse(cg_json_str(o, "previous_status"));
    json_t *ev = cg_json_member(o, "evidence");
    f.evidence = ev ? json_incref(ev) : NULL;
    *out = f;
out:
    json_decref(o);
    return rc;
}
