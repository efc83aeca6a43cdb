/*
 * evaluate — stage 3 of the pipeline: contacts (and the subscription's
 * Owner role assignments) in, findings out.
 *
 * Pure: no I/O, no clock, no globals. The worker, `contactguard-eval` and
 * `contactguard-remediate` all decide the five rules here, so a verdict is
 * the same wherever it is computed. The contract (docs/rules.md):
 *   - a contact rule PASSes when at least one enabled contact satisfies it;
 *   - a body with no contact: every rule FAILs (NO_CONTACT);
 *   - contacts but none enabled (2023 isEnabled not true): every rule FAILs
 *     (CONTACT_DISABLED);
 *   - a body that could not be read: every rule is ERROR (the caller uses
 *     cg_evaluate_all);
 *   - attack paths cannot be expressed before 2023-12-01-preview: ERROR;
 *   - owner-reachable is SKIPPED unless owner-alerts PASSes (no Owner mail
 *     is sent), then PASSes when a user (or, with count_groups, a group)
 *     holds Owner, FAILs NO_USER_OWNER or NO_OWNER otherwise, and takes the
 *     verdict of a role assignments read that failed.
 * The finding's identity (subscription, tenant, time) is the caller's.
 */
#ifndef CG_EVALUATE_H
#define CG_EVALUATE_H

#include "contacts.h"
#include "finding.h"
#include "owners.h"

#include <stdbool.h>
#include <stddef.h>

struct cg_conf;
struct cg_tenant;

struct cg_rules_conf {
    enum cg_level alert_level;     /* least inclusive passing severity */
    bool alert_exact;              /* only alert_level itself passes */
    enum cg_level attack_level;    /* least inclusive passing risk level */
    bool require_configured;       /* every configured address must be set */
    const char *configured_emails; /* ";"-separated, borrowed; may be NULL */
    bool owner_enabled;            /* decide owner-reachable at all */
    bool owner_count_groups;       /* a Group Owner reaches someone */
};

/* High, not exact, High, not required; owner-reachable on, users only. */
void cg_rules_conf_default(struct cg_rules_conf *rc);

/* The rule settings that apply to tenant t (NULL: the global ones). The
 * strings stay borrowed from conf. */
void cg_rules_conf_from(struct cg_rules_conf *rc, const struct cg_conf *conf,
                        const struct cg_tenant *t);

/*
 * Decides every rule; out[r] receives the verdict of rule r (rule, status,
 * reason_code, reason, evidence). out's previous contents are cleared.
 * owners (borrowed) is what the role assignments read said; NULL, like a
 * NOT_READ record, makes owner-reachable SKIPPED ROLE_ASSIGNMENTS_NOT_READ.
 */
void cg_evaluate(const struct cg_contacts *ct, const struct cg_owners *owners,
                 const struct cg_rules_conf *rc,
                 struct cg_finding out[CG_RULE_COUNT]);

/*
 * Parses one body into ct (initialised by the caller, freed by the caller)
 * and evaluates it; a body that cannot be read gives ERROR findings with
 * BODY_MALFORMED or BODY_TOO_LARGE and the parser's sentence as reason.
 * Returns the parser's result (0 or a CG_E* code).
 */
int cg_evaluate_body(const char *body, size_t len, enum cg_api_version v,
                     const struct cg_owners *owners,
                     const struct cg_rules_conf *rc, struct cg_contacts *ct,
                     struct cg_finding out[CG_RULE_COUNT]);

/* Gives every rule the same verdict, e.g. ERROR for an unreadable body or
 * SKIPPED for a Disabled subscription; the reason is also the evidence. */
void cg_evaluate_all(struct cg_finding out[CG_RULE_COUNT],
                     enum cg_status status, const char *reason_code,
                     const char *reason);

/*
 * The address rule of the contract (docs/rules.md): exactly one '@'; a
 * local part of 1..64 octets of well-formed UTF-8 without white space
 * (Unicode's included) or controls; a domain that, in its A-label form
 * (IDNA2008 with the UTS #46 mapping, via libidn2, for a domain with
 * non-ASCII characters or "xn--" labels), has two or more labels of letters,
 * digits and hyphens (none starting or ending with '-', each at most 63
 * octets, 253 in all), the last two or more letters or an A-label.
 */
#define CG_EMAIL_LOCAL_MAX  64
#define CG_EMAIL_DOMAIN_MAX 253

/* What cg_email_judge learnt about a valid address. */
struct cg_email_form {
    bool local_ascii;                     /* the local part is ASCII */
    bool idn;                             /* the domain was not ASCII */
    char domain[CG_EMAIL_DOMAIN_MAX + 1]; /* A-label form */
};

/* true when s (n bytes, not NUL-terminated) is a valid address; form (may
 * be NULL) is filled for a valid one. Pure. */
bool cg_email_judge(const char *s, size_t n, struct cg_email_form *form);
bool cg_email_valid(const char *s, size_t n);

/* Calls fn for each trimmed, non-empty part of an address list split on
 * ';' and ','. */
void cg_emails_foreach(const char *list,
                       void (*fn)(const char *part, size_t n, void *arg),
                       void *arg);

#endif
