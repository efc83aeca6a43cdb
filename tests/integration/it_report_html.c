/*
 * it_report_html — contactguard-report --html and --csv on a cache seeded
 * through the cache stage (real redis-server), the page checked in headless
 * Chromium by browser_check.py: counts equal the cache's, filter and sort
 * work, no console error, no request, and a hostile string from Azure
 * reads as text and runs nowhere. Chromium missing fails the test.
 */
#include "cache.h"
#include "cache_reader.h"
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
#include <unistd.h>

#ifndef CG_BIN_CONTACTGUARD_REPORT
#define CG_BIN_CONTACTGUARD_REPORT "contactguard-report"
#endif
#ifndef CG_BROWSER_CHECK
#define CG_BROWSER_CHECK "browser_check.py"
#endif
/* Debian's python3, where python3-websocket is installed. */
#ifndef CG_PYTHON
#define CG_PYTHON "/usr/bin/python3"
#endif
#ifndef CG_SCREENSHOT
#define CG_SCREENSHOT "report.png"
#endif

#define WAIT_MS    15000
#define BROWSER_MS 180000 /* Chromium on a loaded machine: a deadline */
#define TA         "aaaaaaaa-0000-4000-8000-00000000000a"
#define TB         "bbbbbbbb-0000-4000-8000-00000000000b"
#define TC         "cccccccc-0000-4000-8000-00000000000c"
#define S1         "11111111-1111-4111-8111-111111111111"
#define S2         "22222222-2222-4222-8222-222222222222"
#define S3         "33333333-3333-4333-8333-333333333333"
#define S4         "44444444-4444-4444-8444-444444444444"
#define S5         "55555555-5555-4555-8555-555555555555"
#define S6         "66666666-6666-4666-8666-666666666666"
#define S7         "77777777-7777-4777-8777-777777777777"

/* What a hostile contact email could try: close the attribute, open a
 * script, load an image that runs script when it fails. */
#define HOSTILE                                                                \
    "\"><script>window.__cg_pwned=1</script><img src=x "                       \
    "onerror=\"window.__cg_pwned=2\">@evil.example"
#define FORMULA "=HYPERLINK(\"http://evil.example\",\"x\")"

static struct cg_harness_redis *redis;
/* What the seeds leave in the cache: the page must say the same. */
static long long want[CG_RULE_COUNT][CG_STATUS_NONE];
static char dir[] = "/tmp/it_report_html.XXXXXX";

static void on_done(int err, void *arg)
{
    *(int *)arg = err == 0 ? 1 : -1;
}

/*
 * Stores one scan; codes has a letter (P F E S) per rule, rules past its
 * end PASS. reason, when set, is the first rule's reason and its evidence
 * names it as a contact email. last: this is the subscription's last scan,
 * counted in want.
 */
static void seed(struct cg_loop *loop, struct cg_cache *cache,
                 const char *tenant, const char *sub, const char *job,
                 long long scan_ms, const char *codes, const char *reason,
                 bool last)
{
    struct cg_finding f[CG_RULE_COUNT];
    size_t len = strlen(codes);
    for (int i = 0; i < CG_RULE_COUNT; i++) {
        char c = (size_t)i < len ? codes[i] : 'P';
        enum cg_status st = (enum cg_status)(strchr("PFES", c) - "PFES");
        memset(&f[i], 0, sizeof(f[i]));
        if (st == CG_STATUS_SKIPPED)
            cg_finding_set(&f[i], (enum cg_rule)i, st, "SUBSCRIPTION_DISABLED",
                           "The subscription is Disabled.");
        else if (i == 0 && reason)
            cg_finding_set(&f[i], (enum cg_rule)i, st, "EMAIL_INVALID", "%s",
                           reason);
        else
            cg_finding_set(&f[i], (enum cg_rule)i, st, "SEEDED", "seeded %c",
                           c);
        if (i == 0 && reason)
            f[i].evidence = json_pack("{s:[{s:s,s:b}]}", "contacts", "emails",
                                      reason, "enabled", 1);
        cg_strlcpy(f[i].subscription_id, sub, sizeof(f[i].subscription_id));
        cg_strlcpy(f[i].tenant_id, tenant, sizeof(f[i].tenant_id));
        if (last)
            want[i][st]++;
    }
    const struct cg_cache_entry e = { .tenant_id = tenant,
                                      .subscription_id = sub,
                                      .job_id = job,
                                      .api_version = "2023-12-01-preview",
                                      .contacts_hash = "",
                                      .scan_ms = scan_ms,
                                      .findings = f,
                                      .nfindings = CG_RULE_COUNT };
    int done = 0;
    cg_cache_store(cache, &e, on_done, &done);
    for (size_t i = 0; i < CG_RULE_COUNT; i++)
        cg_finding_clear(&f[i]);
    int64_t deadline = cg_loop_now_ms() + WAIT_MS;
    while (!done && cg_loop_now_ms() < deadline)
        cg_loop_run_once(loop, 20);
    CHECK(done == 1, "seed %s %s: %d", sub, codes, done);
}

/* Runs argv to its end; exit status (-1 if none), stdout in *out. */
static int run(const char *name, const char *const *argv, int wait_ms,
               char **out)
{
    char err[256], line[CG_HARNESS_LINE_MAX];
    const struct cg_harness_proc_opts opts = { .name = name,
                                               .line_timeout_ms = -1 };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &opts, err, sizeof(err));
    struct cg_buf b;
    int status = -1, ws = 0;
    cg_buf_init(&b, 1 << 20);
    CHECK(p != NULL, "start %s: %s", argv[0], err);
    if (!p)
        goto out;
    while (cg_harness_proc_read_line(p, line, sizeof(line), wait_ms) == 0) {
        cg_buf_puts(&b, line);
        cg_buf_puts(&b, "\n");
    }
    if (cg_harness_proc_wait(p, wait_ms, &ws) == 0 && WIFEXITED(ws))
        status = WEXITSTATUS(ws);
out:
    *out = b.data ? cg_buf_take(&b) : cg_strdup("");
    cg_harness_proc_free(p);
    return status;
}

static int report(const char *a, const char *b, const char *c, const char *d)
{
    char port[32], *out = NULL;
    snprintf(port, sizeof(port), "redis.port=%d", cg_harness_redis_port(redis));
    const char *argv[] = { CG_BIN_CONTACTGUARD_REPORT,
                           "--set",
                           port,
                           "--set",
                           "redis.prefix=rh:",
                           a,
                           b,
                           c,
                           d,
                           NULL };
    int st = run("report", argv, WAIT_MS, &out);
    free(out);
    return st;
}

static char *slurp(const char *path)
{
    struct cg_buf b;
    char err[256];
    cg_buf_init(&b, 64 << 20);
    int rc = cg_buf_read_file(&b, path, err, sizeof(err));
    CHECK(rc == 0, "read %s: %s", path, err);
    return b.data ? cg_buf_take(&b) : cg_strdup("");
}

static size_t count(const char *s, const char *what)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

static void test_csv(const char *path)
{
    char *csv = slurp(path);
    CHECK(strncmp(csv,
                  "tenant,subscription,rule,status,reason_code,reason,"
                  "previous_status,scan_time\r\n",
                  78) == 0,
          "csv header: %.80s", csv);
    /* 6 scanned subscriptions, one row per rule, and the header. */
    CHECK(count(csv, "\r\n") == 1 + 6 * CG_RULE_COUNT, "csv rows %zu",
          count(csv, "\r\n"));
    CHECK(count(csv, "\n") == count(csv, "\r\n"), "CRLF only");
    /* RFC 4180: quoted, inner quotes doubled. */
    CHECK(strstr(csv, ",EMAIL_INVALID,\"\"\"><script>window.__cg_pwned=1"
                      "</script><img src=x onerror=\"\"window.__cg_pwned=2\"\""
                      ">@evil.example\",") != NULL,
          "hostile reason quoted:\n%s", csv);
    /* A formula reads as text in a spreadsheet. */
    CHECK(strstr(csv, ",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")"
                      "\",") != NULL,
          "formula defused:\n%s", csv);
    char row[256];
    snprintf(row, sizeof(row), "%s,%s,%s,ERROR,SEEDED,seeded E,PASS,", TB, S4,
             cg_rule_info((enum cg_rule)0)->id);
    CHECK(strstr(csv, row) != NULL, "change row %s", row);
    free(csv);
}

static void test_html_text(const char *path)
{
    char *html = slurp(path);
    CHECK(strstr(html, "<script>window.__cg_pwned") == NULL,
          "hostile script escaped");
    CHECK(strstr(html, "&quot;&gt;&lt;script&gt;window.__cg_pwned=1") != NULL,
          "hostile string present as text");
    CHECK(strstr(html, "http://") == NULL || strstr(html, "src=\"http") == NULL,
          "no external resource");
    CHECK(strstr(html, "Content-Security-Policy") != NULL, "CSP");
    free(html);
}

static void test_tenant_page(void)
{
    char path[64];
    snprintf(path, sizeof(path), "%s/tc.html", dir);
    int st = report("--tenant", "CCCCCCCC-0000-4000-8000-00000000000C",
                    "--html", path);
    CHECK(st == 0, "tenant page exit %d", st);
    char *html = slurp(path);
    CHECK(strstr(html, S2) && strstr(html, S5) && strstr(html, S6),
          "tenant page has its subscriptions");
    CHECK(!strstr(html, S1) && !strstr(html, S3) && !strstr(html, TA),
          "tenant page has nothing else");
    free(html);
}

static void test_browser(const char *html)
{
    char expect_path[64], *out = NULL;
    snprintf(expect_path, sizeof(expect_path), "%s/expect.json", dir);
    json_t *e = json_object(), *rules = json_object();
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        json_t *c = json_object();
        for (int s = 0; s < CG_STATUS_NONE; s++)
            json_object_set_new(c, cg_status_name((enum cg_status)s),
                                json_integer(want[k][s]));
        json_object_set_new(rules, cg_rule_info((enum cg_rule)k)->id, c);
    }
    json_object_set_new(e, "rules", rules);
    json_object_set_new(e, "tenants", json_pack("[s,s,s]", TC, TB, TA));
    json_object_set_new(e, "subscriptions", json_integer(6));
    json_object_set_new(e, "skipped", json_integer(1));
    json_object_set_new(e, "unscanned", json_integer(1));
    json_object_set_new(e, "texts",
                        json_pack("[s,s,s]", HOSTILE, "changed to ERROR",
                                  "SUBSCRIPTION_DISABLED"));
    CHECK(json_dump_file(e, expect_path, 0) == 0, "write %s", expect_path);
    json_decref(e);
    const char *argv[] = { CG_PYTHON,   CG_BROWSER_CHECK, html,
                           expect_path, CG_SCREENSHOT,    NULL };
    int st = run("browser", argv, BROWSER_MS, &out);
    printf("%s", out);
    CHECK(st == 0, "browser_check exit %d:\n%s", st, out);
    CHECK(access(CG_SCREENSHOT, R_OK) == 0, "screenshot %s", CG_SCREENSHOT);
    free(out);
}

int main(void)
{
    char err[512], html[64], csv[64];
    struct cg_loop *loop = NULL;
    struct cg_conf *conf = NULL;
    struct cg_cache *cache = NULL;
    struct cg_cache_reader *r = NULL;
    cg_log_setup(CG_LOG_WARN, CG_LOG_TEXT, "it_report_html");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    redis = cg_harness_redis_start(err, sizeof(err));
    CHECK(redis != NULL, "redis: %s", err);
    loop = cg_loop_new(err, sizeof(err));
    if (!redis || !loop)
        goto out;
    conf = cg_conf_new();
    snprintf(err, sizeof(err), "%d", cg_harness_redis_port(redis));
    cg_conf_set(conf, "redis.port", err, NULL, 0);
    cg_conf_set(conf, "redis.prefix", "rh:", NULL, 0);
    cache = cg_cache_new(loop, conf, err, sizeof(err));
    r = cg_cache_reader_new(conf, err, sizeof(err));
    CHECK(cache && r, "cache: %s", err);
    if (!cache || !r)
        goto out;

    long long now = cg_now_ms();
    seed(loop, cache, TA, S1, "a1", now - 2000, "PPPP", NULL, true);
    seed(loop, cache, TB, S3, "b1", now - 2000, "FFSS", NULL, true);
    seed(loop, cache, TB, S4, "b2", now - 3000, "PPPP", NULL, false);
    seed(loop, cache, TB, S4, "b3", now - 2000, "EPPP", NULL, true);
    seed(loop, cache, TC, S2, "c1", now - 1000, "FPPP", HOSTILE, true);
    seed(loop, cache, TC, S5, "c2", now - 1000, "PFPP", FORMULA, true);
    seed(loop, cache, TC, S6, "c3", now - 1000, "PPPP", NULL, true);
    /* Listed by the producer, never scanned (e.g. Disabled). */
    const char *const unscanned[] = { S7 };
    CHECK(cg_cache_reader_add_known(r, TA, unscanned, 1, err, sizeof(err)) == 0,
          "add known: %s", err);

    snprintf(html, sizeof(html), "%s/report.html", dir);
    snprintf(csv, sizeof(csv), "%s/report.csv", dir);
    int st = report("--html", html, "--csv", csv);
    CHECK(st == 0, "report exit %d", st);
    test_csv(csv);
    test_html_text(html);
    test_tenant_page();
    st = report("--html", "/nonexistent-cg-dir/report.html", "--top", "5");
    CHECK(st == 2, "unwritable --html exits 2, got %d", st);
    test_browser(html);
out:
    cg_cache_reader_free(r);
    cg_cache_free(cache);
    cg_conf_free(conf);
    cg_loop_free(loop);
    cg_harness_redis_free(redis);
    if (check_failed == 0) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void)!system(cmd);
    }
    return check_done("it_report_html");
}
