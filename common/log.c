#include "log.h"

#include "err.h"
#include "mem.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LOG_LINE_MAX    8192
#define LOG_SECRETS_MAX 4096

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

/* `word` followed by a value: mask the value up to a delimiter. */
static void scrub_after(char *s, const char *word, const char *delims)
{
    size_t wl = strlen(word);
    char *p = s;
    while ((p = strcasestr(p, word)) != NULL) {
        size_t i = (size_t)(p - s) + wl, j = i;
        while (s[j] && !strchr(delims, s[j]))
            j++;
        if (j > i)
            scrub_span(s, i, j);
        p = s + i;
        if (*p)
            p++;
    }
}

void cg_log_scrub(char *s)
{
    pthread_mutex_lock(&log_state.lock);
    for (size_t k = 0; k < log_state.nsecrets; k++) {
        const char *sec = log_state.secrets[k];
        size_t sl = strlen(sec);
        char *p = s;
        while ((p = strstr(p, sec)) != NULL) {
            size_t i = (size_t)(p - s);
            scrub_span(s, i, i + sl);
            p = s + i + 3;
        }
    }
    pthread_mutex_unlock(&log_state.lock);
    scrub_jwts(s);
    scrub_after(s, "Bearer ", " \t\"',;&");
    scrub_after(s, "client_secret=", " \t\"&");
    scrub_after(s, "client_assertion=", " \t\"&");
    scrub_after(s, "\"client_secret\":\"", "\"");
    scrub_after(s, "\"access_token\":\"", "\"");
    scrub_after(s, "password=", " \t\"&");
}

static void json_escape(struct cg_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            cg_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            cg_buf_printf(b, "\\u%04x", c);
        else
            cg_buf_append(b, &s[i], 1);
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

/* Turns `k=v k2="v 2" rest` into JSON fields; text that is not a pair goes
 * into "msg". */
static void kv_to_json(struct cg_buf *b, const char *s)
{
    struct cg_buf msg;
    cg_buf_init(&msg, LOG_LINE_MAX);
    const char *p = s;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *k = p;
        while (*p && (isalnum((unsigned char)*p) || *p == '_' || *p == '.' ||
                      *p == '-'))
            p++;
        if (p > k && *p == '=') {
            size_t kl = (size_t)(p - k);
            const char *v;
            size_t vl;
            bool quoted = false;
            p++;
            if (*p == '"') {
                quoted = true;
                v = ++p;
                while (*p && !(*p == '"' && p[-1] != '\\'))
                    p++;
                vl = (size_t)(p - v);
                if (*p)
                    p++;
            } else {
                v = p;
                while (*p && *p != ' ')
                    p++;
                vl = (size_t)(p - v);
            }
            cg_buf_puts(b, ",\"");
            json_escape(b, k, kl);
            cg_buf_puts(b, "\":");
            if (!quoted && looks_numeric(v, vl)) {
                cg_buf_append(b, v, vl);
            } else {
                cg_buf_puts(b, "\"");
                json_escape(b, v, vl);
                cg_buf_puts(b, "\"");
            }
        } else {
            while (*p && *p != ' ')
                p++;
            if (msg.len)
                cg_buf_puts(&msg, " ");
            cg_buf_append(&msg, k, (size_t)(p - k));
        }
    }
    if (msg.len) {
        cg_buf_puts(b, ",\"msg\":\"");
        json_escape(b, msg.data, msg.len);
        cg_buf_puts(b, "\"");
    }
    cg_buf_free(&msg);
}

void cg_log_emit(enum cg_log_level level, const char *event, const char *fmt,
                 ...)
{
    char msg[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    cg_log_scrub(msg);

    struct timespec ts;
    struct tm tm;
    char when[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t wl = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + wl, sizeof(when) - wl, ".%03ldZ", ts.tv_nsec / 1000000);

    struct cg_buf line;
    cg_buf_init(&line, LOG_LINE_MAX * 2);
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
