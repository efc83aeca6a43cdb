#include "emit.h"

#include "conf.h"
#include "err.h"
#include "kafka.h"
#include "log.h"
#include "loop.h"
#include "mem.h"

#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

/* How long one job may wait for room in librdkafka's queue. */
#define EMIT_QUEUE_WAIT_MS 60000
/* How long start-up waits for the jobs topic's metadata (kafka.h). */
#define EMIT_WARM_MS 2000

/* One job in flight: the message's opaque. */
struct emit_msg {
    struct cg_job job;
    cg_emit_fn fn;
    void *arg;
};

struct cg_emit {
    struct cg_loop *loop;
    bool dry_run;
    FILE *out;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt; /* topics.jobs, known before the first job */
    struct cg_kafka_wake wake;
    char topic[256];
    struct cg_emit_stats stats;
    size_t outstanding;
    bool finished;
};

static void settle(struct cg_emit *e, struct emit_msg *m, int err,
                   const char *why)
{
    if (err) {
        e->stats.failed++;
        cg_error("producer.job_failed",
                 "subscription=%s tenant=%s job_id=%s error=\"%s\"",
                 m->job.subscription_id, m->job.tenant_id, m->job.job_id, why);
    } else {
        e->stats.delivered++;
    }
    if (m->fn)
        m->fn(err, &m->job, why, m->arg);
    free(m);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *km,
                      void *opaque)
{
    struct cg_emit *e = opaque;
    struct emit_msg *m = km->_private;
    (void)rk;
    if (!m)
        return;
    if (e->outstanding == 0) {
        /* Already counted as failed by cg_emit_finish. */
        free(m);
        return;
    }
    e->outstanding--;
    settle(e, m, km->err ? CG_EKAFKA : 0,
           km->err ? rd_kafka_err2str(km->err) : "");
}

static void serve(void *arg)
{
    struct cg_emit *e = arg;
    if (e->rk)
        rd_kafka_poll(e->rk, 0);
}

struct cg_emit *cg_emit_new(struct cg_loop *loop, const struct cg_conf *conf,
                            bool dry_run, FILE *out, char *errbuf, size_t errsz)
{
    static const char *const defaults[] = {
        "enable.idempotence",
        "true",
        "linger.ms",
        "10",
        "compression.type",
        "lz4",
        "message.timeout.ms",
        "60000",
        "client.id",
        "contactguard-producer",
        NULL,
    };
    struct cg_emit *e = cg_calloc(1, sizeof(*e));
    e->loop = loop;
    e->dry_run = dry_run;
    e->out = out;
    cg_strlcpy(e->topic, cg_conf_str(conf, "topics.jobs"), sizeof(e->topic));
    if (dry_run)
        return e;
    char kerr[512];
    rd_kafka_conf_t *kc = cg_kafka_conf(conf, defaults, errbuf, errsz);
    if (!kc)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(kc, dr_msg_cb);
    rd_kafka_conf_set_opaque(kc, e);
    e->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof(kerr));
    if (!e->rk) {
        rd_kafka_conf_destroy(kc);
        cg_err_set(errbuf, errsz, CG_EKAFKA, "producer: %s", kerr);
        goto fail;
    }
    e->rkt = rd_kafka_topic_new(e->rk, e->topic, NULL);
    cg_kafka_topic_warm(e->rk, e->rkt, EMIT_WARM_MS);
    if (cg_kafka_wake_start(&e->wake, loop, rd_kafka_queue_get_main(e->rk), 100,
                            serve, e, errbuf, errsz))
        goto fail;
    return e;
fail:
    cg_emit_free(e, 0);
    return NULL;
}

void cg_emit_job(struct cg_emit *e, const struct cg_job *job, cg_emit_fn fn,
                 void *arg)
{
    if (e->finished) {
        struct emit_msg late = { .job = *job, .fn = NULL };
        e->stats.sent++;
        e->stats.failed++;
        cg_error("producer.job_failed", "subscription=%s error=\"%s\"",
                 late.job.subscription_id, "sent after the producer finished");
        if (fn)
            fn(CG_EKAFKA, job, "sent after the producer finished", arg);
        return;
    }
    struct emit_msg *m = cg_malloc(sizeof(*m));
    m->job = *job;
    /* Every source ends here: its ids leave lower case whatever the
     * tenant list, file or event said. */
    cg_job_normalise(&m->job);
    job = &m->job;
    m->fn = fn;
    m->arg = arg;
    e->stats.sent++;
    if ((unsigned)job->reason <= CG_JOB_MANUAL)
        e->stats.by_reason[job->reason]++;
    char *value = cg_job_encode(job);
    if (e->dry_run) {
        fprintf(e->out, "%s\n", value);
        fflush(e->out);
        free(value);
        settle(e, m, 0, "");
        return;
    }
    const char *reason = cg_job_reason_name(job->reason);
    int64_t start = cg_loop_now_ms();
    rd_kafka_resp_err_t err;
    for (;;) {
        err = rd_kafka_producev(
            e->rk, RD_KAFKA_V_RKT(e->rkt),
            RD_KAFKA_V_KEY(job->subscription_id, strlen(job->subscription_id)),
            RD_KAFKA_V_VALUE(value, strlen(value)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_HEADER("reason", reason, -1),
            RD_KAFKA_V_HEADER("tenant", job->tenant_id, -1),
            RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
        /* A full queue drains as deliveries complete: serve reports and
         * try again rather than fail the job. */
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL ||
            cg_loop_now_ms() - start > EMIT_QUEUE_WAIT_MS)
            break;
        rd_kafka_poll(e->rk, 50);
    }
    if (err) {
        free(value);
        settle(e, m, CG_EKAFKA, rd_kafka_err2str(err));
        return;
    }
    e->outstanding++;
}

size_t cg_emit_outstanding(const struct cg_emit *e)
{
    return e->outstanding;
}

size_t cg_emit_flush(struct cg_emit *e, int timeout_ms)
{
    int64_t end = cg_loop_now_ms() + timeout_ms;
    while (e->rk && e->outstanding > 0) {
        int64_t left = end - cg_loop_now_ms();
        if (left <= 0)
            break;
        rd_kafka_flush(e->rk, (int)(left < 100 ? left : 100));
        rd_kafka_poll(e->rk, 0);
    }
    return e->outstanding;
}

void cg_emit_finish(struct cg_emit *e, int timeout_ms)
{
    if (!e->rk || e->finished)
        return;
    e->finished = true;
    if (timeout_ms > 0)
        cg_emit_flush(e, timeout_ms);
    if (e->outstanding == 0)
        return;
    rd_kafka_purge(e->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    int64_t end = cg_loop_now_ms() + 5000;
    while (e->outstanding > 0 && cg_loop_now_ms() < end)
        rd_kafka_poll(e->rk, 50);
    if (e->outstanding > 0) {
        cg_error("producer.jobs_unaccounted", "count=%zu", e->outstanding);
        e->stats.failed += e->outstanding;
        e->outstanding = 0;
    }
}

void cg_emit_stats(const struct cg_emit *e, struct cg_emit_stats *out)
{
    *out = e->stats;
}

void cg_emit_free(struct cg_emit *e, int timeout_ms)
{
    if (!e)
        return;
    cg_emit_finish(e, timeout_ms);
    cg_kafka_wake_stop(&e->wake);
    if (e->rkt)
        rd_kafka_topic_destroy(e->rkt);
    if (e->rk)
        cg_kafka_destroy(e->rk, 0, CG_KAFKA_DESTROY_MS);
    free(e);
}
