/*
 * publish — stage 6 of the pipeline: findings to the results topic.
 *
 * One idempotent librdkafka producer per worker, served from the loop (its
 * queue's event fd wakes the loop for delivery reports). A batch is a job's
 * findings: key = subscription id, headers for rule, status, tenant and
 * format, the serialised finding as value (OCSF by default,
 * `output.format=compact` for the compact line). Every message carries a
 * `kind` header: `finding`, or `remediation` for the remediation event a
 * batch may end with (common/remediation.h; always OCSF). The batch's callback
 * runs once every message has a delivery report; a message that failed keeps
 * its `delivered` flag false so the pipeline can send just that one again — a
 * job is finished only when all of its findings are delivered.
 * The same producer writes the dead-letter topic.
 */
#ifndef CG_PUBLISH_H
#define CG_PUBLISH_H

#include "finding.h"
#include "remediation.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_loop;
struct cg_conf;
struct cg_publish;

#define CG_PUBLISH_BATCH_MAX 8

struct cg_publish_batch;
typedef void (*cg_publish_fn)(struct cg_publish_batch *b, void *arg);

/* A message's opaque: which slot of which batch (private). */
struct cg_publish_slot {
    struct cg_publish_batch *b;
    size_t i;
};

/* Owned by the caller (usually embedded in its job) until the callback. */
struct cg_publish_batch {
    size_t n;
    /* Every payload back to back, payload i at off[i] for len[i] bytes:
     * one buffer per batch, sized once, rather than one per message. */
    struct cg_buf text;
    size_t off[CG_PUBLISH_BATCH_MAX], len[CG_PUBLISH_BATCH_MAX];
    enum cg_rule rule[CG_PUBLISH_BATCH_MAX];
    enum cg_status status[CG_PUBLISH_BATCH_MAX];
    bool delivered[CG_PUBLISH_BATCH_MAX];
    bool event[CG_PUBLISH_BATCH_MAX]; /* a remediation event, not a finding */
    char outcome[24];                 /* of the remediation event */
    char key[40];
    char tenant[40];
    bool dead_letter; /* a one-message batch for the dead-letter topic */
    bool truncated;   /* that message was sent cut (see below) */
    bool refused;     /* a delivery error no retry can cure */
    /* after the callback: 0 when all delivered; CG_EBADREQ (final) when a
     * dead letter was refused for good, CG_EKAFKA (retryable) otherwise */
    int err;
    char why[256]; /* the last delivery error */
    /* private */
    struct cg_publish_slot slot[CG_PUBLISH_BATCH_MAX];
    size_t pending;
    cg_publish_fn fn;
    void *arg;
};

/* loop and conf are borrowed. Reads topics.results, topics.dead_letter,
 * output.format, output.ocsf_version and kafka.*. */
struct cg_publish *cg_publish_new(struct cg_loop *loop,
                                  const struct cg_conf *conf, char *errbuf,
                                  size_t errsz);

/* Flushes for at most timeout_ms, then destroys the producer (within
 * CG_KAFKA_DESTROY_MS, kafka.h). NULL-ok. */
void cg_publish_free(struct cg_publish *p, int timeout_ms);

/* Serialises findings into b (in the configured format) and resets its
 * delivery state. */
void cg_publish_batch_fill(struct cg_publish *p, struct cg_publish_batch *b,
                           const struct cg_finding *f, size_t n);
void cg_publish_batch_clear(struct cg_publish_batch *b);

/* Appends the remediation event r to a filled batch (headers kind,
 * outcome, tenant, format); ignored when the batch is full. */
void cg_publish_batch_add_remediation(struct cg_publish *p,
                                      struct cg_publish_batch *b,
                                      const struct cg_remediation *r);

/*
 * Produces every message of b not yet delivered. fn runs once from the loop
 * after the last delivery report (b->err says how it went; a message that
 * could not even be enqueued counts as undelivered). Returns 0, or
 * CG_EKAFKA when nothing could be enqueued (the local queue is full or the
 * producer is fenced) — then fn is not called. b must stay put (not move
 * or be freed) until fn has run.
 */
int cg_publish_send(struct cg_publish *p, struct cg_publish_batch *b,
                    cg_publish_fn fn, void *arg);

/* What a dead letter too large for the producer or the broker keeps. */
#define CG_PUBLISH_DLQ_KEEP 65536

/*
 * Sends a message that could not be decoded to the dead-letter topic with
 * its key, value and headers, plus cg-dlq-reason, -topic, -partition and
 * -offset headers. fn as above (with a one-message batch b). A copy larger
 * than the producer's message.max.bytes (less room for headers), or one the
 * broker refuses as too large, is sent cut to its first
 * CG_PUBLISH_DLQ_KEEP bytes with cg-dlq-truncated, cg-dlq-original-size and
 * cg-dlq-sha256 (of the whole value) headers. A produce error no retry can
 * cure (too large even cut, topic not authorised, ...) gives CG_EBADREQ,
 * returned or in b->err: the caller counts the loss and moves on.
 */
int cg_publish_dead_letter(struct cg_publish *p, const rd_kafka_message_t *m,
                           const char *reason, struct cg_publish_batch *b,
                           cg_publish_fn fn, void *arg);

struct cg_publish_stats {
    uint64_t produced, delivered, failed, enqueue_failed;
    uint64_t dead_letters_truncated;
    size_t outstanding;
    bool fatal; /* the idempotent producer hit a fatal error */
};
void cg_publish_stats(const struct cg_publish *p, struct cg_publish_stats *out);

#endif
