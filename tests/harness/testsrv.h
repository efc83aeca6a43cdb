/*
 * testsrv — a scripted HTTP/1.1 server on loopback, served by a cg_loop.
 *
 * Unit tests of http, auth and arm run the client and this server on one
 * loop in one thread, so that a test is deterministic and needs no sleep:
 * the handler decides each answer from the request (scripts are data in
 * the test's tables) and every request is recorded with its arrival time,
 * so a test can check, for example, that nothing came before a
 * Retry-After had passed.
 */
#ifndef CG_TESTSRV_H
#define CG_TESTSRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_loop;
struct cg_testsrv;

struct cg_testsrv_request {
    const char *method;
    const char *path;    /* with the query */
    const char *headers; /* raw header block */
    const char *body;
    size_t body_len;
    int64_t at_ms; /* cg_loop_now_ms() at arrival */
};

struct cg_testsrv_response {
    int status;
    char headers[1024]; /* extra "Name: value\r\n" lines */
    char *body;         /* heap; the server frees it */
    bool hang;          /* never answer (the client times out) */
};

typedef void (*cg_testsrv_fn)(const struct cg_testsrv_request *req,
                              struct cg_testsrv_response *res, void *arg);

/* Listens on 127.0.0.1 on a free port. NULL on failure. */
struct cg_testsrv *cg_testsrv_new(struct cg_loop *loop, cg_testsrv_fn fn,
                                  void *arg);
void cg_testsrv_free(struct cg_testsrv *srv);
int cg_testsrv_port(const struct cg_testsrv *srv);
/* Requests received and connections accepted so far. */
size_t cg_testsrv_count(const struct cg_testsrv *srv);
size_t cg_testsrv_connections(const struct cg_testsrv *srv);

/* The value of header name in a raw block (copied into val), or NULL. */
const char *cg_testsrv_header(const char *headers, const char *name, char *val,
                              size_t valsz);

#endif
