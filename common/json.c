#include "json.h"

#include "err.h"
#include "mem.h"

#include <stdio.h>
#include <strings.h>

json_t *cg_json_member(const json_t *obj, const char *key)
{
    if (!json_is_object(obj))
        return NULL;
    json_t *v = json_object_get(obj, key);
    if (v)
        return v;
    const char *k;
    json_t *val;
    /* json_object_foreach takes a non-const object; it does not modify it */
    json_object_foreach((json_t *)obj, k, val)
    {
        if (strcasecmp(k, key) == 0)
            return val;
    }
    return NULL;
}

static enum cg_json_get json_typed(const json_t *obj, const char *key,
                                   json_type type, json_t **out)
{
    json_t *v = cg_json_member(obj, key);
    if (!v || json_is_null(v))
        return CG_JSON_ABSENT;
    if (json_typeof(v) != type)
        return CG_JSON_WRONG_TYPE;
    *out = v;
    return CG_JSON_OK;
}

enum cg_json_get cg_json_string(const json_t *obj, const char *key,
                                const char **out)
{
    json_t *v;
    enum cg_json_get g = json_typed(obj, key, JSON_STRING, &v);
    if (g == CG_JSON_OK)
        *out = json_string_value(v);
    return g;
}

enum cg_json_get cg_json_object(const json_t *obj, const char *key,
                                json_t **out)
{
    return json_typed(obj, key, JSON_OBJECT, out);
}

enum cg_json_get cg_json_array(const json_t *obj, const char *key, json_t **out)
{
    return json_typed(obj, key, JSON_ARRAY, out);
}

enum cg_json_get cg_json_bool(const json_t *obj, const char *key, bool *out)
{
    json_t *v = cg_json_member(obj, key);
    if (!v || json_is_null(v))
        return CG_JSON_ABSENT;
    if (!json_is_boolean(v))
        return CG_JSON_WRONG_TYPE;
    *out = json_is_true(v);
    return CG_JSON_OK;
}

enum cg_json_get cg_json_int(const json_t *obj, const char *key, long long *out)
{
    json_t *v;
    enum cg_json_get g = json_typed(obj, key, JSON_INTEGER, &v);
    if (g == CG_JSON_OK)
        *out = json_integer_value(v);
    return g;
}

const char *cg_json_str(const json_t *obj, const char *key)
{
    const char *s = NULL;
    return cg_json_string(obj, key, &s) == CG_JSON_OK ? s : NULL;
}

json_t *cg_json_parse(const char *data, size_t len, char *errbuf, size_t errsz)
{
    json_error_t je;
    json_t *v = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v)
        cg_err_set(errbuf, errsz, CG_EPARSE, "line %d column %d: %s", je.line,
                   je.column, je.text);
    return v;
}

char *cg_json_dump(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!s)
        return cg_strdup("null");
    /* Jansson allocates with malloc by default; hand back our own copy so
     * every string from this module is freed with free(). */
    return s;
}

void cg_json_set_str(json_t *obj, const char *key, const char *s)
{
    json_object_set_new(obj, key, s ? json_string(s) : json_null());
}
