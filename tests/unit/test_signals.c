/*
 * signals: the first SIGTERM or SIGINT is read on the loop, the second one
 * kills. Each case runs in a child process (signal dispositions are
 * per-process) and the parent reads its wait status: no timing involved.
 */
#include "../check.h"
#include "loop.h"
#include "signals.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_READ_FIRST 10 /* exit status: the first signal reached fn */
#define CHILD_NO_SIGNAL  11

static void on_first(struct cg_signals *s, int signo, void *arg)
{
    (void)s;
    *(int *)arg = signo;
}

/* Child: watches the signals, raises `first`, turns the loop until fn has
 * it, then raises `second` (0: none) and exits CHILD_READ_FIRST if still
 * alive. */
static void child(int first, int second, bool ignore_first)
{
    char err[256];
    struct cg_loop *loop = cg_loop_new(err, sizeof(err));
    struct cg_signals sig;
    int got = 0;
    memset(&sig, 0, sizeof(sig));
    if (ignore_first)
        signal(first, SIG_IGN); /* as a shell leaves it for a background job */
    if (!loop || cg_signals_start(&sig, loop, on_first, &got, err, sizeof(err)))
        _exit(2);
    raise(first);
    for (int i = 0; i < 1000 && !got; i++)
        cg_loop_run_once(loop, 10);
    if (got != first)
        _exit(CHILD_NO_SIGNAL);
    if (second)
        raise(second);
    cg_signals_stop(&sig);
    cg_loop_free(loop);
    _exit(CHILD_READ_FIRST);
}

static int run(int first, int second, bool ignore_first)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        child(first, second, ignore_first);
    int st = -1;
    waitpid(pid, &st, 0);
    return st;
}

int main(void)
{
    static const struct {
        const char *name;
        int first, second;
        bool ignore_first;
        int want_exit; /* or 0 */
        int want_sig;  /* or 0 */
    } rows[] = {
        { "one SIGTERM is read, the process carries on", SIGTERM, 0, false,
          CHILD_READ_FIRST, 0 },
        { "one SIGINT is read", SIGINT, 0, false, CHILD_READ_FIRST, 0 },
        { "a second SIGTERM kills", SIGTERM, SIGTERM, false, 0, SIGTERM },
        { "SIGINT after SIGTERM kills", SIGTERM, SIGINT, false, 0, SIGINT },
        { "SIGINT twice kills, even when the parent ignored it", SIGINT, SIGINT,
          true, 0, SIGINT },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int st = run(rows[i].first, rows[i].second, rows[i].ignore_first);
        if (rows[i].want_sig)
            CHECK(WIFSIGNALED(st) && WTERMSIG(st) == rows[i].want_sig,
                  "%s: wait status %d", rows[i].name, st);
        else
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == rows[i].want_exit,
                  "%s: wait status %d", rows[i].name, st);
    }
    return check_done("signals");
}
