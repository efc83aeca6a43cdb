/*
 * Unit tests of the fake's pure parts: the hash map, form parsing, the
 * population and its version mapping, and the throttling buckets. Each
 * table row is named so that a failure says which.
 */
#include "conf.h"
#include "faults.h"
#include "map.h"
#include "mem.h"
#include "server.h"
#include "store.h"
#include "tls.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

static void test_map(void)
{
    struct cg_fa_map *m = cg_fa_map_new(true, free);
    char key[64];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "Key-%d", i);
        int *v = malloc(sizeof(*v));
        *v = i;
        cg_fa_map_put_take(m, key, v);
    }
    CHECK(cg_fa_map_count(m) == 10000, "map: count after 10000 puts");
    int *v = cg_fa_map_get(m, "KEY-4242");
    CHECK(v && *v == 4242, "map: case-insensitive get");
    int *w = malloc(sizeof(*w));
    *w = -1;
    cg_fa_map_put_take(m, "key-1", w);
    CHECK(cg_fa_map_count(m) == 10000, "map: replace keeps the count");
    CHECK(*(int *)cg_fa_map_get(m, "Key-1") == -1, "map: replaced value");
    CHECK(cg_fa_map_del(m, "key-2"), "map: delete present");
    CHECK(!cg_fa_map_del(m, "key-2"), "map: delete absent");
    size_t it = 0, n = 0;
    while (cg_fa_map_next(m, &it, NULL))
        n++;
    CHECK(n == 9999, "map: iteration visits every entry (%zu)", n);
    cg_fa_map_free(m);
}

static void test_form(void)
{
    static const struct {
        const char *name, *form, *key, *want; /* want NULL: absent */
    } rows[] = {
        { "plain", "a=1&b=2", "b", "2" },
        { "first", "a=1&b=2", "a", "1" },
        { "percent", "scope=https%3A%2F%2Fx%2F.default", "scope",
          "https://x/.default" },
        { "plus", "q=a+b", "q", "a b" },
        { "encoded key", "%24skiptoken=7", "$skiptoken", "7" },
        { "absent", "a=1", "b", NULL },
        { "prefix is not a match", "ab=1", "a", NULL },
        { "empty value", "a=&b=2", "a", "" },
        { "bad escape kept", "a=%zz", "a", "%zz" },
        { "empty form", "", "a", NULL },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char out[64];
        int n = cg_fa_form_get(rows[i].form, rows[i].key, out, sizeof(out));
        if (!rows[i].want)
            CHECK(n < 0, "form row '%s': expected absent", rows[i].name);
        else
            CHECK(n >= 0 && !strcmp(out, rows[i].want),
                  "form row '%s': got '%s'", rows[i].name, n < 0 ? "" : out);
    }
    char small[4];
    CHECK(cg_fa_form_get("a=12345", "a", small, sizeof(small)) < 0,
          "form: a value longer than the buffer is refused");
}

static void test_loopback(void)
{
    static const struct {
        const char *addr;
        bool want;
    } rows[] = {
        { "127.0.0.1", true },
        { "127.1.2.3", true },
        { "::1", true },
        { "::ffff:127.0.0.1", true },
        { "10.0.0.1", false },
        { "192.168.1.20", false },
        { "::ffff:10.0.0.1", false },
        { "fe80::1", false },
        { "0.0.0.0", false },
        { "128.0.0.1", false },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        if (strchr(rows[i].addr, ':')) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            in6->sin6_family = AF_INET6;
            inet_pton(AF_INET6, rows[i].addr, &in6->sin6_addr);
        } else {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            in->sin_family = AF_INET;
            inet_pton(AF_INET, rows[i].addr, &in->sin_addr);
        }
        CHECK(cg_fa_addr_loopback(&ss) == rows[i].want,
              "loopback row '%s': want %d", rows[i].addr, rows[i].want);
    }
}

static struct cg_fa_store *make_store_app(uint64_t seed, const char *scen,
                                          bool multi)
{
    char err[256];
    struct cg_fa_store_params p = { .scenarios_file = scen,
                                    .tenants = 2,
                                    .subs_per_tenant = 40,
                                    .seed = seed,
                                    .multi_tenant_app = multi };
    struct cg_fa_store *st = cg_fa_store_new(&p, err, sizeof(err));
    CHECK(st, "store: %s", err);
    return st;
}

static struct cg_fa_store *make_store(uint64_t seed, const char *scen)
{
    return make_store_app(seed, scen, false);
}

static json_t *list_json(struct cg_fa_store *st, struct cg_fa_sub *sub,
                         enum cg_fa_ver v)
{
    struct cg_buf b;
    cg_buf_init(&b, 1 << 20);
    CHECK(cg_fa_store_list(st, sub, v, &b) == 200, "list status");
    json_t *j = json_loads(b.data, 0, NULL);
    cg_buf_free(&b);
    return j;
}

static struct cg_fa_sub *sub_of(struct cg_fa_store *st, const char *scenario)
{
    long sc = cg_fa_store_scenario_find(st, scenario);
    for (size_t i = 0; i < cg_fa_store_sub_count(st); i++)
        if ((long)cg_fa_store_sub(st, i)->scenario == sc)
            return cg_fa_store_sub(st, i);
    return NULL;
}

static void test_population(const char *scen)
{
    struct cg_fa_store *a = make_store(7, scen), *b = make_store(7, scen),
                       *c = make_store(8, scen);
    if (!a || !b || !c)
        goto out;
    CHECK(cg_fa_store_sub_count(a) == 80, "population: 2 x 40");
    bool same = true, differ = false;
    for (size_t i = 0; i < 80; i++) {
        same =
            same &&
            !strcmp(cg_fa_store_sub(a, i)->id, cg_fa_store_sub(b, i)->id) &&
            cg_fa_store_sub(a, i)->scenario == cg_fa_store_sub(b, i)->scenario;
        differ = differ ||
                 strcmp(cg_fa_store_sub(a, i)->id, cg_fa_store_sub(c, i)->id);
    }
    CHECK(same, "population: the same seed gives the same population");
    CHECK(differ, "population: another seed gives other ids");
    CHECK(strcmp(cg_fa_store_tenant(a, 0)->secret,
                 cg_fa_store_tenant(a, 1)->secret),
          "population: tenants have different secrets");
    for (size_t s = 0; s < cg_fa_store_scenario_count(a); s++) {
        const struct cg_fa_scenario *sc = cg_fa_store_scenario(a, s);
        struct cg_fa_sub *sub = sub_of(a, sc->name);
        CHECK(sub, "population: scenario %s is present", sc->name);
        if (!sub)
            continue;
        /* Every view of every scenario is JSON of the version's shape. */
        for (int v = 0; v < CG_FA_NVER; v++) {
            json_t *j = list_json(a, sub, (enum cg_fa_ver)v);
            json_t *arr = v == CG_FA_V2020 ? j : json_object_get(j, "value");
            CHECK(json_is_array(arr), "scenario %s: %s LIST shape", sc->name,
                  cg_fa_ver_names[v]);
            size_t want = sc->contact ? 1 : 0;
            if (v == CG_FA_V2017)
                want += sc->legacy ? json_array_size(sc->legacy) : 0;
            CHECK(json_array_size(arr) == want,
                  "scenario %s: %s LIST holds %zu contacts", sc->name,
                  cg_fa_ver_names[v], want);
            json_decref(j);
        }
        /* Statuses that follow from the state alone. */
        if (!strcmp(sc->state, "Disabled") || !strcmp(sc->state, "Deleted"))
            for (int r = 0; r < CG_FA_RULES; r++)
                CHECK(!strcmp(sc->truth[r], "SKIPPED"),
                      "scenario %s: a %s subscription is SKIPPED", sc->name,
                      sc->state);
        if (!sc->registered)
            for (int r = 0; r < CG_FA_RULES; r++)
                CHECK(!strcmp(sc->truth[r], "ERROR"),
                      "scenario %s: unregistered is ERROR", sc->name);
    }
out:
    cg_fa_store_free(a);
    cg_fa_store_free(b);
    cg_fa_store_free(c);
}

static void test_writes(const char *scen)
{
    static const struct {
        const char *name;
        enum cg_fa_ver v;
        const char *contact, *body;
        int want;
    } rows[] = {
        { "2023 create", CG_FA_V2023, "default",
          "{\"properties\":{\"isEnabled\":true,\"emails\":\"a@b.co\"}}", 201 },
        { "2023 replace", CG_FA_V2023, "default",
          "{\"properties\":{\"isEnabled\":false,\"emails\":\"a@b.co\"}}", 200 },
        { "2023 comma", CG_FA_V2023, "default",
          "{\"properties\":{\"emails\":\"a@b.co,c@d.co\"}}", 400 },
        { "2023 wrong type", CG_FA_V2023, "default",
          "{\"properties\":{\"isEnabled\":\"yes\"}}", 400 },
        { "2023 other name", CG_FA_V2023, "other",
          "{\"properties\":{\"emails\":\"a@b.co\"}}", 400 },
        { "2023 no properties", CG_FA_V2023, "default", "{}", 400 },
        { "not JSON", CG_FA_V2023, "default", "{\"prop", 400 },
        { "2023 source without type", CG_FA_V2023, "default",
          "{\"properties\":{\"notificationsSources\":[{}]}}", 400 },
        { "2020 replace", CG_FA_V2020, "default",
          "{\"properties\":{\"emails\":\"x@y.co\",\"alertNotifications\":{"
          "\"state\":\"On\",\"minimalSeverity\":\"Low\"}}}",
          200 },
        { "2020 string alertNotifications", CG_FA_V2020, "default",
          "{\"properties\":{\"alertNotifications\":\"On\"}}", 400 },
        { "2017 default1", CG_FA_V2017, "default1",
          "{\"properties\":{\"email\":\"z@y.co\",\"alertsToAdmins\":\"On\"}}",
          200 },
        /* 2017 declares 200 only, even when the PUT creates. */
        { "2017 legacy name", CG_FA_V2017, "default3",
          "{\"properties\":{\"email\":\"l@y.co\"}}", 200 },
    };
    struct cg_fa_store *st = make_store(7, scen);
    if (!st)
        return;
    struct cg_fa_sub *sub = sub_of(st, "no-contact");
    struct cg_buf out;
    cg_buf_init(&out, 1 << 20);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int got = cg_fa_store_put(st, sub, rows[i].v, rows[i].contact,
                                  rows[i].body, strlen(rows[i].body), &out);
        CHECK(got == rows[i].want, "put row '%s': status %d, want %d (%s)",
              rows[i].name, got, rows[i].want, out.data);
    }
    /* After the rows: 2017 wrote email z@y.co, roles On with Owner; 2020
     * kept the Alert source at Low; isEnabled stayed false. */
    json_t *j = list_json(st, sub, CG_FA_V2023);
    json_t *p = json_object_get(json_array_get(json_object_get(j, "value"), 0),
                                "properties");
    CHECK(!strcmp(json_string_value(json_object_get(p, "emails")), "z@y.co"),
          "mapping: 2017 email becomes 2023 emails");
    CHECK(json_is_false(json_object_get(p, "isEnabled")),
          "mapping: older versions do not re-enable a contact");
    json_decref(j);
    j = list_json(st, sub, CG_FA_V2017);
    CHECK(json_array_size(json_object_get(j, "value")) == 2,
          "mapping: 2017 shows default1 and the legacy default3");
    json_decref(j);
    /* A write keeps only what its version stores: a member a portal edit
     * (or a newer version) left is gone after a PUT in any version. */
    for (int v = 0; v < CG_FA_NVER; v++) {
        json_t *edit = json_pack("{s:b,s:s,s:s}", "isEnabled", 1, "emails",
                                 "a@b.co", "futureSetting", "x");
        cg_fa_store_portal_edit(st, sub, edit);
        json_decref(edit);
        const char *body =
            v == CG_FA_V2017
                ? "{\"properties\":{\"email\":\"a@b.co\",\"vendorTag\":1}}"
                : "{\"properties\":{\"emails\":\"a@b.co\",\"vendorTag\":1}}";
        int st_put = cg_fa_store_put(st, sub, (enum cg_fa_ver)v,
                                     v == CG_FA_V2017 ? "default1" : "default",
                                     body, strlen(body), &out);
        CHECK(st_put == 200, "%s: put %d", cg_fa_ver_names[v], st_put);
        j = list_json(st, sub, CG_FA_V2023);
        p = json_object_get(json_array_get(json_object_get(j, "value"), 0),
                            "properties");
        CHECK(p && !json_object_get(p, "futureSetting") &&
                  !json_object_get(p, "vendorTag"),
              "%s: a write kept a property its version does not store",
              cg_fa_ver_names[v]);
        json_decref(j);
    }
    CHECK(cg_fa_store_patch(st, sub, "default3",
                            "{\"properties\":{\"phone\":\"1\"}}", 28,
                            &out) == 200,
          "patch legacy");
    CHECK(strstr(out.data, "\"email\":\"l@y.co\"") &&
              strstr(out.data, "\"phone\":\"1\""),
          "patch keeps what it does not send: %s", out.data);
    CHECK(cg_fa_store_patch(st, sub, "default7", "{\"properties\":{}}", 17,
                            &out) == 404,
          "patch of no contact");
    CHECK(cg_fa_store_patch(st, sub, "default3", "{", 1, &out) == 400,
          "patch of bad JSON");
    /* 2017 declares 204 only; 2020 and 2023 200 deleted, 204 absent. */
    CHECK(cg_fa_store_delete(st, sub, CG_FA_V2017, "default3") == 204,
          "delete legacy");
    CHECK(cg_fa_store_delete(st, sub, CG_FA_V2023, "default") == 200,
          "delete canonical");
    CHECK(cg_fa_store_delete(st, sub, CG_FA_V2023, "default") == 204,
          "delete again");
    CHECK(cg_fa_store_get(st, sub, CG_FA_V2020, "default", &out) == 404,
          "get after delete");
    cg_buf_free(&out);
    cg_fa_store_free(st);
}

static void test_faults(void)
{
    struct cg_fa_faults_conf c;
    cg_fa_faults_defaults(&c);
    c.read_cap = 3;
    c.read_refill = 0.001;
    struct cg_fa_faults *f = cg_fa_faults_new(&c, 1);
    struct cg_fa_throttle th;
    for (long want = 2; want >= 0; want--) {
        cg_fa_faults_throttle(f, "p", "s", "/a", false, &th);
        CHECK(!th.limited && th.remaining == want, "bucket: remaining %ld",
              want);
    }
    cg_fa_faults_throttle(f, "p", "s", "/a", false, &th);
    CHECK(th.limited && th.retry_after >= 1 && !th.early,
          "bucket: empty answers 429");
    cg_fa_faults_throttle(f, "p", "s", "/a", false, &th);
    CHECK(th.limited && th.early, "bucket: coming back early is counted");
    CHECK(cg_fa_faults_early_total(f) == 1, "bucket: one early return");
    cg_fa_faults_throttle(f, "p", "s", "/a", true, &th);
    CHECK(th.limited && th.early,
          "bucket: the wait covers writes of the same principal too");
    cg_fa_faults_throttle(f, "p", "s", "/b", false, &th);
    CHECK(th.limited && !th.early,
          "bucket: another path already on the wire is held, not counted");
    cg_fa_faults_throttle(f, "p", "s", "/b", false, &th);
    CHECK(th.limited && th.early,
          "bucket: that path coming back inside its own wait is counted");
    CHECK(cg_fa_faults_early_total(f) == 3, "bucket: three early returns");
    cg_fa_faults_throttle(f, "p", "other", "/a", false, &th);
    CHECK(!th.limited, "bucket: another subscription has its own bucket");
    cg_fa_faults_throttle(f, "q", "s", "/a", false, &th);
    CHECK(!th.limited, "bucket: another principal has its own bucket");

    char err[200];
    json_t *o = json_loads("{\"p500\":1}", 0, NULL);
    CHECK(cg_fa_faults_apply_json(f, o, err, sizeof(err)) == 0, "apply p500");
    json_decref(o);
    CHECK(cg_fa_faults_draw(f) == CG_FA_DRAW_500, "p500=1 always draws 500");
    o = json_loads("{\"p500\":0.6,\"p503\":0.6}", 0, NULL);
    CHECK(cg_fa_faults_apply_json(f, o, err, sizeof(err)) < 0,
          "shares above 1 are refused");
    json_decref(o);
    o = json_loads("{\"bogus\":1}", 0, NULL);
    CHECK(cg_fa_faults_apply_json(f, o, err, sizeof(err)) < 0,
          "unknown parameters are refused");
    json_decref(o);
    c.throttle = false;
    cg_fa_faults_set_conf(f, &c);
    cg_fa_faults_reset(f);
    for (int i = 0; i < 10; i++) {
        cg_fa_faults_throttle(f, "p", "s", "/a", false, &th);
        CHECK(!th.limited, "no-throttle never limits");
    }
    cg_fa_faults_free(f);
}

/* The credentials file is a worker configuration as it is: common/conf
 * loads it and finds every tenant's secret. */
static void test_credentials(const char *scen, bool multi)
{
    char dir[] = "/tmp/fakeazure-units.XXXXXX", err[512];
    CHECK(mkdtemp(dir), "mkdtemp");
    char *path = cg_asprintf("%s/creds.json", dir);
    struct cg_fa_store *st = make_store_app(7, scen, multi);
    struct cg_conf *conf = cg_conf_new();
    struct cg_fa_cred_files cf = { .auth = "secret" };
    if (!st)
        goto out;
    CHECK(cg_fa_store_write_credentials(st, path, "https://127.0.0.1:1", "",
                                        &cf, err, sizeof(err)) == 0,
          "write credentials: %s", err);
    CHECK(cg_conf_load_file(conf, path, err, sizeof(err)) == 0,
          "credentials load as a configuration: %s", err);
    CHECK(cg_conf_finish(conf, err, sizeof(err)) == 0,
          "credentials finish as a configuration: %s", err);
    CHECK(cg_conf_tenant_count(conf) == 2, "two tenants in the configuration");
    for (size_t t = 0; t < cg_conf_tenant_count(conf) && t < 2; t++) {
        const struct cg_tenant *ct = cg_conf_tenant(conf, t);
        const struct cg_credentials *cr = cg_conf_tenant_credentials(conf, ct);
        const struct cg_fa_tenant *ft = cg_fa_store_tenant(st, t);
        CHECK(!strcmp(ct->id, ft->id), "tenant %zu id", t);
        CHECK((ct->cred.method == CG_AUTH_NONE) == multi,
              "tenant %zu: own credentials unless one app serves all", t);
        CHECK(cr->client_id && !strcmp(cr->client_id, ft->client_id),
              "tenant %zu client id", t);
        CHECK(cr->client_secret && !strcmp(cr->client_secret, ft->secret),
              "tenant %zu secret read from its file", t);
    }
    CHECK(!strcmp(cg_conf_str(conf, "azure.authority_host"),
                  "https://127.0.0.1:1"),
          "authority points at the fake");
out:
    cg_conf_free(conf);
    for (size_t t = 0; st && t < cg_fa_store_tenant_count(st); t++) {
        char *f =
            cg_asprintf("%s.secrets/%s", path, cg_fa_store_tenant(st, t)->id);
        unlink(f);
        free(f);
    }
    char *app = cg_asprintf("%s.secrets/app", path);
    unlink(app);
    free(app);
    char *sd = cg_asprintf("%s.secrets", path);
    rmdir(sd);
    free(sd);
    unlink(path);
    rmdir(dir);
    cg_fa_store_free(st);
    free(path);
}

/* Whether DIR/server.pem is valid for host. */
static bool cert_names(const char *dir, const char *host)
{
    char *path = cg_asprintf("%s/server.pem", dir);
    FILE *f = fopen(path, "r");
    free(path);
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    bool ok = x && X509_check_host(x, host, 0, 0, NULL) == 1;
    X509_free(x);
    return ok;
}

/* --tls-name: extra host names in the self-signed server certificate. */
static void test_tls_names(void)
{
    char dir[] = "/tmp/fakeazure-units.XXXXXX", err[256];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char *sub = cg_asprintf("%s/tls", dir);
    SSL_CTX *ctx = cg_fa_tls_self_signed(sub, NULL, err, sizeof(err));
    CHECK(ctx, "self-signed: %s", err);
    CHECK(cert_names(sub, "localhost") &&
              !cert_names(sub, "login.microsoftonline.com"),
          "without --tls-name: loopback names only");
    SSL_CTX_free(ctx);
    ctx = cg_fa_tls_self_signed(sub, "login.microsoftonline.com,b.test", err,
                                sizeof(err));
    CHECK(ctx, "with names: %s", err);
    CHECK(cert_names(sub, "login.microsoftonline.com") &&
              cert_names(sub, "b.test") && cert_names(sub, "localhost") &&
              !cert_names(sub, "c.test"),
          "--tls-name adds exactly the names given");
    SSL_CTX_free(ctx);
    const char *bad[] = { "a b", "x,,y", "-x", "a/b", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ctx = cg_fa_tls_self_signed(sub, bad[i], err, sizeof(err));
        CHECK(!ctx && strstr(err, "--tls-name"), "bad name '%s' refused",
              bad[i]);
        SSL_CTX_free(ctx);
    }
    const char *files[] = { "ca.pem", "server.pem", "server.key" };
    for (size_t i = 0; i < 3; i++) {
        char *p = cg_asprintf("%s/%s", sub, files[i]);
        unlink(p);
        free(p);
    }
    rmdir(sub);
    rmdir(dir);
    free(sub);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_units SCENARIOS.json\n");
        return 2;
    }
    test_map();
    test_form();
    test_loopback();
    test_population(argv[1]);
    test_writes(argv[1]);
    test_faults();
    test_tls_names();
    test_credentials(argv[1], false);
    test_credentials(argv[1], true);
    struct cg_fa_store *m = make_store_app(7, argv[1], true);
    if (m) {
        CHECK(!strcmp(cg_fa_store_tenant(m, 0)->client_id,
                      cg_fa_store_tenant(m, 1)->client_id) &&
                  !strcmp(cg_fa_store_tenant(m, 0)->secret,
                          cg_fa_store_tenant(m, 1)->secret),
              "multi-tenant app: one client id and secret everywhere");
        cg_fa_store_free(m);
    }
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    else
        printf("PASS\n");
    return failures ? 1 : 0;
}
