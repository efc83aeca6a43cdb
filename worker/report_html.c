#include "report_html.h"

#include "clock.h"
#include "err.h"
#include "mem.h"

#include <openssl/evp.h>
#include <string.h>

/* Longest evidence text shown per finding; the rest is cut at a character
 * boundary, so 100,000 subscriptions still make a page a browser opens. */
#define HTML_EVIDENCE_MAX 1200
#define HTML_BAR_WIDTH    600
/* Up to this many subscriptions every one is listed; past it only those
 * with something to act on (a rule not PASS, or a status that changed):
 * 100,000 rows of PASS make a page no browser opens in reasonable time,
 * and the CSV still has every row. */
#define HTML_LIST_ALL_MAX 10000

/*
 * Filter boxes and sortable headers. Rows are hidden or moved, never
 * built, so the table reads the same without script. Cells sort by their
 * data-v when they have one (numbers, ISO times), else by their text.
 */
static const char script[] =
    "document.querySelectorAll('input[data-filter]').forEach(function(f){"
    "f.addEventListener('input',function(){"
    "var q=f.value.toLowerCase();"
    "document.querySelectorAll('#'+f.dataset.filter+' tbody tr')"
    ".forEach(function(tr){"
    "tr.hidden=q!==''&&tr.textContent.toLowerCase().indexOf(q)<0;});});});\n"
    "document.querySelectorAll('table.sortable th').forEach(function(th){"
    "th.addEventListener('click',function(){"
    "var i=th.cellIndex,tb=th.closest('table').tBodies[0],"
    "num=th.dataset.type==='num',up=th.dataset.dir!=='asc';"
    "th.closest('tr').querySelectorAll('th').forEach(function(h){"
    "delete h.dataset.dir;});"
    "th.dataset.dir=up?'asc':'desc';"
    "var key=function(tr){var c=tr.cells[i];"
    "var v=c.dataset.v!==undefined?c.dataset.v:c.textContent;"
    "return num?Number(v):v;};"
    "Array.from(tb.rows).sort(function(a,b){var x=key(a),y=key(b);"
    "var c=num?x-y:String(x).localeCompare(String(y));"
    "return up?c:-c;}).forEach(function(tr){tb.appendChild(tr);});});});\n";

static const char style[] =
    "body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;"
    "max-width:1200px;padding:0 1em;color:#1d2329}"
    "h1{font-size:1.5em}h2{border-bottom:1px solid #ccd;padding-bottom:.2em}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "th,td{border:1px solid #d4d8dd;padding:.25em .5em;text-align:left;"
    "vertical-align:top}"
    "th{background:#eef1f4}table.sortable th{cursor:pointer}"
    "th[data-dir=asc]::after{content:' \\25B2'}"
    "th[data-dir=desc]::after{content:' \\25BC'}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".PASS{background:#d9f2dd}.FAIL{background:#f8d4d4}"
    ".ERROR{background:#fbe7c2}.SKIPPED{background:#e3e5e8}"
    "svg .PASS{fill:#2e9e48}svg .FAIL{fill:#d2382f}"
    "svg .ERROR{fill:#e39a19}svg .SKIPPED{fill:#8c939b}"
    ".rule{margin:1em 0 1.5em}.refs{color:#4b5560;font-size:.9em}"
    ".f{margin:.2em 0 .6em}.f .why{color:#4b5560}"
    "input[type=search]{padding:.3em;width:20em}"
    "code{overflow-wrap:anywhere}"
    /* 100,000 rows: lay out only what is on screen. */
    "#subs tbody tr{content-visibility:auto;"
    "contain-intrinsic-size:auto 4em}";

/* Text or attribute value: nothing from Azure or the cache can close an
 * attribute or open a tag. */
static void esc(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc(*s, out);
        }
    }
}

static void iso(long long ms, char out[40])
{
    if (ms > 0)
        cg_time_iso(ms, out, 40);
    else
        cg_strlcpy(out, "never", 40);
}

/* Key names read as words: "configured_missing" -> "configured missing". */
static void words_key(struct cg_buf *b, const char *k)
{
    for (; *k; k++)
        cg_buf_append(b, *k == '_' ? " " : k, 1);
}

/* The evidence as a sentence of "key: value" parts, whatever its shape, so
 * a new rule's evidence reads without a renderer of its own. */
static void words(struct cg_buf *b, const json_t *v)
{
    const char *k;
    json_t *x;
    size_t i;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        bool first = true;
        json_object_foreach((json_t *)v, k, x)
        {
            cg_buf_puts(b, first ? "" : "; ");
            first = false;
            words_key(b, k);
            cg_buf_puts(b, ": ");
            words(b, x);
        }
        break;
    }
    case JSON_ARRAY:
        if (json_array_size(v) == 0)
            cg_buf_puts(b, "none");
        json_array_foreach(v, i, x)
        {
            cg_buf_puts(b, i ? ", " : "");
            if (json_is_object(x)) {
                cg_buf_puts(b, "(");
                words(b, x);
                cg_buf_puts(b, ")");
            } else {
                words(b, x);
            }
        }
        break;
    case JSON_STRING:
        cg_buf_puts(b, json_string_value(v));
        break;
    case JSON_INTEGER:
        cg_buf_printf(b, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        cg_buf_printf(b, "%g", json_real_value(v));
        break;
    case JSON_TRUE:
        cg_buf_puts(b, "yes");
        break;
    case JSON_FALSE:
        cg_buf_puts(b, "no");
        break;
    default:
        cg_buf_puts(b, "absent");
    }
}

static void evidence(FILE *out, const json_t *ev)
{
    struct cg_buf b;
    if (!ev || (json_is_object(ev) && json_object_size(ev) == 0))
        return;
    cg_buf_init(&b, 1 << 20);
    words(&b, ev);
    if (b.len > HTML_EVIDENCE_MAX) {
        size_t n = HTML_EVIDENCE_MAX;
        while (n > 0 && ((unsigned char)b.data[n] & 0xC0) == 0x80)
            n--; /* never split a UTF-8 sequence */
        b.data[n] = '\0';
        b.len = n;
        cg_buf_puts(&b, " \xE2\x80\xA6");
    }
    fputs("<br><span class=why>Evidence:</span> <code>", out);
    esc(out, b.data);
    fputs("</code>", out);
    cg_buf_free(&b);
}

static void csp(FILE *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    EVP_Digest(script, strlen(script), md, &mdlen, EVP_sha256(), NULL);
    EVP_EncodeBlock(b64, md, (int)mdlen);
    fprintf(out,
            "<meta http-equiv=\"Content-Security-Policy\" "
            "content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "script-src 'sha256-%s'\">\n",
            (const char *)b64);
}

static void header(const struct cg_report_page *page, FILE *out)
{
    char gen[40], oldest[40], newest[40];
    iso(page->generated_ms, gen);
    iso(page->oldest_ms, oldest);
    iso(page->newest_ms, newest);
    fputs("<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n",
          out);
    csp(out);
    fputs("<meta name=viewport content=\"width=device-width\">\n<title>"
          "contactguard report",
          out);
    if (page->only[0]) {
        fputs(" \xE2\x80\x94 tenant ", out);
        esc(out, page->only);
    }
    fprintf(out, "</title>\n<style>%s</style>\n</head>\n<body>\n", style);
    fputs("<h1>Defender for Cloud security contacts: compliance report", out);
    if (page->only[0]) {
        fputs(" for tenant ", out);
        esc(out, page->only);
    }
    fputs("</h1>\n", out);
    fprintf(out,
            "<p id=summary><span id=n-tenants>%zu</span> tenant%s, "
            "<span id=n-subscriptions>%lld</span> scanned subscription%s. "
            "Generated <time id=generated>%s</time> from the contactguard "
            "cache; data collected between <time id=oldest>%s</time> and "
            "<time id=newest>%s</time>.</p>\n",
            page->ntenants, page->ntenants == 1 ? "" : "s", page->subscriptions,
            page->subscriptions == 1 ? "" : "s", gen, oldest, newest);
}

static void not_auditable(const struct cg_report_page *page, FILE *out)
{
    fprintf(out,
            "<section id=auditable>\n<h2>Not auditable</h2>\n"
            "<p><span id=n-skipped>%lld</span> scanned subscription%s could "
            "not be audited (SKIPPED), and <span id=n-unscanned>%lld</span> "
            "known subscription%s have no cached scan (disabled, deleted, "
            "expired or not scanned yet).</p>\n",
            page->skipped, page->skipped == 1 ? "" : "s", page->unscanned,
            page->unscanned == 1 ? "" : "s");
    if (page->nreasons) {
        fputs("<table id=reasons>\n<thead><tr><th>subscriptions<th>reason "
              "code<th>reason</tr></thead>\n<tbody>\n",
              out);
        for (size_t i = 0; i < page->nreasons; i++) {
            fprintf(out, "<tr><td class=n>%lld<td>", page->reasons[i].n);
            esc(out, page->reasons[i].code);
            fputs("<td>", out);
            esc(out, page->reasons[i].example);
            fputs("</tr>\n", out);
        }
        fputs("</tbody>\n</table>\n", out);
    }
    fputs("</section>\n", out);
}

static void rule_bar(const struct cg_report_page *page, int k, FILE *out)
{
    const struct cg_rule_info *ri = cg_rule_info((enum cg_rule)k);
    long long total = 0, x = 0;
    for (int s = 0; s < CG_STATUS_NONE; s++)
        total += page->counts[k][s];
    fputs("<div class=rule data-rule=\"", out);
    esc(out, ri->id);
    fputs("\">\n<h3>", out);
    esc(out, ri->id);
    fputs(" \xE2\x80\x94 ", out);
    esc(out, ri->title);
    fprintf(out,
            "</h3>\n<svg width=%d height=22 viewBox=\"0 0 %d 22\" "
            "role=img aria-label=\"",
            HTML_BAR_WIDTH, HTML_BAR_WIDTH);
    for (int s = 0; s < CG_STATUS_NONE; s++)
        fprintf(out, "%s%s %lld", s ? ", " : "",
                cg_status_name((enum cg_status)s), page->counts[k][s]);
    fputs("\">", out);
    for (int s = 0; s < CG_STATUS_NONE && total > 0; s++) {
        long long n = page->counts[k][s];
        long long x1 = x + n;
        /* Edges from cumulative counts, so the bars add up to the width. */
        long long a = x * HTML_BAR_WIDTH / total,
                  b = x1 * HTML_BAR_WIDTH / total;
        x = x1;
        if (n == 0)
            continue;
        long long t = cg_report_tenths(n, total);
        fprintf(out,
                "<rect class=%s x=%lld y=0 width=%lld height=22>"
                "<title>%s %lld (%lld.%lld%%)</title></rect>",
                cg_status_name((enum cg_status)s), a, b - a,
                cg_status_name((enum cg_status)s), n, t / 10, t % 10);
    }
    fputs("</svg>\n<table class=counts>\n<tr>", out);
    for (int s = 0; s < CG_STATUS_NONE; s++)
        fprintf(out, "<th class=%s>%s", cg_status_name((enum cg_status)s),
                cg_status_name((enum cg_status)s));
    fputs("<th>total</tr>\n<tr>", out);
    for (int s = 0; s < CG_STATUS_NONE; s++) {
        long long t = cg_report_tenths(page->counts[k][s], total);
        fprintf(out, "<td class=n data-status=%s>%lld (%lld.%lld%%)",
                cg_status_name((enum cg_status)s), page->counts[k][s], t / 10,
                t % 10);
    }
    fprintf(out, "<td class=n data-total>%lld</tr>\n</table>\n", total);
    fputs("<p class=refs>Controls: ", out);
    for (size_t i = 0; i < ri->nrefs; i++) {
        const struct cg_rule_ref *ref = &ri->refs[i];
        fputs(i ? "; " : "", out);
        esc(out, ref->source);
        if (ref->version) {
            fputs(" ", out);
            esc(out, ref->version);
        }
        fputs(" ", out);
        esc(out, ref->control);
    }
    fputs("</p>\n<p class=fix id=\"fix-", out);
    esc(out, ri->id);
    fputs("\"><b>Remediation would:</b> ", out);
    esc(out, ri->remediation);
    fputs("</p>\n</div>\n", out);
}

static void tenants(const struct cg_report_page *page, FILE *out)
{
    fputs("<section>\n<h2>Tenants by failing subscriptions</h2>\n"
          "<p><input type=search id=tenant-filter data-filter=tenants "
          "placeholder=\"Filter tenants\" aria-label=\"Filter tenants\">"
          "</p>\n<table id=tenants class=sortable>\n<thead><tr>"
          "<th data-type=num>rank<th>tenant<th data-type=num>failing"
          "<th data-type=num>scanned<th data-type=num>no scan</tr></thead>\n"
          "<tbody>\n",
          out);
    for (size_t i = 0; i < page->ntenants; i++) {
        const struct cg_report_tenant *rt = &page->tenants[i];
        fprintf(out, "<tr><td class=n>%zu<td><a href=\"#t-", i + 1);
        esc(out, rt->id);
        fputs("\">", out);
        esc(out, rt->id);
        fprintf(out, "</a><td class=n>%lld<td class=n>%lld<td class=n>%lld",
                rt->t.failing, rt->t.scanned, rt->unscanned);
        fputs("</tr>\n", out);
    }
    fputs("</tbody>\n</table>\n</section>\n", out);
}

static void finding(const struct cg_report_sub *s, int k, FILE *out)
{
    const struct cg_rule_info *ri = cg_rule_info((enum cg_rule)k);
    enum cg_status st = s->rec.status[k], pv = s->rec.previous[k];
    const struct cg_finding *f = s->have[k] ? &s->f[k] : NULL;
    char when[40];
    bool changed = pv != CG_STATUS_NONE && pv != st;
    /* A person acts on what is not PASS, and on what just changed. */
    if (st == CG_STATUS_NONE || (st == CG_STATUS_PASS && !changed))
        return;
    fprintf(out, "<div class=f data-rule=\"%s\"><b>", ri->id);
    esc(out, ri->id);
    fprintf(out, "</b> <span class=%s>%s</span>", cg_status_name(st),
            cg_status_name(st));
    if (f) {
        fputs(" \xE2\x80\x94 ", out);
        esc(out, f->reason);
        fputs(" (", out);
        esc(out, f->reason_code);
        fputs(")", out);
        evidence(out, f->evidence);
    }
    /* The rule's fix is the same for every subscription: written once in
     * the rules section, linked here, so a large page stays openable. */
    if (st == CG_STATUS_FAIL)
        fprintf(out,
                "<br><span class=why>Remediation would:</span> <a "
                "href=\"#fix-%s\">apply the %s fix</a>",
                ri->id, ri->id);
    iso(s->rec.scan_ms, when);
    if (changed)
        fprintf(out,
                "<br><span class=why>Previously</span> %s; changed to %s "
                "in the scan of %s",
                cg_status_name(pv), cg_status_name(st), when);
    else if (pv == st)
        fprintf(out,
                "<br><span class=why>Previously</span> %s too: unchanged "
                "by the scan of %s",
                cg_status_name(pv), when);
    else
        fputs("<br><span class=why>First scan of this rule</span>", out);
    fputs("</div>", out);
}

static bool to_act_on(const struct cg_report_sub *s)
{
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        enum cg_status st = s->rec.status[k], pv = s->rec.previous[k];
        if ((st != CG_STATUS_PASS && st != CG_STATUS_NONE) ||
            (pv != CG_STATUS_NONE && pv != st))
            return true;
    }
    return false;
}

static void subscriptions(const struct cg_report_page *page, FILE *out)
{
    bool all = page->nsubs <= HTML_LIST_ALL_MAX;
    size_t listed = 0;
    for (size_t i = 0; i < page->nsubs; i++)
        listed += all || to_act_on(&page->subs[i]);
    fputs("<section>\n<h2>Subscriptions</h2>\n", out);
    if (all)
        fprintf(out,
                "<p>All <span id=n-listed>%zu</span> cached "
                "subscriptions.</p>\n",
                listed);
    else
        fprintf(out,
                "<p><span id=n-listed>%zu</span> of %zu cached "
                "subscriptions have a rule that is not PASS or a status "
                "that changed; the other %zu pass every rule and are "
                "counted above (the CSV lists them all).</p>\n",
                listed, page->nsubs, page->nsubs - listed);
    fputs("<p><input type=search id=sub-filter data-filter=subs "
          "placeholder=\"Filter subscriptions\" "
          "aria-label=\"Filter subscriptions\"></p>\n"
          "<table id=subs class=sortable>\n<thead><tr><th>tenant"
          "<th>subscription<th>scanned",
          out);
    for (int k = 0; k < CG_RULE_COUNT; k++) {
        fputs("<th>", out);
        esc(out, cg_rule_info((enum cg_rule)k)->id);
    }
    fputs("<th>what to act on</tr></thead>\n<tbody>\n", out);
    for (size_t t = 0; t < page->ntenants; t++) {
        const struct cg_report_tenant *rt = &page->tenants[t];
        bool anchored = false;
        for (size_t i = rt->first; i < rt->first + rt->nsubs; i++) {
            const struct cg_report_sub *s = &page->subs[i];
            char when[40];
            if (!all && !to_act_on(s))
                continue;
            iso(s->rec.scan_ms, when);
            fputs("<tr", out);
            if (!anchored) {
                anchored = true;
                fputs(" id=\"t-", out);
                esc(out, rt->id);
                fputs("\"", out);
            }
            fputs("><td>", out);
            esc(out, rt->id);
            fputs("<td>", out);
            esc(out, s->rec.subscription_id);
            fprintf(out, "<td>%s", when);
            for (int k = 0; k < CG_RULE_COUNT; k++) {
                const char *n = cg_status_name(s->rec.status[k]);
                fprintf(out, "<td class=%s>%s", n, n);
            }
            fputs("<td>", out);
            for (int k = 0; k < CG_RULE_COUNT; k++)
                finding(s, k, out);
            fputs("</tr>\n", out);
        }
    }
    fputs("</tbody>\n</table>\n</section>\n", out);
}

int cg_report_html_write(const struct cg_report_page *page, FILE *out)
{
    header(page, out);
    fputs("<section id=rules>\n<h2>Rules</h2>\n", out);
    for (int k = 0; k < CG_RULE_COUNT; k++)
        rule_bar(page, k, out);
    fputs("</section>\n", out);
    not_auditable(page, out);
    if (!page->only[0])
        tenants(page, out);
    subscriptions(page, out);
    fprintf(out, "<script>%s</script>\n</body>\n</html>\n", script);
    return ferror(out) ? CG_EIO : 0;
}
