/*
 * proc — start and always stop a server process for integration tests.
 *
 * The child gets its own process group and dies with the test (parent
 * death signal), so a crashing test leaves no server behind. Startup is
 * synchronised on the server's first line of stdout (the fake Azure prints
 * its base URL there), never on a sleep.
 */
#ifndef CG_PROC_H
#define CG_PROC_H

#include <stddef.h>
#include <sys/types.h>

struct cg_proc {
    pid_t pid;
    int out_fd; /* read end of the child's stdout */
};

/*
 * Runs argv[0] with argv, waits up to timeout_ms for its first stdout line
 * and copies it (without the newline) into line. Returns 0, or -1 with a
 * reason in errbuf (the child is stopped then).
 */
int cg_proc_start(struct cg_proc *p, char *const argv[], int timeout_ms,
                  char *line, size_t linesz, char *errbuf, size_t errsz);

/* SIGTERM, then SIGKILL after timeout_ms; reaps the child. Returns its
 * exit status as waitpid reports it, or -1. Safe to call twice. */
int cg_proc_stop(struct cg_proc *p, int timeout_ms);

#endif
