#include "kafka.h"

#include "conf.h"
#include "err.h"
#include "log.h"
#include "mem.h"

#include <fcntl.h>
#include <string.h>
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

void cg_kafka_header(const rd_kafka_message_t *msg, const char *name, char *out,
                     size_t outsz)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *val = NULL;
    size_t size = 0;
    out[0] = '\0';
    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (rd_kafka_header_get_last(hdrs, name, &val, &size) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        !val)
        return;
    size_t n = size < outsz - 1 ? size : outsz - 1;
    memcpy(out, val, n);
    out[n] = '\0';
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
