/*
 * server — the fake's HTTP/1.1 transport: one epoll loop, keep-alive,
 * optional TLS, and the transport-level faults Azure produces.
 *
 * Every request is parsed in place into struct cg_fa_req and handed to one
 * handler, which fills struct cg_fa_resp. The transport then applies what
 * the handler asked for: a delay before the answer (latency), a dropped
 * connection, a body trickled out slowly, or a truncated (malformed) body.
 * Input is bounded (CG_FA_HEAD_MAX for the head, CG_FA_BODY_MAX for the
 * body); a request past either limit is answered 431/413 and the connection
 * closed. Requests on one connection are answered in order; pipelined
 * requests wait until the previous answer has been queued.
 */
#ifndef CG_FA_SERVER_H
#define CG_FA_SERVER_H

#include "mem.h"

#include <openssl/ssl.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#define CG_FA_HEAD_MAX    (32 * 1024)
#define CG_FA_BODY_MAX    (1024 * 1024)
#define CG_FA_HEADERS_MAX 64
#define CG_FA_CONN_MAX    20000
/* Largest answer body the handler may produce. */
#define CG_FA_RESP_MAX (64 * 1024 * 1024)

enum cg_fa_fault {
    CG_FA_FAULT_NONE,
    CG_FA_FAULT_DROP,      /* close without answering */
    CG_FA_FAULT_SLOW,      /* trickle the answer out in small pieces */
    CG_FA_FAULT_MALFORMED, /* cut the body in half (Content-Length agrees) */
};

struct cg_fa_header {
    const char *name;
    const char *value;
};

/* A parsed request; every pointer is borrowed for the handler call only. */
struct cg_fa_req {
    const char *method;
    const char *target; /* as sent */
    const char *path;   /* target up to '?', percent-decoded */
    const char *query;  /* after '?', raw; "" when none */
    struct cg_fa_header headers[CG_FA_HEADERS_MAX];
    size_t nheaders;
    const char *body; /* NUL-terminated */
    size_t body_len;
    bool peer_loopback;
    bool tls;
};

struct cg_fa_resp {
    int status;
    const char *content_type; /* static string; NULL: application/json */
    struct cg_buf headers;    /* extra "Name: value\r\n" lines */
    struct cg_buf body;
    enum cg_fa_fault fault;
    unsigned delay_ms;
    bool close;
};

/* True for 127.0.0.0/8, ::1 and IPv4-mapped loopback: the peers the
 * control API answers. */
struct sockaddr_storage;
bool cg_fa_addr_loopback(const struct sockaddr_storage *ss);

/* Header value (case-insensitive name) or NULL. */
const char *cg_fa_req_header(const struct cg_fa_req *req, const char *name);

/*
 * Finds `name` in a query or form string ("a=1&b=2") and writes its
 * percent-decoded value ('+' is a space) into out. Returns the decoded
 * length, or -1 when absent or longer than outsz - 1.
 */
int cg_fa_form_get(const char *form, const char *name, char *out, size_t outsz);

/* Adds "name: value" to the answer. */
void cg_fa_resp_header(struct cg_fa_resp *resp, const char *name,
                       const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef void (*cg_fa_handler_fn)(void *ud, const struct cg_fa_req *req,
                                 struct cg_fa_resp *resp);

struct cg_fa_server;

/*
 * Binds "HOST:PORT" (port 0: a free one). ssl (borrowed, may be NULL) makes
 * every connection TLS. Returns NULL with errbuf set on failure.
 */
struct cg_fa_server *cg_fa_server_new(const char *listen, SSL_CTX *ssl,
                                      cg_fa_handler_fn fn, void *ud,
                                      char *errbuf, size_t errsz);

/* The bound port and host (numeric). */
int cg_fa_server_port(const struct cg_fa_server *srv);
const char *cg_fa_server_host(const struct cg_fa_server *srv);

/* Runs the loop until *stop becomes non-zero. Returns 0 or CG_EIO. */
int cg_fa_server_run(struct cg_fa_server *srv, volatile sig_atomic_t *stop,
                     char *errbuf, size_t errsz);

/* Connections currently open (for the statistics). */
size_t cg_fa_server_connections(const struct cg_fa_server *srv);

void cg_fa_server_free(struct cg_fa_server *srv);

#endif
