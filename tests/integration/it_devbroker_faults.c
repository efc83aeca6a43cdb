/*
 * The devbroker's fault controls do what tests of the fleet need: a broker
 * taken down holds a producer's delivery until it comes back, injected
 * request errors are retried by an idempotent producer without duplicates,
 * a timed-out Produce without loss or a fatal error, and added latency shows
 * in delivery times.
 */
#include "check.h"
#include "harness.h"

#include "mem.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC "contactguard.results"

struct dr_state {
    int ok;
    int failed;
    rd_kafka_resp_err_t last_err;
    char idemp_state[32]; /* from the statistics: eos.idemp_state */
};

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    struct dr_state *st = opaque;
    json_t *root = json_loadb(json, len, 0, NULL);
    const char *state = NULL;

    if (json_unpack(root, "{s:{s:s}}", "eos", "idemp_state", &state) == 0)
        cg_strlcpy(st->idemp_state, state, sizeof(st->idemp_state));
    json_decref(root);
    return 0;
}

/* Waits for a statistics report that says the idempotent producer has
 * its producer id. */
static bool stats_idemp_assigned(rd_kafka_t *rk)
{
    struct dr_state *st = rd_kafka_opaque(rk);
    int64_t deadline = cg_harness_now_ms() + 5000;

    st->idemp_state[0] = '\0';
    while (!st->idemp_state[0] && cg_harness_now_ms() < deadline)
        rd_kafka_poll(rk, 50);
    return strcmp(st->idemp_state, "Assigned") == 0;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct dr_state *st = opaque;

    if (m->err) {
        st->failed++;
        st->last_err = m->err;
    } else {
        st->ok++;
    }
}

static rd_kafka_t *producer_new(const char *bs, bool idempotent,
                                struct dr_state *st)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[] = { "bootstrap.servers",
                         bs,
                         "enable.idempotence",
                         idempotent ? "true" : "false",
                         "linger.ms",
                         "0",
                         "message.timeout.ms",
                         "60000",
                         "request.timeout.ms",
                         "1000",
                         "retry.backoff.ms",
                         "50",
                         "reconnect.backoff.ms",
                         "50",
                         "reconnect.backoff.max.ms",
                         "500",
                         "socket.timeout.ms",
                         "1000",
                         "statistics.interval.ms",
                         "200",
                         "log_level",
                         "2",
                         NULL };
    char errstr[256];
    rd_kafka_t *rk;

    for (size_t i = 0; kv[i]; i += 2)
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            fprintf(stderr, "%s: %s\n", kv[i], errstr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_conf_set_opaque(conf, st);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

static int produce(rd_kafka_t *rk, const char *key)
{
    return rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(0),
        RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)key, strlen(key)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
}

/* Serves delivery reports until `want` have arrived or timeout_ms passed;
 * returns the milliseconds it took. */
static int64_t wait_reports(rd_kafka_t *rk, const struct dr_state *st, int want,
                            int timeout_ms)
{
    int64_t t0 = cg_harness_now_ms(), deadline = t0 + timeout_ms;

    while (st->ok + st->failed < want && cg_harness_now_ms() < deadline)
        rd_kafka_poll(rk, 50);
    return cg_harness_now_ms() - t0;
}

/* How many messages with key `prefix*` the topic holds, by key. */
static void count_keys(const char *bs, size_t total, const char *prefix, int n,
                       int *counts)
{
    struct cg_harness_msgs got = { 0 };
    char errbuf[256];
    size_t plen = strlen(prefix);

    memset(counts, 0, (size_t)n * sizeof(*counts));
    if (cg_harness_kafka_consume(bs, TOPIC, total, 30000, &got, errbuf,
                                 sizeof(errbuf)) < 0)
        fprintf(stderr, "consume: %s\n", errbuf);
    for (size_t i = 0; i < got.n; i++) {
        const char *k = got.v[i].key;
        if (k && strncmp(k, prefix, plen) == 0) {
            long x = strtol(k + plen, NULL, 10);
            if (x >= 0 && x < n)
                counts[x]++;
        }
    }
    cg_harness_msgs_free(&got);
}

static void test_down_up(struct cg_harness_devbroker *db, const char *bs)
{
    struct dr_state st = { 0 };
    rd_kafka_t *rk = producer_new(bs, true, &st);
    int64_t ms;
    int count[1];

    REQUIRE(rk != NULL, "producer created");
    CHECK(produce(rk, "warm-0") == 0, "produce warm-up");
    wait_reports(rk, &st, 1, 20000);
    CHECK(st.ok == 1, "warm-up delivered (ok %d failed %d)", st.ok, st.failed);

    CHECK(cg_harness_devbroker_cmd(db, "down 1", NULL, 0) == 0, "down 1");
    CHECK(produce(rk, "outage-0") == 0, "produce during the outage");
    /* The absence of a report can only be seen by waiting for one: two
     * seconds is many times a delivery on loopback. */
    wait_reports(rk, &st, 2, 2000);
    CHECK(st.ok == 1 && st.failed == 0,
          "no delivery while the broker is down (ok %d failed %d)", st.ok,
          st.failed);

    CHECK(cg_harness_devbroker_cmd(db, "up 1", NULL, 0) == 0, "up 1");
    ms = wait_reports(rk, &st, 2, 30000);
    CHECK(st.ok == 2 && st.failed == 0,
          "delivered after the broker came back (ok %d failed %d: %s)", st.ok,
          st.failed, rd_kafka_err2str(st.last_err));
    printf("down_up_redelivery_ms=%lld\n", (long long)ms);
    rd_kafka_destroy(rk);

    count_keys(bs, 0, "outage-", 1, count);
    CHECK(count[0] == 1, "the outage message is on the topic once (%d)",
          count[0]);
}

static void test_injected_errors(struct cg_harness_devbroker *db,
                                 const char *bs)
{
    enum { N = 20 };
    struct dr_state st = { 0 };
    rd_kafka_t *rk = producer_new(bs, true, &st);
    int counts[N], once = 0;
    char key[32];

    REQUIRE(rk != NULL, "producer created");
    CHECK(cg_harness_devbroker_cmd(
              db, "error Produce NOT_LEADER_FOR_PARTITION 3", NULL, 0) == 0,
          "inject NOT_LEADER_FOR_PARTITION");
    CHECK(cg_harness_devbroker_cmd(db, "error Produce _TRANSPORT 2", NULL, 0) ==
              0,
          "inject disconnects");
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "inj-%d", i);
        produce(rk, key);
        rd_kafka_poll(rk, 0);
    }
    wait_reports(rk, &st, N, 30000);
    CHECK(st.ok == N && st.failed == 0,
          "every message delivered through the errors (ok %d failed %d: %s)",
          st.ok, st.failed, rd_kafka_err2str(st.last_err));
    rd_kafka_destroy(rk);
    count_keys(bs, 0, "inj-", N, counts);
    for (int i = 0; i < N; i++)
        once += counts[i] == 1;
    CHECK(once == N, "%d of %d messages on the topic exactly once", once, N);
}

/*
 * A Produce whose response is late times out on the client
 * (socket.timeout.ms), which drops the connection and retries with the
 * message "possibly persisted". The idempotent producer must come through
 * that on the mock without a fatal error and without losing a message.
 *
 * It is NOT exactly once here: the mock checks producer sequence numbers
 * only for transactional producers, so it writes the retried batch again
 * where a real broker would drop it. The copies are counted and printed,
 * not asserted; tests of the fleet that count findings exactly must not
 * combine that count with request timeouts.
 */
static void test_idempotent_timeout(struct cg_harness_devbroker *db,
                                    const char *bs)
{
    enum { N = 5 };
    struct dr_state st = { 0 };
    rd_kafka_t *rk = producer_new(bs, true, &st);
    int counts[N], present = 0, copies = 0;
    char key[32], errstr[256];

    REQUIRE(rk != NULL, "producer created");
    /* Connect, get a producer id and learn the leader first, so that the
     * delay hits a Produce. */
    produce(rk, "connect");
    wait_reports(rk, &st, 1, 20000);
    CHECK(cg_harness_devbroker_cmd(db, "broker-error 1 Produce NO_ERROR 2500 1",
                                   NULL, 0) == 0,
          "delay the next Produce response");
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "idem-%d", i);
        produce(rk, key);
    }
    wait_reports(rk, &st, 1 + N, 30000);
    CHECK(st.ok == 1 + N && st.failed == 0,
          "delivered through a request timeout (ok %d failed %d: %s)", st.ok,
          st.failed, rd_kafka_err2str(st.last_err));
    CHECK(rd_kafka_fatal_error(rk, errstr, sizeof(errstr)) == 0,
          "no fatal idempotence error: %s", errstr);
    CHECK(stats_idemp_assigned(rk), "the producer holds a producer id");
    rd_kafka_destroy(rk);
    count_keys(bs, 0, "idem-", N, counts);
    for (int i = 0; i < N; i++) {
        present += counts[i] >= 1;
        copies += counts[i] > 1 ? counts[i] - 1 : 0;
    }
    CHECK(present == N, "%d of %d on the topic after the timeout", present, N);
    printf("idempotent_retry_after_timeout messages=%d copies=%d\n", N, copies);
}

static void test_latency(struct cg_harness_devbroker *db, const char *bs)
{
    struct dr_state st = { 0 };
    rd_kafka_t *rk = producer_new(bs, true, &st);
    int64_t fast, slow;

    REQUIRE(rk != NULL, "producer created");
    produce(rk, "rtt-warm");
    wait_reports(rk, &st, 1, 20000);
    produce(rk, "rtt-fast");
    fast = wait_reports(rk, &st, 2, 20000);
    CHECK(cg_harness_devbroker_cmd(db, "rtt 1 400", NULL, 0) == 0, "rtt 400");
    produce(rk, "rtt-slow");
    slow = wait_reports(rk, &st, 3, 20000);
    CHECK(cg_harness_devbroker_cmd(db, "rtt 1 0", NULL, 0) == 0, "rtt 0");
    CHECK(st.ok == 3, "latency messages delivered (%d)", st.ok);
    CHECK(slow >= 400 && slow > fast,
          "delivery takes the added 400 ms (%lld ms, %lld ms without)",
          (long long)slow, (long long)fast);
    rd_kafka_destroy(rk);
}

#define GROUP_KEYS 30

struct group_state {
    int assigned;
    int lost; /* partitions lost (session expired), not revoked */
    int got[GROUP_KEYS];
};

static void group_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts,
                            void *opaque)
{
    struct group_state *gs = opaque;
    rd_kafka_error_t *error;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        error = rd_kafka_incremental_assign(rk, parts);
        gs->assigned += parts->cnt;
    } else {
        if (rd_kafka_assignment_lost(rk))
            gs->lost += parts->cnt;
        else
            rd_kafka_commit(rk, NULL, 0);
        error = rd_kafka_incremental_unassign(rk, parts);
        gs->assigned -= parts->cnt;
    }
    if (error)
        rd_kafka_error_destroy(error);
}

static void group_poll(rd_kafka_t *rk, struct group_state *gs, int ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, ms);
    long n;

    if (!m)
        return;
    if (!m->err && m->key_len > 4 && memcmp(m->key, "grp-", 4) == 0) {
        char key[16] = "";
        memcpy(key, m->key, m->key_len < 15 ? m->key_len : 15);
        n = strtol(key + 4, NULL, 10);
        if (n >= 0 && n < GROUP_KEYS)
            gs->got[n]++;
    }
    if (!m->err) {
        rd_kafka_topic_partition_list_t *o =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(o, rd_kafka_topic_name(m->rkt),
                                          m->partition)
            ->offset = m->offset + 1;
        rd_kafka_offsets_store(rk, o);
        rd_kafka_topic_partition_list_destroy(o);
    }
    rd_kafka_message_destroy(m);
}

static int group_count(const struct group_state *gs, int from, int to,
                       int *dups)
{
    int n = 0;

    for (int i = from; i < to; i++) {
        n += gs->got[i] > 0;
        if (dups && gs->got[i] > 1)
            (*dups)++;
    }
    return n;
}

static int produce_keys(const char *bs, int from, int to)
{
    struct cg_harness_msg msgs[GROUP_KEYS];
    char keys[GROUP_KEYS][16];
    char errbuf[256];
    int rc;

    for (int i = from; i < to; i++) {
        struct cg_harness_msg *m = &msgs[i - from];
        memset(m, 0, sizeof(*m));
        snprintf(keys[i - from], sizeof(keys[0]), "grp-%d", i);
        m->key = m->value = keys[i - from];
        m->key_len = m->value_len = strlen(keys[i - from]);
        m->partition = -1;
    }
    rc = cg_harness_kafka_produce(bs, TOPIC, msgs, (size_t)(to - from), 30000,
                                  errbuf, sizeof(errbuf));
    if (rc)
        fprintf(stderr, "produce: %s\n", errbuf);
    return rc;
}

/* Takes the only broker down for outage_ms while the member polls, brings
 * it back, and expects the member to read keys from..to produced after. */
static void outage(struct cg_harness_devbroker *db, const char *bs,
                   rd_kafka_t *rk, struct group_state *gs, int outage_ms,
                   int from, int to)
{
    int64_t t0, deadline, ms;

    CHECK(cg_harness_devbroker_cmd(db, "down 1", NULL, 0) == 0, "down 1");
    /* The outage itself has to last: the member keeps polling through it. */
    t0 = cg_harness_now_ms();
    while (cg_harness_now_ms() - t0 < outage_ms)
        group_poll(rk, gs, 100);
    CHECK(cg_harness_devbroker_cmd(db, "up 1", NULL, 0) == 0, "up 1");

    t0 = cg_harness_now_ms();
    CHECK(produce_keys(bs, from, to) == 0, "produce after the outage");
    deadline = cg_harness_now_ms() + 60000;
    while (group_count(gs, from, to, NULL) < to - from &&
           cg_harness_now_ms() < deadline)
        group_poll(rk, gs, 100);
    ms = cg_harness_now_ms() - t0;
    CHECK(group_count(gs, from, to, NULL) == to - from,
          "[outage %d ms] member read %d of %d produced after it", outage_ms,
          group_count(gs, from, to, NULL), to - from);
    printf("group_outage_ms=%d resumed_after_ms=%lld assigned=%d lost=%d\n",
           outage_ms, (long long)ms, gs->assigned, gs->lost);
    rd_kafka_commit(rk, NULL, 0);
}

/*
 * The worker's situation when "a broker is taken down and brought back":
 * a cooperative-sticky member with committed offsets loses its only broker
 * (the group coordinator too), then gets the messages produced after the
 * outage and none of those before it again.
 */
static void test_group_survives_down(struct cg_harness_devbroker *db,
                                     const char *bs)
{
    struct group_state gs = { 0 };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[] = { "bootstrap.servers",
                         bs,
                         "group.id",
                         "cg-it-down",
                         "partition.assignment.strategy",
                         "cooperative-sticky",
                         "enable.auto.offset.store",
                         "false",
                         "auto.offset.reset",
                         "earliest",
                         "session.timeout.ms",
                         "6000",
                         "heartbeat.interval.ms",
                         "500",
                         "reconnect.backoff.max.ms",
                         "500",
                         "log_level",
                         "2",
                         NULL };
    rd_kafka_topic_partition_list_t *topics;
    char errstr[256];
    rd_kafka_t *rk;
    int64_t deadline;
    int dups = 0;

    for (size_t i = 0; kv[i]; i += 2)
        rd_kafka_conf_set(conf, kv[i], kv[i + 1], errstr, sizeof(errstr));
    rd_kafka_conf_set_rebalance_cb(conf, group_rebalance);
    rd_kafka_conf_set_opaque(conf, &gs);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    CHECK(rk != NULL, "group consumer: %s", errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return;
    }
    rd_kafka_poll_set_consumer(rk);
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, TOPIC, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);

    CHECK(produce_keys(bs, 0, 10) == 0, "produce before the outage");
    deadline = cg_harness_now_ms() + 60000;
    while (group_count(&gs, 0, 10, NULL) < 10 && cg_harness_now_ms() < deadline)
        group_poll(rk, &gs, 100);
    CHECK(group_count(&gs, 0, 10, NULL) == 10,
          "group member read the first 10 (%d)", group_count(&gs, 0, 10, NULL));
    CHECK(rd_kafka_commit(rk, NULL, 0) == 0, "commit before the outage");

    /* Shorter than the session timeout, then longer: the member either
     * stays in the group or loses its partitions and rejoins. */
    outage(db, bs, rk, &gs, 3000, 10, 20);
    outage(db, bs, rk, &gs, 9000, 20, 30);
    group_count(&gs, 0, GROUP_KEYS, &dups);
    CHECK(dups == 0, "nothing read twice across the outages (%d)", dups);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* A topic whose metadata carries an error takes no messages (librdkafka
 * 2.0.2 holds them until message.timeout.ms rather than failing them at
 * once), and works again once the error is cleared. */
static void test_topic_error(struct cg_harness_devbroker *db, const char *bs)
{
    struct cg_harness_msg m = {
        .key = "k", .key_len = 1, .value = "v", .value_len = 1, .partition = -1
    };
    char errbuf[256];
    int rc;

    CHECK(cg_harness_devbroker_cmd(
              db, "topic-error contactguard.events TOPIC_AUTHORIZATION_FAILED",
              NULL, 0) == 0,
          "topic-error set");
    rc = cg_harness_kafka_produce(bs, "contactguard.events", &m, 1, 3000,
                                  errbuf, sizeof(errbuf));
    CHECK(rc < 0, "produce to the failing topic fails (%d)", rc);
    printf("topic_error_produce=\"%s\"\n", rc < 0 ? errbuf : "ok");
    CHECK(cg_harness_devbroker_cmd(db,
                                   "topic-error contactguard.events "
                                   "NO_ERROR",
                                   NULL, 0) == 0,
          "topic-error cleared");
    rc = cg_harness_kafka_produce(bs, "contactguard.events", &m, 1, 10000,
                                  errbuf, sizeof(errbuf));
    CHECK(rc == 0, "produce works again: %s", rc ? errbuf : "");
}

int main(void)
{
    char errbuf[256];
    struct cg_harness_devbroker *db =
        cg_harness_devbroker_start(1, 1, NULL, errbuf, sizeof(errbuf));
    const char *bs;

    CHECK(db != NULL, "devbroker starts: %s", errbuf);
    if (!db)
        return check_done();
    bs = cg_harness_devbroker_bootstrap(db);

    test_down_up(db, bs);
    test_injected_errors(db, bs);
    test_idempotent_timeout(db, bs);
    test_latency(db, bs);
    test_topic_error(db, bs);
    test_group_survives_down(db, bs);

    cg_harness_devbroker_free(db);
    return check_done();
}
