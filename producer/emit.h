/*
 * emit — where every job of the producer ends: the jobs topic, or stdout.
 *
 * Every source (tenants, file, events) hands its jobs here. One idempotent
 * librdkafka producer served from the loop (its queue's event fd wakes the
 * loop for delivery reports); key = subscription id, so one subscription's
 * jobs stay in order on one partition; headers `reason` and `tenant`. Each
 * job's fate is counted exactly once: delivered or failed (a delivery
 * report with an error, or a produce call refused). With dry_run nothing is
 * sent: each job is written to `out` as one JSON line and counts as
 * delivered.
 */
#ifndef CG_EMIT_H
#define CG_EMIT_H

#include "job.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct cg_loop;
struct cg_conf;
struct cg_emit;

struct cg_emit_stats {
    uint64_t sent;      /* handed to Kafka (or printed) */
    uint64_t delivered; /* acknowledged (or printed) */
    uint64_t failed;    /* never delivered */
    uint64_t by_reason[CG_JOB_MANUAL + 1];
};

/*
 * Called once per job with 0 or CG_EKAFKA (why says which error): from the
 * loop after the delivery report, or inside cg_emit_job in dry-run mode or
 * when the producer refused the job. job is borrowed for the call.
 */
typedef void (*cg_emit_fn)(int err, const struct cg_job *job, const char *why,
                           void *arg);

/* loop and conf borrowed. dry_run: out receives the job lines (borrowed). */
struct cg_emit *cg_emit_new(struct cg_loop *loop, const struct cg_conf *conf,
                            bool dry_run, FILE *out, char *errbuf,
                            size_t errsz);

/* Sends one job; fn may be NULL. Never drops it silently: a refusal is
 * counted as failed and reported through fn. */
void cg_emit_job(struct cg_emit *e, const struct cg_job *job, cg_emit_fn fn,
                 void *arg);

/* Jobs sent whose fate is not known yet. */
size_t cg_emit_outstanding(const struct cg_emit *e);

/* Serves delivery reports for up to timeout_ms until none is outstanding;
 * returns how many are still outstanding. */
size_t cg_emit_flush(struct cg_emit *e, int timeout_ms);

/*
 * Ends sending: flushes for up to timeout_ms, then purges what is left and
 * serves the purge's reports, so that every job sent has been counted as
 * delivered or failed (a report librdkafka never gives counts as failed).
 * Call before reading the final stats; no job may be sent afterwards.
 */
void cg_emit_finish(struct cg_emit *e, int timeout_ms);

void cg_emit_stats(const struct cg_emit *e, struct cg_emit_stats *out);

/* cg_emit_finish(e, timeout_ms), then frees. NULL-ok. */
void cg_emit_free(struct cg_emit *e, int timeout_ms);

#endif
