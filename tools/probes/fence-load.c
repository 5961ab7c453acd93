/* Does an sfence hold back later loads? Each step makes one random line of a 64 MiB
 * mapping pending (a store and clwb, or a non-temporal line), fences, and takes one
 * step of a pointer chase through 64 MiB of DRAM (a dependent load that misses the
 * caches), in the order its row says; ns per step. If the fence held the load back,
 * "sfence, then load" would cost the fence plus the miss; it costs the larger. */
#include "common.h"

static volatile long counter;

int main(void) {
    size_t size = 64u << 20, lines = (64u << 20) / 64;
    char *p = map_pool("probe-fence-load", size);
    long *chase = aligned_alloc(64, lines * 64);
    unsigned *perm = malloc(lines * sizeof *perm);
    if (!chase || !perm) return 1;
    /* One cycle through every line in random order: each load's address is the last
     * load's value, so no two misses overlap. */
    for (size_t i = 0; i < lines; i++) perm[i] = (unsigned)i;
    unsigned s = 7;
    for (size_t i = lines - 1; i > 0; i--) {
        size_t j = next_rand(&s) % (i + 1);
        unsigned t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < lines; i++) chase[perm[i] * 8] = (long)perm[(i + 1) % lines] * 8;
    const char *rows[] = {
        "load only",
        "clwb line, sfence",
        "clwb line, sfence, load",
        "clwb line, load, sfence",
        "clwb line, sfence, load, locked add",
        "nt line, sfence",
        "nt line, sfence, load",
    };
    int nrows = sizeof rows / sizeof rows[0], n = 200000;
    long j = 0;
    for (int rep = 0; rep < 3; rep++) {
        for (int row = 0; row < nrows; row++) {
            unsigned x = 1;
            uint64_t t0 = now_ns();
            for (int i = 0; i < n; i++) {
                size_t off = (next_rand(&x) % (size / 64)) * 64;
                if (row >= 1 && row <= 4) {
                    *(volatile long *)(p + off) = i;
                    _mm_clwb(p + off);
                } else if (row >= 5) {
                    __m128i v = _mm_set1_epi64x(i);
                    for (int k = 0; k < 4; k++) _mm_stream_si128((__m128i *)(p + off + 16 * k), v);
                }
                switch (row) {
                case 0: j = ((volatile long *)chase)[j]; break;
                case 1: _mm_sfence(); break;
                case 2: _mm_sfence(); j = ((volatile long *)chase)[j]; break;
                case 3: j = ((volatile long *)chase)[j]; _mm_sfence(); break;
                case 4:
                    _mm_sfence();
                    j = ((volatile long *)chase)[j];
                    __sync_fetch_and_add(&counter, 1);
                    break;
                case 5: _mm_sfence(); break;
                case 6: _mm_sfence(); j = ((volatile long *)chase)[j]; break;
                }
            }
            _mm_sfence();
            if (rep == 2) printf("%-36s %6.1f ns\n", rows[row], (double)(now_ns() - t0) / n);
        }
    }
    return (int)(j & 0);
}
