#include "measure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

double measure_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields are
     * counted from the last ')'. utime and stime are fields 14 and 15. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long status_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    size_t kl = strlen(key);
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = 0;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, kl) == 0)
            kb = strtol(line + kl, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

long measure_hwm_kb(pid_t pid)
{
    return status_kb(pid, "VmHWM:");
}

long measure_rss_kb(pid_t pid)
{
    return status_kb(pid, "VmRSS:");
}

double measure_metric_sum(const char *text, const char *prefix)
{
    double sum = 0;
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        if (strncmp(p, prefix, pl) == 0) {
            const char *end = nl ? nl : p + strlen(p), *sp = end;
            while (sp > p && sp[-1] != ' ')
                sp--;
            if (sp > p)
                sum += strtod(sp, NULL);
        }
        p = nl ? nl + 1 : NULL;
    }
    return sum;
}

void measure_hist_add(struct measure_hist *h, const char *text,
                      const char *name)
{
    char key[160];
    snprintf(key, sizeof(key), "%s_bucket{le=\"", name);
    int i = 0;
    for (const char *p = strstr(text, key); p; p = strstr(p + 1, key)) {
        const char *v = p + strlen(key);
        double le = strncmp(v, "+Inf", 4) == 0 ? 1e9 : strtod(v, NULL);
        const char *sp = strchr(v, ' ');
        if (!sp || i >= MEASURE_BUCKETS)
            break;
        h->le[i] = le;
        h->count[i] += strtod(sp + 1, NULL);
        i++;
    }
    if (i > h->n)
        h->n = i;
}

double measure_hist_q_ms(const struct measure_hist *h, double q)
{
    if (h->n == 0 || h->count[h->n - 1] == 0)
        return 0;
    double want = q * h->count[h->n - 1];
    for (int i = 0; i < h->n; i++) {
        if (h->count[i] < want)
            continue;
        double lo = i ? h->le[i - 1] : 0, below = i ? h->count[i - 1] : 0;
        if (h->le[i] >= 1e9) /* +Inf: the last finite bound is all we know */
            return lo * 1000.0;
        double in = h->count[i] - below;
        double frac = in > 0 ? (want - below) / in : 1;
        return (lo + frac * (h->le[i] - lo)) * 1000.0;
    }
    return h->le[h->n - 1] * 1000.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double measure_quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

int measure_time_read(const char *stderr_path, struct measure_time *out)
{
    FILE *f = fopen(stderr_path, "r");
    char line[4096];
    int rc = -1;
    while (f && fgets(line, sizeof(line), f)) {
        double u, s;
        long kb;
        if (sscanf(line, "measure_time user=%lf sys=%lf rss_kb=%ld", &u, &s,
                   &kb) == 3) {
            out->cpu_s = u + s;
            out->rss_kb = kb;
            rc = 0;
        }
    }
    if (f)
        fclose(f);
    return rc;
}
