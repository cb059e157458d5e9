// The raw futex hand-off the KVM engine's vCPU workers use (src/kvm/sys.ts futexWait / futexWake, instead of V8's
// Atomics.wait/notify): a wait returns at once when the word no longer holds the expected value, times out when
// nobody wakes it, and a worker thread woken 2000 times in a row answers every time (no lost wake-up).
import test from 'node:test';
import assert from 'node:assert/strict';
import { futexWord, futexWait, futexWake } from '../src/kvm/sys.ts';
import { spawnModuleWorker } from '../src/kvm/spawn.ts';

test('futexWait returns at once on a changed word and after its timeout otherwise', () => {
  const sab = new SharedArrayBuffer(8);
  const ch = new Int32Array(sab);
  const word = futexWord(sab, 1);
  Atomics.store(ch, 1, 5);
  let t = performance.now();
  futexWait(word, 4, 500); // the word holds 5, not 4: EAGAIN at once
  assert.ok(performance.now() - t < 100, `returned after ${performance.now() - t} ms`);
  t = performance.now();
  futexWait(word, 5, 30);
  const waited = performance.now() - t;
  assert.ok(waited >= 25 && waited < 1000, `timed out after ${waited} ms`);
  futexWake(word); // nobody waits: harmless
});

test('a worker woken through raw futexes answers every round trip', async () => {
  const sab = new SharedArrayBuffer(12);
  const ch = new Int32Array(sab);
  const word = futexWord(sab, 0);
  const rounds = 2000;
  const w = spawnModuleWorker(new URL('./support/futex-echo-worker.ts', import.meta.url), { sab, rounds });
  const exited = new Promise<number>((resolve, reject) => { w.once('exit', resolve); w.once('error', reject); });
  // Both sides' waits are bounded (50 ms in the worker): working wake-ups take well under a second for all rounds,
  // lost ones a timeout per round and so far longer than the deadline.
  const deadline = performance.now() + 20_000;
  try {
    for (let i = 0; i < rounds; i++) {
      Atomics.store(ch, 0, 1);
      futexWake(word);
      while (Atomics.load(ch, 0) !== 0) {
        assert.ok(performance.now() < deadline, `round ${i}: the answers are too slow (lost wake-ups)`);
        futexWait(word, 1, 50);
      }
    }
  } finally {
    if (performance.now() >= deadline) Atomics.store(ch, 2, 1);
  }
  assert.equal(await exited, 0);
  assert.equal(Atomics.load(ch, 1), rounds);
});
