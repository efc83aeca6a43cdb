/*
 * The devbroker as a process: it prints its bootstrap and control
 * addresses, creates the contactguard topics with the asked partition
 * count, answers every control command with `ok` or `error`, and carries
 * messages with their keys and headers both ways.
 */
#include "check.h"
#include "harness.h"

#include "err.h"
#include "mem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PARTITIONS 4
#define NMSG       200

/* n for a key "sub-n", -1 for anything else. */
static int key_index(const char *key)
{
    char *end;
    long n;

    if (!key || strncmp(key, "sub-", 4) != 0)
        return -1;
    n = strtol(key + 4, &end, 10);
    return *end || n < 0 || n >= NMSG ? -1 : (int)n;
}

static void test_topics(struct cg_harness_devbroker *db)
{
    static const char *const topics[] = { "contactguard.jobs",
                                          "contactguard.results",
                                          "contactguard.jobs.dlq",
                                          "contactguard.events" };
    const char *bs = cg_harness_devbroker_bootstrap(db);
    char errbuf[256];
    int n;

    CHECK(strncmp(bs, "127.0.0.1:", 10) == 0 && strchr(bs, ',') != NULL,
          "bootstrap line names 3 loopback brokers: %s", bs);
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        n = cg_harness_kafka_partitions(bs, topics[i], 10000, errbuf,
                                        sizeof(errbuf));
        CHECK(n == PARTITIONS, "topic %s has %d partitions (want %d): %s",
              topics[i], n, PARTITIONS, n < 0 ? errbuf : "");
    }
    n = cg_harness_kafka_partitions(bs, "no.such.topic", 10000, errbuf,
                                    sizeof(errbuf));
    CHECK(n == CG_ENOTFOUND, "unknown topic is not found (got %d)", n);

    CHECK(cg_harness_devbroker_cmd(db, "create made.later 7", NULL, 0) == 0,
          "create answers ok");
    n = cg_harness_kafka_partitions(bs, "made.later", 10000, errbuf,
                                    sizeof(errbuf));
    CHECK(n == 7, "created topic has 7 partitions (got %d)", n);
}

static void test_control(struct cg_harness_devbroker *db)
{
    static const struct {
        const char *cmd;
        const char *reply; /* prefix */
    } rows[] = {
        { "ping", "ok" },
        { "PING", "ok" },
        { "bootstrap", "ok 127.0.0.1:" },
        { "rtt 2 0", "ok" },
        { "rtt all 0", "ok" },
        { "rtt 2 x", "error bad milliseconds" },
        { "down 3", "ok" },
        { "up 3", "ok" },
        { "down 4", "error no broker 4" },
        { "down 0", "error no broker 0" },
        { "up", "error usage: up BROKER" },
        { "error Produce NOT_LEADER_FOR_PARTITION 2", "ok" },
        { "clear Produce", "ok" },
        { "error 0 RD_KAFKA_RESP_ERR__TRANSPORT 1", "ok" },
        { "clear 0", "ok" },
        { "error Fetch NO_SUCH_ERROR 1", "error unknown error" },
        { "error Nope _TRANSPORT 1", "error unknown api key" },
        { "error Produce _TRANSPORT 0", "error count must be" },
        { "broker-error 1 Heartbeat NOT_COORDINATOR 0 1", "ok" },
        { "topic-error contactguard.events NO_ERROR", "ok" },
        { "leader contactguard.events 0 2", "ok" },
        { "leader contactguard.events 0 9", "error no broker" },
        { "create bad 0", "error partitions must be" },
        { "", "error empty command" },
        { "frobnicate 1", "error unknown command frobnicate" },
        { "a b c d e f g h i", "error too many words" },
    };
    char reply[256];

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int rc =
            cg_harness_devbroker_cmd(db, rows[i].cmd, reply, sizeof(reply));
        bool ok = strncmp(rows[i].reply, "ok", 2) == 0;

        CHECK(strncmp(reply, rows[i].reply, strlen(rows[i].reply)) == 0 &&
                  (ok ? rc == 0 : rc == CG_EINVAL),
              "row %zu `%s`: reply `%s` rc %d, want `%s...`", i, rows[i].cmd,
              reply, rc, rows[i].reply);
    }
}

static void test_round_trip(struct cg_harness_devbroker *db)
{
    const char *bs = cg_harness_devbroker_bootstrap(db);
    struct cg_harness_msg *msgs = cg_calloc(NMSG, sizeof(*msgs));
    struct cg_harness_msgs got = { 0 };
    int seen[NMSG] = { 0 };
    char errbuf[256];
    int rc, bad = 0;

    for (int i = 0; i < NMSG; i++) {
        msgs[i].key = cg_asprintf("sub-%03d", i);
        msgs[i].key_len = strlen(msgs[i].key);
        msgs[i].value = cg_asprintf("{\"n\":%d}", i);
        msgs[i].value_len = strlen(msgs[i].value);
        msgs[i].partition = -1;
        msgs[i].nheaders = 2;
        msgs[i].headers[0].name = "rule";
        msgs[i].headers[0].value = i % 2 ? "odd" : "even";
        msgs[i].headers[0].value_len = strlen(msgs[i].headers[0].value);
        msgs[i].headers[1].name = "schema";
        msgs[i].headers[1].value = "contactguard.test/1";
        msgs[i].headers[1].value_len = strlen(msgs[i].headers[1].value);
    }
    rc = cg_harness_kafka_produce(bs, "contactguard.results", msgs, NMSG, 30000,
                                  errbuf, sizeof(errbuf));
    CHECK(rc == 0, "produce %d messages: %s", NMSG, rc ? errbuf : "");

    rc = cg_harness_kafka_consume(bs, "contactguard.results", NMSG, 30000, &got,
                                  errbuf, sizeof(errbuf));
    CHECK(rc == 0 && got.n == NMSG, "consume got %zu of %d: %s", got.n, NMSG,
          rc ? errbuf : "");
    for (size_t i = 0; i < got.n; i++) {
        const struct cg_harness_msg *m = &got.v[i];
        int n = key_index(m->key);
        const char *rule = cg_harness_msg_header(m, "rule");
        char want[32];

        if (n < 0) {
            bad++;
            continue;
        }
        seen[n]++;
        snprintf(want, sizeof(want), "{\"n\":%d}", n);
        if (!m->value || strcmp(m->value, want) != 0 || !rule ||
            strcmp(rule, n % 2 ? "odd" : "even") != 0 ||
            !cg_harness_msg_header(m, "schema"))
            bad++;
    }
    CHECK(bad == 0, "%d consumed messages have a wrong key, value or header",
          bad);
    for (int i = 0; i < NMSG; i++)
        CHECK(seen[i] == 1, "key sub-%03d seen %d times", i, seen[i]);

    /* Reading again finds the same messages, no more: the reader reads every
     * partition to its end, not just up to the count. */
    cg_harness_msgs_free(&got);
    rc = cg_harness_kafka_consume(bs, "contactguard.results", 1, 30000, &got,
                                  errbuf, sizeof(errbuf));
    CHECK(rc == 0 && got.n == NMSG, "second read got %zu of %d", got.n, NMSG);

    cg_harness_msgs_free(&got);
    for (int i = 0; i < NMSG; i++) {
        free(msgs[i].key);
        free(msgs[i].value);
    }
    free(msgs);
}

static void test_topic_names(void)
{
    static const char *const args[] = { "--jobs-topic", "t.jobs", "--topic",
                                        "t.extra", NULL };
    char errbuf[256];
    struct cg_harness_devbroker *db =
        cg_harness_devbroker_start(1, 2, args, errbuf, sizeof(errbuf));
    int n;

    CHECK(db != NULL, "devbroker with topic names starts: %s", errbuf);
    if (!db)
        return;
    n = cg_harness_kafka_partitions(cg_harness_devbroker_bootstrap(db),
                                    "t.jobs", 10000, errbuf, sizeof(errbuf));
    CHECK(n == 2, "renamed jobs topic has 2 partitions (got %d)", n);
    n = cg_harness_kafka_partitions(cg_harness_devbroker_bootstrap(db),
                                    "t.extra", 10000, errbuf, sizeof(errbuf));
    CHECK(n == 2, "extra topic has 2 partitions (got %d)", n);
    n = cg_harness_kafka_partitions(cg_harness_devbroker_bootstrap(db),
                                    "contactguard.jobs", 10000, errbuf,
                                    sizeof(errbuf));
    CHECK(n == CG_ENOTFOUND, "default jobs topic is not created (got %d)", n);
    cg_harness_devbroker_free(db);
}

static void test_stops_on_sigterm(struct cg_harness_devbroker *db)
{
    struct cg_harness_proc *p = cg_harness_devbroker_proc(db);
    int status = cg_harness_proc_stop(p, 10000);

    CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "devbroker exits 0 on SIGTERM (status %d)", status);
    CHECK(cg_harness_file_grep(cg_harness_proc_stderr_path(p),
                               "event=stopping") == 1,
          "devbroker logs its stop");
}

/* --stdin: commands on stdin, replies on stdout after the two address
 * lines; end of stdin stops reading it, not the broker. */
static void test_stdin_control(void)
{
    const char *const argv[] = { CG_BIN_CONTACTGUARD_DEVBROKER, "--stdin",
                                 NULL };
    const struct cg_harness_proc_opts opts = { .name = "devbroker-stdin",
                                               .stdin_pipe = true };
    static const char cmds[] = "ping\ndown 1\nup 1\nbogus\n";
    static const char *const want[] = { "ok", "ok", "ok",
                                        "error unknown command bogus" };
    char errbuf[256], line[256];
    struct cg_harness_proc *p =
        cg_harness_proc_start(argv, &opts, errbuf, sizeof(errbuf));
    int status;

    CHECK(p != NULL, "devbroker --stdin starts: %s", errbuf);
    if (!p)
        return;
    CHECK(cg_harness_proc_read_line(p, line, sizeof(line), 10000) == 0 &&
              strncmp(line, "control=127.0.0.1:", 18) == 0,
          "second line is the control address (`%s`)", line);
    CHECK(write(cg_harness_proc_stdin(p), cmds, sizeof(cmds) - 1) ==
              (ssize_t)(sizeof(cmds) - 1),
          "commands written");
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int rc = cg_harness_proc_read_line(p, line, sizeof(line), 10000);
        CHECK(rc == 0 && strcmp(line, want[i]) == 0,
              "stdin reply %zu is `%s` (`%s`, %d)", i, want[i], line, rc);
    }
    close(cg_harness_proc_stdin(p));
    CHECK(cg_harness_proc_wait(p, 500, NULL) == CG_ETIMEOUT,
          "end of stdin does not stop the broker");
    status = cg_harness_proc_stop(p, 10000);
    CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "and SIGTERM does (status %d)", status);
    cg_harness_proc_free(p);
}

int main(void)
{
    char errbuf[256];
    struct cg_harness_devbroker *db =
        cg_harness_devbroker_start(3, PARTITIONS, NULL, errbuf, sizeof(errbuf));

    CHECK(db != NULL, "devbroker starts: %s", errbuf);
    if (db) {
        test_topics(db);
        test_control(db);
        test_round_trip(db);
        test_stops_on_sigterm(db);
    }
    cg_harness_devbroker_free(db);
    test_topic_names();
    test_stdin_control();
    return check_done("it_devbroker");
}
