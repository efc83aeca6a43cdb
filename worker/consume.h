/*
 * consume — stage 1 of the pipeline: scan jobs from the jobs topic.
 *
 * A librdkafka consumer in the workers' group, served from the loop (the
 * consumer queue's event fd wakes it). The discipline that makes the fleet
 * at-least-once without losing a job:
 *   - the cooperative-sticky assignor, so a rebalance moves only the
 *     partitions that must move;
 *   - automatic offset *store* off: an offset is stored only when every job
 *     below it is finished (offsets.h), and the stored offsets are committed
 *     by librdkafka's auto-commit;
 *   - a revoked partition stores and commits its watermark before it goes
 *     (waiting at most 2 s for the group's answer);
 *   - shutdown commits what is left and leaves the group within a bound,
 *     so a broker that is gone cannot hold the process (cg_consume_close);
 *   - backpressure at worker.max_jobs jobs in flight stops polling: the
 *     fetched messages wait in librdkafka's bounded queue and the next job
 *     starts on the turn after one finishes. Pausing the partitions would
 *     throw that queue away and, at the end of the log, leave the consumer
 *     idle until its outstanding long poll returned (fetch.wait.max.ms), on
 *     every pause; so the partitions are paused only when no job has
 *     finished for a while (a stall), so that polling (and so rebalancing)
 *     goes on.
 */
#ifndef CG_CONSUME_H
#define CG_CONSUME_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_loop;
struct cg_conf;
struct cg_consume;

/* A message for the pipeline; ownership passes to the callee, which must
 * eventually call cg_consume_finished(partition, offset) and
 * rd_kafka_message_destroy(m). */
typedef void (*cg_consume_fn)(rd_kafka_message_t *m, void *arg);

/* loop and conf are borrowed. Reads topics.jobs, worker.max_jobs and
 * kafka.* (group.id defaults to contactguard-workers, and the prefetch
 * queue, queued.max.messages.kbytes, to 4 MiB). */
struct cg_consume *cg_consume_new(struct cg_loop *loop,
                                  const struct cg_conf *conf, cg_consume_fn fn,
                                  void *arg, char *errbuf, size_t errsz);

/* The job at (partition, offset) is finished: its offset may be stored
 * once every job below it is finished too. */
void cg_consume_finished(struct cg_consume *c, int32_t partition,
                         int64_t offset);

/* Stops taking new messages (shutdown); polling goes on. */
void cg_consume_stop(struct cg_consume *c);

/*
 * Shutdown, bounded by timeout_ms whatever the broker does: commits the
 * watermarks not committed yet (asynchronously, waiting for the answer)
 * and leaves the group (rd_kafka_consumer_close_queue, served here), for
 * timeout_ms in all. Offsets already committed are not committed again.
 * Logs consume.closed, and consume.uncommitted naming each partition and
 * offset that could not be committed (those jobs will be consumed again).
 * Called once; NULL-ok.
 */
void cg_consume_close(struct cg_consume *c, int timeout_ms);

/* cg_consume_close(c, CG_CONSUME_CLOSE_MS) unless already closed, then
 * frees, waiting at most CG_KAFKA_DESTROY_MS for librdkafka (kafka.h).
 * NULL-ok. */
#define CG_CONSUME_CLOSE_MS 2000
void cg_consume_free(struct cg_consume *c);

struct cg_consume_stats {
    uint64_t messages, errors, rebalances;
    uint64_t pauses;   /* stalls that paused the partitions */
    size_t partitions; /* assigned now */
    bool paused;
    bool in_group; /* has an assignment or joined the group */
    int64_t lag;   /* high watermark - position, summed; -1 unknown */
};
void cg_consume_stats(struct cg_consume *c, struct cg_consume_stats *out);

#endif
