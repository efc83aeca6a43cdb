/*
 * devbroker — a Kafka cluster for development and tests, on librdkafka's
 * mock cluster.
 *
 * It stands where a real Kafka stands in the flow (producer -> jobs topic ->
 * workers -> results topic), so producer, workers, integration tests, the
 * demo and the benchmarks all speak the real protocol to it over loopback.
 * The mock cluster lives inside a dummy producer handle and serves its
 * brokers from librdkafka's own threads; this module creates it with the
 * contactguard topics and turns one line of the control protocol into one
 * mock-cluster call. Serving the control port is control.h's job, the
 * process around both is main.c.
 *
 * Control protocol (one command per line, one reply line per command,
 * `ok` or `error <reason>`):
 *   ping                            -> ok
 *   down BROKER | up BROKER         BROKER is an id (1..N) or `all`
 *   rtt BROKER MS                   added round-trip time per response
 *   error APIKEY ERR COUNT          the next COUNT requests of APIKEY fail
 *   broker-error BROKER APIKEY ERR RTT_MS COUNT   same, on one broker, with
 *                                   a delay
 *   clear APIKEY                    drops pending `error` injections
 *   topic-error TOPIC ERR           Metadata answers ERR for TOPIC
 *                                   (NO_ERROR clears it)
 *   create TOPIC PARTITIONS         creates a topic
 *   leader TOPIC PARTITION BROKER   moves a partition's leader
 *   bootstrap                       -> ok <bootstrap servers>
 * APIKEY is a protocol name (Produce, Fetch, Metadata, OffsetCommit, ...)
 * or its number; ERR is a librdkafka error name without the
 * RD_KAFKA_RESP_ERR_ prefix (NOT_LEADER_FOR_PARTITION, _TRANSPORT, ...) or
 * its number.
 */
#ifndef CG_DEVBROKER_H
#define CG_DEVBROKER_H

#include <stddef.h>

#define CG_DEVBROKER_MAX_BROKERS    16
#define CG_DEVBROKER_MAX_PARTITIONS 1024
#define CG_DEVBROKER_MAX_TOPICS     16

struct cg_devbroker_opts {
    int brokers;     /* 1..CG_DEVBROKER_MAX_BROKERS */
    int partitions;  /* for every topic in `topics` */
    int replication; /* 0: min(brokers, 3) */
    /* Topics created at start, NULL-terminated; borrowed. */
    const char *const *topics;
};

struct cg_devbroker;

/*
 * Starts the cluster and creates the topics. On return the brokers are
 * listening on 127.0.0.1 and the topics exist, so the bootstrap address may
 * be handed out at once. NULL with errbuf set on failure.
 */
struct cg_devbroker *cg_devbroker_new(const struct cg_devbroker_opts *opts,
                                      char *errbuf, size_t errsz);

/* "127.0.0.1:PORT,..." (borrowed, lives as long as db). */
const char *cg_devbroker_bootstraps(const struct cg_devbroker *db);

/*
 * Runs one control-protocol line (without its newline) and writes the
 * reply line (without newline) into reply. Returns 0 when the reply is
 * `ok...`, CG_EINVAL when it is `error ...`. Safe to call from any one
 * thread while the brokers serve clients.
 */
int cg_devbroker_exec(struct cg_devbroker *db, const char *line, char *reply,
                      size_t replysz);

/* Stops the brokers (clients see their connections close). NULL is fine. */
void cg_devbroker_free(struct cg_devbroker *db);

#endif
