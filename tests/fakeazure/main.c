/*
 * contactguard-fakeazure: a fake Microsoft Entra ID and Azure Resource
 * Manager for tests, the demo and the benchmarks. See README.md.
 */
#include "err.h"
#include "fake.h"
#include "log.h"
#include "mem.h"
#include "server.h"
#include "tls.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef CG_FA_SCENARIOS
#define CG_FA_SCENARIOS "tests/fixtures/scenarios.json"
#endif

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static const char usage[] =
    "usage: contactguard-fakeazure [options]\n"
    "  --listen HOST:PORT            address (default 127.0.0.1:0; port 0 "
    "picks one)\n"
    "  --tls-self-signed DIR         HTTPS: write DIR/ca.pem, server.pem, "
    "server.key\n"
    "  --tls-name NAMES              extra host names (comma-separated) in "
    "the\n"
    "                                --tls-self-signed certificate\n"
    "  --tls-cert FILE --tls-key FILE  HTTPS with existing files\n"
    "  --app-keys DIR                app certificate and federation issuer "
    "keys\n"
    "                                (default: the --tls-self-signed DIR)\n"
    "  --scenarios FILE              scenario table (default " CG_FA_SCENARIOS
    ")\n"
    "  --tenants N                   tenants (default 2)\n"
    "  --subscriptions-per-tenant M  subscriptions per tenant (default 30)\n"
    "  --seed S                      population and fault seed (default 1)\n"
    "  --unregistered-share P        share of subscriptions without "
    "Microsoft.Security\n"
    "  --truth FILE                  expected status per (subscription, "
    "rule), JSON lines\n"
    "  --credentials FILE            worker configuration with every "
    "tenant's app\n"
    "  --multi-tenant-app            one app consented in every tenant\n"
    "  --credentials-auth KIND       secret (default), certificate or "
    "federated\n"
    "  --token-lifetime S            access token lifetime (default 3599)\n"
    "  --page-size N                 subscriptions per page (default 100)\n"
    "  --contacts-page-size N        page securityContacts LIST (2017/2023) "
    "by N\n"
    "  --latency-ms N --jitter-ms N  added latency\n"
    "  --p429 P --p500 P --p503 P --pdrop P --pslow P --pmalformed P\n"
    "                                shares of injected faults on ARM calls\n"
    "  --retry-after S               Retry-After of injected 429s (default "
    "1)\n"
    "  --throttle-reads CAP:RATE     read bucket (default 250:25)\n"
    "  --throttle-writes CAP:RATE    write bucket (default 200:10)\n"
    "  --no-throttle                 never throttle (benchmarks)\n"
    "  --federated-issuer URL --federated-subject SUB\n"
    "                                workload identity federation record\n"
    "  --events-webhook URL          POST Event Grid events there\n"
    "  --log-level LEVEL             debug, info, warn, error (default "
    "warn)\n";

static int parse_ull(const char *s, unsigned long long max,
                     unsigned long long *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_share(const char *s, double *out)
{
    char *end;
    if (!s || !*s)
        return -1;
    double v = strtod(s, &end);
    if (*end || v < 0 || v > 1)
        return -1;
    *out = v;
    return 0;
}

static int parse_bucket(const char *s, double *cap, double *rate)
{
    char *end;
    if (!s)
        return -1;
    double c = strtod(s, &end);
    if (*end != ':' || c < 1)
        return -1;
    double r = strtod(end + 1, &end);
    if (*end || r <= 0)
        return -1;
    *cap = c;
    *rate = r;
    return 0;
}

/* An absolute form of path (the worker reading the file may run
 * elsewhere); heap string. */
static char *absolute(const char *path)
{
    char cwd[4096];
    if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
        return cg_strdup(path);
    return cg_asprintf("%s/%s", cwd, path);
}

static int write_credentials(struct cg_fa *fa, const char *creds,
                             const char *auth, const char *base,
                             const char *tls_dir, char *err, size_t errsz)
{
    int rc = 0;
    const char *keys = cg_fa_entra_keys_dir(fa->entra);
    char *path = absolute(creds);
    char *ca = tls_dir ? cg_asprintf("%s/ca.pem", tls_dir) : NULL;
    char *abs_ca = ca ? absolute(ca) : NULL;
    char *kdir = keys ? absolute(keys) : NULL;
    char *cert = kdir ? cg_asprintf("%s/app.pem", kdir) : NULL;
    char *key = kdir ? cg_asprintf("%s/app.key", kdir) : NULL;
    char *fed = cg_asprintf("%s.federated-token", path);
    struct cg_fa_cred_files cf = { .auth = auth,
                                   .certificate_file = cert,
                                   .private_key_file = key,
                                   .federated_token_file = fed };
    if (strcmp(auth, "secret") && !kdir) {
        rc = cg_err_set(err, errsz, CG_EINVAL,
                        "--credentials-auth %s needs --app-keys or "
                        "--tls-self-signed",
                        auth);
        goto out;
    }
    if (!strcmp(auth, "federated"))
        rc = cg_fa_entra_write_federated_token(fa->entra, fed, 86400, err,
                                               errsz);
    if (!rc)
        rc = cg_fa_store_write_credentials(fa->store, path, base, abs_ca, &cf,
                                           err, errsz);
out:
    free(path);
    free(ca);
    free(abs_ca);
    free(kdir);
    free(cert);
    free(key);
    free(fed);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 2;
    char err[512] = "";
    const char *listen = "127.0.0.1:0", *tls_dir = NULL, *tls_names = NULL,
               *tls_cert = NULL, *tls_key = NULL, *keys_dir = NULL,
               *truth = NULL, *creds = NULL, *webhook = NULL,
               *cred_auth = "secret",
               *fed_issuer = "https://oidc.fake.contactguard.test",
               *fed_subject = "system:serviceaccount:contactguard:worker";
    struct cg_fa_store_params sp = { .scenarios_file = CG_FA_SCENARIOS,
                                     .tenants = 2,
                                     .subs_per_tenant = 30,
                                     .seed = 1 };
    struct cg_fa_faults_conf fc;
    cg_fa_faults_defaults(&fc);
    unsigned long long lifetime = 3599, page = 100, cpage = 0;
    enum cg_log_level level = CG_LOG_WARN;
    SSL_CTX *ssl = NULL;
    struct cg_fa_server *srv = NULL;
    struct cg_fa fa;
    bool fa_ready = false;
    struct cg_fa_store *store = NULL;
    struct cg_fa_entra *entra = NULL;
    struct cg_fa_events *events = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long long n;
        bool ok = true, takes = true;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--no-throttle")) {
            fc.throttle = false;
            takes = false;
        } else if (!strcmp(a, "--multi-tenant-app")) {
            sp.multi_tenant_app = true;
            takes = false;
        } else if (!v) {
            ok = false;
        } else if (!strcmp(a, "--listen")) {
            listen = v;
        } else if (!strcmp(a, "--tls-self-signed")) {
            tls_dir = v;
        } else if (!strcmp(a, "--tls-name")) {
            tls_names = v;
        } else if (!strcmp(a, "--tls-cert")) {
            tls_cert = v;
        } else if (!strcmp(a, "--tls-key")) {
            tls_key = v;
        } else if (!strcmp(a, "--app-keys")) {
            keys_dir = v;
        } else if (!strcmp(a, "--scenarios")) {
            sp.scenarios_file = v;
        } else if (!strcmp(a, "--tenants")) {
            ok = parse_ull(v, 100000, &n) == 0 && n > 0;
            sp.tenants = (size_t)n;
        } else if (!strcmp(a, "--subscriptions-per-tenant")) {
            ok = parse_ull(v, 10000000, &n) == 0;
            sp.subs_per_tenant = (size_t)n;
        } else if (!strcmp(a, "--seed")) {
            ok = parse_ull(v, ULLONG_MAX, &n) == 0;
            sp.seed = n;
        } else if (!strcmp(a, "--unregistered-share")) {
            ok = parse_share(v, &sp.unregistered_share) == 0;
        } else if (!strcmp(a, "--truth")) {
            truth = v;
        } else if (!strcmp(a, "--credentials")) {
            creds = v;
        } else if (!strcmp(a, "--credentials-auth")) {
            cred_auth = v;
            ok = !strcmp(v, "secret") || !strcmp(v, "certificate") ||
                 !strcmp(v, "federated");
        } else if (!strcmp(a, "--token-lifetime")) {
            ok = parse_ull(v, 86400, &lifetime) == 0 && lifetime > 0;
        } else if (!strcmp(a, "--page-size")) {
            ok = parse_ull(v, 100000, &page) == 0 && page > 0;
        } else if (!strcmp(a, "--contacts-page-size")) {
            ok = parse_ull(v, 100000, &cpage) == 0;
        } else if (!strcmp(a, "--latency-ms")) {
            ok = parse_ull(v, 600000, &n) == 0;
            fc.latency_ms = (unsigned)n;
        } else if (!strcmp(a, "--jitter-ms")) {
            ok = parse_ull(v, 600000, &n) == 0;
            fc.jitter_ms = (unsigned)n;
        } else if (!strcmp(a, "--retry-after")) {
            ok = parse_ull(v, 3600, &n) == 0;
            fc.retry_after_s = (unsigned)n;
        } else if (!strcmp(a, "--p429")) {
            ok = parse_share(v, &fc.p429) == 0;
        } else if (!strcmp(a, "--p500")) {
            ok = parse_share(v, &fc.p500) == 0;
        } else if (!strcmp(a, "--p503")) {
            ok = parse_share(v, &fc.p503) == 0;
        } else if (!strcmp(a, "--pdrop")) {
            ok = parse_share(v, &fc.pdrop) == 0;
        } else if (!strcmp(a, "--pslow")) {
            ok = parse_share(v, &fc.pslow) == 0;
        } else if (!strcmp(a, "--pmalformed")) {
            ok = parse_share(v, &fc.pmalformed) == 0;
        } else if (!strcmp(a, "--throttle-reads")) {
            ok = parse_bucket(v, &fc.read_cap, &fc.read_refill) == 0;
        } else if (!strcmp(a, "--throttle-writes")) {
            ok = parse_bucket(v, &fc.write_cap, &fc.write_refill) == 0;
        } else if (!strcmp(a, "--federated-issuer")) {
            fed_issuer = v;
        } else if (!strcmp(a, "--federated-subject")) {
            fed_subject = v;
        } else if (!strcmp(a, "--events-webhook")) {
            webhook = v;
        } else if (!strcmp(a, "--log-level")) {
            ok = cg_log_level_parse(v, &level) == 0;
        } else {
            fprintf(stderr, "contactguard-fakeazure: unknown option %s\n%s", a,
                    usage);
            return 2;
        }
        if (!ok) {
            fprintf(stderr,
                    "contactguard-fakeazure: bad or missing value for %s\n", a);
            return 2;
        }
        if (takes)
            i++;
    }
    if (fc.p429 + fc.p500 + fc.p503 + fc.pdrop + fc.pslow + fc.pmalformed > 1) {
        fprintf(stderr, "contactguard-fakeazure: fault shares add up to "
                        "more than 1\n");
        return 2;
    }
    if ((tls_cert == NULL) != (tls_key == NULL)) {
        fprintf(stderr, "contactguard-fakeazure: --tls-cert needs "
                        "--tls-key\n");
        return 2;
    }
    cg_log_setup(level, CG_LOG_TEXT, "fakeazure");
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    if (tls_dir)
        ssl = cg_fa_tls_self_signed(tls_dir, tls_names, err, sizeof(err));
    else if (tls_cert)
        ssl = cg_fa_tls_ctx(tls_cert, tls_key, err, sizeof(err));
    if ((tls_dir || tls_cert) && !ssl)
        goto out;
    store = cg_fa_store_new(&sp, err, sizeof(err));
    if (!store)
        goto out;
    struct cg_fa_entra_conf ec = { .token_lifetime_s = (unsigned)lifetime,
                                   .keys_dir = keys_dir ? keys_dir : tls_dir,
                                   .fed_issuer = fed_issuer,
                                   .fed_subject = fed_subject };
    entra = cg_fa_entra_new(&ec, store, err, sizeof(err));
    if (!entra)
        goto out;
    events = cg_fa_events_new(webhook, err, sizeof(err));
    if (!events)
        goto out;
    cg_fa_init(&fa, store, entra, cg_fa_faults_new(&fc, sp.seed), events,
               (size_t)page, (unsigned)lifetime);
    fa.contacts_page_size = fa.start_contacts_page_size = (size_t)cpage;
    store = NULL;
    entra = NULL;
    events = NULL;
    fa_ready = true;

    srv = cg_fa_server_new(listen, ssl, cg_fa_handle, &fa, err, sizeof(err));
    if (!srv)
        goto out;
    const char *host = cg_fa_server_host(srv);
    char base[128];
    if (strchr(host, ':'))
        snprintf(base, sizeof(base), "%s://[%s]:%d", ssl ? "https" : "http",
                 strcmp(host, "::") ? host : "::1", cg_fa_server_port(srv));
    else
        snprintf(base, sizeof(base), "%s://%s:%d", ssl ? "https" : "http",
                 strcmp(host, "0.0.0.0") ? host : "127.0.0.1",
                 cg_fa_server_port(srv));
    cg_fa_set_base(&fa, base);
    if (truth && cg_fa_store_write_truth(fa.store, truth, err, sizeof(err)))
        goto out;
    if (creds && write_credentials(&fa, creds, cred_auth, base, tls_dir, err,
                                   sizeof(err)))
        goto out;
    /* The harness reads this line to learn the address. */
    printf("%s\n", base);
    fflush(stdout);
    cg_info("listening", "url=%s tenants=%zu subscriptions=%zu", base,
            cg_fa_store_tenant_count(fa.store),
            cg_fa_store_sub_count(fa.store));
    if (cg_fa_server_run(srv, &stop_flag, err, sizeof(err)) == 0)
        rc = 0;
out:
    if (rc && err[0])
        fprintf(stderr, "contactguard-fakeazure: %s\n", err);
    cg_fa_server_free(srv);
    if (fa_ready)
        cg_fa_destroy(&fa);
    cg_fa_store_free(store);
    cg_fa_entra_free(entra);
    cg_fa_events_free(events);
    SSL_CTX_free(ssl);
    curl_global_cleanup();
    return rc;
}
