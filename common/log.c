#include "log.h"

#include "err.h"
#include "mem.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LOG_LINE_MAX     8192
#define LOG_SECRETS_MAX  4096
#define LOG_LINE_RESERVE 4 /* to close a value cut short */

static struct {
    enum cg_log_level level;
    enum cg_log_format format;
    char component[32];
    pthread_mutex_t lock;
    char **secrets;
    size_t nsecrets;
} log_state = {
    .level = CG_LOG_INFO,
    .format = CG_LOG_TEXT,
    .component = "contactguard",
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

static const char *const level_names[] = { "debug", "info", "warn", "error",
                                           "off" };

void cg_log_setup(enum cg_log_level level, enum cg_log_format format,
                  const char *component)
{
    log_state.level = level;
    log_state.format = format;
    if (component)
        cg_strlcpy(log_state.component, component, sizeof(log_state.component));
}

int cg_log_level_parse(const char *s, enum cg_log_level *out)
{
    for (int i = 0; i <= CG_LOG_OFF; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum cg_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = CG_LOG_WARN;
        return 0;
    }
    return CG_EINVAL;
}

int cg_log_format_parse(const char *s, enum cg_log_format *out)
{
    if (strcasecmp(s, "text") == 0)
        *out = CG_LOG_TEXT;
    else if (strcasecmp(s, "json") == 0)
        *out = CG_LOG_JSON;
    else
        return CG_EINVAL;
    return 0;
}

void cg_log_secret(const char *value)
{
    if (!value || strlen(value) < 4)
        return;
    pthread_mutex_lock(&log_state.lock);
    for (size_t i = 0; i < log_state.nsecrets; i++) {
        if (strcmp(log_state.secrets[i], value) == 0) {
            pthread_mutex_unlock(&log_state.lock);
            return;
        }
    }
    if (log_state.nsecrets < LOG_SECRETS_MAX) {
        log_state.secrets = cg_realloc(
            log_state.secrets, (log_state.nsecrets + 1) * sizeof(char *));
        log_state.secrets[log_state.nsecrets++] = cg_strdup(value);
    }
    pthread_mutex_unlock(&log_state.lock);
}

bool cg_log_enabled(enum cg_log_level level)
{
    return level >= log_state.level && level != CG_LOG_OFF;
}

/* Replaces s[from, to) by "***" (to - from >= 3 keeps the result shorter). */
static size_t scrub_span(char *s, size_t from, size_t to)
{
    size_t len = strlen(s);
    const char *mask = "***";
    size_t mlen = to - from < 3 ? to - from : 3;
    memcpy(s + from, mask, mlen);
    memmove(s + from + mlen, s + to, len - to + 1);
    return from + mlen;
}

static bool is_b64url(int c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '=';
}

/* A JWT: three base64url segments, the first starting "eyJ" ({"). */
static void scrub_jwts(char *s)
{
    char *p = s;
    while ((p = strstr(p, "eyJ")) != NULL) {
        size_t i = (size_t)(p - s), j = i, dots = 0;
        while (s[j] && (is_b64url((unsigned char)s[j]) || s[j] == '.')) {
            if (s[j] == '.')
                dots++;
            j++;
        }
        if (dots >= 1 && j - i >= 16) {
            scrub_span(s, i, j);
            p = s + i + 3;
        } else {
            p += 3;
        }
    }
}

/* `word` followed by a value: mask the value up to a delimiter. A
 * backslash is always one: in an escaped line it starts an escape that
 * must stay whole. */
static void scrub_after(char *s, const char *word, const char *delims)
{
    size_t wl = strlen(word);
    char *p = s;
    while ((p = strcasestr(p, word)) != NULL) {
        size_t i = (size_t)(p - s) + wl, j = i;
        while (s[j] && s[j] != '\\' && !strchr(delims, s[j]))
            j++;
        if (j > i)
            scrub_span(s, i, j);
        p = s + i;
        if (*p)
            p++;
    }
}

/*
 * PEM blocks (keys, certificates, anything armoured): the body between
 * "-----BEGIN X-----" and "-----END X-----" becomes "***", the labels stay
 * so that a reader knows what was there. A block without its end (a line
 * cut short) is masked up to the end of its quoted value.
 */
static void scrub_pem(char *s)
{
    char *p = s;
    while ((p = strstr(p, "-----BEGIN ")) != NULL) {
        char *hdr_end = strstr(p + 11, "-----");
        if (!hdr_end) {
            scrub_span(s, (size_t)(p - s) + 11, strlen(s));
            return;
        }
        size_t i = (size_t)(hdr_end - s) + 5;
        char *end = strstr(s + i, "-----END ");
        size_t j;
        if (end) {
            j = (size_t)(end - s);
        } else {
            j = i;
            while (s[j] && s[j] != '"') {
                if (s[j] == '\\' && s[j + 1])
                    j++;
                j++;
            }
        }
        if (j > i)
            scrub_span(s, i, j);
        p = s + i;
        if (end)
            p += 3 + 9; /* past "***-----END " */
    }
}

/* escaped: s is a log line whose arguments were escaped (and scrubbed one
 * by one); secrets holding a quote or a backslash were masked then, and
 * matching them here could split an escape. */
static void log_scrub(char *s, bool escaped)
{
    pthread_mutex_lock(&log_state.lock);
    for (size_t k = 0; k < log_state.nsecrets; k++) {
        const char *sec = log_state.secrets[k];
        if (escaped && strpbrk(sec, "\\\""))
            continue;
        size_t sl = strlen(sec);
        char *p = s;
        while ((p = strstr(p, sec)) != NULL) {
            size_t i = (size_t)(p - s);
            scrub_span(s, i, i + sl);
            p = s + i + 3;
        }
    }
    pthread_mutex_unlock(&log_state.lock);
    scrub_pem(s);
    scrub_jwts(s);
    scrub_after(s, "Bearer ", " \t\"',;&");
    scrub_after(s, "client_secret=", " \t\"&");
    scrub_after(s, "client_assertion=", " \t\"&");
    scrub_after(s, "\"client_secret\":\"", "\"");
    scrub_after(s, "\"access_token\":\"", "\"");
    scrub_after(s, "password=", " \t\"&");
}

void cg_log_scrub(char *s)
{
    log_scrub(s, false);
}

/* ---- escaping ----------------------------------------------------------
 *
 * A line is made of our own format string (a literal: -Wformat checks it)
 * and arguments that may come from anywhere: a job, a header, a peer's
 * error text. The format decides the shape of the line, so every argument
 * is escaped where it lands. Inside "..." its quotes, backslashes, control
 * characters (C0, DEL, C1), line and direction overrides and invalid UTF-8
 * are escaped (\" \\ \n \r \t \xHH). As a bare value it is written as it is
 * only when it cannot end the value (no blank, quote, '=', backslash or
 * anything escaped); otherwise it is quoted. No argument can close its value
 * or start a field of its own, in the text format or in the JSON made from
 * it, and no terminal escape reaches a text log.
 */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t k;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        k = 2;
    else if (c >= 0xe0 && c <= 0xef)
        k = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        k = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (n < k || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return k;
}

/* C1 controls, U+2028/2029 (line breaks to some viewers) and the bidi
 * overrides that reorder what a reader sees. */
static bool utf8_unsafe(const unsigned char *s, size_t k)
{
    if (k == 2)
        return s[0] == 0xc2 && s[1] < 0xa0;
    if (k == 3 && s[0] == 0xe2 && s[1] == 0x80)
        return s[2] >= 0xa8 && s[2] <= 0xae;
    if (k == 3 && s[0] == 0xe2 && s[1] == 0x81)
        return s[2] >= 0xa6 && s[2] <= 0xa9;
    return false;
}

struct line {
    char *p; /* LOG_LINE_MAX bytes */
    size_t len;
    bool full; /* something did not fit: nothing more is added */
};

/* Keeps LOG_LINE_RESERVE bytes free for closing a quoted value. */
static void line_put(struct line *l, const char *s, size_t n)
{
    if (l->full || l->len + n + LOG_LINE_RESERVE >= LOG_LINE_MAX) {
        l->full = true;
        return;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
    l->p[l->len] = '\0';
}

static void line_hex(struct line *l, unsigned char c)
{
    char e[5];
    snprintf(e, sizeof(e), "\\x%02x", c);
    line_put(l, e, 4);
}

static void escape_value(struct line *l, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        const char *e = NULL;
        if (c == '"')
            e = "\\\"";
        else if (c == '\\')
            e = "\\\\";
        else if (c == '\n')
            e = "\\n";
        else if (c == '\r')
            e = "\\r";
        else if (c == '\t')
            e = "\\t";
        if (e) {
            line_put(l, e, 2);
            i++;
            continue;
        }
        if (c < 0x20 || c == 0x7f) {
            line_hex(l, c);
            i++;
            continue;
        }
        size_t k = utf8_seq(u + i, n - i);
        if (k == 0) {
            line_hex(l, c);
            i++;
        } else if (utf8_unsafe(u + i, k)) {
            for (size_t j = 0; j < k; j++)
                line_hex(l, u[i + j]);
            i += k;
        } else {
            line_put(l, s + i, k);
            i += k;
        }
    }
}

static bool needs_quotes(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
            return true;
    }
    return false;
}

/* One argument's text, in a quoted value or a bare one. */
static void put_arg(struct line *l, const char *s, size_t n, bool quoted)
{
    if (quoted) {
        escape_value(l, s, n);
    } else if (needs_quotes(s, n)) {
        line_put(l, "\"", 1);
        escape_value(l, s, n);
        line_put(l, "\"", 1);
    } else {
        line_put(l, s, n);
    }
}

enum arg_len {
    LEN_NONE,
    LEN_HH,
    LEN_H,
    LEN_L,
    LEN_LL,
    LEN_Z,
    LEN_J,
    LEN_T,
    LEN_BIG_L
};

/* Formats one numeric conversion; spec is rebuilt from the parsed parts,
 * so it is never taken from the caller's data. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static size_t format_number(char *out, size_t outsz, const char *spec,
                            char conv, enum arg_len len, va_list *ap)
{
    int n = 0;
    switch (conv) {
    case 'd':
    case 'i':
        if (len == LEN_L)
            n = snprintf(out, outsz, spec, va_arg(*ap, long));
        else if (len == LEN_LL)
            n = snprintf(out, outsz, spec, va_arg(*ap, long long));
        else if (len == LEN_Z || len == LEN_T)
            n = snprintf(out, outsz, spec, va_arg(*ap, ptrdiff_t));
        else if (len == LEN_J)
            n = snprintf(out, outsz, spec, va_arg(*ap, intmax_t));
        else
            n = snprintf(out, outsz, spec, va_arg(*ap, int));
        break;
    case 'u':
    case 'o':
    case 'x':
    case 'X':
        if (len == LEN_L)
            n = snprintf(out, outsz, spec, va_arg(*ap, unsigned long));
        else if (len == LEN_LL)
            n = snprintf(out, outsz, spec, va_arg(*ap, unsigned long long));
        else if (len == LEN_Z || len == LEN_T)
            n = snprintf(out, outsz, spec, va_arg(*ap, size_t));
        else if (len == LEN_J)
            n = snprintf(out, outsz, spec, va_arg(*ap, uintmax_t));
        else
            n = snprintf(out, outsz, spec, va_arg(*ap, unsigned));
        break;
    case 'p':
        n = snprintf(out, outsz, spec, va_arg(*ap, void *));
        break;
    default: /* f F e E g G a A */
        if (len == LEN_BIG_L)
            n = snprintf(out, outsz, spec, va_arg(*ap, long double));
        else
            n = snprintf(out, outsz, spec, va_arg(*ap, double));
        break;
    }
    if (n < 0)
        return 0;
    return (size_t)n < outsz ? (size_t)n : outsz - 1;
}
#pragma GCC diagnostic pop

/*
 * printf for log lines: the same conversions (flags, width, precision,
 * length modifiers, %m), but each argument's text is scrubbed of secrets
 * and escaped for the place it lands (see above). The quote state follows
 * the format's own '"' characters.
 */
static void format_line(struct line *l, const char *fmt, va_list *ap,
                        int saved_errno)
{
    bool quoted = false;
    char *arg = cg_malloc(LOG_LINE_MAX);
    const char *p = fmt;
    while (*p) {
        if (*p != '%') {
            if (*p == '"')
                quoted = !quoted;
            line_put(l, p, 1);
            p++;
            continue;
        }
        p++;
        if (*p == '%') {
            line_put(l, "%", 1);
            p++;
            continue;
        }
        char flags[8];
        size_t nf = 0;
        while (*p && strchr("-+ #0", *p)) {
            if (nf < sizeof(flags) - 1)
                flags[nf++] = *p;
            p++;
        }
        flags[nf] = '\0';
        int width = -1, prec = -1;
        if (*p == '*') {
            width = va_arg(*ap, int);
            p++;
        } else {
            for (width = isdigit((unsigned char)*p) ? 0 : -1;
                 isdigit((unsigned char)*p); p++)
                width = width < 10000 ? width * 10 + (*p - '0') : width;
        }
        if (*p == '.') {
            p++;
            if (*p == '*') {
                prec = va_arg(*ap, int);
                p++;
            } else {
                for (prec = 0; isdigit((unsigned char)*p); p++)
                    prec = prec < 10000 ? prec * 10 + (*p - '0') : prec;
            }
        }
        enum arg_len len = LEN_NONE;
        const char *lstart = p;
        if (p[0] == 'h' && p[1] == 'h')
            len = LEN_HH, p += 2;
        else if (p[0] == 'l' && p[1] == 'l')
            len = LEN_LL, p += 2;
        else if (*p == 'h')
            len = LEN_H, p++;
        else if (*p == 'l')
            len = LEN_L, p++;
        else if (*p == 'z')
            len = LEN_Z, p++;
        else if (*p == 'j')
            len = LEN_J, p++;
        else if (*p == 't')
            len = LEN_T, p++;
        else if (*p == 'L')
            len = LEN_BIG_L, p++;
        size_t llen = (size_t)(p - lstart);
        char conv = *p;
        if (!conv)
            break;
        p++;
        const char *s = arg;
        size_t n = 0;
        switch (conv) {
        case 's':
        case 'm': {
            const char *v =
                conv == 'm' ? strerror(saved_errno) : va_arg(*ap, const char *);
            if (!v)
                v = "(null)";
            size_t max = prec >= 0 && (size_t)prec < LOG_LINE_MAX - 1
                             ? (size_t)prec
                             : LOG_LINE_MAX - 1;
            n = strnlen(v, max);
            size_t pad = width > 0 && (size_t)width > n ? (size_t)width - n : 0;
            if (pad > LOG_LINE_MAX - 1 - n)
                pad = LOG_LINE_MAX - 1 - n;
            bool left = strchr(flags, '-') != NULL;
            memset(arg + (left ? n : 0), ' ', pad);
            memcpy(arg + (left ? 0 : pad), v, n);
            n += pad;
            arg[n] = '\0';
            /* Before escaping, so that a secret matches as it is. */
            cg_log_scrub(arg);
            n = strlen(arg);
            break;
        }
        case 'c':
            arg[0] = (char)va_arg(*ap, int);
            n = 1;
            break;
        case 'd':
        case 'i':
        case 'u':
        case 'o':
        case 'x':
        case 'X':
        case 'p':
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G':
        case 'a':
        case 'A': {
            char spec[48];
            char wb[16] = "", pb[16] = "";
            if (width >= 0)
                snprintf(wb, sizeof(wb), "%d", width);
            if (prec >= 0)
                snprintf(pb, sizeof(pb), ".%d", prec);
            snprintf(spec, sizeof(spec), "%%%s%s%s%.*s%c", flags, wb, pb,
                     (int)llen, lstart, conv);
            n = format_number(arg, LOG_LINE_MAX, spec, conv, len, ap);
            break;
        }
        case 'n':
            (void)va_arg(*ap, void *);
            continue;
        default: /* not a conversion: written as it stands */
            s = "%";
            n = 1;
            line_put(l, s, n);
            line_put(l, &conv, 1);
            continue;
        }
        put_arg(l, s, n, quoted);
    }
    /* Cut short inside a quoted value: close it. */
    if (quoted && l->full && l->len + 1 < LOG_LINE_MAX) {
        l->p[l->len++] = '"';
        l->p[l->len] = '\0';
    }
    free(arg);
}

static void json_escape(struct cg_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            cg_buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            cg_buf_printf(b, "\\u%04x", c);
        else
            cg_buf_append(b, &s[i], 1);
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A quoted value of the text format (escaped as above) as JSON string
 * content; \xHH becomes \u00HH so that the JSON stays valid UTF-8. */
static void json_from_text(struct cg_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            json_escape(b, &s[i], 1);
            continue;
        }
        char c = s[++i];
        int h1, h2;
        if (c == '"' || c == '\\')
            cg_buf_printf(b, "\\%c", c);
        else if (c == 'n' || c == 'r' || c == 't')
            cg_buf_printf(b, "\\%c", c);
        else if (c == 'x' && i + 2 < n && (h1 = hexval(s[i + 1])) >= 0 &&
                 (h2 = hexval(s[i + 2])) >= 0) {
            cg_buf_printf(b, "\\u00%x%x", h1, h2);
            i += 2;
        } else {
            cg_buf_puts(b, "\\\\");
            json_escape(b, &c, 1);
        }
    }
}

static bool looks_numeric(const char *s, size_t n)
{
    if (n == 0 || n > 18)
        return false;
    size_t i = s[0] == '-' ? 1 : 0;
    bool digits = false, dot = false;
    for (; i < n; i++) {
        if (isdigit((unsigned char)s[i]))
            digits = true;
        else if (s[i] == '.' && !dot)
            dot = true;
        else
            return false;
    }
    return digits && s[n - 1] != '.' && !(n > 1 && s[0] == '0' && !dot);
}

/* A quoted run starting at p (on the quote): its content and the end. */
static const char *quoted_run(const char *p, const char **v, size_t *vl)
{
    *v = ++p;
    while (*p && *p != '"') {
        if (*p == '\\' && p[1])
            p++;
        p++;
    }
    *vl = (size_t)(p - *v);
    return *p ? p + 1 : p;
}

/* Turns `k=v k2="v 2" rest` into JSON fields; text that is not a pair goes
 * into "msg". */
static void kv_to_json(struct cg_buf *b, const char *s)
{
    struct cg_buf msg;
    cg_buf_init(&msg, LOG_LINE_MAX * 4);
    const char *p = s;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *k = p, *v;
        size_t vl;
        while (*p && (isalnum((unsigned char)*p) || *p == '_' || *p == '.' ||
                      *p == '-'))
            p++;
        if (p > k && *p == '=') {
            size_t kl = (size_t)(p - k);
            p++;
            cg_buf_puts(b, ",\"");
            json_escape(b, k, kl);
            cg_buf_puts(b, "\":");
            if (*p == '"') {
                p = quoted_run(p, &v, &vl);
                cg_buf_puts(b, "\"");
                json_from_text(b, v, vl);
                cg_buf_puts(b, "\"");
                continue;
            }
            v = p;
            while (*p && *p != ' ')
                p++;
            vl = (size_t)(p - v);
            if (looks_numeric(v, vl)) {
                cg_buf_append(b, v, vl);
            } else {
                cg_buf_puts(b, "\"");
                json_escape(b, v, vl);
                cg_buf_puts(b, "\"");
            }
            continue;
        }
        /* Not a pair: a quoted run stays whole (it may hold blanks and
         * '=' that are not a field), anything else runs to a blank. */
        if (msg.len)
            cg_buf_puts(&msg, " ");
        p = k;
        if (*p == '"') {
            p = quoted_run(p, &v, &vl);
            json_from_text(&msg, v, vl);
        } else {
            while (*p && *p != ' ')
                p++;
            json_escape(&msg, k, (size_t)(p - k));
        }
    }
    if (msg.len) {
        cg_buf_puts(b, ",\"msg\":\"");
        cg_buf_append(b, msg.data, msg.len);
        cg_buf_puts(b, "\"");
    }
    cg_buf_free(&msg);
}

void cg_log_emit(enum cg_log_level level, const char *event, const char *fmt,
                 ...)
{
    int saved_errno = errno;
    char msg[LOG_LINE_MAX];
    struct line l = { .p = msg };
    msg[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    format_line(&l, fmt, &ap, saved_errno);
    va_end(ap);
    /* Arguments were scrubbed one by one; this catches what only the
     * whole line shows (a credential split over two arguments). */
    log_scrub(msg, true);

    struct timespec ts;
    struct tm tm;
    char when[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t wl = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + wl, sizeof(when) - wl, ".%03ldZ", ts.tv_nsec / 1000000);

    struct cg_buf line;
    cg_buf_init(&line, LOG_LINE_MAX * 8);
    if (log_state.format == CG_LOG_JSON) {
        cg_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"",
                      when, level_names[level]);
        json_escape(&line, log_state.component, strlen(log_state.component));
        cg_buf_puts(&line, "\",\"event\":\"");
        json_escape(&line, event, strlen(event));
        cg_buf_puts(&line, "\"");
        kv_to_json(&line, msg);
        cg_buf_puts(&line, "}\n");
    } else {
        cg_buf_printf(&line, "ts=%s level=%s component=%s event=%s%s%s\n", when,
                      level_names[level], log_state.component, event,
                      msg[0] ? " " : "", msg);
    }
    if (line.data)
        fwrite(line.data, 1, line.len, stderr);
    cg_buf_free(&line);
}
