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
 *   redis_tls_e2e  e2e with Redis TLS only (a CA made for the run), a
 *             password and an ACL user, as Azure Cache for Redis
 *   redis     Redis stopped and restarted mid-run
 *   redis_tls the same over TLS
 *   redis_tls_refused  Redis's certificate from a CA the worker does not
 *             trust
 *   broker    the Kafka broker taken down and brought back mid-run
 *   poison    undecodable jobs land in the dead-letter topic; every good
 *             job completes
 *   limit     a job limit far below the backlog: every job done, and the
 *             partitions never paused (pausing discards librdkafka's
 *             prefetch and idles the consumer for a long poll each time)
 *   cert      certificate credentials (a signed client assertion)
 *   federated workload identity federation (a projected token file)
 *   ocsf V    OCSF findings in version V from job lines whose ids are upper
 *             case: every finding passes the conformance test
 *             (tests/ocsf), keys, headers, findings and the cache name
 *             each subscription in lower case; a tombstone, an empty and a
 *             non-UTF-8 message reach the dead-letter topic saying so
 *   giants    a 1 MiB and a 5 MiB message between valid jobs on one
 *             partition: both dead-lettered cut (size and SHA-256 in
 *             headers), every job behind them done
 *   dlqdenied the broker refuses a dead letter for good (whole and cut):
 *             the poison ends as a counted loss, every valid job behind
 *             it done
 *   failover  three workers, one SIGKILLed mid-sweep: with the worker's
 *             own session settings (no test overrides) the survivors hold
 *             its partitions within seconds (figures printed) and finish
 *   tls       Azure's certificate not trusted: every finding is ERROR
 *             TLS_VERIFICATION_FAILED after more than one attempt
 */
#include "../check.h"
#include "cache_reader.h"
#include "conf.h"
#include "finding.h"
#include "harness.h"
#include "stack.h"
#include "job.h"
#include "json.h"
#include "mem.h"
#include "ocsf_check.h"

#include <curl/curl.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 120000

/* The Redis of the TLS scenarios: TLS only, a password and an ACL user,
 * as Azure Cache for Redis with Entra ID users. */
static const struct cg_harness_redis_opts redis_tls = {
    .tls = true,
    .password = "it-worker-default-pass-5d1c",
    .user = "it_worker",
    .user_password = "it-worker-acl-pass-93ab",
};
static const struct cg_harness_redis_opts *redis_opts;

static struct cg_stack *stack_up(struct cg_stack *s, int tenants, int subs,
                                 const char *const *fake_args, int partitions)
{
    char err[512];
    struct cg_stack_opts o = { tenants, subs, partitions, fake_args, false };
    int rc = cg_stack_start_redis(s, &o, redis_opts, err, sizeof(err));
    CHECK(rc == 0, "stack: %s", err);
    return rc == 0 ? s : NULL;
}

static struct cg_harness_proc *
worker_start(struct cg_stack *s, const char *name, const char *const *extra)
{
    char err[512];
    struct cg_harness_proc *p =
        cg_stack_worker(s, name, extra, err, sizeof(err));
    CHECK(p != NULL, "%s: %s", name, err);
    return p;
}

static void produce_jobs(struct cg_stack *s, size_t poison)
{
    char err[512];
    int rc = cg_stack_produce_jobs(s, poison, err, sizeof(err));
    CHECK(rc == 0, "produce jobs: %s", err);
}

/* Reads the results topic until at least `want` findings are there. */
static int read_findings(struct cg_stack *s, size_t want, int timeout_ms,
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
static void wait_findings(struct cg_stack *s, size_t want)
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
static void check_findings(struct cg_stack *s, bool exact)
{
    size_t want = s->nsubs * CG_RULE_COUNT;
    struct cg_harness_msgs m;
    read_findings(s, want, WAIT_MS, &m);
    unsigned char *seen = cg_calloc(want, 1);
    size_t wrong = 0, dup = 0, unknown = 0, bad_headers = 0;
    size_t unregistered = 0, hinted = 0, unhinted = 0;
    for (size_t t = 0; t < s->nsubs; t++) {
        bool all_error = true;
        for (int r = 0; r < CG_RULE_COUNT; r++)
            all_error &= s->subs[t].want[r] == CG_STATUS_ERROR;
        unregistered += all_error;
    }
    for (size_t i = 0; i < m.n; i++) {
        struct cg_finding f;
        char err[256];
        if (cg_finding_parse(m.v[i].value, m.v[i].value_len, &f, err,
                             sizeof(err))) {
            unknown++;
            continue;
        }
        size_t t = 0;
        while (t < s->nsubs && strcmp(s->subs[t].sub, f.subscription_id))
            t++;
        if (t == s->nsubs) {
            unknown++;
        } else {
            size_t k = t * CG_RULE_COUNT + f.rule;
            if (seen[k]++)
                dup++;
            if (f.status != s->subs[t].want[f.rule]) {
                if (wrong < 5)
                    fprintf(stderr, "  %s %s: got %s (%s), truth %s\n",
                            f.subscription_id, cg_rule_info(f.rule)->id,
                            cg_status_name(f.status), f.reason_code,
                            cg_status_name(s->subs[t].want[f.rule]));
                wrong++;
            }
            /* The finding names the command that fixes it. */
            if (!strcmp(f.reason_code, "PROVIDER_NOT_REGISTERED")) {
                char cmd[160];
                snprintf(cmd, sizeof(cmd),
                         "`az provider register --namespace "
                         "Microsoft.Security --subscription %s`",
                         f.subscription_id);
                if (f.reason && strstr(f.reason, cmd))
                    hinted++;
                else
                    unhinted++;
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
    CHECK(unhinted == 0 && (unregistered == 0 || hinted > 0),
          "PROVIDER_NOT_REGISTERED findings: %zu name the register command, "
          "%zu do not (%zu unregistered subscriptions)",
          hinted, unhinted, unregistered);
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
static void check_cache(struct cg_stack *s)
{
    struct cg_conf *conf = cg_conf_new();
    char err[512];
    CHECK(cg_harness_redis_conf(s->redis, conf, err, sizeof(err)) == 0,
          "redis settings: %s", err);
    struct cg_cache_reader *r = cg_cache_reader_new(conf, err, sizeof(err));
    CHECK(r != NULL, "cache reader: %s", err);
    size_t wrong = 0;
    for (size_t i = 0; r && i < s->nsubs; i++) {
        struct cg_cache_sub sub;
        if (cg_cache_reader_sub(r, s->subs[i].sub, &sub, err, sizeof(err))) {
            wrong++;
            continue;
        }
        for (int k = 0; k < CG_RULE_COUNT; k++)
            if (sub.status[k] != s->subs[i].want[k])
                wrong++;
    }
    CHECK(wrong == 0, "%zu cached statuses differ from the truth", wrong);
    cg_cache_reader_free(r);
    cg_conf_free(conf);
}

static void check_no_secrets(struct cg_stack *s, struct cg_harness_proc *p)
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

/* Lines of the worker's stderr holding needle. */
static size_t count_log(struct cg_harness_proc *p, const char *needle)
{
    FILE *f = fopen(cg_harness_proc_stderr_path(p), "r");
    char line[4096];
    size_t n = 0;
    while (f && fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return n;
}

static int stop_worker(struct cg_harness_proc *p)
{
    int st = cg_harness_proc_stop(p, 30000);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The worker's /metrics, /livez and /readyz after a run. */
static void check_metrics(struct cg_harness_proc *w, size_t jobs)
{
    const char *addr = cg_stack_worker_metrics(w);
    CHECK(addr != NULL, "no metrics address");
    if (!addr)
        return;
    char url[160];
    long st;
    snprintf(url, sizeof(url), "http://%s/livez", addr);
    char *body = cg_stack_http_get(url, NULL, &st);
    CHECK(body && st == 200, "/livez answered %ld", st);
    free(body);
    snprintf(url, sizeof(url), "http://%s/readyz", addr);
    body = cg_stack_http_get(url, NULL, &st);
    CHECK(body && st == 200, "/readyz answered %ld: %s", st, body ? body : "");
    free(body);
    snprintf(url, sizeof(url), "http://%s/metrics", addr);
    body = cg_stack_http_get(url, NULL, &st);
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

/* The worker's /metrics has the sample line `want`. */
static void check_metric(struct cg_harness_proc *w, const char *want)
{
    const char *addr = cg_stack_worker_metrics(w);
    char url[160];
    long st;
    snprintf(url, sizeof(url), "http://%s/metrics", addr ? addr : "");
    char *body = addr ? cg_stack_http_get(url, NULL, &st) : NULL;
    const char *at = body ? strstr(body, want) : NULL;
    CHECK(at && (at == body || at[-1] == '\n') &&
              (at[strlen(want)] == '\n' || at[strlen(want)] == '\0'),
          "/metrics lacks '%s'", want);
    free(body);
}

static void upper(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'f')
            *s = (char)(*s - 'a' + 'A');
}

/* Job lines as a tool that writes GUIDs in upper case would, keyed by the
 * upper-case id, then three messages that are not text. */
static void produce_upper_jobs(struct cg_stack *s)
{
    static const struct {
        const char *value;
        size_t len;
    } odd[] = {
        { NULL, 0 },               /* a tombstone */
        { "", 0 },                 /* empty */
        { "{\"a\":\"\xff\"}", 8 }, /* not UTF-8 */
    };
    size_t nodd = sizeof(odd) / sizeof(odd[0]), n = s->nsubs + nodd;
    struct cg_harness_msg *msgs = cg_calloc(n, sizeof(*msgs));
    char **vals = cg_calloc(n, sizeof(char *));
    char(*keys)[40] = cg_calloc(n, sizeof(*keys));
    for (size_t i = 0; i < n; i++) {
        struct cg_harness_msg *m = &msgs[i];
        if (i < s->nsubs) {
            char sub[40], tenant[40];
            cg_strlcpy(sub, s->subs[i].sub, sizeof(sub));
            cg_strlcpy(tenant, s->subs[i].tenant, sizeof(tenant));
            upper(sub);
            upper(tenant);
            char *line = cg_asprintf(
                "{\"schema\":\"contactguard.job/1\",\"job_id\":\"up-%zu\","
                "\"tenant_id\":\"%s\",\"subscription_id\":\"%s\","
                "\"reason\":\"manual\",\"requested_at\":"
                "\"2026-11-23T19:41:10.052Z\",\"subscription_state\":\"%s\"}",
                i, tenant, sub, s->subs[i].state);
            vals[i] = line;
            cg_strlcpy(keys[i], sub, sizeof(keys[i]));
            m->value = vals[i];
            m->value_len = strlen(vals[i]);
        } else {
            cg_strlcpy(keys[i], "poison", sizeof(keys[i]));
            m->value = (char *)odd[i - s->nsubs].value;
            m->value_len = odd[i - s->nsubs].len;
        }
        m->key = keys[i];
        m->key_len = strlen(keys[i]);
        m->partition = -1;
    }
    char err[512];
    int rc = cg_harness_kafka_produce(cg_harness_devbroker_bootstrap(s->kafka),
                                      "contactguard.jobs", msgs, n, 120000, err,
                                      sizeof(err));
    CHECK(rc == 0, "produce upper-case jobs: %s", err);
    for (size_t i = 0; i < n; i++)
        free(vals[i]);
    free(vals);
    free(keys);
    free(msgs);
}

static bool is_lower(const char *s)
{
    for (; s && *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            return false;
    return s != NULL;
}

/* Every finding on the results topic conforms to version, is keyed and
 * headed in lower case, and agrees with the truth. */
static void check_ocsf_results(struct cg_stack *s, const char *version)
{
    char err[2048];
    struct cg_ocsf_check *chk =
        cg_ocsf_check_new(CG_OCSF_CHECK_TABLES, err, sizeof(err));
    REQUIRE(chk != NULL, "conformance tables: %s", err);
    size_t want = s->nsubs * CG_RULE_COUNT;
    struct cg_harness_msgs m;
    read_findings(s, want, WAIT_MS, &m);
    size_t bad = 0, upper_ids = 0, wrong = 0, unknown = 0;
    for (size_t i = 0; i < m.n; i++) {
        if (cg_ocsf_check_event(chk, m.v[i].value, m.v[i].value_len, err,
                                sizeof(err))) {
            if (bad++ < 5)
                fprintf(stderr, "  finding %zu: %s\n", i, err);
        }
        json_t *o = json_loadb(m.v[i].value, m.v[i].value_len, 0, NULL);
        json_t *cloud = cg_json_member(o, "cloud");
        const char *acct = cg_json_str(cg_json_member(cloud, "account"), "uid");
        const char *org = cg_json_str(cg_json_member(cloud, "org"), "uid");
        const char *tenant = cg_harness_msg_header(&m.v[i], "tenant");
        if (!is_lower(m.v[i].key) || !is_lower(acct) || !is_lower(org) ||
            !is_lower(tenant) || !acct || strcmp(acct, m.v[i].key) != 0 ||
            !org || !tenant || strcmp(org, tenant) != 0)
            upper_ids++;
        json_t *um = cg_json_member(o, "unmapped");
        enum cg_rule rule = cg_rule_parse(cg_json_str(um, "rule"));
        enum cg_status st = cg_status_parse(cg_json_str(um, "status"));
        size_t t = 0;
        while (acct && t < s->nsubs && strcmp(s->subs[t].sub, acct))
            t++;
        if (!acct || t == s->nsubs || rule == CG_RULE_COUNT)
            unknown++;
        else if (s->subs[t].want[rule] != st)
            wrong++;
        json_decref(o);
    }
    CHECK(m.n == want, "%zu findings for %zu (subscription, rule) pairs", m.n,
          want);
    CHECK(cg_ocsf_check_count(chk, version) == m.n,
          "%zu of %zu findings declare OCSF %s",
          cg_ocsf_check_count(chk, version), m.n, version);
    CHECK(bad == 0, "%zu findings do not conform to OCSF %s", bad, version);
    CHECK(upper_ids == 0, "%zu findings with an upper-case or mismatched id",
          upper_ids);
    CHECK(unknown == 0 && wrong == 0,
          "%zu findings of unknown subscriptions, %zu disagree with the truth",
          unknown, wrong);
    cg_harness_msgs_free(&m);
    cg_ocsf_check_free(chk);
}

static void check_plain_dead_letters(struct cg_stack *s)
{
    static const char *const want[] = { "no value (a tombstone)",
                                        "the message is empty",
                                        "not UTF-8 text" };
    struct cg_harness_msgs dl;
    char err[512];
    memset(&dl, 0, sizeof(dl));
    int rc = cg_harness_kafka_consume(cg_harness_devbroker_bootstrap(s->kafka),
                                      "contactguard.jobs.dlq", 3, WAIT_MS, &dl,
                                      err, sizeof(err));
    CHECK(rc == 0 && dl.n == 3, "dead letters: %zu of 3 (%s)", dl.n, err);
    for (size_t w = 0; w < 3; w++) {
        size_t found = 0;
        for (size_t i = 0; i < dl.n; i++) {
            const char *r = cg_harness_msg_header(&dl.v[i], "cg-dlq-reason");
            found += r && strstr(r, want[w]) != NULL;
        }
        CHECK(found == 1, "a dead letter saying \"%s\"", want[w]);
    }
    cg_harness_msgs_free(&dl);
}

/*
 * The truth's jobs for subscriptions [from, to) on partition 0, with an
 * undecodable message of `giant` bytes (0: none) in their middle, so that
 * valid jobs sit on both sides of it on the same partition.
 */
static void produce_span(struct cg_stack *s, size_t from, size_t to,
                         size_t giant)
{
    size_t n = to - from + (giant ? 1 : 0), sub = from;
    size_t at = giant ? (to - from) / 2 : n;
    struct cg_harness_msg *msgs = cg_calloc(n, sizeof(*msgs));
    char **vals = cg_calloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        struct cg_harness_msg *m = &msgs[i];
        if (i == at) {
            vals[i] = cg_malloc(giant + 1);
            memset(vals[i], 'g', giant);
            vals[i][giant] = '\0';
            m->key = "giant";
            m->value_len = giant;
        } else {
            struct cg_job job;
            cg_job_init(&job, s->subs[sub].tenant, s->subs[sub].sub,
                        CG_JOB_SCHEDULED);
            job.state = cg_sub_state_parse(s->subs[sub].state);
            vals[i] = cg_job_encode(&job);
            m->key = s->subs[sub++].sub;
            m->value_len = strlen(vals[i]);
        }
        m->key_len = strlen(m->key);
        m->value = vals[i];
        m->partition = 0;
    }
    char err[512];
    int rc = cg_harness_kafka_produce(cg_harness_devbroker_bootstrap(s->kafka),
                                      "contactguard.jobs", msgs, n, 120000, err,
                                      sizeof(err));
    CHECK(rc == 0, "produce %zu messages: %s", n, err);
    for (size_t i = 0; i < n; i++)
        free(vals[i]);
    free(vals);
    free(msgs);
}

/* Reads the dead-letter topic until it holds want messages. */
static int read_dead_letters(struct cg_stack *s, size_t want,
                             struct cg_harness_msgs *out)
{
    char err[512];
    memset(out, 0, sizeof(*out));
    int rc = cg_harness_kafka_consume(cg_harness_devbroker_bootstrap(s->kafka),
                                      "contactguard.jobs.dlq", want, WAIT_MS,
                                      out, err, sizeof(err));
    CHECK(rc == 0 && out->n == want, "dead letters: %zu of %zu (%s)", out->n,
          want, err);
    return rc;
}

/* Waits until every (subscription, rule) pair has a finding (duplicates
 * from redelivered jobs do not count); false at WAIT_MS. */
static bool wait_all_pairs(struct cg_stack *s)
{
    size_t want = s->nsubs * CG_RULE_COUNT, missing = want, have = want;
    int64_t until = cg_harness_now_ms() + WAIT_MS;
    while (missing > 0 && cg_harness_now_ms() < until) {
        struct cg_harness_msgs m;
        read_findings(s, have, (int)(until - cg_harness_now_ms()), &m);
        unsigned char *seen = cg_calloc(want, 1);
        for (size_t i = 0; i < m.n; i++) {
            struct cg_finding f;
            char err[256];
            if (cg_finding_parse(m.v[i].value, m.v[i].value_len, &f, err,
                                 sizeof(err)))
                continue;
            for (size_t t = 0; t < s->nsubs; t++)
                if (!strcmp(s->subs[t].sub, f.subscription_id))
                    seen[t * CG_RULE_COUNT + f.rule] = 1;
            cg_finding_clear(&f);
        }
        missing = 0;
        for (size_t k = 0; k < want; k++)
            missing += !seen[k];
        have = m.n + missing;
        free(seen);
        cg_harness_msgs_free(&m);
    }
    return missing == 0;
}

/* Polls the worker's /metrics until it has the sample line `want`. */
static void wait_metric(struct cg_harness_proc *w, const char *want)
{
    const char *addr = cg_stack_worker_metrics(w);
    char url[160];
    bool seen = false;
    snprintf(url, sizeof(url), "http://%s/metrics", addr ? addr : "");
    int64_t until = cg_harness_now_ms() + WAIT_MS;
    while (addr && !seen && cg_harness_now_ms() < until) {
        long st;
        char *body = cg_stack_http_get(url, NULL, &st);
        const char *at = body ? strstr(body, want) : NULL;
        seen = at && (at == body || at[-1] == '\n') &&
               (at[strlen(want)] == '\n' || at[strlen(want)] == '\0');
        free(body);
        if (!seen)
            usleep(100 * 1000);
    }
    CHECK(seen, "/metrics never had '%s'", want);
}

/* The value of an unlabelled sample on the worker's /metrics, or -1. */
static long long metric_value(struct cg_harness_proc *w, const char *name)
{
    const char *addr = cg_stack_worker_metrics(w);
    char url[160];
    long st;
    snprintf(url, sizeof(url), "http://%s/metrics", addr ? addr : "");
    char *body = addr ? cg_stack_http_get(url, NULL, &st) : NULL;
    long long v = -1;
    for (const char *p = body; p && (p = strstr(p, name)) != NULL; p++) {
        if ((p == body || p[-1] == '\n') && p[strlen(name)] == ' ') {
            v = strtoll(p + strlen(name) + 1, NULL, 10);
            break;
        }
    }
    free(body);
    return v;
}

int main(int argc, char **argv)
{
    const char *scenario = argc > 1 ? argv[1] : "e2e";
    struct cg_stack s;
    struct cg_harness_proc *workers[2] = { NULL, NULL };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);

    if (!strcmp(scenario, "redis_tls_e2e") || !strcmp(scenario, "redis_tls") ||
        !strcmp(scenario, "redis_tls_refused"))
        redis_opts = &redis_tls;
    if (!strcmp(scenario, "e2e") || !strcmp(scenario, "redis_tls_e2e")) {
        if (stack_up(&s, 4, 25, NULL, 4)) {
            produce_jobs(&s, 0);
            workers[0] = worker_start(&s, "worker", NULL);
            check_findings(&s, true);
            check_cache(&s);
            check_metrics(workers[0], s.nsubs);
            CHECK(stop_worker(workers[0]) == 0, "SIGTERM: exit status");
            check_no_secrets(&s, workers[0]);
        }
    } else if (!strcmp(scenario, "kill")) {
        if (stack_up(&s, 4, 50,
                     (const char *const[]){ "--latency-ms", "20", NULL }, 4)) {
            produce_jobs(&s, 0);
            workers[0] = worker_start(&s, "worker-a", NULL);
            wait_findings(&s, s.nsubs); /* about a quarter done */
            cg_harness_proc_kill(workers[0], SIGKILL);
            cg_harness_proc_wait(workers[0], 10000, NULL);
            workers[1] = worker_start(&s, "worker-b", NULL);
            check_findings(&s, false);
            CHECK(stop_worker(workers[1]) == 0, "restarted worker exit");
        }
    } else if (!strcmp(scenario, "two")) {
        if (stack_up(&s, 4, 50,
                     (const char *const[]){ "--latency-ms", "20", NULL }, 6)) {
            produce_jobs(&s, 0);
            workers[0] = worker_start(&s, "worker-a", NULL);
            workers[1] = worker_start(&s, "worker-b", NULL);
            wait_findings(&s, s.nsubs);
            /* One leaves cleanly mid-run: its partitions move over. */
            CHECK(stop_worker(workers[0]) == 0, "leaving worker exit");
            check_findings(&s, false);
            CHECK(stop_worker(workers[1]) == 0, "remaining worker exit");
        }
    } else if (!strcmp(scenario, "limit")) {
        if (stack_up(&s, 4, 50,
                     (const char *const[]){ "--latency-ms", "20", NULL }, 4)) {
            produce_jobs(&s, 0);
            workers[0] = worker_start(
                &s, "worker",
                (const char *const[]){ "--set", "worker.max_jobs=8", NULL });
            check_findings(&s, true);
            check_metrics(workers[0], s.nsubs);
            check_metric(workers[0], "contactguard_consumer_pauses_total 0");
            CHECK(stop_worker(workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "throttle")) {
        if (stack_up(&s, 2, 30,
                     (const char *const[]){ "--p429", "0.4", "--retry-after",
                                            "1", NULL },
                     4)) {
            produce_jobs(&s, 0);
            workers[0] = worker_start(&s, "worker", NULL);
            check_findings(&s, true);
            json_t *st = cg_stack_fake_json(&s, "stats");
            long long early = -1;
            cg_json_int(st, "early_retries_total", &early);
            CHECK(early == 0, "%lld requests came before their Retry-After",
                  early);
            json_decref(st);
            CHECK(stop_worker(workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "tokens")) {
        if (stack_up(&s, 2, 40,
                     (const char *const[]){ "--token-lifetime", "2",
                                            "--latency-ms", "100", NULL },
                     4)) {
            produce_jobs(&s, 0);
            workers[0] =
                worker_start(&s, "worker",
                             (const char *const[]){
                                 "--set", "worker.max_in_flight=2", NULL });
            check_findings(&s, true);
            json_t *st = cg_stack_fake_json(&s, "stats");
            long long issued = 0;
            cg_json_int(cg_json_member(st, "tokens"), "issued", &issued);
            /* Two tenants, a run of about 4 s, tokens of 2 s. */
            CHECK(issued >= 4, "only %lld tokens issued: none expired", issued);
            json_decref(st);
            CHECK(stop_worker(workers[0]) == 0, "exit status");
            check_no_secrets(&s, workers[0]);
        }
    } else if (!strcmp(scenario, "redis_tls_refused")) {
        /* Redis's certificate chains to a CA the worker was not told to
         * trust: one clear log line, /readyz not ready, every finding
         * still published and the lost cache writes counted. */
        if (stack_up(&s, 2, 10, NULL, 4)) {
            char ca[700], url[200];
            long st = 0;
            snprintf(ca, sizeof(ca), "redis.tls_ca_file=%s",
                     cg_harness_redis_other_ca(s.redis));
            produce_jobs(&s, 0);
            workers[0] = worker_start(
                &s, "worker", (const char *const[]){ "--set", ca, NULL });
            check_findings(&s, true);
            const char *addr = cg_stack_worker_metrics(workers[0]);
            snprintf(url, sizeof(url), "http://%s/readyz", addr ? addr : "");
            char *body = addr ? cg_stack_http_get(url, NULL, &st) : NULL;
            CHECK(st == 503 && body && strstr(body, "TLS certificate"),
                  "/readyz %ld: %s", st, body ? body : "(none)");
            free(body);
            check_metric(workers[0], "contactguard_cache_tls_refused 1");
            check_metric(workers[0], "contactguard_cache_connected 0");
            check_metric(workers[0],
                         "contactguard_cache_writes_total{result=\"ok\"} 0");
            CHECK(stop_worker(workers[0]) == 0, "exit status");
            size_t refused = count_log(workers[0], "TLS certificate refused");
            CHECK(refused == 1,
                  "%zu log lines say the certificate was refused, want 1",
                  refused);
            CHECK(count_log(workers[0],
                            "level=error component=worker event=redis_down") ==
                      1,
                  "the refusal is logged at error");
            check_no_secrets(&s, workers[0]);
        }
    } else if (!strcmp(scenario, "redis") || !strcmp(scenario, "redis_tls")) {
        if (stack_up(&s, 4, 50,
                     (const char *const[]){ "--latency-ms", "20", NULL }, 4)) {
            char err[512];
            produce_jobs(&s, 0);
            workers[0] = worker_start(&s, "worker", NULL);
            wait_findings(&s, s.nsubs / 2);
            CHECK(cg_harness_redis_stop(s.redis, err, sizeof(err)) == 0,
                  "redis stop: %s", err);
            wait_findings(&s, s.nsubs * 2); /* progress without Redis */
            CHECK(cg_harness_redis_restart(s.redis, err, sizeof(err)) == 0,
                  "redis restart: %s", err);
            check_findings(&s, true);
            CHECK(stop_worker(workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "broker")) {
        if (stack_up(&s, 4, 50,
                     (const char *const[]){ "--latency-ms", "20", NULL }, 4)) {
            char reply[256];
            produce_jobs(&s, 0);
            workers[0] = worker_start(&s, "worker", NULL);
            wait_findings(&s, s.nsubs / 2);
            CHECK(cg_harness_devbroker_cmd(s.kafka, "down 1", reply,
                                           sizeof(reply)) == 0,
                  "down: %s", reply);
            /* The broker stays down while the fake serves a few more
             * requests; then it comes back. */
            json_t *st = cg_stack_fake_json(&s, "stats");
            json_decref(st);
            CHECK(cg_harness_devbroker_cmd(s.kafka, "up 1", reply,
                                           sizeof(reply)) == 0,
                  "up: %s", reply);
            check_findings(&s, false);
            CHECK(stop_worker(workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "cert") || !strcmp(scenario, "federated")) {
        /* The same run with certificate assertions (PS256, x5t#S256) or
         * workload identity federation instead of client secrets. */
        if (stack_up(&s, 3, 10,
                     (const char *const[]){ "--credentials-auth",
                                            !strcmp(scenario, "cert")
                                                ? "certificate"
                                                : "federated",
                                            NULL },
                     4)) {
            produce_jobs(&s, 0);
            workers[0] = worker_start(&s, "worker", NULL);
            check_findings(&s, true);
            json_t *st = cg_stack_fake_json(&s, "stats");
            json_t *tok = cg_json_member(st, "tokens");
            long long by_kind = 0, by_secret = -1;
            cg_json_int(tok,
                        !strcmp(scenario, "cert") ? "certificate" : "federated",
                        &by_kind);
            cg_json_int(tok, "client_secret", &by_secret);
            CHECK(by_kind >= 3 && by_secret == 0,
                  "tokens: %lld by %s, %lld by secret", by_kind, scenario,
                  by_secret);
            json_decref(st);
            CHECK(stop_worker(workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "giants")) {
        /* The mock broker keeps at most 5 MiB of log per partition, batch
         * overhead included, and prunes the oldest batches past it
         * (hard-coded in librdkafka 2.0's mock, not a setting): the big
         * message is 5 MiB less 4 KiB for that overhead, goes in once the
         * worker has caught up, and the jobs behind it once it was read. */
        static const size_t sizes[] = { 1 << 20, (5 << 20) - 4096 };
        if (stack_up(&s, 1, 12, NULL, 1)) {
            struct cg_harness_msgs dl;
            workers[0] = worker_start(&s, "worker", NULL);
            produce_span(&s, 0, 6, sizes[0]);
            wait_findings(&s, 6 * CG_RULE_COUNT);
            produce_span(&s, 6, 6, sizes[1]);
            read_dead_letters(&s, 2, &dl);
            cg_harness_msgs_free(&dl);
            produce_span(&s, 6, 12, 0);
            check_findings(&s, true);
            read_dead_letters(&s, 2, &dl);
            for (size_t i = 0; i < dl.n && i < 2; i++) {
                const char *cut =
                    cg_harness_msg_header(&dl.v[i], "cg-dlq-truncated");
                const char *size =
                    cg_harness_msg_header(&dl.v[i], "cg-dlq-original-size");
                const char *sha =
                    cg_harness_msg_header(&dl.v[i], "cg-dlq-sha256");
                size_t want = sizes[i];
                char wsize[32], wsha[65];
                unsigned char md[SHA256_DIGEST_LENGTH];
                char *whole = cg_malloc(want);
                memset(whole, 'g', want);
                SHA256((unsigned char *)whole, want, md);
                free(whole);
                for (size_t k = 0; k < sizeof(md); k++)
                    snprintf(wsha + 2 * k, 3, "%02x", md[k]);
                snprintf(wsize, sizeof(wsize), "%zu", want);
                CHECK(cut && !strcmp(cut, "true") && size &&
                          !strcmp(size, wsize) && sha && !strcmp(sha, wsha),
                      "giant %zu: truncated=%s size=%s sha256=%s", i,
                      cut ? cut : "-", size ? size : "-", sha ? sha : "-");
                CHECK(dl.v[i].value_len > 0 && dl.v[i].value_len < 1000000,
                      "giant %zu: dead letter of %zu bytes", i,
                      dl.v[i].value_len);
            }
            cg_harness_msgs_free(&dl);
            check_metric(workers[0],
                         "contactguard_jobs_total{outcome=\"dead_letter\"} 2");
            CHECK(stop_worker(workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "dlqdenied")) {
        /* The broker refuses the dead letter as too large, then its cut
         * copy too (injected Produce errors; only the worker produces
         * once they are set): the job ends as a counted loss, its offset
         * moves, and the valid jobs behind it on the partition complete. */
        if (stack_up(&s, 1, 12, NULL, 1)) {
            char reply[256];
            produce_span(&s, 0, 0, 100);
            CHECK(cg_harness_devbroker_cmd(s.kafka,
                                           "error Produce MSG_SIZE_TOO_LARGE 2",
                                           reply, sizeof(reply)) == 0,
                  "error injection: %s", reply);
            workers[0] = worker_start(&s, "worker", NULL);
            wait_metric(
                workers[0],
                "contactguard_jobs_total{outcome=\"dead_letter_lost\"} 1");
            produce_span(&s, 0, 12, 0);
            check_findings(&s, true);
            check_metric(workers[0],
                         "contactguard_jobs_total{outcome=\"published\"} 12");
            check_metric(
                workers[0],
                "contactguard_jobs_total{outcome=\"dead_letter_lost\"} 1");
            CHECK(stop_worker(workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "failover")) {
        /*
         * The worker's own settings (6 s session, 1 s heartbeats; no test
         * overrides): the survivors must hold all six partitions long
         * before librdkafka's 45 s default session would have let them go.
         * The figures are printed: unloaded, the partitions move in about
         * 10.5 s and the sweep ends about 13 s after the kill. About 5 s
         * of that are the mock coordinator's: it honours the session
         * timeout, but after evicting a member it waits session - 1 s for
         * the others to rejoin (a real broker completes once they have),
         * and on a loaded machine a late rejoin costs it another round.
         * The assertion is 30 s so that load cannot fail it; 45 s (the
         * old default) cannot pass it.
         */
        static const char *const slow[] = { "--set", "worker.max_jobs=4",
                                            NULL };
        if (stack_up(&s, 4, 50,
                     (const char *const[]){ "--latency-ms", "100", NULL }, 6)) {
            struct cg_harness_proc *third = NULL;
            produce_jobs(&s, 0);
            workers[0] = worker_start(&s, "worker-a", slow);
            workers[1] = worker_start(&s, "worker-b", slow);
            third = worker_start(&s, "worker-c", slow);
            wait_findings(&s, s.nsubs); /* about a quarter done */
            int64_t killed = cg_harness_now_ms();
            cg_harness_proc_kill(workers[0], SIGKILL);
            cg_harness_proc_wait(workers[0], 10000, NULL);
            int64_t until = killed + WAIT_MS;
            long long held = 0;
            while (held != 6 && cg_harness_now_ms() < until) {
                held = metric_value(workers[1],
                                    "contactguard_partitions_assigned") +
                       metric_value(third, "contactguard_partitions_assigned");
                if (held != 6)
                    usleep(100 * 1000);
            }
            int64_t moved = cg_harness_now_ms() - killed;
            CHECK(wait_all_pairs(&s), "the sweep never finished");
            int64_t done = cg_harness_now_ms() - killed;
            printf("failover: partitions moved %lld ms, sweep finished %lld "
                   "ms after the kill\n",
                   (long long)moved, (long long)done);
            CHECK(held == 6 && moved <= 30000,
                  "survivors hold %lld of 6 partitions %lld ms after the "
                  "kill (bound 30 s)",
                  held, (long long)moved);
            check_findings(&s, false);
            CHECK(stop_worker(workers[1]) == 0, "survivor b exit");
            CHECK(stop_worker(third) == 0, "survivor c exit");
            cg_harness_proc_free(third);
        }
    } else if (!strcmp(scenario, "tls")) {
        /* Trusting only the public roots, the fake's own CA fails. */
        if (stack_up(&s, 1, 4, NULL, 2)) {
            produce_jobs(&s, 0);
            workers[0] = worker_start(
                &s, "worker",
                (const char *const[]){
                    "--set", "azure.ca_file=/etc/ssl/certs/ca-certificates.crt",
                    "--set", "worker.job_deadline_ms=4000", NULL });
            size_t want = s.nsubs * CG_RULE_COUNT, tls = 0;
            struct cg_harness_msgs m;
            read_findings(&s, want, WAIT_MS, &m);
            for (size_t i = 0; i < m.n; i++) {
                struct cg_finding f;
                char err[256];
                if (cg_finding_parse(m.v[i].value, m.v[i].value_len, &f, err,
                                     sizeof(err)))
                    continue;
                tls += f.status == CG_STATUS_ERROR &&
                       !strcmp(f.reason_code, "TLS_VERIFICATION_FAILED");
                cg_finding_clear(&f);
            }
            CHECK(m.n == want && tls == want,
                  "%zu of %zu findings say TLS_VERIFICATION_FAILED", tls, want);
            /* Retried like a transport failure: more than one token
             * request failed for the one tenant. */
            long long failures =
                metric_value(workers[0], "contactguard_token_failures_total");
            CHECK(failures > 1, "%lld token requests failed: not retried",
                  failures);
            cg_harness_msgs_free(&m);
            CHECK(stop_worker(workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "poison")) {
        if (stack_up(&s, 2, 20, NULL, 4)) {
            size_t poison = 10;
            produce_jobs(&s, poison);
            workers[0] = worker_start(&s, "worker", NULL);
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
            CHECK(stop_worker(workers[0]) == 0, "exit status");
        }
    } else if (!strcmp(scenario, "ocsf") && argc > 2) {
        char fmt[64];
        snprintf(fmt, sizeof(fmt), "output.ocsf_version=%s", argv[2]);
        if (stack_up(&s, 2, 10, NULL, 4)) {
            produce_upper_jobs(&s);
            workers[0] = worker_start(
                &s, "worker",
                (const char *const[]){ "--set", "output.format=ocsf", "--set",
                                       fmt, NULL });
            check_ocsf_results(&s, argv[2]);
            check_cache(&s);
            check_plain_dead_letters(&s);
            CHECK(stop_worker(workers[0]) == 0, "exit status");
        }
    } else {
        fprintf(stderr, "unknown scenario %s\n", scenario);
        return 2;
    }
    for (int i = 0; i < 2; i++)
        cg_harness_proc_free(workers[i]);
    cg_stack_stop(&s);
    curl_global_cleanup();
    return check_done("worker");
}
