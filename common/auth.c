#include "auth.h"

#include "conf.h"
#include "err.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "map.h"
#include "mem.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AUTH_WHY_MAX  512
#define AUTH_BODY_MAX (64 * 1024) /* token replies are ~2-4 KiB */
#define AUTH_ASSERTION_TYPE                                                    \
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

struct cg_auth_wait {
    struct auth_tenant *t;
    struct cg_auth_wait *prev, *next;
    cg_auth_fn fn;
    void *arg;
};

struct auth_tenant {
    struct cg_auth *auth;
    char *id; /* lower case */
    const struct cg_credentials *cred;
    char *token;
    int64_t fetched_ms, refresh_ms, expires_ms;
    int64_t used_ms;         /* last asked about, for cg_auth_sweep */
    struct cg_http_req *req; /* the one request in flight */
    int64_t req_started_ms;
    /* The last failure, handed to waiters; a final one is also cached
     * until err_until_ms so a tenant with a revoked secret is not asked
     * again for every job. */
    int err;
    char why[AUTH_WHY_MAX];
    long retry_after_ms;
    int64_t err_until_ms;
    struct cg_auth_wait *whead, *wtail;
    size_t nwait;
    struct cg_loop_timer deliver;
};

struct cg_auth {
    struct cg_loop *loop;
    struct cg_http *http;
    const struct cg_conf *conf;
    char *authority; /* no trailing slash */
    char *scope;
    struct cg_map *tenants;
    struct cg_loop_timer sweep;
    struct cg_auth_stats stats;
};

/* ---- base64url and the client assertion ---- */

char *cg_auth_b64url(const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
                              "wxyz0123456789-_";
    char *out = cg_malloc((n + 2) / 3 * 4 + 1);
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (i + 1 == n) {
        unsigned v = (unsigned)p[i] << 16;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
    } else if (i + 2 == n) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

static char *b64url_str(const char *s)
{
    return cg_auth_b64url((const unsigned char *)s, strlen(s));
}

static int ssl_err(char *errbuf, size_t errsz, const char *what,
                   const char *file)
{
    char detail[256] = "unknown OpenSSL error";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    return cg_err_set(errbuf, errsz, CG_ECONF, "%s %s: %s", what, file, detail);
}

static int load_cert_key(const struct cg_credentials *cred, X509 **cert_out,
                         EVP_PKEY **key_out, char *errbuf, size_t errsz)
{
    const char *cf = cred->certificate_file;
    /* A single PEM holding both is common: the key defaults to it. */
    const char *kf = cred->private_key_file && *cred->private_key_file
                         ? cred->private_key_file
                         : cf;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    FILE *f = NULL;
    int rc;
    if (!cf || !*cf) {
        rc = cg_err_set(errbuf, errsz, CG_ECONF,
                        "certificate credentials need certificate_file");
        goto out;
    }
    if (!(f = fopen(cf, "r"))) {
        rc = cg_err_set(errbuf, errsz, CG_ECONF,
                        "cannot open certificate %s: %s", cf, strerror(errno));
        goto out;
    }
    cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    f = NULL;
    if (!cert) {
        rc = ssl_err(errbuf, errsz, "no PEM certificate in", cf);
        goto out;
    }
    if (!(f = fopen(kf, "r"))) {
        rc = cg_err_set(errbuf, errsz, CG_ECONF,
                        "cannot open private key %s: %s", kf, strerror(errno));
        goto out;
    }
    /* An empty passphrase callback: an encrypted key fails clearly rather
     * than prompting on a terminal. */
    key = PEM_read_PrivateKey(f, NULL, NULL, (void *)"");
    fclose(f);
    f = NULL;
    if (!key) {
        rc = ssl_err(errbuf, errsz, "no usable PEM private key in", kf);
        goto out;
    }
    if (EVP_PKEY_base_id(key) != EVP_PKEY_RSA) {
        rc = cg_err_set(errbuf, errsz, CG_ECONF,
                        "private key %s is not RSA (Entra ID certificate "
                        "credentials need RSA)",
                        kf);
        goto out;
    }
    if (X509_check_private_key(cert, key) != 1) {
        ERR_clear_error();
        rc = cg_err_set(errbuf, errsz, CG_ECONF,
                        "private key %s does not match certificate %s", kf, cf);
        goto out;
    }
    *cert_out = cert;
    *key_out = key;
    cert = NULL;
    key = NULL;
    rc = 0;
out:
    if (f)
        fclose(f);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

/* A version 4 UUID from the CSPRNG: jti must never repeat. */
static int random_uuid(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return CG_EIO;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%"
             "02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
    return 0;
}

int cg_auth_assertion(const struct cg_credentials *cred, const char *audience,
                      time_t now, char **out, char *errbuf, size_t errsz)
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    EVP_MD_CTX *md = NULL;
    json_t *hdr = NULL, *claims = NULL;
    char *hdr_s = NULL, *claims_s = NULL, *hdr_b = NULL, *claims_b = NULL;
    char *thumb_b = NULL, *sig_b = NULL;
    unsigned char *sig = NULL;
    struct cg_buf input;
    cg_buf_init(&input, 1024 * 1024);
    int rc;

    if (!cred->client_id || !*cred->client_id) {
        rc = cg_err_set(errbuf, errsz, CG_ECONF,
                        "certificate credentials need client_id");
        goto out;
    }
    bool rs256 =
        cred->assertion_alg && strcasecmp(cred->assertion_alg, "RS256") == 0;
    rc = load_cert_key(cred, &cert, &key, errbuf, errsz);
    if (rc)
        goto out;

    unsigned char thumb[EVP_MAX_MD_SIZE];
    unsigned int thumb_len = 0;
    if (X509_digest(cert, rs256 ? EVP_sha1() : EVP_sha256(), thumb,
                    &thumb_len) != 1) {
        rc = ssl_err(errbuf, errsz, "cannot hash certificate",
                     cred->certificate_file);
        goto out;
    }
    thumb_b = cg_auth_b64url(thumb, thumb_len);
    hdr = json_pack("{s:s, s:s, s:s}", "alg", rs256 ? "RS256" : "PS256", "typ",
                    "JWT", rs256 ? "x5t" : "x5t#S256", thumb_b);

    char jti[37];
    if (random_uuid(jti) != 0) {
        rc = cg_err_set(errbuf, errsz, CG_EIO, "no random bytes for jti");
        goto out;
    }
    claims = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "aud", audience,
                       "iss", cred->client_id, "sub", cred->client_id, "jti",
                       jti, "nbf", (json_int_t)now, "iat", (json_int_t)now,
                       "exp", (json_int_t)(now + CG_AUTH_ASSERTION_LIFE_S));
    if (!hdr || !claims) {
        rc = cg_err_set(errbuf, errsz, CG_EINVAL,
                        "cannot build the assertion (client id or audience "
                        "not UTF-8)");
        goto out;
    }
    hdr_s = json_dumps(hdr, JSON_COMPACT);
    claims_s = json_dumps(claims, JSON_COMPACT);
    hdr_b = b64url_str(hdr_s);
    claims_b = b64url_str(claims_s);
    cg_buf_printf(&input, "%s.%s", hdr_b, claims_b);

    EVP_PKEY_CTX *pctx = NULL;
    size_t siglen = 0;
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key) != 1 ||
        (!rs256 &&
         (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
          EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) !=
              1)) ||
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input.data,
                       input.len) != 1) {
        rc = ssl_err(errbuf, errsz, "cannot sign with key",
                     cred->private_key_file ? cred->private_key_file
                                            : cred->certificate_file);
        goto out;
    }
    sig = cg_malloc(siglen);
    if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input.data,
                       input.len) != 1) {
        rc = ssl_err(errbuf, errsz, "cannot sign with key",
                     cred->certificate_file);
        goto out;
    }
    sig_b = cg_auth_b64url(sig, siglen);
    cg_buf_printf(&input, ".%s", sig_b);
    *out = cg_buf_take(&input);
    rc = 0;
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    EVP_MD_CTX_free(md);
    json_decref(hdr);
    json_decref(claims);
    free(hdr_s);
    free(claims_s);
    free(hdr_b);
    free(claims_b);
    free(thumb_b);
    free(sig_b);
    free(sig);
    cg_buf_free(&input);
    return rc;
}

/* ---- lifecycle ---- */

static char *strip_slash(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        n--;
    return cg_strndup(s, n);
}

static void on_sweep(struct cg_loop *loop, void *arg);

struct cg_auth *cg_auth_new(struct cg_loop *loop, struct cg_http *http,
                            const struct cg_conf *conf, char *errbuf,
                            size_t errsz)
{
    const char *authority = cg_conf_str(conf, "azure.authority_host");
    const char *rm = cg_conf_str(conf, "azure.resource_manager");
    const char *scope = cg_conf_str(conf, "azure.scope");
    if (strncmp(authority, "https://", 8) != 0 &&
        strncmp(authority, "http://", 7) != 0) {
        cg_err_set(errbuf, errsz, CG_ECONF,
                   "azure.authority_host must be an http(s) URL");
        return NULL;
    }
    struct cg_auth *auth = cg_calloc(1, sizeof(*auth));
    auth->loop = loop;
    auth->http = http;
    auth->conf = conf;
    auth->authority = strip_slash(authority);
    if (*scope) {
        auth->scope = cg_strdup(scope);
    } else {
        char *base = strip_slash(rm);
        auth->scope = cg_asprintf("%s/.default", base);
        free(base);
    }
    auth->tenants = cg_map_new();
    cg_loop_timer_add(loop, &auth->sweep, CG_AUTH_SWEEP_MS, on_sweep, auth);
    return auth;
}

static void tenant_free(struct cg_auth *auth, struct auth_tenant *t)
{
    cg_http_cancel(auth->http, t->req);
    cg_loop_timer_cancel(auth->loop, &t->deliver);
    while (t->whead) {
        struct cg_auth_wait *w = t->whead;
        t->whead = w->next;
        free(w);
    }
    if (t->token) {
        OPENSSL_cleanse(t->token, strlen(t->token));
        free(t->token);
    }
    free(t->id);
    free(t);
}

static int tenant_free_cb(const char *key, void *value, void *arg)
{
    (void)key;
    tenant_free(arg, value);
    return 1;
}

struct sweep_ctx {
    struct cg_auth *auth;
    int64_t before; /* used before this: idle */
    size_t n;
};

static int tenant_idle_cb(const char *key, void *value, void *arg)
{
    struct auth_tenant *t = value;
    struct sweep_ctx *sc = arg;
    (void)key;
    if (t->req || t->whead || cg_loop_timer_active(&t->deliver) ||
        t->used_ms > sc->before)
        return 0;
    tenant_free(sc->auth, t);
    sc->n++;
    return 1;
}

size_t cg_auth_sweep(struct cg_auth *auth, int64_t now_ms, int64_t idle_ms)
{
    struct sweep_ctx sc = { auth, now_ms - idle_ms, 0 };
    cg_map_sweep(auth->tenants, tenant_idle_cb, &sc);
    auth->stats.forgotten += sc.n;
    if (sc.n)
        cg_debug("auth.forgotten", "tenants=%zu held=%zu", sc.n,
                 cg_map_count(auth->tenants));
    return sc.n;
}

static void on_sweep(struct cg_loop *loop, void *arg)
{
    struct cg_auth *auth = arg;
    cg_auth_sweep(auth, cg_loop_now_ms(), CG_AUTH_IDLE_MS);
    cg_loop_timer_add(loop, &auth->sweep, CG_AUTH_SWEEP_MS, on_sweep, auth);
}

void cg_auth_free(struct cg_auth *auth)
{
    if (!auth)
        return;
    cg_loop_timer_cancel(auth->loop, &auth->sweep);
    cg_map_sweep(auth->tenants, tenant_free_cb, auth);
    cg_map_free(auth->tenants);
    free(auth->authority);
    free(auth->scope);
    free(auth);
}

/* ---- tenants ---- */

/* A tenant id goes into a URL path: only GUIDs and domain names pass. */
static bool tenant_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > CG_AUTH_TENANT_MAX || id[0] == '.' || id[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && id[i] != '-' && id[i] != '.')
            return false;
    return strstr(id, "..") == NULL;
}

static const struct cg_credentials *tenant_cred(const struct cg_conf *conf,
                                                const char *id)
{
    const struct cg_tenant *ct = cg_conf_tenant_find(conf, id);
    const struct cg_credentials *c = cg_conf_tenant_credentials(conf, ct);
    if (!c || c->method == CG_AUTH_NONE || !c->client_id || !*c->client_id)
        return NULL;
    return c;
}

static struct auth_tenant *tenant_get(struct cg_auth *auth, const char *id)
{
    char key[CG_AUTH_TENANT_MAX + 1];
    size_t n = strlen(id);
    if (n > CG_AUTH_TENANT_MAX)
        n = CG_AUTH_TENANT_MAX;
    for (size_t i = 0; i < n; i++)
        key[i] = (char)tolower((unsigned char)id[i]);
    key[n] = '\0';
    struct auth_tenant *t = cg_map_get(auth->tenants, key);
    if (t) {
        t->used_ms = cg_loop_now_ms();
        return t;
    }
    t = cg_calloc(1, sizeof(*t));
    t->used_ms = cg_loop_now_ms();
    t->auth = auth;
    t->id = cg_strdup(key);
    t->cred = tenant_cred(auth->conf, key);
    t->retry_after_ms = -1;
    if (!tenant_id_ok(id)) {
        t->err =
            cg_err_set(t->why, sizeof(t->why), CG_EINVAL,
                       "tenant id \"%s\" is not a GUID or domain name", key);
        t->err_until_ms = INT64_MAX;
    } else if (!t->cred) {
        t->err = cg_err_set(t->why, sizeof(t->why), CG_ENOCRED,
                            "tenant %s has no credentials configured", key);
        t->err_until_ms = INT64_MAX;
    }
    cg_map_put(auth->tenants, key, t);
    return t;
}

const char *cg_auth_principal(struct cg_auth *auth, const char *tenant)
{
    /* The tenant entry caches the lookup: the configuration's is linear. */
    const struct auth_tenant *t = tenant_get(auth, tenant);
    return t->cred ? t->cred->client_id : NULL;
}

static bool token_usable(const struct auth_tenant *t, int64_t now)
{
    return t->token && now < t->expires_ms;
}

/* ---- the token request ---- */

static void form_add(struct cg_buf *b, const char *k, const char *v)
{
    if (b->len)
        cg_buf_append(b, "&", 1);
    cg_buf_puts(b, k);
    cg_buf_append(b, "=", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            cg_buf_append(b, p, 1);
        } else {
            char enc[4];
            snprintf(enc, sizeof(enc), "%%%02X", *p);
            cg_buf_append(b, enc, 3);
        }
    }
}

/* Reads the projected service account token; kubelet rewrites the file
 * before it expires, so it is read for every request. */
static int read_federated(const char *path, char **out, char *errbuf,
                          size_t errsz)
{
    struct cg_buf b;
    cg_buf_init(&b, CG_AUTH_FEDERATED_MAX);
    char why[256];
    int rc = 0;
    if (cg_buf_read_file(&b, path, why, sizeof(why)))
        rc = cg_err_set(errbuf, errsz, CG_ECONF, "federated token file: %s",
                        why);
    while (rc == 0 && b.len > 0 && isspace((unsigned char)b.data[b.len - 1]))
        b.data[--b.len] = '\0';
    if (rc == 0 && b.len == 0)
        rc = cg_err_set(errbuf, errsz, CG_ECONF,
                        "federated token file %s is empty", path);
    if (rc) {
        cg_buf_free(&b);
        return rc;
    }
    *out = cg_buf_take(&b);
    /* Bounded: the file changes about hourly, and the scrubber also masks
     * anything shaped like a JWT. */
    cg_log_secret(*out);
    return 0;
}

static void tenant_deliver(struct cg_loop *loop, void *arg);

static void tenant_fail(struct auth_tenant *t, int err, long retry_after_ms)
{
    t->err = err;
    t->retry_after_ms = retry_after_ms;
    t->err_until_ms =
        cg_err_retryable(err) ? 0 : cg_loop_now_ms() + CG_AUTH_NEGATIVE_TTL_MS;
    t->auth->stats.token_failures++;
    cg_log_scrub(t->why);
    cg_warn("token_failed", "tenant=%s err=%s reason=\"%s\"", t->id,
            cg_err_name(err), t->why);
}

/* Entra's error reply: {"error":"invalid_client","error_description":
 * "AADSTS7000215: Invalid client secret provided. ...\r\nTrace ID: ...",
 * "error_codes":[7000215],...}. */
static void entra_error(struct auth_tenant *t,
                        const struct cg_http_response *res)
{
    json_t *j = cg_json_parse(res->body, res->body_len, NULL, 0);
    const char *error = cg_json_str(j, "error");
    const char *desc = cg_json_str(j, "error_description");
    int err;
    if (res->status == 429)
        err = CG_ETHROTTLED;
    else if (res->status >= 500 ||
             (error && strcmp(error, "temporarily_unavailable") == 0))
        err = CG_EUNAVAIL;
    else
        err = CG_EAUTH;
    char code[32] = "";
    json_t *codes;
    if (cg_json_array(j, "error_codes", &codes) == CG_JSON_OK &&
        json_is_integer(json_array_get(codes, 0)))
        snprintf(code, sizeof(code), ", AADSTS%lld",
                 (long long)json_integer_value(json_array_get(codes, 0)));
    /* The description repeats the code ("AADSTS7000215: Invalid client
     * secret provided.") and ends in trace and correlation ids on lines of
     * their own: keep the first line's text, the code goes in brackets. */
    if (desc && strncmp(desc, "AADSTS", 6) == 0) {
        size_t n = strcspn(desc, ":");
        if (n < 24 && desc[n] == ':') {
            if (!code[0])
                snprintf(code, sizeof(code), ", %.*s", (int)n, desc);
            desc += n + 1;
            while (*desc == ' ')
                desc++;
        }
    }
    int desc_len = desc ? (int)strcspn(desc, "\r\n") : 0;
    const char *trace = desc ? strstr(desc, " Trace ID:") : NULL;
    if (trace && trace - desc < desc_len)
        desc_len = (int)(trace - desc);
    cg_err_set(t->why, sizeof(t->why), err,
               "Entra ID refused a token for tenant %s (HTTP %ld%s%s%s)%s%.*s",
               t->id, res->status, error ? ", " : "", error ? error : "", code,
               desc_len ? ": " : "", desc_len, desc ? desc : "");
    json_decref(j);
    tenant_fail(t, err, res->retry_after_ms);
}

static void token_done(const struct cg_http_response *res, void *arg)
{
    struct auth_tenant *t = arg;
    t->req = NULL;
    json_t *j = NULL;
    if (res->err) {
        cg_err_set(t->why, sizeof(t->why), res->err,
                   "token request for tenant %s failed: %s", t->id, res->why);
        tenant_fail(t, res->err, -1);
        goto out;
    }
    if (res->status != 200) {
        entra_error(t, res);
        goto out;
    }
    j = cg_json_parse(res->body, res->body_len, NULL, 0);
    const char *token = cg_json_str(j, "access_token");
    long long expires_in = 0;
    /* v2.0 sends a number; v1 and some proxies send it as a string. */
    const char *exp_s = cg_json_str(j, "expires_in");
    if (exp_s)
        expires_in = strtoll(exp_s, NULL, 10);
    else
        cg_json_int(j, "expires_in", &expires_in);
    if (!token || !*token || expires_in <= 0) {
        cg_err_set(t->why, sizeof(t->why), CG_EPARSE,
                   "token reply for tenant %s lacks access_token or "
                   "expires_in",
                   t->id);
        tenant_fail(t, CG_EPARSE, -1);
        goto out;
    }
    if (expires_in > 86400)
        expires_in = 86400;
    free(t->token);
    t->token = cg_strdup(token);
    /* Lifetime counts from when the request left, not when it came back. */
    int64_t life = expires_in * 1000;
    int64_t margin = life / 10;
    if (margin > CG_AUTH_REFRESH_MARGIN_MAX)
        margin = CG_AUTH_REFRESH_MARGIN_MAX;
    t->fetched_ms = t->req_started_ms;
    t->expires_ms = t->req_started_ms + life;
    t->refresh_ms = t->expires_ms - margin;
    t->err = 0;
    t->err_until_ms = 0;
    cg_debug("token_acquired", "tenant=%s expires_in=%lld", t->id, expires_in);
out:
    json_decref(j);
    tenant_deliver(t->auth->loop, t);
}

static void tenant_fetch(struct auth_tenant *t)
{
    struct cg_auth *auth = t->auth;
    char *url = cg_asprintf("%s/%s/oauth2/v2.0/token", auth->authority, t->id);
    char *secret = NULL;
    struct cg_buf form;
    cg_buf_init(&form, 256 * 1024);
    int rc = 0;
    const struct cg_credentials *c = t->cred;

    form_add(&form, "client_id", c->client_id);
    form_add(&form, "scope", auth->scope);
    form_add(&form, "grant_type", "client_credentials");
    switch (c->method) {
    case CG_AUTH_SECRET:
        if (!c->client_secret || !*c->client_secret) {
            rc = cg_err_set(t->why, sizeof(t->why), CG_ENOCRED,
                            "tenant %s: the client secret is empty", t->id);
            break;
        }
        form_add(&form, "client_secret", c->client_secret);
        break;
    case CG_AUTH_CERTIFICATE:
        rc = cg_auth_assertion(c, url, time(NULL), &secret, t->why,
                               sizeof(t->why));
        break;
    case CG_AUTH_FEDERATED:
        if (!c->federated_token_file || !*c->federated_token_file)
            rc = cg_err_set(t->why, sizeof(t->why), CG_ENOCRED,
                            "tenant %s: no federated token file", t->id);
        else
            rc = read_federated(c->federated_token_file, &secret, t->why,
                                sizeof(t->why));
        break;
    case CG_AUTH_NONE:
        rc = cg_err_set(t->why, sizeof(t->why), CG_ENOCRED,
                        "tenant %s has no credentials configured", t->id);
        break;
    }
    if (rc) {
        tenant_fail(t, rc, -1);
        cg_loop_timer_add(auth->loop, &t->deliver, 0, tenant_deliver, t);
        goto out;
    }
    if (secret) {
        form_add(&form, "client_assertion_type", AUTH_ASSERTION_TYPE);
        form_add(&form, "client_assertion", secret);
    }
    static const char *const headers[] = {
        "Content-Type: application/x-www-form-urlencoded",
        "Accept: application/json", NULL
    };
    struct cg_http_request req = {
        .method = CG_HTTP_POST,
        .url = url,
        .headers = headers,
        .body = form.data,
        .body_len = form.len,
        .max_body = AUTH_BODY_MAX,
    };
    char why[AUTH_WHY_MAX];
    t->req_started_ms = cg_loop_now_ms();
    t->req = cg_http_submit(auth->http, &req, token_done, t, why, sizeof(why));
    if (!t->req) {
        cg_err_set(t->why, sizeof(t->why), CG_EINVAL, "tenant %s: %s", t->id,
                   why);
        tenant_fail(t, CG_EINVAL, -1);
        cg_loop_timer_add(auth->loop, &t->deliver, 0, tenant_deliver, t);
        goto out;
    }
    auth->stats.token_requests++;
    cg_debug("token_request", "tenant=%s method=%s", t->id,
             c->method == CG_AUTH_SECRET        ? "secret"
             : c->method == CG_AUTH_CERTIFICATE ? "certificate"
                                                : "federated");
out:
    /* The form held the secret or assertion: wipe it before freeing. */
    if (form.data)
        OPENSSL_cleanse(form.data, form.len);
    if (secret)
        OPENSSL_cleanse(secret, strlen(secret));
    cg_buf_free(&form);
    free(secret);
    free(url);
}

/* Hands the tenant's current state to the waiters present when it starts;
 * waiters added by callbacks wait for the next delivery. */
static void tenant_deliver(struct cg_loop *loop, void *arg)
{
    struct auth_tenant *t = arg;
    size_t n = t->nwait;
    while (n-- > 0 && t->whead) {
        struct cg_auth_wait *w = t->whead;
        t->whead = w->next;
        if (t->whead)
            t->whead->prev = NULL;
        else
            t->wtail = NULL;
        t->nwait--;
        struct cg_auth_result res = { .retry_after_ms = -1 };
        if (token_usable(t, cg_loop_now_ms())) {
            res.token = t->token;
            res.why = "";
        } else {
            res.err = t->err ? t->err : CG_EIO;
            res.why = t->err ? t->why : "token request did not complete";
            res.retry_after_ms = t->retry_after_ms;
        }
        cg_auth_fn fn = w->fn;
        void *warg = w->arg;
        free(w);
        fn(&res, warg);
    }
}

/* ---- the public calls ---- */

static void tenant_maybe_refresh(struct auth_tenant *t, int64_t now)
{
    if (t->req || now < t->err_until_ms || !t->cred)
        return;
    if (t->token && now < t->refresh_ms)
        return;
    tenant_fetch(t);
}

const char *cg_auth_cached(struct cg_auth *auth, const char *tenant)
{
    struct auth_tenant *t = tenant_get(auth, tenant);
    int64_t now = cg_loop_now_ms();
    if (!token_usable(t, now))
        return NULL;
    if (now >= t->refresh_ms)
        tenant_maybe_refresh(t, now);
    return t->token;
}

const char *cg_auth_peek(const struct cg_auth *auth, const char *tenant)
{
    char key[CG_AUTH_TENANT_MAX + 1];
    size_t n = strlen(tenant);
    if (n > CG_AUTH_TENANT_MAX)
        return NULL;
    for (size_t i = 0; i < n; i++)
        key[i] = (char)tolower((unsigned char)tenant[i]);
    key[n] = '\0';
    const struct auth_tenant *t = cg_map_get(auth->tenants, key);
    return t && token_usable(t, cg_loop_now_ms()) ? t->token : NULL;
}

struct cg_auth_wait *cg_auth_get(struct cg_auth *auth, const char *tenant,
                                 cg_auth_fn fn, void *arg)
{
    struct auth_tenant *t = tenant_get(auth, tenant);
    struct cg_auth_wait *w = cg_calloc(1, sizeof(*w));
    w->t = t;
    w->fn = fn;
    w->arg = arg;
    w->prev = t->wtail;
    if (t->wtail)
        t->wtail->next = w;
    else
        t->whead = w;
    t->wtail = w;
    t->nwait++;
    int64_t now = cg_loop_now_ms();
    if (token_usable(t, now) || now < t->err_until_ms) {
        if (token_usable(t, now))
            tenant_maybe_refresh(t, now);
        cg_loop_timer_add(auth->loop, &t->deliver, 0, tenant_deliver, t);
        return w;
    }
    auth->stats.waits++;
    if (!t->req)
        tenant_fetch(t);
    return w;
}

void cg_auth_cancel(struct cg_auth *auth, struct cg_auth_wait *w)
{
    if (!w)
        return;
    struct auth_tenant *t = w->t;
    if (w->prev)
        w->prev->next = w->next;
    else
        t->whead = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        t->wtail = w->prev;
    t->nwait--;
    free(w);
}

void cg_auth_invalidate(struct cg_auth *auth, const char *tenant,
                        const char *token)
{
    struct auth_tenant *t = tenant_get(auth, tenant);
    if (t->token && token && strcmp(t->token, token) == 0) {
        cg_info("token_invalidated", "tenant=%s", t->id);
        OPENSSL_cleanse(t->token, strlen(t->token));
        free(t->token);
        t->token = NULL;
        t->expires_ms = t->refresh_ms = 0;
    }
}

void cg_auth_stats(const struct cg_auth *auth, struct cg_auth_stats *out)
{
    *out = auth->stats;
    out->tenants = cg_map_count(auth->tenants);
}
