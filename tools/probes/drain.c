/* What waits for a non-temporal line: the sfence, a locked instruction, later work,
 * later stores. Each step stores one line of a random place in 64 MiB with movntdq,
 * then does what its row says; ns per step. */
#include "common.h"

static volatile long counter;
static char scratch[4096];

static inline long alu(long a, int n) { /* a dependent chain, no memory */
    for (int j = 0; j < n; j++) {
        a = a * 6364136223846793005L + 1442695040888963407L;
        __asm__ volatile("" : "+r"(a));
    }
    return a;
}

static inline void stores(int n, long v) {
    for (int j = 0; j < n; j++) ((volatile long *)scratch)[j & 511] = v;
}

int main(void) {
    size_t size = 64u << 20;
    char *p = map_pool("probe-drain", size);
    const char *rows[] = {
        "nt line only",           "nt line, sfence",
        "nt line, locked add",    "nt line, 100 mul, sfence",
        "nt line, sfence, 100 mul", "100 mul only",
        "nt line, 200 stores, sfence", "nt line, sfence, 200 stores",
        "nt line, sfence, 40 stores",
    };
    int nrows = sizeof rows / sizeof rows[0], n = 200000;
    long a = 1;
    for (int rep = 0; rep < 3; rep++) {
        for (int row = 0; row < nrows; row++) {
            unsigned x = 1;
            uint64_t t0 = now_ns();
            for (int i = 0; i < n; i++) {
                size_t off = (next_rand(&x) % (size / 64)) * 64;
                __m128i v = _mm_set1_epi64x(i);
                if (row != 5)
                    for (int k = 0; k < 4; k++) _mm_stream_si128((__m128i *)(p + off + 16 * k), v);
                switch (row) {
                case 1: _mm_sfence(); break;
                case 2: __sync_fetch_and_add(&counter, 1); break;
                case 3: a = alu(a, 100); _mm_sfence(); break;
                case 4: _mm_sfence(); a = alu(a, 100); break;
                case 5: a = alu(a, 100); break;
                case 6: stores(200, i); _mm_sfence(); break;
                case 7: _mm_sfence(); stores(200, i); break;
                case 8: _mm_sfence(); stores(40, i); break;
                }
            }
            _mm_sfence();
            if (rep == 2) printf("%-30s %6.1f ns\n", rows[row], (double)(now_ns() - t0) / n);
        }
    }
    return (int)(a & 0);
}
