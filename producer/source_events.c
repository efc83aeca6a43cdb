/*
 * The events source: the events topic (listen) and Event Grid's push
 * delivery (webhook). Both hand bodies to cg_events_body, which classifies
 * them (event.h), drops repeated ids and folds bursts per subscription;
 * when a window closes the job is emitted. Events are never held back by
 * freshness: someone just changed the thing.
 */
#include "source.h"

#include "conf.h"
#include "err.h"
#include "kafka.h"
#include "log.h"
#include "loop.h"
#include "mem.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define WEBHOOK_HEAD_MAX (16 * 1024) /* request line and headers */
/*
 * Slow clients. Each phase of a connection has its own deadline, which
 * trickled bytes do not move: the head must be complete WEBHOOK_HEAD_MS
 * after the accept; the body must then arrive at WEBHOOK_BODY_MIN_RATE
 * bytes/s at least (after WEBHOOK_BODY_MS of grace); the answer must be
 * taken within WEBHOOK_WRITE_MS. One peer address holds at most
 * WEBHOOK_PER_ADDR_MAX connections, and the table is far larger than that
 * (bounded by the descriptors the process may open), so one slow client
 * cannot hold the slots Event Grid's deliveries need.
 */
#define WEBHOOK_CONNS_MAX     4096
#define WEBHOOK_PER_ADDR_MAX  64
#define WEBHOOK_FD_RESERVE    64 /* descriptors kept for Kafka, Redis, logs */
#define WEBHOOK_HEAD_MS       5000
#define WEBHOOK_BODY_MS       5000
#define WEBHOOK_BODY_MIN_RATE 16384
#define WEBHOOK_WRITE_MS      5000
#define LISTEN_PARTITIONS_MAX 65536

struct cg_events_state {
    struct cg_source *src;
    struct cg_event_seen *seen;
    struct cg_debounce *deb;
    int64_t now_ms;
    char *code; /* validation code out */
    size_t codesz;
    bool validated;
};

struct cg_events_state *cg_events_state_new(struct cg_source *src)
{
    struct cg_events_state *st = cg_calloc(1, sizeof(*st));
    st->src = src;
    st->seen = cg_event_seen_new(0);
    st->deb =
        cg_debounce_new(cg_conf_int(src->conf, "producer.debounce_ms"), 0);
    return st;
}

void cg_events_state_free(struct cg_events_state *st)
{
    if (!st)
        return;
    cg_event_seen_free(st->seen);
    cg_debounce_free(st->deb);
    free(st);
}

static void emit_out(const struct cg_debounce_out *o, void *arg)
{
    struct cg_events_state *st = arg;
    struct cg_job job;
    cg_job_init(&job, o->tenant_id, o->subscription_id, o->reason);
    cg_info("producer.event_job",
            "subscription=%s tenant=%s reason=%s "
            "events=%u",
            o->subscription_id, o->tenant_id, cg_job_reason_name(o->reason),
            o->events);
    cg_emit_job(st->src->emit, &job, NULL, NULL);
}

static void on_event(const struct cg_event *ev, void *arg)
{
    struct cg_events_state *st = arg;
    struct cg_summary *sum = st->src->sum;
    sum->events++;
    sum->events_by_kind[ev->kind]++;
    switch (ev->kind) {
    case CG_EVENT_VALIDATION:
        if (st->code) {
            cg_strlcpy(st->code, ev->validation_code, st->codesz);
            st->validated = true;
        }
        return;
    case CG_EVENT_IGNORED:
        cg_debug("producer.event_ignored", "id=%s why=\"%s\"", ev->id, ev->why);
        return;
    case CG_EVENT_MALFORMED:
        cg_warn("producer.event_malformed", "why=\"%s\"", ev->why);
        return;
    default:
        break;
    }
    if (cg_event_seen_check(st->seen, ev->id)) {
        sum->events_duplicate++;
        return;
    }
    if (cg_debounce_add(st->deb, ev, st->now_ms, emit_out, st) == 0)
        sum->events_debounced++;
}

int cg_events_body(struct cg_events_state *st, const char *body, size_t len,
                   int64_t now_ms, char *validation_code, size_t codesz,
                   char *errbuf, size_t errsz)
{
    st->now_ms = now_ms;
    st->code = validation_code;
    st->codesz = codesz;
    st->validated = false;
    if (validation_code && codesz)
        validation_code[0] = '\0';
    st->src->sum->bodies++;
    int rc = cg_event_parse(body, len, on_event, st, errbuf, errsz);
    if (rc < 0)
        st->src->sum->bodies_rejected++;
    st->code = NULL;
    return rc;
}

int64_t cg_events_due(struct cg_events_state *st, int64_t now_ms, bool flush)
{
    cg_debounce_due(st->deb, now_ms, flush, emit_out, st);
    return cg_debounce_next_ms(st->deb);
}

/* ---- webhook request decisions ---- */

/* The value of query parameter name in target (percent-decoding not
 * needed: a secret is configured in URL-safe characters). */
static bool query_param(const char *target, const char *name, char *out,
                        size_t outsz)
{
    const char *q = strchr(target, '?');
    size_t nl = strlen(name);
    while (q && *q) {
        q++;
        if (strncmp(q, name, nl) == 0 && q[nl] == '=') {
            const char *v = q + nl + 1;
            size_t n = strcspn(v, "&#");
            if (n >= outsz)
                return false;
            memcpy(out, v, n);
            out[n] = '\0';
            return true;
        }
        q = strchr(q, '&');
    }
    return false;
}

/* Constant time whatever the lengths: the digests are compared. */
static bool secret_ok(const char *want, const char *got)
{
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    if (!got || !*want)
        return false;
    SHA256((const unsigned char *)want, strlen(want), a);
    SHA256((const unsigned char *)got, strlen(got), b);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

static bool origin_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '-' && *s != '*')
            return false;
    return true;
}

static void reply(struct cg_webhook_response *res, int status, const char *body)
{
    res->status = status;
    cg_strlcpy(res->body, body, sizeof(res->body));
}

void cg_webhook_handle(struct cg_events_state *st, const char *secret,
                       const struct cg_webhook_request *req, int64_t now_ms,
                       struct cg_webhook_response *res)
{
    struct cg_summary *sum = st->src->sum;
    memset(res, 0, sizeof(*res));
    sum->webhook_requests++;
    char qsecret[512];
    const char *got = req->secret_header;
    if (!got && query_param(req->target, "code", qsecret, sizeof(qsecret)))
        got = qsecret;
    if (!secret_ok(secret, got)) {
        sum->webhook_unauthorized++;
        reply(res, 401, "{\"error\":\"unauthorized\"}");
        return;
    }
    if (strcmp(req->method, "OPTIONS") == 0) {
        /* CloudEvents webhook validation (abuse protection). */
        if (!req->request_origin || !origin_ok(req->request_origin)) {
            sum->webhook_bad++;
            reply(res, 400,
                  "{\"error\":\"WebHook-Request-Origin missing "
                  "or invalid\"}");
            return;
        }
        sum->webhook_validations++;
        cg_strlcpy(res->allowed_origin, req->request_origin,
                   sizeof(res->allowed_origin));
        reply(res, 200, "");
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        reply(res, 405, "{\"error\":\"POST or OPTIONS\"}");
        return;
    }
    if (req->content_length >
        (size_t)cg_conf_int(st->src->conf, "producer.webhook_max_body")) {
        sum->webhook_too_big++;
        reply(res, 413, "{\"error\":\"body too large\"}");
        return;
    }
    char code[CG_EVENT_ID_MAX + 1], err[256];
    int rc = cg_events_body(st, req->body ? req->body : "", req->body_len,
                            now_ms, code, sizeof(code), err, sizeof(err));
    if (rc == CG_ETOOBIG) {
        sum->webhook_too_big++;
        reply(res, 413, "{\"error\":\"too many events\"}");
        return;
    }
    if (rc < 0) {
        sum->webhook_bad++;
        cg_warn("producer.webhook_bad_body", "error=\"%s\"", err);
        reply(res, 400, "{\"error\":\"malformed body\"}");
        return;
    }
    if (code[0]) {
        json_t *o = json_pack("{s:s}", "validationResponse", code);
        char *s = json_dumps(o, JSON_COMPACT);
        reply(res, 200, s);
        free(s);
        json_decref(o);
        cg_info("producer.webhook_validated", "handshake=%s",
                "SubscriptionValidationEvent");
        return;
    }
    if (req->aeg_event_type &&
        strcasecmp(req->aeg_event_type, "SubscriptionValidation") == 0) {
        sum->webhook_bad++;
        reply(res, 400, "{\"error\":\"validation without a code\"}");
        return;
    }
    snprintf(res->body, sizeof(res->body), "{\"events\":%d}", rc);
    res->status = 200;
}

/* ---- the webhook server ---- */

struct webhook;

struct conn {
    struct webhook *wh;
    int fd;
    uint32_t addr; /* the peer's IPv4 address, network order */
    struct cg_loop_io io;
    struct cg_loop_timer idle;
    struct cg_buf in;
    size_t head_len; /* 0 until the head is complete */
    size_t content_length;
    struct cg_buf out;
    size_t sent;
    bool writing;
    /* parsed head: copies, since `in` may move as the body arrives */
    char method[16];
    char *target;
    char *secret, *aeg, *origin;
    bool chunked, has_length;
};

struct webhook {
    struct cg_source *src;
    struct cg_events_state *st;
    const char *secret;
    int fd;
    struct cg_loop_io io;
    struct conn *conns[WEBHOOK_CONNS_MAX];
    int conns_max; /* <= WEBHOOK_CONNS_MAX, within RLIMIT_NOFILE */
    char address[80];
};

static void on_conn_idle(struct cg_loop *loop, void *arg);

/* Starts the deadline of a connection's next phase. */
static void conn_deadline(struct conn *c, int64_t ms)
{
    struct cg_loop *loop = c->wh->src->loop;
    cg_loop_timer_cancel(loop, &c->idle);
    cg_loop_timer_add(loop, &c->idle, ms, on_conn_idle, c);
}

static void conn_close(struct conn *c)
{
    struct webhook *wh = c->wh;
    cg_loop_io_del(wh->src->loop, &c->io);
    cg_loop_timer_cancel(wh->src->loop, &c->idle);
    close(c->fd);
    cg_buf_free(&c->in);
    cg_buf_free(&c->out);
    free(c->target);
    free(c->secret);
    free(c->aeg);
    free(c->origin);
    for (int i = 0; i < WEBHOOK_CONNS_MAX; i++)
        if (wh->conns[i] == c)
            wh->conns[i] = NULL;
    free(c);
}

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 431:
        return "Request Header Fields Too Large";
    default:
        return "Error";
    }
}

static void conn_respond(struct conn *c, const struct cg_webhook_response *r)
{
    size_t blen = strlen(r->body);
    cg_buf_init(&c->out, sizeof(r->body) + 1024);
    cg_buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", r->status,
                  status_text(r->status));
    if (r->allowed_origin[0])
        cg_buf_printf(&c->out,
                      "WebHook-Allowed-Origin: %s\r\n"
                      "WebHook-Allowed-Rate: *\r\n",
                      r->allowed_origin);
    if (r->status == 405)
        cg_buf_puts(&c->out, "Allow: POST, OPTIONS\r\n");
    cg_buf_printf(&c->out,
                  "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                  "Connection: close\r\n\r\n%s",
                  blen, r->body);
    c->writing = true;
    conn_deadline(c, WEBHOOK_WRITE_MS);
    cg_loop_io_modify(c->wh->src->loop, &c->io, CG_LOOP_WRITE);
}

static void conn_error(struct conn *c, int status, const char *body)
{
    struct cg_webhook_response r;
    memset(&r, 0, sizeof(r));
    r.status = status;
    cg_strlcpy(r.body, body, sizeof(r.body));
    c->wh->src->sum->webhook_requests++;
    c->wh->src->sum->webhook_bad++;
    conn_respond(c, &r);
}

static char *trim_ws(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Parses the head in place; false (with a response sent) when it is not
 * HTTP we accept. */
static bool parse_head(struct conn *c)
{
    char *head = c->in.data;
    head[c->head_len - 1] = '\0'; /* the final '\n' */
    char *save = NULL;
    char *line = strtok_r(head, "\n", &save);
    char *sp1 = line ? strchr(line, ' ') : NULL;
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || (size_t)(sp1 - line) >= sizeof(c->method) ||
        strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        conn_error(c, 400, "{\"error\":\"bad request line\"}");
        return false;
    }
    memcpy(c->method, line, (size_t)(sp1 - line));
    c->method[sp1 - line] = '\0';
    *sp2 = '\0';
    c->target = cg_strdup(sp1 + 1);
    while ((line = strtok_r(NULL, "\n", &save))) {
        char *colon = strchr(line, ':');
        if (!colon) {
            if (*trim_ws(line))
                break;
            continue;
        }
        *colon = '\0';
        char *name = trim_ws(line), *value = trim_ws(colon + 1);
        if (!strcasecmp(name, "Content-Length")) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(value, &end, 10);
            if (errno || end == value || *end || c->has_length) {
                conn_error(c, 400, "{\"error\":\"bad Content-Length\"}");
                return false;
            }
            c->content_length = (size_t)n;
            c->has_length = true;
        } else if (!strcasecmp(name, "Transfer-Encoding")) {
            c->chunked = true;
        } else if (!strcasecmp(name, "X-Webhook-Secret") && !c->secret) {
            c->secret = cg_strdup(value);
        } else if (!strcasecmp(name, "aeg-event-type") && !c->aeg) {
            c->aeg = cg_strdup(value);
        } else if (!strcasecmp(name, "WebHook-Request-Origin") && !c->origin) {
            c->origin = cg_strdup(value);
        }
    }
    return true;
}

static void conn_dispatch(struct conn *c, bool with_body)
{
    struct webhook *wh = c->wh;
    struct cg_webhook_request req = {
        .method = c->method,
        .target = c->target,
        .secret_header = c->secret,
        .aeg_event_type = c->aeg,
        .request_origin = c->origin,
        .content_length = c->content_length,
        .body = with_body ? c->in.data + c->head_len : NULL,
        .body_len = with_body ? c->content_length : 0,
    };
    struct cg_webhook_response res;
    cg_webhook_handle(wh->st, wh->secret, &req, cg_loop_now_ms(), &res);
    conn_respond(c, &res);
}

/* A phase overran its deadline: no answer, the peer is not reading or
 * not sending. */
static void on_conn_idle(struct cg_loop *loop, void *arg)
{
    struct conn *c = arg;
    (void)loop;
    c->wh->src->sum->webhook_timeouts++;
    conn_close(c);
}

static void on_conn(struct cg_loop *loop, int fd, unsigned events, void *arg)
{
    struct conn *c = arg;
    (void)loop;
    if (c->writing) {
        ssize_t n = write(fd, c->out.data + c->sent, c->out.len - c->sent);
        if (n > 0)
            c->sent += (size_t)n;
        if ((n < 0 && errno != EAGAIN) || c->sent >= c->out.len)
            conn_close(c);
        return;
    }
    char buf[16384];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            conn_close(c);
        return;
    }
    if (cg_buf_append(&c->in, buf, (size_t)n)) {
        /* Past head + the largest body: a head that never ends, or a body
         * longer than it said. */
        if (c->head_len)
            conn_error(c, 413, "{\"error\":\"body too large\"}");
        else
            conn_error(c, 431, "{\"error\":\"head too large\"}");
        return;
    }
    if (!c->head_len) {
        /* memmem: a NUL byte in a hostile head must not hide its end. */
        char *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
        size_t hl = end ? (size_t)(end - c->in.data) + 4 : 0;
        if (!end && (end = memmem(c->in.data, c->in.len, "\n\n", 2)))
            hl = (size_t)(end - c->in.data) + 2;
        if (!end) {
            if (c->in.len > WEBHOOK_HEAD_MAX)
                conn_error(c, 431, "{\"error\":\"head too large\"}");
            return;
        }
        if (hl > WEBHOOK_HEAD_MAX) {
            conn_error(c, 431, "{\"error\":\"head too large\"}");
            return;
        }
        c->head_len = hl;
        /* Parsed in place: it writes NULs inside the head only, so what
         * arrived of the body stays where it is. */
        if (!parse_head(c))
            return;
        if (c->chunked) {
            conn_error(c, 411,
                       "{\"error\":\"chunked bodies are not "
                       "accepted: send Content-Length\"}");
            return;
        }
        size_t max =
            (size_t)cg_conf_int(c->wh->src->conf, "producer.webhook_max_body");
        if (strcmp(c->method, "POST") != 0 || c->content_length > max) {
            /* No body to wait for, or one we will not read: answer now. */
            conn_dispatch(c, strcmp(c->method, "POST") != 0 &&
                                 c->content_length == 0);
            return;
        }
        if (!c->has_length) {
            conn_error(c, 411, "{\"error\":\"Content-Length required\"}");
            return;
        }
        conn_deadline(c, WEBHOOK_BODY_MS + (int64_t)(c->content_length * 1000 /
                                                     WEBHOOK_BODY_MIN_RATE));
    }
    if (c->in.len - c->head_len >= c->content_length)
        conn_dispatch(c, true);
    (void)events;
}

static void on_accept(struct cg_loop *loop, int fd, unsigned events, void *arg)
{
    struct webhook *wh = arg;
    (void)events;
    for (;;) {
        struct sockaddr_in peer;
        socklen_t pl = sizeof(peer);
        memset(&peer, 0, sizeof(peer));
        int cfd = accept4(fd, (struct sockaddr *)&peer, &pl,
                          SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
            return;
        int slot = -1, same = 0;
        for (int i = 0; i < wh->conns_max; i++) {
            if (!wh->conns[i]) {
                if (slot < 0)
                    slot = i;
            } else if (wh->conns[i]->addr == peer.sin_addr.s_addr) {
                same++;
            }
        }
        if (slot < 0 || same >= WEBHOOK_PER_ADDR_MAX) {
            /* Full, or this peer holds its share: Event Grid retries. */
            wh->src->sum->webhook_refused++;
            close(cfd);
            continue;
        }
        struct conn *c = cg_calloc(1, sizeof(*c));
        c->wh = wh;
        c->fd = cfd;
        c->addr = peer.sin_addr.s_addr;
        cg_buf_init(&c->in,
                    WEBHOOK_HEAD_MAX +
                        (size_t)cg_conf_int(wh->src->conf,
                                            "producer.webhook_max_body"));
        char err[128];
        if (cg_loop_io_add(loop, &c->io, cfd, CG_LOOP_READ, on_conn, c, err,
                           sizeof(err))) {
            close(cfd);
            cg_buf_free(&c->in);
            free(c);
            continue;
        }
        cg_loop_timer_add(loop, &c->idle, WEBHOOK_HEAD_MS, on_conn_idle, c);
        wh->conns[slot] = c;
    }
}

/*
 * As many connections as the descriptors allow: the soft RLIMIT_NOFILE is
 * raised to the hard one (often 1024 against 65536 or more), less a
 * reserve for the process's other descriptors.
 */
static int webhook_conns_max(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 128;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t n = rl.rlim_cur > WEBHOOK_FD_RESERVE * 2
                   ? rl.rlim_cur - WEBHOOK_FD_RESERVE
                   : rl.rlim_cur / 2;
    return n < WEBHOOK_CONNS_MAX ? (int)n : WEBHOOK_CONNS_MAX;
}

static int webhook_listen(struct webhook *wh, const char *addr)
{
    char host[64];
    int port;
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof(host) ||
        sscanf(colon + 1, "%d", &port) != 1 || port < 0 || port > 65535) {
        cg_error("producer.webhook_address",
                 "address=%s error=\"not "
                 "host:port\"",
                 addr);
        return CG_ECONF;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        cg_error("producer.webhook_address",
                 "address=%s error=\"not an IPv4 address\"", addr);
        return CG_ECONF;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    socklen_t sl = sizeof(sa);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl)) {
        cg_error("producer.webhook_listen_failed", "address=%s error=\"%s\"",
                 addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return CG_EIO;
    }
    wh->fd = fd;
    snprintf(wh->address, sizeof(wh->address), "%s:%d", host,
             ntohs(sa.sin_port));
    char err[256];
    if (cg_loop_io_add(wh->src->loop, &wh->io, fd, CG_LOOP_READ, on_accept, wh,
                       err, sizeof(err))) {
        cg_error("producer.webhook_listen_failed", "error=\"%s\"", err);
        close(fd);
        return CG_EIO;
    }
    return 0;
}

/* Turns the loop, closing debounce windows on time, until *stop. */
static void run_events(struct cg_source *src, struct cg_events_state *st,
                       rd_kafka_t *consumer, void (*on_msg)(void *, void *),
                       void *arg)
{
    while (!*src->stop) {
        int64_t now = cg_loop_now_ms();
        int64_t next = cg_events_due(st, now, false);
        int wait = 200;
        if (next >= 0 && next - now < wait)
            wait = (int)(next - now < 0 ? 0 : next - now);
        if (consumer) {
            /* on_msg(NULL) too: a quiet moment is when offsets can be
             * stored. */
            on_msg(rd_kafka_consumer_poll(consumer, wait), arg);
            if (cg_loop_run_once(src->loop, 0) < 0)
                break;
        } else if (cg_loop_run_once(src->loop, wait) < 0) {
            break;
        }
    }
    /* Stopping: windows still open leave now, and every job gets its
     * fate before we exit. */
    cg_events_due(st, cg_loop_now_ms(), true);
    cg_emit_flush(src->emit, CG_SOURCE_STOP_FLUSH_MS);
}

int cg_source_webhook(struct cg_source *src)
{
    const char *secret = cg_conf_str(src->conf, "producer.webhook_secret");
    if (!*secret) {
        cg_error("producer.webhook_no_secret",
                 "hint=\"set producer.webhook_secret (file or environment): "
                 "an unauthenticated receiver is refused\"");
        return CG_ECONF;
    }
    struct webhook wh;
    memset(&wh, 0, sizeof(wh));
    wh.src = src;
    wh.secret = secret;
    wh.fd = -1;
    wh.conns_max = webhook_conns_max();
    wh.st = cg_events_state_new(src);
    int rc =
        webhook_listen(&wh, cg_conf_str(src->conf, "producer.webhook_listen"));
    if (rc)
        goto out;
    cg_info("producer.webhook_listening",
            "address=%s connections_max=%d "
            "per_address_max=%d",
            wh.address, wh.conns_max, WEBHOOK_PER_ADDR_MAX);
    fprintf(src->out, "contactguard-producer webhook listening on %s\n",
            wh.address);
    fflush(src->out);
    run_events(src, wh.st, NULL, NULL, NULL);
out:
    for (int i = 0; i < WEBHOOK_CONNS_MAX; i++)
        if (wh.conns[i])
            conn_close(wh.conns[i]);
    if (wh.fd >= 0) {
        cg_loop_io_del(src->loop, &wh.io);
        close(wh.fd);
    }
    cg_events_state_free(wh.st);
    return rc;
}

/* ---- the events topic ---- */

struct listener {
    struct cg_source *src;
    struct cg_events_state *st;
    rd_kafka_t *rk;
    char topic[256];
    int64_t *next;      /* per partition: offset after the last consumed, -1 */
    int64_t *stored;    /* per partition: the last offset stored, -1 */
    int64_t *confirmed; /* per partition: the last the group confirmed */
    int32_t npart;
};

static void on_message(void *mp, void *arg)
{
    rd_kafka_message_t *m = mp;
    struct listener *l = arg;
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            cg_warn("producer.listen_error", "error=%s",
                    rd_kafka_err2name(m->err));
        rd_kafka_message_destroy(m);
        return;
    }
    char err[256];
    int rc = cg_events_body(l->st, m->payload ? m->payload : "", m->len,
                            cg_loop_now_ms(), NULL, 0, err, sizeof(err));
    if (rc < 0)
        cg_warn("producer.event_body_rejected",
                "partition=%d offset=%lld error=\"%s\"", (int)m->partition,
                (long long)m->offset, err);
    if (m->partition >= 0 && m->partition < LISTEN_PARTITIONS_MAX) {
        if (m->partition >= l->npart) {
            int32_t n = m->partition + 1;
            l->next = cg_realloc(l->next, (size_t)n * sizeof(int64_t));
            l->stored = cg_realloc(l->stored, (size_t)n * sizeof(int64_t));
            l->confirmed =
                cg_realloc(l->confirmed, (size_t)n * sizeof(int64_t));
            for (int32_t i = l->npart; i < n; i++)
                l->next[i] = l->stored[i] = l->confirmed[i] = -1;
            l->npart = n;
        }
        l->next[m->partition] = m->offset + 1;
    }
    rd_kafka_message_destroy(m);
}

/*
 * Offsets are stored (and auto-committed) only at a point where every
 * consumed event has become a delivered job or was dropped: nothing held
 * in a debounce window, nothing awaiting a delivery report. A crash
 * before that replays events; it never loses one. A dry run stores none.
 */
static void store_safe(struct listener *l)
{
    /* A dry run leaves the group's position where it was. */
    if (l->src->dry_run)
        return;
    if (cg_debounce_pending(l->st->deb) > 0 ||
        cg_emit_outstanding(l->src->emit) > 0)
        return;
    rd_kafka_topic_partition_list_t *pl = rd_kafka_topic_partition_list_new(4);
    for (int32_t p = 0; p < l->npart; p++) {
        if (l->next[p] < 0)
            continue;
        rd_kafka_topic_partition_list_add(pl, l->topic, p)->offset = l->next[p];
        l->stored[p] = l->next[p];
        l->next[p] = -1;
    }
    if (pl->cnt > 0) {
        rd_kafka_resp_err_t e = rd_kafka_offsets_store(l->rk, pl);
        if (e)
            cg_debug("producer.offsets_store", "error=%s",
                     rd_kafka_err2name(e));
    }
    rd_kafka_topic_partition_list_destroy(pl);
}

static void on_listen_msg(void *mp, void *arg)
{
    struct listener *l = arg;
    if (mp)
        on_message(mp, arg);
    store_safe(l);
}

/* Auto-commit's answers: what the group has. */
static void listen_committed(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets,
                             void *opaque)
{
    struct listener *l = opaque;
    (void)rk;
    for (int i = 0; !err && offsets && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *t = &offsets->elems[i];
        if (!t->err && t->partition >= 0 && t->partition < l->npart &&
            !strcmp(t->topic, l->topic))
            l->confirmed[t->partition] = t->offset;
    }
}

/*
 * Commits what was stored last and leaves the group within
 * CG_SOURCE_LEAVE_MS: the broker may be gone. What was not confirmed is
 * one line; those events are read again by the next listener, and their
 * jobs are sent again (at least once).
 */
static void listen_close(struct listener *l,
                         rd_kafka_topic_partition_list_t *final)
{
    int64_t start = cg_loop_now_ms();
    bool left = cg_kafka_consumer_close(l->rk, final, CG_SOURCE_LEAVE_MS);
    /* An auto-commit during the close may have confirmed one after all. */
    for (int i = 0; final && i < final->cnt; i++) {
        int32_t p = final->elems[i].partition;
        if (p < l->npart && l->confirmed[p] == final->elems[i].offset)
            final->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    char list[512];
    int n = cg_kafka_uncommitted(final, list, sizeof(list));
    if (n > 0)
        cg_warn("producer.uncommitted",
                "partitions=%d offsets=\"%s\" note=\"the group did not "
                "confirm these offsets in time; the events from them on will "
                "be read again\"",
                n, list);
    cg_info("producer.listen_closed",
            "committed=%d uncommitted=%d left_group=%s ms=%lld",
            (final ? final->cnt : 0) - n, n, left ? "true" : "false",
            (long long)(cg_loop_now_ms() - start));
}

int cg_source_listen(struct cg_source *src)
{
    static const char *const defaults[] = {
        "group.id",  "contactguard-producer", "enable.auto.offset.store",
        "false",     "auto.offset.reset",     "earliest",
        "client.id", "contactguard-producer", NULL,
    };
    struct listener l;
    memset(&l, 0, sizeof(l));
    l.src = src;
    cg_strlcpy(l.topic, cg_conf_str(src->conf, "topics.events"),
               sizeof(l.topic));
    char err[512];
    int rc = 0;
    rd_kafka_topic_partition_list_t *subs = NULL, *final = NULL;
    rd_kafka_conf_t *kc = cg_kafka_conf(src->conf, defaults, err, sizeof(err));
    if (!kc) {
        cg_error("producer.listen_failed", "error=\"%s\"", err);
        return CG_ECONF;
    }
    rd_kafka_conf_set_offset_commit_cb(kc, listen_committed);
    rd_kafka_conf_set_opaque(kc, &l);
    l.rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
    if (!l.rk) {
        rd_kafka_conf_destroy(kc);
        cg_error("producer.listen_failed", "error=\"%s\"", err);
        return CG_EKAFKA;
    }
    rd_kafka_poll_set_consumer(l.rk);
    subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, l.topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(l.rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        cg_error("producer.listen_failed", "topic=%s error=%s", l.topic,
                 rd_kafka_err2name(e));
        rc = CG_EKAFKA;
        goto out;
    }
    l.st = cg_events_state_new(src);
    cg_info("producer.listening", "topic=%s", l.topic);
    fprintf(src->out, "contactguard-producer listen ready topic=%s\n", l.topic);
    fflush(src->out);
    run_events(src, l.st, l.rk, on_listen_msg, &l);
    store_safe(&l);
    /* The stored offsets auto-commit has not confirmed yet. */
    final = rd_kafka_topic_partition_list_new(4);
    for (int32_t p = 0; p < l.npart; p++)
        if (l.stored[p] >= 0 && l.stored[p] != l.confirmed[p])
            rd_kafka_topic_partition_list_add(final, l.topic, p)->offset =
                l.stored[p];
out:
    listen_close(&l, final);
    if (final)
        rd_kafka_topic_partition_list_destroy(final);
    cg_kafka_destroy(l.rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE,
                     CG_KAFKA_DESTROY_MS);
    cg_events_state_free(l.st);
    free(l.next);
    free(l.stored);
    free(l.confirmed);
    return rc;
}
