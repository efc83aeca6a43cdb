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
 * replaced for undo.
 *
 * The pipeline's loop never waits for Redis: every call goes through the
 * one Redis client (common/redis.h) on the same loop and returns at once;
 * callbacks run on the loop, never inside the call that queued them. What
 * is asked within one loop turn goes to Redis in one pipelined batch (one
 * round trip). When the client's queue is full (redis.queue_max) a write is
 * dropped and counted; when Redis is down requests are answered on the next
 * turn with CG_EREDIS and writes are counted as failed, while the client
 * reconnects with jittered backoff. Each call takes an optional callback with
 * its own result, so the pipeline can tell which job's write landed.
 *
 * The keys and scripts are defined in common/cache_schema.h; the producer
 * and the tools read them through common/cache_reader.h.
 */
#ifndef CG_CACHE_H
#define CG_CACHE_H

#include "cache_schema.h"
#include "finding.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_loop;
struct cg_conf;
struct cg_buf;

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
    uint64_t batches;       /* round trips to Redis (pipelined batches) */
    size_t queue_depth;     /* requests waiting for a batch */
    size_t in_flight;       /* requests sent, replies pending */
    bool connected;
    bool tls_refused; /* Redis's certificate was refused: not ready */
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
 * The cache stage for the redis.* settings of conf, on loop (call on the
 * loop thread). Connecting happens on the loop, so this returns at once
 * even when Redis is unreachable. NULL with errbuf on a bad setting.
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

/* Copies the counters (on the loop thread). */
void cg_cache_stats(struct cg_cache *cache, struct cg_cache_stats *out);

/*
 * Shutdown: for at most timeout_ms, sends what is queued (the last stores,
 * done markers, a lock release) and reads the replies, without turning the
 * loop or running any callback: their answers are for cg_cache_free.
 * Returns true when nothing is left unanswered. NULL-ok.
 */
bool cg_cache_settle(struct cg_cache *cache, int timeout_ms);

/*
 * Appends the counters to a /metrics page (Prometheus text, metrics.h):
 * contactguard_cache_writes_total{result="ok|error|dropped"},
 * contactguard_cache_stale_writes_total, contactguard_cache_lookups_total,
 * contactguard_cache_lookup_errors_total, contactguard_cache_reconnects_total,
 * and the gauges contactguard_cache_queue_depth,
 * contactguard_cache_in_flight, contactguard_cache_connected and
 * contactguard_cache_tls_refused.
 */
void cg_cache_metrics(struct cg_cache *cache, struct cg_buf *out);

/*
 * Closes the connection, then runs every callback not yet run, here: with
 * CG_ECANCELLED. Those callbacks may still call the cache: what they ask
 * is answered CG_ECANCELLED before free returns. Call on the loop thread,
 * not from one of the cache's callbacks. NULL is fine.
 */
void cg_cache_free(struct cg_cache *cache);

#endif
