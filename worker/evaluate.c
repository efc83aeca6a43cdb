#include "evaluate.h"

#include "conf.h"
#include "err.h"
#include "mem.h"

#include <ctype.h>
#include <idn2.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void cg_rules_conf_default(struct cg_rules_conf *rc)
{
    rc->alert_level = CG_LEVEL_HIGH;
    rc->alert_exact = false;
    rc->attack_level = CG_LEVEL_HIGH;
    rc->require_configured = false;
    rc->configured_emails = NULL;
    rc->owner_enabled = true;
    rc->owner_count_groups = false;
}

void cg_rules_conf_from(struct cg_rules_conf *rc, const struct cg_conf *conf,
                        const struct cg_tenant *t)
{
    cg_rules_conf_default(rc);
    rc->alert_level =
        cg_level_parse(cg_conf_str(conf, "rules.alert_severity.level"));
    rc->alert_exact = cg_conf_bool(conf, "rules.alert_severity.exact");
    rc->attack_level =
        cg_level_parse(cg_conf_str(conf, "rules.attack_paths.level"));
    rc->require_configured =
        cg_conf_bool(conf, "rules.additional_emails.require_configured");
    const char *emails = cg_conf_str(conf, "remediation.emails");
    rc->configured_emails = *emails ? emails : NULL;
    rc->owner_enabled = cg_conf_bool(conf, "rules.owner_reachable.enabled");
    rc->owner_count_groups =
        cg_conf_bool(conf, "rules.owner_reachable.count_groups");
    if (!t)
        return;
    if (t->alert_severity_level)
        rc->alert_level = cg_level_parse(t->alert_severity_level);
    if (t->alert_severity_exact >= 0)
        rc->alert_exact = t->alert_severity_exact;
    if (t->attack_paths_level)
        rc->attack_level = cg_level_parse(t->attack_paths_level);
    if (t->require_configured >= 0)
        rc->require_configured = t->require_configured;
    if (t->remediation_emails)
        rc->configured_emails = t->remediation_emails;
}

/* ---- addresses ---------------------------------------------------------- */

static bool label_ok(const char *s, size_t n)
{
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

/* An ASCII domain (the A-label form of an internationalised one): two or
 * more labels, the last one two or more letters or itself an A-label
 * ("xn--p1ai"), as top-level domains are. */
static bool domain_ok(const char *d, size_t n)
{
    if (n == 0 || n > CG_EMAIL_DOMAIN_MAX)
        return false;
    const char *end = d + n, *last = NULL;
    size_t labels = 0, lastlen = 0;
    while (d <= end) {
        const char *dot = memchr(d, '.', (size_t)(end - d));
        const char *le = dot ? dot : end;
        if (!label_ok(d, (size_t)(le - d)))
            return false;
        labels++;
        last = d;
        lastlen = (size_t)(le - d);
        if (!dot)
            break;
        d = dot + 1;
    }
    if (labels < 2 || lastlen < 2)
        return false;
    if (lastlen > 4 && !strncasecmp(last, "xn--", 4))
        return true;
    for (size_t i = 0; i < lastlen; i++)
        if (!isalpha((unsigned char)last[i]))
            return false;
    return true;
}

/* Length of the UTF-8 sequence at s (at most n bytes), 0 when it is not
 * well formed (overlong forms, surrogates and code points past U+10FFFF
 * included). */
static size_t utf8_seq(const unsigned char *s, size_t n, unsigned int *out)
{
    size_t len;
    unsigned int cp;
    *out = s[0];
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
        cp = s[0] & 0x1Fu;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        cp = s[0] & 0x0Fu;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    *out = cp;
    return len;
}

/* Unicode white space and C1 controls, which an address never holds. */
static bool wide_space(unsigned int cp)
{
    return (cp >= 0x80 && cp <= 0xA0) || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200B) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

/* The local part: octets other than white space, controls and '@', as
 * well-formed UTF-8 (RFC 6531 allows UTF-8 there). */
static bool local_ok(const char *s, size_t n, bool *ascii)
{
    *ascii = true;
    if (n == 0 || n > CG_EMAIL_LOCAL_MAX)
        return false;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned int cp;
        size_t k = utf8_seq(p + i, n - i, &cp);
        if (k == 0 || wide_space(cp))
            return false;
        if (k == 1 && (p[i] <= 0x20 || p[i] == 0x7F || p[i] == '@'))
            return false;
        if (k > 1)
            *ascii = false;
        i += k;
    }
    return true;
}

bool cg_email_judge(const char *s, size_t n, struct cg_email_form *form)
{
    struct cg_email_form dummy;
    if (!form)
        form = &dummy;
    memset(form, 0, sizeof(*form));
    const char *at = memchr(s, '@', n);
    if (!at || memchr(at + 1, '@', n - (size_t)(at - s) - 1))
        return false;
    if (!local_ok(s, (size_t)(at - s), &form->local_ascii))
        return false;
    const char *d = at + 1;
    size_t dn = n - (size_t)(at - s) - 1;
    bool ascii = true, alabels = false;
    for (size_t i = 0; i < dn; i++) {
        ascii = ascii && (unsigned char)d[i] < 0x80;
        alabels = alabels || ((i == 0 || d[i - 1] == '.') && dn - i > 4 &&
                              !strncasecmp(d + i, "xn--", 4));
    }
    if (ascii && !alabels) {
        if (!domain_ok(d, dn))
            return false;
        snprintf(form->domain, sizeof(form->domain), "%.*s", (int)dn, d);
        return true;
    }
    /* An internationalised domain is judged in the form DNS uses: its
     * A-labels (IDNA2008 with the UTS #46 mapping, so "BÜCHER.example"
     * and "bücher.example" are one domain); a domain written in A-labels
     * already must hold valid ones ("xn--zz" is not). */
    if (dn > 4 * CG_EMAIL_DOMAIN_MAX)
        return false;
    char *u = cg_strndup(d, dn);
    char *alabel = NULL;
    int rc = idn2_lookup_u8((const uint8_t *)u, (uint8_t **)&alabel,
                            IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    free(u);
    bool ok = rc == IDN2_OK && alabel && domain_ok(alabel, strlen(alabel));
    if (ok) {
        cg_strlcpy(form->domain, alabel, sizeof(form->domain));
        form->idn = !ascii;
    }
    idn2_free(alabel);
    return ok;
}

bool cg_email_valid(const char *s, size_t n)
{
    return cg_email_judge(s, n, NULL);
}

void cg_emails_foreach(const char *list,
                       void (*fn)(const char *part, size_t n, void *arg),
                       void *arg)
{
    const char *p = list;
    while (p && *p) {
        size_t n = strcspn(p, ";,");
        const char *b = p, *e = p + n;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e > b)
            fn(b, (size_t)(e - b), arg);
        p += n;
        if (*p)
            p++;
    }
}

/* ---- evidence ----------------------------------------------------------- */

static json_t *evidence_base(const struct cg_contacts *ct)
{
    json_t *ev = json_object();
    json_object_set_new(ev, "api_version",
                        json_string(cg_api_version_name(ct->version)));
    json_object_set_new(ev, "api_version_detected",
                        json_boolean(ct->version_detected));
    json_object_set_new(ev, "contact_count", json_integer((json_int_t)ct->n));
    if (ct->nnotes) {
        json_t *notes = json_array();
        for (size_t i = 0; i < ct->nnotes; i++)
            json_array_append_new(notes, json_string(ct->notes[i]));
        if (ct->notes_dropped)
            json_array_append_new(
                notes, json_sprintf("%zu more notes", ct->notes_dropped));
        json_object_set_new(ev, "notes", notes);
    }
    return ev;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *contact_ev(const struct cg_contact *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", str_or_null(c->name));
    json_object_set_new(o, "enabled", json_boolean(c->enabled));
    if (c->is_enabled)
        json_object_set_new(o, "isEnabled", json_string(c->is_enabled));
    return o;
}

/* ---- the contact rules, one contact at a time --------------------------- */

/* What one contact says about one rule. */
struct verdict {
    bool pass;
    const char *code;
    char reason[256];
};

static void verdict(struct verdict *v, bool pass, const char *code,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void verdict(struct verdict *v, bool pass, const char *code,
                    const char *fmt, ...)
{
    va_list ap;
    v->pass = pass;
    v->code = code;
    va_start(ap, fmt);
    vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
    va_end(ap);
}

static const char *raw(const char *s)
{
    return s ? s : "absent";
}

static void rule_owner(const struct cg_contacts *ct, const struct cg_contact *c,
                       struct verdict *v, json_t *cev)
{
    json_object_set_new(
        cev, ct->version == CG_API_2017 ? "alertsToAdmins" : "roleState",
        str_or_null(c->role_state_raw));
    if (ct->version == CG_API_2017) {
        if (c->role_state == CG_ONOFF_ON)
            verdict(v, true, "OWNER_ALERTS_ON",
                    "Alert emails go to subscription admins and owners "
                    "(alertsToAdmins is On).");
        else
            verdict(v, false, "ALERTS_TO_ADMINS_OFF",
                    "Alert emails do not go to subscription owners "
                    "(alertsToAdmins is %s).",
                    raw(c->role_state_raw));
        return;
    }
    json_t *roles = json_array();
    bool owner = false;
    for (size_t i = 0; i < c->nroles; i++) {
        json_array_append_new(roles, json_string(c->roles[i]));
        owner = owner || strcasecmp(c->roles[i], "Owner") == 0;
    }
    json_object_set_new(cev, "roles", roles);
    if (c->role_state != CG_ONOFF_ON)
        verdict(v, false, "ROLE_NOTIFICATIONS_OFF",
                "Notifications by role are not on "
                "(notificationsByRole.state is %s).",
                raw(c->role_state_raw));
    else if (!owner)
        verdict(v, false, "OWNER_ROLE_MISSING",
                "Notifications by role are on but the roles do not include "
                "Owner.");
    else
        verdict(v, true, "OWNER_ALERTS_ON",
                "Alert emails go to subscription owners "
                "(notificationsByRole is On with role Owner).");
}

struct email_scan {
    json_t *valid, *invalid;
    const char *want; /* a configured address being looked for */
    bool found;
};

static void email_part(const char *p, size_t n, void *arg)
{
    struct email_scan *es = arg;
    char *s = cg_strndup(p, n);
    json_array_append_new(cg_email_valid(p, n) ? es->valid : es->invalid,
                          json_string(s));
    free(s);
}

static void email_find(const char *p, size_t n, void *arg)
{
    struct email_scan *es = arg;
    if (strlen(es->want) == n && strncasecmp(es->want, p, n) == 0)
        es->found = true;
}

struct required_scan {
    const char *have;
    json_t *missing;
};

static void required_part(const char *p, size_t n, void *arg)
{
    struct required_scan *rs = arg;
    struct email_scan es = { 0 };
    es.want = cg_strndup(p, n);
    cg_emails_foreach(rs->have, email_find, &es);
    if (!es.found)
        json_array_append_new(rs->missing, json_string(es.want));
    free((char *)es.want);
}

static void rule_emails(const struct cg_contacts *ct,
                        const struct cg_rules_conf *rc,
                        const struct cg_contact *c, struct verdict *v,
                        json_t *cev)
{
    struct email_scan es = { json_array(), json_array(), NULL, false };
    json_object_set_new(cev, ct->version == CG_API_2017 ? "email" : "emails",
                        str_or_null(c->emails));
    cg_emails_foreach(c->emails, email_part, &es);
    size_t nvalid = json_array_size(es.valid);
    size_t ninvalid = json_array_size(es.invalid);
    json_object_set_new(cev, "valid", es.valid);
    json_object_set_new(cev, "invalid", es.invalid);
    if (c->emails) {
        /* Azure rejects commas and spaces on write; say so on read. */
        json_t *seps = json_array();
        if (strchr(c->emails, ','))
            json_array_append_new(seps, json_string("comma"));
        if (strpbrk(c->emails, " \t"))
            json_array_append_new(seps, json_string("space"));
        if (json_array_size(seps))
            json_object_set_new(cev, "separator_issues", seps);
        else
            json_decref(seps);
    }

    if (nvalid == 0) {
        if (ninvalid == 0)
            verdict(v, false, "EMAILS_MISSING",
                    "No additional email address is configured.");
        else
            verdict(v, false, "EMAILS_INVALID",
                    "None of the %zu configured addresses is valid.", ninvalid);
        return;
    }
    if (rc->require_configured && rc->configured_emails) {
        struct required_scan rs = { c->emails, json_array() };
        cg_emails_foreach(rc->configured_emails, required_part, &rs);
        size_t nmissing = json_array_size(rs.missing);
        json_object_set_new(cev, "configured_missing", rs.missing);
        if (nmissing) {
            verdict(v, false, "CONFIGURED_EMAIL_MISSING",
                    "%zu of the tenant's configured security addresses %s "
                    "missing.",
                    nmissing, nmissing == 1 ? "is" : "are");
            return;
        }
    }
    verdict(v, true, "EMAIL_VALID",
            "%zu valid additional email address%s configured.", nvalid,
            nvalid == 1 ? " is" : "es are");
}

/* Decides a minimal level against the configured one. */
static bool level_passes(enum cg_level have, enum cg_level want, bool exact)
{
    if (have < CG_LEVEL_LOW || have > CG_LEVEL_CRITICAL)
        return false;
    return exact ? have == want : have <= want;
}

/* The most inclusive valid level among the sources of one type (NONE if
 * there is no such source, UNKNOWN if none has a valid level). */
static enum cg_level source_level(const struct cg_contact *c, const char *type,
                                  bool *present, enum cg_level want, bool exact,
                                  json_t *levels)
{
    enum cg_level best = CG_LEVEL_NONE;
    *present = false;
    for (size_t i = 0; i < c->nsources; i++) {
        const struct cg_source *s = &c->sources[i];
        if (strcasecmp(s->type, type) != 0)
            continue;
        *present = true;
        json_array_append_new(levels, str_or_null(s->level));
        enum cg_level r = s->rank;
        if (r == CG_LEVEL_NONE || r == CG_LEVEL_UNKNOWN) {
            if (best == CG_LEVEL_NONE)
                best = CG_LEVEL_UNKNOWN;
            continue;
        }
        /* In exact mode a source equal to the level beats a lower one. */
        if (best == CG_LEVEL_NONE || best == CG_LEVEL_UNKNOWN ||
            (exact ? (r == want || (best != want && r < best)) : r < best))
            best = r;
    }
    return best;
}

static void level_verdict(struct verdict *v, enum cg_level have,
                          enum cg_level want, bool exact, const char *what,
                          const char *raw_level, const char *ok_code,
                          const char *missing_code, const char *high_code)
{
    if (have == CG_LEVEL_NONE || have == CG_LEVEL_UNKNOWN)
        verdict(v, false, missing_code, "The %s is %s, not a known level.",
                what, raw(raw_level));
    else if (level_passes(have, want, exact))
        verdict(v, true, ok_code, "The %s is %s, which includes %s.", what,
                cg_level_name(have), cg_level_name(want));
    else if (exact)
        verdict(v, false, "ALERT_SEVERITY_NOT_EXACT",
                "The %s is %s; exactly %s is required.", what,
                cg_level_name(have), cg_level_name(want));
    else
        verdict(v, false, high_code, "The %s is %s, which leaves out %s.", what,
                cg_level_name(have), cg_level_name(want));
}

static void rule_severity(const struct cg_contacts *ct,
                          const struct cg_rules_conf *rc,
                          const struct cg_contact *c, struct verdict *v,
                          json_t *cev)
{
    if (ct->version == CG_API_2023) {
        bool present;
        json_t *levels = json_array();
        enum cg_level l = source_level(c, "Alert", &present, rc->alert_level,
                                       rc->alert_exact, levels);
        json_object_set_new(cev, "alertMinimalSeverity", levels);
        if (!present) {
            verdict(v, false, "ALERT_SOURCE_MISSING",
                    "No Alert entry in notificationsSources: alert emails "
                    "are off.");
            return;
        }
        level_verdict(v, l, rc->alert_level, rc->alert_exact,
                      "alert minimal severity", "absent or unknown",
                      "ALERT_SEVERITY_OK", "ALERT_SEVERITY_MISSING",
                      "ALERT_SEVERITY_TOO_HIGH");
        return;
    }
    json_object_set_new(cev, "alertNotifications",
                        str_or_null(c->alert_state_raw));
    if (ct->version == CG_API_2020)
        json_object_set_new(cev, "minimalSeverity",
                            str_or_null(c->alert_severity_raw));
    if (c->alert_state != CG_ONOFF_ON) {
        verdict(v, false, "ALERT_NOTIFICATIONS_OFF",
                "Alert email notifications are not on "
                "(alertNotifications%s is %s).",
                ct->version == CG_API_2020 ? ".state" : "",
                raw(c->alert_state_raw));
        return;
    }
    level_verdict(v, c->alert_severity, rc->alert_level, rc->alert_exact,
                  "alert minimal severity", c->alert_severity_raw,
                  "ALERT_SEVERITY_OK", "ALERT_SEVERITY_MISSING",
                  "ALERT_SEVERITY_TOO_HIGH");
}

static void rule_attack(const struct cg_rules_conf *rc,
                        const struct cg_contact *c, struct verdict *v,
                        json_t *cev)
{
    bool present;
    json_t *levels = json_array();
    enum cg_level l = source_level(c, "AttackPath", &present, rc->attack_level,
                                   false, levels);
    json_object_set_new(cev, "attackPathMinimalRiskLevel", levels);
    if (!present) {
        verdict(v, false, "ATTACK_PATH_SOURCE_MISSING",
                "No AttackPath entry in notificationsSources: attack path "
                "emails are off.");
        return;
    }
    level_verdict(v, l, rc->attack_level, false,
                  "attack path minimal risk level", "absent or unknown",
                  "ATTACK_PATHS_OK", "RISK_LEVEL_MISSING",
                  "RISK_LEVEL_TOO_HIGH");
}

/* ---- owner-reachable: the role assignments ------------------------------ */

/*
 * Decided after owner-alerts (out[CG_RULE_OWNER_ALERTS] is final): the rule
 * asks whether the Owner mail reaches a person, which is moot when no
 * Owner mail is sent; so that comes first, before whether the role
 * assignments could be read at all.
 */
static void rule_reachable(const struct cg_owners *o,
                           const struct cg_rules_conf *rc,
                           const struct cg_finding *owner_alerts,
                           struct cg_finding *f)
{
    json_t *ev = json_object();
    f->evidence = ev;
    json_object_set_new(ev, "owner_alerts",
                        json_string(cg_status_name(owner_alerts->status)));
    json_object_set_new(ev, "count_groups",
                        json_boolean(rc->owner_count_groups));
    if (!rc->owner_enabled) {
        cg_finding_set(f, f->rule, CG_STATUS_SKIPPED, "RULE_DISABLED",
                       "The rule is turned off "
                       "(rules.owner_reachable.enabled is false).");
        return;
    }
    if (owner_alerts->status != CG_STATUS_PASS) {
        cg_finding_set(f, f->rule, CG_STATUS_SKIPPED, "OWNER_ALERTS_OFF",
                       "Alert emails are not sent to the Owner role "
                       "(owner-alerts is %s), so who holds it does not "
                       "decide who is alerted.",
                       cg_status_name(owner_alerts->status));
        return;
    }
    if (!o || o->state == CG_OWNERS_NOT_READ) {
        cg_finding_set(f, f->rule, CG_STATUS_SKIPPED,
                       "ROLE_ASSIGNMENTS_NOT_READ",
                       "The subscription's role assignments were not read.");
        return;
    }
    if (o->state == CG_OWNERS_UNREADABLE) {
        json_object_set_new(ev, "reason", json_string(o->reason));
        cg_finding_set(f, f->rule, o->status, o->reason_code, "%s", o->reason);
        return;
    }
    json_object_set_new(ev, "role_assignments",
                        json_integer((json_int_t)o->assignments));
    json_object_set_new(ev, "owner_count", json_integer((json_int_t)o->owners));
    json_object_set_new(ev, "user_owners", json_integer((json_int_t)o->users));
    json_object_set_new(ev, "group_owners",
                        json_integer((json_int_t)o->groups));
    json_object_set_new(ev, "owners", json_incref(o->listed));
    if (o->owners > json_array_size(o->listed))
        json_object_set_new(
            ev, "owners_not_listed",
            json_integer((json_int_t)(o->owners - json_array_size(o->listed))));
    if (o->owners == 0)
        cg_finding_set(f, f->rule, CG_STATUS_FAIL, "NO_OWNER",
                       "No principal holds the Owner role on the "
                       "subscription, so the Owner alert emails reach no "
                       "one.");
    else if (o->users > 0)
        cg_finding_set(f, f->rule, CG_STATUS_PASS, "USER_OWNER",
                       "%zu user%s hold%s the Owner role, so the Owner alert "
                       "emails reach a person.",
                       o->users, o->users == 1 ? "" : "s",
                       o->users == 1 ? "s" : "");
    else if (o->groups > 0 && rc->owner_count_groups)
        cg_finding_set(f, f->rule, CG_STATUS_PASS, "GROUP_OWNER",
                       "No user but %zu group%s hold%s the Owner role; groups "
                       "count (rules.owner_reachable.count_groups).",
                       o->groups, o->groups == 1 ? "" : "s",
                       o->groups == 1 ? "s" : "");
    else
        cg_finding_set(f, f->rule, CG_STATUS_FAIL, "NO_USER_OWNER",
                       "The Owner role is held by %zu principal%s, none of "
                       "them a user%s, so the Owner alert emails reach no "
                       "one.",
                       o->owners, o->owners == 1 ? "" : "s",
                       o->groups && !rc->owner_count_groups
                           ? " (groups do not count)"
                           : "");
}

/* ---- driver -------------------------------------------------------------- */

static void finding_reset(struct cg_finding *f)
{
    cg_finding_clear(f);
}

void cg_evaluate_all(struct cg_finding out[CG_RULE_COUNT],
                     enum cg_status status, const char *reason_code,
                     const char *reason)
{
    for (int r = 0; r < CG_RULE_COUNT; r++) {
        finding_reset(&out[r]);
        cg_finding_set(&out[r], (enum cg_rule)r, status, reason_code, "%s",
                       reason);
        json_t *ev = json_object();
        json_object_set_new(ev, "reason", json_string(reason));
        out[r].evidence = ev;
    }
}

void cg_evaluate(const struct cg_contacts *ct, const struct cg_owners *owners,
                 const struct cg_rules_conf *rc,
                 struct cg_finding out[CG_RULE_COUNT])
{
    size_t enabled = 0;
    for (size_t i = 0; i < ct->n; i++)
        enabled += ct->v[i].enabled;

    for (int r = 0; r < CG_RULE_COUNT; r++) {
        struct cg_finding *f = &out[r];
        if (r == CG_RULE_OWNER_REACHABLE) {
            finding_reset(f);
            f->rule = (enum cg_rule)r;
            rule_reachable(owners, rc, &out[CG_RULE_OWNER_ALERTS], f);
            continue;
        }
        finding_reset(f);
        f->rule = (enum cg_rule)r;
        json_t *ev = evidence_base(ct);
        json_t *cevs = json_array();
        struct verdict first = { 0 }, best = { 0 };
        bool have_first = false, passed = false;

        for (size_t i = 0; i < ct->n; i++) {
            const struct cg_contact *c = &ct->v[i];
            json_t *cev = contact_ev(c);
            struct verdict v = { 0 };
            switch (r) {
            case CG_RULE_OWNER_ALERTS:
                rule_owner(ct, c, &v, cev);
                break;
            case CG_RULE_ADDITIONAL_EMAILS:
                rule_emails(ct, rc, c, &v, cev);
                break;
            case CG_RULE_ALERT_SEVERITY:
                rule_severity(ct, rc, c, &v, cev);
                break;
            case CG_RULE_ATTACK_PATHS:
                if (ct->version == CG_API_2023)
                    rule_attack(rc, c, &v, cev);
                break;
            default:
                break;
            }
            if (v.code)
                json_object_set_new(cev, "verdict", json_string(v.code));
            json_array_append_new(cevs, cev);
            if (!c->enabled)
                continue;
            if (v.pass && !passed) {
                best = v;
                passed = true;
            }
            if (!have_first) {
                first = v;
                have_first = true;
            }
        }
        json_object_set_new(ev, "contacts", cevs);
        if (r == CG_RULE_ALERT_SEVERITY) {
            json_object_set_new(ev, "level",
                                json_string(cg_level_name(rc->alert_level)));
            json_object_set_new(ev, "exact", json_boolean(rc->alert_exact));
        } else if (r == CG_RULE_ATTACK_PATHS) {
            json_object_set_new(ev, "level",
                                json_string(cg_level_name(rc->attack_level)));
        }
        f->evidence = ev;

        if (ct->n == 0) {
            cg_finding_set(f, f->rule, CG_STATUS_FAIL, "NO_CONTACT",
                           "No security contact is configured for the "
                           "subscription, so Defender for Cloud's defaults "
                           "are not guaranteed to reach anyone.");
        } else if (enabled == 0) {
            cg_finding_set(f, f->rule, CG_STATUS_FAIL, "CONTACT_DISABLED",
                           "The security contact is disabled (isEnabled is "
                           "not true), so it sends no notifications.");
        } else if (r == CG_RULE_ATTACK_PATHS && ct->version != CG_API_2023) {
            cg_finding_set(f, f->rule, CG_STATUS_ERROR,
                           "API_VERSION_UNSUPPORTED",
                           "Attack path notifications cannot be expressed "
                           "in %s; read the contact with "
                           "2023-12-01-preview.",
                           cg_api_version_name(ct->version));
        } else if (passed) {
            cg_finding_set(f, f->rule, CG_STATUS_PASS, best.code, "%s",
                           best.reason);
        } else {
            cg_finding_set(f, f->rule, CG_STATUS_FAIL, first.code, "%s",
                           first.reason);
        }
    }
}

int cg_evaluate_body(const char *body, size_t len, enum cg_api_version v,
                     const struct cg_owners *owners,
                     const struct cg_rules_conf *rc, struct cg_contacts *ct,
                     struct cg_finding out[CG_RULE_COUNT])
{
    char err[256];
    int prc = cg_contacts_parse(ct, body, len, v, err, sizeof(err));
    if (prc)
        cg_evaluate_all(out, CG_STATUS_ERROR,
                        prc == CG_ETOOBIG ? "BODY_TOO_LARGE" : "BODY_MALFORMED",
                        err);
    else
        cg_evaluate(ct, owners, rc, out);
    return prc;
}
