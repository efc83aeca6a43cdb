/*
 * contactguard-producer — decides what gets scanned and when.
 *
 *   contactguard-producer sweep   [--force] [--dry-run] [--json]
 *   contactguard-producer watch   [--dry-run] [--json]
 *   contactguard-producer file    [FILE|-] [--dry-run] [--json]
 *   contactguard-producer listen  [--dry-run] [--json]
 *   contactguard-producer webhook [--dry-run] [--json]
 *
 * plus the common --config FILE, --set key=value, --dump-config. Jobs go to
 * topics.jobs (or, with --dry-run, to stdout as JSON lines); the summary
 * goes to stdout at the end (text, or JSON with --json); logs and progress
 * go to stderr. SIGTERM or SIGINT stops any mode cleanly: open debounce
 * windows leave, jobs on their way get their delivery reports, the listener
 * commits and leaves its group, all within CG_SOURCE_STOP_MS whatever the
 * broker does (source.h), and the exit status is as below. A second
 * signal ends the process at once, killed by it (common/signals.h).
 *
 * Exit status: 0 all done; 1 a tenant failed or input lines were bad (the
 * rest was done); 2 usage, configuration or start-up error; 3 a job was not
 * delivered.
 */
#include "source.h"

#include "cache_reader.h"
#include "conf.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "signals.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_PARTIAL     1
#define EXIT_USAGE       2
#define EXIT_UNDELIVERED 3
#define FINISH_MS        60000

/* The one mutable global: raised by the signal watcher. */
static volatile int stop_flag;

static void on_signal(struct cg_signals *s, int signo, void *arg)
{
    (void)s;
    (void)signo;
    (void)arg;
    stop_flag = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: contactguard-producer MODE [options] [--config FILE] "
            "[--set key=value]... [--dump-config] [--version]\n\n"
            "Modes:\n"
            "  sweep        one job per auditable subscription of every "
            "tenant\n"
            "  watch        re-list tenants every producer.watch_interval; "
            "jobs for new subscriptions\n"
            "  file [FILE]  jobs from subscription ids, tenant,subscription "
            "pairs or job JSON lines (- or none: stdin)\n"
            "  listen       jobs from Azure events on topics.events\n"
            "  webhook      jobs from Event Grid push delivery on "
            "producer.webhook_listen\n\n"
            "Options:\n"
            "  --force      sweep: ignore producer.min_rescan_interval\n"
            "  --dry-run    print the jobs (JSON lines) instead of sending "
            "them\n"
            "  --json       summary as JSON\n\n"
            "Exit status: 0 done, 1 a tenant failed or bad input lines, 2 "
            "usage or start-up error, 3 a job was not delivered.\n\n"
            "Configuration keys:\n");
    cg_conf_help(out);
}

static void summary_json(const struct cg_summary *s,
                         const struct cg_emit_stats *es, int status, FILE *out)
{
    json_t *ft = json_array();
    for (size_t i = 0; i < s->nfailed; i++)
        json_array_append_new(
            ft, json_pack(
                    "{s:s,s:s,s:s,s:I,s:s}", "id", s->failed[i].id, "name",
                    s->failed[i].name, "error", s->failed[i].error, "status",
                    (json_int_t)s->failed[i].status, "why", s->failed[i].why));
    json_t *bl = json_array();
    for (size_t i = 0; i < s->nbad; i++)
        json_array_append_new(bl, json_pack("{s:I,s:s}", "line",
                                            (json_int_t)s->bad[i].line, "why",
                                            s->bad[i].why));
    json_t *byr = json_object();
    for (int r = 0; r <= CG_JOB_MANUAL; r++)
        json_object_set_new(byr, cg_job_reason_name((enum cg_job_reason)r),
                            json_integer((json_int_t)es->by_reason[r]));
    json_t *byk = json_object();
    for (int k = 0; k <= CG_EVENT_MALFORMED; k++)
        json_object_set_new(byk, cg_event_kind_name((enum cg_event_kind)k),
                            json_integer((json_int_t)s->events_by_kind[k]));
    double secs = (double)s->elapsed_ms / 1000.0;
    json_t *o = json_pack(
        "{s:s,s:s,s:i,s:I,s:f,"
        "s:{s:I,s:I,s:I},s:o,"
        "s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b},"
        "s:{s:I,s:I,s:I,s:o},"
        "s:{s:I,s:I,s:o},"
        "s:{s:I,s:I,s:I,s:I,s:I,s:o},"
        "s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:I}",
        "schema", "contactguard.producer.summary/1", "mode", s->mode,
        "exit_status", status, "elapsed_ms", (json_int_t)s->elapsed_ms,
        "jobs_per_s", secs > 0 ? (double)es->sent / secs : 0.0,
        /* tenants */
        "tenants", "total", (json_int_t)s->tenants, "ok",
        (json_int_t)s->tenants_ok, "failed", (json_int_t)s->tenants_failed,
        "failed_tenants", ft,
        /* subscriptions */
        "subscriptions", "listed", (json_int_t)s->subscriptions, "auditable",
        (json_int_t)s->auditable, "disabled", (json_int_t)s->disabled,
        "deleted", (json_int_t)s->deleted, "fresh", (json_int_t)s->fresh,
        "known", (json_int_t)s->known, "lighthouse", (json_int_t)s->lighthouse,
        "duplicates", (json_int_t)s->duplicates, "freshness_unavailable",
        s->freshness_unavailable,
        /* jobs */
        "jobs", "sent", (json_int_t)es->sent, "delivered",
        (json_int_t)es->delivered, "failed", (json_int_t)es->failed,
        "by_reason", byr,
        /* lines */
        "lines", "total", (json_int_t)s->lines, "bad", (json_int_t)s->bad_lines,
        "bad_lines", bl,
        /* events */
        "events", "bodies", (json_int_t)s->bodies, "bodies_rejected",
        (json_int_t)s->bodies_rejected, "total", (json_int_t)s->events,
        "duplicate", (json_int_t)s->events_duplicate, "debounced",
        (json_int_t)s->events_debounced, "by_kind", byk,
        /* webhook */
        "webhook", "requests", (json_int_t)s->webhook_requests, "unauthorized",
        (json_int_t)s->webhook_unauthorized, "too_big",
        (json_int_t)s->webhook_too_big, "bad", (json_int_t)s->webhook_bad,
        "validations", (json_int_t)s->webhook_validations, "refused",
        (json_int_t)s->webhook_refused, "timeouts",
        (json_int_t)s->webhook_timeouts, "cycles", (json_int_t)s->cycles);
    char *txt = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    cg_log_scrub(txt);
    fprintf(out, "%s\n", txt);
    free(txt);
    json_decref(o);
}

static void summary_text(const struct cg_summary *s,
                         const struct cg_emit_stats *es, FILE *out)
{
    double secs = (double)s->elapsed_ms / 1000.0;
    fprintf(out,
            "%s: %llu jobs sent, %llu delivered, %llu failed in %.1fs "
            "(%.0f jobs/s)\n",
            s->mode, (unsigned long long)es->sent,
            (unsigned long long)es->delivered, (unsigned long long)es->failed,
            secs, secs > 0 ? (double)es->sent / secs : 0.0);
    if (s->tenants)
        fprintf(out,
                "tenants: %zu, %zu ok, %zu failed; subscriptions: %zu listed, "
                "%zu auditable, %zu disabled, %zu deleted, %zu fresh "
                "(skipped), %zu already known, %zu lighthouse%s\n",
                s->tenants, s->tenants_ok, s->tenants_failed, s->subscriptions,
                s->auditable, s->disabled, s->deleted, s->fresh, s->known,
                s->lighthouse,
                s->freshness_unavailable ? "; freshness unavailable" : "");
    for (size_t i = 0; i < s->nfailed; i++) {
        char why[600];
        cg_strlcpy(why, s->failed[i].why, sizeof(why));
        cg_log_scrub(why);
        fprintf(out, "failed tenant %s (%s): %s HTTP %ld: %s\n",
                s->failed[i].name, s->failed[i].id, s->failed[i].error,
                s->failed[i].status, why);
    }
    if (s->lines)
        fprintf(out, "lines: %zu, %zu bad\n", s->lines, s->bad_lines);
    for (size_t i = 0; i < s->nbad; i++)
        fprintf(out, "bad line %ld: %s\n", s->bad[i].line, s->bad[i].why);
    if (s->bodies || s->webhook_requests)
        fprintf(out,
                "events: %zu bodies (%zu rejected), %zu events: %zu "
                "new-subscription, %zu contact-change, %zu validation, %zu "
                "ignored, %zu malformed, %zu duplicate, %zu debounced\n",
                s->bodies, s->bodies_rejected, s->events,
                s->events_by_kind[CG_EVENT_NEW_SUBSCRIPTION],
                s->events_by_kind[CG_EVENT_CONTACT_CHANGE],
                s->events_by_kind[CG_EVENT_VALIDATION],
                s->events_by_kind[CG_EVENT_IGNORED],
                s->events_by_kind[CG_EVENT_MALFORMED], s->events_duplicate,
                s->events_debounced);
    if (s->webhook_requests)
        fprintf(out,
                "webhook: %zu requests, %zu unauthorized, %zu too large, %zu "
                "bad, %zu handshakes, %zu connections refused, %zu timed "
                "out\n",
                s->webhook_requests, s->webhook_unauthorized,
                s->webhook_too_big, s->webhook_bad, s->webhook_validations,
                s->webhook_refused, s->webhook_timeouts);
}

static void summary_free(struct cg_summary *s)
{
    free(s->failed);
    free(s->bad);
    memset(s, 0, sizeof(*s));
}

int main(int argc, char **argv)
{
    char err[512];
    int status = EXIT_USAGE;
    bool dump = false, force = false, dry_run = false, json = false;
    const char *mode = NULL, *file = NULL;
    struct cg_conf *conf = cg_conf_new();
    struct cg_loop *loop = NULL;
    struct cg_emit *emit = NULL;
    struct cg_summary sum;
    struct cg_source src;
    struct cg_signals sig;
    memset(&sum, 0, sizeof(sum));
    memset(&src, 0, sizeof(src));
    memset(&sig, 0, sizeof(sig));

    if (cg_conf_version_arg(argc, argv, "contactguard-producer", stdout)) {
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
        fprintf(stderr, "contactguard-producer: %s\n", err);
        goto out;
    }
    if (dump) {
        cg_conf_dump(conf, stdout);
        status = 0;
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--force"))
            force = true;
        else if (!strcmp(argv[i], "--dry-run"))
            dry_run = true;
        else if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!mode && argv[i][0] != '-')
            mode = argv[i];
        else if (mode && !strcmp(mode, "file") && !file &&
                 (argv[i][0] != '-' || !strcmp(argv[i], "-")))
            file = argv[i];
        else {
            fprintf(stderr, "contactguard-producer: unexpected argument %s\n",
                    argv[i]);
            usage(stderr);
            goto out;
        }
    }
    if (!mode || (strcmp(mode, "sweep") && strcmp(mode, "watch") &&
                  strcmp(mode, "file") && strcmp(mode, "listen") &&
                  strcmp(mode, "webhook"))) {
        fprintf(stderr, "contactguard-producer: %s\n",
                mode ? "unknown mode" : "a mode is required");
        usage(stderr);
        goto out;
    }
    if (force && strcmp(mode, "sweep") != 0) {
        fprintf(stderr, "contactguard-producer: --force is for sweep\n");
        goto out;
    }
    enum cg_log_level level;
    enum cg_log_format format;
    cg_log_level_parse(cg_conf_str(conf, "log.level"), &level);
    cg_log_format_parse(cg_conf_str(conf, "log.format"), &format);
    cg_log_setup(level, format, "producer");

    if (!(loop = cg_loop_new(err, sizeof(err))) ||
        cg_signals_start(&sig, loop, on_signal, NULL, err, sizeof(err)) ||
        !(emit = cg_emit_new(loop, conf, dry_run, stdout, err, sizeof(err)))) {
        cg_error("producer.start_failed", "error=\"%s\"", err);
        goto out;
    }
    sum.mode = mode;
    src.loop = loop;
    src.conf = conf;
    src.emit = emit;
    src.dry_run = dry_run;
    src.force = force;
    src.stop = &stop_flag;
    src.sum = &sum;
    src.out = stdout;
    /* Redis is optional for a sweep (freshness and the known set) and a
     * file (tenants of bare ids); watch connects itself, every cycle if
     * need be. */
    if ((!strcmp(mode, "sweep") && !(dry_run && force)) ||
        !strcmp(mode, "file")) {
        src.cache = cg_cache_reader_new(conf, err, sizeof(err));
        if (!src.cache) {
            cg_warn("producer.redis_unavailable", "error=\"%s\"", err);
            if (!strcmp(mode, "sweep") && !force)
                sum.freshness_unavailable = true;
        }
    }
    int64_t start = cg_loop_now_ms();
    int rc;
    if (!strcmp(mode, "sweep"))
        rc = cg_source_sweep(&src);
    else if (!strcmp(mode, "watch"))
        rc = cg_source_watch(&src);
    else if (!strcmp(mode, "file"))
        rc = cg_source_file(&src, file);
    else if (!strcmp(mode, "listen"))
        rc = cg_source_listen(&src);
    else
        rc = cg_source_webhook(&src);
    /* Stopped: the sources flushed within their bound already; what is
     * still out now is given up (and counted) at once. */
    cg_emit_finish(emit, stop_flag ? 0 : FINISH_MS);
    sum.elapsed_ms = cg_loop_now_ms() - start;
    struct cg_emit_stats es;
    cg_emit_stats(emit, &es);
    if (rc == CG_ECONF || (rc && es.sent == 0 && strcmp(mode, "file") != 0))
        status = EXIT_USAGE;
    else if (es.failed > 0)
        status = EXIT_UNDELIVERED;
    else if (rc || sum.tenants_failed > 0 || sum.bad_lines > 0)
        status = EXIT_PARTIAL;
    else
        status = 0;
    if (json)
        summary_json(&sum, &es, status, stdout);
    else
        summary_text(&sum, &es, stdout);
    fflush(stdout);
out:
    cg_emit_free(emit, 0);
    cg_cache_reader_free(src.cache);
    cg_signals_stop(&sig);
    cg_loop_free(loop);
    summary_free(&sum);
    cg_conf_free(conf);
    return status;
}
