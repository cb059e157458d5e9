// The translator's compile thread (src/cpu/soft/wasm/compile-thread.ts): a module compiled there comes back as a
// WebAssembly.Module this thread instantiates; a bad module rejects; and a process that used it exits on its own
// (the thread never keeps it alive: a VMM whose guest powered off must end).
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { compileOffThread, stopCompileThread } from '../src/cpu/soft/wasm/compile-thread.ts';

// (module (func (export "f") (result i32) i32.const 42))
const ANSWER = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0, 10, 6, 1, 4, 0, 65, 42, 11]);

test('a module compiled on the compile thread instantiates here', async () => {
  const mods = await Promise.all([1, 2, 3].map(() => compileOffThread(ANSWER.slice())));
  for (const mod of mods) {
    assert.ok(mod instanceof WebAssembly.Module);
    assert.equal((new WebAssembly.Instance(mod).exports.f as () => number)(), 42);
  }
  const bad = ANSWER.slice();
  bad[bad.length - 3] = 0x6a; // i32.add on an empty stack (then an extra end): invalid
  bad[bad.length - 2] = 0x0b;
  await assert.rejects(compileOffThread(bad), WebAssembly.CompileError);
  await stopCompileThread();
  // (after a stop, the next compile starts the thread again)
  const again = await compileOffThread(ANSWER.slice());
  assert.equal((new WebAssembly.Instance(again).exports.f as () => number)(), 42);
  await stopCompileThread();
});

test('a process that compiled on the compile thread exits without stopping it', () => {
  const mod = fileURLToPath(new URL('../src/cpu/soft/wasm/compile-thread.ts', import.meta.url));
  const script = `import { compileOffThread } from ${JSON.stringify(mod)};
const bytes = new Uint8Array(${JSON.stringify([...ANSWER])});
const m = await compileOffThread(bytes);
console.log(new WebAssembly.Instance(m).exports.f());
compileOffThread(bytes.slice()); // (one still in flight at the end)`;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), '42');
  assert.ok(Date.now() - t0 < 60_000);
});

test('the compile thread runs at RINGZERO_WASM_COMPILE_NICE (-5) from the thread that started it, where permitted', async (t) => {
  await stopCompileThread();
  const nice = (tid: string) => Number(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ')[16]);
  const main = nice(String(process.pid));
  const before = new Set(readdirSync('/proc/self/task'));
  await compileOffThread(ANSWER.slice());
  const started = readdirSync('/proc/self/task').filter((tid) => !before.has(tid));
  try {
    // Lowering a thread's nice needs CAP_SYS_NICE or RLIMIT_NICE: without, it keeps the main thread's.
    let permitted = main - 5 >= -20;
    if (permitted) {
      try { setPriority(main - 1); setPriority(main); } catch { permitted = false; }
    }
    if (!permitted) { t.skip('no permission to lower a nice value here'); return; }
    // (the worker's own threads start at the main thread's nice; only the compile thread itself moves)
    assert.ok(started.some((tid) => nice(tid) === main - 5), `new threads' nice values ${started.map(nice)}, main ${main}`);
    assert.equal(nice(String(process.pid)), main, 'the main thread keeps its own');
  } finally {
    await stopCompileThread();
  }
});
