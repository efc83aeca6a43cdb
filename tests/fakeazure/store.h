/*
 * store — the fake's population: tenants, their apps, subscriptions, and one
 * stored security-contact state per subscription shown through each API
 * version the way Azure maps them.
 *
 * The population is deterministic: `--tenants N --subscriptions-per-tenant
 * M --seed S` always yields the same GUIDs, secrets and scenario for every
 * subscription. Scenarios come from a data file (tests/fixtures/
 * scenarios.json): each names a stored contact, a subscription state,
 * whether Microsoft.Security is registered, the role assignments that apply
 * at the subscription, and the expected status of the five rules written by
 * hand beside it. The first subscriptions cover every
 * scenario once; the rest are drawn by weight.
 *
 * The stored state is the 2023-12-01-preview `properties` object (the
 * "canonical" contact, or none) plus 2017-only legacy contacts:
 *   - 2023 shows the canonical contact as `default`, verbatim.
 *   - 2020 shows it as `default`: `alertNotifications.state` is On when
 *     the contact is enabled and has an Alert source, `minimalSeverity` is
 *     that source's; `notificationsByRole`, `emails`, `phone` verbatim.
 *     LIST answers a bare JSON array like the live service.
 *   - 2017 shows it as `default1`: `email` is the `emails` string,
 *     `alertNotifications` as in 2020, `alertsToAdmins` On when roles are
 *     On and include Owner. Legacy contacts (`default2`, ...) follow; they
 *     are invisible to 2020 and 2023, as contacts written with the old API
 *     under other names are.
 * Writes through any version update the one canonical state.
 */
#ifndef CG_FA_STORE_H
#define CG_FA_STORE_H

#include "mem.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum cg_fa_ver {
    CG_FA_V2017,
    CG_FA_V2020,
    CG_FA_V2023,
    CG_FA_NVER,
};

#define CG_FA_RULES 5
extern const char *const cg_fa_rule_names[CG_FA_RULES];
extern const char *const cg_fa_ver_names[CG_FA_NVER];

/* The version for an api-version string, or -1. */
int cg_fa_ver_parse(const char *s);

struct cg_fa_scenario {
    char *name;
    char *description;
    unsigned weight;
    char *state; /* Enabled, Warned, PastDue, Disabled, Deleted */
    bool registered;
    json_t *contact; /* 2023 properties, or NULL */
    json_t *legacy;  /* array of 2017 contacts {name, properties}, or NULL */
    bool reject[CG_FA_NVER];
    /* Role assignments at the subscription: [{role: Owner|Contributor|
     * Reader, principalType, scope: subscription|managementGroup|root}];
     * absent in the file: one User Owner at the subscription. */
    json_t *roles;
    unsigned roles_pages; /* LIST answers in this many pages (1..) */
    bool roles_denied;    /* the scanner may not read them: 403 */
    char *truth[CG_FA_RULES];
};

struct cg_fa_tenant {
    char id[40];
    char name[64];
    char client_id[40];
    char secret[48];
    bool deny_writes;   /* control API: every write answers 403 */
    bool reject_writes; /* control API: every write answers 400 */
    size_t *subs;       /* indexes into the store's subscriptions */
    size_t nsubs, cap;
};

struct cg_fa_sub {
    char id[40];
    size_t tenant;
    size_t scenario;
    char display_name[96];
    char state[16];
    bool registered;
    json_t *contact; /* canonical 2023 properties, or NULL */
    json_t *legacy;  /* array */
    bool reject[CG_FA_NVER];
    char *raw[CG_FA_NVER]; /* replaced body (control API), or NULL */
    char *cache[CG_FA_NVER];
    /* Control API: a portal edit applied right after the next read of the
     * contacts is answered: an array of edits, one per read, in order (an
     * element null: remove the contact), or NULL. */
    json_t *after_read;
    unsigned after_read_skip; /* reads to answer before it lands */
};

struct cg_fa_store_params {
    const char *scenarios_file;
    size_t tenants;
    size_t subs_per_tenant;
    uint64_t seed;
    double unregistered_share;
    /* One app (client id and secret) consented in every tenant, as a
     * multi-tenant deployment has, instead of one app per tenant. */
    bool multi_tenant_app;
};

struct cg_fa_store;

/* Loads the scenarios and builds the population. */
struct cg_fa_store *cg_fa_store_new(const struct cg_fa_store_params *p,
                                    char *errbuf, size_t errsz);
void cg_fa_store_free(struct cg_fa_store *st);

/* Rebuilds the population from the parameters (control API reset). */
void cg_fa_store_reset(struct cg_fa_store *st);

size_t cg_fa_store_tenant_count(const struct cg_fa_store *st);
struct cg_fa_tenant *cg_fa_store_tenant(struct cg_fa_store *st, size_t i);
/* By tenant id (case-insensitive) or NULL; *index set when found. */
struct cg_fa_tenant *cg_fa_store_tenant_find(struct cg_fa_store *st,
                                             const char *id, size_t *index);

size_t cg_fa_store_sub_count(const struct cg_fa_store *st);
struct cg_fa_sub *cg_fa_store_sub(struct cg_fa_store *st, size_t i);
struct cg_fa_sub *cg_fa_store_sub_find(struct cg_fa_store *st, const char *id);
/* The i-th subscription of tenant t (subscriptions created at run time
 * included), or NULL past the end. */
struct cg_fa_sub *cg_fa_store_tenant_sub(struct cg_fa_store *st, size_t t,
                                         size_t i);
size_t cg_fa_store_tenant_sub_count(struct cg_fa_store *st, size_t t);

const struct cg_fa_scenario *cg_fa_store_scenario(const struct cg_fa_store *st,
                                                  size_t i);
size_t cg_fa_store_scenario_count(const struct cg_fa_store *st);
/* Scenario index by name, or -1. */
long cg_fa_store_scenario_find(const struct cg_fa_store *st, const char *name);

/*
 * Creates a subscription in tenant t with the given scenario (its contact,
 * state and registration). Returns the new subscription (owned by store).
 */
struct cg_fa_sub *cg_fa_store_sub_create(struct cg_fa_store *st, size_t t,
                                         size_t scenario);

/* The JSON body of LIST, or of GET for one contact name, in version v.
 * Returns the HTTP status (200, or 404 with an ARM error body). */
int cg_fa_store_list(struct cg_fa_store *st, struct cg_fa_sub *sub,
                     enum cg_fa_ver v, struct cg_buf *out);
int cg_fa_store_get(struct cg_fa_store *st, struct cg_fa_sub *sub,
                    enum cg_fa_ver v, const char *name, struct cg_buf *out);

/*
 * Page `page` (0-based) of the subscription's role assignments as ARM
 * answers roleAssignments LIST (2022-04-01): {"value": [...]}, plus
 * *more set when another page follows. Principal and assignment ids are
 * derived from the subscription id, so they are stable across runs.
 */
void cg_fa_store_roles(struct cg_fa_store *st, const struct cg_fa_sub *sub,
                       unsigned page, struct cg_buf *out, bool *more);

/* PUT: validates like Azure (400 with an ARM error in out), stores, and
 * answers 200 (replaced) or 201 (created; 2017 declares 200 only) with the
 * contact as read back. */
int cg_fa_store_put(struct cg_fa_store *st, struct cg_fa_sub *sub,
                    enum cg_fa_ver v, const char *name, const char *body,
                    size_t len, struct cg_buf *out);
/* DELETE: 200 when a contact was removed (2017: 204, the only status its
 * specification declares), 204 when there was none. */
int cg_fa_store_delete(struct cg_fa_store *st, struct cg_fa_sub *sub,
                       enum cg_fa_ver v, const char *name);

/* 2017-08-01-preview PATCH: the sent properties over the contact as 2017
 * shows it, then written as a PUT would (200), or 404 when absent. */
int cg_fa_store_patch(struct cg_fa_store *st, struct cg_fa_sub *sub,
                      const char *name, const char *body, size_t len,
                      struct cg_buf *out);

/* A change made "in the portal": props (borrowed) replaces the canonical
 * contact without API validation; NULL removes it. */
void cg_fa_store_portal_edit(struct cg_fa_store *st, struct cg_fa_sub *sub,
                             const json_t *props);

/* Replaces the raw body answered for (sub, v); NULL restores the model. */
void cg_fa_store_set_raw(struct cg_fa_sub *sub, enum cg_fa_ver v,
                         const char *body);

/* The subscription as ARM shows it in GET /subscriptions. */
json_t *cg_fa_store_sub_json(struct cg_fa_store *st,
                             const struct cg_fa_sub *sub);

/* Writes one JSON line per (subscription, rule) from the scenario table. */
int cg_fa_store_write_truth(struct cg_fa_store *st, const char *path,
                            char *errbuf, size_t errsz);

/*
 * Writes a worker configuration holding every tenant's app: {"azure":
 * {authority_host, resource_manager, ca_file}, "tenants": [{id, name, auth,
 * client_id, client_secret_file}]}; each secret goes into its own file
 * (mode 0600) under PATH.secrets/. With cf->auth "certificate" the tenants
 * name the app certificate and key instead, with "federated" the projected
 * token file. With a multi-tenant app the credentials move to the global
 * `azure.*` keys and the tenants carry only id and name.
 */
struct cg_fa_cred_files {
    const char *auth; /* "secret", "certificate" or "federated" */
    const char *certificate_file, *private_key_file; /* certificate */
    const char *federated_token_file;                /* federated */
};

int cg_fa_store_write_credentials(struct cg_fa_store *st, const char *path,
                                  const char *base_url, const char *ca_file,
                                  const struct cg_fa_cred_files *cf,
                                  char *errbuf, size_t errsz);

#endif
