/*
 * contacts — the normalised security contacts of one subscription.
 *
 * The fetch stage hands over raw securityContacts response bodies; this
 * module turns any of them (LIST with "value", the 2020 bare array, a single
 * GET object; 2017-08-01-preview, 2020-01-01-preview, 2023-12-01-preview,
 * given or detected from the shape) into one struct that the pure evaluate
 * stage reads. It is a tolerant reader: a field of the wrong type counts as
 * absent and is recorded in `notes` so findings can name it; enum strings
 * keep their raw spelling for the evidence and are compared
 * case-insensitively.
 */
#ifndef CG_CONTACTS_H
#define CG_CONTACTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CG_CONTACTS_MAX       1000      /* contacts read from one body */
#define CG_CONTACTS_FIELD_MAX 65536     /* longest string field accepted */
#define CG_CONTACTS_NOTES_MAX 64        /* notes kept (the rest counted) */
#define CG_CONTACTS_BODY_MAX  (4 << 20) /* largest body parsed */

enum cg_api_version {
    CG_API_UNKNOWN,
    CG_API_2017, /* 2017-08-01-preview */
    CG_API_2020, /* 2020-01-01-preview */
    CG_API_2023, /* 2023-12-01-preview */
};

/* An On/Off string as read. */
enum cg_onoff {
    CG_ONOFF_ABSENT,
    CG_ONOFF_ON,
    CG_ONOFF_OFF,
    CG_ONOFF_OTHER, /* present, neither On nor Off */
};

/* Severities and risk levels share one ranking: Low < Medium < High <
 * Critical. NONE is "absent", UNKNOWN "present but not a known value". */
enum cg_level {
    CG_LEVEL_NONE,
    CG_LEVEL_LOW,
    CG_LEVEL_MEDIUM,
    CG_LEVEL_HIGH,
    CG_LEVEL_CRITICAL,
    CG_LEVEL_UNKNOWN,
};

/* One entry of 2023's notificationsSources. */
struct cg_source {
    char *type;  /* sourceType as read ("Alert", "AttackPath", ...) */
    char *level; /* minimalSeverity or minimalRiskLevel as read, or NULL */
    enum cg_level rank;
};

struct cg_contact {
    char *name;       /* may be NULL */
    bool enabled;     /* 2023: isEnabled is JSON true; older: always */
    char *is_enabled; /* 2023 evidence: "true", "false", "absent", ... */
    char *emails;     /* 2017 `email`, later `emails`; NULL if absent */
    char *phone;
    enum cg_onoff role_state; /* 2017 alertsToAdmins; notificationsByRole */
    char *role_state_raw;
    char **roles; /* notificationsByRole.roles (strings only) */
    size_t nroles;
    enum cg_onoff alert_state; /* 2017 alertNotifications, 2020 .state */
    char *alert_state_raw;
    enum cg_level alert_severity; /* 2020 minimalSeverity; 2017 On: High */
    char *alert_severity_raw;
    struct cg_source *sources; /* 2023 */
    size_t nsources;
    json_t *raw; /* the contact object as received (owned reference) */
};

struct cg_contacts {
    enum cg_api_version version;
    bool version_detected; /* version came from the shape, not the caller */
    struct cg_contact *v;
    size_t n;
    char **notes; /* "value[0].properties.emails: expected a string" */
    size_t nnotes;
    size_t notes_dropped;
};

void cg_contacts_init(struct cg_contacts *ct);

/*
 * Parses one response body and appends its contacts to ct (call once per
 * page). `version` CG_API_UNKNOWN detects it from the shape; the first page
 * fixes ct->version. Returns 0, or CG_EPARSE when the body is not JSON or
 * its top level has none of the accepted shapes (errbuf says which);
 * CG_ETOOBIG past CG_CONTACTS_BODY_MAX. On error ct is unchanged.
 */
int cg_contacts_parse(struct cg_contacts *ct, const char *body, size_t len,
                      enum cg_api_version version, char *errbuf, size_t errsz);

/* The same for a body already parsed (the fetch stage gets LIST pages
 * merged by the ARM client); root is borrowed. */
int cg_contacts_parse_json(struct cg_contacts *ct, const json_t *root,
                           enum cg_api_version version, char *errbuf,
                           size_t errsz);

void cg_contacts_free(struct cg_contacts *ct);

/* "2017-08-01-preview" ... ; "unknown". */
const char *cg_api_version_name(enum cg_api_version v);
/* CG_API_UNKNOWN for anything else. */
enum cg_api_version cg_api_version_parse(const char *s);

/* "Low", "Medium", "High", "Critical"; NONE/UNKNOWN for anything else. */
enum cg_level cg_level_parse(const char *s);
const char *cg_level_name(enum cg_level l);

/* The normalised contacts as JSON (new reference): stable across API
 * versions and key order, for evidence and for the cache's change hash. */
json_t *cg_contacts_to_json(const struct cg_contacts *ct);

/*
 * The same JSON as cg_json_dump(cg_contacts_to_json(ct)), byte for byte
 * (compact, keys sorted), appended to out without building a tree. 0, or
 * the cg_buf error when out's bound is reached (out is then incomplete).
 */
#define CG_CONTACTS_CANON_MAX ((size_t)64 << 20)
struct cg_buf;
int cg_contacts_canonical(const struct cg_contacts *ct, struct cg_buf *out);

/* Hex SHA-256 of the canonical JSON above (65 bytes with the NUL). */
void cg_contacts_hash(const struct cg_contacts *ct, char out[65]);

#endif
