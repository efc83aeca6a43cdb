/*
 * map — a string-keyed hash table for the fake's in-memory state.
 *
 * Tokens, tenants, apps, subscriptions and throttling buckets are all looked
 * up by a string on every request, so the fake keeps them in chained hash
 * tables that grow with the population. A map created case-insensitive
 * folds ASCII case when hashing and comparing, because ARM treats
 * subscription and tenant GUIDs case-insensitively.
 */
#ifndef CG_FA_MAP_H
#define CG_FA_MAP_H

#include <stdbool.h>
#include <stddef.h>

struct cg_fa_map;

/* free_val (may be NULL) is called on values that are replaced, deleted or
 * still present when the map is freed. */
struct cg_fa_map *cg_fa_map_new(bool nocase, void (*free_val)(void *));
void cg_fa_map_free(struct cg_fa_map *m);

/* The value stored under key, or NULL. */
void *cg_fa_map_get(const struct cg_fa_map *m, const char *key);

/* Stores val under a copy of key, taking ownership of val; an older value
 * under the same key is freed. */
void cg_fa_map_put_take(struct cg_fa_map *m, const char *key, void *val);

/* Removes key; true when it was present. */
bool cg_fa_map_del(struct cg_fa_map *m, const char *key);

size_t cg_fa_map_count(const struct cg_fa_map *m);

/* Removes every entry. */
void cg_fa_map_clear(struct cg_fa_map *m);

/*
 * Iteration: start with *it = 0; returns the next value (and its key in
 * *key when key is non-NULL) or NULL at the end. The map must not change
 * during an iteration.
 */
void *cg_fa_map_next(const struct cg_fa_map *m, size_t *it, const char **key);

#endif
