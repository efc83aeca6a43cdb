#include "job.h"

#include "clock.h"
#include "conf.h"
#include "err.h"
#include "json.h"
#include "mem.h"

#include <ctype.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const reason_names[] = { "scheduled", "new-subscription",
                                            "event", "manual" };
static const char *const state_names[] = { "Unknown", "Enabled",  "Warned",
                                           "PastDue", "Disabled", "Deleted" };

const char *cg_job_reason_name(enum cg_job_reason r)
{
    return (unsigned)r <= CG_JOB_MANUAL ? reason_names[r] : "manual";
}

int cg_job_reason_parse(const char *s, enum cg_job_reason *out)
{
    for (int i = 0; i <= CG_JOB_MANUAL; i++) {
        if (s && strcmp(s, reason_names[i]) == 0) {
            *out = (enum cg_job_reason)i;
            return 0;
        }
    }
    return CG_EINVAL;
}

const char *cg_sub_state_name(enum cg_sub_state s)
{
    return (unsigned)s <= CG_SUB_DELETED ? state_names[s] : "Unknown";
}

enum cg_sub_state cg_sub_state_parse(const char *s)
{
    for (int i = CG_SUB_ENABLED; i <= CG_SUB_DELETED; i++)
        if (s && strcasecmp(s, state_names[i]) == 0)
            return (enum cg_sub_state)i;
    return CG_SUB_UNKNOWN;
}

bool cg_sub_state_auditable(enum cg_sub_state s)
{
    return s != CG_SUB_DISABLED && s != CG_SUB_DELETED;
}

bool cg_guid_valid(const char *s)
{
    static const int groups[] = { 8, 4, 4, 4, 12 };
    if (!s)
        return false;
    for (int g = 0; g < 5; g++) {
        for (int i = 0; i < groups[g]; i++, s++)
            if (!isxdigit((unsigned char)*s))
                return false;
        if (g < 4 && *s++ != '-')
            return false;
    }
    return *s == '\0';
}

void cg_id_lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

void cg_job_normalise(struct cg_job *job)
{
    cg_id_lower(job->tenant_id);
    cg_id_lower(job->subscription_id);
    cg_id_lower(job->auth_tenant_id);
}

void cg_uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        /* RAND_bytes only fails when the system has no entropy at all. */
        fprintf(stderr, "contactguard: no randomness available\n");
        abort();
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    cg_uuid_text(b, out);
}

void cg_job_init(struct cg_job *job, const char *tenant_id,
                 const char *subscription_id, enum cg_job_reason reason)
{
    memset(job, 0, sizeof(*job));
    char id[37];
    cg_uuid4(id);
    cg_strlcpy(job->job_id, id, sizeof(job->job_id));
    cg_strlcpy(job->tenant_id, tenant_id, sizeof(job->tenant_id));
    cg_strlcpy(job->subscription_id, subscription_id,
               sizeof(job->subscription_id));
    cg_job_normalise(job);
    job->reason = reason;
    job->requested_at_ms = cg_now_ms();
    job->state = CG_SUB_UNKNOWN;
    job->remediation = -1;
}

char *cg_job_encode(const struct cg_job *job)
{
    char when[40];
    cg_time_iso(job->requested_at_ms, when, sizeof(when));
    json_t *o = json_object();
    json_object_set_new(o, "schema", json_string(CG_JOB_SCHEMA));
    json_object_set_new(o, "job_id", json_string(job->job_id));
    json_object_set_new(o, "tenant_id", json_string(job->tenant_id));
    json_object_set_new(o, "subscription_id",
                        json_string(job->subscription_id));
    json_object_set_new(o, "reason",
                        json_string(cg_job_reason_name(job->reason)));
    json_object_set_new(o, "requested_at", json_string(when));
    if (job->state != CG_SUB_UNKNOWN)
        json_object_set_new(o, "subscription_state",
                            json_string(cg_sub_state_name(job->state)));
    if (job->remediation >= 0)
        json_object_set_new(o, "remediation",
                            json_string(cg_remediation_mode_name(
                                (enum cg_remediation_mode)job->remediation)));
    if (job->auth_tenant_id[0])
        json_object_set_new(o, "auth_tenant_id",
                            json_string(job->auth_tenant_id));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* Offset of the first byte that is not well-formed UTF-8 (RFC 3629: no
 * overlongs, no surrogates, nothing past U+10FFFF), or len. */
static size_t utf8_invalid_at(const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t n;
        unsigned int min, cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return i;
        }
        if (n >= len - i) /* truncated sequence */
            return i;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n + 1;
    }
    return len;
}

/* Copies a required GUID field. */
static int guid_field(const json_t *o, const char *key, char *out, size_t outsz,
                      bool required, char *errbuf, size_t errsz)
{
    const char *v = NULL;
    enum cg_json_get g = cg_json_string(o, key, &v);
    if (g == CG_JSON_ABSENT && !required)
        return 0;
    if (g != CG_JSON_OK)
        return cg_err_set(errbuf, errsz, CG_EPARSE, "%s is %s", key,
                          g == CG_JSON_ABSENT ? "missing" : "not a string");
    if (!cg_guid_valid(v))
        return cg_err_set(errbuf, errsz, CG_EPARSE, "%s '%.40s' is not a GUID",
                          key, v);
    cg_strlcpy(out, v, outsz);
    cg_id_lower(out);
    return 0;
}

int cg_job_decode(const void *data, size_t len, struct cg_job *out,
                  char *errbuf, size_t errsz)
{
    if (len > CG_JOB_MAX_LEN)
        return cg_err_set(errbuf, errsz, CG_ETOOBIG,
                          "job of %zu bytes is larger than %d", len,
                          CG_JOB_MAX_LEN);
    /* Said in plain words: the parser would only report "wrong arguments"
     * or a byte it could not decode. librdkafka gives a null value (a
     * tombstone) a NULL payload and an empty one a zero length. */
    if (!data)
        return cg_err_set(errbuf, errsz, CG_EPARSE,
                          "the message has no value (a tombstone); a job is "
                          "a JSON object");
    if (len == 0)
        return cg_err_set(errbuf, errsz, CG_EPARSE,
                          "the message is empty; a job is a JSON object");
    size_t bad = utf8_invalid_at(data, len);
    if (bad < len)
        return cg_err_set(errbuf, errsz, CG_EPARSE,
                          "the message is not UTF-8 text (byte 0x%02x at "
                          "offset %zu); a job is a JSON object",
                          ((const unsigned char *)data)[bad], bad);
    char jerr[160];
    json_t *o = cg_json_parse(data, len, jerr, sizeof(jerr));
    if (!o)
        return cg_err_set(errbuf, errsz, CG_EPARSE, "job is not JSON: %s",
                          jerr);
    int rc = 0;
    struct cg_job job;
    memset(&job, 0, sizeof(job));
    job.remediation = -1;
    const char *schema = cg_json_str(o, "schema");
    const char *v;
    if (!json_is_object(o)) {
        rc = cg_err_set(errbuf, errsz, CG_EPARSE, "job is not an object");
        goto out;
    }
    if (!schema || strcmp(schema, CG_JOB_SCHEMA) != 0) {
        rc = cg_err_set(errbuf, errsz, CG_EPARSE,
                        "schema '%.40s' is not " CG_JOB_SCHEMA,
                        schema ? schema : "(missing)");
        goto out;
    }
    v = cg_json_str(o, "job_id");
    if (!v || !*v || strlen(v) >= sizeof(job.job_id)) {
        rc = cg_err_set(errbuf, errsz, CG_EPARSE,
                        "job_id is missing or longer than %zu",
                        sizeof(job.job_id) - 1);
        goto out;
    }
    cg_strlcpy(job.job_id, v, sizeof(job.job_id));
    if ((rc = guid_field(o, "tenant_id", job.tenant_id, sizeof(job.tenant_id),
                         true, errbuf, errsz)) ||
        (rc = guid_field(o, "subscription_id", job.subscription_id,
                         sizeof(job.subscription_id), true, errbuf, errsz)) ||
        (rc = guid_field(o, "auth_tenant_id", job.auth_tenant_id,
                         sizeof(job.auth_tenant_id), false, errbuf, errsz)))
        goto out;
    if (cg_job_reason_parse(cg_json_str(o, "reason"), &job.reason)) {
        rc = cg_err_set(errbuf, errsz, CG_EPARSE,
                        "reason is not scheduled, new-subscription, event or "
                        "manual");
        goto out;
    }
    v = cg_json_str(o, "requested_at");
    if (!v || cg_time_parse_iso(v, &job.requested_at_ms)) {
        rc = cg_err_set(errbuf, errsz, CG_EPARSE,
                        "requested_at is not an ISO 8601 time");
        goto out;
    }
    if ((v = cg_json_str(o, "subscription_state"))) {
        job.state = cg_sub_state_parse(v);
        if (job.state == CG_SUB_UNKNOWN) {
            rc = cg_err_set(errbuf, errsz, CG_EPARSE,
                            "subscription_state '%.20s' is not a known state",
                            v);
            goto out;
        }
    }
    if ((v = cg_json_str(o, "remediation"))) {
        enum cg_remediation_mode m;
        if (cg_remediation_mode_parse(v, &m)) {
            rc = cg_err_set(errbuf, errsz, CG_EPARSE,
                            "remediation '%.20s' is not off, dry-run or apply",
                            v);
            goto out;
        }
        job.remediation = (int)m;
    }
    *out = job;
out:
    json_decref(o);
    return rc;
}
