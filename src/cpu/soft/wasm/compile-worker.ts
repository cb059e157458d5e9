// The translator's compile thread (see ./compile-thread.ts): compiles the module bytes the main thread sends and
// posts the WebAssembly.Module back (Node 20 shares a module's compiled code between the isolates of one process, so
// the main thread instantiates it without compiling again). It imports nothing of the engine: it knows no guest
// state. Messages are { kind, id, ... } so that other kinds of work can be added later (a restored VM's hot blocks
// translated here: ../hot-list.ts).
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { withBudget } from './tier-budget.ts';

/**
 * This thread's nice value relative to the thread that started it (RINGZERO_WASM_COMPILE_NICE; 0: the same). A module
 * it compiles is waited for: its blocks replay in JavaScript meanwhile and, after ASYNC_WAIT replays, the main thread
 * waits for it (runtime.ts); on a 2-core host this thread competes for a core with V8's four worker threads, busy with
 * TurboFan tier-ups that nothing waits for. Linux applies nice per thread, and os.setPriority's pid 0 is the calling
 * thread (setpriority(2) PRIO_PROCESS, sched(7)). Below the starting value it needs CAP_SYS_NICE or RLIMIT_NICE: without,
 * the thread keeps its priority.
 */
const NICE = Number(process.env.RINGZERO_WASM_COMPILE_NICE ?? -5);
if (NICE !== 0) {
  try {
    os.setPriority(Math.min(19, Math.max(-20, os.getPriority() + NICE)));
  } catch { /* not permitted: as it was */ }
}

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
