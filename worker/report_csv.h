/*
 * report_csv — contactguard-report --csv: one row per (subscription, rule)
 * for a spreadsheet.
 *
 * RFC 4180: CRLF line ends, a header row, fields with a comma, quote, CR
 * or LF quoted with quotes doubled. A field that a spreadsheet would read
 * as a formula (starting with = + - @, tab or CR) gets a leading
 * apostrophe, so a hostile value from Azure stays text.
 *
 * Columns: tenant, subscription, rule, status, reason_code, reason,
 * previous_status, scan_time (ISO 8601 UTC).
 */
#ifndef CG_REPORT_CSV_H
#define CG_REPORT_CSV_H

#include "report_page.h"

#include <stdio.h>

/* Writes the rows; 0, or CG_EIO when out reports a write error. */
int cg_report_csv_write(const struct cg_report_page *page, FILE *out);

#endif
