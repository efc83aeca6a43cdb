/*
 * owners — who holds the Owner role on one subscription.
 *
 * The fetch stage reads the role assignments that apply at the
 * subscription (Microsoft.Authorization/roleAssignments with
 * $filter=atScope(), so those inherited from management groups and the
 * root scope are included) beside the security contacts; this module keeps
 * the Owner assignments of that answer in one record that the pure
 * evaluate stage reads for the owner-reachable rule (docs/rules.md). Only
 * what ARM returns is kept: principal ids and types, no names, no call to
 * Microsoft Graph.
 *
 * The record is small and cheap to copy (the listed owners are one
 * reference-counted JSON array), so a remediation can evaluate again with
 * the owners of its scan.
 */
#ifndef CG_OWNERS_H
#define CG_OWNERS_H

#include "finding.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The built-in Owner role's definition id, the same in every tenant. */
#define CG_OWNER_ROLE_ID "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
/* Owner assignments named in the evidence; the rest are counted. */
#define CG_OWNERS_LISTED_MAX 50
/* Largest body cg_owners_parse accepts. */
#define CG_OWNERS_BODY_MAX (4 << 20)

enum cg_owners_state {
    CG_OWNERS_NOT_READ,   /* nobody asked (contactguard-eval without file) */
    CG_OWNERS_READ,       /* the counts and list below hold */
    CG_OWNERS_UNREADABLE, /* status, reason_code and reason say why */
};

struct cg_owners {
    enum cg_owners_state state;
    size_t assignments; /* role assignments read, every role */
    size_t owners;      /* of them, Owner assignments */
    size_t users;       /* Owner assignments of principalType User */
    size_t groups;      /* ... of principalType Group */
    /* [{principal_id, principal_type, scope}] of the first
     * CG_OWNERS_LISTED_MAX Owner assignments; owned, NULL unless READ. */
    json_t *listed;
    enum cg_status status; /* UNREADABLE: ERROR, or SKIPPED */
    char reason_code[48];
    char reason[512];
};

/* NOT_READ, nothing owned. */
void cg_owners_init(struct cg_owners *o);
void cg_owners_free(struct cg_owners *o);
/* dst (initialised) becomes a copy of src; the list is shared. */
void cg_owners_copy(struct cg_owners *dst, const struct cg_owners *src);

/* true when roleDefinitionId (any scope prefix) names the Owner role: its
 * last path segment is CG_OWNER_ROLE_ID, compared case-insensitively. */
bool cg_owners_is_owner_role(const char *role_definition_id);

/*
 * Reads role assignments into o (initialised by the caller): items is the
 * merged `value` array of a LIST (borrowed). Entries that are not objects,
 * or lack properties.roleDefinitionId, count as assignments of no role.
 * o becomes READ. Returns 0, or CG_EPARSE (errbuf) when items is not an
 * array; o is then unchanged.
 */
int cg_owners_parse_json(struct cg_owners *o, const json_t *items, char *errbuf,
                         size_t errsz);

/* The same for a response body (an object with a "value" array, or the
 * array itself): CG_EPARSE when it is neither, CG_ETOOBIG past
 * CG_OWNERS_BODY_MAX. */
int cg_owners_parse(struct cg_owners *o, const char *body, size_t len,
                    char *errbuf, size_t errsz);

/* o becomes UNREADABLE with the given verdict (reason copied). */
void cg_owners_unreadable(struct cg_owners *o, enum cg_status status,
                          const char *reason_code, const char *reason);

#endif
