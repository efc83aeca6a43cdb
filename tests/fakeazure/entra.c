#include "entra.h"

#include "err.h"
#include "json.h"
#include "map.h"
#include "mem.h"
#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ASSERTION_MAX   16384
#define FORM_VALUE_MAX  16384
#define JTI_MAX         256
#define CLOCK_SKEW_S    300
#define FED_AUDIENCE    "api://AzureADTokenExchange"
#define JWT_BEARER_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define SWEEP_EVERY     4096
/* Assertion ids remembered until their exp has passed. */
#define JTIS_MAX 1000000

struct signer {
    EVP_PKEY *key;
    char x5t[64];      /* base64url SHA-1 of the DER */
    char x5t_s256[64]; /* base64url SHA-256 of the DER */
};

struct cg_fa_entra {
    struct cg_fa_store *store;
    unsigned lifetime;
    char *base;
    char *fed_issuer;
    char *keys_dir;
    char *fed_subject;
    struct signer app;        /* key NULL: no certificate registered */
    struct signer issuer;     /* key NULL: no federation */
    struct cg_fa_map *tokens; /* access token -> struct cg_fa_token */
    struct cg_fa_map *jtis;   /* jti -> expiry (struct jti) */
    uint64_t issued_secret, issued_cert, issued_fed, refused;
    uint64_t since_sweep;
};

struct jti {
    double expires;
};

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long now_unix(void)
{
    return (long long)time(NULL);
}

static void b64url(const unsigned char *in, size_t n, char *out, size_t outsz)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < outsz; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = tbl[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = tbl[v & 63];
    }
    out[o] = '\0';
}

/* Decodes base64url (no padding, or standard padding); -1 on bad input. */
static long b64url_decode(const char *in, size_t n, unsigned char *out,
                          size_t outsz)
{
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)in[i], v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-' || c == '+')
            v = 62;
        else if (c == '_' || c == '/')
            v = 63;
        else if (c == '=')
            break;
        else
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outsz)
                return -1;
            out[o++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    return (long)o;
}

static int load_signer(struct signer *s, const char *cert_file, char *errbuf,
                       size_t errsz)
{
    FILE *f = fopen(cert_file, "r");
    if (!f)
        return cg_err_set(errbuf, errsz, CG_EIO, "cannot open %s: %s",
                          cert_file, strerror(errno));
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x)
        return cg_err_set(errbuf, errsz, CG_EIO, "%s: not a PEM certificate",
                          cert_file);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen;
    X509_digest(x, EVP_sha1(), md, &mdlen);
    b64url(md, mdlen, s->x5t, sizeof(s->x5t));
    X509_digest(x, EVP_sha256(), md, &mdlen);
    b64url(md, mdlen, s->x5t_s256, sizeof(s->x5t_s256));
    s->key = X509_get_pubkey(x);
    X509_free(x);
    return 0;
}

static int ensure_keys(struct cg_fa_entra *e, const char *dir, char *errbuf,
                       size_t errsz)
{
    int rc = 0;
    char *app_crt = cg_asprintf("%s/app.pem", dir);
    char *app_key = cg_asprintf("%s/app.key", dir);
    char *iss_crt = cg_asprintf("%s/issuer.pem", dir);
    char *iss_key = cg_asprintf("%s/issuer.key", dir);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        rc = cg_err_set(errbuf, errsz, CG_EIO, "cannot create %s: %s", dir,
                        strerror(errno));
        goto out;
    }
    /* Existing keys are kept so that a restarted fake still accepts the
     * certificate a test registered with its client. */
    if (access(app_crt, R_OK) != 0)
        rc = cg_fa_tls_app_cert(app_crt, app_key, "contactguard app", errbuf,
                                errsz);
    if (!rc && access(iss_crt, R_OK) != 0)
        rc = cg_fa_tls_app_cert(iss_crt, iss_key, "workload identity issuer",
                                errbuf, errsz);
    if (!rc)
        rc = load_signer(&e->app, app_crt, errbuf, errsz);
    if (!rc)
        rc = load_signer(&e->issuer, iss_crt, errbuf, errsz);
out:
    free(app_crt);
    free(app_key);
    free(iss_crt);
    free(iss_key);
    return rc;
}

struct cg_fa_entra *cg_fa_entra_new(const struct cg_fa_entra_conf *conf,
                                    struct cg_fa_store *store, char *errbuf,
                                    size_t errsz)
{
    struct cg_fa_entra *e = cg_calloc(1, sizeof(*e));
    e->store = store;
    e->lifetime = conf->token_lifetime_s;
    e->base = cg_strdup("https://127.0.0.1");
    e->fed_issuer = cg_strdup(conf->fed_issuer);
    e->keys_dir = conf->keys_dir ? cg_strdup(conf->keys_dir) : NULL;
    e->fed_subject = cg_strdup(conf->fed_subject);
    e->tokens = cg_fa_map_new(false, free);
    e->jtis = cg_fa_map_new(false, free);
    if (conf->keys_dir && ensure_keys(e, conf->keys_dir, errbuf, errsz)) {
        cg_fa_entra_free(e);
        return NULL;
    }
    return e;
}

void cg_fa_entra_free(struct cg_fa_entra *e)
{
    if (!e)
        return;
    EVP_PKEY_free(e->app.key);
    EVP_PKEY_free(e->issuer.key);
    cg_fa_map_free(e->tokens);
    cg_fa_map_free(e->jtis);
    free(e->base);
    free(e->fed_issuer);
    free(e->keys_dir);
    free(e->fed_subject);
    free(e);
}

void cg_fa_entra_set_base(struct cg_fa_entra *e, const char *base_url)
{
    free(e->base);
    e->base = cg_strdup(base_url);
}

void cg_fa_entra_set_lifetime(struct cg_fa_entra *e, unsigned seconds)
{
    e->lifetime = seconds;
}

void cg_fa_entra_reset(struct cg_fa_entra *e)
{
    cg_fa_map_clear(e->tokens);
    cg_fa_map_clear(e->jtis);
    e->issued_secret = e->issued_cert = e->issued_fed = e->refused = 0;
}

json_t *cg_fa_entra_stats_json(const struct cg_fa_entra *e)
{
    return json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I}", "issued",
        (json_int_t)(e->issued_secret + e->issued_cert + e->issued_fed),
        "client_secret", (json_int_t)e->issued_secret, "certificate",
        (json_int_t)e->issued_cert, "federated", (json_int_t)e->issued_fed,
        "refused", (json_int_t)e->refused, "live",
        (json_int_t)cg_fa_map_count(e->tokens));
}

/* ---- answers ---- */

static void aad_error(struct cg_fa_entra *e, struct cg_fa_resp *resp,
                      int status, const char *error, int code, const char *fmt,
                      ...) __attribute__((format(printf, 6, 7)));

static void aad_error(struct cg_fa_entra *e, struct cg_fa_resp *resp,
                      int status, const char *error, int code, const char *fmt,
                      ...)
{
    char msg[512], desc[700], ts[32], trace[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%SZ", &tm);
    unsigned char rnd[16];
    RAND_bytes(rnd, sizeof(rnd));
    snprintf(trace, sizeof(trace),
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x"
             "%02x",
             rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7],
             rnd[8], rnd[9], rnd[10], rnd[11], rnd[12], rnd[13], rnd[14],
             rnd[15]);
    snprintf(desc, sizeof(desc),
             "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", code,
             msg, trace, trace, ts);
    json_t *o =
        json_pack("{s:s,s:s,s:[i],s:s,s:s,s:s}", "error", error,
                  "error_description", desc, "error_codes", code, "timestamp",
                  ts, "trace_id", trace, "correlation_id", trace);
    char *s = json_dumps(o, JSON_COMPACT);
    resp->status = status;
    cg_buf_reset(&resp->body);
    cg_buf_puts(&resp->body, s);
    free(s);
    json_decref(o);
    e->refused++;
}

static void issue(struct cg_fa_entra *e, struct cg_fa_resp *resp, size_t t,
                  uint64_t *counter)
{
    const struct cg_fa_tenant *ten = cg_fa_store_tenant(e->store, t);
    unsigned char rnd[32];
    RAND_bytes(rnd, sizeof(rnd));
    char tok[64];
    b64url(rnd, sizeof(rnd), tok, sizeof(tok));
    char *access = cg_asprintf("fake.%s", tok);
    struct cg_fa_token *k = cg_calloc(1, sizeof(*k));
    k->tenant = t;
    cg_strlcpy(k->tenant_id, ten->id, sizeof(k->tenant_id));
    cg_strlcpy(k->client_id, ten->client_id, sizeof(k->client_id));
    snprintf(k->principal, sizeof(k->principal), "%s/%s", ten->id,
             ten->client_id);
    double now = now_mono();
    k->expires = now + e->lifetime;
    /* Expired tokens are swept now and then, so the table stays bounded
     * by the tokens alive at once. */
    if (++e->since_sweep >= SWEEP_EVERY) {
        e->since_sweep = 0;
        struct cg_fa_map *keep = cg_fa_map_new(false, free);
        size_t it = 0;
        const char *key;
        struct cg_fa_token *v;
        while ((v = cg_fa_map_next(e->tokens, &it, &key))) {
            if (v->expires > now) {
                struct cg_fa_token *c = cg_malloc(sizeof(*c));
                *c = *v;
                cg_fa_map_put_take(keep, key, c);
            }
        }
        cg_fa_map_free(e->tokens);
        e->tokens = keep;
    }
    cg_fa_map_put_take(e->tokens, access, k);
    json_t *o = json_pack("{s:s,s:i,s:i,s:s}", "token_type", "Bearer",
                          "expires_in", (int)e->lifetime, "ext_expires_in",
                          (int)e->lifetime, "access_token", access);
    char *s = json_dumps(o, JSON_COMPACT);
    resp->status = 200;
    cg_buf_reset(&resp->body);
    cg_buf_puts(&resp->body, s);
    cg_fa_resp_header(resp, "Cache-Control", "no-store, no-cache");
    free(s);
    json_decref(o);
    free(access);
    (*counter)++;
}

/* ---- assertions ---- */

struct jwt {
    json_t *header;
    json_t *claims;
    const char *signed_part; /* header.payload */
    size_t signed_len;
    unsigned char sig[1024];
    size_t sig_len;
};

static json_t *b64_json(const char *s, size_t n)
{
    unsigned char buf[ASSERTION_MAX];
    long len = b64url_decode(s, n, buf, sizeof(buf));
    if (len < 0)
        return NULL;
    return json_loadb((const char *)buf, (size_t)len, 0, NULL);
}

static int jwt_parse(const char *a, struct jwt *j)
{
    memset(j, 0, sizeof(*j));
    const char *d1 = strchr(a, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d2 || strchr(d2 + 1, '.'))
        return -1;
    j->header = b64_json(a, (size_t)(d1 - a));
    j->claims = b64_json(d1 + 1, (size_t)(d2 - d1 - 1));
    long sl = b64url_decode(d2 + 1, strlen(d2 + 1), j->sig, sizeof(j->sig));
    if (!json_is_object(j->header) || !json_is_object(j->claims) || sl <= 0)
        return -1;
    j->sig_len = (size_t)sl;
    j->signed_part = a;
    j->signed_len = (size_t)(d2 - a);
    return 0;
}

static void jwt_clear(struct jwt *j)
{
    json_decref(j->header);
    json_decref(j->claims);
}

static bool jwt_verify(const struct jwt *j, EVP_PKEY *key, bool pss)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = false;
    if (EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, key) != 1)
        goto out;
    if (pss &&
        (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) != 1))
        goto out;
    ok = EVP_DigestVerify(md, j->sig, j->sig_len,
                          (const unsigned char *)j->signed_part,
                          j->signed_len) == 1;
out:
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}

static bool claim_time(const json_t *claims, const char *name, long long *out)
{
    json_t *v = json_object_get(claims, name);
    if (!json_is_number(v))
        return false;
    *out = (long long)json_number_value(v);
    return true;
}

/* Forgets assertion ids whose assertion has expired: they could not be
 * replayed anyway. */
static void prune_jtis(struct cg_fa_entra *e, long long now)
{
    struct cg_fa_map *keep = cg_fa_map_new(false, free);
    size_t it = 0;
    const char *key;
    struct jti *v;
    while ((v = cg_fa_map_next(e->jtis, &it, &key))) {
        if (v->expires + CLOCK_SKEW_S >= (double)now) {
            struct jti *c = cg_malloc(sizeof(*c));
            *c = *v;
            cg_fa_map_put_take(keep, key, c);
        }
    }
    cg_fa_map_free(e->jtis);
    e->jtis = keep;
}

static bool thumb_eq(const char *got, const char *want)
{
    size_t n = strlen(want);
    if (strncmp(got, want, n))
        return false;
    while (got[n] == '=')
        n++;
    return got[n] == '\0';
}

/* Checks signature, times, audience and jti. Returns 0 or answers. */
static int check_assertion(struct cg_fa_entra *e, struct cg_fa_resp *resp,
                           const struct jwt *j, const struct signer *s,
                           bool federated, const char *tenant_id)
{
    const char *alg = cg_json_str(j->header, "alg");
    bool pss = alg && !strcmp(alg, "PS256");
    if (!alg || (!pss && strcmp(alg, "RS256"))) {
        aad_error(e, resp, 401, "invalid_client", 5002738,
                  "Invalid JWT token. '%s' is not a supported signature "
                  "algorithm.",
                  alg ? alg : "(none)");
        return -1;
    }
    if (!federated) {
        const char *t256 = cg_json_str(j->header, "x5t#S256");
        const char *t1 = cg_json_str(j->header, "x5t");
        /* Some clients (MSAL for Python) keep the base64 padding. */
        bool match = (t256 && thumb_eq(t256, s->x5t_s256)) ||
                     (t1 && thumb_eq(t1, s->x5t));
        if (!match) {
            aad_error(e, resp, 401, "invalid_client", 700027,
                      "Client assertion failed signature validation. "
                      "[Reason - The key was not found.]");
            return -1;
        }
    }
    if (!jwt_verify(j, s->key, pss)) {
        aad_error(e, resp, 401, "invalid_client", 700027,
                  "Client assertion failed signature validation.");
        return -1;
    }
    long long exp, nbf, now = now_unix();
    if (!claim_time(j->claims, "exp", &exp) || exp + CLOCK_SKEW_S < now) {
        aad_error(e, resp, 401, "invalid_client", 700024,
                  "Client assertion is not within its valid time range.");
        return -1;
    }
    if (claim_time(j->claims, "nbf", &nbf) && nbf - CLOCK_SKEW_S > now) {
        aad_error(e, resp, 401, "invalid_client", 700024,
                  "Client assertion is not within its valid time range.");
        return -1;
    }
    const char *aud = cg_json_str(j->claims, "aud");
    if (federated) {
        if (!aud || strcmp(aud, FED_AUDIENCE)) {
            aad_error(e, resp, 400, "invalid_client", 700212,
                      "No matching federated identity record found for "
                      "presented assertion audience '%.200s'.",
                      aud ? aud : "");
            return -1;
        }
    } else {
        /* The token URL, with whichever host name the client used. */
        char *want = cg_asprintf("/%s/oauth2/v2.0/token", tenant_id);
        size_t al = aud ? strlen(aud) : 0, wl = strlen(want);
        bool ok = aud && !strncmp(aud, "https://", 8) && al > wl &&
                  strcasecmp(aud + al - wl, want) == 0;
        free(want);
        if (!ok) {
            aad_error(e, resp, 401, "invalid_client", 700016,
                      "The audience '%.200s' of the client assertion is not "
                      "this token endpoint.",
                      aud ? aud : "");
            return -1;
        }
    }
    const char *jti = cg_json_str(j->claims, "jti");
    if (!federated) {
        if (!jti || !*jti || strlen(jti) > JTI_MAX) {
            aad_error(e, resp, 401, "invalid_client", 700023,
                      "Client assertion must carry a jti claim.");
            return -1;
        }
        if (cg_fa_map_get(e->jtis, jti)) {
            aad_error(e, resp, 401, "invalid_client", 700025,
                      "Client assertion with jti '%.100s' has already been "
                      "used.",
                      jti);
            return -1;
        }
        if (cg_fa_map_count(e->jtis) >= JTIS_MAX)
            prune_jtis(e, now);
        if (cg_fa_map_count(e->jtis) >= JTIS_MAX) {
            aad_error(e, resp, 503, "temporarily_unavailable", 90033,
                      "Too many assertions in flight; try again later.");
            return -1;
        }
        struct jti *rec = cg_malloc(sizeof(*rec));
        rec->expires = (double)exp;
        cg_fa_map_put_take(e->jtis, jti, rec);
    }
    return 0;
}

/* Resource Manager's resource ids as Entra ID knows them; a scope is one of
 * them followed by "/.default" or, as the Azure CLI sends it (the resource id
 * with its trailing slash, then "/.default"), "//.default". */
static bool arm_default_scope(const char *s, const char *base)
{
    const char *const ids[] = { "https://management.azure.com",
                                "https://management.core.windows.net", base };
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        size_t n = strlen(ids[i]);
        if (!strncmp(s, ids[i], n) &&
            (!strcmp(s + n, "/.default") || !strcmp(s + n, "//.default")))
            return true;
    }
    return false;
}

static bool scope_ok(const char *scope, const char *base)
{
    char buf[FORM_VALUE_MAX];
    cg_strlcpy(buf, scope, sizeof(buf));
    char *save = NULL;
    bool any = false;
    for (char *s = strtok_r(buf, " ", &save); s;
         s = strtok_r(NULL, " ", &save)) {
        if (arm_default_scope(s, base)) {
            any = true;
        } else if (strcmp(s, "openid") && strcmp(s, "profile") &&
                   strcmp(s, "offline_access")) {
            return false;
        }
    }
    return any;
}

static void token_endpoint(struct cg_fa_entra *e, const char *tenant_id,
                           const struct cg_fa_req *req, struct cg_fa_resp *resp)
{
    char *v = cg_malloc(FORM_VALUE_MAX);
    char client_id[128], grant[64], scope[1024], atype[128];
    struct jwt j = { 0 };
    size_t t;
    const char *form = req->body;
    if (strcmp(req->method, "POST")) {
        aad_error(e, resp, 405, "invalid_request", 900561,
                  "The endpoint only accepts POST requests.");
        goto out;
    }
    struct cg_fa_tenant *ten = cg_fa_store_tenant_find(e->store, tenant_id, &t);
    if (!ten) {
        aad_error(e, resp, 400, "invalid_request", 90002,
                  "Tenant '%.64s' not found.", tenant_id);
        goto out;
    }
    if (cg_fa_form_get(form, "grant_type", grant, sizeof(grant)) < 0 ||
        strcmp(grant, "client_credentials")) {
        aad_error(e, resp, 400, "unsupported_grant_type", 70003,
                  "The app requested an unsupported grant type.");
        goto out;
    }
    if (cg_fa_form_get(form, "client_id", client_id, sizeof(client_id)) < 0) {
        aad_error(e, resp, 400, "invalid_request", 900144,
                  "The request body must contain the following parameter: "
                  "'client_id'.");
        goto out;
    }
    if (strcasecmp(client_id, ten->client_id)) {
        aad_error(e, resp, 400, "unauthorized_client", 700016,
                  "Application with identifier '%.64s' was not found in the "
                  "directory '%s'.",
                  client_id, ten->id);
        goto out;
    }
    if (cg_fa_form_get(form, "scope", scope, sizeof(scope)) < 0 ||
        !scope_ok(scope, e->base)) {
        aad_error(e, resp, 400, "invalid_scope", 1002012,
                  "The provided value for scope is not valid. Client "
                  "credential flows must have a scope value with /.default "
                  "suffixed to the resource identifier.");
        goto out;
    }
    if (cg_fa_form_get(form, "client_secret", v, FORM_VALUE_MAX) >= 0) {
        if (strcmp(v, ten->secret)) {
            aad_error(e, resp, 401, "invalid_client", 7000215,
                      "Invalid client secret provided. Ensure the secret "
                      "being sent in the request is the client secret "
                      "value, not the client secret ID.");
            goto out;
        }
        issue(e, resp, t, &e->issued_secret);
        goto out;
    }
    if (cg_fa_form_get(form, "client_assertion", v, FORM_VALUE_MAX) < 0) {
        aad_error(e, resp, 401, "invalid_client", 7000218,
                  "The request body must contain the following parameter: "
                  "'client_assertion' or 'client_secret'.");
        goto out;
    }
    if (cg_fa_form_get(form, "client_assertion_type", atype, sizeof(atype)) <
            0 ||
        strcmp(atype, JWT_BEARER_TYPE)) {
        aad_error(e, resp, 400, "invalid_request", 50027,
                  "client_assertion_type must be '%s'.", JWT_BEARER_TYPE);
        goto out;
    }
    if (jwt_parse(v, &j) < 0) {
        aad_error(e, resp, 400, "invalid_request", 50027,
                  "JWT token is invalid or is malformed.");
        goto out;
    }
    const char *iss = cg_json_str(j.claims, "iss");
    const char *sub = cg_json_str(j.claims, "sub");
    bool federated = !(iss && !strcasecmp(iss, ten->client_id));
    if (federated) {
        if (!e->issuer.key || !iss || strcmp(iss, e->fed_issuer)) {
            aad_error(e, resp, 400, "invalid_request", 700211,
                      "No matching federated identity record found for "
                      "presented assertion issuer '%.200s'.",
                      iss ? iss : "");
            goto out;
        }
        if (!sub || strcmp(sub, e->fed_subject)) {
            aad_error(e, resp, 400, "invalid_request", 700213,
                      "No matching federated identity record found for "
                      "presented assertion subject '%.200s'.",
                      sub ? sub : "");
            goto out;
        }
        if (check_assertion(e, resp, &j, &e->issuer, true, ten->id) == 0)
            issue(e, resp, t, &e->issued_fed);
        goto out;
    }
    if (!sub || strcasecmp(sub, ten->client_id)) {
        aad_error(e, resp, 401, "invalid_client", 50027,
                  "Client assertion 'sub' must be the client id.");
        goto out;
    }
    if (!e->app.key) {
        aad_error(e, resp, 401, "invalid_client", 700027,
                  "Client assertion failed signature validation. [Reason - "
                  "No certificate is registered for the app.]");
        goto out;
    }
    if (check_assertion(e, resp, &j, &e->app, false, ten->id) == 0)
        issue(e, resp, t, &e->issued_cert);
out:
    jwt_clear(&j);
    free(v);
}

static void discovery(struct cg_fa_entra *e, const char *tenant,
                      struct cg_fa_resp *resp)
{
    char *b = e->base;
    char *tok = cg_asprintf("%s/%s/oauth2/v2.0/token", b, tenant);
    char *authz = cg_asprintf("%s/%s/oauth2/v2.0/authorize", b, tenant);
    char *jwks = cg_asprintf("%s/%s/discovery/v2.0/keys", b, tenant);
    char *iss = cg_asprintf("%s/%s/v2.0", b, tenant);
    char *logout = cg_asprintf("%s/%s/oauth2/v2.0/logout", b, tenant);
    char *dev = cg_asprintf("%s/%s/oauth2/v2.0/devicecode", b, tenant);
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:[s,s,s],s:[s,s],s:[s],s:[s],"
        "s:s,s:b,s:s}",
        "token_endpoint", tok, "authorization_endpoint", authz, "jwks_uri",
        jwks, "issuer", iss, "end_session_endpoint", logout,
        "device_authorization_endpoint", dev, "tenant_region_scope", "EU",
        "token_endpoint_auth_methods_supported", "client_secret_post",
        "private_key_jwt", "client_secret_basic", "response_types_supported",
        "code", "id_token", "subject_types_supported", "pairwise",
        "id_token_signing_alg_values_supported", "RS256", "cloud_instance_name",
        "microsoftonline.com", "request_uri_parameter_supported", 0,
        "msgraph_host", "graph.microsoft.com");
    char *s = json_dumps(o, JSON_COMPACT);
    resp->status = 200;
    cg_buf_puts(&resp->body, s);
    free(s);
    json_decref(o);
    free(tok);
    free(authz);
    free(jwks);
    free(iss);
    free(logout);
    free(dev);
}

/* Whether host (no port) names the fake or a Microsoft login host: the
 * instances this authority vouches for. MSAL drops the port when it builds
 * the authorization_endpoint it asks about. */
static bool known_instance(const struct cg_fa_entra *e, const char *host,
                           size_t n)
{
    const char *const ms[] = { "login.microsoftonline.com", "login.windows.net",
                               "login.microsoft.com", "sts.windows.net" };
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
        if (strlen(ms[i]) == n && !strncasecmp(host, ms[i], n))
            return true;
    const char *own = strstr(e->base, "://");
    own = own ? own + 3 : e->base;
    size_t on = strcspn(own, ":/");
    return on == n && !strncasecmp(host, own, n);
}

/*
 * GET /common/discovery/instance?authorization_endpoint=https://HOST/TENANT/
 * oauth2/v2.0/authorize: Entra ID names the tenant's own OpenID
 * configuration (v2.0 for a v2.0 authorize endpoint, v1 otherwise), on
 * its own host; an instance it does not know is invalid_instance.
 */
static void instance_discovery(struct cg_fa_entra *e,
                               const struct cg_fa_req *req,
                               struct cg_fa_resp *resp)
{
    char ae[512];
    if (cg_fa_form_get(req->query, "authorization_endpoint", ae, sizeof(ae)) <
        0) {
        aad_error(e, resp, 400, "invalid_request", 90014,
                  "The required field 'authorization_endpoint' is missing.");
        e->refused--; /* counts token refusals only */
        return;
    }
    const char *host = strncasecmp(ae, "https://", 8) ? NULL : ae + 8;
    size_t hn = host ? strcspn(host, ":/") : 0;
    const char *path = host ? strchr(host, '/') : NULL;
    const char *tenant = path ? path + 1 : NULL;
    size_t tn = tenant ? strcspn(tenant, "/?#") : 0;
    const char *rest = tenant ? tenant + tn : NULL;
    bool v2 = rest && !strncmp(rest, "/oauth2/v2.0/authorize", 22);
    if (!host || !hn || !tn || tn >= 64 ||
        (!v2 && (!rest || strncmp(rest, "/oauth2/authorize", 17)))) {
        aad_error(e, resp, 400, "invalid_request", 90014,
                  "The field 'authorization_endpoint' is malformed.");
        e->refused--;
        return;
    }
    if (!known_instance(e, host, hn)) {
        aad_error(e, resp, 400, "invalid_instance", 50049,
                  "Unknown or invalid instance.");
        e->refused--;
        return;
    }
    const char *own = strstr(e->base, "://");
    own = own ? own + 3 : e->base;
    char *tde = cg_asprintf("%s/%.*s%s/.well-known/openid-configuration",
                            e->base, (int)tn, tenant, v2 ? "/v2.0" : "");
    json_t *o =
        json_pack("{s:s,s:s,s:[{s:s,s:s,s:[s]}]}", "tenant_discovery_endpoint",
                  tde, "api-version", "1.1", "metadata", "preferred_network",
                  own, "preferred_cache", own, "aliases", own);
    char *s = json_dumps(o, JSON_COMPACT);
    resp->status = 200;
    cg_buf_puts(&resp->body, s);
    free(s);
    json_decref(o);
    free(tde);
}

const char *cg_fa_entra_handle(struct cg_fa_entra *e,
                               const struct cg_fa_req *req,
                               struct cg_fa_resp *resp)
{
    const char *p = req->path;
    if (!strcmp(p, "/common/discovery/instance")) {
        instance_discovery(e, req, resp);
        return "discovery";
    }
    if (p[0] != '/')
        return NULL;
    const char *slash = strchr(p + 1, '/');
    if (!slash || slash - p - 1 >= 64 || slash == p + 1)
        return NULL;
    char tenant[64];
    memcpy(tenant, p + 1, (size_t)(slash - p - 1));
    tenant[slash - p - 1] = '\0';
    if (!strcmp(slash, "/oauth2/v2.0/token")) {
        token_endpoint(e, tenant, req, resp);
        return "token";
    }
    if (!strcmp(slash, "/v2.0/.well-known/openid-configuration") ||
        !strcmp(slash, "/.well-known/openid-configuration")) {
        if (strcmp(tenant, "common") && strcmp(tenant, "organizations") &&
            !cg_fa_store_tenant_find(e->store, tenant, NULL)) {
            aad_error(e, resp, 400, "invalid_tenant", 90002,
                      "Tenant '%.64s' not found.", tenant);
            e->refused--;
            return "discovery";
        }
        discovery(e, tenant, resp);
        return "discovery";
    }
    if (!strcmp(slash, "/discovery/v2.0/keys")) {
        resp->status = 200;
        cg_buf_puts(&resp->body, "{\"keys\":[]}");
        return "discovery";
    }
    return NULL;
}

enum cg_fa_auth cg_fa_entra_check(struct cg_fa_entra *e, const char *authz,
                                  const struct cg_fa_token **tok)
{
    if (!authz || strncasecmp(authz, "Bearer ", 7) != 0)
        return CG_FA_AUTH_MISSING;
    const char *t = authz + 7;
    while (*t == ' ')
        t++;
    struct cg_fa_token *k = cg_fa_map_get(e->tokens, t);
    if (!k)
        return CG_FA_AUTH_INVALID;
    if (k->expires <= now_mono())
        return CG_FA_AUTH_EXPIRED;
    *tok = k;
    return CG_FA_AUTH_OK;
}

const char *cg_fa_entra_keys_dir(const struct cg_fa_entra *e)
{
    return e->keys_dir;
}

int cg_fa_entra_write_federated_token(struct cg_fa_entra *e, const char *path,
                                      unsigned lifetime_s, char *errbuf,
                                      size_t errsz)
{
    int rc = 0;
    EVP_PKEY *key = NULL;
    EVP_MD_CTX *md = NULL;
    char *input = NULL, *jwt = NULL, *key_path = NULL;
    json_t *claims = NULL;
    char *cjson = NULL;
    FILE *f = NULL;
    if (!e->keys_dir) {
        rc = cg_err_set(errbuf, errsz, CG_EINVAL,
                        "a federated token needs --app-keys or "
                        "--tls-self-signed");
        goto out;
    }
    key_path = cg_asprintf("%s/issuer.key", e->keys_dir);
    f = fopen(key_path, "r");
    key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (!key) {
        rc = cg_err_set(errbuf, errsz, CG_EIO, "cannot read %s", key_path);
        goto out;
    }
    long long now = now_unix();
    claims = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "iss", e->fed_issuer, "sub",
                       e->fed_subject, "aud", FED_AUDIENCE, "iat",
                       (json_int_t)now, "nbf", (json_int_t)now, "exp",
                       (json_int_t)(now + lifetime_s));
    cjson = json_dumps(claims, JSON_COMPACT);
    static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\","
                                 "\"kid\":\"fake-issuer\"}";
    char h64[128], c64[1024];
    b64url((const unsigned char *)header, strlen(header), h64, sizeof(h64));
    b64url((const unsigned char *)cjson, strlen(cjson), c64, sizeof(c64));
    input = cg_asprintf("%s.%s", h64, c64);
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    md = EVP_MD_CTX_new();
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input,
                       strlen(input)) != 1) {
        rc = cg_err_set(errbuf, errsz, CG_EIO, "cannot sign the token");
        goto out;
    }
    char s64[1400];
    b64url(sig, siglen, s64, sizeof(s64));
    jwt = cg_asprintf("%s.%s", input, s64);
    fclose(f);
    f = fopen(path, "w");
    if (!f || fputs(jwt, f) < 0) {
        rc = cg_err_set(errbuf, errsz, CG_EIO, "cannot write %s", path);
        goto out;
    }
out:
    if (f && fclose(f) != 0 && !rc)
        rc = cg_err_set(errbuf, errsz, CG_EIO, "cannot write %s", path);
    EVP_PKEY_free(key);
    EVP_MD_CTX_free(md);
    json_decref(claims);
    free(cjson);
    free(input);
    free(jwt);
    free(key_path);
    ERR_clear_error();
    return rc;
}
