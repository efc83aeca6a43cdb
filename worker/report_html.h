/*
 * report_html — contactguard-report --html: the page a security lead, an
 * auditor or a tenant's owner opens.
 *
 * One self-contained file: inline style, inline SVG bars and a few lines of
 * inline script (filter and sort; the page reads the same without it). A
 * Content-Security-Policy allows nothing else: no request leaves the page
 * and only the script whose hash it names runs. Every string that came
 * from Azure or the cache is escaped for HTML where it lands.
 */
#ifndef CG_REPORT_HTML_H
#define CG_REPORT_HTML_H

#include "report_page.h"

#include <stdio.h>

/* Writes the page; 0, or CG_EIO when out reports a write error. */
int cg_report_html_write(const struct cg_report_page *page, FILE *out);

#endif
