/*
 * remediation — the remediation event wire format, defined once.
 *
 * Every time the remediate stage (or contactguard-remediate) acts on a
 * subscription it says what it did in one event, published on the results
 * topic beside the findings with the Kafka header `kind=remediation`
 * (findings carry `kind=finding`). The event is an OCSF Compliance
 * Finding (class_uid 2003) with activity Update (activity_id 2, type_uid
 * 200302); the remediation's own record — mode, outcome, the diff, the
 * before / planned / after bodies, the verification and the rules fixed —
 * sits under `unmapped.remediation`, schema "contactguard.remediation/1".
 * docs/remediation.md shows a full event.
 */
#ifndef CG_REMEDIATION_H
#define CG_REMEDIATION_H

#include "conf.h"
#include "finding.h"

#include <jansson.h>
#include <stdbool.h>

#define CG_REMEDIATION_SCHEMA  "contactguard.remediation/1"
#define CG_REMEDIATION_CONTROL "security-contact-remediation"

enum cg_remediation_outcome {
    CG_REM_PLANNED,        /* dry-run: a change is planned, nothing written */
    CG_REM_APPLIED,        /* written, read back and verified */
    CG_REM_NOOP,           /* the contact needs no change */
    CG_REM_BLOCKED,        /* cannot be fixed without losing data */
    CG_REM_FAILED,         /* a read or the write failed, or verification */
    CG_REM_SKIPPED_LOCKED, /* another remediation holds the subscription */
    CG_REM_OUTCOME_COUNT,
};

enum cg_verification {
    CG_VERIFY_NOT_RUN, /* nothing was written */
    CG_VERIFY_PASSED,  /* read back = planned, and the planned fixes PASS */
    CG_VERIFY_FAILED,
};

/* A plain record; the json_t members are owned (NULL: absent). */
struct cg_remediation {
    char subscription_id[40];
    char tenant_id[40];
    char job_id[64];
    enum cg_remediation_mode mode;
    enum cg_remediation_outcome outcome;
    char reason_code[48]; /* "APPLIED", "WRITE_FORBIDDEN", ... */
    char reason[512];     /* one sentence */
    json_t *before;       /* {"properties":{...}} read under the lock, or a
                             JSON null when there was no contact */
    json_t *planned;      /* the body to PUT */
    json_t *after;        /* the body read back after the PUT */
    json_t *changes;      /* array of strings, the human-readable diff */
    bool replanned;       /* the contact changed since it was evaluated */
    enum cg_verification verification;
    bool body_matches; /* read back equals planned in meaning */
    /* Per rule: what the evaluation said, what the planned body gives, and
     * what the read-back gives (CG_STATUS_NONE: not known). */
    enum cg_status status_before[CG_RULE_COUNT];
    enum cg_status status_planned[CG_RULE_COUNT];
    enum cg_status status_after[CG_RULE_COUNT];
    long http_status; /* of the failing call, 0 if none */
    long long time_ms;
};

/* Empty record: statuses NONE, outcome NOOP, nothing owned. */
void cg_remediation_init(struct cg_remediation *r);
/* Frees what r owns and re-initialises it. */
void cg_remediation_clear(struct cg_remediation *r);

const char *cg_remediation_outcome_name(enum cg_remediation_outcome o);
const char *cg_verification_name(enum cg_verification v);

/* A rule is "to fix" when it FAILed and the planned body PASSes it, and
 * "fixed" when it FAILed and the read-back PASSes it. */
bool cg_remediation_rule_to_fix(const struct cg_remediation *r,
                                enum cg_rule rule);
bool cg_remediation_rule_fixed(const struct cg_remediation *r,
                               enum cg_rule rule);

/* The record under unmapped.remediation (new reference). */
json_t *cg_remediation_json(const struct cg_remediation *r);

/* The OCSF event in w's version as one JSON line without newline (heap).
 * compliance.status_id is the contact's state after the event: the
 * verified read-back's statuses, else the evaluation's (Fail when any rule
 * fails, Pass when all pass, Warning when not known). */
char *cg_remediation_ocsf(struct cg_ocsf *w, const struct cg_remediation *r);

#endif
