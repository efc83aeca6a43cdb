/*
 * The worker end to end, every part real on loopback: the devbroker (Kafka
 * wire protocol), a redis-server, the fake Azure over HTTPS, and one or two
 * contactguard-worker processes. One scenario per run (argv[1]):
 *
 *   e2e       N subscriptions in, exactly one finding per (subscription,
 *             rule) out with the fake's ground truth, the cache matching,
 *             no secret in any log line, a clean SIGTERM
 *   kill      a worker SIGKILLed mid-run and restarted loses nothing
 *   two       two workers share the load and survive one leaving
 *   throttle  a 429 storm: zero requests before their Retry-After
 *   tokens    tokens expiring every 2 s mid-run
 *   redis     Redis stopped and restarted mid-run
 *   broker    the Kafka broker taken down and brought back mid-run
 *   poison    undecodable jobs land in the dead-letter topic; every good
 *             job completes
 */
#include "../check.h"
#include "cache.h"
#include "conf.h"
#include "finding.h"
#include "harness.h"
#include "job.h"
#include "json.h"
#include "mem.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 120000

struct truth {
    char sub[40], tenant[40], state[16];
    enum cg_status want[CG_RULE_COUNT];
};

struct stack {
    struct cg_harness_redis *redis;
    struct cg_harness_devbroker *kafka;
    struct cg_harness_proc *fake;
    struct cg_harness_proc *workers[2];
    char base[128];
    char dir[512];
    char creds[600], ca[600], truthf[600];
    struct truth *truth;
    size_t ntruth;
    char secrets[64][128];
    size_t nsecrets;
};

static int load_truth(struct stack *s)
{
    FILE *f = fopen(s->truthf, "r");
    if (!f)
        return -1;
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        json_t *o = json_loads(line, 0, NULL);
        if (!o)
            continue;
        const char *sub = cg_json_str(o, "subscription_id");
        enum cg_rule r = cg_rule_parse(cg_json_str(o, "rule"));
        struct truth *t = NULL;
        for (size_t i = 0; i < s->ntruth; i++)
            if (!strcmp(s->truth[i].sub, sub))
                t = &s->truth[i];
        if (!t) {
            s->truth = cg_realloc(s->truth, (s->ntruth + 1) * sizeof(*t));
            t = &s->truth[s->ntruth++];
            memset(t, 0, sizeof(*t));
            cg_strlcpy(t->sub, sub, sizeof(t->sub));
            cg_strlcpy(t->tenant, cg_json_str(o, "tenant_id"),
                       sizeof(t->tenant));
            cg_strlcpy(t->state, cg_json_str(o, "state"), sizeof(t->state));
        }
        if (r < CG_RULE_COUNT)
            t->want[r] = cg_status_parse(cg_json_str(o, "status"));
        json_decref(o);
    }
    fclose(f);
    return 0;
}

/* The client secrets the fake wrote, to prove none reaches a log. */
static void load_secrets(struct stack *s)
{
    char path[700];
    for (size_t i = 0; i < s->ntruth && s->nsecrets < 64; i++) {
        snprintf(path, sizeof(path), "%s.secrets/%s", s->creds,
                 s->truth[i].tenant);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char buf[128] = "";
        if (fgets(buf, sizeof(buf), f)) {
            buf[strcspn(buf, "\r\n")] = '\0';
            bool dup = false;
            for (size_t k = 0; k < s->nsecrets; k++)
                dup = dup || !strcmp(s->secrets[k], buf);
            if (!dup && strlen(buf) >= 8)
                cg_strlcpy(s->secrets[s->nsecrets++], buf, 128);
        }
        fclose(f);
    }
}

static int stack_start(struct stack *s, int tenants, int subs,
                       const char *const *fake_extra, int partitions)
{
    char err[512];
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "%s/azure", cg_harness_dir());
    mkdir(s->dir, 0700);
    snprintf(s->creds, sizeof(s->creds), "%s/worker.json", s->dir);
    snprintf(s->ca, sizeof(s->ca), "%s/ca.pem", s->dir);
    snprintf(s->truthf, sizeof(s->truthf), "%s/truth.jsonl", s->dir);
    s->redis = cg_harness_redis_start(err, sizeof(err));
    CHECK(s->redis != NULL, "redis: %s", err);
    s->kafka =
        cg_harness_devbroker_start(1, partitions, NULL, err, sizeof(err));
    CHECK(s->kafka != NULL, "devbroker: %s", err);
    char nt[16], ns[16];
    snprintf(nt, sizeof(nt), "%d", tenants);
    snprintf(ns, sizeof(ns), "%d", subs);
    const char *argv[40] = { CG_BIN_CONTACTGUARD_FAKEAZURE,
                             "--tls-self-signed",
                             s->dir,
                             "--tenants",
                             nt,
                             "--subscriptions-per-tenant",
                             ns,
                             "--truth",
                             s->truthf,
                             "--credentials",
                             s->creds };
    int n = 11;
    for (const char *const *e = fake_extra; e && *e && n < 38; e++)
        argv[n++] = *e;
    argv[n] = NULL;
    struct cg_harness_proc_opts po = { .name = "fakeazure" };
    s->fake = cg_harness_proc_start(argv, &po, err, sizeof(err));
    CHECK(s->fake != NULL, "fakeazure: %s", err);
    if (!s->redis || !s->kafka || !s->fake)
        return -1;
    cg_strlcpy(s->base, cg_harness_proc_first_line(s->fake), sizeof(s->base));
    CHECK(load_truth(s) == 0 && s->ntruth == (size_t)(tenants * subs),
          "truth: %zu subscriptions", s->ntruth);
    load_secrets(s);
    return 0;
}

static struct cg_harness_proc *worker_start(struct stack *s, const char *name,
                                            const char *const *extra)
{
    char err[512], bs[300], rp[64];
    snprintf(bs, sizeof(bs), "kafka.bootstrap.servers=%s",
             cg_harness_devbroker_bootstrap(s->kafka));
    snprintf(rp, sizeof(rp), "redis.port=%d", cg_harness_redis_port(s->redis));
    const char *argv[40] = { CG_BIN_CONTACTGUARD_WORKER,
                             "--config",
                             s->creds,
                             "--set",
                             bs,
                             "--set",
                             rp,
                             "--set",
                             "output.format=compact",
                             "--set",
                             "worker.metrics_listen=127.0.0.1:0",
                             "--set",
                             "log.level=info",
                             "--set",
                             "kafka.session.timeout.ms=6000",
                             "--set",
                             "kafka.heartbeat.interval.ms=500",
                             "--set",
                             "worker.job_deadline_ms=60000" };
    int n = 19;
    for (const char *const *e = extra; e && *e && n < 38; e++)
        argv[n++] = *e;
    argv[n] = NULL;
    struct cg_harness_proc_opts po = { .name = name };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &po, err, sizeof(err));
    CHECK(p != NULL, "%s: %s", name, err);
    return p;
}

static size_t produce_jobs(struct stack *s, size_t poison)
{
    size_t n = s->ntruth + poison;
    struct cg_harness_msg *msgs = cg_calloc(n, sizeof(*msgs));
    char **vals = cg_calloc(n, sizeof(char *));
    static const char *const bad[] = {
        "not json at all",
        "{\"schema\":\"contactguard.job/9\"}",
        "{\"schema\":\"contactguard.job/1\",\"job_id\":\"x\",\"tenant_id\":"
        "\"not-a-guid\",\"subscription_id\":\"nope\",\"reason\":\"manual\","
        "\"requested_at\":\"2026-01-01T00:00:00Z\"}",
        "[1,2,3]",
        "",
    };
    for (size_t i = 0; i < s->ntruth; i++) {
        struct cg_job job;
        cg_job_init(&job, s->truth[i].tenant, s->truth[i].sub,
                    CG_JOB_SCHEDULED);
        job.state = cg_sub_state_parse(s->truth[i].state);
        vals[i] = cg_job_encode(&job);
        msgs[i].key = s->truth[i].sub;
        msgs[i].key_len = strlen(s->truth[i].sub);
    }
    for (size_t k = 0; k < poison; k++) {
        size_t i = s->ntruth + k;
        vals[i] = cg_strdup(bad[k % (sizeof(bad) / sizeof(bad[0]))]);
        msgs[i].key = "poison";
        msgs[i].key_len = 6;
        msgs[i].nheaders = 1;
        msgs[i].headers[0].name = "origin";
        msgs[i].headers[0].value = "test";
        msgs[i].headers[0].value_len = 4;
    }
    for (size_t i = 0; i < n; i++) {
        msgs[i].value = vals[i];
        msgs[i].value_len = strlen(vals[i]);
        msgs[i].partition = -1;
    }
    char err[512];
    int rc = cg_harness_kafka_produce(cg_harness_devbroker_bootstrap(s->kafka),
                                      "contactguard.jobs", msgs, n, 30000, err,
                                      sizeof(err));
    CHECK(rc == 0, "produce jobs: %s", err);
    for (size_t i = 0; i < n; i++)
        free(vals[i]);
    free(vals);
    free(msgs);
    return n;
}

/* Reads the results topic until at least `want` findings are there. */
static int read_findings(struct stack *s, size_t want, int timeout_ms,
                         struct cg_harness_msgs *out)
{
    char err[512];
    memset(out, 0, sizeof(*out));
    int rc = cg_harness_kafka_consume(cg_harness_devbroker_bootstrap(s->kafka),
                                      "contactguard.results", want, timeout_ms,
                                      out, err, sizeof(err));
    return rc;
}

/* Polls until the results topic holds at least want findings. */
static void wait_findings(struct stack *s, size_t want)
{
    struct cg_harness_msgs m;
    int rc = read_findings(s, want, WAIT_MS, &m);
    CHECK(rc == 0 && m.n >= want, "waited for %zu findings, have %zu", want,
          m.n);
    cg_harness_msgs_free(&m);
}

/*
 * Every (subscription, rule) has a finding with the truth's status; with
 * exact, no (subscription, rule) has two.
 */
static void check_findings(struct stack *s, bool exact)
{
    size_t want = s->ntruth * CG_RULE_COUNT;
    struct cg_harness_msgs m;
    read_findings(s, want, WAIT_MS, &m);
    unsigned char *seen = cg_calloc(want, 1);
    size_t wrong = 0, dup = 0, unknown = 0, bad_headers = 0;
    for (size_t i = 0; i < m.n; i++) {
        struct cg_finding f;
        char err[256];
        if (cg_finding_parse(m.v[i].value, m.v[i].value_len, &f, err,
                             sizeof(err))) {
            unknown++;
            continue;
        }
        size_t t = 0;
        while (t < s->ntruth && strcmp(s->truth[t].sub, f.subscription_id))
            t++;
        if (t == s->ntruth) {
            unknown++;
        } else {
            size_t k = t * CG_RULE_COUNT + f.rule;
            if (seen[k]++)
                dup++;
            if (f.status != s->truth[t].want[f.rule]) {
                if (wrong < 5)
                    fprintf(stderr, "  %s %s: got %s (%s), truth %s\n",
                            f.subscription_id, cg_rule_info(f.rule)->id,
                            cg_status_name(f.status), f.reason_code,
                            cg_status_name(s->truth[t].want[f.rule]));
                wrong++;
            }
            const char *hr = cg_harness_msg_header(&m.v[i], "rule");
            const char *hs = cg_harness_msg_header(&m.v[i], "status");
            if (!hr || strcmp(hr, cg_rule_info(f.rule)->id) || !hs ||
                strcmp(hs, cg_status_name(f.status)) || !m.v[i].key ||
                strcmp(m.v[i].key, f.subscription_id))
                bad_headers++;
        }
        cg_finding_clear(&f);
    }
    size_t missing = 0;
    for (size_t k = 0; k < want; k++)
        missing += seen[k] == 0;
    CHECK(missing == 0,
          "%zu of %zu (subscription, rule) pairs have no "
          "finding",
          missing, want);
    CHECK(wrong == 0, "%zu findings disagree with the ground truth", wrong);
    CHECK(unknown == 0,
          "%zu findings unreadable or of unknown "
          "subscriptions",
          unknown);
    CHECK(bad_headers == 0, "%zu findings with wrong key or headers",
          bad_headers);
    if (exact)
        CHECK(dup == 0 && m.n == want,
              "%zu duplicates, %zu findings for %zu "
              "pairs",
              dup, m.n, want);
    free(seen);
    cg_harness_msgs_free(&m);
}

/* The cache holds the same statuses as the truth. */
static void check_cache(struct stack *s)
{
    struct cg_conf *conf = cg_conf_new();
    char err[512], port[32];
    snprintf(port, sizeof(port), "%d", cg_harness_redis_port(s->redis));
    cg_conf_set(conf, "redis.port", port, err, sizeof(err));
    struct cg_cache_reader *r = cg_cache_reader_new(conf, err, sizeof(err));
    CHECK(r != NULL, "cache reader: %s", err);
    size_t wrong = 0;
    for (size_t i = 0; r && i < s->ntruth; i++) {
        struct cg_cache_sub sub;
        if (cg_cache_reader_sub(r, s->truth[i].sub, &sub, err, sizeof(err))) {
            wrong++;
            continue;
        }
        for (int k = 0; k < CG_RULE_COUNT; k++)
            if (sub.status[k] != s->truth[i].want[k])
                wrong++;
    }
    CHECK(wrong == 0, "%zu cached statuses differ from the truth", wrong);
    cg_cache_reader_free(r);
    cg_conf_free(conf);
}

static void check_no_secrets(struct stack *s, struct cg_harness_proc *p)
{
    const char *path = cg_harness_proc_stderr_path(p);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "no stderr file %s", path);
    if (!f)
        return;
    struct cg_buf b;
    cg_buf_init(&b, 256 << 20);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        cg_buf_append(&b, chunk, n);
    fclose(f);
    size_t leaks = 0;
    for (size_t i = 0; i < s->nsecrets; i++)
        if (b.data && strstr(b.data, s->secrets[i]))
            leaks++;
    CHECK(s->nsecrets > 0, "no secrets known to look for");
    CHECK(leaks == 0, "%zu client secrets appear in %s", leaks, path);
    CHECK(!b.data || !strstr(b.data, "eyJ"), "a JWT appears in %s", path);
    CHECK(!b.data || !strcasestr(b.data, "Bearer "),
          "a bearer credential "
          "appears in %s",
          path);
    cg_buf_free(&b);
}

static int stop_worker(struct cg_harness_proc *p)
{
    int st = cg_harness_proc_stop(p, 30000);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static size_t write_cb(char *ptr, size_t sz, size_t nm, void *ud)
{
    cg_buf_append(ud, ptr, sz * nm);
    return sz * nm;
}

/* GET url (plain HTTP or the fake's HTTPS); the body, or NULL. */
static char *http_get(const char *url, const char *ca, long *status)
{
    struct cg_buf b;
    cg_buf_init(&b, 64 << 20);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        cg_buf_free(&b);
        return NULL;
    }
    return b.data ? cg_buf_take(&b) : cg_strdup("");
}

/* The worker's /metrics, /livez and /readyz after a run. */
static void check_metrics(struct cg_harness_proc *w, size_t jobs)
{
    const char *line = cg_harness_proc_first_line(w);
    const char *addr = line ? strstr(line, "metrics=") : NULL;
    CHECK(addr && addr[8], "no metrics address in '%s'", line ? line : "");
    if (!addr || !addr[8])
        return;
    char url[160];
    long st;
    snprintf(url, sizeof(url), "http://%s/livez", addr + 8);
    char *body = http_get(url, NULL, &st);
    CHECK(body && st == 200, "/livez answered %ld", st);
    free(body);
    snprintf(url, sizeof(url), "http://%s/readyz", addr + 8);
    body = http_get(url, NULL, &st);
    CHECK(body && st == 200, "/readyz answered %ld: %s", st, body ? body : "");
    free(body);
    snprintf(url, sizeof(url), "http://%s/metrics", addr + 8);
    body = http_get(url, NULL, &st);
    CHECK(body && st == 200, "/metrics answered %ld", st);
    char want[96];
    snprintf(want, sizeof(want),
             "contactguard_jobs_total{outcome=\"published\"} %zu", jobs);
    CHECK(body && strstr(body, want), "/metrics lacks '%s'", want);
    CHECK(body && strstr(body, "contactguard_job_duration_seconds_bucket") &&
              strstr(body, "contactguard_arm_requests_total{class=\"2xx\"}") &&
              strstr(body, "contactguard_consumer_lag"),
          "/metrics lacks a family");
    CHECK(body && !strstr(body, "subscription=") &&
              !strstr(body, "subscription_id="),
          "/metrics has per-subscription labels");
    free(body);
}

/* GET {base}/_fake/stats. */
static json_t *fake_stats(struct stack *s)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/_fake/stats", s->base);
    struct cg_buf b;
    cg_buf_init(&b, 64 << 20);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, s->ca);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    json_t *o = rc == CURLE_OK && b.data ? json_loads(b.data, 0, NULL) : NULL;
    cg_buf_free(&b);
    CHECK(o != NULL, "fake stats unreadable (%s)", curl_easy_strerror(rc));
    return o;
}

static void stack_stop(struct stack *s)
{
    for (int i = 0; i < 2; i++)
        if (s->workers[i])
            cg_harness_proc_free(s->workers[i]);
    cg_harness_proc_free(s->fake);
    cg_harness_devbroker_free(s->kafka);
    cg_harness_redis_free(s->redis);
    free(s->truth);
}

int main(int argc, char **argv)
{
    const char *scenario = argc > 1 ? argv[1] : "e2e";
    struct stack s;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);

    if (!strcmp(scenario, "e2e")) {
        if (stack_start(&s, 4, 25, NULL, 4) == 0) {
            produce_jobs(&s, 0);
            s.workers[0] = worker_start(&s, "worker", NULL);
            check_findings(&s, true);
            check_cache(&s);
            check_metrics(s.workers[0], s.ntruth);
            CHECK(stop_worker(s.workers[0]) == 0, "SIGTERM: exit status");
            check_no_secrets(&s, s.workers[0]);
        }
    } else if (!strcmp(scenario, "kill")) {
        if (stack_start(&s, 4, 50,
                        (const char *const[]){ "--latency-ms", "20", NULL },
                        4) == 0) {
            produce_jobs(&s, 0);
            s.workers[0] = worker_start(&s, "worker-a", NULL);
            wait_findings(&s, s.ntruth); /* about a quarter done */
            cg_harness_proc_kill(s.workers[0], SIGKILL);
            cg_harness_proc_wait(s.workers[0], 10000, NULL);
            s.workers[1] = worker_start(&s, "worker-b", NULL);
            check_findings(&s, false);
            CHECK(stop_worker(s.workers[1]) == 0, "restarted worker exit");
        }
    } else if (!strcmp(scenario, "two")) {
        if (stack_start(&s, 4, 50,
                        (const char *const[]){ "--latency-ms", "20", NULL },
                        6) == 0) {
            produce_jobs(&s, 0);
            s.workers[0] = worker_start(&s, "worker-a", NULL);
            s.workers[1] = worker_start(&s, "worker-b", NULL);
            wait_findings(&s, s.ntruth);
            /* One leaves cleanly mid-run: its partitions move over. */
            CHECK(stop_worker(s.workers[0]) == 0, "leaving worker exit");
            check_findings(&s, false);
            CHECK(stop_worker(s.workers[1]) == 0, "remaining worker exit");
        }
    } else if (!strcmp(scenario, "throttle")) {
        if (stack_start(&s, 2, 30,
                        (const char *const[]){ "--p429", "0.4", "--retry-after",
                                               "1", NULL },
                        4) == 0) {
            produce_jobs(&s, 0);
            s.workers[0] = worker_start(&s, "worker", NULL);
            check_findings(&s, true);
            json_t *st = fake_stats(&s);
            long long early = -1;
            cg_json_int(st, "early_retries_total", &early);
            CHECK(early == 0, "%lld requests came before their Retry-After",
                  early);
            json_decref(st);
            CHECK(stop_worker(s.workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "tokens")) {
        if (stack_start(&s, 2, 40,
                        (const char *const[]){ "--token-lifetime", "2",
                                               "--latency-ms", "100", NULL },
                        4) == 0) {
            produce_jobs(&s, 0);
            s.workers[0] =
                worker_start(&s, "worker",
                             (const char *const[]){
                                 "--set", "worker.max_in_flight=2", NULL });
            check_findings(&s, true);
            json_t *st = fake_stats(&s);
            long long issued = 0;
            cg_json_int(cg_json_member(st, "tokens"), "issued", &issued);
            /* Two tenants, a run of about 4 s, tokens of 2 s. */
            CHECK(issued >= 4, "only %lld tokens issued: none expired", issued);
            json_decref(st);
            CHECK(stop_worker(s.workers[0]) == 0, "exit status");
            check_no_secrets(&s, s.workers[0]);
        }
    } else if (!strcmp(scenario, "redis")) {
        if (stack_start(&s, 4, 50,
                        (const char *const[]){ "--latency-ms", "20", NULL },
                        4) == 0) {
            char err[512];
            produce_jobs(&s, 0);
            s.workers[0] = worker_start(&s, "worker", NULL);
            wait_findings(&s, s.ntruth / 2);
            CHECK(cg_harness_redis_stop(s.redis, err, sizeof(err)) == 0,
                  "redis stop: %s", err);
            wait_findings(&s, s.ntruth * 2); /* progress without Redis */
            CHECK(cg_harness_redis_restart(s.redis, err, sizeof(err)) == 0,
                  "redis restart: %s", err);
            check_findings(&s, true);
            CHECK(stop_worker(s.workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "broker")) {
        if (stack_start(&s, 4, 50,
                        (const char *const[]){ "--latency-ms", "20", NULL },
                        4) == 0) {
            char reply[256];
            produce_jobs(&s, 0);
            s.workers[0] = worker_start(&s, "worker", NULL);
            wait_findings(&s, s.ntruth / 2);
            CHECK(cg_harness_devbroker_cmd(s.kafka, "down 1", reply,
                                           sizeof(reply)) == 0,
                  "down: %s", reply);
            /* The broker stays down while the fake serves a few more
             * requests; then it comes back. */
            json_t *st = fake_stats(&s);
            json_decref(st);
            CHECK(cg_harness_devbroker_cmd(s.kafka, "up 1", reply,
                                           sizeof(reply)) == 0,
                  "up: %s", reply);
            check_findings(&s, false);
            CHECK(stop_worker(s.workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "poison")) {
        if (stack_start(&s, 2, 20, NULL, 4) == 0) {
            size_t poison = 10;
            produce_jobs(&s, poison);
            s.workers[0] = worker_start(&s, "worker", NULL);
            check_findings(&s, true);
            struct cg_harness_msgs dl;
            char err[512];
            memset(&dl, 0, sizeof(dl));
            int rc = cg_harness_kafka_consume(
                cg_harness_devbroker_bootstrap(s.kafka),
                "contactguard.jobs.dlq", poison, WAIT_MS, &dl, err,
                sizeof(err));
            CHECK(rc == 0 && dl.n == poison, "dead letters: %zu of %zu (%s)",
                  dl.n, poison, err);
            size_t with_reason = 0, with_origin = 0;
            for (size_t i = 0; i < dl.n; i++) {
                with_reason +=
                    cg_harness_msg_header(&dl.v[i], "cg-dlq-reason") != NULL;
                const char *o = cg_harness_msg_header(&dl.v[i], "origin");
                with_origin += o && !strcmp(o, "test");
            }
            CHECK(with_reason == poison && with_origin == poison,
                  "dead letters keep headers and say why (%zu, %zu)",
                  with_reason, with_origin);
            cg_harness_msgs_free(&dl);
            CHECK(stop_worker(s.workers[0]) == 0, "exit status");
        }
    } else {
        fprintf(stderr, "unknown scenario %s\n", scenario);
        return 2;
    }
    stack_stop(&s);
    curl_global_cleanup();
    return check_done("worker");
}
