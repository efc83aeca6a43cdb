/*
 * The remediation plan: table rows including hostile current bodies, and
 * for every row the invariants that make remediation safe to switch on —
 * no address, role or source is ever removed, and a written body passes
 * every rule.
 */
#include "../check.h"
#include "contacts.h"
#include "evaluate.h"
#include "json.h"
#include "plan.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct row {
    const char *name;
    const char *current; /* contact JSON, or NULL: none exists */
    const char *emails;  /* policy addresses */
    enum cg_plan_outcome want;
    const char *change; /* a change that must be listed, or NULL */
    const char *says;   /* in the reason (BLOCKED) or held (CHANGE) */
};

#define P(props) "{\"name\":\"default\",\"properties\":" props "}"
#define GOOD                                                                   \
    "\"isEnabled\":true,\"emails\":\"soc@contoso.com\","                       \
    "\"notificationsByRole\""                                                  \
    ":{\"state\":\"On\",\"roles\":[\"Owner\"]},\"notificationsSources\":[{"    \
    "\"sourceType\":\"Alert\",\"minimalSeverity\":\"Low\"},{\"sourceType\":"   \
    "\"AttackPath\",\"minimalRiskLevel\":\"Medium\"}]"

static const struct row rows[] = {
    { "none exists", NULL, "soc@contoso.com", CG_PLAN_CHANGE,
      "emails: + soc@contoso.com", NULL },
    { "compliant already", P("{" GOOD "}"), "soc@contoso.com", CG_PLAN_NOOP,
      NULL, NULL },
    { "compliant, address in other case", P("{" GOOD "}"), "SOC@Contoso.COM",
      CG_PLAN_NOOP, NULL, NULL },
    { "owner missing, other roles kept",
      P("{\"isEnabled\":true,\"emails\":\"a@contoso.com\","
        "\"notificationsByRole\":{\"state\":\"On\",\"roles\":[\"AccountAdmin\","
        "\"Contributor\"]},\"notificationsSources\":[{\"sourceType\":\"Alert\","
        "\"minimalSeverity\":\"High\"},{\"sourceType\":\"AttackPath\","
        "\"minimalRiskLevel\":\"High\"}]}"),
      NULL, CG_PLAN_CHANGE, "notificationsByRole.roles: + Owner", NULL },
    { "role notifications off",
      P("{\"isEnabled\":true,\"emails\":\"a@contoso.com\","
        "\"notificationsByRole\":{\"state\":\"Off\",\"roles\":[\"Owner\"]},"
        "\"notificationsSources\":[{\"sourceType\":\"Alert\","
        "\"minimalSeverity\":\"High\"},{\"sourceType\":\"AttackPath\","
        "\"minimalRiskLevel\":\"High\"}]}"),
      NULL, CG_PLAN_CHANGE, "notificationsByRole.state: Off -> On", NULL },
    { "disabled", P("{\"isEnabled\":false,\"emails\":\"a@contoso.com\"}"), NULL,
      CG_PLAN_CHANGE, "isEnabled: false -> true", NULL },
    { "commas become semicolons, nothing lost",
      P("{\"isEnabled\":true,\"emails\":\"a@contoso.com, b@contoso.com\"}"),
      NULL, CG_PLAN_CHANGE, "emails: separators normalised to ';'", NULL },
    { "space-separated addresses both kept",
      P("{\"isEnabled\":true,\"emails\":\"a@contoso.com b@contoso.com\"}"),
      "c@contoso.com", CG_PLAN_CHANGE, "emails: + c@contoso.com", NULL },
    { "duplicates collapse case-insensitively",
      P("{\"isEnabled\":true,\"emails\":\"a@contoso.com;A@CONTOSO.com\"}"),
      "a@contoso.com", CG_PLAN_CHANGE, NULL, NULL },
    { "an invalid address holds back the address fix only",
      P("{\"isEnabled\":true,\"emails\":\"a@contoso.com;not-an-address\"}"),
      "soc@contoso.com", CG_PLAN_CHANGE, "notificationsByRole.roles: + Owner",
      "emails left as they are: the existing address 'not-an-address'" },
    { "an invalid address and nothing to fix: no-op",
      P("{\"isEnabled\":true,\"emails\":\"soc@contoso.com;x@y\","
        "\"notificationsByRole\":{\"state\":\"On\",\"roles\":[\"Owner\"]},"
        "\"notificationsSources\":[{\"sourceType\":\"Alert\","
        "\"minimalSeverity\":\"Low\"},{\"sourceType\":\"AttackPath\","
        "\"minimalRiskLevel\":\"Low\"}]}"),
      "SOC@contoso.com", CG_PLAN_NOOP, NULL, NULL },
    { "an invalid address whose list needs its fix blocks",
      P("{\"isEnabled\":true,\"emails\":\"soc@contoso.com;x@y\","
        "\"notificationsByRole\":{\"state\":\"On\",\"roles\":[\"Owner\"]},"
        "\"notificationsSources\":[{\"sourceType\":\"Alert\","
        "\"minimalSeverity\":\"Low\"},{\"sourceType\":\"AttackPath\","
        "\"minimalRiskLevel\":\"Low\"}]}"),
      "cert@contoso.com", CG_PLAN_BLOCKED, NULL, "'x@y' is not valid" },
    { "an invalid address in a comma list blocks everything",
      P("{\"isEnabled\":false,\"emails\":\"a@contoso.com,not-an-address\"}"),
      "soc@contoso.com", CG_PLAN_BLOCKED, NULL, "separators" },
    { "an internationalised address is valid; every fix applies",
      P("{\"isEnabled\":true,\"emails\":\"j\xc3\xb6rg+alerts@b\xc3\xbc"
        "cher.example\",\"notificationsByRole\":{\"state\":\"On\",\"roles\":"
        "[\"Owner\"]},\"notificationsSources\":[{\"sourceType\":\"Alert\","
        "\"minimalSeverity\":\"Low\"}]}"),
      "soc@contoso.com", CG_PLAN_CHANGE,
      "notificationsSources: + AttackPath (minimalRiskLevel High)", NULL },
    { "properties the write does not store block",
      P("{\"isEnabled\":false,\"emails\":\"a@contoso.com\","
        "\"futureSetting\":{\"x\":1},\"vendorTag\":\"blue\"}"),
      "soc@contoso.com", CG_PLAN_BLOCKED, NULL,
      "futureSetting, vendorTag, which a write with 2023-12-01-preview" },
    { "emails of the wrong type blocks",
      P("{\"isEnabled\":true,\"emails\":[\"a@contoso.com\"]}"),
      "soc@contoso.com", CG_PLAN_BLOCKED, NULL, NULL },
    { "severity Critical lowered to High, not duplicated",
      P("{\"isEnabled\":true,\"emails\":\"a@contoso.com\","
        "\"notificationsByRole\":{\"state\":\"On\",\"roles\":[\"Owner\"]},"
        "\"notificationsSources\":[{\"sourceType\":\"Alert\","
        "\"minimalSeverity\":\"Critical\"},{\"sourceType\":\"AttackPath\","
        "\"minimalRiskLevel\":\"Critical\"}]}"),
      NULL, CG_PLAN_CHANGE,
      "notificationsSources[AttackPath].minimalRiskLevel: Critical -> High",
      NULL },
    { "a more inclusive source is left alone",
      P("{\"isEnabled\":true,\"emails\":\"a@contoso.com\","
        "\"notificationsByRole\":{\"state\":\"On\",\"roles\":[\"Owner\"]},"
        "\"notificationsSources\":[{\"sourceType\":\"Alert\","
        "\"minimalSeverity\":\"Low\"}]}"),
      NULL, CG_PLAN_CHANGE,
      "notificationsSources: + AttackPath (minimalRiskLevel High)", NULL },
    { "unknown sources and roles survive",
      P("{\"isEnabled\":true,\"emails\":\"a@contoso.com\",\"phone\":\"+1 "
        "555\",\"notificationsByRole\":{\"state\":"
        "\"On\",\"roles\":[\"Owner\",\"SecurityReader\"]},"
        "\"notificationsSources\":[{\"sourceType\":\"Incident\","
        "\"minimalSeverity\":\"Low\"}]}"),
      NULL, CG_PLAN_CHANGE,
      "notificationsSources: + Alert (minimalSeverity "
      "High)",
      NULL },
    { "roles as a lone string are kept",
      P("{\"isEnabled\":true,\"emails\":\"a@contoso.com\","
        "\"notificationsByRole\":{\"state\":\"On\",\"roles\":\"Contributor\"}"
        "}"),
      NULL, CG_PLAN_CHANGE, "notificationsByRole.roles: + Owner", NULL },
    { "sources as a lone object are kept",
      P("{\"isEnabled\":true,\"emails\":\"a@contoso.com\","
        "\"notificationsSources\":{\"sourceType\":\"Alert\","
        "\"minimalSeverity\":\"Low\"}}"),
      NULL, CG_PLAN_CHANGE, "notificationsSources: made an array", NULL },
    { "properties of the wrong type", "{\"properties\":\"junk\"}",
      "soc@contoso.com", CG_PLAN_CHANGE, "emails: + soc@contoso.com", NULL },
    { "roles with junk items",
      P("{\"isEnabled\":true,\"emails\":\"a@b.co\","
        "\"notificationsByRole\":{\"roles\":[1,null,"
        "{\"r\":1},\"Owner\"]}}"),
      NULL, CG_PLAN_CHANGE, "notificationsByRole.state: absent -> On", NULL },
    { "type instead of sourceType is recognised",
      P("{\"isEnabled\":true,\"emails\":\"a@b.co\",\"notificationsByRole\":{"
        "\"state\":\"On\",\"roles\":[\"Owner\"]},\"notificationsSources\":[{"
        "\"type\":\"Alert\",\"minimalSeverity\":\"Low\"},{\"type\":"
        "\"AttackPath\",\"minimalRiskLevel\":\"Low\"}]}"),
      NULL, CG_PLAN_NOOP, NULL, NULL },
};

/* Every valid address of s, lower-cased, in a JSON array. */
static void split_addrs(const char *p, json_t *out)
{
    while (p && *p) {
        size_t n = strcspn(p, ";, \t");
        if (n && cg_email_valid(p, n)) {
            char buf[256];
            size_t k = n < sizeof(buf) - 1 ? n : sizeof(buf) - 1;
            for (size_t i = 0; i < k; i++)
                buf[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
            buf[k] = '\0';
            json_array_append_new(out, json_string(buf));
        }
        p += n;
        if (*p)
            p++;
    }
}

static bool arr_has_str(const json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v) && strcasecmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

static void check_invariants(const struct row *r, const struct cg_plan *p)
{
    const json_t *bp = cg_json_member(p->before, "properties");
    const json_t *ap = cg_json_member(p->body, "properties");
    /* Addresses. */
    json_t *before = json_array(), *after = json_array();
    split_addrs(cg_json_str(bp, "emails"), before);
    split_addrs(cg_json_str(ap, "emails"), after);
    size_t i;
    json_t *v;
    json_array_foreach(before, i, v)
    {
        CHECK(arr_has_str(after, json_string_value(v)), "%s: address %s lost",
              r->name, json_string_value(v));
    }
    const char *emails = cg_json_str(ap, "emails");
    CHECK(emails && !strchr(emails, ',') && !strchr(emails, ' '),
          "%s: written emails '%s' has a comma or space", r->name,
          emails ? emails : "(null)");
    /* Roles. */
    json_t *broles =
        cg_json_member(cg_json_member(bp, "notificationsByRole"), "roles");
    json_t *aroles =
        cg_json_member(cg_json_member(ap, "notificationsByRole"), "roles");
    if (json_is_array(broles)) {
        json_array_foreach(broles, i, v)
        {
            if (json_is_string(v))
                CHECK(arr_has_str(aroles, json_string_value(v)),
                      "%s: role %s lost", r->name, json_string_value(v));
        }
    }
    /* Sources: as many, or more; each before-type still present. */
    json_t *bs = cg_json_member(bp, "notificationsSources");
    json_t *as = cg_json_member(ap, "notificationsSources");
    if (json_is_array(bs)) {
        CHECK(json_array_size(as) >= json_array_size(bs), "%s: sources removed",
              r->name);
    }
    /* Unknown fields survive. */
    const char *k;
    json_object_foreach((json_t *)bp, k, v)
    {
        CHECK(cg_json_member(ap, k) != NULL, "%s: field %s removed", r->name,
              k);
    }
    /* The written body passes every contact rule (owner-reachable reads
     * role assignments, which no plan touches). */
    struct cg_contacts ct;
    struct cg_rules_conf rc;
    struct cg_finding out[CG_RULE_COUNT];
    char err[128];
    memset(out, 0, sizeof(out));
    cg_contacts_init(&ct);
    cg_rules_conf_default(&rc);
    CHECK(cg_contacts_parse_json(&ct, p->body, CG_API_2023, err, sizeof(err)) ==
              0,
          "%s: body unreadable: %s", r->name, err);
    cg_evaluate(&ct, NULL, &rc, out);
    for (int x = 0; x < CG_RULE_COUNT; x++) {
        CHECK(out[x].status == CG_STATUS_PASS || x == CG_RULE_OWNER_REACHABLE,
              "%s: after the plan %s is %s "
              "(%s)",
              r->name, cg_rule_info((enum cg_rule)x)->id,
              cg_status_name(out[x].status), out[x].reason_code);
        cg_finding_clear(&out[x]);
    }
    cg_contacts_free(&ct);
    json_decref(before);
    json_decref(after);
}

int main(void)
{
    for (size_t n = 0; n < sizeof(rows) / sizeof(rows[0]); n++) {
        const struct row *r = &rows[n];
        json_t *cur = r->current ? json_loads(r->current, 0, NULL) : NULL;
        CHECK(!r->current || cur, "%s: bad test JSON", r->name);
        struct cg_policy pol = { r->emails, CG_LEVEL_HIGH, CG_LEVEL_HIGH };
        struct cg_plan p;
        cg_plan_make(cur, &pol, &p);
        char *diff = cg_plan_diff(&p);
        CHECK(p.outcome == r->want, "%s: outcome %d, want %d (%s) %s", r->name,
              p.outcome, r->want, diff, p.reason);
        if (r->change)
            CHECK(strstr(diff, r->change) != NULL, "%s: changes '%s' lack '%s'",
                  r->name, diff, r->change);
        const char *said = p.outcome == CG_PLAN_BLOCKED ? p.reason : p.held;
        CHECK(r->says ? strstr(said, r->says) != NULL : !p.held[0],
              "%s: said '%s', want '%s'", r->name, said,
              r->says ? r->says : "");
        CHECK(p.loses_data == (r->says && strstr(r->says, "2023-12-01")),
              "%s: loses_data %d", r->name, (int)p.loses_data);
        if (p.held[0] && p.outcome == CG_PLAN_CHANGE) {
            /* Held back: the list is written back byte for byte. */
            json_t *cp = cg_json_member(cur, "properties");
            json_t *bp = cg_json_member(p.body, "properties");
            CHECK(json_equal(cg_json_member(cp, "emails"),
                             cg_json_member(bp, "emails")),
                  "%s: the held-back list was changed", r->name);
        }
        if (p.outcome == CG_PLAN_CHANGE) {
            CHECK(p.body != NULL && p.nchanges > 0, "%s: change without body",
                  r->name);
            check_invariants(r, &p);
        } else {
            CHECK(p.body == NULL, "%s: a body to write for a %s plan", r->name,
                  p.outcome == CG_PLAN_NOOP ? "no-op" : "blocked");
        }
        if (p.outcome == CG_PLAN_BLOCKED)
            CHECK(p.reason[0] != '\0', "%s: blocked without reason", r->name);
        /* Applying the plan to its own result changes nothing more. */
        if (p.outcome == CG_PLAN_CHANGE) {
            struct cg_plan again;
            cg_plan_make(p.body, &pol, &again);
            /* What was held back is still held back, nothing else. */
            CHECK(again.outcome == (p.held[0] ? CG_PLAN_BLOCKED : CG_PLAN_NOOP),
                  "%s: plan not idempotent", r->name);
            cg_plan_free(&again);
        }
        free(diff);
        cg_plan_free(&p);
        json_decref(cur);
    }
    /* What each version's write stores (its spec's
     * SecurityContactProperties), and nothing else. */
    static const struct {
        enum cg_api_version v;
        const char *key;
        bool stored;
    } keys[] = {
        { CG_API_2023, "emails", true },
        { CG_API_2023, "isEnabled", true },
        { CG_API_2023, "notificationsSources", true },
        { CG_API_2023, "alertNotifications", false },
        { CG_API_2023, "email", false },
        { CG_API_2023, "futureSetting", false },
        { CG_API_2020, "alertNotifications", true },
        { CG_API_2020, "isEnabled", false },
        { CG_API_2017, "email", true },
        { CG_API_2017, "alertsToAdmins", true },
        { CG_API_2017, "emails", false },
        { CG_API_UNKNOWN, "emails", false },
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        CHECK(cg_plan_stored(keys[i].v, keys[i].key) == keys[i].stored,
              "%s stored by %s: want %d", keys[i].key,
              cg_api_version_name(keys[i].v), (int)keys[i].stored);
    char names[16];
    json_t *b = json_pack("{s:{s:s,s:i,s:i}}", "properties", "emails", "a@b.co",
                          "futureSetting", 1, "vendorTag", 2);
    CHECK(cg_plan_unstored(b, CG_API_2023, names, sizeof(names)) == 2 &&
              !strcmp(names, "futureSetting, "),
          "unstored names truncated to the buffer: '%s'", names);
    json_decref(b);
    return check_done("plan");
}
