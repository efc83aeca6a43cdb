#include "jsonw.h"

#include "err.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void cg_jsonw_init(struct cg_jsonw *w, struct cg_buf *b)
{
    w->b = b;
    w->start = b->len;
    w->err = 0;
}

int cg_jsonw_error(const struct cg_jsonw *w)
{
    return w->err;
}

static void put(struct cg_jsonw *w, const void *p, size_t n)
{
    if (!w->err && cg_buf_append(w->b, p, n))
        w->err = CG_ETOOBIG;
}

/* A comma unless this is the first thing of the value being written, or
 * follows an opening brace or a key's colon. */
static void sep(struct cg_jsonw *w)
{
    if (w->b->len <= w->start)
        return;
    char last = w->b->data[w->b->len - 1];
    if (last != '{' && last != '[' && last != ':')
        put(w, ",", 1);
}

static void string(struct cg_jsonw *w, const char *s, size_t n);

void cg_jsonw_key(struct cg_jsonw *w, const char *key)
{
    sep(w);
    string(w, key, strlen(key));
    put(w, ":", 1);
}

void cg_jsonw_open(struct cg_jsonw *w, char brace)
{
    sep(w);
    put(w, &brace, 1);
}

void cg_jsonw_close(struct cg_jsonw *w, char brace)
{
    put(w, &brace, 1);
}

/*
 * The length of the valid UTF-8 sequence at s (at most n bytes), or 0 when
 * it is not one: the same acceptance as Jansson's utf8 check (no overlong
 * forms, no surrogates, nothing above U+10FFFF).
 */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

static void string(struct cg_jsonw *w, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    put(w, "\"", 1);
    while (p < end) {
        /* The run that needs no escaping, copied at once. */
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            put(w, run, (size_t)(p - run));
        if (p >= end)
            break;
        unsigned char c = *p;
        char esc[8];
        const char *e = esc;
        size_t el = 2;
        if (c >= 0x80) {
            size_t l = utf8_len(p, (size_t)(end - p));
            if (l) {
                put(w, p, l);
                p += l;
            } else {
                put(w, "\xef\xbf\xbd", 3); /* U+FFFD */
                p++;
            }
            continue;
        }
        switch (c) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\b':
            e = "\\b";
            break;
        case '\f':
            e = "\\f";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        default:
            el = (size_t)snprintf(esc, sizeof(esc), "\\u%04X", (unsigned)c);
            break;
        }
        put(w, e, el);
        p++;
    }
    put(w, "\"", 1);
}

void cg_jsonw_strn(struct cg_jsonw *w, const char *s, size_t n)
{
    sep(w);
    string(w, s, n);
}

void cg_jsonw_str(struct cg_jsonw *w, const char *s)
{
    cg_jsonw_strn(w, s, strlen(s));
}

void cg_jsonw_int(struct cg_jsonw *w, long long v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", v);
    sep(w);
    put(w, num, (size_t)n);
}

void cg_jsonw_raw(struct cg_jsonw *w, const char *json, size_t n)
{
    sep(w);
    put(w, json, n);
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    put(data, buffer, size);
    return 0;
}

void cg_jsonw_value(struct cg_jsonw *w, const json_t *v)
{
    sep(w);
    if (!v) {
        put(w, "null", 4);
        return;
    }
    /* Jansson's own dumper, through a callback into the buffer: the
     * values come from Azure bodies (reals, NULs), and it is already how
     * they were written. */
    if (json_dump_callback(v, dump_cb, w, JSON_COMPACT | JSON_ENCODE_ANY))
        w->err = w->err ? w->err : CG_EPARSE;
}

void cg_jsonw_kstr(struct cg_jsonw *w, const char *key, const char *s)
{
    cg_jsonw_key(w, key);
    cg_jsonw_strn(w, s, strlen(s));
}

void cg_jsonw_kint(struct cg_jsonw *w, const char *key, long long v)
{
    cg_jsonw_key(w, key);
    cg_jsonw_int(w, v);
}

void cg_jsonw_kopen(struct cg_jsonw *w, const char *key, char brace)
{
    cg_jsonw_key(w, key);
    put(w, &brace, 1);
}
