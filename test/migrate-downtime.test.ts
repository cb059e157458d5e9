// What a migration reports as its downtime against the pause the guest sees (issue 7, session 24): the destination's
// guest clock stays at the source's pause until the guest runs there (Machine.applyState holds it, run() starts it),
// and the destination answers "resumed", which ends the source's downtime, only then (receiveMigrationHeld), so the
// downtime reported covers the destination's way from "go" to the guest's first instruction and is never shorter
// than the time the guest's clock stood still. Two soft-engine Machines in this process, the counter guest.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Machine, SLICE, type MachineOptions } from '../src/vmm/machine.ts';
import { migrateMachine } from '../src/migration/source.ts';
import { receiveMigrationHeld } from '../src/migration/destination.ts';
import { counterPair } from './support/counter-pair.ts';
import { until, counterLines } from './support/counter-guest.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The counter pair with a destination whose Machine is built with `options`. */
const counterPairWith = (options: MachineOptions = {}) => counterPair((at, dio) => receiveMigrationHeld(at, dio, options));

test('the destination holds the guest clock until it runs the guest, and the source\'s downtime lasts until then', async () => {
  const { io, src, dio, port, incoming, stop } = counterPairWith();
  let dest: Machine | undefined;
  try {
    await until(() => counterLines(io.text()).length >= 3, 20_000, 'three ticks');
    const migrated = migrateMachine(src, { host: '127.0.0.1', port: await port, downtimeMs: 50 });
    const { machine, resumed, timeline } = await incoming;
    dest = machine;
    // After "go", before the guest runs here: the clock stands where the source paused it, however long this takes.
    const held = dest.clock.now();
    assert.equal(held, src.clock.now(), 'the destination\'s guest clock starts from the source\'s pause');
    await sleep(250);
    assert.equal(dest.clock.now(), held, 'the guest clock stood still until the guest runs (RINGZERO_HOLD_CLOCK=0 lets it run from the restore)');
    // The source has no "resumed" yet: its downtime goes on.
    let done = false;
    void migrated.then(() => { done = true; }, () => {});
    await sleep(20);
    assert.equal(done, false, 'the source waits for "resumed" (RINGZERO_MIGRATE_RESUMED_EARLY=1 sends it on "go")');
    resumed();
    const destRunning = dest.run();
    const p = await migrated;
    assert.equal(p.phase, 'completed');
    assert.ok(p.downtimeMs! >= 250, `the reported downtime (${p.downtimeMs} ms) covers the 250 ms the destination took from "go" to running the guest`);
    assert.ok(timeline.go !== undefined && timeline.resumed !== undefined && timeline.resumed - timeline.go >= 250, JSON.stringify(timeline));
    // The guest counts on at the destination, from where it stopped, no value lost.
    const before = counterLines(io.text());
    await until(() => counterLines(dio.text()).length >= 3, 20_000, 'ticks at the destination');
    assert.equal(counterLines(dio.text())[0], before[before.length - 1] + 1, 'the counter goes on');
    assert.ok(dest.clock.now() > held, 'the clock runs once the guest does');
    dest.requestExit({ kind: 'poweroff' });
    await destRunning;
  } finally {
    await stop(dest);
  }
});

test('a restored VM\'s first seconds: slices bounded in time (resumeSliceMs), back to SLICE instructions after; none without the bound', async () => {
  for (const sliceMs of [0.0001, 0]) {
    // (a bound no slice can keep: every slice halves the next one, down to the least)
    const { io, src, dio, port, incoming, stop } = counterPairWith({ resumeSliceMs: sliceMs });
    let dest: Machine | undefined;
    try {
      await until(() => counterLines(io.text()).length >= 3, 20_000, 'three ticks');
      const migrated = migrateMachine(src, { host: '127.0.0.1', port: await port, downtimeMs: 50 });
      const { machine, resumed } = await incoming;
      dest = machine;
      resumed();
      const destRunning = dest.run();
      await migrated;
      await until(() => counterLines(dio.text()).length >= 20, 20_000, 'ticks at the destination');
      if (sliceMs > 0) {
        assert.ok(dest.minBudget < SLICE && dest.budget < SLICE, `slices shortened in the first seconds (least ${dest.minBudget}, now ${dest.budget})`);
        await until(() => dest!.budget === SLICE, 10_000, 'the slice back at SLICE after the window');
      } else {
        assert.equal(dest.minBudget, SLICE, 'RINGZERO_RESUME_SLICE_MS=0: the slices stay SLICE instructions');
      }
      dest.requestExit({ kind: 'poweroff' });
      await destRunning;
    } finally {
      await stop(dest);
    }
  }
});
