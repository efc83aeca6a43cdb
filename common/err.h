/*
 * err — the one table of error codes.
 *
 * Every fallible function in contactguard returns 0 or a negative CG_E*
 * code and writes one sentence (no newline) into a caller's errbuf. The
 * table below also decides whether an error is retryable, and a retryable
 * error is retried where it happens, never turned into a finding: the ARM
 * client (arm.h) backs off and tries again until the job's deadline, then
 * reports CG_EDEADLINE, which is final; the worker's publish stage
 * (pipeline.c publish_failed) backs off and sends again, the job staying
 * uncommitted. A final error of the Azure read becomes the job's verdict
 * (an ERROR or SKIPPED finding, then commit) in one place, fetch.h
 * cg_fetch_classify; tests/unit/test_outcome.c tables every code's outcome.
 */
#ifndef CG_ERR_H
#define CG_ERR_H

#include <stdbool.h>
#include <stddef.h>

/* X(name, value, retryable, description) */
#define CG_ERR_TABLE(X)                                                        \
    X(CG_OK, 0, false, "success")                                              \
    X(CG_EINVAL, -1, false, "invalid argument or input")                       \
    X(CG_EPARSE, -2, false, "malformed data")                                  \
    X(CG_ETOOBIG, -3, false, "data exceeds its limit")                         \
    X(CG_ECONF, -4, false, "configuration error")                              \
    X(CG_ENOCRED, -5, false, "no credentials for tenant")                      \
    X(CG_EAUTH, -6, false, "authentication rejected")                          \
    X(CG_EFORBIDDEN, -7, false, "authorization failed")                        \
    X(CG_ENOTFOUND, -8, false, "not found")                                    \
    X(CG_ECONFLICT, -9, false, "conflict or not registered")                   \
    X(CG_EBADREQ, -10, false, "request rejected")                              \
    X(CG_EIO, -11, true, "I/O or transport failure")                           \
    X(CG_ETIMEOUT, -12, true, "timed out")                                     \
    X(CG_ETHROTTLED, -13, true, "throttled")                                   \
    X(CG_EUNAVAIL, -14, true, "service unavailable")                           \
    X(CG_EKAFKA, -15, true, "Kafka failure")                                   \
    X(CG_EREDIS, -16, true, "Redis failure")                                   \
    X(CG_ECANCELLED, -17, true, "cancelled")                                   \
    X(CG_EBUSY, -18, true, "resource busy")                                    \
    X(CG_EDEADLINE, -19, false, "deadline exceeded")                           \
    X(CG_ETLS, -20, true, "TLS verification failed")

enum cg_err {
#define CG_ERR_ENUM(name, value, retry, desc) name = value,
    CG_ERR_TABLE(CG_ERR_ENUM)
#undef CG_ERR_ENUM
};

/* "CG_ETHROTTLED" for -13; "CG_E?" for a code outside the table. */
const char *cg_err_name(int err);

/* One-line description of the code. */
const char *cg_err_desc(int err);

/* true when the operation may succeed if tried again later. */
bool cg_err_retryable(int err);

/*
 * Writes a formatted sentence into errbuf (if errbuf is non-NULL and errsz
 * > 0) and returns err, so that error paths read `return cg_err_set(...)`.
 */
int cg_err_set(char *errbuf, size_t errsz, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
