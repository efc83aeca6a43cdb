/*
 * No test leaks a server: a test process that starts redis-server and a
 * devbroker and then dies by SIGKILL takes them with it (PR_SET_PDEATHSIG
 * in each child), and one that simply exits without stopping them stops
 * them at exit (atexit). The "test process" here is a forked copy of this
 * one; this process is its subreaper, so the orphaned servers come to it
 * and can be watched and reaped.
 */
#include "check.h"
#include "harness.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

enum ending { DIES_BY_SIGKILL, EXITS, ABORTS };

static const char *const ending_names[] = { "sigkill", "exit", "abort" };

/* The forked test: start both servers, report them, wait for the word
 * (end of file on go), then end as told. */
static void child(int fd, int go, enum ending how)
{
    char c;

    char errbuf[256];
    struct cg_harness_redis *r = cg_harness_redis_start(errbuf, sizeof(errbuf));
    struct cg_harness_devbroker *db =
        r ? cg_harness_devbroker_start(1, 1, NULL, errbuf, sizeof(errbuf))
          : NULL;

    if (!db) {
        dprintf(fd, "error %s\n", errbuf);
        _exit(1);
    }
    dprintf(fd, "%d %d %d %s\n",
            (int)cg_harness_proc_pid(cg_harness_redis_proc(r)),
            cg_harness_redis_port(r),
            (int)cg_harness_proc_pid(cg_harness_devbroker_proc(db)),
            cg_harness_devbroker_bootstrap(db));
    close(fd);
    while (read(go, &c, 1) > 0)
        ;
    switch (how) {
    case EXITS:
        exit(0); /* without freeing r or db */
    case ABORTS:
        abort();
    case DIES_BY_SIGKILL:
        for (;;)
            pause(); /* until the parent kills us */
    }
}

static int atoi_port(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);

    return *end || v <= 0 || v > 65535 ? -1 : (int)v;
}

static int read_report(int fd, char *buf, size_t bufsz, int timeout_ms)
{
    int64_t deadline = cg_harness_now_ms() + timeout_ms;
    size_t len = 0;

    while (len < bufsz - 1 && !memchr(buf, '\n', len)) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int64_t left = deadline - cg_harness_now_ms();
        ssize_t r;

        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return -1;
        r = read(fd, buf + len, bufsz - 1 - len);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
    }
    return 0;
}

static void scenario(enum ending how)
{
    const char *name = ending_names[how];
    char report[512] = "";
    int fds[2], go[2], redis_pid, redis_port, db_pid, db_port, status;
    char bootstrap[256];
    const char *colon;
    pid_t kid;

    if (pipe(fds) < 0 || pipe(go) < 0)
        return;
    kid = fork();
    if (kid == 0) {
        close(fds[0]);
        close(go[1]);
        child(fds[1], go[0], how);
    }
    close(fds[1]);
    close(go[0]);
    CHECK(read_report(fds[0], report, sizeof(report), 60000) == 0,
          "[%s] the test process reports its servers", name);
    close(fds[0]);
    if (sscanf(report, "%d %d %d %255s", &redis_pid, &redis_port, &db_pid,
               bootstrap) != 4) {
        CHECK(false, "[%s] report: %s", name, report);
        close(go[1]);
        kill(kid, SIGKILL);
        waitpid(kid, NULL, 0);
        return;
    }
    colon = strrchr(bootstrap, ':');
    db_port = colon ? atoi_port(colon + 1) : -1;
    CHECK(cg_harness_port_open(redis_port), "[%s] redis listens on %d", name,
          redis_port);
    CHECK(cg_harness_port_open(db_port), "[%s] devbroker listens on %d", name,
          db_port);

    if (how == DIES_BY_SIGKILL)
        kill(kid, SIGKILL);
    close(go[1]);
    waitpid(kid, &status, 0);
    if (how == EXITS)
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "[%s] the test process exited 0 (%d)", name, status);
    else
        CHECK(WIFSIGNALED(status), "[%s] the test process was killed (%d)",
              name, status);

    CHECK(cg_harness_pid_wait_gone(redis_pid, 10000) == 0,
          "[%s] redis-server %d is gone", name, redis_pid);
    CHECK(cg_harness_pid_wait_gone(db_pid, 10000) == 0,
          "[%s] devbroker %d is gone", name, db_pid);
    /* They were re-parented to us; reap them. */
    waitpid(redis_pid, NULL, WNOHANG);
    waitpid(db_pid, NULL, WNOHANG);
    CHECK(!cg_harness_port_open(redis_port), "[%s] redis port %d is closed",
          name, redis_port);
    CHECK(!cg_harness_port_open(db_port), "[%s] devbroker port %d is closed",
          name, db_port);
}

int main(void)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    /* Created here, so the directory is ours to remove at exit whatever
     * becomes of the forked copies that use it. */
    cg_harness_dir();
    scenario(DIES_BY_SIGKILL);
    scenario(EXITS);
    scenario(ABORTS);
    return check_done();
}
