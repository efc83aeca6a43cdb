/*
 * ocsf_check — the OCSF conformance test's checker.
 *
 * Every finding and remediation event the test suites produce (the unit
 * tests' serialisers, contactguard-eval's output, the worker's results
 * topic, remediation events) is checked against the table of the OCSF
 * version it declares in metadata.version: tests/ocsf/VERSION.json, one row
 * per attribute of the Compliance Finding class and of each object the
 * events carry, written from that version's schema files (each row names
 * them; tests/ocsf/derive_table.py). An event conforms when
 *   - every attribute it carries is a row of its object (no attribute of a
 *     later version, none from a profile it does not declare in
 *     metadata.profiles), none is deprecated,
 *   - every required row is present, and each at_least_one constraint holds,
 *   - each value has the row's type (arrays where the row says so, integers
 *     within int32 for integer_t, timestamps in milliseconds), enum ids
 *     are in the row's enum and their sibling string is the id's caption
 *     (any non-empty string for 99 Other).
 * Across the events one checker sees: metadata.uid is unique, and
 * finding_info.uid is one value per (cloud.account.uid, compliance.control)
 * and different for different pairs.
 */
#ifndef CG_OCSF_CHECK_H
#define CG_OCSF_CHECK_H

#include <stddef.h>

struct cg_ocsf_check;

/* Loads dir/VERSION.json for every version contactguard writes
 * (cg_ocsf_version_at). NULL with errbuf when a table is missing or bad. */
struct cg_ocsf_check *cg_ocsf_check_new(const char *dir, char *errbuf,
                                        size_t errsz);
void cg_ocsf_check_free(struct cg_ocsf_check *c);

/* Checks one event (JSON text). Returns the number of problems; the first
 * few are written to errbuf, "; "-separated. */
int cg_ocsf_check_event(struct cg_ocsf_check *c, const char *text, size_t len,
                        char *errbuf, size_t errsz);

/* Events checked so far that declared version ("1.1.0"). */
size_t cg_ocsf_check_count(const struct cg_ocsf_check *c, const char *version);

/* The directory of the tables in this source tree. */
#define CG_OCSF_CHECK_TABLES CG_SOURCE_DIR "/tests/ocsf"

#endif
