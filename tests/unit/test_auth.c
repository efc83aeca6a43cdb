/* Unit tests of auth: the certificate assertion (signed with a key and a
 * self-signed certificate made here, verified here with OpenSSL), and the
 * token cache against the scripted token endpoint: one request per tenant,
 * background refresh, invalidate, Entra's errors, and no secret in any
 * error text. */
#include "../check.h"
#include "auth.h"
#include "conf.h"
#include "err.h"
#include "http.h"
#include "json.h"
#include "loop.h"
#include "mem.h"
#include "testsrv.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLIENT_ID "0a1b2c3d-aaaa-bbbb-cccc-000000000001"
#define SECRET    "s3cr3t-Value~with+odd&chars"
#define FED_TOKEN "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2ln"

static char dir[64];

static char *path_in(const char *name)
{
    return cg_asprintf("%s/%s", dir, name);
}

static void write_file(const char *name, const char *text)
{
    char *p = path_in(name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    free(p);
}

static EVP_PKEY *make_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
}

static X509 *make_cert(EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               (const unsigned char *)"contactguard-test", -1,
                               -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, key);
    X509_sign(x, key, EVP_sha256());
    return x;
}

static void write_pem(const char *name, EVP_PKEY *key, X509 *cert)
{
    char *p = path_in(name);
    FILE *f = fopen(p, "w");
    if (cert)
        PEM_write_X509(f, cert);
    if (key)
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    free(p);
}

/* base64url decode into a heap buffer (*n bytes). */
static unsigned char *b64url_decode(const char *s, size_t len, size_t *n)
{
    size_t padded = (len + 3) / 4 * 4;
    char *t = cg_malloc(padded + 1);
    for (size_t i = 0; i < padded; i++) {
        char ch = i < len ? s[i] : '=';
        t[i] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
    }
    t[padded] = '\0';
    unsigned char *out = cg_malloc(padded);
    int r = EVP_DecodeBlock(out, (unsigned char *)t, (int)padded);
    free(t);
    size_t pad = padded - len;
    *n = r < 0 ? 0 : (size_t)r - pad;
    return out;
}

static json_t *b64url_json(const char *s, size_t len)
{
    size_t n;
    unsigned char *raw = b64url_decode(s, len, &n);
    json_t *j = json_loadb((const char *)raw, n, 0, NULL);
    free(raw);
    return j;
}

/* 1 when the JWS signature verifies with cert's key under alg. */
static int jws_verify(const char *jwt, X509 *cert, bool pss)
{
    const char *dot2 = strrchr(jwt, '.');
    size_t siglen;
    unsigned char *sig = b64url_decode(dot2 + 1, strlen(dot2 + 1), &siglen);
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pub) == 1;
    if (ok && pss)
        ok =
            EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt,
                                (size_t)(dot2 - jwt)) == 1;
    EVP_MD_CTX_free(md);
    free(sig);
    return ok;
}

static char *thumbprint(X509 *cert, bool sha1)
{
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    unsigned char md[32];
    if (sha1)
        SHA1(der, (size_t)n, md);
    else
        SHA256(der, (size_t)n, md);
    OPENSSL_free(der);
    return cg_auth_b64url(md, sha1 ? 20 : 32);
}

static X509 *cert_main;

static void test_b64url(void)
{
    static const struct {
        const char *in, *out;
    } rows[] = {
        { "", "" },        { "f", "Zg" },        { "fo", "Zm8" },
        { "foo", "Zm9v" }, { "foob", "Zm9vYg" }, { "\xfb\xff", "-_8" },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *s = cg_auth_b64url((const unsigned char *)rows[i].in,
                                 strlen(rows[i].in));
        CHECK(strcmp(s, rows[i].out) == 0, "b64url row %zu: %s, want %s", i, s,
              rows[i].out);
        free(s);
    }
}

static void test_assertion(void)
{
    static const struct {
        const char *name, *alg, *cert, *key;
        int rc;
        const char *why_has;
    } rows[] = {
        { "PS256 by default", NULL, "cert.pem", "key.pem", 0, NULL },
        { "PS256 explicit", "PS256", "cert.pem", "key.pem", 0, NULL },
        { "RS256 option", "RS256", "cert.pem", "key.pem", 0, NULL },
        { "combined PEM, no key file", "PS256", "both.pem", NULL, 0, NULL },
        { "key does not match", "PS256", "cert.pem", "other.pem", CG_ECONF,
          "does not match" },
        { "missing certificate", "PS256", "nope.pem", "key.pem", CG_ECONF,
          "nope.pem" },
        { "key file is a certificate only", "PS256", "cert.pem", "cert.pem",
          CG_ECONF, "private key" },
    };
    const char *aud = "https://login.example/tenant/oauth2/v2.0/token";
    char *jti_prev = NULL;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *cf = path_in(rows[i].cert);
        char *kf = rows[i].key ? path_in(rows[i].key) : NULL;
        struct cg_credentials cred = {
            .method = CG_AUTH_CERTIFICATE,
            .client_id = (char *)CLIENT_ID,
            .certificate_file = cf,
            .private_key_file = kf,
            .assertion_alg = (char *)rows[i].alg,
        };
        char err[512] = "", *jwt = NULL;
        time_t now = 1700000000;
        int rc = cg_auth_assertion(&cred, aud, now, &jwt, err, sizeof(err));
        CHECK(rc == rows[i].rc, "%s: rc %s, want %s (%s)", rows[i].name,
              cg_err_name(rc), cg_err_name(rows[i].rc), err);
        if (rows[i].why_has)
            CHECK(strstr(err, rows[i].why_has) != NULL,
                  "%s: errbuf \"%s\" lacks \"%s\"", rows[i].name, err,
                  rows[i].why_has);
        if (rc == 0 && rows[i].rc == 0) {
            bool rs = rows[i].alg && strcmp(rows[i].alg, "RS256") == 0;
            const char *d1 = strchr(jwt, '.');
            const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
            CHECK(d1 && d2 && !strchr(d2 + 1, '.'), "%s: three parts",
                  rows[i].name);
            if (!d1 || !d2) {
                free(jwt);
                free(cf);
                free(kf);
                continue;
            }
            json_t *h = b64url_json(jwt, (size_t)(d1 - jwt));
            json_t *c = b64url_json(d1 + 1, (size_t)(d2 - d1 - 1));
            char *want_thumb = thumbprint(cert_main, rs);
            CHECK(h && strcmp(cg_json_str(h, "alg"), rs ? "RS256" : "PS256") ==
                           0,
                  "%s: alg", rows[i].name);
            CHECK(cg_json_str(h, "typ") &&
                      strcmp(cg_json_str(h, "typ"), "JWT") == 0,
                  "%s: typ", rows[i].name);
            const char *x5t =
                json_string_value(json_object_get(h, rs ? "x5t" : "x5t#S256"));
            CHECK(x5t && strcmp(x5t, want_thumb) == 0,
                  "%s: thumbprint %s, want %s", rows[i].name,
                  x5t ? x5t : "(none)", want_thumb);
            CHECK(!json_object_get(h, rs ? "x5t#S256" : "x5t"),
                  "%s: only one thumbprint header", rows[i].name);
            CHECK(strcmp(cg_json_str(c, "aud"), aud) == 0 &&
                      strcmp(cg_json_str(c, "iss"), CLIENT_ID) == 0 &&
                      strcmp(cg_json_str(c, "sub"), CLIENT_ID) == 0,
                  "%s: aud/iss/sub", rows[i].name);
            json_int_t nbf = json_integer_value(json_object_get(c, "nbf"));
            json_int_t exp = json_integer_value(json_object_get(c, "exp"));
            CHECK(nbf == now && exp == now + 600, "%s: nbf %lld exp %lld",
                  rows[i].name, (long long)nbf, (long long)exp);
            const char *jti = cg_json_str(c, "jti");
            CHECK(jti && strlen(jti) == 36, "%s: jti %s", rows[i].name,
                  jti ? jti : "(none)");
            CHECK(!jti_prev || !jti || strcmp(jti_prev, jti) != 0,
                  "%s: jti repeats", rows[i].name);
            if (jti) {
                free(jti_prev);
                jti_prev = cg_strdup(jti);
            }
            CHECK(jws_verify(jwt, cert_main, !rs) == 1,
                  "%s: signature verifies", rows[i].name);
            CHECK(jws_verify(jwt, cert_main, rs) == 0,
                  "%s: signature does not verify under the other padding",
                  rows[i].name);
            /* Tampering with the claims breaks the signature. */
            char *bad = cg_strdup(jwt);
            bad[(d1 - jwt) + 5] ^= 1;
            CHECK(jws_verify(bad, cert_main, !rs) == 0, "%s: tamper detected",
                  rows[i].name);
            free(bad);
            free(want_thumb);
            json_decref(h);
            json_decref(c);
        }
        free(jwt);
        free(cf);
        free(kf);
    }
    free(jti_prev);
}

/* ---- the token endpoint ---- */

struct endpoint {
    int requests;
    int assertion_ok, assertion_bad, secret_ok, federated_ok;
    int expires_in;
    int issued;
    char base[64];
};

static char *form_get(const char *body, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = body; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            char *out = cg_malloc(len);
            size_t o = 0;
            for (size_t i = kl + 1; i < len; i++) {
                if (p[i] == '%' && i + 2 < len) {
                    char hex[3] = { p[i + 1], p[i + 2], 0 };
                    out[o++] = (char)strtol(hex, NULL, 16);
                    i += 2;
                } else {
                    out[o++] = p[i] == '+' ? ' ' : p[i];
                }
            }
            out[o] = '\0';
            return out;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

static void token_handler(const struct cg_testsrv_request *req,
                          struct cg_testsrv_response *res, void *arg)
{
    struct endpoint *ep = arg;
    ep->requests++;
    char tenant[128] = "";
    sscanf(req->path, "/%127[^/]/oauth2/v2.0/token", tenant);
    char *cid = form_get(req->body, "client_id");
    char *scope = form_get(req->body, "scope");
    char *grant = form_get(req->body, "grant_type");
    char *secret = form_get(req->body, "client_secret");
    char *assertion = form_get(req->body, "client_assertion");
    char *atype = form_get(req->body, "client_assertion_type");
    bool ok = cid && strcmp(cid, CLIENT_ID) == 0 && scope &&
              strcmp(scope, "https://arm.example/.default") == 0 && grant &&
              strcmp(grant, "client_credentials") == 0;
    if (strcmp(tenant, "down") == 0) {
        res->status = 503;
        res->body = cg_strdup("{\"error\":\"temporarily_unavailable\"}");
    } else if (secret) {
        ok = ok && strcmp(secret, SECRET) == 0;
        ep->secret_ok += ok;
    } else if (assertion && atype &&
               strcmp(atype, "urn:ietf:params:oauth:client-assertion-type:"
                             "jwt-bearer") == 0) {
        if (strcmp(assertion, FED_TOKEN) == 0) {
            ep->federated_ok++;
        } else {
            bool v = jws_verify(assertion, cert_main, true) == 1;
            const char *d1 = strchr(assertion, '.');
            const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
            json_t *c = d2 ? b64url_json(d1 + 1, (size_t)(d2 - d1 - 1)) : NULL;
            char *aud =
                cg_asprintf("%s/%s/oauth2/v2.0/token", ep->base, tenant);
            v = v && c && cg_json_str(c, "aud") &&
                strcmp(cg_json_str(c, "aud"), aud) == 0;
            free(aud);
            json_decref(c);
            ep->assertion_ok += v;
            ep->assertion_bad += !v;
            ok = ok && v;
        }
    } else {
        ok = false;
    }
    if (!res->body && !ok) {
        res->status = 401;
        res->body = cg_strdup(
            "{\"error\":\"invalid_client\",\"error_description\":"
            "\"AADSTS7000215: Invalid client secret provided. Ensure the "
            "secret being sent in the request is the client secret value."
            "\\r\\nTrace ID: 0000\\r\\nCorrelation ID: 1111\","
            "\"error_codes\":[7000215]}");
    } else if (!res->body) {
        ep->issued++;
        res->body = cg_asprintf("{\"token_type\":\"Bearer\",\"expires_in\":%d,"
                                "\"access_token\":\"tok-%s-%d\"}",
                                ep->expires_in, tenant, ep->issued);
    }
    free(cid);
    free(scope);
    free(grant);
    free(secret);
    free(assertion);
    free(atype);
}

struct got {
    int calls, err;
    char token[128];
    char why[512];
};

static void on_token(const struct cg_auth_result *res, void *arg)
{
    struct got *g = arg;
    g->calls++;
    g->err = res->err;
    cg_strlcpy(g->token, res->token ? res->token : "", sizeof(g->token));
    cg_strlcpy(g->why, res->why, sizeof(g->why));
}

static void run_until(struct cg_loop *loop, const int *calls, int want)
{
    for (int i = 0; i < 3000 && *calls < want; i++)
        cg_loop_run_once(loop, 50);
}

static void test_tokens(struct cg_loop *loop)
{
    struct endpoint ep = { .expires_in = 3599 };
    struct cg_testsrv *srv = cg_testsrv_new(loop, token_handler, &ep);
    snprintf(ep.base, sizeof(ep.base), "http://127.0.0.1:%d",
             cg_testsrv_port(srv));
    setenv("CG_TEST_SECRET", SECRET, 1);
    setenv("CG_TEST_BAD_SECRET", "wrong-secret-value", 1);
    write_file("fed.token", FED_TOKEN "\n");
    char *conf_json = cg_asprintf(
        "{\"azure\":{\"authority_host\":\"%s/\","
        "\"resource_manager\":\"https://arm.example/\"},\n"
        "\"tenants\":[\n"
        "{\"id\":\"secret-tenant\",\"client_id\":\"" CLIENT_ID "\","
        "\"client_secret_env\":\"CG_TEST_SECRET\"},\n"
        "{\"id\":\"cert-tenant\",\"client_id\":\"" CLIENT_ID "\","
        "\"certificate_file\":\"%s/cert.pem\","
        "\"private_key_file\":\"%s/key.pem\"},\n"
        "{\"id\":\"fed-tenant\",\"client_id\":\"" CLIENT_ID "\","
        "\"auth\":\"federated\",\"federated_token_file\":\"%s/fed.token\"},\n"
        "{\"id\":\"bad-tenant\",\"client_id\":\"" CLIENT_ID "\","
        "\"client_secret_env\":\"CG_TEST_BAD_SECRET\"},\n"
        "{\"id\":\"down\",\"client_id\":\"" CLIENT_ID "\","
        "\"client_secret_env\":\"CG_TEST_SECRET\"}]}",
        ep.base, dir, dir, dir);
    write_file("conf.json", conf_json);
    free(conf_json);
    char err[512];
    char *cpath = path_in("conf.json");
    struct cg_conf *conf = cg_conf_new();
    int rc = cg_conf_load_file(conf, cpath, err, sizeof(err));
    if (rc == 0)
        rc = cg_conf_finish(conf, err, sizeof(err));
    free(cpath);
    CHECK(rc == 0, "conf: %s", err);
    struct cg_http_opts hopts = { .max_in_flight = 16,
                                  .timeout_ms = 5000,
                                  .max_body = 65536 };
    struct cg_http *http = cg_http_new(loop, &hopts, err, sizeof(err));
    struct cg_auth *auth = cg_auth_new(loop, http, conf, err, sizeof(err));
    CHECK(auth != NULL, "auth_new: %s", err);

    static const struct {
        const char *name, *tenant;
        int waiters;
        int err;
        const char *why_has;
        int requests; /* token POSTs this row costs */
    } rows[] = {
        { "client secret, 50 waiters share one request", "secret-tenant", 50, 0,
          NULL, 1 },
        { "cached: no new request", "SECRET-tenant", 3, 0, NULL, 0 },
        { "certificate assertion", "cert-tenant", 5, 0, NULL, 1 },
        { "federated token file", "fed-tenant", 2, 0, NULL, 1 },
        { "Entra refuses: AADSTS code and status", "bad-tenant", 4, CG_EAUTH,
          "HTTP 401, invalid_client, AADSTS7000215): Invalid client secret",
          1 },
        { "refusal is cached for a while", "bad-tenant", 1, CG_EAUTH,
          "AADSTS7000215", 0 },
        { "token endpoint down is retryable", "down", 1, CG_EUNAVAIL,
          "HTTP 503", 1 },
        { "no credentials", "unknown-tenant", 2, CG_ENOCRED, "no credentials",
          0 },
        { "tenant id with a slash", "evil/../x", 1, CG_EINVAL, "not a GUID",
          0 },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct got g[64];
        memset(g, 0, sizeof(g));
        int before = ep.requests;
        for (int w = 0; w < rows[i].waiters; w++)
            cg_auth_get(auth, rows[i].tenant, on_token, &g[w]);
        CHECK(g[0].calls == 0, "%s: no callback inside cg_auth_get",
              rows[i].name);
        run_until(loop, &g[rows[i].waiters - 1].calls, 1);
        for (int w = 0; w < rows[i].waiters; w++) {
            CHECK(g[w].calls == 1, "%s: waiter %d called %d times",
                  rows[i].name, w, g[w].calls);
            CHECK(g[w].err == rows[i].err, "%s: waiter %d err %s, want %s (%s)",
                  rows[i].name, w, cg_err_name(g[w].err),
                  cg_err_name(rows[i].err), g[w].why);
            if (rows[i].err == 0)
                CHECK(strncmp(g[w].token, "tok-", 4) == 0, "%s: token %s",
                      rows[i].name, g[w].token);
            if (rows[i].why_has)
                CHECK(strstr(g[w].why, rows[i].why_has) != NULL,
                      "%s: why \"%s\" lacks \"%s\"", rows[i].name, g[w].why,
                      rows[i].why_has);
            CHECK(!strstr(g[w].why, SECRET) &&
                      !strstr(g[w].why, "wrong-secret-value") &&
                      !strchr(g[w].why, '\n') && !strchr(g[w].why, '\r'),
                  "%s: why leaks or spans lines: %s", rows[i].name, g[w].why);
        }
        CHECK(ep.requests - before == rows[i].requests,
              "%s: %d token requests, want %d", rows[i].name,
              ep.requests - before, rows[i].requests);
    }
    CHECK(ep.secret_ok >= 1 && ep.assertion_ok == 1 && ep.assertion_bad == 0 &&
              ep.federated_ok == 1,
          "endpoint verified secret %d, assertion %d (bad %d), federated %d",
          ep.secret_ok, ep.assertion_ok, ep.assertion_bad, ep.federated_ok);
    CHECK(strcmp(cg_auth_principal(auth, "cert-tenant"), CLIENT_ID) == 0 &&
              cg_auth_principal(auth, "unknown-tenant") == NULL,
          "principal lookup");

    /* invalidate: only the token that failed is dropped. */
    {
        const char *t = cg_auth_cached(auth, "secret-tenant");
        CHECK(t != NULL, "invalidate: cached token present");
        char *copy = cg_strdup(t ? t : "");
        cg_auth_invalidate(auth, "secret-tenant", "some-older-token");
        CHECK(cg_auth_cached(auth, "secret-tenant") != NULL,
              "invalidate: another token's 401 keeps the cache");
        cg_auth_invalidate(auth, "secret-tenant", copy);
        CHECK(cg_auth_cached(auth, "secret-tenant") == NULL,
              "invalidate: the failed token is gone");
        struct got g = { 0 };
        int before = ep.requests;
        cg_auth_get(auth, "secret-tenant", on_token, &g);
        run_until(loop, &g.calls, 1);
        CHECK(g.err == 0 && strcmp(g.token, copy) != 0 &&
                  ep.requests == before + 1,
              "invalidate: a new token was fetched (%s)", g.token);
        free(copy);
    }

    /* Background refresh: a 2 s token is refreshed in its last 10%
     * while callers keep getting the old one without waiting. */
    {
        ep.expires_in = 2;
        struct got g = { 0 };
        cg_auth_get(auth, "cert-tenant", on_token, &g); /* cached 3599 s */
        run_until(loop, &g.calls, 1);
        cg_auth_invalidate(auth, "cert-tenant", g.token);
        memset(&g, 0, sizeof(g));
        cg_auth_get(auth, "cert-tenant", on_token, &g);
        run_until(loop, &g.calls, 1);
        char first[128];
        cg_strlcpy(first, g.token, sizeof(first));
        int before = ep.requests;
        int64_t until = cg_loop_now_ms() + 1700;
        while (cg_loop_now_ms() < until)
            cg_loop_run_once(loop, 50);
        const char *t = cg_auth_cached(auth, "cert-tenant");
        CHECK(t && strcmp(t, first) == 0 && ep.requests == before,
              "refresh: before the window the old token is used");
        until = cg_loop_now_ms() + 200;
        while (cg_loop_now_ms() < until)
            cg_loop_run_once(loop, 20);
        t = cg_auth_cached(auth, "cert-tenant");
        CHECK(t != NULL, "refresh: a usable token inside the window");
        for (int i = 0; i < 50 && ep.requests == before; i++)
            cg_loop_run_once(loop, 20);
        for (int i = 0; i < 10; i++)
            cg_loop_run_once(loop, 10);
        t = cg_auth_cached(auth, "cert-tenant");
        CHECK(ep.requests == before + 1 && t && strcmp(t, first) != 0,
              "refresh: one background request replaced the token "
              "(%d requests)",
              ep.requests - before);
    }
    struct cg_auth_stats st;
    cg_auth_stats(auth, &st);
    CHECK(st.token_requests == (uint64_t)ep.requests,
          "stats: %llu token requests counted, server saw %d",
          (unsigned long long)st.token_requests, ep.requests);
    cg_auth_free(auth);
    cg_http_free(http);
    cg_conf_free(conf);
    cg_testsrv_free(srv);
}

int main(void)
{
    cg_strlcpy(dir, "/tmp/cg-test-auth-XXXXXX", sizeof(dir));
    if (!mkdtemp(dir))
        return 2;
    EVP_PKEY *key = make_key(), *other = make_key();
    cert_main = make_cert(key);
    write_pem("key.pem", key, NULL);
    write_pem("cert.pem", NULL, cert_main);
    write_pem("both.pem", key, cert_main);
    write_pem("other.pem", other, NULL);

    test_b64url();
    test_assertion();
    char err[256];
    struct cg_loop *loop = cg_loop_new(err, sizeof(err));
    test_tokens(loop);
    cg_loop_free(loop);

    X509_free(cert_main);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    static const char *const files[] = {
        "key.pem", "cert.pem", "both.pem", "other.pem", "fed.token", "conf.json"
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char *p = path_in(files[i]);
        unlink(p);
        free(p);
    }
    rmdir(dir);
    return check_done("test_auth");
}
