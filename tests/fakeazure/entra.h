/*
 * entra — the fake Microsoft Entra ID: the client-credentials token
 * endpoint, the discovery documents client libraries fetch first, and the
 * access tokens every ARM call is checked against.
 *
 * POST /{tenant}/oauth2/v2.0/token accepts, for the tenant's app:
 *   - client_secret;
 *   - a certificate client_assertion (JWT, PS256 with x5t#S256 or RS256
 *     with x5t) signed by the key of the app certificate registered with
 *     --app-keys, with aud = the token URL, iss = sub = client id, exp,
 *     nbf, and a jti never seen before;
 *   - a federated assertion (workload identity) whose iss and sub are the
 *     registered issuer and subject, aud api://AzureADTokenExchange, signed
 *     by the registered issuer key.
 * scope must be the Resource Manager's `/.default`. Failures answer in
 * Entra's shape: {error, error_description "AADSTS...: ...", error_codes}.
 * Tokens are opaque, bound to (tenant, app) and expire after the
 * configured lifetime.
 */
#ifndef CG_FA_ENTRA_H
#define CG_FA_ENTRA_H

#include "server.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

struct cg_fa_token {
    size_t tenant; /* index in the store */
    char tenant_id[40];
    char client_id[40];
    char principal[96]; /* "tenant/client" : the throttling principal */
    double expires;     /* monotonic seconds */
};

struct cg_fa_entra_conf {
    unsigned token_lifetime_s;
    const char *keys_dir; /* app and issuer keys; NULL: secrets only */
    const char *fed_issuer;
    const char *fed_subject;
};

struct cg_fa_entra;

/* Generates (or, when present, loads) the app certificate and the
 * federated issuer key in keys_dir. */
struct cg_fa_entra *cg_fa_entra_new(const struct cg_fa_entra_conf *conf,
                                    struct cg_fa_store *store, char *errbuf,
                                    size_t errsz);
void cg_fa_entra_free(struct cg_fa_entra *e);

/* The fake's own base URL ("https://127.0.0.1:PORT"), for discovery. */
void cg_fa_entra_set_base(struct cg_fa_entra *e, const char *base_url);

/* Handles the request if it is an Entra route; returns the route name
 * ("token", "discovery") or NULL when not Entra's. */
const char *cg_fa_entra_handle(struct cg_fa_entra *e,
                               const struct cg_fa_req *req,
                               struct cg_fa_resp *resp);

enum cg_fa_auth {
    CG_FA_AUTH_OK,
    CG_FA_AUTH_MISSING,
    CG_FA_AUTH_INVALID,
    CG_FA_AUTH_EXPIRED,
};

/* Checks an Authorization header value; *tok (borrowed) set on OK. */
enum cg_fa_auth cg_fa_entra_check(struct cg_fa_entra *e, const char *authz,
                                  const struct cg_fa_token **tok);

/* Forgets every token and assertion id (control API reset). */
void cg_fa_entra_reset(struct cg_fa_entra *e);

/* Tokens issued since the start or the last reset, by method. */
json_t *cg_fa_entra_stats_json(const struct cg_fa_entra *e);

/*
 * Writes what Kubernetes projects into AZURE_FEDERATED_TOKEN_FILE: a JWT
 * (RS256) signed by the registered issuer key, with the registered issuer
 * and subject, aud api://AzureADTokenExchange, valid for lifetime_s.
 * Needs keys_dir. Returns 0 or CG_EIO/CG_EINVAL.
 */
int cg_fa_entra_write_federated_token(struct cg_fa_entra *e, const char *path,
                                      unsigned lifetime_s, char *errbuf,
                                      size_t errsz);

/* The keys directory (NULL when none). */
const char *cg_fa_entra_keys_dir(const struct cg_fa_entra *e);

/* Sets the lifetime of tokens issued from now on. */
void cg_fa_entra_set_lifetime(struct cg_fa_entra *e, unsigned seconds);

#endif
