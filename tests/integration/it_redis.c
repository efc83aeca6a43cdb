/*
 * it_redis — the Redis client (common/redis.h) against real redis-servers:
 * TLS only with a CA made for the run, requirepass and an ACL user; one
 * that asks for client certificates; and a plain one.
 *
 * What must be refused is refused with a clear error and no fallback: a
 * certificate from another CA, a certificate for another host name, a
 * plaintext server when TLS is asked, a wrong password (never echoed). And
 * what is asked in one loop turn goes out as one pipelined batch.
 */
#include "../check.h"
#include "conf.h"
#include "err.h"
#include "harness.h"
#include "log.h"
#include "loop.h"
#include "redis.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#define PASS      "it-redis-default-pass-41c9"
#define USER      "it_redis"
#define USER_PASS "it-redis-acl-pass-8e02"

static struct cg_harness_redis *tls_srv, *cert_srv, *plain_srv;
static struct cg_loop *loop;

/* A configuration reaching srv as its ACL user, with the given overrides
 * ("key", "value" pairs, NULL-terminated). */
static struct cg_conf *conf_for(const struct cg_harness_redis *srv,
                                const char *const *kv)
{
    struct cg_conf *conf = cg_conf_new();
    char err[256];
    CHECK(cg_harness_redis_conf(srv, conf, err, sizeof(err)) == 0, "conf: %s",
          err);
    cg_conf_set(conf, "redis.timeout_ms", "3000", err, sizeof(err));
    for (; kv && kv[0]; kv += 2)
        CHECK(cg_conf_set(conf, kv[0], kv[1], err, sizeof(err)) == 0, "%s: %s",
              kv[0], err);
    return conf;
}

/* Opens (synchronous mode); NULL with the error in err. */
static struct cg_redis *open_with(const struct cg_harness_redis *srv,
                                  const char *const *kv, char *err,
                                  size_t errsz)
{
    struct cg_conf *conf = conf_for(srv, kv);
    struct cg_redis *r = cg_redis_open(conf, err, errsz);
    cg_conf_free(conf);
    return r;
}

/* One command's reply as a string ("" when not a string or status). */
static void run1(struct cg_redis *r, const char *a0, const char *a1, char *out,
                 size_t outsz)
{
    const char *argv[] = { a0, a1 };
    size_t len[] = { strlen(a0), a1 ? strlen(a1) : 0 };
    const struct cg_redis_cmd cmd = { a1 ? 2 : 1, argv, len };
    struct redisReply *rep = NULL;
    char err[256];
    out[0] = '\0';
    CHECK(cg_redis_run(r, &cmd, 1, &rep, a0, err, sizeof(err)) == 0, "%s: %s",
          a0, err);
    if (rep &&
        (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS))
        snprintf(out, outsz, "%s", rep->str);
    cg_redis_reply_free(rep);
}

static void test_tls_user(void)
{
    char err[512], who[64];
    struct cg_redis *r = open_with(tls_srv, NULL, err, sizeof(err));
    REQUIRE(r != NULL, "TLS with the ACL user: %s", err);
    CHECK(strstr(cg_redis_peer(r), "tls") != NULL, "peer %s", cg_redis_peer(r));
    run1(r, "ACL", "WHOAMI", who, sizeof(who));
    CHECK(strcmp(who, USER) == 0, "connected as '%s'", who);
    cg_redis_free(r);

    /* By name, as the certificate says (DNS:localhost). */
    r = open_with(
        tls_srv,
        (const char *const[]){ "redis.tls_server_name", "localhost", NULL },
        err, sizeof(err));
    CHECK(r != NULL, "server name localhost: %s", err);
    cg_redis_free(r);

    /* A host name, resolved off the loop; the certificate checked against
     * it. */
    r = open_with(tls_srv,
                  (const char *const[]){ "redis.host", "localhost", NULL }, err,
                  sizeof(err));
    CHECK(r != NULL, "host localhost: %s", err);
    cg_redis_free(r);
    r = open_with(
        plain_srv,
        (const char *const[]){ "redis.host", "no-such-host.invalid", NULL },
        err, sizeof(err));
    CHECK(r == NULL && strstr(err, "resol"), "unknown host: %s", err);
    cg_redis_free(r);
}

static void test_refusals(void)
{
    char err[512];
    struct cg_redis *r;

    r = open_with(tls_srv,
                  (const char *const[]){ "redis.tls_ca_file",
                                         cg_harness_redis_other_ca(tls_srv),
                                         NULL },
                  err, sizeof(err));
    CHECK(r == NULL && strstr(err, "TLS certificate refused") &&
              strstr(err, "redis.tls_ca_file"),
          "another CA is refused: %s", err);
    cg_redis_free(r);

    r = open_with(tls_srv,
                  (const char *const[]){ "redis.tls_server_name",
                                         "cache.example.net", NULL },
                  err, sizeof(err));
    CHECK(r == NULL && strstr(err, "TLS certificate refused") &&
              strstr(err, "cache.example.net"),
          "another host name is refused: %s", err);
    cg_redis_free(r);

    /* TLS asked of a plaintext server: no fallback. */
    r = open_with(plain_srv, (const char *const[]){ "redis.tls", "true", NULL },
                  err, sizeof(err));
    CHECK(r == NULL && strstr(err, "speak TLS"),
          "a plaintext server is refused: %s", err);
    cg_redis_free(r);

    /* Plaintext to the TLS-only port fails too. */
    r = open_with(tls_srv, (const char *const[]){ "redis.tls", "false", NULL },
                  err, sizeof(err));
    CHECK(r == NULL && strstr(err, "redis.tls"),
          "plaintext to a TLS port fails: %s", err);
    cg_redis_free(r);

    r = open_with(
        tls_srv,
        (const char *const[]){ "redis.password", "not-the-password-3b7", NULL },
        err, sizeof(err));
    CHECK(r == NULL && strstr(err, "AUTH") &&
              !strstr(err, "not-the-password-3b7"),
          "a wrong password is named, not echoed: %s", err);
    cg_redis_free(r);

    /* A CA file that is not there is a configuration error at once. */
    struct cg_conf *conf =
        conf_for(tls_srv, (const char *const[]){ "redis.tls_ca_file",
                                                 "/nonexistent/ca.pem", NULL });
    r = cg_redis_new(loop, conf, err, sizeof(err));
    CHECK(r == NULL && strstr(err, "redis.tls_ca_file"), "missing CA: %s", err);
    cg_redis_free(r);
    cg_conf_free(conf);
}

static void test_client_cert(void)
{
    char err[512], pong[16];
    struct cg_redis *r = open_with(cert_srv, NULL, err, sizeof(err));
    CHECK(r != NULL, "with a client certificate: %s", err);
    if (r) {
        run1(r, "PING", NULL, pong, sizeof(pong));
        CHECK(strcmp(pong, "PONG") == 0, "PING: %s", pong);
    }
    cg_redis_free(r);
    r = open_with(cert_srv,
                  (const char *const[]){ "redis.tls_cert_file", "",
                                         "redis.tls_key_file", "", NULL },
                  err, sizeof(err));
    CHECK(r == NULL, "without one the server refuses: %s", err);
    cg_redis_free(r);
    /* A key that is not the certificate's is refused before connecting. */
    char other[600];
    snprintf(other, sizeof(other), "%s/server.key",
             cg_harness_redis_dir(cert_srv));
    r = open_with(cert_srv,
                  (const char *const[]){ "redis.tls_key_file", other, NULL },
                  err, sizeof(err));
    CHECK(r == NULL && strstr(err, "redis.tls_key_file"), "mismatched key: %s",
          err);
    cg_redis_free(r);
}

/* ---- on the loop ---- */

struct answer {
    int calls;
    int err;
    int ok;
};

static void on_answer(int err, struct redisReply *const *reply, int n,
                      void *arg)
{
    struct answer *a = arg;
    a->calls++;
    if (err)
        a->err = err;
    else if (n == 1 && reply[0]->type == REDIS_REPLY_STATUS)
        a->ok++;
}

static void turn_until_calls(struct answer *a, int want)
{
    int64_t deadline = cg_loop_now_ms() + 15000;
    while (a->calls < want && cg_loop_now_ms() < deadline)
        cg_loop_run_once(loop, 20);
}

static bool turn_until_connected(struct cg_redis *r)
{
    struct cg_redis_stats st;
    int64_t deadline = cg_loop_now_ms() + 15000;
    for (;;) {
        cg_redis_stats(r, &st);
        if (st.connected || cg_loop_now_ms() >= deadline)
            return st.connected;
        cg_loop_run_once(loop, 20);
    }
}

static void test_async(void)
{
    enum { N = 200 };
    char err[512];
    struct cg_conf *conf = conf_for(tls_srv, NULL);
    struct cg_redis *r = cg_redis_new(loop, conf, err, sizeof(err));
    CHECK(r != NULL, "new: %s", err);
    if (!r)
        goto out;
    CHECK(turn_until_connected(r), "connects over TLS");
    struct answer a = { 0 };
    const char *argv[] = { "PING" };
    const size_t len[] = { 4 };
    const struct cg_redis_cmd cmd = { 1, argv, len };
    for (int i = 0; i < N; i++)
        CHECK(cg_redis_call(r, &cmd, 1, on_answer, &a) == 0, "queued");
    CHECK(a.calls == 0, "no answer inside a call");
    /* The next turn sends everything asked in this one: one batch. */
    cg_loop_run_once(loop, 0);
    struct cg_redis_stats st;
    cg_redis_stats(r, &st);
    CHECK(st.in_flight == N && st.queue_depth == 0,
          "one batch of %d: in flight %zu, queued %zu", N, st.in_flight,
          st.queue_depth);
    turn_until_calls(&a, N);
    CHECK(a.calls == N && a.ok == N && a.err == 0, "%d answers, %d PONG",
          a.calls, a.ok);
    cg_redis_free(r);
    cg_conf_free(conf);

    /* Another CA: every call answered CG_EREDIS, the refusal reported. */
    conf = conf_for(tls_srv, (const char *const[]){
                                 "redis.tls_ca_file",
                                 cg_harness_redis_other_ca(tls_srv), NULL });
    r = cg_redis_new(loop, conf, err, sizeof(err));
    CHECK(r != NULL, "new: %s", err);
    if (!r)
        goto out;
    struct answer b = { 0 };
    cg_redis_call(r, &cmd, 1, on_answer, &b);
    turn_until_calls(&b, 1);
    cg_redis_stats(r, &st);
    CHECK(b.calls == 1 && b.err == CG_EREDIS, "refused: err %d", b.err);
    CHECK(st.tls_refused && !st.connected, "tls_refused %d connected %d",
          st.tls_refused, st.connected);
out:
    cg_redis_free(r);
    cg_conf_free(conf);
}

int main(void)
{
    char err[512];
    cg_log_setup(CG_LOG_OFF, CG_LOG_TEXT, "it_redis");
    loop = cg_loop_new(err, sizeof(err));
    const struct cg_harness_redis_opts tls = {
        .tls = true, .password = PASS, .user = USER, .user_password = USER_PASS
    };
    const struct cg_harness_redis_opts cert = { .client_cert = true };
    tls_srv = cg_harness_redis_start_opts(&tls, err, sizeof(err));
    CHECK(tls_srv != NULL, "TLS redis: %s", err);
    cert_srv = cg_harness_redis_start_opts(&cert, err, sizeof(err));
    CHECK(cert_srv != NULL, "client-certificate redis: %s", err);
    plain_srv = cg_harness_redis_start(err, sizeof(err));
    CHECK(plain_srv != NULL, "plain redis: %s", err);
    if (loop && tls_srv && cert_srv && plain_srv) {
        test_tls_user();
        test_refusals();
        test_client_cert();
        test_async();
    }
    cg_harness_redis_free(tls_srv);
    cg_harness_redis_free(cert_srv);
    cg_harness_redis_free(plain_srv);
    cg_loop_free(loop);
    return check_done("it_redis");
}
