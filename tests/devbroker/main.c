/*
 * contactguard-devbroker — a Kafka cluster on loopback for development,
 * integration tests, the demo and the benchmarks.
 *
 * stdout carries exactly two lines a supervisor waits for, in this order:
 *   127.0.0.1:PORT[,127.0.0.1:PORT...]      the bootstrap servers
 *   control=127.0.0.1:PORT                  the control line protocol
 * and, with --stdin, the replies to commands read from stdin. Logs go to
 * stderr. Runs until SIGINT or SIGTERM.
 */
#include "control.h"
#include "devbroker.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_PARTITIONS 6

/* The signal stop flag's descriptor: the handler writes one byte here and
 * the control loop wakes on it. */
static int stop_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
    int saved = errno;
    char c = (char)sig;

    if (write(stop_pipe[1], &c, 1) < 0) {
        /* The pipe is full: a stop is already pending. */
    }
    errno = saved;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: contactguard-devbroker [options]\n"
            "  --brokers N          brokers in the cluster (default 1, max "
            "%d)\n"
            "  --partitions N       partitions per topic (default %d)\n"
            "  --replication N      replication factor (default min(brokers, "
            "3))\n"
            "  --jobs-topic NAME    default contactguard.jobs\n"
            "  --results-topic NAME default contactguard.results\n"
            "  --dlq-topic NAME     default contactguard.jobs.dlq\n"
            "  --events-topic NAME  default contactguard.events\n"
            "  --topic NAME         one more topic (repeatable)\n"
            "  --control-port P     control port on 127.0.0.1 (default 0: "
            "any free port)\n"
            "  --stdin              also read control commands from stdin,\n"
            "                       replies on stdout after the first two "
            "lines\n"
            "  --log-level L        debug|info|warn|error (default info)\n"
            "Control commands: ping, bootstrap, down B, up B, rtt B MS,\n"
            "  error APIKEY ERR COUNT, broker-error B APIKEY ERR RTT COUNT,\n"
            "  clear APIKEY, topic-error TOPIC ERR, create TOPIC PARTITIONS,\n"
            "  leader TOPIC PARTITION B   (B: broker id or `all`)\n",
            CG_DEVBROKER_MAX_BROKERS, DEFAULT_PARTITIONS);
}

static int parse_count(const char *flag, const char *s, long min, long max,
                       int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "contactguard-devbroker: %s wants %ld..%ld, not %s\n",
                flag, min, max, s);
        return CG_EINVAL;
    }
    *out = (int)v;
    return 0;
}

static void on_command(void *arg, const char *line, char *reply, size_t replysz)
{
    cg_devbroker_exec(arg, line, reply, replysz);
}

int main(int argc, char **argv)
{
    enum {
        OPT_BROKERS = 256,
        OPT_PARTITIONS,
        OPT_REPLICATION,
        OPT_JOBS,
        OPT_RESULTS,
        OPT_DLQ,
        OPT_EVENTS,
        OPT_TOPIC,
        OPT_CONTROL_PORT,
        OPT_STDIN,
        OPT_LOG_LEVEL,
        OPT_HELP,
    };
    static const struct option longopts[] = {
        { "brokers", required_argument, NULL, OPT_BROKERS },
        { "partitions", required_argument, NULL, OPT_PARTITIONS },
        { "replication", required_argument, NULL, OPT_REPLICATION },
        { "jobs-topic", required_argument, NULL, OPT_JOBS },
        { "results-topic", required_argument, NULL, OPT_RESULTS },
        { "dlq-topic", required_argument, NULL, OPT_DLQ },
        { "events-topic", required_argument, NULL, OPT_EVENTS },
        { "topic", required_argument, NULL, OPT_TOPIC },
        { "control-port", required_argument, NULL, OPT_CONTROL_PORT },
        { "stdin", no_argument, NULL, OPT_STDIN },
        { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
        { "help", no_argument, NULL, OPT_HELP },
        { NULL, 0, NULL, 0 },
    };
    /* jobs, results, dlq, events, then --topic extras. */
    const char *topics[CG_DEVBROKER_MAX_TOPICS + 1] = { "contactguard.jobs",
                                                        "contactguard.results",
                                                        "contactguard.jobs.dlq",
                                                        "contactguard.events" };
    int ntopics = 4;
    struct cg_devbroker_opts opts = { .brokers = 1,
                                      .partitions = DEFAULT_PARTITIONS };
    enum cg_log_level level = CG_LOG_INFO;
    struct cg_devbroker *db = NULL;
    struct cg_control *ctl = NULL;
    struct sigaction sa = { .sa_handler = on_signal };
    char errbuf[512];
    int control_port = 0;
    bool use_stdin = false;
    int rc = 1, opt;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_BROKERS:
            if (parse_count("--brokers", optarg, 1, CG_DEVBROKER_MAX_BROKERS,
                            &opts.brokers) < 0)
                return 2;
            break;
        case OPT_PARTITIONS:
            if (parse_count("--partitions", optarg, 1,
                            CG_DEVBROKER_MAX_PARTITIONS, &opts.partitions) < 0)
                return 2;
            break;
        case OPT_REPLICATION:
            if (parse_count("--replication", optarg, 1,
                            CG_DEVBROKER_MAX_BROKERS, &opts.replication) < 0)
                return 2;
            break;
        case OPT_JOBS:
        case OPT_RESULTS:
        case OPT_DLQ:
        case OPT_EVENTS:
            topics[opt - OPT_JOBS] = optarg;
            break;
        case OPT_TOPIC:
            if (ntopics == CG_DEVBROKER_MAX_TOPICS) {
                fprintf(stderr, "contactguard-devbroker: more than %d topics\n",
                        CG_DEVBROKER_MAX_TOPICS);
                return 2;
            }
            topics[ntopics++] = optarg;
            break;
        case OPT_CONTROL_PORT:
            if (parse_count("--control-port", optarg, 0, 65535, &control_port) <
                0)
                return 2;
            break;
        case OPT_STDIN:
            use_stdin = true;
            break;
        case OPT_LOG_LEVEL:
            if (cg_log_level_parse(optarg, &level) < 0) {
                fprintf(stderr, "contactguard-devbroker: bad log level %s\n",
                        optarg);
                return 2;
            }
            break;
        case OPT_HELP:
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    topics[ntopics] = NULL;
    opts.topics = topics;
    cg_log_setup(level, CG_LOG_TEXT, "devbroker");

    if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        cg_error("start_failed", "err=\"pipe: %s\"", strerror(errno));
        goto out;
    }
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    db = cg_devbroker_new(&opts, errbuf, sizeof(errbuf));
    if (!db) {
        cg_error("start_failed", "err=\"%s\"", errbuf);
        goto out;
    }
    ctl = cg_control_new(control_port, on_command, db, errbuf, sizeof(errbuf));
    if (!ctl) {
        cg_error("start_failed", "err=\"%s\"", errbuf);
        goto out;
    }

    /* The two lines a supervisor waits for; flushed together so that a
     * reader that has the first line soon has the second. */
    printf("%s\ncontrol=127.0.0.1:%d\n", cg_devbroker_bootstraps(db),
           cg_control_port(ctl));
    fflush(stdout);
    cg_info("started",
            "bootstrap=%s control=127.0.0.1:%d brokers=%d partitions=%d "
            "jobs=%s results=%s dlq=%s events=%s",
            cg_devbroker_bootstraps(db), cg_control_port(ctl), opts.brokers,
            opts.partitions, topics[0], topics[1], topics[2], topics[3]);

    if (cg_control_run(ctl, use_stdin ? STDIN_FILENO : -1, STDOUT_FILENO,
                       stop_pipe[0]) < 0)
        goto out;
    cg_info("stopping", "reason=signal");
    rc = 0;

out:
    cg_control_free(ctl);
    cg_devbroker_free(db);
    return rc;
}
