/*
 * json — small typed accessors over Jansson for tolerant readers.
 *
 * Azure bodies are untrusted: a field may be absent, null, or of another
 * type. These helpers answer "absent" for all three and, for the wrong-type
 * case, tell the caller so it can name the field in a finding's evidence.
 * Object keys are matched exactly first, then case-insensitively, because
 * ARM treats property names case-insensitively.
 */
#ifndef CG_JSON_H
#define CG_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum cg_json_get {
    CG_JSON_ABSENT,     /* missing or null */
    CG_JSON_WRONG_TYPE, /* present with another type */
    CG_JSON_OK,
};

/* The member `key` of obj (exact, then case-insensitive), borrowed; NULL
 * when obj is not an object or has no such key. */
json_t *cg_json_member(const json_t *obj, const char *key);

/* Borrowed string value of obj[key]. */
enum cg_json_get cg_json_string(const json_t *obj, const char *key,
                                const char **out);
enum cg_json_get cg_json_object(const json_t *obj, const char *key,
                                json_t **out);
enum cg_json_get cg_json_array(const json_t *obj, const char *key,
                               json_t **out);
/* Only the JSON literals true/false count as booleans. */
enum cg_json_get cg_json_bool(const json_t *obj, const char *key, bool *out);
enum cg_json_get cg_json_int(const json_t *obj, const char *key,
                             long long *out);

/* Convenience: the string, or NULL when absent or not a string. */
const char *cg_json_str(const json_t *obj, const char *key);

/* Parses a bounded body; on failure writes "line L column C: text" and
 * returns NULL. */
json_t *cg_json_parse(const char *data, size_t len, char *errbuf, size_t errsz);

/* Compact, key-sorted serialisation (heap string). */
char *cg_json_dump(const json_t *v);

/* Sets obj[key] to a new string, or to null when s is NULL. */
void cg_json_set_str(json_t *obj, const char *key, const char *s);

#endif
