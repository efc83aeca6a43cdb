/*
 * cache_schema — the Redis cache's keys and scripts, defined once.
 *
 * The worker's cache stage (worker/cache.h) writes these keys; the
 * producer, contactguard-report and contactguard-remediate read them
 * through the reader (cache_reader.h). Like the two wire formats (job,
 * finding), the schema lives in common/ so that no process reaches into
 * another's folder for it.
 *
 * Redis key schema (P = redis.prefix, default "cg:"; ids are lower-cased;
 * TTL = redis.ttl seconds; docs/cache.md has the long form):
 *
 *   P sub:SUB             hash   TTL, refreshed by every store. Written by
 *                                the worker (store script); read by lookup,
 *                                the producer (scan_ms) and the report.
 *       tenant, job_id, scan_ms, hash (hex SHA-256 of the normalised
 *       contacts), api_version, status:RULE (PASS|FAIL|ERROR|SKIPPED),
 *       previous:RULE (status before this job's scan, absent if none),
 *       finding:RULE (compact finding line, contactguard.finding/1)
 *   P tenant:T:counts     hash   "RULE:STATUS" -> number of subscriptions;
 *                                TTL refreshed by every store of T. Kept
 *                                exact by the store script.
 *   P tenant:T:last       hash   SUB -> status letters, one per rule in
 *                                enum cg_rule order (P F E S, '-' none):
 *                                what the counts hold for SUB. Same TTL.
 *   P tenant:T:scanned    zset   SUB scored by scan_ms. Same TTL. Entries
 *                                older than the TTL are pruned, with their
 *                                counts, by the next store of T.
 *   P tenant:T:failing    set    SUBs with at least one FAIL. Same TTL.
 *   P tenant:T:changed    set    SUBs whose last scan changed a rule's
 *                                status. Same TTL.
 *   P tenant:T:known      set    every SUB seen (producer listings, worker
 *                                stores); TTL refreshed on every add.
 *   P tenants             zset   T scored by its last scan_ms; no TTL,
 *                                entries older than the TTL are pruned.
 *   P job:JOB             string "1", TTL; the job's findings were
 *                                delivered (mark_done).
 *   P lock:SUB            string owner, PX ttl_ms; remediation lock.
 *   P undo:SUB            string contact body replaced by remediation,
 *                                EX remediation.retention.
 *
 * The store script also builds key names from P (to prune expired
 * subscriptions and to move a subscription between tenants), so the schema
 * assumes one Redis, not Redis Cluster.
 */
#ifndef CG_CACHE_SCHEMA_H
#define CG_CACHE_SCHEMA_H

#include "finding.h"

#include <stddef.h>

#define CG_CACHE_ID_MAX      64           /* tenant, subscription, job ids */
#define CG_CACHE_OWNER_MAX   128          /* lock owner string */
#define CG_CACHE_PREFIX_MAX  64           /* redis.prefix */
#define CG_CACHE_BODY_MAX    (4 << 20)    /* undo body */
#define CG_CACHE_FINDING_MAX (256 * 1024) /* cached finding line */
#define CG_CACHE_HASH_LEN    64           /* hex SHA-256 */
#define CG_CACHE_SHA_HEX     41           /* a script's SHA-1, hex + NUL */
/* Longest key name: prefix + "tenant:" + id + ":counts". */
#define CG_CACHE_KEY_MAX (CG_CACHE_PREFIX_MAX + CG_CACHE_ID_MAX + 32)

/*
 * The store script. KEYS: sub:S, tenant:T:last, tenant:T:counts,
 * tenant:T:failing, tenant:T:known, tenants, tenant:T:changed,
 * tenant:T:scanned. ARGV: prefix, T, S, scan_ms, ttl, job, hash,
 * api_version, status letters (one per rule, P F E S or '-'), the number
 * of rules n, n rule ids, n finding lines ("" for none). Returns 1, or 0
 * when a newer scan was cached (the store is ignored).
 */
extern const char cg_cache_store_lua[];
#define CG_CACHE_STORE_KEYS 8

/* Releases lock:S (KEYS[1]) only if ARGV[1] still holds it: 1 or 0. */
extern const char cg_cache_unlock_lua[];

/* The hex SHA-1 of a script, as EVALSHA wants it. */
void cg_cache_script_sha(const char *script, char out[CG_CACHE_SHA_HEX]);

/*
 * Copies an id into out, lower-cased, so that the producer and the worker
 * name the same key whatever case Azure used. Ids become parts of key
 * names: only [A-Za-z0-9._:-] are accepted. CG_EINVAL otherwise.
 */
int cg_cache_id_norm(const char *id, char out[CG_CACHE_ID_MAX + 1]);

/* The letter a status is stored as in tenant:T:last ('-': none). */
char cg_cache_status_letter(enum cg_status s);

/* Checks redis.prefix: CG_ECONF with errbuf when it is too long. */
int cg_cache_prefix_check(const char *prefix, char *errbuf, size_t errsz);

#endif
