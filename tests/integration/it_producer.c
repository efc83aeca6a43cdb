/*
 * contactguard-producer end to end: the fake Azure, the devbroker and a
 * real redis-server on loopback (tests/harness/stack.h), one scenario per
 * run (argv[1]) so ctest shows each by name. Every wait is on an event: a
 * process exiting, a line on its stdout, messages on a topic.
 */
#include "../check.h"

#include "harness.h"
#include "redis.h"
#include "stack.h"

#include "job.h"
#include "mem.h"

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_MS         120000
#define WEBHOOK_SECRET "it-webhook-shared-secret-0451"
#define JOBS_TOPIC     "contactguard.jobs"

static struct cg_stack stack;
static char errbuf[1024];

/* ---- helpers ---- */

static bool auditable(const char *state)
{
    return !strcmp(state, "Enabled") || !strcmp(state, "Warned") ||
           !strcmp(state, "PastDue");
}

static size_t count_state(const char *state)
{
    size_t n = 0;
    for (size_t i = 0; i < stack.nsubs; i++)
        n += !strcmp(stack.subs[i].state, state);
    return n;
}

static size_t count_auditable(void)
{
    size_t n = 0;
    for (size_t i = 0; i < stack.nsubs; i++)
        n += auditable(stack.subs[i].state);
    return n;
}

static const struct cg_stack_sub *truth_find(const char *sub)
{
    for (size_t i = 0; i < stack.nsubs; i++)
        if (!strcmp(stack.subs[i].sub, sub))
            return &stack.subs[i];
    return NULL;
}

/* The Redis of the stack (NULL: plain, no AUTH), and how to reach it. */
static const struct cg_harness_redis_opts *redis_opts;
static struct cg_harness_redis_client redis_client;

/* argv for the producer: extra (NULL-terminated), then the stack's
 * configuration, Kafka and Redis. */
static void producer_argv(const char **argv, size_t max,
                          const char *const *extra)
{
    static char bs[300];
    snprintf(bs, sizeof(bs), "kafka.bootstrap.servers=%s",
             cg_harness_devbroker_bootstrap(stack.kafka));
    cg_harness_redis_client(stack.redis, &redis_client);
    size_t n = 0;
    argv[n++] = CG_BIN_CONTACTGUARD_PRODUCER;
    for (const char *const *e = extra; e && *e && n < max - 18; e++)
        argv[n++] = *e;
    argv[n++] = "--config";
    argv[n++] = stack.creds;
    argv[n++] = "--set";
    argv[n++] = bs;
    for (const char *const *e = redis_client.argv; *e; e++)
        argv[n++] = *e;
    argv[n] = NULL;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cg_strdup("");
    struct cg_buf b;
    cg_buf_init(&b, 64 << 20);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        cg_buf_append(&b, buf, n);
    fclose(f);
    return b.data ? cg_buf_take(&b) : cg_strdup("");
}

struct run {
    int exit_status; /* -1 when it did not exit by itself */
    char *out;       /* stdout */
    char *err;       /* stderr */
    json_t *summary; /* the JSON summary line, when --json */
};

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
    json_decref(r->summary);
    memset(r, 0, sizeof(*r));
}

static void run_collect(struct cg_harness_proc *p, struct run *r)
{
    /* The harness drains stdout on a thread: wait for the end of it (the
     * event), then the file is complete. */
    char line[CG_HARNESS_LINE_MAX];
    while (cg_harness_proc_read_line(p, line, sizeof(line), 30000) == 0)
        ;
    r->out = slurp(cg_harness_proc_stdout_path(p));
    r->err = slurp(cg_harness_proc_stderr_path(p));
    r->summary = NULL;
    char *save = NULL, *copy = cg_strdup(r->out);
    for (char *l = strtok_r(copy, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        if (strstr(l, "contactguard.producer.summary/1")) {
            json_decref(r->summary);
            r->summary = json_loads(l, 0, NULL);
        }
    }
    free(copy);
}

/* Runs the producer to completion. */
static void run_producer(const char *const *extra, const char *const *env,
                         struct run *r)
{
    const char *argv[64];
    producer_argv(argv, 64, extra);
    struct cg_harness_proc_opts po = { .name = "producer",
                                       .env = env ? env : redis_client.envp,
                                       .line_timeout_ms = -1 };
    memset(r, 0, sizeof(*r));
    r->exit_status = -1;
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &po, errbuf, sizeof(errbuf));
    CHECK(p != NULL, "producer started: %s", errbuf);
    if (!p)
        return;
    int st = 0;
    int rc = cg_harness_proc_wait(p, RUN_MS, &st);
    CHECK(rc == 0, "producer exited within %d ms", RUN_MS);
    if (rc == 0 && WIFEXITED(st))
        r->exit_status = WEXITSTATUS(st);
    run_collect(p, r);
    cg_harness_proc_free(p);
}

static long long jint(const json_t *o, const char *a, const char *b)
{
    json_t *x = json_object_get(o, a);
    if (b)
        x = json_object_get(x, b);
    return json_is_integer(x) ? (long long)json_integer_value(x) : -1;
}

/* Every job on the jobs topic, decoded; fails the check on one that does
 * not decode or whose key is not its subscription. */
struct jobs {
    struct cg_job *v;
    size_t n;
    char (*reason_header)[32];
};

static void jobs_free(struct jobs *j)
{
    free(j->v);
    free(j->reason_header);
    memset(j, 0, sizeof(*j));
}

/* id in upper case, into out[40]. */
static const char *upper_id(const char *id, char *out)
{
    cg_strlcpy(out, id, 40);
    for (char *q = out; *q; q++)
        *q = (char)toupper((unsigned char)*q);
    return out;
}

/* The GUIDs after "tenant_id":" and "subscription_id":" are lower case. */
static bool lower_ids(const char *json)
{
    static const char *const keys[] = { "\"tenant_id\":\"",
                                        "\"subscription_id\":\"" };
    for (size_t k = 0; k < 2; k++) {
        const char *p = strstr(json, keys[k]);
        if (!p)
            continue;
        p += strlen(keys[k]);
        for (int i = 0; i < 36 && p[i] && p[i] != '"'; i++)
            if (p[i] >= 'A' && p[i] <= 'Z')
                return false;
    }
    return true;
}

static void read_jobs(size_t want, struct jobs *out)
{
    struct cg_harness_msgs msgs = { 0 };
    memset(out, 0, sizeof(*out));
    int rc = cg_harness_kafka_consume(
        cg_harness_devbroker_bootstrap(stack.kafka), JOBS_TOPIC, want, 60000,
        &msgs, errbuf, sizeof(errbuf));
    CHECK(rc == 0, "jobs topic read (%zu wanted, %zu read): %s", want, msgs.n,
          rc ? errbuf : "");
    out->v = cg_calloc(msgs.n + 1, sizeof(*out->v));
    out->reason_header = cg_calloc(msgs.n + 1, 32);
    for (size_t i = 0; i < msgs.n; i++) {
        struct cg_harness_msg *m = &msgs.v[i];
        struct cg_job job;
        char e[256];
        int drc = cg_job_decode(m->value, m->value_len, &job, e, sizeof(e));
        CHECK(drc == 0, "message %zu decodes: %s", i, e);
        if (drc)
            continue;
        CHECK(m->key && !strcmp(m->key, job.subscription_id),
              "message %zu: key %s is the subscription %s", i,
              m->key ? m->key : "(none)", job.subscription_id);
        const char *t = cg_harness_msg_header(m, "tenant");
        CHECK(t && !strcmp(t, job.tenant_id),
              "message %zu: tenant header %s is the job's %s", i,
              t ? t : "(none)", job.tenant_id);
        /* Lower case on the wire, whatever case the source used. */
        CHECK(lower_ids(m->value), "message %zu: ids are not lower case: %.*s",
              i, (int)m->value_len, m->value);
        const char *h = cg_harness_msg_header(m, "reason");
        cg_strlcpy(out->reason_header[out->n], h ? h : "", 32);
        out->v[out->n++] = job;
    }
    cg_harness_msgs_free(&msgs);
}

static size_t jobs_for(const struct jobs *j, const char *sub)
{
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++)
        n += !strcmp(j->v[i].subscription_id, sub);
    return n;
}

static void no_secret_leaked(const struct run *r)
{
    for (size_t i = 0; i < stack.nsecrets; i++)
        CHECK(!strstr(r->out, stack.secrets[i]) &&
                  !strstr(r->err, stack.secrets[i]),
              "client secret %zu appears in the producer's output", i);
}

static int start_stack(int tenants, int subs, const char *const *fake_args)
{
    struct cg_stack_opts o = { .tenants = tenants,
                               .subs_per_tenant = subs,
                               .partitions = 3,
                               .fake_args = fake_args };
    int rc =
        cg_stack_start_redis(&stack, &o, redis_opts, errbuf, sizeof(errbuf));
    CHECK(rc == 0, "stack started: %s", errbuf);
    return rc;
}

static redisContext *redis(void)
{
    redisContext *c =
        cg_harness_redis_connect(stack.redis, errbuf, sizeof(errbuf));
    CHECK(c != NULL, "redis connect: %s", errbuf);
    return c;
}

static long long redis_int(redisContext *c, const char *fmt, const char *a)
{
    redisReply *r = redisCommand(c, fmt, a);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

/* ---- scenarios ---- */

/* Many tenants, 4 pages each, 2 tenants at a time: exactly one job per
 * auditable subscription of the ground truth, Disabled/Deleted counted. */
static void test_sweep(void)
{
    static const char *const fa[] = { "--page-size", "7", NULL };
    if (start_stack(6, 25, fa))
        return;
    static const char *const args[] = { "sweep", "--json", "--set",
                                        "producer.tenant_concurrency=2", NULL };
    struct run r;
    run_producer(args, NULL, &r);
    size_t want = count_auditable();
    CHECK(r.exit_status == 0, "sweep exit status %d: %s", r.exit_status, r.err);
    CHECK(r.summary != NULL, "sweep printed a JSON summary: %s", r.out);
    CHECK(jint(r.summary, "jobs", "sent") == (long long)want &&
              jint(r.summary, "jobs", "delivered") == (long long)want &&
              jint(r.summary, "jobs", "failed") == 0,
          "sweep jobs sent/delivered %lld/%lld, want %zu",
          jint(r.summary, "jobs", "sent"), jint(r.summary, "jobs", "delivered"),
          want);
    CHECK(jint(r.summary, "tenants", "ok") == 6 &&
              jint(r.summary, "tenants", "failed") == 0,
          "six tenants listed");
    CHECK(jint(r.summary, "subscriptions", "listed") == (long long)stack.nsubs,
          "listed %lld of %zu", jint(r.summary, "subscriptions", "listed"),
          stack.nsubs);
    CHECK(jint(r.summary, "subscriptions", "disabled") ==
                  (long long)count_state("Disabled") &&
              jint(r.summary, "subscriptions", "deleted") ==
                  (long long)count_state("Deleted"),
          "disabled %lld deleted %lld, truth %zu %zu",
          jint(r.summary, "subscriptions", "disabled"),
          jint(r.summary, "subscriptions", "deleted"), count_state("Disabled"),
          count_state("Deleted"));
    CHECK(count_state("Disabled") > 0 && count_state("Deleted") > 0,
          "the population has disabled and deleted subscriptions");
    CHECK(strstr(r.err, "tenants_done=6/6") != NULL,
          "progress on stderr names the tenants done");
    no_secret_leaked(&r);
    struct jobs j;
    read_jobs(want, &j);
    CHECK(j.n == want, "jobs on the topic: %zu, want %zu", j.n, want);
    for (size_t i = 0; i < stack.nsubs; i++) {
        const struct cg_stack_sub *s = &stack.subs[i];
        size_t n = jobs_for(&j, s->sub);
        CHECK(n == (auditable(s->state) ? 1u : 0u), "%s (%s): %zu jobs", s->sub,
              s->state, n);
    }
    for (size_t i = 0; i < j.n; i++) {
        const struct cg_stack_sub *s = truth_find(j.v[i].subscription_id);
        CHECK(s && !strcmp(s->tenant, j.v[i].tenant_id) &&
                  j.v[i].reason == CG_JOB_SCHEDULED &&
                  !strcmp(cg_sub_state_name(j.v[i].state), s->state) &&
                  !strcmp(j.reason_header[i], "scheduled") &&
                  !j.v[i].auth_tenant_id[0],
              "job %zu: %s tenant %s state %s", i, j.v[i].subscription_id,
              j.v[i].tenant_id, cg_sub_state_name(j.v[i].state));
    }
    /* Paging was followed: 25 subscriptions at 7 a page is 4 pages. */
    json_t *st = cg_stack_fake_json(&stack, "stats");
    json_t *subs =
        json_object_get(json_object_get(st, "requests"), "subscriptions");
    long long pages = jint(subs, "200", NULL);
    CHECK(pages == 6 * 4, "subscription pages read: %lld, want 24", pages);
    json_decref(st);
    /* The listed subscriptions are known now. */
    redisContext *c = redis();
    if (c) {
        char key[128];
        snprintf(key, sizeof(key), "cg:tenant:%s:known", stack.subs[0].tenant);
        long long n = redis_int(c, "SCARD %s", key);
        size_t w = 0;
        for (size_t i = 0; i < stack.nsubs; i++)
            w += !strcmp(stack.subs[i].tenant, stack.subs[0].tenant) &&
                 auditable(stack.subs[i].state);
        CHECK(n == (long long)w, "known set of tenant 0: %lld, want %zu", n, w);
        redisFree(c);
    }
    jobs_free(&j);
    run_free(&r);
}

/* A tenant Entra refuses is reported by name with AADSTS and HTTP status;
 * the others complete; exit status 1. */
static void test_failing(void)
{
    if (start_stack(3, 12, NULL))
        return;
    char tf[700], sf[700];
    snprintf(sf, sizeof(sf), "%s/broken.secret", cg_harness_dir());
    snprintf(tf, sizeof(tf), "%s/extra-tenants.jsonl", cg_harness_dir());
    FILE *f = fopen(sf, "w");
    fputs("not-the-right-secret-7781\n", f);
    fclose(f);
    f = fopen(tf, "w");
    fprintf(f,
            "{\"id\":\"0badc0de-0000-4000-8000-00000000dead\",\"name\":"
            "\"tenant-broken\",\"auth\":\"secret\",\"client_id\":"
            "\"0badc0de-0000-4000-8000-00000000c11e\",\"client_secret_file\":"
            "\"%s\"}\n",
            sf);
    fclose(f);
    char set[800];
    snprintf(set, sizeof(set), "azure.tenants_file=%s", tf);
    const char *args[] = { "sweep", "--json", "--set", set, NULL };
    struct run r;
    run_producer(args, NULL, &r);
    size_t want = count_auditable();
    CHECK(r.exit_status == 1, "exit status %d, want 1", r.exit_status);
    CHECK(jint(r.summary, "tenants", "ok") == 3 &&
              jint(r.summary, "tenants", "failed") == 1,
          "3 ok, 1 failed: %s", r.out);
    json_t *ft =
        json_array_get(json_object_get(r.summary, "failed_tenants"), 0);
    const char *why = json_string_value(json_object_get(ft, "why"));
    const char *name = json_string_value(json_object_get(ft, "name"));
    CHECK(name && !strcmp(name, "tenant-broken"), "failed tenant named: %s",
          name ? name : "(none)");
    CHECK(why && strstr(why, "AADSTS90002"), "Azure's AADSTS code: %s",
          why ? why : "(none)");
    CHECK(jint(ft, "status", NULL) == 400, "HTTP status %lld",
          jint(ft, "status", NULL));
    CHECK(jint(r.summary, "jobs", "delivered") == (long long)want,
          "the other tenants completed: %lld of %zu",
          jint(r.summary, "jobs", "delivered"), want);
    CHECK(!strstr(r.out, "not-the-right-secret-7781") &&
              !strstr(r.err, "not-the-right-secret-7781"),
          "the refused secret is not printed");
    no_secret_leaked(&r);
    run_free(&r);
    /* The same, as text. */
    const char *args2[] = {
        "sweep", "--dry-run", "--force", "--set", set, NULL
    };
    run_producer(args2, NULL, &r);
    CHECK(r.exit_status == 1 &&
              strstr(r.out, "failed tenant tenant-broken "
                            "(0badc0de-0000-4000-8000-00000000dead): "
                            "CG_EAUTH HTTP 400"),
          "text summary names the tenant: %s", r.out);
    run_free(&r);
    struct jobs j;
    read_jobs(want, &j);
    CHECK(j.n == want, "jobs on the topic: %zu, want %zu (dry run sent none)",
          j.n, want);
    jobs_free(&j);
}

/* Good lines become jobs; bad ones are reported by number and skipped. */
static void test_file(void)
{
    if (start_stack(2, 6, NULL))
        return;
    const struct cg_stack_sub *a = &stack.subs[0], *b = &stack.subs[1],
                              *c = &stack.subs[7], *d = &stack.subs[8];
    redisContext *rc = redis();
    if (rc) {
        redisReply *x =
            redisCommand(rc, "HSET cg:sub:%s tenant %s", b->sub, b->tenant);
        freeReplyObject(x);
        redisFree(rc);
    }
    char path[700];
    snprintf(path, sizeof(path), "%s/subs.txt", cg_harness_dir());
    char ut[40], us[40];
    FILE *f = fopen(path, "w");
    fprintf(f, "# subscriptions to look at now\n"); /* 1 */
    fprintf(f, "\n");                               /* 2 */
    fprintf(f, "%s,%s\n", a->tenant, a->sub);       /* 3 */
    fprintf(f, "%s\n", b->sub);                     /* 4 */
    fprintf(f, "this is not a subscription\n");     /* 5 */
    fprintf(f,
            "{\"schema\":\"contactguard.job/1\",\"job_id\":\"file-job-1\","
            "\"tenant_id\":\"%s\",\"subscription_id\":\"%s\",\"reason\":"
            "\"event\",\"requested_at\":\"2026-01-01T00:00:00Z\"}\n",
            upper_id(c->tenant, ut), upper_id(c->sub, us)); /* 6, upper case */
    fprintf(f, "%s\n", d->sub);               /* 7: not cached, two tenants */
    fprintf(f, "%s,not-a-guid\n", a->tenant); /* 8 */
    for (int i = 0; i < 70000; i++)           /* 9 */
        fputc('x', f);
    fputc('\n', f);
    fprintf(f, "%s , %s\r\n", d->tenant, d->sub);     /* 10 */
    fprintf(f, "{\"schema\":\"contactguard.job/1\""); /* 11, no newline */
    fclose(f);
    const char *args[] = { "file", path, "--json", NULL };
    struct run r;
    run_producer(args, NULL, &r);
    CHECK(r.exit_status == 1, "exit status %d, want 1 (bad lines)",
          r.exit_status);
    CHECK(jint(r.summary, "lines", "total") == 9 &&
              jint(r.summary, "lines", "bad") == 5,
          "lines %lld bad %lld", jint(r.summary, "lines", "total"),
          jint(r.summary, "lines", "bad"));
    json_t *bl =
        json_object_get(json_object_get(r.summary, "lines"), "bad_lines");
    static const long want_bad[] = { 5, 7, 8, 9, 11 };
    for (size_t i = 0; i < 5; i++)
        CHECK(jint(json_array_get(bl, i), "line", NULL) == want_bad[i],
              "bad line %zu is line %ld (got %lld)", i, want_bad[i],
              jint(json_array_get(bl, i), "line", NULL));
    CHECK(strstr(r.err, "line=7") != NULL, "the log names line 7");
    struct jobs j;
    read_jobs(4, &j);
    CHECK(j.n == 4, "4 jobs, got %zu", j.n);
    for (size_t i = 0; i < j.n; i++) {
        const struct cg_job *x = &j.v[i];
        const struct cg_stack_sub *s = truth_find(x->subscription_id);
        CHECK(s && !strcmp(s->tenant, x->tenant_id),
              "job %s has its tenant (%s)", x->subscription_id, x->tenant_id);
        if (!strcmp(x->subscription_id, c->sub))
            CHECK(!strcmp(x->job_id, "file-job-1") && x->reason == CG_JOB_EVENT,
                  "job line kept as written: %s %s", x->job_id,
                  cg_job_reason_name(x->reason));
        else
            CHECK(x->reason == CG_JOB_MANUAL, "reason manual for %s",
                  x->subscription_id);
    }
    CHECK(jobs_for(&j, a->sub) == 1 && jobs_for(&j, b->sub) == 1 &&
              jobs_for(&j, c->sub) == 1 && jobs_for(&j, d->sub) == 1,
          "one job for each good line");
    jobs_free(&j);
    run_free(&r);

    /* The same source on stdin ("-"). */
    const char *argv[64];
    static const char *const sargs[] = { "file", "-", NULL };
    producer_argv(argv, 64, sargs);
    struct cg_harness_proc_opts po = { .name = "producer-stdin",
                                       .line_timeout_ms = -1,
                                       .stdin_pipe = true };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &po, errbuf, sizeof(errbuf));
    CHECK(p != NULL, "producer on stdin started: %s", errbuf);
    if (!p)
        return;
    char in[256];
    /* Upper case, as some tools write GUIDs: the job leaves lower case. */
    char up_tenant[40], up_sub[40];
    int n = snprintf(in, sizeof(in), "%s,%s\nnonsense\n",
                     upper_id(a->tenant, up_tenant), upper_id(a->sub, up_sub));
    int fd = cg_harness_proc_stdin(p);
    CHECK(write(fd, in, (size_t)n) == n, "stdin written");
    close(fd);
    int st = 0;
    CHECK(cg_harness_proc_wait(p, RUN_MS, &st) == 0 && WIFEXITED(st) &&
              WEXITSTATUS(st) == 1,
          "stdin run: exit status 1 for one bad line (%d)", st);
    run_collect(p, &r);
    CHECK(strstr(r.out, "bad line 2:") != NULL, "stdin bad line 2 named: %s",
          r.out);
    cg_harness_proc_free(p);
    run_free(&r);
    read_jobs(5, &j);
    CHECK(j.n == 5 && jobs_for(&j, a->sub) == 2, "one more job from stdin");
    jobs_free(&j);
}

static struct cg_harness_proc *start_long(const char *const *extra,
                                          const char *const *env)
{
    const char *argv[64];
    producer_argv(argv, 64, extra);
    struct cg_harness_proc_opts po = { .name = "producer", .env = env };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &po, errbuf, sizeof(errbuf));
    CHECK(p != NULL, "producer %s started: %s", extra[0], errbuf);
    return p;
}

/* SIGTERM, a clean exit 0, and the run's output. */
static void stop_long(struct cg_harness_proc *p, struct run *r)
{
    memset(r, 0, sizeof(*r));
    r->exit_status = -1;
    cg_harness_proc_kill(p, SIGTERM);
    int st = 0;
    int rc = cg_harness_proc_wait(p, 60000, &st);
    CHECK(rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "stopped by SIGTERM with exit status 0 (rc %d status %d)", rc, st);
    if (rc == 0 && WIFEXITED(st))
        r->exit_status = WEXITSTATUS(st);
    run_collect(p, r);
    cg_harness_proc_free(p);
}

/* Event Grid arrays and a CloudEvent from the events topic. */
static void test_listen(void)
{
    if (start_stack(2, 4, NULL))
        return;
    const struct cg_stack_sub *a = &stack.subs[0], *b = &stack.subs[5];
    static const char *const args[] = { "listen", "--json", "--set",
                                        "producer.debounce_ms=300", NULL };
    struct cg_harness_proc *p = start_long(args, NULL);
    if (!p)
        return;
    CHECK(strstr(cg_harness_proc_first_line(p), "listen ready"),
          "ready line: %s", cg_harness_proc_first_line(p));
    char eg[4096], ce[2048], bad[1024];
#define EGE(id, op, sub, ten)                                                  \
    "{\"id\":\"" id "\",\"eventType\":\"Microsoft.Resources."                  \
    "ResourceWriteSuccess\",\"subject\":\"/subscriptions/%s\",\"eventTime\":"  \
    "\"2026-11-23T10:00:00Z\",\"dataVersion\":\"\",\"data\":{"                 \
    "\"operationName\":\"" op "\",\"subscriptionId\":\"%s\",\"tenantId\":"     \
    "\"%s\"}}"
    snprintf(eg, sizeof(eg),
             "[" EGE("ev-1", "Microsoft.Security/securityContacts/write", s,
                     t) "," EGE("ev-1",
                                "Microsoft.Security/securityContacts/write", s,
                                t) "," EGE("ev-2",
                                           "Microsoft.Security/"
                                           "securityContacts/write",
                                           s, t) "," EGE("ev-3",
                                                         "Microsoft."
                                                         "Compute/"
                                                         "virtualMachines/"
                                                         "write",
                                                         s, t) "]",
             a->sub, a->sub, a->tenant, a->sub, a->sub, a->tenant, a->sub,
             a->sub, a->tenant, a->sub, a->sub, a->tenant);
    snprintf(ce, sizeof(ce),
             "{\"specversion\":\"1.0\",\"id\":\"ce-1\",\"type\":\"Microsoft."
             "Resources.ResourceWriteSuccess\",\"source\":\"/subscriptions/"
             "%s\",\"subject\":\"/providers/Microsoft.Subscription/aliases/"
             "new-one\",\"time\":\"2026-11-23T10:00:01Z\",\"datacontenttype\":"
             "\"application/json\",\"data\":{\"operationName\":\"Microsoft."
             "Subscription/aliases/write\",\"subscriptionId\":\"%s\","
             "\"tenantId\":\"%s\"}}",
             b->sub, b->sub, b->tenant);
    snprintf(bad, sizeof(bad),
             "[{\"id\":\"ev-9\",\"eventType\":\"Microsoft.Resources."
             "ResourceWriteSuccess\",\"data\":{\"operationName\":\"Microsoft."
             "Security/securityContacts/write\",\"subscriptionId\":\"%s\"}}]",
             a->sub);
    struct cg_harness_msg msgs[] = {
        { .key = "eg", .value = eg, .partition = -1 },
        { .key = "ce", .value = ce, .partition = -1 },
        { .key = "junk", .value = "this is not JSON {", .partition = -1 },
        { .key = "notenant", .value = bad, .partition = -1 },
    };
    for (size_t i = 0; i < 4; i++) {
        msgs[i].key_len = strlen(msgs[i].key);
        msgs[i].value_len = strlen(msgs[i].value);
    }
    int rc = cg_harness_kafka_produce(
        cg_harness_devbroker_bootstrap(stack.kafka), "contactguard.events",
        msgs, 4, 30000, errbuf, sizeof(errbuf));
    CHECK(rc == 0, "events produced: %s", errbuf);
    struct jobs j;
    read_jobs(2, &j);
    CHECK(j.n >= 2, "two jobs from the events");
    jobs_free(&j);
    struct run r;
    stop_long(p, &r);
    /* Read again after the stop: nothing more came. */
    read_jobs(2, &j);
    CHECK(j.n == 2, "exactly two jobs: %zu", j.n);
    for (size_t i = 0; i < j.n; i++) {
        if (!strcmp(j.v[i].subscription_id, a->sub))
            CHECK(j.v[i].reason == CG_JOB_EVENT &&
                      !strcmp(j.v[i].tenant_id, a->tenant),
                  "Event Grid contact write -> reason event");
        else
            CHECK(!strcmp(j.v[i].subscription_id, b->sub) &&
                      j.v[i].reason == CG_JOB_NEW_SUBSCRIPTION &&
                      !strcmp(j.v[i].tenant_id, b->tenant),
                  "CloudEvent alias write -> new-subscription for %s",
                  j.v[i].subscription_id);
    }
    CHECK(jint(r.summary, "events", "duplicate") == 1 &&
              jint(r.summary, "events", "debounced") == 1 &&
              jint(r.summary, "events", "bodies_rejected") == 1,
          "duplicate %lld debounced %lld rejected %lld",
          jint(r.summary, "events", "duplicate"),
          jint(r.summary, "events", "debounced"),
          jint(r.summary, "events", "bodies_rejected"));
    json_t *bk =
        json_object_get(json_object_get(r.summary, "events"), "by_kind");
    CHECK(jint(bk, "ignored", NULL) == 1 && jint(bk, "malformed", NULL) == 1,
          "one ignored, one malformed");
    jobs_free(&j);
    run_free(&r);
}

/* ---- webhook ---- */

struct http_res {
    long status;
    struct cg_buf body, headers;
};

static size_t buf_cb(char *ptr, size_t sz, size_t nm, void *ud)
{
    return cg_buf_append(ud, ptr, sz * nm) == 0 ? sz * nm : 0;
}

static void http_do_ca(const char *method, const char *url,
                       const char *const *headers, const char *body, size_t len,
                       const char *ca, struct http_res *res)
{
    memset(res, 0, sizeof(*res));
    cg_buf_init(&res->body, 1 << 20);
    cg_buf_init(&res->headers, 1 << 20);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    for (const char *const *x = headers; x && *x; x++)
        h = curl_slist_append(h, *x);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &res->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, buf_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &res->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    if (ca && *ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void http_do(const char *method, const char *url,
                    const char *const *headers, const char *body, size_t len,
                    struct http_res *res)
{
    http_do_ca(method, url, headers, body, len, NULL, res);
}

static void http_free(struct http_res *r)
{
    cg_buf_free(&r->body);
    cg_buf_free(&r->headers);
}

/* Sends raw bytes and returns the status of the answer (0: none). */
static int raw_request(int port, const char *data, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int status = 0;
    struct timeval tv = { .tv_sec = 30 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        size_t off = 0;
        while (off < len) {
            ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n > 12) {
            buf[n] = '\0';
            sscanf(buf, "HTTP/1.1 %d", &status);
        }
    }
    close(fd);
    return status;
}

static json_t *fake_call(const char *base, const char *method, const char *path,
                         const char *body)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", base, path);
    static const char *const h[] = { "Content-Type: application/json", NULL };
    struct http_res r;
    http_do_ca(method, url, h, body, body ? strlen(body) : 0,
               strncmp(base, "https:", 6) == 0 ? stack.ca : NULL, &r);
    json_t *o = r.body.data ? json_loads(r.body.data, 0, NULL) : NULL;
    CHECK(r.status / 100 == 2, "fake %s %s: %ld", method, path, r.status);
    http_free(&r);
    return o;
}

/* Both handshakes, the secret, the limits, and Event Grid delivery from an
 * independent sender (the fake's webhook poster). */
static void test_webhook(void)
{
    if (start_stack(1, 3, NULL))
        return;
    int port = cg_harness_free_port(errbuf, sizeof(errbuf));
    char listen[64], base[128];
    snprintf(listen, sizeof(listen), "producer.webhook_listen=127.0.0.1:%d",
             port);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
    const char *args[] = { "webhook", "--json",
                           "--set",   listen,
                           "--set",   "producer.debounce_ms=0",
                           "--set",   "producer.webhook_max_body=4096",
                           NULL };
    static const char *const env[] = {
        "CONTACTGUARD_PRODUCER_WEBHOOK_SECRET=" WEBHOOK_SECRET, NULL
    };
    struct cg_harness_proc *p = start_long(args, env);
    if (!p)
        return;
    char url[256];
    struct http_res r;
    /* CloudEvents abuse-protection handshake. */
    snprintf(url, sizeof(url), "%s/events?code=%s", base, WEBHOOK_SECRET);
    static const char *const opt_h[] = {
        "WebHook-Request-Origin: eventgrid.azure.net", NULL
    };
    http_do("OPTIONS", url, opt_h, NULL, 0, &r);
    CHECK(r.status == 200 && r.headers.data &&
              strcasestr(r.headers.data,
                         "WebHook-Allowed-Origin: eventgrid.azure.net"),
          "OPTIONS handshake: %ld %s", r.status,
          r.headers.data ? r.headers.data : "");
    http_free(&r);
    /* Wrong secret. */
    snprintf(url, sizeof(url), "%s/events?code=wrong", base);
    http_do("POST", url, NULL, "[]", 2, &r);
    CHECK(r.status == 401, "wrong secret: %ld", r.status);
    http_free(&r);
    snprintf(url, sizeof(url), "%s/events", base);
    static const char *const wrong_h[] = { "X-Webhook-Secret: nope", NULL };
    http_do("POST", url, wrong_h, "[]", 2, &r);
    CHECK(r.status == 401, "wrong secret header: %ld", r.status);
    http_free(&r);
    /* Oversized, malformed. */
    static const char *const ok_h[] = { "X-Webhook-Secret: " WEBHOOK_SECRET,
                                        "aeg-event-type: Notification", NULL };
    char *big = cg_malloc(100000);
    memset(big, ' ', 100000);
    big[0] = '[';
    big[99999] = ']';
    http_do("POST", url, ok_h, big, 100000, &r);
    CHECK(r.status == 413, "oversized body: %ld", r.status);
    http_free(&r);
    free(big);
    http_do("POST", url, ok_h, "[{\"id\":", 7, &r);
    CHECK(r.status == 400, "malformed body: %ld", r.status);
    http_free(&r);
    /* Hostile bytes straight on the socket. */
    static const char junk[] = "\x01\x02 garbage\r\n\r\n";
    CHECK(raw_request(port, junk, sizeof(junk) - 1) == 400,
          "garbage request line: 400");
    static const char nolen[] =
        "POST /events?code=" WEBHOOK_SECRET " HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(raw_request(port, nolen, sizeof(nolen) - 1) == 411,
          "POST without Content-Length: 411");
    static const char lie[] =
        "POST /events HTTP/1.1\r\nContent-Length: "
        "18446744073709551615\r\nX-Webhook-Secret: " WEBHOOK_SECRET "\r\n\r\n";
    CHECK(raw_request(port, lie, sizeof(lie) - 1) == 413,
          "huge Content-Length: 413 before any body");
    /* A NUL byte inside the head must not hide where it ends. */
    static const char nul[] = "POST /events HTTP/1.1\r\nX-A: \0\r\n"
                              "Content-Length: 2\r\n\r\n[]";
    CHECK(raw_request(port, nul, sizeof(nul) - 1) == 411,
          "a NUL in the head is answered at once (411: nothing after it "
          "counts)");
    char *head = cg_malloc(40000);
    int hl = snprintf(head, 40000, "POST /events HTTP/1.1\r\nX-Pad: ");
    memset(head + hl, 'a', 30000);
    memcpy(head + hl + 30000, "\r\n\r\n", 4);
    int hs = raw_request(port, head, (size_t)hl + 30004);
    CHECK(hs == 431, "a 30 KB head: 431, got %d", hs);
    free(head);
    /* Event Grid's own sender: a second fake posts to us, handshake first.
     * It shares the stack's population (same seed). */
    char hook[256];
    snprintf(hook, sizeof(hook), "%s/events?code=%s", base, WEBHOOK_SECRET);
    const char *fargv[] = { CG_BIN_CONTACTGUARD_FAKEAZURE,
                            "--tenants",
                            "1",
                            "--subscriptions-per-tenant",
                            "3",
                            "--events-webhook",
                            hook,
                            NULL };
    struct cg_harness_proc_opts fo = { .name = "fake-events" };
    struct cg_harness_proc *fake =
        cg_harness_proc_start(fargv, &fo, errbuf, sizeof(errbuf));
    CHECK(fake != NULL, "events fake started: %s", errbuf);
    if (fake) {
        const char *fbase = cg_harness_proc_first_line(fake);
        char path[256];
        snprintf(path, sizeof(path), "/_fake/tenants/%s/subscriptions",
                 stack.subs[0].tenant);
        json_t *made = fake_call(fbase, "POST", path,
                                 "{\"scenario\":\"no-contact\","
                                 "\"announce\":true}");
        const char *nsub =
            json_string_value(json_object_get(made, "subscription_id"));
        snprintf(path, sizeof(path), "/_fake/subscriptions/%s/contact",
                 stack.subs[1].sub);
        json_decref(fake_call(fbase, "PUT", path, "null"));
        struct jobs j;
        read_jobs(2, &j);
        CHECK(j.n == 2, "two jobs from the webhook: %zu", j.n);
        CHECK(nsub && jobs_for(&j, nsub) == 1, "creation job for %s",
              nsub ? nsub : "(none)");
        for (size_t i = 0; i < j.n; i++) {
            if (nsub && !strcmp(j.v[i].subscription_id, nsub))
                CHECK(j.v[i].reason == CG_JOB_NEW_SUBSCRIPTION,
                      "alias write -> new-subscription");
            else
                CHECK(!strcmp(j.v[i].subscription_id, stack.subs[1].sub) &&
                          j.v[i].reason == CG_JOB_EVENT,
                      "portal contact edit -> event for %s",
                      j.v[i].subscription_id);
        }
        jobs_free(&j);
        json_t *ev = fake_call(fbase, "GET", "/_fake/events", NULL);
        CHECK(json_is_true(json_object_get(ev, "validated")),
              "the sender's SubscriptionValidation handshake was answered");
        json_decref(ev);
        json_decref(made);
        cg_harness_proc_free(fake);
    }
    CHECK(cg_harness_proc_running(p), "the receiver survived bad requests");
    struct run rr;
    stop_long(p, &rr);
    CHECK(jint(rr.summary, "webhook", "unauthorized") == 2 &&
              jint(rr.summary, "webhook", "bad") == 5 &&
              jint(rr.summary, "webhook", "too_big") == 2,
          "webhook counters: %s", rr.out);
    CHECK(!strstr(rr.err, WEBHOOK_SECRET) && !strstr(rr.out, WEBHOOK_SECRET),
          "the webhook secret never printed");
    run_free(&rr);
}

/* ---- slow clients ---- */

#define SLOW_CONNS      500
#define SLOW_DELIVERIES 40

/* One peer (127.0.0.2) holding SLOW_CONNS connections that trickle a head
 * one byte at a time and re-open as soon as the receiver closes them. */
struct slowloris {
    int port;
    atomic_bool stop;
    int fds[SLOW_CONNS];
    size_t opened;
};

static int slow_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in src, dst;
    memset(&src, 0, sizeof(src));
    memset(&dst, 0, sizeof(dst));
    src.sin_family = dst.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000002);
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    dst.sin_port = htons((uint16_t)port);
    if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0 ||
        (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0 &&
         errno != EINPROGRESS)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void *slow_run(void *arg)
{
    struct slowloris *sl = arg;
    static const char head[] = "POST /events HTTP/1.1\r\nX-Slow: ";
    size_t at[SLOW_CONNS] = { 0 };
    while (!atomic_load(&sl->stop)) {
        for (int i = 0; i < SLOW_CONNS; i++) {
            char b;
            ssize_t r =
                sl->fds[i] >= 0 ? recv(sl->fds[i], &b, 1, MSG_DONTWAIT) : 0;
            bool gone = sl->fds[i] < 0 || r == 0 ||
                        (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
            if (!gone) {
                char c = at[i] < sizeof(head) - 1 ? head[at[i]] : 'a';
                ssize_t w = send(sl->fds[i], &c, 1, MSG_NOSIGNAL);
                if (w == 1)
                    at[i]++;
                else if (errno != EAGAIN && errno != EWOULDBLOCK &&
                         errno != ENOTCONN)
                    gone = true;
            }
            if (gone) {
                if (sl->fds[i] >= 0)
                    close(sl->fds[i]);
                sl->fds[i] = slow_open(sl->port);
                at[i] = 0;
                sl->opened++;
            }
        }
        usleep(200 * 1000);
    }
    for (int i = 0; i < SLOW_CONNS; i++)
        if (sl->fds[i] >= 0)
            close(sl->fds[i]);
    return NULL;
}

/* 500 slow connections from one peer, re-opened whenever closed, while
 * Event Grid deliveries from another keep coming: at least 95% answered. */
static void test_slowloris(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (start_stack(1, 3, NULL))
        return;
    int port = cg_harness_free_port(errbuf, sizeof(errbuf));
    char listen[64], url[160];
    snprintf(listen, sizeof(listen), "producer.webhook_listen=127.0.0.1:%d",
             port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/events", port);
    const char *args[] = { "webhook", "--json", "--set",
                           listen,    "--set",  "producer.debounce_ms=0",
                           NULL };
    static const char *const env[] = {
        "CONTACTGUARD_PRODUCER_WEBHOOK_SECRET=" WEBHOOK_SECRET, NULL
    };
    struct cg_harness_proc *p = start_long(args, env);
    if (!p)
        return;
    struct slowloris sl = { .port = port };
    for (int i = 0; i < SLOW_CONNS; i++)
        sl.fds[i] = -1;
    atomic_init(&sl.stop, false);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, slow_run, &sl) == 0, "slow client thread");
    /* The slow peer first takes what it can. */
    while (sl.opened < SLOW_CONNS)
        usleep(50 * 1000);
    static const char *const ok_h[] = { "X-Webhook-Secret: " WEBHOOK_SECRET,
                                        "aeg-event-type: Notification", NULL };
    /* Paced over 10 s, twice the head deadline, so that the slow peer's
     * connections expire and come back while deliveries go on. */
    int answered = 0;
    for (int i = 0; i < SLOW_DELIVERIES; i++) {
        struct http_res r;
        http_do("POST", url, ok_h, "[]", 2, &r);
        answered += r.status == 200;
        http_free(&r);
        usleep(250 * 1000);
    }
    atomic_store(&sl.stop, true);
    pthread_join(t, NULL);
    /* A body trickled a byte every half second is cut off by the body's
     * rate deadline (5 s of grace here), not after a request-wide 30 s. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int64_t trickle_ms = -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        static const char h[] =
            "POST /events HTTP/1.1\r\nX-Webhook-Secret: " WEBHOOK_SECRET
            "\r\nContent-Length: 1000\r\n"
            "\r\n";
        int64_t t0 = cg_harness_now_ms();
        ssize_t w = send(fd, h, sizeof(h) - 1, MSG_NOSIGNAL);
        while (w > 0 && cg_harness_now_ms() - t0 < 60000) {
            char b;
            if (recv(fd, &b, 1, MSG_DONTWAIT) == 0)
                break;
            w = send(fd, " ", 1, MSG_NOSIGNAL);
            usleep(500 * 1000);
        }
        trickle_ms = cg_harness_now_ms() - t0;
    }
    close(fd);
    printf("slowloris: a trickled body was cut off after %lld ms\n",
           (long long)trickle_ms);
    CHECK(trickle_ms >= 0 && trickle_ms < 20000,
          "a trickled body held its connection %lld ms", (long long)trickle_ms);
    printf("slowloris: %d of %d deliveries answered while %d slow "
           "connections were held (%zu opened)\n",
           answered, SLOW_DELIVERIES, SLOW_CONNS, sl.opened);
    CHECK(answered * 100 >= SLOW_DELIVERIES * 95,
          "%d of %d deliveries answered under %d slow connections", answered,
          SLOW_DELIVERIES, SLOW_CONNS);
    CHECK(cg_harness_proc_running(p), "the receiver survived");
    struct run rr;
    stop_long(p, &rr);
    CHECK(jint(rr.summary, "webhook", "refused") > 0 &&
              jint(rr.summary, "webhook", "timeouts") > 0,
          "the slow peer was held to its share and timed out: %s", rr.out);
    run_free(&rr);
}

/* A subscription created while watching is scanned at the next listing,
 * not at the next sweep. */
static void test_watch(void)
{
    static const char *const fa[] = { "--page-size", "3", NULL };
    if (start_stack(2, 6, fa))
        return;
    static const char *const args[] = { "watch", "--json", "--set",
                                        "producer.watch_interval=1", NULL };
    struct cg_harness_proc *p = start_long(args, NULL);
    if (!p)
        return;
    size_t first = count_auditable();
    char want[64];
    snprintf(want, sizeof(want), "watch cycle 1: tenants_failed=0 new=%zu",
             first);
    CHECK(cg_harness_proc_wait_for(p, want, 60000) == 0,
          "first cycle: every unknown subscription is new (%s)", want);
    CHECK(cg_harness_proc_wait_for(p, "watch cycle 2: tenants_failed=0 new=0",
                                   60000) == 0,
          "second cycle: nothing new");
    char path[256];
    snprintf(path, sizeof(path), "/_fake/tenants/%s/subscriptions",
             stack.subs[0].tenant);
    json_t *made =
        fake_call(stack.base, "POST", path, "{\"scenario\":\"compliant\"}");
    const char *nsub =
        json_string_value(json_object_get(made, "subscription_id"));
    struct jobs j;
    read_jobs(first + 1, &j);
    CHECK(nsub && jobs_for(&j, nsub) == 1, "job for the new subscription %s",
          nsub ? nsub : "(none)");
    for (size_t i = 0; i < j.n; i++)
        CHECK(j.v[i].reason == CG_JOB_NEW_SUBSCRIPTION,
              "watch jobs are new-subscription");
    jobs_free(&j);
    CHECK(cg_harness_proc_wait_for(p, "new=1", 60000) == 0,
          "a cycle reported one new subscription");
    struct run r;
    stop_long(p, &r);
    read_jobs(first + 1, &j);
    CHECK(j.n == first + 1, "exactly %zu jobs, got %zu", first + 1, j.n);
    jobs_free(&j);
    json_decref(made);
    run_free(&r);
}

/* Recently scanned subscriptions are skipped; --force sends them anyway. */
static void test_fresh(void)
{
    if (start_stack(2, 10, NULL))
        return;
    long long now = (long long)time(NULL) * 1000;
    /* Seeded the way the programs connect: the only way over TLS. */
    struct cg_redis *c =
        cg_harness_redis_admin(stack.redis, errbuf, sizeof(errbuf));
    CHECK(c != NULL, "redis admin: %s", errbuf);
    size_t fresh = 0;
    char scanned[64], stale[64];
    snprintf(scanned, sizeof(scanned), "%lld", now - 60000);
    snprintf(stale, sizeof(stale), "%lld", now - 7200000);
    bool *is_fresh = cg_calloc(stack.nsubs, sizeof(bool));
    for (size_t i = 0; c && i < stack.nsubs; i++) {
        if (!auditable(stack.subs[i].state) || i % 3 == 2)
            continue;
        /* Two of three recently scanned, one of three long ago. */
        bool recent = i % 3 == 0;
        char key[128];
        snprintf(key, sizeof(key), "cg:sub:%s", stack.subs[i].sub);
        const char *argv[] = { "HSET",    key,
                               "tenant",  stack.subs[i].tenant,
                               "scan_ms", recent ? scanned : stale };
        size_t len[6];
        for (int k = 0; k < 6; k++)
            len[k] = strlen(argv[k]);
        const struct cg_redis_cmd cmd = { 6, argv, len };
        struct redisReply *x = NULL;
        CHECK(cg_redis_run(c, &cmd, 1, &x, "HSET", errbuf, sizeof(errbuf)) == 0,
              "seed: %s", errbuf);
        cg_redis_reply_free(x);
        if (recent) {
            fresh++;
            is_fresh[i] = true;
        }
    }
    cg_redis_free(c);
    size_t all = count_auditable();
    static const char *const args[] = { "sweep", "--json", NULL };
    struct run r;
    run_producer(args, NULL, &r);
    CHECK(r.exit_status == 0 && fresh > 0, "sweep ok, %zu fresh", fresh);
    CHECK(jint(r.summary, "subscriptions", "fresh") == (long long)fresh &&
              jint(r.summary, "jobs", "delivered") == (long long)(all - fresh),
          "fresh %lld of %zu, jobs %lld of %zu",
          jint(r.summary, "subscriptions", "fresh"), fresh,
          jint(r.summary, "jobs", "delivered"), all - fresh);
    run_free(&r);
    struct jobs j;
    read_jobs(all - fresh, &j);
    CHECK(j.n == all - fresh, "jobs %zu, want %zu", j.n, all - fresh);
    for (size_t i = 0; i < stack.nsubs; i++)
        if (is_fresh[i])
            CHECK(jobs_for(&j, stack.subs[i].sub) == 0,
                  "no job for the fresh %s", stack.subs[i].sub);
    jobs_free(&j);
    static const char *const forced[] = { "sweep", "--force", "--json", NULL };
    run_producer(forced, NULL, &r);
    CHECK(
        r.exit_status == 0 && jint(r.summary, "subscriptions", "fresh") == 0 &&
            jint(r.summary, "jobs", "delivered") == (long long)all,
        "--force: %lld jobs of %zu", jint(r.summary, "jobs", "delivered"), all);
    run_free(&r);
    read_jobs(2 * all - fresh, &j);
    CHECK(j.n == 2 * all - fresh, "after --force: %zu jobs, want %zu", j.n,
          2 * all - fresh);
    for (size_t i = 0; i < stack.nsubs; i++)
        if (is_fresh[i])
            CHECK(jobs_for(&j, stack.subs[i].sub) == 1,
                  "--force scans the fresh %s", stack.subs[i].sub);
    jobs_free(&j);
    free(is_fresh);
}

/* The same freshness check against a TLS-only Redis with an ACL user. */
static void test_fresh_tls(void)
{
    static const struct cg_harness_redis_opts tls = {
        .tls = true,
        .password = "it-producer-default-pass-77e0",
        .user = "it_producer",
        .user_password = "it-producer-acl-pass-2f4d",
    };
    redis_opts = &tls;
    test_fresh();
    redis_opts = NULL;
}

/* --dry-run prints the jobs and sends (and writes) nothing. */
static void test_dry_run(void)
{
    if (start_stack(3, 8, NULL))
        return;
    static const char *const args[] = { "sweep", "--dry-run", NULL };
    struct run r;
    run_producer(args, NULL, &r);
    size_t want = count_auditable(), lines = 0;
    char *save = NULL, *copy = cg_strdup(r.out);
    for (char *l = strtok_r(copy, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        struct cg_job job;
        char e[200];
        if (cg_job_decode(l, strlen(l), &job, e, sizeof(e)) == 0) {
            lines++;
            const struct cg_stack_sub *s = truth_find(job.subscription_id);
            CHECK(s && auditable(s->state), "printed job for %s",
                  job.subscription_id);
        }
    }
    free(copy);
    CHECK(r.exit_status == 0 && lines == want, "printed %zu jobs, want %zu",
          lines, want);
    CHECK(strstr(r.out, "sweep: ") != NULL, "text summary after the jobs");
    run_free(&r);
    struct jobs j;
    read_jobs(0, &j);
    CHECK(j.n == 0, "nothing on the jobs topic: %zu", j.n);
    jobs_free(&j);
    redisContext *c = redis();
    if (c) {
        redisReply *x = redisCommand(c, "KEYS cg:*");
        CHECK(x && x->type == REDIS_REPLY_ARRAY && x->elements == 0,
              "nothing written to Redis");
        freeReplyObject(x);
        redisFree(c);
    }
}

/* Kafka unreachable: every job is accounted for as failed, exit 3. */
static void test_undelivered(void)
{
    if (start_stack(2, 5, NULL))
        return;
    char reply[256];
    int rc =
        cg_harness_devbroker_cmd(stack.kafka, "down all", reply, sizeof(reply));
    CHECK(rc == 0, "brokers down: %s", reply);
    static const char *const args[] = {
        "sweep", "--force", "--json", "--set", "kafka.message.timeout.ms=2000",
        NULL
    };
    struct run r;
    run_producer(args, NULL, &r);
    long long want = (long long)count_auditable();
    CHECK(r.exit_status == 3, "exit status %d, want 3", r.exit_status);
    CHECK(jint(r.summary, "jobs", "sent") == want &&
              jint(r.summary, "jobs", "failed") == want &&
              jint(r.summary, "jobs", "delivered") == 0,
          "sent %lld failed %lld delivered %lld, want %lld failed",
          jint(r.summary, "jobs", "sent"), jint(r.summary, "jobs", "failed"),
          jint(r.summary, "jobs", "delivered"), want);
    CHECK(strstr(r.err, "producer.job_failed") != NULL,
          "each failed job is logged");
    run_free(&r);
    cg_harness_devbroker_cmd(stack.kafka, "up all", reply, sizeof(reply));
    /* Nothing failed joined the known sets. */
    redisContext *c = redis();
    if (c) {
        redisReply *x = redisCommand(c, "KEYS cg:tenant:*:known");
        CHECK(x && x->type == REDIS_REPLY_ARRAY && x->elements == 0,
              "no known set written for undelivered jobs");
        freeReplyObject(x);
        redisFree(c);
    }
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } scenarios[] = {
        { "sweep", test_sweep },
        { "failing", test_failing },
        { "file", test_file },
        { "listen", test_listen },
        { "webhook", test_webhook },
        { "slowloris", test_slowloris },
        { "watch", test_watch },
        { "fresh", test_fresh },
        { "fresh_tls", test_fresh_tls },
        { "dryrun", test_dry_run },
        { "undelivered", test_undelivered },
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *which = argc > 1 ? argv[1] : "";
    bool found = false;
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        if (*which && strcmp(which, scenarios[i].name))
            continue;
        found = true;
        scenarios[i].fn();
        cg_stack_stop(&stack);
    }
    CHECK(found, "scenario '%s' exists", which);
    curl_global_cleanup();
    return check_done("it_producer");
}
