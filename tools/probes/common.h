/* Shared by the probes: a pool-like mapping of a /dev/shm file and a clock. */
#include <fcntl.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* `size` bytes of /dev/shm/<name>, mapped shared and touched (tmpfs: memory standing in
 * for pmem, as pmbench's pools). */
static char *map_pool(const char *name, size_t size) {
    char path[256];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        perror(path);
        exit(1);
    }
    char *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    memset(p, 0, size);
    unlink(path);
    return p;
}

static inline unsigned next_rand(unsigned *x) {
    *x = *x * 1103515245u + 12345u;
    return *x >> 8;
}
