/*
 * A consumer group on the devbroker behaves as the worker needs it to:
 * two members subscribed with the assignment strategy given on the command
 * line share the partitions, offsets are stored by hand and committed, and
 * when one member leaves the other takes over its partitions from the
 * committed offsets, so nothing is read twice. With cooperative-sticky the
 * first member must keep some partitions while the second joins (the
 * rebalance is incremental, not stop-the-world). Then a third member
 * crashes (no LeaveGroup, nothing committed): once its session expires the
 * survivor owns everything again and reads exactly what the crashed member
 * had read but not committed a second time, nothing less, nothing more.
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
#define THIRD      60  /* messages while a member that will crash is in */
#define TOTAL      (FIRST + SECOND + THIRD)
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
    int got[TOTAL]; /* by this member */
};

static int seen[TOTAL]; /* by anyone */

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
    if (n >= 0 && n < TOTAL) {
        seen[n]++;
        m->got[n]++;
    }
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

/*
 * c joins a, both read THIRD new jobs, a commits and c does not, c crashes
 * (destroyed without leaving the group). Returns the milliseconds from the
 * crash until a owned every partition again.
 */
static int64_t crash_phase(const char *bs, const char *strategy,
                           struct member *a)
{
    struct member *c = cg_calloc(1, sizeof(*c));
    int64_t deadline, t0, takeover_ms = -1;
    int c_read = 0, redelivered, extra = 0;

    c->name = "member-c";
    CHECK(member_new(c, bs, strategy) != NULL, "member c subscribes");
    deadline = cg_harness_now_ms() + DEADLINE;
    while ((a->nowned + c->nowned != PARTITIONS || c->nowned == 0) &&
           cg_harness_now_ms() < deadline) {
        member_poll(a, 50);
        member_poll(c, 50);
    }
    CHECK(c->nowned > 0 && a->nowned > 0, "[%s] c joined: a owns %d, c owns %d",
          strategy, a->nowned, c->nowned);

    CHECK(produce_range(bs, FIRST + SECOND, TOTAL) == 0, "produce %d more",
          THIRD);
    deadline = cg_harness_now_ms() + DEADLINE;
    while (distinct_seen(TOTAL) < TOTAL && cg_harness_now_ms() < deadline) {
        member_poll(a, 20);
        member_poll(c, 20);
    }
    CHECK(distinct_seen(TOTAL) == TOTAL, "[%s] %d of %d read with c in",
          strategy, distinct_seen(TOTAL), TOTAL);
    CHECK(rd_kafka_commit(a->rk, NULL, 0) == 0, "a commits its share");
    for (int i = 0; i < TOTAL; i++)
        c_read += c->got[i] > 0;
    CHECK(c_read > 0, "[%s] c read some jobs (%d)", strategy, c_read);

    /* A crash: no LeaveGroup, no commit. The group notices only when the
     * session times out. */
    t0 = cg_harness_now_ms();
    rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    c->rk = NULL;
    deadline = cg_harness_now_ms() + DEADLINE;
    while (a->nowned < PARTITIONS && cg_harness_now_ms() < deadline)
        member_poll(a, 100);
    if (a->nowned == PARTITIONS)
        takeover_ms = cg_harness_now_ms() - t0;
    CHECK(a->nowned == PARTITIONS, "[%s] after c crashed a owns %d of %d",
          strategy, a->nowned, PARTITIONS);

    /* Everything c read comes again, from a's side. */
    deadline = cg_harness_now_ms() + DEADLINE;
    for (;;) {
        redelivered = 0;
        for (int i = 0; i < TOTAL; i++)
            redelivered += c->got[i] > 0 && seen[i] > 1;
        if (redelivered == c_read || cg_harness_now_ms() >= deadline)
            break;
        member_poll(a, 100);
    }
    CHECK(redelivered == c_read,
          "[%s] %d of the %d jobs c read uncommitted were read again", strategy,
          redelivered, c_read);
    for (int i = 0; i < TOTAL; i++)
        extra += !c->got[i] && seen[i] > 1;
    CHECK(extra == 0, "[%s] %d jobs c never read were read twice", strategy,
          extra);
    free(c);
    return takeover_ms;
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
    int64_t deadline, t0, join_ms, second_ms, leave_ms, crash_ms;
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

    crash_ms = crash_phase(bs, strategy, &a);
    CHECK(rd_kafka_commit(a.rk, NULL, 0) == 0, "a commits after the crash");
    CHECK(committed_total(a.rk) == TOTAL,
          "[%s] committed offsets add up to %d (got %lld)", strategy, TOTAL,
          (long long)committed_total(a.rk));
    rd_kafka_consumer_close(a.rk);
    rd_kafka_destroy(a.rk);

    CHECK(cg_harness_kafka_consume(bs, TOPIC, TOTAL, 30000, &all, errbuf,
                                   sizeof(errbuf)) == 0 &&
              all.n == TOTAL,
          "topic holds exactly %d messages (got %zu)", TOTAL, all.n);
    cg_harness_msgs_free(&all);
    /* What the mock cluster did, for whoever tunes the worker against it. */
    printf("strategy=%s protocol=%s first_join_ms=%lld second_join_ms=%lld "
           "leave_ms=%lld crash_takeover_ms=%lld a_min_kept=%d a_assigns=%d "
           "a_revokes=%d b_consumed=%zu\n",
           strategy, a.protocol, (long long)join_ms, (long long)second_ms,
           (long long)leave_ms, (long long)crash_ms, kept, a.assigns, a.revokes,
           b.consumed);
    cg_harness_devbroker_free(db);
    return check_done("it_devbroker_group");
}
