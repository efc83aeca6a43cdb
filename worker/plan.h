/*
 * plan — what remediation would write: a pure function.
 *
 * (the current `default` contact as Azure returned it with
 * 2023-12-01-preview, the tenant's policy) -> the body to PUT and a
 * human-readable diff. Following REFERENCE.md §3 and nothing more:
 *   - notificationsByRole: state On, Owner added to the roles;
 *   - emails: the tenant's addresses appended (deduplicated
 *     case-insensitively, ';'-joined, no spaces), every existing address
 *     kept (commas and spaces as separators are normalised to ';');
 *   - isEnabled true;
 *   - an Alert and an AttackPath source at the configured levels, unless an
 *     existing one is already at least as inclusive (then it is untouched;
 *     a less inclusive one is lowered, never removed);
 *   - phone, other roles, other sources and unknown values kept.
 * It never removes an address, a role or a source. When an existing
 * address is not valid it cannot be written back (Azure would reject it)
 * and must not be dropped either: the address list is left exactly as it
 * is (`held` says why) and only the fixes that do not touch it are
 * planned; when none is left, or the list could not be written back
 * unchanged (its separators are not ';'), the plan is BLOCKED and says
 * which address. A contact holding a property that the write's API
 * version does not store is BLOCKED too (`loses_data`): the write would
 * drop it. No I/O, no clock.
 */
#ifndef CG_PLAN_H
#define CG_PLAN_H

#include "contacts.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CG_PLAN_CHANGES_MAX 32

struct cg_policy {
    const char *emails; /* ";"-separated addresses to ensure; may be NULL */
    enum cg_level alert_level;  /* Low, Medium or High */
    enum cg_level attack_level; /* Low .. Critical */
};

enum cg_plan_outcome {
    CG_PLAN_NOOP,    /* nothing to change: write nothing */
    CG_PLAN_CHANGE,  /* body is what to PUT */
    CG_PLAN_BLOCKED, /* cannot be fixed without losing data: see reason */
};

struct cg_plan {
    enum cg_plan_outcome outcome;
    json_t *before; /* the current body ({"properties":{...}}), owned */
    json_t *body;   /* the body to PUT, owned; NULL unless CHANGE */
    char *changes[CG_PLAN_CHANGES_MAX]; /* "emails: + soc@contoso.com" */
    size_t nchanges;
    char reason[256]; /* BLOCKED: why */
    bool loses_data;  /* BLOCKED because the write would drop properties */
    char held[256];   /* CHANGE: the part of the fix held back, and why */
};

/*
 * current is the contact object as read with 2023-12-01-preview (a GET of
 * `default`, or the element of a LIST), or NULL when none exists. Fills
 * plan (the caller frees it with cg_plan_free). Never fails: hostile
 * shapes are replaced only where they carry nothing to keep, and said so
 * in the changes.
 */
void cg_plan_make(const json_t *current, const struct cg_policy *policy,
                  struct cg_plan *plan);

void cg_plan_free(struct cg_plan *plan);

/* true when a write with API version v stores the member key of
 * properties (its spec's SecurityContactProperties); Azure drops the
 * others. */
bool cg_plan_stored(enum cg_api_version v, const char *key);

/* How many members of body's properties ({"properties":{...}} or the bare
 * properties) a write with v would drop; their names, ", "-joined, in out
 * (truncated to outsz). */
size_t cg_plan_unstored(const json_t *body, enum cg_api_version v, char *out,
                        size_t outsz);

/* The changes as one "; "-joined line (heap). */
char *cg_plan_diff(const struct cg_plan *plan);

#endif
