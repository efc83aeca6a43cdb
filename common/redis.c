#include "redis.h"

#include "conf.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REDIS_HELLO_MAX  (3 + CG_REDIS_SCRIPTS_MAX) /* AUTH SELECT .. PING */
#define REDIS_REQ_CMDS   REDIS_HELLO_MAX
#define REDIS_READ_CHUNK (16 * 1024)
#define REDIS_SPARE_MAX  CG_REDIS_BATCH_MAX /* request records kept */
#define REDIS_ERR_MAX    256

struct redis_req {
    struct redis_req *next;
    char *cmd[REDIS_REQ_CMDS]; /* RESP, from redisFormatCommandArgv */
    int cmdlen[REDIS_REQ_CMDS];
    redisReply *reply[REDIS_REQ_CMDS];
    int ncmd;
    int nreply;
    int err;
    bool hello;   /* the connection's own handshake */
    bool retried; /* already sent once on a connection that died */
    const char *what[REDIS_REQ_CMDS]; /* handshake: each command's name */
    cg_redis_fn fn;
    void *arg;
};

struct req_list {
    struct redis_req *head, *tail;
    size_t n;
};

enum redis_state {
    STATE_CONNECTING, /* requests queue until the attempt is over */
    STATE_UP,
    STATE_DOWN, /* requests are answered at once with CG_EREDIS */
};

enum conn_phase {
    CONN_NONE,
    CONN_RESOLVE, /* getaddrinfo_a in progress */
    CONN_TCP,     /* non-blocking connect in progress */
    CONN_TLS,     /* TLS handshake */
    CONN_HELLO,   /* AUTH, SELECT, SCRIPT LOAD, PING sent */
    CONN_UP,
};

/*
 * A host name resolved without blocking the loop: glibc's getaddrinfo_a
 * runs the lookup on its own helper thread and the loop polls it. A
 * lookup that outlives its timeout cannot be stopped, so it is set aside
 * (abandoned) and freed once it has finished.
 */
struct redis_resolve {
    struct redis_resolve *next;
    struct gaicb cb;
    struct addrinfo hints;
    char host[256];
    char port[16];
};

struct cg_redis {
    struct cg_loop *loop;
    bool own_loop; /* the synchronous mode */
    bool stopping;

    /* settings */
    char *host;
    int port;
    char *username;
    char *password;
    long long db;
    int timeout_ms;
    size_t queue_max;
    bool tls;
    char *server_name;
    SSL_CTX *ssl_ctx;
    char peer[300];
    const char *scripts[CG_REDIS_SCRIPTS_MAX];
    char script_sha[CG_REDIS_SCRIPTS_MAX][41];
    int nscripts;

    /* the connection */
    enum conn_phase phase;
    struct redis_resolve *resolve;   /* the lookup in progress */
    struct redis_resolve *abandoned; /* timed out, still running */
    struct cg_loop_timer resolve_poll;
    struct addrinfo *addrs;           /* the host's addresses */
    const struct addrinfo *addr_next; /* tried after the current one */
    int fd;
    SSL *ssl;
    bool ssl_want_write; /* SSL_read or SSL_connect waits to write */
    struct cg_loop_io io;
    unsigned io_events;
    redisReader *reader;
    struct cg_buf out;
    size_t out_off;
    bool batch_replied; /* a reply came for the batch in flight */
    unsigned gen;       /* bumped by every disconnect */

    /* scheduling */
    enum redis_state state;
    struct cg_loop_timer deadline; /* connect or reply timeout */
    struct cg_loop_timer retry;    /* reconnect backoff */
    struct cg_loop_timer kick;     /* next turn: answer, send */
    int64_t backoff_ms;
    unsigned seed;
    bool ever_connected;
    char last_err[REDIS_ERR_MAX];

    struct req_list queue;    /* waiting for a batch */
    struct req_list inflight; /* sent, in reply order */
    struct req_list answered; /* failed before sending: called next turn */
    struct req_list settled;  /* answered during cg_redis_settle: for free */
    bool settling;
    struct req_list spare; /* records to reuse */
    struct cg_redis_stats stats;
};

static void conn_start(struct cg_redis *r);
static void conn_fail(struct cg_redis *r, const char *why);
static void deadline_arm(struct cg_redis *r);
static bool conn_connect_next(struct cg_redis *r);
static void kick_soon(struct cg_redis *r);

/* ---- lists and records ---- */

static void list_push(struct req_list *l, struct redis_req *q)
{
    q->next = NULL;
    if (l->tail)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
    l->n++;
}

static void list_push_front(struct req_list *l, struct redis_req *q)
{
    q->next = l->head;
    l->head = q;
    if (!l->tail)
        l->tail = q;
    l->n++;
}

static struct redis_req *list_pop(struct req_list *l)
{
    struct redis_req *q = l->head;
    if (q) {
        l->head = q->next;
        if (!l->head)
            l->tail = NULL;
        l->n--;
        q->next = NULL;
    }
    return q;
}

static void req_clear_replies(struct redis_req *q)
{
    for (int i = 0; i < q->nreply; i++)
        if (q->reply[i])
            freeReplyObject(q->reply[i]);
    memset(q->reply, 0, sizeof(q->reply));
    q->nreply = 0;
}

static struct redis_req *req_get(struct cg_redis *r)
{
    struct redis_req *q = list_pop(&r->spare);
    if (!q)
        q = cg_calloc(1, sizeof(*q));
    return q;
}

/* Returns a finished record to the spare list (bounded) or frees it. */
static void req_put(struct cg_redis *r, struct redis_req *q)
{
    req_clear_replies(q);
    for (int i = 0; i < q->ncmd; i++)
        free(q->cmd[i]);
    memset(q, 0, sizeof(*q));
    if (r->spare.n < REDIS_SPARE_MAX)
        list_push(&r->spare, q);
    else
        free(q);
}

static int req_add_cmd(struct redis_req *q, int argc, const char *const *argv,
                       const size_t *len)
{
    char *s = NULL;
    int n = argc > 0
                ? redisFormatCommandArgv(&s, argc, (const char **)argv, len)
                : -1;
    if (n < 0 || !s)
        return CG_EINVAL;
    q->cmd[q->ncmd] = s;
    q->cmdlen[q->ncmd] = n;
    q->ncmd++;
    return 0;
}

/* Runs q's callback, then recycles it. */
static void req_finish(struct cg_redis *r, struct redis_req *q)
{
    r->stats.requests++;
    if (q->err)
        r->stats.errors++;
    if (q->err == CG_EBUSY)
        r->stats.dropped++;
    if (q->fn) {
        if (q->err)
            q->fn(q->err, NULL, 0, q->arg);
        else
            q->fn(0, q->reply, q->nreply, q->arg);
    }
    req_put(r, q);
}

/* Answers q on the next turn (never inside the call that queued it). */
static void req_answer_later(struct cg_redis *r, struct redis_req *q, int err)
{
    q->err = err;
    req_clear_replies(q);
    list_push(&r->answered, q);
    kick_soon(r);
}

static void list_fail(struct cg_redis *r, struct req_list *l, int err)
{
    struct redis_req *q;
    while ((q = list_pop(l))) {
        if (q->hello)
            req_put(r, q);
        else
            req_answer_later(r, q, err);
    }
}

/* ---- settings ---- */

static void secret_free(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

static bool is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* The first OpenSSL error, as text, for a message. */
static const char *ssl_err_text(char *buf, size_t sz)
{
    unsigned long e = ERR_get_error();
    if (!e)
        return "unknown TLS error";
    ERR_error_string_n(e, buf, sz);
    ERR_clear_error();
    return buf;
}

static int tls_setup(struct cg_redis *r, const struct cg_conf *conf,
                     char *errbuf, size_t errsz)
{
    const char *ca = cg_conf_str(conf, "redis.tls_ca_file");
    const char *cert = cg_conf_str(conf, "redis.tls_cert_file");
    const char *key = cg_conf_str(conf, "redis.tls_key_file");
    char e[256];

    ERR_clear_error();
    r->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!r->ssl_ctx)
        return cg_err_set(errbuf, errsz, CG_ECONF, "redis TLS: %s",
                          ssl_err_text(e, sizeof(e)));
    SSL_CTX_set_min_proto_version(r->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(r->ssl_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(r->ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                     SSL_MODE_RELEASE_BUFFERS);
    if (*ca ? SSL_CTX_load_verify_locations(r->ssl_ctx, ca, NULL) != 1
            : SSL_CTX_set_default_verify_paths(r->ssl_ctx) != 1)
        return cg_err_set(errbuf, errsz, CG_ECONF, "redis.tls_ca_file '%s': %s",
                          *ca ? ca : "(system)", ssl_err_text(e, sizeof(e)));
    if (!*cert != !*key)
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "redis.tls_cert_file and redis.tls_key_file go "
                          "together");
    if (*cert) {
        if (SSL_CTX_use_certificate_chain_file(r->ssl_ctx, cert) != 1)
            return cg_err_set(errbuf, errsz, CG_ECONF,
                              "redis.tls_cert_file '%s': %s", cert,
                              ssl_err_text(e, sizeof(e)));
        /* The key's text never reaches the message, only its path. */
        if (SSL_CTX_use_PrivateKey_file(r->ssl_ctx, key, SSL_FILETYPE_PEM) !=
                1 ||
            SSL_CTX_check_private_key(r->ssl_ctx) != 1)
            return cg_err_set(errbuf, errsz, CG_ECONF,
                              "redis.tls_key_file '%s': %s", key,
                              ssl_err_text(e, sizeof(e)));
    }
    return 0;
}

static int settings_from(struct cg_redis *r, const struct cg_conf *conf,
                         char *errbuf, size_t errsz)
{
    const char *sn = cg_conf_str(conf, "redis.tls_server_name");
    r->host = cg_strdup(cg_conf_str(conf, "redis.host"));
    r->port = (int)cg_conf_int(conf, "redis.port");
    r->username = cg_strdup(cg_conf_str(conf, "redis.username"));
    r->password = cg_strdup(cg_conf_str(conf, "redis.password"));
    r->db = cg_conf_int(conf, "redis.db");
    r->timeout_ms = (int)cg_conf_int(conf, "redis.timeout_ms");
    r->queue_max = (size_t)cg_conf_int(conf, "redis.queue_max");
    r->tls = cg_conf_bool(conf, "redis.tls");
    r->server_name = cg_strdup(*sn ? sn : r->host);
    snprintf(r->peer, sizeof(r->peer), "%.255s:%d %s", r->host, r->port,
             r->tls ? "tls" : "tcp");
    if (!*r->host)
        return cg_err_set(errbuf, errsz, CG_ECONF, "redis.host is empty");
    if (r->port <= 0)
        return cg_err_set(errbuf, errsz, CG_ECONF, "redis.port is 0");
    if (*r->username && !*r->password)
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "redis.username needs redis.password");
    return r->tls ? tls_setup(r, conf, errbuf, errsz) : 0;
}

/* ---- the socket ---- */

static void io_want(struct cg_redis *r)
{
    unsigned ev = CG_LOOP_READ;
    if (r->phase == CONN_TCP || r->out_off < r->out.len || r->ssl_want_write)
        ev |= CG_LOOP_WRITE;
    if (r->io.active && ev != r->io_events)
        cg_loop_io_modify(r->loop, &r->io, ev);
    r->io_events = ev;
}

#define REDIS_RESOLVE_WAIT_MS 1000 /* free waits this long for a lookup */

/*
 * Frees the abandoned lookups that have finished. With wait (free), each
 * still running gets up to REDIS_RESOLVE_WAIT_MS in all; one that outlives
 * that is left allocated on purpose: glibc's helper thread will still write
 * into it, and a stop must stay bounded.
 */
static void resolve_reap(struct cg_redis *r, bool wait)
{
    struct redis_resolve **pp = &r->abandoned;
    int64_t until = cg_loop_now_ms() + REDIS_RESOLVE_WAIT_MS;
    while (*pp) {
        struct redis_resolve *rs = *pp;
        if (wait && gai_cancel(&rs->cb) == EAI_NOTCANCELED) {
            const struct gaicb *list[] = { &rs->cb };
            int64_t left;
            while (gai_error(&rs->cb) == EAI_INPROGRESS &&
                   (left = until - cg_loop_now_ms()) > 0) {
                struct timespec ts = { .tv_sec = left / 1000,
                                       .tv_nsec = (left % 1000) * 1000000 };
                gai_suspend(list, 1, &ts);
            }
        }
        if (gai_error(&rs->cb) == EAI_INPROGRESS) {
            pp = &rs->next;
            continue;
        }
        *pp = rs->next;
        if (rs->cb.ar_result)
            freeaddrinfo(rs->cb.ar_result);
        free(rs);
    }
}

static void conn_close(struct cg_redis *r)
{
    cg_loop_timer_cancel(r->loop, &r->resolve_poll);
    if (r->resolve) {
        gai_cancel(&r->resolve->cb);
        r->resolve->next = r->abandoned;
        r->abandoned = r->resolve;
        r->resolve = NULL;
    }
    resolve_reap(r, false);
    if (r->io.active)
        cg_loop_io_del(r->loop, &r->io);
    if (r->ssl) {
        SSL_free(r->ssl); /* no close_notify: the socket may be dead */
        r->ssl = NULL;
    }
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    if (r->reader)
        redisReaderFree(r->reader);
    r->reader = NULL;
    if (r->addrs)
        freeaddrinfo(r->addrs);
    r->addrs = NULL;
    r->addr_next = NULL;
    cg_buf_reset(&r->out);
    r->out_off = 0;
    r->ssl_want_write = false;
    r->phase = CONN_NONE;
    r->gen++;
    cg_loop_timer_cancel(r->loop, &r->deadline);
    ERR_clear_error();
}

/* Writes what is buffered; false when the connection failed. */
static bool conn_flush(struct cg_redis *r)
{
    while (r->out_off < r->out.len) {
        size_t left = r->out.len - r->out_off;
        ssize_t n;
        if (r->ssl) {
            ERR_clear_error();
            int w = SSL_write(r->ssl, r->out.data + r->out_off,
                              left > INT32_MAX ? INT32_MAX : (int)left);
            if (w <= 0) {
                int e = SSL_get_error(r->ssl, w);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                    break;
                char t[256];
                char why[300];
                snprintf(why, sizeof(why), "TLS write: %s",
                         e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0
                             ? strerror(errno)
                             : ssl_err_text(t, sizeof(t)));
                conn_fail(r, why);
                return false;
            }
            n = w;
        } else {
            n = send(r->fd, r->out.data + r->out_off, left, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    break;
                char why[128];
                snprintf(why, sizeof(why), "write: %s", strerror(errno));
                conn_fail(r, why);
                return false;
            }
        }
        r->out_off += (size_t)n;
        /* A server still taking a large batch is not a silent one. */
        if (r->phase == CONN_UP && r->inflight.n)
            deadline_arm(r);
    }
    if (r->out_off == r->out.len) {
        cg_buf_reset(&r->out);
        r->out_off = 0;
    }
    io_want(r);
    return true;
}

static void req_append(struct cg_redis *r, struct redis_req *q)
{
    for (int i = 0; i < q->ncmd; i++)
        if (cg_buf_append(&r->out, q->cmd[i], (size_t)q->cmdlen[i]))
            abort(); /* the buffer has no max: only memory can fail */
}

static void deadline_fired(struct cg_loop *loop, void *arg)
{
    struct cg_redis *r = arg;
    static const char *const what[] = { "",
                                        "name resolution timed out",
                                        "connect timed out",
                                        "TLS handshake timed out",
                                        "handshake timed out",
                                        "reply timed out" };
    char why[128];
    snprintf(why, sizeof(why), "%s after %d ms", what[r->phase], r->timeout_ms);
    if (r->phase == CONN_TLS)
        cg_strlcpy(why + strlen(why),
                   " (does the server speak TLS on this port?)",
                   sizeof(why) - strlen(why));
    conn_fail(r, why);
}

static void deadline_arm(struct cg_redis *r)
{
    cg_loop_timer_add(r->loop, &r->deadline, r->timeout_ms, deadline_fired, r);
}

/* Sends the next batch when nothing is in flight. */
static void send_batch(struct cg_redis *r)
{
    if (r->phase == CONN_NONE && r->state == STATE_CONNECTING && r->queue.n &&
        !r->stopping) {
        conn_start(r);
        return;
    }
    if (r->phase != CONN_UP || r->inflight.n || !r->queue.n)
        return;
    while (r->inflight.n < CG_REDIS_BATCH_MAX && r->queue.n) {
        struct redis_req *q = list_pop(&r->queue);
        req_append(r, q);
        list_push(&r->inflight, q);
    }
    r->stats.queue_depth = r->queue.n;
    r->stats.in_flight = r->inflight.n;
    r->batch_replied = false;
    r->stats.batches++;
    deadline_arm(r);
    conn_flush(r);
}

static void became_up(struct cg_redis *r)
{
    r->phase = CONN_UP;
    r->state = STATE_UP;
    r->stats.connected = true;
    r->stats.tls_refused = false;
    r->backoff_ms = CG_REDIS_BACKOFF_MIN_MS;
    cg_loop_timer_cancel(r->loop, &r->deadline);
    if (r->ever_connected)
        r->stats.reconnects++;
    if (!r->own_loop)
        cg_info(r->ever_connected ? "redis_reconnected" : "redis_connected",
                "peer=\"%s\" db=%lld", r->peer, r->db);
    r->ever_connected = true;
    r->last_err[0] = '\0';
    send_batch(r);
}

/* The handshake's replies: any error but SCRIPT LOAD's ends the attempt
 * (a refused SCRIPT LOAD shows on the EVALSHAs themselves). */
static void hello_done(struct cg_redis *r, struct redis_req *q)
{
    for (int i = 0; i < q->nreply; i++) {
        const redisReply *rep = q->reply[i];
        bool script = strcmp(q->what[i], "SCRIPT LOAD") == 0;
        if (rep->type == REDIS_REPLY_ERROR && !script) {
            char why[REDIS_ERR_MAX];
            /* Redis's own AUTH and SELECT errors name no password. */
            snprintf(why, sizeof(why), "%s: %.160s", q->what[i], rep->str);
            req_put(r, q);
            conn_fail(r, why);
            return;
        }
    }
    req_put(r, q);
    became_up(r);
}

static void hello_send(struct cg_redis *r)
{
    struct redis_req *q = req_get(r);
    char db[24];
    q->hello = true;
    r->phase = CONN_HELLO;
    if (*r->password) {
        const char *argv[] = { "AUTH", r->username, r->password };
        size_t len[] = { 4, strlen(r->username), strlen(r->password) };
        q->what[q->ncmd] = "AUTH";
        if (*r->username) {
            req_add_cmd(q, 3, argv, len);
        } else {
            argv[1] = r->password;
            len[1] = len[2];
            req_add_cmd(q, 2, argv, len);
        }
    }
    if (r->db) {
        snprintf(db, sizeof(db), "%lld", r->db);
        const char *argv[] = { "SELECT", db };
        size_t len[] = { 6, strlen(db) };
        q->what[q->ncmd] = "SELECT";
        req_add_cmd(q, 2, argv, len);
    }
    for (int i = 0; i < r->nscripts; i++) {
        const char *argv[] = { "SCRIPT", "LOAD", r->scripts[i] };
        size_t len[] = { 6, 4, strlen(r->scripts[i]) };
        q->what[q->ncmd] = "SCRIPT LOAD";
        req_add_cmd(q, 3, argv, len);
    }
    const char *ping[] = { "PING" };
    size_t ping_len[] = { 4 };
    q->what[q->ncmd] = "PING";
    req_add_cmd(q, 1, ping, ping_len);
    list_push_front(&r->inflight, q);
    req_append(r, q);
    conn_flush(r);
}

/*
 * Someone flushed the script cache (SCRIPT FLUSH, a failover to a replica
 * that never saw SCRIPT LOAD): an EVALSHA of a preloaded script is sent
 * once more as EVAL, which loads it again for the EVALSHAs that follow.
 * Only one-command requests: a second command would run twice.
 */
static bool noscript_again(struct cg_redis *r, struct redis_req *q)
{
    static const char head[] = "\r\n$7\r\nEVALSHA\r\n$40\r\n";
    const redisReply *rep = q->reply[0];
    if (q->ncmd != 1 || q->retried || rep->type != REDIS_REPLY_ERROR ||
        strncmp(rep->str, "NOSCRIPT", 8) != 0)
        return false;
    const char *cmd = q->cmd[0], *h = strstr(cmd, head);
    if (!h || h - cmd > 12)
        return false;
    const char *sha = h + sizeof(head) - 1;
    int k;
    for (k = 0; k < r->nscripts; k++)
        if (strncmp(sha, r->script_sha[k], 40) == 0)
            break;
    if (k == r->nscripts)
        return false;
    const char *rest = sha + 40; /* "\r\n" then the other arguments */
    struct cg_buf b;
    cg_buf_init(&b, SIZE_MAX);
    cg_buf_append(&b, cmd, (size_t)(h - cmd));
    cg_buf_printf(&b, "\r\n$4\r\nEVAL\r\n$%zu\r\n%s", strlen(r->scripts[k]),
                  r->scripts[k]);
    cg_buf_append(&b, rest, (size_t)q->cmdlen[0] - (size_t)(rest - cmd));
    free(q->cmd[0]);
    q->cmdlen[0] = (int)b.len;
    q->cmd[0] = cg_buf_take(&b);
    req_clear_replies(q);
    q->retried = true;
    list_push_front(&r->queue, q);
    r->stats.queue_depth = r->queue.n;
    return true;
}

/* One reply: it belongs to the oldest request in flight. */
static void reply_take(struct cg_redis *r, redisReply *rep)
{
    struct redis_req *q = r->inflight.head;
    if (!q) {
        freeReplyObject(rep);
        conn_fail(r, "a reply nobody asked for");
        return;
    }
    q->reply[q->nreply++] = rep;
    if (!q->hello)
        r->batch_replied = true;
    if (q->nreply < q->ncmd)
        return;
    list_pop(&r->inflight);
    r->stats.in_flight = r->inflight.n;
    if (q->hello)
        hello_done(r, q);
    else if (noscript_again(r, q))
        ;
    else if (r->settling)
        list_push(&r->settled, q); /* its callback is run by free */
    else
        req_finish(r, q);
}

static void conn_read(struct cg_redis *r)
{
    char buf[REDIS_READ_CHUNK];
    unsigned gen = r->gen;
    for (;;) {
        ssize_t n;
        if (r->ssl) {
            ERR_clear_error();
            int got = SSL_read(r->ssl, buf, sizeof(buf));
            r->ssl_want_write = false;
            if (got <= 0) {
                int e = SSL_get_error(r->ssl, got);
                if (e == SSL_ERROR_WANT_READ)
                    break;
                if (e == SSL_ERROR_WANT_WRITE) {
                    r->ssl_want_write = true;
                    break;
                }
                char t[256], why[300];
                snprintf(why, sizeof(why), "TLS read: %s",
                         e == SSL_ERROR_ZERO_RETURN
                             ? "connection closed by the server"
                             : ssl_err_text(t, sizeof(t)));
                if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
                    cg_strlcpy(why, "connection closed by the server",
                               sizeof(why));
                conn_fail(r, why);
                return;
            }
            n = got;
        } else {
            n = recv(r->fd, buf, sizeof(buf), 0);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                char why[160];
                /* A TLS-only server drops a plaintext handshake. */
                snprintf(why, sizeof(why), "%s%s",
                         n == 0 ? "connection closed by the server"
                                : strerror(errno),
                         r->phase == CONN_HELLO
                             ? " (does the server want TLS? redis.tls)"
                             : "");
                conn_fail(r, why);
                return;
            }
        }
        if (redisReaderFeed(r->reader, buf, (size_t)n) != REDIS_OK) {
            conn_fail(r, "reply parser out of memory");
            return;
        }
        if ((size_t)n < sizeof(buf) && !(r->ssl && SSL_pending(r->ssl)))
            break;
    }
    /* Progress resets the reply timeout: only a silent server times out. */
    if (r->inflight.n)
        deadline_arm(r);
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(r->reader, &rep) != REDIS_OK) {
            char why[200];
            snprintf(why, sizeof(why), "protocol error: %.120s",
                     r->reader->errstr);
            conn_fail(r, why);
            return;
        }
        if (!rep)
            break;
        reply_take(r, rep);
        if (gen != r->gen)
            return; /* a handshake error or a callback ended the connection */
    }
    if (!r->inflight.n)
        cg_loop_timer_cancel(r->loop, &r->deadline);
    send_batch(r);
    if (gen == r->gen)
        io_want(r);
}

static void tls_step(struct cg_redis *r)
{
    ERR_clear_error();
    int rc = SSL_connect(r->ssl);
    if (rc == 1) {
        hello_send(r);
        return;
    }
    int e = SSL_get_error(r->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        r->ssl_want_write = e == SSL_ERROR_WANT_WRITE;
        io_want(r);
        return;
    }
    char why[REDIS_ERR_MAX], t[200];
    long v = SSL_get_verify_result(r->ssl);
    if (v != X509_V_OK) {
        /* Not a transient fault: said once, and /readyz says not ready. */
        r->stats.tls_refused = true;
        bool issuer = v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                      v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
                      v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                      v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
        snprintf(why, sizeof(why),
                 "TLS certificate refused: %s (server name %.100s%s)",
                 X509_verify_cert_error_string(v), r->server_name,
                 issuer ? "; not signed by a CA of redis.tls_ca_file" : "");
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        snprintf(why, sizeof(why),
                 "TLS handshake: connection closed (does the server "
                 "speak TLS on this port?)");
    } else {
        snprintf(why, sizeof(why),
                 "TLS handshake failed: %.150s (does the server speak TLS "
                 "on this port?)",
                 ssl_err_text(t, sizeof(t)));
    }
    conn_fail(r, why);
}

static bool tls_begin(struct cg_redis *r)
{
    r->phase = CONN_TLS;
    r->ssl = SSL_new(r->ssl_ctx);
    if (!r->ssl || SSL_set_fd(r->ssl, r->fd) != 1) {
        conn_fail(r, "TLS: cannot make a session");
        return false;
    }
    X509_VERIFY_PARAM *vp = SSL_get0_param(r->ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    bool ok;
    if (is_ip_literal(r->server_name)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(vp, r->server_name) == 1;
    } else {
        ok = SSL_set1_host(r->ssl, r->server_name) == 1 &&
             SSL_set_tlsext_host_name(r->ssl, r->server_name) == 1;
    }
    if (!ok) {
        conn_fail(r, "TLS: cannot set the server name");
        return false;
    }
    tls_step(r);
    return true;
}

static void on_io(struct cg_loop *loop, int fd, unsigned events, void *arg)
{
    struct cg_redis *r = arg;
    switch (r->phase) {
    case CONN_TCP: {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            soerr = errno;
        if (soerr && r->addr_next) {
            conn_connect_next(r); /* the host's next address */
            return;
        }
        if (soerr) {
            char why[128];
            snprintf(why, sizeof(why), "connect: %s", strerror(soerr));
            conn_fail(r, why);
            return;
        }
        if (r->tls)
            tls_begin(r);
        else
            hello_send(r);
        return;
    }
    case CONN_TLS:
        tls_step(r);
        return;
    case CONN_HELLO:
    case CONN_UP: {
        unsigned gen = r->gen;
        if ((events & CG_LOOP_WRITE) && !r->ssl_want_write &&
            r->out_off < r->out.len && !conn_flush(r))
            return;
        if (gen == r->gen)
            conn_read(r);
        return;
    }
    case CONN_NONE:
    case CONN_RESOLVE:
        return;
    }
}

/* Opens a socket to the next address that takes a non-blocking connect;
 * false (and the attempt failed) when none is left. */
static bool conn_connect_next(struct cg_redis *r)
{
    char why[REDIS_ERR_MAX];
    int fd = -1, rc = -1, err = EADDRNOTAVAIL;
    if (r->io.active)
        cg_loop_io_del(r->loop, &r->io);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    while (r->addr_next && rc < 0) {
        const struct addrinfo *a = r->addr_next;
        r->addr_next = a->ai_next;
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS)
            rc = 0;
        if (rc < 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        snprintf(why, sizeof(why), "connect: %s", strerror(err));
        conn_fail(r, why);
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    r->fd = fd;
    r->phase = CONN_TCP;
    char e[128];
    if (cg_loop_io_add(r->loop, &r->io, fd, CG_LOOP_READ | CG_LOOP_WRITE, on_io,
                       r, e, sizeof(e))) {
        conn_fail(r, e);
        return false;
    }
    r->io_events = CG_LOOP_READ | CG_LOOP_WRITE;
    return true;
}

/* Takes the address list ai and connects to the first that answers. */
static void conn_connect(struct cg_redis *r, struct addrinfo *ai)
{
    r->addrs = ai;
    r->addr_next = ai;
    if (!r->reader)
        r->reader = redisReaderCreate();
    conn_connect_next(r);
}

#define REDIS_RESOLVE_POLL_MS 5

static void resolve_polled(struct cg_loop *loop, void *arg)
{
    struct cg_redis *r = arg;
    struct redis_resolve *rs = r->resolve;
    int e = gai_error(&rs->cb);
    if (e == EAI_INPROGRESS) {
        cg_loop_timer_add(loop, &r->resolve_poll, REDIS_RESOLVE_POLL_MS,
                          resolve_polled, r);
        return;
    }
    r->resolve = NULL;
    struct addrinfo *ai = rs->cb.ar_result;
    free(rs);
    if (e) {
        char why[REDIS_ERR_MAX];
        snprintf(why, sizeof(why), "cannot resolve: %s", gai_strerror(e));
        conn_fail(r, why);
        return;
    }
    conn_connect(r, ai);
}

/*
 * Starts a connection attempt; redis.timeout_ms bounds it up to the end of
 * the handshake. An address is used as it is; a host name is resolved in
 * the background (getaddrinfo_a), so a slow DNS never stalls the loop.
 */
static void conn_start(struct cg_redis *r)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST };
    char port[16];

    cg_loop_timer_cancel(r->loop, &r->retry);
    resolve_reap(r, false);
    snprintf(port, sizeof(port), "%d", r->port);
    r->phase = CONN_RESOLVE;
    deadline_arm(r);
    if (is_ip_literal(r->host)) {
        struct addrinfo *ai = NULL;
        int g = getaddrinfo(r->host, port, &hints, &ai);
        if (g) {
            char why[REDIS_ERR_MAX];
            snprintf(why, sizeof(why), "address: %s", gai_strerror(g));
            conn_fail(r, why);
            return;
        }
        conn_connect(r, ai);
        return;
    }
    struct redis_resolve *rs = cg_calloc(1, sizeof(*rs));
    cg_strlcpy(rs->host, r->host, sizeof(rs->host));
    cg_strlcpy(rs->port, port, sizeof(rs->port));
    rs->hints = hints;
    rs->hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    rs->cb.ar_name = rs->host;
    rs->cb.ar_service = rs->port;
    rs->cb.ar_request = &rs->hints;
    struct gaicb *list[] = { &rs->cb };
    int g = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    if (g) {
        free(rs);
        char why[REDIS_ERR_MAX];
        snprintf(why, sizeof(why), "cannot resolve: %s", gai_strerror(g));
        conn_fail(r, why);
        return;
    }
    r->resolve = rs;
    cg_loop_timer_add(r->loop, &r->resolve_poll, 0, resolve_polled, r);
}

static void retry_fired(struct cg_loop *loop, void *arg)
{
    conn_start(arg);
}

/*
 * The connection failed or broke. A batch that got no reply at all on a
 * connection that had been up (most likely one the server closed while we
 * were idle: a restart, an idle timeout) gets one fresh connection before
 * it is failed; anything else is failed and the client is down until a
 * reconnect, with capped jittered backoff so that a fleet of workers does
 * not reconnect in step after a Redis restart.
 */
static void conn_fail(struct cg_redis *r, const char *why)
{
    bool was_up = r->phase == CONN_UP;
    struct redis_req *first = r->inflight.head;
    conn_close(r);
    if (r->stopping)
        return;
    if (was_up && !first) {
        /* Closed while idle (a restart, an idle timeout): connect again
         * when there is something to send; requests queue meanwhile. */
        if (!r->own_loop)
            cg_info("redis_idle_closed", "peer=\"%s\" err=\"%s\"", r->peer,
                    why);
        r->state = STATE_CONNECTING;
        r->stats.connected = false;
        return;
    }
    if (was_up && first && !first->retried && !r->batch_replied) {
        struct req_list again = r->inflight;
        memset(&r->inflight, 0, sizeof(r->inflight));
        /* Back to the front of the queue, in order. */
        struct redis_req *q, *rev = NULL;
        while ((q = list_pop(&again))) {
            q->retried = true;
            req_clear_replies(q);
            q->next = rev;
            rev = q;
        }
        while (rev) {
            q = rev;
            rev = rev->next;
            list_push_front(&r->queue, q);
        }
        r->stats.queue_depth = r->queue.n;
        r->stats.in_flight = 0;
        if (!r->own_loop)
            cg_info("redis_reconnect", "peer=\"%s\" err=\"%s\"", r->peer, why);
        r->state = STATE_CONNECTING;
        r->stats.connected = false;
        conn_start(r);
        return;
    }
    list_fail(r, &r->inflight, CG_EREDIS);
    list_fail(r, &r->queue, CG_EREDIS);
    r->stats.queue_depth = 0;
    r->stats.in_flight = 0;
    /* Logged when the client goes down or the reason changes, not on
     * every retry of a Redis that stays away. */
    if (!r->own_loop &&
        (r->state != STATE_DOWN || strcmp(r->last_err, why) != 0)) {
        if (r->stats.tls_refused)
            cg_error("redis_down", "peer=\"%s\" err=\"%s\" retry_ms=%lld",
                     r->peer, why, (long long)r->backoff_ms);
        else
            cg_warn("redis_down", "peer=\"%s\" err=\"%s\" retry_ms=%lld",
                    r->peer, why, (long long)r->backoff_ms);
    }
    cg_strlcpy(r->last_err, why, sizeof(r->last_err));
    r->state = STATE_DOWN;
    r->stats.connected = false;
    int64_t b = r->backoff_ms;
    int64_t delay = b / 2 + (int64_t)(rand_r(&r->seed) % (unsigned)(b / 2 + 1));
    r->backoff_ms =
        b * 2 > CG_REDIS_BACKOFF_MAX_MS ? CG_REDIS_BACKOFF_MAX_MS : b * 2;
    if (!r->own_loop)
        cg_loop_timer_add(r->loop, &r->retry, delay, retry_fired, r);
}

/* ---- requests ---- */

static void kick_fired(struct cg_loop *loop, void *arg)
{
    struct cg_redis *r = arg;
    struct req_list done = r->answered;
    memset(&r->answered, 0, sizeof(r->answered));
    struct redis_req *q;
    while ((q = list_pop(&done)))
        req_finish(r, q);
    send_batch(r);
}

static void kick_soon(struct cg_redis *r)
{
    if (!cg_loop_timer_active(&r->kick))
        cg_loop_timer_add(r->loop, &r->kick, 0, kick_fired, r);
}

int cg_redis_call(struct cg_redis *r, const struct cg_redis_cmd *cmds, int ncmd,
                  cg_redis_fn fn, void *arg)
{
    struct redis_req *q = req_get(r);
    int err = 0;
    q->fn = fn;
    q->arg = arg;
    if (ncmd < 1 || ncmd > CG_REDIS_CMDS_MAX)
        err = CG_EINVAL;
    for (int i = 0; i < ncmd && !err; i++)
        err = req_add_cmd(q, cmds[i].argc, cmds[i].argv, cmds[i].len);
    if (!err && r->stopping)
        err = CG_ECANCELLED;
    else if (!err && r->state == STATE_DOWN)
        err = CG_EREDIS;
    else if (!err && r->queue.n >= r->queue_max)
        err = CG_EBUSY;
    if (err) {
        req_answer_later(r, q, err);
        return err;
    }
    list_push(&r->queue, q);
    r->stats.queue_depth = r->queue.n;
    /* Sent on the next turn, with whatever else this turn asks. */
    kick_soon(r);
    return 0;
}

struct redisReply *cg_redis_reply_take(struct redisReply *const *reply, int i)
{
    struct redisReply *rep = reply[i];
    ((struct redisReply **)reply)[i] = NULL;
    return rep;
}

void cg_redis_reply_free(struct redisReply *reply)
{
    if (reply)
        freeReplyObject(reply);
}

const char *cg_redis_peer(const struct cg_redis *r)
{
    return r->peer;
}

void cg_redis_stats(const struct cg_redis *r, struct cg_redis_stats *out)
{
    *out = r->stats;
}

void cg_redis_preload(struct cg_redis *r, const char *script)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (r->nscripts >= CG_REDIS_SCRIPTS_MAX)
        return;
    EVP_Digest(script, strlen(script), md, &n, EVP_sha1(), NULL);
    for (unsigned int i = 0; i < n && i < 20; i++)
        snprintf(r->script_sha[r->nscripts] + 2 * i, 3, "%02x", md[i]);
    r->scripts[r->nscripts++] = script;
}

bool cg_redis_settle(struct cg_redis *r, int timeout_ms)
{
    int64_t end = cg_loop_now_ms() + timeout_ms;
    if (!r)
        return true;
    r->settling = true;
    cg_loop_timer_cancel(r->loop, &r->kick);
    send_batch(r);
    for (;;) {
        int64_t left = end - cg_loop_now_ms();
        /* Only an open connection can be driven without the loop. */
        if (r->queue.n + r->inflight.n == 0 || left <= 0 || r->phase != CONN_UP)
            break;
        struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
        if (r->out_off < r->out.len || r->ssl_want_write)
            pfd.events |= POLLOUT;
        int n = poll(&pfd, 1, left < 10 ? (int)left : 10);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0)
            on_io(r->loop, r->fd,
                  ((pfd.revents & POLLIN) ? CG_LOOP_READ : 0) |
                      ((pfd.revents & POLLOUT) ? CG_LOOP_WRITE : 0) |
                      ((pfd.revents & (POLLERR | POLLHUP)) ? CG_LOOP_ERROR : 0),
                  r);
    }
    r->settling = false;
    return r->queue.n + r->inflight.n == 0;
}

/* ---- lifecycle ---- */

static struct cg_redis *redis_make(struct cg_loop *loop,
                                   const struct cg_conf *conf, char *errbuf,
                                   size_t errsz)
{
    struct cg_redis *r = cg_calloc(1, sizeof(*r));
    r->loop = loop;
    r->fd = -1;
    r->backoff_ms = CG_REDIS_BACKOFF_MIN_MS;
    r->seed =
        (unsigned)time(NULL) ^ (unsigned)(uintptr_t)r ^ (unsigned)getpid();
    cg_buf_init(&r->out, SIZE_MAX);
    r->state = STATE_CONNECTING;
    if (settings_from(r, conf, errbuf, errsz)) {
        cg_redis_free(r);
        return NULL;
    }
    return r;
}

struct cg_redis *cg_redis_new(struct cg_loop *loop, const struct cg_conf *conf,
                              char *errbuf, size_t errsz)
{
    struct cg_redis *r = redis_make(loop, conf, errbuf, errsz);
    if (r)
        conn_start(r);
    return r;
}

void cg_redis_free(struct cg_redis *r)
{
    if (!r)
        return;
    r->stopping = true;
    conn_close(r);
    cg_loop_timer_cancel(r->loop, &r->retry);
    cg_loop_timer_cancel(r->loop, &r->kick);
    /* What settle received is answered with its replies; then callbacks
     * may ask again: answered CG_ECANCELLED, run here too. */
    struct redis_req *got;
    while ((got = list_pop(&r->settled)))
        req_finish(r, got);
    for (;;) {
        list_fail(r, &r->inflight, CG_ECANCELLED);
        list_fail(r, &r->queue, CG_ECANCELLED);
        if (!r->answered.n)
            break;
        cg_loop_timer_cancel(r->loop, &r->kick);
        struct req_list done = r->answered;
        memset(&r->answered, 0, sizeof(r->answered));
        struct redis_req *q;
        while ((q = list_pop(&done)))
            req_finish(r, q);
    }
    cg_loop_timer_cancel(r->loop, &r->kick);
    resolve_reap(r, true);
    struct redis_req *q;
    while ((q = list_pop(&r->spare)))
        free(q);
    if (r->ssl_ctx)
        SSL_CTX_free(r->ssl_ctx);
    free(r->host);
    free(r->username);
    secret_free(r->password);
    free(r->server_name);
    cg_buf_free(&r->out);
    if (r->own_loop)
        cg_loop_free(r->loop);
    free(r);
}

/* ---- the synchronous mode ---- */

struct cg_redis *cg_redis_open(const struct cg_conf *conf, char *errbuf,
                               size_t errsz)
{
    struct cg_loop *loop = cg_loop_new(errbuf, errsz);
    if (!loop)
        return NULL;
    struct cg_redis *r = redis_make(loop, conf, errbuf, errsz);
    if (!r) {
        cg_loop_free(loop);
        return NULL;
    }
    r->own_loop = true;
    conn_start(r);
    while (r->state == STATE_CONNECTING)
        if (cg_loop_run_once(r->loop, -1) < 0)
            break;
    if (r->state != STATE_UP) {
        cg_err_set(errbuf, errsz, CG_EREDIS, "redis %s: %s", r->peer,
                   r->last_err[0] ? r->last_err : "cannot connect");
        cg_redis_free(r);
        return NULL;
    }
    return r;
}

struct sync_wait {
    struct redisReply **reply;
    int pending;
    int err;
};

static void sync_done(int err, struct redisReply *const *reply, int nreply,
                      void *arg)
{
    struct sync_wait *w = arg;
    /* Requests are one command each, answered in order. */
    if (err && !w->err)
        w->err = err;
    if (!err && nreply == 1)
        *w->reply = cg_redis_reply_take(reply, 0);
    w->reply++;
    w->pending--;
}

int cg_redis_run(struct cg_redis *r, const struct cg_redis_cmd *cmds, int ncmd,
                 struct redisReply **reply, const char *what, char *errbuf,
                 size_t errsz)
{
    struct sync_wait w = { .reply = reply, .pending = ncmd, .err = 0 };
    for (int i = 0; i < ncmd; i++)
        reply[i] = NULL;
    if (r->state == STATE_DOWN) {
        /* The tools reconnect when asked, not on a timer. */
        r->state = STATE_CONNECTING;
        conn_start(r);
    }
    for (int i = 0; i < ncmd; i++)
        cg_redis_call(r, &cmds[i], 1, sync_done, &w);
    while (w.pending > 0)
        if (cg_loop_run_once(r->loop, -1) < 0)
            break;
    if (w.pending > 0 && !w.err)
        w.err = CG_EREDIS;
    if (w.err) {
        for (int i = 0; i < ncmd; i++) {
            cg_redis_reply_free(reply[i]);
            reply[i] = NULL;
        }
        return cg_err_set(errbuf, errsz, CG_EREDIS, "redis %s: %s: %s", r->peer,
                          what,
                          w.err == CG_EBUSY ? "too many commands at once"
                          : r->last_err[0]  ? r->last_err
                                            : "no reply");
    }
    return 0;
}
