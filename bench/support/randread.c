/*
 * randread: 4 KiB random reads with O_DIRECT at queue depth 1, the fio-like part of bench/io that busybox lacks.
 * Built on the host (gcc -static) by bench/support/initramfs.ts and put into the bench's initramfs as /bin/randread.
 *
 *   randread DEVICE COUNT [SEED]
 *
 * Reads COUNT blocks at 4 KiB-aligned offsets drawn uniformly (xorshift64) over the device, each one pread()
 * into an aligned buffer with O_DIRECT so every read reaches the device instead of the guest's page cache.
 * Prints one line: "randread: COUNT reads in SECONDS s, IOPS iops" (CLOCK_MONOTONIC, the guest's clock).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: randread DEVICE COUNT [SEED]\n");
    return 2;
  }
  long count = strtol(argv[2], NULL, 10);
  uint64_t x = argc > 3 ? strtoull(argv[3], NULL, 10) : 88172645463325252ull;
  if (count < 1 || x == 0) {
    fprintf(stderr, "randread: COUNT must be >= 1 and SEED non-zero\n");
    return 2;
  }
  int fd = open(argv[1], O_RDONLY | O_DIRECT);
  if (fd < 0) { perror("randread: open"); return 1; }
  off_t size = lseek(fd, 0, SEEK_END);
  uint64_t blocks = (uint64_t)size / BLOCK;
  if (blocks == 0) { fprintf(stderr, "randread: %s is smaller than one block\n", argv[1]); return 1; }
  void *buf;
  if (posix_memalign(&buf, BLOCK, BLOCK) != 0) { fprintf(stderr, "randread: no memory\n"); return 1; }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < count; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    off_t off = (off_t)(x % blocks) * BLOCK;
    ssize_t n = pread(fd, buf, BLOCK, off);
    if (n != BLOCK) { fprintf(stderr, "randread: pread at %lld returned %zd\n", (long long)off, n); return 1; }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("randread: %ld reads in %.3f s, %.0f iops\n", count, s, (double)count / s);
  return 0;
}
