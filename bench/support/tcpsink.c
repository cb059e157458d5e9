/*
 * tcpsink: the receiving end of bench/io's TCP test, as iperf's server is: accept one connection, read it to its end
 * into a 256 KiB buffer and throw the bytes away. Built on the host (gcc -static) by bench/support/initramfs.ts and put
 * into the bench's initramfs as /bin/tcpsink.
 *
 *   tcpsink PORT
 *
 * Why not busybox `nc -l -p PORT | wc -c`: busybox wc counts with one getc() per byte (about 25 guest instructions
 * a byte), which made that pipeline a test of the guest CPU's byte loop rather than of the network path: on the soft
 * engine 70% of the guest's time in the TCP test went to wc (its RIP sampled at every run-loop slice). Here each
 * read() takes whatever the socket holds, so the guest's work is the network stack's and one copy to user space.
 * Prints one line: "tcpsink: BYTES bytes in SECONDS s" (from accept to EOF, CLOCK_MONOTONIC, the guest's clock).
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
  if (argc < 2) {
    fprintf(stderr, "usage: tcpsink PORT\n");
    return 2;
  }
  long port = strtol(argv[1], NULL, 10);
  if (port < 1 || port > 65535) {
    fprintf(stderr, "tcpsink: PORT must be 1-65535\n");
    return 2;
  }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) { perror("tcpsink: socket"); return 1; }
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("tcpsink: bind"); return 1; }
  if (listen(s, 1) < 0) { perror("tcpsink: listen"); return 1; }
  int c = accept(s, NULL, NULL);
  if (c < 0) { perror("tcpsink: accept"); return 1; }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long long total = 0;
  for (;;) {
    ssize_t n = read(c, buf, sizeof buf);
    if (n < 0) { perror("tcpsink: read"); return 1; }
    if (n == 0) break;
    total += n;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  close(c);
  close(s);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("tcpsink: %lld bytes in %.3f s\n", total, secs);
  return 0;
}
