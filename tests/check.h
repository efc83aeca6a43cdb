/*
 * check — the assertion header of the unit tests.
 *
 * CHECK(cond, fmt, ...) records a pass or a failure; a failure prints the
 * file, line and the formatted message (name the table row in it). Each
 * test executable ends with `return CHECK_DONE();`, which prints
 * "<name>: N passed, M failed" and yields a non-zero exit on any failure.
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

#define CHECK_DONE()                                                           \
    (fprintf(stderr, "%s: %d passed, %d failed\n", __FILE__, check_passed,     \
             check_failed),                                                    \
     check_failed == 0 && check_passed > 0 ? 0 : 1)

#endif
