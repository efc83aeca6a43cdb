/* The finding formats: compact round trip, OCSF required fields, uids. */
#include "../check.h"
#include "finding.h"
#include "json.h"
#include "mem.h"
#include "ocsf.h"
#include "ocsf_check.h"

#include <stdlib.h>
#include <string.h>

#define BAD_RULE                                                               \
    "{\"schema\":\"contactguard.finding/"                                      \
    "1\",\"rule\":\"nope\",\"status\":\"PASS\"}"
#define SUB "0b1f6471-1bf0-4dda-aec3-cb9272f09590"

static void make(struct cg_finding *f, enum cg_rule rule, enum cg_status st)
{
    memset(f, 0, sizeof(*f));
    cg_finding_set(f, rule, st, "OWNER_ROLE_MISSING", "Roles lack %s.",
                   "Owner");
    f->evidence = json_pack("{s:s}", "roles", "AccountAdmin");
    strcpy(f->subscription_id, SUB);
    strcpy(f->tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
    strcpy(f->api_version, "2023-12-01-preview");
    f->time_ms = 1700000000123LL;
    f->previous = CG_STATUS_PASS;
}

/* How each status reads in OCSF, in every version (finding.c's table). */
struct ocsf_row {
    enum cg_status status;
    int compliance_status_id;
    const char *compliance_status;
    int severity_id;
};

static const struct ocsf_row ocsf_rows[] = {
    { CG_STATUS_PASS, 1, "Pass", 1 },
    { CG_STATUS_FAIL, 3, "Fail", 3 },
    { CG_STATUS_ERROR, 2, "Warning", 2 },
    { CG_STATUS_SKIPPED, 99, "Skipped", 1 },
};

/* Per version: the account type and the shape of the subject resource. */
struct version_row {
    const char *version;
    int account_type_id;
    const char *resource_key, *not_key;
    const char *detail_key;
};

static const struct version_row version_rows[] = {
    { "1.1.0", 99, "resource", "resources", "status_detail" },
    { "1.4.0", 13, "resources", "resource", "status_details" },
};

/* Every rule x status x version through the conformance checker, and the
 * values the mapping table in the README promises. */
static void test_ocsf(struct cg_finding *f)
{
    char err[2048];
    struct cg_ocsf_check *chk =
        cg_ocsf_check_new(CG_OCSF_CHECK_TABLES, err, sizeof(err));
    REQUIRE(chk != NULL, "conformance tables: %s", err);
    CHECK(cg_ocsf_version_at(sizeof(version_rows) / sizeof(version_rows[0])) ==
              NULL,
          "a supported version has no row here");
    for (size_t vi = 0; vi < sizeof(version_rows) / sizeof(version_rows[0]);
         vi++) {
        const struct version_row *vr = &version_rows[vi];
        struct cg_ocsf w;
        cg_ocsf_init(&w, cg_ocsf_version_find(vr->version));
        CHECK(w.v && !strcmp(w.v->name, vr->version), "version %s",
              vr->version);
        for (int rule = 0; rule < CG_RULE_COUNT; rule++) {
            f->rule = (enum cg_rule)rule;
            for (size_t i = 0; i < sizeof(ocsf_rows) / sizeof(ocsf_rows[0]);
                 i++) {
                f->status = ocsf_rows[i].status;
                char *s = cg_finding_ocsf(&w, f);
                const char *st = cg_status_name(f->status);
                CHECK(cg_ocsf_check_event(chk, s, strlen(s), err,
                                          sizeof(err)) == 0,
                      "%s %s %s: %s", vr->version, cg_rule_info(f->rule)->id,
                      st, err);
                json_t *j = json_loads(s, 0, NULL);
                CHECK(j != NULL, "%s: OCSF is not JSON", st);
                long long n = -1;
                cg_json_int(j, "severity_id", &n);
                if (f->status != CG_STATUS_FAIL)
                    CHECK(n == ocsf_rows[i].severity_id, "%s: severity_id %lld",
                          st, n);
                else
                    CHECK(n == cg_rule_info(f->rule)->fail_severity_id,
                          "FAIL: severity_id %lld", n);
                CHECK(cg_json_int(j, "time", &n) == CG_JSON_OK &&
                          n == f->time_ms,
                      "%s: time in ms", st);
                json_t *comp = cg_json_member(j, "compliance");
                CHECK(cg_json_int(comp, "status_id", &n) == CG_JSON_OK &&
                          n == ocsf_rows[i].compliance_status_id,
                      "%s: compliance.status_id %lld", st, n);
                CHECK(!strcmp(cg_json_str(comp, "status"),
                              ocsf_rows[i].compliance_status),
                      "%s: compliance.status %s", st,
                      cg_json_str(comp, "status"));
                CHECK(json_object_get(comp, vr->detail_key) != NULL,
                      "%s %s: compliance.%s", vr->version, st, vr->detail_key);
                json_t *acct =
                    cg_json_member(cg_json_member(j, "cloud"), "account");
                CHECK(cg_json_int(acct, "type_id", &n) == CG_JSON_OK &&
                          n == vr->account_type_id &&
                          !strcmp(cg_json_str(acct, "type"),
                                  "Azure Subscription"),
                      "%s: account type_id %lld", vr->version, n);
                CHECK(json_object_get(j, vr->resource_key) &&
                          !json_object_get(j, vr->not_key),
                      "%s: %s, not %s", vr->version, vr->resource_key,
                      vr->not_key);
                const char *muid =
                    cg_json_str(cg_json_member(j, "metadata"), "uid");
                const char *fuid =
                    cg_json_str(cg_json_member(j, "finding_info"), "uid");
                char uid[37];
                cg_finding_uid(f->rule, f->subscription_id, uid);
                CHECK(fuid && !strcmp(fuid, uid),
                      "finding_info.uid is the stable uid");
                CHECK(muid && strcmp(muid, uid) != 0 && strlen(muid) == 36,
                      "metadata.uid %s", muid ? muid : "(none)");
                CHECK(!strcmp(
                          cg_json_str(cg_json_member(j, "unmapped"), "status"),
                          st),
                      "%s: unmapped.status", st);
                json_decref(j);
                free(s);
            }
        }
    }
    /* The checker itself: what the issue found must fail it. */
    static const struct {
        const char *what, *path, *value;
    } broken[] = {
        { "status word", "compliance.status", "\"FAIL\"" },
        { "1.1.0 account type 13", "cloud.account.type_id", "13" },
        { "time in seconds", "time", "1700000000" },
        { "no profiles", "metadata.profiles", "[]" },
        { "unknown attribute", "compliance.bogus", "1" },
    };
    struct cg_ocsf w;
    cg_ocsf_init(&w, NULL);
    f->status = CG_STATUS_FAIL;
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        char *s = cg_finding_ocsf(&w, f);
        json_t *j = json_loads(s, 0, NULL);
        free(s);
        char path[64];
        cg_strlcpy(path, broken[i].path, sizeof(path));
        json_t *node = j;
        char *dot, *key = path;
        while ((dot = strchr(key, '.'))) {
            *dot = '\0';
            node = json_object_get(node, key);
            key = dot + 1;
        }
        json_object_set_new(node, key,
                            json_loads(broken[i].value, JSON_DECODE_ANY, NULL));
        s = json_dumps(j, JSON_COMPACT);
        CHECK(cg_ocsf_check_event(chk, s, strlen(s), err, sizeof(err)) > 0,
              "checker accepts %s", broken[i].what);
        free(s);
        json_decref(j);
    }
    char *s1 = cg_finding_ocsf(&w, f);
    CHECK(cg_ocsf_check_event(chk, s1, strlen(s1), err, sizeof(err)) == 0,
          "a good event: %s", err);
    CHECK(cg_ocsf_check_event(chk, s1, strlen(s1), err, sizeof(err)) > 0,
          "checker accepts a repeated metadata.uid");
    free(s1);
    f->status = CG_STATUS_FAIL;
    f->rule = CG_RULE_OWNER_ALERTS;
    cg_ocsf_check_free(chk);
}

int main(void)
{
    struct cg_finding f, g;
    char err[256];
    make(&f, CG_RULE_OWNER_ALERTS, CG_STATUS_FAIL);

    char *line = cg_finding_compact(&f);
    CHECK(strchr(line, '\n') == NULL, "compact has a newline");
    CHECK(cg_finding_parse(line, strlen(line), &g, err, sizeof(err)) == 0,
          "parse: %s", err);
    CHECK(g.rule == f.rule && g.status == f.status, "rule/status round trip");
    CHECK(!strcmp(g.reason_code, f.reason_code) && !strcmp(g.reason, f.reason),
          "reason round trip");
    CHECK(!strcmp(g.subscription_id, SUB) && !strcmp(g.tenant_id, f.tenant_id),
          "ids round trip");
    CHECK(g.time_ms == f.time_ms && g.previous == CG_STATUS_PASS,
          "time/previous round trip");
    CHECK(json_equal(g.evidence, f.evidence), "evidence round trip");
    json_t *o = json_loads(line, 0, NULL);
    CHECK(o && !strcmp(cg_json_str(o, "schema"), CG_FINDING_SCHEMA),
          "schema field");
    CHECK(o && json_array_size(cg_json_member(o, "references")) == 10,
          "owner-alerts references");
    CHECK(o && !strcmp(cg_json_str(o, "time"), "2023-11-14T22:13:20.123Z"),
          "time field %s", o ? cg_json_str(o, "time") : "");
    json_decref(o);
    /* One "references" key, spliced in; none in the cache's lean line. */
    const char *refs_key = "\"references\":";
    char *first = strstr(line, refs_key);
    CHECK(first && !strstr(first + 1, refs_key),
          "compact line has %s references key", first ? "a second" : "no");
    char *lean = cg_finding_compact_lean(&f);
    CHECK(!strstr(lean, refs_key), "lean line keeps the references");
    free(lean);
    free(line);
    cg_finding_clear(&g);

    const char *bad[] = { "", "{}", "[1]", "{\"schema\":\"x\"}", BAD_RULE };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(cg_finding_parse(bad[i], strlen(bad[i]), &g, err, sizeof(err)) !=
                  0,
              "bad finding %zu accepted", i);

    test_ocsf(&f);
    for (size_t i = 0; i < sizeof(ocsf_rows) / sizeof(ocsf_rows[0]); i++) {
        f.status = ocsf_rows[i].status;
        struct cg_ocsf w;
        cg_ocsf_init(&w, NULL);
        char *s = cg_finding_ocsf(&w, &f);
        json_t *j = json_loads(s, 0, NULL);
        const char *st = cg_status_name(f.status);
        CHECK(j != NULL, "%s: OCSF is not JSON", st);
        long long n;
        CHECK(cg_json_int(j, "class_uid", &n) == CG_JSON_OK && n == 2003,
              "%s: class_uid", st);
        CHECK(cg_json_int(j, "category_uid", &n) == CG_JSON_OK && n == 2,
              "%s: category_uid", st);
        CHECK(cg_json_int(j, "type_uid", &n) == CG_JSON_OK && n == 200301,
              "%s: type_uid", st);
        CHECK(cg_json_int(j, "activity_id", &n) == CG_JSON_OK && n == 1,
              "%s: activity_id", st);
        CHECK(cg_json_int(j, "severity_id", &n) == CG_JSON_OK &&
                  n == ocsf_rows[i].severity_id,
              "%s: severity_id %lld", st, n);
        CHECK(cg_json_int(j, "time", &n) == CG_JSON_OK && n == f.time_ms,
              "%s: time in ms", st);
        CHECK(cg_json_int(j, "status_id", &n) == CG_JSON_OK, "%s: status_id",
              st);
        json_t *meta = cg_json_member(j, "metadata");
        CHECK(cg_json_str(cg_json_member(meta, "product"), "name") &&
                  cg_json_str(meta, "version"),
              "%s: metadata product and version", st);
        json_t *fi = cg_json_member(j, "finding_info");
        char uid[37];
        cg_finding_uid(f.rule, f.subscription_id, uid);
        CHECK(cg_json_str(fi, "uid") && !strcmp(cg_json_str(fi, "uid"), uid) &&
                  cg_json_str(fi, "title"),
              "%s: finding_info uid/title", st);
        json_t *comp = cg_json_member(j, "compliance");
        CHECK(cg_json_int(comp, "status_id", &n) == CG_JSON_OK &&
                  n == ocsf_rows[i].compliance_status_id,
              "%s: compliance.status_id %lld", st, n);
        CHECK(json_array_size(cg_json_member(comp, "standards")) >= 1 &&
                  cg_json_str(comp, "control"),
              "%s: compliance standards/control", st);
        json_t *cloud = cg_json_member(j, "cloud");
        json_t *acct = cg_json_member(cloud, "account");
        CHECK(cg_json_str(cloud, "provider") &&
                  !strcmp(cg_json_str(cloud, "provider"), "Azure"),
              "%s: cloud.provider", st);
        CHECK(cg_json_str(acct, "uid") &&
                  !strcmp(cg_json_str(acct, "uid"), SUB),
              "%s: cloud.account.uid", st);
        CHECK(cg_json_str(cg_json_member(j, "remediation"), "desc"),
              "%s: remediation.desc", st);
        json_decref(j);
        free(s);
    }

    char u1[37], u2[37], u3[37];
    cg_finding_uid(CG_RULE_OWNER_ALERTS, SUB, u1);
    cg_finding_uid(CG_RULE_OWNER_ALERTS, "0B1F6471-1BF0-4DDA-AEC3-CB9272F09590",
                   u2);
    cg_finding_uid(CG_RULE_ATTACK_PATHS, SUB, u3);
    CHECK(!strcmp(u1, u2), "uid depends on case");
    CHECK(strcmp(u1, u3) != 0, "uid ignores the rule");
    CHECK(strlen(u1) == 36 && u1[14] == '5', "uid shape %s", u1);

    for (int r = 0; r < CG_RULE_COUNT; r++) {
        const struct cg_rule_info *ri = cg_rule_info((enum cg_rule)r);
        CHECK((int)cg_rule_parse(ri->id) == r, "rule id %s", ri->id);
        CHECK(ri->nrefs > 0, "rule %s has no references", ri->id);
    }
    cg_finding_clear(&f);
    return check_done("finding");
}
