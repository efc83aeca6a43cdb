/*
 * The producer's pure parts, by tables: event classification and body
 * parsing, de-duplication and debounce, file lines, the job a listed
 * subscription becomes (Lighthouse), and the webhook's answers.
 */
#include "../check.h"

#include "conf.h"
#include "emit.h"
#include "err.h"
#include "event.h"
#include "json.h"
#include "loop.h"
#include "mem.h"
#include "source.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T1 "11111111-1111-4111-8111-111111111111"
#define T2 "22222222-2222-4222-8222-222222222222"
#define T9 "99999999-9999-4999-8999-999999999999"
#define S1 "aaaaaaaa-0000-4000-8000-000000000001"
#define S2 "aaaaaaaa-0000-4000-8000-000000000002"
#define S3 "aaaaaaaa-0000-4000-8000-000000000003"

#define EG(type, op, data_extra)                                               \
    "{\"id\":\"e1\",\"eventType\":\"" type                                     \
    "\",\"subject\":\"/subscriptions/" S1                                      \
    "\",\"eventTime\":\"2026-01-01T00:00:00Z\",\"dataVersion\":\"\","          \
    "\"data\":{\"operationName\":\"" op "\"" data_extra "}}"

#define WRITE   "Microsoft.Resources.ResourceWriteSuccess"
#define CONTACT "Microsoft.Security/securityContacts/write"
#define IDS     ",\"subscriptionId\":\"" S2 "\",\"tenantId\":\"" T1 "\""

static void test_classify(void)
{
    static const struct {
        const char *name;
        const char *json;
        enum cg_event_kind kind;
        const char *sub; /* expected subscription, or NULL */
        const char *code;
    } rows[] = {
        { "alias write is a new subscription",
          EG(WRITE, "Microsoft.Subscription/aliases/write", IDS),
          CG_EVENT_NEW_SUBSCRIPTION, S2, NULL },
        { "contact write", EG(WRITE, CONTACT, IDS), CG_EVENT_CONTACT_CHANGE, S2,
          NULL },
        { "contact delete",
          EG("Microsoft.Resources.ResourceDeleteSuccess",
             "Microsoft.Security/securityContacts/delete", IDS),
          CG_EVENT_CONTACT_CHANGE, S2, NULL },
        { "operation name in another case",
          EG(WRITE, "microsoft.security/SECURITYCONTACTS/write", IDS),
          CG_EVENT_CONTACT_CHANGE, S2, NULL },
        { "a failed write is ignored",
          EG("Microsoft.Resources.ResourceWriteFailure", CONTACT, IDS),
          CG_EVENT_IGNORED, NULL, NULL },
        { "a contact delete announced as write is ignored",
          EG(WRITE, "Microsoft.Security/securityContacts/delete", IDS),
          CG_EVENT_IGNORED, NULL, NULL },
        { "another operation is ignored",
          EG(WRITE, "Microsoft.Compute/virtualMachines/write", IDS),
          CG_EVENT_IGNORED, NULL, NULL },
        { "an alias delete is ignored",
          EG("Microsoft.Resources.ResourceDeleteSuccess",
             "Microsoft.Subscription/aliases/delete", IDS),
          CG_EVENT_IGNORED, NULL, NULL },
        { "subscription from resourceUri",
          EG(WRITE, CONTACT,
             ",\"tenantId\":\"" T1 "\",\"resourceUri\":\"/subscriptions/" S3
             "/providers/Microsoft.Security/securityContacts/default\""),
          CG_EVENT_CONTACT_CHANGE, S3, NULL },
        { "subscription from the subject, upper case",
          "{\"id\":\"e2\",\"eventType\":\"" WRITE "\",\"subject\":\"/"
          "SUBSCRIPTIONS/AAAAAAAA-0000-4000-8000-000000000003/providers/x\","
          "\"data\":{\"operationName\":\"" CONTACT "\",\"tenantId\":\"" T1
          "\"}}",
          CG_EVENT_CONTACT_CHANGE, S3, NULL },
        { "no tenant is malformed",
          EG(WRITE, CONTACT, ",\"subscriptionId\":\"" S2 "\""),
          CG_EVENT_MALFORMED, NULL, NULL },
        { "no subscription anywhere is malformed",
          "{\"id\":\"e3\",\"eventType\":\"" WRITE "\",\"subject\":\"/x\","
          "\"data\":{\"operationName\":\"" CONTACT "\",\"tenantId\":\"" T1
          "\"}}",
          CG_EVENT_MALFORMED, NULL, NULL },
        { "no id is malformed",
          "{\"eventType\":\"" WRITE "\",\"data\":{\"operationName\":\"" CONTACT
          "\"" IDS "}}",
          CG_EVENT_MALFORMED, NULL, NULL },
        { "id of the wrong type is malformed",
          "{\"id\":7,\"eventType\":\"" WRITE "\",\"data\":{}}",
          CG_EVENT_MALFORMED, NULL, NULL },
        { "no event type is malformed", "{\"id\":\"x\",\"data\":{}}",
          CG_EVENT_MALFORMED, NULL, NULL },
        { "data that is a string is ignored, not a crash",
          "{\"id\":\"x\",\"eventType\":\"" WRITE "\",\"data\":\"zzz\"}",
          CG_EVENT_IGNORED, NULL, NULL },
        { "validation event",
          "{\"id\":\"v\",\"eventType\":\"Microsoft.EventGrid."
          "SubscriptionValidationEvent\",\"data\":{\"validationCode\":"
          "\"512d38b6-c7b8-40c8-89fe-f46f9e9622b6\"}}",
          CG_EVENT_VALIDATION, NULL, "512d38b6-c7b8-40c8-89fe-f46f9e9622b6" },
        { "validation without a code is malformed",
          "{\"id\":\"v\",\"eventType\":\"Microsoft.EventGrid."
          "SubscriptionValidationEvent\",\"data\":{}}",
          CG_EVENT_MALFORMED, NULL, NULL },
        { "CloudEvent contact write",
          "{\"specversion\":\"1.0\",\"id\":\"c1\",\"type\":\"" WRITE "\","
          "\"source\":\"/subscriptions/" S1
          "\",\"subject\":\"/subscriptions/" S1
          "/providers/Microsoft.Security/securityContacts/default\","
          "\"time\":\"2026-01-01T00:00:00Z\",\"data\":{\"operationName\":"
          "\"" CONTACT "\",\"tenantId\":\"" T1 "\"}}",
          CG_EVENT_CONTACT_CHANGE, S1, NULL },
        { "CloudEvent subscription from source only",
          "{\"specversion\":\"1.0\",\"id\":\"c2\",\"type\":\"" WRITE "\","
          "\"source\":\"/subscriptions/" S3 "\",\"data\":{\"operationName\":"
          "\"Microsoft.Subscription/aliases/write\",\"tenantId\":\"" T1 "\"}}",
          CG_EVENT_NEW_SUBSCRIPTION, S3, NULL },
        { "CloudEvent of another spec version is malformed",
          "{\"specversion\":\"0.3\",\"id\":\"c3\",\"type\":\"" WRITE "\","
          "\"source\":\"/subscriptions/" S1 "\",\"data\":{}}",
          CG_EVENT_MALFORMED, NULL, NULL },
        { "a number is malformed", "42", CG_EVENT_MALFORMED, NULL, NULL },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_error_t je;
        json_t *j = json_loads(rows[i].json, JSON_DECODE_ANY, &je);
        CHECK(j != NULL, "%s: test JSON does not parse: %s", rows[i].name,
              je.text);
        struct cg_event ev;
        cg_event_classify(j, &ev);
        CHECK(ev.kind == rows[i].kind, "%s: kind %s, want %s (why %s)",
              rows[i].name, cg_event_kind_name(ev.kind),
              cg_event_kind_name(rows[i].kind), ev.why);
        if (rows[i].sub) {
            CHECK(strcmp(ev.subscription_id, rows[i].sub) == 0,
                  "%s: subscription %s", rows[i].name, ev.subscription_id);
            CHECK(strcmp(ev.tenant_id, T1) == 0, "%s: tenant %s", rows[i].name,
                  ev.tenant_id);
        }
        if (rows[i].code)
            CHECK(strcmp(ev.validation_code, rows[i].code) == 0, "%s: code %s",
                  rows[i].name, ev.validation_code);
        json_decref(j);
    }
}

static void count_event(const struct cg_event *ev, void *arg)
{
    (void)ev;
    (*(int *)arg)++;
}

static void test_parse(void)
{
    static const struct {
        const char *name;
        const char *body;
        int rc;
    } rows[] = {
        { "empty array", "[]", 0 },
        { "one Event Grid event", EG(WRITE, CONTACT, IDS), 1 },
        { "Event Grid array",
          "[" EG(WRITE, CONTACT, IDS) "," EG(WRITE, CONTACT, IDS) "]", 2 },
        { "not JSON", "{{{", CG_EPARSE },
        { "a string", "\"hello\"", CG_EPARSE },
        { "array with a number", "[" EG(WRITE, CONTACT, IDS) ",1]", CG_EPARSE },
        { "empty body", "", CG_EPARSE },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int n = 0;
        char err[200];
        int rc = cg_event_parse(rows[i].body, strlen(rows[i].body), count_event,
                                &n, err, sizeof(err));
        CHECK(rc == rows[i].rc, "%s: rc %d, want %d", rows[i].name, rc,
              rows[i].rc);
        CHECK(rc < 0 ? n == 0 : n == rc, "%s: %d callbacks for rc %d",
              rows[i].name, n, rc);
    }
    /* One more than Event Grid's batch cap. */
    struct cg_buf b;
    cg_buf_init(&b, 1 << 20);
    cg_buf_puts(&b, "[");
    for (int i = 0; i <= CG_EVENT_BATCH_MAX; i++)
        cg_buf_puts(&b, i ? ",{}" : "{}");
    cg_buf_puts(&b, "]");
    int n = 0;
    char err[200];
    int rc = cg_event_parse(b.data, b.len, count_event, &n, err, sizeof(err));
    CHECK(rc == CG_ETOOBIG && n == 0, "batch over the cap: rc %d, %d events",
          rc, n);
    cg_buf_free(&b);
}

static void test_seen(void)
{
    static const struct {
        const char *name;
        size_t max;
        const char *ids[6];
        bool dup[6];
    } rows[] = {
        { "repeat is a duplicate",
          10,
          { "a", "b", "a" },
          { false, false, true } },
        { "oldest is forgotten past the bound",
          2,
          { "a", "b", "c", "a" },
          { false, false, false, false } },
        { "recent survives the bound",
          2,
          { "a", "b", "c", "c", "b" },
          { false, false, false, true, true } },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct cg_event_seen *s = cg_event_seen_new(rows[i].max);
        for (size_t k = 0; k < 6 && rows[i].ids[k]; k++) {
            bool d = cg_event_seen_check(s, rows[i].ids[k]);
            CHECK(d == rows[i].dup[k], "%s: id %zu (%s) duplicate=%d",
                  rows[i].name, k, rows[i].ids[k], d);
        }
        cg_event_seen_free(s);
    }
}

struct outs {
    struct cg_debounce_out v[16];
    int64_t at[16];
    size_t n;
    int64_t now;
};

static void collect(const struct cg_debounce_out *o, void *arg)
{
    struct outs *os = arg;
    if (os->n < 16) {
        os->at[os->n] = os->now;
        os->v[os->n++] = *o;
    }
}

static void test_debounce(void)
{
    /* Steps: 'a' adds (sub, kind) at t; 'd' runs due at t; 'f' flushes. */
    struct step {
        char op;
        int64_t t;
        const char *sub;
        enum cg_event_kind kind;
    };
    struct want {
        const char *sub;
        enum cg_job_reason reason;
        unsigned events;
        int64_t at;
    };
    static const struct {
        const char *name;
        int64_t window;
        size_t max;
        struct step steps[8];
        struct want want[4];
        size_t nwant;
    } rows[] = {
        { "a burst is one job when its window closes",
          1000,
          0,
          { { 'a', 0, S1, CG_EVENT_CONTACT_CHANGE },
            { 'a', 500, S1, CG_EVENT_CONTACT_CHANGE },
            { 'a', 900, S1, CG_EVENT_CONTACT_CHANGE },
            { 'd', 999, NULL, 0 },
            { 'd', 1000, NULL, 0 } },
          { { S1, CG_JOB_EVENT, 3, 1000 } },
          1 },
        { "a creation in the window wins the reason",
          1000,
          0,
          { { 'a', 0, S1, CG_EVENT_CONTACT_CHANGE },
            { 'a', 10, S1, CG_EVENT_NEW_SUBSCRIPTION },
            { 'd', 2000, NULL, 0 } },
          { { S1, CG_JOB_NEW_SUBSCRIPTION, 2, 2000 } },
          1 },
        { "subscriptions have their own windows",
          1000,
          0,
          { { 'a', 0, S1, CG_EVENT_CONTACT_CHANGE },
            { 'a', 10, S2, CG_EVENT_CONTACT_CHANGE },
            { 'd', 1005, NULL, 0 },
            { 'd', 1010, NULL, 0 } },
          { { S1, CG_JOB_EVENT, 1, 1005 }, { S2, CG_JOB_EVENT, 1, 1010 } },
          2 },
        { "after the window a new one opens",
          100,
          0,
          { { 'a', 0, S1, CG_EVENT_CONTACT_CHANGE },
            { 'd', 100, NULL, 0 },
            { 'a', 150, S1, CG_EVENT_CONTACT_CHANGE },
            { 'd', 250, NULL, 0 } },
          { { S1, CG_JOB_EVENT, 1, 100 }, { S1, CG_JOB_EVENT, 1, 250 } },
          2 },
        { "a zero window lets every event leave at once",
          0,
          0,
          { { 'a', 0, S1, CG_EVENT_CONTACT_CHANGE },
            { 'a', 0, S1, CG_EVENT_CONTACT_CHANGE } },
          { { S1, CG_JOB_EVENT, 1, 0 }, { S1, CG_JOB_EVENT, 1, 0 } },
          2 },
        { "past the bound the oldest leaves early",
          1000,
          2,
          { { 'a', 0, S1, CG_EVENT_CONTACT_CHANGE },
            { 'a', 1, S2, CG_EVENT_CONTACT_CHANGE },
            { 'a', 2, S3, CG_EVENT_NEW_SUBSCRIPTION },
            { 'f', 3, NULL, 0 } },
          { { S1, CG_JOB_EVENT, 1, 2 },
            { S2, CG_JOB_EVENT, 1, 3 },
            { S3, CG_JOB_NEW_SUBSCRIPTION, 1, 3 } },
          3 },
        { "flush empties every window",
          60000,
          0,
          { { 'a', 0, S1, CG_EVENT_CONTACT_CHANGE }, { 'f', 1, NULL, 0 } },
          { { S1, CG_JOB_EVENT, 1, 1 } },
          1 },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct cg_debounce *d = cg_debounce_new(rows[i].window, rows[i].max);
        struct outs os;
        memset(&os, 0, sizeof(os));
        for (size_t k = 0; k < 8 && rows[i].steps[k].op; k++) {
            const struct step *s = &rows[i].steps[k];
            os.now = s->t;
            if (s->op == 'a') {
                struct cg_event ev;
                memset(&ev, 0, sizeof(ev));
                ev.kind = s->kind;
                cg_strlcpy(ev.subscription_id, s->sub,
                           sizeof(ev.subscription_id));
                cg_strlcpy(ev.tenant_id, T1, sizeof(ev.tenant_id));
                cg_debounce_add(d, &ev, s->t, collect, &os);
            } else {
                cg_debounce_due(d, s->t, s->op == 'f', collect, &os);
            }
        }
        CHECK(os.n == rows[i].nwant, "%s: %zu jobs, want %zu", rows[i].name,
              os.n, rows[i].nwant);
        for (size_t k = 0; k < os.n && k < rows[i].nwant; k++) {
            const struct want *w = &rows[i].want[k];
            CHECK(!strcmp(os.v[k].subscription_id, w->sub) &&
                      os.v[k].reason == w->reason &&
                      os.v[k].events == w->events && os.at[k] == w->at,
                  "%s: job %zu is %s/%s/%u at %lld", rows[i].name, k,
                  os.v[k].subscription_id, cg_job_reason_name(os.v[k].reason),
                  os.v[k].events, (long long)os.at[k]);
        }
        CHECK(cg_debounce_pending(d) == 0 || rows[i].nwant == 0,
              "%s: %zu windows left open", rows[i].name,
              cg_debounce_pending(d));
        cg_debounce_free(d);
    }
    struct cg_debounce *d = cg_debounce_new(10, 0);
    struct cg_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = CG_EVENT_IGNORED;
    struct outs os;
    memset(&os, 0, sizeof(os));
    CHECK(cg_debounce_add(d, &ev, 0, collect, &os) == CG_EINVAL &&
              cg_debounce_pending(d) == 0,
          "an ignored event opens no window");
    cg_debounce_free(d);
}

static void test_lines(void)
{
    static const struct {
        const char *name;
        const char *line;
        int rc;
        const char *tenant, *sub;
        enum cg_job_reason reason;
        const char *job_id; /* kept from a job line */
    } rows[] = {
        { "blank", "", 0, NULL, NULL, 0, NULL },
        { "spaces", "   \t ", 0, NULL, NULL, 0, NULL },
        { "comment", "  # the finance subscriptions", 0, NULL, NULL, 0, NULL },
        { "subscription id", S1, 1, "", S1, CG_JOB_MANUAL, NULL },
        { "pair", T1 "," S1, 1, T1, S1, CG_JOB_MANUAL, NULL },
        { "pair with spaces and CR", "  " T1 " ,  " S1 " \r", 1, T1, S1,
          CG_JOB_MANUAL, NULL },
        { "upper case is lowered", "AAAAAAAA-0000-4000-8000-000000000001", 1,
          "", S1, CG_JOB_MANUAL, NULL },
        { "job line kept as written",
          "{\"schema\":\"contactguard.job/1\",\"job_id\":\"j-42\","
          "\"tenant_id\":\"" T1 "\",\"subscription_id\":\"" S2 "\","
          "\"reason\":\"event\",\"requested_at\":\"2026-01-01T00:00:00Z\"}",
          1, T1, S2, CG_JOB_EVENT, "j-42" },
        { "job line of another schema",
          "{\"schema\":\"contactguard.job/9\",\"tenant_id\":\"" T1 "\"}",
          CG_EPARSE, NULL, NULL, 0, NULL },
        { "job line that is not JSON", "{\"schema\":", CG_EPARSE, NULL, NULL, 0,
          NULL },
        { "pair with a bad subscription", T1 ",nope", CG_EPARSE, NULL, NULL, 0,
          NULL },
        { "three fields", T1 "," S1 "," S2, CG_EPARSE, NULL, NULL, 0, NULL },
        { "empty tenant", "," S1, CG_EPARSE, NULL, NULL, 0, NULL },
        { "id one character short", "aaaaaaaa-0000-4000-8000-00000000000",
          CG_EPARSE, NULL, NULL, 0, NULL },
        { "a word", "subscription", CG_EPARSE, NULL, NULL, 0, NULL },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct cg_job job;
        char err[256] = "";
        memset(&job, 0, sizeof(job));
        int rc = cg_source_parse_line(rows[i].line, &job, err, sizeof(err));
        CHECK(rc == rows[i].rc, "%s: rc %d, want %d (%s)", rows[i].name, rc,
              rows[i].rc, err);
        if (rc < 0)
            CHECK(err[0] != '\0', "%s: no reason given", rows[i].name);
        if (rc != 1 || rows[i].rc != 1)
            continue;
        CHECK(!strcmp(job.tenant_id, rows[i].tenant) &&
                  !strcmp(job.subscription_id, rows[i].sub) &&
                  job.reason == rows[i].reason,
              "%s: got %s,%s reason %s", rows[i].name, job.tenant_id,
              job.subscription_id, cg_job_reason_name(job.reason));
        if (rows[i].job_id)
            CHECK(!strcmp(job.job_id, rows[i].job_id), "%s: job id %s",
                  rows[i].name, job.job_id);
        else
            CHECK(cg_guid_valid(job.job_id), "%s: fresh job id %s",
                  rows[i].name, job.job_id);
    }
}

static struct cg_conf *two_tenants(void)
{
    char path[] = "/tmp/test_producer_tenants_XXXXXX";
    int fd = mkstemp(path);
    const char *text = "{\"id\":\"" T1 "\",\"name\":\"one\"}\n{\"id\":\"" T2
                       "\",\"name\":\"two\"}\n";
    CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text),
          "tenants file written");
    close(fd);
    struct cg_conf *conf = cg_conf_new();
    char err[256];
    int rc = cg_conf_set(conf, "azure.tenants_file", path, err, sizeof(err));
    if (!rc)
        rc = cg_conf_finish(conf, err, sizeof(err));
    CHECK(rc == 0, "tenants configuration: %s", err);
    unlink(path);
    return conf;
}

static void test_listed(void)
{
    static const struct {
        const char *name;
        const char *item;
        int rc;
        const char *tenant, *auth;
        enum cg_sub_state state;
    } rows[] = {
        { "own subscription",
          "{\"subscriptionId\":\"" S1 "\",\"tenantId\":\"" T1
          "\",\"state\":\"Enabled\"}",
          1, T1, "", CG_SUB_ENABLED },
        { "Lighthouse, owner configured: owner's credentials",
          "{\"subscriptionId\":\"" S1 "\",\"tenantId\":\"" T2
          "\",\"state\":\"Enabled\"}",
          1, T2, "", CG_SUB_ENABLED },
        { "Lighthouse, owner unknown: the lister's credentials",
          "{\"subscriptionId\":\"" S1 "\",\"tenantId\":\"" T9
          "\",\"state\":\"Warned\"}",
          1, T9, T1, CG_SUB_WARNED },
        { "past due is audited",
          "{\"subscriptionId\":\"" S1 "\",\"tenantId\":\"" T1
          "\",\"state\":\"PastDue\"}",
          1, T1, "", CG_SUB_PAST_DUE },
        { "disabled is counted, not scanned",
          "{\"subscriptionId\":\"" S1 "\",\"tenantId\":\"" T1
          "\",\"state\":\"Disabled\"}",
          0, NULL, NULL, CG_SUB_DISABLED },
        { "deleted is counted, not scanned",
          "{\"subscriptionId\":\"" S1 "\",\"tenantId\":\"" T1
          "\",\"state\":\"deleted\"}",
          0, NULL, NULL, CG_SUB_DELETED },
        { "no tenantId: the lister's",
          "{\"subscriptionId\":\"" S1 "\",\"state\":\"Enabled\"}", 1, T1, "",
          CG_SUB_ENABLED },
        { "unknown state is audited",
          "{\"subscriptionId\":\"" S1 "\",\"tenantId\":\"" T1
          "\",\"state\":\"Frozen\"}",
          1, T1, "", CG_SUB_UNKNOWN },
        { "no subscriptionId", "{\"tenantId\":\"" T1 "\"}", CG_EPARSE, NULL,
          NULL, 0 },
        { "subscriptionId not a GUID",
          "{\"subscriptionId\":\"x\",\"state\":\"Enabled\"}", CG_EPARSE, NULL,
          NULL, 0 },
    };
    struct cg_conf *conf = two_tenants();
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *item = json_loads(rows[i].item, 0, NULL);
        struct cg_job job;
        enum cg_sub_state st = CG_SUB_UNKNOWN;
        memset(&job, 0, sizeof(job));
        int rc =
            cg_source_listed_job(conf, T1, item, CG_JOB_SCHEDULED, &job, &st);
        CHECK(rc == rows[i].rc, "%s: rc %d, want %d", rows[i].name, rc,
              rows[i].rc);
        if (rc >= 0)
            CHECK(st == rows[i].state, "%s: state %s", rows[i].name,
                  cg_sub_state_name(st));
        if (rc == 1 && rows[i].rc == 1)
            CHECK(!strcmp(job.tenant_id, rows[i].tenant) &&
                      !strcmp(job.auth_tenant_id, rows[i].auth) &&
                      !strcmp(job.subscription_id, S1) &&
                      job.state == rows[i].state &&
                      job.reason == CG_JOB_SCHEDULED,
                  "%s: tenant %s auth '%s'", rows[i].name, job.tenant_id,
                  job.auth_tenant_id);
        json_decref(item);
    }
    cg_conf_free(conf);
}

static void test_webhook(void)
{
    static const char secret[] = "s3cret-for-the-webhook";
    static const char big[] = "{}";
    static const struct {
        const char *name;
        const char *method, *target, *header, *aeg, *origin, *body;
        size_t content_length; /* 0: strlen(body) */
        int status;
        const char *in_body; /* expected in the answer body */
        const char *allowed; /* expected WebHook-Allowed-Origin */
        const char *job_sub; /* a job for this subscription must leave */
    } rows[] = {
        { "no secret", "POST", "/events", NULL, NULL, NULL,
          "[" EG(WRITE, CONTACT, IDS) "]", 0, 401, "unauthorized", NULL, NULL },
        { "wrong secret in the header", "POST", "/events", "s3cret-wrong", NULL,
          NULL, "[" EG(WRITE, CONTACT, IDS) "]", 0, 401, NULL, NULL, NULL },
        { "wrong secret in the query", "POST", "/events?code=nope", NULL, NULL,
          NULL, "[" EG(WRITE, CONTACT, IDS) "]", 0, 401, NULL, NULL, NULL },
        { "secret as a prefix is refused", "POST",
          "/events?code=s3cret-for-the-webhookX", NULL, NULL, NULL, "[]", 0,
          401, NULL, NULL, NULL },
        { "contact write through the query secret", "POST",
          "/events?x=1&code=s3cret-for-the-webhook", NULL, "Notification", NULL,
          "[" EG(WRITE, CONTACT, IDS) "]", 0, 200, "\"events\":1", NULL, S2 },
        { "validation handshake", "POST", "/events", secret,
          "SubscriptionValidation", NULL,
          "[{\"id\":\"v1\",\"eventType\":\"Microsoft.EventGrid."
          "SubscriptionValidationEvent\",\"data\":{\"validationCode\":"
          "\"CODE-123\"}}]",
          0, 200, "{\"validationResponse\":\"CODE-123\"}", NULL, NULL },
        { "validation header without the event", "POST", "/events", secret,
          "SubscriptionValidation", NULL, "[]", 0, 400, NULL, NULL, NULL },
        { "CloudEvents OPTIONS handshake", "OPTIONS", "/events", secret, NULL,
          "eventgrid.azure.net", NULL, 0, 200, NULL, "eventgrid.azure.net",
          NULL },
        { "OPTIONS without an origin", "OPTIONS", "/events", secret, NULL, NULL,
          NULL, 0, 400, NULL, NULL, NULL },
        { "OPTIONS with a header-splitting origin", "OPTIONS", "/events",
          secret, NULL, "a.b\r\nX-Evil: 1", NULL, 0, 400, NULL, NULL, NULL },
        { "GET", "GET", "/events", secret, NULL, NULL, NULL, 0, 405, NULL, NULL,
          NULL },
        { "body over the limit", "POST", "/events", secret, NULL, NULL, big,
          2 * 1024 * 1024, 413, NULL, NULL, NULL },
        { "malformed body", "POST", "/events", secret, NULL, NULL,
          "[{\"id\":", 0, 400, NULL, NULL, NULL },
        { "CloudEvent", "POST", "/events", secret, NULL, NULL,
          "{\"specversion\":\"1.0\",\"id\":\"ce-9\",\"type\":\"" WRITE "\","
          "\"source\":\"/subscriptions/" S3 "\",\"data\":{\"operationName\":"
          "\"Microsoft.Subscription/aliases/write\",\"tenantId\":\"" T1 "\"}}",
          0, 200, "\"events\":1", NULL, S3 },
    };
    struct cg_conf *conf = cg_conf_new();
    char err[256];
    cg_conf_set(conf, "producer.debounce_ms", "0", err, sizeof(err));
    cg_conf_set(conf, "producer.webhook_max_body", "1048576", err, sizeof(err));
    struct cg_loop *loop = cg_loop_new(err, sizeof(err));
    char *out = NULL;
    size_t outlen = 0;
    FILE *jobs = open_memstream(&out, &outlen);
    struct cg_emit *emit =
        cg_emit_new(loop, conf, true, jobs, err, sizeof(err));
    struct cg_summary sum;
    memset(&sum, 0, sizeof(sum));
    volatile int stop = 0;
    struct cg_source src = { .loop = loop,
                             .conf = conf,
                             .emit = emit,
                             .dry_run = true,
                             .stop = &stop,
                             .sum = &sum,
                             .out = stdout };
    struct cg_events_state *st = cg_events_state_new(&src);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        fflush(jobs);
        size_t before = outlen;
        struct cg_webhook_request req = {
            .method = rows[i].method,
            .target = rows[i].target,
            .secret_header = rows[i].header,
            .aeg_event_type = rows[i].aeg,
            .request_origin = rows[i].origin,
            .body = rows[i].body,
            .body_len = rows[i].body ? strlen(rows[i].body) : 0,
        };
        req.content_length =
            rows[i].content_length ? rows[i].content_length : req.body_len;
        if (rows[i].content_length)
            req.body = NULL;
        struct cg_webhook_response res;
        cg_webhook_handle(st, secret, &req, 0, &res);
        CHECK(res.status == rows[i].status, "%s: status %d, want %d",
              rows[i].name, res.status, rows[i].status);
        if (rows[i].in_body)
            CHECK(strstr(res.body, rows[i].in_body) != NULL, "%s: body %s",
                  rows[i].name, res.body);
        CHECK(
            !strcmp(res.allowed_origin, rows[i].allowed ? rows[i].allowed : ""),
            "%s: allowed origin '%s'", rows[i].name, res.allowed_origin);
        CHECK(strstr(res.body, secret) == NULL, "%s: secret in the answer",
              rows[i].name);
        fflush(jobs);
        const char *fresh = out ? out + before : "";
        if (rows[i].job_sub)
            CHECK(strstr(fresh, rows[i].job_sub) != NULL,
                  "%s: no job for %s in '%s'", rows[i].name, rows[i].job_sub,
                  fresh);
        else
            CHECK(outlen == before, "%s: a job left: %s", rows[i].name, fresh);
    }
    CHECK(sum.webhook_unauthorized == 4 && sum.webhook_too_big == 1,
          "counters: %zu unauthorized, %zu too big", sum.webhook_unauthorized,
          sum.webhook_too_big);
    cg_events_state_free(st);
    cg_emit_free(emit, 0);
    fclose(jobs);
    free(out);
    cg_loop_free(loop);
    cg_conf_free(conf);
}

int main(void)
{
    test_classify();
    test_parse();
    test_seen();
    test_debounce();
    test_lines();
    test_listed();
    test_webhook();
    return check_done("test_producer");
}
