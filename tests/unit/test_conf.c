/* Configuration: layering, validation, unknown keys, Kafka pass-through,
 * tenants and secret masking. */
#include "../check.h"
#include "conf.h"
#include "err.h"
#include "mem.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/cg-conf-XXXXXX";

static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static char *dump(const struct cg_conf *conf)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cg_conf_dump(conf, f);
    fclose(f);
    return buf;
}

struct bad_row {
    const char *name;
    const char *file;      /* config text, or NULL */
    const char *set;       /* --set argument, or NULL */
    const char *want_text; /* must appear in the error */
};

static const struct bad_row bad[] = {
    { "unknown top-level key", "{\n  \"log\": {\"levle\": \"debug\"}\n}", NULL,
      "unknown key 'log.levle'" },
    { "unknown key has file:line", "{\n\n  \"nope\": 1\n}", NULL, ":3:" },
    { "enum out of range",
      "{\"rules\":{\"alert_severity\":{\"level\":"
      "\"Severe\"}}}",
      NULL, "not one of Low|Medium|High" },
    { "int below minimum", "{\"worker\":{\"max_in_flight\":0}}", NULL,
      "worker.max_in_flight" },
    { "not JSON", "{nope", NULL, "conf.json:1" },
    { "inline client secret refused",
      "{\"tenants\":[{\"id\":\"t1\",\"client_secret\":\"s3cr3t-value\"}]}",
      NULL, "client_secret may not be written" },
    { "tenant without id", "{\"tenants\":[{\"name\":\"x\"}]}", NULL,
      "needs an \"id\"" },
    { "unknown tenant key", "{\"tenants\":[{\"id\":\"t\",\"colour\":1}]}", NULL,
      "unknown tenant key 'colour'" },
    { "--set unknown key", NULL, "worker.nope=1", "unknown key" },
    { "--set without =", NULL, "log.level", "key=value" },
    { "--set a secret", NULL, "redis.password=hunter22",
      "never on the command line" },
    { "--set a Kafka password", NULL, "kafka.sasl.password=hunter22",
      "never on the command line" },
    { "--set bad bool", NULL, "rules.alert_severity.exact=maybe",
      "not true or false" },
};

/*
 * The secret rule, one row per kind of setting: the dump masks it, --set
 * refuses it, and a log line that quotes it shows none of it. Values carry
 * a marker that must never be printed when the row is secret.
 */
#define PEM_KEY                                                                \
    "-----BEGIN PRIVATE KEY-----\nMIIEkeyMARKERkeyBODY\n"                      \
    "-----END PRIVATE KEY-----\n"
#define PEM_CERT                                                               \
    "-----BEGIN CERTIFICATE-----\nMIIDcertBODYcert\n"                          \
    "-----END CERTIFICATE-----\n"

struct secret_row {
    const char *key;
    const char *value;
    const char *marker; /* a part of value that identifies it */
    bool secret;
};

static const struct secret_row secret_rows[] = {
    { "kafka.ssl.key.pem", PEM_KEY, "keyMARKERkey", true },
    { "kafka.ssl.key.password", "MARKER-keypass", "MARKER-keypass", true },
    { "kafka.ssl.keystore.password", "MARKER-ksp", "MARKER-ksp", true },
    { "kafka.ssl.certificate.pem", PEM_CERT PEM_KEY, "keyMARKERkey", true },
    { "kafka.sasl.oauthbearer.client.secret", "MARKER-ocs", "MARKER-ocs",
      true },
    { "kafka.sasl.oauthbearer.config", "principal=a clientSecret=MARKER-obc",
      "MARKER-obc", true },
    { "kafka.sasl.kerberos.keytab", "MARKER-keytab-bytes", "MARKER-keytab",
      true },
    { "kafka.sasl.password", "MARKER-sasl", "MARKER-sasl", true },
    { "kafka.some.future.api.key", "MARKER-apikey", "MARKER-apikey", true },
    { "kafka.some.future.private.key.passphrase", "MARKER-pp", "MARKER-pp",
      true },
    { "kafka.ssl.ca.location", PEM_KEY, "keyMARKERkey", true },
    { "redis.password", "MARKER-redis", "MARKER-redis", true },
    { "producer.webhook_secret", "MARKER-webhook", "MARKER-webhook", true },
    { "kafka.ssl.ca.pem", PEM_CERT, "certBODY", false },
    { "kafka.ssl.key.location", "/etc/kafka/client.key", "client.key", false },
    { "kafka.bootstrap.servers", "broker-1:9093", "broker-1", false },
    { "azure.client_secret_file", "/run/secrets/az", "/run/secrets/az", false },
    { "azure.private_key_file", "/run/secrets/key.pem", "key.pem", false },
};

static void check_secret_rule(void)
{
    char err[512];
    for (size_t i = 0; i < sizeof(secret_rows) / sizeof(secret_rows[0]); i++) {
        const struct secret_row *r = &secret_rows[i];
        CHECK(cg_conf_is_secret(r->key, r->value) == r->secret,
              "%s: secret rule says %d", r->key, !r->secret);

        /* --set */
        struct cg_conf *conf = cg_conf_new();
        char *kv = cg_asprintf("%s=%s", r->key, r->value);
        err[0] = '\0';
        int rc = cg_conf_set_arg(conf, kv, err, sizeof(err));
        free(kv);
        if (r->secret)
            CHECK(rc == CG_ECONF && strstr(err, "never on the command line"),
                  "%s: --set accepted (%s)", r->key, err);
        else
            CHECK(rc == 0, "%s: --set refused: %s", r->key, err);
        CHECK(strstr(err, r->marker) == NULL, "%s: value echoed: %s", r->key,
              err);
        cg_conf_free(conf);

        /* the dump, after the file or environment layer set it */
        conf = cg_conf_new();
        CHECK(cg_conf_set(conf, r->key, r->value, err, sizeof(err)) == 0,
              "%s: set: %s", r->key, err);
        char *d = dump(conf);
        if (r->secret)
            CHECK(d && strstr(d, r->marker) == NULL, "%s: in the dump: %s",
                  r->key, d);
        else
            CHECK(d && strstr(d, r->key), "%s: missing from the dump", r->key);
        free(d);
        cg_conf_free(conf);
    }
    /* Every option of the table follows the same rule. */
    for (const struct cg_conf_opt *o = cg_conf_options(); o->name; o++)
        CHECK(cg_conf_is_secret(o->name, NULL) == (o->type == CG_CONF_SECRET),
              "%s: its type and the secret rule disagree", o->name);
}

int main(void)
{
    char err[512];
    if (!mkdtemp(tmpdir))
        return 1;

    /* Defaults. */
    struct cg_conf *conf = cg_conf_new();
    CHECK(strcmp(cg_conf_str(conf, "log.level"), "info") == 0,
          "default log.level");
    CHECK(cg_conf_int(conf, "worker.max_in_flight") == 256,
          "default worker.max_in_flight");
    CHECK(!cg_conf_bool(conf, "rules.alert_severity.exact"), "default exact");
    CHECK(strcmp(cg_conf_str(conf, "azure.api_version"),
                 "2023-12-01-preview") == 0,
          "default api version");

    /* file < env < --set */
    const char *path = write_file(
        "conf.json", "{\"log\":{\"level\":\"warn\",\"format\":\"json\"},\n"
                     " \"worker.max_in_flight\": 64,\n"
                     " \"redis\":{\"password\":\"file-secret-1\"},\n"
                     " \"kafka\":{\"bootstrap.servers\":\"k:9092\","
                     "\"sasl.password\":\"kafka-secret-1\","
                     "\"linger.ms\":5}}\n");
    CHECK(cg_conf_load_file(conf, path, err, sizeof(err)) == 0, "load: %s",
          err);
    CHECK(strcmp(cg_conf_str(conf, "log.level"), "warn") == 0, "file layer");
    CHECK(cg_conf_int(conf, "worker.max_in_flight") == 64, "file int");
    char *env[] = { "CONTACTGUARD_LOG_LEVEL=debug",
                    "CONTACTGUARD_WORKER_MAX_IN_FLIGHT=128",
                    "CONTACTGUARD_KAFKA_BOOTSTRAP_SERVERS=env:9092", "OTHER=1",
                    NULL };
    CHECK(cg_conf_load_env(conf, env, err, sizeof(err)) == 0, "env: %s", err);
    CHECK(strcmp(cg_conf_str(conf, "log.level"), "debug") == 0,
          "env beats file");
    CHECK(cg_conf_int(conf, "worker.max_in_flight") == 128, "env int");
    CHECK(strcmp(cg_conf_str(conf, "log.format"), "json") == 0,
          "file value kept when env is silent");
    CHECK(cg_conf_set_arg(conf, "log.level=error", err, sizeof(err)) == 0,
          "set: %s", err);
    CHECK(strcmp(cg_conf_str(conf, "log.level"), "error") == 0,
          "--set beats env");
    CHECK(cg_conf_set_arg(conf, "rules.alert_severity.level=medium", err,
                          sizeof(err)) == 0,
          "set enum: %s", err);
    CHECK(strcmp(cg_conf_str(conf, "rules.alert_severity.level"), "Medium") ==
              0,
          "enum canonical spelling");

    /* Kafka pass-through, in order, later wins. */
    size_t nk = cg_conf_kafka_count(conf);
    CHECK(nk == 3, "kafka pairs: %zu", nk);
    const char *k, *v;
    bool seen_bs = false;
    for (size_t i = 0; i < nk; i++) {
        cg_conf_kafka_get(conf, i, &k, &v);
        if (!strcmp(k, "bootstrap.servers"))
            seen_bs = !strcmp(v, "env:9092");
    }
    CHECK(seen_bs, "env bootstrap servers replace the file's");
    CHECK(cg_conf_set_arg(conf, "kafka.acks=all", err, sizeof(err)) == 0,
          "kafka set");
    CHECK(cg_conf_kafka_count(conf) == 4, "kafka set adds a pair");

    /* Masking. */
    char *d = dump(conf);
    CHECK(strstr(d, "file-secret-1") == NULL, "redis password in dump");
    CHECK(strstr(d, "kafka-secret-1") == NULL, "kafka password in dump");
    CHECK(strstr(d, "\"redis.password\": \"***\"") != NULL,
          "redis password not shown masked");
    CHECK(strstr(d, "k:9092") == NULL && strstr(d, "env:9092") != NULL,
          "kafka bootstrap in dump");
    free(d);
    cg_conf_free(conf);

    /* Tenants: a secret from a file, per-tenant rules and remediation. */
    write_file("t1.secret", "tenant-one-secret\n");
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"azure\":{\"client_id\":\"global-app\"},\n"
             " \"tenants\":[{\"id\":\"11111111-1111-1111-1111-111111111111\","
             "\"name\":\"Contoso\",\"client_id\":\"app1\","
             "\"client_secret_file\":\"%s/t1.secret\","
             "\"remediation\":{\"mode\":\"dry-run\",\"emails\":"
             "[\"soc@contoso.com\",\"cert@contoso.com\"]},"
             "\"rules\":{\"alert_severity.level\":\"low\","
             "\"additional_emails.require_configured\":true}},\n"
             " {\"id\":\"22222222-2222-2222-2222-222222222222\"}]}\n",
             tmpdir);
    char tpath[512];
    snprintf(tpath, sizeof(tpath), "%s", write_file("tenants.json", text));
    path = tpath;
    write_file("more.jsonl", "# comment\n"
                             "{\"id\":\"33333333-3333-3333-3333-333333333333\","
                             "\"auth\":\"federated\",\"client_id\":\"a3\","
                             "\"federated_token_file\":\"/var/run/tok\"}\n");
    conf = cg_conf_new();
    CHECK(cg_conf_load_file(conf, path, err, sizeof(err)) == 0, "tenants: %s",
          err);
    char tf[600];
    snprintf(tf, sizeof(tf), "azure.tenants_file=%s/more.jsonl", tmpdir);
    CHECK(cg_conf_set_arg(conf, tf, err, sizeof(err)) == 0, "tf: %s", err);
    CHECK(cg_conf_finish(conf, err, sizeof(err)) == 0, "finish: %s", err);
    CHECK(cg_conf_tenant_count(conf) == 3, "tenant count %zu",
          cg_conf_tenant_count(conf));
    const struct cg_tenant *t =
        cg_conf_tenant_find(conf, "11111111-1111-1111-1111-111111111111");
    CHECK(t && t->cred.method == CG_AUTH_SECRET, "tenant 1 secret auth");
    CHECK(t && t->cred.client_secret &&
              !strcmp(t->cred.client_secret, "tenant-one-secret"),
          "secret read from file, newline stripped");
    CHECK(t && t->remediation_mode == CG_REMEDIATION_DRY_RUN,
          "tenant remediation mode");
    CHECK(
        t && t->remediation_emails &&
            !strcmp(t->remediation_emails, "soc@contoso.com;cert@contoso.com"),
        "tenant remediation emails");
    CHECK(t && t->alert_severity_level &&
              !strcmp(t->alert_severity_level, "Low"),
          "tenant rule level");
    CHECK(t && t->require_configured == 1, "tenant require_configured");
    const struct cg_tenant *t2 =
        cg_conf_tenant_find(conf, "22222222-2222-2222-2222-222222222222");
    const struct cg_credentials *c2 = cg_conf_tenant_credentials(conf, t2);
    CHECK(c2 && c2->client_id && !strcmp(c2->client_id, "global-app"),
          "tenant 2 falls back to the global app");
    const struct cg_tenant *t3 =
        cg_conf_tenant_find(conf, "33333333-3333-3333-3333-333333333333");
    CHECK(t3 && t3->cred.method == CG_AUTH_FEDERATED,
          "tenants_file federated tenant");
    d = dump(conf);
    CHECK(strstr(d, "tenant-one-secret") == NULL, "tenant secret in dump");
    free(d);
    cg_conf_free(conf);

    /* Bad input: each row's error names what is wrong. */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        conf = cg_conf_new();
        err[0] = '\0';
        int rc;
        if (bad[i].file)
            rc = cg_conf_load_file(conf, write_file("conf.json", bad[i].file),
                                   err, sizeof(err));
        else
            rc = cg_conf_set_arg(conf, bad[i].set, err, sizeof(err));
        CHECK(rc == CG_ECONF, "%s: want CG_ECONF, got %d", bad[i].name, rc);
        CHECK(strstr(err, bad[i].want_text) != NULL,
              "%s: error '%s' lacks '%s'", bad[i].name, err, bad[i].want_text);
        CHECK(strstr(err, "hunter22") == NULL && strstr(err, "s3cr3t") == NULL,
              "%s: secret echoed in error", bad[i].name);
        cg_conf_free(conf);
    }

    /* cg_conf_from_args: --config applies before --set, whatever the order */
    path = write_file("args.json", "{\"log\":{\"level\":\"warn\"}}");
    char *argv[] = { "prog",     "--set",      "log.level=debug",
                     "--config", (char *)path, "input.json",
                     NULL };
    int argc = 6;
    bool dumpflag;
    conf = cg_conf_new();
    CHECK(cg_conf_from_args(conf, &argc, argv, &dumpflag, err, sizeof(err)) ==
              0,
          "from_args: %s", err);
    CHECK(strcmp(cg_conf_str(conf, "log.level"), "debug") == 0,
          "--set after --config");
    CHECK(argc == 2 && !strcmp(argv[1], "input.json"),
          "positional arguments kept");
    cg_conf_free(conf);

    /* cg_conf_version_arg: --version anywhere before "--", not as the value
     * of --config or --set. */
    static const struct {
        const char *name;
        char *argv[5];
        bool want;
    } ver[] = {
        { "alone", { "prog", "--version" }, true },
        { "after options",
          { "prog", "--set", "log.level=warn", "--version" },
          true },
        { "none", { "prog", "sweep", "--json" }, false },
        { "after --", { "prog", "--", "--version" }, false },
        { "--config value", { "prog", "--config", "--version" }, false },
        { "--set value", { "prog", "--set", "--version" }, false },
    };
    for (size_t i = 0; i < sizeof(ver) / sizeof(ver[0]); i++) {
        int vargc = 0;
        while (vargc < 5 && ver[i].argv[vargc])
            vargc++;
        char *printed = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&printed, &len);
        bool got =
            cg_conf_version_arg(vargc, ver[i].argv, "contactguard-x", out);
        fclose(out);
        CHECK(got == ver[i].want, "version %s: want %d", ver[i].name,
              ver[i].want);
        CHECK(strcmp(printed,
                     ver[i].want ? "contactguard-x " CG_VERSION "\n" : "") == 0,
              "version %s: printed '%s'", ver[i].name, printed);
        free(printed);
    }
    check_secret_rule();
    return check_done("conf");
}
