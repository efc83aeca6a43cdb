/*
 * test_redis — the Redis client without a Redis: settings refused with a
 * sentence that names them, answers never inside the call, the bounded
 * queue, and free answering what is pending.
 *
 * A loopback socket that listens but never accepts plays a server that
 * takes connections and never answers, so requests stay queued behind the
 * handshake.
 */
#include "../check.h"
#include "conf.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "redis.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct cg_loop *loop;

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

/* Each row: settings ("key", "value" pairs) and what the error names. */
static void test_settings(void)
{
    static const struct {
        const char *kv[8];
        const char *want;
    } rows[] = {
        { { "redis.host", "", NULL }, "redis.host" },
        { { "redis.port", "0", NULL }, "redis.port" },
        { { "redis.username", "u", NULL }, "redis.username" },
        { { "redis.tls", "true", "redis.tls_ca_file", "/nonexistent/ca.pem",
            NULL },
          "redis.tls_ca_file" },
        { { "redis.tls", "true", "redis.tls_cert_file", "/nonexistent/c.pem",
            NULL },
          "go together" },
        { { "redis.tls", "true", "redis.tls_cert_file", "/nonexistent/c.pem",
            "redis.tls_key_file", "/nonexistent/k.pem", NULL },
          "redis.tls_cert_file" },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct cg_conf *conf = cg_conf_new();
        char err[256] = "";
        for (const char *const *kv = rows[i].kv; *kv; kv += 2)
            CHECK(cg_conf_set(conf, kv[0], kv[1], err, sizeof(err)) == 0,
                  "row %zu: %s: %s", i, kv[0], err);
        struct cg_redis *r = cg_redis_new(loop, conf, err, sizeof(err));
        CHECK(r == NULL && strstr(err, rows[i].want),
              "row %zu: want an error naming '%s', got '%s'", i, rows[i].want,
              err);
        cg_redis_free(r);
        cg_conf_free(conf);
    }
}

struct answers {
    int calls;
    int err[16];
};

static void on_answer(int err, struct redisReply *const *reply, int n,
                      void *arg)
{
    struct answers *a = arg;
    if (a->calls < 16)
        a->err[a->calls] = err;
    a->calls++;
}

/* A callback run by free that asks again: answered before free returns. */
struct again {
    struct cg_redis *r;
    struct answers *a;
};

static void on_answer_again(int err, struct redisReply *const *reply, int n,
                            void *arg)
{
    struct again *g = arg;
    on_answer(err, reply, n, g->a);
    const char *argv[] = { "PING" };
    const size_t len[] = { 4 };
    const struct cg_redis_cmd cmd = { 1, argv, len };
    if (g->a->calls == 1)
        cg_redis_call(g->r, &cmd, 1, on_answer, g->a);
}

static void test_queue(void)
{
    enum { QMAX = 3 };
    int port = 0, lfd = silent_server(&port);
    REQUIRE(lfd >= 0, "silent server");
    struct cg_conf *conf = cg_conf_new();
    char v[16], err[256];
    snprintf(v, sizeof(v), "%d", port);
    cg_conf_set(conf, "redis.port", v, err, sizeof(err));
    snprintf(v, sizeof(v), "%d", QMAX);
    cg_conf_set(conf, "redis.queue_max", v, err, sizeof(err));
    cg_conf_set(conf, "redis.timeout_ms", "30000", err, sizeof(err));
    struct cg_redis *r = cg_redis_new(loop, conf, err, sizeof(err));
    CHECK(r != NULL, "new: %s", err);
    if (!r)
        goto out;
    const char *argv[] = { "PING" };
    const size_t len[] = { 4 };
    const struct cg_redis_cmd cmd = { 1, argv, len };
    struct answers a = { 0 }, bad = { 0 }, late = { 0 };
    struct again g = { r, &late };
    for (int i = 0; i < QMAX; i++)
        CHECK(cg_redis_call(r, &cmd, 1, i ? on_answer : on_answer_again,
                            i ? (void *)&a : (void *)&g) == 0,
              "call %d queued", i);
    CHECK(cg_redis_call(r, &cmd, 1, on_answer, &a) == CG_EBUSY,
          "past redis.queue_max: CG_EBUSY");
    CHECK(cg_redis_call(r, &cmd, 0, on_answer, &bad) == CG_EINVAL,
          "no command: CG_EINVAL");
    const struct cg_redis_cmd empty = { 0, argv, len };
    CHECK(cg_redis_call(r, &empty, 1, on_answer, &bad) == CG_EINVAL,
          "no argument: CG_EINVAL");
    CHECK(a.calls == 0 && bad.calls == 0, "no answer inside a call");
    struct cg_redis_stats st;
    cg_redis_stats(r, &st);
    CHECK(st.queue_depth == QMAX && st.dropped == 0 && !st.connected,
          "queued %zu, dropped %llu", st.queue_depth,
          (unsigned long long)st.dropped);
    for (int i = 0; i < 5 && (a.calls < 1 || bad.calls < 2); i++)
        cg_loop_run_once(loop, 10);
    CHECK(a.calls == 1 && a.err[0] == CG_EBUSY, "the refused one answered");
    CHECK(bad.calls == 2 && bad.err[0] == CG_EINVAL && bad.err[1] == CG_EINVAL,
          "bad requests answered CG_EINVAL");
    cg_redis_stats(r, &st);
    CHECK(st.dropped == 1 && st.queue_depth == QMAX,
          "still queued behind the handshake: %zu", st.queue_depth);
    /* Free answers the queued ones, and what their callbacks ask. */
    cg_redis_free(r);
    r = NULL;
    CHECK(a.calls == 1 + QMAX - 1 && late.calls == 2, "free answered %d + %d",
          a.calls, late.calls);
    CHECK(late.err[0] == CG_ECANCELLED && late.err[1] == CG_ECANCELLED,
          "with CG_ECANCELLED");
out:
    cg_redis_free(r);
    cg_conf_free(conf);
    close(lfd);
}

/* Nothing listens: the first attempt fails, then requests fail at once. */
static void test_unreachable(void)
{
    int port = 0, lfd = silent_server(&port);
    REQUIRE(lfd >= 0, "port");
    close(lfd); /* now nothing listens there */
    struct cg_conf *conf = cg_conf_new();
    char v[16], err[256];
    snprintf(v, sizeof(v), "%d", port);
    cg_conf_set(conf, "redis.port", v, err, sizeof(err));
    struct cg_redis *r = cg_redis_open(conf, err, sizeof(err));
    CHECK(r == NULL && strstr(err, "redis 127.0.0.1:") &&
              strstr(err, "connect"),
          "open fails and says where: %s", err);
    cg_redis_free(r);
    cg_conf_free(conf);
}

int main(void)
{
    char err[256];
    cg_log_setup(CG_LOG_OFF, CG_LOG_TEXT, "test_redis");
    loop = cg_loop_new(err, sizeof(err));
    if (loop) {
        test_settings();
        test_queue();
        test_unreachable();
    }
    cg_loop_free(loop);
    return check_done("test_redis");
}
