/*
 * it_report — contactguard-report on a cache seeded through the cache
 * stage, against a real redis-server. Counts, percentages, the top failing
 * tenants and the changes are asserted exactly, in text and in JSON.
 */
#include "cache.h"
#include "check.h"
#include "clock.h"
#include "conf.h"
#include "err.h"
#include "finding.h"
#include "harness.h"
#include "log.h"
#include "loop.h"
#include "mem.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifndef CG_BIN_CONTACTGUARD_REPORT
#define CG_BIN_CONTACTGUARD_REPORT "contactguard-report"
#endif

#define WAIT_MS 15000
#define TA      "aaaaaaaa-0000-4000-8000-00000000000a"
#define TB      "bbbbbbbb-0000-4000-8000-00000000000b"
#define TC      "cccccccc-0000-4000-8000-00000000000c"
#define S1      "11111111-1111-4111-8111-111111111111"
#define S2      "22222222-2222-4222-8222-222222222222"
#define S3      "33333333-3333-4333-8333-333333333333"
#define S4      "44444444-4444-4444-8444-444444444444"
#define S5      "55555555-5555-4555-8555-555555555555"
#define S6      "66666666-6666-4666-8666-666666666666"

static struct cg_harness_redis *redis;

static void on_done(int err, void *arg)
{
    *(int *)arg = err == 0 ? 1 : -1;
}

/* Stores one scan with the cache stage and waits for it to land. */
static void seed(struct cg_loop *loop, struct cg_cache *cache,
                 const char *tenant, const char *sub, const char *job,
                 long long scan_ms, const char *codes)
{
    struct cg_finding f[CG_RULE_COUNT];
    size_t n = 0;
    for (int i = 0; i < CG_RULE_COUNT; i++) {
        const char *pos = strchr("PFES", codes[i]);
        if (!pos || !*pos)
            continue;
        memset(&f[n], 0, sizeof(f[n]));
        cg_finding_set(&f[n], (enum cg_rule)i, (enum cg_status)(pos - "PFES"),
                       "SEEDED", "seeded");
        cg_strlcpy(f[n].subscription_id, sub, sizeof(f[n].subscription_id));
        cg_strlcpy(f[n].tenant_id, tenant, sizeof(f[n].tenant_id));
        n++;
    }
    const struct cg_cache_entry e = { .tenant_id = tenant,
                                      .subscription_id = sub,
                                      .job_id = job,
                                      .api_version = "2023-12-01-preview",
                                      .contacts_hash = "",
                                      .scan_ms = scan_ms,
                                      .findings = f,
                                      .nfindings = n };
    int done = 0;
    cg_cache_store(cache, &e, on_done, &done);
    for (size_t i = 0; i < n; i++)
        cg_finding_clear(&f[i]);
    int64_t deadline = cg_loop_now_ms() + WAIT_MS;
    while (!done && cg_loop_now_ms() < deadline)
        cg_loop_run_once(loop, 20);
    CHECK(done == 1, "seed %s %s: %d", sub, codes, done);
}

/* Runs the report with args; returns its exit status (-1 if it did not
 * exit normally) and its stdout in *out (caller frees). */
static int run_report(const char *const *args, char **out)
{
    const char *argv[16];
    char port[32], err[256], line[CG_HARNESS_LINE_MAX];
    size_t n = 0;
    snprintf(port, sizeof(port), "redis.port=%d", cg_harness_redis_port(redis));
    argv[n++] = CG_BIN_CONTACTGUARD_REPORT;
    argv[n++] = "--set";
    argv[n++] = port;
    argv[n++] = "--set";
    argv[n++] = "redis.prefix=rp:";
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    const struct cg_harness_proc_opts opts = { .name = "report",
                                               .line_timeout_ms = -1 };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &opts, err, sizeof(err));
    struct cg_buf b;
    int status = -1, ws = 0;
    cg_buf_init(&b, 1 << 20);
    CHECK(p != NULL, "start report: %s", err);
    if (!p)
        goto out;
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

static void expect_lines(const char *out, const char *const *lines,
                         const char *what)
{
    for (size_t i = 0; lines[i]; i++)
        CHECK(strstr(out, lines[i]) != NULL, "%s: missing line\n[%s]\nin\n%s",
              what, lines[i], out);
}

static void test_text(void)
{
    char *out = NULL;
    const char *args[] = { NULL };
    int st = run_report(args, &out);
    CHECK(st == 0, "report exit %d", st);
    static const char *const want[] = {
        "contactguard report: 3 tenants, 6 subscriptions\n",
        "rule                           PASS           FAIL          ERROR"
        "        SKIPPED   total\n",
        "owner-alerts               3  50.0%       2  33.3%       1  16.7%"
        "       0   0.0%       6\n",
        "additional-emails          4  66.7%       2  33.3%       0   0.0%"
        "       0   0.0%       6\n",
        "alert-severity             5  83.3%       0   0.0%       0   0.0%"
        "       1  16.7%       6\n",
        "attack-paths               5  83.3%       0   0.0%       0   0.0%"
        "       1  16.7%       6\n",
        "owner-reachable            2  33.3%       1  16.7%       1  16.7%"
        "       2  33.3%       6\n",
        "tenants with the most failing subscriptions (top 10)\n"
        "  failing   scanned  tenant\n"
        "        2         3  " TA "\n"
        "        1         2  " TB "\n\n",
        "status changes in the last scan (6)\n",
        "  " S1 "  owner-alerts        PASS -> FAIL      " TA "\n"
        "  " S1 "  owner-reachable     PASS -> SKIPPED   " TA "\n"
        "  " S3 "  owner-alerts        PASS -> FAIL      " TB "\n"
        "  " S3 "  owner-reachable     PASS -> SKIPPED   " TB "\n"
        "  " S4 "  owner-alerts        PASS -> ERROR     " TB "\n"
        "  " S4 "  owner-reachable     FAIL -> ERROR     " TB "\n",
        NULL,
    };
    expect_lines(out, want, "text");
    free(out);

    const char *args2[] = { "--tenant", "AAAAAAAA-0000-4000-8000-00000000000A",
                            "--top", "1", NULL };
    st = run_report(args2, &out);
    CHECK(st == 0, "report --tenant exit %d", st);
    static const char *const want2[] = {
        "contactguard report: 1 tenant, 3 subscriptions\n",
        "owner-alerts               2  66.7%       1  33.3%       0   0.0%"
        "       0   0.0%       3\n",
        "alert-severity             3 100.0%       0   0.0%",
        "(top 1)\n  failing   scanned  tenant\n        2         3  " TA "\n\n",
        "status changes in the last scan (2)\n",
        NULL,
    };
    expect_lines(out, want2, "text --tenant");
    CHECK(!strstr(out, TB), "--tenant shows another tenant:\n%s", out);
    free(out);
}

static json_t *path(json_t *o, const char *a, size_t i, const char *b,
                    const char *c)
{
    json_t *v = json_object_get(o, a);
    if (b) {
        v = json_object_get(json_array_get(v, i), b);
        if (c)
            v = json_object_get(v, c);
    }
    return v;
}

static void test_json(void)
{
    char *out = NULL;
    const char *args[] = { "--json", "--top", "1", NULL };
    int st = run_report(args, &out);
    CHECK(st == 0, "report --json exit %d", st);
    json_error_t je;
    json_t *root = json_loads(out, 0, &je);
    CHECK(root != NULL, "report --json is JSON: %s\n%s", je.text, out);
    if (!root)
        goto out;
    CHECK(json_integer_value(path(root, "tenants", 0, NULL, NULL)) == 3,
          "tenants");
    CHECK(json_integer_value(path(root, "subscriptions", 0, NULL, NULL)) == 6,
          "subscriptions");
    static const struct {
        size_t rule;
        const char *status;
        long long count;
        double percent;
    } rows[] = {
        { 0, "PASS", 3, 50.0 },  { 0, "FAIL", 2, 33.3 },
        { 0, "ERROR", 1, 16.7 }, { 0, "SKIPPED", 0, 0.0 },
        { 1, "PASS", 4, 66.7 },  { 1, "FAIL", 2, 33.3 },
        { 2, "PASS", 5, 83.3 },  { 2, "SKIPPED", 1, 16.7 },
        { 3, "PASS", 5, 83.3 },  { 3, "FAIL", 0, 0.0 },
        { 4, "PASS", 2, 33.3 },  { 4, "FAIL", 1, 16.7 },
        { 4, "ERROR", 1, 16.7 }, { 4, "SKIPPED", 2, 33.3 },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *c = path(root, "rules", rows[i].rule, "counts", rows[i].status);
        json_t *p =
            path(root, "rules", rows[i].rule, "percent", rows[i].status);
        CHECK(json_is_integer(c) && json_integer_value(c) == rows[i].count,
              "rule %zu %s count %lld", rows[i].rule, rows[i].status,
              (long long)json_integer_value(c));
        CHECK(json_is_real(p) && json_real_value(p) == rows[i].percent,
              "rule %zu %s percent %g", rows[i].rule, rows[i].status,
              json_real_value(p));
    }
    CHECK(strcmp(json_string_value(path(root, "rules", 3, "rule", NULL)),
                 "attack-paths") == 0 &&
              strcmp(json_string_value(path(root, "rules", 4, "rule", NULL)),
                     "owner-reachable") == 0,
          "rule order");
    json_t *top = json_object_get(root, "top_failing");
    CHECK(json_array_size(top) == 1, "top 1: %zu", json_array_size(top));
    CHECK(
        strcmp(json_string_value(path(root, "top_failing", 0, "tenant", NULL)),
               TA) == 0 &&
            json_integer_value(path(root, "top_failing", 0, "failing", NULL)) ==
                2,
        "top tenant");
    json_t *ch = json_object_get(root, "changes");
    CHECK(json_array_size(ch) == 6, "changes %zu", json_array_size(ch));
    const char *to = json_string_value(path(root, "changes", 4, "to", NULL));
    CHECK(to && strcmp(to, "ERROR") == 0 &&
              strcmp(json_string_value(
                         path(root, "changes", 4, "subscription", NULL)),
                     S4) == 0,
          "fifth change is S4 -> ERROR");
    const char *rule =
        json_string_value(path(root, "changes", 5, "rule", NULL));
    const char *from =
        json_string_value(path(root, "changes", 5, "from", NULL));
    CHECK(rule && !strcmp(rule, "owner-reachable") && from &&
              !strcmp(from, "FAIL"),
          "sixth change is S4's owner-reachable from FAIL: %s %s",
          rule ? rule : "-", from ? from : "-");
    json_decref(root);
out:
    free(out);
}

static void test_errors(void)
{
    char err[256], *out = NULL;
    int port = cg_harness_free_port(err, sizeof(err));
    char set[64];
    snprintf(set, sizeof(set), "redis.port=%d", port);
    /* A later --set wins over the one run_report adds. */
    const char *args[] = { "--set", set, NULL };
    int st = run_report(args, &out);
    CHECK(st == 2, "unreachable Redis exits 2, got %d", st);
    CHECK(out[0] == '\0', "nothing on stdout: %s", out);
    free(out);
    const char *args2[] = { "--top", "zero", NULL };
    st = run_report(args2, &out);
    CHECK(st == 2, "bad --top exits 2, got %d", st);
    free(out);
}

int main(void)
{
    char err[512];
    struct cg_loop *loop = NULL;
    struct cg_conf *conf = NULL;
    struct cg_cache *cache = NULL;
    cg_log_setup(CG_LOG_WARN, CG_LOG_TEXT, "it_report");
    redis = cg_harness_redis_start(err, sizeof(err));
    CHECK(redis != NULL, "redis: %s", err);
    loop = cg_loop_new(err, sizeof(err));
    if (!redis || !loop)
        goto out;
    conf = cg_conf_new();
    snprintf(err, sizeof(err), "%d", cg_harness_redis_port(redis));
    cg_conf_set(conf, "redis.port", err, NULL, 0);
    cg_conf_set(conf, "redis.prefix", "rp:", NULL, 0);
    cache = cg_cache_new(loop, conf, err, sizeof(err));
    CHECK(cache != NULL, "cache: %s", err);
    if (!cache)
        goto out;

    long long now = cg_now_ms();
    /* Five letters, owner-reachable last: SKIPPED where owner-alerts
     * stopped passing, ERROR with an unreadable subscription. */
    seed(loop, cache, TA, S1, "a1", now - 3000, "PPPPP");
    seed(loop, cache, TA, S1, "a2", now - 2000, "FPPPS");
    seed(loop, cache, TA, S2, "a3", now - 2000, "PFPPF");
    seed(loop, cache, TA, S5, "a4", now - 2000, "PPPPP");
    seed(loop, cache, TB, S3, "b1", now - 3000, "PFSSP");
    seed(loop, cache, TB, S3, "b2", now - 2000, "FFSSS");
    seed(loop, cache, TB, S4, "b3", now - 3000, "PPPPF");
    seed(loop, cache, TB, S4, "b4", now - 2000, "EPPPE");
    seed(loop, cache, TC, S6, "c1", now - 2000, "PPPPP");

    test_text();
    test_json();
    test_errors();
out:
    cg_cache_free(cache);
    cg_conf_free(conf);
    cg_loop_free(loop);
    cg_harness_redis_free(redis);
    return check_done("it_report");
}
