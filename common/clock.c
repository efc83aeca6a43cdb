#include "clock.h"

#include "err.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

long long cg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cg_time_iso(long long ms, char *out, size_t outsz)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, outsz, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outsz - n, ".%03lldZ", ms % 1000);
}

int cg_time_parse_iso(const char *s, long long *ms)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return CG_EINVAL;
    long long frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; isdigit((unsigned char)*p); p++, digits++)
            if (digits < 3)
                frac = frac * 10 + (*p - '0');
        for (; digits < 3; digits++)
            frac *= 10;
    }
    long long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hh, mm;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
            return CG_EINVAL;
        off = (hh * 60LL + mm) * 60000LL * (*p == '+' ? 1 : -1);
        p += 6;
    }
    if (*p)
        return CG_EINVAL;
    *ms = (long long)timegm(&tm) * 1000 + frac - off;
    return 0;
}
