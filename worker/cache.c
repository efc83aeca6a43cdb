#include "cache.h"

#include "conf.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "metrics.h"
#include "redis.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_LOG_EVERY_MS 1000 /* error replies logged at most this often */
#define CACHE_OPS_SPARE    256  /* operation records kept for reuse */

enum op_kind {
    OP_LOOKUP,
    OP_STORE,
    OP_DONE,
    OP_LOCK,
    OP_UNLOCK,
    OP_UNDO_PUT,
    OP_UNDO_GET,
};

/* One call of the stage while Redis answers it; recycled. */
struct cache_op {
    struct cache_op *next;
    struct cg_cache *cache;
    enum op_kind kind;
    int err;      /* set before sending: a bad argument, answered as such */
    bool counted; /* refused at once, and counted then */
    union {
        cg_cache_lookup_fn lookup;
        cg_cache_done_fn done;
        cg_cache_lock_fn lock;
        cg_cache_body_fn body;
    } fn;
    void *arg;
    char job_id[CG_CACHE_ID_MAX + 1]; /* lookup: to spot a redelivery */
};

struct cg_cache {
    struct cg_redis *rd;
    char prefix[CG_CACHE_PREFIX_MAX + 1];
    long long ttl_s;
    char store_sha[CG_CACHE_SHA_HEX];
    char unlock_sha[CG_CACHE_SHA_HEX];
    int64_t last_log;
    /* HMGET fields of a lookup: "status:RULE" then "previous:RULE". */
    char fields[2 * CG_RULE_COUNT][48];
    struct cache_op *spare;
    size_t nspare;
    struct cg_cache_stats stats; /* the stage's own counters */
};

static const char *op_name(enum op_kind kind)
{
    static const char *const names[] = { "lookup",  "store",  "mark_done",
                                         "lock",    "unlock", "undo_put",
                                         "undo_get" };
    return names[kind];
}

static bool op_is_write(enum op_kind kind)
{
    return kind == OP_STORE || kind == OP_DONE || kind == OP_UNDO_PUT;
}

static struct cache_op *op_new(struct cg_cache *cache, enum op_kind kind,
                               void *arg)
{
    struct cache_op *op = cache->spare;
    if (op) {
        cache->spare = op->next;
        cache->nspare--;
        memset(op, 0, sizeof(*op));
    } else {
        op = cg_calloc(1, sizeof(*op));
    }
    op->cache = cache;
    op->kind = kind;
    op->arg = arg;
    return op;
}

static void op_put(struct cg_cache *cache, struct cache_op *op)
{
    if (cache->nspare < CACHE_OPS_SPARE) {
        op->next = cache->spare;
        cache->spare = op;
        cache->nspare++;
    } else {
        free(op);
    }
}

static void prev_none(struct cg_cache_prev *prev, int err)
{
    memset(prev, 0, sizeof(*prev));
    for (int i = 0; i < CG_RULE_COUNT; i++)
        prev->status[i] = CG_STATUS_NONE;
    prev->err = err;
}

/* Reads a lookup's two replies (EXISTS job, HMGET sub) into prev. */
static int lookup_read(const struct cache_op *op, redisReply *const *rep,
                       struct cg_cache_prev *prev)
{
    const redisReply *r0 = rep[0], *r1 = rep[1];
    prev->job_done = r0->type == REDIS_REPLY_INTEGER && r0->integer;
    if (r1->type != REDIS_REPLY_ARRAY ||
        r1->elements != 3 + 2 * (size_t)CG_RULE_COUNT)
        return CG_EREDIS;
    redisReply **e = r1->element;
    if (e[0]->type != REDIS_REPLY_STRING)
        return 0; /* never scanned */
    /* A redelivered job must see what came before its first attempt. */
    bool same_job = strcmp(e[0]->str, op->job_id) == 0;
    size_t base = same_job ? 3 + CG_RULE_COUNT : 3;
    if (e[1]->type == REDIS_REPLY_STRING)
        prev->scan_ms = strtoll(e[1]->str, NULL, 10);
    if (e[2]->type == REDIS_REPLY_STRING && e[2]->len <= CG_CACHE_HASH_LEN)
        cg_strlcpy(prev->contacts_hash, e[2]->str, sizeof(prev->contacts_hash));
    for (int i = 0; i < CG_RULE_COUNT; i++)
        if (e[base + i]->type == REDIS_REPLY_STRING)
            prev->status[i] = cg_status_parse(e[base + i]->str);
    return 0;
}

/* An error reply fails that request only; said at most once a second. */
static int check_replies(struct cg_cache *cache, const struct cache_op *op,
                         redisReply *const *rep, int n)
{
    for (int i = 0; i < n; i++) {
        if (rep[i]->type != REDIS_REPLY_ERROR)
            continue;
        int64_t now = cg_loop_now_ms();
        if (now - cache->last_log >= CACHE_LOG_EVERY_MS) {
            cg_warn("cache_reply_error", "request=%s reply=\"%.200s\"",
                    op_name(op->kind), rep[i]->str);
            cache->last_log = now;
        }
        return CG_EREDIS;
    }
    return 0;
}

/* The client's answer: interpret, count, call back, recycle. */
static void on_reply(int err, struct redisReply *const *rep, int n, void *arg)
{
    struct cache_op *op = arg;
    struct cg_cache *cache = op->cache;
    struct cg_cache_stats *st = &cache->stats;
    struct cg_cache_prev prev;
    bool ok = false, stale = false;
    const char *body = NULL;
    size_t body_len = 0;

    if (op->err)
        err = op->err;
    if (!err)
        err = check_replies(cache, op, rep, n);
    if (!err) {
        const redisReply *r0 = rep[0];
        switch (op->kind) {
        case OP_LOOKUP:
            prev_none(&prev, 0);
            err = lookup_read(op, rep, &prev);
            break;
        case OP_STORE:
            stale = r0->type == REDIS_REPLY_INTEGER && r0->integer == 0;
            break;
        case OP_LOCK:
            ok = r0->type == REDIS_REPLY_STATUS;
            break;
        case OP_UNLOCK:
            ok = r0->type == REDIS_REPLY_INTEGER && r0->integer == 1;
            break;
        case OP_UNDO_GET:
            if (r0->type == REDIS_REPLY_STRING) {
                if (r0->len > CG_CACHE_BODY_MAX) {
                    err = CG_ETOOBIG;
                } else {
                    body = r0->str; /* borrowed for the callback */
                    body_len = r0->len;
                }
            }
            break;
        case OP_DONE:
        case OP_UNDO_PUT:
            break;
        }
    }
    if (op->counted) {
        /* counted by op_send */
    } else if (op_is_write(op->kind)) {
        if (err == CG_EBUSY)
            st->dropped++;
        else if (err)
            st->write_errors++;
        else
            st->writes_ok++;
        if (stale)
            st->stale++;
    } else if (op->kind == OP_LOOKUP && err) {
        st->lookup_errors++;
    }
    switch (op->kind) {
    case OP_LOOKUP:
        /* Whatever a failed lookup half read, it answers "not done, no
         * previous": a wrong "done" would drop a job. */
        if (err)
            prev_none(&prev, err);
        op->fn.lookup(&prev, op->arg);
        break;
    case OP_STORE:
    case OP_DONE:
    case OP_UNDO_PUT:
        if (op->fn.done)
            op->fn.done(err, op->arg);
        break;
    case OP_LOCK:
    case OP_UNLOCK:
        if (op->fn.lock)
            op->fn.lock(err, err ? false : ok, op->arg);
        break;
    case OP_UNDO_GET:
        if (op->fn.body)
            op->fn.body(err, err ? NULL : body, err ? 0 : body_len, op->arg);
        break;
    }
    op_put(cache, op);
}

/* Sends op's commands; with op->err set, nothing is sent and the client
 * answers on the next turn (never inside the caller's call). A refusal is
 * counted here, so that the counters are right when the call returns. */
static void op_send(struct cg_cache *cache, struct cache_op *op,
                    const struct cg_redis_cmd *cmds, int ncmd)
{
    int err = cg_redis_call(cache->rd, cmds, op->err ? 0 : ncmd, on_reply, op);
    if (op->err)
        err = op->err;
    if (!err)
        return;
    op->counted = true;
    struct cg_cache_stats *st = &cache->stats;
    if (op_is_write(op->kind)) {
        if (err == CG_EBUSY)
            st->dropped++;
        else
            st->write_errors++;
    } else if (op->kind == OP_LOOKUP) {
        st->lookup_errors++;
    }
}

struct cg_cache *cg_cache_new(struct cg_loop *loop, const struct cg_conf *conf,
                              char *errbuf, size_t errsz)
{
    const char *prefix = cg_conf_str(conf, "redis.prefix");
    if (cg_cache_prefix_check(prefix, errbuf, errsz))
        return NULL;
    struct cg_cache *cache = cg_calloc(1, sizeof(*cache));
    cg_strlcpy(cache->prefix, prefix, sizeof(cache->prefix));
    cache->ttl_s = cg_conf_int(conf, "redis.ttl");
    cg_cache_script_sha(cg_cache_store_lua, cache->store_sha);
    cg_cache_script_sha(cg_cache_unlock_lua, cache->unlock_sha);
    for (int i = 0; i < CG_RULE_COUNT; i++) {
        const char *id = cg_rule_info((enum cg_rule)i)->id;
        snprintf(cache->fields[i], sizeof(cache->fields[i]), "status:%s", id);
        snprintf(cache->fields[CG_RULE_COUNT + i], sizeof(cache->fields[i]),
                 "previous:%s", id);
    }
    cache->rd = cg_redis_new(loop, conf, errbuf, errsz);
    if (!cache->rd) {
        free(cache);
        return NULL;
    }
    /* Loaded on every connection, so that the first batch after one does
     * not meet NOSCRIPT once per store. */
    cg_redis_preload(cache->rd, cg_cache_store_lua);
    cg_redis_preload(cache->rd, cg_cache_unlock_lua);
    return cache;
}

void cg_cache_lookup(struct cg_cache *cache, const char *tenant_id,
                     const char *subscription_id, const char *job_id,
                     cg_cache_lookup_fn fn, void *arg)
{
    enum { NF = 2 + 3 + 2 * CG_RULE_COUNT };
    struct cache_op *op = op_new(cache, OP_LOOKUP, arg);
    char sub[CG_CACHE_ID_MAX + 1], tenant[CG_CACHE_ID_MAX + 1];
    char jkey[CG_CACHE_KEY_MAX], skey[CG_CACHE_KEY_MAX];
    const char *a0[2], *a1[NF];
    size_t l0[2], l1[NF];

    op->fn.lookup = fn;
    cache->stats.lookups++;
    /* The tenant is only checked: the subscription's record names it. */
    if (cg_cache_id_norm(tenant_id, tenant) ||
        cg_cache_id_norm(subscription_id, sub) ||
        cg_cache_id_norm(job_id, op->job_id)) {
        op->err = CG_EINVAL;
        op_send(cache, op, NULL, 0);
        return;
    }
    snprintf(jkey, sizeof(jkey), "%sjob:%s", cache->prefix, op->job_id);
    snprintf(skey, sizeof(skey), "%ssub:%s", cache->prefix, sub);
    a0[0] = "EXISTS";
    a0[1] = jkey;
    a1[0] = "HMGET";
    a1[1] = skey;
    a1[2] = "job_id";
    a1[3] = "scan_ms";
    a1[4] = "hash";
    for (int i = 0; i < 2 * CG_RULE_COUNT; i++)
        a1[5 + i] = cache->fields[i];
    for (int i = 0; i < 2; i++)
        l0[i] = strlen(a0[i]);
    for (int i = 0; i < NF; i++)
        l1[i] = strlen(a1[i]);
    const struct cg_redis_cmd cmds[] = { { 2, a0, l0 }, { NF, a1, l1 } };
    op_send(cache, op, cmds, 2);
}

/* The compact line of f, bounded: evidence read from a hostile body can
 * be large, and the cache is not where it needs to be kept whole. */
static char *finding_line(const struct cg_finding *f)
{
    char *line = cg_finding_compact_lean(f);
    if (strlen(line) <= CG_CACHE_FINDING_MAX)
        return line;
    free(line);
    struct cg_finding slim;
    cg_finding_copy(&slim, f);
    json_decref(slim.evidence);
    slim.evidence = json_pack("{s:b}", "truncated", 1);
    line = cg_finding_compact_lean(&slim);
    cg_finding_clear(&slim);
    if (strlen(line) > CG_CACHE_FINDING_MAX) {
        free(line);
        line = NULL;
    }
    return line;
}

void cg_cache_store(struct cg_cache *cache, const struct cg_cache_entry *e,
                    cg_cache_done_fn fn, void *arg)
{
    enum {
        NKEYS = CG_CACHE_STORE_KEYS,
        NFIXED = 10,
        ARGC = 3 + NKEYS + NFIXED + 2 * CG_RULE_COUNT
    };
    struct cache_op *op = op_new(cache, OP_STORE, arg);
    char tenant[CG_CACHE_ID_MAX + 1], sub[CG_CACHE_ID_MAX + 1],
        job[CG_CACHE_ID_MAX + 1];
    char keys[NKEYS][CG_CACHE_KEY_MAX];
    char nkeys[8], scan[24], ttl[24], nrules[8];
    char codes[CG_RULE_COUNT + 1];
    char *lines[CG_RULE_COUNT] = { NULL };
    const struct cg_finding *by_rule[CG_RULE_COUNT] = { NULL };
    const char *argv[ARGC];
    size_t len[ARGC];
    const char *pfx = cache->prefix;
    int a = 0;

    op->fn.done = fn;
    if (cg_cache_id_norm(e->tenant_id, tenant) ||
        cg_cache_id_norm(e->subscription_id, sub) ||
        cg_cache_id_norm(e->job_id, job) || e->scan_ms <= 0 ||
        (e->contacts_hash && strlen(e->contacts_hash) > CG_CACHE_HASH_LEN)) {
        op->err = CG_EINVAL;
        op_send(cache, op, NULL, 0);
        return;
    }
    for (size_t i = 0; i < e->nfindings; i++)
        if (e->findings[i].rule >= 0 && e->findings[i].rule < CG_RULE_COUNT)
            by_rule[e->findings[i].rule] = &e->findings[i];
    for (int i = 0; i < CG_RULE_COUNT; i++)
        codes[i] =
            by_rule[i] ? cg_cache_status_letter(by_rule[i]->status) : '-';
    codes[CG_RULE_COUNT] = '\0';

    snprintf(keys[0], sizeof(keys[0]), "%ssub:%s", pfx, sub);
    snprintf(keys[1], sizeof(keys[1]), "%stenant:%s:last", pfx, tenant);
    snprintf(keys[2], sizeof(keys[2]), "%stenant:%s:counts", pfx, tenant);
    snprintf(keys[3], sizeof(keys[3]), "%stenant:%s:failing", pfx, tenant);
    snprintf(keys[4], sizeof(keys[4]), "%stenant:%s:known", pfx, tenant);
    snprintf(keys[5], sizeof(keys[5]), "%stenants", pfx);
    snprintf(keys[6], sizeof(keys[6]), "%stenant:%s:changed", pfx, tenant);
    snprintf(keys[7], sizeof(keys[7]), "%stenant:%s:scanned", pfx, tenant);
    snprintf(nkeys, sizeof(nkeys), "%d", NKEYS);
    snprintf(scan, sizeof(scan), "%lld", e->scan_ms);
    snprintf(ttl, sizeof(ttl), "%lld", cache->ttl_s);
    snprintf(nrules, sizeof(nrules), "%d", CG_RULE_COUNT);

    argv[a++] = "EVALSHA";
    argv[a++] = cache->store_sha;
    argv[a++] = nkeys;
    for (int i = 0; i < NKEYS; i++)
        argv[a++] = keys[i];
    argv[a++] = pfx;
    argv[a++] = tenant;
    argv[a++] = sub;
    argv[a++] = scan;
    argv[a++] = ttl;
    argv[a++] = job;
    argv[a++] = e->contacts_hash ? e->contacts_hash : "";
    argv[a++] = e->api_version ? e->api_version : "";
    argv[a++] = codes;
    argv[a++] = nrules;
    for (int i = 0; i < CG_RULE_COUNT; i++)
        argv[a++] = cg_rule_info((enum cg_rule)i)->id;
    for (int i = 0; i < CG_RULE_COUNT; i++) {
        lines[i] = by_rule[i] ? finding_line(by_rule[i]) : NULL;
        argv[a++] = lines[i] ? lines[i] : "";
    }
    for (int i = 0; i < a; i++)
        len[i] = strlen(argv[i]);
    const struct cg_redis_cmd cmd = { a, argv, len };
    op_send(cache, op, &cmd, 1);
    for (int i = 0; i < CG_RULE_COUNT; i++)
        free(lines[i]);
}

void cg_cache_mark_done(struct cg_cache *cache, const char *job_id,
                        cg_cache_done_fn fn, void *arg)
{
    struct cache_op *op = op_new(cache, OP_DONE, arg);
    char job[CG_CACHE_ID_MAX + 1], key[CG_CACHE_KEY_MAX], ttl[24];
    op->fn.done = fn;
    if (cg_cache_id_norm(job_id, job)) {
        op->err = CG_EINVAL;
        op_send(cache, op, NULL, 0);
        return;
    }
    snprintf(key, sizeof(key), "%sjob:%s", cache->prefix, job);
    snprintf(ttl, sizeof(ttl), "%lld", cache->ttl_s);
    const char *argv[] = { "SET", key, "1", "EX", ttl };
    size_t len[] = { 3, strlen(key), 1, 2, strlen(ttl) };
    const struct cg_redis_cmd cmd = { 5, argv, len };
    op_send(cache, op, &cmd, 1);
}

void cg_cache_lock(struct cg_cache *cache, const char *subscription_id,
                   const char *owner, long long ttl_ms, cg_cache_lock_fn fn,
                   void *arg)
{
    struct cache_op *op = op_new(cache, OP_LOCK, arg);
    char sub[CG_CACHE_ID_MAX + 1], key[CG_CACHE_KEY_MAX], px[24];
    op->fn.lock = fn;
    if (cg_cache_id_norm(subscription_id, sub) || !owner || !*owner ||
        strlen(owner) > CG_CACHE_OWNER_MAX || ttl_ms <= 0) {
        op->err = CG_EINVAL;
        op_send(cache, op, NULL, 0);
        return;
    }
    snprintf(key, sizeof(key), "%slock:%s", cache->prefix, sub);
    snprintf(px, sizeof(px), "%lld", ttl_ms);
    const char *argv[] = { "SET", key, owner, "NX", "PX", px };
    size_t len[] = { 3, strlen(key), strlen(owner), 2, 2, strlen(px) };
    const struct cg_redis_cmd cmd = { 6, argv, len };
    op_send(cache, op, &cmd, 1);
}

void cg_cache_unlock(struct cg_cache *cache, const char *subscription_id,
                     const char *owner, cg_cache_lock_fn fn, void *arg)
{
    struct cache_op *op = op_new(cache, OP_UNLOCK, arg);
    char sub[CG_CACHE_ID_MAX + 1], key[CG_CACHE_KEY_MAX];
    op->fn.lock = fn;
    if (cg_cache_id_norm(subscription_id, sub) || !owner || !*owner ||
        strlen(owner) > CG_CACHE_OWNER_MAX) {
        op->err = CG_EINVAL;
        op_send(cache, op, NULL, 0);
        return;
    }
    snprintf(key, sizeof(key), "%slock:%s", cache->prefix, sub);
    const char *argv[] = { "EVALSHA", cache->unlock_sha, "1", key, owner };
    size_t len[] = { 7, strlen(cache->unlock_sha), 1, strlen(key),
                     strlen(owner) };
    const struct cg_redis_cmd cmd = { 5, argv, len };
    op_send(cache, op, &cmd, 1);
}

void cg_cache_undo_put(struct cg_cache *cache, const char *subscription_id,
                       const char *body, size_t len, long long retention_s,
                       cg_cache_done_fn fn, void *arg)
{
    struct cache_op *op = op_new(cache, OP_UNDO_PUT, arg);
    char sub[CG_CACHE_ID_MAX + 1], key[CG_CACHE_KEY_MAX], ex[24];
    op->fn.done = fn;
    if (cg_cache_id_norm(subscription_id, sub) || !body || retention_s <= 0)
        op->err = CG_EINVAL;
    else if (len > CG_CACHE_BODY_MAX)
        op->err = CG_ETOOBIG;
    if (op->err) {
        op_send(cache, op, NULL, 0);
        return;
    }
    snprintf(key, sizeof(key), "%sundo:%s", cache->prefix, sub);
    snprintf(ex, sizeof(ex), "%lld", retention_s);
    const char *argv[] = { "SET", key, body, "EX", ex };
    size_t lens[] = { 3, strlen(key), len, 2, strlen(ex) };
    const struct cg_redis_cmd cmd = { 5, argv, lens };
    op_send(cache, op, &cmd, 1);
}

void cg_cache_undo_get(struct cg_cache *cache, const char *subscription_id,
                       cg_cache_body_fn fn, void *arg)
{
    struct cache_op *op = op_new(cache, OP_UNDO_GET, arg);
    char sub[CG_CACHE_ID_MAX + 1], key[CG_CACHE_KEY_MAX];
    op->fn.body = fn;
    if (cg_cache_id_norm(subscription_id, sub)) {
        op->err = CG_EINVAL;
        op_send(cache, op, NULL, 0);
        return;
    }
    snprintf(key, sizeof(key), "%sundo:%s", cache->prefix, sub);
    const char *argv[] = { "GET", key };
    size_t len[] = { 3, strlen(key) };
    const struct cg_redis_cmd cmd = { 2, argv, len };
    op_send(cache, op, &cmd, 1);
}

void cg_cache_stats(struct cg_cache *cache, struct cg_cache_stats *out)
{
    struct cg_redis_stats rs;
    cg_redis_stats(cache->rd, &rs);
    *out = cache->stats;
    out->reconnects = rs.reconnects;
    out->batches = rs.batches;
    out->queue_depth = rs.queue_depth;
    out->in_flight = rs.in_flight;
    out->connected = rs.connected;
    out->tls_refused = rs.tls_refused;
}

bool cg_cache_settle(struct cg_cache *cache, int timeout_ms)
{
    return cache ? cg_redis_settle(cache->rd, timeout_ms) : true;
}

void cg_cache_metrics(struct cg_cache *cache, struct cg_buf *out)
{
    struct cg_cache_stats st;
    cg_cache_stats(cache, &st);
    static const char writes_help[] =
        "Cache writes (stores, done markers, undo bodies) by result";
    cg_metrics_counter(out, "contactguard_cache_writes_total", writes_help,
                       "result=\"ok\"", st.writes_ok);
    cg_metrics_counter(out, "contactguard_cache_writes_total", writes_help,
                       "result=\"error\"", st.write_errors);
    cg_metrics_counter(out, "contactguard_cache_writes_total", writes_help,
                       "result=\"dropped\"", st.dropped);
    cg_metrics_counter(out, "contactguard_cache_stale_writes_total",
                       "Stores ignored because a newer scan was cached", "",
                       st.stale);
    cg_metrics_counter(out, "contactguard_cache_lookups_total",
                       "Cache lookups asked", "", st.lookups);
    cg_metrics_counter(out, "contactguard_cache_lookup_errors_total",
                       "Cache lookups answered with an error", "",
                       st.lookup_errors);
    cg_metrics_counter(out, "contactguard_cache_reconnects_total",
                       "Redis connections made after the first", "",
                       st.reconnects);
    cg_metrics_gauge(out, "contactguard_cache_queue_depth",
                     "Cache requests waiting for a batch", "",
                     (double)st.queue_depth);
    cg_metrics_gauge(out, "contactguard_cache_in_flight",
                     "Cache requests sent to Redis, replies pending", "",
                     (double)st.in_flight);
    cg_metrics_gauge(out, "contactguard_cache_connected",
                     "1 when the cache connection is up", "",
                     st.connected ? 1 : 0);
    cg_metrics_gauge(out, "contactguard_cache_tls_refused",
                     "Redis's TLS certificate was refused (1) or not (0)", "",
                     st.tls_refused ? 1 : 0);
}

void cg_cache_free(struct cg_cache *cache)
{
    if (!cache)
        return;
    /* Answers what is pending (CG_ECANCELLED) while the stage is whole:
     * those callbacks may call the cache again. */
    cg_redis_free(cache->rd);
    while (cache->spare) {
        struct cache_op *op = cache->spare;
        cache->spare = op->next;
        free(op);
    }
    free(cache);
}
