/*
 * Integration test of the Azure client layer (loop, http, auth, arm)
 * against contactguard-fakeazure over HTTPS on loopback: tokens with a
 * client secret and with certificate assertions (PS256 and RS256), the
 * subscription listing with paging, securityContacts reads in two API
 * versions, a 429 storm that finishes with zero requests sent before their
 * Retry-After (the fake's own count), ARM-side throttling answered by
 * backing off, and a 401 after the fake forgets its tokens.
 *
 * The fake's path comes from the build (CG_BIN_CONTACTGUARD_FAKEAZURE).
 */
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
#include "harness.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TENANTS   4 /* secret, PS256, RS256, federated */
#define SUBS      250
#define PAGE_SIZE 100

#define V2023 "2023-12-01-preview"
#define V2020 "2020-01-01-preview"

struct env {
    char dir[64];
    char base[128];
    struct cg_harness_proc *fake;
    struct cg_loop *loop;
    struct cg_conf *conf;
    struct cg_http *http;
    struct cg_auth *auth;
    struct cg_arm *arm;
    char tenant[TENANTS][64];
};

/* ---- small drivers ---- */

struct ctl_done {
    int calls, err;
    long status;
    json_t *body;
};

static void on_ctl(const struct cg_http_response *res, void *arg)
{
    struct ctl_done *d = arg;
    d->calls++;
    d->err = res->err;
    d->status = res->status;
    d->body = cg_json_parse(res->body, res->body_len, NULL, 0);
}

static void run_until(struct env *e, const int *calls, int want)
{
    int64_t deadline = cg_loop_now_ms() + 180000;
    while (*calls < want && cg_loop_now_ms() < deadline)
        cg_loop_run_once(e->loop, 100);
}

/* The fake's control API; returns the parsed reply (caller frees). */
static json_t *control(struct env *e, enum cg_http_method m, const char *path,
                       const char *body)
{
    char url[256], err[256];
    snprintf(url, sizeof(url), "%s%s", e->base, path);
    static const char *const hdrs[] = { "Content-Type: application/json",
                                        NULL };
    struct cg_http_request req = { .method = m,
                                   .url = url,
                                   .headers = hdrs,
                                   .body = body,
                                   .body_len = body ? strlen(body) : 0 };
    struct ctl_done d = { 0 };
    if (!cg_http_submit(e->http, &req, on_ctl, &d, err, sizeof(err))) {
        CHECK(0, "control %s: %s", path, err);
        return NULL;
    }
    run_until(e, &d.calls, 1);
    CHECK(d.err == 0 && d.status == 200, "control %s: err %s status %ld", path,
          cg_err_name(d.err), d.status);
    return d.body;
}

static long long stats_int(json_t *stats, const char *key)
{
    long long v = -1;
    cg_json_int(stats, key, &v);
    return v;
}

/* Sum of answers with one status over all of the fake's routes. */
static long long stats_status(json_t *stats, const char *status)
{
    json_t *routes = json_object_get(stats, "requests");
    const char *k;
    json_t *r;
    long long n = 0;
    json_object_foreach(routes, k, r)
    {
        json_t *c = json_object_get(r, status);
        if (json_is_integer(c))
            n += json_integer_value(c);
    }
    return n;
}

struct got_token {
    int calls, err;
    char why[512];
};

static void on_token(const struct cg_auth_result *res, void *arg)
{
    struct got_token *g = arg;
    g->calls++;
    g->err = res->err;
    cg_strlcpy(g->why, res->why, sizeof(g->why));
}

struct outcome {
    int calls, err, cause, attempts;
    char why[512];
    json_t *items;
    size_t pages;
};

static void on_arm(const struct cg_arm_result *res, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->err = res->err;
    o->cause = res->cause;
    o->attempts = res->attempts;
    o->pages = res->pages;
    cg_strlcpy(o->why, res->why, sizeof(o->why));
    if (res->items)
        o->items = json_incref(res->items);
}

/* ---- set-up ---- */

/* The fake writes a configuration with every tenant on a client secret;
 * tenants 1 and 2 are switched to the app certificate (PS256, RS256). */
static int write_conf(struct env *e, const char *in, const char *out)
{
    json_error_t je;
    json_t *root = json_load_file(in, 0, &je);
    json_t *tenants = json_object_get(root, "tenants");
    if (json_array_size(tenants) != TENANTS) {
        json_decref(root);
        return -1;
    }
    for (size_t i = 0; i < TENANTS; i++) {
        json_t *t = json_array_get(tenants, i);
        cg_strlcpy(e->tenant[i], cg_json_str(t, "id"), sizeof(e->tenant[i]));
        if (i == 0)
            continue;
        json_object_del(t, "client_secret_file");
        if (i == 3) {
            char *fed = cg_asprintf("%s/federated.token", e->dir);
            json_object_set_new(t, "auth", json_string("federated"));
            json_object_set_new(t, "federated_token_file", json_string(fed));
            free(fed);
            continue;
        }
        json_object_set_new(t, "auth", json_string("certificate"));
        char *cert = cg_asprintf("%s/app.pem", e->dir);
        char *key = cg_asprintf("%s/app.key", e->dir);
        json_object_set_new(t, "certificate_file", json_string(cert));
        json_object_set_new(t, "private_key_file", json_string(key));
        json_object_set_new(t, "assertion_alg",
                            json_string(i == 1 ? "PS256" : "RS256"));
        free(cert);
        free(key);
    }
    int rc = json_dump_file(root, out, JSON_INDENT(2));
    json_decref(root);
    return rc;
}

static int env_open(struct env *e)
{
    char err[512];
    memset(e, 0, sizeof(*e));
    cg_strlcpy(e->dir, "/tmp/cg-it-azclient-XXXXXX", sizeof(e->dir));
    if (!mkdtemp(e->dir)) {
        CHECK(0, "mkdtemp %s", e->dir);
        return -1;
    }
    char *creds = cg_asprintf("%s/creds.json", e->dir);
    char *conf_path = cg_asprintf("%s/conf.json", e->dir);
    char subs[16], tenants[16], page[16];
    snprintf(subs, sizeof(subs), "%d", SUBS);
    snprintf(tenants, sizeof(tenants), "%d", TENANTS);
    snprintf(page, sizeof(page), "%d", PAGE_SIZE);
    const char *const argv[] = { CG_BIN_CONTACTGUARD_FAKEAZURE,
                                 "--tls-self-signed",
                                 e->dir,
                                 "--tenants",
                                 tenants,
                                 "--subscriptions-per-tenant",
                                 subs,
                                 "--page-size",
                                 page,
                                 "--credentials",
                                 creds,
                                 "--log-level",
                                 "error",
                                 NULL };
    struct cg_harness_proc_opts po = { .name = "fakeazure",
                                       .line_timeout_ms = 30000 };
    e->fake = cg_harness_proc_start(argv, &po, err, sizeof(err));
    int rc = e->fake ? 0 : -1;
    CHECK(rc == 0, "fake started: %s", err);
    if (rc == 0)
        cg_strlcpy(e->base, cg_harness_proc_first_line(e->fake),
                   sizeof(e->base));
    if (rc == 0)
        rc = write_conf(e, creds, conf_path);
    if (rc == 0) {
        e->conf = cg_conf_new();
        rc = cg_conf_load_file(e->conf, conf_path, err, sizeof(err));
        if (rc == 0)
            rc = cg_conf_finish(e->conf, err, sizeof(err));
        CHECK(rc == 0, "conf: %s", err);
    }
    free(creds);
    free(conf_path);
    if (rc)
        return rc;
    e->loop = cg_loop_new(err, sizeof(err));
    struct cg_http_opts ho;
    cg_http_opts_from_conf(e->conf, &ho);
    CHECK(strncmp(e->base, "https://", 8) == 0 && *ho.ca_file,
          "the fake speaks TLS with its own CA (%s)", e->base);
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
    cg_loop_free(e->loop);
    cg_conf_free(e->conf);
    cg_harness_proc_free(e->fake);
    /* The fake's key and secret files. */
    char *cmd = cg_asprintf("rm -rf '%s'", e->dir);
    if (strncmp(e->dir, "/tmp/cg-it-azclient-", 20) == 0)
        (void)!system(cmd);
    free(cmd);
}

/* A projected service account token as the kubelet would write it,
 * signed by the fake's federation issuer key (RS256). */
static int write_federated(struct env *e, const char *issuer)
{
    char *kpath = cg_asprintf("%s/issuer.key", e->dir);
    FILE *f = fopen(kpath, "r");
    free(kpath);
    EVP_PKEY *key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!key)
        return -1;
    long long now = (long long)time(NULL);
    char *hdr = cg_strdup("{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    char *claims = cg_asprintf(
        "{\"iss\":\"%s\",\"sub\":\"system:serviceaccount:contactguard:"
        "worker\",\"aud\":\"api://AzureADTokenExchange\",\"nbf\":%lld,"
        "\"exp\":%lld,\"jti\":\"fed-%lld\"}",
        issuer, now, now + 3600, now);
    char *h64 = cg_auth_b64url((unsigned char *)hdr, strlen(hdr));
    char *c64 = cg_auth_b64url((unsigned char *)claims, strlen(claims));
    char *input = cg_asprintf("%s.%s", h64, c64);
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestSign(md, sig, &siglen, (unsigned char *)input,
                            strlen(input)) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    char *s64 = cg_auth_b64url(sig, siglen);
    char *path = cg_asprintf("%s/federated.token", e->dir);
    f = fopen(path, "w");
    if (f) {
        fprintf(f, "%s.%s\n", input, s64);
        fclose(f);
    }
    free(path);
    free(hdr);
    free(claims);
    free(h64);
    free(c64);
    free(input);
    free(s64);
    return ok && f ? 0 : -1;
}

/* ---- the scenarios ---- */

/* TLS is verified: without the fake's CA the handshake is refused. */
static void test_tls_verified(struct env *e)
{
    char err[256], url[256];
    struct cg_http_opts ho = { .max_in_flight = 2,
                               .timeout_ms = 5000,
                               .max_body = 65536 };
    struct cg_http *http = cg_http_new(e->loop, &ho, err, sizeof(err));
    snprintf(url, sizeof(url), "%s/_fake/stats", e->base);
    struct cg_http_request req = { .method = CG_HTTP_GET, .url = url };
    struct ctl_done d = { 0 };
    cg_http_submit(http, &req, on_ctl, &d, err, sizeof(err));
    run_until(e, &d.calls, 1);
    CHECK(d.calls == 1 && d.err == CG_ETLS && cg_err_retryable(d.err),
          "TLS without the CA: %s, want CG_ETLS (retryable)",
          cg_err_name(d.err));
    json_decref(d.body);
    cg_http_free(http);
}

static void test_tokens(struct env *e)
{
    static const char *const names[TENANTS] = {
        "client secret", "certificate PS256", "certificate RS256",
        "workload identity federation"
    };
    CHECK(write_federated(e, "https://oidc.fake.contactguard.test") == 0,
          "federated token written");
    struct got_token g[TENANTS];
    memset(g, 0, sizeof(g));
    for (int i = 0; i < TENANTS; i++)
        cg_auth_get(e->auth, e->tenant[i], on_token, &g[i]);
    for (int i = 0; i < TENANTS; i++) {
        run_until(e, &g[i].calls, 1);
        CHECK(g[i].calls == 1 && g[i].err == 0, "token, %s: %s (%s)", names[i],
              cg_err_name(g[i].err), g[i].why);
    }
    json_t *st = control(e, CG_HTTP_GET, "/_fake/stats", NULL);
    json_t *tok = json_object_get(st, "tokens");
    CHECK(stats_int(tok, "client_secret") == 1 &&
              stats_int(tok, "certificate") == 2 &&
              stats_int(tok, "federated") == 1 &&
              stats_int(tok, "refused") == 0,
          "fake issued 1 secret, 2 certificate and 1 federated token, refused "
          "none (%lld, %lld, %lld, %lld)",
          stats_int(tok, "client_secret"), stats_int(tok, "certificate"),
          stats_int(tok, "federated"), stats_int(tok, "refused"));
    json_decref(st);

    /* The federated token file is read for every request: a token from an
     * unknown issuer written there is what the next request presents. */
    const char *tok3 = cg_auth_cached(e->auth, e->tenant[3]);
    char *copy = cg_strdup(tok3 ? tok3 : "");
    cg_auth_invalidate(e->auth, e->tenant[3], copy);
    free(copy);
    CHECK(write_federated(e, "https://issuer.elsewhere.example") == 0,
          "federated token rewritten");
    struct got_token g3 = { 0 };
    cg_auth_get(e->auth, e->tenant[3], on_token, &g3);
    run_until(e, &g3.calls, 1);
    CHECK(g3.err == CG_EAUTH && strstr(g3.why, "AADSTS700211"),
          "federated file re-read: %s (%s)", cg_err_name(g3.err), g3.why);
}

/* Lists every tenant's subscriptions; returns tenant 0's (new ref). */
static json_t *test_list_subscriptions(struct env *e)
{
    /* Tenant 3's federated token was just spoiled on purpose. */
    enum { LISTED = TENANTS - 1 };
    struct outcome o[LISTED];
    memset(o, 0, sizeof(o));
    for (int i = 0; i < LISTED; i++) {
        struct cg_arm_request req = {
            .method = CG_HTTP_GET,
            .tenant = e->tenant[i],
            .path = "/subscriptions?api-version=2022-12-01",
        };
        cg_arm_list(e->arm, &req, on_arm, &o[i]);
    }
    for (int i = 0; i < LISTED; i++) {
        run_until(e, &o[i].calls, 1);
        size_t want_pages = (SUBS + PAGE_SIZE - 1) / PAGE_SIZE;
        CHECK(o[i].err == 0, "list tenant %d: %s (%s)", i,
              cg_err_name(o[i].err), o[i].why);
        CHECK(json_array_size(o[i].items) == SUBS && o[i].pages == want_pages,
              "list tenant %d: %zu subscriptions in %zu pages, want %d in %zu",
              i, json_array_size(o[i].items), o[i].pages, SUBS, want_pages);
        size_t i2;
        json_t *s;
        int foreign = 0, unnamed = 0;
        json_array_foreach(o[i].items, i2, s)
        {
            const char *tid = cg_json_str(s, "tenantId");
            foreign += !tid || strcasecmp(tid, e->tenant[i]) != 0;
            unnamed += !cg_json_str(s, "subscriptionId");
        }
        CHECK(foreign == 0 && unnamed == 0,
              "list tenant %d: %d of another tenant, %d without id", i, foreign,
              unnamed);
    }
    for (int i = 1; i < LISTED; i++)
        json_decref(o[i].items);
    return o[0].items;
}

/* Reads every subscription's contacts at once; fills errs[]. */
static void read_contacts(struct env *e, int tenant, json_t *subs,
                          const char *version, int *errs, int *attempts)
{
    size_t n = json_array_size(subs);
    struct outcome *o = cg_calloc(n, sizeof(*o));
    for (size_t i = 0; i < n; i++) {
        const char *id = cg_json_str(json_array_get(subs, i), "subscriptionId");
        char path[256];
        snprintf(path, sizeof(path),
                 "/subscriptions/%s/providers/Microsoft.Security/"
                 "securityContacts?api-version=%s",
                 id, version);
        struct cg_arm_request req = { .method = CG_HTTP_GET,
                                      .tenant = e->tenant[tenant],
                                      .subscription = id,
                                      .path = path };
        cg_arm_list(e->arm, &req, on_arm, &o[i]);
    }
    for (size_t i = 0; i < n; i++) {
        run_until(e, &o[i].calls, 1);
        errs[i] = o[i].calls == 1 ? o[i].err : 1;
        if (attempts)
            *attempts += o[i].attempts;
        CHECK(o[i].calls == 1 && !cg_err_retryable(o[i].err) &&
                  o[i].err != CG_EDEADLINE,
              "contacts %s sub %zu: %s (%s)", version, i, cg_err_name(o[i].err),
              o[i].why);
        json_decref(o[i].items);
    }
    free(o);
}

static void test_contacts(struct env *e, json_t *subs, int *baseline)
{
    read_contacts(e, 0, subs, V2023, baseline, NULL);
    int ok = 0, notfound = 0, conflict = 0, other = 0;
    for (size_t i = 0; i < json_array_size(subs); i++) {
        ok += baseline[i] == 0;
        notfound += baseline[i] == CG_ENOTFOUND;
        conflict += baseline[i] == CG_ECONFLICT;
        other += baseline[i] && baseline[i] != CG_ENOTFOUND &&
                 baseline[i] != CG_ECONFLICT;
    }
    CHECK(ok > SUBS / 2,
          "contacts: %d read, %d not found, %d conflict, %d "
          "other",
          ok, notfound, conflict, other);
    /* The 2020 version: LIST may be a bare array. */
    int *errs2020 = cg_calloc(json_array_size(subs), sizeof(int));
    json_t *few = json_array();
    for (size_t i = 0; i < 20; i++)
        json_array_append(few, json_array_get(subs, i));
    read_contacts(e, 0, few, V2020, errs2020, NULL);
    int ok2020 = 0;
    for (size_t i = 0; i < 20; i++)
        ok2020 += errs2020[i] == 0;
    CHECK(ok2020 > 0, "contacts 2020: %d of 20 read", ok2020);
    json_decref(few);
    free(errs2020);
}

/* Reads n subscriptions' contacts and keeps each item list (compact JSON,
 * heap) and its page count. */
static void read_items(struct env *e, json_t *subs, size_t n,
                       const char *version, char **dumps, size_t *pages)
{
    struct outcome *o = cg_calloc(n, sizeof(*o));
    for (size_t i = 0; i < n; i++) {
        const char *id = cg_json_str(json_array_get(subs, i), "subscriptionId");
        char path[256];
        snprintf(path, sizeof(path),
                 "/subscriptions/%s/providers/Microsoft.Security/"
                 "securityContacts?api-version=%s",
                 id, version);
        struct cg_arm_request req = { .method = CG_HTTP_GET,
                                      .tenant = e->tenant[0],
                                      .subscription = id,
                                      .path = path };
        cg_arm_list(e->arm, &req, on_arm, &o[i]);
    }
    for (size_t i = 0; i < n; i++) {
        run_until(e, &o[i].calls, 1);
        dumps[i] = o[i].items ? json_dumps(o[i].items, JSON_COMPACT)
                              : cg_asprintf("error %s", cg_err_name(o[i].err));
        pages[i] = o[i].pages;
        json_decref(o[i].items);
    }
    free(o);
}

/* ARM pages LIST answers when it likes: a contact list split one per page
 * (with a trailing empty page) must merge into the same items. */
static void test_contacts_paged(struct env *e, json_t *subs)
{
    enum { N = 30 };
    static const char *const versions[] = { "2017-08-01-preview", V2023 };
    for (size_t v = 0; v < 2; v++) {
        char *plain[N], *paged[N];
        size_t p1[N], p2[N];
        read_items(e, subs, N, versions[v], plain, p1);
        json_decref(control(e, CG_HTTP_PUT, "/_fake/config",
                            "{\"contacts_page_size\":1}"));
        read_items(e, subs, N, versions[v], paged, p2);
        json_decref(control(e, CG_HTTP_PUT, "/_fake/config",
                            "{\"contacts_page_size\":0}"));
        int differ = 0, multi = 0;
        for (size_t i = 0; i < N; i++) {
            differ += strcmp(plain[i], paged[i]) != 0;
            multi += p2[i] > 1;
            free(plain[i]);
            free(paged[i]);
        }
        CHECK(differ == 0 && multi > 0,
              "contacts %s paged by one: %d lists differ, %d had several pages",
              versions[v], differ, multi);
    }
}

static void test_429_storm(struct env *e, json_t *subs, const int *baseline)
{
    json_t *before = control(e, CG_HTTP_GET, "/_fake/stats", NULL);
    json_decref(control(e, CG_HTTP_PUT, "/_fake/faults",
                        "{\"p429\":0.3,\"retry_after\":1}"));
    struct cg_arm_stats s0, s1;
    cg_arm_stats(e->arm, &s0);
    size_t n = json_array_size(subs);
    int *errs = cg_calloc(n, sizeof(int));
    int attempts = 0;
    read_contacts(e, 0, subs, V2023, errs, &attempts);
    int differ = 0;
    for (size_t i = 0; i < n; i++)
        differ += errs[i] != baseline[i];
    CHECK(differ == 0, "429 storm: %d subscriptions ended differently", differ);
    json_t *after = control(e, CG_HTTP_GET, "/_fake/stats", NULL);
    long long answered429 =
        stats_status(after, "429") - stats_status(before, "429");
    long long early = stats_int(after, "early_retries_total");
    cg_arm_stats(e->arm, &s1);
    CHECK(answered429 > 20, "429 storm: the fake answered %lld 429s",
          answered429);
    CHECK(early == 0, "429 storm: %lld requests came before Retry-After",
          early);
    CHECK(s1.throttled - s0.throttled == (uint64_t)answered429 &&
              s1.retry_after_waits - s0.retry_after_waits ==
                  (uint64_t)answered429,
          "429 storm: client counted %llu throttled, %llu waits; fake %lld",
          (unsigned long long)(s1.throttled - s0.throttled),
          (unsigned long long)(s1.retry_after_waits - s0.retry_after_waits),
          answered429);
    json_decref(control(e, CG_HTTP_PUT, "/_fake/faults", "{\"p429\":0}"));
    json_decref(before);
    json_decref(after);
    free(errs);
}

/* 5xx answers, dropped connections, trickled and truncated bodies: every
 * read still ends as it did without faults, through retries. */
static void test_fault_storm(struct env *e, json_t *subs, const int *baseline)
{
    json_decref(control(e, CG_HTTP_PUT, "/_fake/faults",
                        "{\"p500\":0.1,\"p503\":0.1,\"pdrop\":0.05,"
                        "\"pslow\":0.05,\"pmalformed\":0.01}"));
    struct cg_arm_stats s0, s1;
    cg_arm_stats(e->arm, &s0);
    size_t n = json_array_size(subs);
    int *errs = cg_calloc(n, sizeof(int));
    int attempts = 0;
    read_contacts(e, 0, subs, V2023, errs, &attempts);
    cg_arm_stats(e->arm, &s1);
    /* A LIST page cut short three times running is final (CG_EPARSE); at
     * 1% per answer that is one run in a few thousand. */
    int differ = 0;
    for (size_t i = 0; i < n; i++) {
        differ += errs[i] != baseline[i];
        if (errs[i] != baseline[i])
            fprintf(stderr, "fault storm: sub %zu ended %s, before %s\n", i,
                    cg_err_name(errs[i]), cg_err_name(baseline[i]));
    }
    CHECK(differ == 0, "fault storm: %d subscriptions ended differently",
          differ);
    /* Dropped connections seldom surface: libcurl itself retries a
     * reused connection that dies before answering. */
    CHECK(s1.retries - s0.retries > 30 && s1.status_5xx - s0.status_5xx > 20,
          "fault storm: %llu retries, %llu 5xx, %llu transport errors",
          (unsigned long long)(s1.retries - s0.retries),
          (unsigned long long)(s1.status_5xx - s0.status_5xx),
          (unsigned long long)(s1.transport_errors - s0.transport_errors));
    json_decref(control(e, CG_HTTP_PUT, "/_fake/faults",
                        "{\"p500\":0,\"p503\":0,\"pdrop\":0,\"pslow\":0,"
                        "\"pmalformed\":0}"));
    free(errs);
}

/* Reads one subscription n times at once through arm; returns the
 * number that failed and the fake's stats afterwards. */
static int read_same(struct env *e, struct cg_arm *arm, const char *sub, int n,
                     json_t **stats)
{
    struct outcome *o = cg_calloc((size_t)n, sizeof(*o));
    char path[256];
    snprintf(path, sizeof(path),
             "/subscriptions/%s/providers/Microsoft.Security/"
             "securityContacts?api-version=" V2023,
             sub);
    struct cg_arm_request req = { .method = CG_HTTP_GET,
                                  .tenant = e->tenant[0],
                                  .subscription = sub,
                                  .path = path };
    for (int i = 0; i < n; i++)
        cg_arm_list(arm, &req, on_arm, &o[i]);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        run_until(e, &o[i].calls, 1);
        failed += o[i].calls != 1 || o[i].err != 0;
        json_decref(o[i].items);
    }
    free(o);
    *stats = control(e, CG_HTTP_GET, "/_fake/stats", NULL);
    return failed;
}

/* ARM's bucket (the fake's) is 8 refilling 8/s for this test. */
#define FAKE_BUCKET "{\"read_cap\":8,\"read_refill\":8}"
#define SAME_READS  40

/* A client configured with ARM's real limits never meets a 429: it
 * paces itself. */
static void test_client_paces(struct env *e, const char *sub)
{
    char err[512];
    struct cg_conf *conf = cg_conf_new();
    char *path = cg_asprintf("%s/conf.json", e->dir);
    int rc = cg_conf_load_file(conf, path, err, sizeof(err));
    free(path);
    rc = rc ? rc
            : cg_conf_set(conf, "worker.read_bucket", "8", err, sizeof(err));
    rc = rc ? rc
            : cg_conf_set(conf, "worker.read_refill", "8", err, sizeof(err));
    rc = rc ? rc : cg_conf_finish(conf, err, sizeof(err));
    CHECK(rc == 0, "paced conf: %s", err);
    struct cg_auth *auth =
        cg_auth_new(e->loop, e->http, conf, err, sizeof(err));
    struct cg_arm *arm =
        cg_arm_new(e->loop, e->http, auth, conf, err, sizeof(err));
    json_decref(control(e, CG_HTTP_PUT, "/_fake/faults", FAKE_BUCKET));
    json_t *before = control(e, CG_HTTP_GET, "/_fake/stats", NULL);
    int64_t t0 = cg_loop_now_ms();
    json_t *after;
    int failed = read_same(e, arm, sub, SAME_READS, &after);
    int64_t dt = cg_loop_now_ms() - t0;
    long long n429 = stats_status(after, "429") - stats_status(before, "429");
    CHECK(failed == 0 && n429 == 0,
          "paced client: %d failed, %lld throttled by the fake", failed, n429);
    /* 8 at once, the other 32 at 8/s. */
    CHECK(dt >= (SAME_READS - 8) * 1000 / 8 - 100,
          "paced client: %d reads took %lld ms, want about %d", SAME_READS,
          (long long)dt, (SAME_READS - 8) * 1000 / 8);
    struct cg_arm_stats st;
    cg_arm_stats(arm, &st);
    CHECK(st.self_throttled >= SAME_READS - 8,
          "paced client: %llu waited for the client bucket",
          (unsigned long long)st.self_throttled);
    json_decref(before);
    json_decref(after);
    cg_arm_free(arm);
    cg_auth_free(auth);
    cg_conf_free(conf);
    json_decref(control(e, CG_HTTP_PUT, "/_fake/faults",
                        "{\"read_cap\":250,\"read_refill\":25}"));
}

/* A client that believes ARM allows more than it does: the first burst
 * meets 429s (those sent before the first 429 are counted early by the
 * fake, and cannot be helped), but after that one probe goes first, the
 * remaining-reads header sets the pace, and nothing else comes early. */
static void test_client_adapts(struct env *e, const char *sub)
{
    /* Let the paced test's block and bucket on this subscription pass. */
    int64_t until = cg_loop_now_ms() + 1500;
    while (cg_loop_now_ms() < until)
        cg_loop_run_once(e->loop, 100);
    json_decref(control(e, CG_HTTP_PUT, "/_fake/faults", FAKE_BUCKET));
    json_t *before = control(e, CG_HTTP_GET, "/_fake/stats", NULL);
    json_t *after;
    int failed = read_same(e, e->arm, sub, SAME_READS, &after);
    long long early = stats_int(after, "early_retries_total") -
                      stats_int(before, "early_retries_total");
    long long n429 = stats_status(after, "429") - stats_status(before, "429");
    CHECK(failed == 0, "adapting client: %d of %d reads failed", failed,
          SAME_READS);
    CHECK(n429 > 0 && early <= SAME_READS - 8,
          "adapting client: %lld throttled, %lld early (at most the first "
          "burst, %d)",
          n429, early, SAME_READS - 8);
    json_decref(before);
    json_decref(after);
    json_decref(control(e, CG_HTTP_PUT, "/_fake/faults",
                        "{\"read_cap\":250,\"read_refill\":25}"));
}

static void test_arm_bucket(struct env *e, json_t *subs, const int *baseline)
{
    size_t k = 0;
    while (k < json_array_size(subs) && baseline[k] != 0)
        k++;
    const char *sub = cg_json_str(json_array_get(subs, k), "subscriptionId");
    test_client_paces(e, sub);
    test_client_adapts(e, sub);
}

/* The fake forgets every token: the next call meets a 401, gets a new
 * token and succeeds. */
static void test_401(struct env *e, json_t *subs, const int *baseline)
{
    json_decref(control(e, CG_HTTP_POST, "/_fake/reset", NULL));
    struct cg_arm_stats s0, s1;
    cg_arm_stats(e->arm, &s0);
    size_t k = 0;
    while (k < json_array_size(subs) && baseline[k] != 0)
        k++;
    json_t *one = json_array();
    json_array_append(one, json_array_get(subs, k));
    int err = -1, attempts = 0;
    read_contacts(e, 0, one, V2023, &err, &attempts);
    cg_arm_stats(e->arm, &s1);
    CHECK(err == 0 && attempts == 2 && s1.reauths - s0.reauths == 1 &&
              s1.token_requests - s0.token_requests == 1,
          "401: err %s, %d attempts, %llu reauths, %llu token requests",
          cg_err_name(err), attempts,
          (unsigned long long)(s1.reauths - s0.reauths),
          (unsigned long long)(s1.token_requests - s0.token_requests));
    json_decref(one);
}

/* A multi-tenant app (one client id and certificate, consented in every
 * tenant; the global azure.* credentials): still one token per tenant,
 * each listing only its own tenant's subscriptions. */
static void test_multi_tenant_app(void)
{
    char dir[] = "/tmp/cg-it-azclient-mt-XXXXXX", err[512];
    REQUIRE(mkdtemp(dir) != NULL, "mkdtemp %s", dir);
    char *creds = cg_asprintf("%s/creds.json", dir);
    const char *const argv[] = { CG_BIN_CONTACTGUARD_FAKEAZURE,
                                 "--tls-self-signed",
                                 dir,
                                 "--tenants",
                                 "3",
                                 "--subscriptions-per-tenant",
                                 "20",
                                 "--multi-tenant-app",
                                 "--credentials-auth",
                                 "certificate",
                                 "--credentials",
                                 creds,
                                 "--log-level",
                                 "error",
                                 NULL };
    struct cg_harness_proc_opts po = { .name = "fakeazure-mt",
                                       .line_timeout_ms = 30000 };
    struct cg_harness_proc *fake =
        cg_harness_proc_start(argv, &po, err, sizeof(err));
    CHECK(fake != NULL, "multi-tenant fake started: %s", err);
    struct cg_conf *conf = cg_conf_new();
    int rc = fake ? cg_conf_load_file(conf, creds, err, sizeof(err)) : -1;
    if (rc == 0)
        rc = cg_conf_finish(conf, err, sizeof(err));
    CHECK(rc == 0 && cg_conf_tenant_count(conf) == 3, "multi-tenant conf: %s",
          err);
    struct cg_loop *loop = cg_loop_new(err, sizeof(err));
    struct cg_http_opts ho;
    cg_http_opts_from_conf(conf, &ho);
    struct cg_http *http = cg_http_new(loop, &ho, err, sizeof(err));
    struct cg_auth *auth = cg_auth_new(loop, http, conf, err, sizeof(err));
    struct cg_arm *arm = cg_arm_new(loop, http, auth, conf, err, sizeof(err));
    struct outcome o[3];
    memset(o, 0, sizeof(o));
    size_t n = rc == 0 ? cg_conf_tenant_count(conf) : 0;
    for (size_t i = 0; i < n; i++) {
        struct cg_arm_request req = {
            .method = CG_HTTP_GET,
            .tenant = cg_conf_tenant(conf, i)->id,
            .path = "/subscriptions?api-version=2022-12-01",
        };
        cg_arm_list(arm, &req, on_arm, &o[i]);
    }
    int64_t deadline = cg_loop_now_ms() + 60000;
    for (size_t i = 0; i < n; i++)
        while (o[i].calls < 1 && cg_loop_now_ms() < deadline)
            cg_loop_run_once(loop, 100);
    const char *principal =
        n ? cg_auth_principal(auth, cg_conf_tenant(conf, 0)->id) : NULL;
    for (size_t i = 0; i < n; i++) {
        const char *tid = cg_conf_tenant(conf, i)->id;
        int foreign = 0;
        size_t k;
        json_t *sub;
        json_array_foreach(o[i].items, k, sub)
        {
            const char *st = cg_json_str(sub, "tenantId");
            foreign += !st || strcasecmp(st, tid) != 0;
        }
        CHECK(o[i].err == 0 && json_array_size(o[i].items) == 20 &&
                  foreign == 0,
              "multi-tenant app, tenant %zu: %s, %zu subscriptions, %d "
              "foreign (%s)",
              i, cg_err_name(o[i].err), json_array_size(o[i].items), foreign,
              o[i].why);
        const char *p = cg_auth_principal(auth, tid);
        CHECK(principal && p && strcmp(p, principal) == 0,
              "multi-tenant app: one principal for every tenant");
        json_decref(o[i].items);
    }
    struct cg_arm_stats st;
    if (arm) {
        cg_arm_stats(arm, &st);
        CHECK(st.token_requests == n && n == 3,
              "multi-tenant app: %llu token requests for %zu tenants",
              (unsigned long long)st.token_requests, n);
    }
    cg_arm_free(arm);
    cg_auth_free(auth);
    cg_http_free(http);
    cg_loop_free(loop);
    cg_conf_free(conf);
    cg_harness_proc_free(fake);
    char *cmd = cg_asprintf("rm -rf '%s'", dir);
    (void)!system(cmd);
    free(cmd);
    free(creds);
}

int main(void)
{
    cg_log_setup(CG_LOG_ERROR, CG_LOG_TEXT, "it_azclient");
    struct env e;
    if (env_open(&e) == 0) {
        test_tls_verified(&e);
        test_tokens(&e);
        json_t *subs = test_list_subscriptions(&e);
        if (json_array_size(subs) == SUBS) {
            int *baseline = cg_calloc(SUBS, sizeof(int));
            test_contacts(&e, subs, baseline);
            test_contacts_paged(&e, subs);
            test_429_storm(&e, subs, baseline);
            test_fault_storm(&e, subs, baseline);
            test_arm_bucket(&e, subs, baseline);
            test_401(&e, subs, baseline);
            free(baseline);
        }
        json_decref(subs);
    }
    env_close(&e);
    test_multi_tenant_app();
    return check_done("it_azclient");
}
