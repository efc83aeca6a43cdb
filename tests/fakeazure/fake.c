#include "fake.h"

#include "log.h"
#include "mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cg_fa_init(struct cg_fa *fa, struct cg_fa_store *store,
                struct cg_fa_entra *entra, struct cg_fa_faults *faults,
                struct cg_fa_events *events, size_t page_size,
                unsigned token_lifetime)
{
    memset(fa, 0, sizeof(*fa));
    fa->store = store;
    fa->entra = entra;
    fa->faults = faults;
    fa->events = events;
    fa->page_size = fa->start_page_size = page_size;
    fa->start_faults = *cg_fa_faults_conf(faults);
    fa->start_lifetime = fa->token_lifetime = token_lifetime;
    fa->stats.requests = cg_fa_map_new(false, free);
    fa->stats.puts = json_array();
    cg_strlcpy(fa->base_url, "https://127.0.0.1", sizeof(fa->base_url));
}

void cg_fa_destroy(struct cg_fa *fa)
{
    cg_fa_store_free(fa->store);
    cg_fa_entra_free(fa->entra);
    cg_fa_faults_free(fa->faults);
    cg_fa_events_free(fa->events);
    cg_fa_map_free(fa->stats.requests);
    json_decref(fa->stats.puts);
}

void cg_fa_set_base(struct cg_fa *fa, const char *base_url)
{
    cg_strlcpy(fa->base_url, base_url, sizeof(fa->base_url));
    cg_fa_entra_set_base(fa->entra, base_url);
}

void cg_fa_arm_error(struct cg_fa_resp *resp, int status, const char *code,
                     const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *o =
        json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    char *s = json_dumps(o, JSON_COMPACT);
    resp->status = status;
    cg_buf_reset(&resp->body);
    cg_buf_puts(&resp->body, s);
    free(s);
    json_decref(o);
}

static void count(struct cg_fa *fa, const char *route, int status)
{
    char key[64];
    snprintf(key, sizeof(key), "%s %d", route, status);
    uint64_t *n = cg_fa_map_get(fa->stats.requests, key);
    if (!n) {
        n = cg_calloc(1, sizeof(*n));
        cg_fa_map_put_take(fa->stats.requests, key, n);
    }
    (*n)++;
    fa->stats.total++;
}

void cg_fa_stats_put(struct cg_fa *fa, const char *sub, const char *version,
                     const char *name, const char *body, size_t len, int status)
{
    if (json_array_size(fa->stats.puts) >= CG_FA_PUTS_MAX) {
        fa->stats.puts_dropped++;
        return;
    }
    json_t *parsed = json_loadb(body, len, 0, NULL);
    json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:I}", "subscription_id", sub,
                          "api_version", version, "name", name, "status",
                          status, "time", (json_int_t)time(NULL));
    if (parsed)
        json_object_set_new(o, "body", parsed);
    else
        json_object_set_new(o, "raw_body", json_stringn_nocheck(body, len));
    json_array_append_new(fa->stats.puts, o);
}

json_t *cg_fa_stats_json(struct cg_fa *fa)
{
    json_t *routes = json_object();
    size_t it = 0;
    const char *key;
    uint64_t *n;
    while ((n = cg_fa_map_next(fa->stats.requests, &it, &key))) {
        char route[64];
        cg_strlcpy(route, key, sizeof(route));
        char *sp = strrchr(route, ' ');
        if (!sp)
            continue;
        *sp = '\0';
        json_t *r = json_object_get(routes, route);
        if (!r) {
            r = json_object();
            json_object_set_new(routes, route, r);
        }
        json_object_set_new(r, sp + 1, json_integer((json_int_t)*n));
    }
    json_t *early = cg_fa_faults_stats_json(fa->faults);
    return json_pack("{s:I,s:o,s:o,s:O,s:I,s:o,s:I,s:o,s:I,s:I}",
                     "requests_total", (json_int_t)fa->stats.total, "requests",
                     routes, "tokens", cg_fa_entra_stats_json(fa->entra),
                     "puts", fa->stats.puts, "puts_dropped",
                     (json_int_t)fa->stats.puts_dropped, "retry_after", early,
                     "early_retries_total",
                     (json_int_t)cg_fa_faults_early_total(fa->faults), "faults",
                     cg_fa_faults_conf_json(fa->faults), "subscriptions",
                     (json_int_t)cg_fa_store_sub_count(fa->store), "tenants",
                     (json_int_t)cg_fa_store_tenant_count(fa->store));
}

void cg_fa_reset(struct cg_fa *fa)
{
    cg_fa_store_reset(fa->store);
    cg_fa_entra_reset(fa->entra);
    cg_fa_faults_set_conf(fa->faults, &fa->start_faults);
    cg_fa_faults_reset(fa->faults);
    cg_fa_entra_set_lifetime(fa->entra, fa->start_lifetime);
    fa->token_lifetime = fa->start_lifetime;
    fa->page_size = fa->start_page_size;
    fa->contacts_page_size = fa->start_contacts_page_size;
    cg_fa_events_reset(fa->events);
    cg_fa_map_clear(fa->stats.requests);
    json_array_clear(fa->stats.puts);
    fa->stats.puts_dropped = 0;
    fa->stats.total = 0;
}

void cg_fa_handle(void *ud, const struct cg_fa_req *req,
                  struct cg_fa_resp *resp)
{
    struct cg_fa *fa = ud;
    const char *route;
    bool control = strncmp(req->path, "/_fake/", 7) == 0 ||
                   strcmp(req->path, "/_fake") == 0;
    if (control) {
        route = cg_fa_control_handle(fa, req, resp);
    } else {
        route = cg_fa_entra_handle(fa->entra, req, resp);
        if (!route)
            route = cg_fa_arm_handle(fa, req, resp);
        unsigned d = cg_fa_faults_delay(fa->faults);
        if (d > resp->delay_ms)
            resp->delay_ms = d;
    }
    /* Status 0: the connection is dropped without an answer. */
    count(fa, route, resp->fault == CG_FA_FAULT_DROP ? 0 : resp->status);
    cg_debug("request", "method=%s path=\"%s\" route=%s status=%d", req->method,
             req->path, route, resp->status);
}
