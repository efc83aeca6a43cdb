/*
 * End-to-end figures of the fleet against the fake Azure over HTTPS, the
 * devbroker and a redis-server (the same stack as the integration tests).
 * Never fails on a number. Two modes:
 *
 *   sweep      what a user waits for: the workers idle in their group, then
 *              `contactguard-producer sweep` (tokens, listing, jobs) and
 *              the clock runs from its start to the last finished job.
 *   preloaded  every job already on the topic before the workers start;
 *              the rate counts from the first finished job to the last
 *              (the fleet alone, without the sweep or the group's join).
 *
 * One line for the run, then one per process (producer, each worker,
 * broker, redis-server, fake Azure), CPU from /proc or /usr/bin/time:
 *
 *   bench=e2e mode=sweep latency_ms=0 subscriptions=10000 jobs=9706
 *     workers=1 subs_per_s=... wall_s=... p50_ms=... p99_ms=...
 *     cpu_ms_per_sub=... in_flight_max=...
 *   bench=e2e_proc mode=sweep ... proc=worker-0 cpu_s=...
 *     cpu_s_per_1k=... peak_rss_mb=...
 *
 * cpu_ms_per_sub counts contactguard's own processes (producer, workers,
 * broker, redis-server), not the fake Azure. arm_reads_per_sub is what
 * the fake answered to securityContacts and roleAssignments LISTs (pages
 * and retries included) per subscription: 2 with owner-reachable on (the
 * default), 1 with BENCH_WORKER_SET=rules.owner_reachable.enabled=false. With
 * BENCH_PEER=peer.py (sweep mode) the peer scanner then reads the same
 * population on the same fake: bench=peer and bench=peer_proc lines with the
 * same columns, and bench=ratio (contactguard against the peer, in this one
 * run).
 *
 * usage: bench_e2e MODE SUBSCRIPTIONS LATENCY_MS WORKERS [CEILING_REQ_PER_S]
 * Environment: BENCH_WORKER_SET=key=value (one more --set for the workers),
 * BENCH_FAKE_ARG (one more fake flag), BENCH_PER_TENANT (default 50),
 * BENCH_PLAIN_HTTP=1 (no TLS), BENCH_PARTITIONS (default 6, 24 past
 * 50,000 subscriptions), BENCH_PEER_INFLIGHT (default 256).
 */
#include "harness.h"
#include "measure.h"
#include "mem.h"
#include "stack.h"

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BENCH_WORKERS_MAX 4
#define BENCH_PROCS_MAX   (BENCH_WORKERS_MAX + 4)
#define BENCH_TIMEOUT_MS  (30 * 60 * 1000)
#define BENCH_POLL_US     (20 * 1000) /* a sampling period, not a sync */
/* The peer decides the four contact rules, not owner-reachable. */
#define PEER_RULES 4

/* CG_PRODUCER runs another build's producer (old against new). */
static const char *producer_bin(void)
{
    const char *bin = getenv("CG_PRODUCER");
    return bin && *bin ? bin : CG_BIN_CONTACTGUARD_PRODUCER;
}

struct proc_cpu {
    char name[32];
    pid_t pid;        /* 0: measured by /usr/bin/time instead */
    double cpu0, cpu; /* at the start; spent during the run */
    long rss_kb;
    bool own; /* one of contactguard's processes (not the fake) */
};

struct run {
    const char *mode;
    long latency;
    size_t subs, jobs;
    int nworkers;
    double secs, rate, p50, p99, in_flight_max;
    double reads_per_sub; /* contacts and role assignments reads */
    struct proc_cpu procs[BENCH_PROCS_MAX];
    int nprocs;
};

static struct proc_cpu *proc_add(struct run *r, const char *name, pid_t pid,
                                 bool own)
{
    struct proc_cpu *p = &r->procs[r->nprocs++];
    memset(p, 0, sizeof(*p));
    cg_strlcpy(p->name, name, sizeof(p->name));
    p->pid = pid;
    p->own = own;
    p->cpu0 = pid ? measure_cpu_s(pid) : 0;
    return p;
}

static void procs_end(struct run *r)
{
    for (int i = 0; i < r->nprocs; i++) {
        struct proc_cpu *p = &r->procs[i];
        if (!p->pid)
            continue;
        p->cpu = measure_cpu_s(p->pid) - p->cpu0;
        p->rss_kb = measure_hwm_kb(p->pid);
    }
}

static double own_cpu(const struct run *r, const char *only)
{
    double s = 0;
    for (int i = 0; i < r->nprocs; i++)
        if (r->procs[i].own &&
            (!only || !strncmp(r->procs[i].name, only, strlen(only))))
            s += r->procs[i].cpu;
    return s;
}

static void print_run(const char *bench, const struct run *r)
{
    double per = r->jobs ? 1000.0 / (double)r->jobs : 0;
    printf("bench=%s mode=%s latency_ms=%ld subscriptions=%zu jobs=%zu "
           "workers=%d subs_per_s=%.0f wall_s=%.2f p50_ms=%.1f p99_ms=%.1f "
           "cpu_ms_per_sub=%.3f in_flight_max=%.0f arm_reads_per_sub=%.2f\n",
           bench, r->mode, r->latency, r->subs, r->jobs, r->nworkers, r->rate,
           r->secs, r->p50, r->p99, own_cpu(r, NULL) * per, r->in_flight_max,
           r->reads_per_sub);
    for (int i = 0; i < r->nprocs; i++) {
        const struct proc_cpu *p = &r->procs[i];
        printf("bench=%s_proc mode=%s latency_ms=%ld subscriptions=%zu "
               "workers=%d proc=%s cpu_s=%.2f cpu_s_per_1k=%.3f "
               "peak_rss_mb=%.1f\n",
               bench, r->mode, r->latency, r->subs, r->nworkers, p->name,
               p->cpu, p->cpu * per, (double)p->rss_kb / 1024.0);
    }
    fflush(stdout);
}

/* Sums the workers' metrics: jobs done, in flight, assigned partitions,
 * the job duration histogram. */
struct fleet {
    double done, in_flight, partitions;
    struct measure_hist h;
};

static void fleet_read(struct cg_harness_proc **w, int n, struct fleet *f)
{
    memset(f, 0, sizeof(*f));
    for (int i = 0; i < n; i++) {
        char url[160];
        long st;
        snprintf(url, sizeof(url), "http://%s/metrics",
                 cg_stack_worker_metrics(w[i]));
        char *text = cg_stack_http_get(url, NULL, &st);
        if (!text)
            continue;
        f->done += measure_metric_sum(text, "contactguard_jobs_total{");
        f->in_flight +=
            measure_metric_sum(text, "contactguard_arm_requests_in_flight");
        f->partitions +=
            measure_metric_sum(text, "contactguard_partitions_assigned");
        measure_hist_add(&f->h, text, "contactguard_job_duration_seconds");
        free(text);
    }
}

/* The producer's summary line: jobs delivered, or -1. */
static long sweep_delivered(struct cg_harness_proc *p)
{
    char line[CG_HARNESS_LINE_MAX];
    long n = -1;
    while (cg_harness_proc_read_line(p, line, sizeof(line), 1000) == 0) {
        if (!strstr(line, "contactguard.producer.summary/1"))
            continue;
        json_t *sum = json_loads(line, 0, NULL);
        json_t *jobs = json_object_get(sum, "jobs");
        if (jobs)
            n = (long)json_integer_value(json_object_get(jobs, "delivered"));
        json_decref(sum);
    }
    return n;
}

static struct cg_harness_proc *start_sweep(struct cg_stack *s, char *err,
                                           size_t errsz)
{
    char bs[300], rp[64];
    snprintf(bs, sizeof(bs), "kafka.bootstrap.servers=%s",
             cg_harness_devbroker_bootstrap(s->kafka));
    snprintf(rp, sizeof(rp), "redis.port=%d", cg_harness_redis_port(s->redis));
    const char *argv[] = { "/usr/bin/time",
                           "-f",
                           MEASURE_TIME_FORMAT,
                           producer_bin(),
                           "sweep",
                           "--force",
                           "--json",
                           "--config",
                           s->creds,
                           "--set",
                           bs,
                           "--set",
                           rp,
                           "--set",
                           "log.level=warn",
                           "--set",
                           "producer.tenant_concurrency=64",
                           NULL };
    struct cg_harness_proc_opts po = { .name = "producer",
                                       .line_timeout_ms = -1 };
    return cg_harness_proc_start(argv, &po, err, errsz);
}

/*
 * Runs the fleet until `want` jobs are done (want < 0: until the sweep
 * says how many it delivered). Fills r's timing and quantiles.
 */
static int drive(struct cg_harness_proc **w, int nworkers,
                 struct cg_harness_proc *sweep, long want, int64_t t0,
                 struct run *r)
{
    struct fleet f;
    int64_t t_first = 0;
    double first_done = -1;
    while (cg_harness_now_ms() - t0 < BENCH_TIMEOUT_MS) {
        fleet_read(w, nworkers, &f);
        if (f.in_flight > r->in_flight_max)
            r->in_flight_max = f.in_flight;
        int64_t now = cg_harness_now_ms();
        if (first_done < 0 && f.done > 0) {
            first_done = f.done;
            t_first = now;
        }
        if (want < 0 && sweep && !cg_harness_proc_running(sweep)) {
            want = sweep_delivered(sweep);
            if (want < 0) {
                fprintf(stderr, "bench_e2e: the sweep failed\n");
                return -1;
            }
        }
        if (want >= 0 && f.done >= (double)want) {
            r->jobs = (size_t)want;
            if (sweep) {
                r->secs = (double)(now - t0) / 1000.0;
                r->rate = r->secs > 0 ? (double)want / r->secs : 0;
            } else {
                r->secs = (double)(now - t_first) / 1000.0;
                r->rate =
                    r->secs > 0 ? ((double)want - first_done) / r->secs : 0;
            }
            r->p50 = measure_hist_q_ms(&f.h, 0.5);
            r->p99 = measure_hist_q_ms(&f.h, 0.99);
            return 0;
        }
        usleep(BENCH_POLL_US);
    }
    fprintf(stderr, "bench_e2e: only %.0f of %ld jobs finished\n", f.done,
            want);
    return -1;
}

/* Every worker has its partitions: the fleet is idle and in its group. */
static int wait_assigned(struct cg_harness_proc **w, int nworkers, int parts)
{
    struct fleet f;
    int64_t t0 = cg_harness_now_ms();
    while (cg_harness_now_ms() - t0 < 60000) {
        fleet_read(w, nworkers, &f);
        if (f.partitions >= parts)
            return 0;
        usleep(BENCH_POLL_US);
    }
    fprintf(stderr, "bench_e2e: the workers never took all %d partitions\n",
            parts);
    return -1;
}

/* The fake's answers so far to the reads a job makes: securityContacts
 * and roleAssignments LISTs, every status. */
static double fake_reads(struct cg_stack *s)
{
    static const char *const routes[] = { "contacts.list", "roles.list" };
    double n = 0;
    json_t *stats = cg_stack_fake_json(s, "stats");
    json_t *byroute = json_object_get(stats, "requests");
    for (size_t k = 0; k < sizeof(routes) / sizeof(routes[0]); k++) {
        const char *code;
        json_t *v;
        json_object_foreach(json_object_get(byroute, routes[k]), code, v)
        {
            n += (double)json_integer_value(v);
        }
    }
    json_decref(stats);
    return n;
}

/* How many of the peer's findings agree with the fake's truth. */
static void peer_check(struct cg_stack *s, const char *path, size_t *agree,
                       size_t *total)
{
    *agree = *total = 0;
    FILE *f = fopen(path, "r");
    char line[8192];
    size_t at = 0;
    while (f && fgets(line, sizeof(line), f)) {
        json_t *o = json_loads(line, 0, NULL);
        const char *sub = json_string_value(json_object_get(o, "subscription"));
        enum cg_rule rule =
            cg_rule_parse(json_string_value(json_object_get(o, "rule")));
        enum cg_status st =
            cg_status_parse(json_string_value(json_object_get(o, "status")));
        (*total)++;
        /* Findings of a subscription come together; look from the last. */
        for (size_t k = 0; sub && rule < CG_RULE_COUNT && k < s->nsubs; k++) {
            size_t i = (at + k) % s->nsubs;
            if (!strcmp(s->subs[i].sub, sub)) {
                at = i;
                *agree += s->subs[i].want[rule] == st;
                break;
            }
        }
        json_decref(o);
    }
    if (f)
        fclose(f);
}

static int run_peer(struct cg_stack *s, const struct run *cg, struct run *r)
{
    const char *script = getenv("BENCH_PEER");
    const char *inflight = getenv("BENCH_PEER_INFLIGHT");
    char out[700], err[512];
    snprintf(out, sizeof(out), "%s/peer-findings.jsonl", s->dir);
    const char *argv[] = { "/usr/bin/time",
                           "-f",
                           MEASURE_TIME_FORMAT,
                           "/usr/bin/python3",
                           script,
                           "--url",
                           s->base,
                           "--ca",
                           s->ca,
                           "--config",
                           s->creds,
                           "--out",
                           out,
                           "--in-flight",
                           inflight ? inflight : "256",
                           NULL };
    memset(r, 0, sizeof(*r));
    double reads0 = fake_reads(s);
    r->mode = cg->mode;
    r->latency = cg->latency;
    r->subs = cg->subs;
    proc_add(r, "fakeazure", cg_harness_proc_pid(s->fake), false);
    struct proc_cpu *py = proc_add(r, "python", 0, true);
    struct cg_harness_proc_opts po = { .name = "peer", .line_timeout_ms = -1 };
    int64_t t0 = cg_harness_now_ms();
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &po, err, sizeof(err));
    int status = -1, rc = -1;
    if (!p || cg_harness_proc_wait(p, BENCH_TIMEOUT_MS, &status) != 0 ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_e2e: the peer failed: %s\n",
                p ? cg_harness_proc_stderr_path(p) : err);
        goto out;
    }
    r->secs = (double)(cg_harness_now_ms() - t0) / 1000.0;
    procs_end(r);
    struct measure_time mt = { 0 };
    measure_time_read(cg_harness_proc_stderr_path(p), &mt);
    py->cpu = mt.cpu_s;
    py->rss_kb = mt.rss_kb;
    char line[CG_HARNESS_LINE_MAX];
    while (cg_harness_proc_read_line(p, line, sizeof(line), 1000) == 0) {
        json_t *o = json_loads(line, 0, NULL);
        if (json_object_get(o, "subscriptions")) {
            r->jobs =
                (size_t)json_integer_value(json_object_get(o, "subscriptions"));
            r->p50 = json_number_value(json_object_get(o, "p50_ms"));
            r->p99 = json_number_value(json_object_get(o, "p99_ms"));
            r->in_flight_max =
                json_number_value(json_object_get(o, "in_flight_max"));
        }
        json_decref(o);
    }
    r->rate = r->secs > 0 ? (double)r->jobs / r->secs : 0;
    r->reads_per_sub = r->jobs ? (fake_reads(s) - reads0) / (double)r->jobs : 0;
    size_t agree, total;
    peer_check(s, out, &agree, &total);
    print_run("peer", r);
    printf("bench=peer_check latency_ms=%ld findings=%zu agree_with_truth=%zu "
           "expected=%zu\n",
           r->latency, total, agree, r->jobs * PEER_RULES);
    double cg_per = cg->jobs ? own_cpu(cg, NULL) / (double)cg->jobs : 0;
    double cgw_per = cg->jobs ? own_cpu(cg, "worker") / (double)cg->jobs : 0;
    double peer_per = r->jobs ? own_cpu(r, NULL) / (double)r->jobs : 0;
    printf(
        "bench=ratio latency_ms=%ld subscriptions=%zu workers=%d "
        "cpu_per_sub=%.3f worker_cpu_per_sub=%.3f throughput=%.2f "
        "cg_cpu_ms_per_sub=%.3f peer_cpu_ms_per_sub=%.3f "
        "cg_subs_per_s=%.0f peer_subs_per_s=%.0f cg_rules=%d "
        "peer_rules=%d\n",
        r->latency, r->subs, cg->nworkers, peer_per > 0 ? cg_per / peer_per : 0,
        peer_per > 0 ? cgw_per / peer_per : 0,
        r->rate > 0 ? cg->rate / r->rate : 0, cg_per * 1000.0,
        peer_per * 1000.0, cg->rate, r->rate, (int)CG_RULE_COUNT, PEER_RULES);
    fflush(stdout);
    rc = 0;
out:
    cg_harness_proc_free(p);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench_e2e sweep|preloaded SUBSCRIPTIONS "
                        "LATENCY_MS WORKERS [CEILING_REQ_PER_S]\n");
        return 2;
    }
    const char *mode = argv[1];
    long subs = strtol(argv[2], NULL, 10);
    long latency = strtol(argv[3], NULL, 10);
    int nworkers = (int)strtol(argv[4], NULL, 10);
    double ceiling = argc > 5 ? strtod(argv[5], NULL) : 0;
    bool sweep = !strcmp(mode, "sweep");
    if ((!sweep && strcmp(mode, "preloaded")) || subs < 100 || nworkers < 1 ||
        nworkers > BENCH_WORKERS_MAX) {
        fprintf(stderr,
                "bench_e2e: sweep or preloaded, 100+ subscriptions, "
                "1-%d workers\n",
                BENCH_WORKERS_MAX);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char err[512], lat[32];
    snprintf(lat, sizeof(lat), "%ld", latency);
    const char *per_s = getenv("BENCH_PER_TENANT");
    int per = per_s ? (int)strtol(per_s, NULL, 10) : 50;
    if (per < 1)
        per = 50;
    int tenants = (int)((subs + per - 1) / per);
    const char *fake_args[] = { "--latency-ms",           lat, "--seed", "7",
                                getenv("BENCH_FAKE_ARG"), NULL };
    bool plain =
        getenv("BENCH_PLAIN_HTTP") && *getenv("BENCH_PLAIN_HTTP") == '1';
    /* librdkafka's mock broker keeps about 5 MB per partition and drops
     * older messages: enough partitions keep a backlog of 100,000 jobs. */
    const char *parts_s = getenv("BENCH_PARTITIONS");
    int parts = parts_s ? (int)strtol(parts_s, NULL, 10) : 0;
    if (parts < 1)
        parts = subs > 50000 ? 24 : 6;
    struct cg_stack_opts o = { tenants, per, parts, fake_args, plain };
    struct cg_stack s;
    if (cg_stack_start(&s, &o, err, sizeof(err))) {
        fprintf(stderr, "bench_e2e: %s\n", err);
        return 1;
    }
    fprintf(stderr, "bench_e2e: %s, %zu subscriptions in %d tenants, %ld ms\n",
            mode, s.nsubs, tenants, latency);
    struct run r = {
        .mode = mode, .latency = latency, .subs = s.nsubs, .nworkers = nworkers
    };
    struct cg_harness_proc *w[BENCH_WORKERS_MAX] = { NULL };
    struct cg_harness_proc *sw = NULL;
    int rc = 1;
    long want = -1;
    if (!sweep) {
        if (cg_stack_produce_jobs(&s, 0, err, sizeof(err))) {
            fprintf(stderr, "bench_e2e: produce: %s\n", err);
            goto out;
        }
        want = (long)s.nsubs;
    }
    int64_t t0 = cg_harness_now_ms();
    for (int i = 0; i < nworkers; i++) {
        char name[32];
        snprintf(name, sizeof(name), "worker-%d", i);
        const char *env_extra = getenv("BENCH_WORKER_SET");
        const char *extra[] = { "--set", "log.level=warn",
                                env_extra ? "--set" : NULL, env_extra, NULL };
        if (!(w[i] = cg_stack_worker(&s, name, extra, err, sizeof(err)))) {
            fprintf(stderr, "bench_e2e: %s: %s\n", name, err);
            goto out;
        }
    }
    if (sweep && wait_assigned(w, nworkers, parts))
        goto out;
    struct proc_cpu *prod = sweep ? proc_add(&r, "producer", 0, true) : NULL;
    for (int i = 0; i < nworkers; i++) {
        char name[32];
        snprintf(name, sizeof(name), "worker-%d", i);
        proc_add(&r, name, cg_harness_proc_pid(w[i]), true);
    }
    proc_add(&r, "broker",
             cg_harness_proc_pid(cg_harness_devbroker_proc(s.kafka)), true);
    proc_add(&r, "redis-server",
             cg_harness_proc_pid(cg_harness_redis_proc(s.redis)), true);
    proc_add(&r, "fakeazure", cg_harness_proc_pid(s.fake), false);
    if (sweep) {
        t0 = cg_harness_now_ms();
        if (!(sw = start_sweep(&s, err, sizeof(err)))) {
            fprintf(stderr, "bench_e2e: sweep: %s\n", err);
            goto out;
        }
    }
    if (drive(w, nworkers, sw, want, t0, &r))
        goto out;
    procs_end(&r);
    r.reads_per_sub = r.jobs ? fake_reads(&s) / (double)r.jobs : 0;
    if (prod) {
        struct measure_time mt = { 0 };
        cg_harness_proc_wait(sw, 10000, NULL);
        measure_time_read(cg_harness_proc_stderr_path(sw), &mt);
        prod->cpu = mt.cpu_s;
        prod->rss_kb = mt.rss_kb;
    }
    print_run(sweep ? "e2e" : "e2e_preloaded", &r);
    if (ceiling > 0)
        printf("bench=e2e_ceiling mode=%s latency_ms=%ld workers=%d "
               "ceiling_ratio=%.3f\n",
               mode, latency, nworkers, r.rate / ceiling);
    rc = 0;
    if (sweep && getenv("BENCH_PEER") && *getenv("BENCH_PEER")) {
        struct run peer;
        for (int i = 0; i < nworkers; i++) {
            cg_harness_proc_free(w[i]);
            w[i] = NULL;
        }
        /* The fleet's figures stand even when the peer cannot run. */
        if (run_peer(&s, &r, &peer))
            printf("bench=peer latency_ms=%ld workers=%d error=failed\n",
                   latency, nworkers);
    }
out:
    cg_harness_proc_free(sw);
    for (int i = 0; i < nworkers; i++)
        cg_harness_proc_free(w[i]);
    cg_stack_stop(&s);
    curl_global_cleanup();
    return rc;
}
