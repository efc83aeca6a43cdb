/*
 * The tenants source: sweep and watch.
 *
 * Both list every configured tenant's subscriptions through arm (token per
 * tenant, paging, throttling and retries are arm's), at most
 * producer.tenant_concurrency tenants at once, and decide per subscription.
 * A sweep emits `scheduled` jobs for what was not scanned recently; a watch
 * cycle emits `new-subscription` jobs for what the known set in Redis does
 * not hold yet. A tenant that fails is recorded with Azure's words and the
 * others carry on.
 */
#include "source.h"

#include "arm.h"
#include "auth.h"
#include "cache_reader.h"
#include "conf.h"
#include "err.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "map.h"
#include "mem.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SWEEP_LIST_DEADLINE_MS 600000 /* one tenant's listing, all pages */
#define SWEEP_PROGRESS_MS      2000
#define SWEEP_FLUSH_MS         120000 /* delivery reports at the end */

static void lower_copy(char *dst, const char *src, size_t dstsz)
{
    size_t i = 0;
    for (; src[i] && i + 1 < dstsz; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[i] = '\0';
}

int cg_source_listed_job(const struct cg_conf *conf, const char *lister,
                         const json_t *o, enum cg_job_reason reason,
                         struct cg_job *job, enum cg_sub_state *state)
{
    const char *sid = cg_json_str(o, "subscriptionId");
    if (!sid || !cg_guid_valid(sid))
        return CG_EPARSE;
    char sub[40], owner[40], lst[40];
    lower_copy(sub, sid, sizeof(sub));
    lower_copy(lst, lister, sizeof(lst));
    const char *tid = cg_json_str(o, "tenantId");
    if (tid && cg_guid_valid(tid))
        lower_copy(owner, tid, sizeof(owner));
    else
        cg_strlcpy(owner, lst, sizeof(owner));
    *state = cg_sub_state_parse(cg_json_str(o, "state"));
    if (!cg_sub_state_auditable(*state))
        return 0;
    cg_job_init(job, owner, sub, reason);
    job->state = *state;
    /* Azure Lighthouse: the lister sees a subscription another tenant
     * owns. Its owner's credentials read it when we have them; else the
     * lister's delegated access does, and the job says so. */
    if (strcmp(owner, lst) != 0 && !cg_conf_tenant_find(conf, owner))
        cg_strlcpy(job->auth_tenant_id, lst, sizeof(job->auth_tenant_id));
    return 1;
}

struct azure {
    struct cg_http *http;
    struct cg_auth *auth;
    struct cg_arm *arm;
};

static void azure_free(struct azure *az)
{
    cg_arm_free(az->arm);
    cg_auth_free(az->auth);
    cg_http_free(az->http);
    memset(az, 0, sizeof(*az));
}

static int azure_new(struct cg_source *src, struct azure *az)
{
    char err[512];
    struct cg_http_opts ho;
    memset(az, 0, sizeof(*az));
    cg_http_opts_from_conf(src->conf, &ho);
    if (!(az->http = cg_http_new(src->loop, &ho, err, sizeof(err))) ||
        !(az->auth =
              cg_auth_new(src->loop, az->http, src->conf, err, sizeof(err))) ||
        !(az->arm = cg_arm_new(src->loop, az->http, az->auth, src->conf, err,
                               sizeof(err)))) {
        cg_error("producer.azure_failed", "error=\"%s\"", err);
        azure_free(az);
        return CG_ECONF;
    }
    return 0;
}

/* A subscription whose job went out (or needed none) and belongs in its
 * tenant's known set. */
struct known_add {
    char tenant[40];
    char sub[40];
};

struct sweep;

struct tenant_run {
    struct sweep *sw;
    const struct cg_tenant *t;
    struct cg_arm_call *call;
};

struct sweep {
    struct cg_source *src;
    struct cg_arm *arm;
    bool watch;
    size_t ntenants, next, in_flight, done;
    struct tenant_run *runs;
    struct cg_map *seen; /* subscription ids decided in this pass */
    struct known_add *adds;
    size_t nadds, capadds;
    size_t jobs_sent_before;
    int64_t start_ms;
    struct cg_loop_timer progress;
    bool cache_failed;
};

static void add_known(struct sweep *sw, const char *tenant, const char *sub)
{
    if (sw->src->dry_run || !sw->src->cache)
        return;
    if (sw->nadds == sw->capadds) {
        sw->capadds = sw->capadds ? sw->capadds * 2 : 256;
        sw->adds = cg_realloc(sw->adds, sw->capadds * sizeof(*sw->adds));
    }
    cg_strlcpy(sw->adds[sw->nadds].tenant, tenant, 40);
    cg_strlcpy(sw->adds[sw->nadds].sub, sub, 40);
    sw->nadds++;
}

static void on_delivered(int err, const struct cg_job *job, const char *why,
                         void *arg)
{
    (void)why;
    if (!err)
        add_known(arg, job->tenant_id, job->subscription_id);
}

static void tenant_failed(struct sweep *sw, const struct cg_tenant *t,
                          const struct cg_arm_result *res)
{
    struct cg_summary *sum = sw->src->sum;
    sum->tenants_failed++;
    const char *name = t->name ? t->name : t->id;
    cg_error("producer.tenant_failed",
             "tenant=%s name=\"%s\" error=%s status=%ld why=\"%s\"", t->id,
             name, cg_err_name(res->err), res->status, res->why);
    if (sum->nfailed >= CG_SOURCE_FAILED_MAX)
        return;
    sum->failed =
        cg_realloc(sum->failed, (sum->nfailed + 1) * sizeof(*sum->failed));
    struct cg_summary_tenant *f = &sum->failed[sum->nfailed++];
    memset(f, 0, sizeof(*f));
    cg_strlcpy(f->id, t->id, sizeof(f->id));
    cg_strlcpy(f->name, name, sizeof(f->name));
    cg_strlcpy(f->error, cg_err_name(res->err), sizeof(f->error));
    f->status = res->status;
    /* A refused token never reached ARM: the status is Entra's, which
     * auth quotes as "(HTTP NNN, ...". */
    const char *h = strstr(res->why, "(HTTP ");
    if (!f->status && h)
        f->status = strtol(h + 6, NULL, 10);
    cg_strlcpy(f->why, res->why, sizeof(f->why));
    /* Azure's text travels on to stdout: nothing secret may ride along. */
    cg_log_scrub(f->why);
}

/* The known set of tenant, read once per tenant and pass. */
static struct cg_map *known_set(struct sweep *sw, struct cg_map *sets,
                                const char *tenant)
{
    struct cg_map *set = cg_map_get(sets, tenant);
    if (set)
        return set;
    set = cg_map_new();
    struct cg_cache_list l = { 0 };
    char err[256];
    if (!sw->src->cache ||
        cg_cache_reader_known(sw->src->cache, tenant, &l, err, sizeof(err))) {
        if (sw->src->cache)
            cg_error("producer.known_read_failed", "tenant=%s error=\"%s\"",
                     tenant, err);
        sw->cache_failed = true;
        cg_map_free(set);
        return NULL;
    }
    for (size_t i = 0; i < l.n; i++)
        cg_map_put(set, l.v[i], set);
    cg_cache_list_free(&l);
    cg_map_put(sets, tenant, set);
    return set;
}

static int free_set(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    cg_map_free(value);
    return 1;
}

static void start_next(struct sweep *sw);

static void decide(struct sweep *sw, const struct cg_tenant *t,
                   const json_t *items)
{
    struct cg_source *src = sw->src;
    struct cg_summary *sum = src->sum;
    size_t n = json_array_size(items), nc = 0;
    struct cg_job *cand = cg_calloc(n ? n : 1, sizeof(*cand));
    enum cg_job_reason reason =
        sw->watch ? CG_JOB_NEW_SUBSCRIPTION : CG_JOB_SCHEDULED;
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(items, i);
        enum cg_sub_state state;
        int rc = cg_source_listed_job(src->conf, t->id, it, reason, &cand[nc],
                                      &state);
        if (rc < 0) {
            cg_warn("producer.listing_item_bad", "tenant=%s index=%zu", t->id,
                    i);
            continue;
        }
        char key[40];
        lower_copy(key, cg_json_str(it, "subscriptionId"), sizeof(key));
        if (cg_map_get(sw->seen, key)) {
            sum->duplicates++;
            continue;
        }
        cg_map_put(sw->seen, key, sw);
        sum->subscriptions++;
        if (rc == 0) {
            if (state == CG_SUB_DISABLED)
                sum->disabled++;
            else
                sum->deleted++;
            continue;
        }
        sum->auditable++;
        if (strcasecmp(cand[nc].tenant_id, t->id) != 0)
            sum->lighthouse++;
        nc++;
    }
    bool *skip = cg_calloc(nc ? nc : 1, sizeof(bool));
    if (sw->watch) {
        struct cg_map *sets = cg_map_new();
        for (size_t i = 0; i < nc; i++) {
            struct cg_map *set = known_set(sw, sets, cand[i].tenant_id);
            if (!set) {
                /* No diff without the known set: nothing is new this
                 * cycle rather than everything; the next cycle retries. */
                skip[i] = true;
                continue;
            }
            if (cg_map_get(set, cand[i].subscription_id)) {
                skip[i] = true;
                sum->known++;
            }
        }
        cg_map_sweep(sets, free_set, NULL);
        cg_map_free(sets);
    } else if (!src->force && src->cache && nc) {
        long long window =
            cg_conf_int(src->conf, "producer.min_rescan_interval");
        const char **ids = cg_calloc(nc, sizeof(char *));
        long long *ms = cg_calloc(nc, sizeof(long long));
        for (size_t i = 0; i < nc; i++)
            ids[i] = cand[i].subscription_id;
        char err[256];
        if (cg_cache_reader_scan_ms(src->cache, ids, nc, ms, err,
                                    sizeof(err)) == 0) {
            long long now = cand[0].requested_at_ms;
            for (size_t i = 0; i < nc; i++) {
                if (ms[i] > 0 && now - ms[i] < window * 1000) {
                    skip[i] = true;
                    sum->fresh++;
                    add_known(sw, cand[i].tenant_id, cand[i].subscription_id);
                }
            }
        } else {
            /* Freshness saves work; it is not worth a missed scan. */
            if (!sum->freshness_unavailable)
                cg_warn("producer.freshness_unavailable", "error=\"%s\"", err);
            sum->freshness_unavailable = true;
        }
        free(ids);
        free(ms);
    }
    for (size_t i = 0; i < nc; i++)
        if (!skip[i])
            cg_emit_job(src->emit, &cand[i], on_delivered, sw);
    free(skip);
    free(cand);
}

static void on_listed(const struct cg_arm_result *res, void *arg)
{
    struct tenant_run *run = arg;
    struct sweep *sw = run->sw;
    run->call = NULL;
    sw->in_flight--;
    sw->done++;
    if (res->err) {
        tenant_failed(sw, run->t, res);
    } else {
        sw->src->sum->tenants_ok++;
        cg_debug("producer.tenant_listed", "tenant=%s pages=%zu items=%zu",
                 run->t->id, res->pages, json_array_size(res->items));
        decide(sw, run->t, res->items);
    }
    start_next(sw);
}

static void start_next(struct sweep *sw)
{
    long long conc = cg_conf_int(sw->src->conf, "producer.tenant_concurrency");
    while (!*sw->src->stop && sw->next < sw->ntenants &&
           sw->in_flight < (size_t)conc) {
        struct tenant_run *run = &sw->runs[sw->next++];
        struct cg_arm_request req = {
            .method = CG_HTTP_GET,
            .tenant = run->t->id,
            .path = CG_SUBSCRIPTIONS_API,
            .deadline_ms = cg_loop_now_ms() + SWEEP_LIST_DEADLINE_MS,
        };
        sw->in_flight++;
        run->call = cg_arm_list(sw->arm, &req, on_listed, run);
    }
}

static void progress(struct sweep *sw, const char *event)
{
    struct cg_emit_stats es;
    cg_emit_stats(sw->src->emit, &es);
    double secs = (double)(cg_loop_now_ms() - sw->start_ms) / 1000.0;
    uint64_t sent = es.sent - sw->jobs_sent_before;
    cg_info(event,
            "tenants_done=%zu/%zu subscriptions=%zu jobs_sent=%llu "
            "rate=%.1f/s elapsed=%.1fs",
            sw->done, sw->ntenants, sw->src->sum->subscriptions,
            (unsigned long long)sent, secs > 0 ? (double)sent / secs : 0.0,
            secs);
}

static void on_progress(struct cg_loop *loop, void *arg)
{
    struct sweep *sw = arg;
    progress(sw, "producer.progress");
    cg_loop_timer_add(loop, &sw->progress, SWEEP_PROGRESS_MS, on_progress, sw);
}

static int cmp_add(const void *a, const void *b)
{
    const struct known_add *x = a, *y = b;
    return strcmp(x->tenant, y->tenant);
}

static void write_known(struct sweep *sw)
{
    if (!sw->nadds || !sw->src->cache)
        return;
    qsort(sw->adds, sw->nadds, sizeof(*sw->adds), cmp_add);
    for (size_t i = 0; i < sw->nadds;) {
        size_t j = i;
        while (j < sw->nadds && !strcmp(sw->adds[j].tenant, sw->adds[i].tenant))
            j++;
        const char **subs = cg_calloc(j - i, sizeof(char *));
        for (size_t k = i; k < j; k++)
            subs[k - i] = sw->adds[k].sub;
        char err[256];
        if (cg_cache_reader_add_known(sw->src->cache, sw->adds[i].tenant, subs,
                                      j - i, err, sizeof(err))) {
            cg_error("producer.known_write_failed", "tenant=%s error=\"%s\"",
                     sw->adds[i].tenant, err);
            sw->cache_failed = true;
        }
        free(subs);
        i = j;
    }
    sw->nadds = 0;
}

/* One pass over every tenant; returns when all are done, every job has its
 * fate and the known sets are written, or on stop. */
static int pass(struct cg_source *src, struct cg_arm *arm, bool watch,
                bool *cache_failed)
{
    size_t nt = cg_conf_tenant_count(src->conf);
    if (nt == 0) {
        cg_error("producer.no_tenants", "hint=\"configure tenants or "
                                        "azure.tenants_file\"");
        return CG_ECONF;
    }
    struct sweep sw;
    memset(&sw, 0, sizeof(sw));
    struct cg_emit_stats es;
    cg_emit_stats(src->emit, &es);
    sw.jobs_sent_before = es.sent;
    sw.src = src;
    sw.arm = arm;
    sw.watch = watch;
    sw.ntenants = nt;
    sw.runs = cg_calloc(nt, sizeof(*sw.runs));
    sw.seen = cg_map_new();
    sw.start_ms = cg_loop_now_ms();
    for (size_t i = 0; i < nt; i++) {
        sw.runs[i].sw = &sw;
        sw.runs[i].t = cg_conf_tenant(src->conf, i);
    }
    src->sum->tenants += nt;
    cg_loop_timer_add(src->loop, &sw.progress, SWEEP_PROGRESS_MS, on_progress,
                      &sw);
    start_next(&sw);
    while (!*src->stop && sw.done < sw.ntenants)
        if (cg_loop_run_once(src->loop, 200) < 0)
            break;
    int64_t flush_end = cg_loop_now_ms() + SWEEP_FLUSH_MS;
    while (!*src->stop && cg_emit_outstanding(src->emit) > 0 &&
           cg_loop_now_ms() < flush_end)
        if (cg_loop_run_once(src->loop, 100) < 0)
            break;
    cg_loop_timer_cancel(src->loop, &sw.progress);
    for (size_t i = 0; i < nt; i++)
        cg_arm_cancel(arm, sw.runs[i].call);
    if (*src->stop) {
        /* Stopping: jobs already handed over still get their fate. */
        cg_emit_flush(src->emit, CG_SOURCE_STOP_FLUSH_MS);
    }
    write_known(&sw);
    progress(&sw, watch ? "producer.watch_cycle" : "producer.sweep_done");
    *cache_failed = sw.cache_failed;
    free(sw.adds);
    free(sw.runs);
    cg_map_free(sw.seen);
    return 0;
}

int cg_source_sweep(struct cg_source *src)
{
    struct azure az;
    int rc = azure_new(src, &az);
    if (rc)
        return rc;
    bool cache_failed;
    rc = pass(src, az.arm, false, &cache_failed);
    azure_free(&az);
    return rc;
}

static void on_wake(struct cg_loop *loop, void *arg)
{
    (void)loop;
    *(bool *)arg = true;
}

int cg_source_watch(struct cg_source *src)
{
    struct azure az;
    int rc = azure_new(src, &az);
    if (rc)
        return rc;
    long long interval = cg_conf_int(src->conf, "producer.watch_interval");
    fprintf(src->out, "contactguard-producer watch ready interval=%llds\n",
            interval);
    fflush(src->out);
    while (!*src->stop) {
        /* Read even in a dry run: it writes nothing, but it diffs. */
        if (!src->cache) {
            char err[256];
            src->cache = cg_cache_reader_new(src->conf, err, sizeof(err));
            if (!src->cache)
                cg_error("producer.redis_unavailable", "error=\"%s\"", err);
        }
        size_t failed_before = src->sum->tenants_failed;
        struct cg_emit_stats before, after;
        cg_emit_stats(src->emit, &before);
        bool cache_failed = false;
        if ((rc = pass(src, az.arm, true, &cache_failed)))
            break;
        src->sum->cycles++;
        cg_emit_stats(src->emit, &after);
        fprintf(src->out, "watch cycle %zu: tenants_failed=%zu new=%llu\n",
                src->sum->cycles, src->sum->tenants_failed - failed_before,
                (unsigned long long)(after.sent - before.sent));
        fflush(src->out);
        if (cache_failed && src->cache) {
            /* The reader does not reconnect: start afresh next cycle. */
            cg_cache_reader_free(src->cache);
            src->cache = NULL;
        }
        bool woke = false;
        struct cg_loop_timer t;
        memset(&t, 0, sizeof(t));
        cg_loop_timer_add(src->loop, &t, interval * 1000, on_wake, &woke);
        while (!woke && !*src->stop)
            if (cg_loop_run_once(src->loop, 200) < 0)
                break;
        cg_loop_timer_cancel(src->loop, &t);
    }
    azure_free(&az);
    return rc;
}
