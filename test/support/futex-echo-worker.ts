// Worker for test/kvm-futex.test.ts: waits (raw futex) for word 0 to become 1, answers by setting it back to 0 and
// waking the main thread, `rounds` times, then sets word 1 to the number of rounds it saw. Word 2 set: give up (its
// waits are bounded, so a broken wake-up makes the test fail instead of leaving this thread blocked).
import { workerData } from 'node:worker_threads';
import { futexWord, futexWait, futexWake } from '../../src/kvm/sys.ts';

const { sab, rounds } = workerData as { sab: SharedArrayBuffer; rounds: number };
const ch = new Int32Array(sab);
const word = futexWord(sab, 0);
let seen = 0;
for (let i = 0; i < rounds; i++) {
  while (Atomics.load(ch, 0) !== 1) {
    if (Atomics.load(ch, 2)) process.exit(1);
    futexWait(word, 0, 50);
  }
  seen++;
  Atomics.store(ch, 0, 0);
  futexWake(word);
}
Atomics.store(ch, 1, seen);
