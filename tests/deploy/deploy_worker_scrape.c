/*
 * deploy_worker_scrape — what Prometheus and the kubelet see of a worker
 * that has done real work, for tests/deploy/check_metrics.py.
 *
 *   deploy_worker_scrape OUTDIR PATH...
 *
 * Starts the stack (devbroker, redis-server, the fake Azure over HTTPS)
 * and one contactguard-worker through the harness, produces a job for
 * every subscription and two undecodable messages, waits until every
 * finding is on the results topic and /metrics counts the dead letters
 * (some series move only after such events), then GETs each PATH from the
 * worker's metrics address and writes OUTDIR/PATH-as-file (the body) and
 * one "PATH STATUS" line per path to OUTDIR/status.txt. Stops everything.
 */
#include "../check.h"
#include "finding.h"
#include "harness.h"
#include "stack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 120000
#define POISON  2

/* Polls /metrics until it holds the sample line `want` or the deadline. */
static bool metrics_show(const char *addr, const char *want, int timeout_ms)
{
    char url[160];
    snprintf(url, sizeof(url), "http://%s/metrics", addr);
    int64_t end = cg_harness_now_ms() + timeout_ms;
    for (;;) {
        long st = 0;
        char *body = cg_stack_http_get(url, NULL, &st);
        const char *at = body ? strstr(body, want) : NULL;
        bool ok =
            at && (at == body || at[-1] == '\n') && at[strlen(want)] == '\n';
        free(body);
        if (ok)
            return true;
        if (cg_harness_now_ms() > end)
            return false;
        usleep(100 * 1000); /* the worker counts asynchronously */
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: deploy_worker_scrape OUTDIR PATH...\n");
        return 2;
    }
    const char *outdir = argv[1];
    char err[512];
    struct cg_stack s;
    struct cg_stack_opts o = { 3, 4, 0, NULL, false };
    int rc = cg_stack_start(&s, &o, err, sizeof(err));
    CHECK(rc == 0, "stack: %s", err);
    if (rc)
        return check_done("deploy_worker_scrape");

    struct cg_harness_proc *w =
        cg_stack_worker(&s, "worker", NULL, err, sizeof(err));
    CHECK(w != NULL, "worker: %s", err);
    const char *addr = w ? cg_stack_worker_metrics(w) : NULL;
    CHECK(addr != NULL, "no metrics address in the worker's ready line");
    if (!addr)
        goto out;

    rc = cg_stack_produce_jobs(&s, POISON, err, sizeof(err));
    CHECK(rc == 0, "produce jobs: %s", err);
    struct cg_harness_msgs m;
    memset(&m, 0, sizeof(m));
    size_t want = s.nsubs * CG_RULE_COUNT;
    rc = cg_harness_kafka_consume(cg_harness_devbroker_bootstrap(s.kafka),
                                  "contactguard.results", want, WAIT_MS, &m,
                                  err, sizeof(err));
    CHECK(rc == 0 && m.n >= want, "waited for %zu findings, have %zu (%s)",
          want, m.n, rc ? err : "");
    cg_harness_msgs_free(&m);
    char line[96];
    snprintf(line, sizeof(line),
             "contactguard_jobs_total{outcome=\"dead_letter\"} %d", POISON);
    CHECK(metrics_show(addr, line, WAIT_MS), "/metrics never showed '%s'",
          line);

    char path[1024];
    snprintf(path, sizeof(path), "%s/status.txt", outdir);
    FILE *status = fopen(path, "w");
    CHECK(status != NULL, "cannot write %s", path);
    for (int i = 2; status && i < argc; i++) {
        char url[512];
        long st = 0;
        snprintf(url, sizeof(url), "http://%s%s", addr, argv[i]);
        char *body = cg_stack_http_get(url, NULL, &st);
        fprintf(status, "%s %ld\n", argv[i], st);
        char name[256];
        size_t n = 0;
        for (const char *p = argv[i] + 1; *p && n + 1 < sizeof(name); p++)
            name[n++] = *p == '/' ? '_' : *p;
        name[n] = '\0';
        snprintf(path, sizeof(path), "%s/%s.txt", outdir, name);
        write_file(path, body ? body : "");
        free(body);
    }
    if (status)
        fclose(status);
out:
    if (w)
        cg_harness_proc_stop(w, 30000);
    cg_harness_proc_free(w);
    cg_stack_stop(&s);
    return check_done("deploy_worker_scrape");
}
