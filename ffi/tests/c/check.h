/* The C API tests' assertion: a failed check prints where it was and the library's last error, and counts
 * (atomically: the threads test checks from several threads). */
#ifndef SAIL_TEST_CHECK_H
#define SAIL_TEST_CHECK_H

#include <stdatomic.h>
#include <stdio.h>

#include "sail_edge.h"

static atomic_int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, " [last error: %s]\n", sail_last_error());         \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#endif
