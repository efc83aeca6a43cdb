/*
 * remediate — stage 4 of the pipeline: fix a failing security contact,
 * safely.
 *
 *     job -> fetch -> evaluate -> [remediate] -> cache -> publish
 *
 * The pipeline asks cg_remediate_wanted() whether a subscription qualifies
 * (mode not off, some rule FAILed, no rule ERROR, the subscription Enabled
 * or of unknown state) and, if so, starts one call. contactguard-remediate
 * runs the very same call for one subscription. A call:
 *
 *   dry-run: GET default (2023-12-01-preview; 404 = none) -> plan -> event
 *   apply:   lock -> GET -> plan -> [CHANGE] keep the previous body (undo)
 *            -> GET (last look; changed: plan again) -> PUT -> GET
 *            -> re-evaluate -> verify -> unlock -> event
 *
 * - The lock is Redis's per-subscription lock (cache.h) with
 *   remediation.lock_ttl_ms; when another owner holds it the call ends as
 *   skipped-locked: the other one is doing it. Every Azure call made under
 *   the lock must end within three quarters of its TTL (else the call fails
 *   with CG_EDEADLINE), so a write never lands after the lock could have
 *   expired and been taken by someone else.
 * - The GET under the lock is the truth the plan starts from. When it
 *   differs from what was evaluated (someone changed the contact in
 *   between), the plan is made from the new contact and the event says
 *   `replanned`: a change made meanwhile is kept, never overwritten.
 * - The contacts API has no ETag: a PUT replaces whatever is there. So
 *   the contact is read once more right before the PUT; when it changed
 *   since the read under the lock, the plan is made again from it (at most
 *   CG_REMEDIATE_LOOKS_MAX times, then nothing is written). An edit landing
 *   in the one round trip between that read and the PUT is overwritten and
 *   nothing can show it afterwards (docs/remediation.md).
 * - Nothing is written unless the previous body is safely in Redis
 *   (undo:SUB, remediation.retention) together with the planned body, so
 *   `contactguard-remediate undo` can refuse when the contact changed
 *   since.
 * - The PUT goes through the ARM client's write bucket. 400 (Azure
 *   rejected the body), 403 (the principal may not write) and every other
 *   failure end the call as failed; nothing is tried again blindly (the ARM
 *   client alone retries 429 and 5xx within the deadline, as for reads).
 * - Verification: the read-back equals the planned body in meaning
 *   (cg_remediate_same_meaning) and every rule the plan was to fix PASSes
 *   when the read-back is evaluated. Those findings are handed back so the
 *   published findings show the state after the change.
 * The result's event (common/remediation.h) says all of it.
 */
#ifndef CG_REMEDIATE_H
#define CG_REMEDIATE_H

#include "conf.h"
#include "evaluate.h"
#include "job.h"
#include "plan.h"
#include "remediation.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_loop;
struct cg_arm;
struct cg_cache;
struct cg_remediate;
struct cg_remediate_call;

#define CG_REMEDIATE_API_VERSION "2023-12-01-preview"
#define CG_REMEDIATE_OWNER_MAX   128
/* Plans made again when the last look before the write finds the contact
 * changed; past this many the attempt ends without a write. */
#define CG_REMEDIATE_LOOKS_MAX 2
#define CG_REMEDIATE_ROLES                                                     \
    "Security Admin, Contributor or Owner on the subscription"

/* ---- the policy: pure ---- */

/* What remediation does for one tenant; strings borrowed from conf. */
struct cg_remediate_policy {
    enum cg_remediation_mode mode;
    struct cg_policy plan; /* addresses and levels to ensure */
};

/*
 * The policy of tenant t (NULL: the global settings): remediation.* with
 * the tenant's remediation overrides on top. job_mode (an enum
 * cg_remediation_mode, or -1 when the job says nothing) may lower the
 * mode, never raise it.
 */
void cg_remediate_policy(const struct cg_conf *conf, const struct cg_tenant *t,
                         int job_mode, struct cg_remediate_policy *out);

/*
 * true when the evaluation allows remediation: mode not off, at least one
 * FAIL, no ERROR (nor SKIPPED), and state Enabled or unknown. Otherwise
 * false with the reason in why (may be NULL).
 */
bool cg_remediate_wanted(enum cg_remediation_mode mode,
                         const struct cg_finding *findings, size_t n,
                         enum cg_sub_state state, char *why, size_t whysz);

/*
 * Two contact bodies ({"properties":{...}} or the bare properties; NULL or
 * a JSON null: no contact) say the same thing: isEnabled, phone, the
 * addresses (as sets, case-insensitively), the role state and roles
 * (case-insensitively), the sources (type and level, case-insensitively)
 * and every other member of properties (by value). Read-only members that
 * Azure adds (id, name, type, systemData) are outside properties and not
 * compared.
 */
bool cg_remediate_same_meaning(const json_t *a, const json_t *b);

/*
 * The last check before a write, independent of the plan: every address,
 * role and source type of before is still in body (case-insensitively; a
 * source's level may change, that is what the plan does), every member of
 * before's properties is still there and is one the write's API version
 * stores (cg_plan_stored), and the phone is unchanged. false with
 * the first loss in why (may be NULL). A remediation whose plan fails it writes
 * nothing (PLAN_WOULD_LOSE_DATA).
 */
bool cg_remediate_keeps_everything(const json_t *before, const json_t *body,
                                   char *why, size_t whysz);

/* ---- the stage ---- */

/* loop, arm, cache and conf are borrowed and outlive the stage. */
struct cg_remediate *cg_remediate_new(struct cg_loop *loop, struct cg_arm *arm,
                                      struct cg_cache *cache,
                                      const struct cg_conf *conf, char *errbuf,
                                      size_t errsz);
/* Cancels every call (no callbacks). A lock still held expires by its TTL.
 * NULL-ok. */
void cg_remediate_free(struct cg_remediate *rm);

/* One request; everything borrowed for the duration of cg_remediate_start
 * only (it copies what it keeps). */
struct cg_remediate_req {
    const char *tenant_id;      /* the subscription's tenant */
    const char *auth_tenant_id; /* whose credentials; NULL: tenant_id */
    const char *subscription_id;
    const char *job_id; /* "" or NULL for the CLI */
    const char *owner;  /* lock owner, unique per attempt */
    const struct cg_remediate_policy *policy; /* mode dry-run or apply */
    const struct cg_rules_conf *rules;        /* to re-evaluate */
    /* The Owner role assignments read with the contacts (copied), so a
     * re-evaluation decides owner-reachable as the scan did; NULL: not
     * read. Remediation never changes role assignments. */
    const struct cg_owners *owners;
    /* The evaluation this acts on, one finding per rule, and the hash of
     * the contacts it read (cg_contacts_hash; "" if unknown). */
    const struct cg_finding *findings;
    size_t nfindings;
    const char *contacts_hash;
    int64_t deadline_ms; /* loop clock */
};

struct cg_remediate_result {
    struct cg_remediation event; /* owned by the result; move it to keep */
    /* true when the contact was read back after a write: `after` holds the
     * re-evaluated findings (identity not stamped) and the contacts hash. */
    bool reevaluated;
    struct cg_finding after[CG_RULE_COUNT];
    char after_hash[65];
};

/* Called once from the loop (never inside cg_remediate_start) unless the
 * call is cancelled. res is valid for the call; the callee may move
 * res->event and res->after out (then re-initialise them). */
typedef void (*cg_remediate_fn)(struct cg_remediate_result *res, void *arg);

/* Starts a remediation (policy mode dry-run or apply). NULL, and no
 * callback, when the mode is off or the request lacks tenant,
 * subscription, rules or fn. */
struct cg_remediate_call *cg_remediate_start(struct cg_remediate *rm,
                                             const struct cg_remediate_req *req,
                                             cg_remediate_fn fn, void *arg);

/* No callback after this. A held lock is released. NULL-ok. */
void cg_remediate_cancel(struct cg_remediate *rm,
                         struct cg_remediate_call *call);

/* ---- undo: contactguard-remediate undo ---- */

/*
 * The body kept for undo in Redis (cache.h undo:SUB): {"schema",
 * "subscription_id", "tenant_id", "job_id", "time_ms", "before", "after"}
 * where before is the replaced body (a JSON null: there was none) and
 * after is the body written.
 */
#define CG_REMEDIATE_UNDO_SCHEMA "contactguard.undo/1"

struct cg_remediate_undo_result {
    int err;          /* 0 restored; CG_ENOTFOUND nothing kept;
                         CG_ECONFLICT changed since; else the failure */
    char why[512];    /* one sentence */
    json_t *kept;     /* the undo record, or NULL; borrowed */
    json_t *current;  /* the contact read before restoring, borrowed */
    json_t *restored; /* the contact read back after, borrowed */
    json_t *written;  /* the body PUT to restore, borrowed; NULL if none */
    bool normalised;  /* restored in meaning, not byte for byte: the kept
                         body could not be written as it was (see why) */
};
typedef void (*cg_remediate_undo_fn)(const struct cg_remediate_undo_result *res,
                                     void *arg);

/*
 * Restores subscription's kept body under the same lock: reads the record,
 * GETs the contact, refuses (CG_ECONFLICT) unless it equals the kept
 * "after" in meaning, then PUTs "before" (or DELETEs the contact when there
 * was none) and reads it back. A kept body Azure would refuse is written
 * as cg_remediate_restorable makes it and the result says so. tenant_id
 * selects the credentials; NULL:
 * the tenant recorded with the body.
 */
/*
 * The body undo PUTs for the kept body: a copy of it, or, when Azure would
 * refuse it as it is (',' or white space between the addresses of emails,
 * which the portal allows and the API does not), a copy whose addresses are
 * ';'-separated in the same order, with *normalised true. New reference.
 */
json_t *cg_remediate_restorable(const json_t *kept, bool *normalised);

struct cg_remediate_call *
cg_remediate_undo(struct cg_remediate *rm, const char *tenant_id,
                  const char *subscription_id, const char *owner,
                  int64_t deadline_ms, cg_remediate_undo_fn fn, void *arg);

#endif
