#include "server.h"

#include "err.h"
#include "mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK      16384
#define EVENTS_MAX      256
#define TRICKLE_BYTES   64
#define TRICKLE_EVERY   25 /* ms between pieces of a slow answer */
#define LOOP_TIMEOUT_MS 250
/* A connection that sends nothing for this long is closed, so idle or
 * half-sent requests cannot hold descriptors forever. */
#define IDLE_TIMEOUT_MS 120000

struct conn {
    int fd;
    SSL *ssl;
    bool handshaken;
    bool loopback;
    bool close_after;  /* close once `out` is written */
    bool drop_at_wake; /* the fault: close without answering */
    bool trickle;
    bool continue_sent;
    bool epollout;
    bool paused; /* not polled while an answer is held back */
    struct conn *aprev, *anext;
    uint64_t hold_until; /* ms; nothing is written before */
    uint64_t last_read;  /* ms of the last bytes received */
    struct conn *tprev, *tnext;
    bool in_timers;
    struct cg_buf in;
    struct cg_buf out;
    size_t out_off;
};

struct cg_fa_server {
    int lfd;
    int ep;
    SSL_CTX *ssl;
    cg_fa_handler_fn fn;
    void *ud;
    int port;
    char host[INET6_ADDRSTRLEN];
    size_t nconns;
    uint64_t next_sweep;
    struct conn *timers; /* connections holding an answer back */
    struct conn *all;
    struct cg_fa_resp resp;
    char path[CG_FA_HEAD_MAX];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *cg_fa_req_header(const struct cg_fa_req *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes n bytes of s into out (outsz includes the NUL); plus
 * turns '+' into a space (forms and queries). -1 when out is too small. */
static int pct_decode(const char *s, size_t n, bool plus, char *out,
                      size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
            hexval((unsigned char)s[i + 2]) >= 0) {
            c = (char)(hexval((unsigned char)s[i + 1]) * 16 +
                       hexval((unsigned char)s[i + 2]));
            i += 2;
        } else if (plus && c == '+') {
            c = ' ';
        }
        if (o + 1 >= outsz)
            return -1;
        out[o++] = c;
    }
    if (outsz == 0)
        return -1;
    out[o] = '\0';
    return (int)o;
}

int cg_fa_form_get(const char *form, const char *name, char *out, size_t outsz)
{
    size_t nlen = strlen(name);
    const char *p = form;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        char key[128];
        if (klen < sizeof(key) &&
            pct_decode(p, klen, true, key, sizeof(key)) >= 0 &&
            strlen(key) == nlen && strcmp(key, name) == 0) {
            if (!eq)
                return outsz ? (out[0] = '\0', 0) : -1;
            return pct_decode(eq + 1, len - klen - 1, true, out, outsz);
        }
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}

void cg_fa_resp_header(struct cg_fa_resp *resp, const char *name,
                       const char *fmt, ...)
{
    va_list ap;
    cg_buf_puts(&resp->headers, name);
    cg_buf_puts(&resp->headers, ": ");
    va_start(ap, fmt);
    cg_buf_vprintf(&resp->headers, fmt, ap);
    va_end(ap);
    cg_buf_puts(&resp->headers, "\r\n");
}

static const char *status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

static void timer_add(struct cg_fa_server *srv, struct conn *c)
{
    if (c->in_timers)
        return;
    c->tprev = NULL;
    c->tnext = srv->timers;
    if (srv->timers)
        srv->timers->tprev = c;
    srv->timers = c;
    c->in_timers = true;
}

static void timer_del(struct cg_fa_server *srv, struct conn *c)
{
    if (!c->in_timers)
        return;
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        srv->timers = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    c->in_timers = false;
}

static void conn_close(struct cg_fa_server *srv, struct conn *c)
{
    timer_del(srv, c);
    if (c->aprev)
        c->aprev->anext = c->anext;
    else
        srv->all = c->anext;
    if (c->anext)
        c->anext->aprev = c->aprev;
    epoll_ctl(srv->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) {
        if (c->handshaken)
            SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    close(c->fd);
    cg_buf_free(&c->in);
    cg_buf_free(&c->out);
    free(c);
    srv->nconns--;
}

static void conn_events(struct cg_fa_server *srv, struct conn *c, bool out,
                        bool paused)
{
    if (c->epollout == out && c->paused == paused)
        return;
    struct epoll_event ev = { .events =
                                  paused ? 0 : EPOLLIN | (out ? EPOLLOUT : 0),
                              .data.ptr = c };
    epoll_ctl(srv->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->epollout = out;
    c->paused = paused;
}

static void conn_want_write(struct cg_fa_server *srv, struct conn *c, bool on)
{
    conn_events(srv, c, on, false);
}

/* Writes what `out` holds. Returns false when the connection was closed. */
static bool conn_flush(struct cg_fa_server *srv, struct conn *c)
{
    uint64_t now = now_ms();
    if (c->hold_until > now) {
        /* Level-triggered polling would spin on unread input meanwhile. */
        conn_events(srv, c, c->epollout, true);
        timer_add(srv, c);
        return true;
    }
    if (c->paused)
        conn_events(srv, c, c->epollout, false);
    if (c->drop_at_wake) {
        conn_close(srv, c);
        return false;
    }
    while (c->out_off < c->out.len) {
        size_t n = c->out.len - c->out_off;
        if (c->trickle && n > TRICKLE_BYTES)
            n = TRICKLE_BYTES;
        ssize_t w;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, c->out.data + c->out_off, (int)n);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    conn_want_write(srv, c, true);
                    return true;
                }
                conn_close(srv, c);
                return false;
            }
            w = r;
        } else {
            w = send(c->fd, c->out.data + c->out_off, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    conn_want_write(srv, c, true);
                    return true;
                }
                if (errno == EINTR)
                    continue;
                conn_close(srv, c);
                return false;
            }
        }
        c->out_off += (size_t)w;
        if (c->trickle && c->out_off < c->out.len) {
            c->hold_until = now_ms() + TRICKLE_EVERY;
            timer_add(srv, c);
            return true;
        }
    }
    cg_buf_reset(&c->out);
    c->out_off = 0;
    c->trickle = false;
    conn_want_write(srv, c, false);
    if (c->close_after) {
        conn_close(srv, c);
        return false;
    }
    return true;
}

/* Serialises srv->resp into c->out and applies its faults. */
static void conn_queue(struct cg_fa_server *srv, struct conn *c,
                       struct cg_fa_resp *resp)
{
    size_t blen = resp->body.len;
    if (resp->fault == CG_FA_FAULT_MALFORMED)
        blen /= 2;
    cg_buf_printf(&c->out,
                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                  "Content-Length: %zu\r\n%s%s\r\n",
                  resp->status, status_text(resp->status),
                  resp->content_type ? resp->content_type
                                     : "application/json; charset=utf-8",
                  blen, resp->headers.len ? resp->headers.data : "",
                  resp->close ? "Connection: close\r\n" : "");
    if (blen)
        cg_buf_append(&c->out, resp->body.data, blen);
    if (resp->close)
        c->close_after = true;
    if (resp->fault == CG_FA_FAULT_DROP)
        c->drop_at_wake = true;
    if (resp->fault == CG_FA_FAULT_SLOW)
        c->trickle = true;
    if (resp->delay_ms)
        c->hold_until = now_ms() + resp->delay_ms;
}

static void resp_reset(struct cg_fa_resp *resp)
{
    resp->status = 200;
    resp->content_type = NULL;
    cg_buf_reset(&resp->headers);
    cg_buf_reset(&resp->body);
    resp->fault = CG_FA_FAULT_NONE;
    resp->delay_ms = 0;
    resp->close = false;
}

static void conn_error(struct cg_fa_server *srv, struct conn *c, int status,
                       const char *msg)
{
    struct cg_fa_resp *resp = &srv->resp;
    resp_reset(resp);
    resp->status = status;
    resp->close = true;
    cg_buf_printf(&resp->body,
                  "{\"error\":{\"code\":\"BadRequest\",\"message\":\"%s\"}}",
                  msg);
    conn_queue(srv, c, resp);
    cg_buf_reset(&c->in);
}

/* Scans the head (not modified) for Content-Length and friends. */
static int head_scan(const char *head, size_t hlen, long long *clen,
                     bool *chunked, bool *expect)
{
    *clen = 0;
    *chunked = false;
    *expect = false;
    const char *p = memchr(head, '\n', hlen);
    const char *end = head + hlen;
    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        size_t llen = (size_t)(eol - line);
        if (llen > 15 && strncasecmp(line, "content-length:", 15) == 0) {
            long long v = 0;
            const char *q = line + 15;
            while (q < eol && (*q == ' ' || *q == '\t'))
                q++;
            if (q >= eol || *q < '0' || *q > '9')
                return -1;
            while (q < eol && *q >= '0' && *q <= '9') {
                v = v * 10 + (*q - '0');
                if (v > CG_FA_BODY_MAX)
                    return -2;
                q++;
            }
            *clen = v;
        } else if (llen > 18 &&
                   strncasecmp(line, "transfer-encoding:", 18) == 0) {
            *chunked = true;
        } else if (llen > 7 && strncasecmp(line, "expect:", 7) == 0) {
            *expect = true;
        }
        p = eol;
    }
    return 0;
}

/* Parses one complete request (head of hlen bytes, then body) in place. */
static int req_parse(struct cg_fa_server *srv, char *data, size_t hlen,
                     struct cg_fa_req *req, bool *keepalive)
{
    data[hlen - 1] = '\0';
    char *save = NULL;
    char *line = strtok_r(data, "\r\n", &save);
    if (!line)
        return -1;
    char *sp1 = strchr(line, ' ');
    if (!sp1)
        return -1;
    *sp1 = '\0';
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (!sp2)
        return -1;
    *sp2 = '\0';
    const char *version = sp2 + 1;
    if (strncmp(version, "HTTP/1.", 7) != 0)
        return -1;
    *keepalive = strcmp(version, "HTTP/1.0") != 0;
    req->method = line;
    req->target = target;
    char *q = strchr(target, '?');
    size_t plen = q ? (size_t)(q - target) : strlen(target);
    req->query = q ? q + 1 : "";
    if (pct_decode(target, plen, false, srv->path, sizeof(srv->path)) < 0)
        return -1;
    req->path = srv->path;
    req->nheaders = 0;
    while ((line = strtok_r(NULL, "\r\n", &save))) {
        char *colon = strchr(line, ':');
        if (!colon)
            return -1;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            v[--vl] = '\0';
        if (req->nheaders >= CG_FA_HEADERS_MAX)
            return -1;
        req->headers[req->nheaders].name = line;
        req->headers[req->nheaders].value = v;
        req->nheaders++;
        if (strcasecmp(line, "connection") == 0) {
            if (strcasecmp(v, "close") == 0)
                *keepalive = false;
            else if (strcasecmp(v, "keep-alive") == 0)
                *keepalive = true;
        }
    }
    return 0;
}

/* Answers every complete request buffered, one at a time. */
static void conn_process(struct cg_fa_server *srv, struct conn *c)
{
    while (c->out.len == 0 && !c->close_after && c->in.len > 0) {
        char *hend = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
        if (!hend) {
            if (c->in.len > CG_FA_HEAD_MAX)
                conn_error(srv, c, 431, "request head too large");
            break;
        }
        size_t hlen = (size_t)(hend - c->in.data) + 4;
        if (hlen > CG_FA_HEAD_MAX) {
            conn_error(srv, c, 431, "request head too large");
            break;
        }
        long long clen;
        bool chunked, expect;
        int rc = head_scan(c->in.data, hlen, &clen, &chunked, &expect);
        if (rc == -2) {
            conn_error(srv, c, 413, "request body too large");
            break;
        }
        if (rc < 0) {
            conn_error(srv, c, 400, "bad Content-Length");
            break;
        }
        if (chunked) {
            conn_error(srv, c, 411, "chunked bodies are not accepted");
            break;
        }
        if (c->in.len < hlen + (size_t)clen) {
            if (expect && !c->continue_sent) {
                cg_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
                c->continue_sent = true;
            }
            break;
        }
        c->continue_sent = false;
        struct cg_fa_req req;
        bool keepalive = true;
        /* req_parse writes NULs into the head; the body gets its own
         * NUL-terminated copy so the handler can treat it as a string. */
        char *body = cg_strndup(c->in.data + hlen, (size_t)clen);
        if (req_parse(srv, c->in.data, hlen, &req, &keepalive) < 0) {
            free(body);
            conn_error(srv, c, 400, "malformed request");
            break;
        }
        req.body = body;
        req.body_len = (size_t)clen;
        req.peer_loopback = c->loopback;
        req.tls = c->ssl != NULL;
        struct cg_fa_resp *resp = &srv->resp;
        resp_reset(resp);
        if (!keepalive)
            resp->close = true;
        srv->fn(srv->ud, &req, resp);
        free(body);
        size_t used = hlen + (size_t)clen;
        memmove(c->in.data, c->in.data + used, c->in.len - used);
        c->in.len -= used;
        c->in.data[c->in.len] = '\0';
        conn_queue(srv, c, resp);
    }
}

/* Answers buffered requests and writes the answers for as long as each
 * answer goes out at once (pipelined requests), stopping when one is held
 * back or the socket is full. */
static void conn_pump(struct cg_fa_server *srv, struct conn *c)
{
    for (;;) {
        conn_process(srv, c);
        if (!c->out.len)
            return;
        if (!conn_flush(srv, c) || c->out.len)
            return;
    }
}

static void conn_readable(struct cg_fa_server *srv, struct conn *c)
{
    if (c->ssl && !c->handshaken) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                return;
            if (e == SSL_ERROR_WANT_WRITE) {
                conn_want_write(srv, c, true);
                return;
            }
            conn_close(srv, c);
            return;
        }
        c->handshaken = true;
    }
    char buf[READ_CHUNK];
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, buf, sizeof(buf));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    break;
                if (e == SSL_ERROR_WANT_WRITE) {
                    conn_want_write(srv, c, true);
                    break;
                }
                conn_close(srv, c);
                return;
            }
            n = r;
        } else {
            n = recv(c->fd, buf, sizeof(buf), 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                if (errno == EINTR)
                    continue;
                conn_close(srv, c);
                return;
            }
            if (n == 0) {
                conn_close(srv, c);
                return;
            }
        }
        c->last_read = now_ms();
        if (c->close_after)
            continue; /* answering an error: discard the rest */
        if (cg_buf_append(&c->in, buf, (size_t)n) < 0) {
            conn_error(srv, c, 413, "request too large");
            break;
        }
    }
    conn_pump(srv, c);
}

static void conn_writable(struct cg_fa_server *srv, struct conn *c)
{
    if (c->ssl && !c->handshaken) {
        conn_want_write(srv, c, false);
        conn_readable(srv, c);
        return;
    }
    if (!conn_flush(srv, c))
        return;
    if (c->out.len == 0)
        conn_pump(srv, c);
}

bool cg_fa_addr_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

static void srv_accept(struct cg_fa_server *srv)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(srv->lfd, (struct sockaddr *)&ss, &sl,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (srv->nconns >= CG_FA_CONN_MAX) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = cg_calloc(1, sizeof(*c));
        c->fd = fd;
        c->loopback = cg_fa_addr_loopback(&ss);
        c->last_read = now_ms();
        cg_buf_init(&c->in, CG_FA_HEAD_MAX + CG_FA_BODY_MAX);
        cg_buf_init(&c->out, CG_FA_RESP_MAX + CG_FA_HEAD_MAX);
        if (srv->ssl) {
            c->ssl = SSL_new(srv->ssl);
            SSL_set_fd(c->ssl, fd);
            SSL_set_accept_state(c->ssl);
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(srv->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            if (c->ssl)
                SSL_free(c->ssl);
            close(fd);
            cg_buf_free(&c->in);
            cg_buf_free(&c->out);
            free(c);
            continue;
        }
        c->anext = srv->all;
        if (srv->all)
            srv->all->aprev = c;
        srv->all = c;
        srv->nconns++;
    }
}

static int split_listen(const char *listen, char *host, size_t hostsz,
                        char *port, size_t portsz)
{
    const char *colon = strrchr(listen, ':');
    if (!colon)
        return -1;
    const char *h = listen;
    size_t hl = (size_t)(colon - listen);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= hostsz || strlen(colon + 1) >= portsz || !colon[1])
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    cg_strlcpy(port, colon + 1, portsz);
    return 0;
}

struct cg_fa_server *cg_fa_server_new(const char *addr, SSL_CTX *ssl,
                                      cg_fa_handler_fn fn, void *ud,
                                      char *errbuf, size_t errsz)
{
    struct cg_fa_server *srv = NULL;
    struct addrinfo *ai = NULL;
    char host[256], port[16];
    if (split_listen(addr, host, sizeof(host), port, sizeof(port)) < 0) {
        cg_err_set(errbuf, errsz, CG_EINVAL,
                   "listen address '%s' is not HOST:PORT", addr);
        goto out;
    }
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (gai) {
        cg_err_set(errbuf, errsz, CG_EINVAL, "cannot resolve '%s': %s", addr,
                   gai_strerror(gai));
        goto out;
    }
    /* Many concurrent clients need many descriptors. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    srv = cg_calloc(1, sizeof(*srv));
    srv->lfd = -1;
    srv->ep = -1;
    srv->ssl = ssl;
    srv->fn = fn;
    srv->ud = ud;
    cg_buf_init(&srv->resp.headers, CG_FA_HEAD_MAX);
    cg_buf_init(&srv->resp.body, CG_FA_RESP_MAX);
    srv->lfd =
        socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (srv->lfd < 0 ||
        setsockopt(srv->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(srv->lfd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        listen(srv->lfd, 4096) < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "cannot listen on '%s': %s", addr,
                   strerror(errno));
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(srv->lfd, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        srv->port = ntohs(in->sin_port);
        inet_ntop(AF_INET, &in->sin_addr, srv->host, sizeof(srv->host));
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        srv->port = ntohs(in6->sin6_port);
        inet_ntop(AF_INET6, &in6->sin6_addr, srv->host, sizeof(srv->host));
    }
    srv->ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (srv->ep < 0 || epoll_ctl(srv->ep, EPOLL_CTL_ADD, srv->lfd, &ev) < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "epoll: %s", strerror(errno));
        goto fail;
    }
    goto out;
fail:
    cg_fa_server_free(srv);
    srv = NULL;
out:
    if (ai)
        freeaddrinfo(ai);
    return srv;
}

int cg_fa_server_port(const struct cg_fa_server *srv)
{
    return srv->port;
}

const char *cg_fa_server_host(const struct cg_fa_server *srv)
{
    return srv->host;
}

size_t cg_fa_server_connections(const struct cg_fa_server *srv)
{
    return srv->nconns;
}

int cg_fa_server_run(struct cg_fa_server *srv, volatile sig_atomic_t *stop,
                     char *errbuf, size_t errsz)
{
    struct epoll_event evs[EVENTS_MAX];
    while (!*stop) {
        int timeout = LOOP_TIMEOUT_MS;
        uint64_t now = now_ms();
        for (struct conn *c = srv->timers; c; c = c->tnext) {
            uint64_t d = c->hold_until > now ? c->hold_until - now : 0;
            if ((int)d < timeout)
                timeout = (int)d;
        }
        int n = epoll_wait(srv->ep, evs, EVENTS_MAX, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return cg_err_set(errbuf, errsz, CG_EIO, "epoll_wait: %s",
                              strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                srv_accept(srv);
                continue;
            }
            /* A connection closed earlier in this batch cannot appear:
             * only the event's own connection is ever closed here. */
            if (evs[i].events & (EPOLLERR | EPOLLHUP) &&
                !(evs[i].events & EPOLLIN)) {
                conn_close(srv, c);
                continue;
            }
            if (evs[i].events & EPOLLOUT)
                conn_writable(srv, c);
            else if (evs[i].events & EPOLLIN)
                conn_readable(srv, c);
        }
        now = now_ms();
        if (now >= srv->next_sweep) {
            srv->next_sweep = now + 1000;
            struct conn *a = srv->all;
            while (a) {
                struct conn *next = a->anext;
                if (!a->in_timers && a->out.len == 0 &&
                    now - a->last_read > IDLE_TIMEOUT_MS)
                    conn_close(srv, a);
                a = next;
            }
        }
        struct conn *c = srv->timers;
        while (c) {
            struct conn *next = c->tnext;
            if (c->hold_until <= now) {
                timer_del(srv, c);
                c->hold_until = 0;
                if (conn_flush(srv, c) && c->out.len == 0) {
                    conn_readable(srv, c);
                }
            }
            c = next;
        }
    }
    return 0;
}

void cg_fa_server_free(struct cg_fa_server *srv)
{
    if (!srv)
        return;
    while (srv->all)
        conn_close(srv, srv->all);
    if (srv->ep >= 0)
        close(srv->ep);
    if (srv->lfd >= 0)
        close(srv->lfd);
    cg_buf_free(&srv->resp.headers);
    cg_buf_free(&srv->resp.body);
    free(srv);
}
