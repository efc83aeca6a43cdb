#include "offsets.h"

#include "mem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    int64_t offset;
    bool done;
};

/* A ring of slots in arrival (= offset) order. */
struct part {
    int32_t id;
    struct slot *ring;
    size_t cap, head, len;
    int64_t next; /* one past the last offset popped as finished, or -1 */
    size_t open;
};

struct cg_offsets {
    struct part *parts;
    size_t nparts;
    size_t open;
};

struct cg_offsets *cg_offsets_new(void)
{
    return cg_calloc(1, sizeof(struct cg_offsets));
}

void cg_offsets_free(struct cg_offsets *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->nparts; i++)
        free(o->parts[i].ring);
    free(o->parts);
    free(o);
}

static struct part *part_find(const struct cg_offsets *o, int32_t id)
{
    for (size_t i = 0; i < o->nparts; i++)
        if (o->parts[i].id == id)
            return &o->parts[i];
    return NULL;
}

static struct slot *at(struct part *p, size_t i)
{
    return &p->ring[(p->head + i) % p->cap];
}

static void part_reset(struct cg_offsets *o, struct part *p)
{
    o->open -= p->open;
    p->open = 0;
    p->head = 0;
    p->len = 0;
    p->next = -1;
}

void cg_offsets_begin(struct cg_offsets *o, int32_t partition, int64_t offset)
{
    struct part *p = part_find(o, partition);
    if (!p) {
        o->parts = cg_realloc(o->parts, (o->nparts + 1) * sizeof(*o->parts));
        p = &o->parts[o->nparts++];
        memset(p, 0, sizeof(*p));
        p->id = partition;
        p->next = -1;
    }
    int64_t last = p->len ? at(p, p->len - 1)->offset : p->next - 1;
    if (offset <= last)
        part_reset(o, p); /* a seek back: start over from here */
    if (p->len == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 64;
        struct slot *nr = cg_malloc(ncap * sizeof(*nr));
        for (size_t i = 0; i < p->len; i++)
            nr[i] = *at(p, i);
        free(p->ring);
        p->ring = nr;
        p->cap = ncap;
        p->head = 0;
    }
    struct slot *s = &p->ring[(p->head + p->len) % p->cap];
    s->offset = offset;
    s->done = false;
    p->len++;
    p->open++;
    o->open++;
}

int64_t cg_offsets_finish(struct cg_offsets *o, int32_t partition,
                          int64_t offset)
{
    struct part *p = part_find(o, partition);
    if (!p || p->len == 0)
        return -1;
    /* Binary search: the ring is sorted by offset. */
    size_t lo = 0, hi = p->len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (at(p, mid)->offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == p->len || at(p, lo)->offset != offset || at(p, lo)->done)
        return -1;
    at(p, lo)->done = true;
    p->open--;
    o->open--;
    if (lo != 0)
        return -1;
    while (p->len && at(p, 0)->done) {
        p->next = at(p, 0)->offset + 1;
        p->head = (p->head + 1) % p->cap;
        p->len--;
    }
    return p->len ? at(p, 0)->offset : p->next;
}

int64_t cg_offsets_watermark(const struct cg_offsets *o, int32_t partition)
{
    struct part *p = part_find(o, partition);
    if (!p)
        return -1;
    return p->len ? at(p, 0)->offset : p->next;
}

void cg_offsets_forget(struct cg_offsets *o, int32_t partition)
{
    for (size_t i = 0; i < o->nparts; i++) {
        if (o->parts[i].id == partition) {
            o->open -= o->parts[i].open;
            free(o->parts[i].ring);
            o->parts[i] = o->parts[--o->nparts];
            return;
        }
    }
}

size_t cg_offsets_open(const struct cg_offsets *o)
{
    return o->open;
}
