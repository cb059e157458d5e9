// A vCPU thread: waits for its turn, runs KVM_RUN, hands the exit to the main thread, repeats until told to quit.
// The kick signal is blocked on this thread except inside KVM_RUN (KVM_SET_SIGNAL_MASK), so a kick that arrives
// between two KVM_RUNs stays pending and ends the next one at once: no window in which a stop request is lost.
import { workerData, parentPort } from 'node:worker_threads';
import { KvmVcpu } from '../../kvm/kvm.ts';
import { blockKickSignal, currentSignalMask, eatKickSignal, gettid, kickSignal, installKickHandler, futexWord, futexWait, futexWake } from '../../kvm/sys.ts';
import { CH, CMD_QUIT, SPIN_US, TURN_MAIN, TURN_WORKER, POSTED_DATA, POSTED_HEAD, POSTED_RING_ENTRIES, POSTED_TAIL, RAW_FUTEX, type WorkerData } from './channel.ts';
import { EXIT, IO_OUT, RUN } from '../../kvm/abi.ts';

const data = workerData as WorkerData;
const ch = new Int32Array(data.channel);
const vcpu = KvmVcpu.attach(data.vcpuFd, data.vcpuId, data.mmapSize);

installKickHandler();
blockKickSignal();
// Inside KVM_RUN: this thread's mask without the kick signal.
const mask = Buffer.from(currentSignalMask());
const kick = kickSignal() - 1;
mask[kick >> 3] &= ~(1 << (kick & 7));
vcpu.setSignalMask(mask);

const postedPorts = data.posted ? new Uint8Array(data.posted.bitmap) : undefined;
const ring = data.posted ? new Int32Array(data.posted.ring) : undefined;
const run = vcpu.run;
const view = vcpu.runView;

/** If the exit in kvm_run is a single OUT to a posted port and the ring has room, queue it; true if queued. */
function tryPost(): boolean {
  if (!postedPorts || !ring) return false;
  if (view.getUint32(RUN.exit_reason, true) !== EXIT.IO || run[RUN.io_direction] !== IO_OUT) return false;
  const port = view.getUint16(RUN.io_port, true);
  if (!(postedPorts[port >> 3] & (1 << (port & 7))) || view.getUint32(RUN.io_count, true) !== 1) return false;
  const size = run[RUN.io_size];
  const off = view.getUint32(RUN.io_data_offset, true);
  if (view.getUint32(RUN.io_data_offset + 4, true) !== 0 || off + size > run.length) return false;
  const head = Atomics.load(ring, POSTED_HEAD);
  if (head - Atomics.load(ring, POSTED_TAIL) >= POSTED_RING_ENTRIES) return false; // full: the main thread takes it
  const value = size === 1 ? run[off] : size === 2 ? view.getUint16(off, true) : view.getUint32(off, true);
  const at = POSTED_DATA + 2 * (head % POSTED_RING_ENTRIES);
  ring[at] = port | (size << 16);
  ring[at + 1] = value | 0;
  Atomics.store(ring, POSTED_HEAD, head + 1);
  return true;
}

function waitForTurn(): void {
  if (Atomics.load(ch, CH.TURN) === TURN_WORKER) return;
  const until = performance.now() + SPIN_US / 1000;
  for (let i = 0; ; i++) {
    if (Atomics.load(ch, CH.TURN) === TURN_WORKER) return;
    if ((i & 63) === 63 && performance.now() > until) break;
  }
  if (!RAW_FUTEX) {
    while (Atomics.load(ch, CH.TURN) !== TURN_WORKER) Atomics.wait(ch, CH.TURN, TURN_MAIN);
    return;
  }
  // Every waker of this thread (the main thread's run, quit and abandon) uses a raw futex wake (see channel.ts).
  while (Atomics.load(ch, CH.TURN) !== TURN_WORKER) {
    Atomics.store(ch, CH.WORKER_SLEEPS, 1);
    if (Atomics.load(ch, CH.TURN) !== TURN_WORKER) futexWait(turnWord, TURN_MAIN);
    Atomics.store(ch, CH.WORKER_SLEEPS, 0);
  }
}

const turnWord = futexWord(data.channel, CH.TURN);

function giveTurn(): void {
  Atomics.store(ch, CH.TURN, TURN_MAIN);
  // The main thread sleeps in a raw futex wait while it handles nothing else (KvmVcpuHandle.spinForExit), or in V8's
  // Atomics.waitAsync while the event loop runs: wake whichever it is.
  if (RAW_FUTEX && Atomics.load(ch, CH.MAIN_SLEEPS)) futexWake(turnWord);
  else Atomics.notify(ch, CH.TURN);
}

Atomics.store(ch, CH.TID, gettid());
giveTurn(); // ready
for (;;) {
  waitForTurn();
  if (Atomics.load(ch, CH.CMD) === CMD_QUIT) break;
  let rc: number;
  for (;;) {
    try {
      rc = vcpu.runOnce();
      if (rc < 0) eatKickSignal();
    } catch (e) {
      const errno = (e as { errno?: number }).errno ?? 0;
      rc = -(errno || 1);
      Atomics.store(ch, CH.ERRNO, errno);
    }
    ch[CH.RUNS]++;
    // A posted port write is completed here: straight back into the guest (a stop kicks the next KVM_RUN out).
    if (rc !== 0 || !tryPost()) break;
  }
  Atomics.store(ch, CH.RESULT, rc);
  giveTurn();
}
vcpu.detach();
Atomics.store(ch, CH.DONE, 1);
giveTurn();
parentPort?.close();
