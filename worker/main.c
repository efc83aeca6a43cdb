/*
 * contactguard-worker — turns scan jobs into findings.
 *
 * Configuration as every contactguard process (--config, --set, env);
 * SIGTERM or SIGINT stops taking jobs, drains in-flight ones for
 * worker.drain_timeout_ms, commits and exits 0. A second signal stops at
 * once (unfinished jobs stay uncommitted and are consumed again).
 */
#include "conf.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "pipeline.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

struct stop_state {
    struct cg_pipeline *pl;
    int signals;
    struct cg_loop_io io;
};

static void on_signal(struct cg_loop *loop, int fd, unsigned events,
                      void *arg)
{
    struct stop_state *st = arg;
    struct signalfd_siginfo si;
    (void)loop;
    (void)events;
    while (read(fd, &si, sizeof(si)) == sizeof(si)) {
        st->signals++;
        cg_info("worker.signal", "signal=%s count=%d",
                strsignal((int)si.ssi_signo), st->signals);
        cg_pipeline_stop(st->pl);
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: contactguard-worker [--config FILE] "
                 "[--set key=value]... [--dump-config]\n\n"
                 "Consumes scan jobs, reads Azure, evaluates the security "
                 "contact rules,\ncaches and publishes findings.\n\n"
                 "Configuration keys:\n");
    cg_conf_help(out);
}

int main(int argc, char **argv)
{
    char err[512];
    int status = 1;
    bool dump = false;
    struct cg_conf *conf = cg_conf_new();
    struct cg_loop *loop = NULL;
    struct stop_state st;
    memset(&st, 0, sizeof(st));
    int sfd = -1;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            status = 0;
            goto out;
        }
    }
    if (cg_conf_from_args(conf, &argc, argv, &dump, err, sizeof(err))) {
        fprintf(stderr, "contactguard-worker: %s\n", err);
        status = 2;
        goto out;
    }
    if (argc > 1) {
        fprintf(stderr, "contactguard-worker: unexpected argument %s\n",
                argv[1]);
        usage(stderr);
        status = 2;
        goto out;
    }
    if (dump) {
        cg_conf_dump(conf, stdout);
        status = 0;
        goto out;
    }
    enum cg_log_level level;
    enum cg_log_format format;
    cg_log_level_parse(cg_conf_str(conf, "log.level"), &level);
    cg_log_format_parse(cg_conf_str(conf, "log.format"), &format);
    cg_log_setup(level, format, "worker");

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

    if (!(loop = cg_loop_new(err, sizeof(err))) ||
        !(st.pl = cg_pipeline_new(loop, conf, err, sizeof(err))) ||
        cg_loop_io_add(loop, &st.io, sfd, CG_LOOP_READ, on_signal, &st, err,
                       sizeof(err))) {
        cg_error("worker.start_failed", "error=\"%s\"", err);
        goto out;
    }
    cg_info("worker.started", "metrics=%s version=%s",
            cg_pipeline_metrics_address(st.pl), CG_VERSION);
    while (!cg_pipeline_done(st.pl) && st.signals < 2)
        if (cg_loop_run_once(loop, 100) < 0)
            break;
    cg_info("worker.stopping", "signals=%d", st.signals);
    status = 0;
out:
    if (st.io.active)
        cg_loop_io_del(loop, &st.io);
    cg_pipeline_free(st.pl);
    cg_loop_free(loop);
    if (sfd >= 0)
        close(sfd);
    cg_conf_free(conf);
    if (status == 0 && st.signals)
        cg_info("worker.stopped", "status=0");
    return status;
}
