/*
 * Benchmark of the Azure client layer against contactguard-fakeazure:
 * reads every subscription's securityContacts through arm with the
 * configured requests in flight and prints one line of figures
 * (key=value): calls/s, latency percentiles, peak RSS. It never passes or
 * fails on time.
 *
 * usage: azclient_bench [SUBSCRIPTIONS [LATENCY_MS [IN_FLIGHT]]]
 */
#include "arm.h"
#include "auth.h"
#include "conf.h"
#include "err.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

struct bench {
    int done, failed;
    int64_t *lat;
    size_t nlat;
};

struct one {
    struct bench *b;
    int64_t start;
};

static void on_done(const struct cg_arm_result *res, void *arg)
{
    struct one *o = arg;
    o->b->done++;
    /* Final answers the population contains on purpose (missing contact,
     * unregistered or disabled subscriptions) are results, not failures. */
    if (res->err && cg_err_retryable(res->err)) {
        if (o->b->failed++ == 0)
            fprintf(stderr, "first failure: %s\n", res->why);
    } else if (res->err == CG_EDEADLINE || res->err == CG_EPARSE) {
        if (o->b->failed++ == 0)
            fprintf(stderr, "first failure: %s\n", res->why);
    }
    o->b->lat[o->b->nlat++] = res->elapsed_ms;
}

static void on_list(const struct cg_arm_result *res, void *arg)
{
    json_t **out = arg;
    *out = res->items ? json_incref(res->items) : json_array();
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *subs_s = argc > 1 ? argv[1] : "2000";
    const char *lat_s = argc > 2 ? argv[2] : "0";
    const char *inflight = argc > 3 ? argv[3] : "256";
    cg_log_setup(CG_LOG_ERROR, CG_LOG_TEXT, "bench");
    char dir[] = "/tmp/cg-bench-XXXXXX", err[512], base[128];
    if (!mkdtemp(dir))
        return 2;
    char *creds = cg_asprintf("%s/creds.json", dir);
    const char *const fargv[] = { CG_BIN_CONTACTGUARD_FAKEAZURE,
                                  "--tls-self-signed",
                                  dir,
                                  "--tenants",
                                  "1",
                                  "--subscriptions-per-tenant",
                                  subs_s,
                                  "--page-size",
                                  "1000",
                                  "--credentials",
                                  creds,
                                  "--latency-ms",
                                  lat_s,
                                  "--no-throttle",
                                  "--log-level",
                                  "error",
                                  NULL };
    struct cg_harness_proc_opts po = { .name = "fakeazure",
                                       .line_timeout_ms = 60000 };
    struct cg_harness_proc *fake =
        cg_harness_proc_start(fargv, &po, err, sizeof(err));
    if (!fake) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    cg_strlcpy(base, cg_harness_proc_first_line(fake), sizeof(base));
    struct cg_conf *conf = cg_conf_new();
    char *set = cg_asprintf("worker.max_in_flight=%s", inflight);
    if (cg_conf_load_file(conf, creds, err, sizeof(err)) ||
        cg_conf_set_arg(conf, set, err, sizeof(err)) ||
        cg_conf_set(conf, "azure.tenant_max_in_flight", inflight, err,
                    sizeof(err)) ||
        cg_conf_finish(conf, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        cg_harness_proc_free(fake);
        return 1;
    }
    const char *tenant = cg_conf_tenant(conf, 0)->id;
    struct cg_http_opts ho;
    cg_http_opts_from_conf(conf, &ho);
    struct cg_loop *loop = cg_loop_new(err, sizeof(err));
    struct cg_http *http = cg_http_new(loop, &ho, err, sizeof(err));
    struct cg_auth *auth = cg_auth_new(loop, http, conf, err, sizeof(err));
    struct cg_arm *arm = cg_arm_new(loop, http, auth, conf, err, sizeof(err));

    json_t *subs = NULL;
    struct cg_arm_request lreq = {
        .method = CG_HTTP_GET,
        .tenant = tenant,
        .path = "/subscriptions?api-version=2022-12-01"
    };
    cg_arm_list(arm, &lreq, on_list, &subs);
    while (!subs)
        cg_loop_run_once(loop, 100);
    size_t n = json_array_size(subs);
    struct bench b = { .lat = cg_calloc(n + 1, sizeof(int64_t)) };
    struct one *ones = cg_calloc(n + 1, sizeof(*ones));
    int64_t t0 = cg_loop_now_ms();
    for (size_t i = 0; i < n; i++) {
        const char *id = cg_json_str(json_array_get(subs, i), "subscriptionId");
        char path[256];
        snprintf(path, sizeof(path),
                 "/subscriptions/%s/providers/Microsoft.Security/"
                 "securityContacts?api-version=2023-12-01-preview",
                 id);
        struct cg_arm_request req = { .method = CG_HTTP_GET,
                                      .tenant = tenant,
                                      .subscription = id,
                                      .path = path };
        ones[i].b = &b;
        cg_arm_list(arm, &req, on_done, &ones[i]);
    }
    while ((size_t)b.done < n)
        cg_loop_run_once(loop, 100);
    int64_t dt = cg_loop_now_ms() - t0;
    qsort(b.lat, b.nlat, sizeof(int64_t), cmp64);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("bench=azclient calls=%zu failed=%d latency_ms=%s in_flight=%s "
           "seconds=%.3f calls_per_s=%.0f p50_ms=%lld p99_ms=%lld "
           "peak_rss_kib=%ld\n",
           n, b.failed, lat_s, inflight, dt / 1000.0,
           dt ? n * 1000.0 / (double)dt : 0.0, (long long)b.lat[b.nlat / 2],
           (long long)b.lat[b.nlat * 99 / 100], ru.ru_maxrss);
    json_decref(subs);
    free(b.lat);
    free(ones);
    cg_arm_free(arm);
    cg_auth_free(auth);
    cg_http_free(http);
    cg_loop_free(loop);
    cg_conf_free(conf);
    cg_harness_proc_free(fake);
    free(set);
    free(creds);
    char *cmd = cg_asprintf("rm -rf '%s'", dir);
    (void)!system(cmd);
    free(cmd);
    return 0;
}
