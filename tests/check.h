/*
 * check — the smallest assertion kit a table-driven test needs.
 *
 * CHECK(cond, fmt, ...) counts a pass or prints a failure that names the
 * row (the format) and where it is, and carries on, so one run shows every
 * failing row. check_done() prints "N passed, N failed" and gives main's
 * exit status.
 */
#ifndef CG_CHECK_H
#define CG_CHECK_H

#include <stdio.h>

static int check_counts[2] __attribute__((unused)); /* passed, failed */

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (cond) {                                                            \
            check_counts[0]++;                                                 \
        } else {                                                               \
            check_counts[1]++;                                                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

static inline int check_done(void)
{
    printf("%d passed, %d failed\n", check_counts[0], check_counts[1]);
    fflush(stdout);
    return check_counts[1] ? 1 : 0;
}

#endif
