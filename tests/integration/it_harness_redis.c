/*
 * The harness's redis-server: it answers PING once started, holds data,
 * goes away on stop (the port refuses connections), and comes back empty
 * on the same port, as the "Redis stopped and restarted mid-run" tests
 * need.
 */
#include "check.h"
#include "harness.h"

#include <signal.h>
#include <string.h>

static bool redis_ok(redisContext *c, const char *cmd, const char *want)
{
    redisReply *r = redisCommand(c, cmd);
    bool ok =
        r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) &&
        strcmp(r->str, want) == 0;

    if (r)
        freeReplyObject(r);
    return ok;
}

int main(void)
{
    char errbuf[256];
    struct cg_harness_redis *r = cg_harness_redis_start(errbuf, sizeof(errbuf));
    redisContext *c;
    redisReply *reply;
    int port;
    pid_t pid1;

    CHECK(r != NULL, "redis starts: %s", errbuf);
    if (!r)
        return check_done();
    port = cg_harness_redis_port(r);
    pid1 = cg_harness_proc_pid(cg_harness_redis_proc(r));
    CHECK(port > 0 && cg_harness_port_open(port), "redis listens on %d", port);

    c = cg_harness_redis_connect(r, errbuf, sizeof(errbuf));
    CHECK(c != NULL, "connect: %s", errbuf);
    if (c) {
        CHECK(redis_ok(c, "PING", "PONG"), "PING answers PONG");
        CHECK(redis_ok(c, "SET cg:test 42", "OK"), "SET");
        CHECK(redis_ok(c, "GET cg:test", "42"), "GET returns what was set");
        redisFree(c);
    }

    CHECK(cg_harness_redis_stop(r, errbuf, sizeof(errbuf)) == 0, "stop: %s",
          errbuf);
    CHECK(cg_harness_redis_proc(r) == NULL, "no process after stop");
    CHECK(!cg_harness_port_open(port), "port %d refuses after stop", port);
    CHECK(kill(pid1, 0) < 0, "pid %d is gone after stop", (int)pid1);
    c = cg_harness_redis_connect(r, errbuf, sizeof(errbuf));
    CHECK(c == NULL, "connecting to a stopped redis fails");
    if (c)
        redisFree(c);

    CHECK(cg_harness_redis_restart(r, errbuf, sizeof(errbuf)) == 0,
          "restart: %s", errbuf);
    CHECK(cg_harness_redis_port(r) == port, "same port after restart (%d)",
          cg_harness_redis_port(r));
    CHECK(cg_harness_redis_proc(r) &&
              cg_harness_proc_pid(cg_harness_redis_proc(r)) != pid1,
          "a new process after restart");
    c = cg_harness_redis_connect(r, errbuf, sizeof(errbuf));
    CHECK(c != NULL, "connect after restart: %s", errbuf);
    if (c) {
        CHECK(redis_ok(c, "PING", "PONG"), "PING after restart");
        reply = redisCommand(c, "GET cg:test");
        CHECK(reply && reply->type == REDIS_REPLY_NIL,
              "restarted redis is empty (no persistence)");
        if (reply)
            freeReplyObject(reply);
        redisFree(c);
    }

    /* Restart while running also works: it stops first. */
    CHECK(cg_harness_redis_restart(r, errbuf, sizeof(errbuf)) == 0,
          "restart while running: %s", errbuf);
    CHECK(cg_harness_port_open(port), "listening again on %d", port);
    cg_harness_redis_free(r);
    CHECK(!cg_harness_port_open(port), "port %d closed after free", port);
    return check_done();
}
