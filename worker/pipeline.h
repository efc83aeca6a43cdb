/*
 * pipeline — the worker: one file that owns the order of the stages.
 *
 *   consume -> job -> (cache lookup) -> fetch -> evaluate -> remediate
 *        \-> dead letter (undecodable)        -> cache -> publish -> commit
 *
 * One event loop drives everything: Kafka (consumer and producer queues),
 * libcurl (every Azure request), the cache thread's completions, timers and
 * the metrics endpoint. A job is finished — and its offset may be committed
 * — only when every finding it produced has a successful delivery report;
 * a job whose findings were already delivered (a redelivery) is recognised
 * in the cache and skipped. Nothing is ever dropped: a failure to read
 * Azure is retried by the ARM client until the job's deadline and then
 * becomes an ERROR (or SKIPPED) finding through cg_fetch_classify; a
 * failure to publish leaves the job unfinished and uncommitted, to be sent
 * again after a backoff (common/err.h). The one loss is a poison message
 * the dead-letter topic refuses for good (counted, logged). Remediation
 * (stage 4, remediate.h) runs only for a tenant that asks for it; its event
 * travels in the job's batch, so it is delivered, or not, with the
 * findings.
 */
#ifndef CG_PIPELINE_H
#define CG_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>

struct cg_loop;
struct cg_conf;
struct cg_pipeline;

/* Everything is created here; conf is borrowed and must outlive it. */
struct cg_pipeline *cg_pipeline_new(struct cg_loop *loop,
                                    const struct cg_conf *conf, char *errbuf,
                                    size_t errsz);

/* Begins a graceful stop: no new jobs; in-flight jobs get
 * worker.drain_timeout_ms to finish. */
void cg_pipeline_stop(struct cg_pipeline *pl);

/* True once stopping and every job is finished or the drain ran out. */
bool cg_pipeline_done(const struct cg_pipeline *pl);

/*
 * What a stop may take after the drain, whatever the broker and Redis do:
 * the findings still on their way get CG_PIPELINE_FLUSH_MS, the final
 * offset commit and leaving the group CG_PIPELINE_LEAVE_MS together,
 * destroying the producer and the consumer CG_KAFKA_DESTROY_MS each
 * (kafka.h), the cache's queued writes CG_PIPELINE_CACHE_MS to reach Redis
 * (cache.h); what is left then is given up. So a stop takes at most
 * worker.drain_timeout_ms + CG_PIPELINE_CLOSE_MS.
 */
#define CG_PIPELINE_FLUSH_MS 1000
#define CG_PIPELINE_LEAVE_MS 2000
#define CG_PIPELINE_CACHE_MS 1000
#define CG_PIPELINE_CLOSE_MS 5000

/* Gives up unfinished jobs (they stay uncommitted), flushes the producer,
 * commits the watermarks and leaves the group, each within its bound
 * above, and closes everything. What could not be committed is logged in
 * one line (consume.uncommitted). NULL-ok. */
void cg_pipeline_free(struct cg_pipeline *pl);

/* The metrics address actually bound ("" when disabled). */
const char *cg_pipeline_metrics_address(const struct cg_pipeline *pl);

#endif
