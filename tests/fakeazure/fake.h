/*
 * fake — the fake Azure as one object: the population (store), Entra ID,
 * Resource Manager, the faults, the event announcer, the statistics, and
 * the dispatcher that routes each request to one of them.
 *
 * Routing: /_fake/... is the control API (loopback peers only); Entra's
 * token and discovery paths next; everything else is Resource Manager.
 * Every request is counted by route and status.
 */
#ifndef CG_FA_FAKE_H
#define CG_FA_FAKE_H

#include "entra.h"
#include "events.h"
#include "faults.h"
#include "map.h"
#include "server.h"
#include "store.h"

#include <jansson.h>

#define CG_FA_PUTS_MAX 10000

struct cg_fa_stats {
    struct cg_fa_map *requests; /* "route status" -> uint64_t */
    json_t *puts;               /* every PUT with its body */
    uint64_t puts_dropped;
    uint64_t total;
};

struct cg_fa {
    struct cg_fa_store *store;
    struct cg_fa_entra *entra;
    struct cg_fa_faults *faults;
    struct cg_fa_events *events;
    struct cg_fa_stats stats;
    struct cg_fa_faults_conf start_faults; /* restored by reset */
    unsigned start_lifetime;
    size_t start_page_size, start_contacts_page_size;
    unsigned token_lifetime;
    size_t page_size;
    size_t contacts_page_size; /* 0: securityContacts LIST is one page */
    char base_url[128];
    uint64_t request_id;
};

/* Takes ownership of the parts. */
void cg_fa_init(struct cg_fa *fa, struct cg_fa_store *store,
                struct cg_fa_entra *entra, struct cg_fa_faults *faults,
                struct cg_fa_events *events, size_t page_size,
                unsigned token_lifetime);
void cg_fa_destroy(struct cg_fa *fa);

/* Sets the base URL announced in discovery documents and nextLinks. */
void cg_fa_set_base(struct cg_fa *fa, const char *base_url);

/* The server's handler (ud is the struct cg_fa). */
void cg_fa_handle(void *ud, const struct cg_fa_req *req,
                  struct cg_fa_resp *resp);

/* Statistics. */
void cg_fa_stats_put(struct cg_fa *fa, const char *sub, const char *version,
                     const char *name, const char *body, size_t len,
                     int status);
json_t *cg_fa_stats_json(struct cg_fa *fa);
void cg_fa_reset(struct cg_fa *fa);

/* Resource Manager routes (arm.c); returns the route name. */
const char *cg_fa_arm_handle(struct cg_fa *fa, const struct cg_fa_req *req,
                             struct cg_fa_resp *resp);

/* Control API routes (control.c); returns the route name. */
const char *cg_fa_control_handle(struct cg_fa *fa, const struct cg_fa_req *req,
                                 struct cg_fa_resp *resp);

/* Writes {"error":{"code","message"}} with status. */
void cg_fa_arm_error(struct cg_fa_resp *resp, int status, const char *code,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
