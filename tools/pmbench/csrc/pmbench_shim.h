/*
 * pmbench_shim.h -- the C side of pmbench's PMDK (libpmemobj) workloads.
 *
 * Every timed loop runs here, in C, so PMDK is measured without a Rust-to-C call per
 * operation: Rust hands over the precomputed operation arrays once, the loop runs, and
 * the elapsed nanoseconds (CLOCK_MONOTONIC, loop only) come back.
 *
 * Return values: 0 on success, otherwise a negative PMB_E_* code naming the step that
 * failed; pmb_errormsg() then holds PMDK's message and *pmb_failed_op() the index of the
 * operation that failed (or 0 when the failure was not in a loop).
 */
#ifndef PMBENCH_SHIM_H
#define PMBENCH_SHIM_H

#include <stdint.h>

#define PMB_E_CREATE -1 /* pmemobj_create failed */
#define PMB_E_OPEN -2 /* pmemobj_open failed */
#define PMB_E_ROOT -3 /* pmemobj_root failed */
#define PMB_E_ALLOC -4 /* an atomic allocation failed */
#define PMB_E_TX -5 /* a transaction aborted */
#define PMB_E_NOT_PMEM -6 /* the mapping is not treated as pmem (PMEM_IS_PMEM_FORCE unset?) */
#define PMB_E_ARG -7 /* an argument is out of range */
#define PMB_E_FORK -8 /* the crashing child could not be run */
#define PMB_E_VERIFY -9 /* data read back is not what the workload wrote */
#define PMB_E_THREAD -10 /* a worker thread could not be started */

/* A pool holding `nslots` objects, one PMEMoid slot each in the root object. */
typedef struct pmb_pool pmb_pool;

/* Creates the pool file `path` of `pool_size` bytes and allocates slot i with sizes[i]. */
int pmb_pool_create(const char *path, uint64_t pool_size, uint32_t nslots,
		const uint32_t *sizes, pmb_pool **out);
/* Closes the pool (the file stays). */
void pmb_pool_close(pmb_pool *p);

/*
 * w1, w2, w3, w6, w7, mixed: n transactions; op i adds [off[i], off[i] + l) of object
 * obj[i] to the transaction and stores 8-byte words of value first_value + i over it,
 * where l is lens[i] when lens is not NULL (mixed) and len otherwise.
 * threads is 1, or 2 (w7): ops [0, n/2) and [n/2, n) then run concurrently, and the
 * clock runs until both threads are done.
 */
int pmb_tx_update(pmb_pool *p, const uint32_t *obj, const uint32_t *off,
		const uint32_t *lens, uint64_t n, uint32_t len, uint32_t threads,
		uint64_t first_value, uint64_t *elapsed_ns);
/* w4: n atomic pairs: pmemobj_free(slot[i]) then pmemobj_alloc(size[i]) into it. */
int pmb_atomic_realloc(pmb_pool *p, const uint32_t *slot, const uint32_t *size,
		uint64_t n, uint64_t *elapsed_ns);
/*
 * w5: n transactions; each frees the object in slot[i] and allocates a new one of
 * `size` bytes into the slot (pmemobj_tx_free + pmemobj_tx_alloc + the slot update).
 */
int pmb_tx_realloc(pmb_pool *p, const uint32_t *slot, uint64_t n, uint32_t size,
		uint64_t *elapsed_ns);

/* open: creates `path` and allocates n objects of sizes[i] (not timed). */
int pmb_open_build(const char *path, uint64_t pool_size, const uint32_t *sizes,
		uint64_t n);
/*
 * open: times pmemobj_open, the first allocation after it, and a walk over every
 * object (reading its first word); the allocation is freed again before closing.
 * `mark` (may be NULL) is called between the phases, for the instruction counter.
 */
int pmb_open_measure(const char *path, void (*mark)(void), uint64_t *open_ns,
		uint64_t *alloc_ns, uint64_t *walk_ns, uint64_t *walked);

/*
 * recover: creates `path` with one object of log_bytes bytes, commits a known pattern,
 * then runs a child process that adds the object to a transaction in chunk-byte
 * ranges, overwrites it, and exits before the commit (a crash with log_bytes logged).
 * The caller must be single-threaded (fork).
 */
int pmb_recover_prepare(const char *path, uint64_t pool_size, uint64_t log_bytes,
		uint64_t chunk);
/*
 * recover: times the pmemobj_open that rolls the transaction back, checks the
 * object holds the committed pattern again, then times a clean reopen.
 */
int pmb_recover_measure(const char *path, void (*mark)(void), uint64_t log_bytes,
		uint64_t *recover_ns, uint64_t *clean_open_ns);

/* PMDK's message for the last failure in this thread. */
const char *pmb_errormsg(void);
/* The operation index of the last failure in a loop. */
uint64_t pmb_failed_op(void);

#endif
