#include "cache_reader.h"

#include "clock.h"
#include "conf.h"
#include "err.h"
#include "mem.h"
#include "redis.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READER_CHUNK    1000     /* commands pipelined at once */
#define READER_LIST_MAX 10000000 /* members read from one set */

struct cg_cache_reader {
    struct cg_redis *rd;
    char *prefix;
    long long ttl_s;
};

struct cg_cache_reader *cg_cache_reader_new(const struct cg_conf *conf,
                                            char *errbuf, size_t errsz)
{
    const char *prefix = cg_conf_str(conf, "redis.prefix");
    if (cg_cache_prefix_check(prefix, errbuf, errsz))
        return NULL;
    struct cg_redis *rd = cg_redis_open(conf, errbuf, errsz);
    if (!rd)
        return NULL;
    struct cg_cache_reader *r = cg_calloc(1, sizeof(*r));
    r->rd = rd;
    r->prefix = cg_strdup(prefix);
    r->ttl_s = cg_conf_int(conf, "redis.ttl");
    return r;
}

void cg_cache_reader_free(struct cg_cache_reader *r)
{
    if (!r)
        return;
    cg_redis_free(r->rd);
    free(r->prefix);
    free(r);
}

void cg_cache_list_free(struct cg_cache_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* One command, its reply checked: an error reply becomes CG_EREDIS with
 * Redis's text in errbuf. */
static int reader_run(struct cg_cache_reader *r, int argc,
                      const char *const *argv, const size_t *len,
                      redisReply **out, char *errbuf, size_t errsz)
{
    struct cg_redis_cmd cmd = { argc, argv, len };
    struct redisReply *rep = NULL;
    int rc = cg_redis_run(r->rd, &cmd, 1, &rep, argv[0], errbuf, errsz);
    if (rc == 0 && rep->type == REDIS_REPLY_ERROR) {
        rc = cg_err_set(errbuf, errsz, CG_EREDIS, "redis %s: %s: %.200s",
                        cg_redis_peer(r->rd), argv[0], rep->str);
        cg_redis_reply_free(rep);
        rep = NULL;
    }
    *out = rep;
    return rc;
}

static int strcmp_p(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copies an array of strings into out, sorted. */
static int reply_list(const redisReply *reply, struct cg_cache_list *out,
                      char *errbuf, size_t errsz)
{
    if (reply->type != REDIS_REPLY_ARRAY)
        return cg_err_set(errbuf, errsz, CG_EREDIS,
                          "redis: expected an array reply");
    if (reply->elements > READER_LIST_MAX)
        return cg_err_set(errbuf, errsz, CG_ETOOBIG,
                          "redis: %zu members exceed the limit of %d",
                          (size_t)reply->elements, READER_LIST_MAX);
    out->v = cg_calloc(reply->elements ? reply->elements : 1, sizeof(char *));
    out->n = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type == REDIS_REPLY_STRING)
            out->v[out->n++] = cg_strndup(e->str, e->len);
    }
    qsort(out->v, out->n, sizeof(char *), strcmp_p);
    return 0;
}

static int reader_members(struct cg_cache_reader *r, const char *key,
                          struct cg_cache_list *out, char *errbuf, size_t errsz)
{
    const char *argv[] = { "SMEMBERS", key };
    size_t len[] = { 8, strlen(key) };
    redisReply *rep = NULL;
    int rc = reader_run(r, 2, argv, len, &rep, errbuf, errsz);
    if (rc == 0)
        rc = reply_list(rep, out, errbuf, errsz);
    cg_redis_reply_free(rep);
    return rc;
}

static int reader_id(const char *id, char out[CG_CACHE_ID_MAX + 1],
                     char *errbuf, size_t errsz)
{
    if (cg_cache_id_norm(id, out))
        return cg_err_set(errbuf, errsz, CG_EINVAL, "'%.80s' is not a valid id",
                          id ? id : "(null)");
    return 0;
}

int cg_cache_reader_known(struct cg_cache_reader *r, const char *tenant_id,
                          struct cg_cache_list *out, char *errbuf, size_t errsz)
{
    char t[CG_CACHE_ID_MAX + 1], key[CG_CACHE_KEY_MAX];
    int rc = reader_id(tenant_id, t, errbuf, errsz);
    if (rc)
        return rc;
    snprintf(key, sizeof(key), "%stenant:%s:known", r->prefix, t);
    return reader_members(r, key, out, errbuf, errsz);
}

int cg_cache_reader_add_known(struct cg_cache_reader *r, const char *tenant_id,
                              const char *const *subs, size_t n, char *errbuf,
                              size_t errsz)
{
    char t[CG_CACHE_ID_MAX + 1], key[CG_CACHE_KEY_MAX], ttl[24];
    int rc = reader_id(tenant_id, t, errbuf, errsz);
    char(*ids)[CG_CACHE_ID_MAX + 1] = NULL;
    const char **argv = NULL;
    size_t *len = NULL;
    redisReply *rep = NULL;
    if (rc || n == 0)
        return rc;
    snprintf(key, sizeof(key), "%stenant:%s:known", r->prefix, t);
    ids = cg_calloc(READER_CHUNK, sizeof(*ids));
    argv = cg_calloc(READER_CHUNK + 2, sizeof(char *));
    len = cg_calloc(READER_CHUNK + 2, sizeof(size_t));
    for (size_t off = 0; off < n && rc == 0; off += READER_CHUNK) {
        size_t m = n - off < READER_CHUNK ? n - off : READER_CHUNK;
        argv[0] = "SADD";
        argv[1] = key;
        for (size_t i = 0; i < m && rc == 0; i++) {
            rc = reader_id(subs[off + i], ids[i], errbuf, errsz);
            argv[2 + i] = ids[i];
        }
        if (rc)
            break;
        for (size_t i = 0; i < m + 2; i++)
            len[i] = strlen(argv[i]);
        rc = reader_run(r, (int)m + 2, argv, len, &rep, errbuf, errsz);
        cg_redis_reply_free(rep);
        rep = NULL;
    }
    if (rc == 0) {
        snprintf(ttl, sizeof(ttl), "%lld", r->ttl_s);
        const char *ex[] = { "EXPIRE", key, ttl };
        size_t exlen[] = { 6, strlen(key), strlen(ttl) };
        rc = reader_run(r, 3, ex, exlen, &rep, errbuf, errsz);
        cg_redis_reply_free(rep);
    }
    free(ids);
    free(argv);
    free(len);
    return rc;
}

int cg_cache_reader_scan_ms(struct cg_cache_reader *r, const char *const *subs,
                            size_t n, long long *out_ms, char *errbuf,
                            size_t errsz)
{
    enum { KEY = CG_CACHE_KEY_MAX };
    int rc = 0;
    char(*keys)[KEY] = cg_calloc(READER_CHUNK, KEY);
    const char *(*argv)[3] = cg_calloc(READER_CHUNK, sizeof(*argv));
    size_t(*len)[3] = cg_calloc(READER_CHUNK, sizeof(*len));
    struct cg_redis_cmd *cmds = cg_calloc(READER_CHUNK, sizeof(*cmds));
    redisReply **rep = cg_calloc(READER_CHUNK, sizeof(*rep));
    for (size_t off = 0; off < n && rc == 0; off += READER_CHUNK) {
        size_t m = n - off < READER_CHUNK ? n - off : READER_CHUNK;
        for (size_t i = 0; i < m && rc == 0; i++) {
            char s[CG_CACHE_ID_MAX + 1];
            rc = reader_id(subs[off + i], s, errbuf, errsz);
            if (rc)
                break;
            snprintf(keys[i], KEY, "%ssub:%s", r->prefix, s);
            argv[i][0] = "HGET";
            argv[i][1] = keys[i];
            argv[i][2] = "scan_ms";
            len[i][0] = 4;
            len[i][1] = strlen(keys[i]);
            len[i][2] = 7;
            cmds[i] = (struct cg_redis_cmd){ 3, argv[i], len[i] };
        }
        if (rc)
            break;
        /* One pipelined round trip for the chunk. */
        rc = cg_redis_run(r->rd, cmds, (int)m, rep, "HGET", errbuf, errsz);
        for (size_t i = 0; i < m && rc == 0; i++) {
            if (rep[i]->type == REDIS_REPLY_ERROR)
                rc = cg_err_set(errbuf, errsz, CG_EREDIS,
                                "redis %s: HGET: %.200s", cg_redis_peer(r->rd),
                                rep[i]->str);
            out_ms[off + i] = rep[i]->type == REDIS_REPLY_STRING
                                  ? strtoll(rep[i]->str, NULL, 10)
                                  : 0;
        }
        for (size_t i = 0; i < m; i++) {
            cg_redis_reply_free(rep[i]);
            rep[i] = NULL;
        }
    }
    free(keys);
    free(argv);
    free(len);
    free(cmds);
    free(rep);
    return rc;
}

int cg_cache_reader_tenants(struct cg_cache_reader *r,
                            struct cg_cache_list *out, char *errbuf,
                            size_t errsz)
{
    char key[CG_CACHE_KEY_MAX], min[24];
    snprintf(key, sizeof(key), "%stenants", r->prefix);
    snprintf(min, sizeof(min), "%lld", cg_now_ms() - r->ttl_s * 1000);
    const char *argv[] = { "ZRANGEBYSCORE", key, min, "+inf" };
    size_t len[] = { 13, strlen(key), strlen(min), 4 };
    redisReply *rep = NULL;
    int rc = reader_run(r, 4, argv, len, &rep, errbuf, errsz);
    if (rc == 0)
        rc = reply_list(rep, out, errbuf, errsz);
    cg_redis_reply_free(rep);
    return rc;
}

int cg_cache_reader_tenant(struct cg_cache_reader *r, const char *tenant_id,
                           struct cg_cache_tenant *out, char *errbuf,
                           size_t errsz)
{
    char t[CG_CACHE_ID_MAX + 1];
    char k[3][CG_CACHE_KEY_MAX];
    redisReply *rep[3] = { NULL, NULL, NULL };
    int rc = reader_id(tenant_id, t, errbuf, errsz);
    if (rc)
        return rc;
    memset(out, 0, sizeof(*out));
    snprintf(k[0], sizeof(k[0]), "%stenant:%s:counts", r->prefix, t);
    snprintf(k[1], sizeof(k[1]), "%stenant:%s:scanned", r->prefix, t);
    snprintf(k[2], sizeof(k[2]), "%stenant:%s:failing", r->prefix, t);
    const char *a0[] = { "HGETALL", k[0] }, *a1[] = { "ZCARD", k[1] },
               *a2[] = { "SCARD", k[2] };
    size_t l0[] = { 7, strlen(k[0]) }, l1[] = { 5, strlen(k[1]) },
           l2[] = { 5, strlen(k[2]) };
    const struct cg_redis_cmd cmds[] = { { 2, a0, l0 },
                                         { 2, a1, l1 },
                                         { 2, a2, l2 } };
    rc = cg_redis_run(r->rd, cmds, 3, rep, "HGETALL", errbuf, errsz);
    for (int i = 0; i < 3 && rc == 0; i++)
        if (rep[i]->type == REDIS_REPLY_ERROR)
            rc = cg_err_set(errbuf, errsz, CG_EREDIS, "redis %s: %s: %.200s",
                            cg_redis_peer(r->rd), cmds[i].argv[0], rep[i]->str);
    if (rc)
        goto out;
    if (rep[0]->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < rep[0]->elements; i += 2) {
            const char *f = rep[0]->element[i]->str;
            const char *v = rep[0]->element[i + 1]->str;
            const char *colon = f ? strrchr(f, ':') : NULL;
            if (!colon || !v)
                continue;
            char rule[64];
            size_t rl = (size_t)(colon - f);
            if (rl >= sizeof(rule))
                continue;
            memcpy(rule, f, rl);
            rule[rl] = '\0';
            enum cg_rule ru = cg_rule_parse(rule);
            enum cg_status st = cg_status_parse(colon + 1);
            if (ru < CG_RULE_COUNT && st < CG_STATUS_NONE)
                out->counts[ru][st] = strtoll(v, NULL, 10);
        }
    }
    out->scanned = rep[1]->type == REDIS_REPLY_INTEGER ? rep[1]->integer : 0;
    out->failing = rep[2]->type == REDIS_REPLY_INTEGER ? rep[2]->integer : 0;
out:
    for (int i = 0; i < 3; i++)
        cg_redis_reply_free(rep[i]);
    return rc;
}

int cg_cache_reader_changed(struct cg_cache_reader *r, const char *tenant_id,
                            struct cg_cache_list *out, char *errbuf,
                            size_t errsz)
{
    char t[CG_CACHE_ID_MAX + 1], key[CG_CACHE_KEY_MAX];
    int rc = reader_id(tenant_id, t, errbuf, errsz);
    if (rc)
        return rc;
    snprintf(key, sizeof(key), "%stenant:%s:changed", r->prefix, t);
    return reader_members(r, key, out, errbuf, errsz);
}

/* HMGET of the subscription's hash: the fixed fields, then one field per
 * rule for each prefix in rule_fields (at most 2). */
enum { HMGET_MAX = 2 + 8 + 2 * CG_RULE_COUNT, FIELD_MAX = 48 };

static int reader_hmget(struct cg_cache_reader *r, const char *sub,
                        const char *const *fixed, int nfixed,
                        const char *const *rule_fields, int nrf,
                        redisReply **out, char *errbuf, size_t errsz)
{
    char key[CG_CACHE_KEY_MAX];
    char fields[2 * CG_RULE_COUNT][FIELD_MAX];
    const char *argv[HMGET_MAX];
    size_t len[HMGET_MAX];
    int argc = 0;
    snprintf(key, sizeof(key), "%ssub:%s", r->prefix, sub);
    argv[argc++] = "HMGET";
    argv[argc++] = key;
    for (int i = 0; i < nfixed; i++)
        argv[argc++] = fixed[i];
    for (int k = 0; k < nrf; k++) {
        for (int i = 0; i < CG_RULE_COUNT; i++) {
            char *f = fields[k * CG_RULE_COUNT + i];
            snprintf(f, FIELD_MAX, "%s:%s", rule_fields[k],
                     cg_rule_info((enum cg_rule)i)->id);
            argv[argc++] = f;
        }
    }
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    return reader_run(r, argc, argv, len, out, errbuf, errsz);
}

static void copy_field(char *dst, size_t dstsz, const redisReply *e)
{
    if (e->type == REDIS_REPLY_STRING)
        cg_strlcpy(dst, e->str, dstsz);
}

int cg_cache_reader_sub(struct cg_cache_reader *r, const char *subscription_id,
                        struct cg_cache_sub *out, char *errbuf, size_t errsz)
{
    static const char *const fixed[] = { "tenant", "job_id", "hash",
                                         "api_version", "scan_ms" };
    static const char *const rf[] = { "status", "previous" };
    char s[CG_CACHE_ID_MAX + 1];
    redisReply *reply = NULL;
    int rc = reader_id(subscription_id, s, errbuf, errsz);
    if (rc)
        return rc;
    if ((rc = reader_hmget(r, s, fixed, 5, rf, 2, &reply, errbuf, errsz)))
        goto out;
    if (reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 5 + 2 * (size_t)CG_RULE_COUNT) {
        rc = cg_err_set(errbuf, errsz, CG_EREDIS, "redis: unexpected reply");
        goto out;
    }
    redisReply **e = reply->element;
    if (e[0]->type != REDIS_REPLY_STRING) {
        rc = cg_err_set(errbuf, errsz, CG_ENOTFOUND,
                        "no cached scan of subscription %s", s);
        goto out;
    }
    memset(out, 0, sizeof(*out));
    cg_strlcpy(out->subscription_id, s, sizeof(out->subscription_id));
    copy_field(out->tenant_id, sizeof(out->tenant_id), e[0]);
    copy_field(out->job_id, sizeof(out->job_id), e[1]);
    copy_field(out->contacts_hash, sizeof(out->contacts_hash), e[2]);
    copy_field(out->api_version, sizeof(out->api_version), e[3]);
    if (e[4]->type == REDIS_REPLY_STRING)
        out->scan_ms = strtoll(e[4]->str, NULL, 10);
    for (int i = 0; i < CG_RULE_COUNT; i++) {
        const redisReply *st = e[5 + i], *pv = e[5 + CG_RULE_COUNT + i];
        out->status[i] = st->type == REDIS_REPLY_STRING
                             ? cg_status_parse(st->str)
                             : CG_STATUS_NONE;
        out->previous[i] = pv->type == REDIS_REPLY_STRING
                               ? cg_status_parse(pv->str)
                               : CG_STATUS_NONE;
    }
out:
    cg_redis_reply_free(reply);
    return rc;
}

int cg_cache_reader_findings(struct cg_cache_reader *r,
                             const char *subscription_id,
                             struct cg_finding out[CG_RULE_COUNT], size_t *n,
                             char *errbuf, size_t errsz)
{
    static const char *const rf[] = { "finding" };
    char s[CG_CACHE_ID_MAX + 1];
    redisReply *reply = NULL;
    int rc = reader_id(subscription_id, s, errbuf, errsz);
    *n = 0;
    if (rc)
        return rc;
    if ((rc = reader_hmget(r, s, NULL, 0, rf, 1, &reply, errbuf, errsz)))
        goto out;
    if (reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != (size_t)CG_RULE_COUNT) {
        rc = cg_err_set(errbuf, errsz, CG_EREDIS, "redis: unexpected reply");
        goto out;
    }
    for (size_t i = 0; i < reply->elements && rc == 0; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        rc = cg_finding_parse(e->str, e->len, &out[*n], errbuf, errsz);
        if (rc == 0)
            (*n)++;
    }
    if (rc) {
        for (size_t i = 0; i < *n; i++)
            cg_finding_clear(&out[i]);
        *n = 0;
    }
out:
    cg_redis_reply_free(reply);
    return rc;
}
