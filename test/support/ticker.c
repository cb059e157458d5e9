// ticker: the continuity counter of test/manager-migrate.test.ts's boot test. Prints "C<n> <t>\n" on stdout for
// n = 1, 2, ..., t being the guest's CLOCK_MONOTONIC in microseconds since the program started, read when it woke for
// value n; one value per 10 ms.
//
// The deadlines are absolute, on a 10 ms grid from the start (clock_nanosleep with TIMER_ABSTIME), so a late wake-up
// does not push the later ones back. When it wakes late by more than a period, it prints one value and sleeps to the
// next point of the grid still ahead: the values count what it printed, t says when, so the interval between two
// values on the guest's clock is the time the guest went without running it (10 ms when nothing is late). A missing
// value on the console means the console lost a line. Across a pause (snapshot, live migration) the guest's clock
// stands still, so a correct switch-over costs the guest no more than its usual lateness; the host sees the pause as
// the step in (arrival time - t).
//
// It never catches up by printing the values it owes back to back: on the software CPU under a loaded host a line on
// the serial console can cost the guest milliseconds, and a ticker printing back to back became CPU-bound: at the
// normal priority it fell further behind (2.5 s in 10 s beside the test's fork-heavy shell loops); at a real-time
// priority it would take the guest's CPU from everything else. Printing at most one value per period keeps it a
// sleeper, which the scheduler wakes at once.
//
// A shell loop did this before (`echo C$i; usleep 10000`): each value forked usleep, which on the software CPU let it
// print 1-4 values a second, so the test could not bound the gap below seconds. This program never forks, and writes
// each line with one write(2), so a line reaches the tty whole (other writers' lines go before or after it).
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 10000000LL

static long long ns_since(const struct timespec *start, const struct timespec *t) {
  return (t->tv_sec - start->tv_sec) * 1000000000LL + (t->tv_nsec - start->tv_nsec);
}

int main(void) {
  struct timespec start, now;
  if (clock_gettime(CLOCK_MONOTONIC, &start) != 0) {
    perror("ticker: clock_gettime");
    return 1;
  }
  long long slot = 0; // the grid point slept to: start + slot * 10 ms
  for (unsigned long long n = 1;; n++) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long due = ns_since(&start, &now) / PERIOD_NS + 1; // the next grid point ahead
    slot = due > slot + 1 ? due : slot + 1;
    long long ns = start.tv_nsec + slot * PERIOD_NS;
    struct timespec deadline = {start.tv_sec + ns / 1000000000LL, ns % 1000000000LL};
    int e;
    // clock_nanosleep returns the error number itself; EINTR (a signal) means sleep on to the same deadline.
    while ((e = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL)) == EINTR) {
    }
    if (e != 0) {
      fprintf(stderr, "ticker: clock_nanosleep: error %d\n", e);
      return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    char line[64];
    int len = snprintf(line, sizeof line, "C%llu %lld\n", n, ns_since(&start, &now) / 1000);
    for (int off = 0; off < len;) {
      ssize_t w = write(1, line + off, len - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return 1; // the console is gone
      off += (int)w;
    }
  }
}
