/* Unit tests of arm: token bucket arithmetic, backoff bounds, status
 * mapping, and calls against the scripted loopback ARM + token endpoint:
 * error mapping, 401 re-auth, 429 Retry-After (nothing sent early, for the
 * throttled call or any other on its bucket), 5xx backoff, deadlines,
 * paging, client-side throttling and the per-tenant cap. */
#include "../check.h"
#include "arm.h"
#include "auth.h"
#include "conf.h"
#include "err.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "testsrv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUB "00000000-0000-0000-0000-0000000000a1"

/* ---- pure pieces ---- */

static void test_bucket(void)
{
    enum op { RESERVE, OBSERVE, LEVEL };
    struct step {
        enum op op;
        int64_t at_ms;
        long arg; /* RESERVE: max wait; OBSERVE: remaining */
        double want;
    };
    static const struct {
        const char *name;
        double cap, refill;
        struct step steps[12];
        int nsteps;
    } rows[] = {
        { "full bucket serves its capacity at once, then queues",
          3,
          1,
          { { RESERVE, 0, 99999, 0 },
            { RESERVE, 0, 99999, 0 },
            { RESERVE, 0, 99999, 0 },
            { RESERVE, 0, 99999, 1000 },
            { RESERVE, 0, 99999, 2000 },
            { RESERVE, 0, 1500, -1 },
            { RESERVE, 1000, 99999, 2000 },
            { LEVEL, 4000, 0, 1 } },
          8 },
        { "refill stops at capacity",
          2,
          10,
          { { RESERVE, 0, 0, 0 },
            { RESERVE, 0, 0, 0 },
            { LEVEL, 50, 0, 0.5 },
            { LEVEL, 10000, 0, 2 } },
          4 },
        { "ARM read defaults: 250 then 25/s",
          250,
          25,
          { { LEVEL, 0, 0, 250 },
            { OBSERVE, 0, 1, 1 },
            { RESERVE, 0, 0, 0 },
            { RESERVE, 0, 100000, 40 },
            { RESERVE, 0, 100000, 80 } },
          5 },
        { "observe lowers, never raises",
          200,
          10,
          { { OBSERVE, 0, 10, 10 },
            { OBSERVE, 0, 150, 10 },
            { OBSERVE, 0, -1, 10 },
            { OBSERVE, 100, 5, 5 },
            { LEVEL, 200, 0, 6 } },
          5 },
        { "refused reservation reserves nothing",
          1,
          1,
          { { RESERVE, 0, 0, 0 },
            { RESERVE, 0, 10, -1 },
            { RESERVE, 0, 10, -1 },
            { RESERVE, 0, 1000, 1000 } },
          4 },
    };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        struct cg_arm_bucket b;
        cg_arm_bucket_init(&b, rows[r].cap, rows[r].refill, 0);
        for (int s = 0; s < rows[r].nsteps; s++) {
            const struct step *st = &rows[r].steps[s];
            double got;
            if (st->op == RESERVE) {
                got = (double)cg_arm_bucket_reserve(&b, st->at_ms, st->arg);
            } else if (st->op == OBSERVE) {
                cg_arm_bucket_observe(&b, st->arg, st->at_ms);
                got = cg_arm_bucket_level(&b, st->at_ms);
            } else {
                got = cg_arm_bucket_level(&b, st->at_ms);
            }
            CHECK(got > st->want - 0.001 && got < st->want + 0.001,
                  "bucket %s, step %d: %.3f, want %.3f", rows[r].name, s, got,
                  st->want);
        }
    }
}

static void test_backoff(void)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    static const struct {
        int attempt;
        int64_t ceiling;
    } rows[] = { { 1, 500 },   { 2, 1000 },  { 3, 2000 },   { 4, 4000 },
                 { 6, 16000 }, { 7, 30000 }, { 30, 30000 }, { 1000, 30000 } };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int64_t lo = INT64_MAX, hi = -1;
        for (int n = 0; n < 2000; n++) {
            int64_t d = cg_arm_backoff_ms(rows[i].attempt, 500, 30000, &rng);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        CHECK(lo >= 0 && hi <= rows[i].ceiling,
              "backoff attempt %d: [%lld, %lld] outside [0, %lld]",
              rows[i].attempt, (long long)lo, (long long)hi,
              (long long)rows[i].ceiling);
        /* Full jitter: the draws spread over the whole range. */
        CHECK(lo < rows[i].ceiling / 4 && hi > rows[i].ceiling * 3 / 4,
              "backoff attempt %d: [%lld, %lld] not spread over [0, %lld]",
              rows[i].attempt, (long long)lo, (long long)hi,
              (long long)rows[i].ceiling);
    }
}

static void test_status(void)
{
    static const struct {
        long status;
        int err;
    } rows[] = { { 200, 0 },
                 { 204, 0 },
                 { 400, CG_EBADREQ },
                 { 401, CG_EAUTH },
                 { 403, CG_EFORBIDDEN },
                 { 404, CG_ENOTFOUND },
                 { 409, CG_ECONFLICT },
                 { 422, CG_EBADREQ },
                 { 429, CG_ETHROTTLED },
                 { 500, CG_EUNAVAIL },
                 { 503, CG_EUNAVAIL } };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        CHECK(cg_arm_status_err(rows[i].status) == rows[i].err,
              "status %ld: %s, want %s", rows[i].status,
              cg_err_name(cg_arm_status_err(rows[i].status)),
              cg_err_name(rows[i].err));
}

/* ---- the scripted server ---- */

#define MAX_SEEN 256

struct seen {
    char path[256];
    char authz[128];
    int64_t at_ms;
};

struct fake {
    char base[64];
    int tokens_issued;
    struct seen seen[MAX_SEEN];
    int nseen;
    int hits[32];     /* per scenario counter */
    int token_life_s; /* 0: 3599 */
    int64_t issued_ms[64];
    int expired_seen;
    int64_t last_429_ms;
    int last_429_idx; /* its index in seen[] */
};

static int scenario_hit(struct fake *f, int k)
{
    return ++f->hits[k];
}

static void set_body(struct cg_testsrv_response *res, int status,
                     const char *body)
{
    res->status = status;
    res->body = cg_strdup(body);
}

static void arm_error_body(struct cg_testsrv_response *res, int status,
                           const char *code, const char *msg)
{
    res->status = status;
    res->body = cg_asprintf("{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                            code, msg);
}

static void handler(const struct cg_testsrv_request *req,
                    struct cg_testsrv_response *res, void *arg)
{
    struct fake *f = arg;
    const char *p = req->path;
    if (strstr(p, "/oauth2/v2.0/token")) {
        f->tokens_issued++;
        if (f->tokens_issued < 64)
            f->issued_ms[f->tokens_issued] = req->at_ms;
        res->body = cg_asprintf("{\"token_type\":\"Bearer\",\"expires_in\":"
                                "%d,\"access_token\":\"tok-%d\"}",
                                f->token_life_s ? f->token_life_s : 3599,
                                f->tokens_issued);
        return;
    }
    if (f->nseen < MAX_SEEN) {
        struct seen *s = &f->seen[f->nseen++];
        cg_strlcpy(s->path, p, sizeof(s->path));
        cg_testsrv_header(req->headers, "Authorization", s->authz,
                          sizeof(s->authz));
        s->at_ms = req->at_ms;
    }
    char authz[128] = "";
    cg_testsrv_header(req->headers, "Authorization", authz, sizeof(authz));
    if (strstr(p, "/fresh?")) {
        /* ARM's view of token lifetime: 401 for one past its life. */
        int n = 0;
        sscanf(authz, "Bearer tok-%d", &n);
        if (n <= 0 || n >= 64 ||
            req->at_ms - f->issued_ms[n] >= f->token_life_s * 1000) {
            f->expired_seen++;
            arm_error_body(res, 401, "ExpiredAuthenticationToken",
                           "The access token expiry has passed.");
        } else {
            set_body(res, 200, "{}");
        }
    } else if (strstr(p, "/ok?")) {
        set_body(res, 200, "{\"id\":\"x\"}");
    } else if (strstr(p, "/notfound")) {
        arm_error_body(res, 404, "SubscriptionNotFound",
                       "The subscription could not be found.");
        snprintf(res->headers, sizeof(res->headers),
                 "x-ms-request-id: rid-404\r\n");
    } else if (strstr(p, "/forbidden")) {
        arm_error_body(res, 403, "AuthorizationFailed",
                       "The client does not have authorization.");
    } else if (strstr(p, "/conflict")) {
        arm_error_body(res, 409, "MissingSubscriptionRegistration",
                       "The subscription is not registered.");
    } else if (strstr(p, "/badreq")) {
        arm_error_body(res, 400, "InvalidApiVersionParameter",
                       "The api-version is invalid.");
    } else if (strstr(p, "/expired")) {
        /* 401 for the first token only. */
        if (strcmp(authz, "Bearer tok-1") == 0)
            arm_error_body(res, 401, "ExpiredAuthenticationToken",
                           "The access token expiry has passed.");
        else
            set_body(res, 200, "{\"renewed\":true}");
    } else if (strstr(p, "/always401")) {
        arm_error_body(res, 401, "InvalidAuthenticationToken",
                       "The access token is invalid.");
    } else if (strstr(p, "/throttle1")) {
        if (scenario_hit(f, 1) == 1) {
            arm_error_body(res, 429, "TooManyRequests", "Slow down.");
            snprintf(res->headers, sizeof(res->headers), "Retry-After: 1\r\n");
            f->last_429_ms = req->at_ms;
            f->last_429_idx = f->nseen - 1;
        } else {
            set_body(res, 200, "{}");
        }
    } else if (strstr(p, "/throttle2nd")) {
        if (scenario_hit(f, 4) == 2) {
            arm_error_body(res, 429, "TooManyRequests", "Slow down.");
            snprintf(res->headers, sizeof(res->headers), "Retry-After: 1\r\n");
            f->last_429_ms = req->at_ms;
            f->last_429_idx = f->nseen - 1;
        } else {
            set_body(res, 200, "{}");
        }
    } else if (strstr(p, "/tenantlevel?")) {
        /* The remaining count of the bucket named in the query. */
        const char *b = strstr(p, "bucket=");
        snprintf(res->headers, sizeof(res->headers),
                 "x-ms-ratelimit-remaining-%s: 0\r\n", b ? b + 7 : "none");
        set_body(res, 200, "{\"value\":[]}");
    } else if (strstr(p, "/throttle30")) {
        arm_error_body(res, 429, "TooManyRequests", "Slow down.");
        snprintf(res->headers, sizeof(res->headers), "Retry-After: 30\r\n");
    } else if (strstr(p, "/flaky")) {
        if (scenario_hit(f, 2) <= 2)
            arm_error_body(res, 503, "ServiceUnavailable", "Try later.");
        else
            set_body(res, 200, "{\"flaky\":\"ok\"}");
    } else if (strstr(p, "/broken")) {
        arm_error_body(res, 500, "InternalServerError", "Boom.");
    } else if (strstr(p, "/subscriptions?api-version=2022-12-01")) {
        if (strstr(p, "skiptoken=2")) {
            set_body(res, 200,
                     "{\"value\":[{\"subscriptionId\":\"s4\"},"
                     "{\"subscriptionId\":\"s5\"}],\"nextLink\":null}");
        } else {
            res->body = cg_asprintf(
                "{\"value\":[{\"subscriptionId\":\"s1\"},{\"subscriptionId\":"
                "\"s2\"},{\"subscriptionId\":\"s3\"}],\"nextLink\":\"%s/"
                "subscriptions?api-version=2022-12-01&%%24skiptoken=2\"}",
                f->base);
        }
    } else if (strstr(p, "/bare?")) {
        set_body(res, 200, "[{\"name\":\"default\"},{\"name\":\"x\"}]");
    } else if (strstr(p, "/elsewhere?")) {
        set_body(res, 200,
                 "{\"value\":[],\"nextLink\":\"http://evil.example/steal\"}");
    } else if (strstr(p, "/garbled?")) {
        if (scenario_hit(f, 3) == 1)
            set_body(res, 200, "{\"value\":[{\"na");
        else
            set_body(res, 200, "{\"value\":[{\"name\":\"default\"}]}");
    } else if (strstr(p, "/alwaysgarbled?")) {
        set_body(res, 200, "<html>proxy error</html>");
    } else if (strstr(p, "/novalue?")) {
        set_body(res, 200, "{\"values\":[]}");
    } else if (strstr(p, "/put?")) {
        char ct[64] = "";
        cg_testsrv_header(req->headers, "Content-Type", ct, sizeof(ct));
        bool ok = strcmp(req->method, "PUT") == 0 &&
                  strcmp(ct, "application/json") == 0 &&
                  strcmp(req->body, "{\"properties\":{}}") == 0;
        set_body(res, ok ? 201 : 400, ok ? "{\"created\":true}" : "{}");
    } else if (strstr(p, "/hang")) {
        res->hang = true;
    } else {
        arm_error_body(res, 404, "NotFound", "No such path.");
    }
}

/* Requests that arrived after the last 429 but before its Retry-After
 * (1 s) had passed; arrival order, not the clock, says "after". */
static int count_early(const struct fake *f)
{
    int early = 0;
    for (int i = f->last_429_idx + 1; i < f->nseen; i++)
        early += f->seen[i].at_ms - f->last_429_ms < 1000;
    return early;
}

struct outcome {
    int calls, err, cause, attempts;
    long status;
    char why[512];
    char code[64];
    char request_id[80];
    char body[256];
    size_t nitems, pages;
    char items[256];
    int64_t elapsed_ms;
};

static void on_done(const struct cg_arm_result *res, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->err = res->err;
    o->cause = res->cause;
    o->attempts = res->attempts;
    o->status = res->status;
    o->elapsed_ms = res->elapsed_ms;
    o->pages = res->pages;
    cg_strlcpy(o->why, res->why, sizeof(o->why));
    cg_strlcpy(o->code, res->code, sizeof(o->code));
    cg_strlcpy(o->request_id, res->request_id, sizeof(o->request_id));
    cg_strlcpy(o->body, res->body, sizeof(o->body));
    if (res->items) {
        o->nitems = json_array_size(res->items);
        char *s = json_dumps(res->items, JSON_COMPACT);
        cg_strlcpy(o->items, s, sizeof(o->items));
        free(s);
    }
}

struct env {
    char dir[64];
    struct cg_loop *loop;
    struct cg_testsrv *srv;
    struct fake *fake;
    struct cg_conf *conf;
    struct cg_http *http;
    struct cg_auth *auth;
    struct cg_arm *arm;
};

static int env_open(struct env *e, const char *const *sets)
{
    char err[512];
    memset(e, 0, sizeof(*e));
    e->fake = cg_calloc(1, sizeof(*e->fake));
    e->loop = cg_loop_new(err, sizeof(err));
    CHECK(e->loop != NULL, "loop: %s", err);
    if (!e->loop)
        return -1;
    e->srv = cg_testsrv_new(e->loop, handler, e->fake);
    CHECK(e->srv != NULL, "test server started");
    if (!e->srv)
        return -1;
    snprintf(e->fake->base, sizeof(e->fake->base), "http://127.0.0.1:%d",
             cg_testsrv_port(e->srv));
    cg_strlcpy(e->dir, "/tmp/cg-test-arm-XXXXXX", sizeof(e->dir));
    CHECK(mkdtemp(e->dir) != NULL, "mkdtemp %s", e->dir);
    char *path = cg_asprintf("%s/conf.json", e->dir);
    FILE *fp = fopen(path, "w");
    CHECK(fp != NULL, "open %s", path);
    if (!fp) {
        free(path);
        return -1;
    }
    fprintf(fp,
            "{\"azure\":{\"authority_host\":\"%s\",\"resource_manager\":"
            "\"%s\"},\"tenants\":[{\"id\":\"t1\",\"client_id\":\"app-1\","
            "\"client_secret_env\":\"CG_TEST_ARM_SECRET\"}]}",
            e->fake->base, e->fake->base);
    fclose(fp);
    setenv("CG_TEST_ARM_SECRET", "arm-test-secret", 1);
    e->conf = cg_conf_new();
    int rc = cg_conf_load_file(e->conf, path, err, sizeof(err));
    for (size_t i = 0; rc == 0 && sets && sets[i]; i++)
        rc = cg_conf_set_arg(e->conf, sets[i], err, sizeof(err));
    if (rc == 0)
        rc = cg_conf_finish(e->conf, err, sizeof(err));
    unlink(path);
    free(path);
    rmdir(e->dir);
    CHECK(rc == 0, "conf: %s", err);
    if (rc)
        return rc;
    struct cg_http_opts ho;
    cg_http_opts_from_conf(e->conf, &ho);
    e->http = cg_http_new(e->loop, &ho, err, sizeof(err));
    e->auth = cg_auth_new(e->loop, e->http, e->conf, err, sizeof(err));
    e->arm = cg_arm_new(e->loop, e->http, e->auth, e->conf, err, sizeof(err));
    CHECK(e->arm != NULL, "arm_new: %s", err);
    return e->arm ? 0 : -1;
}

static void env_close(struct env *e)
{
    cg_arm_free(e->arm);
    cg_auth_free(e->auth);
    cg_http_free(e->http);
    cg_conf_free(e->conf);
    cg_testsrv_free(e->srv);
    cg_loop_free(e->loop);
    free(e->fake);
}

static void run_until(struct env *e, const int *calls, int want)
{
    for (int i = 0; i < 100000 && *calls < want; i++)
        cg_loop_run_once(e->loop, 100);
}

static void test_calls(void)
{
    struct env e;
    if (env_open(&e, NULL) != 0)
        return;
    static const struct {
        const char *name;
        int list;
        enum cg_http_method method;
        const char *tenant, *path, *body;
        int64_t deadline_ms; /* relative; 0: default */
        int err, cause, attempts;
        const char *why_has, *code;
        size_t nitems;
        const char *items;
    } rows[] = {
        { "GET ok", 0, CG_HTTP_GET, "t1", "/subscriptions/" SUB "/ok?v=1", NULL,
          0, 0, 0, 1, NULL, "", 0, NULL },
        { "404 is final, with ARM's code", 0, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/notfound?v=1", NULL, 0, CG_ENOTFOUND, 0, 1,
          "HTTP 404 SubscriptionNotFound: The subscription could not be found",
          "SubscriptionNotFound", 0, NULL },
        { "403 is final", 0, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/forbidden?v=1", NULL, 0, CG_EFORBIDDEN, 0, 1,
          "AuthorizationFailed", "AuthorizationFailed", 0, NULL },
        { "409 is final", 0, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/conflict?v=1", NULL, 0, CG_ECONFLICT, 0, 1,
          "MissingSubscriptionRegistration", "MissingSubscriptionRegistration",
          0, NULL },
        { "400 is final", 0, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/badreq?v=1", NULL, 0, CG_EBADREQ, 0, 1,
          "InvalidApiVersionParameter", "InvalidApiVersionParameter", 0, NULL },
        { "401 once: new token, one retry", 0, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/expired?v=1", NULL, 0, 0, 0, 2, NULL, "", 0,
          NULL },
        { "401 twice is final", 0, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/always401?v=1", NULL, 0, CG_EAUTH, 0, 2,
          "InvalidAuthenticationToken", "InvalidAuthenticationToken", 0, NULL },
        { "429 then 200 after Retry-After", 0, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/throttle1?v=1", NULL, 0, 0, 0, 2, NULL, "", 0,
          NULL },
        { "Retry-After past the deadline gives up at once", 0, CG_HTTP_GET,
          "t1",
          "/subscriptions/00000000-0000-0000-0000-0000000000b2/"
          "throttle30?v=1",
          NULL, 3000, CG_EDEADLINE, CG_ETHROTTLED, 1, "TooManyRequests",
          "TooManyRequests", 0, NULL },
        { "503 twice then 200", 0, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/flaky?v=1", NULL, 0, 0, 0, 3, NULL, "", 0,
          NULL },
        { "500 until the deadline", 0, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/broken?v=1", NULL, 2500, CG_EDEADLINE,
          CG_EUNAVAIL, -1, "HTTP 500 InternalServerError",
          "InternalServerError", 0, NULL },
        { "PUT with a JSON body", 0, CG_HTTP_PUT, "t1",
          "/subscriptions/" SUB "/put?v=1", "{\"properties\":{}}", 0, 0, 0, 1,
          NULL, "", 0, NULL },
        { "LIST follows nextLink", 1, CG_HTTP_GET, "t1",
          "/subscriptions?api-version=2022-12-01", NULL, 0, 0, 0, 2, NULL, "",
          5,
          "[{\"subscriptionId\":\"s1\"},{\"subscriptionId\":\"s2\"},"
          "{\"subscriptionId\":\"s3\"},{\"subscriptionId\":\"s4\"},"
          "{\"subscriptionId\":\"s5\"}]" },
        { "LIST of a bare array (2020-01-01-preview)", 1, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/bare?v=1", NULL, 0, 0, 0, 1, NULL, "", 2,
          "[{\"name\":\"default\"},{\"name\":\"x\"}]" },
        { "nextLink to another host is refused", 1, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/elsewhere?v=1", NULL, 0, CG_EPARSE, 0, 1,
          "another host", "", 0, NULL },
        { "LIST page cut short is asked again", 1, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/garbled?v=1", NULL, 0, 0, 0, 2, NULL, "", 1,
          "[{\"name\":\"default\"}]" },
        { "LIST page never JSON: final after 3 tries", 1, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/alwaysgarbled?v=1", NULL, 0, CG_EPARSE, 0, 3,
          "is not JSON", "", 0, NULL },
        { "LIST page without value", 1, CG_HTTP_GET, "t1",
          "/subscriptions/" SUB "/novalue?v=1", NULL, 0, CG_EPARSE, 0, 1,
          "no \"value\" array", "", 0, NULL },
        { "tenant without credentials", 0, CG_HTTP_GET, "t-none",
          "/subscriptions/" SUB "/ok?v=1", NULL, 0, CG_ENOCRED, 0, 0,
          "no credentials", "", 0, NULL },
        { "path on another host", 0, CG_HTTP_GET, "t1",
          "http://evil.example/subscriptions", NULL, 0, CG_EINVAL, 0, 0,
          "must start with /", "", 0, NULL },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct outcome o = { 0 };
        int seen0 = e.fake->nseen;
        struct cg_arm_request req = {
            .method = rows[i].method,
            .tenant = rows[i].tenant,
            .subscription = strstr(rows[i].path, "b2/") ? "b2" : SUB,
            .path = rows[i].path,
            .body = rows[i].body,
            .body_len = rows[i].body ? strlen(rows[i].body) : 0,
            .deadline_ms = rows[i].deadline_ms
                               ? cg_loop_now_ms() + rows[i].deadline_ms
                               : 0,
        };
        if (rows[i].list)
            cg_arm_list(e.arm, &req, on_done, &o);
        else
            cg_arm_call(e.arm, &req, on_done, &o);
        CHECK(o.calls == 0, "%s: no callback inside the call", rows[i].name);
        run_until(&e, &o.calls, 1);
        CHECK(o.calls == 1, "%s: %d callbacks", rows[i].name, o.calls);
        CHECK(o.err == rows[i].err, "%s: err %s, want %s (%s)", rows[i].name,
              cg_err_name(o.err), cg_err_name(rows[i].err), o.why);
        CHECK(o.cause == rows[i].cause, "%s: cause %s, want %s", rows[i].name,
              cg_err_name(o.cause), cg_err_name(rows[i].cause));
        if (rows[i].attempts >= 0)
            CHECK(o.attempts == rows[i].attempts, "%s: %d attempts, want %d",
                  rows[i].name, o.attempts, rows[i].attempts);
        else
            CHECK(o.attempts >= 2, "%s: %d attempts, want several",
                  rows[i].name, o.attempts);
        CHECK(e.fake->nseen - seen0 == (o.attempts > 0 ? o.attempts : 0),
              "%s: server saw %d requests, call counted %d", rows[i].name,
              e.fake->nseen - seen0, o.attempts);
        if (rows[i].why_has)
            CHECK(strstr(o.why, rows[i].why_has) != NULL,
                  "%s: why \"%s\" lacks \"%s\"", rows[i].name, o.why,
                  rows[i].why_has);
        CHECK(strcmp(o.code, rows[i].code) == 0, "%s: code \"%s\", want \"%s\"",
              rows[i].name, o.code, rows[i].code);
        CHECK(!strstr(o.why, "tok-") && !strstr(o.why, "arm-test-secret"),
              "%s: why leaks a credential: %s", rows[i].name, o.why);
        if (rows[i].list && rows[i].err == 0) {
            CHECK(o.nitems == rows[i].nitems, "%s: %zu items, want %zu",
                  rows[i].name, o.nitems, rows[i].nitems);
            CHECK(strcmp(o.items, rows[i].items) == 0, "%s: items %s",
                  rows[i].name, o.items);
            size_t want_pages =
                strstr(rows[i].path, "garbled") ? 1 : (size_t)rows[i].attempts;
            CHECK(o.pages == want_pages, "%s: %zu pages", rows[i].name,
                  o.pages);
        }
        if (strstr(rows[i].path, "/throttle1")) {
            const struct seen *last = &e.fake->seen[e.fake->nseen - 1];
            CHECK(last->at_ms - e.fake->last_429_ms >= 1000,
                  "%s: retried %lld ms after the 429, want >= 1000",
                  rows[i].name, (long long)(last->at_ms - e.fake->last_429_ms));
        }
        if (strstr(rows[i].path, "/notfound"))
            CHECK(strcmp(o.request_id, "rid-404") == 0, "%s: request id \"%s\"",
                  rows[i].name, o.request_id);
        if (strstr(rows[i].path, "/throttle30"))
            CHECK(o.elapsed_ms < 1000,
                  "%s: gave up after %lld ms instead of at once", rows[i].name,
                  (long long)o.elapsed_ms);
        if (strstr(rows[i].path, "/expired")) {
            CHECK(strcmp(e.fake->seen[e.fake->nseen - 1].authz,
                         e.fake->seen[e.fake->nseen - 2].authz) != 0,
                  "%s: the retry used a new token", rows[i].name);
        }
    }
    struct cg_arm_stats st;
    cg_arm_stats(e.arm, &st);
    CHECK(st.throttled == 2 && st.retry_after_waits == 1,
          "stats: throttled %llu, retry-after waits %llu",
          (unsigned long long)st.throttled,
          (unsigned long long)st.retry_after_waits);
    CHECK(st.reauths == 2 && st.token_requests == 3,
          "stats: reauths %llu, token requests %llu",
          (unsigned long long)st.reauths,
          (unsigned long long)st.token_requests);
    CHECK(st.requests == (uint64_t)e.fake->nseen,
          "stats: %llu requests counted, server saw %d",
          (unsigned long long)st.requests, e.fake->nseen);
    CHECK(st.status_4xx >= 8 && st.status_5xx >= 3 && st.status_2xx >= 8 &&
              st.calls_in_flight == 0,
          "stats: 2xx %llu 4xx %llu 5xx %llu in flight %zu",
          (unsigned long long)st.status_2xx, (unsigned long long)st.status_4xx,
          (unsigned long long)st.status_5xx, st.calls_in_flight);
    env_close(&e);
}

/* A 429 holds every request on its bucket, not only the one answered. */
static void test_retry_after_holds_bucket(void)
{
    struct env e;
    if (env_open(&e, NULL) != 0)
        return;
    struct outcome o[6];
    memset(o, 0, sizeof(o));
    struct cg_arm_request req = { .method = CG_HTTP_GET,
                                  .tenant = "t1",
                                  .subscription = SUB,
                                  .path =
                                      "/subscriptions/" SUB "/throttle1?v=1" };
    cg_arm_call(e.arm, &req, on_done, &o[0]);
    /* Wait for the 429 to be answered, then start more calls. */
    for (int i = 0; i < 1000 && e.fake->last_429_ms == 0; i++)
        cg_loop_run_once(e.loop, 10);
    for (int i = 0; i < 20; i++)
        cg_loop_run_once(e.loop, 5);
    req.path = "/subscriptions/" SUB "/ok?v=2";
    for (int i = 1; i < 6; i++)
        cg_arm_call(e.arm, &req, on_done, &o[i]);
    for (int i = 0; i < 6; i++)
        run_until(&e, &o[i].calls, 1);
    int early = count_early(e.fake);
    CHECK(early == 0, "retry-after hold: %d requests before Retry-After",
          early);
    for (int i = 0; i < 6; i++)
        CHECK(o[i].err == 0, "retry-after hold: call %d err %s (%s)", i,
              cg_err_name(o[i].err), o[i].why);
    env_close(&e);
}

/* Calls already waiting for a bucket token when a 429 arrives must not go
 * before its Retry-After either (they took their reservation earlier). */
static void test_retry_after_holds_waiting(void)
{
    static const char *const sets[] = { "worker.read_bucket=2",
                                        "worker.read_refill=10", NULL };
    struct env e;
    if (env_open(&e, sets) != 0)
        return;
    enum { N = 6 };
    struct outcome o[N];
    memset(o, 0, sizeof(o));
    struct cg_arm_request req = { .method = CG_HTTP_GET,
                                  .tenant = "t1",
                                  .subscription = SUB,
                                  .path = "/subscriptions/" SUB
                                          "/throttle2nd?v=1" };
    for (int i = 0; i < N; i++)
        cg_arm_call(e.arm, &req, on_done, &o[i]);
    for (int i = 0; i < N; i++)
        run_until(&e, &o[i].calls, 1);
    int early = count_early(e.fake);
    CHECK(e.fake->last_429_ms > 0 && early == 0,
          "waiting calls: %d requests before Retry-After", early);
    for (int i = 0; i < N; i++)
        CHECK(o[i].err == 0, "waiting calls: call %d err %s (%s)", i,
              cg_err_name(o[i].err), o[i].why);
    env_close(&e);
}

/* ARM's remaining count lowers the bucket the request drew from: the
 * tenant's for calls without a subscription. */
static void test_remaining_headers(void)
{
    static const struct {
        const char *name, *bucket, *subscription;
        uint64_t self_throttled; /* of the second call */
    } rows[] = {
        { "tenant call, tenant header", "tenant-reads", NULL, 1 },
        { "tenant call, subscription header", "subscription-reads", NULL, 0 },
        { "subscription call, subscription header", "subscription-reads", SUB,
          1 },
        { "subscription call, tenant header", "tenant-reads", SUB, 0 },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct env e;
        if (env_open(&e, NULL) != 0)
            return;
        char path[128];
        snprintf(path, sizeof(path), "/tenantlevel?bucket=%s", rows[i].bucket);
        struct cg_arm_request req = { .method = CG_HTTP_GET,
                                      .tenant = "t1",
                                      .subscription = rows[i].subscription,
                                      .path = path };
        struct outcome o[2];
        memset(o, 0, sizeof(o));
        for (int k = 0; k < 2; k++) {
            cg_arm_call(e.arm, &req, on_done, &o[k]);
            run_until(&e, &o[k].calls, 1);
        }
        struct cg_arm_stats st;
        cg_arm_stats(e.arm, &st);
        CHECK(o[0].err == 0 && o[1].err == 0 &&
                  st.self_throttled == rows[i].self_throttled,
              "%s: %llu self-throttled, want %llu", rows[i].name,
              (unsigned long long)st.self_throttled,
              (unsigned long long)rows[i].self_throttled);
        env_close(&e);
    }
}

/* Requests already handed to http, waiting there for a transfer slot,
 * when a 429 arrives for their bucket do not go before its Retry-After. */
static void test_retry_after_holds_queued(void)
{
    static const char *const sets[] = { "worker.max_in_flight=1", NULL };
    struct env e;
    if (env_open(&e, sets) != 0)
        return;
    /* A token first, so that all three calls reach http at once. */
    struct outcome warm = { 0 };
    struct cg_arm_request req = { .method = CG_HTTP_GET,
                                  .tenant = "t1",
                                  .subscription = SUB,
                                  .path = "/subscriptions/" SUB "/ok?v=7" };
    cg_arm_call(e.arm, &req, on_done, &warm);
    run_until(&e, &warm.calls, 1);
    enum { N = 3 };
    struct outcome o[N];
    memset(o, 0, sizeof(o));
    req.path = "/subscriptions/" SUB "/throttle1?v=7";
    for (int i = 0; i < N; i++)
        cg_arm_call(e.arm, &req, on_done, &o[i]);
    for (int i = 0; i < N; i++)
        run_until(&e, &o[i].calls, 1);
    int early = count_early(e.fake);
    CHECK(e.fake->last_429_ms > 0 && early == 0,
          "queued in http: %d requests before Retry-After", early);
    for (int i = 0; i < N; i++)
        CHECK(o[i].err == 0, "queued in http: call %d err %s (%s)", i,
              cg_err_name(o[i].err), o[i].why);
    env_close(&e);
}

/* A request that waits for a transfer slot longer than its token lives
 * gets a new token when it goes on the wire, not a 401. */
static void test_token_ages_in_queue(void)
{
    static const char *const sets[] = { "worker.max_in_flight=1", NULL };
    struct env e;
    if (env_open(&e, sets) != 0)
        return;
    e.fake->token_life_s = 1;
    struct outcome hold = { 0 }, o = { 0 };
    struct cg_arm_request slow = { .method = CG_HTTP_GET,
                                   .tenant = "t1",
                                   .subscription = SUB,
                                   .path = "/subscriptions/" SUB "/hang?v=6",
                                   .deadline_ms = cg_loop_now_ms() + 1400 };
    cg_arm_call(e.arm, &slow, on_done, &hold);
    /* Let the slow call take the only transfer slot with a fresh token. */
    for (int i = 0; i < 200 && e.fake->nseen == 0; i++)
        cg_loop_run_once(e.loop, 10);
    struct cg_arm_request req = { .method = CG_HTTP_GET,
                                  .tenant = "t1",
                                  .subscription = SUB,
                                  .path = "/subscriptions/" SUB "/fresh?v=1" };
    cg_arm_call(e.arm, &req, on_done, &o);
    run_until(&e, &o.calls, 1);
    run_until(&e, &hold.calls, 1);
    CHECK(o.err == 0 && o.attempts == 1 && e.fake->expired_seen == 0,
          "aged token: err %s, %d attempts, %d expired tokens sent (%s)",
          cg_err_name(o.err), o.attempts, e.fake->expired_seen, o.why);
    CHECK(hold.err == CG_EDEADLINE, "aged token: the slow call ended %s",
          cg_err_name(hold.err));
    env_close(&e);
}

/* The client-side read bucket paces requests before ARM would. */
static void test_client_bucket(void)
{
    static const char *const sets[] = { "worker.read_bucket=5",
                                        "worker.read_refill=10", NULL };
    struct env e;
    if (env_open(&e, sets) != 0)
        return;
    enum { N = 8 };
    struct outcome o[N];
    memset(o, 0, sizeof(o));
    struct cg_arm_request req = { .method = CG_HTTP_GET,
                                  .tenant = "t1",
                                  .subscription = SUB,
                                  .path = "/subscriptions/" SUB "/ok?v=3" };
    int64_t t0 = cg_loop_now_ms();
    for (int i = 0; i < N; i++)
        cg_arm_call(e.arm, &req, on_done, &o[i]);
    for (int i = 0; i < N; i++)
        run_until(&e, &o[i].calls, 1);
    CHECK(e.fake->nseen == N, "bucket: %d requests", e.fake->nseen);
    /* Five at once, then one per 100 ms. */
    int64_t last = e.fake->seen[N - 1].at_ms - t0;
    int64_t fifth = e.fake->seen[4].at_ms - t0;
    CHECK(fifth < 100 && last >= 295,
          "bucket: 5th after %lld ms (want < 100), 8th after %lld ms "
          "(want >= 300)",
          (long long)fifth, (long long)last);
    struct cg_arm_stats st;
    cg_arm_stats(e.arm, &st);
    CHECK(st.self_throttled == 3, "bucket: %llu self-throttled, want 3",
          (unsigned long long)st.self_throttled);
    env_close(&e);
}

/* At most azure.tenant_max_in_flight requests per tenant on the wire. */
static void test_tenant_cap(void)
{
    static const char *const sets[] = { "azure.tenant_max_in_flight=2", NULL };
    struct env e;
    if (env_open(&e, sets) != 0)
        return;
    enum { N = 6 };
    struct outcome o[N];
    memset(o, 0, sizeof(o));
    struct cg_arm_request req = { .method = CG_HTTP_GET,
                                  .tenant = "t1",
                                  .subscription = SUB,
                                  .path = "/subscriptions/" SUB "/hang?v=4",
                                  .deadline_ms = cg_loop_now_ms() + 600 };
    for (int i = 0; i < N; i++)
        cg_arm_call(e.arm, &req, on_done, &o[i]);
    for (int i = 0; i < N; i++)
        run_until(&e, &o[i].calls, 1);
    CHECK(e.fake->nseen == 2, "cap: server saw %d requests, want 2",
          e.fake->nseen);
    int busy = 0, timeout = 0;
    for (int i = 0; i < N; i++) {
        CHECK(o[i].err == CG_EDEADLINE, "cap: call %d err %s", i,
              cg_err_name(o[i].err));
        busy += o[i].cause == CG_EBUSY;
        timeout += o[i].cause == CG_ETIMEOUT;
    }
    CHECK(busy == 4 && timeout == 2, "cap: %d waited for a slot, %d timed out",
          busy, timeout);
    env_close(&e);
}

/* Cancelling calls in every state leaves nothing behind (ASan checks). */
static void test_cancel(void)
{
    static const char *const sets[] = { "worker.read_bucket=1",
                                        "worker.read_refill=1", NULL };
    struct env e;
    if (env_open(&e, sets) != 0)
        return;
    struct outcome o[3];
    memset(o, 0, sizeof(o));
    struct cg_arm_request req = { .method = CG_HTTP_GET,
                                  .tenant = "t1",
                                  .subscription = SUB,
                                  .path = "/subscriptions/" SUB "/hang?v=5" };
    struct cg_arm_call *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = cg_arm_call(e.arm, &req, on_done, &o[i]);
    for (int i = 0; i < 20; i++)
        cg_loop_run_once(e.loop, 5);
    for (int i = 0; i < 3; i++)
        cg_arm_cancel(e.arm, c[i]);
    for (int i = 0; i < 20; i++)
        cg_loop_run_once(e.loop, 5);
    CHECK(o[0].calls + o[1].calls + o[2].calls == 0,
          "cancel: no callbacks after cancel");
    struct cg_arm_stats st;
    cg_arm_stats(e.arm, &st);
    CHECK(st.calls_in_flight == 0, "cancel: %zu calls left",
          st.calls_in_flight);
    /* And a client freed with calls in flight. */
    cg_arm_call(e.arm, &req, on_done, &o[0]);
    env_close(&e);
}

/* Records per subscription and per tenant do not outlive their use: a
 * fleet that reads 100,000 subscriptions once a day keeps none of them. */
static void test_forget(void)
{
    struct env e;
    if (env_open(&e, NULL) != 0)
        return;
    enum { N = 4 };
    struct outcome o[N + 2];
    memset(o, 0, sizeof(o));
    char subs[N][40], paths[N][200];
    for (int i = 0; i < N; i++) {
        snprintf(subs[i], sizeof(subs[i]),
                 "00000000-0000-0000-0000-0000000001%02d", i);
        snprintf(paths[i], sizeof(paths[i]), "/subscriptions/%s/ok?v=6",
                 subs[i]);
        struct cg_arm_request req = { .method = CG_HTTP_GET,
                                      .tenant = "t1",
                                      .subscription = subs[i],
                                      .path = paths[i] };
        cg_arm_call(e.arm, &req, on_done, &o[i]);
    }
    struct cg_arm_request nocred = { .method = CG_HTTP_GET,
                                     .tenant = "t9",
                                     .subscription = SUB,
                                     .path = "/subscriptions/" SUB "/ok?v=6" };
    cg_arm_call(e.arm, &nocred, on_done, &o[N]);
    for (int i = 0; i <= N; i++)
        run_until(&e, &o[i].calls, 1);
    struct cg_arm_stats st;
    cg_arm_stats(e.arm, &st);
    CHECK(st.limits_held == N && st.tenants_held == 2 &&
              st.auth_tenants_held == 2,
          "forget: %zu buckets, %zu tenant slots, %zu auth tenants held "
          "after the calls (want %d, 2, 2)",
          st.limits_held, st.tenants_held, st.auth_tenants_held, N);
    /* Buckets not yet refilled are kept; a slot record without a call is
     * the same as none; auth keeps what was used within idle_ms. */
    int64_t now = cg_loop_now_ms();
    size_t gone = cg_arm_sweep(e.arm, now);
    cg_arm_stats(e.arm, &st);
    CHECK(gone == 2 && st.limits_held == N && st.tenants_held == 0,
          "forget: %zu forgotten now, %zu buckets kept (want 2, %d)", gone,
          st.limits_held, N);
    CHECK(cg_auth_sweep(e.auth, now, 1000) == 0,
          "forget: auth keeps tenants used within the idle time");
    /* A call in flight keeps its tenant's records. */
    struct cg_arm_request hang = { .method = CG_HTTP_GET,
                                   .tenant = "t1",
                                   .subscription = SUB,
                                   .path = "/subscriptions/" SUB "/hang?v=6",
                                   .deadline_ms = now + 300 };
    cg_arm_call(e.arm, &hang, on_done, &o[N + 1]);
    for (int i = 0; i < 5; i++)
        cg_loop_run_once(e.loop, 5);
    int64_t later = now + CG_AUTH_IDLE_MS + 1;
    gone = cg_arm_sweep(e.arm, later);
    cg_arm_stats(e.arm, &st);
    CHECK(gone == N + 1 && st.tenants_held == 1,
          "forget: %zu buckets forgotten, %zu tenant slots left (want %d, "
          "1: the one with a call)",
          gone, st.tenants_held, N + 1);
    run_until(&e, &o[N + 1].calls, 1);
    CHECK(cg_auth_sweep(e.auth, later, CG_AUTH_IDLE_MS) == 2,
          "forget: both auth tenants forgotten once idle");
    cg_arm_sweep(e.arm, later);
    cg_arm_stats(e.arm, &st);
    CHECK(st.limits_held == 0 && st.tenants_held == 0 &&
              st.auth_tenants_held == 0,
          "forget: %zu, %zu, %zu held after both sweeps", st.limits_held,
          st.tenants_held, st.auth_tenants_held);
    /* A forgotten tenant works again: one new token. */
    uint64_t tokens = st.token_requests;
    memset(&o[0], 0, sizeof(o[0]));
    struct cg_arm_request again = { .method = CG_HTTP_GET,
                                    .tenant = "t1",
                                    .subscription = subs[0],
                                    .path = paths[0] };
    cg_arm_call(e.arm, &again, on_done, &o[0]);
    run_until(&e, &o[0].calls, 1);
    cg_arm_stats(e.arm, &st);
    CHECK(o[0].err == 0 && st.token_requests == tokens + 1,
          "forget: the tenant is served again (%s, %llu new tokens)",
          cg_err_name(o[0].err),
          (unsigned long long)(st.token_requests - tokens));
    env_close(&e);
}

int main(void)
{
    cg_log_setup(CG_LOG_ERROR, CG_LOG_TEXT, "test_arm");
    test_bucket();
    test_backoff();
    test_status();
    test_calls();
    test_retry_after_holds_bucket();
    test_retry_after_holds_waiting();
    test_remaining_headers();
    test_token_ages_in_queue();
    test_retry_after_holds_queued();
    test_client_bucket();
    test_tenant_cap();
    test_cancel();
    test_forget();
    return check_done("test_arm");
}
