// The KVM engine: a VM on /dev/kvm with guest RAM from the machine's memfd, and one worker thread per vCPU
// sitting in KVM_RUN. Exits come back to the main thread through a SharedArrayBuffer channel (./channel.ts) and
// are dispatched here to the machine's PortBus / MmioBus by reading and writing kvm_run, which this thread maps too.
//
// Waiting for an exit: the main thread first spins for SPIN_US (a port-I/O round trip must not pay two thread
// wake-ups), then parks on Atomics.waitAsync so the event loop keeps running while the guest computes; and while
// exits keep coming it still yields to the event loop every YIELD_MS.
//
// Stopping: stop() sets kvm_run.immediate_exit and sends the kick signal to the vCPU's thread (tgkill); the
// signal is blocked outside KVM_RUN, so whichever side of KVM_RUN the thread is on, the run ends promptly.
import type { Worker } from 'node:worker_threads';
import { spawnModuleWorker, siblingModule } from '../../kvm/spawn.ts';
import { Kvm, KvmVm, KvmVcpu, KvmError } from '../../kvm/kvm.ts';
import { EXIT, EXIT_NAMES, IO_OUT, RUN } from '../../kvm/abi.ts';
import { installKickHandler, kickSignal, tgkill, blockKickSignal, currentSignalMask, eatKickSignal, gettid, KickTimer, futexWord, futexWait, futexWake } from '../../kvm/sys.ts';
import type { AccessSize } from '../../devices/bus.ts';
import type { Engine, EngineMachine, Registers, SpecialRegisters, Vcpu, VcpuExit } from '../engine.ts';
import { buildVcpuCpuid } from './cpuid.ts';
import {
  CH, CHANNEL_INTS, CMD_QUIT, CMD_RUN, SPIN_US, TURN_MAIN, TURN_WORKER, POSTED_DATA, POSTED_HEAD, POSTED_RING_ENTRIES,
  POSTED_TAIL, RAW_FUTEX, postedBuffers, type PostedBuffers, type WorkerData,
} from './channel.ts';

export { vcpuCpuid, topologyCpuid, buildVcpuCpuid } from './cpuid.ts';

/** The longest the main thread keeps handling exits before letting the event loop run. */
const YIELD_MS = 4;
const SYNC_WAIT = process.env.RINGZERO_KVM_SYNC_WAIT !== '0';
/** With pendingMainWork set, the synchronous wait for an exit looks at it this often (ms). */
const PENDING_SLICE_MS = 0.5;

/** Guest-physical pages KVM needs for itself below 4 GiB (Intel real-mode TSS: 3 pages; EPT identity map: 1 page). */
export const KVM_TSS_ADDR = 0xfffbd000;
export const KVM_IDENTITY_MAP_ADDR = 0xfffbc000;

export interface KvmEngineOptions extends EngineMachine {
  cpus?: number;
  /** Create the in-kernel 8259 pair, IOAPIC and LAPICs (then HLT sleeps in the kernel instead of exiting). */
  irqchip?: boolean;
  /** Create the in-kernel 8254 PIT (needs irqchip). */
  pit?: boolean;
  /**
   * Run vCPU 0 on the main thread (see KvmVcpuHandle.startInline): exits cost no thread hand-off, at the price of
   * the event loop running only between KVM_RUNs (at least every few milliseconds). Default: every vCPU on a worker.
   */
  inlineBoot?: boolean;
  /** Track dirty pages in every RAM slot (for snapshots). */
  dirtyLog?: boolean;
  /** Path of the KVM device (default /dev/kvm). */
  device?: string;
  /**
   * Ports whose OUTs a vCPU worker completes itself and posts to the main thread (channel.ts, posted port writes):
   * write-only sinks such as the POST port and the debug console. No effect on a vCPU run on the main thread.
   */
  postedPorts?: readonly number[];
}

/** Atomics.waitAsync (V8 has it since Node 16; TypeScript's ES2022 lib does not declare it). */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, index: number, value: number, timeoutMs?: number): { async: boolean; value: Promise<string> | string };
}).waitAsync;

const EINTR = 4;
const EAGAIN = 11;

let lastYield = performance.now();

async function yieldToEventLoop(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  lastYield = performance.now();
}
const live = new Set<KvmVcpuHandle>();
let exitHookInstalled = false;
let inlineTaken = false;

/** On process exit, get every vCPU thread out of KVM_RUN so that Node can stop the workers. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => { for (const v of live) v.abandon(); });
}

export class KvmEngine implements Engine {
  readonly kind = 'kvm' as const;
  readonly vcpus: KvmVcpuHandle[] = [];
  /**
   * Whether the main thread has work waiting in the event loop (the virtio notifications of kvm-virtio.ts): the
   * synchronous wait for a worker's exit then gives way to the event loop instead of sleeping up to its yield tick.
   */
  pendingMainWork: (() => boolean) | undefined;
  private closed = false;

  private constructor(readonly kvm: Kvm, readonly vm: KvmVm, readonly machine: EngineMachine) {}

  static async create(opts: KvmEngineOptions): Promise<KvmEngine> {
    const kvm = Kvm.open(opts.device);
    let vm: KvmVm | undefined;
    try {
      vm = kvm.createVm();
      const engine = new KvmEngine(kvm, vm, opts);
      vm.setTssAddr(KVM_TSS_ADDR);
      vm.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDR);
      if (opts.irqchip) vm.createIrqchip();
      if (opts.pit) vm.createPit2(0);
      vm.mapGuestMemory(opts.mem, opts.dirtyLog);
      const supported = kvm.supportedCpuid();
      const cpus = opts.cpus ?? 1;
      installKickHandler();
      installExitHook();
      for (let i = 0; i < cpus; i++) {
        const vcpu = vm.createVcpu(i);
        vcpu.setCpuid(buildVcpuCpuid(supported, { apicId: i, cpus, irqchip: !!opts.irqchip }));
        engine.vcpus.push(new KvmVcpuHandle(engine, vcpu, i, opts.postedPorts?.length ? postedBuffers(opts.postedPorts) : undefined));
      }
      if (opts.inlineBoot) engine.vcpus[0].startInline();
      await Promise.all(engine.vcpus.filter((v, i) => !(opts.inlineBoot && i === 0)).map((v) => v.start()));
      return engine;
    } catch (e) {
      vm?.close();
      kvm.close();
      throw e;
    }
  }

  /** Drive interrupt line `gsi` of the in-kernel irqchip. */
  irqLine(gsi: number, level: boolean): void {
    this.vm.irqLine(gsi, level);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.vcpus.map((v) => v.quit()));
    for (const v of this.vcpus) v.vcpu.close();
    this.vm.close();
    this.kvm.close();
  }
}

export class KvmVcpuHandle implements Vcpu {
  readonly engine = 'kvm' as const;
  private readonly sab = new SharedArrayBuffer(CHANNEL_INTS * 4);
  private readonly ch = new Int32Array(this.sab);
  /** The TURN word for raw futex waits and wakes (channel.ts RAW_FUTEX), and a timespec for the timed waits. */
  private readonly turnWord = futexWord(this.sab, CH.TURN);
  private readonly timespec = Buffer.alloc(16);
  private worker: Worker | undefined;
  private running = false;
  /**
   * An exit was handled and KVM_RUN not entered since: KVM finishes that instruction (an IN's data into RAX, RIP past
   * an OUT or MMIO access, the next round of a string I/O) only at the next KVM_RUN (api.rst, KVM_RUN: "the
   * corresponding operations are complete (and guest state is consistent) only after userspace has re-entered the
   * kernel"). A vCPU that stops here enters once more with immediate_exit set first (completeExit).
   */
  private exitPending = false;
  private stopRequested = false;
  private quitting = false;
  private tid = 0;
  private inline: { timer: KickTimer } | undefined;
  private readonly ring: Int32Array | undefined;
  /** Exits handled on this thread (statistics). */
  exits = 0;
  /** Posted port writes the worker completed and this thread delivered (statistics). */
  postedExits = 0;

  constructor(private readonly owner: KvmEngine, readonly vcpu: KvmVcpu, readonly index: number, private readonly posted?: PostedBuffers) {
    Atomics.store(this.ch, CH.TURN, TURN_MAIN);
    this.ring = posted ? new Int32Array(posted.ring) : undefined;
  }

  /** Deliver the posted port writes the worker queued, in order, to the PortBus. */
  private drainPosted(): void {
    const ring = this.ring;
    if (!ring) return;
    let tail = Atomics.load(ring, POSTED_TAIL);
    const head = Atomics.load(ring, POSTED_HEAD);
    if (tail === head) return;
    const ports = this.owner.machine.ports;
    for (; tail !== head; tail++) {
      const at = POSTED_DATA + 2 * (tail % POSTED_RING_ENTRIES);
      const w = ring[at];
      ports.write(w & 0xffff, (w >>> 16) as AccessSize, ring[at + 1] >>> 0);
      this.postedExits++;
    }
    Atomics.store(ring, POSTED_TAIL, tail);
  }

  /**
   * Run this vCPU on the calling (main) thread instead of a worker: no thread hand-off per exit, so an exit costs
   * what KVM_RUN plus the device costs. The kick signal is blocked on this thread outside KVM_RUN and a periodic
   * timer sends it while run() is in progress, so KVM_RUN returns at least every YIELD_MS and the event loop runs.
   * One vCPU per process can run this way (a thread can be inside one KVM_RUN at a time).
   */
  startInline(): void {
    if (inlineTaken) throw new Error('only one vCPU per process can run on the main thread');
    inlineTaken = true;
    blockKickSignal();
    const mask = Buffer.from(currentSignalMask());
    const bit = kickSignal() - 1;
    mask[bit >> 3] &= ~(1 << (bit & 7));
    this.vcpu.setSignalMask(mask);
    this.tid = gettid();
    this.inline = { timer: new KickTimer(this.tid) };
  }

  /** The channel with the worker (its CH.TURN word is what the main thread waits on for this vCPU's next exit). */
  get channel(): SharedArrayBuffer {
    return this.sab;
  }

  /** The host thread that runs this vCPU's KVM_RUN (the worker's, or the main thread's): for pinning. 0 before start. */
  get threadId(): number {
    return this.tid;
  }

  /** Start the worker thread and wait until it is ready to run. */
  async start(): Promise<void> {
    const data: WorkerData = { vcpuFd: this.vcpu.fd, vcpuId: this.index, mmapSize: this.vcpu.mmapSize, channel: this.sab, posted: this.posted };
    Atomics.store(this.ch, CH.TURN, TURN_MAIN);
    Atomics.store(this.ch, CH.TID, 0);
    const w = spawnWorker(data);
    this.worker = w;
    const failed = new Promise<never>((_, reject) => {
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`vCPU ${this.index} worker exited (code ${code}) before it was ready`)));
    });
    Atomics.store(this.ch, CH.TURN, TURN_WORKER); // the worker hands the turn back once ready
    const ready = (async () => {
      while (Atomics.load(this.ch, CH.TURN) !== TURN_MAIN || Atomics.load(this.ch, CH.TID) === 0) {
        const r = waitAsync(this.ch, CH.TURN, TURN_WORKER, 50);
        if (r.async) await r.value;
        else await new Promise((res) => setTimeout(res, 1));
      }
    })();
    await Promise.race([ready, failed]);
    w.removeAllListeners('exit');
    w.removeAllListeners('error');
    w.on('error', (e) => { process.emitWarning(`ringzero: vCPU ${this.index} worker failed: ${e.message}`); });
    this.tid = Atomics.load(this.ch, CH.TID);
    live.add(this);
  }

  private idle(what: string): void {
    if (this.running) throw new Error(`vCPU ${this.index}: ${what} while run() is in progress`);
  }

  getRegisters(): Registers {
    this.idle('getRegisters');
    return this.vcpu.getRegs();
  }

  setRegisters(r: Registers): void {
    this.idle('setRegisters');
    this.vcpu.setRegs(r);
  }

  getSpecialRegisters(): SpecialRegisters {
    this.idle('getSpecialRegisters');
    return this.vcpu.getSregs().sregs;
  }

  setSpecialRegisters(s: SpecialRegisters): void {
    this.idle('setSpecialRegisters');
    this.vcpu.setSregs(s);
  }

  /** The KVM run structure as this thread sees it (exit details, for diagnostics). */
  get kvmRun(): DataView {
    return this.vcpu.runView;
  }

  async run(): Promise<VcpuExit> {
    this.idle('run');
    if (this.quitting || (!this.worker && !this.inline)) throw new Error(`vCPU ${this.index} is closed`);
    this.running = true;
    this.inline?.timer.arm(YIELD_MS);
    // Posted writes reach their device within a few milliseconds even while the guest makes no other exit.
    const drainTimer = this.ring && !this.inline ? setInterval(() => this.drainPosted(), YIELD_MS) : undefined;
    try {
      for (;;) {
        if (this.stopRequested) {
          if (this.exitPending) {
            const exit = await this.completeExit();
            if (exit) return exit;
          }
          this.stopRequested = false;
          return { reason: 'stopped' };
        }
        let rc: number;
        if (this.inline) {
          rc = this.runInline();
          // The kick timer makes KVM_RUN return EINTR at least every YIELD_MS (a tick that lands between two
          // KVM_RUNs stays pending and ends the next one), so that is the moment to let the event loop run: no
          // clock read per exit on this path.
          if (rc === -EINTR || rc === -EAGAIN) await yieldToEventLoop();
        } else {
          // The exit usually comes back within the synchronous wait: no promise per exit then.
          rc = this.startInWorker() ? Atomics.load(this.ch, CH.RESULT) : await this.waitForWorker();
          this.drainPosted(); // before the exit: the device sees the guest's writes in order
          if (performance.now() - lastYield >= YIELD_MS) await yieldToEventLoop();
        }
        if (rc === -EINTR || rc === -EAGAIN) {
          this.vcpu.run[RUN.immediate_exit] = 0;
          continue; // kicked: a stop request is seen at the top of the loop; a stale kick is harmless
        }
        this.exitPending = false;
        if (rc < 0) return { reason: 'error', message: new KvmError('KVM_RUN', -rc).message };
        const exit = this.handleExit();
        if (exit) return exit;
        this.exitPending = true;
      }
    } finally {
      if (drainTimer) clearInterval(drainTimer);
      this.drainPosted();
      this.inline?.timer.arm(0);
      this.running = false;
    }
  }

  /**
   * Let KVM finish the instruction whose exit was just handled, running no further guest instruction: KVM_RUN with
   * immediate_exit set completes the pending operation and returns EINTR (api.rst, kvm_run.immediate_exit), so the
   * vCPU's registers can be saved (a snapshot) or it can wait (a pause) in a consistent state. A string I/O may need
   * more rounds through the device first (KVM_RUN then returns the next exit). Returns an exit to report, if any.
   */
  private async completeExit(): Promise<VcpuExit | undefined> {
    for (let round = 0; this.exitPending && round < 65536; round++) {
      this.vcpu.run[RUN.immediate_exit] = 1;
      const rc = this.inline ? this.runInline() : (this.startInWorker() ? Atomics.load(this.ch, CH.RESULT) : await this.waitForWorker());
      this.vcpu.run[RUN.immediate_exit] = 0;
      if (rc === -EINTR || rc === -EAGAIN) { this.exitPending = false; break; }
      if (rc < 0) { this.exitPending = false; return { reason: 'error', message: new KvmError('KVM_RUN', -rc).message }; }
      const exit = this.handleExit();
      if (exit) { this.exitPending = false; return exit; }
    }
    this.drainPosted();
    return undefined;
  }

  private runInline(): number {
    const rc = this.vcpu.runOnce();
    if (rc < 0) eatKickSignal();
    return rc;
  }

  /**
   * Hand the turn to the worker for one KVM_RUN and wait synchronously (spin, then sleep) up to the yield deadline;
   * true if the exit came (CH.RESULT holds KVM_RUN's result), false if the wait must go on asynchronously.
   */
  private startInWorker(): boolean {
    const ch = this.ch;
    Atomics.store(ch, CH.CMD, CMD_RUN);
    Atomics.store(ch, CH.TURN, TURN_WORKER);
    if (!RAW_FUTEX) Atomics.notify(ch, CH.TURN);
    else if (Atomics.load(ch, CH.WORKER_SLEEPS)) futexWake(this.turnWord);
    return this.spinForExit();
  }

  /** The rest of the wait for the worker's exit, with the event loop running; KVM_RUN's result. */
  private async waitForWorker(): Promise<number> {
    const ch = this.ch;
    while (Atomics.load(ch, CH.TURN) !== TURN_MAIN) {
      const r = waitAsync(ch, CH.TURN, TURN_WORKER);
      if (r.async) await r.value;
    }
    lastYield = performance.now();
    return Atomics.load(ch, CH.RESULT);
  }

  /** Wait synchronously (spin, then futex) up to the yield deadline for the worker's exit; true if it came. */
  private spinForExit(): boolean {
    const ch = this.ch;
    if (SPIN_US > 0) {
      const until = performance.now() + SPIN_US / 1000;
      for (let i = 0; ; i++) {
        if (Atomics.load(ch, CH.TURN) === TURN_MAIN) return true;
        if ((i & 63) === 63 && performance.now() > until) break;
      }
    }
    if (SYNC_WAIT) {
      const pending = this.owner.pendingMainWork;
      if (!pending) {
        const left = YIELD_MS - (performance.now() - lastYield);
        if (left > 0) this.sleepForExit(left);
        return Atomics.load(ch, CH.TURN) === TURN_MAIN;
      }
      // Work for the event loop may arrive meanwhile (an ioeventfd): wait in short slices and look in between, since
      // a wake-up sent to this wait just before it began would be lost.
      for (;;) {
        if (pending()) return false;
        const left = YIELD_MS - (performance.now() - lastYield);
        if (left <= 0) return false;
        this.sleepForExit(Math.min(left, PENDING_SLICE_MS));
        if (Atomics.load(ch, CH.TURN) === TURN_MAIN) return true;
      }
    }
    return false;
  }

  /** Sleep up to `ms` while the worker has the turn (it wakes this thread when it hands the turn back). */
  private sleepForExit(ms: number): void {
    const ch = this.ch;
    if (!RAW_FUTEX) {
      Atomics.wait(ch, CH.TURN, TURN_WORKER, ms);
      return;
    }
    Atomics.store(ch, CH.MAIN_SLEEPS, 1);
    if (Atomics.load(ch, CH.TURN) === TURN_WORKER) futexWait(this.turnWord, TURN_WORKER, ms, this.timespec);
    Atomics.store(ch, CH.MAIN_SLEEPS, 0);
  }

  /** Dispatch the exit in kvm_run. Returns the exit to report, or undefined to resume the guest. */
  private handleExit(): VcpuExit | undefined {
    this.exits++;
    const v = this.vcpu.runView;
    const run = this.vcpu.run;
    const reason = v.getUint32(RUN.exit_reason, true);
    const { ports, mmio } = this.owner.machine;
    switch (reason) {
      case EXIT.IO: {
        const size = run[RUN.io_size] as AccessSize;
        const port = v.getUint16(RUN.io_port, true);
        const count = v.getUint32(RUN.io_count, true);
        // data_offset is a u64; read as two u32 halves (no BigInt per exit). Exact below 2^53, and anything
        // that large fails the bounds check below anyway.
        let off = v.getUint32(RUN.io_data_offset, true) + v.getUint32(RUN.io_data_offset + 4, true) * 0x1_0000_0000;
        // Bounds: KVM keeps the data inside the mapping; a corrupt offset must not make us write elsewhere.
        if (off + count * size > run.length || (size !== 1 && size !== 2 && size !== 4)) {
          return { reason: 'error', message: `bad KVM_EXIT_IO: port 0x${port.toString(16)} size ${size} count ${count} offset ${off}` };
        }
        if (run[RUN.io_direction] === IO_OUT) {
          for (let i = 0; i < count; i++, off += size) ports.write(port, size, readLe(v, off, size));
        } else {
          for (let i = 0; i < count; i++, off += size) writeLe(v, off, size, ports.read(port, size));
        }
        return undefined;
      }
      case EXIT.MMIO: {
        const addr = v.getUint32(RUN.mmio_phys_addr, true) + v.getUint32(RUN.mmio_phys_addr + 4, true) * 0x1_0000_0000;
        const len = v.getUint32(RUN.mmio_len, true);
        const write = run[RUN.mmio_is_write] !== 0;
        // KVM splits guest accesses into pieces of at most 8 bytes; the buses take 1, 2 or 4: an 8-byte access
        // goes as two 4-byte halves, any other odd length byte by byte (no per-exit allocation either way).
        const size: AccessSize = len === 1 || len === 2 || len === 4 || len === 8 ? (len === 8 ? 4 : len) : 1;
        const pieces = len === 8 ? 2 : size === 1 ? Math.min(len, 8) : 1;
        for (let i = 0, at = 0; i < pieces; i++, at += size) {
          const off = RUN.mmio_data + at;
          if (write) mmio.write(addr + at, size, readLe(v, off, size));
          else writeLe(v, off, size, mmio.read(addr + at, size));
        }
        return undefined;
      }
      case EXIT.HLT:
        return { reason: 'halt' };
      case EXIT.SHUTDOWN:
        return { reason: 'shutdown' };
      case EXIT.INTR:
      case EXIT.IRQ_WINDOW_OPEN:
        return undefined;
      case EXIT.SYSTEM_EVENT:
        return { reason: 'system-event', type: v.getUint32(RUN.system_event_type, true) };
      case EXIT.FAIL_ENTRY:
        return {
          reason: 'error',
          message: `KVM_EXIT_FAIL_ENTRY: hardware entry failure reason 0x${v.getBigUint64(RUN.fail_entry_reason, true).toString(16)} on host cpu ${v.getUint32(RUN.fail_entry_cpu, true)}`,
        };
      case EXIT.INTERNAL_ERROR: {
        const n = Math.min(v.getUint32(RUN.internal_ndata, true), 16);
        const data = Array.from({ length: n }, (_, i) => '0x' + v.getBigUint64(RUN.internal_data + 8 * i, true).toString(16));
        return { reason: 'error', message: `KVM_EXIT_INTERNAL_ERROR: suberror ${v.getUint32(RUN.internal_suberror, true)}${n ? ` data ${data.join(' ')}` : ''}` };
      }
      default:
        return { reason: 'error', message: `unexpected KVM exit ${EXIT_NAMES[reason] ?? reason}` };
    }
  }

  stop(): void {
    this.stopRequested = true;
    this.kick();
  }

  /** Get the thread out of KVM_RUN if it is in there (or about to enter). */
  private kick(): void {
    // Not after the thread has quit: its id may already belong to another thread.
    if (Atomics.load(this.ch, CH.TURN) !== TURN_WORKER || this.tid === 0 || Atomics.load(this.ch, CH.DONE)) return;
    this.vcpu.run[RUN.immediate_exit] = 1;
    tgkill(this.tid, kickSignal());
  }

  /** Tell the worker to quit and wait for its thread to end (kicking it out of KVM_RUN as long as needed). */
  async quit(): Promise<void> {
    if (this.inline) {
      this.quitting = true;
      this.stopRequested = true;
      // A run() in progress is between two KVM_RUNs (this thread is here): let it see the stop and return before
      // kvm_run is unmapped under it.
      while (this.running) await new Promise((res) => setImmediate(res));
      this.inline.timer.close();
      this.inline = undefined;
      inlineTaken = false;
      return;
    }
    const w = this.worker;
    if (!w || this.quitting) return;
    this.quitting = true;
    this.stopRequested = true;
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    let done = false;
    void exited.then(() => { done = true; });
    while (!done) {
      if (!this.running) {
        // Our turn: hand the worker a quit command.
        if (Atomics.load(this.ch, CH.TURN) === TURN_MAIN && !Atomics.load(this.ch, CH.DONE)) {
          Atomics.store(this.ch, CH.CMD, CMD_QUIT);
          Atomics.store(this.ch, CH.TURN, TURN_WORKER);
          Atomics.notify(this.ch, CH.TURN);
          futexWake(this.turnWord);
        }
      }
      this.kick();
      await Promise.race([exited, new Promise((res) => setTimeout(res, 20))]);
    }
    live.delete(this);
    this.worker = undefined;
  }

  /** Synchronous last resort at process exit: tell the worker to quit and kick it out of KVM_RUN. */
  abandon(): void {
    if (this.inline) return;
    Atomics.store(this.ch, CH.CMD, CMD_QUIT);
    this.vcpu.run[RUN.immediate_exit] = 1;
    if (this.tid && !Atomics.load(this.ch, CH.DONE)) tgkill(this.tid, kickSignal());
    Atomics.store(this.ch, CH.TURN, TURN_WORKER);
    Atomics.notify(this.ch, CH.TURN);
    futexWake(this.turnWord);
  }

  /** KVM_RUN calls made by the worker (statistics). */
  get kvmRuns(): number {
    return Atomics.load(this.ch, CH.RUNS);
  }
}

function spawnWorker(data: WorkerData): Worker {
  return spawnModuleWorker(siblingModule(import.meta.url, 'worker'), data);
}

function readLe(v: DataView, off: number, size: AccessSize): number {
  return size === 1 ? v.getUint8(off) : size === 2 ? v.getUint16(off, true) : v.getUint32(off, true);
}

function writeLe(v: DataView, off: number, size: AccessSize, value: number): void {
  if (size === 1) v.setUint8(off, value & 0xff);
  else if (size === 2) v.setUint16(off, value & 0xffff, true);
  else v.setUint32(off, value >>> 0, true);
}

