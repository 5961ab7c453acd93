/*
 * pmbench_shim.c -- PMDK (libpmemobj) side of pmbench's workloads.
 *
 * See pmbench_shim.h for the contract of each function. The rules kept here:
 * - every input array is checked against the pool before the clock starts, so the timed
 *   loops do no validation a real program would not do;
 * - the clock (CLOCK_MONOTONIC) brackets the loop only: no setup, no checks;
 * - objects are reached through a DRAM table of direct pointers filled at setup (the
 *   Rust engine is expected to resolve its handles once as well), so the loops measure
 *   transactions and allocations, not pointer translation.
 */
#define _GNU_SOURCE
#include "pmbench_shim.h"

#include <errno.h>
#include <libpmem.h>
#include <libpmemobj.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LAYOUT "pmbench"
#define TYPE_NUM 1
/* Fill byte of the committed data in the recover workload, and of the torn update. */
#define RECOVER_OLD 0xA5
#define RECOVER_NEW 0x5A

/* The root object: one PMEMoid slot per workload object. */
struct pmb_root {
	uint64_t nslots;
	PMEMoid slots[];
};

struct pmb_pool {
	PMEMobjpool *pop;
	struct pmb_root *root;
	uint32_t nslots;
	uint32_t *sizes; /* DRAM copy of the slot sizes, for argument checks */
	char **ptrs; /* DRAM table of direct pointers, for the update loops */
};

static __thread const char *last_msg = "";
static __thread uint64_t last_op;

const char *
pmb_errormsg(void)
{
	return last_msg;
}

uint64_t
pmb_failed_op(void)
{
	return last_op;
}

/* fail -- records PMDK's message and the failing operation, returns code */
static int
fail(int code, uint64_t op)
{
	last_msg = pmemobj_errormsg();
	last_op = op;
	return code;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
call_mark(void (*mark)(void))
{
	if (mark != NULL)
		mark();
}

/* timed_open -- pmemobj_open between two marks; *ns gets the time of the open alone */
static PMEMobjpool *
timed_open(const char *path, void (*mark)(void), uint64_t *ns)
{
	call_mark(mark);
	uint64_t t0 = now_ns();
	PMEMobjpool *pop = pmemobj_open(path, LAYOUT);
	*ns = now_ns() - t0;
	call_mark(mark);
	if (pop == NULL)
		fail(PMB_E_OPEN, 0);
	return pop;
}

/* create_pool -- creates the pool file and checks it is treated as pmem */
static PMEMobjpool *
create_pool(const char *path, uint64_t pool_size, int *rc)
{
	PMEMobjpool *pop = pmemobj_create(path, LAYOUT, (size_t)pool_size, 0600);
	if (pop == NULL) {
		*rc = fail(PMB_E_CREATE, 0);
		return NULL;
	}
	/*
	 * A pool on tmpfs is pmem only with PMEM_IS_PMEM_FORCE=1; without it PMDK would
	 * msync and the figures would mean something else.
	 */
	PMEMoid probe = pmemobj_root(pop, 64);
	if (OID_IS_NULL(probe) || !pmem_is_pmem(pmemobj_direct(probe), 64)) {
		pmemobj_close(pop);
		last_msg = "pool is not treated as pmem: set PMEM_IS_PMEM_FORCE=1";
		last_op = 0;
		*rc = PMB_E_NOT_PMEM;
		return NULL;
	}
	*rc = 0;
	return pop;
}

int
pmb_pool_create(const char *path, uint64_t pool_size, uint32_t nslots,
		const uint32_t *sizes, pmb_pool **out)
{
	int rc;
	pmb_pool *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return PMB_E_ARG;
	p->sizes = malloc(sizeof(uint32_t) * nslots);
	p->ptrs = malloc(sizeof(char *) * nslots);
	if (p->sizes == NULL || p->ptrs == NULL) {
		rc = PMB_E_ARG;
		goto err_free;
	}
	p->pop = create_pool(path, pool_size, &rc);
	if (p->pop == NULL)
		goto err_free;
	PMEMoid root = pmemobj_root(p->pop,
			sizeof(struct pmb_root) + sizeof(PMEMoid) * nslots);
	if (OID_IS_NULL(root)) {
		rc = fail(PMB_E_ROOT, 0);
		goto err_close;
	}
	p->root = pmemobj_direct(root);
	p->nslots = nslots;
	p->root->nslots = nslots;
	pmemobj_persist(p->pop, &p->root->nslots, sizeof(p->root->nslots));
	for (uint32_t i = 0; i < nslots; i++) {
		if (pmemobj_alloc(p->pop, &p->root->slots[i], sizes[i], TYPE_NUM,
				NULL, NULL) != 0) {
			rc = fail(PMB_E_ALLOC, i);
			goto err_close;
		}
		p->sizes[i] = sizes[i];
		p->ptrs[i] = pmemobj_direct(p->root->slots[i]);
	}
	*out = p;
	return 0;

err_close:
	pmemobj_close(p->pop);
err_free:
	free(p->sizes);
	free(p->ptrs);
	free(p);
	return rc;
}

void
pmb_pool_close(pmb_pool *p)
{
	if (p == NULL)
		return;
	pmemobj_close(p->pop);
	free(p->sizes);
	free(p->ptrs);
	free(p);
}

/* op_len -- bytes op i updates: lens[i], or len for one-size workloads */
static inline uint32_t
op_len(const uint32_t *lens, uint32_t len, uint64_t i)
{
	return lens != NULL ? lens[i] : len;
}

/* check_updates -- every range [off, off + len) lies inside its object */
static int
check_updates(const pmb_pool *p, const uint32_t *obj, const uint32_t *off,
		const uint32_t *lens, uint64_t n, uint32_t len)
{
	for (uint64_t i = 0; i < n; i++) {
		uint32_t l = op_len(lens, len, i);
		if (l == 0 || l % 8 != 0 || obj[i] >= p->nslots || off[i] % 8 != 0 ||
				(uint64_t)off[i] + l > p->sizes[obj[i]]) {
			last_op = i;
			return PMB_E_ARG;
		}
	}
	return 0;
}

/*
 * update_one -- one transaction: snapshot [dst, dst + len), store v over it.
 * A function of its own so the caller's loop state lives outside TX_BEGIN's setjmp
 * frame (GCC never inlines a function that calls setjmp). Returns whether it aborted.
 */
static int
update_one(PMEMobjpool *pop, uint64_t *dst, uint32_t len, uint64_t v)
{
	/* volatile: written after TX_BEGIN's setjmp, read after a longjmp */
	volatile int aborted = 0;
	TX_BEGIN(pop) {
		pmemobj_tx_add_range_direct(dst, len);
		for (uint32_t w = 0; w < len / 8; w++)
			dst[w] = v;
	} TX_ONABORT {
		aborted = 1;
	} TX_END
	return aborted;
}

/* update_loop -- the transactions of one thread; returns 0 or PMB_E_TX */
static int
update_loop(pmb_pool *p, const uint32_t *obj, const uint32_t *off,
		const uint32_t *lens, uint64_t n, uint32_t len, uint64_t first_value)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t *dst = (uint64_t *)(p->ptrs[obj[i]] + off[i]);
		if (update_one(p->pop, dst, op_len(lens, len, i), first_value + i))
			return fail(PMB_E_TX, i);
	}
	return 0;
}


struct worker {
	pmb_pool *p;
	const uint32_t *obj;
	const uint32_t *off;
	uint64_t n;
	uint32_t len;
	uint64_t first_value;
	const int *go; /* 0: wait, 1: run, -1: give up (the other worker failed to start) */
	int rc;
	const char *msg;
	uint64_t op;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	int go;
	while ((go = __atomic_load_n(w->go, __ATOMIC_ACQUIRE)) == 0)
		sched_yield();
	if (go < 0)
		return NULL;
	w->rc = update_loop(w->p, w->obj, w->off, NULL, w->n, w->len, w->first_value);
	/* the failure record is thread-local: hand it to the caller's thread */
	w->msg = last_msg;
	w->op = last_op;
	return NULL;
}

/* update_2threads -- ops [0, n/2) and [n/2, n) on two threads, started together */
static int
update_2threads(pmb_pool *p, const uint32_t *obj, const uint32_t *off, uint64_t n,
		uint32_t len, uint64_t first_value, uint64_t *elapsed_ns)
{
	int go = 0;
	uint64_t half = n / 2;
	struct worker w[2] = {
		{p, obj, off, half, len, first_value, &go, 0, "", 0},
		{p, obj + half, off + half, n - half, len, first_value + half, &go,
			0, "", 0},
	};
	pthread_t tid[2];
	int started = 0;
	while (started < 2 &&
			pthread_create(&tid[started], NULL, worker_main, &w[started]) == 0)
		started++;
	/* both workers start together; the clock runs until both are done */
	uint64_t t0 = now_ns();
	__atomic_store_n(&go, started == 2 ? 1 : -1, __ATOMIC_RELEASE);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	*elapsed_ns = now_ns() - t0;
	if (started < 2)
		return PMB_E_THREAD;
	for (int i = 0; i < 2; i++) {
		if (w[i].rc != 0) {
			last_msg = w[i].msg;
			last_op = w[i].op + (i == 1 ? half : 0);
			return w[i].rc;
		}
	}
	return 0;
}

int
pmb_atomic_realloc(pmb_pool *p, const uint32_t *slot, const uint32_t *size,
		uint64_t n, uint64_t *elapsed_ns)
{
	for (uint64_t i = 0; i < n; i++) {
		if (slot[i] >= p->nslots || size[i] == 0) {
			last_op = i;
			return PMB_E_ARG;
		}
	}
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		PMEMoid *s = &p->root->slots[slot[i]];
		pmemobj_free(s); /* also sets the slot to OID_NULL, atomically */
		if (pmemobj_alloc(p->pop, s, size[i], TYPE_NUM, NULL, NULL) != 0) {
			*elapsed_ns = now_ns() - t0;
			return fail(PMB_E_ALLOC, i);
		}
	}
	*elapsed_ns = now_ns() - t0;
	return 0;
}

/* realloc_one -- one w5 transaction on slot s (see update_one for the split) */
static int
realloc_one(PMEMobjpool *pop, PMEMoid *s, uint32_t size)
{
	volatile int aborted = 0;
	TX_BEGIN(pop) {
		pmemobj_tx_add_range_direct(s, sizeof(*s));
		pmemobj_tx_free(*s);
		*s = pmemobj_tx_alloc(size, TYPE_NUM);
	} TX_ONABORT {
		aborted = 1;
	} TX_END
	return aborted;
}

int
pmb_tx_realloc(pmb_pool *p, const uint32_t *slot, uint64_t n, uint32_t size,
		uint64_t *elapsed_ns)
{
	for (uint64_t i = 0; i < n; i++) {
		if (slot[i] >= p->nslots) {
			last_op = i;
			return PMB_E_ARG;
		}
	}
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		if (realloc_one(p->pop, &p->root->slots[slot[i]], size)) {
			*elapsed_ns = now_ns() - t0;
			return fail(PMB_E_TX, i);
		}
	}
	*elapsed_ns = now_ns() - t0;
	return 0;
}

int
pmb_tx_update(pmb_pool *p, const uint32_t *obj, const uint32_t *off,
		const uint32_t *lens, uint64_t n, uint32_t len, uint32_t threads,
		uint64_t first_value, uint64_t *elapsed_ns)
{
	int rc = check_updates(p, obj, off, lens, n, len);
	if (rc != 0)
		return rc;
	/* the two-thread workload (w7) has one size */
	if (threads == 2 && lens == NULL)
		return update_2threads(p, obj, off, n, len, first_value, elapsed_ns);
	if (threads != 1)
		return PMB_E_ARG;
	uint64_t t0 = now_ns();
	rc = update_loop(p, obj, off, lens, n, len, first_value);
	*elapsed_ns = now_ns() - t0;
	return rc;
}

/* The open workload's root: a slot for the first allocation after open. */
struct open_root {
	PMEMoid first;
};

int
pmb_open_build(const char *path, uint64_t pool_size, const uint32_t *sizes, uint64_t n)
{
	int rc;
	PMEMobjpool *pop = create_pool(path, pool_size, &rc);
	if (pop == NULL)
		return rc;
	if (OID_IS_NULL(pmemobj_root(pop, sizeof(struct open_root)))) {
		rc = fail(PMB_E_ROOT, 0);
		goto out;
	}
	for (uint64_t i = 0; i < n; i++) {
		/* NULL slot: the objects are reached by iterating the pool, as walked */
		if (pmemobj_alloc(pop, NULL, sizes[i], TYPE_NUM, NULL, NULL) != 0) {
			rc = fail(PMB_E_ALLOC, i);
			goto out;
		}
	}
	rc = 0;
out:
	pmemobj_close(pop);
	return rc;
}

int
pmb_open_measure(const char *path, void (*mark)(void), uint64_t *open_ns,
		uint64_t *alloc_ns, uint64_t *walk_ns, uint64_t *walked)
{
	PMEMobjpool *pop = timed_open(path, mark, open_ns);
	if (pop == NULL)
		return PMB_E_OPEN;
	int rc = 0;
	PMEMoid root = pmemobj_root(pop, sizeof(struct open_root));
	if (OID_IS_NULL(root)) {
		rc = fail(PMB_E_ROOT, 0);
		goto out;
	}
	struct open_root *r = pmemobj_direct(root);

	call_mark(mark);
	uint64_t t0 = now_ns();
	int arc = pmemobj_alloc(pop, &r->first, 128, TYPE_NUM, NULL, NULL);
	*alloc_ns = now_ns() - t0;
	call_mark(mark);
	if (arc != 0) {
		rc = fail(PMB_E_ALLOC, 0);
		goto out;
	}

	call_mark(mark);
	uint64_t count = 0;
	uint64_t sum = 0;
	PMEMoid oid;
	t0 = now_ns();
	POBJ_FOREACH(pop, oid) {
		sum += *(volatile uint64_t *)pmemobj_direct(oid);
		count++;
	}
	*walk_ns = now_ns() - t0;
	call_mark(mark);
	/* the sum only keeps the reads; publish it so it cannot be optimised out */
	__asm__ volatile("" : : "r"(sum));
	*walked = count;
	/* leave the pool as built, for the next round */
	pmemobj_free(&r->first);
out:
	pmemobj_close(pop);
	return rc;
}

/* The recover workload's root: the object a crashed transaction had logged. */
struct recover_root {
	PMEMoid data;
};

/* crash_mid_tx -- the child: log and overwrite the object, exit before commit */
static void
crash_mid_tx(const char *path, uint64_t log_bytes, uint64_t chunk)
{
	PMEMobjpool *pop = pmemobj_open(path, LAYOUT);
	if (pop == NULL)
		_exit(2);
	struct recover_root *r =
		pmemobj_direct(pmemobj_root(pop, sizeof(struct recover_root)));
	char *data = pmemobj_direct(r->data);
	TX_BEGIN(pop) {
		for (uint64_t off = 0; off < log_bytes; off += chunk) {
			pmemobj_tx_add_range_direct(data + off, chunk);
			memset(data + off, RECOVER_NEW, chunk);
		}
		/* the crash: no commit, no close; the stores stay in the file */
		_exit(0);
	} TX_END
	_exit(3);
}

int
pmb_recover_prepare(const char *path, uint64_t pool_size, uint64_t log_bytes,
		uint64_t chunk)
{
	if (chunk == 0 || log_bytes % chunk != 0)
		return PMB_E_ARG;
	int rc;
	PMEMobjpool *pop = create_pool(path, pool_size, &rc);
	if (pop == NULL)
		return rc;
	PMEMoid root = pmemobj_root(pop, sizeof(struct recover_root));
	if (OID_IS_NULL(root)) {
		pmemobj_close(pop);
		return fail(PMB_E_ROOT, 0);
	}
	struct recover_root *r = pmemobj_direct(root);
	if (pmemobj_alloc(pop, &r->data, log_bytes, TYPE_NUM, NULL, NULL) != 0) {
		pmemobj_close(pop);
		return fail(PMB_E_ALLOC, 0);
	}
	pmemobj_memset_persist(pop, pmemobj_direct(r->data), RECOVER_OLD, log_bytes);
	pmemobj_close(pop);

	/* the caller is single-threaded, so the child may use PMDK after fork */
	pid_t pid = fork();
	if (pid < 0)
		return PMB_E_FORK;
	if (pid == 0)
		crash_mid_tx(path, log_bytes, chunk);
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return PMB_E_FORK;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		last_msg = "the crashing child did not reach its crash point";
		return PMB_E_FORK;
	}
	return 0;
}

/* check_rolled_back -- every byte holds the committed pattern again */
static int
check_rolled_back(PMEMobjpool *pop, uint64_t log_bytes)
{
	struct recover_root *r =
		pmemobj_direct(pmemobj_root(pop, sizeof(struct recover_root)));
	const unsigned char *data = pmemobj_direct(r->data);
	if (data == NULL)
		return PMB_E_VERIFY;
	for (uint64_t i = 0; i < log_bytes; i++) {
		if (data[i] != RECOVER_OLD) {
			last_msg = "recovery left bytes of the aborted transaction";
			last_op = i;
			return PMB_E_VERIFY;
		}
	}
	return 0;
}

int
pmb_recover_measure(const char *path, void (*mark)(void), uint64_t log_bytes,
		uint64_t *recover_ns, uint64_t *clean_open_ns)
{
	PMEMobjpool *pop = timed_open(path, mark, recover_ns);
	if (pop == NULL)
		return PMB_E_OPEN;
	int rc = check_rolled_back(pop, log_bytes);
	pmemobj_close(pop);
	if (rc != 0)
		return rc;

	pop = timed_open(path, mark, clean_open_ns);
	if (pop == NULL)
		return PMB_E_OPEN;
	pmemobj_close(pop);
	return 0;
}
