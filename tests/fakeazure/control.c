/*
 * The control API of the fake (declared in fake.h), for tests and the
 * demo. No authentication: it refuses every peer that is not loopback.
 *
 *   GET    /_fake/stats                       statistics (see README)
 *   POST   /_fake/reset                       population, tokens, buckets,
 *                                             faults, stats and events as
 *                                             at start
 *   GET    /_fake/faults                      fault parameters
 *   PUT    /_fake/faults                      change some of them (JSON)
 *   PUT    /_fake/config                      {"token_lifetime_s","page_size",
 *                                             "contacts_page_size"}
 *   GET    /_fake/subscriptions/{id}          stored state of one
 *   PUT    /_fake/subscriptions/{id}/contact  edit as in the portal (2023
 *                                             properties, or null)
 *   PUT    /_fake/subscriptions/{id}/state    {"state","registered"}
 *   PUT    /_fake/subscriptions/{id}/after-read  edit as in the portal
 *                                             right after the next read of
 *                                             the contacts (once)
 *   PUT    /_fake/subscriptions/{id}/raw?api-version=V   raw body served
 *   DELETE /_fake/subscriptions/{id}/raw?api-version=V   back to the model
 *   POST   /_fake/tenants/{id}/subscriptions  {"scenario","announce"}
 *   PUT    /_fake/tenants/{id}/writes         {"deny":true}: every write of
 *                                             the tenant answers 403;
 *                                             {"reject":true}: 400
 *   GET    /_fake/events                      events announced
 *   GET    /_fake/truth                       the truth as JSON lines
 */
#include "fake.h"

#include "json.h"
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONTACT_TYPE_OP "Microsoft.Security/securityContacts/write"

static void reply_json(struct cg_fa_resp *resp, int status, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    resp->status = status;
    cg_buf_reset(&resp->body);
    cg_buf_puts(&resp->body, s);
    free(s);
    json_decref(o);
}

static json_t *body_json(const struct cg_fa_req *req, struct cg_fa_resp *resp)
{
    char err[200];
    json_t *v = cg_json_parse(req->body, req->body_len, err, sizeof(err));
    if (!v)
        cg_fa_arm_error(resp, 400, "InvalidJson", "%s", err);
    return v;
}

static json_t *sub_state(struct cg_fa *fa, struct cg_fa_sub *sub)
{
    const struct cg_fa_scenario *sc =
        cg_fa_store_scenario(fa->store, sub->scenario);
    json_t *raw = json_object();
    for (int v = 0; v < CG_FA_NVER; v++)
        if (sub->raw[v])
            json_object_set_new(raw, cg_fa_ver_names[v],
                                json_string(sub->raw[v]));
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:b,s:O?,s:O,s:o}", "subscription_id", sub->id,
        "tenant_id", cg_fa_store_tenant(fa->store, sub->tenant)->id, "scenario",
        sc->name, "state", sub->state, "registered", sub->registered, "contact",
        sub->contact, "legacy", sub->legacy, "raw", raw);
}

static void announce_contact(struct cg_fa *fa, struct cg_fa_sub *sub)
{
    char *subject = cg_asprintf("/subscriptions/%s/providers/"
                                "Microsoft.Security/securityContacts/default",
                                sub->id);
    cg_fa_events_emit(fa->events, "Microsoft.Resources.ResourceWriteSuccess",
                      CONTACT_TYPE_OP, subject, sub->id,
                      cg_fa_store_tenant(fa->store, sub->tenant)->id);
    free(subject);
}

static const char *subscription_routes(struct cg_fa *fa,
                                       const struct cg_fa_req *req,
                                       struct cg_fa_resp *resp,
                                       const char *rest)
{
    char id[64];
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (n >= sizeof(id)) {
        cg_fa_arm_error(resp, 404, "NotFound", "no such subscription");
        return "control";
    }
    memcpy(id, rest, n);
    id[n] = '\0';
    struct cg_fa_sub *sub = cg_fa_store_sub_find(fa->store, id);
    if (!sub) {
        cg_fa_arm_error(resp, 404, "SubscriptionNotFound",
                        "The subscription '%s' could not be found.", id);
        return "control";
    }
    const char *what = slash ? slash + 1 : "";
    bool get = !strcmp(req->method, "GET");
    bool put = !strcmp(req->method, "PUT") || !strcmp(req->method, "POST");
    if (!*what && get) {
        reply_json(resp, 200, sub_state(fa, sub));
        return "control";
    }
    if (!strcmp(what, "contact") && put) {
        json_t *props = body_json(req, resp);
        if (!props)
            return "control";
        if (!json_is_object(props) && !json_is_null(props)) {
            json_decref(props);
            cg_fa_arm_error(resp, 400, "InvalidJson",
                            "the contact must be an object or null");
            return "control";
        }
        cg_fa_store_portal_edit(fa->store, sub,
                                json_is_null(props) ? NULL : props);
        json_decref(props);
        announce_contact(fa, sub);
        reply_json(resp, 200, sub_state(fa, sub));
        return "control";
    }
    if (!strcmp(what, "after-read") && put) {
        json_t *props = body_json(req, resp);
        if (!props)
            return "control";
        /* One edit, or an array of them landing after successive reads
         * (a contact that keeps changing). */
        json_t *edits =
            json_is_array(props) ? json_incref(props) : json_pack("[O]", props);
        json_decref(props);
        size_t i;
        json_t *e;
        bool ok = json_array_size(edits) > 0;
        json_array_foreach(edits, i, e)
        {
            ok = ok && (json_is_object(e) || json_is_null(e));
        }
        if (!ok) {
            json_decref(edits);
            cg_fa_arm_error(resp, 400, "InvalidJson",
                            "the contact must be an object or null, or a "
                            "non-empty array of them");
            return "control";
        }
        /* ?reads=N: the edit lands after the Nth read from now (default
         * 1), e.g. between a client's second read and its write. */
        char rs[16];
        unsigned long reads = 1;
        if (cg_fa_form_get(req->query, "reads", rs, sizeof(rs)) > 0) {
            char *end;
            reads = strtoul(rs, &end, 10);
            if (*end || reads < 1 || reads > 100) {
                json_decref(edits);
                cg_fa_arm_error(resp, 400, "InvalidReads",
                                "reads must be 1..100");
                return "control";
            }
        }
        json_decref(sub->after_read);
        sub->after_read = edits;
        sub->after_read_skip = (unsigned)reads - 1;
        reply_json(resp, 200, sub_state(fa, sub));
        return "control";
    }
    if (!strcmp(what, "state") && put) {
        json_t *o = body_json(req, resp);
        if (!o)
            return "control";
        const char *state = cg_json_str(o, "state");
        static const char *const states[] = { "Enabled",  "Warned",  "PastDue",
                                              "Disabled", "Deleted", NULL };
        bool ok = !state;
        for (int i = 0; state && states[i]; i++)
            ok = ok || !strcmp(state, states[i]);
        if (!ok) {
            json_decref(o);
            cg_fa_arm_error(resp, 400, "InvalidState", "unknown state");
            return "control";
        }
        if (state)
            cg_strlcpy(sub->state, state, sizeof(sub->state));
        json_t *reg = json_object_get(o, "registered");
        if (json_is_boolean(reg))
            sub->registered = json_is_true(reg);
        json_decref(o);
        reply_json(resp, 200, sub_state(fa, sub));
        return "control";
    }
    if (!strcmp(what, "raw")) {
        char version[64];
        int v = -1;
        if (cg_fa_form_get(req->query, "api-version", version,
                           sizeof(version)) >= 0)
            v = cg_fa_ver_parse(version);
        if (v < 0) {
            cg_fa_arm_error(resp, 400, "InvalidApiVersionParameter",
                            "raw needs a securityContacts api-version");
            return "control";
        }
        if (put) {
            cg_fa_store_set_raw(sub, v, req->body);
            reply_json(resp, 200, sub_state(fa, sub));
            return "control";
        }
        if (!strcmp(req->method, "DELETE")) {
            cg_fa_store_set_raw(sub, v, NULL);
            reply_json(resp, 200, sub_state(fa, sub));
            return "control";
        }
    }
    cg_fa_arm_error(resp, 404, "NotFound", "no such control route");
    return "control";
}

static const char *create_subscription(struct cg_fa *fa,
                                       const struct cg_fa_req *req,
                                       struct cg_fa_resp *resp,
                                       const char *tenant_id)
{
    size_t t;
    if (!cg_fa_store_tenant_find(fa->store, tenant_id, &t)) {
        cg_fa_arm_error(resp, 404, "TenantNotFound", "no such tenant");
        return "control";
    }
    json_t *o = req->body_len ? body_json(req, resp) : json_object();
    if (!o)
        return "control";
    const char *scen = cg_json_str(o, "scenario");
    long sc = cg_fa_store_scenario_find(fa->store, scen ? scen : "compliant");
    if (sc < 0) {
        json_decref(o);
        cg_fa_arm_error(resp, 400, "UnknownScenario", "no such scenario");
        return "control";
    }
    bool announce = json_is_true(json_object_get(o, "announce"));
    json_decref(o);
    struct cg_fa_sub *sub = cg_fa_store_sub_create(fa->store, t, (size_t)sc);
    json_t *out = sub_state(fa, sub);
    if (announce) {
        char *subject = cg_asprintf(
            "/providers/Microsoft.Subscription/aliases/sub-%s", sub->id);
        json_t *e = cg_fa_events_emit(
            fa->events, "Microsoft.Resources.ResourceWriteSuccess",
            "Microsoft.Subscription/aliases/write", subject, sub->id,
            cg_fa_store_tenant(fa->store, t)->id);
        json_object_set(out, "event", e);
        free(subject);
    }
    reply_json(resp, 201, out);
    return "control";
}

static const char *tenant_writes(struct cg_fa *fa, const struct cg_fa_req *req,
                                 struct cg_fa_resp *resp, const char *tenant_id)
{
    struct cg_fa_tenant *t =
        cg_fa_store_tenant_find(fa->store, tenant_id, NULL);
    if (!t) {
        cg_fa_arm_error(resp, 404, "TenantNotFound", "no such tenant");
        return "control";
    }
    json_t *o = body_json(req, resp);
    if (!o)
        return "control";
    t->deny_writes = json_is_true(json_object_get(o, "deny"));
    t->reject_writes = json_is_true(json_object_get(o, "reject"));
    json_decref(o);
    reply_json(resp, 200,
               json_pack("{s:s,s:b,s:b}", "tenant_id", t->id, "deny_writes",
                         t->deny_writes, "reject_writes", t->reject_writes));
    return "control";
}

static void truth_lines(struct cg_fa *fa, struct cg_fa_resp *resp)
{
    size_t n = cg_fa_store_sub_count(fa->store);
    for (size_t i = 0; i < n; i++) {
        struct cg_fa_sub *sub = cg_fa_store_sub(fa->store, i);
        const struct cg_fa_scenario *sc =
            cg_fa_store_scenario(fa->store, sub->scenario);
        for (int r = 0; r < CG_FA_RULES; r++)
            cg_buf_printf(&resp->body,
                          "{\"subscription_id\":\"%s\",\"scenario\":\"%s\","
                          "\"rule\":\"%s\",\"status\":\"%s\"}\n",
                          sub->id, sc->name, cg_fa_rule_names[r], sc->truth[r]);
    }
    resp->content_type = "application/x-ndjson";
}

const char *cg_fa_control_handle(struct cg_fa *fa, const struct cg_fa_req *req,
                                 struct cg_fa_resp *resp)
{
    if (!req->peer_loopback) {
        cg_fa_arm_error(resp, 403, "Forbidden",
                        "the control API answers loopback peers only");
        return "control";
    }
    const char *p = req->path + 6; /* after "/_fake" */
    bool get = !strcmp(req->method, "GET");
    bool put = !strcmp(req->method, "PUT") || !strcmp(req->method, "POST");
    if (!strcmp(p, "/stats") && get) {
        reply_json(resp, 200, cg_fa_stats_json(fa));
        return "control.stats";
    }
    if (!strcmp(p, "/reset") && put) {
        cg_fa_reset(fa);
        reply_json(resp, 200, json_pack("{s:b}", "reset", 1));
        return "control";
    }
    if (!strcmp(p, "/faults") && get) {
        reply_json(resp, 200, cg_fa_faults_conf_json(fa->faults));
        return "control";
    }
    if (!strcmp(p, "/faults") && put) {
        json_t *o = body_json(req, resp);
        if (!o)
            return "control";
        char err[200];
        if (cg_fa_faults_apply_json(fa->faults, o, err, sizeof(err)) < 0)
            cg_fa_arm_error(resp, 400, "InvalidFaults", "%s", err);
        else
            reply_json(resp, 200, cg_fa_faults_conf_json(fa->faults));
        json_decref(o);
        return "control";
    }
    if (!strcmp(p, "/config") && put) {
        json_t *o = body_json(req, resp);
        if (!o)
            return "control";
        long long v;
        if (cg_json_int(o, "token_lifetime_s", &v) == CG_JSON_OK && v > 0 &&
            v <= 86400) {
            fa->token_lifetime = (unsigned)v;
            cg_fa_entra_set_lifetime(fa->entra, (unsigned)v);
        }
        if (cg_json_int(o, "page_size", &v) == CG_JSON_OK && v > 0 &&
            v <= 100000)
            fa->page_size = (size_t)v;
        if (cg_json_int(o, "contacts_page_size", &v) == CG_JSON_OK && v >= 0 &&
            v <= 100000)
            fa->contacts_page_size = (size_t)v;
        json_decref(o);
        reply_json(resp, 200,
                   json_pack("{s:i,s:i,s:i}", "token_lifetime_s",
                             (int)fa->token_lifetime, "page_size",
                             (int)fa->page_size, "contacts_page_size",
                             (int)fa->contacts_page_size));
        return "control";
    }
    if (!strcmp(p, "/events") && get) {
        reply_json(resp, 200, cg_fa_events_json(fa->events));
        return "control";
    }
    if (!strcmp(p, "/truth") && get) {
        truth_lines(fa, resp);
        return "control";
    }
    if (!strncmp(p, "/subscriptions/", 15))
        return subscription_routes(fa, req, resp, p + 15);
    if (!strncmp(p, "/tenants/", 9) && put) {
        const char *t = p + 9;
        const char *slash = strchr(t, '/');
        if (slash && !strcmp(slash, "/writes") && slash - t < 64) {
            char tid[64];
            memcpy(tid, t, (size_t)(slash - t));
            tid[slash - t] = '\0';
            return tenant_writes(fa, req, resp, tid);
        }
        if (slash && !strcmp(slash, "/subscriptions") && slash - t < 64) {
            char tid[64];
            memcpy(tid, t, (size_t)(slash - t));
            tid[slash - t] = '\0';
            return create_subscription(fa, req, resp, tid);
        }
    }
    cg_fa_arm_error(resp, 404, "NotFound", "no such control route");
    return "control";
}
