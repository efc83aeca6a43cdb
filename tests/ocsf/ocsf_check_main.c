/*
 * ocsf-check — the conformance checker over JSON lines on stdin, for the
 * shell tests (contactguard-eval's output). Prints each failing line's
 * problems and one summary line "ocsf-check: N events (1.1.0 A, 1.4.0 B),
 * N failed". Exit 1 when any event fails, or when fewer than MIN events
 * of any version were seen (so an empty input cannot pass), 2 on usage.
 */
#include "ocsf.h"
#include "ocsf_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ocsf-check TABLE_DIR MIN_PER_VERSION "
                        "< events\n");
        return 2;
    }
    char err[2048];
    struct cg_ocsf_check *c = cg_ocsf_check_new(argv[1], err, sizeof(err));
    if (!c) {
        fprintf(stderr, "ocsf-check: %s\n", err);
        return 2;
    }
    size_t min = strtoul(argv[2], NULL, 10);
    char *line = NULL;
    size_t cap = 0, n = 0, bad = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        n++;
        if (cg_ocsf_check_event(c, line, (size_t)len, err, sizeof(err))) {
            bad++;
            fprintf(stderr, "ocsf-check: event %zu: %s\n", n, err);
        }
    }
    free(line);
    int rc = bad ? 1 : 0;
    printf("ocsf-check: %zu events (", n);
    const struct cg_ocsf_version *v;
    for (size_t i = 0; (v = cg_ocsf_version_at(i)); i++) {
        size_t k = cg_ocsf_check_count(c, v->name);
        printf("%s%s %zu", i ? ", " : "", v->name, k);
        if (k < min)
            rc = 1;
    }
    printf("), %zu failed\n", bad);
    cg_ocsf_check_free(c);
    return rc;
}
