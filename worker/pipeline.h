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
 * in the cache and skipped. Nothing is ever dropped: a failure either
 * becomes an ERROR finding (final) or leaves the job unfinished to be
 * retried (retryable), as common/err.h's table says. Remediation (stage 4,
 * remediate.h) runs only for a tenant that asks for it; its event travels
 * in the job's batch, so it is delivered, or not, with the findings.
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

/* Gives up unfinished jobs (they stay uncommitted), flushes the producer,
 * commits the watermarks and closes everything. NULL-ok. */
void cg_pipeline_free(struct cg_pipeline *pl);

/* The metrics address actually bound ("" when disabled). */
const char *cg_pipeline_metrics_address(const struct cg_pipeline *pl);

#endif
