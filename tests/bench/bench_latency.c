/*
 * Latency of events on an idle fleet, and memory over time. Never fails on
 * a number; one parseable line per figure:
 *
 *   bench=latency kind=one_job jobs=N p50_ms=... p99_ms=... max_ms=...
 *     one job produced (no linger) to its last finding read back from the
 *     results topic, one job at a time, fake Azure at 0 ms
 *   bench=latency kind=producer_file runs=N p50_ms=... max_ms=...
 *     `contactguard-producer file` with one job, start to exit
 *   bench=latency kind=new_worker assigned_ms=... first_job_ms=...
 *     a second worker joins a group whose member is busy with a steady
 *     stream of jobs: its start to its partitions, and to its first
 *     finished job
 *   bench=soak jobs=N tenants=N t_s=... done=... worker_rss_mb=...
 *     (--soak) jobs arriving steadily for every tenant's subscriptions;
 *     one line per tenth of the jobs
 *
 * usage: bench_latency [JOBS]            (default 200)
 *        bench_latency --soak JOBS TENANTS
 * Environment: BENCH_SOAK_RATE (jobs/s, default 3000), BENCH_PER_TENANT
 * (soak: subscriptions per tenant, default 5).
 */
#include "harness.h"
#include "job.h"
#include "measure.h"
#include "mem.h"
#include "stack.h"

#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LAT_TIMEOUT_MS 30000

/* CG_PRODUCER runs another build's producer (old against new). */
static const char *producer_bin(void)
{
    const char *bin = getenv("CG_PRODUCER");
    return bin && *bin ? bin : CG_BIN_CONTACTGUARD_PRODUCER;
}

static rd_kafka_t *kafka_new(rd_kafka_type_t type, const char *bootstrap)
{
    char kerr[256];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    /* The bench's own clients add as little as they can: no linger, a
     * fetch answered as soon as one byte is there. */
    const char *kv[] = { "bootstrap.servers",
                         bootstrap,
                         "linger.ms",
                         "0",
                         "fetch.wait.max.ms",
                         "5",
                         "fetch.min.bytes",
                         "1",
                         "group.id",
                         "bench-latency",
                         NULL };
    for (int i = 0; kv[i]; i += 2) {
        if (type == RD_KAFKA_PRODUCER && !strncmp(kv[i], "fetch", 5))
            continue;
        if (type == RD_KAFKA_PRODUCER && !strcmp(kv[i], "group.id"))
            continue;
        if (type == RD_KAFKA_CONSUMER && !strcmp(kv[i], "linger.ms"))
            continue;
        rd_kafka_conf_set(kc, kv[i], kv[i + 1], NULL, 0);
    }
    rd_kafka_t *rk = rd_kafka_new(type, kc, kerr, sizeof(kerr));
    if (!rk) {
        fprintf(stderr, "bench_latency: %s\n", kerr);
        rd_kafka_conf_destroy(kc);
        return NULL;
    }
    if (type == RD_KAFKA_PRODUCER) {
        /* Not the metadata scan's second of delay on the first job. */
        rd_kafka_topic_t *rkt =
            rd_kafka_topic_new(rk, "contactguard.jobs", NULL);
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
    return rk;
}

static void produce_job(rd_kafka_t *rk, const struct cg_stack_sub *t)
{
    struct cg_job job;
    cg_job_init(&job, t->tenant, t->sub, CG_JOB_EVENT);
    job.state = cg_sub_state_parse(t->state);
    char *v = cg_job_encode(&job);
    while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("contactguard.jobs"),
                             RD_KAFKA_V_KEY(t->sub, strlen(t->sub)),
                             RD_KAFKA_V_VALUE(v, strlen(v)),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 10);
    rd_kafka_poll(rk, 0);
    free(v);
}

/* A consumer of the results topic from its end, partitions assigned. */
static rd_kafka_t *results_tail(const char *bootstrap)
{
    rd_kafka_t *rk = kafka_new(RD_KAFKA_CONSUMER, bootstrap);
    const struct rd_kafka_metadata *md = NULL;
    if (!rk)
        return NULL;
    rd_kafka_topic_t *rkt =
        rd_kafka_topic_new(rk, "contactguard.results", NULL);
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != 0) {
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return NULL;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(l, "contactguard.results", i)
            ->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    /* Let the assignment settle on the end offsets. */
    for (int i = 0; i < 20; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
        if (m)
            rd_kafka_message_destroy(m);
    }
    return rk;
}

/* Waits for `want` results keyed by sub; 0 or -1 on timeout. */
static int await_findings(rd_kafka_t *rk, const char *sub, int want)
{
    int64_t t0 = cg_harness_now_ms();
    size_t sl = strlen(sub);
    while (want > 0 && cg_harness_now_ms() - t0 < LAT_TIMEOUT_MS) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err && m->key_len == sl && !memcmp(m->key, sub, sl))
            want--;
        rd_kafka_message_destroy(m);
    }
    return want > 0 ? -1 : 0;
}

/* The workers' extra arguments: log.level=warn, and BENCH_WORKER_SET. */
static const char *const *worker_extra(void)
{
    static const char *extra[5];
    const char *env = getenv("BENCH_WORKER_SET");
    extra[0] = "--set";
    extra[1] = "log.level=warn";
    extra[2] = env && *env ? "--set" : NULL;
    extra[3] = env;
    extra[4] = NULL;
    return extra;
}

static double worker_metric(struct cg_harness_proc *w, const char *prefix)
{
    char url[160];
    long st;
    snprintf(url, sizeof(url), "http://%s/metrics", cg_stack_worker_metrics(w));
    char *text = cg_stack_http_get(url, NULL, &st);
    double v = text ? measure_metric_sum(text, prefix) : -1;
    free(text);
    return v;
}

static size_t auditable(const struct cg_stack *s, size_t *idx, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nsubs && n < max; i++)
        if (cg_sub_state_auditable(cg_sub_state_parse(s->subs[i].state)))
            idx[n++] = i;
    return n;
}

static void one_job(struct cg_stack *s, int jobs)
{
    const char *bs = cg_harness_devbroker_bootstrap(s->kafka);
    rd_kafka_t *prod = kafka_new(RD_KAFKA_PRODUCER, bs);
    rd_kafka_t *tail = results_tail(bs);
    size_t *idx = cg_calloc(s->nsubs, sizeof(*idx));
    size_t n = auditable(s, idx, s->nsubs);
    double *ms = cg_calloc((size_t)jobs, sizeof(*ms));
    int done = 0;
    for (int i = 0; prod && tail && i < jobs && (size_t)i < n; i++) {
        const struct cg_stack_sub *t = &s->subs[idx[i]];
        int64_t t0 = cg_harness_now_ms();
        produce_job(prod, t);
        if (await_findings(tail, t->sub, 4)) {
            fprintf(stderr, "bench_latency: no findings for %s\n", t->sub);
            break;
        }
        ms[done++] = (double)(cg_harness_now_ms() - t0);
    }
    double p50 = measure_quantile(ms, (size_t)done, 0.5);
    double p99 = measure_quantile(ms, (size_t)done, 0.99);
    printf("bench=latency kind=one_job azure_latency_ms=0 jobs=%d "
           "p50_ms=%.0f p99_ms=%.0f max_ms=%.0f\n",
           done, p50, p99, done ? ms[done - 1] : 0);
    fflush(stdout);
    free(ms);
    free(idx);
    if (tail) {
        rd_kafka_consumer_close(tail);
        rd_kafka_destroy(tail);
    }
    if (prod) {
        rd_kafka_flush(prod, 10000);
        rd_kafka_destroy(prod);
    }
}

static void producer_file(struct cg_stack *s, int runs)
{
    char path[700], bs[300], rp[64], err[512];
    snprintf(path, sizeof(path), "%s/one-job.txt", s->dir);
    snprintf(bs, sizeof(bs), "kafka.bootstrap.servers=%s",
             cg_harness_devbroker_bootstrap(s->kafka));
    snprintf(rp, sizeof(rp), "redis.port=%d", cg_harness_redis_port(s->redis));
    double *ms = cg_calloc((size_t)runs, sizeof(*ms));
    int done = 0;
    for (int i = 0; i < runs; i++) {
        FILE *f = fopen(path, "w");
        if (!f)
            break;
        fprintf(f, "%s,%s\n", s->subs[i].tenant, s->subs[i].sub);
        fclose(f);
        const char *argv[] = {
            producer_bin(),   "file", path,    "--config", s->creds,
            "--set",          bs,     "--set", rp,         "--set",
            "log.level=warn", NULL
        };
        struct cg_harness_proc_opts po = { .name = "producer-file",
                                           .line_timeout_ms = -1 };
        int64_t t0 = cg_harness_now_ms();
        struct cg_harness_proc *p =
            cg_harness_proc_start(argv, &po, err, sizeof(err));
        int status = -1;
        if (!p || cg_harness_proc_wait(p, LAT_TIMEOUT_MS, &status) ||
            !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "bench_latency: producer file failed (%d)\n",
                    status);
            cg_harness_proc_free(p);
            break;
        }
        ms[done++] = (double)(cg_harness_now_ms() - t0);
        cg_harness_proc_free(p);
    }
    double p50 = measure_quantile(ms, (size_t)done, 0.5);
    printf("bench=latency kind=producer_file runs=%d p50_ms=%.0f max_ms=%.0f\n",
           done, p50, done ? ms[done - 1] : 0);
    fflush(stdout);
    free(ms);
}

static void new_worker(struct cg_stack *s, struct cg_harness_proc *w0)
{
    const char *bs = cg_harness_devbroker_bootstrap(s->kafka);
    rd_kafka_t *prod = kafka_new(RD_KAFKA_PRODUCER, bs);
    size_t *idx = cg_calloc(s->nsubs, sizeof(*idx));
    size_t n = auditable(s, idx, s->nsubs), next = 0;
    char err[512];
    const char *const *extra = worker_extra();
    double assigned = -1, first = -1;
    (void)w0;
    int64_t t0 = cg_harness_now_ms();
    struct cg_harness_proc *w1 =
        prod ? cg_stack_worker(s, "worker-new", extra, err, sizeof(err)) : NULL;
    /* One job every 10 ms on every partition's keys while it joins. */
    while (w1 && cg_harness_now_ms() - t0 < LAT_TIMEOUT_MS) {
        produce_job(prod, &s->subs[idx[next++ % n]]);
        int64_t now = cg_harness_now_ms();
        if (assigned < 0 &&
            worker_metric(w1, "contactguard_partitions_assigned") > 0)
            assigned = (double)(now - t0);
        if (worker_metric(w1, "contactguard_jobs_total{") > 0) {
            first = (double)(now - t0);
            break;
        }
        usleep(10 * 1000); /* the arrival rate, not a synchronisation */
    }
    printf("bench=latency kind=new_worker assigned_ms=%.0f first_job_ms=%.0f "
           "first_job_after_assigned_ms=%.0f\n",
           assigned, first,
           first >= 0 && assigned >= 0 ? first - assigned : -1);
    fflush(stdout);
    cg_harness_proc_free(w1);
    free(idx);
    if (prod) {
        rd_kafka_flush(prod, 10000);
        rd_kafka_destroy(prod);
    }
}

static int soak(long jobs, int tenants)
{
    const char *per_s = getenv("BENCH_PER_TENANT");
    const char *rate_s = getenv("BENCH_SOAK_RATE");
    int per = per_s ? (int)strtol(per_s, NULL, 10) : 5;
    double rate = rate_s ? strtod(rate_s, NULL) : 3000;
    char err[512];
    const char *fa[] = { "--seed", "7", NULL };
    struct cg_stack_opts o = { tenants, per > 0 ? per : 5, 6, fa, false };
    struct cg_stack s;
    if (cg_stack_start(&s, &o, err, sizeof(err))) {
        fprintf(stderr, "bench_latency: %s\n", err);
        return 1;
    }
    const char *const *extra = worker_extra();
    struct cg_harness_proc *w =
        cg_stack_worker(&s, "worker-0", extra, err, sizeof(err));
    rd_kafka_t *prod =
        kafka_new(RD_KAFKA_PRODUCER, cg_harness_devbroker_bootstrap(s.kafka));
    size_t *idx = cg_calloc(s.nsubs, sizeof(*idx));
    size_t n = auditable(&s, idx, s.nsubs);
    int64_t t0 = cg_harness_now_ms();
    long sent = 0, step = jobs / 10 > 0 ? jobs / 10 : 1, next_report = step;
    int rc = w && prod && n ? 0 : 1;
    while (rc == 0) {
        double elapsed = (double)(cg_harness_now_ms() - t0) / 1000.0;
        long due = (long)(elapsed * rate);
        for (; sent < due && sent < jobs; sent++)
            produce_job(prod, &s.subs[idx[(size_t)sent % n]]);
        double done = worker_metric(w, "contactguard_jobs_total{");
        if (done >= (double)next_report) {
            printf("bench=soak jobs=%ld tenants=%d t_s=%.0f done=%.0f "
                   "tenants_held=%.0f buckets_held=%.0f worker_rss_mb=%.1f "
                   "worker_peak_rss_mb=%.1f\n",
                   jobs, tenants, elapsed, done,
                   worker_metric(w, "contactguard_tenants_held"),
                   worker_metric(w, "contactguard_arm_buckets_held"),
                   (double)measure_rss_kb(cg_harness_proc_pid(w)) / 1024.0,
                   (double)measure_hwm_kb(cg_harness_proc_pid(w)) / 1024.0);
            fflush(stdout);
            next_report += step;
        }
        if (done >= (double)jobs || done < 0)
            break;
        usleep(20 * 1000); /* the arrival clock's tick */
    }
    free(idx);
    if (prod) {
        rd_kafka_flush(prod, 10000);
        rd_kafka_destroy(prod);
    }
    cg_harness_proc_free(w);
    cg_stack_stop(&s);
    return rc;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (argc > 1 && !strcmp(argv[1], "--soak")) {
        long jobs = argc > 2 ? strtol(argv[2], NULL, 10) : 1000000;
        int tenants = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 10000;
        int rc = soak(jobs, tenants);
        curl_global_cleanup();
        return rc;
    }
    int jobs = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 200;
    if (jobs < 1)
        jobs = 200;
    char err[512];
    const char *fa[] = { "--latency-ms", "0", "--seed", "7", NULL };
    struct cg_stack_opts o = { 20, 50, 6, fa, false };
    struct cg_stack s;
    if (cg_stack_start(&s, &o, err, sizeof(err))) {
        fprintf(stderr, "bench_latency: %s\n", err);
        return 1;
    }
    const char *const *extra = worker_extra();
    struct cg_harness_proc *w =
        cg_stack_worker(&s, "worker-0", extra, err, sizeof(err));
    int rc = 1;
    if (!w) {
        fprintf(stderr, "bench_latency: %s\n", err);
        goto out;
    }
    /* The fleet is idle and in its group before the first job. */
    for (int i = 0;
         i < 3000 && worker_metric(w, "contactguard_partitions_assigned") < 6;
         i++)
        usleep(10 * 1000);
    one_job(&s, jobs);
    producer_file(&s, 10);
    new_worker(&s, w);
    rc = 0;
out:
    cg_harness_proc_free(w);
    cg_stack_stop(&s);
    curl_global_cleanup();
    return rc;
}
