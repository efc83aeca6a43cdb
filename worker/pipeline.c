#include "pipeline.h"

#include "arm.h"
#include "auth.h"
#include "cache.h"
#include "clock.h"
#include "conf.h"
#include "consume.h"
#include "contacts.h"
#include "err.h"
#include "evaluate.h"
#include "fetch.h"
#include "finding.h"
#include "http.h"
#include "job.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "metrics.h"
#include "publish.h"
#include "remediate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RETRY_BASE_MS 500
#define RETRY_CAP_MS  30000

enum outcome {
    OUT_PUBLISHED,        /* findings delivered */
    OUT_DUPLICATE,        /* already delivered by an earlier attempt */
    OUT_DEAD_LETTER,      /* undecodable, sent to the dead-letter topic */
    OUT_DEAD_LETTER_LOST, /* undecodable, and the dead-letter topic refused
                             it for good: counted and committed */
    OUT_COUNT,
};

static const char *const outcome_names[OUT_COUNT] = { "published", "duplicate",
                                                      "dead_letter",
                                                      "dead_letter_lost" };

struct job_ctx {
    struct cg_pipeline *pl;
    struct job_ctx *prev, *next; /* the in-flight list */
    int32_t partition;
    int64_t offset;
    rd_kafka_message_t *msg; /* kept only for a dead-letter send */
    struct cg_job job;
    const struct cg_tenant *tenant;            /* NULL: not configured */
    int64_t started_ms;                        /* loop clock */
    int64_t looked_up_ms, fetched_ms, sent_ms; /* stage ends, for the log */
    struct cg_fetch_call *fetch;
    struct cg_remediate_call *remediate;
    struct cg_remediation event; /* the remediation event, if any */
    bool has_event;
    enum cg_status previous[CG_RULE_COUNT];
    struct cg_finding findings[CG_RULE_COUNT];
    size_t nfindings;
    struct cg_publish_batch batch;
    bool sending;    /* a batch is out: its callback is pending */
    bool looking_up; /* its cache lookup is not answered yet */
    bool orphan;     /* the pipeline is gone: on_lookup frees it */
    int attempts;
    struct cg_loop_timer retry;
    char dlq_reason[256];
    char hash[65];           /* of the contacts evaluated */
    struct cg_owners owners; /* read with them; a remediation evaluates
                                again with these */
};

struct cg_pipeline {
    struct cg_loop *loop;
    const struct cg_conf *conf;
    struct cg_http *http;
    struct cg_auth *auth;
    struct cg_arm *arm;
    struct cg_fetch *fetch;
    struct cg_remediate *remediate;
    struct cg_cache *cache;
    struct cg_publish *publish;
    struct cg_consume *consume;
    struct cg_metrics *metrics;
    struct job_ctx *jobs; /* in flight */
    size_t njobs;
    int64_t job_deadline_ms;
    bool stopping;
    int64_t drain_until;
    uint64_t rng;
    /* counters for /metrics */
    uint64_t outcomes[OUT_COUNT];
    uint64_t findings_by_status[CG_STATUS_NONE];
    uint64_t publish_retries;
    uint64_t remediations[CG_REM_OUTCOME_COUNT];
    char host[64]; /* for lock owners */
    struct cg_histogram job_latency;
    struct cg_histogram fetch_latency;
};

/* ---- bookkeeping ------------------------------------------------------- */

static struct job_ctx *job_new(struct cg_pipeline *pl, rd_kafka_message_t *m)
{
    struct job_ctx *j = cg_calloc(1, sizeof(*j));
    j->pl = pl;
    j->partition = m->partition;
    j->offset = m->offset;
    j->started_ms = cg_loop_now_ms();
    for (int r = 0; r < CG_RULE_COUNT; r++)
        j->previous[r] = CG_STATUS_NONE;
    cg_remediation_init(&j->event);
    cg_owners_init(&j->owners);
    j->next = pl->jobs;
    if (pl->jobs)
        pl->jobs->prev = j;
    pl->jobs = j;
    pl->njobs++;
    return j;
}

static void job_free(struct job_ctx *j)
{
    struct cg_pipeline *pl = j->pl;
    if (j->prev)
        j->prev->next = j->next;
    else
        pl->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    pl->njobs--;
    cg_loop_timer_cancel(pl->loop, &j->retry);
    cg_fetch_cancel(pl->fetch, j->fetch);
    cg_remediate_cancel(pl->remediate, j->remediate);
    cg_remediation_clear(&j->event);
    cg_owners_free(&j->owners);
    for (size_t i = 0; i < j->nfindings; i++)
        cg_finding_clear(&j->findings[i]);
    cg_publish_batch_clear(&j->batch);
    if (j->msg)
        rd_kafka_message_destroy(j->msg);
    free(j);
}

/* The one place a job ends well: its offset may now be committed. */
static void job_finish(struct job_ctx *j, enum outcome o)
{
    struct cg_pipeline *pl = j->pl;
    pl->outcomes[o]++;
    double secs = (double)(cg_loop_now_ms() - j->started_ms) / 1000.0;
    cg_histogram_observe(&pl->job_latency, secs);
    cg_consume_finished(pl->consume, j->partition, j->offset);
    int64_t now = cg_loop_now_ms();
    cg_debug(
        "job.finished",
        "job=%s subscription=%s outcome=%s ms=%.0f lookup_ms=%lld "
        "fetch_ms=%lld verdict_ms=%lld publish_ms=%lld",
        j->job.job_id, j->job.subscription_id, outcome_names[o], secs * 1000,
        (long long)(j->looked_up_ms ? j->looked_up_ms - j->started_ms : 0),
        (long long)(j->fetched_ms ? j->fetched_ms - j->looked_up_ms : 0),
        (long long)(j->sent_ms && j->fetched_ms ? j->sent_ms - j->fetched_ms
                                                : 0),
        (long long)(j->sent_ms ? now - j->sent_ms : 0));
    job_free(j);
}

static int64_t backoff_ms(struct cg_pipeline *pl, int attempt)
{
    return cg_arm_backoff_ms(attempt, RETRY_BASE_MS, RETRY_CAP_MS, &pl->rng) +
           RETRY_BASE_MS / 2;
}

/* ---- stage 6: publish -------------------------------------------------- */

static void stage_publish(struct job_ctx *j);

static void on_publish_retry(struct cg_loop *loop, void *arg)
{
    (void)loop;
    stage_publish(arg);
}

/* A delivery failure is retryable: the job stays unfinished and only the
 * undelivered findings are sent again, after a backoff. */
static void publish_later(struct job_ctx *j, const char *why)
{
    struct cg_pipeline *pl = j->pl;
    j->attempts++;
    pl->publish_retries++;
    int64_t wait = backoff_ms(pl, j->attempts);
    cg_warn("publish.retry",
            "job=%s subscription=%s attempt=%d wait_ms=%lld "
            "why=\"%s\"",
            j->job.job_id, j->job.subscription_id, j->attempts, (long long)wait,
            why);
    cg_loop_timer_add(pl->loop, &j->retry, wait, on_publish_retry, j);
}

/* The dead-letter topic refused a poison message for good: retrying would
 * hold its partition for ever, so the job ends as a counted loss (the
 * message stays on the jobs topic for its retention). */
static void dead_letter_lost(struct job_ctx *j, const char *why)
{
    cg_error("job.dead_letter_lost",
             "partition=%d offset=%lld size=%zu why=\"%s\"", (int)j->partition,
             (long long)j->offset, j->msg ? j->msg->len : 0, why);
    job_finish(j, OUT_DEAD_LETTER_LOST);
}

/* The one retry decision of the publish stage: findings are retried
 * whatever the error, for a job is finished only once they are delivered;
 * a poison message's copy to the dead-letter topic is retried while the
 * error is retryable (common/err.h) and otherwise ends as a counted loss. */
static void publish_failed(struct job_ctx *j, int err, const char *why)
{
    if (j->msg && !cg_err_retryable(err)) {
        dead_letter_lost(j, why);
        return;
    }
    if (j->pl->stopping && cg_pipeline_done(j->pl))
        return; /* shutting down: stays uncommitted, redelivered */
    publish_later(j, why);
}

static void on_published(struct cg_publish_batch *b, void *arg)
{
    struct job_ctx *j = arg;
    struct cg_pipeline *pl = j->pl;
    j->sending = false;
    if (b->err) {
        publish_failed(j, b->err, b->why);
        return;
    }
    if (j->msg) {
        job_finish(j, OUT_DEAD_LETTER);
        return;
    }
    cg_cache_mark_done(pl->cache, j->job.job_id, NULL, NULL);
    job_finish(j, OUT_PUBLISHED);
}

static void stage_publish(struct job_ctx *j)
{
    struct cg_pipeline *pl = j->pl;
    int rc;
    if (j->msg)
        rc = cg_publish_dead_letter(pl->publish, j->msg, j->dlq_reason,
                                    &j->batch, on_published, j);
    else
        rc = cg_publish_send(pl->publish, &j->batch, on_published, j);
    if (rc) {
        publish_failed(j, rc,
                       j->batch.why[0] ? j->batch.why : "producer queue full");
        return;
    }
    j->sending = true;
    if (!j->sent_ms)
        j->sent_ms = cg_loop_now_ms();
}

/* ---- stage 5: cache ---------------------------------------------------- */

/* Fire and forget: the cache never holds the pipeline up. */
static void stage_cache(struct job_ctx *j, const char *hash)
{
    struct cg_cache_entry e;
    memset(&e, 0, sizeof(e));
    e.tenant_id = j->job.tenant_id;
    e.subscription_id = j->job.subscription_id;
    e.job_id = j->job.job_id;
    e.scan_ms = j->findings[0].time_ms;
    e.contacts_hash = hash;
    e.api_version = j->findings[0].api_version;
    e.findings = j->findings;
    e.nfindings = j->nfindings;
    cg_cache_store(j->pl->cache, &e, NULL, NULL);
}

/* ---- after the verdict: cache, then publish ---------------------------- */

static void stages_after_verdict(struct job_ctx *j, const char *hash)
{
    struct cg_pipeline *pl = j->pl;
    stage_cache(j, hash);
    cg_publish_batch_fill(pl->publish, &j->batch, j->findings, j->nfindings);
    if (j->has_event)
        cg_publish_batch_add_remediation(pl->publish, &j->batch, &j->event);
    stage_publish(j);
}

/* ---- stage 4: remediate ------------------------------------------------ */

/* After a write the findings say what the contact is now: the verdicts of
 * the read-back replace those of the scan (identity and previous stay). */
static void findings_take_after(struct job_ctx *j,
                                struct cg_finding after[CG_RULE_COUNT])
{
    struct cg_pipeline *pl = j->pl;
    long long now = cg_now_ms();
    for (size_t i = 0; i < j->nfindings; i++) {
        struct cg_finding *f = &j->findings[i];
        for (int k = 0; k < CG_RULE_COUNT; k++) {
            struct cg_finding *a = &after[k];
            if (a->rule != f->rule)
                continue;
            pl->findings_by_status[f->status]--;
            f->status = a->status;
            cg_strlcpy(f->reason_code, a->reason_code, sizeof(f->reason_code));
            free(f->reason);
            f->reason = a->reason;
            a->reason = NULL;
            json_decref(f->evidence);
            f->evidence = a->evidence;
            a->evidence = NULL;
            cg_strlcpy(f->api_version, CG_REMEDIATE_API_VERSION,
                       sizeof(f->api_version));
            f->time_ms = now;
            pl->findings_by_status[f->status]++;
        }
    }
}

static void on_remediated(struct cg_remediate_result *res, void *arg)
{
    struct job_ctx *j = arg;
    struct cg_pipeline *pl = j->pl;
    j->remediate = NULL;
    j->event = res->event;
    cg_remediation_init(&res->event);
    j->has_event = true;
    pl->remediations[j->event.outcome]++;
    if (res->reevaluated) {
        findings_take_after(j, res->after);
        stages_after_verdict(j, res->after_hash);
        return;
    }
    stages_after_verdict(j, j->hash);
}

/* Only a subscription that fails, was read without error, and is Enabled
 * is touched; everything else goes straight on to the cache. */
static void stage_remediate(struct job_ctx *j, const struct cg_rules_conf *rc)
{
    struct cg_pipeline *pl = j->pl;
    struct cg_remediate_policy pol;
    cg_remediate_policy(pl->conf, j->tenant, j->job.remediation, &pol);
    char why[256];
    if (!cg_remediate_wanted(pol.mode, j->findings, j->nfindings, j->job.state,
                             why, sizeof(why))) {
        if (pol.mode != CG_REMEDIATION_OFF)
            cg_debug("remediation.not_wanted",
                     "job=%s subscription=%s "
                     "why=\"%s\"",
                     j->job.job_id, j->job.subscription_id, why);
        stages_after_verdict(j, j->hash);
        return;
    }
    char owner[CG_REMEDIATE_OWNER_MAX + 1];
    snprintf(owner, sizeof(owner), "worker:%.32s:%ld:%.63s", pl->host,
             (long)getpid(), j->job.job_id);
    struct cg_remediate_req req;
    memset(&req, 0, sizeof(req));
    req.tenant_id = j->job.tenant_id;
    req.auth_tenant_id = j->job.auth_tenant_id;
    req.subscription_id = j->job.subscription_id;
    req.job_id = j->job.job_id;
    req.owner = owner;
    req.policy = &pol;
    req.rules = rc;
    req.owners = &j->owners;
    req.findings = j->findings;
    req.nfindings = j->nfindings;
    req.contacts_hash = j->hash;
    req.deadline_ms = j->started_ms + pl->job_deadline_ms;
    j->remediate = cg_remediate_start(pl->remediate, &req, on_remediated, j);
    if (!j->remediate)
        stages_after_verdict(j, j->hash);
}

/* ---- stage 3: evaluate (and the identity every finding carries) -------- */

static void findings_stamp(struct job_ctx *j, const char *api_version)
{
    long long now = cg_now_ms();
    j->nfindings = CG_RULE_COUNT;
    for (int r = 0; r < CG_RULE_COUNT; r++) {
        struct cg_finding *f = &j->findings[r];
        cg_strlcpy(f->subscription_id, j->job.subscription_id,
                   sizeof(f->subscription_id));
        cg_strlcpy(f->tenant_id, j->job.tenant_id, sizeof(f->tenant_id));
        cg_strlcpy(f->api_version, api_version, sizeof(f->api_version));
        cg_strlcpy(f->job_id, j->job.job_id, sizeof(f->job_id));
        f->time_ms = now;
        f->previous = j->previous[r];
        j->pl->findings_by_status[f->status]++;
    }
}

static void verdict_all(struct job_ctx *j, enum cg_status st, const char *code,
                        const char *reason, const char *api_version)
{
    cg_evaluate_all(j->findings, st, code, reason);
    findings_stamp(j, api_version);
    stages_after_verdict(j, "");
}

/* ---- stage 2: fetch ---------------------------------------------------- */

static void on_fetched(struct cg_fetch_result *res, void *arg)
{
    struct job_ctx *j = arg;
    struct cg_pipeline *pl = j->pl;
    j->fetch = NULL;
    j->fetched_ms = cg_loop_now_ms();
    cg_histogram_observe(&pl->fetch_latency, (double)res->elapsed_ms / 1000);
    const char *version = cg_api_version_name(res->version);
    if (res->err) {
        cg_info("job.unreadable",
                "job=%s subscription=%s status=%s code=%s "
                "reason=\"%s\"",
                j->job.job_id, j->job.subscription_id,
                cg_status_name(res->status), res->reason_code, res->reason);
        verdict_all(j, res->status, res->reason_code, res->reason, version);
        return;
    }
    struct cg_rules_conf rc;
    cg_rules_conf_from(&rc, pl->conf, j->tenant);
    j->owners = res->owners;
    cg_owners_init(&res->owners);
    cg_evaluate(&res->ct, &j->owners, &rc, j->findings);
    findings_stamp(j, version);
    cg_contacts_hash(&res->ct, j->hash);
    stage_remediate(j, &rc);
}

static void stage_fetch(struct job_ctx *j)
{
    struct cg_pipeline *pl = j->pl;
    const char *auth_tenant =
        j->job.auth_tenant_id[0] ? j->job.auth_tenant_id : j->job.tenant_id;
    j->fetch =
        cg_fetch_start(pl->fetch, auth_tenant, j->job.subscription_id,
                       j->started_ms + pl->job_deadline_ms, on_fetched, j);
}

/* ---- stage 1: the job -------------------------------------------------- */

static void on_lookup(const struct cg_cache_prev *res, void *arg)
{
    struct job_ctx *j = arg;
    j->looking_up = false;
    if (j->orphan) {
        job_free(j); /* answered by cg_cache_free while stopping */
        return;
    }
    j->looked_up_ms = cg_loop_now_ms();
    if (res->err == 0 && res->job_done) {
        cg_info("job.duplicate", "job=%s subscription=%s", j->job.job_id,
                j->job.subscription_id);
        job_finish(j, OUT_DUPLICATE);
        return;
    }
    for (int r = 0; r < CG_RULE_COUNT; r++)
        j->previous[r] = res->err ? CG_STATUS_NONE : res->status[r];

    if (!cg_sub_state_auditable(j->job.state)) {
        char reason[160];
        snprintf(reason, sizeof(reason),
                 "The subscription is %s and cannot be audited.",
                 cg_sub_state_name(j->job.state));
        verdict_all(j, CG_STATUS_SKIPPED,
                    j->job.state == CG_SUB_DELETED ? "SUBSCRIPTION_DELETED"
                                                   : "SUBSCRIPTION_DISABLED",
                    reason, "none");
        return;
    }
    stage_fetch(j);
}

static void on_message(rd_kafka_message_t *m, void *arg)
{
    struct cg_pipeline *pl = arg;
    struct job_ctx *j = job_new(pl, m);
    char err[256];
    if (cg_job_decode(m->payload, m->len, &j->job, err, sizeof(err))) {
        cg_warn("job.undecodable", "partition=%d offset=%lld reason=\"%s\"",
                (int)m->partition, (long long)m->offset, err);
        j->msg = m; /* kept until the dead-letter delivery report */
        cg_strlcpy(j->dlq_reason, err, sizeof(j->dlq_reason));
        stage_publish(j);
        return;
    }
    rd_kafka_message_destroy(m);
    j->tenant = cg_conf_tenant_find(pl->conf, j->job.tenant_id);
    j->looking_up = true;
    cg_cache_lookup(pl->cache, j->job.tenant_id, j->job.subscription_id,
                    j->job.job_id, on_lookup, j);
}

/* ---- metrics ----------------------------------------------------------- */

static void render(struct cg_buf *b, void *arg)
{
    struct cg_pipeline *pl = arg;
    char labels[96];
    for (int o = 0; o < OUT_COUNT; o++) {
        snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome_names[o]);
        cg_metrics_counter(b, "contactguard_jobs_total",
                           "Jobs finished, by outcome", labels,
                           pl->outcomes[o]);
    }
    for (int s = 0; s < CG_STATUS_NONE; s++) {
        snprintf(labels, sizeof(labels), "status=\"%s\"",
                 cg_status_name((enum cg_status)s));
        cg_metrics_counter(b, "contactguard_findings_total",
                           "Findings produced, by status", labels,
                           pl->findings_by_status[s]);
    }
    for (int o = 0; o < CG_REM_OUTCOME_COUNT; o++) {
        snprintf(labels, sizeof(labels), "outcome=\"%s\"",
                 cg_remediation_outcome_name((enum cg_remediation_outcome)o));
        cg_metrics_counter(b, "contactguard_remediations_total",
                           "Remediations, by outcome", labels,
                           pl->remediations[o]);
    }
    cg_metrics_gauge(b, "contactguard_jobs_in_flight", "Jobs being worked on",
                     "", (double)pl->njobs);
    struct cg_arm_stats as;
    cg_arm_stats(pl->arm, &as);
    const struct {
        const char *cls;
        uint64_t v;
    } classes[] = { { "2xx", as.status_2xx },
                    { "3xx", as.status_3xx },
                    { "4xx", as.status_4xx },
                    { "5xx", as.status_5xx },
                    { "transport", as.transport_errors } };
    for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
        snprintf(labels, sizeof(labels), "class=\"%s\"", classes[i].cls);
        cg_metrics_counter(b, "contactguard_arm_requests_total",
                           "Azure Resource Manager requests, by status class",
                           labels, classes[i].v);
    }
    cg_metrics_counter(b, "contactguard_arm_throttled_total",
                       "429 answers from Azure", "", as.throttled);
    cg_metrics_counter(b, "contactguard_arm_retry_after_waits_total",
                       "Waits ordered by Retry-After", "",
                       as.retry_after_waits);
    cg_metrics_counter(b, "contactguard_arm_retry_after_wait_seconds_total",
                       "Time spent waiting for Retry-After", "",
                       as.retry_after_wait_ms / 1000);
    cg_metrics_counter(b, "contactguard_arm_self_throttled_total",
                       "Requests delayed by the client-side bucket", "",
                       as.self_throttled);
    cg_metrics_counter(b, "contactguard_arm_retries_total",
                       "Retried requests (5xx, transport)", "", as.retries);
    cg_metrics_gauge(b, "contactguard_arm_requests_in_flight",
                     "Azure calls in flight", "", (double)as.calls_in_flight);
    cg_metrics_counter(b, "contactguard_token_requests_total",
                       "Entra ID token requests", "", as.token_requests);
    cg_metrics_counter(b, "contactguard_token_failures_total",
                       "Entra ID token requests that failed", "",
                       as.token_failures);
    cg_metrics_gauge(b, "contactguard_tenants_held",
                     "Tenants whose token or refusal is kept (idle ones "
                     "are forgotten)",
                     "", (double)as.auth_tenants_held);
    cg_metrics_gauge(b, "contactguard_arm_buckets_held",
                     "Client-side throttling records kept per (principal, "
                     "subscription) (full ones are forgotten)",
                     "", (double)as.limits_held);
    cg_cache_metrics(pl->cache, b);
    struct cg_publish_stats ps;
    cg_publish_stats(pl->publish, &ps);
    cg_metrics_counter(b, "contactguard_publish_failures_total",
                       "Findings whose delivery failed", "",
                       ps.failed + ps.enqueue_failed);
    cg_metrics_counter(b, "contactguard_publish_retries_total",
                       "Batches sent again after a failure", "",
                       pl->publish_retries);
    cg_metrics_counter(b, "contactguard_dead_letters_truncated_total",
                       "Dead letters too large to send whole, sent cut", "",
                       ps.dead_letters_truncated);
    struct cg_consume_stats ks;
    cg_consume_stats(pl->consume, &ks);
    cg_metrics_gauge(b, "contactguard_consumer_lag",
                     "Jobs waiting on the assigned partitions", "",
                     (double)ks.lag);
    cg_metrics_gauge(b, "contactguard_partitions_assigned",
                     "Partitions of the jobs topic assigned", "",
                     (double)ks.partitions);
    cg_metrics_gauge(b, "contactguard_partitions_paused",
                     "Assigned partitions paused by backpressure", "",
                     ks.paused ? (double)ks.partitions : 0);
    cg_metrics_counter(b, "contactguard_rebalances_total",
                       "Consumer group rebalances", "", ks.rebalances);
    cg_metrics_counter(b, "contactguard_consumer_pauses_total",
                       "Stalls at worker.max_jobs that paused the partitions",
                       "", ks.pauses);
    cg_metrics_histogram(b, "contactguard_job_duration_seconds",
                         "Time from taking a job to finishing it",
                         &pl->job_latency);
    cg_metrics_histogram(b, "contactguard_arm_call_duration_seconds",
                         "Time to read one subscription's contacts",
                         &pl->fetch_latency);
}

static bool ready(void *arg, char *why, size_t whysz)
{
    struct cg_pipeline *pl = arg;
    struct cg_consume_stats ks;
    struct cg_publish_stats ps;
    struct cg_cache_stats cs;
    cg_consume_stats(pl->consume, &ks);
    cg_publish_stats(pl->publish, &ps);
    cg_cache_stats(pl->cache, &cs);
    if (pl->stopping)
        snprintf(why, whysz, "stopping");
    else if (cs.tls_refused) /* will not heal by itself: say so */
        snprintf(why, whysz, "Redis's TLS certificate was refused");
    else if (!ks.in_group)
        snprintf(why, whysz, "not yet in the consumer group");
    else if (ps.fatal)
        snprintf(why, whysz, "the producer hit a fatal error");
    else
        return true;
    return false;
}

/* ---- lifecycle --------------------------------------------------------- */

struct cg_pipeline *cg_pipeline_new(struct cg_loop *loop,
                                    const struct cg_conf *conf, char *errbuf,
                                    size_t errsz)
{
    struct cg_pipeline *pl = cg_calloc(1, sizeof(*pl));
    pl->loop = loop;
    pl->conf = conf;
    pl->job_deadline_ms = cg_conf_int(conf, "worker.job_deadline_ms");
    pl->rng = (uint64_t)cg_now_ms() | 1;
    if (gethostname(pl->host, sizeof(pl->host)) != 0)
        cg_strlcpy(pl->host, "unknown", sizeof(pl->host));
    pl->host[sizeof(pl->host) - 1] = '\0';
    cg_histogram_init(&pl->job_latency);
    cg_histogram_init(&pl->fetch_latency);
    struct cg_http_opts ho;
    cg_http_opts_from_conf(conf, &ho);
    const char *listen = cg_conf_str(conf, "worker.metrics_listen");
    if (!(pl->http = cg_http_new(loop, &ho, errbuf, errsz)) ||
        !(pl->auth = cg_auth_new(loop, pl->http, conf, errbuf, errsz)) ||
        !(pl->arm =
              cg_arm_new(loop, pl->http, pl->auth, conf, errbuf, errsz)) ||
        !(pl->fetch = cg_fetch_new(pl->arm, conf, errbuf, errsz)) ||
        !(pl->cache = cg_cache_new(loop, conf, errbuf, errsz)) ||
        !(pl->remediate = cg_remediate_new(loop, pl->arm, pl->cache, conf,
                                           errbuf, errsz)) ||
        !(pl->publish = cg_publish_new(loop, conf, errbuf, errsz)))
        goto fail;
    if (*listen && !(pl->metrics = cg_metrics_new(loop, listen, render, ready,
                                                  pl, errbuf, errsz)))
        goto fail;
    /* The consumer last: messages may arrive as soon as it exists. */
    if (!(pl->consume =
              cg_consume_new(loop, conf, on_message, pl, errbuf, errsz)))
        goto fail;
    return pl;
fail:
    cg_pipeline_free(pl);
    return NULL;
}

void cg_pipeline_stop(struct cg_pipeline *pl)
{
    if (pl->stopping)
        return;
    pl->stopping = true;
    pl->drain_until =
        cg_loop_now_ms() + cg_conf_int(pl->conf, "worker.drain_timeout_ms");
    cg_consume_stop(pl->consume);
    cg_info("worker.draining", "jobs=%zu", pl->njobs);
}

bool cg_pipeline_done(const struct cg_pipeline *pl)
{
    return pl->stopping &&
           (pl->njobs == 0 || cg_loop_now_ms() >= pl->drain_until);
}

const char *cg_pipeline_metrics_address(const struct cg_pipeline *pl)
{
    return pl->metrics ? cg_metrics_address(pl->metrics) : "";
}

void cg_pipeline_free(struct cg_pipeline *pl)
{
    if (!pl)
        return;
    if (pl->njobs)
        cg_warn("worker.abandoned",
                "jobs=%zu note=\"left uncommitted; they "
                "will be consumed again\"",
                pl->njobs);
    /* Order matters: the producer purges what it still holds, which runs
     * the batches' callbacks while their jobs still exist; only then are
     * the jobs freed. The consumer closes after, so that the watermarks of
     * jobs finished by the flush are committed too. Every step is bounded:
     * the broker may be gone. */
    pl->stopping = true;
    pl->drain_until = 0;
    cg_publish_free(pl->publish, CG_PIPELINE_FLUSH_MS);
    pl->publish = NULL;
    /* A job still waiting for its cache lookup is answered (cancelled) by
     * cg_cache_free below: on_lookup frees it then, not before. */
    for (struct job_ctx *j = pl->jobs, *next; j; j = next) {
        next = j->next;
        if (j->looking_up)
            j->orphan = true;
        else
            job_free(j);
    }
    cg_consume_close(pl->consume, CG_PIPELINE_LEAVE_MS);
    cg_consume_free(pl->consume);
    cg_metrics_free(pl->metrics);
    /* Before the cache: a remediation waiting for Redis is answered (and
     * freed) by cg_cache_free. */
    cg_remediate_free(pl->remediate);
    pl->remediate = NULL;
    if (!cg_cache_settle(pl->cache, CG_PIPELINE_CACHE_MS))
        cg_warn("worker.cache_unsettled",
                "note=\"writes still queued for Redis are given up\"");
    cg_cache_free(pl->cache);
    cg_fetch_free(pl->fetch);
    cg_arm_free(pl->arm);
    cg_auth_free(pl->auth);
    cg_http_free(pl->http);
    free(pl);
}
