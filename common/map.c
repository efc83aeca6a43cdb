#include "map.h"

#include "mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct map_entry {
    struct map_entry *next;
    uint64_t hash;
    void *value;
    char key[]; /* NUL-terminated copy */
};

struct cg_map {
    struct map_entry **slots;
    size_t nslots; /* a power of two */
    size_t count;
};

/* FNV-1a: keys are short ids and GUIDs from our own configuration or from
 * Azure, not attacker-chosen in bulk. */
static uint64_t map_hash(const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h;
}

struct cg_map *cg_map_new(void)
{
    struct cg_map *map = cg_calloc(1, sizeof(*map));
    map->nslots = 64;
    map->slots = cg_calloc(map->nslots, sizeof(*map->slots));
    return map;
}

void cg_map_free(struct cg_map *map)
{
    if (!map)
        return;
    for (size_t i = 0; i < map->nslots; i++) {
        struct map_entry *e = map->slots[i];
        while (e) {
            struct map_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(map->slots);
    free(map);
}

static struct map_entry **map_find(const struct cg_map *map, const char *key,
                                   uint64_t h)
{
    struct map_entry **pe = &map->slots[h & (map->nslots - 1)];
    while (*pe && ((*pe)->hash != h || strcmp((*pe)->key, key) != 0))
        pe = &(*pe)->next;
    return pe;
}

void *cg_map_get(const struct cg_map *map, const char *key)
{
    struct map_entry **pe = map_find(map, key, map_hash(key));
    return *pe ? (*pe)->value : NULL;
}

static void map_grow(struct cg_map *map)
{
    size_t n = map->nslots * 2;
    struct map_entry **slots = cg_calloc(n, sizeof(*slots));
    for (size_t i = 0; i < map->nslots; i++) {
        struct map_entry *e = map->slots[i];
        while (e) {
            struct map_entry *next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(map->slots);
    map->slots = slots;
    map->nslots = n;
}

void cg_map_put(struct cg_map *map, const char *key, void *value)
{
    uint64_t h = map_hash(key);
    struct map_entry **pe = map_find(map, key, h);
    if (*pe) {
        (*pe)->value = value;
        return;
    }
    size_t klen = strlen(key);
    struct map_entry *e = cg_malloc(sizeof(*e) + klen + 1);
    memcpy(e->key, key, klen + 1);
    e->hash = h;
    e->value = value;
    e->next = NULL;
    *pe = e;
    if (++map->count > map->nslots)
        map_grow(map);
}

void *cg_map_del(struct cg_map *map, const char *key)
{
    struct map_entry **pe = map_find(map, key, map_hash(key));
    struct map_entry *e = *pe;
    if (!e)
        return NULL;
    void *value = e->value;
    *pe = e->next;
    free(e);
    map->count--;
    return value;
}

size_t cg_map_count(const struct cg_map *map)
{
    return map->count;
}

void cg_map_sweep(struct cg_map *map,
                  int (*fn)(const char *key, void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < map->nslots; i++) {
        struct map_entry **pe = &map->slots[i];
        while (*pe) {
            struct map_entry *e = *pe;
            if (fn(e->key, e->value, arg)) {
                *pe = e->next;
                free(e);
                map->count--;
            } else {
                pe = &e->next;
            }
        }
    }
}
