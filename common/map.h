/*
 * map — a string-keyed hash table of borrowed pointers.
 *
 * The Azure client keeps per-tenant and per-(principal, subscription) state
 * (tokens, concurrency slots, throttling buckets) for thousands of keys and
 * looks it up on every request, so lookups must not be linear. Keys are
 * copied; values are the caller's and are never freed by the map.
 */
#ifndef CG_MAP_H
#define CG_MAP_H

#include <stddef.h>

struct cg_map;

struct cg_map *cg_map_new(void);
/* Frees the table and its key copies, not the values. NULL-ok. */
void cg_map_free(struct cg_map *map);

/* The value stored under key, or NULL. */
void *cg_map_get(const struct cg_map *map, const char *key);
/* Stores value under key, replacing any previous value. */
void cg_map_put(struct cg_map *map, const char *key, void *value);
/* Removes key (a no-op when absent) and returns its value or NULL. */
void *cg_map_del(struct cg_map *map, const char *key);
size_t cg_map_count(const struct cg_map *map);

/*
 * Visits every entry; fn may not change the map but may return non-zero
 * to ask for that entry to be removed (its value is then the caller's to
 * free, inside fn).
 */
void cg_map_sweep(struct cg_map *map,
                  int (*fn)(const char *key, void *value, void *arg),
                  void *arg);

#endif
