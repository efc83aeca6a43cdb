/*
 * Unit tests of fetch: the contacts and the role assignments of one
 * subscription are read in one call, both requests in flight together,
 * against the scripted server (tests/harness/testsrv.c) on one loop. Each
 * row is a subscription whose last hex digit picks the server's script.
 */
#include "../check.h"
#include "arm.h"
#include "auth.h"
#include "conf.h"
#include "err.h"
#include "fetch.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "owners.h"
#include "testsrv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUB_PREFIX "00000000-0000-4000-8000-00000000000"

enum script {
    S_BOTH = 1,      /* contacts; role assignments over two pages */
    S_DENIED = 2,    /* role assignments 403 */
    S_THROTTLED = 3, /* role assignments 429 once, then served */
    S_HANG = 4,      /* the contacts never answer */
    S_GARBLED = 5,   /* role assignments not a list */
};

struct server {
    char base[64];
    int roles_seen[8];    /* role assignments requests per script */
    int contacts_seen[8]; /* contacts requests per script */
    char roles_path[512]; /* the first role assignments request */
};

static const char *const contact_body =
    "{\"value\":[{\"name\":\"default\",\"properties\":{\"isEnabled\":true,"
    "\"emails\":\"soc@example.com\",\"notificationsByRole\":{\"state\":"
    "\"On\",\"roles\":[\"Owner\"]},\"notificationsSources\":[{"
    "\"sourceType\":\"Alert\",\"minimalSeverity\":\"High\"},{"
    "\"sourceType\":\"AttackPath\",\"minimalRiskLevel\":\"High\"}]}}]}";

#define OWNER_DEF                                                              \
    "/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-"   \
    "a75c-2fe8c4bcb635"

static void roles_answer(struct server *sv, const char *sub, const char *path,
                         int script, struct cg_testsrv_response *res)
{
    int n = ++sv->roles_seen[script];
    if (!sv->roles_path[0])
        cg_strlcpy(sv->roles_path, path, sizeof(sv->roles_path));
    if (script == S_DENIED) {
        res->status = 403;
        res->body = cg_strdup("{\"error\":{\"code\":\"AuthorizationFailed\","
                              "\"message\":\"no roleAssignments/read\"}}");
    } else if (script == S_THROTTLED && n == 1) {
        res->status = 429;
        snprintf(res->headers, sizeof(res->headers), "Retry-After: 1\r\n");
        res->body = cg_strdup("{\"error\":{\"code\":\"TooManyRequests\","
                              "\"message\":\"slow down\"}}");
    } else if (script == S_GARBLED) {
        res->body = cg_strdup("{\"values\":[]}");
    } else if (script == S_BOTH && !strstr(path, "skiptoken=2")) {
        /* Page one: a service principal Owner; the user is on page two. */
        res->body = cg_asprintf(
            "{\"value\":[{\"properties\":{\"roleDefinitionId\":"
            "\"/subscriptions/%s" OWNER_DEF "\",\"principalId\":\"sp-1\","
            "\"principalType\":\"ServicePrincipal\"}}],\"nextLink\":"
            "\"%s/subscriptions/%s/providers/Microsoft.Authorization/"
            "roleAssignments?api-version=2022-04-01&%%24skiptoken=2\"}",
            sub, sv->base, sub);
    } else {
        res->body = cg_strdup(
            "{\"value\":[{\"properties\":{\"roleDefinitionId\":\"" OWNER_DEF
            "\",\"principalId\":\"user-1\",\"principalType\":\"User\","
            "\"scope\":\"/\"}}]}");
    }
}

static void handler(const struct cg_testsrv_request *req,
                    struct cg_testsrv_response *res, void *arg)
{
    struct server *sv = arg;
    const char *p = req->path;
    if (strstr(p, "/oauth2/v2.0/token")) {
        res->body = cg_strdup("{\"token_type\":\"Bearer\",\"expires_in\":"
                              "3599,\"access_token\":\"tok\"}");
        return;
    }
    char sub[40] = "";
    const char *s = strstr(p, "/subscriptions/");
    if (s)
        snprintf(sub, sizeof(sub), "%.36s", s + 15);
    int script = sub[0] ? sub[35] - '0' : 0;
    if (script < 1 || script > 7) {
        res->status = 404;
        res->body = cg_strdup("{\"error\":{\"code\":\"NotFound\"}}");
        return;
    }
    if (strstr(p, "/roleAssignments")) {
        roles_answer(sv, sub, p, script, res);
        return;
    }
    sv->contacts_seen[script]++;
    if (script == S_HANG)
        res->hang = true;
    else
        res->body = cg_strdup(contact_body);
}

struct env {
    struct cg_loop *loop;
    struct cg_testsrv *srv;
    struct server *sv;
    struct cg_conf *conf;
    struct cg_http *http;
    struct cg_auth *auth;
    struct cg_arm *arm;
    struct cg_fetch *fetch;
};

/* Sets e->fetch last: NULL when something failed (and was reported). */
static void env_open(struct env *e, const char *const *sets)
{
    char err[512], dir[64];
    memset(e, 0, sizeof(*e));
    e->sv = cg_calloc(1, sizeof(*e->sv));
    e->loop = cg_loop_new(err, sizeof(err));
    REQUIRE(e->loop != NULL, "loop: %s", err);
    e->srv = cg_testsrv_new(e->loop, handler, e->sv);
    REQUIRE(e->srv != NULL, "test server started");
    snprintf(e->sv->base, sizeof(e->sv->base), "http://127.0.0.1:%d",
             cg_testsrv_port(e->srv));
    cg_strlcpy(dir, "/tmp/cg-test-fetch-XXXXXX", sizeof(dir));
    REQUIRE(mkdtemp(dir) != NULL, "mkdtemp %s", dir);
    char *path = cg_asprintf("%s/conf.json", dir);
    FILE *fp = fopen(path, "w");
    if (fp) {
        fprintf(fp,
                "{\"azure\":{\"authority_host\":\"%s\",\"resource_manager\":"
                "\"%s\"},\"tenants\":[{\"id\":\"t1\",\"client_id\":"
                "\"app-1\",\"client_secret_env\":\"CG_TEST_FETCH_SECRET\"}]}",
                e->sv->base, e->sv->base);
        fclose(fp);
    }
    setenv("CG_TEST_FETCH_SECRET", "fetch-test-secret", 1);
    e->conf = cg_conf_new();
    int rc = fp ? cg_conf_load_file(e->conf, path, err, sizeof(err)) : -1;
    for (size_t i = 0; rc == 0 && sets && sets[i]; i++)
        rc = cg_conf_set_arg(e->conf, sets[i], err, sizeof(err));
    if (rc == 0)
        rc = cg_conf_finish(e->conf, err, sizeof(err));
    unlink(path);
    free(path);
    rmdir(dir);
    REQUIRE(rc == 0, "conf: %s", err);
    struct cg_http_opts ho;
    cg_http_opts_from_conf(e->conf, &ho);
    e->http = cg_http_new(e->loop, &ho, err, sizeof(err));
    e->auth = cg_auth_new(e->loop, e->http, e->conf, err, sizeof(err));
    e->arm = cg_arm_new(e->loop, e->http, e->auth, e->conf, err, sizeof(err));
    REQUIRE(e->arm != NULL, "arm_new: %s", err);
    e->fetch = cg_fetch_new(e->arm, e->conf, err, sizeof(err));
    REQUIRE(e->fetch != NULL, "fetch_new: %s", err);
}

static void env_close(struct env *e)
{
    cg_fetch_free(e->fetch);
    cg_arm_free(e->arm);
    cg_auth_free(e->auth);
    cg_http_free(e->http);
    cg_conf_free(e->conf);
    if (e->srv)
        cg_testsrv_free(e->srv);
    if (e->loop)
        cg_loop_free(e->loop);
    free(e->sv);
}

/* What the callback saw, copied out of the result. */
struct got {
    int calls;
    int err;
    char code[48];
    size_t contacts;
    struct cg_owners owners;
    size_t role_pages;
};

static void on_fetched(struct cg_fetch_result *res, void *arg)
{
    struct got *g = arg;
    g->calls++;
    g->err = res->err;
    cg_strlcpy(g->code, res->err ? res->reason_code : "", sizeof(g->code));
    g->contacts = res->ct.n;
    g->owners = res->owners; /* moved out, as the contract allows */
    cg_owners_init(&res->owners);
    g->role_pages = res->role_pages;
}

static void fetch(struct env *e, int script, int64_t deadline_ms, struct got *g)
{
    char sub[40];
    snprintf(sub, sizeof(sub), SUB_PREFIX "%d", script);
    memset(g, 0, sizeof(*g));
    cg_owners_init(&g->owners);
    cg_fetch_start(e->fetch, "t1", sub, cg_loop_now_ms() + deadline_ms,
                   on_fetched, g);
    for (int i = 0; i < 100000 && g->calls == 0; i++)
        cg_loop_run_once(e->loop, 100);
    CHECK(g->calls == 1, "script %d: %d callbacks", script, g->calls);
    CHECK(cg_fetch_in_flight(e->fetch) == 0, "script %d: still in flight",
          script);
}

static void test_reads(void)
{
    struct env e;
    env_open(&e, NULL);
    if (!e.fetch)
        goto out;
    struct got g;

    fetch(&e, S_BOTH, 20000, &g);
    CHECK(g.err == 0 && g.contacts == 1, "both: contacts err %s, %zu",
          cg_err_name(g.err), g.contacts);
    CHECK(g.owners.state == CG_OWNERS_READ && g.owners.owners == 2 &&
              g.owners.users == 1 && g.role_pages == 2,
          "both: owners state %d, %zu owners, %zu users, %zu pages",
          g.owners.state, g.owners.owners, g.owners.users, g.role_pages);
    CHECK(strstr(e.sv->roles_path, "/providers/Microsoft.Authorization/"
                                   "roleAssignments?") &&
              strstr(e.sv->roles_path, "%24filter=atScope%28%29") &&
              strstr(e.sv->roles_path, "api-version=2022-04-01"),
          "both: the request asks atScope() in 2022-04-01: %s",
          e.sv->roles_path);
    cg_owners_free(&g.owners);

    fetch(&e, S_DENIED, 20000, &g);
    CHECK(g.err == 0, "denied: the contacts still read (%s)", g.code);
    CHECK(g.owners.state == CG_OWNERS_UNREADABLE &&
              g.owners.status == CG_STATUS_ERROR &&
              !strcmp(g.owners.reason_code, "AUTHORIZATION_FAILED") &&
              strstr(g.owners.reason, "roleAssignments/read"),
          "denied: %d %s %s", g.owners.state, g.owners.reason_code,
          g.owners.reason);
    CHECK(e.sv->roles_seen[S_DENIED] == 1, "denied: 403 retried (%d)",
          e.sv->roles_seen[S_DENIED]);
    cg_owners_free(&g.owners);

    fetch(&e, S_THROTTLED, 20000, &g);
    CHECK(g.err == 0 && g.owners.state == CG_OWNERS_READ && g.owners.users == 1,
          "throttled: owners state %d after a 429", g.owners.state);
    CHECK(e.sv->roles_seen[S_THROTTLED] == 2, "throttled: %d requests",
          e.sv->roles_seen[S_THROTTLED]);
    cg_owners_free(&g.owners);

    fetch(&e, S_GARBLED, 20000, &g);
    CHECK(g.owners.state == CG_OWNERS_UNREADABLE &&
              g.owners.status == CG_STATUS_ERROR &&
              !strcmp(g.owners.reason_code, "BODY_MALFORMED"),
          "garbled: %d %s", g.owners.state, g.owners.reason_code);
    cg_owners_free(&g.owners);

    /* Together, not one after the other: the contacts never answer, yet
     * the role assignments were asked for and read. Read in sequence,
     * the second request would never have been sent. */
    fetch(&e, S_HANG, 1500, &g);
    CHECK(g.err != 0 && !strcmp(g.code, "AZURE_UNAVAILABLE"),
          "hang: contacts err %s code %s", cg_err_name(g.err), g.code);
    CHECK(e.sv->roles_seen[S_HANG] == 1 && g.owners.state == CG_OWNERS_READ,
          "hang: %d role assignments requests, owners state %d",
          e.sv->roles_seen[S_HANG], g.owners.state);
    cg_owners_free(&g.owners);
out:
    env_close(&e);
}

static void test_rule_off(void)
{
    static const char *const sets[] = { "rules.owner_reachable.enabled=false",
                                        NULL };
    struct env e;
    env_open(&e, sets);
    if (!e.fetch)
        goto out;
    struct got g;
    fetch(&e, S_BOTH, 20000, &g);
    CHECK(g.err == 0 && g.owners.state == CG_OWNERS_NOT_READ &&
              e.sv->roles_seen[S_BOTH] == 0,
          "off: owners state %d, %d role assignments requests", g.owners.state,
          e.sv->roles_seen[S_BOTH]);
    cg_owners_free(&g.owners);
out:
    env_close(&e);
}

int main(void)
{
    cg_log_setup(CG_LOG_ERROR, CG_LOG_TEXT, "test_fetch");
    test_reads();
    test_rule_off();
    return check_done("fetch");
}
