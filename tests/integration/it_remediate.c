/*
 * Remediation end to end, every part real on loopback: the devbroker, a
 * redis-server, the fake Azure over HTTPS, contactguard-worker processes and
 * contactguard-remediate. One scenario per run (argv[1]):
 *
 *   apply     one tenant in apply mode, one off: the fake's PUT log holds
 *             exactly the planned bodies, one per remediated subscription,
 *             every original address survives, each write is verified, the
 *             findings show the state after the change, blocked and
 *             ineligible subscriptions are never written; the same jobs
 *             again write nothing
 *   dryrun    dry-run writes nothing and publishes a planned event for every
 *             failing subscription; a job lowers its tenant's apply to a
 *             dry run, and cannot raise a dry-run tenant to apply
 *   race      duplicated jobs for the same subscriptions spread over two
 *             workers: exactly one PUT per subscription
 *   forbidden a tenant whose writes answer 403: failed events that name the
 *             roles, exactly one PUT attempt each (no retries), the earlier
 *             undo record kept
 *   rejected  the same with 400 (Azure rejected the body)
 *   mismatch  the read after the write shows the old contact: failed
 *             verification, one PUT, findings of what was read back
 *   noredis   Redis down: no lock, so no write; failed events say why
 *   replan    the contact changes between the scan and the write: the write
 *             keeps the change (re-planned, not overwritten)
 *   cli       contactguard-remediate plan (no write), apply, undo (restores
 *             the original, or removes a contact that did not exist), and
 *             undo refused after a change made since; with
 *             require_configured a missing tenant address is what is fixed
 *   unstored  a contact with properties the write's API version does not
 *             store: plan and apply both blocked, PLAN_WOULD_LOSE_DATA
 *             naming them, nothing written
 *   undocomma a comma-separated list: undo restores it in meaning
 *             (';'-separated, same order) and says so
 *   addresses an internationalised address is valid and the other fixes
 *             apply; an invalid one holds back only the address fix
 *   concurrent a portal edit between the read under the lock and the write
 *             is seen by the last look and kept, not overwritten
 *   changing  a contact that keeps changing: nothing is written
 *             (CONTACT_CHANGING) and the last edit stands
 */
#include "../check.h"
#include "err.h"
#include "finding.h"
#include "harness.h"
#include "job.h"
#include "json.h"
#include "mem.h"
#include "ocsf.h"
#include "ocsf_check.h"
#include "remediate.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS  120000
#define ADDRESS  "soc@example.com"
#define PARTS    4
#define SUBS_MAX 256

struct truth {
    char sub[40], tenant[40], state[16], scenario[48];
    enum cg_status want[CG_RULE_COUNT];
    json_t *original; /* the fake's contact before the run, or NULL */
};

struct stack {
    struct cg_harness_redis *redis;
    struct cg_harness_devbroker *kafka;
    struct cg_harness_proc *fake;
    struct cg_harness_proc *workers[2];
    char base[128];
    char dir[512];
    char creds[600], ca[600], truthf[600], conf[600];
    struct truth truth[SUBS_MAX];
    size_t ntruth;
    char tenants[2][40];
    size_t ntenants;
};

/* strcmp that treats a missing string as a mismatch, not a crash. */
static bool str_eq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* ---- the fake ---------------------------------------------------------- */

static size_t write_cb(char *ptr, size_t sz, size_t nm, void *ud)
{
    cg_buf_append(ud, ptr, sz * nm);
    return sz * nm;
}

static json_t *fake_call(struct stack *s, const char *method, const char *path,
                         const char *body)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", s->base, path);
    struct cg_buf b;
    cg_buf_init(&b, 64 << 20);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: "
                                                   "application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, s->ca);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    json_t *o = rc == CURLE_OK && b.data ? json_loads(b.data, 0, NULL) : NULL;
    CHECK(o != NULL && status == 200, "fake %s %s: %ld %s", method, path,
          status, b.data ? b.data : curl_easy_strerror(rc));
    cg_buf_free(&b);
    return o;
}

/* The fake's stored 2023 properties of sub (new reference), or NULL. */
static json_t *fake_contact(struct stack *s, const char *sub)
{
    char path[128];
    snprintf(path, sizeof(path), "/_fake/subscriptions/%s", sub);
    json_t *o = fake_call(s, "GET", path, NULL);
    json_t *c = json_object_get(o, "contact");
    json_t *out = json_is_object(c) ? json_incref(c) : NULL;
    json_decref(o);
    return out;
}

static json_t *fake_stats(struct stack *s)
{
    return fake_call(s, "GET", "/_fake/stats", NULL);
}

/* How many contacts.put requests the fake answered with status. */
static long long put_requests(json_t *stats, const char *status)
{
    long long n = 0;
    json_t *r =
        cg_json_member(cg_json_member(stats, "requests"), "contacts.put");
    cg_json_int(r, status, &n);
    return n;
}

/* ---- the stack --------------------------------------------------------- */

static void load_truth(struct stack *s)
{
    FILE *f = fopen(s->truthf, "r");
    CHECK(f != NULL, "truth file %s", s->truthf);
    if (!f)
        return;
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
        if (!t && s->ntruth < SUBS_MAX) {
            t = &s->truth[s->ntruth++];
            memset(t, 0, sizeof(*t));
            cg_strlcpy(t->sub, sub, sizeof(t->sub));
            cg_strlcpy(t->tenant, cg_json_str(o, "tenant_id"),
                       sizeof(t->tenant));
            const char *st = cg_json_str(o, "state");
            cg_strlcpy(t->state, st ? st : "", sizeof(t->state));
            const char *sc = cg_json_str(o, "scenario");
            cg_strlcpy(t->scenario, sc ? sc : "", sizeof(t->scenario));
            bool known = false;
            for (size_t k = 0; k < s->ntenants; k++)
                known = known || !strcmp(s->tenants[k], t->tenant);
            if (!known && s->ntenants < 2)
                cg_strlcpy(s->tenants[s->ntenants++], t->tenant, 40);
        }
        if (t && r < CG_RULE_COUNT)
            t->want[r] = cg_status_parse(cg_json_str(o, "status"));
        json_decref(o);
    }
    fclose(f);
}

static int stack_start(struct stack *s, int tenants, int subs,
                       const char *const *fake_extra)
{
    char err[512];
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "%s/azure", cg_harness_dir());
    mkdir(s->dir, 0700);
    snprintf(s->creds, sizeof(s->creds), "%s/worker.json", s->dir);
    snprintf(s->ca, sizeof(s->ca), "%s/ca.pem", s->dir);
    snprintf(s->truthf, sizeof(s->truthf), "%s/truth.jsonl", s->dir);
    snprintf(s->conf, sizeof(s->conf), "%s/remediate.json", s->dir);
    s->redis = cg_harness_redis_start(err, sizeof(err));
    CHECK(s->redis != NULL, "redis: %s", err);
    s->kafka = cg_harness_devbroker_start(1, PARTS, NULL, err, sizeof(err));
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
    load_truth(s);
    CHECK(s->ntruth == (size_t)(tenants * subs), "truth: %zu subscriptions",
          s->ntruth);
    for (size_t i = 0; i < s->ntruth; i++)
        s->truth[i].original = fake_contact(s, s->truth[i].sub);
    return s->ntruth == (size_t)(tenants * subs) ? 0 : -1;
}

/*
 * The worker configuration: the fake's credentials file with each tenant's
 * remediation policy added (modes[k] for the k-th tenant; NULL: none, the
 * global mode applies).
 */
static void write_conf(struct stack *s, const char *const modes[2])
{
    json_error_t je;
    json_t *o = json_load_file(s->creds, 0, &je);
    CHECK(o != NULL, "credentials: %s", je.text);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(o, "tenants"), i, t)
    {
        const char *id = cg_json_str(t, "id");
        for (size_t k = 0; k < s->ntenants; k++) {
            if (!id || strcmp(id, s->tenants[k]) || !modes[k])
                continue;
            json_object_set_new(t, "remediation",
                                json_pack("{s:s,s:[s],s:s,s:s}", "mode",
                                          modes[k], "emails", ADDRESS,
                                          "alert_severity", "Medium",
                                          "attack_paths", "High"));
        }
    }
    CHECK(json_dump_file(o, s->conf, JSON_INDENT(2)) == 0, "write %s", s->conf);
    json_decref(o);
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
                             s->conf,
                             "--set",
                             bs,
                             "--set",
                             rp,
                             "--set",
                             "output.format=compact",
                             "--set",
                             "worker.metrics_listen=",
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
    struct cg_harness_proc_opts po = { .name = name, .line_timeout_ms = -1 };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &po, err, sizeof(err));
    CHECK(p != NULL, "%s: %s", name, err);
    return p;
}

static int stop_worker(struct cg_harness_proc *p)
{
    int st = cg_harness_proc_stop(p, 30000);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The `remediation` a job carries for t (-1: none); NULL: none at all. */
static int (*job_mode)(const struct stack *s, const struct truth *t);

/*
 * One job per subscription selected by pick (NULL: all), `copies` times
 * each. With spread, the copies go to every partition in turn (different
 * workers race on one subscription); otherwise the key decides.
 */
static size_t produce_jobs(struct stack *s, bool (*pick)(const struct truth *),
                           int copies, bool spread)
{
    size_t cap = s->ntruth * (size_t)copies, n = 0;
    struct cg_harness_msg *msgs = cg_calloc(cap, sizeof(*msgs));
    char **vals = cg_calloc(cap, sizeof(char *));
    for (int c = 0; c < copies; c++) {
        for (size_t i = 0; i < s->ntruth; i++) {
            if (pick && !pick(&s->truth[i]))
                continue;
            struct cg_job job;
            cg_job_init(&job, s->truth[i].tenant, s->truth[i].sub,
                        CG_JOB_SCHEDULED);
            job.state = cg_sub_state_parse(s->truth[i].state);
            if (job_mode)
                job.remediation = job_mode(s, &s->truth[i]);
            vals[n] = cg_job_encode(&job);
            msgs[n].key = s->truth[i].sub;
            msgs[n].key_len = strlen(s->truth[i].sub);
            msgs[n].value = vals[n];
            msgs[n].value_len = strlen(vals[n]);
            msgs[n].partition = spread ? (int32_t)(n % PARTS) : -1;
            n++;
        }
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

static void stack_stop(struct stack *s)
{
    for (int i = 0; i < 2; i++)
        cg_harness_proc_free(s->workers[i]);
    cg_harness_proc_free(s->fake);
    cg_harness_devbroker_free(s->kafka);
    cg_harness_redis_free(s->redis);
    for (size_t i = 0; i < s->ntruth; i++)
        json_decref(s->truth[i].original);
}

/* ---- what the worker published ----------------------------------------- */

struct results {
    struct cg_harness_msgs m;
    size_t findings, events, bad_kind;
};

/*
 * The conformance test (tests/ocsf) over every remediation event on the
 * topic, in the version the workers were given (the environment's
 * CONTACTGUARD_OUTPUT_OCSF_VERSION, else the default).
 */
static void check_events_conform(const struct cg_harness_msgs *m)
{
    char err[2048];
    struct cg_ocsf_check *chk =
        cg_ocsf_check_new(CG_OCSF_CHECK_TABLES, err, sizeof(err));
    REQUIRE(chk != NULL, "conformance tables: %s", err);
    const char *version = getenv("CONTACTGUARD_OUTPUT_OCSF_VERSION");
    if (!version)
        version = CG_OCSF_DEFAULT_VERSION;
    size_t events = 0;
    for (size_t i = 0; i < m->n; i++) {
        const char *k = cg_harness_msg_header(&m->v[i], "kind");
        if (!k || strcmp(k, "remediation") != 0)
            continue;
        events++;
        CHECK(cg_ocsf_check_event(chk, m->v[i].value, m->v[i].value_len, err,
                                  sizeof(err)) == 0,
              "remediation event %zu does not conform: %s", i, err);
    }
    CHECK(cg_ocsf_check_count(chk, version) == events,
          "%zu of %zu remediation events declare OCSF %s",
          cg_ocsf_check_count(chk, version), events, version);
    cg_ocsf_check_free(chk);
}

/*
 * Reads the results topic until it holds at least want_findings findings
 * and want_events remediation events (each read waits for new messages:
 * no polling on a clock).
 */
static void read_results(struct stack *s, size_t want_findings,
                         size_t want_events, struct results *r)
{
    char err[512];
    size_t want = want_findings + want_events;
    int64_t until = cg_harness_now_ms() + WAIT_MS;
    for (;;) {
        memset(r, 0, sizeof(*r));
        int64_t left = until - cg_harness_now_ms();
        int rc = cg_harness_kafka_consume(
            cg_harness_devbroker_bootstrap(s->kafka), "contactguard.results",
            want, left > 0 ? (int)left : 1, &r->m, err, sizeof(err));
        for (size_t i = 0; i < r->m.n; i++) {
            const char *k = cg_harness_msg_header(&r->m.v[i], "kind");
            if (k && !strcmp(k, "remediation"))
                r->events++;
            else if (k && !strcmp(k, "finding"))
                r->findings++;
            else
                r->bad_kind++;
        }
        if (rc || (r->findings >= want_findings && r->events >= want_events))
            break;
        want =
            r->m.n + (r->findings < want_findings ? want_findings - r->findings
                                                  : want_events - r->events);
        cg_harness_msgs_free(&r->m);
    }
    CHECK(r->findings >= want_findings && r->events >= want_events,
          "waited for %zu findings and %zu events, have %zu and %zu",
          want_findings, want_events, r->findings, r->events);
    CHECK(r->bad_kind == 0, "%zu results without a kind header", r->bad_kind);
    check_events_conform(&r->m);
}

/* The remediation record of an event message (borrowed from *doc, which
 * the caller frees), or NULL. Checks the OCSF envelope. */
static json_t *event_record(const struct cg_harness_msg *m, json_t **doc)
{
    *doc = json_loadb(m->value, m->value_len, 0, NULL);
    long long cls = 0, act = 0, type = 0;
    cg_json_int(*doc, "class_uid", &cls);
    cg_json_int(*doc, "activity_id", &act);
    cg_json_int(*doc, "type_uid", &type);
    CHECK(cls == 2003 && act == 2 && type == 200302,
          "event is not an OCSF Compliance Finding Update (%lld %lld %lld)",
          cls, act, type);
    const char *acct = cg_json_str(
        cg_json_member(cg_json_member(*doc, "cloud"), "account"), "uid");
    CHECK(acct && m->key && !strcmp(acct, m->key),
          "event key and account differ");
    return cg_json_member(cg_json_member(*doc, "unmapped"), "remediation");
}

static bool is_event(const struct cg_harness_msg *m)
{
    const char *k = cg_harness_msg_header(m, "kind");
    return k && !strcmp(k, "remediation");
}

static struct truth *truth_of(struct stack *s, const char *sub)
{
    for (size_t i = 0; sub && i < s->ntruth; i++)
        if (!strcmp(s->truth[i].sub, sub))
            return &s->truth[i];
    return NULL;
}

/* What the worker must do with t: remediate (a FAIL, no ERROR or SKIPPED,
 * the subscription Enabled). */
static bool eligible(const struct truth *t)
{
    bool fail = false;
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        /* Role assignments are never written: owner-reachable neither
         * asks for a remediation nor stands in its way. */
        if (k == CG_RULE_OWNER_REACHABLE)
            continue;
        if (t->want[k] == CG_STATUS_ERROR || t->want[k] == CG_STATUS_SKIPPED)
            return false;
        fail = fail || t->want[k] == CG_STATUS_FAIL;
    }
    enum cg_sub_state st = cg_sub_state_parse(t->state);
    return fail && (st == CG_SUB_ENABLED || st == CG_SUB_UNKNOWN);
}

/* Whether addr is one of the addresses of list (split on ';', ',' and
 * white space, as a person may have typed them), case-insensitively. */
static bool address_in(const char *addr, const char *list)
{
    char *copy = cg_strdup(list ? list : "");
    char *save = NULL;
    bool found = false;
    for (char *a = strtok_r(copy, ";, \t", &save); a && !found;
         a = strtok_r(NULL, ";, \t", &save))
        found = strcasecmp(a, addr) == 0;
    free(copy);
    return found;
}

/* How many addresses of original's emails are not in now's. */
static size_t addresses_lost(const json_t *original, const json_t *now)
{
    const json_t *np = cg_json_member(now, "properties");
    const char *emails = cg_json_str(np ? np : now, "emails");
    const char *orig = cg_json_str(original, "emails");
    size_t missing = 0;
    char *copy = cg_strdup(orig ? orig : "");
    char *save = NULL;
    for (char *a = strtok_r(copy, ";, \t", &save); a;
         a = strtok_r(NULL, ";, \t", &save))
        missing += !address_in(a, emails);
    free(copy);
    return missing;
}

/* ---- scenarios --------------------------------------------------------- */

static bool of_tenant0(const struct truth *t);
static const char *tenant0;

static bool of_tenant0(const struct truth *t)
{
    return !strcmp(t->tenant, tenant0);
}

static void scenario_apply(struct stack *s)
{
    /* Tenant 0 applies; tenant 1 says nothing and the global mode is off. */
    write_conf(s, (const char *const[]){ "apply", NULL });
    tenant0 = s->tenants[0];
    size_t want_events = 0, blocked_expected = 0;
    for (size_t i = 0; i < s->ntruth; i++) {
        if (of_tenant0(&s->truth[i]) && eligible(&s->truth[i])) {
            want_events++;
            blocked_expected +=
                !strncmp(s->truth[i].scenario, "emails-invalid", 14);
        }
    }
    CHECK(want_events >= 10 && blocked_expected >= 1,
          "the population covers the scenarios (%zu eligible)", want_events);
    produce_jobs(s, NULL, 1, false);
    s->workers[0] = worker_start(s, "worker", NULL);
    struct results r;
    read_results(s, s->ntruth * CG_RULE_COUNT, want_events, &r);
    CHECK(r.findings == s->ntruth * CG_RULE_COUNT && r.events == want_events,
          "%zu findings (want %zu), %zu events (want %zu)", r.findings,
          s->ntruth * CG_RULE_COUNT, r.events, want_events);

    json_t *stats = fake_stats(s);
    json_t *puts = json_object_get(stats, "puts");
    size_t applied = 0, blocked = 0, wrong = 0;
    for (size_t i = 0; i < r.m.n; i++) {
        if (!is_event(&r.m.v[i]))
            continue;
        json_t *doc;
        json_t *rec = event_record(&r.m.v[i], &doc);
        struct truth *t = truth_of(s, r.m.v[i].key);
        const char *outcome = cg_json_str(rec, "outcome");
        CHECK(t && of_tenant0(t) && eligible(t),
              "event for %s, which is not to be remediated", r.m.v[i].key);
        CHECK(str_eq(outcome, cg_harness_msg_header(&r.m.v[i], "outcome")),
              "outcome header");
        size_t nput = 0;
        json_t *put = NULL;
        size_t k;
        json_t *p;
        json_array_foreach(puts, k, p)
        {
            if (str_eq(cg_json_str(p, "subscription_id"), r.m.v[i].key)) {
                nput++;
                put = p;
            }
        }
        if (outcome && !strcmp(outcome, "applied")) {
            applied++;
            json_t *ver = cg_json_member(rec, "verification");
            CHECK(nput == 1, "%s (%s): %zu PUTs", r.m.v[i].key,
                  t ? t->scenario : "?", nput);
            CHECK(put && json_equal(json_object_get(put, "body"),
                                    json_object_get(rec, "planned")),
                  "%s: the PUT body is not the planned body", r.m.v[i].key);
            CHECK(put &&
                      str_eq(cg_json_str(put, "api_version"),
                             "2023-12-01-preview") &&
                      str_eq(cg_json_str(put, "name"), "default"),
                  "%s: PUT of default with 2023-12-01-preview", r.m.v[i].key);
            CHECK(str_eq(cg_json_str(ver, "status"), "passed") &&
                      json_is_true(json_object_get(ver, "body_matches")),
                  "%s: verification %s", r.m.v[i].key,
                  cg_json_str(ver, "status"));
            CHECK(json_array_size(json_object_get(rec, "rules_fixed")) > 0,
                  "%s: no rule fixed", r.m.v[i].key);
            CHECK(!json_is_true(json_object_get(rec, "replanned")),
                  "%s: replanned without a change", r.m.v[i].key);
            /* Nothing a person configured is lost. */
            json_t *now = fake_contact(s, r.m.v[i].key);
            CHECK(t && addresses_lost(t->original, now) == 0 &&
                      addresses_lost(t->original,
                                     json_object_get(put, "body")) == 0,
                  "%s: an original address is missing", r.m.v[i].key);
            CHECK(now && address_in(ADDRESS, cg_json_str(now, "emails")),
                  "%s: the tenant's address was not added", r.m.v[i].key);
            json_decref(now);
        } else if (outcome && !strcmp(outcome, "blocked")) {
            blocked++;
            CHECK(nput == 0, "%s: blocked but written", r.m.v[i].key);
        } else {
            wrong++;
            fprintf(stderr, "  %s (%s): outcome %s %s: %s\n", r.m.v[i].key,
                    t ? t->scenario : "?", outcome,
                    cg_json_str(rec, "reason_code"),
                    cg_json_str(rec, "reason"));
        }
        json_decref(doc);
    }
    CHECK(wrong == 0, "%zu events neither applied nor blocked", wrong);
    CHECK(blocked == blocked_expected, "%zu blocked, want %zu", blocked,
          blocked_expected);
    CHECK(json_array_size(puts) == applied,
          "%zu PUTs for %zu applied remediations", json_array_size(puts),
          applied);

    /* The findings say what the contact is now. */
    size_t stale = 0;
    for (size_t i = 0; i < r.m.n; i++) {
        if (is_event(&r.m.v[i]))
            continue;
        struct cg_finding f;
        char err[256];
        if (cg_finding_parse(r.m.v[i].value, r.m.v[i].value_len, &f, err,
                             sizeof(err)))
            continue;
        struct truth *t = truth_of(s, f.subscription_id);
        bool written = false;
        size_t k;
        json_t *p;
        json_array_foreach(puts, k, p)
        {
            written = written || str_eq(cg_json_str(p, "subscription_id"),
                                        f.subscription_id);
        }
        enum cg_status want = written ? CG_STATUS_PASS : t->want[f.rule];
        /* After a write owner alerts go out, so owner-reachable is decided
         * by who holds Owner: a user in every scenario but the one whose
         * only Owner is a service principal (written by hand). */
        if (written && f.rule == CG_RULE_OWNER_REACHABLE &&
            !strcmp(t->scenario, "owner-sp-alerts-off"))
            want = CG_STATUS_FAIL;
        if (f.status != want) {
            stale++;
            fprintf(stderr, "  %s %s %s: %s, want %s\n", t->scenario,
                    f.subscription_id, cg_rule_info(f.rule)->id,
                    cg_status_name(f.status), cg_status_name(want));
        }
        cg_finding_clear(&f);
    }
    CHECK(stale == 0, "%zu findings do not show the state after the change",
          stale);
    cg_harness_msgs_free(&r.m);
    json_decref(stats);

    /* The same jobs again: the fixed contacts pass, nothing is written. */
    produce_jobs(s, NULL, 1, false);
    read_results(s, 2 * s->ntruth * CG_RULE_COUNT, want_events + blocked, &r);
    stats = fake_stats(s);
    CHECK(json_array_size(json_object_get(stats, "puts")) == applied,
          "the second round wrote (%zu PUTs, %zu before)",
          json_array_size(json_object_get(stats, "puts")), applied);
    CHECK(r.events == want_events + blocked,
          "second round: %zu events, want %zu", r.events,
          want_events + blocked);
    json_decref(stats);
    cg_harness_msgs_free(&r.m);
    CHECK(stop_worker(s->workers[0]) == 0, "worker exit status");
}

/* Tenant 0 allows apply but its jobs ask for a dry run (a job lowers);
 * tenant 1 allows a dry run and its jobs ask for apply (a job cannot
 * raise). */
static int lower_and_raise(const struct stack *s, const struct truth *t)
{
    return !strcmp(t->tenant, s->tenants[0]) ? CG_REMEDIATION_DRY_RUN
                                             : CG_REMEDIATION_APPLY;
}

static void scenario_dryrun(struct stack *s)
{
    write_conf(s, (const char *const[]){ "apply", "dry-run" });
    job_mode = lower_and_raise;
    size_t want_events = 0;
    for (size_t i = 0; i < s->ntruth; i++)
        want_events += eligible(&s->truth[i]);
    produce_jobs(s, NULL, 1, false);
    s->workers[0] = worker_start(s, "worker", NULL);
    struct results r;
    read_results(s, s->ntruth * CG_RULE_COUNT, want_events, &r);
    CHECK(r.events == want_events, "%zu events, want %zu", r.events,
          want_events);
    size_t planned = 0, other = 0;
    for (size_t i = 0; i < r.m.n; i++) {
        if (!is_event(&r.m.v[i]))
            continue;
        json_t *doc;
        json_t *rec = event_record(&r.m.v[i], &doc);
        const char *o = cg_json_str(rec, "outcome");
        if (o && !strcmp(o, "planned")) {
            planned++;
            CHECK(json_is_object(json_object_get(rec, "planned")) &&
                      json_array_size(json_object_get(rec, "changes")) > 0 &&
                      json_array_size(json_object_get(rec, "rules_to_fix")) >
                          0 &&
                      str_eq(cg_json_str(rec, "mode"), "dry-run"),
                  "%s: a dry-run event shows the plan", r.m.v[i].key);
        } else if (!o || strcmp(o, "blocked")) {
            other++;
        }
        json_decref(doc);
    }
    CHECK(planned > 0 && other == 0, "%zu planned, %zu unexpected", planned,
          other);
    json_t *stats = fake_stats(s);
    CHECK(json_array_size(json_object_get(stats, "puts")) == 0 &&
              put_requests(stats, "200") + put_requests(stats, "201") == 0,
          "dry-run wrote");
    json_decref(stats);
    for (size_t i = 0; i < s->ntruth; i++) {
        json_t *now = fake_contact(s, s->truth[i].sub);
        CHECK(json_equal(now, s->truth[i].original) ||
                  (!now && !s->truth[i].original),
              "%s changed in a dry run", s->truth[i].sub);
        json_decref(now);
    }
    cg_harness_msgs_free(&r.m);
    CHECK(stop_worker(s->workers[0]) == 0, "worker exit status");
}

static bool owner_missing(const struct truth *t)
{
    return !strcmp(t->scenario, "owner-missing") ||
           !strcmp(t->scenario, "no-contact") ||
           !strcmp(t->scenario, "attack-missing") ||
           !strcmp(t->scenario, "contact-disabled");
}

static void scenario_race(struct stack *s)
{
    write_conf(s, (const char *const[]){ "apply", "apply" });
    size_t subs = 0;
    for (size_t i = 0; i < s->ntruth; i++)
        subs += owner_missing(&s->truth[i]);
    CHECK(subs >= 4, "%zu subscriptions to race on", subs);
    /* Ten jobs per subscription, spread over every partition and so over
     * both workers, all produced before either worker starts. */
    size_t jobs = produce_jobs(s, owner_missing, 10, true);
    const char *const slow[] = { "--set", "worker.max_in_flight=64", NULL };
    s->workers[0] = worker_start(s, "worker-a", slow);
    s->workers[1] = worker_start(s, "worker-b", slow);
    struct results r;
    read_results(s, jobs * CG_RULE_COUNT, 0, &r);
    CHECK(r.findings == jobs * CG_RULE_COUNT, "%zu findings for %zu jobs",
          r.findings, jobs);
    json_t *stats = fake_stats(s);
    json_t *puts = json_object_get(stats, "puts");
    size_t applied = 0, locked = 0, failed = 0;
    for (size_t i = 0; i < r.m.n; i++) {
        if (!is_event(&r.m.v[i]))
            continue;
        json_t *doc;
        const char *o = cg_json_str(event_record(&r.m.v[i], &doc), "outcome");
        applied += o && !strcmp(o, "applied");
        locked += o && !strcmp(o, "skipped-locked");
        failed += !o || (strcmp(o, "applied") && strcmp(o, "skipped-locked") &&
                         strcmp(o, "noop"));
        json_decref(doc);
    }
    CHECK(json_array_size(puts) == subs, "%zu PUTs for %zu subscriptions",
          json_array_size(puts), subs);
    for (size_t i = 0; i < s->ntruth; i++) {
        if (!owner_missing(&s->truth[i]))
            continue;
        size_t n = 0, k;
        json_t *p;
        json_array_foreach(puts, k, p)
        {
            n += str_eq(cg_json_str(p, "subscription_id"), s->truth[i].sub);
        }
        CHECK(n == 1, "%s: %zu PUTs", s->truth[i].sub, n);
    }
    /* Ten jobs per subscription over two workers with 30 ms per request:
     * the lock must have been contended, or the race was never run. */
    CHECK(locked > 0, "the lock was contended (%zu skipped-locked)", locked);
    CHECK(applied == subs && failed == 0,
          "%zu applied for %zu subscriptions, %zu failed (%zu skipped as "
          "locked)",
          applied, subs, failed, locked);
    fprintf(stderr, "race: %zu jobs, %zu applied, %zu skipped-locked\n", jobs,
            applied, locked);
    json_decref(stats);
    cg_harness_msgs_free(&r.m);
    CHECK(stop_worker(s->workers[0]) == 0, "worker-a exit status");
    CHECK(stop_worker(s->workers[1]) == 0, "worker-b exit status");
}

static const char *replan_sub;

static bool is_replan_sub(const struct truth *t)
{
    return !strcmp(t->sub, replan_sub);
}

static void scenario_replan(struct stack *s)
{
    write_conf(s, (const char *const[]){ "apply", "apply" });
    struct truth *t = NULL;
    for (size_t i = 0; i < s->ntruth && !t; i++)
        if (!strcmp(s->truth[i].scenario, "owner-missing"))
            t = &s->truth[i];
    CHECK(t != NULL, "an owner-missing subscription");
    if (!t)
        return;
    replan_sub = t->sub;
    /* Right after the worker's scan reads the contact, someone adds an
     * address and a role in the portal; the contact still fails. */
    json_t *edit = json_deep_copy(t->original);
    json_object_set_new(edit, "emails",
                        json_string("secops@contoso.com;late@contoso.com"));
    json_t *roles =
        cg_json_member(cg_json_member(edit, "notificationsByRole"), "roles");
    json_array_append_new(roles, json_string("ServiceAdmin"));
    char *body = json_dumps(edit, JSON_COMPACT);
    char path[128];
    snprintf(path, sizeof(path), "/_fake/subscriptions/%s/after-read", t->sub);
    json_decref(fake_call(s, "PUT", path, body));
    free(body);
    produce_jobs(s, is_replan_sub, 1, false);
    s->workers[0] = worker_start(s, "worker", NULL);
    struct results r;
    read_results(s, CG_RULE_COUNT, 1, &r);
    CHECK(r.events == 1, "%zu events", r.events);
    for (size_t i = 0; i < r.m.n; i++) {
        if (!is_event(&r.m.v[i]))
            continue;
        json_t *doc;
        json_t *rec = event_record(&r.m.v[i], &doc);
        CHECK(json_is_true(json_object_get(rec, "replanned")),
              "the event says the plan was made again");
        CHECK(str_eq(cg_json_str(rec, "outcome"), "applied"), "outcome %s",
              cg_json_str(rec, "outcome"));
        CHECK(addresses_lost(edit, json_object_get(rec, "before")) == 0,
              "the plan did not start from the contact read under the "
              "lock");
        json_decref(doc);
    }
    json_t *stats = fake_stats(s);
    json_t *puts = json_object_get(stats, "puts");
    CHECK(json_array_size(puts) == 1, "%zu PUTs", json_array_size(puts));
    json_t *put_props = cg_json_member(
        cg_json_member(json_array_get(puts, 0), "body"), "properties");
    CHECK(addresses_lost(edit, put_props) == 0,
          "the address added meanwhile was overwritten: %s",
          cg_json_str(put_props, "emails"));
    bool role_kept = false;
    size_t k;
    json_t *role;
    json_array_foreach(
        cg_json_member(cg_json_member(put_props, "notificationsByRole"),
                       "roles"),
        k, role)
    {
        role_kept =
            role_kept || !strcmp(json_string_value(role), "ServiceAdmin");
    }
    CHECK(role_kept, "the role added meanwhile was overwritten");
    json_t *now = fake_contact(s, t->sub);
    CHECK(addresses_lost(edit, now) == 0, "the stored contact lost an "
                                          "address");
    json_decref(now);
    json_decref(stats);
    json_decref(edit);
    cg_harness_msgs_free(&r.m);
    CHECK(stop_worker(s->workers[0]) == 0, "worker exit status");
}

/* Writes refused with status 403 (the principal may not write) or 400
 * (Azure rejected the body). */
static void refused(struct stack *s, int status)
{
    write_conf(s, (const char *const[]){ "apply", NULL });
    tenant0 = s->tenants[0];
    char path[128];
    snprintf(path, sizeof(path), "/_fake/tenants/%s/writes", s->tenants[0]);
    json_decref(
        fake_call(s, "PUT", path,
                  status == 403 ? "{\"deny\":true}" : "{\"reject\":true}"));
    const char *want_code =
        status == 403 ? "WRITE_FORBIDDEN" : "WRITE_REJECTED";
    size_t want_events = 0, want_writes = 0;
    for (size_t i = 0; i < s->ntruth; i++) {
        if (of_tenant0(&s->truth[i]) && eligible(&s->truth[i])) {
            want_events++;
            want_writes +=
                strncmp(s->truth[i].scenario, "emails-invalid", 14) != 0;
        }
    }
    /* An earlier remediation's undo record must survive a refused write. */
    static const char earlier[] = "{\"schema\":\"contactguard.undo/1\","
                                  "\"marker\":\"earlier\"}";
    const struct truth *kept = NULL;
    for (size_t i = 0; i < s->ntruth && !kept; i++)
        if (of_tenant0(&s->truth[i]) &&
            !strcmp(s->truth[i].scenario, "owner-missing"))
            kept = &s->truth[i];
    char err[256];
    redisContext *rc = cg_harness_redis_connect(s->redis, err, sizeof(err));
    CHECK(rc != NULL && kept, "redis: %s", err);
    if (!rc || !kept)
        return;
    freeReplyObject(redisCommand(rc, "SET cg:undo:%s %s", kept->sub, earlier));
    produce_jobs(s, NULL, 1, false);
    s->workers[0] = worker_start(s, "worker", NULL);
    struct results r;
    read_results(s, s->ntruth * CG_RULE_COUNT, want_events, &r);
    redisReply *rep = redisCommand(rc, "GET cg:undo:%s", kept->sub);
    CHECK(rep && rep->type == REDIS_REPLY_STRING && !strcmp(rep->str, earlier),
          "a refused write replaced the earlier undo record: %s",
          rep && rep->str ? rep->str : "(none)");
    freeReplyObject(rep);
    redisFree(rc);
    size_t forbidden = 0;
    for (size_t i = 0; i < r.m.n; i++) {
        if (!is_event(&r.m.v[i]))
            continue;
        json_t *doc;
        json_t *rec = event_record(&r.m.v[i], &doc);
        const char *o = cg_json_str(rec, "outcome");
        const char *code = cg_json_str(rec, "reason_code");
        if (str_eq(o, "failed") && str_eq(code, want_code)) {
            forbidden++;
            const char *why = cg_json_str(rec, "reason");
            if (status == 403)
                CHECK(why && strstr(why, "Security Admin") &&
                          strstr(why, "Contributor") && strstr(why, "Owner"),
                      "the reason names the roles: %s", why);
            else
                CHECK(why && strstr(why, "InvalidInput") &&
                          strstr(why, "rejected"),
                      "the reason gives Azure's answer: %s", why);
            long long st = 0;
            cg_json_int(rec, "http_status", &st);
            CHECK(st == status, "http_status %lld", st);
            CHECK(str_eq(cg_json_str(cg_json_member(rec, "verification"),
                                     "status"),
                         "not-run"),
                  "a refused write is not verified");
        }
        json_decref(doc);
    }
    CHECK(forbidden == want_writes, "%zu %s events, want %zu", forbidden,
          want_code, want_writes);
    json_t *stats = fake_stats(s);
    char st[8];
    snprintf(st, sizeof(st), "%d", status);
    CHECK(put_requests(stats, st) == (long long)want_writes,
          "%lld PUT attempts answered %d for %zu writes: retried",
          put_requests(stats, st), status, want_writes);
    CHECK(json_array_size(json_object_get(stats, "puts")) == 0,
          "a refused tenant was written");
    json_decref(stats);
    cg_harness_msgs_free(&r.m);
    CHECK(stop_worker(s->workers[0]) == 0, "worker exit status");
}

static void scenario_forbidden(struct stack *s)
{
    refused(s, 403);
}

static void scenario_rejected(struct stack *s)
{
    refused(s, 400);
}

/*
 * Azure answers the read after the write with the old contact (a stale
 * read): the remediation is failed with VERIFICATION_FAILED, written once,
 * not again, and the findings show what was read back.
 */
static void scenario_mismatch(struct stack *s)
{
    write_conf(s, (const char *const[]){ "apply", "apply" });
    struct truth *t = NULL;
    for (size_t i = 0; i < s->ntruth && !t; i++)
        if (!strcmp(s->truth[i].scenario, "owner-missing"))
            t = &s->truth[i];
    CHECK(t != NULL, "an owner-missing subscription");
    if (!t)
        return;
    replan_sub = t->sub;
    /* One body that both LIST (value) and GET (properties) read. */
    json_t *raw = json_pack("{s:[{s:s,s:O}],s:s,s:O}", "value", "name",
                            "default", "properties", t->original, "name",
                            "default", "properties", t->original);
    char *body = json_dumps(raw, JSON_COMPACT);
    char path[160];
    snprintf(path, sizeof(path),
             "/_fake/subscriptions/%s/raw?api-version=2023-12-01-preview",
             t->sub);
    json_decref(fake_call(s, "PUT", path, body));
    free(body);
    json_decref(raw);
    produce_jobs(s, is_replan_sub, 1, false);
    s->workers[0] = worker_start(s, "worker", NULL);
    struct results r;
    read_results(s, CG_RULE_COUNT, 1, &r);
    for (size_t i = 0; i < r.m.n; i++) {
        if (!is_event(&r.m.v[i])) {
            struct cg_finding f;
            char err[256];
            if (cg_finding_parse(r.m.v[i].value, r.m.v[i].value_len, &f, err,
                                 sizeof(err)) == 0) {
                CHECK(f.status == t->want[f.rule],
                      "%s: %s, the read-back says %s", cg_rule_info(f.rule)->id,
                      cg_status_name(f.status),
                      cg_status_name(t->want[f.rule]));
                cg_finding_clear(&f);
            }
            continue;
        }
        json_t *doc;
        json_t *rec = event_record(&r.m.v[i], &doc);
        json_t *ver = cg_json_member(rec, "verification");
        CHECK(str_eq(cg_json_str(rec, "outcome"), "failed") &&
                  str_eq(cg_json_str(rec, "reason_code"),
                         "VERIFICATION_FAILED") &&
                  str_eq(cg_json_str(ver, "status"), "failed") &&
                  json_is_false(json_object_get(ver, "body_matches")) &&
                  json_array_size(json_object_get(rec, "rules_fixed")) == 0,
              "a stale read-back fails the verification: %s %s",
              cg_json_str(rec, "outcome"), cg_json_str(rec, "reason_code"));
        json_decref(doc);
    }
    json_t *stats = fake_stats(s);
    CHECK(json_array_size(json_object_get(stats, "puts")) == 1,
          "%zu PUTs: a failed verification was retried",
          json_array_size(json_object_get(stats, "puts")));
    json_decref(stats);
    cg_harness_msgs_free(&r.m);
    CHECK(stop_worker(s->workers[0]) == 0, "worker exit status");
}

/* Without Redis there is no lock and no undo record: nothing is written,
 * and every failing subscription says so. */
static void scenario_noredis(struct stack *s)
{
    write_conf(s, (const char *const[]){ "apply", "apply" });
    size_t want_events = 0;
    for (size_t i = 0; i < s->ntruth; i++)
        want_events += eligible(&s->truth[i]);
    char err[256];
    CHECK(cg_harness_redis_stop(s->redis, err, sizeof(err)) == 0,
          "redis stop: %s", err);
    produce_jobs(s, NULL, 1, false);
    s->workers[0] = worker_start(s, "worker", NULL);
    struct results r;
    read_results(s, s->ntruth * CG_RULE_COUNT, want_events, &r);
    size_t unlocked = 0, other = 0;
    for (size_t i = 0; i < r.m.n; i++) {
        if (!is_event(&r.m.v[i]))
            continue;
        json_t *doc;
        json_t *rec = event_record(&r.m.v[i], &doc);
        if (str_eq(cg_json_str(rec, "outcome"), "failed") &&
            str_eq(cg_json_str(rec, "reason_code"), "LOCK_UNAVAILABLE"))
            unlocked++;
        else
            other++;
        json_decref(doc);
    }
    CHECK(unlocked == want_events && other == 0,
          "%zu LOCK_UNAVAILABLE events of %zu, %zu others", unlocked,
          want_events, other);
    json_t *stats = fake_stats(s);
    CHECK(put_requests(stats, "200") + put_requests(stats, "201") +
                  put_requests(stats, "400") + put_requests(stats, "403") ==
              0,
          "a PUT without the lock");
    json_decref(stats);
    cg_harness_msgs_free(&r.m);
    CHECK(stop_worker(s->workers[0]) == 0, "worker exit status");
}

/* Runs contactguard-remediate; returns its exit status, stdout in *out. */
static int run_cli(struct stack *s, const char *const *args, json_t **out)
{
    char err[512], rp[64];
    snprintf(rp, sizeof(rp), "redis.port=%d", cg_harness_redis_port(s->redis));
    const char *argv[24] = { CG_BIN_CONTACTGUARD_REMEDIATE,
                             "--config",
                             s->conf,
                             "--set",
                             rp,
                             "--set",
                             "log.level=info",
                             "--json" };
    int n = 8;
    for (const char *const *a = args; *a && n < 22; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    struct cg_harness_proc_opts po = { .name = "remediate",
                                       .line_timeout_ms = -1 };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &po, err, sizeof(err));
    CHECK(p != NULL, "remediate: %s", err);
    if (!p)
        return -1;
    /* stdout to its end, then the exit status: the harness writes its copy
     * of stdout behind the child, so the file may lag the exit. */
    struct cg_buf b;
    cg_buf_init(&b, 16 << 20);
    char line[CG_HARNESS_LINE_MAX];
    int lr;
    while ((lr = cg_harness_proc_read_line(p, line, sizeof(line), WAIT_MS)) ==
           0) {
        cg_buf_puts(&b, line);
        cg_buf_puts(&b, "\n");
    }
    CHECK(lr == CG_EIO, "remediate %s: stdout did not end", args[0]);
    int st = -1;
    CHECK(cg_harness_proc_wait(p, WAIT_MS, &st) == 0, "remediate did not "
                                                      "finish");
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    json_error_t je;
    *out = b.data ? json_loads(b.data, 0, &je) : NULL;
    /* Exit 2 (usage, refusal, unreadable) says why on stderr only. */
    CHECK(*out != NULL || rc == 2, "remediate %s: stdout is not JSON: %s",
          args[0], b.data ? je.text : "empty");
    cg_buf_free(&b);
    cg_harness_proc_free(p);
    return rc;
}

static void scenario_cli(struct stack *s)
{
    write_conf(s, (const char *const[]){ "apply", "dry-run" });
    struct truth *owner = NULL, *none = NULL, *plan_only = NULL;
    for (size_t i = 0; i < s->ntruth; i++) {
        struct truth *t = &s->truth[i];
        if (!strcmp(t->tenant, s->tenants[0]) &&
            !strcmp(t->scenario, "owner-missing") && !owner)
            owner = t;
        if (!strcmp(t->tenant, s->tenants[0]) &&
            !strcmp(t->scenario, "no-contact") && !none)
            none = t;
        if (!strcmp(t->tenant, s->tenants[1]) &&
            !strcmp(t->scenario, "contact-disabled") && !plan_only)
            plan_only = t;
    }
    CHECK(owner && none && plan_only, "scenarios present");
    if (!owner || !none || !plan_only)
        return;
    json_t *o = NULL;

    /* plan: shows the change, writes nothing, exit 1. */
    int rc =
        run_cli(s,
                (const char *const[]){ "plan", "--tenant", owner->tenant,
                                       "--subscription", owner->sub, NULL },
                &o);
    CHECK(rc == 1 && str_eq(cg_json_str(o, "outcome"), "planned") &&
              json_is_object(json_object_get(o, "planned")),
          "plan: exit %d, outcome %s", rc, cg_json_str(o, "outcome"));
    json_decref(o);
    json_t *stats = fake_stats(s);
    CHECK(json_array_size(json_object_get(stats, "puts")) == 0, "plan wrote");
    json_decref(stats);

    /* apply refuses a tenant that did not ask for it. */
    rc =
        run_cli(s,
                (const char *const[]){ "apply", "--tenant", plan_only->tenant,
                                       "--subscription", plan_only->sub, NULL },
                &o);
    CHECK(rc == 2, "apply for a dry-run tenant: exit %d", rc);
    json_decref(o);

    /* apply, then undo: the original body is back, in meaning and as
     * stored. */
    const struct truth *subs[2] = { owner, none };
    for (int i = 0; i < 2; i++) {
        const struct truth *t = subs[i];
        rc = run_cli(s,
                     (const char *const[]){ "apply", "--tenant", t->tenant,
                                            "--subscription", t->sub, NULL },
                     &o);
        CHECK(rc == 0 && str_eq(cg_json_str(o, "outcome"), "applied"),
              "%s apply: exit %d, outcome %s", t->scenario, rc,
              cg_json_str(o, "outcome"));
        json_decref(o);
        json_t *now = fake_contact(s, t->sub);
        CHECK(now && !json_equal(now, t->original), "%s: not changed",
              t->scenario);
        json_decref(now);
        rc = run_cli(
            s, (const char *const[]){ "undo", "--subscription", t->sub, NULL },
            &o);
        CHECK(rc == 0 && str_eq(cg_json_str(o, "result"), "restored"),
              "%s undo: exit %d, %s", t->scenario, rc,
              cg_json_str(o, "reason"));
        json_decref(o);
        now = fake_contact(s, t->sub);
        CHECK((!now && !t->original) ||
                  (now && t->original && json_equal(now, t->original)),
              "%s: undo did not restore the original", t->scenario);
        json_decref(now);
    }

    /* apply, someone edits, undo refuses and changes nothing. */
    rc = run_cli(s,
                 (const char *const[]){ "apply", "--tenant", owner->tenant,
                                        "--subscription", owner->sub, NULL },
                 &o);
    CHECK(rc == 0, "apply again: exit %d", rc);
    json_decref(o);
    json_t *edited = fake_contact(s, owner->sub);
    json_object_set_new(edited, "phone", json_string("+1 206 555 0199"));
    char *body = json_dumps(edited, JSON_COMPACT);
    char path[128];
    snprintf(path, sizeof(path), "/_fake/subscriptions/%s/contact", owner->sub);
    json_decref(fake_call(s, "PUT", path, body));
    free(body);
    size_t puts_before = 0;
    stats = fake_stats(s);
    puts_before = json_array_size(json_object_get(stats, "puts"));
    json_decref(stats);
    rc = run_cli(
        s, (const char *const[]){ "undo", "--subscription", owner->sub, NULL },
        &o);
    CHECK(rc == 1 && str_eq(cg_json_str(o, "result"), "refused"),
          "undo after a change: exit %d, %s", rc, cg_json_str(o, "result"));
    json_decref(o);
    json_t *now = fake_contact(s, owner->sub);
    CHECK(json_equal(now, edited), "a refused undo changed the contact");
    json_decref(now);
    json_decref(edited);
    stats = fake_stats(s);
    CHECK(json_array_size(json_object_get(stats, "puts")) == puts_before,
          "a refused undo wrote");
    /* owner: apply, undo, apply; none: apply (its undo was a DELETE). */
    CHECK(json_array_size(json_object_get(stats, "puts")) == 4,
          "%zu PUTs in all", json_array_size(json_object_get(stats, "puts")));
    json_decref(stats);

    /* A compliant contact without the tenant's address: nothing to do,
     * unless the rules require the configured addresses; then what is
     * checked is what is fixed. */
    struct truth *ok = NULL;
    for (size_t i = 0; i < s->ntruth && !ok; i++)
        if (!strcmp(s->truth[i].tenant, s->tenants[0]) &&
            !strcmp(s->truth[i].scenario, "compliant"))
            ok = &s->truth[i];
    CHECK(ok != NULL, "a compliant subscription");
    if (!ok)
        return;
    rc = run_cli(s,
                 (const char *const[]){ "apply", "--tenant", ok->tenant,
                                        "--subscription", ok->sub, NULL },
                 &o);
    CHECK(rc == 0 && str_eq(cg_json_str(o, "outcome"), "noop"),
          "compliant: exit %d, %s", rc, cg_json_str(o, "outcome"));
    json_decref(o);
    char bs[300];
    snprintf(bs, sizeof(bs), "kafka.bootstrap.servers=%s",
             cg_harness_devbroker_bootstrap(s->kafka));
    rc = run_cli(s,
                 (const char *const[]){
                     "--set", "rules.additional_emails.require_configured=true",
                     "--set", bs, "--publish", "apply", "--tenant", ok->tenant,
                     "--subscription", ok->sub, NULL },
                 &o);
    json_t *fixed = json_object_get(o, "rules_fixed");
    CHECK(rc == 0 && str_eq(cg_json_str(o, "outcome"), "applied") &&
              json_array_size(fixed) == 1 &&
              !strcmp(json_string_value(json_array_get(fixed, 0)),
                      "additional-emails"),
          "require_configured: exit %d, %s, %zu fixed", rc,
          cg_json_str(o, "outcome"), json_array_size(fixed));
    json_decref(o);
    json_t *stored = fake_contact(s, ok->sub);
    CHECK(addresses_lost(ok->original, stored) == 0 &&
              address_in(ADDRESS, cg_json_str(stored, "emails")),
          "the configured address was added next to the original ones");
    json_decref(stored);

    /* --publish: the event is on the results topic, as from a worker. */
    struct results r;
    read_results(s, 0, 1, &r);
    CHECK(r.events == 1 && r.findings == 0 && r.m.n == 1,
          "%zu events, %zu findings published", r.events, r.findings);
    if (r.m.n == 1) {
        json_t *doc;
        json_t *rec = event_record(&r.m.v[0], &doc);
        CHECK(str_eq(cg_json_str(rec, "outcome"), "applied") &&
                  str_eq(cg_harness_msg_header(&r.m.v[0], "outcome"),
                         "applied") &&
                  !strcmp(r.m.v[0].key, ok->sub),
              "the published event");
        json_decref(doc);
    }
    cg_harness_msgs_free(&r.m);
}

/* ---- edge contacts, through contactguard-remediate ---------------------- */

/* An Enabled subscription of the apply tenant, and its contact replaced by
 * props (JSON) as a person could leave it in the portal. */
static struct truth *plant(struct stack *s, const char *scenario,
                           const char *props)
{
    struct truth *t = NULL;
    for (size_t i = 0; i < s->ntruth && !t; i++)
        if (!strcmp(s->truth[i].tenant, s->tenants[0]) &&
            !strcmp(s->truth[i].scenario, scenario) &&
            !strcmp(s->truth[i].state, "Enabled"))
            t = &s->truth[i];
    CHECK(t != NULL, "a %s subscription", scenario);
    if (!t)
        return NULL;
    char path[128];
    snprintf(path, sizeof(path), "/_fake/subscriptions/%s/contact", t->sub);
    json_decref(fake_call(s, "PUT", path, props));
    return t;
}

static int cli(struct stack *s, const char *cmd, const struct truth *t,
               json_t **out)
{
    if (!strcmp(cmd, "undo"))
        return run_cli(
            s, (const char *const[]){ "undo", "--subscription", t->sub, NULL },
            out);
    return run_cli(s,
                   (const char *const[]){ cmd, "--tenant", t->tenant,
                                          "--subscription", t->sub, NULL },
                   out);
}

static size_t puts_of(struct stack *s)
{
    json_t *stats = fake_stats(s);
    size_t n = json_array_size(json_object_get(stats, "puts"));
    json_decref(stats);
    return n;
}

/*
 * Top-level properties the 2023-12-01-preview write does not store (a newer
 * version's, or a portal's): the write would drop them, so neither the plan
 * nor apply writes, and both name them.
 */
static void scenario_unstored(struct stack *s)
{
    write_conf(s, (const char *const[]){ "apply", NULL });
    struct truth *t =
        plant(s, "owner-missing",
              "{\"isEnabled\":true,\"emails\":\"secops@contoso.com\","
              "\"notificationsByRole\":{\"state\":\"On\",\"roles\":["
              "\"Contributor\"]},"
              "\"notificationsSources\":[{\"sourceType\":\"Alert\","
              "\"minimalSeverity\":\"Low\"}],\"futureSetting\":{\"digest\":"
              "\"weekly\"},"
              "\"vendorTag\":\"blue\"}");
    if (!t)
        return;
    json_t *planted = fake_contact(s, t->sub);
    static const char *const cmds[] = { "plan", "apply" };
    for (int i = 0; i < 2; i++) {
        json_t *o = NULL;
        int rc = cli(s, cmds[i], t, &o);
        const char *why = cg_json_str(o, "reason");
        CHECK(
            rc == 1 && str_eq(cg_json_str(o, "outcome"), "blocked") &&
                str_eq(cg_json_str(o, "reason_code"), "PLAN_WOULD_LOSE_DATA") &&
                why && strstr(why, "futureSetting") && strstr(why, "vendorTag"),
            "%s: exit %d, %s %s: %s", cmds[i], rc, cg_json_str(o, "outcome"),
            cg_json_str(o, "reason_code"), why);
        CHECK(json_is_null(json_object_get(o, "planned")),
              "%s: a body to write", cmds[i]);
        json_decref(o);
    }
    CHECK(puts_of(s) == 0, "written");
    json_t *now = fake_contact(s, t->sub);
    CHECK(json_equal(now, planted), "the contact changed");
    json_decref(now);
    json_decref(planted);
}

/*
 * A list entered with commas (the portal takes them, the API refuses them):
 * apply writes it ';'-separated, and undo, which cannot write the commas
 * back, restores the same addresses in the same order and says so.
 */
static void scenario_undocomma(struct stack *s)
{
    write_conf(s, (const char *const[]){ "apply", NULL });
    static const char *const list = "alpha@contoso.example, "
                                    "beta@contoso.example,"
                                    "Gamma@Fabrikam.example";
    char props[512];
    snprintf(props, sizeof(props),
             "{\"isEnabled\":true,\"emails\":\"%s\",\"phone\":\"+1 206 555 "
             "0100\",\"notificationsByRole\":{\"state\":\"On\",\"roles\":["
             "\"Contributor\"]},\"notificationsSources\":[{\"sourceType\":"
             "\"Alert\",\"minimalSeverity\":\"Low\"},{\"sourceType\":"
             "\"AttackPath\",\"minimalRiskLevel\":\"Low\"}]}",
             list);
    struct truth *t = plant(s, "owner-missing", props);
    if (!t)
        return;
    json_t *planted = fake_contact(s, t->sub);
    json_t *o = NULL;
    int rc = cli(s, "apply", t, &o);
    CHECK(rc == 0 && str_eq(cg_json_str(o, "outcome"), "applied"),
          "apply: exit %d, %s: %s", rc, cg_json_str(o, "outcome"),
          cg_json_str(o, "reason"));
    json_decref(o);
    rc = cli(s, "undo", t, &o);
    const char *why = cg_json_str(o, "reason");
    CHECK(rc == 0 && str_eq(cg_json_str(o, "result"), "restored") &&
              json_is_true(json_object_get(o, "normalised")) && why &&
              strstr(why, "in meaning") && strstr(why, "';'-separated"),
          "undo: exit %d, %s: %s", rc, cg_json_str(o, "result"), why);
    json_decref(o);
    json_t *now = fake_contact(s, t->sub);
    CHECK(str_eq(cg_json_str(now, "emails"),
                 "alpha@contoso.example;beta@contoso.example;"
                 "Gamma@Fabrikam.example"),
          "restored emails '%s'", cg_json_str(now, "emails"));
    /* Everything else is back byte for byte. */
    json_object_del(now, "emails");
    json_object_del(planted, "emails");
    CHECK(json_equal(now, planted), "undo did not restore the rest");
    json_decref(now);
    json_decref(planted);
}

/*
 * Addresses the rules judge: an internationalised one is valid, so the
 * subscription's other fixes are made; an invalid one cannot be written
 * back or dropped, so the list is left as it is, and only the fixes that
 * do not touch it are made.
 */
static void scenario_addresses(struct stack *s)
{
    write_conf(s, (const char *const[]){ "apply", NULL });
    struct {
        const char *emails, *held;
    } cases[] = {
        { "j\xc3\xb6rg+alerts@b\xc3\xbc"
          "cher.example",
          NULL },
        { "ops@contoso.com;not-an-address", "emails left as they are" },
    };
    const char *const scenarios[] = { "owner-missing", "compliant" };
    for (int i = 0; i < 2; i++) {
        char props[512];
        snprintf(props, sizeof(props),
                 "{\"isEnabled\":true,\"emails\":\"%s\","
                 "\"notificationsByRole\":{\"state\":\"On\",\"roles\":["
                 "\"Owner\"]},\"notificationsSources\":[{\"sourceType\":"
                 "\"Alert\",\"minimalSeverity\":\"Low\"}]}",
                 cases[i].emails);
        struct truth *t = plant(s, scenarios[i], props);
        if (!t)
            return;
        json_t *o = NULL;
        int rc = cli(s, "apply", t, &o);
        const char *why = cg_json_str(o, "reason");
        json_t *fixed = json_object_get(o, "rules_fixed");
        CHECK(rc == 0 && str_eq(cg_json_str(o, "outcome"), "applied") &&
                  json_array_size(fixed) == 1 &&
                  str_eq(json_string_value(json_array_get(fixed, 0)),
                         "attack-paths"),
              "%s: exit %d, %s, %zu fixed: %s", cases[i].emails, rc,
              cg_json_str(o, "outcome"), json_array_size(fixed), why);
        CHECK(cases[i].held ? why && strstr(why, cases[i].held) != NULL
                            : why && !strstr(why, "left as they are"),
              "%s: reason %s", cases[i].emails, why ? why : "(none)");
        json_decref(o);
        json_t *now = fake_contact(s, t->sub);
        const char *e = cg_json_str(now, "emails");
        CHECK(e && !strncmp(e, cases[i].emails, strlen(cases[i].emails)),
              "%s: the list is now '%s'", cases[i].emails, e ? e : "(none)");
        CHECK(cases[i].held ? !strcmp(e ? e : "", cases[i].emails)
                            : address_in(ADDRESS, e),
              "%s: the tenant's address %s", cases[i].emails,
              cases[i].held ? "was added to a held-back list"
                            : "was not added");
        json_decref(now);
    }
    CHECK(puts_of(s) == 2, "%zu PUTs", puts_of(s));
}

/*
 * A portal edit landing after the read under the lock and before the write:
 * the last look before the PUT sees it, the plan is made again from it, and
 * the write keeps it (on a contacts API without ETags, a PUT would
 * otherwise overwrite it without a trace).
 */
static void scenario_concurrent(struct stack *s)
{
    write_conf(s, (const char *const[]){ "apply", NULL });
    struct truth *t = NULL;
    for (size_t i = 0; i < s->ntruth && !t; i++)
        if (!strcmp(s->truth[i].tenant, s->tenants[0]) &&
            !strcmp(s->truth[i].scenario, "owner-missing"))
            t = &s->truth[i];
    REQUIRE(t != NULL, "an owner-missing subscription");
    json_t *edit = json_deep_copy(t->original);
    json_object_set_new(edit, "emails",
                        json_string("secops@contoso.com;late@contoso.com"));
    json_object_set_new(edit, "phone", json_string("+1 206 555 0199"));
    char *body = json_dumps(edit, JSON_COMPACT);
    char path[160];
    /* Read 1 is the CLI's scan (LIST), read 2 the GET under the lock. */
    snprintf(path, sizeof(path), "/_fake/subscriptions/%s/after-read?reads=2",
             t->sub);
    json_decref(fake_call(s, "PUT", path, body));
    free(body);
    json_t *o = NULL;
    int rc = cli(s, "apply", t, &o);
    CHECK(rc == 0 && str_eq(cg_json_str(o, "outcome"), "applied") &&
              json_is_true(json_object_get(o, "replanned")),
          "apply: exit %d, %s, replanned %d: %s", rc, cg_json_str(o, "outcome"),
          json_is_true(json_object_get(o, "replanned")),
          cg_json_str(o, "reason"));
    CHECK(addresses_lost(edit, json_object_get(o, "before")) == 0,
          "the event's before is not what was there right before the write");
    json_decref(o);
    json_t *stats = fake_stats(s);
    json_t *puts = json_object_get(stats, "puts");
    CHECK(json_array_size(puts) == 1, "%zu PUTs", json_array_size(puts));
    json_t *put_props = cg_json_member(
        cg_json_member(json_array_get(puts, 0), "body"), "properties");
    CHECK(addresses_lost(edit, put_props) == 0 &&
              str_eq(cg_json_str(put_props, "phone"), "+1 206 555 0199"),
          "the edit was overwritten: %s", cg_json_str(put_props, "emails"));
    json_decref(stats);
    json_t *now = fake_contact(s, t->sub);
    CHECK(addresses_lost(edit, now) == 0 &&
              str_eq(cg_json_str(now, "phone"), "+1 206 555 0199"),
          "the stored contact lost the edit");
    json_decref(now);
    /* Undo brings back what was there right before the write: the edit. */
    rc = cli(s, "undo", t, &o);
    CHECK(rc == 0 && str_eq(cg_json_str(o, "result"), "restored"),
          "undo: exit %d, %s", rc, cg_json_str(o, "reason"));
    json_decref(o);
    now = fake_contact(s, t->sub);
    CHECK(json_equal(now, edit), "undo did not restore the edited contact");
    json_decref(now);
    json_decref(edit);
}

/*
 * A contact that keeps changing while the change is planned: after the read
 * under the lock and after every last look, another edit lands. Past
 * CG_REMEDIATE_LOOKS_MAX plans nothing is written (CONTACT_CHANGING) and
 * the last edit stands.
 */
static void scenario_changing(struct stack *s)
{
    write_conf(s, (const char *const[]){ "apply", NULL });
    struct truth *t = NULL;
    for (size_t i = 0; i < s->ntruth && !t; i++)
        if (!strcmp(s->truth[i].tenant, s->tenants[0]) &&
            !strcmp(s->truth[i].scenario, "owner-missing"))
            t = &s->truth[i];
    REQUIRE(t != NULL, "an owner-missing subscription");
    json_t *edits = json_array();
    for (int k = 0; k <= CG_REMEDIATE_LOOKS_MAX; k++) {
        json_t *e = json_deep_copy(t->original);
        char phone[32];
        snprintf(phone, sizeof(phone), "+1 206 555 01%02d", k);
        json_object_set_new(e, "phone", json_string(phone));
        json_array_append_new(edits, e);
    }
    char *body = json_dumps(edits, JSON_COMPACT);
    char path[160];
    snprintf(path, sizeof(path), "/_fake/subscriptions/%s/after-read?reads=2",
             t->sub);
    json_decref(fake_call(s, "PUT", path, body));
    free(body);
    json_t *o = NULL;
    int rc = cli(s, "apply", t, &o);
    CHECK(rc == 1 && str_eq(cg_json_str(o, "outcome"), "failed") &&
              str_eq(cg_json_str(o, "reason_code"), "CONTACT_CHANGING"),
          "apply: exit %d, %s %s: %s", rc, cg_json_str(o, "outcome"),
          cg_json_str(o, "reason_code"), cg_json_str(o, "reason"));
    json_decref(o);
    CHECK(puts_of(s) == 0, "%zu PUTs", puts_of(s));
    json_t *now = fake_contact(s, t->sub);
    CHECK(json_equal(now, json_array_get(edits, CG_REMEDIATE_LOOKS_MAX)),
          "the last edit does not stand");
    json_decref(now);
    json_decref(edits);
}

int main(int argc, char **argv)
{
    const char *scenario = argc > 1 ? argv[1] : "apply";
    struct stack s;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    static const char *const latency[] = { "--latency-ms", "30", NULL };
    struct {
        const char *name;
        void (*fn)(struct stack *);
        int tenants, subs;
        const char *const *fake;
    } scen[] = {
        { "apply", scenario_apply, 2, 40, NULL },
        { "dryrun", scenario_dryrun, 2, 20, NULL },
        { "race", scenario_race, 1, 32, latency },
        { "forbidden", scenario_forbidden, 2, 20, NULL },
        { "rejected", scenario_rejected, 2, 20, NULL },
        { "mismatch", scenario_mismatch, 1, 5, NULL },
        { "noredis", scenario_noredis, 1, 30, NULL },
        { "replan", scenario_replan, 1, 5, NULL },
        { "cli", scenario_cli, 2, 10, NULL },
        { "unstored", scenario_unstored, 1, 10, NULL },
        { "undocomma", scenario_undocomma, 1, 10, NULL },
        { "addresses", scenario_addresses, 1, 10, NULL },
        { "concurrent", scenario_concurrent, 1, 10, NULL },
        { "changing", scenario_changing, 1, 10, NULL },
    };
    size_t i = 0;
    while (i < sizeof(scen) / sizeof(scen[0]) && strcmp(scen[i].name, scenario))
        i++;
    if (i == sizeof(scen) / sizeof(scen[0])) {
        fprintf(stderr, "unknown scenario %s\n", scenario);
        return 2;
    }
    if (stack_start(&s, scen[i].tenants, scen[i].subs, scen[i].fake) == 0)
        scen[i].fn(&s);
    stack_stop(&s);
    curl_global_cleanup();
    return check_done("remediate");
}
