#include "mem.h"

#include "err.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mem_oom(size_t n)
{
    fprintf(stderr, "contactguard: out of memory allocating %zu bytes\n", n);
    abort();
}

void *cg_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        mem_oom(n);
    return p;
}

void *cg_calloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        mem_oom(nmemb * size);
    return p;
}

void *cg_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        mem_oom(n);
    return q;
}

char *cg_strndup(const char *s, size_t n)
{
    char *d = cg_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *cg_strdup(const char *s)
{
    return cg_strndup(s, strlen(s));
}

char *cg_asprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *s = cg_malloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

size_t cg_strlcpy(char *dst, const char *src, size_t dstsz)
{
    size_t n = strlen(src);
    if (dstsz > 0) {
        size_t c = n < dstsz - 1 ? n : dstsz - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

void cg_buf_init(struct cg_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static void buf_reserve(struct cg_buf *b, size_t need)
{
    if (need + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need + 1)
        cap *= 2;
    b->data = cg_realloc(b->data, cap);
    b->cap = cap;
}

int cg_buf_append(struct cg_buf *b, const void *p, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return CG_ETOOBIG;
    buf_reserve(b, b->len + n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int cg_buf_puts(struct cg_buf *b, const char *s)
{
    return cg_buf_append(b, s, strlen(s));
}

int cg_buf_vprintf(struct cg_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return CG_EINVAL;
    if ((size_t)n > b->max || b->len > b->max - (size_t)n)
        return CG_ETOOBIG;
    buf_reserve(b, b->len + (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int cg_buf_printf(struct cg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = cg_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void cg_buf_reset(struct cg_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *cg_buf_take(struct cg_buf *b)
{
    char *s = b->data ? b->data : cg_strdup("");
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return s;
}

void cg_buf_free(struct cg_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

int cg_buf_read_file(struct cg_buf *b, const char *path, char *errbuf,
                     size_t errsz)
{
    bool use_stdin = strcmp(path, "-") == 0;
    FILE *f = use_stdin ? stdin : fopen(path, "rb");
    if (!f)
        return cg_err_set(errbuf, errsz, CG_EIO, "cannot open %s: %s", path,
                          strerror(errno));
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (cg_buf_append(b, chunk, n) != 0) {
            /* Keep what fits, so a caller can still say what it read. */
            cg_buf_append(b, chunk, b->max - b->len);
            rc = cg_err_set(errbuf, errsz, CG_ETOOBIG,
                            "%s is larger than %zu bytes", path, b->max);
        }
    }
    if (rc == 0 && ferror(f))
        rc = cg_err_set(errbuf, errsz, CG_EIO, "cannot read %s", path);
    if (!use_stdin)
        fclose(f);
    return rc;
}

void cg_uuid_text(const unsigned char b[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}
