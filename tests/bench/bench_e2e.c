/*
 * End-to-end throughput of the worker fleet: jobs on the jobs topic in,
 * findings on the results topic out, against the fake Azure over HTTPS,
 * the devbroker and a redis-server (the same stack as the integration
 * tests). Prints one parseable line and never fails on a number:
 *
 *   bench=e2e latency_ms=0 subscriptions=20000 workers=1 subs_per_s=...
 *     p50_ms=... p99_ms=... worker_rss_mb=... in_flight_max=...
 *     wall_s=... ceiling_ratio=...
 *
 * usage: bench_e2e SUBSCRIPTIONS LATENCY_MS WORKERS [CEILING_REQ_PER_S]
 * Environment: BENCH_WORKER_SET=key=value (one more --set for the workers),
 * BENCH_FAKE_ARG (one more fake flag), BENCH_PER_TENANT (default 100),
 * BENCH_PLAIN_HTTP=1 (no TLS), BENCH_PARTITIONS (default 6, 24 past
 * 50,000 subscriptions).
 * The rate is measured from the first finished job to the last, so the
 * consumer group's join is not counted; wall_s includes it.
 */
#include "harness.h"
#include "mem.h"
#include "stack.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BENCH_WORKERS_MAX 4
#define BENCH_TIMEOUT_MS  (30 * 60 * 1000)

/* Sums a metric family's sample(s) whose line starts with `prefix`. */
static double metric_sum(const char *text, const char *prefix)
{
    double sum = 0;
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        if (strncmp(p, prefix, pl) == 0) {
            const char *end = nl ? nl : p + strlen(p), *sp = end;
            while (sp > p && sp[-1] != ' ')
                sp--;
            if (sp > p)
                sum += strtod(sp, NULL);
        }
        p = nl ? nl + 1 : NULL;
    }
    return sum;
}

struct hist {
    double le[32];
    double count[32]; /* cumulative */
    int n;
};

static void hist_add(struct hist *h, const char *text)
{
    const char *name = "contactguard_job_duration_seconds_bucket{le=\"";
    int i = 0;
    for (const char *p = strstr(text, name); p; p = strstr(p + 1, name)) {
        const char *v = p + strlen(name);
        double le = strncmp(v, "+Inf", 4) == 0 ? 1e9 : strtod(v, NULL);
        const char *sp = strchr(v, ' ');
        if (!sp || i >= 32)
            break;
        h->le[i] = le;
        h->count[i] += strtod(sp + 1, NULL);
        i++;
    }
    if (i > h->n)
        h->n = i;
}

static double hist_q(const struct hist *h, double q)
{
    if (h->n == 0 || h->count[h->n - 1] == 0)
        return 0;
    double want = q * h->count[h->n - 1];
    for (int i = 0; i < h->n; i++)
        if (h->count[i] >= want)
            return h->le[i] * 1000.0;
    return h->le[h->n - 1] * 1000.0;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = 0;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_e2e SUBSCRIPTIONS LATENCY_MS WORKERS "
                        "[CEILING_REQ_PER_S]\n");
        return 2;
    }
    long subs = strtol(argv[1], NULL, 10);
    long latency = strtol(argv[2], NULL, 10);
    int nworkers = (int)strtol(argv[3], NULL, 10);
    double ceiling = argc > 4 ? strtod(argv[4], NULL) : 0;
    if (subs < 100 || nworkers < 1 || nworkers > BENCH_WORKERS_MAX) {
        fprintf(stderr, "bench_e2e: 100+ subscriptions, 1-%d workers\n",
                BENCH_WORKERS_MAX);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char err[512], lat[32];
    snprintf(lat, sizeof(lat), "%ld", latency);
    int per =
        getenv("BENCH_PER_TENANT") ? atoi(getenv("BENCH_PER_TENANT")) : 100;
    int tenants = (int)((subs + per - 1) / per);
    const char *fake_args[] = { "--latency-ms",           lat, "--seed", "7",
                                getenv("BENCH_FAKE_ARG"), NULL };
    /* BENCH_PLAIN_HTTP=1 takes TLS out of the picture. */
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
    fprintf(stderr, "bench_e2e: %zu subscriptions in %d tenants, %ld ms\n",
            s.nsubs, tenants, latency);
    /* Every job is on the topic before the workers start: the figure is
     * the fleet's, not the job source's. */
    if (cg_stack_produce_jobs(&s, 0, err, sizeof(err))) {
        fprintf(stderr, "bench_e2e: produce: %s\n", err);
        cg_stack_stop(&s);
        return 1;
    }
    struct cg_harness_proc *w[BENCH_WORKERS_MAX] = { NULL };
    int64_t start = cg_harness_now_ms(), t_first = 0, t_last = 0;
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
    double done = 0, first_done = -1, in_flight_max = 0;
    struct hist h;
    while (cg_harness_now_ms() - start < BENCH_TIMEOUT_MS) {
        double total = 0, inflight = 0;
        memset(&h, 0, sizeof(h));
        for (int i = 0; i < nworkers; i++) {
            char url[160];
            long st;
            snprintf(url, sizeof(url), "http://%s/metrics",
                     cg_stack_worker_metrics(w[i]));
            char *text = cg_stack_http_get(url, NULL, &st);
            if (!text)
                continue;
            total += metric_sum(text, "contactguard_jobs_total{");
            inflight += metric_sum(text, "contactguard_arm_requests_in_flight");
            hist_add(&h, text);
            free(text);
        }
        if (inflight > in_flight_max)
            in_flight_max = inflight;
        int64_t now = cg_harness_now_ms();
        if (first_done < 0 && total > 0) {
            first_done = total;
            t_first = now;
        }
        done = total;
        if (done >= (double)s.nsubs) {
            t_last = now;
            break;
        }
        usleep(100 * 1000); /* a sampling period, not a synchronisation */
    }
    long rss = 0;
    for (int i = 0; i < nworkers; i++) {
        long r = rss_kb(cg_harness_proc_pid(w[i]));
        if (r > rss)
            rss = r;
    }
    if (t_last == 0) {
        fprintf(stderr, "bench_e2e: only %.0f of %zu jobs finished\n", done,
                s.nsubs);
        goto out;
    }
    double secs = (double)(t_last - t_first) / 1000.0;
    double rate = secs > 0 ? ((double)s.nsubs - first_done) / secs : 0;
    printf("bench=e2e latency_ms=%ld subscriptions=%zu workers=%d "
           "subs_per_s=%.0f p50_ms=%.1f p99_ms=%.1f worker_rss_mb=%.1f "
           "in_flight_max=%.0f wall_s=%.1f",
           latency, s.nsubs, nworkers, rate, hist_q(&h, 0.5), hist_q(&h, 0.99),
           (double)rss / 1024.0, in_flight_max,
           (double)(t_last - start) / 1000.0);
    if (ceiling > 0)
        printf(" ceiling_ratio=%.3f", rate / ceiling);
    printf("\n");
    fflush(stdout);
out:
    for (int i = 0; i < nworkers; i++)
        cg_harness_proc_free(w[i]);
    cg_stack_stop(&s);
    curl_global_cleanup();
    return t_last ? 0 : 1;
}
