/*
 * metrics — /metrics, /livez and /readyz over HTTP on the worker's loop.
 *
 * A deliberately small HTTP/1.0-style server (one request per connection,
 * bounded request size and connection count) served by the same loop as
 * the pipeline: if it answers /livez, the loop is turning. The pipeline
 * renders the Prometheus text itself (cg_metrics_render_fn) from its
 * counters; this module supplies the exposition helpers and histograms.
 * No per-subscription labels: cardinality stays fixed.
 */
#ifndef CG_METRICS_H
#define CG_METRICS_H

#include "mem.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_loop;
struct cg_metrics;

#define CG_METRICS_BUCKETS 16

/* Cumulative histogram with fixed upper bounds (seconds). */
struct cg_histogram {
    double bounds[CG_METRICS_BUCKETS];
    uint64_t counts[CG_METRICS_BUCKETS]; /* per bucket, not cumulative */
    uint64_t inf;
    double sum;
    uint64_t count;
};

/* Bounds from 1 ms to 60 s. */
void cg_histogram_init(struct cg_histogram *h);
void cg_histogram_observe(struct cg_histogram *h, double seconds);

/* Exposition helpers: HELP/TYPE lines once, then the sample. labels is
 * "" or `key="value",...` without braces. */
void cg_metrics_counter(struct cg_buf *b, const char *name, const char *help,
                        const char *labels, uint64_t value);
void cg_metrics_gauge(struct cg_buf *b, const char *name, const char *help,
                      const char *labels, double value);
void cg_metrics_histogram(struct cg_buf *b, const char *name, const char *help,
                          const struct cg_histogram *h);

typedef void (*cg_metrics_render_fn)(struct cg_buf *out, void *arg);
/* true when ready; otherwise why says what is missing. */
typedef bool (*cg_metrics_ready_fn)(void *arg, char *why, size_t whysz);

/* Listens on "host:port" (port 0 picks one). NULL with errbuf when the
 * address cannot be bound. */
struct cg_metrics *cg_metrics_new(struct cg_loop *loop, const char *addr,
                                  cg_metrics_render_fn render,
                                  cg_metrics_ready_fn ready, void *arg,
                                  char *errbuf, size_t errsz);
/* The bound address, "127.0.0.1:9464". */
const char *cg_metrics_address(const struct cg_metrics *m);
void cg_metrics_free(struct cg_metrics *m);

#endif
