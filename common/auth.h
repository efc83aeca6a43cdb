/*
 * auth — Microsoft Entra ID access tokens per tenant, on the event loop.
 *
 * Sits between arm (which needs a bearer token for every Resource Manager
 * call) and http. Each tenant's credentials come from the configuration
 * (its own, else the global ones): a client secret, a certificate (a JWT
 * client assertion signed with the app's private key, PS256 with x5t#S256
 * by default, RS256 with x5t as an option) or workload identity federation
 * (the projected token file, re-read on every request because the kubelet
 * rotates it). Tokens are requested with the client credentials grant at
 * `{azure.authority_host}/{tenant}/oauth2/v2.0/token` for
 * `{azure.resource_manager}/.default` unless azure.scope is set.
 *
 * Exactly one token request per tenant is in flight; every other caller
 * waits on it. A token is refreshed in the background once it enters its
 * last 10% of life (at most 5 minutes), so callers rarely wait. Entra's
 * refusals become final errors (CG_EAUTH) that quote `error`, the AADSTS
 * code and the HTTP status; secrets, assertions and tokens never reach an
 * errbuf or a log line.
 */
#ifndef CG_AUTH_H
#define CG_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct cg_loop;
struct cg_http;
struct cg_conf;
struct cg_credentials;
struct cg_auth;
struct cg_auth_wait;

/* Named limits. */
#define CG_AUTH_TENANT_MAX         128         /* tenant id or domain */
#define CG_AUTH_FEDERATED_MAX      (64 * 1024) /* projected token file */
#define CG_AUTH_ASSERTION_LIFE_S   600         /* exp - nbf of an assertion */
#define CG_AUTH_REFRESH_MARGIN_MAX 300000      /* ms before expiry, at most */
#define CG_AUTH_NEGATIVE_TTL_MS    15000       /* a final refusal is cached */
#define CG_AUTH_IDLE_MS            600000 /* an unused tenant is forgotten */
#define CG_AUTH_SWEEP_MS           60000  /* how often that is checked */

/*
 * conf (borrowed; must outlive the object) supplies the endpoints and the
 * tenants' credentials. loop and http are borrowed too.
 */
struct cg_auth *cg_auth_new(struct cg_loop *loop, struct cg_http *http,
                            const struct cg_conf *conf, char *errbuf,
                            size_t errsz);
/* Pending waits are dropped without their callbacks. NULL-ok; not from
 * inside one of this object's callbacks. Free auth before http. */
void cg_auth_free(struct cg_auth *auth);

/*
 * The application (client) id that acts in tenant, or NULL when the tenant
 * has no credentials. Borrowed from the configuration. arm keys its
 * throttling buckets on it, as ARM does (per principal).
 */
const char *cg_auth_principal(struct cg_auth *auth, const char *tenant);

/*
 * A usable cached token for tenant, or NULL. Borrowed: valid until control
 * returns to the loop. A token in its refresh window is still returned and
 * a background refresh is started.
 */
const char *cg_auth_cached(struct cg_auth *auth, const char *tenant);

/*
 * Like cg_auth_cached but without side effects (no refresh is started, no
 * tenant entry created): for the moment a request goes on the wire, which
 * may be inside http. NULL when no usable token is cached.
 */
const char *cg_auth_peek(const struct cg_auth *auth, const char *tenant);

struct cg_auth_result {
    int err;             /* 0 or CG_E*; cg_err_retryable() says what next */
    const char *token;   /* when err == 0; borrowed for the callback */
    const char *why;     /* one sentence when err != 0 */
    long retry_after_ms; /* from a throttled token endpoint, else -1 */
};

typedef void (*cg_auth_fn)(const struct cg_auth_result *res, void *arg);

/*
 * Asks for a token for tenant. fn is called exactly once, always from the
 * loop (never inside this call), unless the wait is cancelled first.
 * Final errors: CG_ENOCRED (tenant has no credentials), CG_EINVAL (tenant
 * id is not a GUID or domain), CG_ECONF (unreadable key, certificate or
 * federated token file), CG_EAUTH (Entra refused). Retryable: CG_EIO,
 * CG_ETIMEOUT, CG_ETHROTTLED, CG_EUNAVAIL.
 */
struct cg_auth_wait *cg_auth_get(struct cg_auth *auth, const char *tenant,
                                 cg_auth_fn fn, void *arg);
/* Withdraws a wait; its callback will not be called. NULL-ok. */
void cg_auth_cancel(struct cg_auth *auth, struct cg_auth_wait *w);

/*
 * Forgets tenant's token when it is still `token` (the one a 401 answered
 * to), so that the next cg_auth_get fetches a new one. Comparing the token
 * keeps a burst of 401s on one stale token to one refresh.
 */
void cg_auth_invalidate(struct cg_auth *auth, const char *tenant,
                        const char *token);

struct cg_auth_stats {
    uint64_t token_requests; /* POSTs to the token endpoint */
    uint64_t token_failures;
    uint64_t waits;     /* cg_auth_get calls that had to wait for a request */
    size_t tenants;     /* gauge: tenants held (token, cached error) */
    uint64_t forgotten; /* tenants dropped after CG_AUTH_IDLE_MS unused */
};

void cg_auth_stats(const struct cg_auth *auth, struct cg_auth_stats *out);

/*
 * Forgets every tenant nobody asked about for idle_ms before now_ms and
 * that has nothing in flight (no token request, no waiter): its token is
 * wiped and freed, a cached refusal dropped. A fleet that sees thousands
 * of tenants once a day keeps only the ones in use. A timer calls it every
 * CG_AUTH_SWEEP_MS with CG_AUTH_IDLE_MS; tests call it directly. Returns
 * how many were forgotten.
 */
size_t cg_auth_sweep(struct cg_auth *auth, int64_t now_ms, int64_t idle_ms);

/*
 * Builds a signed client assertion (compact JWS) for cred (method
 * certificate) with aud = audience (the token URL), iss = sub = client id,
 * a random jti, nbf = iat = now and exp = now + CG_AUTH_ASSERTION_LIFE_S.
 * *out (heap) is written on success. Returns 0, or CG_ECONF with errbuf
 * naming the file or the mismatch.
 */
int cg_auth_assertion(const struct cg_credentials *cred, const char *audience,
                      time_t now, char **out, char *errbuf, size_t errsz);

/* base64url without padding of n bytes (heap string); for the JWT and its
 * thumbprints. */
char *cg_auth_b64url(const unsigned char *p, size_t n);

#endif
