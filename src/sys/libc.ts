// The host C library through koffi: the few system calls ringzero needs that Node does not expose
// (memfd_create, mmap, ftruncate, ioctl). Every failure becomes an exception naming the call and errno.
import koffi from 'koffi';
import os from 'node:os';

const libc = koffi.load('libc.so.6');

const memfdCreate = libc.func('int memfd_create(const char *name, unsigned int flags)');
const ftruncate = libc.func('int ftruncate(int fd, int64_t length)');
const mmapFn = libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)');
const munmapFn = libc.func('int munmap(void *addr, size_t length)');
const closeFn = libc.func('int close(int fd)');
const lseekFn = libc.func('int64_t lseek(int fd, int64_t offset, int whence)');
const sendfileFn = libc.func('int64_t sendfile(int out_fd, int in_fd, _Inout_ int64_t *offset, size_t count)');

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
export const MAP_SHARED = 1;
export const MAP_PRIVATE = 2;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
/** Place the mapping exactly at the given address, replacing what was there (mmap(2)). */
export const MAP_FIXED = 0x10;
const MFD_CLOEXEC = 1;
const MAP_FAILED = BigInt.asUintN(64, -1n);

export class SysError extends Error {
  constructor(readonly call: string, readonly errno: number) {
    super(`${call} failed: ${errnoName(errno)} (errno ${errno})`);
  }
}

export function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(os.constants.errno)) if (value === errno) return name;
  return `E${errno}`;
}

export function lastErrno(): number {
  return koffi.errno();
}

/** Anonymous memory file: guest RAM lives here so every thread, the KVM engine and snapshots can map it. */
export function memfd(name: string, size: number): number {
  const fd = memfdCreate(name, MFD_CLOEXEC) as number;
  if (fd < 0) throw new SysError('memfd_create', lastErrno());
  if ((ftruncate(fd, size) as number) < 0) {
    const e = lastErrno();
    closeFn(fd);
    throw new SysError('ftruncate', e);
  }
  return fd;
}

/** A mapping of `length` bytes; returns the address and a live ArrayBuffer over it. */
export function mmap(length: number, prot: number, flags: number, fd = -1, offset = 0): { address: bigint; buffer: ArrayBuffer } {
  const p = mmapFn(null, length, prot, flags, fd, offset);
  const address = typeof p === 'bigint' ? p : BigInt(koffi.address(p));
  if (address === MAP_FAILED || address === 0n) throw new SysError('mmap', lastErrno());
  return { address, buffer: koffi.view(p, length) as ArrayBuffer };
}

/**
 * A mapping at exactly `address` (MAP_FIXED is added): replaces the pages there, e.g. guest RAM laid over part of a
 * WebAssembly memory's reservation (src/memory/guest-memory.ts).
 */
export function mmapFixed(address: bigint, length: number, prot: number, flags: number, fd = -1, offset = 0): void {
  const p = mmapFn(address, length, prot, flags | MAP_FIXED, fd, offset);
  const got = typeof p === 'bigint' ? p : BigInt(koffi.address(p));
  if (got !== address) throw new SysError('mmap(MAP_FIXED)', lastErrno());
}

/**
 * preadv(2)/pwritev(2) with the iovec array built by the caller: `iov` holds `count` struct iovec {void *base;
 * size_t len} as pairs of 64-bit little-endian words split into 32-bit halves (x86-64's layout), pointing at memory
 * the caller keeps mapped for the call (guest RAM: src/devices/virtio/blk.ts). Returns the bytes moved, or -errno.
 * Why not fs.readvSync: it takes one Uint8Array per buffer, which a device must first create (a view per 4 KiB page
 * of a scattered request), and Node's wrapper then checks each one in JavaScript and reads each back in C++.
 */
let preadvFn: ((fd: number, iov: Uint32Array, count: number, offset: number) => number) | undefined;
let pwritevFn: ((fd: number, iov: Uint32Array, count: number, offset: number) => number) | undefined;
export function preadvIov(fd: number, iov: Uint32Array, count: number, offset: number): number {
  preadvFn ??= libc.func('int64_t preadv(int fd, const void *iov, int iovcnt, int64_t offset)') as typeof preadvFn & {};
  const n = preadvFn(fd, iov, count, offset);
  return n < 0 ? -lastErrno() : n;
}
export function pwritevIov(fd: number, iov: Uint32Array, count: number, offset: number): number {
  pwritevFn ??= libc.func('int64_t pwritev(int fd, const void *iov, int iovcnt, int64_t offset)') as typeof pwritevFn & {};
  const n = pwritevFn(fd, iov, count, offset);
  return n < 0 ? -lastErrno() : n;
}

export function munmap(address: bigint, length: number): void {
  if ((munmapFn(address, length) as number) < 0) throw new SysError('munmap', lastErrno());
}

/** madvise(2) advice: back the range with transparent huge pages where it can (THP "madvise" mode). */
export const MADV_HUGEPAGE = 14;
let madviseFn: ((addr: bigint, length: number, advice: number) => number) | undefined;
/** madvise(2) over [address, address + length) (page-aligned). */
export function madvise(address: bigint, length: number, advice: number): void {
  madviseFn ??= libc.func('int madvise(void *addr, size_t length, int advice)') as (addr: bigint, length: number, advice: number) => number;
  if (madviseFn(address, length, advice) < 0) throw new SysError('madvise', lastErrno());
}

/**
 * Keep the C heap's freed pages in this process (mallopt(3) M_TRIM_THRESHOLD): for the VMM, whose V8 worker threads
 * compile wasm (Liftoff, TurboFan) and JavaScript in zones malloc'd and freed per compile. glibc gives the free top of
 * an arena back to the kernel once it exceeds the trim threshold (128 KiB at first, raised by its dynamic rule up to
 * twice the largest mmap'd block freed so far; MADV_DONTNEED in the worker threads' arenas), so each compile took a
 * page fault per 4 KiB to get the same pages again. Boots of the default guest to the prompt, 4 alternating pairs
 * (GLIBC_TUNABLES glibc.malloc.trim_threshold=32 MiB against none, load 9-15): minor faults of the process 145k/178k/
 * 189k/182k -> 79.5k/80.8k/79.9k/84.0k, the main thread's unchanged (~41.5k); process CPU 20.93/21.64/21.75/24.05 ->
 * 23.06/19.45/20.27/19.91 s; main-thread CPU unchanged within noise (9.00/8.70/9.08/10.15 -> 10.72/8.70/9.37/8.76 s);
 * resident memory at the prompt 329-339 -> 357-374 MiB (the price: an arena keeps up to TRIM_THRESHOLD of free pages
 * at its top). Setting it turns glibc's dynamic rule off, so blocks over
 * 128 KiB are mmap'd each time as before that rule raised the limit; raising that limit too (4 MiB: calloc'd blocks
 * then come from the heap, zeroed by memset rather than lazily by the kernel) cut a few more faults but made the main
 * thread's CPU time higher in 4 of 4 pairs (+0.2 to +0.7 s).
 */
export function keepMallocPages(): void {
  const M_TRIM_THRESHOLD = -1; // <malloc.h>
  const TRIM_THRESHOLD = 32 * 1024 * 1024;
  try {
    const mallopt = libc.func('int mallopt(int param, int value)') as (param: number, value: number) => number;
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
  } catch {
    // a C library without mallopt (not glibc): its own policy
  }
}

export function close(fd: number): void {
  closeFn(fd);
}

/**
 * Copy `length` bytes of file `inFd` from `position` into file `outFd` at `outPosition`, inside the kernel (lseek(2)
 * then sendfile(2), looping on short transfers; `outFd`'s file position is moved). Returns the bytes copied: fewer
 * only at the end of `inFd`. Throws SysError when the kernel refuses (EINVAL for files sendfile cannot serve).
 */
export function sendfileAt(outFd: number, outPosition: number, inFd: number, position: number, length: number): number {
  if (Number(lseekFn(outFd, outPosition, 0 /* SEEK_SET */)) !== outPosition) throw new SysError('lseek', lastErrno());
  let done = 0;
  while (done < length) {
    // At most 0x7ffff000 bytes per call (sendfile(2)).
    const n = Number(sendfileFn(outFd, inFd, [position + done], Math.min(length - done, 0x7ffff000)));
    if (n < 0) throw new SysError('sendfile', lastErrno());
    if (n === 0) break;
    done += n;
  }
  return done;
}

export { koffi, libc };
