/*
 * log — one level-gated line per event on stderr, text or JSON.
 *
 * A line is an event name plus `key=value` pairs. In JSON mode the pairs
 * become fields. The format string is the caller's literal; every argument
 * is escaped by the logger where it lands, whatever its source: inside a
 * "quoted" value quotes, backslashes, control characters (ESC included),
 * line and bidi overrides and invalid UTF-8 are escaped (\" \\ \n \xHH); a
 * bare value that could end early (blank, quote, '=', ...) is quoted. So a
 * hostile value can neither close its field nor add one, in either format.
 *
 * Every argument and every line also pass through a scrubber: registered
 * secret values, anything shaped like a JWT, `Bearer` credentials,
 * `client_secret=` / `client_assertion=` / `password=` form fields and the
 * body of any PEM block (keys, certificates) are replaced by `***`, so a
 * secret cannot reach a log line even through a remote peer's error text.
 *
 * The logger's settings are the one piece of process-wide state besides the
 * stop flag: they are written once at start-up, before threads exist, and
 * the secret registry is guarded by a mutex.
 */
#ifndef CG_LOG_H
#define CG_LOG_H

#include <stdbool.h>

enum cg_log_level {
    CG_LOG_DEBUG,
    CG_LOG_INFO,
    CG_LOG_WARN,
    CG_LOG_ERROR,
    CG_LOG_OFF,
};

enum cg_log_format {
    CG_LOG_TEXT,
    CG_LOG_JSON,
};

/* Sets level, format and the component name printed on every line. */
void cg_log_setup(enum cg_log_level level, enum cg_log_format format,
                  const char *component);

/* "debug", "info", "warn", "error", "off"; CG_EINVAL for anything else. */
int cg_log_level_parse(const char *s, enum cg_log_level *out);
int cg_log_format_parse(const char *s, enum cg_log_format *out);

/* Registers a value that must never be printed (copied; values shorter
 * than 4 bytes are ignored as they would mask ordinary words). */
void cg_log_secret(const char *value);

bool cg_log_enabled(enum cg_log_level level);

void cg_log_emit(enum cg_log_level level, const char *event, const char *fmt,
                 ...) __attribute__((format(printf, 3, 4)));

/*
 * Replaces secrets in s (in place; the result is never longer). Exposed for
 * tests and for text that leaves the process by another way than the log,
 * such as an error reason in a finding.
 */
void cg_log_scrub(char *s);

#define CG_LOG(lvl, event, ...)                                                \
    do {                                                                       \
        if (cg_log_enabled(lvl))                                               \
            cg_log_emit(lvl, event, __VA_ARGS__);                              \
    } while (0)

#define cg_debug(event, ...) CG_LOG(CG_LOG_DEBUG, event, __VA_ARGS__)
#define cg_info(event, ...)  CG_LOG(CG_LOG_INFO, event, __VA_ARGS__)
#define cg_warn(event, ...)  CG_LOG(CG_LOG_WARN, event, __VA_ARGS__)
#define cg_error(event, ...) CG_LOG(CG_LOG_ERROR, event, __VA_ARGS__)

#endif
