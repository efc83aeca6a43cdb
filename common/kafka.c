#include "kafka.h"

#include "conf.h"
#include "err.h"
#include "log.h"
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                         const char *buf)
{
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
    enum cg_log_level l = level <= 3   ? CG_LOG_ERROR
                          : level == 4 ? CG_LOG_WARN
                          : level <= 6 ? CG_LOG_INFO
                                       : CG_LOG_DEBUG;
    CG_LOG(l, "kafka.log", "client=%s facility=%s msg=\"%s\"",
           rd_kafka_name(rk), fac, buf);
}

static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason,
                           void *opaque)
{
    (void)opaque;
    cg_warn("kafka.error", "client=%s code=%s reason=\"%s\"", rd_kafka_name(rk),
            rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static int conf_set(rd_kafka_conf_t *kc, const char *k, const char *v,
                    char *errbuf, size_t errsz)
{
    char kerr[256];
    if (rd_kafka_conf_set(kc, k, v, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK)
        return cg_err_set(errbuf, errsz, CG_ECONF, "kafka.%s: %s", k,
                          cg_conf_kafka_key_secret(k) ? "refused" : kerr);
    return 0;
}

rd_kafka_conf_t *cg_kafka_conf(const struct cg_conf *conf,
                               const char *const *defaults, char *errbuf,
                               size_t errsz)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(kc, kafka_log_cb);
    rd_kafka_conf_set_error_cb(kc, kafka_error_cb);
    for (const char *const *d = defaults; d && d[0] && d[1]; d += 2) {
        if (conf_set(kc, d[0], d[1], errbuf, errsz))
            goto fail;
    }
    for (size_t i = 0; i < cg_conf_kafka_count(conf); i++) {
        const char *k, *v;
        cg_conf_kafka_get(conf, i, &k, &v);
        if (conf_set(kc, k, v, errbuf, errsz))
            goto fail;
    }
    return kc;
fail:
    rd_kafka_conf_destroy(kc);
    return NULL;
}

void cg_kafka_topic_warm(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    if (err)
        cg_debug("kafka.topic_warm", "client=%s topic=%s error=%s",
                 rd_kafka_name(rk), rd_kafka_topic_name(rkt),
                 rd_kafka_err2name(err));
    if (md)
        rd_kafka_metadata_destroy(md);
}

struct close_commit {
    bool answered;
    rd_kafka_topic_partition_list_t *offsets;
};

static void close_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *answer,
                            void *opaque)
{
    struct close_commit *cc = opaque;
    (void)rk;
    cc->answered = true;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        err = RD_KAFKA_RESP_ERR_NO_ERROR; /* all committed already */
    for (int i = 0; i < cc->offsets->cnt; i++) {
        rd_kafka_topic_partition_t *t = &cc->offsets->elems[i];
        const rd_kafka_topic_partition_t *a =
            answer ? rd_kafka_topic_partition_list_find(answer, t->topic,
                                                        t->partition)
                   : NULL;
        t->err = err ? err : a ? a->err : RD_KAFKA_RESP_ERR__TIMED_OUT;
    }
}

/* Commits offsets with the answer served on q, until it comes or end. */
static void commit_until(rd_kafka_t *rk,
                         rd_kafka_topic_partition_list_t *offsets,
                         rd_kafka_queue_t *q, int64_t end)
{
    struct close_commit cc = { false, offsets };
    if (!offsets || offsets->cnt == 0)
        return;
    for (int i = 0; i < offsets->cnt; i++)
        offsets->elems[i].err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    rd_kafka_resp_err_t err =
        rd_kafka_commit_queue(rk, offsets, q, close_commit_cb, &cc);
    if (err) {
        cg_warn("kafka.commit_failed", "client=%s error=%s", rd_kafka_name(rk),
                rd_kafka_err2name(err));
        return;
    }
    for (int64_t left; !cc.answered && (left = end - cg_loop_now_ms()) > 0;)
        rd_kafka_queue_poll_callback(q, (int)(left < 100 ? left : 100));
    /* An answer that comes later must not reach cc (on our stack): the
     * caller destroys q, which drops whatever lands there after. */
}

bool cg_kafka_commit(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *offsets,
                     int timeout_ms)
{
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    commit_until(rk, offsets, q, cg_loop_now_ms() + timeout_ms);
    rd_kafka_queue_destroy(q);
    for (int i = 0; offsets && i < offsets->cnt; i++)
        if (offsets->elems[i].err)
            return false;
    return true;
}

bool cg_kafka_consumer_close(rd_kafka_t *rk,
                             rd_kafka_topic_partition_list_t *offsets,
                             int timeout_ms)
{
    int64_t end = cg_loop_now_ms() + timeout_ms;
    /* One queue for both steps: the commit's answer and, once closing,
     * the group's callbacks (librdkafka forwards them there). */
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    commit_until(rk, offsets, q, end);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(rk, q);
    if (e) {
        cg_warn("kafka.close_failed", "client=%s error=\"%s\"",
                rd_kafka_name(rk), rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else {
        for (int64_t left; !rd_kafka_consumer_closed(rk) &&
                           (left = end - cg_loop_now_ms()) > 0;)
            rd_kafka_queue_poll_callback(q, (int)(left < 100 ? left : 100));
    }
    bool closed = rd_kafka_consumer_closed(rk) != 0;
    rd_kafka_queue_destroy(q);
    return closed;
}

/* Shared by cg_kafka_destroy and its thread; the last one out frees it. */
struct destroyer {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    rd_kafka_t *rk;
    int flags;
    bool done;
    int refs;
};

static void destroyer_put(struct destroyer *d)
{
    pthread_mutex_lock(&d->mu);
    bool last = --d->refs == 0;
    pthread_mutex_unlock(&d->mu);
    if (!last)
        return;
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static void *destroyer_run(void *arg)
{
    struct destroyer *d = arg;
    rd_kafka_destroy_flags(d->rk, d->flags);
    pthread_mutex_lock(&d->mu);
    d->done = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->mu);
    destroyer_put(d);
    return NULL;
}

bool cg_kafka_destroy(rd_kafka_t *rk, int flags, int timeout_ms)
{
    char name[128]; /* rk may be gone by the time it is logged */
    cg_strlcpy(name, rd_kafka_name(rk), sizeof(name));
    struct destroyer *d = cg_calloc(1, sizeof(*d));
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);
    d->rk = rk;
    d->flags = flags;
    d->refs = 2;
    pthread_t t;
    pthread_attr_t ta;
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &ta, destroyer_run, d) != 0) {
        pthread_attr_destroy(&ta);
        d->refs = 1;
        destroyer_put(d);
        rd_kafka_destroy_flags(rk, flags); /* no thread: unbounded */
        return true;
    }
    pthread_attr_destroy(&ta);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->mu);
    while (!d->done &&
           pthread_cond_timedwait(&d->cond, &d->mu, &until) != ETIMEDOUT)
        ;
    bool done = d->done;
    pthread_mutex_unlock(&d->mu);
    if (!done)
        cg_warn("kafka.destroy_abandoned",
                "client=%s waited_ms=%d note=\"librdkafka still waits for a "
                "broker that is gone; the process does not\"",
                name, timeout_ms);
    destroyer_put(d);
    return done;
}

int cg_kafka_uncommitted(const rd_kafka_topic_partition_list_t *offsets,
                         char *buf, size_t bufsz)
{
    size_t len = 0;
    int n = 0;
    buf[0] = '\0';
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *t = &offsets->elems[i];
        if (!t->err)
            continue;
        n++;
        if (len >= bufsz)
            continue;
        int w = snprintf(buf + len, bufsz - len, "%s%d:%lld", len ? "," : "",
                         (int)t->partition, (long long)t->offset);
        len = w < 0 ? bufsz : len + (size_t)w;
    }
    if (len >= bufsz && bufsz > 4)
        memcpy(buf + bufsz - 4, "...", 4);
    return n;
}

static void wake_on_readable(struct cg_loop *loop, int fd, unsigned events,
                             void *arg)
{
    struct cg_kafka_wake *w = arg;
    char buf[64];
    (void)loop;
    (void)events;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    w->serve(w->arg);
}

static void wake_on_tick(struct cg_loop *loop, void *arg)
{
    struct cg_kafka_wake *w = arg;
    w->serve(w->arg);
    cg_loop_timer_add(loop, &w->tick, w->tick_ms, wake_on_tick, w);
}

int cg_kafka_wake_start(struct cg_kafka_wake *w, struct cg_loop *loop,
                        rd_kafka_queue_t *queue, int tick_ms,
                        void (*serve)(void *arg), void *arg, char *errbuf,
                        size_t errsz)
{
    memset(w, 0, sizeof(*w));
    w->loop = loop;
    w->queue = queue;
    w->tick_ms = tick_ms;
    w->serve = serve;
    w->arg = arg;
    w->pipe[0] = w->pipe[1] = -1;
    if (pipe2(w->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "pipe: %m");
        cg_kafka_wake_stop(w);
        return CG_EIO;
    }
    rd_kafka_queue_io_event_enable(queue, w->pipe[1], "1", 1);
    if (cg_loop_io_add(loop, &w->io, w->pipe[0], CG_LOOP_READ, wake_on_readable,
                       w, errbuf, errsz)) {
        cg_kafka_wake_stop(w);
        return CG_EIO;
    }
    if (tick_ms > 0)
        cg_loop_timer_add(loop, &w->tick, tick_ms, wake_on_tick, w);
    return 0;
}

void cg_kafka_wake_stop(struct cg_kafka_wake *w)
{
    if (!w->loop)
        return; /* zeroed: never started */
    cg_loop_timer_cancel(w->loop, &w->tick);
    if (w->io.active)
        cg_loop_io_del(w->loop, &w->io);
    if (w->queue) {
        rd_kafka_queue_io_event_enable(w->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(w->queue);
        w->queue = NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (w->pipe[i] >= 0)
            close(w->pipe[i]);
        w->pipe[i] = -1;
    }
}
