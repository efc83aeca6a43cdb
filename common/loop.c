#include "loop.h"

#include "err.h"
#include "mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* epoll events collected per turn; more ready fds simply wait a turn. */
#define LOOP_EVENTS_MAX 256

struct cg_loop {
    int epfd;
    struct cg_loop_timer **heap; /* min-heap on (due_ms, seq) */
    size_t nheap, capheap;
    uint64_t next_seq;
    size_t nio;
    /* The batch being dispatched, so that a watcher deleted by an earlier
     * callback of the same batch is not called with a dangling pointer. */
    struct epoll_event events[LOOP_EVENTS_MAX];
    int nevents;
    int dispatch_idx;
};

int64_t cg_loop_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct cg_loop *cg_loop_new(char *errbuf, size_t errsz)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "epoll_create1: %s", strerror(errno));
        return NULL;
    }
    struct cg_loop *loop = cg_calloc(1, sizeof(*loop));
    loop->epfd = epfd;
    return loop;
}

void cg_loop_free(struct cg_loop *loop)
{
    if (!loop)
        return;
    for (size_t i = 0; i < loop->nheap; i++)
        loop->heap[i]->heap_idx = 0;
    free(loop->heap);
    close(loop->epfd);
    free(loop);
}

/* ---- timers ---- */

static bool timer_less(const struct cg_loop_timer *a,
                       const struct cg_loop_timer *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void heap_set(struct cg_loop *loop, size_t i, struct cg_loop_timer *t)
{
    loop->heap[i] = t;
    t->heap_idx = i + 1;
}

static void heap_up(struct cg_loop *loop, size_t i)
{
    struct cg_loop_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_less(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(struct cg_loop *loop, size_t i)
{
    struct cg_loop_timer *t = loop->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct cg_loop_timer *best = t;
        if (l < loop->nheap && timer_less(loop->heap[l], best)) {
            m = l;
            best = loop->heap[l];
        }
        if (r < loop->nheap && timer_less(loop->heap[r], best))
            m = r;
        if (m == i)
            break;
        heap_set(loop, i, loop->heap[m]);
        i = m;
    }
    heap_set(loop, i, t);
}

void cg_loop_timer_cancel(struct cg_loop *loop, struct cg_loop_timer *t)
{
    if (!t || t->heap_idx == 0)
        return;
    size_t i = t->heap_idx - 1;
    t->heap_idx = 0;
    loop->nheap--;
    if (i == loop->nheap)
        return;
    struct cg_loop_timer *last = loop->heap[loop->nheap];
    heap_set(loop, i, last);
    if (i > 0 && timer_less(last, loop->heap[(i - 1) / 2]))
        heap_up(loop, i);
    else
        heap_down(loop, i);
}

void cg_loop_timer_add(struct cg_loop *loop, struct cg_loop_timer *t,
                       int64_t delay_ms, cg_loop_timer_fn fn, void *arg)
{
    cg_loop_timer_cancel(loop, t);
    if (delay_ms < 0)
        delay_ms = 0;
    t->due_ms = cg_loop_now_ms() + delay_ms;
    t->seq = loop->next_seq++;
    t->fn = fn;
    t->arg = arg;
    if (loop->nheap == loop->capheap) {
        loop->capheap = loop->capheap ? loop->capheap * 2 : 64;
        loop->heap =
            cg_realloc(loop->heap, loop->capheap * sizeof(*loop->heap));
    }
    heap_set(loop, loop->nheap, t);
    loop->nheap++;
    heap_up(loop, loop->nheap - 1);
}

bool cg_loop_timer_active(const struct cg_loop_timer *t)
{
    return t && t->heap_idx != 0;
}

size_t cg_loop_timer_count(const struct cg_loop *loop)
{
    return loop->nheap;
}

/* ---- watchers ---- */

static uint32_t io_epoll_events(unsigned events)
{
    uint32_t e = 0;
    if (events & CG_LOOP_READ)
        e |= EPOLLIN;
    if (events & CG_LOOP_WRITE)
        e |= EPOLLOUT;
    return e;
}

int cg_loop_io_add(struct cg_loop *loop, struct cg_loop_io *io, int fd,
                   unsigned events, cg_loop_io_fn fn, void *arg, char *errbuf,
                   size_t errsz)
{
    struct epoll_event ev = { .events = io_epoll_events(events),
                              .data.ptr = io };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return cg_err_set(errbuf, errsz, CG_EIO, "epoll_ctl add fd %d: %s", fd,
                          strerror(errno));
    io->fd = fd;
    io->events = events;
    io->fn = fn;
    io->arg = arg;
    io->active = true;
    loop->nio++;
    return 0;
}

int cg_loop_io_modify(struct cg_loop *loop, struct cg_loop_io *io,
                      unsigned events)
{
    if (!io->active)
        return CG_EINVAL;
    if (io->events == events)
        return 0;
    struct epoll_event ev = { .events = io_epoll_events(events),
                              .data.ptr = io };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) != 0)
        return CG_EIO;
    io->events = events;
    return 0;
}

void cg_loop_io_del(struct cg_loop *loop, struct cg_loop_io *io)
{
    if (!io || !io->active)
        return;
    /* The fd may already be closed by its owner (curl closes sockets
     * before telling us), in which case epoll dropped it by itself. */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->active = false;
    loop->nio--;
    for (int i = loop->dispatch_idx; i < loop->nevents; i++)
        if (loop->events[i].data.ptr == io)
            loop->events[i].data.ptr = NULL;
}

size_t cg_loop_io_count(const struct cg_loop *loop)
{
    return loop->nio;
}

/* ---- driving ---- */

static int loop_run_timers(struct cg_loop *loop)
{
    int ran = 0;
    int64_t now = cg_loop_now_ms();
    /* Timers added by callbacks of this turn (including a timer re-adding
     * itself with no delay) wait for the next turn, so that a turn always
     * ends and I/O is never starved. */
    uint64_t seq_limit = loop->next_seq;
    while (loop->nheap > 0) {
        struct cg_loop_timer *t = loop->heap[0];
        if (t->due_ms > now || t->seq >= seq_limit)
            break;
        cg_loop_timer_cancel(loop, t);
        t->fn(loop, t->arg);
        ran++;
    }
    return ran;
}

int cg_loop_run_once(struct cg_loop *loop, int max_wait_ms)
{
    int timeout = max_wait_ms;
    if (loop->nheap > 0) {
        int64_t wait = loop->heap[0]->due_ms - cg_loop_now_ms();
        if (wait < 0)
            wait = 0;
        if (timeout < 0 || wait < timeout)
            timeout = (int)wait;
    }
    int n = epoll_wait(loop->epfd, loop->events, LOOP_EVENTS_MAX, timeout);
    if (n < 0) {
        if (errno != EINTR)
            return CG_EIO;
        n = 0;
    }
    int ran = 0;
    loop->nevents = n;
    for (loop->dispatch_idx = 0; loop->dispatch_idx < n;) {
        struct epoll_event *ev = &loop->events[loop->dispatch_idx++];
        struct cg_loop_io *io = ev->data.ptr;
        if (!io)
            continue;
        unsigned events = 0;
        if (ev->events & EPOLLIN)
            events |= CG_LOOP_READ;
        if (ev->events & EPOLLOUT)
            events |= CG_LOOP_WRITE;
        if (ev->events & (EPOLLERR | EPOLLHUP))
            events |= CG_LOOP_ERROR;
        io->fn(loop, io->fd, events, io->arg);
        ran++;
    }
    loop->nevents = 0;
    loop->dispatch_idx = 0;
    return ran + loop_run_timers(loop);
}
