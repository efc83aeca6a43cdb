#include "devbroker.h"

#include "err.h"
#include "log.h"
#include "mem.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A control line is short; anything longer is a mistake, not a command. */
#define DEVBROKER_LINE_MAX 512
#define DEVBROKER_ARGS_MAX 8

struct cg_devbroker {
    rd_kafka_t *rk; /* owns the mock cluster's bookkeeping */
    rd_kafka_mock_cluster_t *mcluster;
    int brokers;
    int replication;
};

/* The protocol's request types a test is likely to want to break. */
static const struct {
    const char *name;
    int16_t key;
} api_keys[] = {
    { "Produce", 0 },
    { "Fetch", 1 },
    { "ListOffsets", 2 },
    { "Metadata", 3 },
    { "OffsetCommit", 8 },
    { "OffsetFetch", 9 },
    { "FindCoordinator", 10 },
    { "JoinGroup", 11 },
    { "Heartbeat", 12 },
    { "LeaveGroup", 13 },
    { "SyncGroup", 14 },
    { "DescribeGroups", 15 },
    { "ListGroups", 16 },
    { "ApiVersions", 18 },
    { "CreateTopics", 19 },
    { "InitProducerId", 22 },
    { "AddPartitionsToTxn", 24 },
    { "AddOffsetsToTxn", 25 },
    { "EndTxn", 26 },
    { "TxnOffsetCommit", 28 },
};

static void devbroker_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                             const char *buf)
{
    /* syslog levels: 0..3 are errors, 4 warnings. */
    if (level <= 3)
        cg_error("kafka_log", "facility=%s msg=\"%s\"", fac, buf);
    else
        cg_debug("kafka_log", "facility=%s msg=\"%s\"", fac, buf);
}

static int parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return CG_EINVAL;
    *out = v;
    return 0;
}

/* An id in 1..brokers, or `all` (-1, the mock's "every broker"). */
static int parse_broker(const struct cg_devbroker *db, const char *s,
                        int32_t *out)
{
    long v;

    if (strcasecmp(s, "all") == 0 || strcmp(s, "-1") == 0) {
        *out = -1;
        return 0;
    }
    if (parse_int(s, 1, db->brokers, &v) < 0)
        return CG_EINVAL;
    *out = (int32_t)v;
    return 0;
}

static int parse_api_key(const char *s, int16_t *out)
{
    long v;

    for (size_t i = 0; i < sizeof(api_keys) / sizeof(api_keys[0]); i++) {
        if (strcasecmp(s, api_keys[i].name) == 0) {
            *out = api_keys[i].key;
            return 0;
        }
    }
    if (parse_int(s, 0, 100, &v) < 0)
        return CG_EINVAL;
    *out = (int16_t)v;
    return 0;
}

static int parse_err(const char *s, rd_kafka_resp_err_t *out)
{
    static const char prefix[] = "RD_KAFKA_RESP_ERR_";
    const struct rd_kafka_err_desc *descs;
    size_t cnt;
    long v;

    if (strncasecmp(s, prefix, sizeof(prefix) - 1) == 0)
        s += sizeof(prefix) - 1;
    rd_kafka_get_err_descs(&descs, &cnt);
    for (size_t i = 0; i < cnt; i++) {
        if (descs[i].name && strcasecmp(s, descs[i].name) == 0) {
            *out = descs[i].code;
            return 0;
        }
    }
    if (parse_int(s, -200, 200, &v) < 0)
        return CG_EINVAL;
    *out = (rd_kafka_resp_err_t)v;
    return 0;
}

/* Splits line at blanks into at most DEVBROKER_ARGS_MAX words of buf. */
static int split(char *buf, char **argv)
{
    int argc = 0;
    char *save = NULL;

    for (char *w = strtok_r(buf, " \t\r", &save); w;
         w = strtok_r(NULL, " \t\r", &save)) {
        if (argc == DEVBROKER_ARGS_MAX)
            return -1;
        argv[argc++] = w;
    }
    return argc;
}

static int reply_err(char *reply, size_t replysz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int reply_err(char *reply, size_t replysz, const char *fmt, ...)
{
    va_list ap;
    size_t n = cg_strlcpy(reply, "error ", replysz);

    if (n < replysz) {
        va_start(ap, fmt);
        vsnprintf(reply + n, replysz - n, fmt, ap);
        va_end(ap);
    }
    return CG_EINVAL;
}

static int reply_kafka(char *reply, size_t replysz, rd_kafka_resp_err_t err)
{
    if (err)
        return reply_err(reply, replysz, "%s", rd_kafka_err2str(err));
    cg_strlcpy(reply, "ok", replysz);
    return 0;
}

/* One row per command: name, number of arguments, usage. */
static const struct {
    const char *name;
    int nargs;
    const char *usage;
} commands[] = {
    { "ping", 0, "ping" },
    { "bootstrap", 0, "bootstrap" },
    { "down", 1, "down BROKER" },
    { "up", 1, "up BROKER" },
    { "rtt", 2, "rtt BROKER MS" },
    { "error", 3, "error APIKEY ERR COUNT" },
    { "broker-error", 5, "broker-error BROKER APIKEY ERR RTT_MS COUNT" },
    { "clear", 1, "clear APIKEY" },
    { "topic-error", 2, "topic-error TOPIC ERR" },
    { "create", 2, "create TOPIC PARTITIONS" },
    { "leader", 3, "leader TOPIC PARTITION BROKER" },
};

static int exec_args(struct cg_devbroker *db, int argc, char **argv,
                     char *reply, size_t replysz)
{
    rd_kafka_mock_cluster_t *mc = db->mcluster;
    const char *cmd = argv[0];
    int32_t broker;
    int16_t key;
    rd_kafka_resp_err_t err;
    long n, m;
    size_t row;

    for (row = 0; row < sizeof(commands) / sizeof(commands[0]); row++)
        if (strcasecmp(cmd, commands[row].name) == 0)
            break;
    if (row == sizeof(commands) / sizeof(commands[0]))
        return reply_err(reply, replysz, "unknown command %.64s", cmd);
    if (argc - 1 != commands[row].nargs)
        return reply_err(reply, replysz, "usage: %s", commands[row].usage);

    if (strcasecmp(cmd, "ping") == 0) {
        cg_strlcpy(reply, "ok", replysz);
        return 0;
    }
    if (strcasecmp(cmd, "bootstrap") == 0) {
        snprintf(reply, replysz, "ok %s", cg_devbroker_bootstraps(db));
        return 0;
    }
    if (strcasecmp(cmd, "down") == 0 || strcasecmp(cmd, "up") == 0) {
        if (parse_broker(db, argv[1], &broker) < 0)
            return reply_err(reply, replysz, "no broker %.32s", argv[1]);
        err = strcasecmp(cmd, "down") == 0
                  ? rd_kafka_mock_broker_set_down(mc, broker)
                  : rd_kafka_mock_broker_set_up(mc, broker);
        return reply_kafka(reply, replysz, err);
    }
    if (strcasecmp(cmd, "rtt") == 0) {
        if (parse_broker(db, argv[1], &broker) < 0)
            return reply_err(reply, replysz, "no broker %.32s", argv[1]);
        if (parse_int(argv[2], 0, 600000, &n) < 0)
            return reply_err(reply, replysz, "bad milliseconds %.32s", argv[2]);
        return reply_kafka(reply, replysz,
                           rd_kafka_mock_broker_set_rtt(mc, broker, (int)n));
    }
    if (strcasecmp(cmd, "error") == 0) {
        rd_kafka_resp_err_t errs[1024];

        if (parse_api_key(argv[1], &key) < 0)
            return reply_err(reply, replysz, "unknown api key %.32s", argv[1]);
        if (parse_err(argv[2], &err) < 0)
            return reply_err(reply, replysz, "unknown error %.64s", argv[2]);
        if (parse_int(argv[3], 1, 1024, &n) < 0)
            return reply_err(reply, replysz, "count must be 1..1024");
        for (long i = 0; i < n; i++)
            errs[i] = err;
        rd_kafka_mock_push_request_errors_array(mc, key, (size_t)n, errs);
        cg_strlcpy(reply, "ok", replysz);
        return 0;
    }
    if (strcasecmp(cmd, "broker-error") == 0) {
        if (parse_broker(db, argv[1], &broker) < 0 || broker < 0)
            return reply_err(reply, replysz, "no broker %.32s", argv[1]);
        if (parse_api_key(argv[2], &key) < 0)
            return reply_err(reply, replysz, "unknown api key %.32s", argv[2]);
        if (parse_err(argv[3], &err) < 0)
            return reply_err(reply, replysz, "unknown error %.64s", argv[3]);
        if (parse_int(argv[4], 0, 600000, &m) < 0)
            return reply_err(reply, replysz, "bad milliseconds %.32s", argv[4]);
        if (parse_int(argv[5], 1, 1024, &n) < 0)
            return reply_err(reply, replysz, "count must be 1..1024");
        /* The call takes (err, rtt) pairs as varargs; push them one at a
         * time so the count can come from the line. */
        for (long i = 0; i < n; i++) {
            rd_kafka_resp_err_t e =
                rd_kafka_mock_broker_push_request_error_rtts(mc, broker, key, 1,
                                                             err, (int)m);
            if (e)
                return reply_kafka(reply, replysz, e);
        }
        cg_strlcpy(reply, "ok", replysz);
        return 0;
    }
    if (strcasecmp(cmd, "clear") == 0) {
        if (parse_api_key(argv[1], &key) < 0)
            return reply_err(reply, replysz, "unknown api key %.32s", argv[1]);
        rd_kafka_mock_clear_request_errors(mc, key);
        cg_strlcpy(reply, "ok", replysz);
        return 0;
    }
    if (strcasecmp(cmd, "topic-error") == 0) {
        if (parse_err(argv[2], &err) < 0)
            return reply_err(reply, replysz, "unknown error %.64s", argv[2]);
        rd_kafka_mock_topic_set_error(mc, argv[1], err);
        cg_strlcpy(reply, "ok", replysz);
        return 0;
    }
    if (strcasecmp(cmd, "create") == 0) {
        if (parse_int(argv[2], 1, CG_DEVBROKER_MAX_PARTITIONS, &n) < 0)
            return reply_err(reply, replysz, "partitions must be 1..%d",
                             CG_DEVBROKER_MAX_PARTITIONS);
        return reply_kafka(
            reply, replysz,
            rd_kafka_mock_topic_create(mc, argv[1], (int)n, db->replication));
    }
    /* leader */
    if (parse_int(argv[2], 0, CG_DEVBROKER_MAX_PARTITIONS - 1, &n) < 0)
        return reply_err(reply, replysz, "bad partition %.32s", argv[2]);
    if (parse_broker(db, argv[3], &broker) < 0)
        return reply_err(reply, replysz, "no broker %.32s", argv[3]);
    return reply_kafka(
        reply, replysz,
        rd_kafka_mock_partition_set_leader(mc, argv[1], (int32_t)n, broker));
}

int cg_devbroker_exec(struct cg_devbroker *db, const char *line, char *reply,
                      size_t replysz)
{
    char buf[DEVBROKER_LINE_MAX];
    char *argv[DEVBROKER_ARGS_MAX];
    int argc, rc;

    if (cg_strlcpy(buf, line, sizeof(buf)) >= sizeof(buf))
        return reply_err(reply, replysz, "line longer than %d bytes",
                         DEVBROKER_LINE_MAX - 1);
    argc = split(buf, argv);
    if (argc < 0)
        return reply_err(reply, replysz, "too many words");
    if (argc == 0)
        return reply_err(reply, replysz, "empty command");
    rc = exec_args(db, argc, argv, reply, replysz);
    if (rc == 0)
        cg_info("control", "cmd=\"%s\" reply=ok", line);
    else
        cg_warn("control", "cmd=\"%s\" reply=\"%s\"", line, reply);
    return rc;
}

struct cg_devbroker *cg_devbroker_new(const struct cg_devbroker_opts *opts,
                                      char *errbuf, size_t errsz)
{
    struct cg_devbroker *db = NULL;
    rd_kafka_conf_t *conf = NULL;
    char kerr[512];
    int ntopics = 0;

    if (opts->brokers < 1 || opts->brokers > CG_DEVBROKER_MAX_BROKERS) {
        cg_err_set(errbuf, errsz, CG_EINVAL, "brokers must be 1..%d",
                   CG_DEVBROKER_MAX_BROKERS);
        goto fail;
    }
    if (opts->partitions < 1 ||
        opts->partitions > CG_DEVBROKER_MAX_PARTITIONS) {
        cg_err_set(errbuf, errsz, CG_EINVAL, "partitions must be 1..%d",
                   CG_DEVBROKER_MAX_PARTITIONS);
        goto fail;
    }
    if (opts->replication < 0 || opts->replication > opts->brokers) {
        cg_err_set(errbuf, errsz, CG_EINVAL,
                   "replication must be 1..brokers (%d)", opts->brokers);
        goto fail;
    }
    for (; opts->topics && opts->topics[ntopics]; ntopics++)
        ;
    if (ntopics > CG_DEVBROKER_MAX_TOPICS) {
        cg_err_set(errbuf, errsz, CG_EINVAL, "more than %d topics",
                   CG_DEVBROKER_MAX_TOPICS);
        goto fail;
    }

    db = cg_calloc(1, sizeof(*db));
    db->brokers = opts->brokers;
    db->replication = opts->replication
                          ? opts->replication
                          : (opts->brokers < 3 ? opts->brokers : 3);

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, devbroker_log_cb);
    /* The handle never talks to a cluster itself; it only hosts the mock
     * and owns the threads that serve it. */
    if (rd_kafka_conf_set(conf, "client.id", "contactguard-devbroker", kerr,
                          sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        cg_err_set(errbuf, errsz, CG_EKAFKA, "kafka conf: %s", kerr);
        goto fail;
    }
    db->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (!db->rk) {
        cg_err_set(errbuf, errsz, CG_EKAFKA, "kafka handle: %s", kerr);
        goto fail;
    }
    conf = NULL; /* now owned by rk */

    db->mcluster = rd_kafka_mock_cluster_new(db->rk, opts->brokers);
    if (!db->mcluster) {
        cg_err_set(errbuf, errsz, CG_EKAFKA,
                   "mock cluster with %d brokers could not start",
                   opts->brokers);
        goto fail;
    }
    for (int i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
            db->mcluster, opts->topics[i], opts->partitions, db->replication);
        if (err) {
            cg_err_set(errbuf, errsz, CG_EKAFKA, "create topic %s: %s",
                       opts->topics[i], rd_kafka_err2str(err));
            goto fail;
        }
    }
    return db;

fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    cg_devbroker_free(db);
    return NULL;
}

const char *cg_devbroker_bootstraps(const struct cg_devbroker *db)
{
    return rd_kafka_mock_cluster_bootstraps(db->mcluster);
}

void cg_devbroker_free(struct cg_devbroker *db)
{
    if (!db)
        return;
    if (db->mcluster)
        rd_kafka_mock_cluster_destroy(db->mcluster);
    if (db->rk)
        rd_kafka_destroy(db->rk);
    free(db);
}
