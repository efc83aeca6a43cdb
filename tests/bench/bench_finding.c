/*
 * bench_finding — the cost of serialising one finding, per format.
 *
 * Findings of every rule from a fixture body (its evidence included), each
 * serialised N times as compact, and as OCSF in every supported version.
 * One line per format: bench=finding format=F cpu_ns_per_finding=X
 * bytes=Y.
 * Prints figures, never passes or fails on them.
 *
 * usage: bench_finding BODY.json [N]
 */
#include "contacts.h"
#include "evaluate.h"
#include "finding.h"
#include "mem.h"
#include "ocsf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU time of this process: the machine's other load does not count. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_finding BODY.json [N]\n");
        return 2;
    }
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 200000;
    struct cg_buf b;
    char err[256];
    cg_buf_init(&b, 1 << 20);
    if (cg_buf_read_file(&b, argv[1], err, sizeof(err))) {
        fprintf(stderr, "bench_finding: %s\n", err);
        return 2;
    }
    struct cg_rules_conf rc;
    cg_rules_conf_default(&rc);
    struct cg_contacts ct;
    struct cg_finding f[CG_RULE_COUNT];
    memset(f, 0, sizeof(f));
    cg_contacts_init(&ct);
    cg_evaluate_body(b.data, b.len, CG_API_UNKNOWN, NULL, &rc, &ct, f);
    for (int r = 0; r < CG_RULE_COUNT; r++) {
        cg_strlcpy(f[r].subscription_id, "0b1f6471-1bf0-4dda-aec3-cb9272f09590",
                   sizeof(f[r].subscription_id));
        cg_strlcpy(f[r].tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47",
                   sizeof(f[r].tenant_id));
        f[r].time_ms = 1795961607781LL;
    }
    for (int fmt = -1;; fmt++) {
        const struct cg_ocsf_version *v =
            fmt < 0 ? NULL : cg_ocsf_version_at((size_t)fmt);
        if (fmt >= 0 && !v)
            break;
        struct cg_ocsf w;
        cg_ocsf_init(&w, v);
        size_t bytes = 0;
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            const struct cg_finding *x = &f[i % CG_RULE_COUNT];
            char *s = v ? cg_finding_ocsf(&w, x) : cg_finding_compact(x);
            bytes += strlen(s);
            free(s);
        }
        double dt = now_ns() - t0;
        printf("bench=finding format=%s%s findings=%ld cpu_ns_per_finding=%.0f "
               "bytes=%zu\n",
               v ? "ocsf-" : "compact", v ? v->name : "", n, dt / (double)n,
               bytes / (size_t)n);
    }
    for (int r = 0; r < CG_RULE_COUNT; r++)
        cg_finding_clear(&f[r]);
    cg_contacts_free(&ct);
    cg_buf_free(&b);
    return 0;
}
