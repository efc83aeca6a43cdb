/*
 * offsets — which Kafka offsets of the jobs topic may be committed.
 *
 * Jobs finish out of order (a throttled subscription takes longer than its
 * neighbours), but an offset may only be stored once every job below it is
 * finished: otherwise a crash would skip the slow job for ever. For each
 * partition this keeps the offsets taken, in arrival order, and answers the
 * watermark: the lowest unfinished offset, or one past the last finished
 * when none is open. Pure bookkeeping: no Kafka calls.
 */
#ifndef CG_OFFSETS_H
#define CG_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

struct cg_offsets;

struct cg_offsets *cg_offsets_new(void);
void cg_offsets_free(struct cg_offsets *o);

/* A message at `offset` was taken from `partition` (offsets of a partition
 * arrive in increasing order; a lower one restarts that partition). */
void cg_offsets_begin(struct cg_offsets *o, int32_t partition, int64_t offset);

/*
 * The job at offset is finished. Returns the partition's new watermark when
 * it moved (the offset to store), -1 otherwise (also for an offset that is
 * not tracked, e.g. of a revoked partition).
 */
int64_t cg_offsets_finish(struct cg_offsets *o, int32_t partition,
                          int64_t offset);

/* The offset to store for partition now, or -1 when nothing was taken. */
int64_t cg_offsets_watermark(const struct cg_offsets *o, int32_t partition);

/* Forgets a partition (revoked or lost). */
void cg_offsets_forget(struct cg_offsets *o, int32_t partition);

/* Jobs taken and not finished, over all partitions. */
size_t cg_offsets_open(const struct cg_offsets *o);

#endif
