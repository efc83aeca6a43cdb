#include "err.h"

#include <stdarg.h>
#include <stdio.h>

struct err_row {
    int code;
    const char *name;
    bool retryable;
    const char *desc;
};

static const struct err_row err_rows[] = {
#define CG_ERR_ROW(name, value, retry, desc) { value, #name, retry, desc },
    CG_ERR_TABLE(CG_ERR_ROW)
#undef CG_ERR_ROW
};

static const struct err_row *err_find(int err)
{
    for (size_t i = 0; i < sizeof(err_rows) / sizeof(err_rows[0]); i++)
        if (err_rows[i].code == err)
            return &err_rows[i];
    return NULL;
}

const char *cg_err_name(int err)
{
    const struct err_row *r = err_find(err);
    return r ? r->name : "CG_E?";
}

const char *cg_err_desc(int err)
{
    const struct err_row *r = err_find(err);
    return r ? r->desc : "unknown error";
}

bool cg_err_retryable(int err)
{
    const struct err_row *r = err_find(err);
    return r ? r->retryable : false;
}

int cg_err_set(char *errbuf, size_t errsz, int err, const char *fmt, ...)
{
    if (errbuf && errsz > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errsz, fmt, ap);
        va_end(ap);
        /* One sentence, one line: a newline from a remote peer's text
         * must not split a log line. */
        for (char *p = errbuf; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
    return err;
}
