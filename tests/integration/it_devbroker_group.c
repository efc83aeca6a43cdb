/*
 * A consumer group on the devbroker behaves as the worker needs it to:
 * two members subscribed with the assignment strategy given on the command
 * line share the partitions, offsets are stored by hand and committed, and
 * when one member leaves the other takes over its partitions from the
 * committed offsets, so nothing is read twice. With cooperative-sticky the
 * first member must keep some partitions while the second joins (the
 * rebalance is incremental, not stop-the-world).
 *
 * usage: it_devbroker_group STRATEGY   (cooperative-sticky, range, ...)
 */
#include "check.h"
#include "harness.h"

#include "mem.h"

#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC      "contactguard.jobs"
#define PARTITIONS 6
#define FIRST      300 /* messages while both members are in the group */
#define SECOND     100 /* messages after one left */
#define DEADLINE   60000

struct member {
    const char *name;
    rd_kafka_t *rk;
    bool owned[PARTITIONS];
    int nowned;
    int min_owned_after_full; /* lowest count once it had them all */
    bool had_all;
    int assigns, revokes;
    char protocol[32];
    size_t consumed;
};

static int seen[FIRST + SECOND];

static void set_owned(struct member *m,
                      const rd_kafka_topic_partition_list_t *parts, bool owned)
{
    for (int i = 0; i < parts->cnt; i++) {
        int p = parts->elems[i].partition;
        if (p < 0 || p >= PARTITIONS || m->owned[p] == owned)
            continue;
        m->owned[p] = owned;
        m->nowned += owned ? 1 : -1;
    }
    if (m->nowned == PARTITIONS)
        m->had_all = true;
    if (m->had_all && m->nowned < m->min_owned_after_full)
        m->min_owned_after_full = m->nowned;
}

/* The worker's rebalance discipline: commit what was stored before giving
 * partitions up; incremental calls under the cooperative protocol. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct member *m = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;

    cg_strlcpy(m->protocol, rd_kafka_rebalance_protocol(rk),
               sizeof(m->protocol));
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        m->assigns++;
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        set_owned(m, parts, true);
    } else {
        m->revokes++;
        rd_kafka_commit(rk, NULL, 0);
        if (coop) {
            error = rd_kafka_incremental_unassign(rk, parts);
        } else {
            rd_kafka_assign(rk, NULL);
        }
        set_owned(m, parts, false);
    }
    if (error) {
        fprintf(stderr, "%s: rebalance: %s\n", m->name,
                rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

static rd_kafka_t *member_new(struct member *m, const char *bootstrap,
                              const char *strategy)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[] = { "bootstrap.servers",
                         bootstrap,
                         "group.id",
                         "cg-it-group",
                         "client.id",
                         m->name,
                         "partition.assignment.strategy",
                         strategy,
                         "enable.auto.offset.store",
                         "false",
                         "enable.auto.commit",
                         "false",
                         "auto.offset.reset",
                         "earliest",
                         "session.timeout.ms",
                         "6000",
                         "heartbeat.interval.ms",
                         "500",
                         "log_level",
                         "3",
                         NULL };
    char errstr[512];
    rd_kafka_topic_partition_list_t *topics;
    rd_kafka_t *rk;

    for (size_t i = 0; kv[i]; i += 2) {
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            fprintf(stderr, "%s: %s\n", kv[i], errstr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, m);
    m->min_owned_after_full = PARTITIONS;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "consumer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, TOPIC, RD_KAFKA_PARTITION_UA);
    if (rd_kafka_subscribe(rk, topics)) {
        fprintf(stderr, "subscribe failed\n");
        rd_kafka_destroy(rk);
        rk = NULL;
    }
    rd_kafka_topic_partition_list_destroy(topics);
    m->rk = rk;
    return rk;
}

/* Polls once; a message is processed and its offset stored, as the worker
 * does once a job is finished. */
static void member_poll(struct member *m, int timeout_ms)
{
    rd_kafka_message_t *msg;
    rd_kafka_topic_partition_list_t *offs;
    char key[32] = "";
    long n;

    if (!m->rk)
        return;
    msg = rd_kafka_consumer_poll(m->rk, timeout_ms);
    if (!msg)
        return;
    if (msg->err) {
        rd_kafka_message_destroy(msg);
        return;
    }
    if (msg->key && msg->key_len < sizeof(key)) {
        memcpy(key, msg->key, msg->key_len);
        key[msg->key_len] = '\0';
    }
    n = strncmp(key, "job-", 4) == 0 ? strtol(key + 4, NULL, 10) : -1;
    if (n >= 0 && n < FIRST + SECOND)
        seen[n]++;
    m->consumed++;
    offs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offs, TOPIC, msg->partition)->offset =
        msg->offset + 1;
    rd_kafka_offsets_store(m->rk, offs);
    rd_kafka_topic_partition_list_destroy(offs);
    rd_kafka_message_destroy(msg);
}

static int distinct_seen(int upto)
{
    int n = 0;

    for (int i = 0; i < upto; i++)
        n += seen[i] > 0;
    return n;
}

static int produce_range(const char *bs, int from, int to)
{
    struct cg_harness_msg *msgs = cg_calloc((size_t)(to - from), sizeof(*msgs));
    char errbuf[256];
    int rc;

    for (int i = from; i < to; i++) {
        struct cg_harness_msg *m = &msgs[i - from];
        m->key = cg_asprintf("job-%d", i);
        m->key_len = strlen(m->key);
        m->value = m->key;
        m->value_len = m->key_len;
        m->partition = -1;
    }
    rc = cg_harness_kafka_produce(bs, TOPIC, msgs, (size_t)(to - from), 30000,
                                  errbuf, sizeof(errbuf));
    if (rc)
        fprintf(stderr, "produce: %s\n", errbuf);
    for (int i = 0; i < to - from; i++)
        free(msgs[i].key);
    free(msgs);
    return rc;
}

static int64_t committed_total(rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(PARTITIONS);
    int64_t total = 0;

    for (int i = 0; i < PARTITIONS; i++)
        rd_kafka_topic_partition_list_add(parts, TOPIC, i);
    if (rd_kafka_committed(rk, parts, 10000)) {
        total = -1;
    } else {
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].offset > 0)
                total += parts->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return total;
}

int main(int argc, char **argv)
{
    const char *strategy = argc > 1 ? argv[1] : "cooperative-sticky";
    bool coop = strcmp(strategy, "cooperative-sticky") == 0;
    struct member a = { .name = "member-a" }, b = { .name = "member-b" };
    struct cg_harness_devbroker *db;
    struct cg_harness_msgs all = { 0 };
    char errbuf[256];
    const char *bs;
    int64_t deadline, t0, join_ms, second_ms, leave_ms;
    int dups = 0, kept;

    db =
        cg_harness_devbroker_start(3, PARTITIONS, NULL, errbuf, sizeof(errbuf));
    CHECK(db != NULL, "devbroker starts: %s", errbuf);
    if (!db)
        return check_done("it_devbroker_group");
    bs = cg_harness_devbroker_bootstrap(db);

    t0 = cg_harness_now_ms();
    CHECK(member_new(&a, bs, strategy) != NULL, "member a subscribes");
    deadline = cg_harness_now_ms() + DEADLINE;
    while (a.nowned < PARTITIONS && cg_harness_now_ms() < deadline)
        member_poll(&a, 100);
    CHECK(a.nowned == PARTITIONS, "[%s] a alone owns %d of %d partitions",
          strategy, a.nowned, PARTITIONS);
    CHECK(strcmp(a.protocol, coop ? "COOPERATIVE" : "EAGER") == 0,
          "[%s] rebalance protocol is %s", strategy, a.protocol);

    join_ms = cg_harness_now_ms() - t0;
    t0 = cg_harness_now_ms();
    CHECK(member_new(&b, bs, strategy) != NULL, "member b subscribes");
    deadline = cg_harness_now_ms() + DEADLINE;
    while (
        (a.nowned + b.nowned != PARTITIONS || a.nowned == 0 || b.nowned == 0) &&
        cg_harness_now_ms() < deadline) {
        member_poll(&a, 50);
        member_poll(&b, 50);
    }
    second_ms = cg_harness_now_ms() - t0;
    CHECK(a.nowned > 0 && b.nowned > 0 && a.nowned + b.nowned == PARTITIONS,
          "[%s] a owns %d and b owns %d of %d partitions", strategy, a.nowned,
          b.nowned, PARTITIONS);
    for (int p = 0; p < PARTITIONS; p++)
        CHECK(a.owned[p] != b.owned[p], "[%s] partition %d has one owner",
              strategy, p);
    kept = a.min_owned_after_full;
    if (coop)
        CHECK(kept > 0,
              "[%s] a kept %d partitions while b joined (incremental)",
              strategy, kept);
    else
        CHECK(kept == 0, "[%s] a gave up all partitions while b joined (%d)",
              strategy, kept);

    CHECK(produce_range(bs, 0, FIRST) == 0, "produce %d jobs", FIRST);
    deadline = cg_harness_now_ms() + DEADLINE;
    while (distinct_seen(FIRST) < FIRST && cg_harness_now_ms() < deadline) {
        member_poll(&a, 20);
        member_poll(&b, 20);
    }
    CHECK(distinct_seen(FIRST) == FIRST, "[%s] %d of %d jobs consumed",
          strategy, distinct_seen(FIRST), FIRST);
    CHECK(a.consumed > 0 && b.consumed > 0,
          "[%s] both members worked: a %zu, b %zu", strategy, a.consumed,
          b.consumed);
    CHECK(rd_kafka_commit(a.rk, NULL, 0) == 0, "a commits");
    CHECK(rd_kafka_commit(b.rk, NULL, 0) == 0, "b commits");
    CHECK(committed_total(a.rk) == FIRST,
          "[%s] committed offsets add up to %d (got %lld)", strategy, FIRST,
          (long long)committed_total(a.rk));

    /* b leaves; a must take its partitions over, from the committed
     * offsets. */
    t0 = cg_harness_now_ms();
    rd_kafka_consumer_close(b.rk);
    rd_kafka_destroy(b.rk);
    b.rk = NULL;
    deadline = cg_harness_now_ms() + DEADLINE;
    while (a.nowned < PARTITIONS && cg_harness_now_ms() < deadline)
        member_poll(&a, 100);
    leave_ms = cg_harness_now_ms() - t0;
    CHECK(a.nowned == PARTITIONS,
          "[%s] after b left, a owns %d of %d partitions", strategy, a.nowned,
          PARTITIONS);

    CHECK(produce_range(bs, FIRST, FIRST + SECOND) == 0, "produce %d more",
          SECOND);
    deadline = cg_harness_now_ms() + DEADLINE;
    while (distinct_seen(FIRST + SECOND) < FIRST + SECOND &&
           cg_harness_now_ms() < deadline)
        member_poll(&a, 50);
    CHECK(distinct_seen(FIRST + SECOND) == FIRST + SECOND,
          "[%s] %d of %d jobs consumed after the rebalance", strategy,
          distinct_seen(FIRST + SECOND), FIRST + SECOND);
    for (int i = 0; i < FIRST + SECOND; i++)
        dups += seen[i] > 1;
    CHECK(dups == 0, "[%s] %d jobs were read twice", strategy, dups);
    CHECK(rd_kafka_commit(a.rk, NULL, 0) == 0, "a commits again");
    CHECK(committed_total(a.rk) == FIRST + SECOND,
          "[%s] committed offsets add up to %d (got %lld)", strategy,
          FIRST + SECOND, (long long)committed_total(a.rk));
    rd_kafka_consumer_close(a.rk);
    rd_kafka_destroy(a.rk);

    CHECK(cg_harness_kafka_consume(bs, TOPIC, FIRST + SECOND, 30000, &all,
                                   errbuf, sizeof(errbuf)) == 0 &&
              all.n == FIRST + SECOND,
          "topic holds exactly %d messages (got %zu)", FIRST + SECOND, all.n);
    cg_harness_msgs_free(&all);
    /* What the mock cluster did, for whoever tunes the worker against it. */
    printf("strategy=%s protocol=%s first_join_ms=%lld second_join_ms=%lld "
           "leave_ms=%lld a_min_kept=%d a_assigns=%d a_revokes=%d "
           "b_consumed=%zu\n",
           strategy, a.protocol, (long long)join_ms, (long long)second_ms,
           (long long)leave_ms, kept, a.assigns, a.revokes, b.consumed);
    cg_harness_devbroker_free(db);
    return check_done("it_devbroker_group");
}
