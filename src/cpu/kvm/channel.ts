// The request channel between a vCPU worker thread (which sits in KVM_RUN) and the main thread (which owns the
// devices): one small SharedArrayBuffer per vCPU, handed back and forth with Atomics. The exit itself is read from
// kvm_run, which both threads map; only the turn, the command and KVM_RUN's result travel through here.

/** Int32 slots of the channel. */
export const CH = {
  /** Whose turn it is: TURN_WORKER (enter KVM_RUN) or TURN_MAIN (an exit, or the ready/quit handshake, to read). */
  TURN: 0,
  /** CMD_RUN or CMD_QUIT: read by the worker when it gets the turn. */
  CMD: 1,
  /** KVM_RUN's result: 0, -EINTR / -EAGAIN (kicked), or -errno of a failure (ERRNO holds errno too). */
  RESULT: 2,
  ERRNO: 3,
  /** The worker's kernel thread id, for tgkill. */
  TID: 4,
  /** 1 once the worker has quit (after its last turn). */
  DONE: 5,
  /** Count of KVM_RUN calls (statistics). */
  RUNS: 6,
  /**
   * 1 while the main thread / the worker sleeps in a raw futex wait on TURN (../../kvm/sys.ts futexWait): whoever
   * hands the turn over then calls futexWake. Set before the sleeper re-checks TURN and read after the waker has
   * stored TURN (all sequentially consistent Atomics), so a wake is never lost and never paid for when nobody sleeps.
   */
  MAIN_SLEEPS: 7,
  WORKER_SLEEPS: 8,
} as const;

export const CHANNEL_INTS = 10;
/** Hand-offs through raw futexes (default) or V8's Atomics.wait/notify alone (RINGZERO_KVM_RAW_FUTEX=0). */
export const RAW_FUTEX = process.env.RINGZERO_KVM_RAW_FUTEX !== '0';
export const TURN_WORKER = 0;
export const TURN_MAIN = 1;
export const CMD_RUN = 0;
export const CMD_QUIT = 1;

/** How long each side spins on the turn word before sleeping (µs). 0 by default: measured on a 2-vCPU SMT host under load, spinning slowed the KVM_RUN thread more than a futex wake costs (RINGZERO_KVM_SPIN_US overrides). */
export const SPIN_US = Number(process.env.RINGZERO_KVM_SPIN_US ?? 0);

/**
 * Posted port writes: OUTs to ports marked in `bitmap` (one bit per port) are completed by the worker itself, which
 * appends them to `ring` and re-enters KVM_RUN at once, with no hand-off to the main thread; the main thread delivers
 * them to the PortBus in order before the next exit it handles (and on a timer). Only for write-only sinks whose
 * writes need no answer and no immediate effect (the POST port, the debug console). Ring words: HEAD (next entry
 * the worker writes), TAIL (next entry the main thread reads), then POSTED_RING_ENTRIES entries of two words each:
 * port | size << 16, value.
 */
export const POSTED_RING_ENTRIES = 4096;
export const POSTED_HEAD = 0;
export const POSTED_TAIL = 1;
export const POSTED_DATA = 2;

export interface PostedBuffers {
  bitmap: SharedArrayBuffer;
  ring: SharedArrayBuffer;
}

export function postedBuffers(ports: readonly number[]): PostedBuffers {
  const bitmap = new SharedArrayBuffer(65536 / 8);
  const bits = new Uint8Array(bitmap);
  for (const p of ports) bits[(p & 0xffff) >> 3] |= 1 << (p & 7);
  return { bitmap, ring: new SharedArrayBuffer((POSTED_DATA + 2 * POSTED_RING_ENTRIES) * 4) };
}

export interface WorkerData {
  vcpuFd: number;
  vcpuId: number;
  mmapSize: number;
  channel: SharedArrayBuffer;
  posted?: PostedBuffers;
}
