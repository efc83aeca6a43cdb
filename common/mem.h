/*
 * mem — allocation that cannot fail and buffers that cannot grow unbounded.
 *
 * Allocation failure aborts: a worker that cannot allocate has not committed
 * its job, so Kafka redelivers it to a healthy process. Everything that grows
 * from network input goes through struct cg_buf, whose `max` is a named limit;
 * going past it is CG_ETOOBIG, a clear final error, never a crash.
 */
#ifndef CG_MEM_H
#define CG_MEM_H

#include <stdarg.h>
#include <stddef.h>

void *cg_malloc(size_t n);
void *cg_calloc(size_t nmemb, size_t size);
void *cg_realloc(void *p, size_t n);
char *cg_strdup(const char *s);
char *cg_strndup(const char *s, size_t n);
/* Formats into a fresh heap string. */
char *cg_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copies src into dst (size dstsz), always NUL-terminating; returns the
 * length of src, so truncation is `ret >= dstsz`. */
size_t cg_strlcpy(char *dst, const char *src, size_t dstsz);

/* The 16 bytes b in the 8-4-4-4-12 lower-case hex form of a UUID (37 bytes
 * with the NUL); the version and variant bits are the caller's. */
void cg_uuid_text(const unsigned char b[16], char out[37]);

struct cg_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    size_t max; /* largest len allowed */
};

/* An empty buffer that may grow to max bytes. */
void cg_buf_init(struct cg_buf *b, size_t max);

/* Appends n bytes; CG_ETOOBIG (nothing appended) past the buffer's max. */
int cg_buf_append(struct cg_buf *b, const void *p, size_t n);
int cg_buf_puts(struct cg_buf *b, const char *s);
int cg_buf_printf(struct cg_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int cg_buf_vprintf(struct cg_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

void cg_buf_reset(struct cg_buf *b);

/*
 * Appends the whole of the file at path ("-": standard input) to b. Returns
 * 0; CG_EIO when it cannot be opened or read; CG_ETOOBIG when it is longer
 * than b's max (b then holds what fitted). errbuf names the file.
 */
int cg_buf_read_file(struct cg_buf *b, const char *path, char *errbuf,
                     size_t errsz);

/* Hands the heap string to the caller and leaves the buffer empty. */
char *cg_buf_take(struct cg_buf *b);

void cg_buf_free(struct cg_buf *b);

#endif
