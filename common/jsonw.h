/*
 * jsonw — a streaming JSON writer straight into a struct cg_buf.
 *
 * Findings are written once per subscription and rule, thousands a second;
 * building a Jansson tree for each only to serialise it at once cost more
 * than everything else the worker does (issue 10). This writer appends
 * members in order, with no tree and no allocation beyond the buffer's own
 * growth, so a buffer reused across findings allocates nothing at all.
 *
 * The output is what json_dumps(JSON_COMPACT) writes for the same values:
 * no spaces, keys in the order written, strings escaped as Jansson does
 * (\" \\ \b \f \n \r \t, other control characters as \u00XX with upper
 * case hex digits, everything else, '/' and non-ASCII included, as is).
 * One difference, stricter: a string that is not valid UTF-8 is written
 * with each invalid byte replaced by U+FFFD, where Jansson refused the
 * whole string (json_string returned NULL and the member silently went
 * missing).
 *
 * Commas are placed from the buffer itself: a value or key is preceded by
 * one unless the last byte written opened an object or array or was a
 * key's colon. So callers write members and elements in order and never
 * track "first".
 *
 * Errors are sticky: once the buffer refuses an append (its max), every
 * later call does nothing and cg_jsonw_error returns CG_ETOOBIG, so the
 * caller checks once at the end instead of after every member.
 */
#ifndef CG_JSONW_H
#define CG_JSONW_H

#include "mem.h"

#include <jansson.h>
#include <stddef.h>

struct cg_jsonw {
    struct cg_buf *b; /* borrowed */
    size_t start;     /* b->len when this value began */
    int err;          /* sticky: 0, CG_ETOOBIG (or CG_EPARSE from Jansson) */
};

/* Writes into b from its current end (b keeps what it held). */
void cg_jsonw_init(struct cg_jsonw *w, struct cg_buf *b);
/* 0, or CG_ETOOBIG when some append did not fit (the output is cut). */
int cg_jsonw_error(const struct cg_jsonw *w);

/* "key": with the comma before it when needed. */
void cg_jsonw_key(struct cg_jsonw *w, const char *key);

/* Values: in an array, or after cg_jsonw_key. */
void cg_jsonw_open(struct cg_jsonw *w, char brace);  /* '{' or '[' */
void cg_jsonw_close(struct cg_jsonw *w, char brace); /* '}' or ']' */
void cg_jsonw_str(struct cg_jsonw *w, const char *s);
void cg_jsonw_strn(struct cg_jsonw *w, const char *s, size_t n);
void cg_jsonw_int(struct cg_jsonw *w, long long v);
/* Text that is already JSON (a constant, or an earlier cg_jsonw output). */
void cg_jsonw_raw(struct cg_jsonw *w, const char *json, size_t n);
/* A Jansson value as json_dumps(JSON_COMPACT | JSON_ENCODE_ANY) writes
 * it; NULL writes null. */
void cg_jsonw_value(struct cg_jsonw *w, const json_t *v);

/* key and value in one call. */
void cg_jsonw_kstr(struct cg_jsonw *w, const char *key, const char *s);
void cg_jsonw_kint(struct cg_jsonw *w, const char *key, long long v);
void cg_jsonw_kopen(struct cg_jsonw *w, const char *key, char brace);

#endif
