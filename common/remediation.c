#include "remediation.h"

#include "job.h"
#include "mem.h"
#include "ocsf.h"

#include <stdlib.h>
#include <string.h>

static const char *const outcome_names[CG_REM_OUTCOME_COUNT] = {
    "planned", "applied", "noop", "blocked", "failed", "skipped-locked",
};

static const char *const verification_names[] = { "not-run", "passed",
                                                  "failed" };

void cg_remediation_init(struct cg_remediation *r)
{
    memset(r, 0, sizeof(*r));
    r->outcome = CG_REM_NOOP;
    for (int k = 0; k < CG_RULE_COUNT; k++)
        r->status_before[k] = r->status_planned[k] = r->status_after[k] =
            CG_STATUS_NONE;
}

void cg_remediation_clear(struct cg_remediation *r)
{
    json_decref(r->before);
    json_decref(r->planned);
    json_decref(r->after);
    json_decref(r->changes);
    cg_remediation_init(r);
}

const char *cg_remediation_outcome_name(enum cg_remediation_outcome o)
{
    return (unsigned)o < CG_REM_OUTCOME_COUNT ? outcome_names[o] : "unknown";
}

const char *cg_verification_name(enum cg_verification v)
{
    return (unsigned)v <= CG_VERIFY_FAILED ? verification_names[v] : "unknown";
}

bool cg_remediation_rule_to_fix(const struct cg_remediation *r,
                                enum cg_rule rule)
{
    return r->status_before[rule] == CG_STATUS_FAIL &&
           r->status_planned[rule] == CG_STATUS_PASS;
}

bool cg_remediation_rule_fixed(const struct cg_remediation *r,
                               enum cg_rule rule)
{
    return r->status_before[rule] == CG_STATUS_FAIL &&
           r->status_after[rule] == CG_STATUS_PASS;
}

static json_t *body_or_null(const json_t *b)
{
    return b ? json_incref((json_t *)b) : json_null();
}

static json_t *status_or_null(enum cg_status s)
{
    return s == CG_STATUS_NONE ? json_null() : json_string(cg_status_name(s));
}

json_t *cg_remediation_json(const struct cg_remediation *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "schema", json_string(CG_REMEDIATION_SCHEMA));
    json_object_set_new(o, "mode",
                        json_string(cg_remediation_mode_name(r->mode)));
    json_object_set_new(o, "outcome",
                        json_string(cg_remediation_outcome_name(r->outcome)));
    json_object_set_new(o, "reason_code", json_string(r->reason_code));
    json_object_set_new(o, "reason", json_string(r->reason));
    json_object_set_new(o, "changes",
                        r->changes ? json_incref(r->changes) : json_array());
    json_object_set_new(o, "before", body_or_null(r->before));
    json_object_set_new(o, "planned", body_or_null(r->planned));
    json_object_set_new(o, "after", body_or_null(r->after));
    json_object_set_new(o, "replanned", json_boolean(r->replanned));

    json_t *rules = json_object();
    json_t *to_fix = json_array(), *fixed = json_array();
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        const char *id = cg_rule_info((enum cg_rule)k)->id;
        json_object_set_new(
            rules, id,
            json_pack("{s:o,s:o,s:o}", "before",
                      status_or_null(r->status_before[k]), "planned",
                      status_or_null(r->status_planned[k]), "after",
                      status_or_null(r->status_after[k])));
        if (cg_remediation_rule_to_fix(r, (enum cg_rule)k))
            json_array_append_new(to_fix, json_string(id));
        if (cg_remediation_rule_fixed(r, (enum cg_rule)k))
            json_array_append_new(fixed, json_string(id));
    }
    json_t *ver = json_object();
    json_object_set_new(ver, "status",
                        json_string(cg_verification_name(r->verification)));
    json_object_set_new(ver, "body_matches",
                        r->verification == CG_VERIFY_NOT_RUN
                            ? json_null()
                            : json_boolean(r->body_matches));
    json_object_set_new(ver, "rules", rules);
    json_object_set_new(o, "verification", ver);
    json_object_set_new(o, "rules_to_fix", to_fix);
    json_object_set_new(o, "rules_fixed", fixed);
    if (r->http_status)
        json_object_set_new(o, "http_status", json_integer(r->http_status));
    if (r->job_id[0])
        json_object_set_new(o, "job_id", json_string(r->job_id));
    return o;
}

/*
 * The compliance state the event reports: the read-back's statuses when
 * the write was verified, else the evaluation's (a dry-run, a block or a
 * failure leave the contact as it was). Any FAIL is Fail; all PASS is
 * Pass; otherwise the state is not known: 2 Warning, "did not yield a
 * result due to missing information".
 */
static int remediation_compliance_id(const struct cg_remediation *r)
{
    const enum cg_status *st =
        r->outcome == CG_REM_APPLIED && r->verification == CG_VERIFY_PASSED
            ? r->status_after
            : r->status_before;
    bool all_pass = true;
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        /* The contact's state: who holds Owner is not part of it. */
        if (k == CG_RULE_OWNER_REACHABLE)
            continue;
        if (st[k] == CG_STATUS_FAIL)
            return 3;
        if (st[k] != CG_STATUS_PASS)
            all_pass = false;
    }
    return all_pass ? 1 : 2;
}

char *cg_remediation_ocsf(struct cg_ocsf *w, const struct cg_remediation *r)
{
    /* Resolved when the write is verified; New when something still has
     * to happen (a dry-run's plan, a failure, a block); Other otherwise. */
    int fstatus = r->outcome == CG_REM_APPLIED ? 4
                  : r->outcome == CG_REM_PLANNED ||
                          r->outcome == CG_REM_FAILED ||
                          r->outcome == CG_REM_BLOCKED
                      ? 1
                      : 99;
    const char *fstatus_name = fstatus == 4   ? "Resolved"
                               : fstatus == 1 ? "New"
                                              : "Other";
    /* A failed or blocked remediation needs a person: Medium. */
    int sev =
        r->outcome == CG_REM_FAILED || r->outcome == CG_REM_BLOCKED ? 3 : 1;
    /* One finding per subscription's contact: its uid is stable, as a
     * rule's finding_info.uid is; each event has its own metadata.uid. */
    char uid[37];
    cg_ocsf_uid5(CG_REMEDIATION_CONTROL, r->subscription_id, uid);

    json_t *o = json_object();
    json_object_set_new(o, "activity_id", json_integer(2));
    json_object_set_new(o, "activity_name", json_string("Update"));
    json_object_set_new(o, "category_uid", json_integer(2));
    json_object_set_new(o, "category_name", json_string("Findings"));
    json_object_set_new(o, "class_uid", json_integer(2003));
    json_object_set_new(o, "class_name", json_string("Compliance Finding"));
    json_object_set_new(o, "type_uid", json_integer(200302));
    json_object_set_new(o, "type_name",
                        json_string("Compliance Finding: Update"));
    json_object_set_new(o, "severity_id", json_integer(sev));
    json_object_set_new(o, "severity", json_string(cg_ocsf_severity_name(sev)));
    json_object_set_new(o, "status_id", json_integer(fstatus));
    json_object_set_new(o, "status", json_string(fstatus_name));
    json_object_set_new(o, "time", json_integer(r->time_ms));
    json_object_set_new(o, "message", json_string(r->reason));
    json_object_set_new(o, "metadata", cg_ocsf_metadata(w));
    json_object_set_new(
        o, "finding_info",
        json_pack("{s:s,s:s,s:s,s:[s]}", "uid", uid, "title",
                  "Security contact remediation", "desc",
                  "contactguard brought the Defender for Cloud security "
                  "contact in line with the tenant's policy, or says why "
                  "not.",
                  "types", "Defender for Cloud security contact"));

    /* The contact is what the four contact rules check: the event
     * concerns their standards, and the requirements of the rules it set
     * out to fix. */
    int cid = remediation_compliance_id(r);
    json_t *comp = json_object();
    json_object_set(comp, "standards", cg_rule_all_standards());
    json_t *reqs = json_array();
    for (int k = 0; k < CG_RULE_COUNT; k++)
        if (cg_remediation_rule_to_fix(r, (enum cg_rule)k) ||
            cg_remediation_rule_fixed(r, (enum cg_rule)k))
            json_array_extend(reqs, cg_rule_requirements((enum cg_rule)k));
    if (json_array_size(reqs))
        json_object_set_new(comp, "requirements", reqs);
    else
        json_decref(reqs);
    json_object_set_new(comp, "control", json_string(CG_REMEDIATION_CONTROL));
    json_object_set_new(comp, "status_id", json_integer(cid));
    json_object_set_new(comp, "status",
                        json_string(cg_ocsf_compliance_status_name(cid)));
    json_object_set_new(comp, "status_code", json_string(r->reason_code));
    cg_ocsf_set_status_detail(w, comp, r->reason);
    json_object_set_new(o, "compliance", comp);

    json_object_set_new(o, "cloud",
                        cg_ocsf_cloud(w, r->subscription_id, r->tenant_id));

    char *rid = cg_asprintf("/subscriptions/%s/providers/Microsoft.Security/"
                            "securityContacts/default",
                            r->subscription_id);
    json_t *res = json_pack("{s:s,s:s}", "uid", rid, "type",
                            "Microsoft.Security/securityContacts");
    free(rid);
    /* No contact yet (or nothing read): no data, rather than a null the
     * schema has no meaning for. */
    const json_t *body = r->after ? r->after : r->before;
    if (body && !json_is_null(body))
        json_object_set_new(res, "data", json_incref((json_t *)body));
    cg_ocsf_set_resource(w, o, res);

    struct cg_buf diff;
    cg_buf_init(&diff, 64 * 1024);
    size_t i;
    json_t *c;
    json_array_foreach(r->changes, i, c)
    {
        if (i)
            cg_buf_puts(&diff, "; ");
        cg_buf_puts(&diff, json_string_value(c) ? json_string_value(c) : "");
    }
    char *d = cg_buf_take(&diff);
    json_object_set_new(o, "remediation",
                        json_pack("{s:s}", "desc", d ? d : ""));
    free(d);

    json_object_set_new(
        o, "unmapped",
        json_pack("{s:o}", "remediation", cg_remediation_json(r)));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}
