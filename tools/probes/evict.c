/* Does a flush keep the line in the cache? Store to a line, flush it (or not), fence,
 * then time one load of it (rdtscp cycles, mean of 10,000). */
#include "common.h"
#include <x86intrin.h>

int main(void) {
    char *p = map_pool("probe-evict", 1u << 20);
    memset(p, 1, 1u << 20);
    const char *rows[] = {"stored (no flush)", "stored, clwb", "stored, clflushopt"};
    for (int row = 0; row < 3; row++) {
        uint64_t total = 0;
        int n = 10000;
        for (int i = 0; i < n; i++) {
            volatile long *q = (long *)(p + (i % 1000) * 128);
            *q = i;
            if (row == 1) _mm_clwb((void *)q);
            if (row == 2) _mm_clflushopt((void *)q);
            _mm_sfence();
            _mm_lfence();
            unsigned aux;
            uint64_t t0 = __rdtscp(&aux);
            long v = *q;
            uint64_t t1 = __rdtscp(&aux);
            total += t1 - t0 + (uint64_t)(v & 0);
        }
        printf("%-20s load after: %6.1f cycles\n", rows[row], (double)total / n);
    }
    return 0;
}
