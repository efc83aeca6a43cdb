/*
 * The file source: subscription ids, "tenant,subscription" pairs or job
 * JSON lines, from a file or stdin. A bad line never stops the run: it is
 * reported with its number and skipped.
 */
#include "source.h"

#include "conf.h"
#include "err.h"
#include "log.h"
#include "mem.h"
#include "cache_reader.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *trim(const char *s, size_t *len)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    *len = n;
    return s;
}

/* Copies a GUID of exactly 36 characters into out, lower case. */
static bool guid_copy(const char *s, size_t n, char out[40])
{
    if (n != 36)
        return false;
    memcpy(out, s, 36);
    out[36] = '\0';
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return cg_guid_valid(out);
}

int cg_source_parse_line(const char *line, struct cg_job *job, char *errbuf,
                         size_t errsz)
{
    size_t n;
    const char *s = trim(line, &n);
    if (n == 0 || *s == '#')
        return 0;
    if (*s == '{') {
        struct cg_job j;
        int rc = cg_job_decode(s, n, &j, errbuf, errsz);
        if (rc)
            return rc == CG_ETOOBIG ? rc : CG_EPARSE;
        *job = j;
        return 1;
    }
    char tenant[40] = "", sub[40];
    const char *comma = memchr(s, ',', n);
    if (comma) {
        size_t tn, sn;
        char *t = cg_strndup(s, (size_t)(comma - s));
        char *u = cg_strndup(comma + 1, n - (size_t)(comma - s) - 1);
        const char *tt = trim(t, &tn), *us = trim(u, &sn);
        bool ok = guid_copy(tt, tn, tenant) && guid_copy(us, sn, sub);
        free(t);
        free(u);
        if (!ok)
            return cg_err_set(errbuf, errsz, CG_EPARSE,
                              "expected tenant,subscription (two GUIDs)");
    } else if (!guid_copy(s, n, sub)) {
        return cg_err_set(errbuf, errsz, CG_EPARSE,
                          "not a subscription id, a tenant,subscription pair "
                          "or a job JSON line");
    }
    /* cg_job_init wants a tenant; an empty one is filled in by the caller. */
    cg_job_init(job, tenant, sub, CG_JOB_MANUAL);
    return 1;
}

static void bad_line(struct cg_source *src, const char *path, long line,
                     const char *why)
{
    struct cg_summary *sum = src->sum;
    sum->bad_lines++;
    cg_warn("producer.bad_line", "file=%s line=%ld error=\"%s\"",
            path ? path : "-", line, why);
    if (sum->nbad < CG_SOURCE_BAD_LINES_MAX) {
        sum->bad = cg_realloc(sum->bad, (sum->nbad + 1) * sizeof(*sum->bad));
        sum->bad[sum->nbad].line = line;
        cg_strlcpy(sum->bad[sum->nbad].why, why,
                   sizeof(sum->bad[sum->nbad].why));
        sum->nbad++;
    }
}

/* The tenant of a bare subscription id: the cache's record, else the only
 * configured tenant. */
static bool resolve_tenant(struct cg_source *src, struct cg_job *job, char *why,
                           size_t whysz)
{
    if (src->cache) {
        struct cg_cache_sub cs;
        char err[256];
        int rc = cg_cache_reader_sub(src->cache, job->subscription_id, &cs, err,
                                     sizeof(err));
        if (rc == 0 && cg_guid_valid(cs.tenant_id)) {
            cg_strlcpy(job->tenant_id, cs.tenant_id, sizeof(job->tenant_id));
            return true;
        }
        if (rc && rc != CG_ENOTFOUND)
            cg_warn("producer.cache_read_failed", "error=\"%s\"", err);
    }
    if (cg_conf_tenant_count(src->conf) == 1) {
        cg_strlcpy(job->tenant_id, cg_conf_tenant(src->conf, 0)->id,
                   sizeof(job->tenant_id));
        return true;
    }
    snprintf(why, whysz,
             "the tenant of %s is unknown (not cached, %zu tenants "
             "configured): write tenant,subscription",
             job->subscription_id, cg_conf_tenant_count(src->conf));
    return false;
}

/*
 * Reads one line into buf (NUL-terminated, without its newline). Returns
 * 0, or -1 at the end of input with nothing read. A line past bufsz - 1
 * bytes is consumed whole and flagged, as is one holding a NUL byte.
 */
static int read_line(FILE *f, char *buf, size_t bufsz, bool *too_long,
                     bool *nul)
{
    size_t n = 0;
    int c;
    bool any = false;
    while ((c = getc(f)) != EOF) {
        any = true;
        if (c == '\n')
            break;
        if (c == '\0')
            *nul = true;
        if (n + 1 < bufsz)
            buf[n++] = (char)c;
        else
            *too_long = true;
    }
    buf[n] = '\0';
    if (n && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return any ? 0 : -1;
}

int cg_source_file(struct cg_source *src, const char *path)
{
    bool use_stdin = !path || strcmp(path, "-") == 0;
    FILE *f = use_stdin ? stdin : fopen(path, "r");
    if (!f) {
        cg_error("producer.file_open_failed", "file=%s error=\"%s\"", path,
                 strerror(errno));
        return CG_EIO;
    }
    char *buf = cg_malloc(CG_SOURCE_LINE_MAX + 1);
    long line = 0;
    int rc = 0;
    for (;;) {
        if (*src->stop)
            break;
        bool too_long = false, nul = false;
        int r = read_line(f, buf, CG_SOURCE_LINE_MAX + 1, &too_long, &nul);
        if (r < 0)
            break;
        line++;
        if (too_long || nul) {
            src->sum->lines++;
            bad_line(src, path, line,
                     too_long ? "line longer than the limit"
                              : "NUL byte in the line");
            continue;
        }
        struct cg_job job;
        char why[256];
        int prc = cg_source_parse_line(buf, &job, why, sizeof(why));
        if (prc == 0)
            continue;
        src->sum->lines++;
        if (prc < 0) {
            bad_line(src, path, line, why);
            continue;
        }
        if (!job.tenant_id[0] && !resolve_tenant(src, &job, why, sizeof(why))) {
            bad_line(src, path, line, why);
            continue;
        }
        cg_emit_job(src->emit, &job, NULL, NULL);
        /* Delivery reports are served as the file is read, so a long file
         * never holds every job in memory. */
        if (cg_emit_outstanding(src->emit) > 10000)
            cg_emit_flush(src->emit, 100);
    }
    if (ferror(f)) {
        cg_error("producer.file_read_failed", "file=%s error=\"%s\"",
                 use_stdin ? "-" : path, strerror(errno));
        rc = CG_EIO;
    }
    free(buf);
    if (!use_stdin)
        fclose(f);
    return rc;
}
