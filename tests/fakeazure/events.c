#include "events.h"

#include "err.h"
#include "log.h"
#include "mem.h"

#include <curl/curl.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUEUE_MAX 10000

struct cg_fa_events {
    char *webhook;
    json_t *kept;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char **queue;
    size_t qhead, qlen;
    bool stopping;
    bool validation_tried;
    bool validated; /* the receiver echoed the validation code */
    uint64_t posted, failures, dropped;
};

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

struct reply {
    char data[4096];
    size_t len;
};

static size_t keep(char *p, size_t size, size_t n, void *ud)
{
    struct reply *r = ud;
    size_t len = size * n;
    size_t room = sizeof(r->data) - 1 - r->len;
    size_t take = len < room ? len : room;
    memcpy(r->data + r->len, p, take);
    r->len += take;
    r->data[r->len] = '\0';
    return len;
}

/*
 * Event Grid's handshake before the first delivery: a
 * SubscriptionValidationEvent that the receiver answers with
 * {"validationResponse": code}. The outcome is recorded; deliveries go on
 * either way so that a receiver without the handshake can still be tested.
 */
static bool validate(CURL *curl, const char *url)
{
    unsigned char r[16];
    RAND_bytes(r, sizeof(r));
    char code[40];
    for (int i = 0; i < 16; i++)
        snprintf(code + 2 * i, 3, "%02X", r[i]);
    const char *topic = "/subscriptions/00000000-0000-0000-0000-000000000000";
    char *body = cg_asprintf(
        "[{\"id\":\"%s\",\"topic\":\"%s\",\"subject\":\"\","
        "\"data\":{\"validationCode\":\"%s\",\"validationUrl\":\"\"},"
        "\"eventType\":\"Microsoft.EventGrid.SubscriptionValidationEvent\","
        "\"eventTime\":\"1970-01-01T00:00:00Z\",\"metadataVersion\":\"1\","
        "\"dataVersion\":\"2\"}]",
        code, topic, code);
    struct curl_slist *hdr = NULL;
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "aeg-event-type: SubscriptionValidation");
    struct reply rep = { .len = 0 };
    rep.data[0] = '\0';
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &rep);
    long status = 0;
    bool ok = curl_easy_perform(curl) == CURLE_OK;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    json_t *j = ok ? json_loads(rep.data, 0, NULL) : NULL;
    const char *echo =
        json_string_value(json_object_get(j, "validationResponse"));
    ok = ok && status == 200 && echo && strcmp(echo, code) == 0;
    json_decref(j);
    curl_slist_free_all(hdr);
    free(body);
    return ok;
}

static void *poster(void *arg)
{
    struct cg_fa_events *ev = arg;
    CURL *curl = curl_easy_init();
    struct curl_slist *hdr = NULL;
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "aeg-event-type: Notification");
    for (;;) {
        pthread_mutex_lock(&ev->lock);
        while (!ev->qlen && !ev->stopping)
            pthread_cond_wait(&ev->cond, &ev->lock);
        if (!ev->qlen && ev->stopping) {
            pthread_mutex_unlock(&ev->lock);
            break;
        }
        char *body = ev->queue[ev->qhead];
        ev->qhead = (ev->qhead + 1) % QUEUE_MAX;
        ev->qlen--;
        bool first = !ev->validation_tried;
        ev->validation_tried = true;
        pthread_mutex_unlock(&ev->lock);

        if (first) {
            bool v = validate(curl, ev->webhook);
            pthread_mutex_lock(&ev->lock);
            ev->validated = v;
            pthread_mutex_unlock(&ev->lock);
        }
        curl_easy_reset(curl);
        curl_easy_setopt(curl, CURLOPT_URL, ev->webhook);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
        long code = 0;
        CURLcode rc = curl_easy_perform(curl);
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        pthread_mutex_lock(&ev->lock);
        if (rc == CURLE_OK && code >= 200 && code < 300) {
            ev->posted++;
        } else {
            ev->failures++;
            cg_warn("event_post_failed", "status=%ld curl=\"%s\"", code,
                    curl_easy_strerror(rc));
        }
        pthread_mutex_unlock(&ev->lock);
        free(body);
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(curl);
    return NULL;
}

struct cg_fa_events *cg_fa_events_new(const char *webhook, char *errbuf,
                                      size_t errsz)
{
    struct cg_fa_events *ev = cg_calloc(1, sizeof(*ev));
    ev->kept = json_array();
    pthread_mutex_init(&ev->lock, NULL);
    pthread_cond_init(&ev->cond, NULL);
    if (webhook && *webhook) {
        ev->webhook = cg_strdup(webhook);
        ev->queue = cg_calloc(QUEUE_MAX, sizeof(*ev->queue));
        if (pthread_create(&ev->thread, NULL, poster, ev) != 0) {
            cg_err_set(errbuf, errsz, CG_EIO, "cannot start event poster");
            cg_fa_events_free(ev);
            return NULL;
        }
        ev->started = true;
    }
    return ev;
}

void cg_fa_events_free(struct cg_fa_events *ev)
{
    if (!ev)
        return;
    if (ev->started) {
        pthread_mutex_lock(&ev->lock);
        ev->stopping = true;
        pthread_cond_signal(&ev->cond);
        pthread_mutex_unlock(&ev->lock);
        pthread_join(ev->thread, NULL);
    }
    if (ev->queue) {
        for (size_t i = 0; i < ev->qlen; i++)
            free(ev->queue[(ev->qhead + i) % QUEUE_MAX]);
        free(ev->queue);
    }
    json_decref(ev->kept);
    pthread_mutex_destroy(&ev->lock);
    pthread_cond_destroy(&ev->cond);
    free(ev->webhook);
    free(ev);
}

json_t *cg_fa_events_emit(struct cg_fa_events *ev, const char *event_type,
                          const char *operation, const char *subject,
                          const char *subscription_id, const char *tenant_id)
{
    unsigned char r[16];
    RAND_bytes(r, sizeof(r));
    char id[40], when[40];
    snprintf(id, sizeof(id),
             "%02x%02x%02x%02x-%02x%02x-4%x%02x-%x%x%02x-%02x%02x%02x%02x%02x"
             "%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6] & 15, r[7],
             8 | (r[8] & 3), r[8] >> 4, r[9], r[10], r[11], r[12], r[13], r[14],
             r[15]);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%07ldZ", ts.tv_nsec / 100);
    char *topic = cg_asprintf("/subscriptions/%s", subscription_id);
    json_t *e = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s}}", "id",
        id, "eventType", event_type, "subject", subject, "eventTime", when,
        "topic", topic, "dataVersion", "", "metadataVersion", "1", "data",
        "operationName", operation, "subscriptionId", subscription_id,
        "tenantId", tenant_id, "resourceUri", subject, "status", "Succeeded",
        "resourceProvider",
        strncmp(operation, "Microsoft.Security", 18) == 0
            ? "Microsoft.Security"
            : "Microsoft.Subscription",
        "correlationId", id);
    free(topic);
    if (json_array_size(ev->kept) >= CG_FA_EVENTS_MAX)
        json_array_remove(ev->kept, 0);
    json_array_append_new(ev->kept, e);
    if (ev->started) {
        json_t *batch = json_pack("[O]", e);
        char *body = json_dumps(batch, JSON_COMPACT);
        json_decref(batch);
        pthread_mutex_lock(&ev->lock);
        if (ev->qlen < QUEUE_MAX) {
            ev->queue[(ev->qhead + ev->qlen) % QUEUE_MAX] = body;
            ev->qlen++;
            pthread_cond_signal(&ev->cond);
            body = NULL;
        } else {
            ev->dropped++;
        }
        pthread_mutex_unlock(&ev->lock);
        free(body);
    }
    return e;
}

json_t *cg_fa_events_json(struct cg_fa_events *ev)
{
    pthread_mutex_lock(&ev->lock);
    json_t *o = json_pack(
        "{s:O,s:s?,s:b,s:b,s:I,s:I,s:I}", "events", ev->kept, "webhook",
        ev->webhook, "validation_tried", ev->validation_tried, "validated",
        ev->validated, "posted", (json_int_t)ev->posted, "post_failures",
        (json_int_t)ev->failures, "queue_dropped", (json_int_t)ev->dropped);
    pthread_mutex_unlock(&ev->lock);
    return o;
}

void cg_fa_events_reset(struct cg_fa_events *ev)
{
    json_array_clear(ev->kept);
    pthread_mutex_lock(&ev->lock);
    ev->posted = ev->failures = ev->dropped = 0;
    pthread_mutex_unlock(&ev->lock);
}
