/*
 * job — the scan job wire format, defined once.
 *
 * The producer writes one job per subscription to the jobs topic (key = the
 * subscription id); the worker reads it. JSON, schema "contactguard.job/1":
 *   job_id, tenant_id, subscription_id  required (ids are GUIDs, read in
 *                 any case, kept lower case)
 *   reason        scheduled | new-subscription | event | manual
 *   requested_at  ISO 8601 UTC
 *   subscription_state  optional: Enabled, Warned, PastDue, Disabled, Deleted
 *   remediation   optional: off | dry-run | apply (may lower the tenant's
 *                 mode, never raise it)
 *   auth_tenant_id optional: the tenant whose credentials read the
 *                 subscription when it differs (Azure Lighthouse)
 * A message that does not decode is final: it goes to the dead-letter topic.
 */
#ifndef CG_JOB_H
#define CG_JOB_H

#include <stdbool.h>
#include <stddef.h>

#define CG_JOB_SCHEMA  "contactguard.job/1"
#define CG_JOB_MAX_LEN (64 * 1024)

enum cg_job_reason {
    CG_JOB_SCHEDULED,
    CG_JOB_NEW_SUBSCRIPTION,
    CG_JOB_EVENT,
    CG_JOB_MANUAL,
};

enum cg_sub_state {
    CG_SUB_UNKNOWN, /* not given */
    CG_SUB_ENABLED,
    CG_SUB_WARNED,
    CG_SUB_PAST_DUE,
    CG_SUB_DISABLED,
    CG_SUB_DELETED,
};

struct cg_job {
    char job_id[64];
    char tenant_id[40];
    char subscription_id[40];
    enum cg_job_reason reason;
    long long requested_at_ms;
    enum cg_sub_state state;
    int remediation;         /* enum cg_remediation_mode, or -1 when absent */
    char auth_tenant_id[40]; /* "" when the job's tenant reads it */
};

/* A fresh job with a random job id, requested now. */
void cg_job_init(struct cg_job *job, const char *tenant_id,
                 const char *subscription_id, enum cg_job_reason reason);

/* JSON text (heap, no newline). */
char *cg_job_encode(const struct cg_job *job);

/* Decodes and validates a message. CG_ETOOBIG past CG_JOB_MAX_LEN,
 * CG_EPARSE otherwise, with the reason in errbuf; *job written only on
 * success. */
int cg_job_decode(const void *data, size_t len, struct cg_job *job,
                  char *errbuf, size_t errsz);

/* 8-4-4-4-12 hexadecimal. */
bool cg_guid_valid(const char *s);

/* Lower-cases an id in place. Azure GUIDs are case-insensitive but some
 * tools write them upper case; every id is lower-cased where it enters
 * (job decode, cg_job_init, the producer's emit, contactguard-eval) so
 * Kafka keys, headers, findings and the cache name one subscription one
 * way. */
void cg_id_lower(char *s);

/* cg_id_lower on the job's tenant, subscription and auth tenant. */
void cg_job_normalise(struct cg_job *job);

/* A random UUIDv4 string (37 bytes with the NUL). */
void cg_uuid4(char out[37]);

const char *cg_job_reason_name(enum cg_job_reason r);
int cg_job_reason_parse(const char *s, enum cg_job_reason *out);

const char *cg_sub_state_name(enum cg_sub_state s);
/* CG_SUB_UNKNOWN for anything else (case-insensitive). */
enum cg_sub_state cg_sub_state_parse(const char *s);
/* Enabled, Warned and PastDue are audited; Disabled and Deleted are not;
 * an unknown state is audited. */
bool cg_sub_state_auditable(enum cg_sub_state s);

#endif
