/*
 * bench_report — contactguard-report --html on a large cache: how big the
 * page is and how long Chromium takes to open it.
 *
 * usage: bench_report [SUBSCRIPTIONS [TENANTS]]   (default 100000 1000)
 *
 * Seeds a real redis-server through the cache stage (one subscription in
 * five fails a rule when there are four rules, one in fifty is SKIPPED,
 * one in 97 in ERROR), times the report,
 * then opens the page with browser_check.py, which also checks its counts.
 * One line: bench=report subscriptions=N tenants=T seed_s= report_s=
 * html_bytes= load_ms= dom_ms= (load: navigation to the load event).
 */
#include "cache.h"
#include "clock.h"
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CG_BIN_CONTACTGUARD_REPORT
#define CG_BIN_CONTACTGUARD_REPORT "contactguard-report"
#endif
#ifndef CG_BROWSER_CHECK
#define CG_BROWSER_CHECK "browser_check.py"
#endif

#define IN_FLIGHT 2000 /* below redis.queue_max: no store is dropped */
#define WAIT_MS   600000

struct seeding {
    long long done, failed;
};

static void on_done(int err, void *arg)
{
    struct seeding *s = arg;
    s->done++;
    s->failed += err != 0;
}

static int run(const char *name, const char *const *argv, char **out)
{
    char err[256], line[CG_HARNESS_LINE_MAX];
    const struct cg_harness_proc_opts opts = { .name = name,
                                               .line_timeout_ms = -1 };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &opts, err, sizeof(err));
    struct cg_buf b;
    int status = -1, ws = 0;
    cg_buf_init(&b, 1 << 20);
    if (!p) {
        fprintf(stderr, "bench_report: %s: %s\n", name, err);
        goto out;
    }
    while (cg_harness_proc_read_line(p, line, sizeof(line), WAIT_MS) == 0) {
        cg_buf_puts(&b, line);
        cg_buf_puts(&b, "\n");
    }
    if (cg_harness_proc_wait(p, WAIT_MS, &ws) == 0 && WIFEXITED(ws))
        status = WEXITSTATUS(ws);
out:
    *out = b.data ? cg_buf_take(&b) : cg_strdup("");
    cg_harness_proc_free(p);
    return status;
}

int main(int argc, char **argv)
{
    long long nsubs = argc > 1 ? strtoll(argv[1], NULL, 10) : 100000;
    long long ntenants = argc > 2 ? strtoll(argv[2], NULL, 10) : 1000;
    char err[512], dir[] = "/tmp/bench_report.XXXXXX";
    char html[64] = "", expect[64] = "";
    char port[32], *out = NULL;
    long long want[CG_RULE_COUNT][CG_STATUS_NONE] = { { 0 } };
    struct seeding seeding = { 0 };
    struct cg_harness_redis *redis = NULL;
    struct cg_loop *loop = NULL;
    struct cg_conf *conf = cg_conf_new();
    struct cg_cache *cache = NULL;
    int status = 1;
    cg_log_setup(CG_LOG_WARN, CG_LOG_TEXT, "bench_report");
    if (nsubs < 1 || ntenants < 1 || ntenants > nsubs || !mkdtemp(dir)) {
        fprintf(stderr, "usage: bench_report [SUBSCRIPTIONS [TENANTS]]\n");
        goto out;
    }
    redis = cg_harness_redis_start(err, sizeof(err));
    loop = redis ? cg_loop_new(err, sizeof(err)) : NULL;
    if (!loop) {
        fprintf(stderr, "bench_report: %s\n", err);
        goto out;
    }
    snprintf(port, sizeof(port), "%d", cg_harness_redis_port(redis));
    cg_conf_set(conf, "redis.port", port, NULL, 0);
    cache = cg_cache_new(loop, conf, err, sizeof(err));
    if (!cache) {
        fprintf(stderr, "bench_report: %s\n", err);
        goto out;
    }

    long long t0 = cg_now_ms(), issued = 0, listed = 0;
    while (seeding.done < nsubs) {
        while (issued < nsubs && issued - seeding.done < IN_FLIGHT) {
            long long i = issued++;
            char tenant[40], sub[40], job[32];
            struct cg_finding f[CG_RULE_COUNT];
            bool acted = false;
            snprintf(tenant, sizeof(tenant),
                     "%08llx-0000-4000-8000-000000000000", i % ntenants);
            snprintf(sub, sizeof(sub), "%08llx-1111-4111-8111-111111111111", i);
            snprintf(job, sizeof(job), "j%lld", i);
            for (int k = 0; k < CG_RULE_COUNT; k++) {
                enum cg_status st = i % 50 == 7   ? CG_STATUS_SKIPPED
                                    : i % 20 == k ? CG_STATUS_FAIL
                                    : i % 97 == 3 ? CG_STATUS_ERROR
                                                  : CG_STATUS_PASS;
                memset(&f[k], 0, sizeof(f[k]));
                cg_finding_set(&f[k], (enum cg_rule)k, st, "BENCH",
                               "Contact %lld, rule %d: %s.", i, k,
                               cg_status_name(st));
                f[k].evidence =
                    json_pack("{s:[{s:s,s:b}]}", "contacts", "emails",
                              "soc@contoso.example", "enabled", 1);
                want[k][st]++;
                acted |= st != CG_STATUS_PASS;
            }
            listed += acted;
            const struct cg_cache_entry e = { .tenant_id = tenant,
                                              .subscription_id = sub,
                                              .job_id = job,
                                              .api_version =
                                                  "2023-12-01-preview",
                                              .contacts_hash = "",
                                              .scan_ms = t0,
                                              .findings = f,
                                              .nfindings = CG_RULE_COUNT };
            cg_cache_store(cache, &e, on_done, &seeding);
            for (int k = 0; k < CG_RULE_COUNT; k++)
                cg_finding_clear(&f[k]);
        }
        cg_loop_run_once(loop, 100);
    }
    double seed_s = (double)(cg_now_ms() - t0) / 1000.0;
    if (seeding.failed) {
        fprintf(stderr, "bench_report: %lld stores failed\n", seeding.failed);
        goto out;
    }

    snprintf(html, sizeof(html), "%s/report.html", dir);
    char set[48];
    snprintf(set, sizeof(set), "redis.port=%s", port);
    const char *rargv[] = {
        CG_BIN_CONTACTGUARD_REPORT, "--set", set, "--html", html, NULL
    };
    long long t1 = cg_now_ms();
    int st = run("report", rargv, &out);
    double report_s = (double)(cg_now_ms() - t1) / 1000.0;
    free(out);
    if (st != 0) {
        fprintf(stderr, "bench_report: report exit %d\n", st);
        goto out;
    }

    json_t *e = json_object(), *rules = json_object();
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        json_t *c = json_object();
        for (int s = 0; s < CG_STATUS_NONE; s++)
            json_object_set_new(c, cg_status_name((enum cg_status)s),
                                json_integer(want[k][s]));
        json_object_set_new(rules, cg_rule_info((enum cg_rule)k)->id, c);
    }
    json_object_set_new(e, "rules", rules);
    json_object_set_new(e, "subscriptions", json_integer(nsubs));
    if (nsubs > 10000) /* report_html.c lists only what to act on */
        json_object_set_new(e, "listed", json_integer(listed));
    snprintf(expect, sizeof(expect), "%s/expect.json", dir);
    json_dump_file(e, expect, 0);
    json_decref(e);
    const char *bargv[] = { "/usr/bin/python3", CG_BROWSER_CHECK, html, expect,
                            NULL };
    st = run("browser", bargv, &out);
    long long bytes = 0, load_ms = -1, dom_ms = -1;
    const char *line = strstr(out, "browser_check bytes=");
    if (line)
        sscanf(line, "browser_check bytes=%lld load_ms=%lld dom_ms=%lld",
               &bytes, &load_ms, &dom_ms);
    printf("bench=report subscriptions=%lld tenants=%lld seed_s=%.1f "
           "report_s=%.1f html_bytes=%lld load_ms=%lld dom_ms=%lld "
           "checks=%s\n",
           nsubs, ntenants, seed_s, report_s, bytes, load_ms, dom_ms,
           st == 0 ? "ok" : "failed");
    if (st != 0)
        fprintf(stderr, "%s", out);
    free(out);
    status = st == 0 ? 0 : 1;
out:
    cg_cache_free(cache);
    cg_conf_free(conf);
    cg_loop_free(loop);
    cg_harness_redis_free(redis);
    if (html[0])
        unlink(html);
    if (expect[0])
        unlink(expect);
    rmdir(dir);
    return status;
}
