// A vCPU thread: waits for its turn, runs KVM_RUN, hands the exit to the main thread, repeats until told to quit.
// The kick signal is blocked on this thread except inside KVM_RUN (KVM_SET_SIGNAL_MASK), so a kick that arrives
// between two KVM_RUNs stays pending and ends the next one at once: no window in which a stop request is lost.
import { workerData, parentPort } from 'node:worker_threads';
import { KvmVcpu } from '../../kvm/kvm.ts';
import { blockKickSignal, currentSignalMask, eatKickSignal, gettid, kickSignal, installKickHandler } from '../../kvm/sys.ts';
import { CH, CMD_QUIT, SPIN_US, TURN_MAIN, TURN_WORKER, type WorkerData } from './channel.ts';

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

function waitForTurn(): void {
  if (Atomics.load(ch, CH.TURN) === TURN_WORKER) return;
  const until = performance.now() + SPIN_US / 1000;
  for (let i = 0; ; i++) {
    if (Atomics.load(ch, CH.TURN) === TURN_WORKER) return;
    if ((i & 63) === 63 && performance.now() > until) break;
  }
  while (Atomics.load(ch, CH.TURN) !== TURN_WORKER) Atomics.wait(ch, CH.TURN, TURN_MAIN);
}

function giveTurn(): void {
  Atomics.store(ch, CH.TURN, TURN_MAIN);
  Atomics.notify(ch, CH.TURN);
}

Atomics.store(ch, CH.TID, gettid());
giveTurn(); // ready
for (;;) {
  waitForTurn();
  if (Atomics.load(ch, CH.CMD) === CMD_QUIT) break;
  let rc: number;
  try {
    rc = vcpu.runOnce();
    if (rc < 0) eatKickSignal();
  } catch (e) {
    const errno = (e as { errno?: number }).errno ?? 0;
    rc = -(errno || 1);
    Atomics.store(ch, CH.ERRNO, errno);
  }
  ch[CH.RUNS]++;
  Atomics.store(ch, CH.RESULT, rc);
  giveTurn();
}
vcpu.detach();
Atomics.store(ch, CH.DONE, 1);
giveTurn();
parentPort?.close();
