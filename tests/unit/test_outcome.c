/* What becomes of a job for every error code of common/err.h: retried
 * where it happens (the ARM client until the job's deadline, the publish
 * stage until delivered), or final, and then the verdict that
 * cg_fetch_classify gives the job's findings (ERROR or SKIPPED and the
 * reason code). A code added to the table without a row here fails. */
#include "../check.h"
#include "arm.h"
#include "err.h"
#include "fetch.h"

#include <stdbool.h>
#include <string.h>

struct row {
    int err;
    bool retry; /* cg_err_retryable: backed off, never a verdict by itself */
    const char *code; /* ARM's error.code ("" for none) */
    int cause;        /* for CG_EDEADLINE */
    enum cg_status status;
    const char *reason_code;
};

#define SUB "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
#define E   CG_STATUS_ERROR
#define S   CG_STATUS_SKIPPED

/* One row a code at least; codes whose verdict depends on ARM's error.code
 * or the cause have a row per case. */
static const struct row rows[] = {
    { CG_EINVAL, false, "", 0, E, "INVALID_REQUEST" },
    { CG_EPARSE, false, "", 0, E, "BODY_MALFORMED" },
    { CG_ETOOBIG, false, "", 0, E, "BODY_TOO_LARGE" },
    { CG_ECONF, false, "", 0, E, "CREDENTIALS_UNREADABLE" },
    { CG_ENOCRED, false, "", 0, E, "NO_CREDENTIALS" },
    { CG_EAUTH, false, "", 0, E, "AUTHENTICATION_FAILED" },
    { CG_EFORBIDDEN, false, "AuthorizationFailed", 0, E,
      "AUTHORIZATION_FAILED" },
    { CG_ENOTFOUND, false, "SubscriptionNotFound", 0, S,
      "SUBSCRIPTION_NOT_FOUND" },
    { CG_ENOTFOUND, false, "ResourceNotFound", 0, E, "AZURE_NOT_FOUND" },
    { CG_ECONFLICT, false, "MissingSubscriptionRegistration", 0, E,
      "PROVIDER_NOT_REGISTERED" },
    { CG_ECONFLICT, false, "SubscriptionDisabled", 0, S,
      "SUBSCRIPTION_DISABLED" },
    { CG_ECONFLICT, false, "Conflict", 0, E, "AZURE_CONFLICT" },
    { CG_EBADREQ, false, "MissingSubscriptionRegistration", 0, E,
      "PROVIDER_NOT_REGISTERED" },
    { CG_EBADREQ, false, "BadRequest", 0, E, "AZURE_REJECTED" },
    { CG_EIO, true, "", 0, E, "AZURE_UNAVAILABLE" },
    { CG_ETIMEOUT, true, "", 0, E, "AZURE_UNAVAILABLE" },
    { CG_ETHROTTLED, true, "", 0, E, "AZURE_UNAVAILABLE" },
    { CG_EUNAVAIL, true, "", 0, E, "AZURE_UNAVAILABLE" },
    { CG_EKAFKA, true, "", 0, E, "AZURE_UNAVAILABLE" },
    { CG_EREDIS, true, "", 0, E, "AZURE_UNAVAILABLE" },
    { CG_ECANCELLED, true, "", 0, E, "AZURE_UNAVAILABLE" },
    { CG_EBUSY, true, "", 0, E, "AZURE_UNAVAILABLE" },
    { CG_EDEADLINE, false, "", CG_EUNAVAIL, E, "AZURE_UNAVAILABLE" },
    { CG_EDEADLINE, false, "", CG_ETHROTTLED, E, "AZURE_UNAVAILABLE" },
    { CG_EDEADLINE, false, "", CG_ETLS, E, "TLS_VERIFICATION_FAILED" },
    { CG_ETLS, true, "", 0, E, "TLS_VERIFICATION_FAILED" },
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* Every code of the table but CG_OK. */
static const int codes[] = {
#define CODE(name, value, retry, desc) value,
    CG_ERR_TABLE(CODE)
#undef CODE
};

static void every_code_has_a_row(void)
{
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (codes[i] == CG_OK)
            continue;
        bool found = false;
        for (size_t r = 0; r < NROWS; r++)
            found = found || rows[r].err == codes[i];
        CHECK(found, "%s (%d) has no row: say what becomes of a job with it",
              cg_err_name(codes[i]), codes[i]);
    }
}

static void row_outcome(const struct row *w)
{
    const char *name = cg_err_name(w->err);
    CHECK(cg_err_retryable(w->err) == w->retry, "%s %s: retryable is %d", name,
          w->code, cg_err_retryable(w->err));
    struct cg_arm_result r;
    memset(&r, 0, sizeof(r));
    r.err = w->err;
    r.cause = w->cause;
    r.why = "the peer's sentence";
    r.code = w->code;
    r.request_id = "";
    r.body = "";
    r.attempts = 3;
    struct cg_fetch_result res;
    memset(&res, 0, sizeof(res));
    cg_fetch_classify(&r, SUB, &res);
    CHECK(res.err == w->err, "%s %s: err %d", name, w->code, res.err);
    CHECK(res.status == w->status, "%s %s: status %s, want %s", name, w->code,
          cg_status_name(res.status), cg_status_name(w->status));
    CHECK(res.reason_code && strcmp(res.reason_code, w->reason_code) == 0,
          "%s %s: reason_code %s, want %s", name, w->code,
          res.reason_code ? res.reason_code : "(null)", w->reason_code);
    CHECK(strstr(res.reason, "the peer's sentence") != NULL,
          "%s %s: reason \"%s\" lacks Azure's sentence", name, w->code,
          res.reason);
    if (strcmp(w->reason_code, "PROVIDER_NOT_REGISTERED") == 0)
        CHECK(strstr(res.reason, SUB) != NULL,
              "%s %s: reason \"%s\" does not name the subscription", name,
              w->code, res.reason);
}

/* With no sentence from the peer the code's description stands in. */
static void reason_without_why(void)
{
    struct cg_arm_result r;
    memset(&r, 0, sizeof(r));
    r.err = CG_EFORBIDDEN;
    r.why = "";
    r.code = "";
    struct cg_fetch_result res;
    memset(&res, 0, sizeof(res));
    cg_fetch_classify(&r, SUB, &res);
    CHECK(strstr(res.reason, cg_err_desc(CG_EFORBIDDEN)) != NULL,
          "reason \"%s\"", res.reason);
}

int main(void)
{
    every_code_has_a_row();
    for (size_t i = 0; i < NROWS; i++)
        row_outcome(&rows[i]);
    reason_without_why();
    return check_done("test_outcome");
}
