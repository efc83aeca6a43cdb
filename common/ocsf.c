#include "ocsf.h"

#include "mem.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows are checked against the schema files by the conformance test
 * (tests/ocsf/): account.json's type_id enum, compliance_finding.json's
 * resource/resources and compliance.json's status_detail(s). */
static const struct cg_ocsf_version versions[] = {
    { "1.1.0", 99, "Azure Subscription", false, false },
    { "1.4.0", 13, "Azure Subscription", true, true },
};

#define NVERSIONS (sizeof(versions) / sizeof(versions[0]))

const struct cg_ocsf_version *cg_ocsf_version_find(const char *name)
{
    for (size_t i = 0; name && i < NVERSIONS; i++)
        if (strcmp(name, versions[i].name) == 0)
            return &versions[i];
    return NULL;
}

const struct cg_ocsf_version *cg_ocsf_version_at(size_t i)
{
    return i < NVERSIONS ? &versions[i] : NULL;
}

void cg_ocsf_init(struct cg_ocsf *w, const struct cg_ocsf_version *v)
{
    memset(w, 0, sizeof(*w));
    w->v = v ? v : cg_ocsf_version_find(CG_OCSF_DEFAULT_VERSION);
    if (RAND_bytes(w->prefix, sizeof(w->prefix)) != 1) {
        fprintf(stderr, "contactguard: no randomness available\n");
        abort();
    }
    w->prefix[6] = (unsigned char)((w->prefix[6] & 0x0f) | 0x40);
    w->prefix[8] = (unsigned char)((w->prefix[8] & 0x3f) | 0x80);
}

void cg_ocsf_event_uid(struct cg_ocsf *w, char out[37])
{
    unsigned char b[16];
    unsigned long long n = w->seq++;
    memcpy(b, w->prefix, sizeof(w->prefix));
    for (int i = 15; i >= 10; i--, n >>= 8)
        b[i] = (unsigned char)(n & 0xff);
    cg_uuid_text(b, out);
}

static const char *const severity_names[] = {
    "Unknown", "Informational", "Low", "Medium", "High", "Critical", "Fatal",
};

const char *cg_ocsf_severity_name(int id)
{
    return id >= 0 && id <= 6 ? severity_names[id] : "Unknown";
}

/*
 * What every event repeats unchanged — metadata.product and
 * metadata.profiles — built once per process and shared by reference, as
 * finding.c shares a rule's standards: written once under pthread_once,
 * read-only afterwards (Jansson increfs atomically).
 */
static json_t *shared_product, *shared_profiles;
static pthread_once_t shared_once = PTHREAD_ONCE_INIT;

static void shared_init(void)
{
    shared_product = json_object();
    json_object_set_new(shared_product, "name", json_string("contactguard"));
    json_object_set_new(shared_product, "vendor_name",
                        json_string("contactguard"));
    json_object_set_new(shared_product, "version", json_string(CG_VERSION));
    shared_profiles = json_array();
    json_array_append_new(shared_profiles, json_string("cloud"));
}

json_t *cg_ocsf_metadata(struct cg_ocsf *w)
{
    pthread_once(&shared_once, shared_init);
    char uid[37];
    cg_ocsf_event_uid(w, uid);
    json_t *m = json_object();
    json_object_set(m, "product", shared_product);
    json_object_set_new(m, "version", json_string(w->v->name));
    json_object_set(m, "profiles", shared_profiles);
    json_object_set_new(m, "uid", json_string(uid));
    return m;
}

json_t *cg_ocsf_cloud(const struct cg_ocsf *w, const char *subscription_id,
                      const char *tenant_id)
{
    json_t *cloud = json_object();
    json_object_set_new(cloud, "provider", json_string("Azure"));
    /* _entity.json: an account or org is named by uid or name; an
     * unknown one (contactguard-eval without a subscription) is left out
     * rather than sent empty. */
    if (subscription_id[0]) {
        json_t *acct = json_object();
        json_object_set_new(acct, "uid", json_string(subscription_id));
        json_object_set_new(acct, "type_id",
                            json_integer(w->v->account_type_id));
        json_object_set_new(acct, "type", json_string(w->v->account_type));
        json_object_set_new(cloud, "account", acct);
    }
    if (tenant_id[0]) {
        json_t *org = json_object();
        json_object_set_new(org, "uid", json_string(tenant_id));
        json_object_set_new(cloud, "org", org);
    }
    return cloud;
}

void cg_ocsf_set_resource(const struct cg_ocsf *w, json_t *event,
                          json_t *resource)
{
    if (w->v->resources_array) {
        json_t *a = json_array();
        json_array_append_new(a, resource);
        json_object_set_new(event, "resources", a);
    } else {
        json_object_set_new(event, "resource", resource);
    }
}

void cg_ocsf_set_status_detail(const struct cg_ocsf *w, json_t *compliance,
                               const char *detail)
{
    if (w->v->status_details) {
        json_t *a = json_array();
        json_array_append_new(a, json_string(detail));
        json_object_set_new(compliance, "status_details", a);
    } else
        json_object_set_new(compliance, "status_detail", json_string(detail));
}

/* metadata.product as text, the same for every event of the process. */
static const char product_text[] =
    "{\"name\":\"contactguard\",\"vendor_name\":\"contactguard\","
    "\"version\":\"" CG_VERSION "\"}";

void cg_ocsf_write_metadata(struct cg_ocsf *w, struct cg_jsonw *jw)
{
    char uid[37];
    cg_ocsf_event_uid(w, uid);
    cg_jsonw_kopen(jw, "metadata", '{');
    cg_jsonw_key(jw, "product");
    cg_jsonw_raw(jw, product_text, sizeof(product_text) - 1);
    cg_jsonw_kstr(jw, "version", w->v->name);
    cg_jsonw_key(jw, "profiles");
    cg_jsonw_raw(jw, "[\"cloud\"]", 9);
    cg_jsonw_kstr(jw, "uid", uid);
    cg_jsonw_close(jw, '}');
}

void cg_ocsf_write_cloud(const struct cg_ocsf *w, struct cg_jsonw *jw,
                         const char *subscription_id, const char *tenant_id)
{
    cg_jsonw_kopen(jw, "cloud", '{');
    cg_jsonw_kstr(jw, "provider", "Azure");
    if (subscription_id[0]) {
        cg_jsonw_kopen(jw, "account", '{');
        cg_jsonw_kstr(jw, "uid", subscription_id);
        cg_jsonw_kint(jw, "type_id", w->v->account_type_id);
        cg_jsonw_kstr(jw, "type", w->v->account_type);
        cg_jsonw_close(jw, '}');
    }
    if (tenant_id[0]) {
        cg_jsonw_kopen(jw, "org", '{');
        cg_jsonw_kstr(jw, "uid", tenant_id);
        cg_jsonw_close(jw, '}');
    }
    cg_jsonw_close(jw, '}');
}

void cg_ocsf_write_resource_begin(const struct cg_ocsf *w, struct cg_jsonw *jw)
{
    if (w->v->resources_array) {
        cg_jsonw_kopen(jw, "resources", '[');
        cg_jsonw_open(jw, '{');
    } else {
        cg_jsonw_kopen(jw, "resource", '{');
    }
}

void cg_ocsf_write_resource_end(const struct cg_ocsf *w, struct cg_jsonw *jw)
{
    cg_jsonw_close(jw, '}');
    if (w->v->resources_array)
        cg_jsonw_close(jw, ']');
}

void cg_ocsf_write_status_detail(const struct cg_ocsf *w, struct cg_jsonw *jw,
                                 const char *detail)
{
    if (w->v->status_details) {
        cg_jsonw_kopen(jw, "status_details", '[');
        cg_jsonw_str(jw, detail);
        cg_jsonw_close(jw, ']');
    } else {
        cg_jsonw_kstr(jw, "status_detail", detail);
    }
}

void cg_ocsf_uid5(const char *kind, const char *subscription_id, char out[37])
{
    char name[128];
    size_t n = (size_t)snprintf(name, sizeof(name), "contactguard:%s:", kind);
    for (const char *p = subscription_id; *p && n + 1 < sizeof(name); p++)
        name[n++] = (char)tolower((unsigned char)*p);
    name[n] = '\0';
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(name, n, md, &mdlen, EVP_sha1(), NULL);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x50); /* version 5 */
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    cg_uuid_text(md, out);
}

static const char *const compliance_names[] = { "Unknown", "Pass", "Warning",
                                                "Fail" };

const char *cg_ocsf_compliance_status_name(int id)
{
    return id >= 0 && id <= 3 ? compliance_names[id] : "Other";
}
