/* Unit tests of the event loop: timer order, cancel, re-adding from a
 * callback, fd watchers and a watcher deleted within its own batch. */
#include "../check.h"
#include "err.h"
#include "loop.h"

#include <string.h>
#include <unistd.h>

struct order {
    char seen[64];
    size_t n;
};

struct tagged {
    struct cg_loop_timer t;
    struct order *o;
    char tag;
};

static void on_tag(struct cg_loop *loop, void *arg)
{
    struct tagged *x = arg;
    x->o->seen[x->o->n++] = x->tag;
}

static void run_until_idle(struct cg_loop *loop, int max_turns)
{
    while (max_turns-- > 0 && cg_loop_timer_count(loop) > 0)
        cg_loop_run_once(loop, 1000);
}

static void test_timer_order(struct cg_loop *loop)
{
    static const struct {
        const char *name;
        int64_t delays[6];
        const char *cancel; /* tags cancelled before running */
        const char *want;
    } rows[] = {
        { "by due time", { 30, 10, 20, -1 }, "", "bca" },
        { "ties keep insertion order", { 5, 5, 5, 5, -1 }, "", "abcd" },
        { "cancel middle", { 1, 2, 3, 4, 5, -1 }, "c", "abde" },
        { "cancel head and tail", { 1, 2, 3, -1 }, "ac", "b" },
        { "zero delay", { 0, 0, 3, -1 }, "", "abc" },
    };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        struct order o = { 0 };
        struct tagged x[6];
        memset(x, 0, sizeof(x));
        size_t n = 0;
        for (; rows[r].delays[n] >= 0; n++) {
            x[n].o = &o;
            x[n].tag = (char)('a' + n);
            cg_loop_timer_add(loop, &x[n].t, rows[r].delays[n], on_tag, &x[n]);
        }
        for (const char *c = rows[r].cancel; *c; c++)
            cg_loop_timer_cancel(loop, &x[*c - 'a'].t);
        run_until_idle(loop, 100);
        o.seen[o.n] = '\0';
        CHECK(strcmp(o.seen, rows[r].want) == 0, "%s: fired %s, want %s",
              rows[r].name, o.seen, rows[r].want);
        for (size_t i = 0; i < n; i++)
            CHECK(!cg_loop_timer_active(&x[i].t), "%s: timer %zu still active",
                  rows[r].name, i);
    }
}

struct rearm {
    struct cg_loop_timer t;
    int fired;
};

static void on_rearm(struct cg_loop *loop, void *arg)
{
    struct rearm *x = arg;
    if (++x->fired < 5)
        cg_loop_timer_add(loop, &x->t, 0, on_rearm, x);
}

static void test_timer_rearm(struct cg_loop *loop)
{
    struct rearm x = { 0 };
    cg_loop_timer_add(loop, &x.t, 0, on_rearm, &x);
    int ran = cg_loop_run_once(loop, 0);
    CHECK(ran == 1 && x.fired == 1,
          "rearm: a zero-delay re-add waits for the next turn (ran %d)", ran);
    run_until_idle(loop, 10);
    CHECK(x.fired == 5, "rearm: fired %d times, want 5", x.fired);
}

static void test_timer_delay(struct cg_loop *loop)
{
    struct order o = { 0 };
    struct tagged x = { .o = &o, .tag = 'a' };
    int64_t t0 = cg_loop_now_ms();
    cg_loop_timer_add(loop, &x.t, 50, on_tag, &x);
    run_until_idle(loop, 100);
    int64_t dt = cg_loop_now_ms() - t0;
    CHECK(o.n == 1 && dt >= 50, "delay: fired after %lld ms, want >= 50",
          (long long)dt);
}

struct counted {
    struct cg_loop_timer t;
    int64_t due;
    int64_t *last_due;
    int *fired, *out_of_order;
};

static void on_counted(struct cg_loop *loop, void *arg)
{
    struct counted *x = arg;
    (*x->fired)++;
    if (x->due < *x->last_due)
        (*x->out_of_order)++;
    *x->last_due = x->due;
}

static void test_many_timers(struct cg_loop *loop)
{
    enum { N = 5000 };
    static struct counted x[N];
    int fired = 0, out_of_order = 0;
    int64_t last_due = 0;
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 1103515245u + 12345u;
        x[i].fired = &fired;
        x[i].out_of_order = &out_of_order;
        x[i].last_due = &last_due;
        cg_loop_timer_add(loop, &x[i].t, (s >> 16) % 40, on_counted, &x[i]);
        x[i].due = x[i].t.due_ms;
    }
    /* Cancel every third, so removals from the middle of the heap are
     * exercised too. */
    for (int i = 0; i < N; i += 3)
        cg_loop_timer_cancel(loop, &x[i].t);
    int want = N - (N + 2) / 3;
    CHECK(cg_loop_timer_count(loop) == (size_t)want,
          "many: %zu scheduled, want %d", cg_loop_timer_count(loop), want);
    run_until_idle(loop, 1000);
    CHECK(fired == want, "many: %d fired, want %d", fired, want);
    CHECK(out_of_order == 0, "many: %d fired before an earlier one",
          out_of_order);
}

struct pipes {
    int fds[2][2];
    struct cg_loop_io io[2];
    int calls[2];
};

static void on_pipe(struct cg_loop *loop, int fd, unsigned events, void *arg)
{
    struct pipes *p = arg;
    int i = fd == p->fds[0][0] ? 0 : 1;
    p->calls[i]++;
    char b[16];
    (void)!read(fd, b, sizeof(b));
    /* The first one called deletes the other, whose event is pending in
     * the same batch: it must not be called. */
    cg_loop_io_del(loop, &p->io[1 - i]);
}

static void test_io(struct cg_loop *loop)
{
    struct pipes p;
    memset(&p, 0, sizeof(p));
    CHECK(pipe(p.fds[0]) == 0 && pipe(p.fds[1]) == 0, "io: pipes");
    for (int i = 0; i < 2; i++)
        CHECK(cg_loop_io_add(loop, &p.io[i], p.fds[i][0], CG_LOOP_READ, on_pipe,
                             &p, NULL, 0) == 0,
              "io: add %d", i);
    CHECK(cg_loop_io_count(loop) == 2, "io: two watchers");
    (void)!write(p.fds[0][1], "x", 1);
    (void)!write(p.fds[1][1], "y", 1);
    int ran = cg_loop_run_once(loop, 1000);
    CHECK(ran == 1 && p.calls[0] + p.calls[1] == 1,
          "io: one callback ran (%d, %d+%d), the deleted one was skipped", ran,
          p.calls[0], p.calls[1]);
    CHECK(cg_loop_io_count(loop) == 1, "io: one watcher left");
    for (int i = 0; i < 2; i++) {
        cg_loop_io_del(loop, &p.io[i]);
        close(p.fds[i][0]);
        close(p.fds[i][1]);
    }
    CHECK(cg_loop_io_count(loop) == 0, "io: none left");
    CHECK(cg_loop_io_add(loop, &p.io[0], 12345, CG_LOOP_READ, on_pipe, &p, NULL,
                         0) == CG_EIO,
          "io: a bad fd is refused");
}

int main(void)
{
    char err[256];
    struct cg_loop *loop = cg_loop_new(err, sizeof(err));
    CHECK(loop != NULL, "loop_new: %s", err);
    test_timer_order(loop);
    test_timer_rearm(loop);
    test_timer_delay(loop);
    test_many_timers(loop);
    test_io(loop);
    cg_loop_free(loop);
    return check_done("test_loop");
}
