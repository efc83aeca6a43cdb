/*
 * measure — what the benchmarks read about processes and workers.
 *
 * CPU seconds and peak RSS of any process from /proc (so that the broker,
 * redis-server and the fake Azure are counted apart from the workers), a
 * run under /usr/bin/time for processes that exit (the producer, the peer
 * scanner), and the sums and quantiles of a worker's /metrics text. Shared
 * by bench_e2e and bench_latency; nothing here decides pass or fail.
 */
#ifndef CG_BENCH_MEASURE_H
#define CG_BENCH_MEASURE_H

#include <stddef.h>
#include <sys/types.h>

#define MEASURE_BUCKETS 32

/* User + system CPU seconds of pid (every thread), or -1 if it is gone. */
double measure_cpu_s(pid_t pid);

/* Peak resident set (VmHWM) of pid in KiB, or 0. */
long measure_hwm_kb(pid_t pid);

/* Current resident set (VmRSS) of pid in KiB, or 0. */
long measure_rss_kb(pid_t pid);

/* The sum of every sample whose line starts with prefix. */
double measure_metric_sum(const char *text, const char *prefix);

/* A Prometheus histogram summed over several workers. */
struct measure_hist {
    double le[MEASURE_BUCKETS];
    double count[MEASURE_BUCKETS]; /* cumulative */
    int n;
};

/* Adds the buckets of the histogram `name` found in text. */
void measure_hist_add(struct measure_hist *h, const char *text,
                      const char *name);

/* The q-quantile in milliseconds, linearly interpolated inside its bucket
 * (as Prometheus's histogram_quantile does); 0 when empty. */
double measure_hist_q_ms(const struct measure_hist *h, double q);

/* The q-quantile of n values (sorted in place); 0 when n is 0. */
double measure_quantile(double *v, size_t n, double q);

/* What /usr/bin/time said about a finished process. */
struct measure_time {
    double cpu_s;
    long rss_kb;
};

/* The format to pass as /usr/bin/time -f, and its parser over the stderr
 * file the harness kept; 0 or -1 when no such line is there. */
#define MEASURE_TIME_FORMAT "measure_time user=%U sys=%S rss_kb=%M"
int measure_time_read(const char *stderr_path, struct measure_time *out);

#endif
