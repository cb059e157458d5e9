// The translator's compile thread (see ./compile-thread.ts): compiles the module bytes the main thread sends and
// posts the WebAssembly.Module back (Node 20 shares a module's compiled code between the isolates of one process, so
// the main thread instantiates it without compiling again). It imports nothing of the engine: it knows no guest
// state. Messages are { kind, id, ... } so that other kinds of work can be added later (a restored VM's hot blocks
// translated here: ../hot-list.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { withBudget } from './tier-budget.ts';

/** The V8 flag lock shared with the main thread (./tier-budget.ts), when it sent one. */
const lock = (workerData as { lock?: Int32Array } | null)?.lock;

parentPort!.on('message', (m: { kind: 'compile'; id: number; bytes: Uint8Array<ArrayBuffer>; budget?: number; start?: number }) => {
  if (m.kind !== 'compile') return;
  // Synchronous: this thread runs Liftoff over the module itself (V8 may add its background threads to the job, as
  // it does for WebAssembly.compile), and no step of it waits for this thread's event loop to turn.
  let mod: WebAssembly.Module;
  try {
    // (under the module's own tier-up budget when it has one; never waiting for the lock: the flag as it is then)
    mod = lock !== undefined && m.budget !== undefined && m.start !== undefined
      ? withBudget(lock, m.budget, m.start, 0, () => new WebAssembly.Module(m.bytes))
      : new WebAssembly.Module(m.bytes);
  } catch (err) {
    parentPort!.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) });
    return;
  }
  parentPort!.postMessage({ id: m.id, mod });
});
