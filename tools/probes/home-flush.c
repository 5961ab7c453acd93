/* pmalloc's op pattern: a lock, a header load (a miss), a one-line record stored
 * non-temporally, a fence, then two home lines stored in the cache. The previous op's
 * homes are made durable at the next op's fence by clwb, by clflushopt, by storing them
 * again with movnti, or batched: clwb of the last H ops' homes every H ops. ns per op. */
#include "common.h"

static volatile long counter;

struct pool {
    char *base, *log;
    size_t objs, lp;
    unsigned x;
};

/* One op after its homes step: header load, record, fence, homes stored at *a, *b. */
static inline void op(struct pool *p, int i, long **a, long **b) {
    size_t oa = (next_rand(&p->x) % (p->objs / 64)) * 64;
    size_t ob = (next_rand(&p->x) % (p->objs / 64)) * 64;
    long h = *(volatile long *)(p->base + oa);
    __m128i v = _mm_set1_epi64x(i + h);
    for (int k = 0; k < 4; k++) _mm_stream_si128((__m128i *)(p->log + p->lp + 16 * k), v);
    p->lp = (p->lp + 64) % (8u << 20);
    _mm_sfence();
    *a = (long *)(p->base + oa);
    *b = (long *)(p->base + ob);
    (*a)[0] = i;
    (*a)[1] = i + 1;
    (*b)[0] = i;
}

int main(void) {
    size_t size = 64u << 20;
    char *base = map_pool("probe-home", size);
    int n = 200000;
    const char *rows[] = {"record only", "clwb homes", "movnti homes", "clflushopt homes"};
    for (int rep = 0; rep < 2; rep++) {
        for (int row = 0; row < 4; row++) {
            struct pool p = {base, base + (48u << 20), 40u << 20, 0, 1};
            long *pa = 0, *pb = 0;
            uint64_t t0 = now_ns();
            for (int i = 0; i < n; i++) {
                __sync_fetch_and_add(&counter, 1);
                if (pa) {
                    if (row == 1) { _mm_clwb(pa); _mm_clwb(pb); }
                    if (row == 2) {
                        _mm_stream_si64((long long *)pa, pa[0]);
                        _mm_stream_si64((long long *)pa + 1, pa[1]);
                        _mm_stream_si64((long long *)pb, pb[0]);
                    }
                    if (row == 3) { _mm_clflushopt(pa); _mm_clflushopt(pb); }
                }
                op(&p, i, &pa, &pb);
            }
            _mm_sfence();
            if (rep == 1) printf("%-18s %6.1f ns per op\n", rows[row], (double)(now_ns() - t0) / n);
        }
        static const int hs[] = {1, 2, 4, 8, 16};
        for (int hi = 0; hi < 5; hi++) {
            struct pool p = {base, base + (48u << 20), 40u << 20, 0, 1};
            int h = hs[hi], np = 0;
            long *pend[64];
            uint64_t t0 = now_ns();
            for (int i = 0; i < n; i++) {
                __sync_fetch_and_add(&counter, 1);
                if (np >= 2 * h) {
                    for (int k = 0; k < np; k++) _mm_clwb(pend[k]);
                    np = 0;
                }
                op(&p, i, &pend[np], &pend[np + 1]);
                np += 2;
            }
            _mm_sfence();
            if (rep == 1) printf("clwb every %2d ops  %6.1f ns per op\n", h, (double)(now_ns() - t0) / n);
        }
    }
    return 0;
}
