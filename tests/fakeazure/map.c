#include "map.h"

#include "mem.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAP_INITIAL 64

struct entry {
    struct entry *next;
    void *val;
    size_t hash;
    char key[];
};

struct cg_fa_map {
    struct entry **slots;
    size_t nslots;
    size_t count;
    bool nocase;
    void (*free_val)(void *);
};

static size_t map_hash(const struct cg_fa_map *m, const char *key)
{
    /* FNV-1a: short GUID keys, no adversary controls the table size. */
    size_t h = (size_t)1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        unsigned char c = m->nocase ? (unsigned char)tolower(*p) : *p;
        h ^= c;
        h *= (size_t)1099511628211ULL;
    }
    return h;
}

static bool map_eq(const struct cg_fa_map *m, const char *a, const char *b)
{
    return m->nocase ? strcasecmp(a, b) == 0 : strcmp(a, b) == 0;
}

struct cg_fa_map *cg_fa_map_new(bool nocase, void (*free_val)(void *))
{
    struct cg_fa_map *m = cg_calloc(1, sizeof(*m));
    m->nslots = MAP_INITIAL;
    m->slots = cg_calloc(m->nslots, sizeof(*m->slots));
    m->nocase = nocase;
    m->free_val = free_val;
    return m;
}

void cg_fa_map_clear(struct cg_fa_map *m)
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct entry *e = m->slots[i];
        while (e) {
            struct entry *next = e->next;
            if (m->free_val)
                m->free_val(e->val);
            free(e);
            e = next;
        }
        m->slots[i] = NULL;
    }
    m->count = 0;
}

void cg_fa_map_free(struct cg_fa_map *m)
{
    if (!m)
        return;
    cg_fa_map_clear(m);
    free(m->slots);
    free(m);
}

static struct entry **map_find(const struct cg_fa_map *m, const char *key,
                               size_t h)
{
    struct entry **pe = &m->slots[h & (m->nslots - 1)];
    while (*pe && !((*pe)->hash == h && map_eq(m, (*pe)->key, key)))
        pe = &(*pe)->next;
    return pe;
}

void *cg_fa_map_get(const struct cg_fa_map *m, const char *key)
{
    struct entry **pe = map_find(m, key, map_hash(m, key));
    return *pe ? (*pe)->val : NULL;
}

static void map_grow(struct cg_fa_map *m)
{
    size_t n = m->nslots * 2;
    struct entry **slots = cg_calloc(n, sizeof(*slots));
    for (size_t i = 0; i < m->nslots; i++) {
        struct entry *e = m->slots[i];
        while (e) {
            struct entry *next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = n;
}

void cg_fa_map_put_take(struct cg_fa_map *m, const char *key, void *val)
{
    size_t h = map_hash(m, key);
    struct entry **pe = map_find(m, key, h);
    if (*pe) {
        if (m->free_val && (*pe)->val != val)
            m->free_val((*pe)->val);
        (*pe)->val = val;
        return;
    }
    size_t klen = strlen(key);
    struct entry *e = cg_malloc(sizeof(*e) + klen + 1);
    memcpy(e->key, key, klen + 1);
    e->val = val;
    e->hash = h;
    e->next = NULL;
    *pe = e;
    if (++m->count > m->nslots)
        map_grow(m);
}

bool cg_fa_map_del(struct cg_fa_map *m, const char *key)
{
    struct entry **pe = map_find(m, key, map_hash(m, key));
    struct entry *e = *pe;
    if (!e)
        return false;
    *pe = e->next;
    if (m->free_val)
        m->free_val(e->val);
    free(e);
    m->count--;
    return true;
}

size_t cg_fa_map_count(const struct cg_fa_map *m)
{
    return m->count;
}

void *cg_fa_map_next(const struct cg_fa_map *m, size_t *it, const char **key)
{
    /* *it encodes (slot << 16 | position in chain); chains stay short. */
    size_t slot = *it >> 16, pos = *it & 0xffff;
    for (; slot < m->nslots; slot++, pos = 0) {
        struct entry *e = m->slots[slot];
        for (size_t i = 0; e && i < pos; i++)
            e = e->next;
        if (e) {
            *it = (slot << 16) | (pos + 1);
            if (key)
                *key = e->key;
            return e->val;
        }
    }
    *it = slot << 16;
    return NULL;
}
