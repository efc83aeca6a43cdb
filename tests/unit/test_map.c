/* Unit tests of map: put, replace, get, delete, growth past many keys and
 * sweeping with removal. */
#include "../check.h"
#include "map.h"

#include <stdio.h>
#include <string.h>

static int sweep_odd(const char *key, void *value, void *arg)
{
    int *visited = arg;
    (*visited)++;
    return ((long)(size_t)value) % 2 == 1;
}

int main(void)
{
    struct cg_map *m = cg_map_new();
    static const struct {
        const char *name, *op, *key;
        long value, want; /* want: value expected from get/del, 0 = NULL */
    } rows[] = {
        { "get from empty", "get", "a", 0, 0 },
        { "put a", "put", "a", 1, 0 },
        { "get a", "get", "a", 0, 1 },
        { "keys are exact", "get", "A", 0, 0 },
        { "replace a", "put", "a", 2, 0 },
        { "get replaced", "get", "a", 0, 2 },
        { "empty key", "put", "", 3, 0 },
        { "get empty key", "get", "", 0, 3 },
        { "del a", "del", "a", 0, 2 },
        { "del a again", "del", "a", 0, 0 },
        { "get deleted", "get", "a", 0, 0 },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        long got = 0;
        if (strcmp(rows[i].op, "put") == 0)
            cg_map_put(m, rows[i].key, (void *)(size_t)rows[i].value);
        else if (strcmp(rows[i].op, "get") == 0)
            got = (long)(size_t)cg_map_get(m, rows[i].key);
        else
            got = (long)(size_t)cg_map_del(m, rows[i].key);
        CHECK(got == rows[i].want, "%s: %ld, want %ld", rows[i].name, got,
              rows[i].want);
    }
    CHECK(cg_map_count(m) == 1, "count %zu after the table, want 1",
          cg_map_count(m));
    cg_map_del(m, "");

    enum { N = 20000 };
    char key[32];
    for (long i = 1; i <= N; i++) {
        snprintf(key, sizeof(key), "key-%ld", i);
        cg_map_put(m, key, (void *)(size_t)i);
    }
    int missing = 0;
    for (long i = 1; i <= N; i++) {
        snprintf(key, sizeof(key), "key-%ld", i);
        missing += (long)(size_t)cg_map_get(m, key) != i;
    }
    CHECK(cg_map_count(m) == N && missing == 0,
          "grow: %zu keys, %d missing after growth", cg_map_count(m), missing);
    int visited = 0;
    cg_map_sweep(m, sweep_odd, &visited);
    CHECK(visited == N && cg_map_count(m) == N / 2,
          "sweep: visited %d, %zu left", visited, cg_map_count(m));
    CHECK(cg_map_get(m, "key-3") == NULL &&
              (long)(size_t)cg_map_get(m, "key-4") == 4,
          "sweep removed the odd values only");
    cg_map_free(m);
    cg_map_free(NULL);
    return check_done("test_map");
}
