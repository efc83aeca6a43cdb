/*
 * kafka — librdkafka configuration from the contactguard configuration.
 *
 * Every process builds its clients here so that the rules are the same
 * everywhere: the process's own defaults first (e.g. the worker's
 * cooperative-sticky assignor), then every `kafka.*` key of the
 * configuration verbatim, so an operator can override anything. librdkafka's
 * own log lines go through the contactguard logger (and its scrubber), and
 * its error callback logs once per distinct error.
 */
#ifndef CG_KAFKA_H
#define CG_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

struct cg_conf;

/*
 * A new rd_kafka_conf_t: `defaults` ("key", "value", ..., NULL; may be
 * NULL) then the configuration's kafka.* pairs. Returns NULL with errbuf
 * naming the key librdkafka refused (never its value: it may be secret).
 */
rd_kafka_conf_t *cg_kafka_conf(const struct cg_conf *conf,
                               const char *const *defaults, char *errbuf,
                               size_t errsz);

/* The value of the last header `name` of a message as a NUL-terminated
 * copy into out, or "" when absent. */
void cg_kafka_header(const rd_kafka_message_t *msg, const char *name, char *out,
                     size_t outsz);

#endif
