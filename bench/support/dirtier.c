// dirtier MIB RATE: dirty a MIB MiB buffer in guest RAM at RATE MiB/s, for bench/migrate's loaded guest.
//
// A migration copies pages, so what loads it is the number of distinct 4 KiB pages written per second, not how many
// bytes the guest computes: one 64-bit store per page dirties it. Pages are written round-robin over the buffer, so
// a pre-copy round finds up to the whole buffer dirty. Paced by CLOCK_MONOTONIC in 1 ms steps: at every step the
// pages due since the start are written, then it sleeps. It never forks (a shell loop of `dd` forks per block, and
// a fork costs tens of ms on a software CPU, so such a loop fell far short of its rate). Every 5 s it writes the rate
// it reached over that span to stderr as "dirtier: N.N MiB/s".
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: dirtier MIB RATE_MIB_S\n");
    return 2;
  }
  long mib = atol(argv[1]);
  double rate = atof(argv[2]);
  if (mib < 1 || mib > 4096 || !(rate > 0)) {
    fprintf(stderr, "dirtier: MIB 1 to 4096, RATE above 0\n");
    return 2;
  }
  size_t pages = (size_t)mib * (1 << 20) / PAGE;
  uint8_t *buf = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (buf == MAP_FAILED) {
    perror("dirtier: mmap");
    return 1;
  }
  double pagesPerSecond = rate * (1 << 20) / PAGE;
  double start = now(), spanStart = start;
  uint64_t written = 0, spanWritten = 0, value = 0x9e3779b97f4a7c15ull;
  size_t next = 0;
  const struct timespec step = {0, 1000000};
  for (;;) {
    double t = now();
    uint64_t due = (uint64_t)((t - start) * pagesPerSecond);
    while (written < due) {
      value = value * 6364136223846793005ull + 1442695040888963407ull;
      *(volatile uint64_t *)(buf + next * PAGE + (value >> 61) * 8) = value;
      next = next + 1 == pages ? 0 : next + 1;
      written++;
      spanWritten++;
    }
    if (t - spanStart >= 5) {
      fprintf(stderr, "dirtier: %.1f MiB/s\n", spanWritten * (double)PAGE / (1 << 20) / (t - spanStart));
      spanStart = t;
      spanWritten = 0;
    }
    nanosleep(&step, NULL);
  }
}
