/*
 * contactguard-remediate — the operators' remediation tool.
 *
 *   plan  --tenant T --subscription S   read and show what apply would do
 *   apply --tenant T --subscription S   remediate one subscription now
 *   undo  --subscription S [--tenant T] restore the body kept by the last
 *                                       remediation
 *
 * plan and apply read the contacts and evaluate them exactly as the worker
 * does (fetch, evaluate), then run the worker's remediate stage: the same
 * policy, lock, plan, undo record, write and verification. Configuration
 * as every contactguard process (--config, --set, env). --json prints the
 * remediation record (docs/remediation.md) instead of the summary;
 * --publish also sends the remediation event of plan and apply to the
 * results topic (kafka.* as for the worker), as the worker would.
 *
 * Exit status: 0 nothing to do / applied / restored; 1 a change is planned
 * (plan), or the remediation was blocked, failed, skipped or refused;
 * 2 usage, configuration or a subscription that could not be read;
 * 3 stopped by SIGTERM or SIGINT before it finished: the Azure calls in
 * flight are cancelled and the lock released (a write already sent may
 * have landed; its undo body is kept). The event, if any, gets
 * STOP_FLUSH_MS. A second signal ends the process at once, killed by it
 * (common/signals.h).
 */
#include "arm.h"
#include "auth.h"
#include "cache.h"
#include "conf.h"
#include "contacts.h"
#include "err.h"
#include "evaluate.h"
#include "fetch.h"
#include "finding.h"
#include "http.h"
#include "job.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "publish.h"
#include "remediate.h"
#include "signals.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEADLINE_MS      120000
#define STOP_FLUSH_MS    1000 /* the event's delivery, once stopped */
#define EXIT_INTERRUPTED 3

enum command {
    CMD_PLAN,
    CMD_APPLY,
    CMD_UNDO,
};

struct run {
    enum command cmd;
    const struct cg_conf *conf;
    const char *tenant_id;
    const char *subscription;
    bool json;
    bool publish;
    struct cg_publish *pub;
    struct cg_publish_batch batch;
    struct cg_loop *loop;
    struct cg_fetch *fetch;
    struct cg_remediate *rm;
    const struct cg_tenant *tenant;
    struct cg_rules_conf rules;
    struct cg_remediate_policy policy;
    struct cg_finding findings[CG_RULE_COUNT];
    char owner[CG_REMEDIATE_OWNER_MAX + 1];
    int64_t deadline_ms;
    /* the call in flight, to cancel on a signal (one at a time) */
    struct cg_fetch_call *fetch_call;
    struct cg_remediate_call *rm_call;
    bool done, stopped;
    int status;
    struct cg_signals sig;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: contactguard-remediate [--config FILE] [--set key=value]"
            "... [--json] [--publish] COMMAND\n"
            "       contactguard-remediate --version\n\n"
            "  plan  --tenant T --subscription S    show what apply would "
            "do\n"
            "  apply --tenant T --subscription S    remediate now (the "
            "tenant's\n"
            "                                       remediation.mode must be "
            "apply)\n"
            "  undo  --subscription S [--tenant T]  restore the body kept by "
            "the\n"
            "                                       last remediation\n\n"
            "Exit status: 0 nothing to do, applied or restored; 1 planned, "
            "blocked,\nfailed, skipped or refused; 2 usage or unreadable; "
            "3 stopped by a signal.\n");
}

static void print_summary(const struct cg_remediation *e)
{
    printf("subscription %s (tenant %s)\n", e->subscription_id, e->tenant_id);
    printf("mode:         %s\n", cg_remediation_mode_name(e->mode));
    printf("outcome:      %s (%s)\n", cg_remediation_outcome_name(e->outcome),
           e->reason_code);
    printf("reason:       %s\n", e->reason);
    if (e->replanned)
        printf("note:         the contact changed since it was evaluated; "
               "the plan starts from the new one\n");
    size_t i;
    json_t *c;
    if (json_array_size(e->changes))
        printf("changes:\n");
    json_array_foreach(e->changes, i, c)
    {
        printf("  - %s\n", json_string_value(c));
    }
    printf("rules:\n");
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        enum cg_status shown = e->status_after[k] != CG_STATUS_NONE
                                   ? e->status_after[k]
                                   : e->status_planned[k];
        printf("  %-18s %-7s -> %s%s\n", cg_rule_info((enum cg_rule)k)->id,
               cg_status_name(e->status_before[k]),
               shown == CG_STATUS_NONE ? "unchanged" : cg_status_name(shown),
               cg_remediation_rule_fixed(e, (enum cg_rule)k) ? " (fixed)"
               : cg_remediation_rule_to_fix(e, (enum cg_rule)k) &&
                       e->status_after[k] == CG_STATUS_NONE
                   ? " (would be fixed)"
                   : "");
    }
    if (e->planned) {
        char *s = json_dumps(e->planned, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("body %s:\n%s\n",
               e->outcome == CG_REM_APPLIED ? "written" : "to write", s);
        free(s);
    }
    if (e->verification != CG_VERIFY_NOT_RUN)
        printf("verification: %s (read back %s the body written)\n",
               cg_verification_name(e->verification),
               e->body_matches ? "equals" : "differs from");
}

static void on_sent(struct cg_publish_batch *b, void *arg)
{
    struct run *r = arg;
    if (b->err) {
        fprintf(stderr,
                "contactguard-remediate: the remediation event was not "
                "delivered: %s\n",
                b->why);
        r->status = 2;
    }
    r->done = true;
}

static void on_remediated(struct cg_remediate_result *res, void *arg)
{
    struct run *r = arg;
    r->rm_call = NULL;
    const struct cg_remediation *e = &res->event;
    if (r->json) {
        json_t *o = cg_remediation_json(e);
        json_object_set_new(o, "subscription_id",
                            json_string(e->subscription_id));
        json_object_set_new(o, "tenant_id", json_string(e->tenant_id));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        print_summary(e);
    }
    switch (e->outcome) {
    case CG_REM_APPLIED:
    case CG_REM_NOOP:
        r->status = 0;
        break;
    default:
        r->status = 1;
        break;
    }
    if (r->pub) {
        cg_publish_batch_fill(r->pub, &r->batch, NULL, 0);
        cg_publish_batch_add_remediation(r->pub, &r->batch, e);
        if (cg_publish_send(r->pub, &r->batch, on_sent, r) == 0)
            return; /* done once delivered */
        fprintf(stderr, "contactguard-remediate: the remediation event "
                        "could not be queued\n");
        r->status = 2;
    }
    r->done = true;
}

static void on_fetched(struct cg_fetch_result *res, void *arg)
{
    struct run *r = arg;
    r->fetch_call = NULL;
    if (res->err) {
        fprintf(stderr,
                "contactguard-remediate: %s: the contacts could not be "
                "read (%s %s): %s\n",
                r->subscription, cg_status_name(res->status), res->reason_code,
                res->reason);
        r->status = 2;
        r->done = true;
        return;
    }
    cg_evaluate(&res->ct, &res->owners, &r->rules, r->findings);
    char hash[65];
    cg_contacts_hash(&res->ct, hash);
    char why[256];
    if (!cg_remediate_wanted(r->policy.mode, r->findings, CG_RULE_COUNT,
                             CG_SUB_UNKNOWN, why, sizeof(why))) {
        if (r->json)
            printf("{\"outcome\":\"noop\",\"reason\":\"%s\"}\n",
                   strstr(why, "fails") ? "no rule fails" : "not eligible");
        else
            printf("subscription %s: nothing to do: %s\n", r->subscription,
                   why);
        r->status = strstr(why, "fails") ? 0 : 1;
        r->done = true;
        return;
    }
    struct cg_remediate_req req;
    memset(&req, 0, sizeof(req));
    req.tenant_id = r->tenant_id;
    req.subscription_id = r->subscription;
    req.job_id = "";
    req.owner = r->owner;
    req.policy = &r->policy;
    req.rules = &r->rules;
    req.owners = &res->owners; /* copied by cg_remediate_start */
    req.findings = r->findings;
    req.nfindings = CG_RULE_COUNT;
    req.contacts_hash = hash;
    req.deadline_ms = r->deadline_ms;
    if (!(r->rm_call = cg_remediate_start(r->rm, &req, on_remediated, r))) {
        fprintf(stderr, "contactguard-remediate: remediation not started\n");
        r->status = 2;
        r->done = true;
    }
}

static void print_body(const char *label, const json_t *b)
{
    char *s =
        b ? json_dumps(b, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY)
          : NULL;
    printf("%s:\n%s\n", label, s ? s : "null");
    free(s);
}

static void on_undone(const struct cg_remediate_undo_result *res, void *arg)
{
    struct run *r = arg;
    r->rm_call = NULL;
    if (r->json) {
        json_t *o =
            json_pack("{s:s,s:s,s:s,s:O?,s:O?,s:O?,s:O?,s:b}",
                      "subscription_id", r->subscription, "result",
                      res->err == 0              ? "restored"
                      : res->err == CG_ECONFLICT ? "refused"
                      : res->err == CG_ENOTFOUND ? "nothing-kept"
                                                 : "failed",
                      "reason", res->why, "kept", res->kept, "current",
                      res->current, "restored", res->restored, "written",
                      res->written, "normalised", (int)res->normalised);
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("subscription %s: %s\n", r->subscription, res->why);
        if (res->restored)
            print_body("contact now", res->restored);
        else if (res->current)
            print_body("contact now (unchanged)", res->current);
    }
    if (res->err)
        fprintf(stderr, "contactguard-remediate: undo: %s\n", res->why);
    r->status = res->err ? 1 : 0;
    r->done = true;
}

/* The first SIGTERM or SIGINT: what is in flight is cancelled (a held lock
 * released); an event already handed to Kafka gets STOP_FLUSH_MS. */
static void on_signal(struct cg_signals *s, int signo, void *arg)
{
    struct run *r = arg;
    (void)s;
    (void)signo;
    r->stopped = true;
    if (r->done || (!r->fetch_call && !r->rm_call))
        return; /* only the event's delivery is left: bounded in main */
    cg_fetch_cancel(r->fetch, r->fetch_call);
    cg_remediate_cancel(r->rm, r->rm_call);
    r->fetch_call = NULL;
    r->rm_call = NULL;
    fprintf(stderr,
            "contactguard-remediate: %s: stopped by a signal before "
            "it finished\n",
            r->subscription);
    r->status = EXIT_INTERRUPTED;
    r->done = true;
}

static int parse_args(struct run *r, int argc, char **argv)
{
    if (argc < 2)
        return -1;
    if (!strcmp(argv[1], "plan"))
        r->cmd = CMD_PLAN;
    else if (!strcmp(argv[1], "apply"))
        r->cmd = CMD_APPLY;
    else if (!strcmp(argv[1], "undo"))
        r->cmd = CMD_UNDO;
    else
        return -1;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            r->json = true;
        } else if (!strcmp(argv[i], "--publish")) {
            r->publish = true;
        } else if (!strcmp(argv[i], "--tenant") && i + 1 < argc) {
            r->tenant_id = argv[++i];
        } else if (!strcmp(argv[i], "--subscription") && i + 1 < argc) {
            r->subscription = argv[++i];
        } else {
            fprintf(stderr,
                    "contactguard-remediate: unexpected argument "
                    "%s\n",
                    argv[i]);
            return -1;
        }
    }
    if (!r->subscription || !cg_guid_valid(r->subscription)) {
        fprintf(stderr, "contactguard-remediate: --subscription needs a "
                        "subscription id (a GUID)\n");
        return -1;
    }
    if (r->cmd != CMD_UNDO && (!r->tenant_id || !cg_guid_valid(r->tenant_id))) {
        fprintf(stderr, "contactguard-remediate: --tenant needs a tenant id "
                        "(a GUID)\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    char err[512];
    bool dump = false;
    struct cg_conf *conf = cg_conf_new();
    struct cg_http *http = NULL;
    struct cg_auth *auth = NULL;
    struct cg_arm *arm = NULL;
    struct cg_cache *cache = NULL;
    struct run r;
    memset(&r, 0, sizeof(r));
    r.status = 2;

    /* --json may come before the command too. */
    if (cg_conf_version_arg(argc, argv, "contactguard-remediate", stdout)) {
        r.status = 0;
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            r.status = 0;
            goto out;
        }
    }
    if (cg_conf_from_args(conf, &argc, argv, &dump, err, sizeof(err))) {
        fprintf(stderr, "contactguard-remediate: %s\n", err);
        goto out;
    }
    if (dump) {
        cg_conf_dump(conf, stdout);
        r.status = 0;
        goto out;
    }
    int first = 1;
    for (; first < argc; first++) {
        if (!strcmp(argv[first], "--json"))
            r.json = true;
        else if (!strcmp(argv[first], "--publish"))
            r.publish = true;
        else
            break;
    }
    if (parse_args(&r, argc - first + 1, argv + first - 1)) {
        usage(stderr);
        goto out;
    }
    enum cg_log_level level;
    enum cg_log_format format;
    cg_log_level_parse(cg_conf_str(conf, "log.level"), &level);
    cg_log_format_parse(cg_conf_str(conf, "log.format"), &format);
    cg_log_setup(level, format, "remediate");

    r.conf = conf;
    if (r.tenant_id) {
        r.tenant = cg_conf_tenant_find(conf, r.tenant_id);
        if (!r.tenant) {
            fprintf(stderr,
                    "contactguard-remediate: tenant %s is not configured\n",
                    r.tenant_id);
            goto out;
        }
    }
    cg_rules_conf_from(&r.rules, conf, r.tenant);
    cg_remediate_policy(conf, r.tenant, -1, &r.policy);
    if (r.cmd == CMD_APPLY && r.policy.mode != CG_REMEDIATION_APPLY) {
        fprintf(stderr,
                "contactguard-remediate: tenant %s has remediation.mode %s; "
                "apply writes only for a tenant whose mode is apply\n",
                r.tenant_id, cg_remediation_mode_name(r.policy.mode));
        goto out;
    }
    if (r.cmd == CMD_PLAN)
        r.policy.mode = CG_REMEDIATION_DRY_RUN; /* never writes */
    char host[64] = "unknown";
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    snprintf(r.owner, sizeof(r.owner), "remediate:%.32s:%ld", host,
             (long)getpid());

    struct cg_http_opts ho;
    cg_http_opts_from_conf(conf, &ho);
    /* Signals before the cache's thread starts, so it inherits the mask. */
    if (!(r.loop = cg_loop_new(err, sizeof(err))) ||
        cg_signals_start(&r.sig, r.loop, on_signal, &r, err, sizeof(err)) ||
        !(http = cg_http_new(r.loop, &ho, err, sizeof(err))) ||
        !(auth = cg_auth_new(r.loop, http, conf, err, sizeof(err))) ||
        !(arm = cg_arm_new(r.loop, http, auth, conf, err, sizeof(err))) ||
        !(r.fetch = cg_fetch_new(arm, conf, err, sizeof(err))) ||
        !(cache = cg_cache_new(r.loop, conf, err, sizeof(err))) ||
        !(r.rm =
              cg_remediate_new(r.loop, arm, cache, conf, err, sizeof(err))) ||
        (r.publish && r.cmd != CMD_UNDO &&
         !(r.pub = cg_publish_new(r.loop, conf, err, sizeof(err))))) {
        fprintf(stderr, "contactguard-remediate: %s\n", err);
        goto out;
    }
    r.deadline_ms = cg_loop_now_ms() + DEADLINE_MS;
    if (r.cmd == CMD_UNDO) {
        r.rm_call = cg_remediate_undo(r.rm, r.tenant_id, r.subscription,
                                      r.owner, r.deadline_ms, on_undone, &r);
    } else {
        r.fetch_call = cg_fetch_start(r.fetch, r.tenant_id, r.subscription,
                                      r.deadline_ms, on_fetched, &r);
    }
    while (!r.done && !r.stopped)
        if (cg_loop_run_once(r.loop, 100) < 0)
            break;
    /* Stopped while the event was on its way: it gets STOP_FLUSH_MS, then
     * is purged (and reported undelivered). */
    int64_t flush_end = cg_loop_now_ms() + STOP_FLUSH_MS;
    while (!r.done && cg_loop_now_ms() < flush_end)
        if (cg_loop_run_once(r.loop, 100) < 0)
            break;
    fflush(stdout);
out:
    cg_publish_free(r.pub, r.stopped ? 0 : 5000);
    cg_publish_batch_clear(&r.batch);
    cg_remediate_free(r.rm);
    /* A cancelled call's lock release, or a kept undo body, gets its
     * bounded chance to reach Redis. */
    cg_cache_settle(cache, STOP_FLUSH_MS);
    cg_cache_free(cache);
    cg_fetch_free(r.fetch);
    cg_arm_free(arm);
    cg_auth_free(auth);
    cg_http_free(http);
    cg_signals_stop(&r.sig);
    cg_loop_free(r.loop);
    for (int k = 0; k < CG_RULE_COUNT; k++)
        cg_finding_clear(&r.findings[k]);
    cg_conf_free(conf);
    return r.status;
}
