/*
 * libFuzzer target over the contact parser and the rules: any byte string,
 * read as each API version and as "detect", must give a finding per rule
 * with a status and a reason, serialise in both formats, and leak nothing.
 */
#include "contacts.h"
#include "evaluate.h"
#include "finding.h"
#include "ocsf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum cg_api_version versions[] = { CG_API_UNKNOWN, CG_API_2017,
                                                    CG_API_2020, CG_API_2023 };
    /* The first byte picks the settings, so the fuzzer explores them. */
    struct cg_rules_conf rc;
    cg_rules_conf_default(&rc);
    if (size > 0) {
        rc.alert_level = (enum cg_level)(CG_LEVEL_LOW + data[0] % 3);
        rc.alert_exact = data[0] & 0x10;
        rc.attack_level = (enum cg_level)(CG_LEVEL_LOW + (data[0] >> 2) % 4);
        rc.require_configured = data[0] & 0x20;
        rc.configured_emails = "soc@contoso.com;Cert@Contoso.com";
    }
    struct cg_ocsf writer;
    cg_ocsf_init(&writer, cg_ocsf_version_at(size > 1 ? data[1] % 2 : 0));
    for (size_t v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
        struct cg_contacts ct;
        struct cg_finding out[CG_RULE_COUNT];
        memset(out, 0, sizeof(out));
        cg_contacts_init(&ct);
        cg_evaluate_body((const char *)data, size, versions[v], NULL, &rc, &ct,
                         out);
        char hash[65];
        cg_contacts_hash(&ct, hash);
        for (int r = 0; r < CG_RULE_COUNT; r++) {
            if (!out[r].reason || !out[r].reason_code[0] ||
                out[r].status > CG_STATUS_SKIPPED)
                abort();
            char *a = cg_finding_compact(&out[r]);
            char *b = cg_finding_ocsf(&writer, &out[r]);
            if (!a || !b)
                abort();
            free(a);
            free(b);
            cg_finding_clear(&out[r]);
        }
        cg_contacts_free(&ct);
    }
    return 0;
}
