/*
 * test_cache — the cache's queue and answers, without a Redis.
 *
 * A loopback socket that listens but never accepts plays a server that
 * takes connections and never answers: the Redis client sits in its
 * handshake, so nothing leaves the queue and queue-full drops are exact.
 * A closed port plays a Redis that is down.
 */
#include "cache.h"
#include "cache_reader.h"
#include "../check.h"
#include "conf.h"
#include "err.h"
#include "finding.h"
#include "log.h"
#include "loop.h"
#include "mem.h"

#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define S1 "11111111-1111-4111-8111-111111111111"
#define TA "aaaaaaaa-0000-4000-8000-00000000000a"

static struct cg_loop *loop;

/* A listening socket on 127.0.0.1 that never accepts; *port set. */
static int silent_server(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
        listen(fd, 16) || getsockname(fd, (struct sockaddr *)&sa, &len)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static struct cg_conf *conf_for(int port, int timeout_ms, int queue_max)
{
    struct cg_conf *conf = cg_conf_new();
    char v[32];
    snprintf(v, sizeof(v), "%d", port);
    cg_conf_set(conf, "redis.port", v, NULL, 0);
    snprintf(v, sizeof(v), "%d", timeout_ms);
    cg_conf_set(conf, "redis.timeout_ms", v, NULL, 0);
    snprintf(v, sizeof(v), "%d", queue_max);
    cg_conf_set(conf, "redis.queue_max", v, NULL, 0);
    return conf;
}

struct answers {
    int called;
    int err[64];
};

static void on_done(int err, void *arg)
{
    struct answers *a = arg;
    if (a->called < 64)
        a->err[a->called] = err;
    a->called++;
}

static void on_lookup(const struct cg_cache_prev *prev, void *arg)
{
    CHECK(!prev->job_done && prev->status[0] == CG_STATUS_NONE &&
              prev->scan_ms == 0,
          "a failed lookup reads not done, no previous");
    on_done(prev->err, arg);
}

static void on_lock(int err, bool ok, void *arg)
{
    CHECK(!ok, "a failed lock call is never ok");
    on_done(err, arg);
}

static void store(struct cg_cache *cache, const char *tenant, long long scan,
                  struct answers *a)
{
    struct cg_finding f = { 0 };
    f.previous = CG_STATUS_NONE;
    cg_finding_set(&f, CG_RULE_OWNER_ALERTS, CG_STATUS_PASS, "OK", "ok");
    const struct cg_cache_entry e = { .tenant_id = tenant,
                                      .subscription_id = S1,
                                      .job_id = "job",
                                      .scan_ms = scan,
                                      .findings = &f,
                                      .nfindings = 1 };
    cg_cache_store(cache, &e, on_done, a);
    cg_finding_clear(&f);
}

static void turn_until(const struct answers *a, int want)
{
    int64_t deadline = cg_loop_now_ms() + 10000;
    while (a->called < want && cg_loop_now_ms() < deadline)
        cg_loop_run_once(loop, 20);
}

static int count(const struct answers *a, int err)
{
    int n = 0;
    for (int i = 0; i < a->called && i < 64; i++)
        n += a->err[i] == err;
    return n;
}

/* A callback run by free that asks the cache again (as a remediation
 * releasing its lock does) is answered too, before free returns. */
struct again {
    struct cg_cache *cache;
    struct answers *a;
    int asked;
};

static void on_done_again(int err, void *arg)
{
    struct again *g = arg;
    on_done(err, g->a);
    if (g->asked++ == 0)
        cg_cache_unlock(g->cache, S1, "me", on_lock, g->a);
}

static void test_queue_full(void)
{
    enum { QMAX = 4 };
    int port = 0;
    int lfd = silent_server(&port);
    CHECK(lfd >= 0, "silent server");
    struct cg_conf *conf = conf_for(port, 30000, QMAX);
    char err[256];
    struct cg_cache *cache = cg_cache_new(loop, conf, err, sizeof(err));
    CHECK(cache != NULL, "new: %s", err);
    if (!cache || lfd < 0)
        goto out;

    struct answers w = { 0 }, l = { 0 };
    /* QMAX writes fit; the next three writes are dropped and the lookup is
     * refused: nothing leaves the queue while the handshake waits. */
    for (int i = 0; i < QMAX; i++)
        store(cache, TA, 1 + i, &w);
    store(cache, TA, 10, &w);
    cg_cache_mark_done(cache, "job", on_done, &w);
    cg_cache_undo_put(cache, S1, "{}", 2, 60, on_done, &w);
    cg_cache_lookup(cache, TA, S1, "job", on_lookup, &l);
    CHECK(w.called == 0 && l.called == 0, "no answer inside a call");
    struct cg_cache_stats st;
    cg_cache_stats(cache, &st);
    CHECK(st.dropped == 3, "dropped %llu", (unsigned long long)st.dropped);
    CHECK(st.queue_depth == QMAX, "queue depth %zu", st.queue_depth);
    CHECK(st.lookups == 1 && st.lookup_errors == 1, "lookups %llu/%llu",
          (unsigned long long)st.lookups, (unsigned long long)st.lookup_errors);
    CHECK(!st.connected, "not connected");
    turn_until(&w, 3);
    turn_until(&l, 1);
    CHECK(w.called == 3 && count(&w, CG_EBUSY) == 3,
          "dropped writes answered CG_EBUSY: %d", w.called);
    CHECK(l.called == 1 && l.err[0] == CG_EBUSY, "lookup answered CG_EBUSY");

    /* The same counters on a /metrics page. */
    struct cg_buf page;
    cg_buf_init(&page, 1 << 16);
    cg_cache_metrics(cache, &page);
    static const char *const lines[] = {
        "contactguard_cache_writes_total{result=\"dropped\"} 3\n",
        "contactguard_cache_writes_total{result=\"ok\"} 0\n",
        "contactguard_cache_lookup_errors_total 1\n",
        "contactguard_cache_queue_depth 4\n",
        "contactguard_cache_connected 0\n",
        "# TYPE contactguard_cache_writes_total counter\n",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        CHECK(page.data && strstr(page.data, lines[i]), "metrics lack %s",
              lines[i]);
    const char *first = page.data ? strstr(page.data, "# TYPE "
                                                      "contactguard_cache_"
                                                      "writes_total")
                                  : NULL;
    CHECK(first && !strstr(first + 1, "# TYPE contactguard_cache_writes_total"),
          "one TYPE line per family");
    cg_buf_free(&page);

    /* Bad input is answered on the next turn, never queued. */
    struct answers bad = { 0 };
    store(cache, "tenant with spaces", 1, &bad);
    store(cache, TA, 0, &bad);
    cg_cache_lock(cache, S1, "me", 0, on_lock, &bad);
    cg_cache_lock(cache, "", "me", 1000, on_lock, &bad);
    cg_cache_undo_put(cache, S1, "x", CG_CACHE_BODY_MAX + 1, 60, on_done, &bad);
    CHECK(bad.called == 0, "no answer inside a call");
    turn_until(&bad, 5);
    CHECK(bad.called == 5 && count(&bad, CG_EINVAL) == 4 &&
              bad.err[4] == CG_ETOOBIG,
          "bad input: %d answers", bad.called);

    /* Free cuts the handshake short and cancels what is queued. */
    struct answers ag = { 0 };
    struct again g = { cache, &ag, 0 };
    /* The queue is full: this one is answered CG_EBUSY, by free. */
    cg_cache_undo_put(cache, S1, "{}", 2, 60, on_done_again, &g);
    int64_t t0 = cg_loop_now_ms();
    cg_cache_free(cache);
    cache = NULL;
    int64_t took = cg_loop_now_ms() - t0;
    CHECK(took < 5000, "free took %lld ms with a 30 s timeout",
          (long long)took);
    CHECK(w.called == 3 + QMAX && count(&w, CG_ECANCELLED) == QMAX,
          "queued writes cancelled by free: %d", w.called);
    CHECK(ag.called == 2 && ag.err[0] == CG_EBUSY && ag.err[1] == CG_ECANCELLED,
          "a call from a callback during free is answered: %d", ag.called);
out:
    cg_cache_free(cache);
    cg_conf_free(conf);
    if (lfd >= 0)
        close(lfd);
}

static void test_down(void)
{
    int port = 0;
    int lfd = silent_server(&port);
    close(lfd); /* nobody listens there now */
    struct cg_conf *conf = conf_for(port, 1000, 100);
    char err[256];
    struct cg_cache *cache = cg_cache_new(loop, conf, err, sizeof(err));
    CHECK(cache != NULL, "new: %s", err);
    if (!cache)
        goto out;
    struct answers a = { 0 };
    store(cache, TA, 1, &a);
    turn_until(&a, 1);
    CHECK(a.called == 1 && a.err[0] == CG_EREDIS, "first store CG_EREDIS");
    /* Now known down: answers come at once, nothing is queued. */
    for (int i = 0; i < 10; i++)
        store(cache, TA, 2 + i, &a);
    struct cg_cache_stats st;
    cg_cache_stats(cache, &st);
    CHECK(st.queue_depth == 0, "nothing queued while down: %zu",
          st.queue_depth);
    cg_loop_run_once(loop, 0);
    CHECK(a.called == 11 && count(&a, CG_EREDIS) == 11,
          "answered on the next turn: %d", a.called);
    cg_cache_stats(cache, &st);
    CHECK(st.write_errors == 11 && st.dropped == 0 && st.writes_ok == 0,
          "write_errors %llu", (unsigned long long)st.write_errors);
out:
    cg_cache_free(cache);
    cg_conf_free(conf);
}

static void test_bad_config(void)
{
    static const struct {
        const char *key, *value, *says;
    } rows[] = {
        { "redis.host", "", "redis.host" },
        { "redis.prefix",
          "a-prefix-that-is-far-too-long-to-be-part-of-every-key-name-we-write",
          "redis.prefix" },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct cg_conf *conf = conf_for(1, 1000, 10);
        char err[256] = "";
        cg_conf_set(conf, rows[i].key, rows[i].value, NULL, 0);
        struct cg_cache *cache = cg_cache_new(loop, conf, err, sizeof(err));
        CHECK(!cache && strstr(err, rows[i].says), "row %zu: %s", i, err);
        struct cg_cache_reader *r = cg_cache_reader_new(conf, err, sizeof(err));
        CHECK(!r && strstr(err, rows[i].says), "row %zu reader: %s", i, err);
        cg_cache_free(cache);
        cg_cache_reader_free(r);
        cg_conf_free(conf);
    }
}

int main(void)
{
    /* A Redis that goes away must not kill us on a write (hiredis writes
     * with write(2)): the process decides, not the library. */
    signal(SIGPIPE, SIG_IGN);
    char err[256];
    cg_log_setup(CG_LOG_ERROR, CG_LOG_TEXT, "test_cache");
    loop = cg_loop_new(err, sizeof(err));
    if (!loop)
        return 1;
    test_queue_full();
    test_down();
    test_bad_config();
    cg_loop_free(loop);
    return check_done("test_cache");
}
