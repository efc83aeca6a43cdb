/*
 * clock — wall-clock time as the wire formats write it.
 *
 * Findings and jobs carry times as milliseconds since the epoch and as
 * ISO 8601 UTC strings ("2026-11-23T19:41:10.052Z").
 */
#ifndef CG_CLOCK_H
#define CG_CLOCK_H

#include <stddef.h>

/* Milliseconds since the epoch, now. */
long long cg_now_ms(void);

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" */
void cg_time_iso(long long ms, char *out, size_t outsz);

/* Accepts fractions of any length and Z or +hh:mm / -hh:mm; CG_EINVAL
 * otherwise. */
int cg_time_parse_iso(const char *s, long long *ms);

#endif
