/*
 * Every fixture in tests/fixtures/contacts/cases.txt through the parser and
 * the contact rules, and every row of tests/fixtures/roles/cases.txt
 * (role assignments beside a contacts body) through owner-reachable,
 * compared with the verdicts written by hand in those files.
 */
#include "../check.h"
#include "contacts.h"
#include "err.h"
#include "evaluate.h"
#include "json.h"
#include "mem.h"
#include "owners.h"

#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct cg_buf b;
    cg_buf_init(&b, 64 << 20);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        cg_buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    return b.data ? cg_buf_take(&b) : cg_strdup("");
}

/* The hash's canonical text, written directly, is the tree's dump. */
static void check_canonical(const struct cg_contacts *ct, const char *what)
{
    json_t *j = cg_contacts_to_json(ct);
    char *want = cg_json_dump(j);
    struct cg_buf b;
    cg_buf_init(&b, CG_CONTACTS_CANON_MAX);
    int rc = cg_contacts_canonical(ct, &b);
    CHECK(rc == 0 && b.data && !strcmp(b.data, want),
          "%s: canonical text differs:\n got %s\nwant %s", what,
          b.data ? b.data : "(none)", want);
    cg_buf_free(&b);
    free(want);
    json_decref(j);
}

/* Strings that need escaping, in every field the canonical text holds. */
static void test_canonical_escapes(void)
{
    static const char *const bodies[] = {
        "{\"value\":[{\"name\":\"q\\\"b\\\\s/\",\"properties\":{"
        "\"isEnabled\":true,\"emails\":\"a\\u0001b\\u001fc\\td\\ne\\rf\\bg\\fh"
        "\\u007f\",\"phone\":\"\\u00e9\\u20ac\\ud83d\\ude00\","
        "\"notificationsByRole\":"
        "{\"state\":\"O\\\"n\",\"roles\":[\"Own\\ner\",\"\\\\\"]},"
        "\"notificationsSources\":[{\"sourceType\":\"Al\\u000bert\","
        "\"minimalSeverity\":\"H\\u0000igh\"},{\"sourceType\":\"AttackPath\"}]}"
        "},"
        "{\"name\":\"second\",\"properties\":{\"isEnabled\":false}}]}",
        "{\"value\":[]}",
        "{\"id\":\"x\",\"name\":\"default1\",\"properties\":{\"email\":"
        "\"\\\"\","
        "\"alertNotifications\":\"On\\n\",\"alertsToAdmins\":\"\"}}",
        "[{\"name\":\"default\",\"properties\":{\"emails\":\"x@y.zz\","
        "\"alertNotifications\":{\"state\":\"On\",\"minimalSeverity\":\"Low\"}}"
        "}]",
    };
    struct cg_rules_conf rc;
    cg_rules_conf_default(&rc);
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct cg_contacts ct;
        struct cg_finding out[CG_RULE_COUNT];
        memset(out, 0, sizeof(out));
        cg_contacts_init(&ct);
        cg_evaluate_body(bodies[i], strlen(bodies[i]), CG_API_UNKNOWN, NULL,
                         &rc, &ct, out);
        char what[32];
        snprintf(what, sizeof(what), "escapes row %zu", i);
        check_canonical(&ct, what);
        for (int r = 0; r < CG_RULE_COUNT; r++)
            cg_finding_clear(&out[r]);
        cg_contacts_free(&ct);
    }
}

static enum cg_api_version short_version(const char *s)
{
    if (!strcmp(s, "2017"))
        return CG_API_2017;
    if (!strcmp(s, "2020"))
        return CG_API_2020;
    if (!strcmp(s, "2023"))
        return CG_API_2023;
    return CG_API_UNKNOWN;
}

/* One row of roles/cases.txt: the owner-reachable verdict of a role
 * assignments body ("-": none given) beside a contacts body. */
static void roles_row(const char *dir, const char *roles_dir, int lineno,
                      const char *roles, const char *contacts, int groups,
                      const char *want)
{
    char path[1024];
    size_t len = 0, rlen = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, contacts);
    char *body = slurp(path, &len);
    char *rbody = NULL;
    if (strcmp(roles, "-") != 0) {
        snprintf(path, sizeof(path), "%s/%s", roles_dir, roles);
        rbody = slurp(path, &rlen);
        CHECK(rbody != NULL, "roles/cases.txt:%d: cannot read %s", lineno,
              roles);
    }
    CHECK(body != NULL, "roles/cases.txt:%d: cannot read %s", lineno, contacts);
    if (!body || (strcmp(roles, "-") != 0 && !rbody))
        goto out;
    struct cg_owners o;
    cg_owners_init(&o);
    if (rbody) {
        char err[256];
        int rc = cg_owners_parse(&o, rbody, rlen, err, sizeof(err));
        if (rc)
            cg_owners_unreadable(
                &o, CG_STATUS_ERROR,
                rc == CG_ETOOBIG ? "BODY_TOO_LARGE" : "BODY_MALFORMED", err);
    }
    struct cg_rules_conf rc;
    cg_rules_conf_default(&rc);
    rc.owner_count_groups = groups != 0;
    struct cg_contacts ct;
    struct cg_finding out[CG_RULE_COUNT];
    memset(out, 0, sizeof(out));
    cg_contacts_init(&ct);
    cg_evaluate_body(body, len, CG_API_UNKNOWN, rbody ? &o : NULL, &rc, &ct,
                     out);
    const struct cg_finding *f = &out[CG_RULE_OWNER_REACHABLE];
    char got[96];
    snprintf(got, sizeof(got), "%s:%s", cg_status_name(f->status),
             f->reason_code);
    CHECK(f->rule == CG_RULE_OWNER_REACHABLE && strcmp(got, want) == 0,
          "roles/cases.txt:%d %s with %s (groups %d): want %s, got %s (%s)",
          lineno, roles, contacts, groups, want, got, f->reason);
    CHECK(f->evidence != NULL && f->reason && f->reason[0],
          "roles/cases.txt:%d %s: no reason or evidence", lineno, roles);
    for (int r = 0; r < CG_RULE_COUNT; r++)
        cg_finding_clear(&out[r]);
    cg_contacts_free(&ct);
    cg_owners_free(&o);
out:
    free(body);
    free(rbody);
}

static int roles_table(const char *dir, const char *roles_dir)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/cases.txt", roles_dir);
    FILE *cases = fopen(path, "r");
    CHECK(cases != NULL, "cannot open %s", path);
    if (!cases)
        return 0;
    char line[1024];
    int lineno = 0, rows = 0;
    while (fgets(line, sizeof(line), cases)) {
        lineno++;
        char roles[256], contacts[256], want[64];
        int groups;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%255s %255s %d %63s", roles, contacts, &groups,
                   want) != 4) {
            CHECK(0, "roles/cases.txt:%d: malformed row", lineno);
            continue;
        }
        rows++;
        roles_row(dir, roles_dir, lineno, roles, contacts, groups, want);
    }
    fclose(cases);
    return rows;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/fixtures/contacts";
    char path[1024];
    snprintf(path, sizeof(path), "%s/cases.txt", dir);
    FILE *cases = fopen(path, "r");
    CHECK(cases != NULL, "cannot open %s", path);
    if (!cases)
        return check_done("fixtures");

    char line[2048];
    int lineno = 0, rows = 0;
    struct cg_rules_conf rc;
    cg_rules_conf_default(&rc);
    while (fgets(line, sizeof(line), cases)) {
        lineno++;
        char file[256], ver[16], want[CG_RULE_COUNT][64];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%255s %15s %63s %63s %63s %63s", file, ver, want[0],
                   want[1], want[2], want[3]) != 6) {
            CHECK(0, "cases.txt:%d: malformed row", lineno);
            continue;
        }
        rows++;
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        size_t len = 0;
        char *body = slurp(path, &len);
        CHECK(body != NULL, "cases.txt:%d: cannot read %s", lineno, file);
        if (!body)
            continue;
        struct cg_contacts ct;
        struct cg_finding out[CG_RULE_COUNT];
        memset(out, 0, sizeof(out));
        cg_contacts_init(&ct);
        cg_evaluate_body(body, len, short_version(ver), NULL, &rc, &ct, out);
        check_canonical(&ct, file);
        /* This table holds the contact rules; owner-reachable has its own
         * (roles/cases.txt). */
        for (int r = 0; r < CG_RULE_COUNT; r++) {
            if (r == CG_RULE_OWNER_REACHABLE) {
                cg_finding_clear(&out[r]);
                continue;
            }
            char got[96];
            snprintf(got, sizeof(got), "%s:%s", cg_status_name(out[r].status),
                     out[r].reason_code);
            CHECK(strcmp(got, want[r]) == 0,
                  "cases.txt:%d %s (%s) %s: want %s, got %s (%s)", lineno, file,
                  ver, cg_rule_info((enum cg_rule)r)->id, want[r], got,
                  out[r].reason);
            CHECK(out[r].evidence != NULL && out[r].reason && out[r].reason[0],
                  "cases.txt:%d %s: %s has no reason or evidence", lineno, file,
                  cg_rule_info((enum cg_rule)r)->id);
            cg_finding_clear(&out[r]);
        }
        cg_contacts_free(&ct);
        free(body);
    }
    fclose(cases);
    CHECK(rows >= 40, "only %d fixture rows", rows);
    test_canonical_escapes();
    if (argc > 2) {
        int nroles = roles_table(dir, argv[2]);
        CHECK(nroles >= 20, "only %d role assignment rows", nroles);
    } else {
        CHECK(0, "no role assignments fixture directory given");
    }
    return check_done("fixtures");
}
