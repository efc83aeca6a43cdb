/*
 * stack — the whole local fleet on loopback, for tests and benchmarks.
 *
 * One call brings up what a worker needs, each a real server through the
 * harness: a redis-server, the devbroker (Kafka wire protocol), and the fake
 * Azure (over HTTPS with a fresh CA unless plain_http) with a population,
 * its ground truth and a worker configuration holding every tenant's app.
 * Then workers are started against it and jobs produced. Shared by the
 * integration tests and the benchmarks so both measure the same thing.
 */
#ifndef CG_STACK_H
#define CG_STACK_H

#include "finding.h"
#include "harness.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CG_STACK_SECRETS_MAX 64

struct cg_stack_opts {
    int tenants;
    int subs_per_tenant;
    int partitions;               /* per topic; 0: the devbroker's default */
    const char *const *fake_args; /* extra fake flags, NULL-terminated */
    bool plain_http;
};

struct cg_stack_sub {
    char sub[40], tenant[40], state[16];
    enum cg_status want[CG_RULE_COUNT];
};

struct cg_stack {
    struct cg_harness_redis *redis;
    struct cg_harness_devbroker *kafka;
    struct cg_harness_proc *fake;
    char base[128];  /* the fake's URL */
    char dir[512];   /* its files */
    char creds[600]; /* worker configuration with every tenant's app */
    char ca[600];    /* the CA to trust ("" over plain HTTP) */
    char truthf[600];
    struct cg_stack_sub *subs; /* the ground truth, one per subscription */
    size_t nsubs;
    char secrets[CG_STACK_SECRETS_MAX][128]; /* client secrets, for leak
                                                checks */
    size_t nsecrets;
};

/* Starts everything; on failure stops what started. 0 or CG_E*. */
int cg_stack_start(struct cg_stack *s, const struct cg_stack_opts *o,
                   char *errbuf, size_t errsz);

/* The same with Redis started as redis says (TLS, a password, an ACL
 * user; NULL: plain, no AUTH); workers are given what reaches it. */
int cg_stack_start_redis(struct cg_stack *s, const struct cg_stack_opts *o,
                         const struct cg_harness_redis_opts *redis,
                         char *errbuf, size_t errsz);

/*
 * Starts a contactguard-worker on the stack and returns once it printed
 * its ready line. extra: more arguments (e.g. "--set", "k=v"), NULL-
 * terminated. Compact findings, metrics on a free port.
 */
struct cg_harness_proc *cg_stack_worker(struct cg_stack *s, const char *name,
                                        const char *const *extra, char *errbuf,
                                        size_t errsz);

/* Produces one job per subscription of the truth, then `poison`
 * undecodable messages (key "poison", header origin=test). */
int cg_stack_produce_jobs(struct cg_stack *s, size_t poison, char *errbuf,
                          size_t errsz);

/* GET url (ca may be NULL); the body (heap) or NULL; *status set. */
char *cg_stack_http_get(const char *url, const char *ca, long *status);

/* GET {fake}/_fake/PATH as JSON, or NULL. */
json_t *cg_stack_fake_json(struct cg_stack *s, const char *path);

/* The metrics address of a worker from its ready line, or NULL. */
const char *cg_stack_worker_metrics(struct cg_harness_proc *w);

/* Stops the servers and frees the truth. */
void cg_stack_stop(struct cg_stack *s);

#endif
