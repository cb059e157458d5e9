// A migration destination's or restored VMM's main thread boosted for its first seconds, its other threads lowered
// when asked (src/vmm/resume-priority.ts), and each put back afterwards.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { favourMainThread } from '../src/vmm/resume-priority.ts';

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

test('0 seconds lowers nothing', () => {
  const before = others().map(niceOf);
  assert.equal(favourMainThread(0), 0);
  assert.deepEqual(others().map(niceOf), before);
});
