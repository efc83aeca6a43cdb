/*
 * kafka: the bounded shutdown helpers with no broker at all (a port
 * nothing listens on), so that every wait runs into its bound; and the
 * one-line list of what was not committed. The bounds are asserted with
 * their own slack only (a loaded machine), never as performance figures.
 */
#include "../check.h"
#include "kafka.h"
#include "loop.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BOUND_MS 500
#define SLACK_MS 2000

/* A loopback port that refuses connections: bound, never listened on. */
static int dead_port(int *fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    if (*fd < 0 || bind(*fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(*fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    return ntohs(a.sin_port);
}

static rd_kafka_t *consumer(int port)
{
    char bs[64], err[256];
    snprintf(bs, sizeof(bs), "127.0.0.1:%d", port);
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    if (rd_kafka_conf_set(kc, "bootstrap.servers", bs, err, sizeof(err)) ||
        rd_kafka_conf_set(kc, "group.id", "test-kafka", err, sizeof(err)) ||
        rd_kafka_conf_set(kc, "log_level", "0", err, sizeof(err))) {
        rd_kafka_conf_destroy(kc);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
    if (!rk)
        return NULL;
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *s = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(s, "jobs", RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, s);
    rd_kafka_topic_partition_list_destroy(s);
    return rk;
}

static void test_uncommitted(void)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    char buf[64];
    CHECK(cg_kafka_uncommitted(l, buf, sizeof(buf)) == 0 && !buf[0],
          "empty list: none");
    CHECK(cg_kafka_uncommitted(NULL, buf, sizeof(buf)) == 0, "NULL: none");
    rd_kafka_topic_partition_list_add(l, "t", 0)->offset = 12;
    rd_kafka_topic_partition_list_add(l, "t", 3)->offset = 7;
    rd_kafka_topic_partition_list_add(l, "t", 5)->offset = 9;
    l->elems[1].err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    l->elems[2].err = RD_KAFKA_RESP_ERR__TRANSPORT;
    CHECK(cg_kafka_uncommitted(l, buf, sizeof(buf)) == 2 &&
              !strcmp(buf, "3:7,5:9"),
          "only the failed ones: %s", buf);
    for (int p = 10; p < 40; p++) {
        rd_kafka_topic_partition_t *t =
            rd_kafka_topic_partition_list_add(l, "t", p);
        t->offset = 1000000 + p;
        t->err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    }
    int n = cg_kafka_uncommitted(l, buf, sizeof(buf));
    size_t len = strlen(buf);
    CHECK(n == 32 && len == sizeof(buf) - 1 && !strcmp(buf + len - 3, "..."),
          "a long list is cut with ...: %d %s", n, buf);
    rd_kafka_topic_partition_list_destroy(l);
}

static void test_bounds(void)
{
    int fd = -1, port = dead_port(&fd);
    CHECK(port > 0, "a dead port");
    rd_kafka_t *rk = port > 0 ? consumer(port) : NULL;
    CHECK(rk != NULL, "a consumer");
    if (!rk)
        goto out;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, "jobs", 0)->offset = 42;

    int64_t t0 = cg_loop_now_ms();
    bool ok = cg_kafka_commit(rk, l, BOUND_MS);
    int64_t ms = cg_loop_now_ms() - t0;
    printf("commit ms=%lld bound_ms=%d\n", (long long)ms, BOUND_MS);
    CHECK(!ok && l->elems[0].err != 0, "no broker: not committed");
    CHECK(ms <= BOUND_MS + SLACK_MS, "commit took %lld ms", (long long)ms);

    t0 = cg_loop_now_ms();
    bool left = cg_kafka_consumer_close(rk, l, BOUND_MS);
    ms = cg_loop_now_ms() - t0;
    printf("close ms=%lld bound_ms=%d\n", (long long)ms, BOUND_MS);
    CHECK(l->elems[0].err != 0, "close: the offset is reported uncommitted");
    CHECK(ms <= BOUND_MS + SLACK_MS, "close took %lld ms (left=%d)",
          (long long)ms, left);
    rd_kafka_topic_partition_list_destroy(l);

    t0 = cg_loop_now_ms();
    cg_kafka_destroy(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE, BOUND_MS);
    ms = cg_loop_now_ms() - t0;
    printf("destroy ms=%lld bound_ms=%d\n", (long long)ms, BOUND_MS);
    CHECK(ms <= BOUND_MS + SLACK_MS, "destroy took %lld ms", (long long)ms);
out:
    if (fd >= 0)
        close(fd);
}

int main(void)
{
    test_uncommitted();
    test_bounds();
    return check_done("kafka");
}
