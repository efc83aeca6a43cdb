/*
 * check — the smallest assertion kit that names the failing row.
 *
 * CHECK(cond, fmt, ...) counts a pass or prints "FAIL file:line: message";
 * check_done() prints "NAME: N passed, N failed" and gives the exit code.
 * Test executables only: the counters are this file's statics.
 */
#ifndef CG_CHECK_H
#define CG_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;

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

static inline int check_done(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
