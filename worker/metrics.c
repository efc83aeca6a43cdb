#include "metrics.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define METRICS_REQ_MAX   4096
#define METRICS_CONNS_MAX 64
#define METRICS_BODY_MAX  (4 << 20)

struct conn {
    struct cg_metrics *m;
    int fd;
    struct cg_loop_io io;
    char req[METRICS_REQ_MAX];
    size_t len;
    struct cg_buf out;
    size_t sent;
    bool writing;
};

struct cg_metrics {
    struct cg_loop *loop;
    int fd;
    struct cg_loop_io io;
    char address[96];
    cg_metrics_render_fn render;
    cg_metrics_ready_fn ready;
    void *arg;
    struct conn *conns[METRICS_CONNS_MAX];
};

static const double bucket_bounds[CG_METRICS_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5,   1,      2.5,   5,    10,    20,   30,  60
};

void cg_histogram_init(struct cg_histogram *h)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->bounds, bucket_bounds, sizeof(bucket_bounds));
}

void cg_histogram_observe(struct cg_histogram *h, double s)
{
    h->sum += s;
    h->count++;
    for (int i = 0; i < CG_METRICS_BUCKETS; i++) {
        if (s <= h->bounds[i]) {
            h->counts[i]++;
            return;
        }
    }
    h->inf++;
}

static void head(struct cg_buf *b, const char *name, const char *help,
                 const char *type)
{
    /* Several samples of one family: HELP/TYPE once, before the first. */
    char probe[160];
    snprintf(probe, sizeof(probe), "# TYPE %s ", name);
    if (b->data && strstr(b->data, probe))
        return;
    cg_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void cg_metrics_counter(struct cg_buf *b, const char *name, const char *help,
                        const char *labels, uint64_t value)
{
    head(b, name, help, "counter");
    cg_buf_printf(b, "%s%s%s%s %llu\n", name, *labels ? "{" : "", labels,
                  *labels ? "}" : "", (unsigned long long)value);
}

void cg_metrics_gauge(struct cg_buf *b, const char *name, const char *help,
                      const char *labels, double value)
{
    head(b, name, help, "gauge");
    cg_buf_printf(b, "%s%s%s%s %.17g\n", name, *labels ? "{" : "", labels,
                  *labels ? "}" : "", value);
}

void cg_metrics_histogram(struct cg_buf *b, const char *name, const char *help,
                          const struct cg_histogram *h)
{
    head(b, name, help, "histogram");
    uint64_t cum = 0;
    for (int i = 0; i < CG_METRICS_BUCKETS; i++) {
        cum += h->counts[i];
        cg_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                      (unsigned long long)cum);
    }
    cg_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name,
                  (unsigned long long)(cum + h->inf));
    cg_buf_printf(b, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name,
                  (unsigned long long)h->count);
}

static void conn_close(struct conn *c)
{
    struct cg_metrics *m = c->m;
    cg_loop_io_del(m->loop, &c->io);
    close(c->fd);
    cg_buf_free(&c->out);
    for (int i = 0; i < METRICS_CONNS_MAX; i++)
        if (m->conns[i] == c)
            m->conns[i] = NULL;
    free(c);
}

static void respond(struct conn *c, int status, const char *ctype,
                    const char *body, size_t len)
{
    const char *reason = status == 200   ? "OK"
                         : status == 404 ? "Not Found"
                         : status == 503 ? "Service Unavailable"
                                         : "Bad Request";
    cg_buf_init(&c->out, METRICS_BODY_MAX + 512);
    cg_buf_printf(&c->out,
                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                  "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                  status, reason, ctype, len);
    cg_buf_append(&c->out, body, len);
    c->writing = true;
    cg_loop_io_modify(c->m->loop, &c->io, CG_LOOP_WRITE);
}

static void handle(struct conn *c)
{
    struct cg_metrics *m = c->m;
    char method[8], path[256];
    if (sscanf(c->req, "%7s %255s", method, path) != 2) {
        respond(c, 400, "text/plain", "bad request\n", 12);
        return;
    }
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';
    if (strcmp(path, "/metrics") == 0) {
        struct cg_buf b;
        cg_buf_init(&b, METRICS_BODY_MAX);
        m->render(&b, m->arg);
        respond(c, 200, "text/plain; version=0.0.4", b.data ? b.data : "",
                b.len);
        cg_buf_free(&b);
    } else if (strcmp(path, "/livez") == 0) {
        respond(c, 200, "text/plain", "ok\n", 3);
    } else if (strcmp(path, "/readyz") == 0) {
        char why[256] = "";
        if (m->ready(m->arg, why, sizeof(why))) {
            respond(c, 200, "text/plain", "ready\n", 6);
        } else {
            char body[300];
            int n = snprintf(body, sizeof(body), "not ready: %s\n", why);
            respond(c, 503, "text/plain", body, (size_t)n);
        }
    } else {
        respond(c, 404, "text/plain", "not found\n", 10);
    }
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
    ssize_t n = read(fd, c->req + c->len, sizeof(c->req) - 1 - c->len);
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN)
            conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->req[c->len] = '\0';
    if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n"))
        handle(c);
    else if (c->len >= sizeof(c->req) - 1)
        respond(c, 400, "text/plain", "request too large\n", 18);
    (void)events;
}

static void on_accept(struct cg_loop *loop, int fd, unsigned events, void *arg)
{
    struct cg_metrics *m = arg;
    (void)events;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
            return;
        int slot = -1;
        for (int i = 0; i < METRICS_CONNS_MAX && slot < 0; i++)
            if (!m->conns[i])
                slot = i;
        if (slot < 0) {
            close(cfd); /* at the limit: a scraper retries */
            continue;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(cfd);
            continue;
        }
        c->m = m;
        c->fd = cfd;
        char err[128];
        if (cg_loop_io_add(loop, &c->io, cfd, CG_LOOP_READ, on_conn, c, err,
                           sizeof(err))) {
            close(cfd);
            free(c);
            continue;
        }
        m->conns[slot] = c;
    }
}

struct cg_metrics *cg_metrics_new(struct cg_loop *loop, const char *addr,
                                  cg_metrics_render_fn render,
                                  cg_metrics_ready_fn ready, void *arg,
                                  char *errbuf, size_t errsz)
{
    char host[64];
    int port;
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof(host) ||
        sscanf(colon + 1, "%d", &port) != 1 || port < 0 || port > 65535) {
        cg_err_set(errbuf, errsz, CG_ECONF,
                   "metrics address '%s' is not host:port", addr);
        return NULL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        cg_err_set(errbuf, errsz, CG_ECONF,
                   "metrics host '%s' is not an IPv4 address", host);
        return NULL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t sl = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, 64) != 0 || getsockname(fd, (struct sockaddr *)&sa, &sl)) {
        cg_err_set(errbuf, errsz, CG_EIO, "metrics listen %s: %s", addr,
                   strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    struct cg_metrics *m = cg_calloc(1, sizeof(*m));
    m->loop = loop;
    m->fd = fd;
    m->render = render;
    m->ready = ready;
    m->arg = arg;
    snprintf(m->address, sizeof(m->address), "%s:%d", host, ntohs(sa.sin_port));
    if (cg_loop_io_add(loop, &m->io, fd, CG_LOOP_READ, on_accept, m, errbuf,
                       errsz)) {
        close(fd);
        free(m);
        return NULL;
    }
    return m;
}

const char *cg_metrics_address(const struct cg_metrics *m)
{
    return m->address;
}

void cg_metrics_free(struct cg_metrics *m)
{
    if (!m)
        return;
    for (int i = 0; i < METRICS_CONNS_MAX; i++)
        if (m->conns[i])
            conn_close(m->conns[i]);
    cg_loop_io_del(m->loop, &m->io);
    close(m->fd);
    free(m);
}
