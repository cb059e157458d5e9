// WebAssembly compilation off the main thread (issue 4). WebAssembly.compile called on the main thread has the main
// thread post V8's compile job and its steps to Node's worker pool, and Node's TaskQueue::Push (a mutex and
// pthread_cond_signal) blocked the boot's main thread 1.0-2.2 s per boot in futex waits on this loaded 2-core host
// (61% of its waits, session 20 perf). Here one worker thread per process (./compile-worker.ts) receives the module
// bytes and compiles them, so the posting (and its waits) happen on that thread; the compiled module comes back by
// postMessage (a WebAssembly.Module is cloneable between a process's isolates in Node 20: its code is shared, not
// compiled again). V8's dynamic tier-up is still triggered by the thread that runs the code: that posting stays,
// as do the main thread's TurboFan JS and GC tasks (what was left of its waits in the perf below).
//
// Session 21, ten alternating boot pairs to the prompt (RINGZERO_WASM_COMPILE_THREAD=0 / on, same bundle, host load
// 22-42 from other sessions' VMs: prompts at 64-234 s), the VMM main thread's CPU at the prompt: 11.64/11.65,
// 10.61/9.27, 10.16/9.96, 8.87/10.45, 11.45/10.18, 11.52/10.02, 11.42/11.12, 14.55/12.60, 11.59/10.04, 12.10/11.62 s
// (mean -0.70 s, -6%; lower in 8 of 10); process CPU the same (mean -0.29 s, sd 2.0); the main thread's blocked
// time (wall - run - runqueue wait, /proc/PID/task/PID/schedstat) the same (2.43 s either way). perf sched_switch
// with DWARF stacks on one pair (first 120 s of each): the main thread's waits on compile posting (AsyncCompileJob
// start, CommitCompilationUnits, CancelAndWait: ~0.25 s) are gone, but a synchronous fallback (compileNow) now waits
// for the compile thread's compile of the same bytes (V8's NativeModuleCache) and tier-up contends with the compile
// thread for the code manager's lock, so the waits did not shrink; the gain is the async compile's main-thread work.
//
// The worker is started at the first compile and shared by every WasmEngine of the process. It never keeps the
// process alive by itself: it is referenced only while compiles are outstanding (as a pending WebAssembly.compile
// would be), so a VMM whose guest powered off exits. If it fails to start or dies, compiles go back to
// WebAssembly.compile on this thread (those in flight are compiled again here). RINGZERO_WASM_COMPILE_THREAD=0: off.
import type { Worker } from 'node:worker_threads';
import { spawnModuleWorker, siblingModule } from '../../../kvm/spawn.ts';
import { flagLock } from './tier-budget.ts';

export const COMPILE_THREAD = process.env.RINGZERO_WASM_COMPILE_THREAD !== '0';

interface Waiting {
  bytes: Uint8Array<ArrayBuffer>;
  resolve: (mod: WebAssembly.Module) => void;
  reject: (err: unknown) => void;
}

/** undefined: not started yet; null: off or failed (compile here). */
let worker: Worker | null | undefined;
const waiting = new Map<number, Waiting>();
let nextId = 1;

function start(): Worker | null {
  if (worker !== undefined) return worker;
  if (!COMPILE_THREAD) return (worker = null);
  let w: Worker;
  try {
    w = spawnModuleWorker(siblingModule(import.meta.url, 'compile-worker'), { lock: flagLock() });
  } catch {
    return (worker = null);
  }
  w.on('message', (m: { id: number; mod?: WebAssembly.Module; error?: string }) => {
    const q = waiting.get(m.id);
    if (q === undefined) return;
    waiting.delete(m.id);
    if (waiting.size === 0) w.unref();
    if (m.mod !== undefined) q.resolve(m.mod);
    else q.reject(new WebAssembly.CompileError(m.error ?? 'compile thread: no module'));
  });
  const fail = () => {
    if (worker !== w) return;
    worker = null;
    compileWaitingHere();
  };
  w.on('error', fail);
  w.on('exit', fail);
  // (after the listeners: adding a 'message' listener references the worker again)
  w.unref();
  return (worker = w);
}

/** What was sent to the compile thread and not answered, compiled here instead (it failed, or is being stopped). */
function compileWaitingHere(): void {
  const left = [...waiting.values()];
  waiting.clear();
  for (const q of left) WebAssembly.compile(q.bytes).then(q.resolve, q.reject);
}

/**
 * Compile `bytes` on the compile thread (or here, when there is none); resolves on this thread's event loop.
 * `budget`: V8's tier-up budget for its functions, the flag set back to `startBudget` after (./tier-budget.ts); not applied
 * here (WebAssembly.compile creates the module's budgets later, in a task of this thread's event loop).
 */
export function compileOffThread(bytes: Uint8Array<ArrayBuffer>, budget?: number, startBudget?: number): Promise<WebAssembly.Module> {
  const w = start();
  if (w === null) return WebAssembly.compile(bytes);
  const id = nextId++;
  return new Promise((resolve, reject) => {
    if (waiting.size === 0) w.ref();
    waiting.set(id, { bytes, resolve, reject });
    // (cloned, not transferred: the batch keeps its bytes for a synchronous compile if the event loop stalls)
    w.postMessage({ kind: 'compile', id, bytes, budget, start: startBudget });
  });
}

/** Stop the compile thread (tests); compiles still waiting are finished on this thread. */
export async function stopCompileThread(): Promise<void> {
  const w = worker;
  if (w === undefined || w === null) return;
  worker = undefined;
  compileWaitingHere();
  await w.terminate();
}
