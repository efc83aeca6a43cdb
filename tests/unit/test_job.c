/* The job wire format: round trip, and every way a message can be bad. */
#include "../check.h"
#include "clock.h"
#include "conf.h"
#include "err.h"
#include "job.h"

#include <stdlib.h>
#include <string.h>

#define T "72f988bf-86f1-41af-91ab-2d7cd011db47"
#define S "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
#define HEAD                                                                   \
    "{\"schema\":\"contactguard.job/1\",\"job_id\":\"j1\",\"tenant_id\":\"" T  \
    "\",\"subscription_id\":\"" S "\","

struct bad_row {
    const char *name;
    const char *msg;
    const char *want;
};

static const struct bad_row bad[] = {
    { "not JSON", "{nope", "not JSON" },
    { "array", "[1,2]", "not an object" },
    { "no schema", "{\"job_id\":\"x\"}", "schema" },
    { "other schema", "{\"schema\":\"contactguard.job/2\"}", "schema" },
    { "tenant not a GUID",
      "{\"schema\":\"contactguard.job/1\",\"job_id\":\"j\",\"tenant_id\":"
      "\"contoso\",\"subscription_id\":\"" S "\",\"reason\":\"manual\","
      "\"requested_at\":\"2026-01-01T00:00:00Z\"}",
      "tenant_id 'contoso' is not a GUID" },
    { "subscription missing",
      "{\"schema\":\"contactguard.job/1\",\"job_id\":\"j\",\"tenant_id\":\"" T
      "\",\"reason\":\"manual\",\"requested_at\":\"2026-01-01T00:00:00Z\"}",
      "subscription_id is missing" },
    { "subscription a number", HEAD "\"subscription_id\":5}", "not a string" },
    { "bad reason",
      HEAD "\"reason\":\"whim\",\"requested_at\":\"2026-01-01T00:00:00Z\"}",
      "reason" },
    { "bad time", HEAD "\"reason\":\"manual\",\"requested_at\":\"yesterday\"}",
      "requested_at" },
    { "bad state",
      HEAD "\"reason\":\"manual\",\"requested_at\":\"2026-01-01T00:00:00Z\","
           "\"subscription_state\":\"Sleeping\"}",
      "subscription_state" },
    { "bad remediation",
      HEAD "\"reason\":\"manual\",\"requested_at\":\"2026-01-01T00:00:00Z\","
           "\"remediation\":\"yolo\"}",
      "remediation" },
    { "bad auth tenant",
      HEAD "\"reason\":\"manual\",\"requested_at\":\"2026-01-01T00:00:00Z\","
           "\"auth_tenant_id\":\"x\"}",
      "auth_tenant_id" },
};

int main(void)
{
    struct cg_job job, back;
    char err[256];
    char u[37], u2[37];
    cg_uuid4(u);
    cg_uuid4(u2);
    CHECK(strlen(u) == 36 && u[8] == '-' && u[13] == '-' && u[18] == '-' &&
              u[23] == '-' && u[14] == '4' && strchr("89ab", u[19]) &&
              strcmp(u, u2) != 0,
          "uuid4 %s %s", u, u2);
    cg_job_init(&job, T, S, CG_JOB_NEW_SUBSCRIPTION);
    job.state = CG_SUB_PAST_DUE;
    job.remediation = CG_REMEDIATION_DRY_RUN;
    strcpy(job.auth_tenant_id, "11111111-2222-3333-4444-555555555555");
    char *s = cg_job_encode(&job);
    CHECK(cg_job_decode(s, strlen(s), &back, err, sizeof(err)) == 0,
          "decode: %s", err);
    CHECK(!strcmp(back.job_id, job.job_id) && cg_guid_valid(back.job_id),
          "job id round trip");
    CHECK(!strcmp(back.tenant_id, T) && !strcmp(back.subscription_id, S),
          "ids round trip");
    CHECK(back.reason == CG_JOB_NEW_SUBSCRIPTION, "reason round trip");
    CHECK(back.requested_at_ms == job.requested_at_ms, "time round trip");
    CHECK(back.state == CG_SUB_PAST_DUE, "state round trip");
    CHECK(back.remediation == CG_REMEDIATION_DRY_RUN, "remediation");
    CHECK(!strcmp(back.auth_tenant_id, job.auth_tenant_id), "auth tenant");
    free(s);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        memset(&back, 0x5a, sizeof(back));
        int rc = cg_job_decode(bad[i].msg, strlen(bad[i].msg), &back, err,
                               sizeof(err));
        CHECK(rc == CG_EPARSE, "%s: want CG_EPARSE, got %d", bad[i].name, rc);
        CHECK(strstr(err, bad[i].want) != NULL, "%s: '%s' lacks '%s'",
              bad[i].name, err, bad[i].want);
        CHECK(((unsigned char *)&back)[0] == 0x5a, "%s: job written on error",
              bad[i].name);
    }
    /* Messages that are not text say so in plain words (dead-letter
     * reasons), a NULL payload being librdkafka's tombstone. */
    static const struct {
        const char *name;
        const char *msg;
        size_t len;
        const char *want;
    } plain[] = {
        { "tombstone", NULL, 0, "no value (a tombstone)" },
        { "empty", "", 0, "the message is empty" },
        { "latin-1", "{\"a\":\"caf\xe9\"}", 11,
          "not UTF-8 text (byte 0xe9 at "
          "offset 9)" },
        { "truncated sequence", "{\"a\":\"\xe2\x82", 8, "byte 0xe2" },
        { "overlong", "\xc0\xaf", 2, "byte 0xc0 at offset 0" },
        { "surrogate", "\xed\xa0\x80", 3, "byte 0xed" },
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        err[0] = '\0';
        int rc =
            cg_job_decode(plain[i].msg, plain[i].len, &back, err, sizeof(err));
        CHECK(rc == CG_EPARSE && strstr(err, plain[i].want),
              "%s: rc %d, '%s' lacks '%s'", plain[i].name, rc, err,
              plain[i].want);
    }
    /* UTF-8 that is fine reaches the parser. */
    const char *euro = "{\"a\":\"\xe2\x82\xac \xf0\x9f\x98\x80\"}";
    cg_job_decode(euro, strlen(euro), &back, err, sizeof(err));
    CHECK(!strstr(err, "UTF-8"), "valid UTF-8 rejected: %s", err);

    /* Upper-case ids, as some tools write them, are read lower case. */
    static const char up[] =
        "{\"schema\":\"contactguard.job/1\",\"job_id\":\"j1\","
        "\"tenant_id\":\"72F988BF-86F1-41AF-91AB-2D7CD011DB47\","
        "\"subscription_id\":\"0B1F6471-1BF0-4DDA-AEC3-CB9272F09590\","
        "\"auth_tenant_id\":\"11111111-2222-3333-4444-55555555555A\","
        "\"reason\":\"manual\",\"requested_at\":\"2026-11-23T19:41:10Z\"}";
    CHECK(cg_job_decode(up, strlen(up), &back, err, sizeof(err)) == 0,
          "upper-case job: %s", err);
    CHECK(!strcmp(back.tenant_id, T) && !strcmp(back.subscription_id, S) &&
              !strcmp(back.auth_tenant_id,
                      "11111111-2222-3333-4444-55555555555a"),
          "ids lower-cased: %s %s %s", back.tenant_id, back.subscription_id,
          back.auth_tenant_id);
    struct cg_job init;
    cg_job_init(&init, "72F988BF-86F1-41AF-91AB-2D7CD011DB47",
                "0B1F6471-1BF0-4DDA-AEC3-CB9272F09590", CG_JOB_MANUAL);
    CHECK(!strcmp(init.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47") &&
              !strcmp(init.subscription_id,
                      "0b1f6471-1bf0-4dda-aec3-cb9272f09590"),
          "cg_job_init lower-cases");

    char *big = calloc(1, CG_JOB_MAX_LEN + 2);
    memset(big, ' ', CG_JOB_MAX_LEN + 1);
    CHECK(cg_job_decode(big, CG_JOB_MAX_LEN + 1, &back, err, sizeof(err)) ==
              CG_ETOOBIG,
          "over 64 KiB is CG_ETOOBIG");
    free(big);

    CHECK(cg_guid_valid(S) && cg_guid_valid("0B1F6471-1BF0-4DDA-AEC3-"
                                            "CB9272F09590"),
          "GUIDs");
    CHECK(!cg_guid_valid("0b1f6471-1bf0-4dda-aec3-cb9272f0959") &&
              !cg_guid_valid("0b1f6471-1bf0-4dda-aec3-cb9272f095900") &&
              !cg_guid_valid("0b1f6471x1bf0-4dda-aec3-cb9272f09590") &&
              !cg_guid_valid("") && !cg_guid_valid(NULL),
          "not GUIDs");
    CHECK(cg_sub_state_auditable(CG_SUB_WARNED) &&
              cg_sub_state_auditable(CG_SUB_PAST_DUE) &&
              !cg_sub_state_auditable(CG_SUB_DISABLED) &&
              !cg_sub_state_auditable(CG_SUB_DELETED),
          "auditable states");
    long long ms;
    CHECK(cg_time_parse_iso("2026-11-23T19:41:10.052Z", &ms) == 0 &&
              ms == 1795462870052LL,
          "iso parse %lld", ms);
    CHECK(cg_time_parse_iso("2026-11-23T20:41:10.0521234+01:00", &ms) == 0 &&
              ms == 1795462870052LL,
          "iso parse with offset and long fraction %lld", ms);
    char iso[40];
    cg_time_iso(1795462870052LL, iso, sizeof(iso));
    CHECK(!strcmp(iso, "2026-11-23T19:41:10.052Z"), "iso format %s", iso);
    return check_done("job");
}
