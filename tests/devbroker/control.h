/*
 * control — the devbroker's line-protocol server.
 *
 * Tests drive faults (a broker down, latency, injected errors) by writing a
 * command line and reading the one-line reply, either on a TCP port bound to
 * 127.0.0.1 or on a pair of descriptors (stdin/stdout). Lines are handed to
 * a handler; this module only frames them, so it knows nothing of Kafka.
 * Everything runs on the calling thread in one poll() loop.
 */
#ifndef CG_CONTROL_H
#define CG_CONTROL_H

#include <stddef.h>

#define CG_CONTROL_LINE_MAX    1024 /* longer lines close the connection */
#define CG_CONTROL_MAX_CLIENTS 32

/* Runs one line (no newline) and writes one reply line (no newline). */
typedef void (*cg_control_handler)(void *arg, const char *line, char *reply,
                                   size_t replysz);

struct cg_control;

/*
 * Listens on 127.0.0.1:port (0 picks a free port). NULL with errbuf set
 * when the port cannot be bound.
 */
struct cg_control *cg_control_new(int port, cg_control_handler fn, void *arg,
                                  char *errbuf, size_t errsz);

/* The bound port. */
int cg_control_port(const struct cg_control *ctl);

/*
 * Serves the port, and lines read from in_fd answered on out_fd (in_fd -1:
 * none; end of file on in_fd stops reading it, not the server), until
 * stop_fd becomes readable. Returns 0, or CG_EIO when poll fails.
 */
int cg_control_run(struct cg_control *ctl, int in_fd, int out_fd, int stop_fd);

/* Closes the port and every client. NULL is fine. */
void cg_control_free(struct cg_control *ctl);

#endif
