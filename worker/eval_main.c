/*
 * contactguard-eval — decide the five rules for one securityContacts body
 * and, with --role-assignments, one roleAssignments body.
 *
 * For people and scripts: reads a response body from a file or stdin,
 * prints one finding per rule as a JSON line (owner-alerts,
 * additional-emails, alert-severity, attack-paths, owner-reachable). Exit
 * status: 0 when none fails or is ERROR (owner-reachable without
 * --role-assignments is SKIPPED), 1 when any fails or is ERROR, 2 for a
 * usage error or an unreadable file. A malformed body is not a usage error:
 * it yields ERROR findings.
 */
#include "conf.h"
#include "contacts.h"
#include "err.h"
#include "evaluate.h"
#include "finding.h"
#include "job.h"
#include "log.h"
#include "mem.h"
#include "ocsf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define EVAL_INPUT_MAX (CG_CONTACTS_BODY_MAX + 1)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: contactguard-eval [--api-version V] [--subscription ID]\n"
            "                         [--tenant ID] [--format compact|ocsf]\n"
            "                         [--config FILE] [--set key=value]...\n"
            "                         [--role-assignments FILE] [FILE|-]\n"
            "\n"
            "Reads one Microsoft.Security/securityContacts response body "
            "(LIST, GET or\nthe 2020 bare array) and prints one JSON line "
            "per rule: owner-alerts,\nadditional-emails, alert-severity, "
            "attack-paths, owner-reachable.\n"
            "\n"
            "  --api-version V   2017-08-01-preview, 2020-01-01-preview or\n"
            "                    2023-12-01-preview (default: detected from "
            "the body)\n"
            "  --subscription ID subscription the body belongs to (default: "
            "from the\n"
            "                    contact's id)\n"
            "  --tenant ID       tenant id for the findings, and for "
            "per-tenant rules\n"
            "  --format F        compact (contactguard.finding/1, default) "
            "or ocsf\n"
            "                    (version: --set output.ocsf_version=1.4.0)\n"
            "  --role-assignments FILE\n"
            "                    a Microsoft.Authorization/roleAssignments "
            "LIST body\n"
            "                    ($filter=atScope()) for owner-reachable; "
            "without it\n"
            "                    that rule is SKIPPED\n"
            "  --config FILE     JSON configuration; --set key=value "
            "overrides a key,\n"
            "                    e.g. --set rules.alert_severity.level=Medium\n"
            "  --dump-config     print the effective configuration and exit\n"
            "  --version         print the version and exit\n"
            "\n"
            "Exit status: 0 no rule FAILs or is ERROR, 1 any FAIL or ERROR, "
            "2 usage\nerror or unreadable input.\n"
            "\n"
            "Configuration keys:\n");
    cg_conf_help(out);
}

static char *read_input(const char *path, size_t *len, char *errbuf,
                        size_t errsz)
{
    struct cg_buf b;
    cg_buf_init(&b, EVAL_INPUT_MAX);
    int rc = cg_buf_read_file(&b, path, errbuf, errsz);
    if (rc == CG_EIO) {
        cg_buf_free(&b);
        return NULL;
    }
    /* An over-long body is still evaluated: the parser turns it into
     * ERROR findings with a reason, as the worker would. */
    *len = b.len;
    return cg_buf_take(&b);
}

/* The subscription id from the first "/subscriptions/{id}/" in text. */
static void subscription_from_body(const char *body, char *out, size_t outsz)
{
    const char *p = strcasestr(body, "/subscriptions/");
    if (!p)
        return;
    p += strlen("/subscriptions/");
    size_t n = strspn(p, "0123456789abcdefABCDEF-");
    if (n == 36 && n < outsz) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
}

int main(int argc, char **argv)
{
    char err[512];
    struct cg_conf *conf = cg_conf_new();
    bool dump = false;
    int status = 2;
    char *body = NULL;
    char *roles_body = NULL;
    struct cg_contacts ct;
    struct cg_owners owners;
    struct cg_finding findings[CG_RULE_COUNT];
    memset(findings, 0, sizeof(findings));
    cg_contacts_init(&ct);
    cg_owners_init(&owners);

    cg_log_setup(CG_LOG_WARN, CG_LOG_TEXT, "eval");
    if (cg_conf_version_arg(argc, argv, "contactguard-eval", stdout)) {
        status = 0;
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            status = 0;
            goto out;
        }
    }
    if (cg_conf_from_args(conf, &argc, argv, &dump, err, sizeof(err))) {
        fprintf(stderr, "contactguard-eval: %s\n", err);
        goto out;
    }
    if (dump) {
        cg_conf_dump(conf, stdout);
        status = 0;
        goto out;
    }

    const char *api = NULL, *sub = NULL, *tenant = "", *format = "compact";
    const char *path = NULL, *roles = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **opt = !strcmp(a, "--api-version")        ? &api
                           : !strcmp(a, "--subscription")     ? &sub
                           : !strcmp(a, "--tenant")           ? &tenant
                           : !strcmp(a, "--format")           ? &format
                           : !strcmp(a, "--role-assignments") ? &roles
                                                              : NULL;
        if (opt) {
            if (i + 1 >= argc) {
                fprintf(stderr, "contactguard-eval: %s needs a value\n", a);
                goto out;
            }
            *opt = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "contactguard-eval: unknown option %s\n", a);
            usage(stderr);
            goto out;
        } else if (path) {
            fprintf(stderr, "contactguard-eval: one input only\n");
            goto out;
        } else {
            path = a;
        }
    }
    enum cg_api_version version = CG_API_UNKNOWN;
    if (api && (version = cg_api_version_parse(api)) == CG_API_UNKNOWN) {
        fprintf(stderr,
                "contactguard-eval: --api-version %s is not one of "
                "2017-08-01-preview, 2020-01-01-preview, "
                "2023-12-01-preview\n",
                api);
        goto out;
    }
    bool ocsf = strcasecmp(format, "ocsf") == 0;
    if (!ocsf && strcasecmp(format, "compact") != 0) {
        fprintf(stderr, "contactguard-eval: --format is compact or ocsf\n");
        goto out;
    }

    size_t len = 0;
    body = read_input(path ? path : "-", &len, err, sizeof(err));
    if (!body) {
        fprintf(stderr, "contactguard-eval: %s\n", err);
        goto out;
    }

    if (roles) {
        size_t rlen = 0;
        if (!strcmp(roles, "-") && !strcmp(path ? path : "-", "-")) {
            fprintf(stderr, "contactguard-eval: stdin can hold one body "
                            "only\n");
            goto out;
        }
        roles_body = read_input(roles, &rlen, err, sizeof(err));
        if (!roles_body) {
            fprintf(stderr, "contactguard-eval: %s\n", err);
            goto out;
        }
        /* An unreadable body decides owner-reachable as the worker's
         * read would: ERROR with the parser's sentence. */
        int orc = cg_owners_parse(&owners, roles_body, rlen, err, sizeof(err));
        if (orc)
            cg_owners_unreadable(
                &owners, CG_STATUS_ERROR,
                orc == CG_ETOOBIG ? "BODY_TOO_LARGE" : "BODY_MALFORMED", err);
    }

    struct cg_rules_conf rc;
    cg_rules_conf_from(&rc, conf, cg_conf_tenant_find(conf, tenant));
    int prc = cg_evaluate_body(body, len, version, &owners, &rc, &ct, findings);

    char subid[40] = "";
    if (sub)
        cg_strlcpy(subid, sub, sizeof(subid));
    else
        subscription_from_body(body, subid, sizeof(subid));
    struct cg_ocsf writer;
    cg_ocsf_init(&writer, cg_ocsf_version_find(
                              cg_conf_str(conf, "output.ocsf_version")));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    status = 0;
    for (int r = 0; r < CG_RULE_COUNT; r++) {
        struct cg_finding *f = &findings[r];
        cg_strlcpy(f->subscription_id, subid, sizeof(f->subscription_id));
        cg_strlcpy(f->tenant_id, tenant, sizeof(f->tenant_id));
        cg_id_lower(f->subscription_id);
        cg_id_lower(f->tenant_id);
        cg_strlcpy(f->api_version,
                   prc ? (api ? api : "unknown")
                       : cg_api_version_name(ct.version),
                   sizeof(f->api_version));
        f->time_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        f->previous = CG_STATUS_NONE;
        char *line = ocsf ? cg_finding_ocsf(&writer, f) : cg_finding_compact(f);
        printf("%s\n", line);
        free(line);
        if (f->status == CG_STATUS_FAIL || f->status == CG_STATUS_ERROR)
            status = 1;
    }
    if (fflush(stdout) != 0)
        status = 2;
out:
    for (int r = 0; r < CG_RULE_COUNT; r++)
        cg_finding_clear(&findings[r]);
    cg_contacts_free(&ct);
    cg_owners_free(&owners);
    free(body);
    free(roles_body);
    cg_conf_free(conf);
    return status;
}
