/*
 * bench_cache — what the cache stage costs per job, over plain TCP and over
 * TLS (redis.tls, as Azure Cache for Redis requires).
 *
 * One job's cache work as the pipeline does it: a lookup before the fetch,
 * a store of four findings after the verdict, the done marker after
 * delivery. JOBS jobs run with IN_FLIGHT at once against a redis-server
 * started by the harness (TLS only for the TLS line, with a password and an
 * ACL user), on one loop as in the worker. Prints one line per transport:
 *
 *   bench=cache transport=tcp|tls jobs=N in_flight=N jobs_per_s=N
 *     cpu_us_per_job=N wall_us_per_job=N round_trips=N jobs_per_round_trip=N
 *
 * cpu_us_per_job is this process's CPU time (user + system) per job: the
 * worker's side of the cost, TLS included. Usage: bench_cache [JOBS]
 * [IN_FLIGHT]. Prints figures; never passes or fails on them.
 */
#include "cache.h"
#include "conf.h"
#include "finding.h"
#include "harness.h"
#include "log.h"
#include "loop.h"
#include "mem.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bench {
    struct cg_cache *cache;
    struct cg_finding f[CG_RULE_COUNT];
    long jobs, started, finished, in_flight_max;
    long in_flight;
    int errors;
};

struct job {
    struct bench *b;
    long id;
    char sub[40], jid[40];
};

static void job_start(struct bench *b);

static void on_done(int err, void *arg)
{
    struct job *j = arg;
    struct bench *b = j->b;
    if (err)
        b->errors++;
    b->finished++;
    b->in_flight--;
    free(j);
    if (b->started < b->jobs)
        job_start(b);
}

static void on_stored(int err, void *arg)
{
    struct job *j = arg;
    if (err)
        j->b->errors++;
    cg_cache_mark_done(j->b->cache, j->jid, on_done, j);
}

static void on_lookup(const struct cg_cache_prev *prev, void *arg)
{
    struct job *j = arg;
    struct bench *b = j->b;
    if (prev->err)
        b->errors++;
    for (int i = 0; i < CG_RULE_COUNT; i++) {
        cg_strlcpy(b->f[i].subscription_id, j->sub,
                   sizeof(b->f[i].subscription_id));
        cg_strlcpy(b->f[i].job_id, j->jid, sizeof(b->f[i].job_id));
    }
    const struct cg_cache_entry e = {
        .tenant_id = b->f[0].tenant_id,
        .subscription_id = j->sub,
        .job_id = j->jid,
        .api_version = "2023-12-01-preview",
        .contacts_hash =
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
        .scan_ms = 1700000000000LL + j->id,
        .findings = b->f,
        .nfindings = CG_RULE_COUNT,
    };
    cg_cache_store(b->cache, &e, on_stored, j);
}

static void job_start(struct bench *b)
{
    struct job *j = cg_calloc(1, sizeof(*j));
    j->b = b;
    j->id = b->started++;
    snprintf(j->sub, sizeof(j->sub), "%08lx-0000-4000-8000-%012lx", j->id % 97,
             j->id);
    snprintf(j->jid, sizeof(j->jid), "bench-%ld-%ld", (long)time(NULL), j->id);
    b->in_flight++;
    cg_cache_lookup(b->cache, b->f[0].tenant_id, j->sub, j->jid, on_lookup, j);
}

static void findings_init(struct cg_finding f[CG_RULE_COUNT])
{
    static const enum cg_status st[] = { CG_STATUS_PASS, CG_STATUS_FAIL,
                                         CG_STATUS_PASS, CG_STATUS_SKIPPED };
    for (int i = 0; i < CG_RULE_COUNT; i++) {
        struct cg_finding *x = &f[i];
        memset(x, 0, sizeof(*x));
        x->previous = CG_STATUS_NONE;
        cg_finding_set(x, (enum cg_rule)i, st[i % 4], "BENCH",
                       "rule %d as a scan finds it", i);
        cg_strlcpy(x->tenant_id, "aaaaaaaa-0000-4000-8000-00000000000a",
                   sizeof(x->tenant_id));
        cg_strlcpy(x->api_version, "2023-12-01-preview",
                   sizeof(x->api_version));
        x->time_ms = 1700000000000LL;
        x->evidence =
            json_pack("{s:[s,s],s:{s:s,s:[s,s]},s:{s:s,s:s}}", "emails",
                      "secops@contoso.example", "soc@contoso.example",
                      "notificationsByRole", "state", "On", "roles", "Owner",
                      "ServiceAdmin", "alertNotifications", "state", "On",
                      "minimalSeverity", "High");
    }
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run(const char *transport, const struct cg_harness_redis_opts *o,
               long jobs, long in_flight)
{
    char err[512];
    int rc = 1;
    struct cg_loop *loop = cg_loop_new(err, sizeof(err));
    struct cg_harness_redis *srv =
        cg_harness_redis_start_opts(o, err, sizeof(err));
    struct cg_conf *conf = cg_conf_new();
    struct bench b = { 0 };
    if (!loop || !srv || cg_harness_redis_conf(srv, conf, err, sizeof(err))) {
        fprintf(stderr, "bench_cache: %s\n", err);
        goto out;
    }
    cg_conf_set(conf, "redis.queue_max", "100000", err, sizeof(err));
    b.cache = cg_cache_new(loop, conf, err, sizeof(err));
    if (!b.cache) {
        fprintf(stderr, "bench_cache: %s\n", err);
        goto out;
    }
    struct cg_cache_stats st;
    do {
        cg_loop_run_once(loop, 20);
        cg_cache_stats(b.cache, &st);
    } while (!st.connected);
    findings_init(b.f);
    b.jobs = jobs;
    uint64_t batches0 = st.batches;
    double c0 = cpu_s(), w0 = wall_s();
    for (long i = 0; i < in_flight && b.started < jobs; i++)
        job_start(&b);
    while (b.finished < jobs)
        cg_loop_run_once(loop, 100);
    double cpu = cpu_s() - c0, wall = wall_s() - w0;
    cg_cache_stats(b.cache, &st);
    uint64_t trips = st.batches - batches0;
    printf("bench=cache transport=%s jobs=%ld in_flight=%ld jobs_per_s=%.0f "
           "cpu_us_per_job=%.1f wall_us_per_job=%.1f round_trips=%llu "
           "jobs_per_round_trip=%.1f errors=%d\n",
           transport, jobs, in_flight, (double)jobs / wall,
           cpu * 1e6 / (double)jobs, wall * 1e6 / (double)jobs,
           (unsigned long long)trips,
           trips ? (double)jobs / (double)trips : 0.0, b.errors);
    fflush(stdout);
    rc = b.errors ? 1 : 0;
out:
    cg_cache_free(b.cache);
    for (int i = 0; i < CG_RULE_COUNT; i++)
        cg_finding_clear(&b.f[i]);
    cg_conf_free(conf);
    cg_harness_redis_free(srv);
    cg_loop_free(loop);
    return rc;
}

int main(int argc, char **argv)
{
    long jobs = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    long in_flight = argc > 2 ? strtol(argv[2], NULL, 10) : 256;
    if (jobs < 1 || in_flight < 1) {
        fprintf(stderr, "usage: bench_cache [JOBS] [IN_FLIGHT]\n");
        return 2;
    }
    cg_log_setup(CG_LOG_WARN, CG_LOG_TEXT, "bench_cache");
    const struct cg_harness_redis_opts plain = { 0 };
    const struct cg_harness_redis_opts tls = {
        .tls = true,
        .password = "bench-cache-default-pass",
        .user = "bench",
        .user_password = "bench-cache-acl-pass",
    };
    int rc = run("tcp", &plain, jobs, in_flight);
    rc |= run("tls", &tls, jobs, in_flight);
    return rc;
}
