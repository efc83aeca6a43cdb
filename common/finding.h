/*
 * finding — the results wire format, defined once.
 *
 * A finding is one rule's verdict on one subscription. The evaluate stage
 * fills the verdict part (rule, status, reason code, reason, evidence); the
 * worker adds identity and time; the publish stage serialises it as either
 *   - compact: one JSON line, schema "contactguard.finding/1", or
 *   - an OCSF Compliance Finding (class_uid 2003), what SIEM pipelines
 *     ingest, in the version a writer holds (common/ocsf.h).
 * The rule catalogue (ids, titles, references to CIS, Conformity, Lacework
 * and Azure Policy; owner-reachable, which no benchmark defines, names
 * contactguard's own control) lives here because both formats carry it.
 */
#ifndef CG_FINDING_H
#define CG_FINDING_H

#include "mem.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CG_FINDING_SCHEMA "contactguard.finding/1"

/* The longest text of one finding; a runaway guard, as its evidence comes
 * from a body the fetch stage already bounded. */
#define CG_FINDING_TEXT_MAX ((size_t)1 << 30)

struct cg_ocsf;

enum cg_rule {
    CG_RULE_OWNER_ALERTS,
    CG_RULE_ADDITIONAL_EMAILS,
    CG_RULE_ALERT_SEVERITY,
    CG_RULE_ATTACK_PATHS,
    CG_RULE_OWNER_REACHABLE, /* reads role assignments, not the contact */
    CG_RULE_COUNT,
};

enum cg_status {
    CG_STATUS_PASS,
    CG_STATUS_FAIL,
    CG_STATUS_ERROR,   /* could not evaluate */
    CG_STATUS_SKIPPED, /* subscription cannot be audited */
    CG_STATUS_NONE,    /* "no previous status" */
};

/* A control a rule maps to, for SIEM mapping. */
struct cg_rule_ref {
    const char *source;  /* "CIS Microsoft Azure Foundations Benchmark" */
    const char *version; /* "2.0.0", or NULL */
    const char *control; /* "2.1.18", "SecurityCenter-019", policy id */
};

struct cg_rule_info {
    const char *id;    /* "owner-alerts" */
    const char *title; /* one line */
    const char *desc;
    const char *remediation;
    int fail_severity_id; /* OCSF severity_id of a FAIL */
    const struct cg_rule_ref *refs;
    size_t nrefs;
    /* What the rule reads, for the OCSF resource, finding type and
     * remediation link; NULL: Microsoft.Security/securityContacts. */
    const char *resource_type; /* "Microsoft.Authorization/roleAssignments" */
    const char *finding_type;  /* "Azure role assignment" */
    const char *doc;           /* remediation reference URL */
};

const struct cg_rule_info *cg_rule_info(enum cg_rule rule);
/* CG_RULE_COUNT when id is not a rule. */
enum cg_rule cg_rule_parse(const char *id);

const char *cg_status_name(enum cg_status s); /* "PASS" ... "NONE" */
/* CG_STATUS_NONE for anything else. */
enum cg_status cg_status_parse(const char *s);

struct cg_finding {
    enum cg_rule rule;
    enum cg_status status;
    char reason_code[48]; /* stable, upper case: "OWNER_ROLE_MISSING" */
    char *reason;         /* one sentence */
    json_t *evidence;     /* owned; what the rule read */
    char subscription_id[40];
    char tenant_id[40];
    char api_version[24];
    char job_id[64];
    long long time_ms;       /* evaluation time, ms since the epoch */
    enum cg_status previous; /* from the cache; CG_STATUS_NONE if unknown */
};

/* Sets the verdict; reason is formatted and copied. */
void cg_finding_set(struct cg_finding *f, enum cg_rule rule,
                    enum cg_status status, const char *reason_code,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Frees what the finding owns and zeroes it (previous = NONE). */
void cg_finding_clear(struct cg_finding *f);

/* Deep copy. */
void cg_finding_copy(struct cg_finding *dst, const struct cg_finding *src);

/* Compact JSON line (no newline); heap string. */
char *cg_finding_compact(const struct cg_finding *f);

/* The same without "references" (they follow from the rule): what the
 * cache keeps. cg_finding_parse reads both. */
char *cg_finding_compact_lean(const struct cg_finding *f);

/* OCSF Compliance Finding JSON (no newline) in w's version, with the next
 * metadata.uid of w; heap string. */
char *cg_finding_ocsf(struct cg_ocsf *w, const struct cg_finding *f);

/*
 * The same, appended to b without a tree (common/jsonw.h): what the
 * worker's stages call, each with a buffer it reuses, so a finding costs
 * no allocation. The heap-string forms above are these into a fresh
 * buffer. 0, or CG_ETOOBIG when b's max cut the text (b then holds a cut
 * line the caller must not send).
 */
int cg_finding_write_compact(struct cg_buf *b, const struct cg_finding *f,
                             bool with_refs);
int cg_finding_write_ocsf(struct cg_ocsf *w, struct cg_buf *b,
                          const struct cg_finding *f);

/* The OCSF standards of every rule that reads the security contact, each
 * once (borrowed, shared, read-only): what a remediation concerns. */
json_t *cg_rule_all_standards(void);
/* The OCSF requirements of a rule ("CIS ... 2.0.0 2.1.18", ...), borrowed
 * and shared as above; NULL for an unknown rule. */
json_t *cg_rule_requirements(enum cg_rule rule);

/* Reads a compact line back (the cache and the report keep findings in
 * this form). CG_EPARSE with errbuf on a malformed line. */
int cg_finding_parse(const char *s, size_t len, struct cg_finding *out,
                     char *errbuf, size_t errsz);

/* Deterministic finding uid from rule and subscription (a UUIDv5-shaped
 * string, 37 bytes with the NUL). */
void cg_finding_uid(enum cg_rule rule, const char *subscription_id,
                    char out[37]);

#endif
