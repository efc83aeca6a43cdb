#include "publish.h"

#include "conf.h"
#include "err.h"
#include "kafka.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "ocsf.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* How long start-up waits for the results topic's metadata (kafka.h). */
#define PUBLISH_WARM_MS 2000

struct cg_publish {
    struct cg_loop *loop;
    rd_kafka_t *rk;
    struct cg_kafka_wake wake;
    rd_kafka_topic_t *results;
    rd_kafka_topic_t *dlq;
    bool ocsf;
    struct cg_ocsf writer; /* OCSF version and metadata.uid sequence */
    size_t dlq_whole_max;  /* larger dead letters are sent cut */
    size_t dlq_keep;       /* what a cut dead letter keeps */
    struct cg_publish_stats stats;
    /* Where a batch's findings are written, reused from batch to batch,
     * before one exact-size copy goes to the batch. */
    struct cg_buf scratch;
};

/* Room left in a dead letter for its key and headers. */
#define DLQ_HEADROOM 16384

/*
 * Produce errors no retry can cure: the message (or the topic) is refused
 * as it stands. A dead letter that meets one ends its job as a counted
 * loss; retrying it would wedge the partition behind it for ever.
 */
static bool dlq_err_final(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return true;
    default:
        return false;
    }
}

static rd_kafka_resp_err_t dlq_produce(struct cg_publish *p,
                                       struct cg_publish_batch *b,
                                       const void *value, size_t len,
                                       const void *key, size_t key_len,
                                       rd_kafka_headers_t *h, bool cut);

static void publish_batch_settle(struct cg_publish_batch *b)
{
    if (--b->pending > 0)
        return;
    b->err = 0;
    for (size_t i = 0; i < b->n; i++)
        if (!b->delivered[i])
            b->err = b->refused ? CG_EBADREQ : CG_EKAFKA;
    b->fn(b, b->arg);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct cg_publish *p = opaque;
    struct cg_publish_slot *ref = m->_private;
    (void)rk;
    if (!ref)
        return;
    struct cg_publish_batch *b = ref->b;
    /* The broker's limit can be below ours: send the dead letter again,
     * cut, before counting anything. */
    if (m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && b->dead_letter &&
        !b->truncated) {
        rd_kafka_headers_t *orig = NULL;
        rd_kafka_headers_t *h =
            rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                    orig
                ? rd_kafka_headers_copy(orig)
                : rd_kafka_headers_new(4);
        p->stats.outstanding--;
        if (dlq_produce(p, b, m->payload, m->len, m->key, m->key_len, h,
                        true) == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        p->stats.outstanding++;
    }
    if (m->err) {
        if (b->dead_letter && dlq_err_final(m->err))
            b->refused = true;
        p->stats.failed++;
        snprintf(b->why, sizeof(b->why), "%s", rd_kafka_err2str(m->err));
        cg_warn("publish.failed", "key=%s error=%s", b->key,
                rd_kafka_err2name(m->err));
    } else {
        p->stats.delivered++;
        b->delivered[ref->i] = true;
    }
    p->stats.outstanding--;
    publish_batch_settle(b);
}

/* Delivery reports: served from the loop, never from librdkafka's threads. */
static void publish_serve(void *arg)
{
    struct cg_publish *p = arg;
    rd_kafka_poll(p->rk, 0);
}

struct cg_publish *cg_publish_new(struct cg_loop *loop,
                                  const struct cg_conf *conf, char *errbuf,
                                  size_t errsz)
{
    static const char *const defaults[] = {
        "enable.idempotence",
        "true",
        "linger.ms",
        "5",
        "compression.type",
        "lz4",
        "message.timeout.ms",
        "60000",
        "client.id",
        "contactguard-worker",
        NULL,
    };
    struct cg_publish *p = cg_calloc(1, sizeof(*p));
    cg_buf_init(&p->scratch, CG_FINDING_TEXT_MAX);
    p->loop = loop;
    p->ocsf = strcasecmp(cg_conf_str(conf, "output.format"), "ocsf") == 0;
    /* The option is an enum of the supported versions, so find succeeds. */
    cg_ocsf_init(&p->writer, cg_ocsf_version_find(
                                 cg_conf_str(conf, "output.ocsf_version")));
    char kerr[512];
    rd_kafka_conf_t *kc = cg_kafka_conf(conf, defaults, errbuf, errsz);
    if (!kc)
        goto fail;
    char mmb[32];
    size_t mmbsz = sizeof(mmb);
    long long max = 1000000;
    if (rd_kafka_conf_get(kc, "message.max.bytes", mmb, &mmbsz) ==
        RD_KAFKA_CONF_OK)
        max = strtoll(mmb, NULL, 10);
    p->dlq_whole_max =
        max > 2 * DLQ_HEADROOM ? (size_t)max - DLQ_HEADROOM : (size_t)max / 2;
    p->dlq_keep = p->dlq_whole_max < CG_PUBLISH_DLQ_KEEP ? p->dlq_whole_max
                                                         : CG_PUBLISH_DLQ_KEEP;
    rd_kafka_conf_set_dr_msg_cb(kc, dr_msg_cb);
    rd_kafka_conf_set_opaque(kc, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof(kerr));
    if (!p->rk) {
        rd_kafka_conf_destroy(kc);
        cg_err_set(errbuf, errsz, CG_EKAFKA, "producer: %s", kerr);
        goto fail;
    }
    p->results =
        rd_kafka_topic_new(p->rk, cg_conf_str(conf, "topics.results"), NULL);
    p->dlq = rd_kafka_topic_new(p->rk, cg_conf_str(conf, "topics.dead_letter"),
                                NULL);
    /* The first finding would otherwise wait for librdkafka's metadata
     * scan (up to a second); the dead-letter topic can. */
    cg_kafka_topic_warm(p->rk, p->results, PUBLISH_WARM_MS);
    if (cg_kafka_wake_start(&p->wake, loop, rd_kafka_queue_get_main(p->rk), 100,
                            publish_serve, p, errbuf, errsz))
        goto fail;
    return p;
fail:
    cg_publish_free(p, 0);
    return NULL;
}

void cg_publish_free(struct cg_publish *p, int timeout_ms)
{
    if (!p)
        return;
    if (p->rk) {
        if (timeout_ms > 0)
            rd_kafka_flush(p->rk, timeout_ms);
        /* What is still queued fails now, so every batch gets its
         * callback before its owner is freed. */
        rd_kafka_purge(p->rk,
                       RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p->rk, 0);
    }
    cg_kafka_wake_stop(&p->wake);
    cg_buf_free(&p->scratch);
    if (p->results)
        rd_kafka_topic_destroy(p->results);
    if (p->dlq)
        rd_kafka_topic_destroy(p->dlq);
    if (p->rk)
        cg_kafka_destroy(p->rk, 0, CG_KAFKA_DESTROY_MS);
    free(p);
}

void cg_publish_batch_clear(struct cg_publish_batch *b)
{
    cg_buf_free(&b->text);
    memset(b, 0, sizeof(*b));
}

static void payload_end(struct cg_publish_batch *b, const struct cg_buf *t,
                        size_t i)
{
    b->len[i] = t->len - b->off[i];
}

void cg_publish_batch_fill(struct cg_publish *p, struct cg_publish_batch *b,
                           const struct cg_finding *f, size_t n)
{
    struct cg_buf *t = &p->scratch;
    cg_publish_batch_clear(b);
    cg_buf_reset(t);
    if (n > CG_PUBLISH_BATCH_MAX)
        n = CG_PUBLISH_BATCH_MAX;
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        /* The text cannot outgrow CG_FINDING_TEXT_MAX: evidence comes from
         * a body azure.max_body bounded, far smaller. */
        b->off[i] = t->len;
        if (p->ocsf)
            cg_finding_write_ocsf(&p->writer, t, &f[i]);
        else
            cg_finding_write_compact(t, &f[i], true);
        payload_end(b, t, i);
        b->rule[i] = f[i].rule;
        b->status[i] = f[i].status;
    }
    /* The batch keeps its text while the job waits for delivery (and any
     * retry): one allocation of its exact size, where growing it in place
     * would hold the doubling's slack for every job in flight. */
    cg_buf_init(&b->text, CG_FINDING_TEXT_MAX);
    if (t->len) {
        b->text.data = cg_malloc(t->len + 1);
        memcpy(b->text.data, t->data, t->len + 1);
        b->text.len = t->len;
        b->text.cap = t->len + 1;
    }
    if (n) {
        cg_strlcpy(b->key, f[0].subscription_id, sizeof(b->key));
        cg_strlcpy(b->tenant, f[0].tenant_id, sizeof(b->tenant));
    }
}

void cg_publish_batch_add_remediation(struct cg_publish *p,
                                      struct cg_publish_batch *b,
                                      const struct cg_remediation *r)
{
    if (b->n >= CG_PUBLISH_BATCH_MAX)
        return;
    size_t i = b->n++;
    char *event = cg_remediation_ocsf(&p->writer, r);
    if (!b->text.data)
        cg_buf_init(&b->text, CG_FINDING_TEXT_MAX);
    b->off[i] = b->text.len;
    cg_buf_puts(&b->text, event);
    payload_end(b, &b->text, i);
    free(event);
    b->event[i] = true;
    b->rule[i] = CG_RULE_COUNT;
    b->status[i] = CG_STATUS_NONE;
    cg_strlcpy(b->outcome, cg_remediation_outcome_name(r->outcome),
               sizeof(b->outcome));
    if (!b->key[0]) {
        cg_strlcpy(b->key, r->subscription_id, sizeof(b->key));
        cg_strlcpy(b->tenant, r->tenant_id, sizeof(b->tenant));
    }
}

static rd_kafka_headers_t *finding_headers(struct cg_publish *p,
                                           const struct cg_publish_batch *b,
                                           size_t i)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    if (b->event[i]) {
        rd_kafka_header_add(h, "kind", -1, "remediation", -1);
        rd_kafka_header_add(h, "outcome", -1, b->outcome, -1);
        rd_kafka_header_add(h, "tenant", -1, b->tenant, -1);
        rd_kafka_header_add(h, "format", -1, "ocsf-2003", -1);
        return h;
    }
    rd_kafka_header_add(h, "kind", -1, "finding", -1);
    const struct cg_rule_info *ri = cg_rule_info(b->rule[i]);
    rd_kafka_header_add(h, "rule", -1, ri ? ri->id : "", -1);
    rd_kafka_header_add(h, "status", -1, cg_status_name(b->status[i]), -1);
    rd_kafka_header_add(h, "tenant", -1, b->tenant, -1);
    rd_kafka_header_add(h, "format", -1,
                        p->ocsf ? "ocsf-2003" : CG_FINDING_SCHEMA, -1);
    return h;
}

static int produce_one(struct cg_publish *p, rd_kafka_topic_t *topic,
                       struct cg_publish_batch *b, size_t i,
                       rd_kafka_headers_t *hdrs)
{
    struct cg_publish_slot *ref = &b->slot[i];
    ref->b = b;
    ref->i = i;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_RKT(topic),
        RD_KAFKA_V_VALUE(b->text.data + b->off[i], b->len[i]),
        RD_KAFKA_V_KEY(b->key, strlen(b->key)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(ref), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(hdrs);
        p->stats.enqueue_failed++;
        snprintf(b->why, sizeof(b->why), "%s", rd_kafka_err2str(err));
        return CG_EKAFKA;
    }
    p->stats.produced++;
    p->stats.outstanding++;
    b->pending++;
    return 0;
}

int cg_publish_send(struct cg_publish *p, struct cg_publish_batch *b,
                    cg_publish_fn fn, void *arg)
{
    b->fn = fn;
    b->arg = arg;
    b->err = 0;
    b->pending = 0;
    /* Delivery reports are only served from the loop (rd_kafka_poll), so
     * none can settle the batch while it is being enqueued. */
    for (size_t i = 0; i < b->n; i++) {
        if (b->delivered[i])
            continue;
        if (produce_one(p, p->results, b, i, finding_headers(p, b, i)))
            break;
    }
    return b->pending ? 0 : CG_EKAFKA;
}

/*
 * Produces one dead-letter copy (h is taken). cut: only the first dlq_keep
 * bytes of value, with the original size and the SHA-256 of the whole in
 * headers, so the copy still names the message it stands for.
 */
static rd_kafka_resp_err_t dlq_produce(struct cg_publish *p,
                                       struct cg_publish_batch *b,
                                       const void *value, size_t len,
                                       const void *key, size_t key_len,
                                       rd_kafka_headers_t *h, bool cut)
{
    size_t keep = len;
    if (cut) {
        unsigned char md[SHA256_DIGEST_LENGTH];
        char hex[2 * SHA256_DIGEST_LENGTH + 1], num[32];
        SHA256(value, len, md);
        for (size_t i = 0; i < sizeof(md); i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        snprintf(num, sizeof(num), "%zu", len);
        rd_kafka_header_add(h, "cg-dlq-truncated", -1, "true", -1);
        rd_kafka_header_add(h, "cg-dlq-original-size", -1, num, -1);
        rd_kafka_header_add(h, "cg-dlq-sha256", -1, hex, -1);
        keep = len < p->dlq_keep ? len : p->dlq_keep;
        b->truncated = true;
        p->stats.dead_letters_truncated++;
        cg_warn("publish.dead_letter_truncated", "size=%zu kept=%zu sha256=%s",
                len, keep, hex);
    }
    struct cg_publish_slot *ref = &b->slot[0];
    ref->b = b;
    ref->i = 0;
    /* The payload may contain NULs: produce its exact length. */
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_RKT(p->dlq), RD_KAFKA_V_VALUE((void *)value, keep),
        RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(ref), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        return err;
    }
    p->stats.produced++;
    p->stats.outstanding++;
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

int cg_publish_dead_letter(struct cg_publish *p, const rd_kafka_message_t *m,
                           const char *reason, struct cg_publish_batch *b,
                           cg_publish_fn fn, void *arg)
{
    cg_publish_batch_clear(b);
    b->n = 1;
    b->dead_letter = true;
    size_t kl =
        m->key_len < sizeof(b->key) - 1 ? m->key_len : sizeof(b->key) - 1;
    if (m->key)
        memcpy(b->key, m->key, kl);
    b->key[kl] = '\0';
    b->fn = fn;
    b->arg = arg;
    rd_kafka_headers_t *orig = NULL, *h;
    if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(4);
    char num[32];
    rd_kafka_header_add(h, "cg-dlq-reason", -1, reason, -1);
    rd_kafka_header_add(h, "cg-dlq-topic", -1, rd_kafka_topic_name(m->rkt), -1);
    snprintf(num, sizeof(num), "%d", (int)m->partition);
    rd_kafka_header_add(h, "cg-dlq-partition", -1, num, -1);
    snprintf(num, sizeof(num), "%lld", (long long)m->offset);
    rd_kafka_header_add(h, "cg-dlq-offset", -1, num, -1);
    const void *value = m->payload ? m->payload : "";
    bool cut = m->len + m->key_len > p->dlq_whole_max;
    rd_kafka_headers_t *again = cut ? NULL : rd_kafka_headers_copy(h);
    rd_kafka_resp_err_t err =
        dlq_produce(p, b, value, m->len, m->key, m->key_len, h, cut);
    /* Over our own limit after all (headers count too): cut it now. */
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && again) {
        err = dlq_produce(p, b, value, m->len, m->key, m->key_len, again, true);
        again = NULL;
    }
    if (again)
        rd_kafka_headers_destroy(again);
    if (err) {
        p->stats.enqueue_failed++;
        snprintf(b->why, sizeof(b->why), "%s", rd_kafka_err2str(err));
        return dlq_err_final(err) ? CG_EBADREQ : CG_EKAFKA;
    }
    b->pending = 1;
    return 0;
}

void cg_publish_stats(const struct cg_publish *p, struct cg_publish_stats *out)
{
    *out = p->stats;
    char reason[128];
    out->fatal = rd_kafka_fatal_error(p->rk, reason, sizeof(reason)) !=
                 RD_KAFKA_RESP_ERR_NO_ERROR;
}
