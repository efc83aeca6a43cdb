#include "report_csv.h"

#include "clock.h"
#include "err.h"

#include <string.h>

static void field(FILE *out, const char *s, bool last)
{
    if (!s)
        s = "";
    bool formula = strchr("=+-@\t\r", s[0]) != NULL && s[0] != '\0';
    bool quote = formula || strpbrk(s, ",\"\r\n") != NULL;
    if (quote)
        fputc('"', out);
    if (formula)
        fputc('\'', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    if (quote)
        fputc('"', out);
    fputs(last ? "\r\n" : ",", out);
}

int cg_report_csv_write(const struct cg_report_page *page, FILE *out)
{
    fputs("tenant,subscription,rule,status,reason_code,reason,"
          "previous_status,scan_time\r\n",
          out);
    for (size_t t = 0; t < page->ntenants; t++) {
        const struct cg_report_tenant *rt = &page->tenants[t];
        for (size_t i = rt->first; i < rt->first + rt->nsubs; i++) {
            const struct cg_report_sub *s = &page->subs[i];
            char when[40];
            cg_time_iso(s->rec.scan_ms, when, sizeof(when));
            for (int k = 0; k < CG_RULE_COUNT; k++) {
                const struct cg_finding *f = s->have[k] ? &s->f[k] : NULL;
                if (s->rec.status[k] == CG_STATUS_NONE)
                    continue;
                field(out, rt->id, false);
                field(out, s->rec.subscription_id, false);
                field(out, cg_rule_info((enum cg_rule)k)->id, false);
                field(out, cg_status_name(s->rec.status[k]), false);
                field(out, f ? f->reason_code : "", false);
                field(out, f ? f->reason : "", false);
                field(out,
                      s->rec.previous[k] == CG_STATUS_NONE
                          ? ""
                          : cg_status_name(s->rec.previous[k]),
                      false);
                field(out, when, true);
            }
        }
    }
    return ferror(out) ? CG_EIO : 0;
}
