/*
 * docs/configuration.md embeds the table of options between two markers;
 * this keeps it equal to the code. `test_config_doc --write FILE` rewrites
 * the table in place.
 */
#include "../check.h"
#include "conf.h"
#include "mem.h"

#include <stdlib.h>
#include <string.h>

#define BEGIN "<!-- options:begin -->\n"
#define END   "<!-- options:end -->\n"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct cg_buf b;
    cg_buf_init(&b, 1 << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        cg_buf_append(&b, chunk, n);
    fclose(f);
    return b.data ? cg_buf_take(&b) : cg_strdup("");
}

int main(int argc, char **argv)
{
    bool write = argc > 2 && !strcmp(argv[1], "--write");
    const char *path = argv[argc - 1];
    char *doc = slurp(path);
    CHECK(doc != NULL, "cannot read %s", path);
    if (!doc)
        return check_done("config-doc");
    char *table = NULL;
    size_t tlen = 0;
    FILE *mem = open_memstream(&table, &tlen);
    cg_conf_markdown(mem);
    fclose(mem);
    char *b = strstr(doc, BEGIN), *e = b ? strstr(b, END) : NULL;
    CHECK(b && e, "%s lacks the option markers", path);
    if (b && e) {
        b += strlen(BEGIN);
        size_t have = (size_t)(e - b);
        if (write) {
            FILE *f = fopen(path, "wb");
            fwrite(doc, 1, (size_t)(b - doc), f);
            fputs(table, f);
            fputs(e, f);
            fclose(f);
        } else {
            CHECK(have == tlen && memcmp(b, table, tlen) == 0,
                  "%s is out of date: run make docs", path);
        }
    }
    free(table);
    free(doc);
    return check_done("config-doc");
}
