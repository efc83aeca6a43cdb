#include "faults.h"

#include "err.h"
#include "json.h"
#include "map.h"
#include "mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_MAX 160
#define WAITS   4 /* paths of one bucket with their own Retry-After */

/* A path answered 429 and the end of its Retry-After. */
struct path_wait {
    char path[KEY_MAX];
    double until;
};

struct bucket {
    double read_tokens, write_tokens;
    double read_at, write_at; /* seconds of the last refill */
    double retry_until;       /* every request of the bucket is held */
    struct path_wait waits[WAITS];
    uint64_t early;
    uint64_t throttled;
    char principal[96];
    char scope[48];
};

struct cg_fa_faults {
    struct cg_fa_faults_conf conf;
    uint64_t rng;
    uint64_t seed;
    struct cg_fa_map *buckets;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: reproducible draws from --seed. */
static double rnd(struct cg_fa_faults *f)
{
    f->rng ^= f->rng >> 12;
    f->rng ^= f->rng << 25;
    f->rng ^= f->rng >> 27;
    uint64_t x = f->rng * 0x2545F4914F6CDD1DULL;
    return (double)(x >> 11) / 9007199254740992.0;
}

void cg_fa_faults_defaults(struct cg_fa_faults_conf *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->retry_after_s = 1;
    conf->throttle = true;
    conf->read_cap = 250;
    conf->read_refill = 25;
    conf->write_cap = 200;
    conf->write_refill = 10;
}

struct cg_fa_faults *cg_fa_faults_new(const struct cg_fa_faults_conf *conf,
                                      uint64_t seed)
{
    struct cg_fa_faults *f = cg_calloc(1, sizeof(*f));
    f->conf = *conf;
    f->seed = seed;
    f->rng = seed * 2654435761ULL + 0x9E3779B97F4A7C15ULL;
    if (!f->rng)
        f->rng = 1;
    f->buckets = cg_fa_map_new(true, free);
    return f;
}

void cg_fa_faults_free(struct cg_fa_faults *f)
{
    if (!f)
        return;
    cg_fa_map_free(f->buckets);
    free(f);
}

const struct cg_fa_faults_conf *cg_fa_faults_conf(const struct cg_fa_faults *f)
{
    return &f->conf;
}

void cg_fa_faults_set_conf(struct cg_fa_faults *f,
                           const struct cg_fa_faults_conf *conf)
{
    f->conf = *conf;
}

void cg_fa_faults_reset(struct cg_fa_faults *f)
{
    cg_fa_map_clear(f->buckets);
    f->rng = f->seed * 2654435761ULL + 0x9E3779B97F4A7C15ULL;
    if (!f->rng)
        f->rng = 1;
}

static int share(const json_t *o, const char *key, double *out, double max,
                 char *errbuf, size_t errsz)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (!json_is_number(v) || json_number_value(v) < 0 ||
        json_number_value(v) > max)
        return cg_err_set(errbuf, errsz, CG_EINVAL,
                          "%s must be a number in 0..%g", key, max);
    *out = json_number_value(v);
    return 0;
}

int cg_fa_faults_apply_json(struct cg_fa_faults *f, const json_t *o,
                            char *errbuf, size_t errsz)
{
    static const char *const known[] = {
        "latency_ms", "jitter_ms",   "p429",       "p500",         "p503",
        "pdrop",      "pslow",       "pmalformed", "retry_after",  "throttle",
        "read_cap",   "read_refill", "write_cap",  "write_refill", NULL
    };
    if (!json_is_object(o))
        return cg_err_set(errbuf, errsz, CG_EINVAL,
                          "faults must be a JSON object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        bool ok = false;
        for (int i = 0; known[i]; i++)
            ok = ok || !strcmp(k, known[i]);
        if (!ok)
            return cg_err_set(errbuf, errsz, CG_EINVAL,
                              "unknown fault parameter '%s'", k);
    }
    struct cg_fa_faults_conf c = f->conf;
    double lat = c.latency_ms, jit = c.jitter_ms, ra = c.retry_after_s;
    int rc = share(o, "latency_ms", &lat, 600000, errbuf, errsz);
    rc = rc ? rc : share(o, "jitter_ms", &jit, 600000, errbuf, errsz);
    rc = rc ? rc : share(o, "retry_after", &ra, 3600, errbuf, errsz);
    rc = rc ? rc : share(o, "p429", &c.p429, 1, errbuf, errsz);
    rc = rc ? rc : share(o, "p500", &c.p500, 1, errbuf, errsz);
    rc = rc ? rc : share(o, "p503", &c.p503, 1, errbuf, errsz);
    rc = rc ? rc : share(o, "pdrop", &c.pdrop, 1, errbuf, errsz);
    rc = rc ? rc : share(o, "pslow", &c.pslow, 1, errbuf, errsz);
    rc = rc ? rc : share(o, "pmalformed", &c.pmalformed, 1, errbuf, errsz);
    rc = rc ? rc : share(o, "read_cap", &c.read_cap, 1e9, errbuf, errsz);
    rc = rc ? rc : share(o, "read_refill", &c.read_refill, 1e9, errbuf, errsz);
    rc = rc ? rc : share(o, "write_cap", &c.write_cap, 1e9, errbuf, errsz);
    rc =
        rc ? rc : share(o, "write_refill", &c.write_refill, 1e9, errbuf, errsz);
    if (rc)
        return rc;
    json_t *th = json_object_get(o, "throttle");
    if (th) {
        if (!json_is_boolean(th))
            return cg_err_set(errbuf, errsz, CG_EINVAL,
                              "throttle must be true or false");
        c.throttle = json_is_true(th);
    }
    if (c.p429 + c.p500 + c.p503 + c.pdrop + c.pslow + c.pmalformed > 1)
        return cg_err_set(errbuf, errsz, CG_EINVAL,
                          "fault shares add up to more than 1");
    c.latency_ms = (unsigned)lat;
    c.jitter_ms = (unsigned)jit;
    c.retry_after_s = (unsigned)ra;
    f->conf = c;
    return 0;
}

json_t *cg_fa_faults_conf_json(const struct cg_fa_faults *f)
{
    const struct cg_fa_faults_conf *c = &f->conf;
    return json_pack("{s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:i,s:b,s:f,s:f,s:f,"
                     "s:f}",
                     "latency_ms", (int)c->latency_ms, "jitter_ms",
                     (int)c->jitter_ms, "p429", c->p429, "p500", c->p500,
                     "p503", c->p503, "pdrop", c->pdrop, "pslow", c->pslow,
                     "pmalformed", c->pmalformed, "retry_after",
                     (int)c->retry_after_s, "throttle", c->throttle, "read_cap",
                     c->read_cap, "read_refill", c->read_refill, "write_cap",
                     c->write_cap, "write_refill", c->write_refill);
}

static struct bucket *bucket_get(struct cg_fa_faults *f, const char *principal,
                                 const char *scope, double now)
{
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "%s|%s", principal, scope);
    struct bucket *b = cg_fa_map_get(f->buckets, key);
    if (!b) {
        b = cg_calloc(1, sizeof(*b));
        b->read_tokens = f->conf.read_cap;
        b->write_tokens = f->conf.write_cap;
        b->read_at = b->write_at = now;
        cg_strlcpy(b->principal, principal, sizeof(b->principal));
        cg_strlcpy(b->scope, scope, sizeof(b->scope));
        cg_fa_map_put_take(f->buckets, key, b);
    }
    return b;
}

static void refill(double *tokens, double *at, double cap, double rate,
                   double now)
{
    *tokens += (now - *at) * rate;
    if (*tokens > cap)
        *tokens = cap;
    *at = now;
}

/* Starts path's own wait (replacing an ended one, or the soonest). */
static void wait_note(struct bucket *b, const char *path, double until)
{
    struct path_wait *w = &b->waits[0];
    for (int i = 0; i < WAITS; i++) {
        if (!strcmp(b->waits[i].path, path)) {
            w = &b->waits[i];
            break;
        }
        if (b->waits[i].until < w->until)
            w = &b->waits[i];
    }
    cg_strlcpy(w->path, path, sizeof(w->path));
    w->until = until;
}

static bool wait_pending(const struct bucket *b, const char *path, double now)
{
    for (int i = 0; i < WAITS; i++)
        if (now < b->waits[i].until && !strcmp(b->waits[i].path, path))
            return true;
    return false;
}

void cg_fa_faults_throttle(struct cg_fa_faults *f, const char *principal,
                           const char *scope, const char *path, bool write,
                           struct cg_fa_throttle *out)
{
    double now = now_s();
    struct bucket *b = bucket_get(f, principal, scope, now);
    const struct cg_fa_faults_conf *c = &f->conf;
    double *tokens = write ? &b->write_tokens : &b->read_tokens;
    double *at = write ? &b->write_at : &b->read_at;
    double cap = write ? c->write_cap : c->read_cap;
    double rate = write ? c->write_refill : c->read_refill;
    memset(out, 0, sizeof(*out));
    refill(tokens, at, cap, rate, now);
    bool held = now < b->retry_until;
    if (held && wait_pending(b, path, now)) {
        out->early = true;
        b->early++;
    }
    if (!c->throttle) {
        out->remaining = (long)cap;
        return;
    }
    if (held || *tokens < 1) {
        double wait = rate > 0 ? (1 - *tokens) / rate : 3600;
        if (wait < 1)
            wait = 1;
        out->limited = true;
        out->retry_after = (unsigned)ceil(wait);
        out->remaining = 0;
        b->retry_until = now + out->retry_after;
        wait_note(b, path, b->retry_until);
        b->throttled++;
        return;
    }
    *tokens -= 1;
    out->remaining = (long)*tokens;
}

void cg_fa_faults_note_retry_after(struct cg_fa_faults *f,
                                   const char *principal, const char *scope,
                                   const char *path, unsigned seconds)
{
    double now = now_s();
    struct bucket *b = bucket_get(f, principal, scope, now);
    b->retry_until = now + seconds;
    wait_note(b, path, b->retry_until);
    b->throttled++;
}

enum cg_fa_draw cg_fa_faults_draw(struct cg_fa_faults *f)
{
    const struct cg_fa_faults_conf *c = &f->conf;
    double sum =
        c->p429 + c->p500 + c->p503 + c->pdrop + c->pslow + c->pmalformed;
    if (sum <= 0)
        return CG_FA_DRAW_NONE;
    double u = rnd(f);
    if ((u -= c->p429) < 0)
        return CG_FA_DRAW_429;
    if ((u -= c->p500) < 0)
        return CG_FA_DRAW_500;
    if ((u -= c->p503) < 0)
        return CG_FA_DRAW_503;
    if ((u -= c->pdrop) < 0)
        return CG_FA_DRAW_DROP;
    if ((u -= c->pslow) < 0)
        return CG_FA_DRAW_SLOW;
    if ((u -= c->pmalformed) < 0)
        return CG_FA_DRAW_MALFORMED;
    return CG_FA_DRAW_NONE;
}

unsigned cg_fa_faults_delay(struct cg_fa_faults *f)
{
    const struct cg_fa_faults_conf *c = &f->conf;
    if (!c->latency_ms && !c->jitter_ms)
        return 0;
    double j = c->jitter_ms ? (rnd(f) * 2 - 1) * c->jitter_ms : 0;
    double d = c->latency_ms + j;
    return d > 0 ? (unsigned)d : 0;
}

json_t *cg_fa_faults_stats_json(const struct cg_fa_faults *f)
{
    json_t *arr = json_array();
    size_t it = 0;
    struct bucket *b;
    while ((b = cg_fa_map_next(f->buckets, &it, NULL))) {
        if (!b->early && !b->throttled)
            continue;
        json_array_append_new(arr,
                              json_pack("{s:s,s:s,s:I,s:I}", "principal",
                                        b->principal, "subscription", b->scope,
                                        "early", (json_int_t)b->early,
                                        "throttled", (json_int_t)b->throttled));
    }
    return arr;
}

uint64_t cg_fa_faults_early_total(const struct cg_fa_faults *f)
{
    uint64_t n = 0;
    size_t it = 0;
    struct bucket *b;
    while ((b = cg_fa_map_next(f->buckets, &it, NULL)))
        n += b->early;
    return n;
}
