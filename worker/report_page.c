#include "report_page.h"

#include "clock.h"
#include "err.h"
#include "mem.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

long long cg_report_tenths(long long n, long long total)
{
    return total > 0 ? (n * 1000 + total / 2) / total : 0;
}

void cg_report_page_free(struct cg_report_page *page)
{
    for (size_t i = 0; i < page->ntenants; i++)
        free(page->tenants[i].id);
    free(page->tenants);
    for (size_t i = 0; i < page->nsubs; i++)
        for (int k = 0; k < CG_RULE_COUNT; k++)
            if (page->subs[i].have[k])
                cg_finding_clear(&page->subs[i].f[k]);
    free(page->subs);
    for (size_t i = 0; i < page->nreasons; i++)
        free(page->reasons[i].example);
    memset(page, 0, sizeof(*page));
}

static int by_id(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Counts a subscription that could not be audited under its reason. */
static void reason_add(struct cg_report_page *page, const struct cg_finding *f)
{
    size_t i = 0;
    while (i < page->nreasons && strcmp(page->reasons[i].code, f->reason_code))
        i++;
    if (i == page->nreasons) {
        if (i == CG_REPORT_REASONS_MAX) {
            i = CG_REPORT_REASONS_MAX; /* the "other" slot */
            if (page->nreasons == i) {
                cg_strlcpy(page->reasons[i].code, "OTHER",
                           sizeof(page->reasons[i].code));
                page->reasons[i].example = cg_strdup("other reasons");
                page->nreasons++;
            }
        } else {
            cg_strlcpy(page->reasons[i].code, f->reason_code,
                       sizeof(page->reasons[i].code));
            page->reasons[i].example = cg_strdup(f->reason ? f->reason : "");
            page->nreasons++;
        }
    }
    page->reasons[i].n++;
}

static struct cg_report_sub *sub_next(struct cg_report_page *page)
{
    if (page->nsubs == page->capsubs) {
        page->capsubs = page->capsubs ? 2 * page->capsubs : 64;
        page->subs =
            cg_realloc(page->subs, page->capsubs * sizeof(*page->subs));
    }
    struct cg_report_sub *s = &page->subs[page->nsubs];
    memset(s, 0, sizeof(*s));
    return s;
}

/* Reads one cached subscription into the next slot; 0 when it has none. */
static int read_sub(struct cg_cache_reader *r, struct cg_report_page *page,
                    struct cg_report_tenant *rt, const char *id, char *errbuf,
                    size_t errsz)
{
    struct cg_report_sub *s = sub_next(page);
    struct cg_finding f[CG_RULE_COUNT];
    size_t n = 0;
    int rc = cg_cache_reader_sub(r, id, &s->rec, errbuf, errsz);
    if (rc == CG_ENOTFOUND) {
        rt->unscanned++;
        page->unscanned++;
        return 0;
    }
    if (rc)
        return rc;
    /* The known set keeps a subscription that moved tenants; its record
     * says where it is now counted. */
    if (strcmp(s->rec.tenant_id, rt->id) != 0)
        return 0;
    rc = cg_cache_reader_findings(r, id, f, &n, errbuf, errsz);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        enum cg_rule k = f[i].rule;
        if (k >= CG_RULE_COUNT || s->have[k]) {
            cg_finding_clear(&f[i]);
            continue;
        }
        s->f[k] = f[i];
        s->have[k] = true;
    }
    bool skipped = false;
    for (int k = 0; k < CG_RULE_COUNT && !skipped; k++)
        if (s->rec.status[k] == CG_STATUS_SKIPPED) {
            skipped = true;
            if (s->have[k]) {
                reason_add(page, &s->f[k]);
            } else {
                struct cg_finding none = { .rule = (enum cg_rule)k };
                cg_strlcpy(none.reason_code, "UNKNOWN",
                           sizeof(none.reason_code));
                reason_add(page, &none);
            }
        }
    page->skipped += skipped;
    if (s->rec.scan_ms > 0) {
        if (!page->oldest_ms || s->rec.scan_ms < page->oldest_ms)
            page->oldest_ms = s->rec.scan_ms;
        if (s->rec.scan_ms > page->newest_ms)
            page->newest_ms = s->rec.scan_ms;
    }
    page->nsubs++;
    rt->nsubs++;
    return 0;
}

static int read_tenant(struct cg_cache_reader *r, struct cg_report_page *page,
                       const char *tenant, char *errbuf, size_t errsz)
{
    struct cg_report_tenant *rt = &page->tenants[page->ntenants];
    struct cg_cache_list known = { 0 };
    int rc = cg_cache_reader_tenant(r, tenant, &rt->t, errbuf, errsz);
    if (rc)
        return rc;
    rt->id = cg_strdup(tenant);
    rt->first = page->nsubs;
    page->ntenants++;
    for (int k = 0; k < CG_RULE_COUNT; k++)
        for (int s = 0; s < CG_STATUS_NONE; s++)
            page->counts[k][s] += rt->t.counts[k][s];
    page->subscriptions += rt->t.scanned;
    rc = cg_cache_reader_known(r, tenant, &known, errbuf, errsz);
    if (rc == 0 && known.n)
        qsort(known.v, known.n, sizeof(*known.v), by_id);
    for (size_t i = 0; rc == 0 && i < known.n; i++)
        rc = read_sub(r, page, rt, known.v[i], errbuf, errsz);
    cg_cache_list_free(&known);
    return rc;
}

static int by_failing(const void *a, const void *b)
{
    const struct cg_report_tenant *x = a, *y = b;
    if (x->t.failing != y->t.failing)
        return x->t.failing > y->t.failing ? -1 : 1;
    return strcmp(x->id, y->id);
}

int cg_report_page_read(struct cg_cache_reader *r, const char *only,
                        struct cg_report_page *page, char *errbuf, size_t errsz)
{
    struct cg_cache_list tenants = { 0 };
    int rc = 0;
    memset(page, 0, sizeof(*page));
    page->generated_ms = cg_now_ms();
    if (only) {
        if (strlen(only) > CG_CACHE_ID_MAX)
            return cg_err_set(errbuf, errsz, CG_EINVAL,
                              "tenant id longer than %d characters",
                              CG_CACHE_ID_MAX);
        /* Keys hold lower-cased ids. */
        for (size_t i = 0; only[i]; i++)
            page->only[i] = (char)tolower((unsigned char)only[i]);
        tenants.v = cg_calloc(1, sizeof(char *));
        tenants.v[0] = cg_strdup(page->only);
        tenants.n = 1;
    } else {
        rc = cg_cache_reader_tenants(r, &tenants, errbuf, errsz);
    }
    page->tenants =
        cg_calloc(tenants.n ? tenants.n : 1, sizeof(*page->tenants));
    for (size_t i = 0; rc == 0 && i < tenants.n; i++)
        rc = read_tenant(r, page, tenants.v[i], errbuf, errsz);
    cg_cache_list_free(&tenants);
    if (rc) {
        cg_report_page_free(page);
        return rc;
    }
    /* Ranking moves tenants, not their slices of subs. */
    qsort(page->tenants, page->ntenants, sizeof(*page->tenants), by_failing);
    return 0;
}
