#include "signals.h"

#include "err.h"
#include "log.h"

#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static void stop_mask(sigset_t *mask)
{
    sigemptyset(mask);
    sigaddset(mask, SIGTERM);
    sigaddset(mask, SIGINT);
}

/*
 * From now on a signal kills. SIG_DFL is set explicitly because a parent
 * may have left SIGINT ignored (a shell does for background jobs); the
 * mask is lifted after, so a signal that came in between is delivered,
 * and kills, at the unblock.
 */
static void second_kills(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t mask;
    stop_mask(&mask);
    pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
}

static void on_readable(struct cg_loop *loop, int fd, unsigned events,
                        void *arg)
{
    struct cg_signals *s = arg;
    struct signalfd_siginfo si;
    (void)events;
    if (read(fd, &si, sizeof(si)) != sizeof(si))
        return;
    s->count++;
    /* Only one signal is ever read: unwatch first, so that a second one
     * pending already is delivered by the unblock and ends the process. */
    cg_loop_io_del(loop, &s->io);
    cg_info("process.signal",
            "signal=%s note=\"stopping gracefully; a second SIGTERM or "
            "SIGINT ends the process at once\"",
            strsignal((int)si.ssi_signo));
    second_kills();
    s->fn(s, (int)si.ssi_signo, s->arg);
}

int cg_signals_start(struct cg_signals *s, struct cg_loop *loop,
                     cg_signals_fn fn, void *arg, char *errbuf, size_t errsz)
{
    sigset_t mask;
    stop_mask(&mask);
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->loop = loop;
    s->fn = fn;
    s->arg = arg;
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->fd < 0)
        return cg_err_set(errbuf, errsz, CG_EIO, "signalfd: %m");
    if (cg_loop_io_add(loop, &s->io, s->fd, CG_LOOP_READ, on_readable, s,
                       errbuf, errsz)) {
        cg_signals_stop(s);
        return CG_EIO;
    }
    return 0;
}

void cg_signals_stop(struct cg_signals *s)
{
    if (!s->loop)
        return;
    if (s->io.active)
        cg_loop_io_del(s->loop, &s->io);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->loop = NULL;
}
