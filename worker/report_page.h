/*
 * report_page — everything contactguard-report's HTML and CSV outputs show,
 * read from the cache in one pass.
 *
 * The text and JSON outputs need only the per-tenant counts; a page a
 * person acts on needs every subscription: each rule's status, the cached
 * finding (reason, evidence), the previous status and the scan time. This
 * module reads that through the synchronous cache reader (one tenant, or
 * every tenant with a scan within the TTL) into plain records that the
 * renderers (report_html.h, report_csv.h) only format. Rules are iterated
 * over enum cg_rule, so a new rule shows up without touching a renderer.
 */
#ifndef CG_REPORT_PAGE_H
#define CG_REPORT_PAGE_H

#include "cache_reader.h"
#include "finding.h"

#include <stdbool.h>
#include <stddef.h>

/* Reasons of not-auditable subscriptions kept apart; more are "other". */
#define CG_REPORT_REASONS_MAX 32

/* One cached subscription. */
struct cg_report_sub {
    struct cg_cache_sub rec;
    struct cg_finding f[CG_RULE_COUNT]; /* by rule; valid where have[] */
    bool have[CG_RULE_COUNT];
};

struct cg_report_tenant {
    char *id;
    struct cg_cache_tenant t; /* the store script's counts */
    size_t first, nsubs;      /* its slice of page.subs */
    long long unscanned;      /* known, but no cached scan */
};

/* Why subscriptions could not be audited: a SKIPPED reason code. */
struct cg_report_reason {
    char code[48];
    char *example; /* one reason sentence carrying the code */
    long long n;
};

struct cg_report_page {
    struct cg_report_tenant *tenants; /* ranked: most failing first */
    size_t ntenants;
    struct cg_report_sub *subs; /* grouped by tenant, sorted by id */
    size_t nsubs, capsubs;
    long long counts[CG_RULE_COUNT][CG_STATUS_NONE]; /* sum of tenants */
    long long subscriptions;                         /* sum of scanned */
    long long unscanned; /* known subscriptions with no scan */
    long long skipped;   /* subscriptions with a SKIPPED rule */
    struct cg_report_reason reasons[CG_REPORT_REASONS_MAX + 1]; /* + other */
    size_t nreasons;
    long long oldest_ms, newest_ms; /* scan times; 0 when none */
    long long generated_ms;
    char only[CG_CACHE_ID_MAX + 1]; /* --tenant, lower-cased, or "" */
};

/*
 * Reads the page for one tenant (only, any case) or for every tenant.
 * A subscription whose record expired between the listing and the read is
 * left out. 0, or the reader's error with errbuf; page is then freed.
 */
int cg_report_page_read(struct cg_cache_reader *r, const char *only,
                        struct cg_report_page *page, char *errbuf,
                        size_t errsz);

/* Frees what the page owns and zeroes it; a zeroed page is fine. */
void cg_report_page_free(struct cg_report_page *page);

/* Share in tenths of a percent, rounded half up (text, JSON, HTML agree). */
long long cg_report_tenths(long long n, long long total);

#endif
