/*
 * redis — the one Redis client of every process, on the event loop.
 *
 * The worker's cache stage, the producer's freshness check,
 * contactguard-report and contactguard-remediate all reach Redis through
 * this client. It owns its socket (TCP, or TLS through OpenSSL when
 * redis.tls is set: Azure Cache for Redis serves TLS only) and uses
 * hiredis only for what hiredis does well and needs no socket for: the
 * command formatter (redisFormatCommandArgv) and the reply parser
 * (redisReader). The loop watches the socket the way it watches libcurl's
 * and librdkafka's, so a worker waiting on Redis never stops turning.
 *
 * A request is one to CG_REDIS_CMDS_MAX commands whose replies come back
 * together to one callback. Requests wait in a bounded queue (redis.queue_max)
 * and go out in batches of up to CG_REDIS_BATCH_MAX, pipelined: one write,
 * one round trip. One batch is in flight at a time, and what arrives
 * meanwhile makes the next one, so batches grow with the load.
 *
 * Callbacks run on the loop, never inside the call that queued the request.
 * Until the first connection attempt has finished, requests queue. When
 * Redis is down (a connection failed or broke), requests are answered on the
 * next loop turn with CG_EREDIS and the client reconnects with capped,
 * jittered exponential backoff. A batch that got no reply at all (a restart
 * behind an idle connection) is sent once more on a fresh connection before
 * it is failed. A full queue answers CG_EBUSY.
 *
 * Connecting: the host name resolved off the loop (getaddrinfo_a), TCP to
 * each of its addresses in turn, then TLS (TLS 1.2 or later, the certificate
 * verified against redis.tls_ca_file or the system CAs, the host name against
 * redis.tls_server_name or redis.host; no plaintext fallback), then
 * AUTH [username] password, SELECT, the scripts given to cg_redis_preload
 * (SCRIPT LOAD), and PING. A refused certificate is logged once and
 * reported by cg_redis_stats (tls_refused) until a handshake succeeds.
 *
 * The synchronous mode (cg_redis_open, cg_redis_run) is the same client on
 * a loop of its own, turned until the answer is in: the command-line tools
 * and the producer's checks use it.
 */
#ifndef CG_REDIS_H
#define CG_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_loop;
struct cg_conf;
struct cg_buf;
struct redisReply; /* hiredis's reply tree (<hiredis/hiredis.h>) */

#define CG_REDIS_CMDS_MAX       4     /* commands in one request */
#define CG_REDIS_BATCH_MAX      256   /* requests pipelined at once */
#define CG_REDIS_QUEUE_MAX      10000 /* default of redis.queue_max */
#define CG_REDIS_BACKOFF_MIN_MS 100   /* first reconnect delay */
#define CG_REDIS_BACKOFF_MAX_MS 5000  /* reconnect delay cap */
#define CG_REDIS_SCRIPTS_MAX    4     /* scripts preloaded on connect */

struct cg_redis;

/* One command: argc arguments, binary-safe (len[i] bytes each). */
struct cg_redis_cmd {
    int argc;
    const char *const *argv;
    const size_t *len;
};

/* Counters for /metrics; a snapshot. */
struct cg_redis_stats {
    uint64_t requests;   /* requests answered */
    uint64_t errors;     /* answered with an error (not error replies) */
    uint64_t dropped;    /* refused because the queue was full */
    uint64_t reconnects; /* connections made after the first */
    uint64_t batches;    /* pipelined writes sent (round trips) */
    size_t queue_depth;  /* requests waiting for a batch */
    size_t in_flight;    /* requests sent, replies pending */
    bool connected;
    bool tls_refused; /* the last handshake refused the certificate */
};

/*
 * err: 0 when every command got a reply (an error reply is still a reply:
 * look at reply[i]->type), else CG_EREDIS (down, broken, timed out),
 * CG_EBUSY (queue full), CG_EINVAL (a bad command) or CG_ECANCELLED (the
 * client is being freed), and reply is NULL. The replies are borrowed for
 * the call; cg_redis_reply_take keeps one.
 */
typedef void (*cg_redis_fn)(int err, struct redisReply *const *reply,
                            int nreply, void *arg);

/*
 * A client for the redis.* settings of conf, on loop (call on the loop
 * thread). Connecting starts at once and happens on the loop, so this
 * returns even when Redis is unreachable. NULL with errbuf (CG_ECONF) on a
 * bad setting (an unreadable CA file, a key that does not match the
 * certificate).
 */
struct cg_redis *cg_redis_new(struct cg_loop *loop, const struct cg_conf *conf,
                              char *errbuf, size_t errsz);

/*
 * Adds a Lua script to load on every connection (before the first
 * request), so EVALSHA of its SHA-1 finds it. script is borrowed and must
 * outlive the client (a static string). Call before the first request.
 */
void cg_redis_preload(struct cg_redis *r, const char *script);

/*
 * Queues one request of ncmd commands (1..CG_REDIS_CMDS_MAX; copied before
 * return). fn is called exactly once, on the loop, never before this
 * returns. fn may be NULL. Returns 0 when queued, else the error fn will
 * get on the next turn (CG_EBUSY, CG_EREDIS, CG_EINVAL, CG_ECANCELLED), so
 * that a caller can count a refusal at once.
 */
int cg_redis_call(struct cg_redis *r, const struct cg_redis_cmd *cmds, int ncmd,
                  cg_redis_fn fn, void *arg);

/* Keeps reply i of a callback: the caller frees it (cg_redis_reply_free). */
struct redisReply *cg_redis_reply_take(struct redisReply *const *reply, int i);
void cg_redis_reply_free(struct redisReply *reply);

/* "host:port" and "tls" or "tcp", for messages; never a secret. */
const char *cg_redis_peer(const struct cg_redis *r);

void cg_redis_stats(const struct cg_redis *r, struct cg_redis_stats *out);

/*
 * Shutdown: for at most timeout_ms, sends what is queued over the open
 * connection and reads the replies, without turning the loop and without
 * running any callback (the answers are run by cg_redis_free, with their
 * replies). Returns true when nothing is left unanswered. A client that is
 * not connected returns at once. NULL-ok.
 */
bool cg_redis_settle(struct cg_redis *r, int timeout_ms);

/*
 * Stops: the connection is closed, then every callback not yet run is
 * called with CG_ECANCELLED, here. Those callbacks may call the client
 * again: what they ask is answered CG_ECANCELLED before free returns. Not
 * from one of the client's callbacks. NULL is fine.
 */
void cg_redis_free(struct cg_redis *r);

/* ---- the synchronous mode ---- */

/*
 * A client on a loop of its own, connected before return (redis.timeout_ms
 * for the connection and for each command). NULL with errbuf (CG_EREDIS
 * when Redis cannot be reached or refuses us, CG_ECONF on a bad setting);
 * the password never appears in errbuf. Free with cg_redis_free.
 */
struct cg_redis *cg_redis_open(const struct cg_conf *conf, char *errbuf,
                               size_t errsz);

/*
 * Sends ncmd commands pipelined and waits for their replies, stored in
 * reply[0..ncmd-1] (the caller frees each with cg_redis_reply_free). An
 * error reply is returned as a reply. Returns 0, or CG_EREDIS with errbuf
 * (what: the command, for the message) and every reply[i] NULL.
 */
int cg_redis_run(struct cg_redis *r, const struct cg_redis_cmd *cmds, int ncmd,
                 struct redisReply **reply, const char *what, char *errbuf,
                 size_t errsz);

#endif
