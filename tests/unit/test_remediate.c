/* remediate's pure parts: the policy a tenant and a job resolve to (a job
 * lowers the mode, never raises it), when a subscription qualifies, what
 * "the same contact in meaning" is, and the remediation event's format. */
#include "../check.h"
#include "ocsf.h"
#include "ocsf_check.h"
#include "conf.h"
#include "json.h"
#include "mem.h"
#include "remediate.h"
#include "remediation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/cg-remediate-XXXXXX";
static char path[600];

#define T_APPLY "11111111-1111-1111-1111-111111111111"
#define T_DRY   "22222222-2222-2222-2222-222222222222"
#define T_OFF   "33333333-3333-3333-3333-333333333333"
#define T_NONE  "44444444-4444-4444-4444-444444444444"

static struct cg_conf *load(const char *global_mode)
{
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"remediation\":{\"mode\":\"%s\",\"emails\":\"g@example.com\","
            "\"alert_severity\":\"Low\",\"attack_paths\":\"Critical\"},"
            " \"tenants\":["
            "{\"id\":\"" T_APPLY "\",\"remediation\":{\"mode\":\"apply\","
            "\"emails\":[\"a@example.com\",\"b@example.com\"],"
            "\"alert_severity\":\"medium\",\"attack_paths\":\"Low\"}},"
            "{\"id\":\"" T_DRY "\",\"remediation\":{\"mode\":\"dry-run\"}},"
            "{\"id\":\"" T_OFF "\",\"remediation\":{\"mode\":\"off\"}},"
            "{\"id\":\"" T_NONE "\"}]}",
            global_mode);
    fclose(f);
    struct cg_conf *conf = cg_conf_new();
    char err[256];
    int rc = cg_conf_load_file(conf, path, err, sizeof(err));
    CHECK(rc == 0, "load: %s", err);
    rc = cg_conf_finish(conf, err, sizeof(err));
    CHECK(rc == 0, "finish: %s", err);
    return conf;
}

static void test_policy(void)
{
    static const struct {
        const char *global, *tenant;
        int job; /* -1: the job says nothing */
        enum cg_remediation_mode want;
    } rows[] = {
        /* The tenant's own mode wins over the global one... */
        { "off", T_APPLY, -1, CG_REMEDIATION_APPLY },
        { "apply", T_OFF, -1, CG_REMEDIATION_OFF },
        { "apply", T_DRY, -1, CG_REMEDIATION_DRY_RUN },
        { "dry-run", T_NONE, -1, CG_REMEDIATION_DRY_RUN },
        { "off", T_NONE, -1, CG_REMEDIATION_OFF },
        { "apply", NULL, -1, CG_REMEDIATION_APPLY },
        /* ...a job may lower it... */
        { "off", T_APPLY, CG_REMEDIATION_DRY_RUN, CG_REMEDIATION_DRY_RUN },
        { "off", T_APPLY, CG_REMEDIATION_OFF, CG_REMEDIATION_OFF },
        { "apply", T_DRY, CG_REMEDIATION_OFF, CG_REMEDIATION_OFF },
        { "apply", T_NONE, CG_REMEDIATION_DRY_RUN, CG_REMEDIATION_DRY_RUN },
        /* ...never raise it. */
        { "apply", T_OFF, CG_REMEDIATION_APPLY, CG_REMEDIATION_OFF },
        { "apply", T_OFF, CG_REMEDIATION_DRY_RUN, CG_REMEDIATION_OFF },
        { "off", T_DRY, CG_REMEDIATION_APPLY, CG_REMEDIATION_DRY_RUN },
        { "off", T_NONE, CG_REMEDIATION_APPLY, CG_REMEDIATION_OFF },
        { "dry-run", NULL, CG_REMEDIATION_APPLY, CG_REMEDIATION_DRY_RUN },
        { "off", T_APPLY, CG_REMEDIATION_APPLY, CG_REMEDIATION_APPLY },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct cg_conf *conf = load(rows[i].global);
        const struct cg_tenant *t =
            rows[i].tenant ? cg_conf_tenant_find(conf, rows[i].tenant) : NULL;
        CHECK(!rows[i].tenant || t, "row %zu: tenant", i);
        struct cg_remediate_policy p;
        cg_remediate_policy(conf, t, rows[i].job, &p);
        CHECK(p.mode == rows[i].want,
              "row %zu (global %s, tenant %s, job %d): mode %s, want %s", i,
              rows[i].global, rows[i].tenant ? rows[i].tenant : "none",
              rows[i].job, cg_remediation_mode_name(p.mode),
              cg_remediation_mode_name(rows[i].want));
        cg_conf_free(conf);
    }

    /* Addresses and levels: the tenant's, else the global ones. */
    struct cg_conf *conf = load("off");
    struct cg_remediate_policy p;
    cg_remediate_policy(conf, cg_conf_tenant_find(conf, T_APPLY), -1, &p);
    CHECK(p.plan.emails && !strcmp(p.plan.emails, "a@example.com;b@example."
                                                  "com"),
          "tenant addresses: %s", p.plan.emails ? p.plan.emails : "(null)");
    CHECK(p.plan.alert_level == CG_LEVEL_MEDIUM, "tenant alert level %s",
          cg_level_name(p.plan.alert_level));
    CHECK(p.plan.attack_level == CG_LEVEL_LOW, "tenant attack level %s",
          cg_level_name(p.plan.attack_level));
    cg_remediate_policy(conf, cg_conf_tenant_find(conf, T_NONE), -1, &p);
    CHECK(p.plan.emails && !strcmp(p.plan.emails, "g@example.com"),
          "global addresses");
    CHECK(p.plan.alert_level == CG_LEVEL_LOW &&
              p.plan.attack_level == CG_LEVEL_CRITICAL,
          "global levels %s %s", cg_level_name(p.plan.alert_level),
          cg_level_name(p.plan.attack_level));
    cg_conf_free(conf);

    /* A tenant level that is not a level is a configuration error. */
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"tenants\":[{\"id\":\"" T_APPLY "\",\"remediation\":"
               "{\"attack_paths\":\"Severe\"}}]}");
    fclose(f);
    conf = cg_conf_new();
    char err[256];
    CHECK(cg_conf_load_file(conf, path, err, sizeof(err)) != 0 &&
              strstr(err, "attack_paths"),
          "bad tenant attack_paths accepted");
    cg_conf_free(conf);
}

static void set(struct cg_finding f[CG_RULE_COUNT], const char *statuses)
{
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        f[k].rule = (enum cg_rule)k;
        f[k].status = statuses[k] == 'P'   ? CG_STATUS_PASS
                      : statuses[k] == 'F' ? CG_STATUS_FAIL
                      : statuses[k] == 'E' ? CG_STATUS_ERROR
                                           : CG_STATUS_SKIPPED;
    }
}

static void test_wanted(void)
{
    static const struct {
        enum cg_remediation_mode mode;
        const char *statuses;
        enum cg_sub_state state;
        bool want;
    } rows[] = {
        { CG_REMEDIATION_APPLY, "FPPP", CG_SUB_ENABLED, true },
        { CG_REMEDIATION_DRY_RUN, "PPPF", CG_SUB_UNKNOWN, true },
        { CG_REMEDIATION_OFF, "FFFF", CG_SUB_ENABLED, false },
        { CG_REMEDIATION_APPLY, "PPPP", CG_SUB_ENABLED, false },
        { CG_REMEDIATION_APPLY, "FFFE", CG_SUB_ENABLED, false },
        { CG_REMEDIATION_APPLY, "SSSS", CG_SUB_ENABLED, false },
        { CG_REMEDIATION_APPLY, "FPPP", CG_SUB_WARNED, false },
        { CG_REMEDIATION_APPLY, "FPPP", CG_SUB_PAST_DUE, false },
        { CG_REMEDIATION_APPLY, "FPPP", CG_SUB_DISABLED, false },
        { CG_REMEDIATION_APPLY, "FPPP", CG_SUB_DELETED, false },
        /* owner-reachable: role assignments are never written, so its
         * FAIL asks for nothing and its SKIPPED or ERROR blocks nothing. */
        { CG_REMEDIATION_APPLY, "PPPPF", CG_SUB_ENABLED, false },
        { CG_REMEDIATION_APPLY, "FPPPS", CG_SUB_ENABLED, true },
        { CG_REMEDIATION_APPLY, "PFPPE", CG_SUB_ENABLED, true },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct cg_finding f[CG_RULE_COUNT];
        memset(f, 0, sizeof(f));
        set(f, rows[i].statuses);
        char why[200];
        bool got = cg_remediate_wanted(rows[i].mode, f, CG_RULE_COUNT,
                                       rows[i].state, why, sizeof(why));
        CHECK(got == rows[i].want, "row %zu (%s): %d, want %d (%s)", i,
              rows[i].statuses, got, rows[i].want, why);
        CHECK(got || why[0], "row %zu: no reason given", i);
    }
}

static void test_same_meaning(void)
{
    static const char *const base =
        "{\"properties\":{\"isEnabled\":true,\"emails\":\"a@x.com;b@x.com\","
        "\"phone\":\"1\",\"notificationsByRole\":{\"state\":\"On\","
        "\"roles\":[\"Owner\",\"Contributor\"]},\"notificationsSources\":["
        "{\"sourceType\":\"Alert\",\"minimalSeverity\":\"Medium\"},"
        "{\"sourceType\":\"AttackPath\",\"minimalRiskLevel\":\"High\"}]}}";
    static const struct {
        const char *name, *other; /* NULL: no contact */
        bool same;
    } rows[] = {
        { "identical", NULL, true }, /* replaced by base below */
        { "bare properties, order, case, spaces",
          "{\"notificationsSources\":[{\"minimalRiskLevel\":\"high\","
          "\"sourceType\":\"attackpath\"},{\"sourceType\":\"Alert\","
          "\"minimalSeverity\":\"Medium\"}],\"phone\":\"1\","
          "\"notificationsByRole\":{\"roles\":[\"contributor\",\"OWNER\"],"
          "\"state\":\"on\"},\"emails\":\"B@x.com; a@x.com\","
          "\"isEnabled\":true}",
          true },
        { "read-only members outside properties",
          "{\"id\":\"/x\",\"name\":\"default\",\"type\":\"t\","
          "\"properties\":{\"isEnabled\":true,\"emails\":\"a@x.com;b@x.com\","
          "\"phone\":\"1\",\"notificationsByRole\":{\"state\":\"On\","
          "\"roles\":[\"Owner\",\"Contributor\"]},\"notificationsSources\":["
          "{\"sourceType\":\"Alert\",\"minimalSeverity\":\"Medium\"},"
          "{\"sourceType\":\"AttackPath\",\"minimalRiskLevel\":\"High\"}]}}",
          true },
        { "an address missing",
          "{\"isEnabled\":true,\"emails\":\"a@x.com\",\"phone\":\"1\","
          "\"notificationsByRole\":{\"state\":\"On\",\"roles\":[\"Owner\","
          "\"Contributor\"]},\"notificationsSources\":[{\"sourceType\":"
          "\"Alert\",\"minimalSeverity\":\"Medium\"},{\"sourceType\":"
          "\"AttackPath\",\"minimalRiskLevel\":\"High\"}]}",
          false },
        { "another phone",
          "{\"isEnabled\":true,\"emails\":\"a@x.com;b@x.com\",\"phone\":\"2\","
          "\"notificationsByRole\":{\"state\":\"On\",\"roles\":[\"Owner\","
          "\"Contributor\"]},\"notificationsSources\":[{\"sourceType\":"
          "\"Alert\",\"minimalSeverity\":\"Medium\"},{\"sourceType\":"
          "\"AttackPath\",\"minimalRiskLevel\":\"High\"}]}",
          false },
        { "a role missing",
          "{\"isEnabled\":true,\"emails\":\"a@x.com;b@x.com\",\"phone\":\"1\","
          "\"notificationsByRole\":{\"state\":\"On\",\"roles\":[\"Owner\"]},"
          "\"notificationsSources\":[{\"sourceType\":\"Alert\","
          "\"minimalSeverity\":\"Medium\"},{\"sourceType\":\"AttackPath\","
          "\"minimalRiskLevel\":\"High\"}]}",
          false },
        { "another level",
          "{\"isEnabled\":true,\"emails\":\"a@x.com;b@x.com\",\"phone\":\"1\","
          "\"notificationsByRole\":{\"state\":\"On\",\"roles\":[\"Owner\","
          "\"Contributor\"]},\"notificationsSources\":[{\"sourceType\":"
          "\"Alert\",\"minimalSeverity\":\"High\"},{\"sourceType\":"
          "\"AttackPath\",\"minimalRiskLevel\":\"High\"}]}",
          false },
        { "disabled",
          "{\"isEnabled\":false,\"emails\":\"a@x.com;b@x.com\",\"phone\":"
          "\"1\",\"notificationsByRole\":{\"state\":\"On\",\"roles\":["
          "\"Owner\",\"Contributor\"]},\"notificationsSources\":[{"
          "\"sourceType\":\"Alert\",\"minimalSeverity\":\"Medium\"},{"
          "\"sourceType\":\"AttackPath\",\"minimalRiskLevel\":\"High\"}]}",
          false },
        { "an unknown member added",
          "{\"isEnabled\":true,\"emails\":\"a@x.com;b@x.com\",\"phone\":\"1\","
          "\"notificationsByRole\":{\"state\":\"On\",\"roles\":[\"Owner\","
          "\"Contributor\"]},\"notificationsSources\":[{\"sourceType\":"
          "\"Alert\",\"minimalSeverity\":\"Medium\"},{\"sourceType\":"
          "\"AttackPath\",\"minimalRiskLevel\":\"High\"}],\"x\":1}",
          false },
        { "no contact", NULL, false },
    };
    json_t *a = json_loads(base, 0, NULL);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *b = i == 0          ? json_incref(a)
                    : rows[i].other ? json_loads(rows[i].other, 0, NULL)
                                    : NULL;
        CHECK(i == 0 || !rows[i].other || b, "row %zu: bad JSON", i);
        CHECK(cg_remediate_same_meaning(a, b) == rows[i].same &&
                  cg_remediate_same_meaning(b, a) == rows[i].same,
              "%s: same %d, want %d", rows[i].name,
              cg_remediate_same_meaning(a, b), rows[i].same);
        json_decref(b);
    }
    json_t *null = json_null();
    CHECK(cg_remediate_same_meaning(NULL, null), "no contact = null");
    json_decref(null);
    json_decref(a);
}

static void test_keeps_everything(void)
{
    static const char *const before =
        "{\"properties\":{\"isEnabled\":false,\"emails\":\"a@x.com b@x.com,"
        "c@x.com\",\"phone\":\"1\",\"notificationsByRole\":{\"state\":"
        "\"Off\",\"roles\":[\"Contributor\"]},\"notificationsSources\":[{"
        "\"sourceType\":\"AttackPath\",\"minimalRiskLevel\":\"Critical\"},"
        "{\"sourceType\":\"Custom\"}]}}";
    static const struct {
        const char *name, *body;
        bool keeps;
    } rows[] = {
        { "the plan's kind of change",
          "{\"properties\":{\"isEnabled\":true,\"emails\":\"A@x.com;b@x.com;"
          "c@x.com;soc@example.com\",\"phone\":\"1\",\"notificationsByRole\":"
          "{\"state\":\"On\",\"roles\":[\"Contributor\",\"Owner\"]},"
          "\"notificationsSources\":[{\"sourceType\":\"AttackPath\","
          "\"minimalRiskLevel\":\"High\"},{\"sourceType\":\"Custom\"},{"
          "\"sourceType\":\"Alert\",\"minimalSeverity\":\"High\"}],"
          "\"extra\":{\"k\":1}}}",
          true },
        { "an address dropped",
          "{\"properties\":{\"emails\":\"a@x.com;c@x.com\",\"phone\":\"1\","
          "\"isEnabled\":true,\"notificationsByRole\":{\"roles\":["
          "\"Contributor\"]},\"notificationsSources\":[{\"sourceType\":"
          "\"AttackPath\"},{\"sourceType\":\"Custom\"}],\"extra\":1}}",
          false },
        { "a role dropped",
          "{\"properties\":{\"emails\":\"a@x.com;b@x.com;c@x.com\",\"phone\":"
          "\"1\",\"isEnabled\":true,\"notificationsByRole\":{\"roles\":["
          "\"Owner\"]},\"notificationsSources\":[{\"sourceType\":"
          "\"AttackPath\"},{\"sourceType\":\"Custom\"}],\"extra\":1}}",
          false },
        { "a source dropped",
          "{\"properties\":{\"emails\":\"a@x.com;b@x.com;c@x.com\",\"phone\":"
          "\"1\",\"isEnabled\":true,\"notificationsByRole\":{\"roles\":["
          "\"Contributor\"]},\"notificationsSources\":[{\"sourceType\":"
          "\"AttackPath\"}],\"extra\":1}}",
          false },
        { "a member dropped",
          "{\"properties\":{\"emails\":\"a@x.com;b@x.com;c@x.com\",\"phone\":"
          "\"1\",\"notificationsByRole\":{\"roles\":["
          "\"Contributor\"]},\"notificationsSources\":[{\"sourceType\":"
          "\"AttackPath\"},{\"sourceType\":\"Custom\"}]}}",
          false },
        { "the phone changed",
          "{\"properties\":{\"emails\":\"a@x.com;b@x.com;c@x.com\",\"phone\":"
          "\"2\",\"isEnabled\":true,\"notificationsByRole\":{\"roles\":["
          "\"Contributor\"]},\"notificationsSources\":[{\"sourceType\":"
          "\"AttackPath\"},{\"sourceType\":\"Custom\"}],\"extra\":1}}",
          false },
        { "no body", NULL, false },
    };
    json_t *b = json_loads(before, 0, NULL);
    CHECK(b != NULL, "before is JSON");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *body = rows[i].body ? json_loads(rows[i].body, 0, NULL) : NULL;
        CHECK(!rows[i].body || body, "%s: bad JSON", rows[i].name);
        char why[256];
        bool got = cg_remediate_keeps_everything(b, body, why, sizeof(why));
        CHECK(got == rows[i].keeps, "%s: keeps %d, want %d (%s)", rows[i].name,
              got, rows[i].keeps, why);
        CHECK(got || why[0], "%s: no reason", rows[i].name);
        json_decref(body);
    }
    json_t *null = json_null();
    CHECK(cg_remediate_keeps_everything(null, b, NULL, 0),
          "nothing before: nothing to lose");
    json_decref(null);

    /* Members the write's API version does not store are lost however
     * faithfully the body carries them: every one is named. */
    json_t *extra = json_deep_copy(b);
    json_t *props = json_object_get(extra, "properties");
    json_object_set_new(props, "futureSetting", json_pack("{s:i}", "x", 1));
    json_object_set_new(props, "vendorTag", json_string("blue"));
    char why[256];
    CHECK(!cg_remediate_keeps_everything(extra, extra, why, sizeof(why)) &&
              strstr(why, "futureSetting, vendorTag") &&
              strstr(why, "2023-12-01-preview"),
          "unstored members: %s", why);
    json_decref(extra);
    json_decref(b);
}

/* Undo writes the kept body; one Azure would refuse as it is means the
 * same with ';' between the addresses, in the same order. */
static void test_restorable(void)
{
    static const struct {
        const char *emails, *want;
        bool normalised;
    } rows[] = {
        { "alpha@contoso.example, beta@contoso.example,Gamma@Fabrikam.example",
          "alpha@contoso.example;beta@contoso.example;Gamma@Fabrikam.example",
          true },
        { "b@x.com a@x.com\t;c@x.com;", "b@x.com;a@x.com;c@x.com", true },
        { "a@x.com;B@x.com", "a@x.com;B@x.com", false },
        { "", "", false },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *kept = json_pack("{s:{s:s,s:s}}", "properties", "emails",
                                 rows[i].emails, "phone", "1");
        bool normalised = !rows[i].normalised;
        json_t *w = cg_remediate_restorable(kept, &normalised);
        const char *got =
            cg_json_str(cg_json_member(w, "properties"), "emails");
        CHECK(normalised == rows[i].normalised && got &&
                  !strcmp(got, rows[i].want),
              "'%s': wrote '%s' (normalised %d)", rows[i].emails,
              got ? got : "(null)", (int)normalised);
        CHECK(cg_remediate_same_meaning(w, kept), "'%s': meaning changed",
              rows[i].emails);
        CHECK(!strcmp(cg_json_str(cg_json_member(kept, "properties"), "emails"),
                      rows[i].emails),
              "the kept body was modified");
        json_decref(w);
        json_decref(kept);
    }
}

/*
 * The plan and the last check agree on every fixture body: a plan that
 * changes something always passes cg_remediate_keeps_everything.
 */
static void test_plan_keeps_fixtures(void)
{
    static const char *const files[] = {
        "compliant.json",
        "disabled.json",
        "empty-emails.json",
        "get-single.json",
        "invalid-emails.json",
        "isenabled-absent.json",
        "isenabled-string.json",
        "no-properties.json",
        "no-sources.json",
        "reference-example.json",
        "role-state-missing-roles.json",
        "severity-high-risk-low.json",
        "two-alert-sources.json",
        "type-instead-of-sourcetype.json",
        "unknown-enums.json",
        "wrong-types.json",
    };
    struct cg_policy pol = { "soc@example.com;Cert@Example.com",
                             CG_LEVEL_MEDIUM, CG_LEVEL_LOW };
    size_t changes = 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char p[512];
        snprintf(p, sizeof(p), "tests/fixtures/contacts/2023/%s", files[i]);
        json_error_t je;
        json_t *doc = json_load_file(p, 0, &je);
        CHECK(doc != NULL, "%s: %s", p, je.text);
        json_t *value = json_object_get(doc, "value");
        size_t n = json_is_array(value) ? json_array_size(value) : 1;
        for (size_t k = 0; k < n; k++) {
            json_t *cur = json_is_array(value) ? json_array_get(value, k) : doc;
            struct cg_plan plan;
            cg_plan_make(cur, &pol, &plan);
            if (plan.outcome == CG_PLAN_CHANGE) {
                changes++;
                char why[256];
                json_t *before =
                    json_pack("{s:O}", "properties",
                              json_is_object(json_object_get(cur, "properties"))
                                  ? json_object_get(cur, "properties")
                                  : json_object_get(plan.before, "properties"));
                CHECK(cg_remediate_keeps_everything(before, plan.body, why,
                                                    sizeof(why)),
                      "%s[%zu]: %s", files[i], k, why);
                json_decref(before);
            }
            cg_plan_free(&plan);
        }
        json_decref(doc);
    }
    CHECK(changes >= 8, "only %zu fixture bodies needed a change", changes);
}

static void test_event(void)
{
    struct cg_remediation r;
    cg_remediation_init(&r);
    cg_strlcpy(r.subscription_id, "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
               sizeof(r.subscription_id));
    cg_strlcpy(r.tenant_id, T_APPLY, sizeof(r.tenant_id));
    r.mode = CG_REMEDIATION_APPLY;
    r.outcome = CG_REM_APPLIED;
    cg_strlcpy(r.reason_code, "APPLIED", sizeof(r.reason_code));
    cg_strlcpy(r.reason, "2 change(s) written and verified.", sizeof(r.reason));
    r.before = json_null();
    r.planned = json_loads("{\"properties\":{\"isEnabled\":true}}", 0, NULL);
    r.after = json_deep_copy(r.planned);
    r.changes = json_pack("[s,s]", "isEnabled: absent -> true",
                          "emails: + soc@example.com");
    r.verification = CG_VERIFY_PASSED;
    r.body_matches = true;
    /* The contact rules; owner-reachable passes before and after alike. */
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        bool contact = k != CG_RULE_OWNER_REACHABLE;
        r.status_before[k] = contact ? CG_STATUS_FAIL : CG_STATUS_PASS;
        r.status_planned[k] = CG_STATUS_PASS;
        r.status_after[k] = k == 3 ? CG_STATUS_FAIL : CG_STATUS_PASS;
    }
    struct cg_ocsf w;
    cg_ocsf_init(&w, NULL);
    char *s = cg_remediation_ocsf(&w, &r);
    json_t *o = json_loads(s, 0, NULL);
    CHECK(o != NULL, "event is JSON");
    long long v = 0;
    cg_json_int(o, "class_uid", &v);
    CHECK(v == 2003, "class_uid %lld", v);
    cg_json_int(o, "activity_id", &v);
    CHECK(v == 2, "activity_id %lld", v);
    cg_json_int(o, "type_uid", &v);
    CHECK(v == 200302, "type_uid %lld", v);
    CHECK(!strcmp(cg_json_str(o, "activity_name"), "Update"), "activity");
    json_t *rec = cg_json_member(cg_json_member(o, "unmapped"), "remediation");
    CHECK(!strcmp(cg_json_str(rec, "schema"), CG_REMEDIATION_SCHEMA), "schema");
    CHECK(!strcmp(cg_json_str(rec, "mode"), "apply") &&
              !strcmp(cg_json_str(rec, "outcome"), "applied"),
          "mode and outcome");
    CHECK(json_is_null(json_object_get(rec, "before")) &&
              json_equal(json_object_get(rec, "planned"), r.planned) &&
              json_equal(json_object_get(rec, "after"), r.after),
          "bodies");
    CHECK(json_array_size(json_object_get(rec, "changes")) == 2, "changes");
    CHECK(json_array_size(json_object_get(rec, "rules_to_fix")) == 4 &&
              json_array_size(json_object_get(rec, "rules_fixed")) == 3,
          "rules to fix %zu, fixed %zu",
          json_array_size(json_object_get(rec, "rules_to_fix")),
          json_array_size(json_object_get(rec, "rules_fixed")));
    json_t *ver = cg_json_member(rec, "verification");
    CHECK(!strcmp(cg_json_str(ver, "status"), "passed") &&
              json_is_true(json_object_get(ver, "body_matches")),
          "verification");
    CHECK(!strcmp(
              cg_json_str(cg_json_member(cg_json_member(o, "cloud"), "account"),
                          "uid"),
              r.subscription_id),
          "account");
    CHECK(strstr(cg_json_str(cg_json_member(o, "remediation"), "desc"),
                 "emails: + soc@example.com") != NULL,
          "the diff in remediation.desc");
    json_decref(o);
    free(s);
    cg_remediation_clear(&r);
}

/* The six outcomes, each in every version, through the conformance
 * checker; compliance.status_id follows the contact's state. */
static void test_event_conformance(void)
{
    static const struct {
        enum cg_remediation_outcome outcome;
        enum cg_verification verification;
        enum cg_status before, after;
        int compliance_id;
    } rows[] = {
        { CG_REM_PLANNED, CG_VERIFY_NOT_RUN, CG_STATUS_FAIL, CG_STATUS_NONE,
          3 },
        { CG_REM_APPLIED, CG_VERIFY_PASSED, CG_STATUS_FAIL, CG_STATUS_PASS, 1 },
        { CG_REM_NOOP, CG_VERIFY_NOT_RUN, CG_STATUS_PASS, CG_STATUS_NONE, 1 },
        { CG_REM_BLOCKED, CG_VERIFY_NOT_RUN, CG_STATUS_FAIL, CG_STATUS_NONE,
          3 },
        { CG_REM_FAILED, CG_VERIFY_FAILED, CG_STATUS_ERROR, CG_STATUS_NONE, 2 },
        { CG_REM_SKIPPED_LOCKED, CG_VERIFY_NOT_RUN, CG_STATUS_FAIL,
          CG_STATUS_NONE, 3 },
    };
    char err[2048];
    struct cg_ocsf_check *chk =
        cg_ocsf_check_new(CG_OCSF_CHECK_TABLES, err, sizeof(err));
    REQUIRE(chk != NULL, "conformance tables: %s", err);
    const struct cg_ocsf_version *v;
    char first_uid[37] = "";
    for (size_t vi = 0; (v = cg_ocsf_version_at(vi)); vi++) {
        struct cg_ocsf w;
        cg_ocsf_init(&w, v);
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            struct cg_remediation r;
            cg_remediation_init(&r);
            cg_strlcpy(r.subscription_id,
                       "0b1f6471-1bf0-4dda-aec3-cb9272f09590",
                       sizeof(r.subscription_id));
            cg_strlcpy(r.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47",
                       sizeof(r.tenant_id));
            r.mode = rows[i].outcome == CG_REM_PLANNED ? CG_REMEDIATION_DRY_RUN
                                                       : CG_REMEDIATION_APPLY;
            r.outcome = rows[i].outcome;
            r.verification = rows[i].verification;
            cg_strlcpy(r.reason_code, "X", sizeof(r.reason_code));
            cg_strlcpy(r.reason, "Why.", sizeof(r.reason));
            r.time_ms = 1700000000123LL;
            for (int k = 0; k < CG_RULE_COUNT; k++) {
                r.status_before[k] = rows[i].before;
                r.status_planned[k] = CG_STATUS_PASS;
                r.status_after[k] = rows[i].after;
            }
            /* Who holds Owner is not the contact's state: a FAIL of
             * owner-reachable changes no event's compliance. */
            r.status_before[CG_RULE_OWNER_REACHABLE] = CG_STATUS_FAIL;
            r.status_planned[CG_RULE_OWNER_REACHABLE] = CG_STATUS_FAIL;
            if (rows[i].after != CG_STATUS_NONE)
                r.status_after[CG_RULE_OWNER_REACHABLE] = CG_STATUS_FAIL;
            char *s = cg_remediation_ocsf(&w, &r);
            const char *name = cg_remediation_outcome_name(r.outcome);
            CHECK(cg_ocsf_check_event(chk, s, strlen(s), err, sizeof(err)) == 0,
                  "%s %s: %s", v->name, name, err);
            json_t *o = json_loads(s, 0, NULL);
            json_t *comp = cg_json_member(o, "compliance");
            long long id = -1;
            cg_json_int(comp, "status_id", &id);
            CHECK(id == rows[i].compliance_id, "%s: compliance.status_id %lld",
                  name, id);
            CHECK(json_array_size(cg_json_member(comp, "standards")) > 0,
                  "%s: compliance.standards", name);
            size_t si;
            json_t *sv;
            json_array_foreach(cg_json_member(comp, "standards"), si, sv)
            {
                CHECK(strcmp(json_string_value(sv), "contactguard") != 0,
                      "%s: owner-reachable's standard in a contact event",
                      name);
            }
            const char *fuid =
                cg_json_str(cg_json_member(o, "finding_info"), "uid");
            if (!first_uid[0] && fuid)
                cg_strlcpy(first_uid, fuid, sizeof(first_uid));
            CHECK(fuid && !strcmp(fuid, first_uid),
                  "%s: finding_info.uid is stable per subscription", name);
            json_decref(o);
            free(s);
            cg_remediation_clear(&r);
        }
    }
    CHECK(cg_ocsf_check_count(chk, "1.1.0") == 6 &&
              cg_ocsf_check_count(chk, "1.4.0") == 6,
          "every outcome in every version");
    cg_ocsf_check_free(chk);
}

int main(void)
{
    if (!mkdtemp(tmpdir))
        return 2;
    snprintf(path, sizeof(path), "%s/conf.json", tmpdir);
    test_policy();
    test_wanted();
    test_same_meaning();
    test_keeps_everything();
    test_plan_keeps_fixtures();
    test_restorable();
    test_event();
    test_event_conformance();
    unlink(path);
    rmdir(tmpdir);
    return check_done("remediate");
}
