/*
 * log: hostile values cannot forge a record. Each row is logged as a bare
 * value and as a quoted one, in the text and the JSON format; every line
 * must read back as exactly the fields the format string names, with the
 * level and event it was written with, and carry no raw control character.
 */
#include "../check.h"
#include "log.h"
#include "mem.h"

#include <ctype.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct hostile_row {
    const char *name;
    const char *value;
    bool round_trip; /* JSON gives the value back byte for byte */
};

static const struct hostile_row hostile[] = {
    { "quote breaks out (the decode-error forgery)",
      "x\" level=error event=FORGED z=\"", true },
    { "escaped quote", "a\\\" level=error event=FORGED", true },
    { "trailing backslash", "abc\\", true },
    { "newline starts a record",
      "x\nts=2026-01-01T00:00:00.000Z level=error event=FORGED", true },
    { "carriage return", "x\rlevel=error event=FORGED", true },
    { "terminal escape", "\x1b[31mred\x1b[0m\x1b]0;title\x07", false },
    { "C1 CSI in UTF-8",
      "\xc2\x9b"
      "31mred",
      false },
    { "raw C1 byte",
      "\x9b"
      "31m",
      false },
    { "invalid UTF-8", "\xff\xfe level=error", false },
    { "bidi override",
      "abc\xe2\x80\xae"
      "level=error",
      false },
    { "line separator", "abc\xe2\x80\xa8level=error", false },
    { "a pair", "level=error", true },
    { "only an equals sign", "=", true },
    { "empty", "", true },
    { "blank", " ", true },
    { "JSON breaks out", "\",\"level\":\"error\",\"x\":\"", true },
    { "JSON in braces", "{\"level\":\"error\"}", true },
    { "printf directives", "%s%n%x%%", true },
    { "tab and NUL-free controls", "a\tb\x01\x7f", true },
    { "accented text stays", "r\xc3\xa9sum\xc3\xa9 \xe2\x82\xac", true },
    { "Bearer then a quote", "Bearer x\" level=error event=FORGED z=\"",
      false },
    { "PEM key",
      "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
      "-----END PRIVATE KEY-----\" level=error",
      false },
};

static int saved_stderr = -1;

/* Points stderr at fd while the logger writes, back for the checks. */
static void capture(int fd)
{
    fflush(stderr);
    dup2(fd, 2);
}

static void release(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
}

/* Reads what the logger wrote to fd since it was truncated. */
static char *slurp(int fd)
{
    struct cg_buf b;
    char chunk[4096];
    ssize_t n;
    cg_buf_init(&b, 1 << 22);
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        cg_buf_append(&b, chunk, (size_t)n);
    if (ftruncate(fd, 0) != 0)
        b.len = 0;
    lseek(fd, 0, SEEK_SET);
    return b.data ? cg_buf_take(&b) : cg_strdup("");
}

/* Logs one line with the value twice (bare and quoted); returns it. */
static char *log_line(int fd, enum cg_log_format fmt, const char *v)
{
    cg_log_setup(CG_LOG_INFO, fmt, "test");
    capture(fd);
    cg_warn("job.undecodable", "schema=%s reason=\"bad: %s\" n=%d", v, v, 7);
    release();
    return slurp(fd);
}

static bool raw_controls(const char *line)
{
    size_t n = strlen(line);
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f || c == 0x9b)
            return true;
        if (c == 0xc2 && (unsigned char)line[i + 1] < 0xa0)
            return true;
        if (c == 0xe2 && (unsigned char)line[i + 1] == 0x80 && i + 2 < n &&
            (unsigned char)line[i + 2] >= 0xa8 &&
            (unsigned char)line[i + 2] <= 0xae)
            return true;
    }
    return n == 0 || line[n - 1] != '\n';
}

/* The keys of a text line, in order, blank-separated: "ts level ...". A
 * value is bare up to a blank, or quoted with backslash escapes. */
static void text_keys(const char *line, char *keys, size_t keysz, char *level,
                      char *event, size_t valsz)
{
    const char *p = line;
    keys[0] = level[0] = event[0] = '\0';
    while (*p && *p != '\n') {
        while (*p == ' ')
            p++;
        const char *k = p;
        while (*p && *p != '=' && *p != ' ' && *p != '\n')
            p++;
        size_t kl = (size_t)(p - k);
        if (*p != '=') {
            /* not a pair: a token of free text */
            strncat(keys, "?", keysz - strlen(keys) - 1);
            continue;
        }
        p++;
        const char *v = p;
        if (*p == '"') {
            p++;
            while (*p && *p != '"' && *p != '\n') {
                if (*p == '\\' && p[1])
                    p++;
                p++;
            }
            if (*p == '"')
                p++;
        } else {
            while (*p && *p != ' ' && *p != '\n')
                p++;
        }
        size_t vl = (size_t)(p - v);
        if (keys[0])
            strncat(keys, " ", keysz - strlen(keys) - 1);
        if (kl < keysz - strlen(keys))
            strncat(keys, k, kl);
        char *dst = kl == 5 && !strncmp(k, "level", 5)   ? level
                    : kl == 5 && !strncmp(k, "event", 5) ? event
                                                         : NULL;
        if (dst && !dst[0]) {
            size_t n = vl < valsz - 1 ? vl : valsz - 1;
            memcpy(dst, v, n);
            dst[n] = '\0';
        }
    }
}

static void check_row(int fd, const struct hostile_row *r)
{
    char *t = log_line(fd, CG_LOG_TEXT, r->value);
    char keys[512], level[64], event[64];
    text_keys(t, keys, sizeof(keys), level, event, sizeof(level));
    CHECK(!strcmp(keys, "ts level component event schema reason n"),
          "%s: text fields are '%s' in %s", r->name, keys, t);
    CHECK(!strcmp(level, "warn") && !strcmp(event, "job.undecodable"),
          "%s: text level=%s event=%s", r->name, level, event);
    CHECK(!raw_controls(t), "%s: raw control character in text: %s", r->name,
          t);
    CHECK(strstr(t, "FORGED") == NULL || strstr(t, "event=FORGED") == NULL ||
              strstr(t, "event=job.undecodable") < strstr(t, "event=FORGED"),
          "%s: forged event", r->name);
    free(t);

    char *j = log_line(fd, CG_LOG_JSON, r->value);
    json_error_t jerr;
    json_t *o = json_loads(j, JSON_REJECT_DUPLICATES, &jerr);
    CHECK(o != NULL, "%s: JSON line unreadable (%s): %s", r->name, jerr.text,
          j);
    if (o) {
        CHECK(json_object_size(o) == 7, "%s: %zu JSON fields: %s", r->name,
              json_object_size(o), j);
        CHECK(!strcmp(json_string_value(json_object_get(o, "level")) ?: "",
                      "warn") &&
                  !strcmp(json_string_value(json_object_get(o, "event")) ?: "",
                          "job.undecodable"),
              "%s: JSON level or event forged: %s", r->name, j);
        json_t *n = json_object_get(o, "n");
        CHECK(json_is_integer(n) && json_integer_value(n) == 7,
              "%s: JSON n lost: %s", r->name, j);
        const char *schema = json_string_value(json_object_get(o, "schema"));
        const char *reason = json_string_value(json_object_get(o, "reason"));
        CHECK(schema && reason, "%s: JSON schema/reason missing: %s", r->name,
              j);
        if (r->round_trip && schema && reason) {
            char want[1024];
            snprintf(want, sizeof(want), "bad: %s", r->value);
            CHECK(!strcmp(schema, r->value), "%s: JSON schema '%s'", r->name,
                  schema);
            CHECK(!strcmp(reason, want), "%s: JSON reason '%s'", r->name,
                  reason);
        }
        json_decref(o);
    }
    CHECK(!raw_controls(j), "%s: raw control character in JSON", r->name);
    free(j);
}

int main(void)
{
    char path[] = "/tmp/cg-test-log-XXXXXX";
    int fd = mkstemp(path);
    saved_stderr = dup(2);

    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++)
        check_row(fd, &hostile[i]);

    /* Secrets inside hostile values are still masked, in both formats. */
    const char *pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B"
                      "\n-----END PRIVATE KEY-----";
    for (int f = 0; f < 2; f++) {
        char *t = log_line(fd, f ? CG_LOG_JSON : CG_LOG_TEXT, pem);
        CHECK(!strstr(t, "MIIEvQ") && strstr(t, "BEGIN PRIVATE KEY"),
              "PEM body in a %s line: %s", f ? "JSON" : "text", t);
        free(t);
    }

    /* A value far past the line limit: the line is cut, still one record
     * whose quoted value is closed. */
    char *big = cg_malloc(40000);
    memset(big, '"', 39999);
    big[39999] = '\0';
    char *t = log_line(fd, CG_LOG_JSON, big);
    json_t *o = json_loads(t, JSON_REJECT_DUPLICATES, NULL);
    CHECK(o && !strcmp(json_string_value(json_object_get(o, "level")) ?: "",
                       "warn"),
          "a long hostile value: %.200s", t);
    json_decref(o);
    free(t);
    free(big);

    /* Conversions other than %s keep their printf meaning. */
    cg_log_setup(CG_LOG_INFO, CG_LOG_TEXT, "test");
    capture(fd);
    cg_info("conv",
            "a=%05d b=%.2f c=%zu d=%lld e=%x f=%.3s g=%c h=%-4s| "
            "i=%*d",
            42, 1.5, (size_t)7, -9LL, 255u, "abcdef", 'q', "ab", 3, 5);
    release();
    t = slurp(fd);
    CHECK(strstr(t, "a=00042 b=1.50 c=7 d=-9 e=ff f=abc g=q "
                    "h=\"ab  \"| i=\"  5\"") != NULL ||
              strstr(t, "a=00042 b=1.50 c=7 d=-9 e=ff f=abc g=q "
                        "h=\"ab  \"| i=  5") != NULL,
          "conversions: %s", t);
    free(t);

    close(saved_stderr);
    close(fd);
    unlink(path);
    return check_done("log");
}
