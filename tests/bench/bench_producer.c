/*
 * bench_producer — how fast a sweep turns tenants into delivered jobs.
 *
 * The whole local fleet through the test harness (fake Azure over plain
 * HTTP without throttling, the devbroker, redis-server), then one
 * `contactguard-producer sweep --force --json` under /usr/bin/time. Prints
 * one line:
 *   bench=producer_sweep tenants=N subscriptions=N page_size=N jobs=N
 *   seconds=S jobs_per_s=R peak_rss_kb=K
 * Never passes or fails on the numbers; exits 1 only when the sweep failed.
 * usage: bench_producer [TENANTS] [SUBS_PER_TENANT] [PAGE_SIZE]
 */
#include "harness.h"
#include "stack.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    int tenants = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 1000;
    int subs = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 100;
    const char *page = argc > 3 ? argv[3] : "100";
    char err[1024];
    const char *fa[] = { "--no-throttle", "--page-size", page, NULL };
    struct cg_stack s;
    struct cg_stack_opts o = { .tenants = tenants,
                               .subs_per_tenant = subs,
                               .partitions = 6,
                               .fake_args = fa,
                               .plain_http = true };
    if (cg_stack_start(&s, &o, err, sizeof(err))) {
        fprintf(stderr, "bench_producer: %s\n", err);
        return 1;
    }
    char bs[300], rp[64];
    snprintf(bs, sizeof(bs), "kafka.bootstrap.servers=%s",
             cg_harness_devbroker_bootstrap(s.kafka));
    snprintf(rp, sizeof(rp), "redis.port=%d", cg_harness_redis_port(s.redis));
    const char *argv2[] = { "/usr/bin/time",
                            "-f",
                            "peak_rss_kb=%M",
                            CG_BIN_CONTACTGUARD_PRODUCER,
                            "sweep",
                            "--force",
                            "--json",
                            "--config",
                            s.creds,
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
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv2, &po, err, sizeof(err));
    int status = -1, rc = 1;
    char line[CG_HARNESS_LINE_MAX];
    json_t *sum = NULL;
    if (p && cg_harness_proc_wait(p, 600000, &status) == 0) {
        while (cg_harness_proc_read_line(p, line, sizeof(line), 30000) == 0) {
            if (strstr(line, "contactguard.producer.summary/1")) {
                json_decref(sum);
                sum = json_loads(line, 0, NULL);
            }
        }
    }
    long rss = 0;
    FILE *f = p ? fopen(cg_harness_proc_stderr_path(p), "r") : NULL;
    while (f && fgets(line, sizeof(line), f))
        sscanf(line, "peak_rss_kb=%ld", &rss);
    if (f)
        fclose(f);
    if (sum && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        json_t *jobs = json_object_get(sum, "jobs");
        long long n = json_integer_value(json_object_get(jobs, "delivered"));
        double secs =
            (double)json_integer_value(json_object_get(sum, "elapsed_ms")) /
            1000.0;
        printf("bench=producer_sweep tenants=%d subscriptions=%d "
               "page_size=%s jobs=%lld seconds=%.2f jobs_per_s=%.0f "
               "peak_rss_kb=%ld\n",
               tenants, tenants * subs, page, n, secs,
               secs > 0 ? (double)n / secs : 0.0, rss);
        rc = 0;
    } else {
        fprintf(stderr, "bench_producer: the sweep failed (status %d)\n",
                status);
    }
    json_decref(sum);
    cg_harness_proc_free(p);
    cg_stack_stop(&s);
    return rc;
}
