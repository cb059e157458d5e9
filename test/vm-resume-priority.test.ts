// A migration destination's or restored VMM's main thread boosted for its first seconds, its other threads lowered
// when asked (src/vmm/resume-priority.ts), and each put back afterwards.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { favourMainThread, holdSession } from '../src/vmm/resume-priority.ts';

/** A thread's nice value (proc(5): field 19 of /proc/PID/task/TID/stat). */
const niceOf = (tid: number) => Number(fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ')[16]);
const others = () => fs.readdirSync('/proc/self/task').map(Number).filter((t) => t !== process.pid);

test('the other threads run at nice 19 for the given time, then at their own priority again', { skip: process.geteuid?.() !== 0 && 'raising a priority again needs CAP_SYS_NICE' }, async () => {
  const tids = others();
  assert.ok(tids.length > 0, 'Node has helper threads');
  const before = new Map(tids.map((t) => [t, niceOf(t)]));
  const main = niceOf(process.pid);
  const lowered = favourMainThread(0.3, 0, 19);
  assert.equal(lowered, tids.filter((t) => before.get(t)! < 19).length);
  for (const t of tids) assert.equal(niceOf(t), 19, `thread ${t} lowered`);
  assert.equal(niceOf(process.pid), main, 'the calling thread keeps its priority (no boost asked)');
  await new Promise((r) => setTimeout(r, 600));
  for (const t of tids) assert.equal(niceOf(t), before.get(t), `thread ${t} put back`);
});

test('the calling thread runs boosted for the given time, then at its own priority again', { skip: process.geteuid?.() !== 0 && 'raising a priority needs CAP_SYS_NICE' }, async () => {
  const tids = others();
  const before = new Map(tids.map((t) => [t, niceOf(t)]));
  const main = niceOf(process.pid);
  assert.ok(main > -7, 'the test runs above nice -7');
  favourMainThread(0.3, -7, 0);
  assert.equal(niceOf(process.pid), -7, 'the calling thread boosted');
  for (const t of tids) assert.equal(niceOf(t), before.get(t), `thread ${t} left at its own priority (others at 0)`);
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(niceOf(process.pid), main, 'the calling thread back at its own priority');
  for (const t of tids) assert.equal(niceOf(t), before.get(t), `thread ${t} put back`);
});

test('a thread started while the calling thread is boosted ends at its own priority, or at the offset it set itself from the boost', { skip: process.geteuid?.() !== 0 && 'raising a priority needs CAP_SYS_NICE' }, async () => {
  const main = niceOf(process.pid);
  assert.ok(main > -7 && main <= 0, 'the test runs at nice -6 to 0');
  favourMainThread(0.4, -7, 0);
  // Two threads started meanwhile (they inherit -7): one stays, one sets itself 5 below, as the wasm compile thread
  // does (src/cpu/soft/wasm/compile-worker.ts NICE). Each reports its tid (gettid through /proc/thread-self) and waits.
  const src = (delta: number) => `const { parentPort } = require('node:worker_threads'); const os = require('node:os'); const fs = require('node:fs');
    if (${delta} !== 0) os.setPriority(os.getPriority() + ${delta});
    parentPort.postMessage(Number(fs.readlinkSync('/proc/thread-self').split('/').pop()));
    parentPort.on('message', () => process.exit(0));`;
  const { Worker } = await import('node:worker_threads');
  const workers = [new Worker(src(0), { eval: true }), new Worker(src(-5), { eval: true })];
  try {
    const [plain, below] = await Promise.all(workers.map((w) => new Promise<number>((r) => w.once('message', r))));
    assert.equal(niceOf(plain), -7, 'the first inherited the boost');
    assert.equal(niceOf(below), -12, 'the second set itself 5 below it');
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(niceOf(process.pid), main, 'the calling thread back at its own priority');
    assert.equal(niceOf(plain), main, 'the inheriting thread at the calling thread\'s own priority');
    assert.equal(niceOf(below), main - 5, 'the other keeps its offset');
  } finally {
    for (const w of workers) w.postMessage('bye');
    await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
  }
});

test('0 seconds lowers nothing', () => {
  const before = others().map(niceOf);
  assert.equal(favourMainThread(0), 0);
  assert.deepEqual(others().map(niceOf), before);
});

// The VMM's session (its autogroup: sched(7)) boosted through a switch-over: only a VMM that leads its own session, as
// the daemon starts them, and put back once every hold is released.
const autogroupReason = !fs.existsSync('/proc/self/autogroup') ? 'no autogroups in this kernel' : process.geteuid?.() !== 0 ? 'raising a group needs CAP_SYS_NICE' : undefined;
test('a session leader\'s autogroup is raised while held (nested holds), then put back; another process\'s is left alone', { skip: autogroupReason }, () => {
  // (this test process does not lead its session: nothing to raise)
  assert.equal(holdSession(-5), undefined);
  const script = `
    import fs from 'node:fs';
    import { holdSession } from ${JSON.stringify(new URL('../src/vmm/resume-priority.ts', import.meta.url).href)};
    const nice = () => Number(/nice (-?\\d+)/.exec(fs.readFileSync('/proc/self/autogroup', 'utf8'))[1]);
    const seen = [nice()];
    const a = holdSession(-5); seen.push(nice());
    const b = holdSession(-5); a(); a(); seen.push(nice());
    b(); seen.push(nice());
    process.stdout.write(JSON.stringify(seen));`;
  // (detached: a session of its own, so an autogroup of its own)
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', detached: true } as Parameters<typeof spawnSync>[2] & { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [was, held, stillHeld, after] = JSON.parse(r.stdout) as number[];
  assert.ok(was > -5, 'the child starts above nice -5');
  assert.equal(held, -5, 'raised while held');
  assert.equal(stillHeld, -5, 'still raised while a second hold is kept (the first released twice counts once)');
  assert.equal(after, was, 'put back once every hold is released');
});
