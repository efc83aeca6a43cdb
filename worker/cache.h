/*
 * cache — stage 5 of the pipeline: what the last scans found, in Redis.
 *
 *     job -> fetch -> evaluate -> remediate -> [cache] -> publish
 *
 * Before a job is fetched the pipeline asks the cache whether the job was
 * already delivered (a redelivery is skipped) and what each rule said last
 * time (each finding carries that previous status, so a SIEM sees PASS ->
 * FAIL directly). After evaluation it stores the verdicts; after every
 * finding of the job has a delivery report it marks the job done. The
 * remediate stage takes a per-subscription lock and keeps the body it
 * replaced for undo. The producer and contactguard-report read the same keys
 * through the synchronous reader at the end of this header.
 *
 * The pipeline's loop thread never waits for Redis. struct cg_cache owns one
 * thread with its own blocking hiredis connection; calls queue a request
 * (bounded: CG_CACHE_QUEUE_MAX, or redis.queue_max) and return at once; the
 * thread pipelines what is queued, and answers come back through an eventfd
 * watched by the loop, so every callback runs on the loop thread, and never
 * inside the call that queued it. When the queue is full a write is dropped
 * and counted. When Redis is down (a connection failed or broke) requests
 * are answered on the next loop turn with CG_EREDIS without touching the
 * queue, writes are counted as failed, and the thread reconnects with capped
 * exponential backoff. A batch that got no reply at all (a restart behind an
 * idle connection) is sent once more on a fresh connection before it is
 * failed. Until the first connection attempt has finished,
 * requests queue, so a worker that starts with Redis gets its first lookups
 * answered.
 *
 * Redis key schema (P = redis.prefix, default "cg:"; ids are lower-cased;
 * TTL = redis.ttl seconds; docs/cache.md has the long form):
 *
 *   P sub:SUB             hash   TTL, refreshed by every store. Written by
 *                                the worker (store script); read by lookup,
 *                                the producer (scan_ms) and the report.
 *       tenant, job_id, scan_ms, hash (hex SHA-256 of the normalised
 *       contacts), api_version, status:RULE (PASS|FAIL|ERROR|SKIPPED),
 *       previous:RULE (status before this job's scan, absent if none),
 *       finding:RULE (compact finding line, contactguard.finding/1)
 *   P tenant:T:counts     hash   "RULE:STATUS" -> number of subscriptions;
 *                                TTL refreshed by every store of T. Kept
 *                                exact by the store script.
 *   P tenant:T:last       hash   SUB -> status letters, one per rule in
 *                                enum cg_rule order (P F E S, '-' none):
 *                                what the counts hold for SUB. Same TTL.
 *   P tenant:T:scanned    zset   SUB scored by scan_ms. Same TTL. Entries
 *                                older than the TTL are pruned, with their
 *                                counts, by the next store of T.
 *   P tenant:T:failing    set    SUBs with at least one FAIL. Same TTL.
 *   P tenant:T:changed    set    SUBs whose last scan changed a rule's
 *                                status. Same TTL.
 *   P tenant:T:known      set    every SUB seen (producer listings, worker
 *                                stores); TTL refreshed on every add.
 *   P tenants             zset   T scored by its last scan_ms; no TTL,
 *                                entries older than the TTL are pruned.
 *   P job:JOB             string "1", TTL; the job's findings were
 *                                delivered (mark_done).
 *   P lock:SUB            string owner, PX ttl_ms; remediation lock.
 *   P undo:SUB            string contact body replaced by remediation,
 *                                EX remediation.retention.
 *
 * The store script also builds key names from P (to prune expired
 * subscriptions and to move a subscription between tenants), so the schema
 * assumes one Redis, not Redis Cluster.
 */
#ifndef CG_CACHE_H
#define CG_CACHE_H

#include "finding.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_loop;
struct cg_conf;
struct cg_buf;

#define CG_CACHE_QUEUE_MAX      10000        /* default of redis.queue_max */
#define CG_CACHE_BATCH_MAX      256          /* requests pipelined at once */
#define CG_CACHE_ID_MAX         64           /* tenant, subscription, job ids */
#define CG_CACHE_OWNER_MAX      128          /* lock owner string */
#define CG_CACHE_PREFIX_MAX     64           /* redis.prefix */
#define CG_CACHE_BODY_MAX       (4 << 20)    /* undo body */
#define CG_CACHE_FINDING_MAX    (256 * 1024) /* cached finding line */
#define CG_CACHE_BACKOFF_MIN_MS 100          /* first reconnect delay */
#define CG_CACHE_BACKOFF_MAX_MS 5000         /* reconnect delay cap */
#define CG_CACHE_HASH_LEN       64           /* hex SHA-256 */

struct cg_cache;

/* What the cache knew about a subscription before this job. */
struct cg_cache_prev {
    int err;       /* 0, or CG_EREDIS / CG_EBUSY / CG_ECANCELLED /
                      CG_EINVAL: the rest then says "not done, no previous" */
    bool job_done; /* this job's findings were already delivered */
    enum cg_status status[CG_RULE_COUNT];      /* CG_STATUS_NONE: unknown */
    char contacts_hash[CG_CACHE_HASH_LEN + 1]; /* "" when unknown */
    long long scan_ms;                         /* 0 when never scanned */
};

/* One job's verdicts to store; everything is borrowed for the call. */
struct cg_cache_entry {
    const char *tenant_id;
    const char *subscription_id;
    const char *job_id;
    const char *api_version;   /* "" if the fetch never got that far */
    const char *contacts_hash; /* cg_contacts_hash(), or "" */
    long long scan_ms;         /* ms since the epoch */
    /* One finding per rule; findings[i].rule need not be in order, a rule
     * without a finding is stored as "no status". */
    const struct cg_finding *findings;
    size_t nfindings;
};

/* Counters for /metrics; a snapshot. */
struct cg_cache_stats {
    uint64_t writes_ok;     /* stores, done markers, undo bodies written */
    uint64_t write_errors;  /* writes lost to Redis being down or refusing */
    uint64_t dropped;       /* writes refused because the queue was full */
    uint64_t stale;         /* stores ignored: a newer scan was cached */
    uint64_t lookups;       /* lookups asked */
    uint64_t lookup_errors; /* lookups answered with an error */
    uint64_t reconnects;    /* connections made after the first */
    size_t queue_depth;     /* requests waiting for the thread */
    size_t in_flight;       /* requests the thread is sending */
    bool connected;
};

typedef void (*cg_cache_lookup_fn)(const struct cg_cache_prev *prev, void *arg);
/* err: 0 or a negative CG_E* code. */
typedef void (*cg_cache_done_fn)(int err, void *arg);
/* ok: the lock was taken (lock) or released (unlock). */
typedef void (*cg_cache_lock_fn)(int err, bool ok, void *arg);
/* body: NULL when there is none (err 0) or on error; borrowed for the
 * call. */
typedef void (*cg_cache_body_fn)(int err, const char *body, size_t len,
                                 void *arg);

/*
 * Starts the cache thread for the redis.* settings of conf and watches its
 * eventfd on loop (call on the loop thread). Connecting happens on the
 * thread, so this returns at once even when Redis is unreachable. NULL with
 * errbuf on a bad setting or when the thread or eventfd cannot be made.
 */
struct cg_cache *cg_cache_new(struct cg_loop *loop, const struct cg_conf *conf,
                              char *errbuf, size_t errsz);

/*
 * Asks, in one round trip, whether job_id is done and what each rule of
 * subscription said before this job (a redelivered job gets the statuses
 * from before its first attempt). tenant_id is only checked: the record
 * names its tenant. fn is required. On any failure
 * prev->err is set and the rest reads "not done, no previous".
 */
void cg_cache_lookup(struct cg_cache *cache, const char *tenant_id,
                     const char *subscription_id, const char *job_id,
                     cg_cache_lookup_fn fn, void *arg);

/*
 * Stores a job's verdicts (copied before return) and adjusts the tenant's
 * counts, atomically (a Lua script). A store older than the cached scan of
 * the subscription is ignored (counted as stale, err 0). A finding whose
 * compact line exceeds CG_CACHE_FINDING_MAX is cached without its
 * evidence. fn may be NULL.
 */
void cg_cache_store(struct cg_cache *cache, const struct cg_cache_entry *e,
                    cg_cache_done_fn fn, void *arg);

/* Marks job_id done: call once every finding of the job was delivered.
 * fn may be NULL. */
void cg_cache_mark_done(struct cg_cache *cache, const char *job_id,
                        cg_cache_done_fn fn, void *arg);

/*
 * Takes the remediation lock of subscription for owner, for ttl_ms (SET NX
 * PX). fn(err, taken): taken is false when someone else holds it.
 */
void cg_cache_lock(struct cg_cache *cache, const char *subscription_id,
                   const char *owner, long long ttl_ms, cg_cache_lock_fn fn,
                   void *arg);

/* Releases the lock only if owner still holds it: fn(err, released). */
void cg_cache_unlock(struct cg_cache *cache, const char *subscription_id,
                     const char *owner, cg_cache_lock_fn fn, void *arg);

/* Keeps the contact body remediation replaced, for retention_s seconds
 * (copied; at most CG_CACHE_BODY_MAX). fn may be NULL. */
void cg_cache_undo_put(struct cg_cache *cache, const char *subscription_id,
                       const char *body, size_t len, long long retention_s,
                       cg_cache_done_fn fn, void *arg);

/* Reads the body kept for undo. */
void cg_cache_undo_get(struct cg_cache *cache, const char *subscription_id,
                       cg_cache_body_fn fn, void *arg);

/* Copies the counters (any thread). */
void cg_cache_stats(struct cg_cache *cache, struct cg_cache_stats *out);

/*
 * Shutdown: waits at most timeout_ms for the thread to have sent what is
 * queued (the last stores, done markers, a lock release), without running
 * any callback: their answers are for cg_cache_free. Returns true when
 * nothing is left to send. NULL-ok.
 */
bool cg_cache_settle(struct cg_cache *cache, int timeout_ms);

/*
 * Appends the counters to a /metrics page (Prometheus text, metrics.h):
 * contactguard_cache_writes_total{result="ok|error|dropped"},
 * contactguard_cache_stale_writes_total, contactguard_cache_lookups_total,
 * contactguard_cache_lookup_errors_total, contactguard_cache_reconnects_total,
 * and the gauges contactguard_cache_queue_depth,
 * contactguard_cache_in_flight and contactguard_cache_connected.
 */
void cg_cache_metrics(struct cg_cache *cache, struct cg_buf *out);

/*
 * Stops the thread (bounded by redis.timeout_ms: a command in flight is cut
 * off), then runs every callback not yet run, on this thread: answers that
 * had arrived with their result, requests still queued with
 * CG_ECANCELLED. Those callbacks may still call the cache: what they ask
 * is answered CG_ECANCELLED before free returns. Call on the loop thread,
 * not from one of the cache's callbacks. NULL is fine.
 */
void cg_cache_free(struct cg_cache *cache);

/* ---- the synchronous reader: producer and contactguard-report ---- */

struct cg_cache_reader;

/* A list of strings read from Redis; free with cg_cache_list_free. */
struct cg_cache_list {
    char **v;
    size_t n;
};

/* Per-tenant figures as the store script keeps them. */
struct cg_cache_tenant {
    long long counts[CG_RULE_COUNT][CG_STATUS_NONE]; /* [rule][status] */
    long long scanned; /* subscriptions with a cached scan */
    long long failing; /* of which at least one rule FAILs */
};

/* A subscription's cached record. */
struct cg_cache_sub {
    char subscription_id[CG_CACHE_ID_MAX + 1];
    char tenant_id[CG_CACHE_ID_MAX + 1];
    char job_id[CG_CACHE_ID_MAX + 1];
    char contacts_hash[CG_CACHE_HASH_LEN + 1];
    char api_version[24];
    long long scan_ms;
    enum cg_status status[CG_RULE_COUNT];   /* CG_STATUS_NONE: none */
    enum cg_status previous[CG_RULE_COUNT]; /* CG_STATUS_NONE: none */
};

/*
 * Connects (blocking, redis.timeout_ms for connect and each command), with
 * AUTH and SELECT as configured. NULL with errbuf (CG_EREDIS) when Redis
 * cannot be reached; the password never appears in errbuf.
 */
struct cg_cache_reader *cg_cache_reader_new(const struct cg_conf *conf,
                                            char *errbuf, size_t errsz);

/* The known subscriptions of tenant (empty when none). */
int cg_cache_reader_known(struct cg_cache_reader *r, const char *tenant_id,
                          struct cg_cache_list *out, char *errbuf,
                          size_t errsz);

/* Adds subscriptions to tenant's known set and refreshes its TTL. */
int cg_cache_reader_add_known(struct cg_cache_reader *r, const char *tenant_id,
                              const char *const *subs, size_t n, char *errbuf,
                              size_t errsz);

/* Last scan time of each of n subscriptions (0: never scanned), in one
 * pipelined round trip. */
int cg_cache_reader_scan_ms(struct cg_cache_reader *r, const char *const *subs,
                            size_t n, long long *out_ms, char *errbuf,
                            size_t errsz);

/* Tenants with a scan within the TTL, sorted. */
int cg_cache_reader_tenants(struct cg_cache_reader *r,
                            struct cg_cache_list *out, char *errbuf,
                            size_t errsz);

/* Counts of one tenant (zero when unknown). */
int cg_cache_reader_tenant(struct cg_cache_reader *r, const char *tenant_id,
                           struct cg_cache_tenant *out, char *errbuf,
                           size_t errsz);

/* Subscriptions of tenant whose last scan changed a status, sorted. */
int cg_cache_reader_changed(struct cg_cache_reader *r, const char *tenant_id,
                            struct cg_cache_list *out, char *errbuf,
                            size_t errsz);

/* One subscription's record; CG_ENOTFOUND when none is cached. */
int cg_cache_reader_sub(struct cg_cache_reader *r, const char *subscription_id,
                        struct cg_cache_sub *out, char *errbuf, size_t errsz);

/*
 * The cached findings of a subscription, parsed (cg_finding_parse), in rule
 * order; *n set to how many were cached. The caller clears them.
 */
int cg_cache_reader_findings(struct cg_cache_reader *r,
                             const char *subscription_id,
                             struct cg_finding out[CG_RULE_COUNT], size_t *n,
                             char *errbuf, size_t errsz);

void cg_cache_reader_free(struct cg_cache_reader *r);

void cg_cache_list_free(struct cg_cache_list *l);

#endif
