/*
 * faults — how the fake misbehaves the way Azure does: latency with
 * jitter, ARM's token-bucket throttling, and random shares of 429, 500,
 * 503, dropped connections, slow bodies and malformed bodies.
 *
 * Throttling follows ARM's 2024 model: one bucket per (principal,
 * subscription) for reads and one for writes; a request takes one token;
 * an empty bucket answers 429 with Retry-After (whole seconds until a token
 * is back). Any request of the bucket inside a Retry-After window earns a
 * 429 and a new wait, as ARM does; one for a path (query aside) that was
 * itself answered 429 and comes back before its Retry-After has passed is
 * counted ("early"). A request for another path that was already on the
 * wire when the 429 went out (a job's second read, sent together with the
 * first) is throttled but not counted: the client could not have known. The
 * remaining tokens go out on every ARM answer as
 * x-ms-ratelimit-remaining-subscription-*.
 */
#ifndef CG_FA_FAULTS_H
#define CG_FA_FAULTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_fa_faults_conf {
    unsigned latency_ms;
    unsigned jitter_ms;
    /* Shares (0..1) of ARM requests answered with each fault. */
    double p429, p500, p503, pdrop, pslow, pmalformed;
    unsigned retry_after_s; /* Retry-After of random 429s */
    bool throttle;
    double read_cap, read_refill;
    double write_cap, write_refill;
};

enum cg_fa_draw {
    CG_FA_DRAW_NONE,
    CG_FA_DRAW_429,
    CG_FA_DRAW_500,
    CG_FA_DRAW_503,
    CG_FA_DRAW_DROP,
    CG_FA_DRAW_SLOW,
    CG_FA_DRAW_MALFORMED,
};

struct cg_fa_throttle {
    bool limited;         /* answer 429 */
    unsigned retry_after; /* seconds, when limited */
    long remaining;       /* tokens left after this request */
    bool early;           /* came back before a Retry-After had passed */
};

struct cg_fa_faults;

/* The defaults (no faults, ARM's 2024 limits). */
void cg_fa_faults_defaults(struct cg_fa_faults_conf *conf);

struct cg_fa_faults *cg_fa_faults_new(const struct cg_fa_faults_conf *conf,
                                      uint64_t seed);
void cg_fa_faults_free(struct cg_fa_faults *f);

const struct cg_fa_faults_conf *cg_fa_faults_conf(const struct cg_fa_faults *f);

/* Replaces the whole configuration. */
void cg_fa_faults_set_conf(struct cg_fa_faults *f,
                           const struct cg_fa_faults_conf *conf);

/* Applies the members of a JSON object (the names of struct
 * cg_fa_faults_conf) at run time. Returns 0 or CG_EINVAL. */
int cg_fa_faults_apply_json(struct cg_fa_faults *f, const json_t *o,
                            char *errbuf, size_t errsz);
json_t *cg_fa_faults_conf_json(const struct cg_fa_faults *f);

/* Empties buckets and counters (control API reset). */
void cg_fa_faults_reset(struct cg_fa_faults *f);

/* Takes a token for (principal, scope); write selects the bucket; path
 * (without the query) names the request for early-return counting. */
void cg_fa_faults_throttle(struct cg_fa_faults *f, const char *principal,
                           const char *scope, const char *path, bool write,
                           struct cg_fa_throttle *out);

/* Records a 429 answered for another reason so that an early return is
 * counted too. */
void cg_fa_faults_note_retry_after(struct cg_fa_faults *f,
                                   const char *principal, const char *scope,
                                   const char *path, unsigned seconds);

/* One draw per ARM request. */
enum cg_fa_draw cg_fa_faults_draw(struct cg_fa_faults *f);

/* Latency for this answer, ms. */
unsigned cg_fa_faults_delay(struct cg_fa_faults *f);

/* [{"principal","subscription","early","throttled"}] for every bucket
 * that saw an early return or a 429. */
json_t *cg_fa_faults_stats_json(const struct cg_fa_faults *f);

/* Sum of early returns over all buckets. */
uint64_t cg_fa_faults_early_total(const struct cg_fa_faults *f);

#endif
