#include "testsrv.h"

#include "loop.h"
#include "mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define SRV_INPUT_MAX (4 * 1024 * 1024)

struct srv_conn {
    struct cg_testsrv *srv;
    struct srv_conn *next;
    struct cg_loop_io io;
    int fd;
    struct cg_buf in, out;
    size_t out_off;
    bool hung;
};

struct cg_testsrv {
    struct cg_loop *loop;
    cg_testsrv_fn fn;
    void *arg;
    int fd, port;
    struct cg_loop_io io;
    struct srv_conn *conns;
    size_t count, accepted;
};

static void conn_close(struct srv_conn *c)
{
    struct cg_testsrv *srv = c->srv;
    for (struct srv_conn **pc = &srv->conns; *pc; pc = &(*pc)->next) {
        if (*pc == c) {
            *pc = c->next;
            break;
        }
    }
    cg_loop_io_del(srv->loop, &c->io);
    close(c->fd);
    cg_buf_free(&c->in);
    cg_buf_free(&c->out);
    free(c);
}

const char *cg_testsrv_header(const char *headers, const char *name, char *val,
                              size_t valsz)
{
    size_t n = strlen(name);
    for (const char *p = headers; p && *p;) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            size_t vl = len - (size_t)(v - p);
            if (vl >= valsz)
                vl = valsz - 1;
            memcpy(val, v, vl);
            val[vl] = '\0';
            return val;
        }
        p = eol ? eol + 2 : NULL;
    }
    return NULL;
}

static const char *status_text(int st)
{
    switch (st) {
    case 200:
        return "OK";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 429:
        return "Too Many Requests";
    default:
        return "Status";
    }
}

/* Answers every complete request in the input buffer. */
static void conn_parse(struct srv_conn *c)
{
    for (;;) {
        if (c->hung || !c->in.data)
            return;
        char *end = strstr(c->in.data, "\r\n\r\n");
        if (!end)
            return;
        size_t head_len = (size_t)(end - c->in.data) + 4;
        char *head = cg_strndup(c->in.data, head_len);
        char val[32];
        const char *hdrs = strstr(head, "\r\n") + 2;
        size_t body_len = 0;
        if (cg_testsrv_header(hdrs, "Content-Length", val, sizeof(val)))
            body_len = strtoul(val, NULL, 10);
        if (c->in.len < head_len + body_len) {
            free(head);
            return;
        }
        char method[16] = "", path[2048] = "";
        sscanf(head, "%15s %2047s", method, path);
        char *body = cg_strndup(c->in.data + head_len, body_len);
        struct cg_testsrv_request req = {
            .method = method,
            .path = path,
            .headers = hdrs,
            .body = body,
            .body_len = body_len,
            .at_ms = cg_loop_now_ms(),
        };
        struct cg_testsrv_response res = { .status = 200 };
        c->srv->count++;
        c->srv->fn(&req, &res, c->srv->arg);
        if (res.hang) {
            c->hung = true;
        } else {
            const char *b = res.body ? res.body : "";
            cg_buf_printf(&c->out,
                          "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n"
                          "Content-Type: application/json\r\n%s\r\n%s",
                          res.status, status_text(res.status), strlen(b),
                          res.headers, b);
        }
        free(res.body);
        free(body);
        free(head);
        /* Drop the consumed request from the input. */
        size_t used = head_len + body_len;
        memmove(c->in.data, c->in.data + used, c->in.len - used + 1);
        c->in.len -= used;
        if (c->out.len > c->out_off)
            cg_loop_io_modify(c->srv->loop, &c->io,
                              CG_LOOP_READ | CG_LOOP_WRITE);
    }
}

static void conn_on_io(struct cg_loop *loop, int fd, unsigned events, void *arg)
{
    struct srv_conn *c = arg;
    if (events & CG_LOOP_WRITE) {
        while (c->out_off < c->out.len) {
            ssize_t n = send(fd, c->out.data + c->out_off,
                             c->out.len - c->out_off, MSG_NOSIGNAL);
            if (n <= 0) {
                if (n < 0 && errno == EAGAIN)
                    break;
                conn_close(c);
                return;
            }
            c->out_off += (size_t)n;
        }
        if (c->out_off == c->out.len) {
            cg_buf_reset(&c->out);
            c->out_off = 0;
            cg_loop_io_modify(loop, &c->io, CG_LOOP_READ);
        }
    }
    if (events & (CG_LOOP_READ | CG_LOOP_ERROR)) {
        char tmp[16384];
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            conn_close(c);
            return;
        }
        if (n > 0) {
            if (cg_buf_append(&c->in, tmp, (size_t)n) != 0) {
                conn_close(c);
                return;
            }
            conn_parse(c);
        }
    }
}

static void srv_on_accept(struct cg_loop *loop, int fd, unsigned events,
                          void *arg)
{
    struct cg_testsrv *srv = arg;
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    struct srv_conn *c = cg_calloc(1, sizeof(*c));
    c->srv = srv;
    c->fd = cfd;
    cg_buf_init(&c->in, SRV_INPUT_MAX);
    cg_buf_init(&c->out, SRV_INPUT_MAX);
    if (cg_loop_io_add(loop, &c->io, cfd, CG_LOOP_READ, conn_on_io, c, NULL,
                       0) != 0) {
        close(cfd);
        free(c);
        return;
    }
    c->next = srv->conns;
    srv->conns = c;
    srv->accepted++;
}

struct cg_testsrv *cg_testsrv_new(struct cg_loop *loop, cg_testsrv_fn fn,
                                  void *arg)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, 512) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        close(fd);
        return NULL;
    }
    struct cg_testsrv *srv = cg_calloc(1, sizeof(*srv));
    srv->loop = loop;
    srv->fn = fn;
    srv->arg = arg;
    srv->fd = fd;
    srv->port = ntohs(sa.sin_port);
    if (cg_loop_io_add(loop, &srv->io, fd, CG_LOOP_READ, srv_on_accept, srv,
                       NULL, 0) != 0) {
        close(fd);
        free(srv);
        return NULL;
    }
    return srv;
}

void cg_testsrv_free(struct cg_testsrv *srv)
{
    if (!srv)
        return;
    while (srv->conns)
        conn_close(srv->conns);
    cg_loop_io_del(srv->loop, &srv->io);
    close(srv->fd);
    free(srv);
}

int cg_testsrv_port(const struct cg_testsrv *srv)
{
    return srv->port;
}

size_t cg_testsrv_count(const struct cg_testsrv *srv)
{
    return srv->count;
}

size_t cg_testsrv_connections(const struct cg_testsrv *srv)
{
    return srv->accepted;
}
