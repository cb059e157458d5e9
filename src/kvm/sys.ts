// The libc calls the KVM boundary needs, through koffi (in the style of src/sys/libc.ts): ioctl in its two
// argument shapes, eventfd, and the thread/signal calls used to kick a vCPU thread out of KVM_RUN.
// Loaded separately in every thread that uses it (koffi function objects are per isolate).
import { koffi, libc, lastErrno, errnoName } from '../sys/libc.ts';
import { IOCTL, type IoctlName } from './abi.ts';

/** ioctl(fd, request, pointer): a Node Buffer passed here reaches the kernel without a copy. */
export const ioctlPtr = libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']) as (fd: number, req: number, arg: Buffer | null) => number;
/** ioctl(fd, request, integer). */
export const ioctlInt = libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']) as (fd: number, req: number, arg: number | bigint) => number;
const eventfdFn = libc.func('int eventfd(unsigned int initval, int flags)');
const gettidFn = libc.func('int gettid(void)');
const getpidFn = libc.func('int getpid(void)');
const tgkillFn = libc.func('int tgkill(int tgid, int tid, int sig)');
const sigactionFn = libc.func('int sigaction(int signum, const void *act, void *oldact)');
const pthreadSigmaskFn = libc.func('int pthread_sigmask(int how, const void *set, void *oldset)');
const sigtimedwaitFn = libc.func('int sigtimedwait(const void *set, void *info, const void *timeout)');
const dlsymFn = libc.func('void *dlsym(void *handle, const char *symbol)');
const sigrtminFn = libc.func('int __libc_current_sigrtmin(void)');
const timerCreateFn = libc.func('int timer_create(int clockid, void *sevp, _Out_ void **timerid)');
const timerSettimeFn = libc.func('int timer_settime(void *timerid, int flags, const void *new_value, void *old_value)');
const timerDeleteFn = libc.func('int timer_delete(void *timerid)');

/** A failed KVM ioctl (or a failed call around it), naming the call and errno. */
export class KvmError extends Error {
  constructor(readonly call: string, readonly errno: number, detail?: string) {
    super(`${call} failed: ${errnoName(errno)} (errno ${errno})${detail ? `: ${detail}` : ''}`);
  }
}

/** ioctl with a pointer argument; throws KvmError naming the ioctl on failure. */
export function kvmIoctl(fd: number, name: IoctlName, arg: Buffer | null = null): number {
  const r = ioctlPtr(fd, IOCTL[name], arg);
  if (r < 0) throw new KvmError(name, lastErrno());
  return r;
}

/** ioctl with an integer argument; throws KvmError naming the ioctl on failure. */
export function kvmIoctlInt(fd: number, name: IoctlName, arg: number | bigint = 0): number {
  const r = ioctlInt(fd, IOCTL[name], arg);
  if (r < 0) throw new KvmError(name, lastErrno());
  return r;
}

// ---- futex(2) on a SharedArrayBuffer word: the vCPU hand-off between a worker and the main thread ----
// V8's Atomics.wait/notify go through its own futex emulation (a process-wide mutex and a condition variable per
// waiter), which measured here about 10-11 µs of CPU per ping-pong round trip between two threads, against about 6 µs
// for the raw futex syscall called through koffi (5 µs from C). A raw waiter is woken only by a raw FUTEX_WAKE, and a
// V8 waiter only by Atomics.notify: the channel (src/cpu/kvm/channel.ts) says which kind waits.
const syscallFutexFn = libc.func('long syscall(long nr, void *addr, int op, int val, void *timeout, void *addr2, int val3)');
/** x86-64 __NR_futex. */
const SYS_FUTEX = 202;
/** FUTEX_WAIT / FUTEX_WAKE | FUTEX_PRIVATE_FLAG (linux/futex.h): the word is shared by threads of this process only. */
const FUTEX_WAIT_PRIVATE = 0 | 128;
const FUTEX_WAKE_PRIVATE = 1 | 128;

/** A Buffer over the 4-byte word `index` of `sab` (what futexWait / futexWake take). */
export function futexWord(sab: SharedArrayBuffer, index: number): Buffer {
  return Buffer.from(sab, index * 4, 4);
}

/**
 * Sleep while the word holds `expected` (returns at once if it does not), at most `timeoutMs` (undefined: no limit).
 * Spurious returns happen (a signal, a stale wake): callers re-check the word.
 */
export function futexWait(word: Buffer, expected: number, timeoutMs?: number, timespec?: Buffer): void {
  let ts: Buffer | null = null;
  if (timeoutMs !== undefined) {
    ts = timespec ?? Buffer.alloc(16);
    const ns = Math.max(0, Math.round(timeoutMs * 1e6));
    ts.writeBigInt64LE(BigInt(Math.floor(ns / 1e9)), 0);
    ts.writeBigInt64LE(BigInt(ns % 1e9), 8);
  }
  syscallFutexFn(SYS_FUTEX, word, FUTEX_WAIT_PRIVATE, expected | 0, ts, null, 0);
}

/** Wake `count` raw waiters (default one) on the word. */
export function futexWake(word: Buffer, count = 1): void {
  syscallFutexFn(SYS_FUTEX, word, FUTEX_WAKE_PRIVATE, count, null, null, 0);
}

const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;

/** An eventfd for KVM_IOEVENTFD / KVM_IRQFD (non-blocking, close-on-exec). */
export function eventfd(initial = 0): number {
  const fd = eventfdFn(initial, EFD_CLOEXEC | EFD_NONBLOCK) as number;
  if (fd < 0) throw new KvmError('eventfd', lastErrno());
  return fd;
}

export function gettid(): number {
  return gettidFn() as number;
}

export function getpid(): number {
  return getpidFn() as number;
}

/** Send `sig` to one thread of this process. Returns false if the thread no longer exists. */
export function tgkill(tid: number, sig: number): boolean {
  const r = tgkillFn(getpid(), tid, sig) as number;
  if (r < 0) {
    const e = lastErrno();
    if (e === 3 /* ESRCH */) return false;
    throw new KvmError('tgkill', e);
  }
  return true;
}

/**
 * The signal that kicks a vCPU thread out of KVM_RUN: a real-time signal no part of Node uses (glibc reserves
 * the first two; V8's profiler uses SIGPROF, libuv and Node the classic ones).
 */
export function kickSignal(): number {
  return (sigrtminFn() as number) + 6;
}

// glibc x86-64 struct sigaction: sa_handler (8), sa_mask (sigset_t, 128), sa_flags (int) + pad, sa_restorer (8).
const SIGACTION_SIZE = 152;
const SIGSET_SIZE = 128;
const SIG_BLOCK = 0;

let handlerInstalled = false;

/**
 * Give the kick signal a handler that does nothing, process-wide, so that a signal arriving during KVM_RUN makes
 * it return EINTR instead of killing the process. The handler is libc's getpid: a real function that ignores its
 * argument and touches nothing, so it is safe to run on any thread (no JavaScript runs in signal context).
 * sa_flags = 0: no SA_RESTART, though KVM_RUN is never restarted anyway (it returns -EINTR, not -ERESTARTSYS).
 */
export function installKickHandler(): void {
  if (handlerInstalled) return;
  const handler = dlsymFn(null, 'getpid');
  const address = typeof handler === 'bigint' ? handler : BigInt(koffi.address(handler));
  if (address === 0n) throw new KvmError('dlsym(getpid)', 0);
  const act = Buffer.alloc(SIGACTION_SIZE);
  act.writeBigUInt64LE(address, 0);
  if ((sigactionFn(kickSignal(), act, null) as number) < 0) throw new KvmError('sigaction', lastErrno());
  handlerInstalled = true;
}

function sigsetWith(signals: number[]): Buffer {
  const set = Buffer.alloc(SIGSET_SIZE);
  for (const s of signals) set[(s - 1) >> 3] |= 1 << ((s - 1) & 7);
  return set;
}

/** Block the kick signal on the calling thread, so that it only interrupts KVM_RUN (see KVM_SET_SIGNAL_MASK). */
export function blockKickSignal(): void {
  const r = pthreadSigmaskFn(SIG_BLOCK, sigsetWith([kickSignal()]), null) as number;
  if (r !== 0) throw new KvmError('pthread_sigmask', r);
}

const ZERO_TIMESPEC = Buffer.alloc(16);

/**
 * Take a pending kick signal off the calling thread. Needed after KVM_RUN returns EINTR: KVM restores the blocking
 * mask before returning to user space, so the signal is never delivered and would end every later KVM_RUN at once.
 */
export function eatKickSignal(): void {
  const set = sigsetWith([kickSignal()]);
  while ((sigtimedwaitFn(set, null, ZERO_TIMESPEC) as number) > 0) { /* drained one */ }
}

/** The calling thread's current signal mask as the kernel's 64-bit sigset (for KVM_SET_SIGNAL_MASK). */
export function currentSignalMask(): Buffer {
  const old = Buffer.alloc(SIGSET_SIZE);
  const r = pthreadSigmaskFn(SIG_BLOCK, Buffer.alloc(SIGSET_SIZE), old) as number;
  if (r !== 0) throw new KvmError('pthread_sigmask', r);
  return old.subarray(0, 8);
}

const CLOCK_MONOTONIC = 1;
/** sigev_notify value: deliver the signal to the thread in sigev_notify_thread_id (Linux-specific). */
const SIGEV_THREAD_ID = 4;

/**
 * A periodic POSIX timer sending the kick signal to thread `tid` (timer_create with SIGEV_THREAD_ID). A vCPU run
 * on the main thread uses it as a yield tick: KVM_RUN returns EINTR at least every `periodMs`, so the event loop runs.
 */
export class KickTimer {
  private readonly id: unknown;
  private closed = false;

  constructor(tid: number) {
    // glibc struct sigevent (64 bytes): sigev_value (8), sigev_signo (4), sigev_notify (4), then the union whose
    // first member is the thread id.
    const sev = Buffer.alloc(64);
    sev.writeInt32LE(kickSignal(), 8);
    sev.writeInt32LE(SIGEV_THREAD_ID, 12);
    sev.writeInt32LE(tid, 16);
    const out = [null];
    if ((timerCreateFn(CLOCK_MONOTONIC, sev, out) as number) < 0) throw new KvmError('timer_create', lastErrno());
    this.id = out[0];
  }

  /** Fire every `periodMs` from now on (0 disarms). */
  arm(periodMs: number): void {
    const spec = Buffer.alloc(32); // struct itimerspec: it_interval, it_value (timespec: tv_sec, tv_nsec)
    const sec = Math.floor(periodMs / 1000);
    const nsec = Math.round((periodMs % 1000) * 1e6);
    for (const off of [0, 16]) {
      spec.writeBigInt64LE(BigInt(sec), off);
      spec.writeBigInt64LE(BigInt(nsec), off + 8);
    }
    if ((timerSettimeFn(this.id, 0, spec, null) as number) < 0) throw new KvmError('timer_settime', lastErrno());
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    timerDeleteFn(this.id);
  }
}

/** Pass-through to the shared helpers so callers need one import. */
export { koffi, lastErrno };
