#include "stack.h"

#include "err.h"
#include "job.h"
#include "json.h"
#include "mem.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int load_truth(struct cg_stack *s)
{
    FILE *f = fopen(s->truthf, "r");
    if (!f)
        return CG_EIO;
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        json_t *o = json_loads(line, 0, NULL);
        if (!o)
            continue;
        const char *sub = cg_json_str(o, "subscription_id");
        enum cg_rule r = cg_rule_parse(cg_json_str(o, "rule"));
        /* The truth lists the rules of a subscription together. */
        struct cg_stack_sub *t =
            s->nsubs && sub && !strcmp(s->subs[s->nsubs - 1].sub, sub)
                ? &s->subs[s->nsubs - 1]
                : NULL;
        if (!t && sub) {
            s->subs = cg_realloc(s->subs, (s->nsubs + 1) * sizeof(*t));
            t = &s->subs[s->nsubs++];
            memset(t, 0, sizeof(*t));
            cg_strlcpy(t->sub, sub, sizeof(t->sub));
            const char *ten = cg_json_str(o, "tenant_id");
            const char *st = cg_json_str(o, "state");
            cg_strlcpy(t->tenant, ten ? ten : "", sizeof(t->tenant));
            cg_strlcpy(t->state, st ? st : "", sizeof(t->state));
        }
        if (t && r < CG_RULE_COUNT)
            t->want[r] = cg_status_parse(cg_json_str(o, "status"));
        json_decref(o);
    }
    fclose(f);
    return 0;
}

static void load_secrets(struct cg_stack *s)
{
    char path[700];
    for (size_t i = 0; i < s->nsubs && s->nsecrets < CG_STACK_SECRETS_MAX;
         i++) {
        snprintf(path, sizeof(path), "%s.secrets/%s", s->creds,
                 s->subs[i].tenant);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char buf[128] = "";
        if (fgets(buf, sizeof(buf), f)) {
            buf[strcspn(buf, "\r\n")] = '\0';
            bool dup = false;
            for (size_t k = 0; k < s->nsecrets; k++)
                dup = dup || !strcmp(s->secrets[k], buf);
            if (!dup && strlen(buf) >= 8)
                cg_strlcpy(s->secrets[s->nsecrets++], buf, 128);
        }
        fclose(f);
    }
}

int cg_stack_start(struct cg_stack *s, const struct cg_stack_opts *o,
                   char *errbuf, size_t errsz)
{
    return cg_stack_start_redis(s, o, NULL, errbuf, errsz);
}

int cg_stack_start_redis(struct cg_stack *s, const struct cg_stack_opts *o,
                         const struct cg_harness_redis_opts *redis,
                         char *errbuf, size_t errsz)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "%s/azure", cg_harness_dir());
    mkdir(s->dir, 0700);
    snprintf(s->creds, sizeof(s->creds), "%s/worker.json", s->dir);
    snprintf(s->truthf, sizeof(s->truthf), "%s/truth.jsonl", s->dir);
    if (!o->plain_http)
        snprintf(s->ca, sizeof(s->ca), "%s/ca.pem", s->dir);
    const struct cg_harness_redis_opts plain = { 0 };
    const struct cg_harness_redis_opts *ro = redis ? redis : &plain;
    if (ro->password && s->nsecrets < CG_STACK_SECRETS_MAX)
        cg_strlcpy(s->secrets[s->nsecrets++], ro->password, 128);
    if (ro->user_password && s->nsecrets < CG_STACK_SECRETS_MAX)
        cg_strlcpy(s->secrets[s->nsecrets++], ro->user_password, 128);
    if (!(s->redis = cg_harness_redis_start_opts(ro, errbuf, errsz)) ||
        !(s->kafka = cg_harness_devbroker_start(1, o->partitions, NULL, errbuf,
                                                errsz)))
        goto fail;
    char nt[16], ns[16];
    snprintf(nt, sizeof(nt), "%d", o->tenants);
    snprintf(ns, sizeof(ns), "%d", o->subs_per_tenant);
    const char *argv[48] = { CG_BIN_CONTACTGUARD_FAKEAZURE,
                             "--tenants",
                             nt,
                             "--subscriptions-per-tenant",
                             ns,
                             "--truth",
                             s->truthf,
                             "--credentials",
                             s->creds,
                             "--app-keys",
                             s->dir };
    int n = 11;
    if (!o->plain_http) {
        argv[n++] = "--tls-self-signed";
        argv[n++] = s->dir;
    }
    for (const char *const *e = o->fake_args; e && *e && n < 46; e++)
        argv[n++] = *e;
    argv[n] = NULL;
    struct cg_harness_proc_opts po = { .name = "fakeazure" };
    if (!(s->fake = cg_harness_proc_start(argv, &po, errbuf, errsz)))
        goto fail;
    cg_strlcpy(s->base, cg_harness_proc_first_line(s->fake), sizeof(s->base));
    if (load_truth(s) ||
        s->nsubs != (size_t)(o->tenants * o->subs_per_tenant)) {
        cg_err_set(errbuf, errsz, CG_EIO,
                   "the fake's truth lists %zu subscriptions, not %d", s->nsubs,
                   o->tenants * o->subs_per_tenant);
        goto fail;
    }
    load_secrets(s);
    return 0;
fail:
    cg_stack_stop(s);
    return CG_EIO;
}

struct cg_harness_proc *cg_stack_worker(struct cg_stack *s, const char *name,
                                        const char *const *extra, char *errbuf,
                                        size_t errsz)
{
    char bs[300];
    struct cg_harness_redis_client rc;
    snprintf(bs, sizeof(bs), "kafka.bootstrap.servers=%s",
             cg_harness_devbroker_bootstrap(s->kafka));
    cg_harness_redis_client(s->redis, &rc);
    /* CG_WORKER runs another build's worker on the same stack (old against
     * new in one benchmark run). */
    const char *bin = getenv("CG_WORKER");
    const char *argv[64] = { bin && *bin ? bin : CG_BIN_CONTACTGUARD_WORKER,
                             "--config",
                             s->creds,
                             "--set",
                             bs,
                             "--set",
                             "output.format=compact",
                             "--set",
                             "worker.metrics_listen=127.0.0.1:0",
                             "--set",
                             "log.level=info",
                             "--set",
                             "worker.job_deadline_ms=60000" };
    int n = 13;
    for (const char *const *e = rc.argv; *e && n < 62; e++)
        argv[n++] = *e;
    for (const char *const *e = extra; e && *e && n < 62; e++)
        argv[n++] = *e;
    argv[n] = NULL;
    struct cg_harness_proc_opts po = { .name = name, .env = rc.envp };
    return cg_harness_proc_start(argv, &po, errbuf, errsz);
}

int cg_stack_produce_jobs(struct cg_stack *s, size_t poison, char *errbuf,
                          size_t errsz)
{
    static const char *const bad[] = {
        "not json at all",
        "{\"schema\":\"contactguard.job/9\"}",
        "{\"schema\":\"contactguard.job/1\",\"job_id\":\"x\",\"tenant_id\":"
        "\"not-a-guid\",\"subscription_id\":\"nope\",\"reason\":\"manual\","
        "\"requested_at\":\"2026-01-01T00:00:00Z\"}",
        "[1,2,3]",
        "",
    };
    size_t n = s->nsubs + poison;
    struct cg_harness_msg *msgs = cg_calloc(n, sizeof(*msgs));
    char **vals = cg_calloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        struct cg_harness_msg *m = &msgs[i];
        if (i < s->nsubs) {
            struct cg_job job;
            cg_job_init(&job, s->subs[i].tenant, s->subs[i].sub,
                        CG_JOB_SCHEDULED);
            job.state = cg_sub_state_parse(s->subs[i].state);
            vals[i] = cg_job_encode(&job);
            m->key = s->subs[i].sub;
        } else {
            vals[i] =
                cg_strdup(bad[(i - s->nsubs) % (sizeof(bad) / sizeof(bad[0]))]);
            m->key = "poison";
            m->nheaders = 1;
            m->headers[0].name = "origin";
            m->headers[0].value = "test";
            m->headers[0].value_len = 4;
        }
        m->key_len = strlen(m->key);
        m->value = vals[i];
        m->value_len = strlen(vals[i]);
        m->partition = -1;
    }
    int rc = cg_harness_kafka_produce(cg_harness_devbroker_bootstrap(s->kafka),
                                      "contactguard.jobs", msgs, n, 120000,
                                      errbuf, errsz);
    for (size_t i = 0; i < n; i++)
        free(vals[i]);
    free(vals);
    free(msgs);
    return rc;
}

static size_t write_cb(char *ptr, size_t sz, size_t nm, void *ud)
{
    return cg_buf_append(ud, ptr, sz * nm) == 0 ? sz * nm : 0;
}

char *cg_stack_http_get(const char *url, const char *ca, long *status)
{
    struct cg_buf b;
    cg_buf_init(&b, 256 << 20);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (ca && *ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        cg_buf_free(&b);
        return NULL;
    }
    return b.data ? cg_buf_take(&b) : cg_strdup("");
}

json_t *cg_stack_fake_json(struct cg_stack *s, const char *path)
{
    char url[512];
    long st;
    snprintf(url, sizeof(url), "%s/_fake/%s", s->base, path);
    char *body = cg_stack_http_get(url, s->ca, &st);
    json_t *o = body && st == 200 ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return o;
}

const char *cg_stack_worker_metrics(struct cg_harness_proc *w)
{
    const char *line = cg_harness_proc_first_line(w);
    const char *addr = line ? strstr(line, "metrics=") : NULL;
    return addr && addr[8] ? addr + 8 : NULL;
}

void cg_stack_stop(struct cg_stack *s)
{
    cg_harness_proc_free(s->fake);
    cg_harness_devbroker_free(s->kafka);
    cg_harness_redis_free(s->redis);
    free(s->subs);
    s->fake = NULL;
    s->kafka = NULL;
    s->redis = NULL;
    s->subs = NULL;
    s->nsubs = 0;
}
