/* err, mem and log: the retry table, bounded buffers, secret scrubbing. */
#include "../check.h"
#include "err.h"
#include "log.h"
#include "mem.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct scrub_row {
    const char *name;
    const char *in;
    const char *must_not_contain;
    const char *must_contain;
};

static const struct scrub_row scrub[] = {
    { "registered secret", "error=bad secret=registered-secret-42 x=1",
      "registered-secret-42", "x=1" },
    { "JWT", "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl end",
      "eyJzdWIiOiJ4In0", "end" },
    { "Bearer header", "Authorization: Bearer abc.def-ghi rest", "abc.def-ghi",
      "rest" },
    { "form secret", "body=client_id=a&client_secret=topsecret&scope=x",
      "topsecret", "scope=x" },
    { "form assertion", "client_assertion=AAAA.BBBB.CCCC&x=1", "AAAA.BBBB",
      "x=1" },
    { "JSON access token", "{\"access_token\":\"opaque-token-value\"}",
      "opaque-token-value", "access_token" },
    { "harmless text", "subscription=abc status=PASS", NULL,
      "subscription=abc status=PASS" },
};

int main(void)
{
    CHECK(cg_err_retryable(CG_ETHROTTLED) && cg_err_retryable(CG_EIO),
          "throttled and I/O are retryable");
    CHECK(!cg_err_retryable(CG_EFORBIDDEN) && !cg_err_retryable(CG_EPARSE) &&
              !cg_err_retryable(CG_OK),
          "forbidden and parse are final");
    CHECK(!strcmp(cg_err_name(CG_ENOTFOUND), "CG_ENOTFOUND"), "err name");
    CHECK(!strcmp(cg_err_name(-999), "CG_E?"), "unknown err name");
    char eb[16];
    CHECK(cg_err_set(eb, sizeof(eb), CG_EIO, "line1\nline2 long text") ==
              CG_EIO,
          "err_set returns the code");
    CHECK(strchr(eb, '\n') == NULL && strlen(eb) == 15,
          "err_set: one line, truncated");

    unsigned char ub[16];
    for (int i = 0; i < 16; i++)
        ub[i] = (unsigned char)(i * 17);
    char ut[37];
    cg_uuid_text(ub, ut);
    CHECK(!strcmp(ut, "00112233-4455-6677-8899-aabbccddeeff"), "uuid text %s",
          ut);

    struct cg_buf b;
    cg_buf_init(&b, 10);
    CHECK(cg_buf_puts(&b, "12345") == 0 && b.len == 5, "buf append");
    CHECK(cg_buf_puts(&b, "678901") == CG_ETOOBIG && b.len == 5,
          "buf refuses past max and keeps content");
    CHECK(cg_buf_printf(&b, "%d", 12345) == 0 && b.len == 10 &&
              !strcmp(b.data, "1234512345"),
          "buf printf to the limit");
    CHECK(cg_buf_printf(&b, "x") == CG_ETOOBIG, "buf printf past max");
    char *s = cg_buf_take(&b);
    CHECK(!strcmp(s, "1234512345") && b.data == NULL, "buf take");
    free(s);
    cg_buf_free(&b);
    char small[4];
    CHECK(cg_strlcpy(small, "abcdef", sizeof(small)) == 6 &&
              !strcmp(small, "abc"),
          "strlcpy truncates");

    cg_log_secret("registered-secret-42");
    for (size_t i = 0; i < sizeof(scrub) / sizeof(scrub[0]); i++) {
        char buf[512];
        cg_strlcpy(buf, scrub[i].in, sizeof(buf));
        cg_log_scrub(buf);
        CHECK(!scrub[i].must_not_contain ||
                  !strstr(buf, scrub[i].must_not_contain),
              "%s: secret survived: %s", scrub[i].name, buf);
        CHECK(strstr(buf, scrub[i].must_contain) != NULL,
              "%s: lost context: %s", scrub[i].name, buf);
    }

    /* The whole path: a log line written to stderr carries no secret, and
     * JSON mode turns pairs into fields. */
    char path[] = "/tmp/cg-log-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(2);
    dup2(fd, 2);
    cg_log_setup(CG_LOG_INFO, CG_LOG_JSON, "test");
    cg_info("token.fetched", "tenant=t1 secret=registered-secret-42 n=3 "
                             "msg=\"two words\"");
    cg_debug("hidden", "level=debug");
    cg_log_setup(CG_LOG_INFO, CG_LOG_TEXT, "test");
    cg_warn("http.request", "auth=\"Bearer sometoken123\" status=401");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char out[4096] = "";
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, out, sizeof(out) - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    CHECK(strstr(out, "registered-secret-42") == NULL, "secret in log: %s",
          out);
    CHECK(strstr(out, "sometoken123") == NULL, "bearer token in log");
    CHECK(strstr(out, "\"event\":\"token.fetched\"") &&
              strstr(out, "\"n\":3") && strstr(out, "\"msg\":\"two words\""),
          "JSON fields: %s", out);
    CHECK(strstr(out, "hidden") == NULL, "debug line written at info");
    CHECK(strstr(out, "level=warn component=test event=http.request"),
          "text line: %s", out);
    enum cg_log_level lv;
    CHECK(cg_log_level_parse("WARNING", &lv) == 0 && lv == CG_LOG_WARN,
          "level parse");
    CHECK(cg_log_level_parse("loud", &lv) == CG_EINVAL, "bad level");
    return check_done("common");
}
