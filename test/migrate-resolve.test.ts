// How `ringzero migrate-resolve` settles a switch-over left unknown (src/manager/migration.ts resolution): the whole
// table of action x force x the destination daemon's answer, without daemons (test/manager-switchover.test.ts drives
// the real fault and the verb end to end). The rule: never against the destination's answer; without an answer only
// when the operator forces one way; 'pending' (the destination still settling) and unknown answers always wait.
import test from 'node:test';
import assert from 'node:assert/strict';
import { resolution } from '../src/manager/migration.ts';
import { ManagerError } from '../src/manager/schema.ts';
import { resolveBody } from '../src/cli/migrate-commands.ts';

const RESUME = true, END = false;
type Outcome = boolean | RegExp;

function outcome(action: 'ask' | 'resume' | 'abandon', force: boolean, state: string | undefined): boolean | string {
  try {
    return resolution('vm', '10.0.0.2:7440', action, force, state, 'ECONNREFUSED');
  } catch (error) {
    assert.ok(error instanceof ManagerError, String(error));
    assert.equal(error.code, 'conflict');
    return error.message;
  }
}

const table: Array<[action: 'ask' | 'resume' | 'abandon', force: boolean, state: string | undefined, expected: Outcome]> = [
  ['ask', false, 'running', END],
  ['ask', false, 'absent', RESUME],
  ['ask', false, undefined, /cannot be asked \(ECONNREFUSED\): the VM stays paused here\. Once you know, migrate-resolve --resume --force .* or --abandon --force/],
  ['ask', false, 'pending', /still settling its side/],
  ['resume', false, 'absent', RESUME],
  ['resume', true, 'absent', RESUME],
  ['resume', false, 'running', /says the VM runs there: resuming it here would run it twice/],
  ['resume', true, 'running', /says the VM runs there: resuming it here would run it twice/],
  ['resume', false, undefined, /cannot be asked .*--force resumes it here anyway/],
  ['resume', true, undefined, RESUME],
  ['resume', true, 'pending', /still settling/],
  ['abandon', false, 'running', END],
  ['abandon', true, 'running', END],
  ['abandon', false, 'absent', /says the VM is not there: ending it here would lose it/],
  ['abandon', true, 'absent', /says the VM is not there: ending it here would lose it/],
  ['abandon', false, undefined, /cannot be asked .*--force ends it here anyway/],
  ['abandon', true, undefined, END],
  ['abandon', true, 'pending', /still settling/],
  ['abandon', true, 'bogus', /answered 'bogus'/],
];

test('resolution: never against the destination daemon\'s answer, without one only when forced one way', () => {
  for (const [action, force, state, expected] of table) {
    const got = outcome(action, force, state);
    const what = `${action}${force ? ' --force' : ''}, destination ${state ?? 'unreachable'}`;
    if (typeof expected === 'boolean') assert.equal(got, expected, `${what}: ${String(got)}`);
    else assert.match(String(got), expected, what);
  }
});

test('migrate-resolve flags: --resume/--abandon exclude each other, --force needs one of them', () => {
  assert.deepEqual(resolveBody({}), { action: 'ask' });
  assert.deepEqual(resolveBody({ resume: true }), { action: 'resume' });
  assert.deepEqual(resolveBody({ abandon: true, force: true }), { action: 'abandon', force: true });
  assert.throws(() => resolveBody({ resume: true, abandon: true }), /exclude each other/);
  assert.throws(() => resolveBody({ force: true }), /--force needs --resume or --abandon/);
});
