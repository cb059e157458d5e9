// Watch eventfds from the main thread without blocking it: a dedicated worker thread sits in poll(2) on them
// (./eventfd-worker.ts) and tells the main thread which are ready through a SharedArrayBuffer; the main thread waits
// with Atomics.waitAsync (a promise, so the event loop keeps running) and calls each ready eventfd's callback there.
//
// Why a worker in poll(): Node has no API to watch a raw file descriptor for readability (net.Socket refuses an
// eventfd's handle type; fs.read on a blocking eventfd holds a libuv pool thread per fd, on a non-blocking one it
// would have to poll). One thread blocked in poll() serves every eventfd of the VM and takes nothing from libuv's pool.
// test/kvm-virtio.test.ts measures the notification latency this gives.
//
// Used for KVM_IOEVENTFD: a guest write to a virtqueue's notify register signals an eventfd in the kernel (no exit
// to user space, the vCPU carries on) and the device's queue is processed here on the main thread.
import type { Worker } from 'node:worker_threads';
import fs from 'node:fs';
import { eventfd, KvmError } from './sys.ts';
import { spawnModuleWorker, siblingModule } from './spawn.ts';

/** Most eventfds one watcher handles (virtqueues of a VM). */
export const MAX_FDS = 256;

/** Int32 words of the shared buffer. */
export const W = {
  /** Bumped by the worker after marking ready eventfds; the main thread waits on it. */
  SEQ: 0,
  /** Bumped by the main thread when the list changes. */
  GENERATION: 1,
  COUNT: 2,
  QUIT: 3,
  DONE: 4,
  /** errno of a failed poll() (the worker then stops). */
  ERROR: 5,
  /** 1 once the thread has started and is about to poll. */
  STARTED: 6,
  FDS: 8,
  READY: 8 + MAX_FDS,
} as const;
const WORDS = W.READY + MAX_FDS / 32;

export interface WatcherData {
  sab: SharedArrayBuffer;
  controlFd: number;
  /** Words the thread also notifies when eventfds are ready (see EventfdWatcher.alsoWake). */
  wake: { sab: SharedArrayBuffer; index: number }[];
}

const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, index: number, value: number, timeoutMs?: number): { async: boolean; value: Promise<string> | string };
}).waitAsync;

const live = new Set<EventfdWatcher>();
let exitHookInstalled = false;

/**
 * A thread blocked in poll() is out of reach of Worker.terminate() and process.exit(), which would then wait for it
 * forever: on exit, every live watcher's thread is told to quit and woken through its control eventfd.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => { for (const w of live) w.abandon(); });
}

export class EventfdWatcher {
  private readonly sab = new SharedArrayBuffer(WORDS * 4);
  private readonly words = new Int32Array(this.sab);
  private readonly callbacks: (() => void)[] = [];
  private readonly controlFd = eventfd();
  private readonly one = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);
  private worker: Worker | undefined;
  private closed = false;
  private held = false;
  private readonly heldReady = new Set<number>();
  private loop: Promise<void> | undefined;
  private readonly wake: { sab: SharedArrayBuffer; index: number }[] = [];
  /** Callbacks run (statistics). */
  dispatched = 0;

  /** Watch `fd` (an eventfd; the watcher does not own it); `onReady` runs on this thread after the fd is signalled. */
  add(fd: number, onReady: () => void): void {
    if (this.callbacks.length >= MAX_FDS) throw new RangeError(`more than ${MAX_FDS} eventfds`);
    const i = this.callbacks.length;
    this.callbacks.push(onReady);
    Atomics.store(this.words, W.FDS + i, fd);
    Atomics.store(this.words, W.COUNT, i + 1);
    Atomics.add(this.words, W.GENERATION, 1);
    this.poke();
  }

  get size(): number {
    return this.callbacks.length;
  }

  /**
   * Before start(): when eventfds are ready, also Atomics.notify word `index` of `sab`. The KVM engine's main thread
   * may be in a synchronous Atomics.wait for a vCPU worker's next exit (up to its yield tick); waking it there lets it
   * reach the event loop, and these callbacks, at once.
   */
  alsoWake(sab: SharedArrayBuffer, index: number): void {
    this.wake.push({ sab, index });
  }

  /**
   * Start the thread (callbacks added before or after); resolves once it polls. Until then nothing is lost (a
   * signalled eventfd stays readable) but nothing is seen either, and starting a worker under tsx takes a while.
   */
  async start(): Promise<void> {
    if (this.worker || this.closed) return;
    const data: WatcherData = { sab: this.sab, controlFd: this.controlFd, wake: this.wake };
    const w = spawnModuleWorker(siblingModule(import.meta.url, 'eventfd-worker'), data);
    w.on('error', (e) => { process.emitWarning(`ringzero: eventfd watcher failed: ${e.message}`); });
    // Referenced: while a VM is watched the process lives (Atomics.waitAsync alone would not keep the loop alive);
    // close() ends the thread.
    this.worker = w;
    live.add(this);
    installExitHook();
    this.loop = this.run();
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    while (!Atomics.load(this.words, W.STARTED) && !this.closed) {
      const r = waitAsync(this.words, W.STARTED, 0, 50);
      await Promise.race([r.async ? r.value : Promise.resolve(), exited]);
      if (Atomics.load(this.words, W.DONE)) break;
    }
  }

  /** Synchronous last resort at process exit: make the thread leave poll() and end. */
  abandon(): void {
    Atomics.store(this.words, W.QUIT, 1);
    try { this.poke(); } catch { /* closing anyway */ }
  }

  /** Stop calling back (readiness is remembered) until release(): while a VM is paused for a snapshot. */
  hold(): void {
    this.held = true;
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    const ready = [...this.heldReady];
    this.heldReady.clear();
    for (const i of ready) this.call(i);
  }

  private poke(): void {
    try {
      fs.writeSync(this.controlFd, this.one);
    } catch (e) {
      // EAGAIN: the counter is saturated, the worker will wake anyway.
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    }
  }

  private call(i: number): void {
    this.dispatched++;
    this.callbacks[i]?.();
  }

  /** The thread has reported ready eventfds this thread has not yet called back for (cheap: one atomic load). */
  hasPending(): boolean {
    return Atomics.load(this.words, W.SEQ) !== this.seen;
  }

  private seen = 0;

  private async run(): Promise<void> {
    const words = this.words;
    this.seen = Atomics.load(words, W.SEQ);
    while (!this.closed) {
      const r = waitAsync(words, W.SEQ, this.seen);
      if (r.async) await r.value;
      if (this.closed) break;
      this.seen = Atomics.load(words, W.SEQ);
      const err = Atomics.load(words, W.ERROR);
      if (err) throw new KvmError('poll (eventfd watcher)', err);
      for (let w = 0; w < MAX_FDS / 32; w++) {
        let bits = Atomics.exchange(words, W.READY + w, 0);
        while (bits !== 0) {
          const b = 31 - Math.clz32(bits);
          bits &= ~(1 << b);
          const i = w * 32 + b;
          if (this.held) this.heldReady.add(i);
          else this.call(i);
        }
      }
    }
  }

  /** Stop the thread (it leaves poll() through the control eventfd) and close the control eventfd. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    live.delete(this);
    const w = this.worker;
    Atomics.store(this.words, W.QUIT, 1);
    Atomics.notify(this.words, W.SEQ); // the main-thread loop
    if (w) {
      const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
      this.poke();
      await exited;
    }
    await this.loop?.catch(() => undefined);
    fs.closeSync(this.controlFd);
  }
}
