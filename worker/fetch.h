/*
 * fetch — stage 2 of the pipeline: read a subscription's security contacts
 * and who holds its Owner role.
 *
 * LISTs Microsoft.Security/securityContacts with azure.api_version (default
 * 2023-12-01-preview) through the ARM client, which owns tokens, paging,
 * throttling and retries within the job's deadline. When the endpoint
 * rejects the version it falls back once to 2020-01-01-preview. The result
 * is either the normalised contacts, or a verdict for every rule that says
 * why they could not be read: SKIPPED for a subscription that no longer
 * exists or is disabled, ERROR for everything else (no credentials, access
 * denied, provider not registered, Azure unavailable past the deadline),
 * each with a stable reason code.
 *
 * With rules.owner_reachable.enabled (the default) the same call also LISTs
 * Microsoft.Authorization/roleAssignments with $filter=atScope() (2022-04-01)
 * at the same time, not after: both requests are in flight together, under
 * the same bucket, tenant slots and deadline, and the callback runs once
 * both have answered. A failed role assignments read decides only
 * owner-reachable (res->owners is UNREADABLE with its verdict).
 */
#ifndef CG_FETCH_H
#define CG_FETCH_H

#include "contacts.h"
#include "finding.h"
#include "owners.h"

#include <stdint.h>

struct cg_arm;
struct cg_arm_result;
struct cg_conf;
struct cg_fetch;
struct cg_fetch_call;

struct cg_fetch_result {
    int err; /* 0: ct holds the contacts; else status/reason_code/reason */
    struct cg_contacts ct; /* owned by the result; move it to keep it */
    enum cg_status status; /* ERROR or SKIPPED when err != 0 */
    const char *reason_code;
    char reason[512];
    enum cg_api_version version; /* the version that answered */
    long http_status;
    int attempts;       /* both reads */
    size_t pages;       /* of the contacts */
    int64_t elapsed_ms; /* the slower of the two reads */
    /* Owned like ct. NOT_READ when the rule is off; else READ, or
     * UNREADABLE with the owner-reachable verdict. */
    struct cg_owners owners;
    size_t role_pages;
    int64_t role_elapsed_ms;
};

/* Called once from the loop unless the call is cancelled. res is valid for
 * the call; the callee may move res->ct and res->owners out (then
 * re-initialise them). */
typedef void (*cg_fetch_fn)(struct cg_fetch_result *res, void *arg);

/* The role assignments read, one per subscription. */
#define CG_FETCH_ROLES_API_VERSION "2022-04-01"

/* arm and conf are borrowed. */
struct cg_fetch *cg_fetch_new(struct cg_arm *arm, const struct cg_conf *conf,
                              char *errbuf, size_t errsz);
void cg_fetch_free(struct cg_fetch *f);

/* Reads subscription with the credentials of auth_tenant. deadline_ms is on
 * the loop's clock. */
struct cg_fetch_call *cg_fetch_start(struct cg_fetch *f,
                                     const char *auth_tenant,
                                     const char *subscription,
                                     int64_t deadline_ms, cg_fetch_fn fn,
                                     void *arg);
/* No callback after this. NULL-ok. */
void cg_fetch_cancel(struct cg_fetch *f, struct cg_fetch_call *call);

/*
 * The one place where a failed read becomes a job's verdict. The ARM client
 * has already retried every retryable error (common/err.h) until the job's
 * deadline and reports what is left as final: a code ARM never retries
 * (403, 404, 409, 400, no credentials, ...) or CG_EDEADLINE with the cause
 * that kept failing. Sets res->err, status (ERROR or SKIPPED), reason_code
 * and reason from r (r->err != 0), subscription naming the one read; a code
 * it has no case for, a retryable one included, is AZURE_UNAVAILABLE.
 * Pure: no I/O, no state. tests/unit/test_outcome.c holds the table of every
 * code's outcome.
 */
void cg_fetch_classify(const struct cg_arm_result *r, const char *subscription,
                       struct cg_fetch_result *res);

/* Calls in flight. */
size_t cg_fetch_in_flight(const struct cg_fetch *f);

#endif
