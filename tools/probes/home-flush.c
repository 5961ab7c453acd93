/* pmalloc's op pattern: a lock, a header load (a miss), a one-line record stored
 * non-temporally, a fence, then two home lines stored in the cache. The previous op's
 * homes are made durable at the next op's fence by clwb, by clflushopt, by storing them
 * again with movnti, or batched: every H ops, the last H ops' homes (H = 0: never
 * flushed). ns per op. */
#include "common.h"

static volatile long counter;

int main(void) {
    size_t size = 64u << 20, objs = 40u << 20;
    char *p = map_pool("probe-home", size);
    char *log = p + (48u << 20);
    int n = 200000;
    const char *rows[] = {"record only", "clwb homes", "movnti homes", "clflushopt homes"};
    for (int rep = 0; rep < 2; rep++) {
        for (int row = 0; row < 4; row++) {
            unsigned x = 1;
            long *pa = 0, *pb = 0;
            size_t lp = 0;
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
                size_t oa = (next_rand(&x) % (objs / 64)) * 64;
                size_t ob = (next_rand(&x) % (objs / 64)) * 64;
                long h = *(volatile long *)(p + oa);
                __m128i v = _mm_set1_epi64x(i + h);
                for (int k = 0; k < 4; k++) _mm_stream_si128((__m128i *)(log + lp + 16 * k), v);
                lp = (lp + 64) % (8u << 20);
                _mm_sfence();
                pa = (long *)(p + oa);
                pb = (long *)(p + ob);
                pa[0] = i;
                pa[1] = i + 1;
                pb[0] = i;
            }
            _mm_sfence();
            if (rep == 1) printf("%-18s %6.1f ns per op\n", rows[row], (double)(now_ns() - t0) / n);
        }
        static const int hs[] = {1, 2, 4, 8, 16};
        for (int hi = 0; hi < 5; hi++) {
            int h = hs[hi], np = 0;
            long *pend[64];
            unsigned x = 1;
            size_t lp = 0;
            uint64_t t0 = now_ns();
            for (int i = 0; i < n; i++) {
                __sync_fetch_and_add(&counter, 1);
                if (np >= 2 * h) {
                    for (int k = 0; k < np; k++) _mm_clwb(pend[k]);
                    np = 0;
                }
                size_t oa = (next_rand(&x) % (objs / 64)) * 64;
                size_t ob = (next_rand(&x) % (objs / 64)) * 64;
                long hd = *(volatile long *)(p + oa);
                __m128i v = _mm_set1_epi64x(i + hd);
                for (int k = 0; k < 4; k++) _mm_stream_si128((__m128i *)(log + lp + 16 * k), v);
                lp = (lp + 64) % (8u << 20);
                _mm_sfence();
                long *a = (long *)(p + oa), *b = (long *)(p + ob);
                a[0] = i;
                a[1] = i + 1;
                b[0] = i;
                pend[np++] = a;
                pend[np++] = b;
            }
            _mm_sfence();
            if (rep == 1) printf("clwb every %2d ops  %6.1f ns per op\n", h, (double)(now_ns() - t0) / n);
        }
    }
    return 0;
}
