/*
 * harness — real servers on loopback for integration tests and benchmarks.
 *
 * The fleet's fakes sit at the network boundary (STYLE.md): a Kafka cluster
 * (contactguard-devbroker), a Debian redis-server, the fake Azure, and the
 * contactguard processes themselves. This module starts each as a child
 * process, waits for it to say it is ready (a line on its stdout, never a
 * fixed sleep), and makes sure it goes away: every child leads its own
 * process group, which is sent SIGTERM and, after a bound, SIGKILL when the
 * test stops it, when the test process exits (atexit), and when the test
 * process dies any other way (the child asks the kernel for SIGKILL when its
 * parent goes: PR_SET_PDEATHSIG). No test leaks a server.
 *
 * PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so
 * start children from the main thread or from a thread that outlives them.
 *
 * Files: each process's stdout (as read) and stderr go to files in a
 * per-test-process directory under $TMPDIR, removed at exit unless
 * CG_HARNESS_KEEP is set; tests grep them (for instance: no secret in any
 * log line). Binaries come from the build (CMake passes their paths in);
 * CG_DEVBROKER and CG_REDIS_SERVER in the environment override them.
 *
 * Errors follow err.h: NULL or a negative CG_E* code, one sentence in
 * errbuf.
 */
#ifndef CG_HARNESS_H
#define CG_HARNESS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CG_HARNESS_LINE_MAX      4096  /* longer stdout lines are cut */
#define CG_HARNESS_LINES_MAX     65536 /* stdout lines kept in memory */
#define CG_HARNESS_START_MS      20000 /* default wait for a ready line */
#define CG_HARNESS_STOP_GRACE_MS 5000  /* SIGTERM to SIGKILL */
#define CG_HARNESS_MAX_HEADERS   16

/* ---- any process ------------------------------------------------------ */

struct cg_harness_proc_opts {
    /* Names the files (NAME-N.stdout, NAME-N.stderr, N counting the
     * children of this test) and error messages; default: the base name
     * of argv[0]. */
    const char *name;
    /* "NAME=value" entries set in the child's environment on top of ours,
     * NULL-terminated; may be NULL. */
    const char *const *env;
    /* Wait this long for the first stdout line (0: the default,
     * CG_HARNESS_START_MS); negative: do not wait for a line at all. */
    int line_timeout_ms;
    /* Give the child a pipe on stdin (cg_harness_proc_stdin) instead of
     * /dev/null. */
    bool stdin_pipe;
};

struct cg_harness_proc;

/*
 * Starts argv[0] (a path, or a name looked up in PATH) with argv as its
 * arguments (NULL-terminated, copied). opts may be NULL for the defaults.
 * Unless told not to, returns only once the child has printed its first
 * stdout line (cg_harness_proc_first_line); a child that exits or stays
 * silent past the timeout is killed and NULL returned with its last stderr
 * line in errbuf.
 */
struct cg_harness_proc *
cg_harness_proc_start(const char *const *argv,
                      const struct cg_harness_proc_opts *opts, char *errbuf,
                      size_t errsz);

pid_t cg_harness_proc_pid(const struct cg_harness_proc *p);

/* The first stdout line without its newline ("" if none was awaited);
 * borrowed, lives as long as p. */
const char *cg_harness_proc_first_line(const struct cg_harness_proc *p);

/*
 * Copies the next stdout line not yet returned (the first line counts as
 * returned once start waited for it) into buf. 0, CG_ETIMEOUT, or CG_EIO
 * when the child closed stdout.
 */
int cg_harness_proc_read_line(struct cg_harness_proc *p, char *buf,
                              size_t bufsz, int timeout_ms);

/*
 * Waits for a stdout line containing needle, looking at every line printed
 * so far and then at new ones. 0, CG_ETIMEOUT, or CG_EIO on end of stdout.
 */
int cg_harness_proc_wait_for(struct cg_harness_proc *p, const char *needle,
                             int timeout_ms);

/* Write end of the child's stdin (opts.stdin_pipe), -1 otherwise. */
int cg_harness_proc_stdin(const struct cg_harness_proc *p);

/* Paths of the files holding the child's stdout and stderr. */
const char *cg_harness_proc_stdout_path(const struct cg_harness_proc *p);
const char *cg_harness_proc_stderr_path(const struct cg_harness_proc *p);

/* Sends sig to the child's process group. 0, or CG_EINVAL once reaped. */
int cg_harness_proc_kill(struct cg_harness_proc *p, int sig);

/*
 * Waits up to timeout_ms (negative: forever) for the child to exit and
 * reaps it; whatever it left running in its process group gets SIGKILL
 * first. 0 with *status (may be NULL) set as by waitpid(), CG_ETIMEOUT, or
 * CG_EIO (the test reaps children itself, e.g. SIGCHLD ignored). Once
 * reaped, returns the same status again. A test that waits for a worker to
 * exit by itself (after SIGTERM, say) uses this; stop() does both.
 */
int cg_harness_proc_wait(struct cg_harness_proc *p, int timeout_ms,
                         int *status);

/* true until the child has been seen to exit. */
bool cg_harness_proc_running(struct cg_harness_proc *p);

/*
 * SIGTERM to the group, up to grace_ms (0: CG_HARNESS_STOP_GRACE_MS) for the
 * child to exit, then SIGKILL; whatever else is left in the group gets
 * SIGKILL too. Returns the wait status (>= 0) so tests can tell a clean exit
 * from a kill, or a negative CG_E* code.
 */
int cg_harness_proc_stop(struct cg_harness_proc *p, int grace_ms);

/* Stops the child if it runs and frees p. NULL is fine. */
void cg_harness_proc_free(struct cg_harness_proc *p);

/* ---- redis-server ----------------------------------------------------- */

struct cg_harness_redis;
struct cg_conf;
struct cg_redis;

/*
 * Starts Debian's redis-server on a free 127.0.0.1 port, without
 * persistence, its directory inside the harness directory, and returns once
 * it answers PING.
 */
struct cg_harness_redis *cg_harness_redis_start(char *errbuf, size_t errsz);

struct cg_harness_redis_opts {
    /* TLS only (--port 0, --tls-port), with a CA made for the run by
     * openssl: cg_harness_redis_ca(). Client certificates optional. */
    bool tls;
    const char *password;      /* requirepass; NULL: none */
    const char *user;          /* an ACL user with every right (needs
                                  password) */
    const char *user_password; /* its password (default: password) */
    /* TLS that asks every client for a certificate signed by the CA
     * (--tls-auth-clients yes); dir/client.pem and dir/client.key are
     * one. Implies tls. */
    bool client_cert;
};

/* As cg_harness_redis_start, configured by o. */
struct cg_harness_redis *
cg_harness_redis_start_opts(const struct cg_harness_redis_opts *o, char *errbuf,
                            size_t errsz);

/* The CA the server's certificate (localhost, 127.0.0.1) chains to, and
 * one that signed nothing; "" when plain. Borrowed. */
const char *cg_harness_redis_ca(const struct cg_harness_redis *r);
const char *cg_harness_redis_other_ca(const struct cg_harness_redis *r);

/* The server's directory (certificates, keys); borrowed. */
const char *cg_harness_redis_dir(const struct cg_harness_redis *r);

/* What a child process needs to reach r (as the ACL user when there is
 * one): argv ("--set", "k=v" pairs, NULL-terminated) and envp (the
 * password, which never goes on a command line; NULL-terminated). */
struct cg_harness_redis_client {
    char set[8][640];
    int nset;
    char env[256];
    const char *argv[17];
    const char *envp[2];
};
void cg_harness_redis_client(const struct cg_harness_redis *r,
                             struct cg_harness_redis_client *out);

/* Sets conf's redis.* to reach r, as the ACL user when there is one. */
int cg_harness_redis_conf(const struct cg_harness_redis *r,
                          struct cg_conf *conf, char *errbuf, size_t errsz);

/* A synchronous client (redis.h) as the default user: works on TLS-only
 * servers. Free with cg_redis_free. */
struct cg_redis *cg_harness_redis_admin(const struct cg_harness_redis *r,
                                        char *errbuf, size_t errsz);

int cg_harness_redis_port(const struct cg_harness_redis *r);

/* The running server process (NULL while stopped); borrowed. */
struct cg_harness_proc *cg_harness_redis_proc(struct cg_harness_redis *r);

/* Stops the server (SIGTERM, then SIGKILL); the port is kept. */
int cg_harness_redis_stop(struct cg_harness_redis *r, char *errbuf,
                          size_t errsz);

/* Starts it again on the same port (stopping it first if it runs), empty. */
int cg_harness_redis_restart(struct cg_harness_redis *r, char *errbuf,
                             size_t errsz);

/* A new synchronous connection (the caller frees it with redisFree), or
 * NULL with errbuf set; plain TCP servers only. */
redisContext *cg_harness_redis_connect(const struct cg_harness_redis *r,
                                       char *errbuf, size_t errsz);

void cg_harness_redis_free(struct cg_harness_redis *r);

/* ---- contactguard-devbroker ------------------------------------------- */

struct cg_harness_devbroker;

/*
 * Starts a devbroker with `brokers` brokers (0: 1) and `partitions`
 * partitions per topic (0: the devbroker's default), extra command-line
 * arguments appended (NULL-terminated, may be NULL; e.g. "--jobs-topic",
 * "x"). Returns once the topics exist and the control port answers.
 */
struct cg_harness_devbroker *
cg_harness_devbroker_start(int brokers, int partitions,
                           const char *const *extra_args, char *errbuf,
                           size_t errsz);

/* "127.0.0.1:PORT,..." for bootstrap.servers; borrowed. */
const char *
cg_harness_devbroker_bootstrap(const struct cg_harness_devbroker *h);

/*
 * Sends one control command ("down 1", "rtt all 200", "error Produce
 * _TRANSPORT 3", ...; see devbroker.h) and copies the reply line into reply
 * (may be NULL). 0 when the reply is `ok...`, CG_EINVAL when it is `error
 * ...`, CG_EIO or CG_ETIMEOUT when the control connection fails.
 */
int cg_harness_devbroker_cmd(struct cg_harness_devbroker *h, const char *cmd,
                             char *reply, size_t replysz);

struct cg_harness_proc *
cg_harness_devbroker_proc(struct cg_harness_devbroker *h);

/* Stops the devbroker and frees h. NULL is fine. */
void cg_harness_devbroker_free(struct cg_harness_devbroker *h);

/* ---- Kafka clients for assertions ------------------------------------- */

struct cg_harness_header {
    char *name;
    char *value; /* NUL-terminated; NULL for a null header value */
    size_t value_len;
};

/*
 * A message to produce (fields borrowed) or one consumed (fields owned,
 * freed by cg_harness_msgs_free). key and value are NUL-terminated copies
 * when consumed; NULL means absent.
 */
struct cg_harness_msg {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
    int32_t partition; /* produce: -1 lets the partitioner choose by key */
    int64_t offset;
    size_t nheaders;
    struct cg_harness_header headers[CG_HARNESS_MAX_HEADERS];
};

struct cg_harness_msgs {
    struct cg_harness_msg *v;
    size_t n, cap;
};

/*
 * Produces n messages with an idempotent producer and waits for every
 * delivery report. 0 when all were delivered, CG_EKAFKA naming the first
 * failure, CG_ETIMEOUT when timeout_ms passed first.
 */
int cg_harness_kafka_produce(const char *bootstrap, const char *topic,
                             const struct cg_harness_msg *msgs, size_t n,
                             int timeout_ms, char *errbuf, size_t errsz);

/*
 * Reads topic from the earliest offset of every partition with a fresh
 * consumer (partitions assigned directly, no group: it perturbs no group
 * under test and skips the mock coordinator's join delay) until at least
 * `want` messages were read AND every partition has been read to its end,
 * so that extra messages are caught too. Appends what it read to *out (the
 * caller frees it, also on error). 0, CG_ETIMEOUT if timeout_ms passed
 * first, or CG_EKAFKA.
 */
int cg_harness_kafka_consume(const char *bootstrap, const char *topic,
                             size_t want, int timeout_ms,
                             struct cg_harness_msgs *out, char *errbuf,
                             size_t errsz);

/* The topic's partition count as the cluster reports it, or CG_ENOTFOUND,
 * CG_EKAFKA. */
int cg_harness_kafka_partitions(const char *bootstrap, const char *topic,
                                int timeout_ms, char *errbuf, size_t errsz);

/*
 * The offsets group has committed on topic, summed over its partitions
 * (a partition with none counts 0), into *sum. Asks the coordinator
 * without joining the group, so it perturbs no member under test. 0,
 * CG_ENOTFOUND, CG_ETIMEOUT or CG_EKAFKA.
 */
int cg_harness_kafka_committed(const char *bootstrap, const char *group,
                               const char *topic, int timeout_ms, int64_t *sum,
                               char *errbuf, size_t errsz);

/* Value of the first header called name (NULL if none); borrowed. */
const char *cg_harness_msg_header(const struct cg_harness_msg *m,
                                  const char *name);

void cg_harness_msgs_free(struct cg_harness_msgs *msgs);

/* ---- small things ----------------------------------------------------- */

/* Monotonic milliseconds, for deadlines. */
int64_t cg_harness_now_ms(void);

/* This test process's directory for server files (created on first use). */
const char *cg_harness_dir(void);

/* A port on 127.0.0.1 that was free a moment ago, or CG_EIO. */
int cg_harness_free_port(char *errbuf, size_t errsz);

/* true when a TCP connection to 127.0.0.1:port is accepted now. */
bool cg_harness_port_open(int port);

/*
 * Waits for a TCP connection to 127.0.0.1:port to be accepted (for servers
 * that print nothing when ready). 0 or CG_ETIMEOUT.
 */
int cg_harness_wait_port(int port, int timeout_ms);

/*
 * Waits until the process pid (any process, not only a child) has exited:
 * a zombie counts as gone. 0, or CG_ETIMEOUT. For tests that check a
 * server died with its parent; make the test a child subreaper
 * (PR_SET_CHILD_SUBREAPER) to be able to reap such orphans too.
 */
int cg_harness_pid_wait_gone(pid_t pid, int timeout_ms);

/* Number of lines of the file at path that contain needle, or CG_EIO. */
int cg_harness_file_grep(const char *path, const char *needle);

#endif
