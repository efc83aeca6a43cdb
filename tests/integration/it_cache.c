/*
 * it_cache — the cache stage against a real redis-server on loopback.
 *
 * Every wait turns the event loop until a callback or a counter says the
 * awaited thing happened, within a deadline; nothing sleeps. The outage
 * case freezes Redis (SIGSTOP) and stops it, and checks that the loop keeps
 * turning meanwhile: a 2 ms timer must keep firing while the cache waits
 * for a frozen server.
 */
#include "cache.h"
#include "cache_reader.h"
#include "check.h"
#include "conf.h"
#include "err.h"
#include "finding.h"
#include "harness.h"
#include "log.h"
#include "loop.h"
#include "mem.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 15000
#define TA      "aaaaaaaa-0000-4000-8000-00000000000a"
#define TB      "bbbbbbbb-0000-4000-8000-00000000000b"
#define S1      "11111111-1111-4111-8111-111111111111"
#define S2      "22222222-2222-4222-8222-222222222222"
#define S3      "33333333-3333-4333-8333-333333333333"
#define S4      "44444444-4444-4444-8444-444444444444"

static struct cg_harness_redis *redis;
static struct cg_loop *loop;

/* ---- waiting on the loop ---- */

typedef bool (*cond_fn)(void *arg);

static bool turn_until(cond_fn cond, void *arg, int timeout_ms)
{
    int64_t deadline = cg_loop_now_ms() + timeout_ms;
    while (!cond(arg)) {
        if (cg_loop_now_ms() >= deadline)
            return false;
        cg_loop_run_once(loop, 20);
    }
    return true;
}

static bool flag_set(void *arg)
{
    return *(bool *)arg;
}

struct done_res {
    bool called;
    int err;
};

static void on_done(int err, void *arg)
{
    struct done_res *d = arg;
    d->called = true;
    d->err = err;
}

struct lookup_res {
    bool called;
    struct cg_cache_prev prev;
};

static void on_lookup(const struct cg_cache_prev *prev, void *arg)
{
    struct lookup_res *l = arg;
    l->called = true;
    l->prev = *prev;
}

struct lock_res {
    bool called;
    int err;
    bool ok;
};

static void on_lock(int err, bool ok, void *arg)
{
    struct lock_res *l = arg;
    l->called = true;
    l->err = err;
    l->ok = ok;
}

struct body_res {
    bool called;
    int err;
    char body[256];
    size_t len;
    bool present;
};

static void on_body(int err, const char *body, size_t len, void *arg)
{
    struct body_res *b = arg;
    b->called = true;
    b->err = err;
    b->present = body != NULL;
    if (body && len < sizeof(b->body)) {
        memcpy(b->body, body, len);
        b->body[len] = '\0';
        b->len = len;
    }
}

/* ---- fixtures ---- */

static struct cg_conf *conf_for(int port, const char *prefix, int timeout_ms,
                                int queue_max)
{
    struct cg_conf *conf = cg_conf_new();
    char v[32], err[256];
    snprintf(v, sizeof(v), "%d", port);
    cg_conf_set(conf, "redis.port", v, err, sizeof(err));
    cg_conf_set(conf, "redis.prefix", prefix, err, sizeof(err));
    snprintf(v, sizeof(v), "%d", timeout_ms);
    cg_conf_set(conf, "redis.timeout_ms", v, err, sizeof(err));
    snprintf(v, sizeof(v), "%d", queue_max);
    cg_conf_set(conf, "redis.queue_max", v, err, sizeof(err));
    cg_conf_set(conf, "redis.ttl", "3600", err, sizeof(err));
    return conf;
}

static struct cg_cache *cache_up(const struct cg_conf *conf)
{
    char err[256];
    struct cg_cache *cache = cg_cache_new(loop, conf, err, sizeof(err));
    CHECK(cache != NULL, "cg_cache_new: %s", err);
    return cache;
}

static bool is_connected(void *arg)
{
    struct cg_cache_stats st;
    cg_cache_stats(arg, &st);
    return st.connected;
}

static bool is_down(void *arg)
{
    return !is_connected(arg);
}

/* Statuses of the rules as letters, in rule order: "PF-SP"; a rule past
 * the end of the string has no finding. */
static void findings_for(struct cg_finding f[CG_RULE_COUNT], size_t *n,
                         const char *tenant, const char *sub, const char *job,
                         const char *codes)
{
    *n = 0;
    for (int i = 0; i < CG_RULE_COUNT; i++) {
        enum cg_status st;
        switch (codes[i]) {
        case 'P':
            st = CG_STATUS_PASS;
            break;
        case 'F':
            st = CG_STATUS_FAIL;
            break;
        case 'E':
            st = CG_STATUS_ERROR;
            break;
        case 'S':
            st = CG_STATUS_SKIPPED;
            break;
        default:
            continue;
        }
        struct cg_finding *x = &f[(*n)++];
        memset(x, 0, sizeof(*x));
        x->previous = CG_STATUS_NONE;
        cg_finding_set(x, (enum cg_rule)i, st, "TEST_CODE", "rule %d", i);
        cg_strlcpy(x->subscription_id, sub, sizeof(x->subscription_id));
        cg_strlcpy(x->tenant_id, tenant, sizeof(x->tenant_id));
        cg_strlcpy(x->job_id, job, sizeof(x->job_id));
        cg_strlcpy(x->api_version, "2023-12-01-preview",
                   sizeof(x->api_version));
        x->time_ms = 1700000000000LL;
    }
}

/* Stores and waits for the answer; returns its error. */
static int store(struct cg_cache *cache, const char *tenant, const char *sub,
                 const char *job, long long scan_ms, const char *codes)
{
    struct cg_finding f[CG_RULE_COUNT];
    size_t n;
    findings_for(f, &n, tenant, sub, job, codes);
    const struct cg_cache_entry e = {
        .tenant_id = tenant,
        .subscription_id = sub,
        .job_id = job,
        .api_version = "2023-12-01-preview",
        .contacts_hash = "ab12",
        .scan_ms = scan_ms,
        .findings = f,
        .nfindings = n,
    };
    struct done_res d = { 0 };
    cg_cache_store(cache, &e, on_done, &d);
    for (size_t i = 0; i < n; i++)
        cg_finding_clear(&f[i]);
    CHECK(!d.called, "store answered inside the call");
    if (!turn_until(flag_set, &d.called, WAIT_MS))
        return CG_ETIMEOUT;
    return d.err;
}

static struct cg_cache_prev lookup(struct cg_cache *cache, const char *sub,
                                   const char *job)
{
    struct lookup_res l = { 0 };
    cg_cache_lookup(cache, TA, sub, job, on_lookup, &l);
    CHECK(!l.called, "lookup answered inside the call");
    if (!turn_until(flag_set, &l.called, WAIT_MS)) {
        l.prev.err = CG_ETIMEOUT;
        CHECK(0, "lookup of %s never answered", sub);
    }
    return l.prev;
}

static long long redis_int(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Runs a command on a fresh direct connection; integer or string reply as
 * a number, -1 for nil. */
static long long redis_int(const char *fmt, ...)
{
    char err[256];
    redisContext *c = cg_harness_redis_connect(redis, err, sizeof(err));
    if (!c) {
        CHECK(0, "connect: %s", err);
        return -2;
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/* ---- cases ---- */

static void test_round_trip(void)
{
    struct cg_conf *conf =
        conf_for(cg_harness_redis_port(redis), "rt:", 2000, 100);
    struct cg_cache *cache = cache_up(conf);
    if (!cache)
        goto out;

    struct cg_cache_prev p = lookup(cache, S1, "job-1");
    CHECK(p.err == 0, "empty lookup err %d", p.err);
    CHECK(!p.job_done, "empty lookup says done");
    CHECK(p.scan_ms == 0 && p.contacts_hash[0] == '\0',
          "empty lookup has a scan");
    for (int i = 0; i < CG_RULE_COUNT; i++)
        CHECK(p.status[i] == CG_STATUS_NONE, "empty lookup rule %d has %s", i,
              cg_status_name(p.status[i]));

    CHECK(store(cache, TA, S1, "job-1", 1000, "PFESP") == 0, "store job-1");
    p = lookup(cache, S1, "job-2");
    CHECK(p.err == 0, "lookup err %d", p.err);
    CHECK(!p.job_done, "job-2 is not done");
    CHECK(p.scan_ms == 1000, "scan_ms %lld", p.scan_ms);
    CHECK(strcmp(p.contacts_hash, "ab12") == 0, "hash '%s'", p.contacts_hash);
    static const enum cg_status want[CG_RULE_COUNT] = {
        CG_STATUS_PASS, CG_STATUS_FAIL, CG_STATUS_ERROR, CG_STATUS_SKIPPED,
        CG_STATUS_PASS
    };
    for (int i = 0; i < CG_RULE_COUNT; i++)
        CHECK(p.status[i] == want[i], "previous of rule %d: %s", i,
              cg_status_name(p.status[i]));

    /* The same job redelivered sees what came before it: nothing. */
    p = lookup(cache, S1, "job-1");
    for (int i = 0; i < CG_RULE_COUNT; i++)
        CHECK(p.status[i] == CG_STATUS_NONE,
              "redelivered job-1 rule %d sees its own %s", i,
              cg_status_name(p.status[i]));

    struct done_res d = { 0 };
    cg_cache_mark_done(cache, "job-1", on_done, &d);
    CHECK(turn_until(flag_set, &d.called, WAIT_MS) && d.err == 0,
          "mark_done err %d", d.err);
    p = lookup(cache, S1, "JOB-1");
    CHECK(p.job_done, "job-1 done after mark_done (ids case-insensitive)");
    p = lookup(cache, S1, "job-2");
    CHECK(!p.job_done, "job-2 not done");

    /* A second scan: PASS->FAIL on rule 0; previous fields are the first
     * scan's, and a redelivery of job-2 keeps them. */
    CHECK(store(cache, TA, S1, "job-2", 2000, "FFES") == 0, "store job-2");
    CHECK(store(cache, TA, S1, "job-2", 2000, "FFES") == 0,
          "store job-2 again");
    p = lookup(cache, S1, "job-2");
    CHECK(p.status[0] == CG_STATUS_PASS,
          "redelivered job-2 sees PASS before it, got %s",
          cg_status_name(p.status[0]));
    p = lookup(cache, S1, "job-3");
    CHECK(p.status[0] == CG_STATUS_FAIL, "job-3 sees FAIL, got %s",
          cg_status_name(p.status[0]));

    /* Bad input is answered, not crashed on. */
    p = lookup(cache, "not a guid!", "job-9");
    CHECK(p.err == CG_EINVAL, "bad id err %d", p.err);

    struct cg_cache_stats st;
    cg_cache_stats(cache, &st);
    CHECK(st.writes_ok == 4, "writes_ok %llu",
          (unsigned long long)st.writes_ok);
    CHECK(st.write_errors == 0 && st.dropped == 0, "no write errors");
    CHECK(st.lookups == 8, "lookups %llu", (unsigned long long)st.lookups);
    CHECK(st.lookup_errors == 1, "lookup_errors %llu",
          (unsigned long long)st.lookup_errors);
    CHECK(st.connected, "connected");
out:
    cg_cache_free(cache);
    cg_conf_free(conf);
}

/* The counts the script must hold, from the last statuses of each
 * subscription of a tenant. */
struct model {
    const char *tenant;
    const char *sub;
    char codes[CG_RULE_COUNT + 1];
};

static void check_counts(struct cg_cache_reader *r, const struct model *m,
                         size_t n, const char *tenant, const char *when)
{
    long long want[CG_RULE_COUNT][CG_STATUS_NONE] = { { 0 } };
    long long scanned = 0, failing = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m[i].tenant, tenant) != 0 || !m[i].codes[0])
            continue;
        scanned++;
        if (strchr(m[i].codes, 'F'))
            failing++;
        for (int k = 0; k < CG_RULE_COUNT; k++) {
            const char *pos = strchr("PFES", m[i].codes[k]);
            if (pos && *pos)
                want[k][pos - "PFES"]++;
        }
    }
    struct cg_cache_tenant t;
    char err[256];
    int rc = cg_cache_reader_tenant(r, tenant, &t, err, sizeof(err));
    CHECK(rc == 0, "%s: reader_tenant: %s", when, err);
    for (int k = 0; k < CG_RULE_COUNT; k++)
        for (int s = 0; s < CG_STATUS_NONE; s++)
            CHECK(t.counts[k][s] == want[k][s],
                  "%s: tenant %.8s rule %s %s: %lld, want %lld", when, tenant,
                  cg_rule_info((enum cg_rule)k)->id,
                  cg_status_name((enum cg_status)s), t.counts[k][s],
                  want[k][s]);
    CHECK(t.scanned == scanned, "%s: scanned %lld want %lld", when, t.scanned,
          scanned);
    CHECK(t.failing == failing, "%s: failing %lld want %lld", when, t.failing,
          failing);
}

static void test_counts(void)
{
    struct cg_conf *conf =
        conf_for(cg_harness_redis_port(redis), "ct:", 2000, 100);
    struct cg_cache *cache = cache_up(conf);
    char err[256];
    struct cg_cache_reader *r = cg_cache_reader_new(conf, err, sizeof(err));
    CHECK(r != NULL, "reader: %s", err);
    if (!cache || !r)
        goto out;

    /* Rows hold four or five letters: the first four are what a record
     * written before owner-reachable holds. */
    struct model m[] = {
        { TA, S1, "" },
        { TA, S2, "" },
        { TB, S3, "" },
    };
    /* Rows: a scan of one subscription, then the counts of both tenants
     * must equal the model. */
    static const struct {
        size_t sub;
        const char *job;
        long long scan_ms;
        const char *codes;
        bool applies; /* false: older than the cached scan, ignored */
    } rows[] = {
        { 0, "j1", 1000, "PPPP", true },
        { 1, "j2", 1000, "PFPP", true },
        { 2, "j3", 1000, "FFSS", true },
        { 0, "j4", 2000, "FPPP", true },
        { 0, "j4", 2000, "FPPP", true }, /* redelivered */
        { 0, "j5", 3000, "PPPP", true }, /* back to PASS */
        { 0, "j0", 500, "FFFF", false }, /* stale */
        { 2, "j6", 2000, "PEPP", true },
        { 1, "j7", 2000, "PF-P", true },
        /* Four letters were all a record held before owner-reachable: the
         * fifth is counted from the first scan that has it, and moves
         * like any other after that. */
        { 2, "j9", 3000, "PEPPF", true },
        { 2, "j10", 4000, "PEPPS", true },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char when[64];
        snprintf(when, sizeof(when), "row %zu (%s %s)", i, rows[i].job,
                 rows[i].codes);
        int rc = store(cache, m[rows[i].sub].tenant, m[rows[i].sub].sub,
                       rows[i].job, rows[i].scan_ms, rows[i].codes);
        CHECK(rc == 0, "%s: store err %d", when, rc);
        if (rows[i].applies)
            cg_strlcpy(m[rows[i].sub].codes, rows[i].codes,
                       sizeof(m[rows[i].sub].codes));
        check_counts(r, m, 3, TA, when);
        check_counts(r, m, 3, TB, when);
    }
    struct cg_cache_stats st;
    cg_cache_stats(cache, &st);
    CHECK(st.stale == 1, "stale %llu", (unsigned long long)st.stale);

    /* Transitions: S1 went FAIL->PASS on owner-alerts in its last scan;
     * S3 changed two rules; S2 changed none (additional-emails dropped to
     * no status, which is not a transition to report). */
    struct cg_cache_list l = { 0 };
    CHECK(cg_cache_reader_changed(r, TA, &l, err, sizeof(err)) == 0,
          "changed: %s", err);
    CHECK(l.n == 1 && strcmp(l.v[0], S1) == 0, "changed of A: %zu", l.n);
    cg_cache_list_free(&l);
    struct cg_cache_sub sub = { 0 };
    CHECK(cg_cache_reader_sub(r, S1, &sub, err, sizeof(err)) == 0, "sub: %s",
          err);
    CHECK(sub.previous[0] == CG_STATUS_FAIL && sub.status[0] == CG_STATUS_PASS,
          "S1 owner-alerts %s -> %s", cg_status_name(sub.previous[0]),
          cg_status_name(sub.status[0]));
    CHECK(sub.scan_ms == 3000 && strcmp(sub.tenant_id, TA) == 0,
          "S1 record scan %lld tenant %s", sub.scan_ms, sub.tenant_id);
    CHECK(cg_cache_reader_sub(r, S4, &sub, err, sizeof(err)) == CG_ENOTFOUND,
          "unknown subscription is CG_ENOTFOUND");

    /* A subscription that moves to another tenant leaves the old one's
     * counts. */
    CHECK(store(cache, TB, S2, "j8", 4000, "PPPP") == 0, "move S2 to B");
    m[1].tenant = TB;
    cg_strlcpy(m[1].codes, "PPPP", sizeof(m[1].codes));
    check_counts(r, m, 3, TA, "after move");
    check_counts(r, m, 3, TB, "after move");

    /* The cached findings read back as findings. */
    struct cg_finding f[CG_RULE_COUNT];
    size_t nf = 0;
    CHECK(cg_cache_reader_findings(r, S3, f, &nf, err, sizeof(err)) == 0,
          "findings: %s", err);
    CHECK(nf == 5, "findings of S3: %zu", nf);
    if (nf == 5)
        CHECK(f[1].status == CG_STATUS_ERROR &&
                  f[1].rule == CG_RULE_ADDITIONAL_EMAILS &&
                  strcmp(f[1].subscription_id, S3) == 0 &&
                  f[4].rule == CG_RULE_OWNER_REACHABLE &&
                  f[4].status == CG_STATUS_SKIPPED,
              "findings 1 and 4 of S3: %s %s", cg_status_name(f[1].status),
              cg_status_name(f[4].status));
    for (size_t i = 0; i < nf; i++)
        cg_finding_clear(&f[i]);

    CHECK(cg_cache_reader_tenants(r, &l, err, sizeof(err)) == 0, "tenants: %s",
          err);
    /* The scans above are dated 1970, far outside the TTL: the tenant
     * index offers none of them. */
    CHECK(l.n == 0, "tenants within the TTL: %zu", l.n);
    cg_cache_list_free(&l);
out:
    cg_cache_reader_free(r);
    cg_cache_free(cache);
    cg_conf_free(conf);
}

/* A subscription not scanned within the TTL leaves its tenant's counts
 * at the tenant's next store; a tenant not scanned within it leaves the
 * tenants index. */
static void test_prune(void)
{
    struct cg_conf *conf =
        conf_for(cg_harness_redis_port(redis), "pr:", 2000, 100);
    struct cg_cache *cache = cache_up(conf);
    char err[256];
    struct cg_cache_reader *r = cg_cache_reader_new(conf, err, sizeof(err));
    CHECK(r != NULL, "reader: %s", err);
    if (!cache || !r)
        goto out;
    long long t0 = 1000, later = t0 + 3600 * 1000LL + 5000;
    CHECK(store(cache, TA, S1, "p1", t0, "FFFF") == 0, "S1 at t0");
    CHECK(store(cache, TB, S3, "p2", t0, "PPPP") == 0, "S3 at t0");
    CHECK(store(cache, TA, S2, "p3", later, "PPPP") == 0, "S2 past the TTL");
    struct model m[] = { { TA, S1, "" }, { TA, S2, "PPPP" } };
    check_counts(r, m, 2, TA, "after prune");
    CHECK(redis_int("EXISTS pr:sub:%s", S1) == 0, "S1's record is gone");
    CHECK(redis_int("HEXISTS pr:tenant:%s:last %s", TA, S1) == 0,
          "S1 left the counted set");
    CHECK(redis_int("SISMEMBER pr:tenant:%s:failing %s", TA, S1) == 0,
          "S1 left the failing set");
    CHECK(redis_int("ZSCORE pr:tenants %s", TB) == -1, "TB left the index");
    CHECK(redis_int("ZSCORE pr:tenants %s", TA) == later, "TA in the index");
out:
    cg_cache_reader_free(r);
    cg_cache_free(cache);
    cg_conf_free(conf);
}

static void test_ttl_and_reader(void)
{
    struct cg_conf *conf =
        conf_for(cg_harness_redis_port(redis), "tt:", 2000, 100);
    struct cg_cache *cache = cache_up(conf);
    char err[256];
    struct cg_cache_reader *r = cg_cache_reader_new(conf, err, sizeof(err));
    CHECK(r != NULL, "reader: %s", err);
    if (!cache || !r)
        goto out;
    long long now = (long long)time(NULL) * 1000;
    CHECK(store(cache, TA, S1, "job-t", now, "PPPF") == 0, "store");
    struct done_res d = { 0 };
    cg_cache_mark_done(cache, "job-t", on_done, &d);
    CHECK(turn_until(flag_set, &d.called, WAIT_MS) && !d.err, "mark_done");

    static const char *const keys[] = {
        "tt:sub:" S1,
        "tt:tenant:" TA ":counts",
        "tt:tenant:" TA ":last",
        "tt:tenant:" TA ":scanned",
        "tt:tenant:" TA ":failing",
        "tt:tenant:" TA ":known",
        "tt:job:job-t",
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        long long ttl = redis_int("TTL %s", keys[i]);
        CHECK(ttl > 3500 && ttl <= 3600, "TTL of %s is %lld", keys[i], ttl);
    }
    CHECK(redis_int("TTL tt:tenants") == -1, "tenants index has no TTL");

    /* The producer's side. */
    const char *subs[] = { S2, S3 };
    CHECK(cg_cache_reader_add_known(r, TA, subs, 2, err, sizeof(err)) == 0,
          "add_known: %s", err);
    struct cg_cache_list l = { 0 };
    CHECK(cg_cache_reader_known(r, TA, &l, err, sizeof(err)) == 0, "known: %s",
          err);
    CHECK(l.n == 3 && strcmp(l.v[0], S1) == 0 && strcmp(l.v[1], S2) == 0 &&
              strcmp(l.v[2], S3) == 0,
          "known set of A has %zu members", l.n);
    cg_cache_list_free(&l);
    const char *q[] = { S1, S2, "11111111-1111-4111-8111-111111111111" };
    long long ms[3] = { -1, -1, -1 };
    CHECK(cg_cache_reader_scan_ms(r, q, 3, ms, err, sizeof(err)) == 0,
          "scan_ms: %s", err);
    CHECK(ms[0] == now && ms[1] == 0 && ms[2] == now, "scan_ms %lld %lld %lld",
          ms[0], ms[1], ms[2]);
    CHECK(cg_cache_reader_tenants(r, &l, err, sizeof(err)) == 0 && l.n == 1 &&
              strcmp(l.v[0], TA) == 0,
          "tenants: %zu", l.n);
    cg_cache_list_free(&l);

    /* Undo bodies. */
    struct body_res b = { 0 };
    cg_cache_undo_get(cache, S1, on_body, &b);
    CHECK(turn_until(flag_set, &b.called, WAIT_MS) && !b.err && !b.present,
          "no undo body yet");
    d = (struct done_res){ 0 };
    cg_cache_undo_put(cache, S1, "{\"value\":[]}", 12, 600, on_done, &d);
    CHECK(turn_until(flag_set, &d.called, WAIT_MS) && !d.err, "undo_put");
    b = (struct body_res){ 0 };
    cg_cache_undo_get(cache, S1, on_body, &b);
    CHECK(turn_until(flag_set, &b.called, WAIT_MS) && !b.err && b.present &&
              strcmp(b.body, "{\"value\":[]}") == 0,
          "undo body '%s'", b.body);
    long long ttl = redis_int("TTL tt:undo:%s", S1);
    CHECK(ttl > 500 && ttl <= 600, "undo TTL %lld", ttl);
out:
    cg_cache_reader_free(r);
    cg_cache_free(cache);
    cg_conf_free(conf);
}

/* Evidence past CG_CACHE_FINDING_MAX is left out of the cached line; the
 * verdict is kept. */
static void test_big_finding(void)
{
    struct cg_conf *conf =
        conf_for(cg_harness_redis_port(redis), "bf:", 2000, 100);
    struct cg_cache *cache = cache_up(conf);
    char err[256];
    struct cg_cache_reader *r = cg_cache_reader_new(conf, err, sizeof(err));
    struct cg_finding f = { 0 }, back[CG_RULE_COUNT];
    size_t n = 0;
    char *big = cg_malloc(CG_CACHE_FINDING_MAX + 2);
    memset(big, 'x', CG_CACHE_FINDING_MAX + 1);
    big[CG_CACHE_FINDING_MAX + 1] = '\0';
    CHECK(r != NULL, "reader: %s", err);
    if (!cache || !r)
        goto out;
    f.previous = CG_STATUS_NONE;
    cg_finding_set(&f, CG_RULE_ADDITIONAL_EMAILS, CG_STATUS_FAIL, "BIG",
                   "big evidence");
    cg_strlcpy(f.subscription_id, S4, sizeof(f.subscription_id));
    f.evidence = json_pack("{s:s}", "emails", big);
    const struct cg_cache_entry e = { .tenant_id = TA,
                                      .subscription_id = S4,
                                      .job_id = "big",
                                      .scan_ms = 5,
                                      .findings = &f,
                                      .nfindings = 1 };
    struct done_res d = { 0 };
    cg_cache_store(cache, &e, on_done, &d);
    CHECK(turn_until(flag_set, &d.called, WAIT_MS) && d.err == 0,
          "big store err %d", d.err);
    CHECK(cg_cache_reader_findings(r, S4, back, &n, err, sizeof(err)) == 0,
          "findings: %s", err);
    CHECK(n == 1, "one finding cached, %zu", n);
    if (n == 1) {
        CHECK(back[0].status == CG_STATUS_FAIL &&
                  back[0].rule == CG_RULE_ADDITIONAL_EMAILS,
              "verdict kept");
        CHECK(json_is_true(json_object_get(back[0].evidence, "truncated")),
              "evidence marked truncated");
        cg_finding_clear(&back[0]);
    }
out:
    cg_finding_clear(&f);
    free(big);
    cg_cache_reader_free(r);
    cg_cache_free(cache);
    cg_conf_free(conf);
}

/* An error reply fails that request only; the connection carries on. */
static void test_error_reply(void)
{
    struct cg_conf *conf =
        conf_for(cg_harness_redis_port(redis), "wt:", 2000, 100);
    struct cg_cache *cache = cache_up(conf);
    if (!cache)
        goto out;
    CHECK(redis_int("SET wt:sub:%s not-a-hash", S1) == -1, "plant a string");
    CHECK(store(cache, TA, S1, "w1", 1, "PPPP") == CG_EREDIS,
          "store over a key of the wrong type fails");
    CHECK(store(cache, TA, S2, "w2", 1, "PPPP") == 0, "the next store lands");
    struct cg_cache_prev p = lookup(cache, S1, "w3");
    CHECK(p.err == CG_EREDIS, "lookup of the wrong type fails: %d", p.err);
    p = lookup(cache, S2, "w3");
    CHECK(p.err == 0 && p.status[0] == CG_STATUS_PASS, "lookup of S2");
    /* Someone flushes the script cache: the scripts are sent again. */
    redis_int("SCRIPT FLUSH");
    CHECK(store(cache, TA, S3, "w4", 1, "FPPP") == 0,
          "store after SCRIPT FLUSH");
    CHECK(redis_int("HGET wt:tenant:%s:counts owner-alerts:FAIL", TA) == 1,
          "the store after the flush counted");
    redis_int("SCRIPT FLUSH");
    redis_int("SET wt:lock:%s someone", S3);
    struct lock_res lk = { 0 };
    cg_cache_unlock(cache, S3, "someone", on_lock, &lk);
    CHECK(turn_until(flag_set, &lk.called, WAIT_MS) && lk.err == 0 && lk.ok,
          "unlock after SCRIPT FLUSH: err %d ok %d", lk.err, lk.ok);
    struct cg_cache_stats st;
    cg_cache_stats(cache, &st);
    CHECK(st.write_errors == 1 && st.writes_ok == 2 && st.connected &&
              st.reconnects == 0,
          "errors %llu ok %llu reconnects %llu",
          (unsigned long long)st.write_errors, (unsigned long long)st.writes_ok,
          (unsigned long long)st.reconnects);
out:
    cg_cache_free(cache);
    cg_conf_free(conf);
}

static redisReply *admin_cmd(redisContext *admin, const char *cmd)
{
    redisReply *r = redisCommand(admin, cmd);
    CHECK(r && r->type != REDIS_REPLY_ERROR, "%s: %s", cmd,
          r ? r->str : admin->errstr);
    return r;
}

/* AUTH and SELECT as configured; a rejected password is reported without
 * the password, in the log line and in the reader's error. */
static void test_auth_db(void)
{
    static const char good[] = "cache-test-secret-42";
    static const char bad[] = "wrong-password-x7";
    char err[256], path[512];
    struct cg_conf *conf =
        conf_for(cg_harness_redis_port(redis), "au:", 2000, 100);
    struct cg_conf *wrong =
        conf_for(cg_harness_redis_port(redis), "au:", 2000, 100);
    struct cg_cache *cache = NULL;
    struct cg_cache_reader *r = NULL;
    redisContext *admin = cg_harness_redis_connect(redis, err, sizeof(err));
    redisReply *rep;
    CHECK(admin != NULL, "admin: %s", err);
    if (!admin)
        goto out;
    cg_conf_set(conf, "redis.password", good, NULL, 0);
    cg_conf_set(conf, "redis.db", "3", NULL, 0);
    cg_conf_set(wrong, "redis.password", bad, NULL, 0);
    rep = admin_cmd(admin, "CONFIG SET requirepass cache-test-secret-42");
    if (rep)
        freeReplyObject(rep);

    cache = cache_up(conf);
    CHECK(cache && store(cache, TA, S1, "auth", 1, "PFPP") == 0,
          "store with AUTH and SELECT");
    rep = admin_cmd(admin, "SELECT 3");
    if (rep)
        freeReplyObject(rep);
    rep = redisCommand(admin, "HGET au:sub:%s status:additional-emails", S1);
    CHECK(rep && rep->type == REDIS_REPLY_STRING &&
              strcmp(rep->str, "FAIL") == 0,
          "the record is in db 3");
    if (rep)
        freeReplyObject(rep);
    r = cg_cache_reader_new(conf, err, sizeof(err));
    CHECK(r != NULL, "reader with AUTH: %s", err);
    cg_cache_reader_free(r);

    /* The wrong password, with stderr in a file to read the log. */
    snprintf(path, sizeof(path), "%s/auth.log", cg_harness_dir());
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w+");
    CHECK(f != NULL && saved >= 0, "log file");
    if (!f || saved < 0)
        goto out;
    dup2(fileno(f), 2);
    cg_log_setup(CG_LOG_INFO, CG_LOG_TEXT, "it_cache");
    struct cg_cache *c2 = cache_up(wrong);
    struct cg_cache_prev p = lookup(c2, S1, "auth2");
    cg_cache_free(c2);
    r = cg_cache_reader_new(wrong, err, sizeof(err));
    cg_log_setup(CG_LOG_WARN, CG_LOG_TEXT, "it_cache");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    CHECK(p.err == CG_EREDIS, "wrong password: lookup err %d", p.err);
    CHECK(r == NULL && strstr(err, "AUTH") && !strstr(err, bad),
          "reader error names AUTH, not the password: %s", err);
    cg_cache_reader_free(r);
    r = NULL;
    char log[8192];
    size_t n = fread(log, 1, sizeof(log) - 1, (rewind(f), f));
    log[n] = '\0';
    fclose(f);
    CHECK(strstr(log, "event=redis_down") != NULL, "redis_down logged:\n%s",
          log);
    CHECK(!strstr(log, bad) && !strstr(log, good), "no password in:\n%s", log);
out:
    if (admin) {
        rep = redisCommand(admin, "CONFIG SET requirepass %s", "");
        CHECK(rep && rep->type == REDIS_REPLY_STATUS, "requirepass reset");
        if (rep)
            freeReplyObject(rep);
        redisFree(admin);
    }
    cg_cache_free(cache);
    cg_conf_free(conf);
    cg_conf_free(wrong);
}

static struct lock_res lock_wait(struct cg_cache *cache, const char *owner,
                                 long long ttl_ms, bool unlock)
{
    struct lock_res l = { 0 };
    if (unlock)
        cg_cache_unlock(cache, S1, owner, on_lock, &l);
    else
        cg_cache_lock(cache, S1, owner, ttl_ms, on_lock, &l);
    if (!turn_until(flag_set, &l.called, WAIT_MS))
        l.err = CG_ETIMEOUT;
    return l;
}

static void test_lock(void)
{
    struct cg_conf *conf =
        conf_for(cg_harness_redis_port(redis), "lk:", 2000, 100);
    struct cg_cache *cache = cache_up(conf);
    if (!cache)
        goto out;
    struct lock_res a = lock_wait(cache, "worker-a", 60000, false);
    CHECK(a.err == 0 && a.ok, "a takes the lock");
    struct lock_res b = lock_wait(cache, "worker-b", 60000, false);
    CHECK(b.err == 0 && !b.ok, "b does not");
    b = lock_wait(cache, "worker-b", 0, true);
    CHECK(b.err == 0 && !b.ok, "b cannot release a's lock");
    CHECK(redis_int("EXISTS lk:lock:%s", S1) == 1, "lock still there");
    a = lock_wait(cache, "worker-a", 0, true);
    CHECK(a.err == 0 && a.ok, "a releases");
    b = lock_wait(cache, "worker-b", 60000, false);
    CHECK(b.err == 0 && b.ok, "b takes it after release");
    b = lock_wait(cache, "worker-b", 0, true);

    /* Expiry: a takes it for 300 ms and never releases; b tries until it
     * gets it, which must not be before a's lock expired. */
    int64_t t0 = cg_loop_now_ms();
    a = lock_wait(cache, "worker-a", 300, false);
    CHECK(a.ok, "a takes a short lock");
    long long pttl = redis_int("PTTL lk:lock:%s", S1);
    CHECK(pttl > 0 && pttl <= 300, "lock PTTL %lld", pttl);
    int64_t got = 0;
    while (cg_loop_now_ms() - t0 < WAIT_MS) {
        b = lock_wait(cache, "worker-b", 60000, false);
        if (b.err || b.ok) {
            got = cg_loop_now_ms();
            break;
        }
    }
    CHECK(b.err == 0 && b.ok, "b gets the lock once a's expires");
    CHECK(got - t0 >= 290, "b got it after %lld ms", (long long)(got - t0));
    a = lock_wait(cache, "worker-a", 0, true);
    CHECK(a.err == 0 && !a.ok, "a's late release does not free b's lock");
    CHECK(redis_int("EXISTS lk:lock:%s", S1) == 1, "b's lock survives");
out:
    cg_cache_free(cache);
    cg_conf_free(conf);
}

/*
 * Queue full: with writes paused in Redis the thread is stuck on its first
 * store, so the queue fills exactly and the rest is dropped.
 */
static bool thread_busy(void *arg)
{
    struct cg_cache_stats st;
    cg_cache_stats(arg, &st);
    return st.queue_depth == 0 && st.in_flight == 1;
}

struct count_wait {
    struct cg_cache *cache;
    uint64_t writes;
};

static bool writes_reached(void *arg)
{
    struct count_wait *w = arg;
    struct cg_cache_stats st;
    cg_cache_stats(w->cache, &st);
    return st.writes_ok + st.write_errors >= w->writes;
}

static void test_queue_full(void)
{
    enum { QMAX = 8, EXTRA = 5 };
    struct cg_conf *conf =
        conf_for(cg_harness_redis_port(redis), "qf:", 10000, QMAX);
    struct cg_cache *cache = cache_up(conf);
    char err[256];
    redisContext *admin = cg_harness_redis_connect(redis, err, sizeof(err));
    CHECK(admin != NULL, "admin: %s", err);
    if (!cache || !admin)
        goto out;
    CHECK(turn_until(is_connected, cache, WAIT_MS), "connects");
    redisReply *rep = redisCommand(admin, "CLIENT PAUSE 8000 WRITE");
    CHECK(rep && rep->type == REDIS_REPLY_STATUS, "CLIENT PAUSE");
    if (rep)
        freeReplyObject(rep);

    struct cg_finding f[CG_RULE_COUNT];
    size_t n;
    findings_for(f, &n, TA, S1, "q", "PPPP");
    struct cg_cache_entry e = { .tenant_id = TA,
                                .subscription_id = S1,
                                .job_id = "q",
                                .api_version = "",
                                .contacts_hash = "",
                                .scan_ms = 1,
                                .findings = f,
                                .nfindings = n };
    cg_cache_store(cache, &e, NULL, NULL);
    CHECK(turn_until(thread_busy, cache, WAIT_MS), "thread takes the first");
    int64_t t0 = cg_loop_now_ms();
    for (int i = 0; i < QMAX + EXTRA; i++) {
        e.scan_ms = 2 + i;
        cg_cache_store(cache, &e, NULL, NULL);
    }
    CHECK(cg_loop_now_ms() - t0 < 1000, "enqueueing never waits");
    struct cg_cache_stats st;
    cg_cache_stats(cache, &st);
    CHECK(st.queue_depth == QMAX, "queue depth %zu", st.queue_depth);
    cg_loop_run_once(loop, 0);
    cg_cache_stats(cache, &st);
    CHECK(st.dropped == EXTRA, "dropped %llu, want %d",
          (unsigned long long)st.dropped, EXTRA);

    rep = redisCommand(admin, "CLIENT UNPAUSE");
    if (rep)
        freeReplyObject(rep);
    struct count_wait w = { cache, 1 + QMAX };
    CHECK(turn_until(writes_reached, &w, WAIT_MS), "queued writes land");
    cg_cache_stats(cache, &st);
    CHECK(st.writes_ok == 1 + QMAX && st.write_errors == 0,
          "writes_ok %llu errors %llu", (unsigned long long)st.writes_ok,
          (unsigned long long)st.write_errors);
    CHECK(redis_int("HGET qf:sub:%s scan_ms", S1) == 1 + QMAX,
          "the last queued store is the cached one");
    for (size_t i = 0; i < n; i++)
        cg_finding_clear(&f[i]);
out:
    if (admin)
        redisFree(admin);
    cg_cache_free(cache);
    cg_conf_free(conf);
}

/* ---- outage ---- */

struct ticker {
    struct cg_loop_timer t;
    int64_t last;
    int64_t max_gap;
    long ticks;
};

static void on_tick(struct cg_loop *l, void *arg)
{
    struct ticker *tk = arg;
    int64_t now = cg_loop_now_ms();
    if (tk->last && now - tk->last > tk->max_gap)
        tk->max_gap = now - tk->last;
    tk->last = now;
    tk->ticks++;
    cg_loop_timer_add(l, &tk->t, 2, on_tick, tk);
}

/* Longest time one cache call took on this thread, in microseconds. */
static int64_t call_max_us;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#define TIMED(call)                                                            \
    do {                                                                       \
        int64_t t0_ = now_us();                                                \
        call;                                                                  \
        int64_t d_ = now_us() - t0_;                                           \
        if (d_ > call_max_us)                                                  \
            call_max_us = d_;                                                  \
    } while (0)

struct batch_wait {
    struct lookup_res l[20];
    struct done_res d[20];
    int n;
};

static bool batch_answered(void *arg)
{
    struct batch_wait *b = arg;
    for (int i = 0; i < b->n; i++)
        if (!b->l[i].called || !b->d[i].called)
            return false;
    return true;
}

/* Issues n lookups and n stores, timing each call. */
static void issue(struct cg_cache *cache, struct batch_wait *b, int n,
                  long long scan_ms)
{
    struct cg_finding f[CG_RULE_COUNT];
    size_t nf;
    findings_for(f, &nf, TA, S2, "out", "FPPP");
    struct cg_cache_entry e = { .tenant_id = TA,
                                .subscription_id = S2,
                                .job_id = "out",
                                .api_version = "",
                                .contacts_hash = "",
                                .scan_ms = scan_ms,
                                .findings = f,
                                .nfindings = nf };
    memset(b, 0, sizeof(*b));
    b->n = n;
    for (int i = 0; i < n; i++) {
        TIMED(cg_cache_lookup(cache, TA, S2, "out", on_lookup, &b->l[i]));
        TIMED(cg_cache_store(cache, &e, on_done, &b->d[i]));
    }
    for (size_t i = 0; i < nf; i++)
        cg_finding_clear(&f[i]);
}

static void test_outage(void)
{
    struct cg_conf *conf =
        conf_for(cg_harness_redis_port(redis), "out:", 1000, 100);
    struct cg_cache *cache = cache_up(conf);
    struct ticker tk = { 0 };
    struct batch_wait b;
    char err[256];
    if (!cache)
        goto out;
    CHECK(turn_until(is_connected, cache, WAIT_MS), "connects");
    cg_loop_timer_add(loop, &tk.t, 2, on_tick, &tk);

    /* Frozen: the thread waits for its timeout, the loop does not. */
    struct cg_harness_proc *proc = cg_harness_redis_proc(redis);
    CHECK(cg_harness_proc_kill(proc, SIGSTOP) == 0, "SIGSTOP redis");
    call_max_us = 0;
    long ticks0 = tk.ticks;
    tk.max_gap = 0;
    issue(cache, &b, 5, 10);
    CHECK(turn_until(batch_answered, &b, WAIT_MS),
          "every call answered while Redis is frozen");
    int errors = 0;
    for (int i = 0; i < b.n; i++)
        errors += (b.l[i].prev.err != 0) + (b.d[i].err != 0);
    CHECK(errors == 2 * b.n, "%d of %d calls failed while frozen", errors,
          2 * b.n);
    for (int i = 0; i < b.n; i++)
        CHECK(!b.l[i].prev.job_done && b.l[i].prev.status[0] == CG_STATUS_NONE,
              "a failed lookup reads not done, no previous");
    /* A client that blocked would hold the loop for the whole 1 s Redis
     * timeout: one turn and a gap of at least 1,000 ms. The bounds sit well
     * inside that, so scheduling noise on a loaded machine cannot fail them
     * while a blocking call still would. */
    CHECK(tk.ticks - ticks0 >= 10,
          "the loop turned %ld times while the cache waited 1 s on Redis",
          tk.ticks - ticks0);
    CHECK(tk.max_gap < 900, "longest gap between ticks %lld ms",
          (long long)tk.max_gap);
    CHECK(call_max_us < 500000, "slowest cache call %lld us",
          (long long)call_max_us);
    CHECK(turn_until(is_down, cache, WAIT_MS), "reported down");

    /* Down: answers come on the next turn. */
    call_max_us = 0;
    issue(cache, &b, 20, 11);
    CHECK(turn_until(batch_answered, &b, WAIT_MS), "down answers are prompt");
    CHECK(call_max_us < 500000, "slowest cache call while down %lld us",
          (long long)call_max_us);
    struct cg_cache_stats st;
    cg_cache_stats(cache, &st);
    CHECK(st.write_errors >= 25 && st.lookup_errors >= 25,
          "failures counted: writes %llu lookups %llu",
          (unsigned long long)st.write_errors,
          (unsigned long long)st.lookup_errors);
    CHECK(!st.connected, "not connected");

    /* Thawed, then stopped and started again on the same port (empty). */
    CHECK(cg_harness_proc_kill(proc, SIGCONT) == 0, "SIGCONT redis");
    CHECK(cg_harness_redis_stop(redis, err, sizeof(err)) == 0, "stop: %s", err);
    /* The harness waited for the server to exit on this thread: only
     * gaps from here on are the loop's. */
    tk.last = 0;
    tk.max_gap = 0;
    issue(cache, &b, 3, 12);
    CHECK(turn_until(batch_answered, &b, WAIT_MS), "answers while stopped");
    CHECK(tk.max_gap < 900, "longest gap between ticks %lld ms",
          (long long)tk.max_gap);
    CHECK(cg_harness_redis_restart(redis, err, sizeof(err)) == 0, "restart: %s",
          err);
    uint64_t reconnects0 = st.reconnects;
    CHECK(turn_until(is_connected, cache, WAIT_MS),
          "reconnects after the restart");
    cg_cache_stats(cache, &st);
    CHECK(st.reconnects > reconnects0, "reconnects %llu",
          (unsigned long long)st.reconnects);
    CHECK(store(cache, TA, S2, "after", 20, "FFPP") == 0,
          "a store after the restart lands");
    CHECK(redis_int("HGET out:sub:%s scan_ms", S2) == 20,
          "the new store is in Redis");
    CHECK(redis_int("HGET out:tenant:%s:counts owner-alerts:FAIL", TA) == 1,
          "counts start afresh in the new Redis");

    /* Restarted behind an idle connection: the next store finds the old
     * socket dead, reconnects once and lands without an error. */
    CHECK(cg_harness_redis_restart(redis, err, sizeof(err)) == 0,
          "restart again: %s", err);
    cg_cache_stats(cache, &st);
    uint64_t errors0 = st.write_errors;
    CHECK(store(cache, TA, S2, "idle", 30, "PPPP") == 0,
          "store over a connection the restart closed");
    cg_cache_stats(cache, &st);
    CHECK(st.write_errors == errors0, "write errors %llu -> %llu",
          (unsigned long long)errors0, (unsigned long long)st.write_errors);
    CHECK(redis_int("HGET out:sub:%s scan_ms", S2) == 30,
          "the store is in the restarted Redis");
    cg_loop_timer_cancel(loop, &tk.t);
out:
    cg_cache_free(cache);
    cg_conf_free(conf);
}

/* Shutdown: settle sends what is queued and reads the answers without
 * turning the loop or running a callback; free then runs them with their
 * results. */
static void test_settle(void)
{
    enum { N = 20 };
    struct cg_conf *conf =
        conf_for(cg_harness_redis_port(redis), "st:", 2000, 100);
    struct cg_cache *cache = cache_up(conf);
    if (!cache)
        goto out;
    CHECK(turn_until(is_connected, cache, WAIT_MS), "connects");
    struct done_res d[N];
    memset(d, 0, sizeof(d));
    char job[32];
    for (int i = 0; i < N; i++) {
        snprintf(job, sizeof(job), "settle-%d", i);
        cg_cache_mark_done(cache, job, on_done, &d[i]);
    }
    CHECK(cg_cache_settle(cache, WAIT_MS), "everything answered");
    int called = 0;
    for (int i = 0; i < N; i++)
        called += d[i].called;
    CHECK(called == 0, "no callback ran during settle: %d", called);
    CHECK(redis_int("EXISTS st:job:settle-0") == 1 &&
              redis_int("EXISTS st:job:settle-19") == 1,
          "the queued writes are in Redis");
    cg_cache_free(cache);
    cache = NULL;
    int ok = 0;
    for (int i = 0; i < N; i++)
        ok += d[i].called && d[i].err == 0;
    CHECK(ok == N, "free ran %d of %d callbacks with success", ok, N);
out:
    cg_cache_free(cache);
    cg_conf_free(conf);
}

/* Redis never reachable: the first connection attempt fails, queued
 * requests get CG_EREDIS, and free is prompt. */
static void test_unreachable(void)
{
    char err[256];
    int port = cg_harness_free_port(err, sizeof(err));
    struct cg_conf *conf = conf_for(port, "un:", 1000, 100);
    struct cg_cache *cache = cache_up(conf);
    if (!cache)
        goto out;
    struct cg_cache_prev p = lookup(cache, S1, "job-u");
    CHECK(p.err == CG_EREDIS, "lookup err %d", p.err);
    CHECK(store(cache, TA, S1, "job-u", 1, "PPPP") == CG_EREDIS,
          "store fails with CG_EREDIS");
    struct cg_cache_reader *r = cg_cache_reader_new(conf, err, sizeof(err));
    CHECK(r == NULL && strstr(err, "redis"), "reader fails: %s", err);
    cg_cache_reader_free(r);

    /* Callbacks still pending at free run with CG_ECANCELLED. */
    struct lookup_res l = { 0 };
    cg_cache_lookup(cache, TA, S1, "job-v", on_lookup, &l);
    cg_cache_free(cache);
    cache = NULL;
    CHECK(l.called, "free answers what is pending");
out:
    cg_cache_free(cache);
    cg_conf_free(conf);
}

int main(void)
{
    char err[512];
    cg_log_setup(CG_LOG_WARN, CG_LOG_TEXT, "it_cache");
    loop = cg_loop_new(err, sizeof(err));
    redis = cg_harness_redis_start(err, sizeof(err));
    CHECK(redis != NULL, "redis: %s", err);
    if (loop && redis) {
        test_round_trip();
        test_counts();
        test_prune();
        test_ttl_and_reader();
        test_big_finding();
        test_error_reply();
        test_auth_db();
        test_lock();
        test_queue_full();
        test_settle();
        test_unreachable();
        test_outage();
    }
    cg_harness_redis_free(redis);
    cg_loop_free(loop);
    return check_done("it_cache");
}
