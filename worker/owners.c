#include "owners.h"

#include "err.h"
#include "json.h"
#include "mem.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

void cg_owners_init(struct cg_owners *o)
{
    memset(o, 0, sizeof(*o));
    o->state = CG_OWNERS_NOT_READ;
    o->status = CG_STATUS_NONE;
}

void cg_owners_free(struct cg_owners *o)
{
    json_decref(o->listed);
    cg_owners_init(o);
}

void cg_owners_copy(struct cg_owners *dst, const struct cg_owners *src)
{
    cg_owners_free(dst);
    *dst = *src;
    if (dst->listed)
        json_incref(dst->listed);
}

bool cg_owners_is_owner_role(const char *id)
{
    if (!id)
        return false;
    const char *slash = strrchr(id, '/');
    const char *last = slash ? slash + 1 : id;
    return strcasecmp(last, CG_OWNER_ROLE_ID) == 0;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

int cg_owners_parse_json(struct cg_owners *o, const json_t *items, char *errbuf,
                         size_t errsz)
{
    if (!json_is_array(items))
        return cg_err_set(errbuf, errsz, CG_EPARSE,
                          "role assignments are not a list (no \"value\" "
                          "array)");
    cg_owners_free(o);
    o->state = CG_OWNERS_READ;
    o->listed = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        o->assignments++;
        const json_t *p = cg_json_member(it, "properties");
        if (!cg_owners_is_owner_role(cg_json_str(p, "roleDefinitionId")))
            continue;
        /* An absent or unknown principalType (ForeignGroup, Device, or a
         * type ARM adds later) is listed as read and reaches no one. */
        const char *type = cg_json_str(p, "principalType");
        o->owners++;
        if (type && strcasecmp(type, "User") == 0)
            o->users++;
        else if (type && strcasecmp(type, "Group") == 0)
            o->groups++;
        if (json_array_size(o->listed) < CG_OWNERS_LISTED_MAX)
            json_array_append_new(
                o->listed,
                json_pack("{s:o,s:o,s:o}", "principal_id",
                          str_or_null(cg_json_str(p, "principalId")),
                          "principal_type", str_or_null(type), "scope",
                          str_or_null(cg_json_str(p, "scope"))));
    }
    return 0;
}

int cg_owners_parse(struct cg_owners *o, const char *body, size_t len,
                    char *errbuf, size_t errsz)
{
    if (len > CG_OWNERS_BODY_MAX)
        return cg_err_set(errbuf, errsz, CG_ETOOBIG,
                          "role assignments body of %zu bytes is larger "
                          "than %d",
                          len, CG_OWNERS_BODY_MAX);
    char jerr[200];
    json_t *root = cg_json_parse(body, len, jerr, sizeof(jerr));
    if (!root)
        return cg_err_set(errbuf, errsz, CG_EPARSE,
                          "role assignments body is not JSON: %s", jerr);
    const json_t *items =
        json_is_array(root) ? root : cg_json_member(root, "value");
    int rc = cg_owners_parse_json(o, items, errbuf, errsz);
    json_decref(root);
    return rc;
}

void cg_owners_unreadable(struct cg_owners *o, enum cg_status status,
                          const char *reason_code, const char *reason)
{
    cg_owners_free(o);
    o->state = CG_OWNERS_UNREADABLE;
    o->status = status;
    cg_strlcpy(o->reason_code, reason_code, sizeof(o->reason_code));
    cg_strlcpy(o->reason, reason, sizeof(o->reason));
}
