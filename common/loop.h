/*
 * loop — the single-threaded event loop every process turns.
 *
 * One loop per process serves libcurl's sockets (http), Kafka's queue event
 * fd, a metrics listen socket and every timer (retry backoff, token refresh,
 * client-side throttling) so that thousands of jobs in flight cost a heap
 * entry each rather than a thread each. Timers live in a binary min-heap
 * (O(log n) add and cancel); file descriptors in epoll.
 *
 * Timers and fd watchers are plain records embedded in the caller's own
 * structures: adding one allocates nothing, and the loop never frees them.
 * The caller must cancel (or delete) a record before freeing its memory.
 * Callbacks may add and cancel any timer or watcher, including their own.
 */
#ifndef CG_LOOP_H
#define CG_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_loop;

/* Monotonic clock in milliseconds (CLOCK_MONOTONIC); never goes back. */
int64_t cg_loop_now_ms(void);

struct cg_loop *cg_loop_new(char *errbuf, size_t errsz);
/* Timers and watchers still registered are forgotten, not called. */
void cg_loop_free(struct cg_loop *loop);

/* ---- timers ---- */

typedef void (*cg_loop_timer_fn)(struct cg_loop *loop, void *arg);

struct cg_loop_timer {
    /* private to the loop; zero-initialise before first use */
    int64_t due_ms;
    uint64_t seq;
    size_t heap_idx; /* 0: not scheduled; else index + 1 */
    cg_loop_timer_fn fn;
    void *arg;
};

/*
 * Schedules t to call fn(loop, arg) once, delay_ms from now (0: on the next
 * turn, after pending I/O). A timer already scheduled is moved. Timers due
 * at the same time fire in the order they were added.
 */
void cg_loop_timer_add(struct cg_loop *loop, struct cg_loop_timer *t,
                       int64_t delay_ms, cg_loop_timer_fn fn, void *arg);
/* Unschedules t; a no-op when t is NULL or not scheduled. */
void cg_loop_timer_cancel(struct cg_loop *loop, struct cg_loop_timer *t);
bool cg_loop_timer_active(const struct cg_loop_timer *t);

/* ---- file descriptor watchers ---- */

#define CG_LOOP_READ  0x1u
#define CG_LOOP_WRITE 0x2u
#define CG_LOOP_ERROR 0x4u /* error or hang-up; always reported */

typedef void (*cg_loop_io_fn)(struct cg_loop *loop, int fd, unsigned events,
                              void *arg);

struct cg_loop_io {
    /* private to the loop; zero-initialise before first use */
    int fd;
    unsigned events;
    bool active;
    cg_loop_io_fn fn;
    void *arg;
};

/*
 * Watches fd for events (CG_LOOP_READ|CG_LOOP_WRITE, level-triggered) and
 * calls fn when any is ready. The fd stays the caller's; delete the watcher
 * before closing it. Returns 0 or CG_EIO (epoll refused the fd).
 */
int cg_loop_io_add(struct cg_loop *loop, struct cg_loop_io *io, int fd,
                   unsigned events, cg_loop_io_fn fn, void *arg, char *errbuf,
                   size_t errsz);
/* Changes the events of an active watcher. Returns 0 or CG_EIO. */
int cg_loop_io_modify(struct cg_loop *loop, struct cg_loop_io *io,
                      unsigned events);
/* Stops watching; events already collected for io are dropped. NULL-ok. */
void cg_loop_io_del(struct cg_loop *loop, struct cg_loop_io *io);

/* ---- driving ---- */

/*
 * Waits for I/O up to max_wait_ms (negative: until something happens;
 * shortened to the next timer), dispatches ready watchers, then every timer
 * that was due when dispatch began. Returns the number of callbacks run, or
 * CG_EIO when epoll fails.
 */
int cg_loop_run_once(struct cg_loop *loop, int max_wait_ms);

/* Scheduled timers and active watchers (a loop with neither is idle). */
size_t cg_loop_timer_count(const struct cg_loop *loop);
size_t cg_loop_io_count(const struct cg_loop *loop);

#endif
