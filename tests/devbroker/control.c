#include "control.h"

#include "err.h"
#include "log.h"
#include "mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A peer: a socket (in == out) or the stdin/stdout pair. */
struct conn {
    int in, out;
    bool owned; /* close the descriptors when done */
    size_t len;
    char buf[CG_CONTROL_LINE_MAX];
};

struct cg_control {
    int lfd;
    int port;
    cg_control_handler fn;
    void *arg;
    /* Slot 0 is in_fd/out_fd; the rest are accepted sockets. */
    struct conn *conns[CG_CONTROL_MAX_CLIENTS + 1];
};

struct cg_control *cg_control_new(int port, cg_control_handler fn, void *arg,
                                  char *errbuf, size_t errsz)
{
    struct cg_control *ctl = cg_calloc(1, sizeof(*ctl));
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t salen = sizeof(sa);
    int one = 1;

    ctl->fn = fn;
    ctl->arg = arg;
    ctl->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (ctl->lfd < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "socket: %s", strerror(errno));
        goto fail;
    }
    setsockopt(ctl->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (bind(ctl->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(ctl->lfd, 16) < 0 ||
        getsockname(ctl->lfd, (struct sockaddr *)&sa, &salen) < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "control port 127.0.0.1:%d: %s", port,
                   strerror(errno));
        goto fail;
    }
    ctl->port = ntohs(sa.sin_port);
    return ctl;

fail:
    cg_control_free(ctl);
    return NULL;
}

int cg_control_port(const struct cg_control *ctl)
{
    return ctl->port;
}

static void conn_close(struct cg_control *ctl, size_t slot)
{
    struct conn *c = ctl->conns[slot];

    if (!c)
        return;
    if (c->owned)
        close(c->in);
    free(c);
    ctl->conns[slot] = NULL;
}

/* Writes all of s; false when the peer is gone. The socket is blocking for
 * writes in practice: replies are a few bytes and the peer reads them. */
static bool conn_write(struct conn *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w =
            c->owned ? send(c->out, s, n, MSG_NOSIGNAL) : write(c->out, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = { .fd = c->out, .events = POLLOUT };
            if (poll(&pfd, 1, 1000) <= 0)
                return false;
            continue;
        }
        if (w <= 0)
            return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads what is there and answers every complete line; false to close. */
static bool conn_serve(struct cg_control *ctl, struct conn *c)
{
    char reply[CG_CONTROL_LINE_MAX];
    ssize_t r;
    char *nl;

    r = read(c->in, c->buf + c->len, sizeof(c->buf) - c->len);
    if (r < 0)
        return errno == EINTR || errno == EAGAIN;
    if (r == 0)
        return false;
    c->len += (size_t)r;

    while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
        size_t linelen = (size_t)(nl - c->buf);
        size_t n;

        *nl = '\0';
        if (linelen > 0 && c->buf[linelen - 1] == '\r')
            c->buf[linelen - 1] = '\0';
        reply[0] = '\0';
        ctl->fn(ctl->arg, c->buf, reply, sizeof(reply) - 1);
        n = strlen(reply);
        reply[n++] = '\n';
        if (!conn_write(c, reply, n))
            return false;
        memmove(c->buf, nl + 1, c->len - linelen - 1);
        c->len -= linelen + 1;
    }
    if (c->len == sizeof(c->buf)) {
        static const char msg[] = "error line too long\n";
        conn_write(c, msg, sizeof(msg) - 1);
        return false;
    }
    return true;
}

static void control_accept(struct cg_control *ctl)
{
    int fd = accept4(ctl->lfd, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0)
        return;
    for (size_t i = 1; i <= CG_CONTROL_MAX_CLIENTS; i++) {
        if (!ctl->conns[i]) {
            struct conn *c = cg_calloc(1, sizeof(*c));
            c->in = c->out = fd;
            c->owned = true;
            ctl->conns[i] = c;
            return;
        }
    }
    cg_warn("control_full", "max_clients=%d", CG_CONTROL_MAX_CLIENTS);
    close(fd);
}

int cg_control_run(struct cg_control *ctl, int in_fd, int out_fd, int stop_fd)
{
    struct pollfd pfds[CG_CONTROL_MAX_CLIENTS + 3];
    size_t slots[CG_CONTROL_MAX_CLIENTS + 3];

    if (in_fd >= 0) {
        struct conn *c = cg_calloc(1, sizeof(*c));
        c->in = in_fd;
        c->out = out_fd;
        ctl->conns[0] = c;
    }
    for (;;) {
        nfds_t n = 0;

        pfds[n++] = (struct pollfd){ .fd = stop_fd, .events = POLLIN };
        pfds[n++] = (struct pollfd){ .fd = ctl->lfd, .events = POLLIN };
        for (size_t i = 0; i <= CG_CONTROL_MAX_CLIENTS; i++) {
            if (ctl->conns[i]) {
                slots[n] = i;
                pfds[n++] = (struct pollfd){ .fd = ctl->conns[i]->in,
                                             .events = POLLIN };
            }
        }
        if (poll(pfds, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            cg_error("control_poll", "err=\"%s\"", strerror(errno));
            return CG_EIO;
        }
        if (pfds[0].revents)
            return 0;
        if (pfds[1].revents & POLLIN)
            control_accept(ctl);
        for (nfds_t k = 2; k < n; k++) {
            if (pfds[k].revents && !conn_serve(ctl, ctl->conns[slots[k]]))
                conn_close(ctl, slots[k]);
        }
    }
}

void cg_control_free(struct cg_control *ctl)
{
    if (!ctl)
        return;
    for (size_t i = 0; i <= CG_CONTROL_MAX_CLIENTS; i++)
        conn_close(ctl, i);
    if (ctl->lfd >= 0)
        close(ctl->lfd);
    free(ctl);
}
