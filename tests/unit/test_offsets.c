/* The commit watermark: only offsets below which every job is finished. */
#include "../check.h"
#include "offsets.h"

#include <stdlib.h>

struct step {
    char op; /* 'b' begin, 'f' finish, 'x' forget */
    int32_t part;
    int64_t offset;
    int64_t want; /* finish: returned value; begin: watermark after */
};

static const struct step steps[] = {
    { 'b', 0, 10, 10 }, { 'b', 0, 11, 10 }, { 'b', 0, 12, 10 },
    { 'f', 0, 11, -1 }, /* out of order: no move */
    { 'f', 0, 11, -1 }, /* twice: ignored */
    { 'f', 0, 10, 12 }, /* 10 and 11 done: the watermark is 12 */
    { 'f', 0, 12, 13 }, /* all done: one past the last */
    { 'f', 0, 99, -1 }, /* unknown */
    { 'b', 1, 5, 5 },   { 'b', 0, 13, 13 }, { 'f', 1, 5, 6 },
    { 'b', 0, 3, 3 }, /* seek back: the partition starts over */
    { 'f', 0, 3, 4 },   { 'x', 0, 0, -1 },  { 'f', 0, 4, -1 },
};

int main(void)
{
    struct cg_offsets *o = cg_offsets_new();
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        const struct step *s = &steps[i];
        if (s->op == 'b') {
            cg_offsets_begin(o, s->part, s->offset);
            int64_t w = cg_offsets_watermark(o, s->part);
            CHECK(w == s->want,
                  "step %zu begin p%d@%lld: watermark %lld, "
                  "want %lld",
                  i, s->part, (long long)s->offset, (long long)w,
                  (long long)s->want);
        } else if (s->op == 'f') {
            int64_t got = cg_offsets_finish(o, s->part, s->offset);
            CHECK(got == s->want,
                  "step %zu finish p%d@%lld: got %lld, "
                  "want %lld",
                  i, s->part, (long long)s->offset, (long long)got,
                  (long long)s->want);
        } else {
            cg_offsets_forget(o, s->part);
            CHECK(cg_offsets_watermark(o, s->part) == -1,
                  "step %zu: forgotten partition has a watermark", i);
        }
    }
    CHECK(cg_offsets_open(o) == 0, "open after all: %zu", cg_offsets_open(o));

    /* Many in flight, finished in reverse: one move at the very end. */
    for (int64_t k = 0; k < 10000; k++)
        cg_offsets_begin(o, 7, 1000 + k);
    CHECK(cg_offsets_open(o) == 10000, "open 10000");
    int moves = 0;
    for (int64_t k = 9999; k >= 0; k--)
        if (cg_offsets_finish(o, 7, 1000 + k) >= 0)
            moves++;
    CHECK(moves == 1 && cg_offsets_watermark(o, 7) == 11000,
          "reverse finish: moves %d watermark %lld", moves,
          (long long)cg_offsets_watermark(o, 7));
    cg_offsets_free(o);
    return check_done("offsets");
}
