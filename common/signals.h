/*
 * signals — how a long-running process hears SIGTERM and SIGINT.
 *
 * The first signal is read from a signalfd on the event loop, so a graceful
 * stop is ordinary loop work (drain, bounded flushes and commits). Once it
 * has been read, the default disposition of both signals is restored and
 * they are unblocked in the main thread: a second SIGTERM or SIGINT ends
 * the process at once, wherever it is, inside a blocking librdkafka or
 * hiredis call too, killed by that signal. Dying by the signal is what
 * says the stop was cut short (a shell shows 143 for SIGTERM, 130 for
 * SIGINT; systemd and Kubernetes report the signal), as distinct from a
 * graceful stop's own exit status.
 *
 * Other threads (librdkafka's, the cache's, libcurl's resolver) inherit the
 * blocked mask because cg_signals_start runs before any of them starts, so
 * a signal is only ever taken by the main thread. Only main() uses this:
 * library code never touches signal dispositions.
 */
#ifndef CG_SIGNALS_H
#define CG_SIGNALS_H

#include "loop.h"

#include <stddef.h>

struct cg_signals;
typedef void (*cg_signals_fn)(struct cg_signals *s, int signo, void *arg);

/* A plain record embedded in main's state; zero it before start. */
struct cg_signals {
    int count; /* signals read (at most 1: the second one kills) */
    /* private */
    struct cg_loop *loop;
    struct cg_loop_io io;
    int fd;
    cg_signals_fn fn;
    void *arg;
};

/*
 * Blocks SIGTERM and SIGINT, ignores SIGPIPE (hiredis and the metrics
 * endpoint write with write(2)) and watches the two signals on loop. Call
 * before any thread is created. fn runs once, from the loop, for the first
 * signal. Returns 0 or CG_EIO.
 */
int cg_signals_start(struct cg_signals *s, struct cg_loop *loop,
                     cg_signals_fn fn, void *arg, char *errbuf, size_t errsz);

/* Stops watching (the dispositions stay as they are); a zeroed or stopped
 * record is fine. */
void cg_signals_stop(struct cg_signals *s);

#endif
