/*
 * ocsf — the OCSF versions findings and remediation events are written in.
 *
 * The publish stage (and contactguard-eval) serialise findings
 * (common/finding.h) and remediation events (common/remediation.h) as OCSF
 * Compliance Findings (class_uid 2003). Each event must conform exactly to
 * the version it declares in metadata.version, and the versions differ in a
 * few places; this module is the one table of those differences, so the
 * serialisers ask "what does this version say" instead of comparing version
 * strings. `output.ocsf_version` picks the row:
 *
 *   1.1.0  the default, what Amazon Security Lake custom sources take.
 *          cloud.account.type_id 99 Other with type "Azure Subscription"
 *          (1.1.0 has no id for it), one `resource`, compliance.status_detail.
 *   1.4.0  cloud.account.type_id 13 "Azure Subscription", `resources`
 *          (an array, since 1.3.0; `resource` is deprecated there),
 *          compliance.status_details (status_detail is deprecated in 1.4.0).
 *
 * The conformance test (tests/ocsf/) checks every event the test suites
 * produce against a table written from each version's schema files.
 *
 * A writer (struct cg_ocsf) holds the chosen version and the state that
 * makes metadata.uid unique per event without per-event hashing: a random
 * 80-bit prefix drawn once per writer, then a 48-bit counter.
 */
#ifndef CG_OCSF_H
#define CG_OCSF_H

#include "jsonw.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CG_OCSF_DEFAULT_VERSION "1.1.0"

struct cg_ocsf_version {
    const char *name;         /* metadata.version: "1.1.0" */
    int account_type_id;      /* cloud.account.type_id of a subscription */
    const char *account_type; /* its caption (source-defined for 99) */
    bool resources_array;     /* "resources" [] rather than one "resource" */
    bool status_details;      /* compliance.status_details [] rather than
                                 the string status_detail */
};

/* The supported version called name ("1.1.0"), or NULL. */
const struct cg_ocsf_version *cg_ocsf_version_find(const char *name);
/* The i-th supported version, oldest first; NULL past the last. */
const struct cg_ocsf_version *cg_ocsf_version_at(size_t i);

/* A writer: one per thread that serialises events (not thread-safe). */
struct cg_ocsf {
    const struct cg_ocsf_version *v;
    unsigned char prefix[10]; /* random, drawn by cg_ocsf_init */
    unsigned long long seq;   /* events written */
};

/* v NULL: the default version. Draws the uid prefix (aborts only when
 * the system has no randomness at all, as cg_uuid4). */
void cg_ocsf_init(struct cg_ocsf *w, const struct cg_ocsf_version *v);

/* A new metadata.uid, UUID-shaped (37 bytes with the NUL): the writer's
 * random prefix with the version-4 and variant bits set, then the 48-bit
 * event counter. Unique per writer for 2^48 events, and across writers
 * and processes with the odds of a 74-bit random collision. */
void cg_ocsf_event_uid(struct cg_ocsf *w, char out[37]);

/* OCSF severity caption of severity_id 0-6 ("Unknown" otherwise). */
const char *cg_ocsf_severity_name(int id);
/* Caption of compliance.status_id 0-3 (compliance.json); "Other" else. */
const char *cg_ocsf_compliance_status_name(int id);

/*
 * The parts every event carries, built the same way for findings and
 * remediation events; each returns a new reference.
 *
 * metadata: product, version (w's), profiles ["cloud"] (the `cloud`
 * attribute comes from the cloud profile, which a consumer may only accept
 * when the event declares it) and a fresh uid (cg_ocsf_event_uid).
 */
json_t *cg_ocsf_metadata(struct cg_ocsf *w);
/* cloud: provider Azure, account (the subscription, typed per version) and
 * org (the tenant); an empty id leaves its object out. */
json_t *cg_ocsf_cloud(const struct cg_ocsf *w, const char *subscription_id,
                      const char *tenant_id);
/* Sets the subject as "resource" or a one-element "resources" per version;
 * takes resource. */
void cg_ocsf_set_resource(const struct cg_ocsf *w, json_t *event,
                          json_t *resource);
/* Sets compliance.status_detail or status_details per version. */
void cg_ocsf_set_status_detail(const struct cg_ocsf *w, json_t *compliance,
                               const char *detail);

/*
 * The same parts written straight into a streaming writer (common/jsonw.h),
 * member by member, as the trees above serialise: what findings use, one
 * per subscription and rule. Each writes its key too.
 */
void cg_ocsf_write_metadata(struct cg_ocsf *w, struct cg_jsonw *jw);
void cg_ocsf_write_cloud(const struct cg_ocsf *w, struct cg_jsonw *jw,
                         const char *subscription_id, const char *tenant_id);
/* Opens "resource": or "resources":[ per version, then the resource's {;
 * cg_ocsf_write_resource_end closes what it opened. */
void cg_ocsf_write_resource_begin(const struct cg_ocsf *w, struct cg_jsonw *jw);
void cg_ocsf_write_resource_end(const struct cg_ocsf *w, struct cg_jsonw *jw);
void cg_ocsf_write_status_detail(const struct cg_ocsf *w, struct cg_jsonw *jw,
                                 const char *detail);

/* A deterministic UUIDv5-shaped uid of "contactguard:KIND:" and the
 * subscription id (lower-cased): finding_info.uid, stable per (subscription,
 * rule) or per subscription for remediation events. */
void cg_ocsf_uid5(const char *kind, const char *subscription_id, char out[37]);

#endif
