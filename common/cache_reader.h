/*
 * cache_reader — the cache as the producer and the tools read it.
 *
 * The producer (freshness of each subscription, the known set),
 * contactguard-report (the compliance picture) and contactguard-remediate
 * read the keys of cache_schema.h through this blocking reader: the
 * synchronous mode of the one Redis client (redis.h), so TLS, ACL users
 * and timeouts behave as in the worker. Every call is one round trip
 * (pipelined when it asks about many subscriptions).
 */
#ifndef CG_CACHE_READER_H
#define CG_CACHE_READER_H

#include "cache_schema.h"
#include "finding.h"

#include <stddef.h>

struct cg_conf;

struct cg_cache_reader;

/* A list of strings read from Redis; free with cg_cache_list_free. */
struct cg_cache_list {
    char **v;
    size_t n;
};

/* Per-tenant figures as the store script keeps them. */
struct cg_cache_tenant {
    long long counts[CG_RULE_COUNT][CG_STATUS_NONE]; /* [rule][status] */
    long long scanned; /* subscriptions with a cached scan */
    long long failing; /* of which at least one rule FAILs */
};

/* A subscription's cached record. */
struct cg_cache_sub {
    char subscription_id[CG_CACHE_ID_MAX + 1];
    char tenant_id[CG_CACHE_ID_MAX + 1];
    char job_id[CG_CACHE_ID_MAX + 1];
    char contacts_hash[CG_CACHE_HASH_LEN + 1];
    char api_version[24];
    long long scan_ms;
    enum cg_status status[CG_RULE_COUNT];   /* CG_STATUS_NONE: none */
    enum cg_status previous[CG_RULE_COUNT]; /* CG_STATUS_NONE: none */
};

/*
 * Connects (redis.c's synchronous mode: redis.timeout_ms for the connection
 * and each command), over TLS and with AUTH and SELECT as configured. NULL
 * with errbuf (CG_EREDIS) when Redis cannot be reached or refuses us,
 * CG_ECONF on a bad setting; the password never appears in errbuf. A
 * connection lost between calls is made again by the next call.
 */
struct cg_cache_reader *cg_cache_reader_new(const struct cg_conf *conf,
                                            char *errbuf, size_t errsz);

/* The known subscriptions of tenant (empty when none). */
int cg_cache_reader_known(struct cg_cache_reader *r, const char *tenant_id,
                          struct cg_cache_list *out, char *errbuf,
                          size_t errsz);

/* Adds subscriptions to tenant's known set and refreshes its TTL. */
int cg_cache_reader_add_known(struct cg_cache_reader *r, const char *tenant_id,
                              const char *const *subs, size_t n, char *errbuf,
                              size_t errsz);

/* Last scan time of each of n subscriptions (0: never scanned), in one
 * pipelined round trip. */
int cg_cache_reader_scan_ms(struct cg_cache_reader *r, const char *const *subs,
                            size_t n, long long *out_ms, char *errbuf,
                            size_t errsz);

/* Tenants with a scan within the TTL, sorted. */
int cg_cache_reader_tenants(struct cg_cache_reader *r,
                            struct cg_cache_list *out, char *errbuf,
                            size_t errsz);

/* Counts of one tenant (zero when unknown). */
int cg_cache_reader_tenant(struct cg_cache_reader *r, const char *tenant_id,
                           struct cg_cache_tenant *out, char *errbuf,
                           size_t errsz);

/* Subscriptions of tenant whose last scan changed a status, sorted. */
int cg_cache_reader_changed(struct cg_cache_reader *r, const char *tenant_id,
                            struct cg_cache_list *out, char *errbuf,
                            size_t errsz);

/* One subscription's record; CG_ENOTFOUND when none is cached. */
int cg_cache_reader_sub(struct cg_cache_reader *r, const char *subscription_id,
                        struct cg_cache_sub *out, char *errbuf, size_t errsz);

/*
 * The cached findings of a subscription, parsed (cg_finding_parse), in rule
 * order; *n set to how many were cached. The caller clears them.
 */
int cg_cache_reader_findings(struct cg_cache_reader *r,
                             const char *subscription_id,
                             struct cg_finding out[CG_RULE_COUNT], size_t *n,
                             char *errbuf, size_t errsz);

void cg_cache_reader_free(struct cg_cache_reader *r);

void cg_cache_list_free(struct cg_cache_list *l);

#endif
