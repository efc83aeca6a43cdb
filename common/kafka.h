/*
 * kafka — librdkafka configuration from the contactguard configuration.
 *
 * Every process builds its clients here so that the rules are the same
 * everywhere: the process's own defaults first (e.g. the worker's
 * cooperative-sticky assignor), then every `kafka.*` key of the
 * configuration verbatim, so an operator can override anything. librdkafka's
 * own log lines go through the contactguard logger (and its scrubber), and
 * its error callback logs once per distinct error.
 */
#ifndef CG_KAFKA_H
#define CG_KAFKA_H

#include "loop.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

struct cg_conf;

/*
 * A new rd_kafka_conf_t: `defaults` ("key", "value", ..., NULL; may be
 * NULL) then the configuration's kafka.* pairs. Returns NULL with errbuf
 * naming the key librdkafka refused (never its value: it may be secret).
 */
rd_kafka_conf_t *cg_kafka_conf(const struct cg_conf *conf,
                               const char *const *defaults, char *errbuf,
                               size_t errsz);

/*
 * Asks the cluster for the topic's partitions now, waiting up to
 * timeout_ms. librdkafka learns a topic it was not told of at start-up only
 * on its once-a-second metadata scan, so without this the first message
 * produced to it waits up to a second (a one-job producer run, a worker's
 * first finding). Failure is not an error: the scan still runs, and the
 * reason is logged at debug.
 */
void cg_kafka_topic_warm(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int timeout_ms);

/*
 * Commits offsets and waits at most timeout_ms for the group's answer (a
 * synchronous rd_kafka_commit waits for a coordinator that may be gone,
 * for ever). Each element ends with err 0 when the group confirmed it, an
 * error otherwise (RD_KAFKA_RESP_ERR__TIMED_OUT: no answer in time).
 * Returns true when every element was confirmed. May be called from a
 * rebalance callback.
 */
bool cg_kafka_commit(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *offsets,
                     int timeout_ms);

/*
 * Closes a consumer within timeout_ms whatever the broker does (gone, or
 * its group coordinator silent): commits `offsets` (NULL or empty: none)
 * asynchronously and waits for the answer, then leaves the group
 * (rd_kafka_consumer_close_queue), serving the consumer's callbacks
 * (rebalance_cb, offset_commit_cb) from this call, all before one
 * deadline. Each element of offsets ends with err 0 when the group
 * confirmed it, an error otherwise (RD_KAFKA_RESP_ERR__TIMED_OUT: no answer
 * in time). Returns true when the group was left. rd_kafka_consumer_close
 * has no bound, and neither has a synchronous rd_kafka_commit: shutdown
 * paths use this instead, then rd_kafka_destroy_flags(rk,
 * RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE).
 */
bool cg_kafka_consumer_close(rd_kafka_t *rk,
                             rd_kafka_topic_partition_list_t *offsets,
                             int timeout_ms);

/*
 * rd_kafka_destroy_flags(rk, flags), waiting at most timeout_ms. A consumer
 * whose group coordinator is gone keeps librdkafka's own termination
 * waiting for it for up to session.timeout.ms (45 s by default), which no
 * call shortens; so the destroy runs on a thread of its own, and past the
 * bound it is left to finish in the background, or to end with the
 * process. No callback of rk may run by then (consumers: pass
 * RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE; nothing polls rk any more).
 * Returns true when rk was destroyed within the bound.
 */
#define CG_KAFKA_DESTROY_MS 500 /* the bound every shutdown path uses */
bool cg_kafka_destroy(rd_kafka_t *rk, int flags, int timeout_ms);

/*
 * The elements of offsets that carry an error (not committed), as
 * "partition:offset,..." into buf (cut with "..." past bufsz). Returns how
 * many there are; for the one log line a shutdown gives them.
 */
int cg_kafka_uncommitted(const rd_kafka_topic_partition_list_t *offsets,
                         char *buf, size_t bufsz);

/*
 * Serves a librdkafka queue from the event loop. librdkafka writes a byte
 * to a pipe when the queue goes from empty to non-empty (and only then), so
 * serve() must drain what it can; an optional slow tick (tick_ms > 0) calls
 * serve() as well, for what slips between. A plain record embedded in its
 * owner; zero it before cg_kafka_wake_start.
 */
struct cg_kafka_wake {
    /* private */
    struct cg_loop *loop;
    rd_kafka_queue_t *queue;
    int pipe[2];
    struct cg_loop_io io;
    struct cg_loop_timer tick;
    int tick_ms;
    void (*serve)(void *arg);
    void *arg;
};

/* Takes queue (destroyed by cg_kafka_wake_stop, also on failure). Returns
 * 0 or CG_EIO. */
int cg_kafka_wake_start(struct cg_kafka_wake *w, struct cg_loop *loop,
                        rd_kafka_queue_t *queue, int tick_ms,
                        void (*serve)(void *arg), void *arg, char *errbuf,
                        size_t errsz);

/* Stops watching and releases the queue and the pipe; a zeroed or already
 * stopped record is fine. */
void cg_kafka_wake_stop(struct cg_kafka_wake *w);

#endif
