/*
 * contactguard-report — the compliance picture from the worker's cache.
 *
 * For a security lead: per rule, how many subscriptions PASS, FAIL, are in
 * ERROR or SKIPPED, with percentages; the tenants with the most failing
 * subscriptions; the subscriptions whose status changed in their last
 * scan. Reads Redis only (the keys in worker/cache.h), so it can run while
 * the fleet works. Exit status: 0, or 2 for a usage or configuration error
 * and when Redis cannot be read.
 */
#include "cache_reader.h"
#include "clock.h"
#include "conf.h"
#include "err.h"
#include "finding.h"
#include "log.h"
#include "mem.h"
#include "report_csv.h"
#include "report_html.h"
#include "report_page.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_TOP_DEFAULT 10
#define REPORT_TOP_MAX     100000

struct report_tenant {
    char *id;
    struct cg_cache_tenant t;
};

struct report_change {
    char *tenant;
    char *subscription;
    enum cg_rule rule;
    enum cg_status from, to;
    long long scan_ms;
};

struct report {
    struct report_tenant *tenants;
    size_t ntenants;
    struct report_change *changes;
    size_t nchanges, capchanges;
    long long counts[CG_RULE_COUNT][CG_STATUS_NONE];
    long long subscriptions;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: contactguard-report [--tenant ID] [--top N] [--json]\n"
            "                           [--html FILE] [--csv FILE]\n"
            "                           [--config FILE] [--set key=value]...\n"
            "       contactguard-report --version\n"
            "\n"
            "Prints, from the Redis cache the workers fill: per rule the "
            "PASS, FAIL,\nERROR and SKIPPED counts and percentages, the "
            "tenants with the most\nfailing subscriptions, and the "
            "subscriptions whose status changed in\ntheir last scan.\n"
            "\n"
            "  --tenant ID   only this tenant\n"
            "  --top N       tenants listed by failing subscriptions "
            "(default %d)\n"
            "  --json        one JSON document (schema "
            "contactguard.report/1)\n"
            "  --html FILE   also write one self-contained HTML page with "
            "every\n"
            "                subscription's findings (- for stdout)\n"
            "  --csv FILE    also write one CSV row per subscription and "
            "rule\n"
            "  --config FILE JSON configuration; --set key=value overrides "
            "a key,\n"
            "                e.g. --set redis.port=6380\n"
            "\n"
            "Exit status: 0, or 2 for a usage error or when Redis cannot be "
            "read.\n",
            REPORT_TOP_DEFAULT);
}

static void report_free(struct report *rep)
{
    for (size_t i = 0; i < rep->ntenants; i++)
        free(rep->tenants[i].id);
    free(rep->tenants);
    for (size_t i = 0; i < rep->nchanges; i++) {
        free(rep->changes[i].tenant);
        free(rep->changes[i].subscription);
    }
    free(rep->changes);
}

static void change_add(struct report *rep, const char *tenant,
                       const struct cg_cache_sub *sub, int rule)
{
    if (rep->nchanges == rep->capchanges) {
        rep->capchanges = rep->capchanges ? 2 * rep->capchanges : 16;
        rep->changes =
            cg_realloc(rep->changes, rep->capchanges * sizeof(*rep->changes));
    }
    struct report_change *c = &rep->changes[rep->nchanges++];
    c->tenant = cg_strdup(tenant);
    c->subscription = cg_strdup(sub->subscription_id);
    c->rule = (enum cg_rule)rule;
    c->from = sub->previous[rule];
    c->to = sub->status[rule];
    c->scan_ms = sub->scan_ms;
}

/* Reads one tenant's counts and changes into rep. */
static int read_tenant(struct cg_cache_reader *r, struct report *rep,
                       const char *tenant, char *errbuf, size_t errsz)
{
    struct report_tenant *rt = &rep->tenants[rep->ntenants];
    struct cg_cache_list changed = { 0 };
    int rc = cg_cache_reader_tenant(r, tenant, &rt->t, errbuf, errsz);
    if (rc)
        return rc;
    rt->id = cg_strdup(tenant);
    rep->ntenants++;
    for (int k = 0; k < CG_RULE_COUNT; k++)
        for (int s = 0; s < CG_STATUS_NONE; s++)
            rep->counts[k][s] += rt->t.counts[k][s];
    rep->subscriptions += rt->t.scanned;
    rc = cg_cache_reader_changed(r, tenant, &changed, errbuf, errsz);
    for (size_t i = 0; rc == 0 && i < changed.n; i++) {
        struct cg_cache_sub sub;
        rc = cg_cache_reader_sub(r, changed.v[i], &sub, errbuf, errsz);
        if (rc == CG_ENOTFOUND) {
            rc = 0; /* expired since the set was read */
            continue;
        }
        for (int k = 0; rc == 0 && k < CG_RULE_COUNT; k++)
            if (sub.previous[k] != CG_STATUS_NONE &&
                sub.status[k] != CG_STATUS_NONE &&
                sub.previous[k] != sub.status[k])
                change_add(rep, tenant, &sub, k);
    }
    cg_cache_list_free(&changed);
    return rc;
}

static int report_read(struct cg_cache_reader *r, const char *only,
                       struct report *rep, char *errbuf, size_t errsz)
{
    struct cg_cache_list tenants = { 0 };
    int rc = 0;
    if (only) {
        tenants.v = cg_calloc(1, sizeof(char *));
        tenants.v[0] = cg_strdup(only);
        tenants.n = 1;
        /* Keys hold lower-cased ids; print what the keys say. */
        for (char *p = tenants.v[0]; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    } else {
        rc = cg_cache_reader_tenants(r, &tenants, errbuf, errsz);
    }
    rep->tenants = cg_calloc(tenants.n ? tenants.n : 1, sizeof(*rep->tenants));
    for (size_t i = 0; rc == 0 && i < tenants.n; i++)
        rc = read_tenant(r, rep, tenants.v[i], errbuf, errsz);
    cg_cache_list_free(&tenants);
    return rc;
}

/* Percent in tenths, rounded half up, so text and JSON agree. */
static long long tenths(long long n, long long total)
{
    return total > 0 ? (n * 1000 + total / 2) / total : 0;
}

static int by_failing(const void *a, const void *b)
{
    const struct report_tenant *x = a, *y = b;
    if (x->t.failing != y->t.failing)
        return x->t.failing > y->t.failing ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int by_change(const void *a, const void *b)
{
    const struct report_change *x = a, *y = b;
    int c = strcmp(x->tenant, y->tenant);
    if (!c)
        c = strcmp(x->subscription, y->subscription);
    return c ? c : (int)x->rule - (int)y->rule;
}

/* Tenants with at least one failing subscription, at most top. */
static size_t top_count(const struct report *rep, size_t top)
{
    size_t n = 0;
    while (n < rep->ntenants && n < top && rep->tenants[n].t.failing > 0)
        n++;
    return n;
}

static void print_text(const struct report *rep, size_t top, FILE *out)
{
    fprintf(out, "contactguard report: %zu tenant%s, %lld subscription%s\n\n",
            rep->ntenants, rep->ntenants == 1 ? "" : "s", rep->subscriptions,
            rep->subscriptions == 1 ? "" : "s");
    fprintf(out, "%-20s", "rule");
    for (int s = 0; s < CG_STATUS_NONE; s++)
        fprintf(out, " %14s", cg_status_name((enum cg_status)s));
    fprintf(out, " %7s\n", "total");
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        long long total = 0;
        for (int s = 0; s < CG_STATUS_NONE; s++)
            total += rep->counts[k][s];
        fprintf(out, "%-20s", cg_rule_info((enum cg_rule)k)->id);
        for (int s = 0; s < CG_STATUS_NONE; s++) {
            long long t = tenths(rep->counts[k][s], total);
            char pct[48];
            snprintf(pct, sizeof(pct), "%lld.%lld%%", t / 10, t % 10);
            fprintf(out, " %7lld %6s", rep->counts[k][s], pct);
        }
        fprintf(out, " %7lld\n", total);
    }

    size_t n = top_count(rep, top);
    fprintf(out, "\ntenants with the most failing subscriptions (top %zu)\n",
            top);
    if (n == 0)
        fprintf(out, "  none\n");
    else
        fprintf(out, "  %7s %9s  %s\n", "failing", "scanned", "tenant");
    for (size_t i = 0; i < n; i++)
        fprintf(out, "  %7lld %9lld  %s\n", rep->tenants[i].t.failing,
                rep->tenants[i].t.scanned, rep->tenants[i].id);

    fprintf(out, "\nstatus changes in the last scan (%zu)\n", rep->nchanges);
    if (rep->nchanges == 0)
        fprintf(out, "  none\n");
    else
        fprintf(out, "  %-36s  %-18s  %-16s  %s\n", "subscription", "rule",
                "from -> to", "tenant");
    for (size_t i = 0; i < rep->nchanges; i++) {
        const struct report_change *c = &rep->changes[i];
        char ft[32];
        snprintf(ft, sizeof(ft), "%s -> %s", cg_status_name(c->from),
                 cg_status_name(c->to));
        fprintf(out, "  %-36s  %-18s  %-16s  %s\n", c->subscription,
                cg_rule_info(c->rule)->id, ft, c->tenant);
    }
}

static void print_json(const struct report *rep, size_t top, FILE *out)
{
    json_t *root = json_object(), *rules = json_array(), *tops = json_array(),
           *changes = json_array();
    char iso[40];
    cg_time_iso(cg_now_ms(), iso, sizeof(iso));
    json_object_set_new(root, "schema", json_string("contactguard.report/1"));
    json_object_set_new(root, "generated_at", json_string(iso));
    json_object_set_new(root, "tenants",
                        json_integer((json_int_t)rep->ntenants));
    json_object_set_new(root, "subscriptions",
                        json_integer(rep->subscriptions));
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        json_t *o = json_object(), *counts = json_object(),
               *pct = json_object();
        long long total = 0;
        for (int s = 0; s < CG_STATUS_NONE; s++)
            total += rep->counts[k][s];
        for (int s = 0; s < CG_STATUS_NONE; s++) {
            const char *name = cg_status_name((enum cg_status)s);
            json_object_set_new(counts, name, json_integer(rep->counts[k][s]));
            json_object_set_new(
                pct, name,
                json_real((double)tenths(rep->counts[k][s], total) / 10.0));
        }
        json_object_set_new(o, "rule",
                            json_string(cg_rule_info((enum cg_rule)k)->id));
        json_object_set_new(o, "total", json_integer(total));
        json_object_set_new(o, "counts", counts);
        json_object_set_new(o, "percent", pct);
        json_array_append_new(rules, o);
    }
    size_t n = top_count(rep, top);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "tenant", json_string(rep->tenants[i].id));
        json_object_set_new(o, "failing",
                            json_integer(rep->tenants[i].t.failing));
        json_object_set_new(o, "subscriptions",
                            json_integer(rep->tenants[i].t.scanned));
        json_array_append_new(tops, o);
    }
    for (size_t i = 0; i < rep->nchanges; i++) {
        const struct report_change *c = &rep->changes[i];
        json_t *o = json_object();
        cg_time_iso(c->scan_ms, iso, sizeof(iso));
        json_object_set_new(o, "tenant", json_string(c->tenant));
        json_object_set_new(o, "subscription", json_string(c->subscription));
        json_object_set_new(o, "rule", json_string(cg_rule_info(c->rule)->id));
        json_object_set_new(o, "from", json_string(cg_status_name(c->from)));
        json_object_set_new(o, "to", json_string(cg_status_name(c->to)));
        json_object_set_new(o, "scan_time", json_string(iso));
        json_array_append_new(changes, o);
    }
    json_object_set_new(root, "rules", rules);
    json_object_set_new(root, "top_failing", tops);
    json_object_set_new(root, "changes", changes);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                                   JSON_REAL_PRECISION(10));
    fprintf(out, "%s\n", s);
    free(s);
    json_decref(root);
}

static int parse_top(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > REPORT_TOP_MAX)
        return CG_EINVAL;
    *out = (size_t)v;
    return 0;
}

/* Writes to path, or stdout for "-"; says why on stderr. */
static int write_one(const char *path, const struct cg_report_page *page,
                     int (*fn)(const struct cg_report_page *, FILE *))
{
    bool std = strcmp(path, "-") == 0;
    FILE *f = std ? stdout : fopen(path, "w");
    if (!f) {
        fprintf(stderr, "contactguard-report: cannot write %s: %s\n", path,
                strerror(errno));
        return CG_EIO;
    }
    int rc = fn(page, f);
    if (!std && fclose(f) != 0)
        rc = CG_EIO;
    if (rc)
        fprintf(stderr, "contactguard-report: cannot write %s\n", path);
    return rc;
}

/* --html and --csv: every subscription's findings, read once for both. */
static int write_pages(struct cg_cache_reader *r, const char *tenant,
                       const char *html, const char *csv)
{
    struct cg_report_page page;
    char err[512];
    int rc = cg_report_page_read(r, tenant, &page, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "contactguard-report: %s\n", err);
        return rc;
    }
    if (html)
        rc = write_one(html, &page, cg_report_html_write);
    if (rc == 0 && csv)
        rc = write_one(csv, &page, cg_report_csv_write);
    cg_report_page_free(&page);
    return rc;
}

int main(int argc, char **argv)
{
    /* Redis closing the connection mid-write is an error, not a death. */
    signal(SIGPIPE, SIG_IGN);
    char err[512];
    bool dump = false, json = false;
    const char *tenant = NULL, *html = NULL, *csv = NULL;
    size_t top = REPORT_TOP_DEFAULT;
    struct cg_conf *conf = cg_conf_new();
    struct cg_cache_reader *r = NULL;
    struct report rep = { 0 };
    int status = 2;
    enum cg_log_level level;
    enum cg_log_format format;

    if (cg_conf_version_arg(argc, argv, "contactguard-report", stdout)) {
        status = 0;
        goto out;
    }
    if (cg_conf_from_args(conf, &argc, argv, &dump, err, sizeof(err))) {
        fprintf(stderr, "contactguard-report: %s\n", err);
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--html") == 0 && i + 1 < argc) {
            html = argv[++i];
        } else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
            csv = argv[++i];
        } else if (strcmp(argv[i], "--tenant") == 0 && i + 1 < argc) {
            tenant = argv[++i];
        } else if (strcmp(argv[i], "--top") == 0 && i + 1 < argc) {
            if (parse_top(argv[++i], &top)) {
                fprintf(stderr,
                        "contactguard-report: --top wants 1 to %d, not "
                        "'%s'\n",
                        REPORT_TOP_MAX, argv[i]);
                goto out;
            }
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            status = 0;
            goto out;
        } else {
            fprintf(stderr, "contactguard-report: unknown argument '%s'\n",
                    argv[i]);
            usage(stderr);
            goto out;
        }
    }
    if (dump) {
        cg_conf_dump(conf, stdout);
        status = 0;
        goto out;
    }
    if (cg_log_level_parse(cg_conf_str(conf, "log.level"), &level) == 0 &&
        cg_log_format_parse(cg_conf_str(conf, "log.format"), &format) == 0)
        cg_log_setup(level, format, "contactguard-report");

    r = cg_cache_reader_new(conf, err, sizeof(err));
    if (!r) {
        fprintf(stderr, "contactguard-report: cannot read the cache: %s\n",
                err);
        goto out;
    }
    if (report_read(r, tenant, &rep, err, sizeof(err))) {
        fprintf(stderr, "contactguard-report: %s\n", err);
        goto out;
    }
    qsort(rep.tenants, rep.ntenants, sizeof(*rep.tenants), by_failing);
    if (rep.nchanges)
        qsort(rep.changes, rep.nchanges, sizeof(*rep.changes), by_change);
    if ((html || csv) && write_pages(r, tenant, html, csv))
        goto out;
    /* A page written to stdout is the output; the summary would spoil it. */
    bool paged =
        (html && strcmp(html, "-") == 0) || (csv && strcmp(csv, "-") == 0);
    if (!paged && json)
        print_json(&rep, top, stdout);
    else if (!paged)
        print_text(&rep, top, stdout);
    status = fflush(stdout) == 0 ? 0 : 2;
out:
    report_free(&rep);
    cg_cache_reader_free(r);
    cg_conf_free(conf);
    return status;
}
