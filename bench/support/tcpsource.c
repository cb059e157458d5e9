/*
 * tcpsource: the sending end of bench/io's guest -> host TCP test (tcpsink's counterpart): connect to HOST:PORT,
 * write BYTES bytes from a 256 KiB buffer (each write() as large as the socket takes, so the guest's work is the
 * network stack's, not a byte loop), half-close, and wait for the peer to close. Built on the host (gcc -static)
 * by bench/support/initramfs.ts and put into the bench's initramfs as /bin/tcpsource.
 *
 *   tcpsource HOST PORT BYTES
 *
 * Prints one line: "tcpsource: BYTES bytes in SECONDS s" (from connect to the peer's close, the guest's clock).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char buf[256 * 1024];

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: tcpsource HOST PORT BYTES\n");
    return 2;
  }
  long port = strtol(argv[2], NULL, 10);
  long long bytes = strtoll(argv[3], NULL, 10);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  if (port < 1 || port > 65535 || bytes <= 0 || inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) {
    fprintf(stderr, "tcpsource: HOST must be an IPv4 address, PORT 1-65535, BYTES > 0\n");
    return 2;
  }
  /* One byte value (the data's content is not what is measured): gcc vectorizes a per-byte pattern (i * 7 + 1) with
     SSE shuffles and packs, which the soft engine replays one by one (~74k replays, ~3% of tcpout's guest
     instructions, inside the CPU time bench/io counts for the test); memset is a few stores per 64 bytes. */
  memset(buf, 0x5a, sizeof buf);
  int s = -1;
  for (int tries = 0; tries < 600; tries++) {
    s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) { perror("tcpsource: socket"); return 1; }
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) break;
    close(s);
    s = -1;
    usleep(100 * 1000);
  }
  if (s < 0) { perror("tcpsource: connect"); return 1; }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long long left = bytes;
  while (left > 0) {
    size_t n = left < (long long)sizeof buf ? (size_t)left : sizeof buf;
    ssize_t w = write(s, buf, n);
    if (w < 0) { perror("tcpsource: write"); return 1; }
    left -= w;
  }
  shutdown(s, SHUT_WR);
  while (read(s, buf, sizeof buf) > 0) {}
  clock_gettime(CLOCK_MONOTONIC, &t1);
  close(s);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("tcpsource: %lld bytes in %.3f s\n", bytes, secs);
  return 0;
}
