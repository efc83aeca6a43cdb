/*
 * conf — one table of options for every process, and the tenants.
 *
 * Layering, lowest first: the table's defaults, a JSON config file, the
 * environment (CONTACTGUARD_*), then `--set key=value` flags. Nested objects
 * in the file flatten to dotted keys ({"log":{"level":"debug"}} is
 * `log.level`). Unknown keys are errors that name the key (with file:line
 * for the file). Keys under `kafka.` are not in the table: they pass
 * verbatim to librdkafka. Secret-typed values are never printed: the dump
 * masks them, and every secret value loaded is registered with the logger's
 * scrubber. Secrets are refused on the command line. One rule
 * (cg_conf_is_secret) says what is secret.
 *
 * Tenants come from the file's "tenants" array and/or a JSON-lines file
 * named by `azure.tenants_file`; each may override the global credentials,
 * rules and remediation policy.
 */
#ifndef CG_CONF_H
#define CG_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum cg_conf_type {
    CG_CONF_STR,
    CG_CONF_INT,
    CG_CONF_BOOL,
    CG_CONF_ENUM,
    CG_CONF_SECRET,
};

struct cg_conf_opt {
    const char *name;
    enum cg_conf_type type;
    const char *def;
    long long min, max;  /* CG_CONF_INT */
    const char *choices; /* CG_CONF_ENUM: "a|b|c" */
    const char *help;
};

/* Credentials a tenant (or the global default) uses to get a token. */
enum cg_auth_method {
    CG_AUTH_NONE,
    CG_AUTH_SECRET,
    CG_AUTH_CERTIFICATE,
    CG_AUTH_FEDERATED,
};

enum cg_remediation_mode {
    CG_REMEDIATION_OFF,
    CG_REMEDIATION_DRY_RUN,
    CG_REMEDIATION_APPLY,
};

struct cg_credentials {
    enum cg_auth_method method;
    char *client_id;
    char *client_secret; /* loaded from file or env; secret */
    char *certificate_file;
    char *private_key_file;
    char *assertion_alg; /* "PS256" (default) or "RS256" */
    char *federated_token_file;
};

/* Per-tenant overrides; a NULL string or -1 means "use the global value". */
struct cg_tenant {
    char *id;
    char *name;
    struct cg_credentials cred; /* method NONE: use the global credentials */
    int remediation_mode;       /* enum cg_remediation_mode or -1 */
    char *remediation_emails;   /* ";"-separated, or NULL */
    char *remediation_alert_severity; /* level to ensure: Low..High */
    char *remediation_attack_paths;   /* level to ensure: Low..Critical */
    char *alert_severity_level;
    int alert_severity_exact;
    char *attack_paths_level;
    int require_configured;
};

struct cg_conf;

/* The table (for --help and docs); terminated by a row with name NULL. */
const struct cg_conf_opt *cg_conf_options(void);

/* A configuration holding the defaults. */
struct cg_conf *cg_conf_new(void);
void cg_conf_free(struct cg_conf *conf);

/* Layers; each returns 0 or CG_ECONF with one sentence in errbuf. */
int cg_conf_load_file(struct cg_conf *conf, const char *path, char *errbuf,
                      size_t errsz);
/* env is an envp-style array (NULL: the process environment). */
int cg_conf_load_env(struct cg_conf *conf, char *const *env, char *errbuf,
                     size_t errsz);
int cg_conf_set(struct cg_conf *conf, const char *key, const char *value,
                char *errbuf, size_t errsz);
/* Like cg_conf_set but for "key=value". */
int cg_conf_set_arg(struct cg_conf *conf, const char *kv, char *errbuf,
                    size_t errsz);

/* Resolves credentials (reads secret files and env vars named by the
 * configuration) and checks cross-field rules. Call after all layers. */
int cg_conf_finish(struct cg_conf *conf, char *errbuf, size_t errsz);

/* Typed getters; the key must be in the table (abort otherwise: a typo in
 * our own code, not user input). Strings are borrowed. */
const char *cg_conf_str(const struct cg_conf *conf, const char *key);
long long cg_conf_int(const struct cg_conf *conf, const char *key);
bool cg_conf_bool(const struct cg_conf *conf, const char *key);

/* Kafka pass-through pairs, without the "kafka." prefix, in set order
 * (later sets of a key replace earlier ones). */
size_t cg_conf_kafka_count(const struct cg_conf *conf);
void cg_conf_kafka_get(const struct cg_conf *conf, size_t i, const char **key,
                       const char **value);

/* The tenants. */
size_t cg_conf_tenant_count(const struct cg_conf *conf);
const struct cg_tenant *cg_conf_tenant(const struct cg_conf *conf, size_t i);
/* Tenant by id (case-insensitive), or NULL. */
const struct cg_tenant *cg_conf_tenant_find(const struct cg_conf *conf,
                                            const char *id);
/* The credentials that apply to tenant t (its own or the global ones). */
const struct cg_credentials *
cg_conf_tenant_credentials(const struct cg_conf *conf,
                           const struct cg_tenant *t);

/* Writes the effective configuration as JSON, secrets masked. */
void cg_conf_dump(const struct cg_conf *conf, FILE *out);

/* Writes one help line per option. */
void cg_conf_help(FILE *out);

/* Writes the table of options as a Markdown table (docs/configuration.md
 * holds its output; a test keeps the two equal). */
void cg_conf_markdown(FILE *out);

/*
 * The one rule for secrets, used by the dump (masked), the command line
 * (refused) and the logger's registry: key (a full name such as
 * "redis.password" or "kafka.ssl.key.pem") is an option of type secret, a
 * librdkafka property that carries key material (ssl.key.pem,
 * sasl.oauthbearer.config, sasl.kerberos.keytab), or a name whose last part
 * ends in password, secret, passphrase or key; or value (may be NULL) holds
 * a PEM private key, as the key part of kafka.ssl.certificate.pem does.
 */
bool cg_conf_is_secret(const char *key, const char *value);

/* The name part of the rule for a Kafka property (without "kafka."). */
bool cg_conf_kafka_key_secret(const char *key);

const char *cg_remediation_mode_name(enum cg_remediation_mode m);
int cg_remediation_mode_parse(const char *s, enum cg_remediation_mode *out);

/*
 * --version, shared by every executable: when argv asks for it (before any
 * "--"; not the value of --config or --set), writes "PROGRAM VERSION" (the
 * project version) to out and returns true. Checked before the
 * configuration loads, so it answers whatever the environment holds.
 */
bool cg_conf_version_arg(int argc, char *const *argv, const char *program,
                         FILE *out);

/*
 * Standard command-line handling shared by every executable: consumes
 * --config FILE, --set k=v and --dump-config from argv (shifting the rest
 * down; *argc updated), then loads env and finishes. *dump is set when
 * --dump-config was given. Returns 0 or CG_ECONF.
 */
int cg_conf_from_args(struct cg_conf *conf, int *argc, char **argv, bool *dump,
                      char *errbuf, size_t errsz);

#endif
