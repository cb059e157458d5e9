#define _GNU_SOURCE /* memfd_create */
/* Reference for bench/exits: the cost of one port-I/O exit round trip from C, with the same ioctl sequence and
 * the same guest as ringzero's KVM engine (real mode at 0x1000: `mov ecx, N; l: out 0x80, al; dec ecx; jnz l; hlt`).
 * Usage: exits N  -> prints "c <N> <exits> <ns wall> <ns cpu>" (cpu: user + system time of the loop, getrusage).
 * Built at bench time with the host's gcc. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

static long long cpu_ns(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000000000LL + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1000LL;
}

int main(int argc, char **argv) {
  unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], 0, 0) : 100000;
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  if (ioctl(kvm, KVM_GET_API_VERSION, 0) != 12) die("KVM_GET_API_VERSION");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  size_t ram_size = 64 << 20;
  int memfd = memfd_create("exits-ram", MFD_CLOEXEC);
  if (memfd < 0 || ftruncate(memfd, ram_size) < 0) die("memfd");
  unsigned char *ram = mmap(0, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
  if (ram == MAP_FAILED) die("mmap ram");
  struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = ram_size, .userspace_addr = (unsigned long)ram };
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  unsigned char code[] = { 0x66, 0xb9, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >> 24) & 0xff, 0xe6, 0x80, 0x66, 0x49, 0x75, 0xfa, 0xf4 };
  memcpy(ram + 0x1000, code, sizeof code);
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  sregs.cs.selector = 0;
  sregs.cs.base = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  volatile unsigned sink = 0;
  unsigned long exits = 0;
  struct timespec t0, t1;
  long long cpu0 = cpu_ns();
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO) break;
    /* The "device": read the byte the guest wrote. */
    sink += *((unsigned char *)run + run->io.data_offset);
    exits++;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long long cpu = cpu_ns() - cpu0;
  if (run->exit_reason != KVM_EXIT_HLT) { fprintf(stderr, "unexpected exit %u\n", run->exit_reason); return 1; }
  long long ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
  printf("c %u %lu %lld %lld\n", n, exits, ns, cpu);
  return 0;
}
