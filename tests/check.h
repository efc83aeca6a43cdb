/*
 * check — the smallest assertion kit that names the failing row.
 *
 * CHECK(cond, fmt, ...) counts a pass or prints "FAIL file:line: message"
 * and carries on, so one run shows every failing row. check_done("NAME")
 * (or check_done()) prints "NAME: N passed, N failed" and gives main's exit
 * status. REQUIRE(cond, fmt, ...) is CHECK that also returns from the
 * calling void function when cond is false: set-up that failed is a failed
 * check, never a silent early return. A run in which no check ran at all
 * fails too, so a test whose set-up was skipped cannot pass by checking
 * nothing. Test executables only: the counters are this file's statics.
 */
#ifndef CG_CHECK_H
#define CG_CHECK_H

#include <stdio.h>

static int check_passed __attribute__((unused));
static int check_failed __attribute__((unused));

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (cond) {                                                            \
            check_passed++;                                                    \
        } else {                                                               \
            check_failed++;                                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        int require_ok_ = !!(cond);                                            \
        CHECK(require_ok_, __VA_ARGS__);                                       \
        if (!require_ok_)                                                      \
            return;                                                            \
    } while (0)

static inline int check_done_named(const char *name)
{
    if (check_passed + check_failed == 0) {
        fprintf(stderr, "FAIL %s: no check ran\n", *name ? name : "test");
        check_failed = 1;
    }
    printf("%s%s%d passed, %d failed\n", name, *name ? ": " : "", check_passed,
           check_failed);
    fflush(stdout);
    return check_failed ? 1 : 0;
}

/* check_done() or check_done("name"): a string literal glued to "". */
#define check_done(...) check_done_named("" __VA_ARGS__)

#endif
