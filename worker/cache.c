#include "cache.h"

#include "clock.h"
#include "conf.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "metrics.h"

#include <ctype.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CACHE_CMDS_MAX     2    /* commands per request */
#define CACHE_LOG_EVERY_MS 1000 /* error replies logged at most this often */
#define CACHE_READER_CHUNK 1000 /* reader commands pipelined at once */
#define CACHE_LIST_MAX     10000000 /* members read from one set */
#define CACHE_SHA_HEX      41

/*
 * The store: read the old record, write the new one and move the tenant's
 * counts by the difference, in one script so that two workers storing the
 * same tenant cannot interleave between the read and the adjustment. See
 * cache.h for the keys and arguments; status letters are P F E S and '-'.
 */
static const char store_lua[] =
    "local P, T, S = ARGV[1], ARGV[2], ARGV[3]\n"
    "local scan, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local job, codes, n = ARGV[6], ARGV[9], tonumber(ARGV[10])\n"
    "local names = { P = 'PASS', F = 'FAIL', E = 'ERROR', S = 'SKIPPED' }\n"
    "local letter = { PASS = 'P', FAIL = 'F', ERROR = 'E', SKIPPED = 'S' }\n"
    "local rules = {}\n"
    "for i = 1, n do rules[i] = ARGV[10 + i] end\n"
    "local function adjust(counts, old, new)\n"
    "  for i = 1, n do\n"
    "    local o, w = string.sub(old, i, i), string.sub(new, i, i)\n"
    "    if o ~= w then\n"
    "      if names[o] then\n"
    "        redis.call('HINCRBY', counts, rules[i] .. ':' .. names[o], -1)\n"
    "      end\n"
    "      if names[w] then\n"
    "        redis.call('HINCRBY', counts, rules[i] .. ':' .. names[w], 1)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function forget(t, s)\n"
    "  local tk = P .. 'tenant:' .. t\n"
    "  local old = redis.call('HGET', tk .. ':last', s)\n"
    "  if old then adjust(tk .. ':counts', old, '') end\n"
    "  redis.call('HDEL', tk .. ':last', s)\n"
    "  redis.call('SREM', tk .. ':failing', s)\n"
    "  redis.call('SREM', tk .. ':changed', s)\n"
    "  redis.call('ZREM', tk .. ':scanned', s)\n"
    "end\n"
    "local fields = { 'tenant', 'scan_ms', 'job_id' }\n"
    "for i = 1, n do\n"
    "  fields[3 + i] = 'status:' .. rules[i]\n"
    "  fields[3 + n + i] = 'previous:' .. rules[i]\n"
    "end\n"
    "local cur = redis.call('HMGET', KEYS[1], unpack(fields))\n"
    "local function letters(from)\n"
    "  local s = ''\n"
    "  for i = 1, n do s = s .. (letter[cur[from + i]] or '-') end\n"
    "  return s\n"
    "end\n"
    "if cur[2] and tonumber(cur[2]) > scan then return 0 end\n"
    "if cur[1] and cur[1] ~= T then forget(cur[1], S) end\n"
    /* A redelivered job keeps the statuses from before its first attempt,
     * or every transition would be lost on redelivery. */
    "local prev\n"
    "if cur[1] and cur[3] == job then prev = letters(3 + n)\n"
    "elseif cur[1] then prev = letters(3)\n"
    "else prev = redis.call('HGET', KEYS[2], S) or string.rep('-', n) end\n"
    "adjust(KEYS[3], redis.call('HGET', KEYS[2], S) or '', codes)\n"
    "redis.call('HSET', KEYS[2], S, codes)\n"
    "redis.call('DEL', KEYS[1])\n"
    "local h = { 'tenant', T, 'job_id', job, 'scan_ms', ARGV[4],\n"
    "            'hash', ARGV[7], 'api_version', ARGV[8] }\n"
    "local changed = false\n"
    "for i = 1, n do\n"
    "  local c, p = string.sub(codes, i, i), string.sub(prev, i, i)\n"
    "  if names[c] then\n"
    "    h[#h + 1] = 'status:' .. rules[i]; h[#h + 1] = names[c]\n"
    "  end\n"
    "  if names[p] then\n"
    "    h[#h + 1] = 'previous:' .. rules[i]; h[#h + 1] = names[p]\n"
    "    if names[c] and p ~= c then changed = true end\n"
    "  end\n"
    "  local f = ARGV[10 + n + i]\n"
    "  if f ~= '' then h[#h + 1] = 'finding:' .. rules[i]; h[#h + 1] = f end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], unpack(h))\n"
    "redis.call('EXPIRE', KEYS[1], ttl)\n"
    "if changed then redis.call('SADD', KEYS[7], S)\n"
    "else redis.call('SREM', KEYS[7], S) end\n"
    "if string.find(codes, 'F', 1, true) then redis.call('SADD', KEYS[4], S)\n"
    "else redis.call('SREM', KEYS[4], S) end\n"
    "redis.call('SADD', KEYS[5], S)\n"
    "redis.call('ZADD', KEYS[8], scan, S)\n"
    /* Subscriptions not scanned within the TTL leave the counts with their
     * records, a bounded number per store. */
    "local horizon = scan - ttl * 1000\n"
    "local gone = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf',\n"
    "                        '(' .. horizon, 'LIMIT', 0, 100)\n"
    "for _, s in ipairs(gone) do\n"
    "  forget(T, s)\n"
    "  redis.call('DEL', P .. 'sub:' .. s)\n"
    "end\n"
    "local ts = tonumber(redis.call('ZSCORE', KEYS[6], T) or '0')\n"
    "if scan > ts then redis.call('ZADD', KEYS[6], scan, T) end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. horizon)\n"
    "for _, k in ipairs({ KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7],\n"
    "                     KEYS[8] }) do\n"
    "  redis.call('EXPIRE', k, ttl)\n"
    "end\n"
    "return 1\n";

/* Release only a lock we still hold: after an expiry another owner may
 * have taken it, and a plain DEL would remove theirs. */
static const char unlock_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

struct cache_cfg {
    char *host;
    int port;
    char *password;
    long long db;
    char *prefix;
    long long ttl_s;
    int timeout_ms;
    size_t queue_max;
};

enum req_kind {
    REQ_LOOKUP,
    REQ_STORE,
    REQ_DONE,
    REQ_LOCK,
    REQ_UNLOCK,
    REQ_UNDO_PUT,
    REQ_UNDO_GET,
};

enum cache_state {
    STATE_CONNECTING, /* first attempt not finished: requests queue */
    STATE_UP,
    STATE_DOWN, /* requests are answered at once with CG_EREDIS */
};

struct cache_cmd {
    int argc;
    char **argv;
    size_t *argvlen;
};

struct cache_req {
    struct cache_req *next;
    enum req_kind kind;
    union {
        cg_cache_lookup_fn lookup;
        cg_cache_done_fn done;
        cg_cache_lock_fn lock;
        cg_cache_body_fn body;
    } fn;
    void *arg;
    struct cache_cmd cmd[CACHE_CMDS_MAX];
    int ncmd;
    redisReply *reply[CACHE_CMDS_MAX];
    char job_id[CG_CACHE_ID_MAX + 1]; /* lookup: to spot a redelivery */
    /* results */
    int err;
    bool dropped;
    bool stale;
    bool ok;
    struct cg_cache_prev prev;
    char *body;
    size_t body_len;
};

struct req_list {
    struct cache_req *head, *tail;
    size_t n;
};

struct cg_cache {
    struct cg_loop *loop;
    struct cache_cfg cfg;
    char store_sha[CACHE_SHA_HEX];
    char unlock_sha[CACHE_SHA_HEX];
    int efd;
    struct cg_loop_io io;
    pthread_t thread;
    bool thread_started;

    /* Everything below is guarded by mu. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop;
    int fd; /* the thread's socket, so free can cut a blocked call short */
    enum cache_state state;
    struct req_list queue;
    struct req_list done;
    struct cg_cache_stats stats;
};

/* ---- small helpers ---- */

static int64_t mono_ms(void)
{
    return cg_loop_now_ms();
}

static void cfg_free(struct cache_cfg *cfg)
{
    free(cfg->host);
    if (cfg->password) {
        memset(cfg->password, 0, strlen(cfg->password));
        free(cfg->password);
    }
    free(cfg->prefix);
    memset(cfg, 0, sizeof(*cfg));
}

/* Reads the redis.* settings; CG_ECONF when they cannot name keys. */
static int cfg_from(struct cache_cfg *cfg, const struct cg_conf *conf,
                    char *errbuf, size_t errsz)
{
    cfg->host = cg_strdup(cg_conf_str(conf, "redis.host"));
    cfg->port = (int)cg_conf_int(conf, "redis.port");
    cfg->password = cg_strdup(cg_conf_str(conf, "redis.password"));
    cfg->db = cg_conf_int(conf, "redis.db");
    cfg->prefix = cg_strdup(cg_conf_str(conf, "redis.prefix"));
    cfg->ttl_s = cg_conf_int(conf, "redis.ttl");
    cfg->timeout_ms = (int)cg_conf_int(conf, "redis.timeout_ms");
    cfg->queue_max = (size_t)cg_conf_int(conf, "redis.queue_max");
    if (!*cfg->host)
        return cg_err_set(errbuf, errsz, CG_ECONF, "redis.host is empty");
    if (strlen(cfg->prefix) > CG_CACHE_PREFIX_MAX)
        return cg_err_set(errbuf, errsz, CG_ECONF,
                          "redis.prefix is longer than %d bytes",
                          CG_CACHE_PREFIX_MAX);
    return 0;
}

/*
 * Copies an id into out, lower-cased, so that the producer and the worker
 * name the same key whatever case Azure used. Ids become parts of key
 * names: only [A-Za-z0-9._:-] are accepted.
 */
static int id_norm(const char *id, char out[CG_CACHE_ID_MAX + 1])
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > CG_CACHE_ID_MAX)
        return CG_EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != ':' && c != '-')
            return CG_EINVAL;
        out[i] = (char)tolower(c);
    }
    out[n] = '\0';
    return 0;
}

static void sha1_hex(const char *s, char out[CACHE_SHA_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), md, &n, EVP_sha1(), NULL);
    for (unsigned int i = 0; i < n && i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    return tv;
}

/* Opens the TCP connection (blocking, redis.timeout_ms). */
static redisContext *cache_dial(const struct cache_cfg *cfg, char *errbuf,
                                size_t errsz)
{
    redisContext *c =
        redisConnectWithTimeout(cfg->host, cfg->port, ms_tv(cfg->timeout_ms));
    if (!c) {
        cg_err_set(errbuf, errsz, CG_EREDIS, "redis %s:%d: out of memory",
                   cfg->host, cfg->port);
        return NULL;
    }
    if (c->err) {
        cg_err_set(errbuf, errsz, CG_EREDIS, "redis %s:%d: %s", cfg->host,
                   cfg->port, c->errstr);
        redisFree(c);
        return NULL;
    }
    return c;
}

/*
 * Sets the command timeout, then AUTH, SELECT and PING. The password goes
 * as a separate argument and never into errbuf. A server that accepts
 * connections but does not answer (stopped, loading) fails here, so it
 * counts as down rather than connected.
 */
static int cache_handshake(const struct cache_cfg *cfg, redisContext *c,
                           char *errbuf, size_t errsz)
{
    redisReply *reply = NULL;
    int rc = 0;
    if (redisSetTimeout(c, ms_tv(cfg->timeout_ms)) != REDIS_OK)
        return cg_err_set(errbuf, errsz, CG_EREDIS,
                          "redis %s:%d: cannot set timeout", cfg->host,
                          cfg->port);
    if (*cfg->password) {
        const char *argv[] = { "AUTH", cfg->password };
        size_t lens[] = { 4, strlen(cfg->password) };
        reply = redisCommandArgv(c, 2, argv, lens);
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            /* Redis's own AUTH error text names no password. */
            rc = cg_err_set(errbuf, errsz, CG_EREDIS, "redis %s:%d: AUTH: %s",
                            cfg->host, cfg->port,
                            reply ? reply->str : c->errstr);
            goto out;
        }
        freeReplyObject(reply);
        reply = NULL;
    }
    if (cfg->db != 0) {
        reply = redisCommand(c, "SELECT %lld", cfg->db);
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            rc = cg_err_set(errbuf, errsz, CG_EREDIS,
                            "redis %s:%d: SELECT %lld: %s", cfg->host,
                            cfg->port, cfg->db, reply ? reply->str : c->errstr);
            goto out;
        }
        freeReplyObject(reply);
        reply = NULL;
    }
    reply = redisCommand(c, "PING");
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        rc = cg_err_set(errbuf, errsz, CG_EREDIS, "redis %s:%d: PING: %s",
                        cfg->host, cfg->port, reply ? reply->str : c->errstr);
out:
    if (reply)
        freeReplyObject(reply);
    return rc;
}

static redisContext *cache_connect(const struct cache_cfg *cfg, char *errbuf,
                                   size_t errsz)
{
    redisContext *c = cache_dial(cfg, errbuf, errsz);
    if (c && cache_handshake(cfg, c, errbuf, errsz)) {
        redisFree(c);
        c = NULL;
    }
    return c;
}

/* ---- commands ---- */

static void cmd_init(struct cache_cmd *cmd, int argc)
{
    cmd->argc = argc;
    cmd->argv = cg_calloc((size_t)argc, sizeof(char *));
    cmd->argvlen = cg_calloc((size_t)argc, sizeof(size_t));
}

static void cmd_set(struct cache_cmd *cmd, int i, const void *p, size_t n)
{
    free(cmd->argv[i]);
    cmd->argv[i] = cg_strndup(p, n);
    cmd->argvlen[i] = n;
}

static void cmd_str(struct cache_cmd *cmd, int i, const char *s)
{
    cmd_set(cmd, i, s, strlen(s));
}

static void cmd_fmt(struct cache_cmd *cmd, int i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cmd_fmt(struct cache_cmd *cmd, int i, const char *fmt, ...)
{
    struct cg_buf b;
    va_list ap;
    cg_buf_init(&b, SIZE_MAX);
    va_start(ap, fmt);
    cg_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    free(cmd->argv[i]);
    cmd->argvlen[i] = b.len;
    cmd->argv[i] = b.data ? cg_buf_take(&b) : cg_strdup("");
}

static void cmd_free(struct cache_cmd *cmd)
{
    for (int i = 0; i < cmd->argc; i++)
        free(cmd->argv[i]);
    free(cmd->argv);
    free(cmd->argvlen);
    memset(cmd, 0, sizeof(*cmd));
}

static struct cache_req *req_new(enum req_kind kind, void *arg)
{
    struct cache_req *req = cg_calloc(1, sizeof(*req));
    req->kind = kind;
    req->arg = arg;
    for (int i = 0; i < CG_RULE_COUNT; i++)
        req->prev.status[i] = CG_STATUS_NONE;
    return req;
}

static void req_free(struct cache_req *req)
{
    for (int i = 0; i < CACHE_CMDS_MAX; i++) {
        cmd_free(&req->cmd[i]);
        if (req->reply[i])
            freeReplyObject(req->reply[i]);
    }
    free(req->body);
    free(req);
}

static const char *req_kind_name(enum req_kind kind)
{
    static const char *const names[] = { "lookup",  "store",  "mark_done",
                                         "lock",    "unlock", "undo_put",
                                         "undo_get" };
    return names[kind];
}

static bool req_is_write(const struct cache_req *req)
{
    return req->kind == REQ_STORE || req->kind == REQ_DONE ||
           req->kind == REQ_UNDO_PUT;
}

static void list_push(struct req_list *l, struct cache_req *req)
{
    req->next = NULL;
    if (l->tail)
        l->tail->next = req;
    else
        l->head = req;
    l->tail = req;
    l->n++;
}

static struct cache_req *list_pop(struct req_list *l)
{
    struct cache_req *req = l->head;
    if (req) {
        l->head = req->next;
        if (!l->head)
            l->tail = NULL;
        l->n--;
        req->next = NULL;
    }
    return req;
}

/*
 * Hands a finished request to the loop thread and counts it. Called with
 * mu held, from either thread. The eventfd is written on the empty to
 * non-empty transition only: the loop takes the whole list at once.
 */
static void req_finish_locked(struct cg_cache *cache, struct cache_req *req)
{
    struct cg_cache_stats *st = &cache->stats;
    if (req_is_write(req)) {
        if (req->dropped)
            st->dropped++;
        else if (req->err)
            st->write_errors++;
        else
            st->writes_ok++;
        if (req->stale)
            st->stale++;
    } else if (req->kind == REQ_LOOKUP && req->err) {
        st->lookup_errors++;
    }
    if (req->kind == REQ_LOOKUP && req->err) {
        /* Whatever a failed lookup half read, it answers "not done, no
         * previous": a wrong "done" would drop a job. */
        memset(&req->prev, 0, sizeof(req->prev));
        for (int i = 0; i < CG_RULE_COUNT; i++)
            req->prev.status[i] = CG_STATUS_NONE;
        req->prev.err = req->err;
    }
    bool was_empty = cache->done.n == 0;
    list_push(&cache->done, req);
    if (was_empty) {
        uint64_t one = 1;
        /* Cannot fill: the loop reads the counter before it takes the
         * list, so at most one unread write is ever pending. */
        ssize_t w = write(cache->efd, &one, sizeof(one));
        (void)w;
    }
}

/* Fails every queued request with err (mu held). */
static void queue_fail_locked(struct cg_cache *cache, int err)
{
    struct cache_req *req;
    while ((req = list_pop(&cache->queue))) {
        req->err = err;
        req_finish_locked(cache, req);
    }
    cache->stats.queue_depth = 0;
}

/* ---- the thread ---- */

/* Reads the answer of one finished request out of its replies. */
static void req_interpret(struct cg_cache *cache, struct cache_req *req)
{
    redisReply *r0 = req->reply[0], *r1 = req->reply[1];
    for (int i = 0; i < req->ncmd; i++) {
        if (req->reply[i]->type == REDIS_REPLY_ERROR) {
            req->err = CG_EREDIS;
            return;
        }
    }
    switch (req->kind) {
    case REQ_LOOKUP: {
        req->prev.job_done = r0->type == REDIS_REPLY_INTEGER && r0->integer;
        if (r1->type != REDIS_REPLY_ARRAY ||
            r1->elements != 3 + 2 * (size_t)CG_RULE_COUNT) {
            req->err = CG_EREDIS;
            return;
        }
        redisReply **e = r1->element;
        if (e[0]->type != REDIS_REPLY_STRING)
            return; /* never scanned */
        /* A redelivered job must see what came before its first attempt. */
        bool same_job = strcmp(e[0]->str, req->job_id) == 0;
        size_t base = same_job ? 3 + CG_RULE_COUNT : 3;
        if (e[1]->type == REDIS_REPLY_STRING)
            req->prev.scan_ms = strtoll(e[1]->str, NULL, 10);
        if (e[2]->type == REDIS_REPLY_STRING && e[2]->len <= CG_CACHE_HASH_LEN)
            cg_strlcpy(req->prev.contacts_hash, e[2]->str,
                       sizeof(req->prev.contacts_hash));
        for (int i = 0; i < CG_RULE_COUNT; i++)
            if (e[base + i]->type == REDIS_REPLY_STRING)
                req->prev.status[i] = cg_status_parse(e[base + i]->str);
        break;
    }
    case REQ_STORE:
        req->stale = r0->type == REDIS_REPLY_INTEGER && r0->integer == 0;
        break;
    case REQ_DONE:
    case REQ_UNDO_PUT:
        break;
    case REQ_LOCK:
        req->ok = r0->type == REDIS_REPLY_STATUS;
        break;
    case REQ_UNLOCK:
        req->ok = r0->type == REDIS_REPLY_INTEGER && r0->integer == 1;
        break;
    case REQ_UNDO_GET:
        if (r0->type == REDIS_REPLY_STRING) {
            if (r0->len > CG_CACHE_BODY_MAX) {
                req->err = CG_ETOOBIG;
                return;
            }
            req->body = cg_strndup(r0->str, r0->len);
            req->body_len = r0->len;
        }
        break;
    }
}

static bool reply_noscript(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR &&
           strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/*
 * Someone flushed the script cache: send the script itself once (EVAL
 * loads it again for the EVALSHAs that follow). Returns CG_EREDIS when the
 * connection broke.
 */
static int req_eval_again(redisContext *c, struct cache_req *req,
                          const char *script)
{
    struct cache_cmd *cmd = &req->cmd[0];
    cmd_str(cmd, 0, "EVAL");
    cmd_str(cmd, 1, script);
    freeReplyObject(req->reply[0]);
    req->reply[0] =
        redisCommandArgv(c, cmd->argc, (const char **)cmd->argv, cmd->argvlen);
    return req->reply[0] ? 0 : CG_EREDIS;
}

/*
 * Sends every command of the batch, then reads every reply: one round trip
 * for the lot. Returns CG_EREDIS when the connection broke; requests
 * without all their replies then carry CG_EREDIS.
 */
static int run_batch(struct cg_cache *cache, redisContext *c,
                     struct cache_req **batch, size_t n, bool *any_reply,
                     int64_t *last_log)
{
    int rc = 0;
    size_t i = 0;
    *any_reply = false;
    for (i = 0; i < n; i++)
        for (int k = 0; k < batch[i]->ncmd; k++)
            redisAppendCommandArgv(c, batch[i]->cmd[k].argc,
                                   (const char **)batch[i]->cmd[k].argv,
                                   batch[i]->cmd[k].argvlen);
    for (i = 0; i < n && rc == 0; i++) {
        for (int k = 0; k < batch[i]->ncmd && rc == 0; k++) {
            void *reply = NULL;
            if (redisGetReply(c, &reply) != REDIS_OK || !reply) {
                rc = CG_EREDIS;
            } else {
                batch[i]->reply[k] = reply;
                *any_reply = true;
            }
        }
    }
    for (size_t j = 0; j < n; j++) {
        struct cache_req *req = batch[j];
        bool complete = true;
        for (int k = 0; k < req->ncmd; k++)
            complete = complete && req->reply[k];
        if (!complete) {
            req->err = CG_EREDIS;
            continue;
        }
        if (rc == 0 && reply_noscript(req->reply[0])) {
            const char *script =
                req->kind == REQ_STORE ? store_lua : unlock_lua;
            if (req_eval_again(c, req, script)) {
                rc = CG_EREDIS;
                req->err = CG_EREDIS;
                continue;
            }
        }
        req_interpret(cache, req);
        if (req->err && mono_ms() - *last_log >= CACHE_LOG_EVERY_MS) {
            const redisReply *r = req->reply[0];
            for (int k = 0; k < req->ncmd; k++)
                if (req->reply[k]->type == REDIS_REPLY_ERROR)
                    r = req->reply[k];
            cg_warn("cache_reply_error", "request=%s reply=\"%.200s\"",
                    req_kind_name(req->kind),
                    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected type");
            *last_log = mono_ms();
        }
    }
    return rc;
}

static int64_t backoff_jitter(int64_t backoff_ms, unsigned *seed)
{
    /* Between half and all of the backoff, so that a fleet of workers
     * does not reconnect in step after a Redis restart. */
    return backoff_ms / 2 + (int64_t)(rand_r(seed) % (backoff_ms / 2 + 1));
}

static void cond_wait_until(struct cg_cache *cache, int64_t due_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t wait = due_ms - mono_ms();
    if (wait <= 0)
        return;
    ts.tv_sec += wait / 1000;
    ts.tv_nsec += (wait % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&cache->cond, &cache->mu, &ts);
}

/*
 * Loads both scripts, so that the first batch after a connection does not
 * meet NOSCRIPT once per store. A refusal (scripting disabled by ACL) is
 * left to show on the stores themselves; only a broken connection fails.
 */
static int scripts_load(redisContext *c, char *errbuf, size_t errsz)
{
    static const char *const scripts[] = { store_lua, unlock_lua };
    for (size_t i = 0; i < 2; i++) {
        const char *argv[] = { "SCRIPT", "LOAD", scripts[i] };
        size_t lens[] = { 6, 4, strlen(scripts[i]) };
        redisReply *reply = redisCommandArgv(c, 3, argv, lens);
        if (!reply)
            return cg_err_set(errbuf, errsz, CG_EREDIS, "SCRIPT LOAD: %s",
                              c->errstr);
        freeReplyObject(reply);
    }
    return 0;
}

/*
 * Connects for the thread. The socket is published under mu between the
 * dial and the handshake, so that cg_cache_free can cut a handshake stuck
 * on a server that does not answer. Called and returns with mu held.
 */
static redisContext *thread_connect(struct cg_cache *cache, char *err,
                                    size_t errsz)
{
    pthread_mutex_unlock(&cache->mu);
    redisContext *c = cache_dial(&cache->cfg, err, errsz);
    pthread_mutex_lock(&cache->mu);
    if (!c)
        return NULL;
    if (cache->stop) {
        redisFree(c);
        cg_err_set(err, errsz, CG_ECANCELLED, "stopping");
        return NULL;
    }
    cache->fd = c->fd;
    pthread_mutex_unlock(&cache->mu);
    int rc = cache_handshake(&cache->cfg, c, err, errsz);
    if (rc == 0)
        rc = scripts_load(c, err, errsz);
    pthread_mutex_lock(&cache->mu);
    if (rc) {
        cache->fd = -1;
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Drops a broken connection (mu held). */
static void thread_disconnect(struct cg_cache *cache, redisContext **c)
{
    cache->fd = -1;
    redisFree(*c);
    *c = NULL;
}

/* Forgets what a failed attempt left in the batch, to send it again. */
static void batch_reset(struct cache_req **batch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < CACHE_CMDS_MAX; k++) {
            if (batch[i]->reply[k])
                freeReplyObject(batch[i]->reply[k]);
            batch[i]->reply[k] = NULL;
        }
        batch[i]->err = 0;
    }
}

static void *cache_thread(void *p)
{
    struct cg_cache *cache = p;
    redisContext *c = NULL;
    int64_t backoff = CG_CACHE_BACKOFF_MIN_MS, next_try = 0, last_log = 0;
    bool ever_connected = false;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)cache;
    struct cache_req **batch =
        cg_calloc(CG_CACHE_BATCH_MAX, sizeof(struct cache_req *));
    char err[256];

    pthread_mutex_lock(&cache->mu);
    while (!cache->stop) {
        if (!c) {
            if (mono_ms() < next_try) {
                cond_wait_until(cache, next_try);
                continue;
            }
            c = thread_connect(cache, err, sizeof(err));
            if (!c) {
                if (cache->stop)
                    break;
                if (cache->state != STATE_DOWN)
                    cg_warn("cache_down", "err=\"%s\" retry_ms=%lld", err,
                            (long long)backoff);
                cache->state = STATE_DOWN;
                cache->stats.connected = false;
                queue_fail_locked(cache, CG_EREDIS);
                next_try = mono_ms() + backoff_jitter(backoff, &seed);
                backoff = backoff * 2 > CG_CACHE_BACKOFF_MAX_MS
                              ? CG_CACHE_BACKOFF_MAX_MS
                              : backoff * 2;
                continue;
            }
            if (ever_connected)
                cache->stats.reconnects++;
            ever_connected = true;
            cache->state = STATE_UP;
            cache->stats.connected = true;
            backoff = CG_CACHE_BACKOFF_MIN_MS;
            cg_info("cache_connected", "host=%s port=%d db=%lld",
                    cache->cfg.host, cache->cfg.port, cache->cfg.db);
            continue;
        }
        if (!cache->queue.head) {
            pthread_cond_wait(&cache->cond, &cache->mu);
            continue;
        }
        size_t n = 0;
        while (n < CG_CACHE_BATCH_MAX && cache->queue.head)
            batch[n++] = list_pop(&cache->queue);
        cache->stats.queue_depth = cache->queue.n;
        cache->stats.in_flight = n;
        pthread_mutex_unlock(&cache->mu);
        bool any_reply;
        int rc = run_batch(cache, c, batch, n, &any_reply, &last_log);
        pthread_mutex_lock(&cache->mu);
        if (rc && !any_reply && !cache->stop) {
            /* Nothing came back: most likely a connection the server closed
             * while we were idle (a restart, an idle timeout). One fresh
             * connection gets one more try before the batch is failed. */
            cg_info("cache_reconnect", "err=\"%s\"",
                    c->errstr[0] ? c->errstr : "connection lost");
            thread_disconnect(cache, &c);
            c = thread_connect(cache, err, sizeof(err));
            if (c) {
                cache->stats.reconnects++;
                batch_reset(batch, n);
                pthread_mutex_unlock(&cache->mu);
                rc = run_batch(cache, c, batch, n, &any_reply, &last_log);
                pthread_mutex_lock(&cache->mu);
            } else {
                rc = CG_EREDIS;
            }
        }
        cache->stats.in_flight = 0;
        for (size_t i = 0; i < n; i++)
            req_finish_locked(cache, batch[i]);
        if (rc) {
            if (!cache->stop)
                cg_warn("cache_down", "err=\"%s\" retry_ms=%lld",
                        c && c->errstr[0] ? c->errstr : "connection lost",
                        (long long)backoff);
            if (c)
                thread_disconnect(cache, &c);
            cache->state = STATE_DOWN;
            cache->stats.connected = false;
            queue_fail_locked(cache, CG_EREDIS);
            next_try = mono_ms() + backoff_jitter(backoff, &seed);
            backoff = backoff * 2 > CG_CACHE_BACKOFF_MAX_MS
                          ? CG_CACHE_BACKOFF_MAX_MS
                          : backoff * 2;
        }
    }
    if (c)
        thread_disconnect(cache, &c);
    cache->stats.connected = false;
    pthread_mutex_unlock(&cache->mu);
    free(batch);
    return NULL;
}

/* ---- the loop side ---- */

static void req_call(struct cache_req *req)
{
    switch (req->kind) {
    case REQ_LOOKUP:
        req->fn.lookup(&req->prev, req->arg);
        break;
    case REQ_STORE:
    case REQ_DONE:
    case REQ_UNDO_PUT:
        if (req->fn.done)
            req->fn.done(req->err, req->arg);
        break;
    case REQ_LOCK:
    case REQ_UNLOCK:
        if (req->fn.lock)
            req->fn.lock(req->err, req->err ? false : req->ok, req->arg);
        break;
    case REQ_UNDO_GET:
        if (req->fn.body)
            req->fn.body(req->err, req->err ? NULL : req->body,
                         req->err ? 0 : req->body_len, req->arg);
        break;
    }
}

/* Runs the answered requests' callbacks; returns how many ran. */
static size_t cache_drain(struct cg_cache *cache)
{
    pthread_mutex_lock(&cache->mu);
    struct cache_req *req = cache->done.head;
    size_t n = cache->done.n;
    cache->done.head = cache->done.tail = NULL;
    cache->done.n = 0;
    pthread_mutex_unlock(&cache->mu);
    while (req) {
        struct cache_req *next = req->next;
        req_call(req);
        req_free(req);
        req = next;
    }
    return n;
}

static void cache_on_event(struct cg_loop *loop, int fd, unsigned events,
                           void *arg)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    cache_drain(arg);
}

/* Queues req, or answers it on the next turn when Redis is down, the
 * queue is full or the cache is stopping. Never waits for the thread. */
static void cache_submit(struct cg_cache *cache, struct cache_req *req)
{
    pthread_mutex_lock(&cache->mu);
    if (req->kind == REQ_LOOKUP)
        cache->stats.lookups++;
    if (req->err) {
        req_finish_locked(cache, req);
    } else if (cache->stop) {
        req->err = CG_ECANCELLED;
        req_finish_locked(cache, req);
    } else if (cache->state == STATE_DOWN) {
        req->err = CG_EREDIS;
        req_finish_locked(cache, req);
    } else if (cache->queue.n >= cache->cfg.queue_max) {
        req->err = CG_EBUSY;
        req->dropped = true;
        req_finish_locked(cache, req);
    } else {
        list_push(&cache->queue, req);
        cache->stats.queue_depth = cache->queue.n;
        pthread_cond_signal(&cache->cond);
    }
    pthread_mutex_unlock(&cache->mu);
}

struct cg_cache *cg_cache_new(struct cg_loop *loop, const struct cg_conf *conf,
                              char *errbuf, size_t errsz)
{
    struct cg_cache *cache = cg_calloc(1, sizeof(*cache));
    pthread_condattr_t ca;
    cache->loop = loop;
    cache->efd = -1;
    cache->fd = -1;
    if (cfg_from(&cache->cfg, conf, errbuf, errsz)) {
        cfg_free(&cache->cfg);
        free(cache);
        return NULL;
    }
    sha1_hex(store_lua, cache->store_sha);
    sha1_hex(unlock_lua, cache->unlock_sha);
    pthread_mutex_init(&cache->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cache->cond, &ca);
    pthread_condattr_destroy(&ca);
    cache->state = STATE_CONNECTING;

    cache->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (cache->efd < 0) {
        cg_err_set(errbuf, errsz, CG_EIO, "cache: eventfd: %s",
                   strerror(errno));
        goto fail;
    }
    if (cg_loop_io_add(loop, &cache->io, cache->efd, CG_LOOP_READ,
                       cache_on_event, cache, errbuf, errsz))
        goto fail;
    int rc = pthread_create(&cache->thread, NULL, cache_thread, cache);
    if (rc) {
        cg_err_set(errbuf, errsz, CG_EIO, "cache: cannot start thread: %s",
                   strerror(rc));
        goto fail;
    }
    cache->thread_started = true;
    return cache;
fail:
    cg_cache_free(cache);
    return NULL;
}

void cg_cache_lookup(struct cg_cache *cache, const char *tenant_id,
                     const char *subscription_id, const char *job_id,
                     cg_cache_lookup_fn fn, void *arg)
{
    struct cache_req *req = req_new(REQ_LOOKUP, arg);
    char sub[CG_CACHE_ID_MAX + 1];
    char tenant[CG_CACHE_ID_MAX + 1];
    req->fn.lookup = fn;
    /* The tenant is only checked: the subscription's record names it. */
    if (id_norm(tenant_id, tenant) || id_norm(subscription_id, sub) ||
        id_norm(job_id, req->job_id)) {
        req->err = CG_EINVAL;
        cache_submit(cache, req);
        return;
    }
    struct cache_cmd *c0 = &req->cmd[0], *c1 = &req->cmd[1];
    cmd_init(c0, 2);
    cmd_str(c0, 0, "EXISTS");
    cmd_fmt(c0, 1, "%sjob:%s", cache->cfg.prefix, req->job_id);
    cmd_init(c1, 2 + 3 + 2 * CG_RULE_COUNT);
    cmd_str(c1, 0, "HMGET");
    cmd_fmt(c1, 1, "%ssub:%s", cache->cfg.prefix, sub);
    cmd_str(c1, 2, "job_id");
    cmd_str(c1, 3, "scan_ms");
    cmd_str(c1, 4, "hash");
    for (int i = 0; i < CG_RULE_COUNT; i++) {
        const char *id = cg_rule_info((enum cg_rule)i)->id;
        cmd_fmt(c1, 5 + i, "status:%s", id);
        cmd_fmt(c1, 5 + CG_RULE_COUNT + i, "previous:%s", id);
    }
    req->ncmd = 2;
    cache_submit(cache, req);
}

static char status_letter(enum cg_status s)
{
    switch (s) {
    case CG_STATUS_PASS:
        return 'P';
    case CG_STATUS_FAIL:
        return 'F';
    case CG_STATUS_ERROR:
        return 'E';
    case CG_STATUS_SKIPPED:
        return 'S';
    default:
        return '-';
    }
}

/* The compact line of f, bounded: evidence read from a hostile body can
 * be large, and the cache is not where it needs to be kept whole. */
static char *finding_line(const struct cg_finding *f)
{
    char *line = cg_finding_compact_lean(f);
    if (strlen(line) <= CG_CACHE_FINDING_MAX)
        return line;
    free(line);
    struct cg_finding slim;
    cg_finding_copy(&slim, f);
    json_decref(slim.evidence);
    slim.evidence = json_pack("{s:b}", "truncated", 1);
    line = cg_finding_compact_lean(&slim);
    cg_finding_clear(&slim);
    if (strlen(line) > CG_CACHE_FINDING_MAX) {
        free(line);
        line = NULL;
    }
    return line;
}

void cg_cache_store(struct cg_cache *cache, const struct cg_cache_entry *e,
                    cg_cache_done_fn fn, void *arg)
{
    enum { NKEYS = 8, NFIXED = 10 };
    struct cache_req *req = req_new(REQ_STORE, arg);
    char tenant[CG_CACHE_ID_MAX + 1], sub[CG_CACHE_ID_MAX + 1],
        job[CG_CACHE_ID_MAX + 1];
    const char *pfx = cache->cfg.prefix;
    char codes[CG_RULE_COUNT + 1];
    const struct cg_finding *by_rule[CG_RULE_COUNT] = { NULL };

    req->fn.done = fn;
    if (id_norm(e->tenant_id, tenant) || id_norm(e->subscription_id, sub) ||
        id_norm(e->job_id, job) || e->scan_ms <= 0 ||
        (e->contacts_hash && strlen(e->contacts_hash) > CG_CACHE_HASH_LEN)) {
        req->err = CG_EINVAL;
        cache_submit(cache, req);
        return;
    }
    for (size_t i = 0; i < e->nfindings; i++)
        if (e->findings[i].rule >= 0 && e->findings[i].rule < CG_RULE_COUNT)
            by_rule[e->findings[i].rule] = &e->findings[i];
    for (int i = 0; i < CG_RULE_COUNT; i++)
        codes[i] = by_rule[i] ? status_letter(by_rule[i]->status) : '-';
    codes[CG_RULE_COUNT] = '\0';

    struct cache_cmd *cmd = &req->cmd[0];
    int argc = 3 + NKEYS + NFIXED + 2 * CG_RULE_COUNT, a = 0;
    cmd_init(cmd, argc);
    cmd_str(cmd, a++, "EVALSHA");
    cmd_str(cmd, a++, cache->store_sha);
    cmd_fmt(cmd, a++, "%d", NKEYS);
    cmd_fmt(cmd, a++, "%ssub:%s", pfx, sub);
    cmd_fmt(cmd, a++, "%stenant:%s:last", pfx, tenant);
    cmd_fmt(cmd, a++, "%stenant:%s:counts", pfx, tenant);
    cmd_fmt(cmd, a++, "%stenant:%s:failing", pfx, tenant);
    cmd_fmt(cmd, a++, "%stenant:%s:known", pfx, tenant);
    cmd_fmt(cmd, a++, "%stenants", pfx);
    cmd_fmt(cmd, a++, "%stenant:%s:changed", pfx, tenant);
    cmd_fmt(cmd, a++, "%stenant:%s:scanned", pfx, tenant);
    cmd_str(cmd, a++, pfx);
    cmd_str(cmd, a++, tenant);
    cmd_str(cmd, a++, sub);
    cmd_fmt(cmd, a++, "%lld", e->scan_ms);
    cmd_fmt(cmd, a++, "%lld", cache->cfg.ttl_s);
    cmd_str(cmd, a++, job);
    cmd_str(cmd, a++, e->contacts_hash ? e->contacts_hash : "");
    cmd_str(cmd, a++, e->api_version ? e->api_version : "");
    cmd_str(cmd, a++, codes);
    cmd_fmt(cmd, a++, "%d", CG_RULE_COUNT);
    for (int i = 0; i < CG_RULE_COUNT; i++)
        cmd_str(cmd, a++, cg_rule_info((enum cg_rule)i)->id);
    for (int i = 0; i < CG_RULE_COUNT; i++) {
        char *line = by_rule[i] ? finding_line(by_rule[i]) : NULL;
        cmd_str(cmd, a++, line ? line : "");
        free(line);
    }
    req->ncmd = 1;
    cache_submit(cache, req);
}

void cg_cache_mark_done(struct cg_cache *cache, const char *job_id,
                        cg_cache_done_fn fn, void *arg)
{
    struct cache_req *req = req_new(REQ_DONE, arg);
    char job[CG_CACHE_ID_MAX + 1];
    req->fn.done = fn;
    if (id_norm(job_id, job)) {
        req->err = CG_EINVAL;
    } else {
        cmd_init(&req->cmd[0], 5);
        cmd_str(&req->cmd[0], 0, "SET");
        cmd_fmt(&req->cmd[0], 1, "%sjob:%s", cache->cfg.prefix, job);
        cmd_str(&req->cmd[0], 2, "1");
        cmd_str(&req->cmd[0], 3, "EX");
        cmd_fmt(&req->cmd[0], 4, "%lld", cache->cfg.ttl_s);
        req->ncmd = 1;
    }
    cache_submit(cache, req);
}

void cg_cache_lock(struct cg_cache *cache, const char *subscription_id,
                   const char *owner, long long ttl_ms, cg_cache_lock_fn fn,
                   void *arg)
{
    struct cache_req *req = req_new(REQ_LOCK, arg);
    char sub[CG_CACHE_ID_MAX + 1];
    req->fn.lock = fn;
    if (id_norm(subscription_id, sub) || !owner || !*owner ||
        strlen(owner) > CG_CACHE_OWNER_MAX || ttl_ms <= 0) {
        req->err = CG_EINVAL;
    } else {
        struct cache_cmd *cmd = &req->cmd[0];
        cmd_init(cmd, 6);
        cmd_str(cmd, 0, "SET");
        cmd_fmt(cmd, 1, "%slock:%s", cache->cfg.prefix, sub);
        cmd_str(cmd, 2, owner);
        cmd_str(cmd, 3, "NX");
        cmd_str(cmd, 4, "PX");
        cmd_fmt(cmd, 5, "%lld", ttl_ms);
        req->ncmd = 1;
    }
    cache_submit(cache, req);
}

void cg_cache_unlock(struct cg_cache *cache, const char *subscription_id,
                     const char *owner, cg_cache_lock_fn fn, void *arg)
{
    struct cache_req *req = req_new(REQ_UNLOCK, arg);
    char sub[CG_CACHE_ID_MAX + 1];
    req->fn.lock = fn;
    if (id_norm(subscription_id, sub) || !owner || !*owner ||
        strlen(owner) > CG_CACHE_OWNER_MAX) {
        req->err = CG_EINVAL;
    } else {
        struct cache_cmd *cmd = &req->cmd[0];
        cmd_init(cmd, 5);
        cmd_str(cmd, 0, "EVALSHA");
        cmd_str(cmd, 1, cache->unlock_sha);
        cmd_str(cmd, 2, "1");
        cmd_fmt(cmd, 3, "%slock:%s", cache->cfg.prefix, sub);
        cmd_str(cmd, 4, owner);
        req->ncmd = 1;
    }
    cache_submit(cache, req);
}

void cg_cache_undo_put(struct cg_cache *cache, const char *subscription_id,
                       const char *body, size_t len, long long retention_s,
                       cg_cache_done_fn fn, void *arg)
{
    struct cache_req *req = req_new(REQ_UNDO_PUT, arg);
    char sub[CG_CACHE_ID_MAX + 1];
    req->fn.done = fn;
    if (id_norm(subscription_id, sub) || !body || retention_s <= 0) {
        req->err = CG_EINVAL;
    } else if (len > CG_CACHE_BODY_MAX) {
        req->err = CG_ETOOBIG;
    } else {
        struct cache_cmd *cmd = &req->cmd[0];
        cmd_init(cmd, 5);
        cmd_str(cmd, 0, "SET");
        cmd_fmt(cmd, 1, "%sundo:%s", cache->cfg.prefix, sub);
        cmd_set(cmd, 2, body, len);
        cmd_str(cmd, 3, "EX");
        cmd_fmt(cmd, 4, "%lld", retention_s);
        req->ncmd = 1;
    }
    cache_submit(cache, req);
}

void cg_cache_undo_get(struct cg_cache *cache, const char *subscription_id,
                       cg_cache_body_fn fn, void *arg)
{
    struct cache_req *req = req_new(REQ_UNDO_GET, arg);
    char sub[CG_CACHE_ID_MAX + 1];
    req->fn.body = fn;
    if (id_norm(subscription_id, sub)) {
        req->err = CG_EINVAL;
    } else {
        cmd_init(&req->cmd[0], 2);
        cmd_str(&req->cmd[0], 0, "GET");
        cmd_fmt(&req->cmd[0], 1, "%sundo:%s", cache->cfg.prefix, sub);
        req->ncmd = 1;
    }
    cache_submit(cache, req);
}

void cg_cache_stats(struct cg_cache *cache, struct cg_cache_stats *out)
{
    pthread_mutex_lock(&cache->mu);
    *out = cache->stats;
    pthread_mutex_unlock(&cache->mu);
}

bool cg_cache_settle(struct cg_cache *cache, int timeout_ms)
{
    if (!cache)
        return true;
    int64_t end = cg_loop_now_ms() + timeout_ms;
    for (;;) {
        struct cg_cache_stats st;
        cg_cache_stats(cache, &st);
        if (st.queue_depth + st.in_flight == 0)
            return true;
        int64_t left = end - cg_loop_now_ms();
        if (left <= 0)
            return false;
        /* The thread does the work; the loop must not turn here, or
         * answers would reach callers that are being freed. */
        struct timespec ts = { 0, (left < 10 ? left : 10) * 1000000L };
        nanosleep(&ts, NULL);
    }
}

void cg_cache_metrics(struct cg_cache *cache, struct cg_buf *out)
{
    struct cg_cache_stats st;
    cg_cache_stats(cache, &st);
    static const char writes_help[] =
        "Cache writes (stores, done markers, undo bodies) by result";
    cg_metrics_counter(out, "contactguard_cache_writes_total", writes_help,
                       "result=\"ok\"", st.writes_ok);
    cg_metrics_counter(out, "contactguard_cache_writes_total", writes_help,
                       "result=\"error\"", st.write_errors);
    cg_metrics_counter(out, "contactguard_cache_writes_total", writes_help,
                       "result=\"dropped\"", st.dropped);
    cg_metrics_counter(out, "contactguard_cache_stale_writes_total",
                       "Stores ignored because a newer scan was cached", "",
                       st.stale);
    cg_metrics_counter(out, "contactguard_cache_lookups_total",
                       "Cache lookups asked", "", st.lookups);
    cg_metrics_counter(out, "contactguard_cache_lookup_errors_total",
                       "Cache lookups answered with an error", "",
                       st.lookup_errors);
    cg_metrics_counter(out, "contactguard_cache_reconnects_total",
                       "Redis connections made after the first", "",
                       st.reconnects);
    cg_metrics_gauge(out, "contactguard_cache_queue_depth",
                     "Cache requests waiting for the Redis thread", "",
                     (double)st.queue_depth);
    cg_metrics_gauge(out, "contactguard_cache_in_flight",
                     "Cache requests the Redis thread is sending", "",
                     (double)st.in_flight);
    cg_metrics_gauge(out, "contactguard_cache_connected",
                     "1 when the cache connection is up", "",
                     st.connected ? 1 : 0);
}

void cg_cache_free(struct cg_cache *cache)
{
    if (!cache)
        return;
    if (cache->thread_started) {
        pthread_mutex_lock(&cache->mu);
        cache->stop = true;
        /* Cut a command in flight short rather than wait out its
         * timeout; the thread owns and closes the socket. */
        if (cache->fd >= 0)
            shutdown(cache->fd, SHUT_RDWR);
        pthread_cond_broadcast(&cache->cond);
        pthread_mutex_unlock(&cache->mu);
        pthread_join(cache->thread, NULL);
    }
    if (cache->io.active)
        cg_loop_io_del(cache->loop, &cache->io);
    pthread_mutex_lock(&cache->mu);
    queue_fail_locked(cache, CG_ECANCELLED);
    pthread_mutex_unlock(&cache->mu);
    /* A callback may queue more (a remediation releasing its lock): those
     * are answered CG_ECANCELLED and run here too. */
    while (cache_drain(cache) > 0)
        ;
    if (cache->efd >= 0)
        close(cache->efd);
    pthread_cond_destroy(&cache->cond);
    pthread_mutex_destroy(&cache->mu);
    cfg_free(&cache->cfg);
    free(cache);
}

/* ---- the synchronous reader ---- */

struct cg_cache_reader {
    struct cache_cfg cfg;
    redisContext *c;
};

struct cg_cache_reader *cg_cache_reader_new(const struct cg_conf *conf,
                                            char *errbuf, size_t errsz)
{
    struct cg_cache_reader *r = cg_calloc(1, sizeof(*r));
    if (cfg_from(&r->cfg, conf, errbuf, errsz) == 0)
        r->c = cache_connect(&r->cfg, errbuf, errsz);
    if (!r->c) {
        cg_cache_reader_free(r);
        return NULL;
    }
    return r;
}

void cg_cache_reader_free(struct cg_cache_reader *r)
{
    if (!r)
        return;
    if (r->c)
        redisFree(r->c);
    cfg_free(&r->cfg);
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

/* Checks a reply: NULL (connection) or an error reply becomes CG_EREDIS
 * with the reason in errbuf. */
static int reader_check(struct cg_cache_reader *r, const redisReply *reply,
                        const char *what, char *errbuf, size_t errsz)
{
    if (!reply)
        return cg_err_set(errbuf, errsz, CG_EREDIS, "redis %s:%d: %s: %s",
                          r->cfg.host, r->cfg.port, what,
                          r->c->errstr[0] ? r->c->errstr : "no reply");
    if (reply->type == REDIS_REPLY_ERROR)
        return cg_err_set(errbuf, errsz, CG_EREDIS, "redis %s:%d: %s: %s",
                          r->cfg.host, r->cfg.port, what, reply->str);
    return 0;
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
    if (reply->elements > CACHE_LIST_MAX)
        return cg_err_set(errbuf, errsz, CG_ETOOBIG,
                          "redis: %zu members exceed the limit of %d",
                          (size_t)reply->elements, CACHE_LIST_MAX);
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

static int reader_members(struct cg_cache_reader *r, const char *cmd,
                          const char *key, struct cg_cache_list *out,
                          char *errbuf, size_t errsz)
{
    const char *argv[] = { cmd, key };
    size_t lens[] = { strlen(cmd), strlen(key) };
    redisReply *reply = redisCommandArgv(r->c, 2, argv, lens);
    int rc = reader_check(r, reply, cmd, errbuf, errsz);
    if (rc == 0)
        rc = reply_list(reply, out, errbuf, errsz);
    if (reply)
        freeReplyObject(reply);
    return rc;
}

static int reader_id(const char *id, char out[CG_CACHE_ID_MAX + 1],
                     char *errbuf, size_t errsz)
{
    if (id_norm(id, out))
        return cg_err_set(errbuf, errsz, CG_EINVAL, "'%.80s' is not a valid id",
                          id ? id : "(null)");
    return 0;
}

int cg_cache_reader_known(struct cg_cache_reader *r, const char *tenant_id,
                          struct cg_cache_list *out, char *errbuf, size_t errsz)
{
    char t[CG_CACHE_ID_MAX + 1];
    int rc = reader_id(tenant_id, t, errbuf, errsz);
    if (rc)
        return rc;
    char *key = cg_asprintf("%stenant:%s:known", r->cfg.prefix, t);
    rc = reader_members(r, "SMEMBERS", key, out, errbuf, errsz);
    free(key);
    return rc;
}

int cg_cache_reader_add_known(struct cg_cache_reader *r, const char *tenant_id,
                              const char *const *subs, size_t n, char *errbuf,
                              size_t errsz)
{
    char t[CG_CACHE_ID_MAX + 1];
    int rc = reader_id(tenant_id, t, errbuf, errsz);
    char *key = NULL, (*ids)[CG_CACHE_ID_MAX + 1] = NULL;
    const char **argv = NULL;
    size_t *lens = NULL;
    redisReply *reply = NULL;
    if (rc || n == 0)
        return rc;
    key = cg_asprintf("%stenant:%s:known", r->cfg.prefix, t);
    ids = cg_calloc(CACHE_READER_CHUNK, sizeof(*ids));
    argv = cg_calloc(CACHE_READER_CHUNK + 2, sizeof(char *));
    lens = cg_calloc(CACHE_READER_CHUNK + 2, sizeof(size_t));
    for (size_t off = 0; off < n && rc == 0; off += CACHE_READER_CHUNK) {
        size_t m = n - off < CACHE_READER_CHUNK ? n - off : CACHE_READER_CHUNK;
        argv[0] = "SADD";
        argv[1] = key;
        for (size_t i = 0; i < m && rc == 0; i++) {
            rc = reader_id(subs[off + i], ids[i], errbuf, errsz);
            argv[2 + i] = ids[i];
        }
        if (rc)
            break;
        for (size_t i = 0; i < m + 2; i++)
            lens[i] = strlen(argv[i]);
        reply = redisCommandArgv(r->c, (int)m + 2, argv, lens);
        rc = reader_check(r, reply, "SADD", errbuf, errsz);
        if (reply)
            freeReplyObject(reply);
        reply = NULL;
    }
    if (rc == 0) {
        reply = redisCommand(r->c, "EXPIRE %s %lld", key, r->cfg.ttl_s);
        rc = reader_check(r, reply, "EXPIRE", errbuf, errsz);
    }
    if (reply)
        freeReplyObject(reply);
    free(key);
    free(ids);
    free(argv);
    free(lens);
    return rc;
}

int cg_cache_reader_scan_ms(struct cg_cache_reader *r, const char *const *subs,
                            size_t n, long long *out_ms, char *errbuf,
                            size_t errsz)
{
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0; off += CACHE_READER_CHUNK) {
        size_t m = n - off < CACHE_READER_CHUNK ? n - off : CACHE_READER_CHUNK;
        size_t sent = 0;
        for (size_t i = 0; i < m && rc == 0; i++) {
            char s[CG_CACHE_ID_MAX + 1];
            rc = reader_id(subs[off + i], s, errbuf, errsz);
            if (rc)
                break;
            char *key = cg_asprintf("%ssub:%s", r->cfg.prefix, s);
            const char *argv[] = { "HGET", key, "scan_ms" };
            size_t lens[] = { 4, strlen(key), 7 };
            redisAppendCommandArgv(r->c, 3, argv, lens);
            sent++;
            free(key);
        }
        /* Every command sent is read back, also after an error, so the
         * connection stays in step. */
        for (size_t i = 0; i < sent; i++) {
            void *p = NULL;
            if (redisGetReply(r->c, &p) != REDIS_OK) {
                if (rc == 0)
                    rc = reader_check(r, NULL, "HGET", errbuf, errsz);
                break;
            }
            redisReply *reply = p;
            int e = reader_check(r, reply, "HGET", errbuf, errsz);
            if (e && rc == 0)
                rc = e;
            out_ms[off + i] = reply->type == REDIS_REPLY_STRING
                                  ? strtoll(reply->str, NULL, 10)
                                  : 0;
            freeReplyObject(reply);
        }
    }
    return rc;
}

int cg_cache_reader_tenants(struct cg_cache_reader *r,
                            struct cg_cache_list *out, char *errbuf,
                            size_t errsz)
{
    long long horizon = cg_now_ms() - r->cfg.ttl_s * 1000;
    char *key = cg_asprintf("%stenants", r->cfg.prefix);
    redisReply *reply =
        redisCommand(r->c, "ZRANGEBYSCORE %s %lld +inf", key, horizon);
    int rc = reader_check(r, reply, "ZRANGEBYSCORE", errbuf, errsz);
    if (rc == 0)
        rc = reply_list(reply, out, errbuf, errsz);
    if (reply)
        freeReplyObject(reply);
    free(key);
    return rc;
}

int cg_cache_reader_tenant(struct cg_cache_reader *r, const char *tenant_id,
                           struct cg_cache_tenant *out, char *errbuf,
                           size_t errsz)
{
    char t[CG_CACHE_ID_MAX + 1];
    int rc = reader_id(tenant_id, t, errbuf, errsz);
    redisReply *rep[3] = { NULL, NULL, NULL };
    if (rc)
        return rc;
    memset(out, 0, sizeof(*out));
    const char *p = r->cfg.prefix;
    redisAppendCommand(r->c, "HGETALL %stenant:%s:counts", p, t);
    redisAppendCommand(r->c, "ZCARD %stenant:%s:scanned", p, t);
    redisAppendCommand(r->c, "SCARD %stenant:%s:failing", p, t);
    for (int i = 0; i < 3; i++) {
        void *v = NULL;
        if (redisGetReply(r->c, &v) != REDIS_OK) {
            rc = reader_check(r, NULL, "HGETALL", errbuf, errsz);
            goto out;
        }
        rep[i] = v;
        if ((rc = reader_check(r, rep[i], "HGETALL", errbuf, errsz)))
            goto out;
    }
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
        if (rep[i])
            freeReplyObject(rep[i]);
    return rc;
}

int cg_cache_reader_changed(struct cg_cache_reader *r, const char *tenant_id,
                            struct cg_cache_list *out, char *errbuf,
                            size_t errsz)
{
    char t[CG_CACHE_ID_MAX + 1];
    int rc = reader_id(tenant_id, t, errbuf, errsz);
    if (rc)
        return rc;
    char *key = cg_asprintf("%stenant:%s:changed", r->cfg.prefix, t);
    rc = reader_members(r, "SMEMBERS", key, out, errbuf, errsz);
    free(key);
    return rc;
}

/* HMGET of the subscription's hash: the fixed fields, then one field per
 * rule for each prefix in rule_fields. */
static redisReply *reader_hmget(struct cg_cache_reader *r, const char *sub,
                                const char *const *fixed, int nfixed,
                                const char *const *rule_fields, int nrf)
{
    struct cache_cmd cmd;
    cmd_init(&cmd, 2 + nfixed + nrf * CG_RULE_COUNT);
    cmd_str(&cmd, 0, "HMGET");
    cmd_fmt(&cmd, 1, "%ssub:%s", r->cfg.prefix, sub);
    for (int i = 0; i < nfixed; i++)
        cmd_str(&cmd, 2 + i, fixed[i]);
    for (int k = 0; k < nrf; k++)
        for (int i = 0; i < CG_RULE_COUNT; i++)
            cmd_fmt(&cmd, 2 + nfixed + k * CG_RULE_COUNT + i, "%s:%s",
                    rule_fields[k], cg_rule_info((enum cg_rule)i)->id);
    redisReply *reply =
        redisCommandArgv(r->c, cmd.argc, (const char **)cmd.argv, cmd.argvlen);
    cmd_free(&cmd);
    return reply;
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
    int rc = reader_id(subscription_id, s, errbuf, errsz);
    if (rc)
        return rc;
    redisReply *reply = reader_hmget(r, s, fixed, 5, rf, 2);
    if ((rc = reader_check(r, reply, "HMGET", errbuf, errsz)))
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
    if (reply)
        freeReplyObject(reply);
    return rc;
}

int cg_cache_reader_findings(struct cg_cache_reader *r,
                             const char *subscription_id,
                             struct cg_finding out[CG_RULE_COUNT], size_t *n,
                             char *errbuf, size_t errsz)
{
    static const char *const rf[] = { "finding" };
    char s[CG_CACHE_ID_MAX + 1];
    int rc = reader_id(subscription_id, s, errbuf, errsz);
    *n = 0;
    if (rc)
        return rc;
    redisReply *reply = reader_hmget(r, s, NULL, 0, rf, 1);
    if ((rc = reader_check(r, reply, "HMGET", errbuf, errsz)))
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
    if (reply)
        freeReplyObject(reply);
    return rc;
}
