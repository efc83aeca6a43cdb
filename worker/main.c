/*
 * contactguard-worker — turns scan jobs into findings.
 *
 * Configuration as every contactguard process (--config, --set, env);
 * SIGTERM or SIGINT stops taking jobs, drains in-flight ones for
 * worker.drain_timeout_ms, then commits, flushes and leaves the group within
 * bounds of their own (pipeline.h), and exits 0: a stop takes at most
 * worker.drain_timeout_ms + CG_PIPELINE_CLOSE_MS whatever the broker does.
 * A second signal ends the process at once, killed by that signal
 * (common/signals.h); unfinished jobs stay uncommitted and are consumed
 * again.
 * Once running it prints one line on stdout, "contactguard-worker ready
 * metrics=ADDR", so a supervisor knows it started and where to scrape.
 */
#include "conf.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "pipeline.h"
#include "signals.h"

#include <stdio.h>
#include <string.h>

struct stop_state {
    struct cg_pipeline *pl;
    struct cg_signals sig;
};

static void on_signal(struct cg_signals *s, int signo, void *arg)
{
    struct stop_state *st = arg;
    (void)s;
    (void)signo;
    if (st->pl)
        cg_pipeline_stop(st->pl);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: contactguard-worker [--config FILE] "
                 "[--set key=value]... [--dump-config] [--version]\n\n"
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

    if (cg_conf_version_arg(argc, argv, "contactguard-worker", stdout)) {
        status = 0;
        goto out;
    }
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

    /* Signals first: the pipeline starts threads, which must inherit the
     * blocked mask. */
    if (!(loop = cg_loop_new(err, sizeof(err))) ||
        cg_signals_start(&st.sig, loop, on_signal, &st, err, sizeof(err)) ||
        !(st.pl = cg_pipeline_new(loop, conf, err, sizeof(err)))) {
        cg_error("worker.start_failed", "error=\"%s\"", err);
        goto out;
    }
    cg_info("worker.started", "metrics=%s version=%s",
            cg_pipeline_metrics_address(st.pl), CG_VERSION);
    /* One line on stdout for whatever supervises us (tests, the local
     * stack): started, and where the metrics are. */
    printf("contactguard-worker ready metrics=%s\n",
           cg_pipeline_metrics_address(st.pl));
    fflush(stdout);
    while (!cg_pipeline_done(st.pl))
        if (cg_loop_run_once(loop, 100) < 0)
            break;
    cg_info("worker.stopping", "signals=%d", st.sig.count);
    status = 0;
out:
    cg_pipeline_free(st.pl);
    cg_signals_stop(&st.sig);
    cg_loop_free(loop);
    cg_conf_free(conf);
    if (status == 0 && st.sig.count)
        cg_info("worker.stopped", "status=0");
    return status;
}
