/*
 * A stop is bounded whatever the broker does. Every part is real on
 * loopback (the devbroker, a redis-server, the fake Azure, the processes
 * under test); in each Kafka scenario the broker is SIGKILLed before the
 * stop, so a commit or a group leave would wait for a coordinator that
 * never answers. One scenario per run (argv[1]):
 *
 *   idle        a worker whose jobs are done but not yet committed:
 *               SIGTERM -> exit 0 within worker.drain_timeout_ms + 5 s,
 *               and one log line names the offsets it could not commit
 *   busy        a worker with jobs in flight (Azure answers slowly): the
 *               drain runs out, exit 0 within the same bound
 *   redis       Redis stalled (SIGSTOP), jobs waiting for it, the broker
 *               gone: exit 0 within the same bound, and no job's memory
 *               is touched after it was freed (the cache answers the
 *               abandoned lookups as it stops)
 *   committed   offsets committed before the broker went are not
 *               committed again at the stop (nothing to commit, no wait)
 *   twice-drain SIGTERM, then a second one while draining: the worker is
 *               killed by it within 1 s
 *   twice-close the second SIGTERM while the worker waits for its final
 *               commit (inside librdkafka): killed within 1 s
 *   listen      contactguard-producer listen, an event consumed and its
 *               job delivered but its offset not committed: SIGTERM ->
 *               exit 0 within CG_SOURCE_STOP_MS, one line names the offset
 *   listen-twice the same with a second SIGTERM: killed within 1 s
 *   webhook     contactguard-producer webhook, an event posted after the
 *               broker went: its job cannot be delivered; SIGTERM -> exit
 *               3 (a job was not delivered) within CG_SOURCE_STOP_MS
 *   remediate   contactguard-remediate plan while Azure answers in a
 *               minute: SIGTERM -> exit 3 (stopped) within REMEDIATE_MS
 *
 * The bounds are what README promises (pipeline.h, source.h: the sum of
 * the bounded steps); a clean stop is asserted within its bound plus
 * SLACK_MS for a loaded 2-core machine (the steps are wall-clock bounds,
 * so load only adds their CPU time), a second signal within SECOND_MS.
 * Each run prints the time it took.
 */
#include "../check.h"
#include "err.h"
#include "harness.h"
#include "pipeline.h"
#include "source.h"
#include "stack.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define WAIT_MS     120000
#define DRAIN_MS    2000
#define SECOND_MS   1000 /* a second signal ends the process within this */
#define SLACK_MS    1000
#define JOBS_TOPIC  "contactguard.jobs"
#define WORKERS_GRP "contactguard-workers"
/* contactguard-remediate cancels what is in flight at once; this is what
 * cancelling, releasing and exiting may take. */
#define REMEDIATE_MS 5000

static char errbuf[1024];

static struct cg_harness_proc *worker_start(struct cg_stack *s, int drain_ms,
                                            const char *extra_set)
{
    char drain[64];
    snprintf(drain, sizeof(drain), "worker.drain_timeout_ms=%d", drain_ms);
    const char *extra[] = { "--set", drain, extra_set ? "--set" : NULL,
                            extra_set, NULL };
    struct cg_harness_proc *p =
        cg_stack_worker(s, "worker", extra, errbuf, sizeof(errbuf));
    CHECK(p != NULL, "worker started: %s", errbuf);
    return p;
}

/* Every job of the stack has its findings on the results topic. */
static void wait_all_findings(struct cg_stack *s)
{
    struct cg_harness_msgs m;
    memset(&m, 0, sizeof(m));
    size_t want = s->nsubs * CG_RULE_COUNT;
    int rc = cg_harness_kafka_consume(cg_harness_devbroker_bootstrap(s->kafka),
                                      "contactguard.results", want, WAIT_MS, &m,
                                      errbuf, sizeof(errbuf));
    CHECK(rc == 0 && m.n >= want, "findings: %zu of %zu (%s)", m.n, want,
          errbuf);
    cg_harness_msgs_free(&m);
}

/* Waits until a line containing needle is in p's stderr (the event). */
static bool wait_log(struct cg_harness_proc *p, const char *needle)
{
    int64_t end = cg_harness_now_ms() + WAIT_MS;
    while (cg_harness_now_ms() < end) {
        if (cg_harness_file_grep(cg_harness_proc_stderr_path(p), needle) > 0)
            return true;
        if (!cg_harness_proc_running(p))
            break;
        cg_harness_proc_wait(p, 20, NULL);
    }
    CHECK(false, "no '%s' in %s", needle, cg_harness_proc_stderr_path(p));
    return false;
}

static int log_count(struct cg_harness_proc *p, const char *needle)
{
    return cg_harness_file_grep(cg_harness_proc_stderr_path(p), needle);
}

/* The broker dies at once: no goodbye to any client. */
static void kill_broker(struct cg_stack *s)
{
    struct cg_harness_proc *b = cg_harness_devbroker_proc(s->kafka);
    CHECK(cg_harness_proc_kill(b, SIGKILL) == 0, "broker SIGKILL");
    CHECK(cg_harness_proc_wait(b, 10000, NULL) == 0, "broker gone");
}

/* Sends sig and waits for p to exit; returns the milliseconds it took,
 * or -1 when it did not exit within limit_ms * 4. *status as waitpid. */
static int64_t signal_and_time(struct cg_harness_proc *p, int sig,
                               int64_t limit_ms, int *status)
{
    int64_t t0 = cg_harness_now_ms();
    cg_harness_proc_kill(p, sig);
    if (cg_harness_proc_wait(p, (int)(limit_ms * 4), status) != 0)
        return -1;
    return cg_harness_now_ms() - t0;
}

/* The worker's jobs in flight, from its /metrics (-1: unknown). */
static long jobs_in_flight(struct cg_harness_proc *w)
{
    const char *addr = cg_stack_worker_metrics(w);
    char url[160];
    long st = 0, n = -1;
    snprintf(url, sizeof(url), "http://%s/metrics", addr ? addr : "");
    char *body = addr ? cg_stack_http_get(url, NULL, &st) : NULL;
    const char *at =
        body ? strstr(body, "\ncontactguard_jobs_in_flight ") : NULL;
    if (at)
        n = strtol(at + strlen("\ncontactguard_jobs_in_flight "), NULL, 10);
    free(body);
    return n;
}

static void wait_in_flight(struct cg_harness_proc *w)
{
    int64_t end = cg_harness_now_ms() + WAIT_MS;
    long n = 0;
    while (cg_harness_now_ms() < end && (n = jobs_in_flight(w)) <= 0)
        cg_harness_proc_wait(w, 50, NULL);
    CHECK(n > 0, "no job in flight (%ld)", n);
}

static void expect_clean(const char *what, int64_t ms, int status,
                         int64_t bound_ms)
{
    printf("shutdown=%s ms=%lld bound_ms=%lld\n", what, (long long)ms,
           (long long)bound_ms);
    CHECK(ms >= 0 && ms <= bound_ms + SLACK_MS,
          "%s: exit took %lld ms, bound %lld ms (+%d)", what, (long long)ms,
          (long long)bound_ms, SLACK_MS);
    CHECK(ms >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "%s: exit status 0 (wait status %d)", what, status);
}

static void expect_cut_short(const char *what, int64_t ms, int status)
{
    printf("shutdown=%s second_signal_ms=%lld bound_ms=%d\n", what,
           (long long)ms, SECOND_MS);
    CHECK(ms >= 0 && ms <= SECOND_MS,
          "%s: exit took %lld ms after the second "
          "signal, bound %d ms",
          what, (long long)ms, SECOND_MS);
    CHECK(ms >= 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM,
          "%s: killed by SIGTERM (wait status %d)", what, status);
}

static int stack_up(struct cg_stack *s, const char *const *fake_args)
{
    struct cg_stack_opts o = { 2, 10, 4, fake_args, false };
    int rc = cg_stack_start(s, &o, errbuf, sizeof(errbuf));
    CHECK(rc == 0, "stack: %s", errbuf);
    if (rc == 0) {
        rc = cg_stack_produce_jobs(s, 0, errbuf, sizeof(errbuf));
        CHECK(rc == 0, "produce jobs: %s", errbuf);
    }
    return rc;
}

/* Jobs done, none committed (auto-commit far away), broker gone. */
static struct cg_harness_proc *done_uncommitted(struct cg_stack *s,
                                                int drain_ms)
{
    struct cg_harness_proc *w =
        worker_start(s, drain_ms, "kafka.auto.commit.interval.ms=3600000");
    if (!w)
        return NULL;
    wait_all_findings(s);
    kill_broker(s);
    return w;
}

/* Jobs in flight (Azure answers in a minute), broker gone. */
static struct cg_harness_proc *busy(struct cg_stack *s, int drain_ms)
{
    struct cg_harness_proc *w = worker_start(s, drain_ms, NULL);
    if (!w)
        return NULL;
    wait_in_flight(w);
    kill_broker(s);
    return w;
}

static void scenario_worker(const char *scenario)
{
    struct cg_stack s;
    struct cg_harness_proc *w = NULL;
    int status = 0;
    int64_t ms;
    bool slow = !strcmp(scenario, "busy") || !strcmp(scenario, "twice-drain");
    if (stack_up(&s,
                 slow ? (const char *const[]){ "--latency-ms", "60000", NULL }
                      : NULL))
        return;
    if (!strcmp(scenario, "idle")) {
        if ((w = done_uncommitted(&s, DRAIN_MS))) {
            ms = signal_and_time(w, SIGTERM, DRAIN_MS + CG_PIPELINE_CLOSE_MS,
                                 &status);
            expect_clean("idle", ms, status, DRAIN_MS + CG_PIPELINE_CLOSE_MS);
            CHECK(log_count(w, "consume.uncommitted") == 1,
                  "one consume.uncommitted line (%d)",
                  log_count(w, "consume.uncommitted"));
            CHECK(log_count(w, "consume.closed committed=0") == 1,
                  "consume.closed says nothing was committed");
        }
    } else if (!strcmp(scenario, "busy")) {
        if ((w = busy(&s, DRAIN_MS))) {
            ms = signal_and_time(w, SIGTERM, DRAIN_MS + CG_PIPELINE_CLOSE_MS,
                                 &status);
            expect_clean("busy", ms, status, DRAIN_MS + CG_PIPELINE_CLOSE_MS);
            CHECK(ms >= DRAIN_MS, "the drain was waited for (%lld ms)",
                  (long long)ms);
            CHECK(log_count(w, "worker.abandoned") == 1,
                  "the jobs in flight are named abandoned");
        }
    } else if (!strcmp(scenario, "redis")) {
        struct cg_harness_proc *r = cg_harness_redis_proc(s.redis);
        if ((w = worker_start(&s, DRAIN_MS, "redis.timeout_ms=30000"))) {
            /* Jobs arrive while Redis answers nothing: they wait in their
             * cache lookup (redis.timeout_ms far longer than the drain). */
            CHECK(cg_harness_proc_kill(r, SIGSTOP) == 0, "redis SIGSTOP");
            CHECK(cg_stack_produce_jobs(&s, 0, errbuf, sizeof(errbuf)) == 0,
                  "produce jobs: %s", errbuf);
            wait_in_flight(w);
            kill_broker(&s);
            ms = signal_and_time(w, SIGTERM, DRAIN_MS + CG_PIPELINE_CLOSE_MS,
                                 &status);
            expect_clean("redis", ms, status, DRAIN_MS + CG_PIPELINE_CLOSE_MS);
            cg_harness_proc_kill(r, SIGCONT);
        }
    } else if (!strcmp(scenario, "committed")) {
        if ((w = worker_start(&s, DRAIN_MS, NULL))) {
            wait_all_findings(&s);
            /* The event: the group has every offset committed. */
            int64_t sum = -1, end = cg_harness_now_ms() + WAIT_MS;
            while (cg_harness_now_ms() < end) {
                if (cg_harness_kafka_committed(
                        cg_harness_devbroker_bootstrap(s.kafka), WORKERS_GRP,
                        JOBS_TOPIC, 10000, &sum, errbuf, sizeof(errbuf)) == 0 &&
                    sum == (int64_t)s.nsubs)
                    break;
                cg_harness_proc_wait(w, 100, NULL);
            }
            CHECK(sum == (int64_t)s.nsubs, "committed %lld of %zu offsets",
                  (long long)sum, s.nsubs);
            kill_broker(&s);
            ms = signal_and_time(w, SIGTERM, DRAIN_MS + CG_PIPELINE_CLOSE_MS,
                                 &status);
            expect_clean("committed", ms, status,
                         DRAIN_MS + CG_PIPELINE_CLOSE_MS);
            CHECK(log_count(w, "consume.closed committed=0 uncommitted=0") == 1,
                  "the stop committed nothing again");
            CHECK(log_count(w, "consume.uncommitted") == 0,
                  "no offset reported uncommitted");
        }
    } else if (!strcmp(scenario, "twice-drain")) {
        if ((w = busy(&s, 600000))) {
            cg_harness_proc_kill(w, SIGTERM);
            if (wait_log(w, "worker.draining")) {
                ms = signal_and_time(w, SIGTERM, SECOND_MS, &status);
                expect_cut_short("twice-drain", ms, status);
            }
        }
    } else if (!strcmp(scenario, "twice-close")) {
        if ((w = done_uncommitted(&s, DRAIN_MS))) {
            cg_harness_proc_kill(w, SIGTERM);
            /* worker.stopping: the drain is over, the close begins. */
            if (wait_log(w, "worker.stopping")) {
                ms = signal_and_time(w, SIGTERM, SECOND_MS, &status);
                expect_cut_short("twice-close", ms, status);
            }
        }
    }
    cg_harness_proc_free(w);
    cg_stack_stop(&s);
}

static void scenario_listen(const char *scenario)
{
    struct cg_stack s;
    struct cg_stack_opts o = { 2, 4, 3, NULL, false };
    int status = 0;
    if (cg_stack_start(&s, &o, errbuf, sizeof(errbuf))) {
        CHECK(false, "stack: %s", errbuf);
        return;
    }
    char bs[300], rp[64];
    snprintf(bs, sizeof(bs), "kafka.bootstrap.servers=%s",
             cg_harness_devbroker_bootstrap(s.kafka));
    snprintf(rp, sizeof(rp), "redis.port=%d", cg_harness_redis_port(s.redis));
    const char *argv[] = { CG_BIN_CONTACTGUARD_PRODUCER,
                           "listen",
                           "--config",
                           s.creds,
                           "--set",
                           bs,
                           "--set",
                           rp,
                           "--set",
                           "log.level=info",
                           "--set",
                           "producer.debounce_ms=300",
                           "--set",
                           "kafka.auto.commit.interval.ms=3600000",
                           NULL };
    struct cg_harness_proc_opts po = { .name = "producer" };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &po, errbuf, sizeof(errbuf));
    CHECK(p != NULL, "producer listen: %s", errbuf);
    /* An event in, its job out: the listener is in the group, and has an
     * offset to commit when it stops. */
    char ev[1024];
    snprintf(ev, sizeof(ev),
             "[{\"id\":\"ev-1\",\"eventType\":\"Microsoft.Resources."
             "ResourceWriteSuccess\",\"subject\":\"/subscriptions/%s\","
             "\"eventTime\":\"2026-11-23T10:00:00Z\",\"dataVersion\":\"\","
             "\"data\":{\"operationName\":\"Microsoft.Security/"
             "securityContacts/write\",\"subscriptionId\":\"%s\","
             "\"tenantId\":\"%s\"}}]",
             s.subs[0].sub, s.subs[0].sub, s.subs[0].tenant);
    struct cg_harness_msg msg = { .key = "ev",
                                  .key_len = 2,
                                  .value = ev,
                                  .value_len = strlen(ev),
                                  .partition = -1 };
    struct cg_harness_msgs jobs;
    memset(&jobs, 0, sizeof(jobs));
    bool ready =
        p &&
        cg_harness_kafka_produce(cg_harness_devbroker_bootstrap(s.kafka),
                                 "contactguard.events", &msg, 1, WAIT_MS,
                                 errbuf, sizeof(errbuf)) == 0 &&
        cg_harness_kafka_consume(cg_harness_devbroker_bootstrap(s.kafka),
                                 JOBS_TOPIC, 1, WAIT_MS, &jobs, errbuf,
                                 sizeof(errbuf)) == 0 &&
        jobs.n == 1;
    CHECK(!p || ready, "the event became a job: %s", errbuf);
    cg_harness_msgs_free(&jobs);
    if (ready) {
        kill_broker(&s);
        int64_t ms;
        if (!strcmp(scenario, "listen")) {
            ms = signal_and_time(p, SIGTERM, CG_SOURCE_STOP_MS, &status);
            expect_clean("listen", ms, status, CG_SOURCE_STOP_MS);
            /* The event's offset was stored, never committed. */
            CHECK(log_count(p, "producer.uncommitted partitions=1") == 1,
                  "one producer.uncommitted line names the event's offset");
        } else {
            cg_harness_proc_kill(p, SIGTERM);
            if (wait_log(p, "process.signal")) {
                ms = signal_and_time(p, SIGTERM, SECOND_MS, &status);
                expect_cut_short("listen-twice", ms, status);
            }
        }
    }
    cg_harness_proc_free(p);
    cg_stack_stop(&s);
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* POSTs body to url with headers; the HTTP status, or -1. */
static long post(const char *url, const char *const *headers, const char *body)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    long status = -1;
    for (const char *const *x = headers; x && *x; x++)
        h = curl_slist_append(h, *x);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static void scenario_webhook(void)
{
    struct cg_stack s;
    struct cg_stack_opts o = { 1, 2, 1, NULL, false };
    int status = 0;
    if (cg_stack_start(&s, &o, errbuf, sizeof(errbuf))) {
        CHECK(false, "stack: %s", errbuf);
        return;
    }
    int port = cg_harness_free_port(errbuf, sizeof(errbuf));
    char bs[300], rp[64], listen[64], url[128];
    snprintf(bs, sizeof(bs), "kafka.bootstrap.servers=%s",
             cg_harness_devbroker_bootstrap(s.kafka));
    snprintf(rp, sizeof(rp), "redis.port=%d", cg_harness_redis_port(s.redis));
    snprintf(listen, sizeof(listen), "producer.webhook_listen=127.0.0.1:%d",
             port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/events", port);
    const char *argv[] = { CG_BIN_CONTACTGUARD_PRODUCER,
                           "webhook",
                           "--config",
                           s.creds,
                           "--set",
                           bs,
                           "--set",
                           rp,
                           "--set",
                           listen,
                           "--set",
                           "log.level=info",
                           "--set",
                           "producer.debounce_ms=0",
                           NULL };
    static const char *const env[] = {
        "CONTACTGUARD_PRODUCER_WEBHOOK_SECRET=it-shutdown-secret-0451", NULL
    };
    struct cg_harness_proc_opts po = { .name = "producer", .env = env };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &po, errbuf, sizeof(errbuf));
    CHECK(p != NULL, "producer webhook: %s", errbuf);
    if (p) {
        kill_broker(&s);
        char ev[1024];
        snprintf(ev, sizeof(ev),
                 "[{\"id\":\"ev-1\",\"eventType\":\"Microsoft.Resources."
                 "ResourceWriteSuccess\",\"subject\":\"/subscriptions/%s\","
                 "\"eventTime\":\"2026-11-23T10:00:00Z\",\"dataVersion\":"
                 "\"\",\"data\":{\"operationName\":\"Microsoft.Security/"
                 "securityContacts/write\",\"subscriptionId\":\"%s\","
                 "\"tenantId\":\"%s\"}}]",
                 s.subs[0].sub, s.subs[0].sub, s.subs[0].tenant);
        static const char *const h[] = {
            "X-Webhook-Secret: it-shutdown-secret-0451",
            "aeg-event-type: Notification", "Content-Type: application/json",
            NULL
        };
        long st = post(url, h, ev);
        CHECK(st == 200, "webhook POST answered %ld", st);
        /* The job was handed to the producer, which cannot deliver it. */
        if (wait_log(p, "producer.event_job")) {
            int64_t ms =
                signal_and_time(p, SIGTERM, CG_SOURCE_STOP_MS, &status);
            printf("shutdown=webhook ms=%lld bound_ms=%d\n", (long long)ms,
                   CG_SOURCE_STOP_MS);
            CHECK(ms >= 0 && ms <= CG_SOURCE_STOP_MS + SLACK_MS,
                  "webhook: exit took %lld ms, bound %d ms", (long long)ms,
                  CG_SOURCE_STOP_MS);
            CHECK(ms >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 3,
                  "webhook: exit status 3, a job not delivered (wait status "
                  "%d)",
                  status);
        }
    }
    cg_harness_proc_free(p);
    cg_stack_stop(&s);
}

static void scenario_remediate(void)
{
    struct cg_stack s;
    struct cg_stack_opts o = {
        1, 2, 1, (const char *const[]){ "--latency-ms", "60000", NULL }, false
    };
    int status = 0;
    if (cg_stack_start(&s, &o, errbuf, sizeof(errbuf))) {
        CHECK(false, "stack: %s", errbuf);
        return;
    }
    char rp[64];
    snprintf(rp, sizeof(rp), "redis.port=%d", cg_harness_redis_port(s.redis));
    const char *argv[] = { CG_BIN_CONTACTGUARD_REMEDIATE,
                           "--config",
                           s.creds,
                           "--set",
                           rp,
                           "--set",
                           "log.level=info",
                           "plan",
                           "--tenant",
                           s.subs[0].tenant,
                           "--subscription",
                           s.subs[0].sub,
                           NULL };
    struct cg_harness_proc_opts po = { .name = "remediate",
                                       .line_timeout_ms = -1 };
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &po, errbuf, sizeof(errbuf));
    CHECK(p != NULL, "remediate: %s", errbuf);
    /* Connected to Redis: the loop turns, the read of the contacts (a
     * minute long) was started before it. */
    if (p && wait_log(p, "redis_connected")) {
        int64_t ms = signal_and_time(p, SIGTERM, REMEDIATE_MS, &status);
        printf("shutdown=remediate ms=%lld bound_ms=%d\n", (long long)ms,
               REMEDIATE_MS);
        CHECK(ms >= 0 && ms <= REMEDIATE_MS, "remediate: exit took %lld ms",
              (long long)ms);
        CHECK(ms >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 3,
              "remediate: exit status 3, stopped (wait status %d)", status);
    }
    cg_harness_proc_free(p);
    cg_stack_stop(&s);
}

int main(int argc, char **argv)
{
    const char *scenario = argc > 1 ? argv[1] : "idle";
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    if (!strncmp(scenario, "listen", 6))
        scenario_listen(scenario);
    else if (!strcmp(scenario, "remediate"))
        scenario_remediate();
    else if (!strcmp(scenario, "webhook"))
        scenario_webhook();
    else if (!strcmp(scenario, "idle") || !strcmp(scenario, "busy") ||
             !strcmp(scenario, "committed") || !strcmp(scenario, "redis") ||
             !strcmp(scenario, "twice-drain") ||
             !strcmp(scenario, "twice-close"))
        scenario_worker(scenario);
    else {
        fprintf(stderr, "unknown scenario %s\n", scenario);
        return 2;
    }
    curl_global_cleanup();
    return check_done("shutdown");
}
