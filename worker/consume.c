#include "consume.h"

#include "conf.h"
#include "err.h"
#include "kafka.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "offsets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONSUME_BATCH 512 /* messages taken per loop turn at most */
/*
 * How long the pipeline may stay at worker.max_jobs, with no job finishing,
 * before the partitions are paused so that polling (rebalances, group
 * membership) can go on. Pausing is not free: librdkafka discards what it
 * prefetched and cannot fetch again before its outstanding long poll
 * returns (fetch.wait.max.ms), so a pause is kept for real stalls and
 * never used for the turn-by-turn flow control.
 */
#define CONSUME_HOLD_MS 2000
/* A revoke's commit waits at most this for the group's answer. */
#define CONSUME_REVOKE_COMMIT_MS 2000
/* Partitions whose committed offset is remembered (beyond: unknown, so
 * committed again at close, which is harmless). */
#define CONSUME_PARTITIONS_MAX 65536

struct cg_consume {
    struct cg_loop *loop;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    char topic[256];
    struct cg_offsets *offsets;
    cg_consume_fn fn;
    void *arg;
    size_t high; /* worker.max_jobs */
    bool paused, stopped, joined;
    bool closed; /* cg_consume_close began: no commit in rebalance_cb */
    /* Per partition, the offset the group last confirmed committed (-1:
     * unknown), so that close commits only what moved. */
    int64_t *committed;
    int32_t ncommitted;
    bool holding;          /* at high: not polling until a job finishes */
    int64_t full_since_ms; /* when holding began; 0: not holding */
    struct cg_kafka_wake wake;
    struct cg_loop_timer tick;
    struct cg_consume_stats stats;
};

static void store_offset(struct cg_consume *c, int32_t partition,
                         int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, c->topic, partition)->offset = offset;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, l);
    if (err)
        cg_debug("consume.store", "partition=%d offset=%lld error=%s",
                 (int)partition, (long long)offset, rd_kafka_err2name(err));
    rd_kafka_topic_partition_list_destroy(l);
}

static int64_t committed_get(const struct cg_consume *c, int32_t partition)
{
    if (partition < 0 || partition >= c->ncommitted)
        return -1;
    return c->committed[partition];
}

static void committed_set(struct cg_consume *c, int32_t partition,
                          int64_t offset)
{
    if (partition < 0 || partition >= CONSUME_PARTITIONS_MAX)
        return;
    if (partition >= c->ncommitted) {
        int32_t n = partition + 1;
        c->committed = cg_realloc(c->committed, (size_t)n * sizeof(int64_t));
        for (int32_t i = c->ncommitted; i < n; i++)
            c->committed[i] = -1;
        c->ncommitted = n;
    }
    c->committed[partition] = offset;
}

/* A commit's answer, whoever asked (auto-commit, a revoke, the close). */
static void commits_answered(struct cg_consume *c, rd_kafka_resp_err_t err,
                             const rd_kafka_topic_partition_list_t *offsets)
{
    if (err || !offsets)
        return;
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &offsets->elems[i];
        if (!e->err && e->offset >= 0 && !strcmp(e->topic, c->topic))
            committed_set(c, e->partition, e->offset);
    }
}

static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets,
                             void *opaque)
{
    (void)rk;
    commits_answered(opaque, err, offsets);
}

static void set_paused(struct cg_consume *c, bool paused)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(c->rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (a->cnt > 0) {
        if (paused)
            rd_kafka_pause_partitions(c->rk, a);
        else
            rd_kafka_resume_partitions(c->rk, a);
    }
    rd_kafka_topic_partition_list_destroy(a);
    if (paused && !c->paused)
        c->stats.pauses++;
    c->paused = paused;
}

static void on_tick(struct cg_loop *loop, void *arg);

/*
 * Whether consume_serve may poll now. At the job limit it stops polling:
 * librdkafka keeps what it fetched, and its bounded queue stops the
 * fetcher, so the next job starts one turn after a slot frees. Only when
 * the limit has held for CONSUME_HOLD_MS are the partitions paused, so
 * that polling (and so rebalancing) goes on without taking jobs.
 */
static bool may_poll(struct cg_consume *c)
{
    if (c->stopped)
        return true; /* paused for good; consume_serve drops what comes */
    size_t open = cg_offsets_open(c->offsets);
    if (open < c->high) {
        c->holding = false;
        if (c->paused) {
            set_paused(c, false);
            cg_debug("consume.resumed", "open=%zu", open);
        }
        return true;
    }
    if (c->paused)
        return true;
    int64_t now = cg_loop_now_ms();
    if (!c->holding) {
        c->holding = true;
        c->full_since_ms = now;
    }
    if (now - c->full_since_ms < CONSUME_HOLD_MS)
        return false;
    c->holding = false;
    set_paused(c, true);
    cg_debug("consume.paused", "open=%zu held_ms=%lld", open,
             (long long)(now - c->full_since_ms));
    return true;
}

/* After a job finished, or when shutdown begins. */
static void backpressure(struct cg_consume *c)
{
    if (c->stopped) {
        if (!c->paused)
            set_paused(c, true);
        return;
    }
    /* A slot is free: take the next job on the next turn, not from here,
     * inside the pipeline's own callbacks. */
    if ((c->holding || c->paused) && cg_offsets_open(c->offsets) < c->high)
        cg_loop_timer_add(c->loop, &c->tick, 0, on_tick, c);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct cg_consume *c = opaque;
    bool cooperative =
        strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    c->stats.rebalances++;
    c->joined = true;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        cg_info("consume.assigned", "partitions=%d protocol=%s", parts->cnt,
                cooperative ? "cooperative" : "eager");
        rd_kafka_error_t *e = NULL;
        if (cooperative)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        if (e) {
            cg_error("consume.assign_failed", "error=\"%s\"",
                     rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        /* New partitions follow the current backpressure state. */
        if (c->paused && parts->cnt > 0)
            rd_kafka_pause_partitions(rk, parts);
        return;
    }
    /* Revoked (or lost): store and commit what is finished, forget the
     * rest; jobs still in flight for these partitions will be redelivered
     * to the new owner, which recognises completed ones in the cache. */
    bool lost = rd_kafka_assignment_lost(rk);
    rd_kafka_topic_partition_list_t *commit =
        rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        int64_t w = cg_offsets_watermark(c->offsets, p);
        if (w >= 0 && !lost)
            rd_kafka_topic_partition_list_add(commit, c->topic, p)->offset = w;
        cg_offsets_forget(c->offsets, p);
    }
    /* When closing, cg_consume_close has committed already. Otherwise the
     * commit is bounded: a coordinator gone for good must not stop the
     * loop (the partitions go anyway; the new owner redoes the rest). */
    if (commit->cnt > 0 && !c->closed) {
        rd_kafka_offsets_store(rk, commit);
        cg_kafka_commit(rk, commit, CONSUME_REVOKE_COMMIT_MS);
        commits_answered(c, RD_KAFKA_RESP_ERR_NO_ERROR, commit);
        char list[512];
        if (cg_kafka_uncommitted(commit, list, sizeof(list)) > 0)
            cg_warn("consume.commit_failed", "offsets=\"%s\"", list);
    }
    rd_kafka_topic_partition_list_destroy(commit);
    if (!c->closed)
        for (int i = 0; i < parts->cnt; i++)
            committed_set(c, parts->elems[i].partition, -1);
    cg_info("consume.revoked", "partitions=%d lost=%s", parts->cnt,
            lost ? "true" : "false");
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e)
            rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

static void consume_serve(struct cg_consume *c)
{
    for (int n = 0; n < CONSUME_BATCH; n++) {
        if (!may_poll(c))
            return;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (!m)
            return;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                c->stats.errors++;
                cg_warn("consume.error", "error=%s reason=\"%s\"",
                        rd_kafka_err2name(m->err), rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (c->stopped) {
            /* Fetched before the pause took effect: not ours to start;
             * it stays uncommitted and will be consumed again. */
            rd_kafka_message_destroy(m);
            continue;
        }
        c->stats.messages++;
        cg_offsets_begin(c->offsets, m->partition, m->offset);
        c->fn(m, c->arg);
    }
    /* More may be waiting: the event fd fires only on empty->non-empty. */
    cg_loop_timer_add(c->loop, &c->tick, 0, on_tick, c);
}

static void on_wake(void *arg)
{
    consume_serve(arg);
}

static void on_tick(struct cg_loop *loop, void *arg)
{
    struct cg_consume *c = arg;
    consume_serve(c);
    if (!cg_loop_timer_active(&c->tick))
        cg_loop_timer_add(loop, &c->tick, 100, on_tick, c);
}

struct cg_consume *cg_consume_new(struct cg_loop *loop,
                                  const struct cg_conf *conf, cg_consume_fn fn,
                                  void *arg, char *errbuf, size_t errsz)
{
    static const char *const defaults[] = {
        "group.id",
        "contactguard-workers",
        "partition.assignment.strategy",
        "cooperative-sticky",
        "enable.auto.offset.store",
        "false",
        "enable.auto.commit",
        "true",
        "auto.commit.interval.ms",
        "1000",
        "auto.offset.reset",
        "earliest",
        "client.id",
        "contactguard-worker",
        /* The prefetch queue is where jobs wait while the pipeline is at
         * worker.max_jobs; librdkafka's 64 MiB default would let it hold
         * more memory than the whole worker needs. 4 MiB is some 15,000
         * jobs, seconds of work. */
        "queued.max.messages.kbytes",
        "4096",
        /* How long a fetch waits for data on an idle partition. A broker
         * answers as soon as a job arrives, but the devbroker (librdkafka's
         * mock cluster) always waits the whole time, and a resumed
         * partition cannot be fetched before the outstanding poll returns:
         * librdkafka's 500 ms put half a second on every event. At 50 ms an
         * idle worker sends 20 empty fetches a second per broker. */
        "fetch.wait.max.ms",
        "50",
        /* A worker that dies (SIGKILL, OOM, node lost) holds its
         * partitions until the group coordinator stops hearing from it:
         * librdkafka's 45 s default left them idle that long. 6 s is the
         * smallest session a default broker allows
         * (group.min.session.timeout.ms); heartbeats come from librdkafka's
         * own thread, never from the job loop, so a busy worker still
         * beats every second, and survivors learn of a rebalance within
         * one beat. For restarts that should not move partitions at all
         * (Kubernetes rolling updates), set kafka.group.instance.id per
         * pod: static membership (see deploy/k8s/worker.yaml). */
        "session.timeout.ms",
        "6000",
        "heartbeat.interval.ms",
        "1000",
        NULL,
    };
    struct cg_consume *c = cg_calloc(1, sizeof(*c));
    c->loop = loop;
    c->fn = fn;
    c->arg = arg;
    c->offsets = cg_offsets_new();
    c->high = (size_t)cg_conf_int(conf, "worker.max_jobs");
    cg_strlcpy(c->topic, cg_conf_str(conf, "topics.jobs"), sizeof(c->topic));
    char kerr[512];
    rd_kafka_conf_t *kc = cg_kafka_conf(conf, defaults, errbuf, errsz);
    if (!kc)
        goto fail;
    rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(kc, offset_commit_cb);
    rd_kafka_conf_set_opaque(kc, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof(kerr));
    if (!c->rk) {
        rd_kafka_conf_destroy(kc);
        cg_err_set(errbuf, errsz, CG_EKAFKA, "consumer: %s", kerr);
        goto fail;
    }
    rd_kafka_poll_set_consumer(c->rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, c->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err) {
        cg_err_set(errbuf, errsz, CG_EKAFKA, "subscribe %s: %s", c->topic,
                   rd_kafka_err2str(err));
        goto fail;
    }
    /* No tick of the wake's own: consume_serve keeps its own timer. */
    if (cg_kafka_wake_start(&c->wake, loop, rd_kafka_queue_get_consumer(c->rk),
                            0, on_wake, c, errbuf, errsz))
        goto fail;
    cg_loop_timer_add(loop, &c->tick, 0, on_tick, c);
    return c;
fail:
    cg_consume_free(c);
    return NULL;
}

void cg_consume_finished(struct cg_consume *c, int32_t partition,
                         int64_t offset)
{
    int64_t w = cg_offsets_finish(c->offsets, partition, offset);
    if (w >= 0)
        store_offset(c, partition, w);
    backpressure(c);
}

void cg_consume_stop(struct cg_consume *c)
{
    c->stopped = true;
    backpressure(c);
}

void cg_consume_stats(struct cg_consume *c, struct cg_consume_stats *out)
{
    *out = c->stats;
    out->paused = c->paused;
    out->in_group = c->joined;
    out->partitions = 0;
    out->lag = -1;
    rd_kafka_topic_partition_list_t *a = NULL;
    if (!c->rk || rd_kafka_assignment(c->rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    out->partitions = (size_t)a->cnt;
    if (a->cnt > 0 && rd_kafka_position(c->rk, a) == 0) {
        int64_t lag = 0;
        for (int i = 0; i < a->cnt; i++) {
            int64_t lo, hi;
            if (rd_kafka_get_watermark_offsets(
                    c->rk, c->topic, a->elems[i].partition, &lo, &hi) != 0 ||
                hi < 0)
                continue;
            int64_t pos = a->elems[i].offset >= 0 ? a->elems[i].offset : lo;
            if (hi > pos)
                lag += hi - pos;
        }
        out->lag = lag;
    }
    rd_kafka_topic_partition_list_destroy(a);
}

/* The watermarks of the assignment that the group has not confirmed. */
static rd_kafka_topic_partition_list_t *uncommitted(struct cg_consume *c)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    rd_kafka_topic_partition_list_t *todo =
        rd_kafka_topic_partition_list_new(8);
    if (rd_kafka_assignment(c->rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return todo;
    for (int i = 0; i < a->cnt; i++) {
        int32_t p = a->elems[i].partition;
        int64_t w = cg_offsets_watermark(c->offsets, p);
        if (w >= 0 && w != committed_get(c, p))
            rd_kafka_topic_partition_list_add(todo, c->topic, p)->offset = w;
    }
    rd_kafka_topic_partition_list_destroy(a);
    return todo;
}

void cg_consume_close(struct cg_consume *c, int timeout_ms)
{
    if (!c || !c->rk || c->closed)
        return;
    c->closed = true;
    int64_t start = cg_loop_now_ms();
    cg_loop_timer_cancel(c->loop, &c->tick);
    cg_kafka_wake_stop(&c->wake);
    rd_kafka_topic_partition_list_t *todo = uncommitted(c);
    if (todo->cnt > 0)
        rd_kafka_offsets_store(c->rk, todo);
    bool left = cg_kafka_consumer_close(c->rk, todo, timeout_ms);
    commits_answered(c, RD_KAFKA_RESP_ERR_NO_ERROR, todo);
    /* What the group never confirmed (an auto-commit during the close may
     * have confirmed it after all), in one line. */
    for (int i = 0; i < todo->cnt; i++)
        if (committed_get(c, todo->elems[i].partition) == todo->elems[i].offset)
            todo->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
    char list[512];
    int n = cg_kafka_uncommitted(todo, list, sizeof(list));
    if (n > 0)
        cg_warn("consume.uncommitted",
                "partitions=%d offsets=\"%s\" note=\"the group did not "
                "confirm these offsets in time; the jobs from them on will "
                "be consumed again\"",
                n, list);
    cg_info("consume.closed",
            "committed=%d uncommitted=%d left_group=%s ms=%lld", todo->cnt - n,
            n, left ? "true" : "false", (long long)(cg_loop_now_ms() - start));
    rd_kafka_topic_partition_list_destroy(todo);
}

void cg_consume_free(struct cg_consume *c)
{
    if (!c)
        return;
    cg_loop_timer_cancel(c->loop, &c->tick);
    cg_kafka_wake_stop(&c->wake);
    if (c->rk) {
        cg_consume_close(c, CG_CONSUME_CLOSE_MS);
        /* Closed (or given up on) above, within its bound: destroying
         * must not try again without one. */
        cg_kafka_destroy(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE,
                         CG_KAFKA_DESTROY_MS);
    }
    cg_offsets_free(c->offsets);
    free(c->committed);
    free(c);
}
