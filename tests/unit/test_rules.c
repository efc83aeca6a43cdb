/*
 * The rule contract, branch by branch: inline bodies with the settings that
 * matter (levels, exact mode, required addresses, several contacts, pages).
 */
#include "../check.h"
#include "contacts.h"
#include "evaluate.h"
#include "owners.h"

#include <stdlib.h>
#include <string.h>

#define V23(props)                                                             \
    "{\"value\":[{\"name\":\"default\",\"properties\":" props "}]}"
#define ON_OWNER                                                               \
    "\"notificationsByRole\":{\"state\":\"On\",\"roles\":[\"Owner\"]}"

struct row {
    const char *name;
    enum cg_api_version version;
    const char *body;
    const char *body2; /* a second page, or NULL */
    enum cg_level alert_level;
    bool exact;
    enum cg_level attack_level;
    const char *required; /* configured addresses that must be present */
    int rule;
    const char *want; /* STATUS:CODE */
};

static const struct row rows[] = {
    { "2023 alert Low passes level High", CG_API_2023,
      V23("{\"isEnabled\":true,\"notificationsSources\":[{\"sourceType\":"
          "\"Alert\",\"minimalSeverity\":\"Low\"}]}"),
      NULL, CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_ALERT_SEVERITY,
      "PASS:ALERT_SEVERITY_OK" },
    { "exact mode: Low is not exactly High", CG_API_2023,
      V23("{\"isEnabled\":true,\"notificationsSources\":[{\"sourceType\":"
          "\"Alert\",\"minimalSeverity\":\"Low\"}]}"),
      NULL, CG_LEVEL_HIGH, true, CG_LEVEL_HIGH, NULL, CG_RULE_ALERT_SEVERITY,
      "FAIL:ALERT_SEVERITY_NOT_EXACT" },
    { "exact mode: High is exactly High", CG_API_2023,
      V23("{\"isEnabled\":true,\"notificationsSources\":[{\"sourceType\":"
          "\"Alert\",\"minimalSeverity\":\"high\"}]}"),
      NULL, CG_LEVEL_HIGH, true, CG_LEVEL_HIGH, NULL, CG_RULE_ALERT_SEVERITY,
      "PASS:ALERT_SEVERITY_OK" },
    { "exact mode: one of two sources is exact", CG_API_2023,
      V23("{\"isEnabled\":true,\"notificationsSources\":[{\"sourceType\":"
          "\"Alert\",\"minimalSeverity\":\"Low\"},{\"sourceType\":\"Alert\","
          "\"minimalSeverity\":\"High\"}]}"),
      NULL, CG_LEVEL_HIGH, true, CG_LEVEL_HIGH, NULL, CG_RULE_ALERT_SEVERITY,
      "PASS:ALERT_SEVERITY_OK" },
    { "level Medium: High leaves Medium out", CG_API_2023,
      V23("{\"isEnabled\":true,\"notificationsSources\":[{\"sourceType\":"
          "\"Alert\",\"minimalSeverity\":\"High\"}]}"),
      NULL, CG_LEVEL_MEDIUM, false, CG_LEVEL_HIGH, NULL, CG_RULE_ALERT_SEVERITY,
      "FAIL:ALERT_SEVERITY_TOO_HIGH" },
    { "level Low: Low passes", CG_API_2023,
      V23("{\"isEnabled\":true,\"notificationsSources\":[{\"sourceType\":"
          "\"Alert\",\"minimalSeverity\":\"Low\"}]}"),
      NULL, CG_LEVEL_LOW, false, CG_LEVEL_HIGH, NULL, CG_RULE_ALERT_SEVERITY,
      "PASS:ALERT_SEVERITY_OK" },
    { "2017 On counts as High: fails level Medium", CG_API_2017,
      "{\"value\":[{\"name\":\"default1\",\"properties\":{"
      "\"alertNotifications\":\"On\"}}]}",
      NULL, CG_LEVEL_MEDIUM, false, CG_LEVEL_HIGH, NULL, CG_RULE_ALERT_SEVERITY,
      "FAIL:ALERT_SEVERITY_TOO_HIGH" },
    { "2020 On without severity", CG_API_2020,
      "[{\"properties\":{\"alertNotifications\":{\"state\":\"On\"}}}]", NULL,
      CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_ALERT_SEVERITY,
      "FAIL:ALERT_SEVERITY_MISSING" },
    { "2020 severity Off state with Low", CG_API_2020,
      "[{\"properties\":{\"alertNotifications\":{\"state\":\"Off\","
      "\"minimalSeverity\":\"Low\"}}}]",
      NULL, CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_ALERT_SEVERITY,
      "FAIL:ALERT_NOTIFICATIONS_OFF" },
    { "attack level Critical: Critical passes", CG_API_2023,
      V23("{\"isEnabled\":true,\"notificationsSources\":[{\"sourceType\":"
          "\"AttackPath\",\"minimalRiskLevel\":\"Critical\"}]}"),
      NULL, CG_LEVEL_HIGH, false, CG_LEVEL_CRITICAL, NULL, CG_RULE_ATTACK_PATHS,
      "PASS:ATTACK_PATHS_OK" },
    { "attack default High: Critical fails", CG_API_2023,
      V23("{\"isEnabled\":true,\"notificationsSources\":[{\"sourceType\":"
          "\"AttackPath\",\"minimalRiskLevel\":\"Critical\"}]}"),
      NULL, CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_ATTACK_PATHS,
      "FAIL:RISK_LEVEL_TOO_HIGH" },
    { "attack level Low: Medium fails", CG_API_2023,
      V23("{\"isEnabled\":true,\"notificationsSources\":[{\"sourceType\":"
          "\"AttackPath\",\"minimalRiskLevel\":\"Medium\"}]}"),
      NULL, CG_LEVEL_HIGH, false, CG_LEVEL_LOW, NULL, CG_RULE_ATTACK_PATHS,
      "FAIL:RISK_LEVEL_TOO_HIGH" },
    { "attack path with an Alert-style key only", CG_API_2023,
      V23("{\"isEnabled\":true,\"notificationsSources\":[{\"sourceType\":"
          "\"AttackPath\",\"minimalSeverity\":\"Low\"}]}"),
      NULL, CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_ATTACK_PATHS,
      "FAIL:RISK_LEVEL_MISSING" },
    { "required address missing", CG_API_2023,
      V23("{\"isEnabled\":true,\"emails\":\"ops@contoso.com\"}"), NULL,
      CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, "soc@contoso.com",
      CG_RULE_ADDITIONAL_EMAILS, "FAIL:CONFIGURED_EMAIL_MISSING" },
    { "required address present in other case", CG_API_2023,
      V23("{\"isEnabled\":true,\"emails\":\"ops@contoso.com;"
          "SOC@Contoso.com\"}"),
      NULL, CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, "soc@contoso.com",
      CG_RULE_ADDITIONAL_EMAILS, "PASS:EMAIL_VALID" },
    { "one of two required addresses missing", CG_API_2023,
      V23("{\"isEnabled\":true,\"emails\":\"soc@contoso.com\"}"), NULL,
      CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, "soc@contoso.com;cert@contoso.com",
      CG_RULE_ADDITIONAL_EMAILS, "FAIL:CONFIGURED_EMAIL_MISSING" },
    { "no valid address beats a missing required one", CG_API_2023,
      V23("{\"isEnabled\":true,\"emails\":\"nope\"}"), NULL, CG_LEVEL_HIGH,
      false, CG_LEVEL_HIGH, "soc@contoso.com", CG_RULE_ADDITIONAL_EMAILS,
      "FAIL:EMAILS_INVALID" },
    { "disabled contact beside an enabled one", CG_API_2023,
      "{\"value\":[{\"name\":\"a\",\"properties\":{\"isEnabled\":false,"
      "\"emails\":\"x@contoso.com\"," ON_OWNER "}},{\"name\":\"b\","
      "\"properties\":{\"isEnabled\":true," ON_OWNER "}}]}",
      NULL, CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_OWNER_ALERTS,
      "PASS:OWNER_ALERTS_ON" },
    { "only the disabled contact has an address", CG_API_2023,
      "{\"value\":[{\"name\":\"a\",\"properties\":{\"isEnabled\":false,"
      "\"emails\":\"x@contoso.com\"}},{\"name\":\"b\",\"properties\":{"
      "\"isEnabled\":true}}]}",
      NULL, CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL,
      CG_RULE_ADDITIONAL_EMAILS, "FAIL:EMAILS_MISSING" },
    { "isEnabled 1 is not true", CG_API_2023,
      V23("{\"isEnabled\":1,\"emails\":\"x@contoso.com\"}"), NULL,
      CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_ADDITIONAL_EMAILS,
      "FAIL:CONTACT_DISABLED" },
    { "second page passes", CG_API_2023,
      "{\"value\":[{\"name\":\"a\",\"properties\":{\"isEnabled\":true}}],"
      "\"nextLink\":\"https://x/next\"}",
      "{\"value\":[{\"name\":\"b\",\"properties\":{\"isEnabled\":true,"
      "\"emails\":\"soc@contoso.com\"}}],\"nextLink\":null}",
      CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_ADDITIONAL_EMAILS,
      "PASS:EMAIL_VALID" },
    { "2020 bare array, attack paths", CG_API_UNKNOWN,
      "[{\"properties\":{\"emails\":\"a@contoso.com\"}}]", NULL, CG_LEVEL_HIGH,
      false, CG_LEVEL_HIGH, NULL, CG_RULE_ATTACK_PATHS,
      "ERROR:API_VERSION_UNSUPPORTED" },
    { "role Owner odd case", CG_API_2020,
      "[{\"properties\":{\"notificationsByRole\":{\"state\":\"ON\","
      "\"roles\":[\"OWNER\"]}}}]",
      NULL, CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_OWNER_ALERTS,
      "PASS:OWNER_ALERTS_ON" },
    { "roles with non-strings", CG_API_2020,
      "[{\"properties\":{\"notificationsByRole\":{\"state\":\"On\","
      "\"roles\":[1,null,{\"r\":\"Owner\"},\"Contributor\"]}}}]",
      NULL, CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_OWNER_ALERTS,
      "FAIL:OWNER_ROLE_MISSING" },
    { "2017 alertsToAdmins absent", CG_API_2017,
      "{\"value\":[{\"properties\":{\"email\":\"a@contoso.com\"}}]}", NULL,
      CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_OWNER_ALERTS,
      "FAIL:ALERTS_TO_ADMINS_OFF" },
    { "2017 reads email, not emails", CG_API_2017,
      "{\"value\":[{\"properties\":{\"emails\":\"a@contoso.com\"}}]}", NULL,
      CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_ADDITIONAL_EMAILS,
      "FAIL:EMAILS_MISSING" },
    { "2023 reads emails, not email", CG_API_2023,
      V23("{\"isEnabled\":true,\"email\":\"a@contoso.com\"}"), NULL,
      CG_LEVEL_HIGH, false, CG_LEVEL_HIGH, NULL, CG_RULE_ADDITIONAL_EMAILS,
      "FAIL:EMAILS_MISSING" },
};

struct email_row {
    const char *addr;
    bool valid;
};

static const struct email_row emails[] = {
    { "john@contoso.com", true },
    { "j.o-h_n+tag@mail.contoso.co.uk", true },
    { "a@b.cd", true },
    { "x@xn--80ak6aa92e.com", true },
    { "", false },
    { "@contoso.com", false },
    { "john@", false },
    { "john", false },
    { "john@@contoso.com", false },
    { "jo@hn@contoso.com", false },
    { "jo hn@contoso.com", false },
    { "john@contoso", false },
    { "john@contoso.c", false },
    { "john@contoso.c0m", false },
    { "john@-contoso.com", false },
    { "john@contoso-.com", false },
    { "john@contoso..com", false },
    { "john@.contoso.com", false },
    { "john@contoso.com.", false },
    { "john@con_toso.com", false },
    { "john@contoso.com jane@contoso.com", false },
    { "jo\thn@contoso.com", false },
    /* Internationalised: the domain is judged as its A-labels (IDNA2008),
     * the local part as well-formed UTF-8 without white space. */
    { "j\xc3\xb6rg+alerts@b\xc3\xbc"
      "cher.example",
      true },
    { "alerts@B\xc3\x9c"
      "CHER.example",
      true },
    { "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf"
      "\xe5\x91\x8a",
      true },
    { "ivan@\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.\xd1\x80\xd1"
      "\x84",
      true },
    { "x@xn--p1ai.xn--p1ai", true },
    { "j\xc3\xb6rg@b\xc3\xbc"
      "cher",
      false },
    { "a@b\xc3\xbc"
      "cher..example",
      false },
    { "a@\xe2\x98\x83.example", false },
    { "j\xc3rg@contoso.com", false },
    { "j\xc0\xafrg@contoso.com", false },
    { "j\xed\xa0\x80rg@contoso.com", false },
    { "jo\xc2\xa0hn@contoso.com", false },
    { "jo\xe3\x80\x80hn@contoso.com", false },
    { "john@xn--zz.com", false },
    { "12345678901234567890123456789012345678901234567890123456789012345@b.co",
      false },
};

/* owner-reachable from Owner records built here: the branches the
 * fixtures cannot reach (the rule off, an unreadable read that is
 * SKIPPED, the evidence's cap); `passing` is a body owner-alerts passes. */
static void test_reachable(const char *passing)
{
    static const struct {
        const char *name;
        int owners_sp; /* service principal Owners to read */
        bool user, off, unreadable_skip;
        const char *want;
        size_t listed, not_listed;
    } rr[] = {
        { "the rule off", 1, false, true, false, "SKIPPED:RULE_DISABLED", 0,
          0 },
        { "a read that found the subscription gone", 0, false, false, true,
          "SKIPPED:SUBSCRIPTION_NOT_FOUND", 0, 0 },
        { "60 principals, no user: 50 listed", 60, false, false, false,
          "FAIL:NO_USER_OWNER", 50, 10 },
        { "a user among 60", 60, true, false, false, "PASS:USER_OWNER", 50,
          11 },
    };
    for (size_t i = 0; i < sizeof(rr) / sizeof(rr[0]); i++) {
        struct cg_owners o;
        cg_owners_init(&o);
        json_t *items = json_array();
        for (int k = 0; k < rr[i].owners_sp; k++)
            json_array_append_new(
                items,
                json_pack("{s:{s:s,s:s,s:s}}", "properties", "roleDefinitionId",
                          "/providers/Microsoft.Authorization/roleDefinitions/"
                          "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
                          "principalId", "sp", "principalType",
                          "ServicePrincipal"));
        if (rr[i].user)
            json_array_append_new(
                items,
                json_pack("{s:{s:s,s:s,s:s}}", "properties", "roleDefinitionId",
                          "8E3AF657-A8FF-443C-A75C-2FE8C4BCB635", "principalId",
                          "u", "principalType", "User"));
        char err[128];
        CHECK(cg_owners_parse_json(&o, items, err, sizeof(err)) == 0, "%s: %s",
              rr[i].name, err);
        json_decref(items);
        if (rr[i].unreadable_skip)
            cg_owners_unreadable(&o, CG_STATUS_SKIPPED,
                                 "SUBSCRIPTION_NOT_FOUND", "It is gone.");
        struct cg_rules_conf rc;
        cg_rules_conf_default(&rc);
        rc.owner_enabled = !rr[i].off;
        struct cg_contacts ct;
        struct cg_finding out[CG_RULE_COUNT];
        memset(out, 0, sizeof(out));
        cg_contacts_init(&ct);
        cg_evaluate_body(passing, strlen(passing), CG_API_UNKNOWN, &o, &rc, &ct,
                         out);
        const struct cg_finding *f = &out[CG_RULE_OWNER_REACHABLE];
        char got[96];
        snprintf(got, sizeof(got), "%s:%s", cg_status_name(f->status),
                 f->reason_code);
        CHECK(out[CG_RULE_OWNER_ALERTS].status == CG_STATUS_PASS &&
                  strcmp(got, rr[i].want) == 0,
              "reachable %s: want %s, got %s (%s)", rr[i].name, rr[i].want, got,
              f->reason);
        json_t *listed = json_object_get(f->evidence, "owners");
        json_int_t more = json_integer_value(
            json_object_get(f->evidence, "owners_not_listed"));
        CHECK(json_array_size(listed) == rr[i].listed &&
                  (size_t)more == rr[i].not_listed,
              "reachable %s: %zu listed, %lld not", rr[i].name,
              json_array_size(listed), (long long)more);
        for (int k = 0; k < CG_RULE_COUNT; k++)
            cg_finding_clear(&out[k]);
        cg_contacts_free(&ct);
        cg_owners_free(&o);
    }
    /* Only the GUID at the end names the role. */
    CHECK(cg_owners_is_owner_role("/subscriptions/x/providers/"
                                  "Microsoft.Authorization/roleDefinitions/"
                                  "8e3af657-a8ff-443c-a75c-2fe8c4bcb635") &&
              !cg_owners_is_owner_role("8e3af657-a8ff-443c-a75c-"
                                       "2fe8c4bcb635/x") &&
              !cg_owners_is_owner_role(NULL) && !cg_owners_is_owner_role(""),
          "owner role id matching");
}

int main(void)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct cg_rules_conf rc;
        cg_rules_conf_default(&rc);
        rc.alert_level = r->alert_level;
        rc.alert_exact = r->exact;
        rc.attack_level = r->attack_level;
        rc.require_configured = r->required != NULL;
        rc.configured_emails = r->required;
        struct cg_contacts ct;
        cg_contacts_init(&ct);
        char err[256];
        int rc1 = cg_contacts_parse(&ct, r->body, strlen(r->body), r->version,
                                    err, sizeof(err));
        CHECK(rc1 == 0, "%s: parse: %s", r->name, err);
        if (r->body2) {
            rc1 = cg_contacts_parse(&ct, r->body2, strlen(r->body2), r->version,
                                    err, sizeof(err));
            CHECK(rc1 == 0, "%s: page 2: %s", r->name, err);
        }
        struct cg_finding out[CG_RULE_COUNT];
        memset(out, 0, sizeof(out));
        cg_evaluate(&ct, NULL, &rc, out);
        char got[96];
        snprintf(got, sizeof(got), "%s:%s", cg_status_name(out[r->rule].status),
                 out[r->rule].reason_code);
        CHECK(strcmp(got, r->want) == 0, "%s: want %s, got %s (%s)", r->name,
              r->want, got, out[r->rule].reason);
        for (int k = 0; k < CG_RULE_COUNT; k++)
            cg_finding_clear(&out[k]);
        cg_contacts_free(&ct);
    }
    for (size_t i = 0; i < sizeof(emails) / sizeof(emails[0]); i++) {
        const struct email_row *e = &emails[i];
        CHECK(cg_email_valid(e->addr, strlen(e->addr)) == e->valid,
              "address '%s': want %s", e->addr, e->valid ? "valid" : "invalid");
    }

    /* Purity: the same input twice gives the same verdicts and evidence. */
    const char *body = rows[0].body;
    char *dumps[2];
    for (int k = 0; k < 2; k++) {
        struct cg_contacts ct;
        struct cg_rules_conf rc;
        struct cg_finding out[CG_RULE_COUNT];
        memset(out, 0, sizeof(out));
        cg_contacts_init(&ct);
        cg_rules_conf_default(&rc);
        cg_evaluate_body(body, strlen(body), CG_API_UNKNOWN, NULL, &rc, &ct,
                         out);
        dumps[k] = json_dumps(out[2].evidence, JSON_SORT_KEYS);
        for (int j = 0; j < CG_RULE_COUNT; j++)
            cg_finding_clear(&out[j]);
        cg_contacts_free(&ct);
    }
    CHECK(strcmp(dumps[0], dumps[1]) == 0, "evaluation is not repeatable");
    free(dumps[0]);
    free(dumps[1]);

    /* The change hash ignores key order and API version spelling. */
    const char *a = "{\"value\":[{\"name\":\"default\",\"properties\":{"
                    "\"isEnabled\":true,\"emails\":\"a@b.co\"}}]}";
    const char *b = "{\"value\":[{\"properties\":{\"emails\":\"a@b.co\","
                    "\"isEnabled\":true},\"name\":\"default\"}]}";
    const char *c = "{\"value\":[{\"properties\":{\"emails\":\"c@b.co\","
                    "\"isEnabled\":true},\"name\":\"default\"}]}";
    char ha[65], hb[65], hc[65];
    struct cg_contacts ct;
    char err[128];
    cg_contacts_init(&ct);
    cg_contacts_parse(&ct, a, strlen(a), CG_API_UNKNOWN, err, sizeof(err));
    cg_contacts_hash(&ct, ha);
    cg_contacts_free(&ct);
    cg_contacts_parse(&ct, b, strlen(b), CG_API_UNKNOWN, err, sizeof(err));
    cg_contacts_hash(&ct, hb);
    cg_contacts_free(&ct);
    cg_contacts_parse(&ct, c, strlen(c), CG_API_UNKNOWN, err, sizeof(err));
    cg_contacts_hash(&ct, hc);
    cg_contacts_free(&ct);
    CHECK(strcmp(ha, hb) == 0, "hash depends on key order");
    CHECK(strcmp(ha, hc) != 0, "hash ignores the addresses");
    CHECK(strlen(ha) == 64, "hash is not 64 hex digits");
    test_reachable("{\"value\":[{\"name\":\"default\",\"properties\":{"
                   "\"isEnabled\":true,\"notificationsByRole\":{\"state\":"
                   "\"On\",\"roles\":[\"Owner\"]}}}]}");
    return check_done("rules");
}
