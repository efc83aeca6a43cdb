#include "conf.h"

#include "err.h"
#include "json.h"
#include "log.h"
#include "mem.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONF_ENV_PREFIX  "CONTACTGUARD_"
#define CONF_SECRET_MAX  (16 * 1024)
#define CONF_TENANTS_MAX 1000000
#define CONF_FILE_MAX    (256 * 1024 * 1024)

#define SEVERITIES "Low|Medium|High"
#define RISKS      "Low|Medium|High|Critical"

static const struct cg_conf_opt conf_table[] = {
    { "log.level", CG_CONF_ENUM, "info", 0, 0, "debug|info|warn|error|off",
      "least severe log level written" },
    { "log.format", CG_CONF_ENUM, "text", 0, 0, "text|json",
      "log line format on stderr" },

    { "azure.authority_host", CG_CONF_STR, "https://login.microsoftonline.com",
      0, 0, NULL, "Entra ID authority (sovereign clouds use another)" },
    { "azure.resource_manager", CG_CONF_STR, "https://management.azure.com", 0,
      0, NULL, "Azure Resource Manager endpoint" },
    { "azure.scope", CG_CONF_STR, "", 0, 0, NULL,
      "token scope (default: resource_manager + /.default)" },
    { "azure.api_version", CG_CONF_ENUM, "2023-12-01-preview", 0, 0,
      "2017-08-01-preview|2020-01-01-preview|2023-12-01-preview",
      "securityContacts api-version read first" },
    { "azure.ca_file", CG_CONF_STR, "", 0, 0, NULL,
      "extra CA bundle for TLS (private CAs, the fake Azure)" },
    { "azure.timeout_ms", CG_CONF_INT, "30000", 100, 600000, NULL,
      "timeout of one HTTP request" },
    { "azure.max_body", CG_CONF_INT, "4194304", 1024, 268435456, NULL,
      "largest response body accepted, bytes" },
    { "azure.tenant_max_in_flight", CG_CONF_INT, "32", 1, 10000, NULL,
      "ARM requests in flight per tenant" },
    { "azure.client_id", CG_CONF_STR, "", 0, 0, NULL,
      "default application (client) id for every tenant" },
    { "azure.auth", CG_CONF_ENUM, "secret", 0, 0,
      "secret|certificate|federated", "default credential type" },
    { "azure.client_secret_file", CG_CONF_STR, "", 0, 0, NULL,
      "file holding the default client secret" },
    { "azure.client_secret_env", CG_CONF_STR, "", 0, 0, NULL,
      "environment variable holding the default client secret" },
    { "azure.certificate_file", CG_CONF_STR, "", 0, 0, NULL,
      "PEM certificate of the default app" },
    { "azure.private_key_file", CG_CONF_STR, "", 0, 0, NULL,
      "PEM private key of the default app" },
    { "azure.assertion_alg", CG_CONF_ENUM, "PS256", 0, 0, "PS256|RS256",
      "signature of certificate assertions (PS256 x5t#S256, RS256 x5t)" },
    { "azure.federated_token_file", CG_CONF_STR, "", 0, 0, NULL,
      "projected token for workload identity (default: "
      "$AZURE_FEDERATED_TOKEN_FILE)" },
    { "azure.tenants_file", CG_CONF_STR, "", 0, 0, NULL,
      "JSON-lines file of tenants (one object per line)" },

    { "topics.jobs", CG_CONF_STR, "contactguard.jobs", 0, 0, NULL,
      "scan jobs topic" },
    { "topics.results", CG_CONF_STR, "contactguard.results", 0, 0, NULL,
      "findings topic the SIEM reads" },
    { "topics.dead_letter", CG_CONF_STR, "contactguard.jobs.dlq", 0, 0, NULL,
      "undecodable jobs with their reason" },
    { "topics.events", CG_CONF_STR, "contactguard.events", 0, 0, NULL,
      "Azure events (Event Grid or CloudEvents) the producer listens to" },

    { "redis.host", CG_CONF_STR, "127.0.0.1", 0, 0, NULL, "Redis host" },
    { "redis.port", CG_CONF_INT, "6379", 0, 65535, NULL, "Redis port" },
    { "redis.username", CG_CONF_STR, "", 0, 0, NULL,
      "Redis ACL user (empty: AUTH with the password alone)" },
    { "redis.password", CG_CONF_SECRET, "", 0, 0, NULL,
      "Redis AUTH password (Azure: access key or Entra token)" },
    { "redis.db", CG_CONF_INT, "0", 0, 1024, NULL, "Redis database" },
    { "redis.prefix", CG_CONF_STR, "cg:", 0, 0, NULL, "key prefix" },
    { "redis.ttl", CG_CONF_INT, "604800", 60, 31536000, NULL,
      "lifetime of cached findings, seconds" },
    { "redis.timeout_ms", CG_CONF_INT, "2000", 10, 60000, NULL,
      "connect and command timeout" },
    { "redis.queue_max", CG_CONF_INT, "10000", 1, 1000000, NULL,
      "cache requests waiting for Redis before writes are dropped" },
    { "redis.tls", CG_CONF_BOOL, "false", 0, 0, NULL,
      "TLS to Redis (Azure Cache for Redis: port 6380); never falls back" },
    { "redis.tls_ca_file", CG_CONF_STR, "", 0, 0, NULL,
      "CA bundle that signs the Redis certificate (empty: system CAs)" },
    { "redis.tls_server_name", CG_CONF_STR, "", 0, 0, NULL,
      "name the Redis certificate must carry (empty: redis.host)" },
    { "redis.tls_cert_file", CG_CONF_STR, "", 0, 0, NULL,
      "PEM client certificate, when Redis asks for one" },
    { "redis.tls_key_file", CG_CONF_STR, "", 0, 0, NULL,
      "PEM private key of redis.tls_cert_file" },

    { "rules.alert_severity.level", CG_CONF_ENUM, "High", 0, 0, SEVERITIES,
      "least inclusive minimal severity that passes" },
    { "rules.alert_severity.exact", CG_CONF_BOOL, "false", 0, 0, NULL,
      "pass only a minimal severity equal to the level (CIS 1.x-3.0)" },
    { "rules.attack_paths.level", CG_CONF_ENUM, "High", 0, 0, RISKS,
      "least inclusive minimal risk level that passes" },
    { "rules.additional_emails.require_configured", CG_CONF_BOOL, "false", 0, 0,
      NULL, "also fail when a tenant's configured address is missing" },
    { "rules.owner_reachable.enabled", CG_CONF_BOOL, "true", 0, 0, NULL,
      "read role assignments: a user must hold Owner (one more ARM read "
      "per job)" },
    { "rules.owner_reachable.count_groups", CG_CONF_BOOL, "false", 0, 0, NULL,
      "an Owner assignment to a group also reaches someone" },

    { "output.format", CG_CONF_ENUM, "ocsf", 0, 0, "ocsf|compact",
      "findings format on the results topic" },
    { "output.ocsf_version", CG_CONF_ENUM, "1.1.0", 0, 0, "1.1.0|1.4.0",
      "OCSF version of findings and remediation events (common/ocsf.h)" },

    { "worker.max_in_flight", CG_CONF_INT, "256", 1, 10000, NULL,
      "HTTP requests to Azure in flight" },
    { "worker.max_jobs", CG_CONF_INT, "1000", 1, 100000, NULL,
      "jobs in flight before the consumer stops polling" },
    { "worker.job_deadline_ms", CG_CONF_INT, "120000", 1000, 3600000, NULL,
      "time a job may spend retrying before it yields ERROR findings" },
    { "worker.drain_timeout_ms", CG_CONF_INT, "30000", 0, 600000, NULL,
      "time in-flight jobs get on shutdown" },
    { "worker.metrics_listen", CG_CONF_STR, "127.0.0.1:9464", 0, 0, NULL,
      "address of /metrics, /livez, /readyz (empty: off)" },
    { "worker.read_bucket", CG_CONF_INT, "250", 1, 100000, NULL,
      "ARM read bucket size per subscription and principal" },
    { "worker.read_refill", CG_CONF_INT, "25", 1, 100000, NULL,
      "ARM read bucket refill per second" },
    { "worker.write_bucket", CG_CONF_INT, "200", 1, 100000, NULL,
      "ARM write bucket size" },
    { "worker.write_refill", CG_CONF_INT, "10", 1, 100000, NULL,
      "ARM write bucket refill per second" },

    { "producer.min_rescan_interval", CG_CONF_INT, "3600", 0, 31536000, NULL,
      "seconds a scanned subscription is left alone by sweeps" },
    { "producer.tenant_concurrency", CG_CONF_INT, "16", 1, 1024, NULL,
      "tenants listed at once" },
    { "producer.watch_interval", CG_CONF_INT, "300", 1, 86400, NULL,
      "seconds between tenant re-listings in watch mode" },
    { "producer.debounce_ms", CG_CONF_INT, "5000", 0, 3600000, NULL,
      "events for one subscription within this window make one job" },
    { "producer.webhook_listen", CG_CONF_STR, "127.0.0.1:8088", 0, 0, NULL,
      "address of the Event Grid webhook receiver" },
    { "producer.webhook_secret", CG_CONF_SECRET, "", 0, 0, NULL,
      "shared secret a webhook delivery must carry" },
    { "producer.webhook_max_body", CG_CONF_INT, "1048576", 1024, 67108864, NULL,
      "largest webhook body accepted, bytes" },

    { "remediation.mode", CG_CONF_ENUM, "off", 0, 0, "off|dry-run|apply",
      "default remediation mode of every tenant" },
    { "remediation.emails", CG_CONF_STR, "", 0, 0, NULL,
      "security addresses to add (;-separated)" },
    { "remediation.alert_severity", CG_CONF_ENUM, "High", 0, 0, SEVERITIES,
      "alert severity level to ensure" },
    { "remediation.attack_paths", CG_CONF_ENUM, "High", 0, 0, RISKS,
      "attack path risk level to ensure" },
    { "remediation.retention", CG_CONF_INT, "2592000", 60, 315360000, NULL,
      "seconds a previous body is kept for undo" },
    { "remediation.lock_ttl_ms", CG_CONF_INT, "60000", 1000, 3600000, NULL,
      "expiry of the per-subscription write lock" },

    { NULL, 0, NULL, 0, 0, NULL, NULL },
};

struct conf_kv {
    char *key;
    char *value;
};

struct cg_conf {
    char *values[sizeof(conf_table) / sizeof(conf_table[0])];
    struct conf_kv *kafka;
    size_t nkafka;
    struct cg_credentials cred;
    struct cg_tenant *tenants;
    size_t ntenants;
};

const struct cg_conf_opt *cg_conf_options(void)
{
    return conf_table;
}

static int conf_index(const char *key)
{
    for (int i = 0; conf_table[i].name; i++)
        if (strcmp(conf_table[i].name, key) == 0)
            return i;
    return -1;
}

struct cg_conf *cg_conf_new(void)
{
    struct cg_conf *conf = cg_calloc(1, sizeof(*conf));
    for (int i = 0; conf_table[i].name; i++)
        conf->values[i] = cg_strdup(conf_table[i].def);
    return conf;
}

static void cred_free(struct cg_credentials *c)
{
    free(c->client_id);
    free(c->client_secret);
    free(c->certificate_file);
    free(c->private_key_file);
    free(c->assertion_alg);
    free(c->federated_token_file);
    memset(c, 0, sizeof(*c));
}

static void tenant_free(struct cg_tenant *t)
{
    free(t->id);
    free(t->name);
    cred_free(&t->cred);
    free(t->remediation_emails);
    free(t->remediation_alert_severity);
    free(t->remediation_attack_paths);
    free(t->alert_severity_level);
    free(t->attack_paths_level);
}

void cg_conf_free(struct cg_conf *conf)
{
    if (!conf)
        return;
    for (int i = 0; conf_table[i].name; i++)
        free(conf->values[i]);
    for (size_t i = 0; i < conf->nkafka; i++) {
        free(conf->kafka[i].key);
        free(conf->kafka[i].value);
    }
    free(conf->kafka);
    cred_free(&conf->cred);
    for (size_t i = 0; i < conf->ntenants; i++)
        tenant_free(&conf->tenants[i]);
    free(conf->tenants);
    free(conf);
}

/*
 * The one rule for secret settings. A name is secret when its last part
 * ends in password, secret, passphrase or key (redis.password,
 * kafka.sasl.oauthbearer.client.secret, kafka.ssl.keystore.password), or
 * when it is one of librdkafka's properties that carry key material under
 * another name. A value is secret wherever it holds a PEM private key (the
 * key part of kafka.ssl.certificate.pem, or a key pasted anywhere else).
 */
static const char *const kafka_secret_names[] = {
    "ssl.key.pem",             /* the private key itself */
    "sasl.oauthbearer.config", /* may hold clientSecret=... */
    "sasl.kerberos.keytab",    /* the keytab holds long-term keys */
    NULL,
};

static bool name_secret(const char *name)
{
    static const char *const suffixes[] = { "password", "secret", "passphrase",
                                            "key", NULL };
    const char *last = strrchr(name, '.');
    last = last ? last + 1 : name;
    size_t n = strlen(last);
    for (int i = 0; suffixes[i]; i++) {
        size_t sl = strlen(suffixes[i]);
        if (n >= sl && strcasecmp(last + n - sl, suffixes[i]) == 0)
            return true;
    }
    return false;
}

static bool value_secret(const char *value)
{
    return value && strstr(value, "-----BEGIN ") &&
           strstr(value, "PRIVATE KEY-----");
}

bool cg_conf_kafka_key_secret(const char *key)
{
    for (int i = 0; kafka_secret_names[i]; i++)
        if (strcasecmp(key, kafka_secret_names[i]) == 0)
            return true;
    return name_secret(key);
}

bool cg_conf_is_secret(const char *key, const char *value)
{
    if (strncmp(key, "kafka.", 6) == 0)
        return cg_conf_kafka_key_secret(key + 6) || value_secret(value);
    int i = conf_index(key);
    return (i >= 0 && conf_table[i].type == CG_CONF_SECRET) ||
           name_secret(key) || value_secret(value);
}

static bool choice_ok(const char *choices, const char *v, char *canon,
                      size_t canonsz)
{
    const char *p = choices;
    size_t vl = strlen(v);
    while (*p) {
        const char *e = strchr(p, '|');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == vl && strncasecmp(p, v, n) == 0) {
            if (n < canonsz) {
                memcpy(canon, p, n);
                canon[n] = '\0';
            }
            return true;
        }
        p += n + (e ? 1 : 0);
    }
    return false;
}

static int parse_bool(const char *v, bool *out)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") ||
        !strcasecmp(v, "on"))
        *out = true;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0") ||
             !strcasecmp(v, "no") || !strcasecmp(v, "off"))
        *out = false;
    else
        return CG_EINVAL;
    return 0;
}

static int parse_ll(const char *v, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        return CG_EINVAL;
    *out = n;
    return 0;
}

static void kafka_put(struct cg_conf *conf, const char *key, const char *value)
{
    for (size_t i = 0; i < conf->nkafka; i++) {
        if (strcmp(conf->kafka[i].key, key) == 0) {
            free(conf->kafka[i].value);
            conf->kafka[i].value = cg_strdup(value);
            return;
        }
    }
    conf->kafka =
        cg_realloc(conf->kafka, (conf->nkafka + 1) * sizeof(*conf->kafka));
    conf->kafka[conf->nkafka].key = cg_strdup(key);
    conf->kafka[conf->nkafka].value = cg_strdup(value);
    conf->nkafka++;
    if (cg_conf_kafka_key_secret(key) || value_secret(value))
        cg_log_secret(value);
}

/* Validates and stores one value; `where` prefixes the error sentence. */
static int conf_put(struct cg_conf *conf, const char *key, const char *value,
                    const char *where, char *errbuf, size_t errsz)
{
    if (strncmp(key, "kafka.", 6) == 0 && key[6]) {
        kafka_put(conf, key + 6, value);
        return 0;
    }
    int i = conf_index(key);
    if (i < 0)
        return cg_err_set(errbuf, errsz, CG_ECONF, "%sunknown key '%s'", where,
                          key);
    const struct cg_conf_opt *o = &conf_table[i];
    char canon[64];
    long long n;
    bool b;
    switch (o->type) {
    case CG_CONF_INT:
        if (parse_ll(value, &n) || n < o->min || n > o->max)
            return cg_err_set(errbuf, errsz, CG_ECONF,
                              "%s%s: '%s' is not an integer in [%lld, %lld]",
                              where, key, value, o->min, o->max);
        break;
    case CG_CONF_BOOL:
        if (parse_bool(value, &b))
            return cg_err_set(errbuf, errsz, CG_ECONF,
                              "%s%s: '%s' is not true or false", where, key,
                              value);
        value = b ? "true" : "false";
        break;
    case CG_CONF_ENUM:
        if (!choice_ok(o->choices, value, canon, sizeof(canon)))
            return cg_err_set(errbuf, errsz, CG_ECONF,
                              "%s%s: '%s' is not one of %s", where, key, value,
                              o->choices);
        value = canon;
        break;
    case CG_CONF_SECRET:
        cg_log_secret(value);
        break;
    case CG_CONF_STR:
        break;
    }
    free(conf->values[i]);
    conf->values[i] = cg_strdup(value);
    return 0;
}

int cg_conf_set(struct cg_conf *conf, const char *key, const char *value,
                char *errbuf, size_t errsz)
{
    return conf_put(conf, key, value, "", errbuf, errsz);
}

int cg_conf_set_arg(struct cg_conf *conf, const char *kv, char *errbuf,
                    size_t errsz)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "--set takes key=value, got '%s'", kv);
    char *key = cg_strndup(kv, (size_t)(eq - kv));
    int rc;
    if (cg_conf_is_secret(key, eq + 1))
        rc = cg_err_set(errbuf, errsz, CG_ECONF,
                        "%s is a secret: set it in the config file or the "
                        "environment, never on the command line",
                        key);
    else
        rc = conf_put(conf, key, eq + 1, "--set: ", errbuf, errsz);
    free(key);
    return rc;
}

/* CONTACTGUARD_LOG_LEVEL names log.level: upper case, dots to underscores. */
static void env_name(const char *key, char *out, size_t outsz)
{
    size_t n = cg_strlcpy(out, CONF_ENV_PREFIX, outsz);
    for (const char *p = key; *p && n + 1 < outsz; p++)
        out[n++] =
            (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
    out[n < outsz ? n : outsz - 1] = '\0';
}

int cg_conf_load_env(struct cg_conf *conf, char *const *env, char *errbuf,
                     size_t errsz)
{
    char name[128];
    for (int i = 0; conf_table[i].name; i++) {
        env_name(conf_table[i].name, name, sizeof(name));
        const char *v = NULL;
        if (env) {
            size_t nl = strlen(name);
            for (char *const *e = env; *e; e++)
                if (strncmp(*e, name, nl) == 0 && (*e)[nl] == '=')
                    v = *e + nl + 1;
        } else {
            v = getenv(name);
        }
        if (!v)
            continue;
        char where[160];
        snprintf(where, sizeof(where), "environment %s: ", name);
        int rc = conf_put(conf, conf_table[i].name, v, where, errbuf, errsz);
        if (rc)
            return rc;
    }
    /* The one Kafka property every deployment sets. */
    const char *bs = NULL;
    const char *bsname = CONF_ENV_PREFIX "KAFKA_BOOTSTRAP_SERVERS";
    if (env) {
        size_t nl = strlen(bsname);
        for (char *const *e = env; *e; e++)
            if (strncmp(*e, bsname, nl) == 0 && (*e)[nl] == '=')
                bs = *e + nl + 1;
    } else {
        bs = getenv(bsname);
    }
    if (bs)
        kafka_put(conf, "bootstrap.servers", bs);
    return 0;
}

/* The line on which "key" first appears in text: good enough to point a
 * person at the offending entry. */
static int key_line(const char *text, const char *leaf)
{
    char pat[256];
    snprintf(pat, sizeof(pat), "\"%s\"", leaf);
    const char *p = text ? strstr(text, pat) : NULL;
    if (!p)
        return 0;
    int line = 1;
    for (const char *q = text; q < p; q++)
        if (*q == '\n')
            line++;
    return line;
}

static int scalar_string(const json_t *v, char *out, size_t outsz)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        cg_strlcpy(out, json_string_value(v), outsz);
        return 0;
    case JSON_INTEGER:
        snprintf(out, outsz, "%lld", (long long)json_integer_value(v));
        return 0;
    case JSON_REAL:
        snprintf(out, outsz, "%g", json_real_value(v));
        return 0;
    case JSON_TRUE:
        cg_strlcpy(out, "true", outsz);
        return 0;
    case JSON_FALSE:
        cg_strlcpy(out, "false", outsz);
        return 0;
    default:
        return CG_EINVAL;
    }
}

static char *read_small_file(const char *path, size_t max, char *errbuf,
                             size_t errsz)
{
    struct cg_buf b;
    cg_buf_init(&b, max);
    if (cg_buf_read_file(&b, path, errbuf, errsz)) {
        cg_buf_free(&b);
        return NULL; /* the sentence names the file and the cause */
    }
    return cg_buf_take(&b);
}

static char *opt_str(const json_t *o, const char *key)
{
    const char *s = cg_json_str(o, key);
    return s && *s ? cg_strdup(s) : NULL;
}

static int parse_cred(const json_t *o, struct cg_credentials *c,
                      const char *where, char *errbuf, size_t errsz)
{
    const char *auth = cg_json_str(o, "auth");
    c->client_id = opt_str(o, "client_id");
    c->certificate_file = opt_str(o, "certificate_file");
    c->private_key_file = opt_str(o, "private_key_file");
    c->assertion_alg = opt_str(o, "assertion_alg");
    c->federated_token_file = opt_str(o, "federated_token_file");
    if (cg_json_member(o, "client_secret"))
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "%s: client_secret may not be written in the "
                          "configuration; use client_secret_file or "
                          "client_secret_env",
                          where);
    const char *sf = cg_json_str(o, "client_secret_file");
    const char *se = cg_json_str(o, "client_secret_env");
    if (sf && *sf) {
        char *s = read_small_file(sf, CONF_SECRET_MAX, errbuf, errsz);
        if (!s)
            return CG_ECONF;
        s[strcspn(s, "\r\n")] = '\0';
        c->client_secret = s;
    } else if (se && *se) {
        const char *v = getenv(se);
        if (v)
            c->client_secret = cg_strdup(v);
    }
    if (c->client_secret)
        cg_log_secret(c->client_secret);
    if (!auth) {
        c->method = c->client_secret          ? CG_AUTH_SECRET
                    : c->certificate_file     ? CG_AUTH_CERTIFICATE
                    : c->federated_token_file ? CG_AUTH_FEDERATED
                                              : CG_AUTH_NONE;
    } else if (!strcasecmp(auth, "secret")) {
        c->method = CG_AUTH_SECRET;
    } else if (!strcasecmp(auth, "certificate")) {
        c->method = CG_AUTH_CERTIFICATE;
    } else if (!strcasecmp(auth, "federated")) {
        c->method = CG_AUTH_FEDERATED;
    } else {
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "%s: auth '%s' is not secret, certificate or "
                          "federated",
                          where, auth);
    }
    if (c->assertion_alg && strcasecmp(c->assertion_alg, "PS256") &&
        strcasecmp(c->assertion_alg, "RS256"))
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "%s: assertion_alg must be PS256 or RS256", where);
    return 0;
}

static const char *const tenant_keys[] = { "id",
                                           "tenant_id",
                                           "name",
                                           "auth",
                                           "client_id",
                                           "client_secret",
                                           "client_secret_file",
                                           "client_secret_env",
                                           "certificate_file",
                                           "private_key_file",
                                           "assertion_alg",
                                           "federated_token_file",
                                           "remediation",
                                           "rules",
                                           NULL };

static int parse_tenant(struct cg_conf *conf, const json_t *o,
                        const char *where, char *errbuf, size_t errsz)
{
    if (!json_is_object(o))
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "%s: a tenant must be an object", where);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        bool known = false;
        for (int i = 0; tenant_keys[i]; i++)
            known = known || strcmp(k, tenant_keys[i]) == 0;
        if (!known)
            return cg_err_set(errbuf, errsz, CG_ECONF,
                              "%s: unknown tenant key '%s'", where, k);
    }
    const char *id = cg_json_str(o, "id");
    if (!id)
        id = cg_json_str(o, "tenant_id");
    if (!id || !*id)
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "%s: a tenant needs an \"id\"", where);
    if (conf->ntenants >= CONF_TENANTS_MAX)
        return cg_err_set(errbuf, errsz, CG_ECONF, "%s: too many tenants",
                          where);
    conf->tenants = cg_realloc(conf->tenants,
                               (conf->ntenants + 1) * sizeof(*conf->tenants));
    struct cg_tenant *t = &conf->tenants[conf->ntenants++];
    memset(t, 0, sizeof(*t));
    t->id = cg_strdup(id);
    t->name = opt_str(o, "name");
    t->remediation_mode = -1;
    t->alert_severity_exact = -1;
    t->require_configured = -1;
    int rc = parse_cred(o, &t->cred, where, errbuf, errsz);
    if (rc)
        return rc;

    json_t *rem = cg_json_member(o, "remediation");
    if (rem) {
        const char *mode = cg_json_str(rem, "mode");
        enum cg_remediation_mode m;
        if (mode) {
            if (cg_remediation_mode_parse(mode, &m))
                return cg_err_set(errbuf, errsz, CG_ECONF,
                                  "%s: remediation.mode '%s' is not off, "
                                  "dry-run or apply",
                                  where, mode);
            t->remediation_mode = (int)m;
        }
        json_t *em = cg_json_member(rem, "emails");
        if (json_is_array(em)) {
            struct cg_buf b;
            cg_buf_init(&b, 64 * 1024);
            size_t i;
            json_t *e;
            json_array_foreach(em, i, e)
            {
                if (json_is_string(e)) {
                    if (b.len)
                        cg_buf_puts(&b, ";");
                    cg_buf_puts(&b, json_string_value(e));
                }
            }
            t->remediation_emails = cg_buf_take(&b);
        } else if (json_is_string(em)) {
            t->remediation_emails = cg_strdup(json_string_value(em));
        }
        char canon[16];
        const char *sev = cg_json_str(rem, "alert_severity");
        if (sev) {
            if (!choice_ok(SEVERITIES, sev, canon, sizeof(canon)))
                return cg_err_set(errbuf, errsz, CG_ECONF,
                                  "%s: remediation.alert_severity '%s' is "
                                  "not %s",
                                  where, sev, SEVERITIES);
            t->remediation_alert_severity = cg_strdup(canon);
        }
        const char *risk = cg_json_str(rem, "attack_paths");
        if (risk) {
            if (!choice_ok(RISKS, risk, canon, sizeof(canon)))
                return cg_err_set(errbuf, errsz, CG_ECONF,
                                  "%s: remediation.attack_paths '%s' is "
                                  "not %s",
                                  where, risk, RISKS);
            t->remediation_attack_paths = cg_strdup(canon);
        }
    }
    json_t *rules = cg_json_member(o, "rules");
    if (rules) {
        char canon[16];
        const char *lvl = cg_json_str(rules, "alert_severity.level");
        if (lvl) {
            if (!choice_ok(SEVERITIES, lvl, canon, sizeof(canon)))
                return cg_err_set(errbuf, errsz, CG_ECONF,
                                  "%s: alert_severity.level '%s' is not %s",
                                  where, lvl, SEVERITIES);
            t->alert_severity_level = cg_strdup(canon);
        }
        lvl = cg_json_str(rules, "attack_paths.level");
        if (lvl) {
            if (!choice_ok(RISKS, lvl, canon, sizeof(canon)))
                return cg_err_set(errbuf, errsz, CG_ECONF,
                                  "%s: attack_paths.level '%s' is not %s",
                                  where, lvl, RISKS);
            t->attack_paths_level = cg_strdup(canon);
        }
        bool b;
        if (cg_json_bool(rules, "alert_severity.exact", &b) == CG_JSON_OK)
            t->alert_severity_exact = b;
        if (cg_json_bool(rules, "additional_emails.require_configured", &b) ==
            CG_JSON_OK)
            t->require_configured = b;
    }
    return 0;
}

static int load_tenants_file(struct cg_conf *conf, const char *path,
                             char *errbuf, size_t errsz)
{
    char *text = read_small_file(path, CONF_FILE_MAX, errbuf, errsz);
    if (!text)
        return CG_ECONF;
    int rc = 0, line = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l && !rc;
         l = strtok_r(NULL, "\n", &save)) {
        line++;
        while (isspace((unsigned char)*l))
            l++;
        if (!*l || *l == '#')
            continue;
        char where[512], jerr[200];
        snprintf(where, sizeof(where), "%s:%d", path, line);
        json_t *o = cg_json_parse(l, strlen(l), jerr, sizeof(jerr));
        if (!o) {
            rc = cg_err_set(errbuf, errsz, CG_ECONF, "%s: %s", where, jerr);
            break;
        }
        rc = parse_tenant(conf, o, where, errbuf, errsz);
        json_decref(o);
    }
    free(text);
    return rc;
}

static int flatten(struct cg_conf *conf, const json_t *obj, const char *prefix,
                   const char *path, const char *text, char *errbuf,
                   size_t errsz)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        char key[256], where[512], sval[4096];
        snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", k);
        snprintf(where, sizeof(where), "%s:%d: ", path, key_line(text, k));
        int rc;
        if (!*prefix && strcmp(k, "tenants") == 0) {
            if (!json_is_array(v))
                return cg_err_set(errbuf, errsz, CG_ECONF,
                                  "%s\"tenants\" must be an array", where);
            size_t i;
            json_t *t;
            json_array_foreach(v, i, t)
            {
                char tw[600];
                snprintf(tw, sizeof(tw), "%stenants[%zu]", where, i);
                rc = parse_tenant(conf, t, tw, errbuf, errsz);
                if (rc)
                    return rc;
            }
            continue;
        }
        if (!*prefix && strcmp(k, "credentials") == 0) {
            char cw[600];
            snprintf(cw, sizeof(cw), "%scredentials", where);
            cred_free(&conf->cred);
            rc = parse_cred(v, &conf->cred, cw, errbuf, errsz);
            if (rc)
                return rc;
            continue;
        }
        if (json_is_object(v)) {
            rc = flatten(conf, v, key, path, text, errbuf, errsz);
        } else if (scalar_string(v, sval, sizeof(sval)) == 0) {
            rc = conf_put(conf, key, sval, where, errbuf, errsz);
        } else {
            rc = cg_err_set(errbuf, errsz, CG_ECONF,
                            "%s%s: expected a string, number or boolean", where,
                            key);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int cg_conf_load_file(struct cg_conf *conf, const char *path, char *errbuf,
                      size_t errsz)
{
    char *text = read_small_file(path, CONF_FILE_MAX, errbuf, errsz);
    if (!text)
        return CG_ECONF;
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    int rc;
    if (!root)
        rc = cg_err_set(errbuf, errsz, CG_ECONF, "%s:%d:%d: %s", path, je.line,
                        je.column, je.text);
    else if (!json_is_object(root))
        rc = cg_err_set(errbuf, errsz, CG_ECONF,
                        "%s: the configuration must be a JSON object", path);
    else
        rc = flatten(conf, root, "", path, text, errbuf, errsz);
    json_decref(root);
    free(text);
    return rc;
}

int cg_conf_finish(struct cg_conf *conf, char *errbuf, size_t errsz)
{
    /* The global credentials from the flat azure.* keys, unless the file
     * gave a "credentials" object. */
    if (conf->cred.method == CG_AUTH_NONE && !conf->cred.client_id) {
        json_t *o = json_object();
        const char *map[][2] = {
            { "client_id", "azure.client_id" },
            { "client_secret_file", "azure.client_secret_file" },
            { "client_secret_env", "azure.client_secret_env" },
            { "certificate_file", "azure.certificate_file" },
            { "private_key_file", "azure.private_key_file" },
            { "assertion_alg", "azure.assertion_alg" },
            { "federated_token_file", "azure.federated_token_file" },
        };
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
            const char *v = cg_conf_str(conf, map[i][1]);
            if (*v)
                json_object_set_new(o, map[i][0], json_string(v));
        }
        if (!*cg_conf_str(conf, "azure.federated_token_file")) {
            const char *f = getenv("AZURE_FEDERATED_TOKEN_FILE");
            if (f && *f)
                json_object_set_new(o, "federated_token_file", json_string(f));
        }
        if (json_object_size(o) > 0 && cg_json_str(o, "client_id"))
            json_object_set_new(o, "auth",
                                json_string(cg_conf_str(conf, "azure.auth")));
        int rc = parse_cred(o, &conf->cred, "azure", errbuf, errsz);
        json_decref(o);
        if (rc)
            return rc;
    }
    const char *tf = cg_conf_str(conf, "azure.tenants_file");
    if (*tf) {
        int rc = load_tenants_file(conf, tf, errbuf, errsz);
        if (rc)
            return rc;
    }
    return 0;
}

static const struct cg_conf_opt *conf_opt(const char *key, int *idx)
{
    int i = conf_index(key);
    if (i < 0) {
        fprintf(stderr, "contactguard: internal error: no option '%s'\n", key);
        abort();
    }
    *idx = i;
    return &conf_table[i];
}

const char *cg_conf_str(const struct cg_conf *conf, const char *key)
{
    int i;
    conf_opt(key, &i);
    return conf->values[i];
}

long long cg_conf_int(const struct cg_conf *conf, const char *key)
{
    int i;
    conf_opt(key, &i);
    long long n = 0;
    parse_ll(conf->values[i], &n);
    return n;
}

bool cg_conf_bool(const struct cg_conf *conf, const char *key)
{
    int i;
    conf_opt(key, &i);
    bool b = false;
    parse_bool(conf->values[i], &b);
    return b;
}

size_t cg_conf_kafka_count(const struct cg_conf *conf)
{
    return conf->nkafka;
}

void cg_conf_kafka_get(const struct cg_conf *conf, size_t i, const char **key,
                       const char **value)
{
    *key = conf->kafka[i].key;
    *value = conf->kafka[i].value;
}

size_t cg_conf_tenant_count(const struct cg_conf *conf)
{
    return conf->ntenants;
}

const struct cg_tenant *cg_conf_tenant(const struct cg_conf *conf, size_t i)
{
    return i < conf->ntenants ? &conf->tenants[i] : NULL;
}

const struct cg_tenant *cg_conf_tenant_find(const struct cg_conf *conf,
                                            const char *id)
{
    for (size_t i = 0; i < conf->ntenants; i++)
        if (strcasecmp(conf->tenants[i].id, id) == 0)
            return &conf->tenants[i];
    return NULL;
}

const struct cg_credentials *
cg_conf_tenant_credentials(const struct cg_conf *conf,
                           const struct cg_tenant *t)
{
    if (t && t->cred.method != CG_AUTH_NONE) {
        return &t->cred;
    }
    return &conf->cred;
}

static const char *const auth_names[] = { "none", "secret", "certificate",
                                          "federated" };

static json_t *cred_json(const struct cg_credentials *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "auth", json_string(auth_names[c->method]));
    if (c->client_id)
        json_object_set_new(o, "client_id", json_string(c->client_id));
    if (c->client_secret)
        json_object_set_new(o, "client_secret", json_string("***"));
    if (c->certificate_file)
        json_object_set_new(o, "certificate_file",
                            json_string(c->certificate_file));
    if (c->private_key_file)
        json_object_set_new(o, "private_key_file",
                            json_string(c->private_key_file));
    if (c->assertion_alg)
        json_object_set_new(o, "assertion_alg", json_string(c->assertion_alg));
    if (c->federated_token_file)
        json_object_set_new(o, "federated_token_file",
                            json_string(c->federated_token_file));
    return o;
}

void cg_conf_dump(const struct cg_conf *conf, FILE *out)
{
    json_t *root = json_object();
    for (int i = 0; conf_table[i].name; i++) {
        const char *v = conf->values[i];
        if (conf_table[i].type == CG_CONF_SECRET && *v)
            v = "***";
        json_object_set_new(root, conf_table[i].name, json_string(v));
    }
    for (size_t i = 0; i < conf->nkafka; i++) {
        char key[256];
        snprintf(key, sizeof(key), "kafka.%s", conf->kafka[i].key);
        const char *v = cg_conf_is_secret(key, conf->kafka[i].value)
                            ? "***"
                            : conf->kafka[i].value;
        json_object_set_new(root, key, json_string(v));
    }
    json_object_set_new(root, "credentials", cred_json(&conf->cred));
    json_t *ts = json_array();
    for (size_t i = 0; i < conf->ntenants; i++) {
        const struct cg_tenant *t = &conf->tenants[i];
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(t->id));
        if (t->name)
            json_object_set_new(o, "name", json_string(t->name));
        if (t->cred.method != CG_AUTH_NONE)
            json_object_set_new(o, "credentials", cred_json(&t->cred));
        if (t->remediation_mode >= 0)
            json_object_set_new(
                o, "remediation.mode",
                json_string(cg_remediation_mode_name(t->remediation_mode)));
        if (t->remediation_emails)
            json_object_set_new(o, "remediation.emails",
                                json_string(t->remediation_emails));
        if (t->remediation_alert_severity)
            json_object_set_new(o, "remediation.alert_severity",
                                json_string(t->remediation_alert_severity));
        if (t->remediation_attack_paths)
            json_object_set_new(o, "remediation.attack_paths",
                                json_string(t->remediation_attack_paths));
        json_array_append_new(ts, o);
    }
    json_object_set_new(root, "tenants", ts);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    /* A last line of defence: nothing registered as secret leaves here. */
    cg_log_scrub(s);
    fprintf(out, "%s\n", s);
    free(s);
    json_decref(root);
}

void cg_conf_help(FILE *out)
{
    char env[128];
    for (int i = 0; conf_table[i].name; i++) {
        const struct cg_conf_opt *o = &conf_table[i];
        env_name(o->name, env, sizeof(env));
        fprintf(out, "  %-44s %s (default \"%s\"%s%s; env %s)\n", o->name,
                o->help, o->def, o->choices ? "; one of " : "",
                o->choices ? o->choices : "", env);
    }
    fprintf(out, "  %-44s passed verbatim to librdkafka\n", "kafka.*");
}

void cg_conf_markdown(FILE *out)
{
    static const char *const types[] = { "string", "integer", "boolean",
                                         "choice", "secret" };
    char env[128];
    fprintf(out, "| key | type | default | environment | meaning |\n"
                 "|---|---|---|---|---|\n");
    for (int i = 0; conf_table[i].name; i++) {
        const struct cg_conf_opt *o = &conf_table[i];
        env_name(o->name, env, sizeof(env));
        fprintf(out, "| `%s` | %s", o->name, types[o->type]);
        if (o->type == CG_CONF_INT)
            fprintf(out, " %lld..%lld", o->min, o->max);
        else if (o->choices) {
            /* A '|' would end the Markdown cell. */
            fputs(": ", out);
            for (const char *c = o->choices; *c; c++)
                fputs(*c == '|' ? " \\| " : (char[]){ *c, 0 }, out);
        }
        fprintf(out, " | %s%s%s | `%s` | %s |\n", *o->def ? "`" : "",
                *o->def ? o->def : "(empty)", *o->def ? "`" : "", env, o->help);
    }
    fprintf(out, "| `kafka.*` | string | | | passed verbatim to librdkafka "
                 "(`kafka.bootstrap.servers` also from "
                 "`CONTACTGUARD_KAFKA_BOOTSTRAP_SERVERS`) |\n");
}

const char *cg_remediation_mode_name(enum cg_remediation_mode m)
{
    switch (m) {
    case CG_REMEDIATION_DRY_RUN:
        return "dry-run";
    case CG_REMEDIATION_APPLY:
        return "apply";
    default:
        return "off";
    }
}

int cg_remediation_mode_parse(const char *s, enum cg_remediation_mode *out)
{
    if (!strcasecmp(s, "off"))
        *out = CG_REMEDIATION_OFF;
    else if (!strcasecmp(s, "dry-run") || !strcasecmp(s, "dryrun"))
        *out = CG_REMEDIATION_DRY_RUN;
    else if (!strcasecmp(s, "apply"))
        *out = CG_REMEDIATION_APPLY;
    else
        return CG_EINVAL;
    return 0;
}

bool cg_conf_version_arg(int argc, char *const *argv, const char *program,
                         FILE *out)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "--set") == 0)
            i++;
        else if (strcmp(argv[i], "--version") == 0) {
            fprintf(out, "%s %s\n", program, CG_VERSION);
            return true;
        }
    }
    return false;
}

int cg_conf_from_args(struct cg_conf *conf, int *argc, char **argv, bool *dump,
                      char *errbuf, size_t errsz)
{
    const char *file = NULL;
    int out = 1, rc = 0;
    *dump = false;
    /* The file layer must come before --set, whatever the order on the
     * command line: collect first, then apply. */
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < *argc)
            file = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
        else if (strcmp(argv[i], "--set") == 0 && i + 1 < *argc)
            i++;
        else if (strcmp(argv[i], "--dump-config") == 0)
            *dump = true;
        else if (strcmp(argv[i], "--") == 0)
            break;
    }
    if (file && (rc = cg_conf_load_file(conf, file, errbuf, errsz)))
        return rc;
    if ((rc = cg_conf_load_env(conf, NULL, errbuf, errsz)))
        return rc;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < *argc) {
            i++;
        } else if (strncmp(argv[i], "--config=", 9) == 0 ||
                   strcmp(argv[i], "--dump-config") == 0) {
        } else if (strcmp(argv[i], "--set") == 0 && i + 1 < *argc) {
            if ((rc = cg_conf_set_arg(conf, argv[++i], errbuf, errsz)))
                return rc;
        } else if (strncmp(argv[i], "--set=", 6) == 0) {
            if ((rc = cg_conf_set_arg(conf, argv[i] + 6, errbuf, errsz)))
                return rc;
        } else {
            argv[out++] = argv[i];
        }
    }
    argv[out] = NULL;
    *argc = out;
    return cg_conf_finish(conf, errbuf, errsz);
}
