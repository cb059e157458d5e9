// A soft-engine VMM's V8 worker pool (bin/ringzero, "V8's worker pool of a soft-engine VMM"): a plain `ringzero run`
// replaces itself with the same command plus node's --v8-pool-size (clamp(cores - 1, 1, 4)), keeping its pid and its
// standard descriptors (Node marks inherited descriptors close-on-exec: the console must still reach the guest and
// back); RINGZERO_V8_POOL_SIZE sets the size, 0 leaves Node's pool alone; an explicit --v8-pool-size is kept as given;
// started through its shebang (one worker, marked), it re-executes only where the host wants another size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bin, guestKernel, tempDir, waitFor } from './support/manager-harness.ts';

interface Outcome { cmdline: string[]; environ: string[]; output: string; status: number | null }

/**
 * Run the echo guest under `node [nodeArgs] bin/ringzero run` (nodeArgs null: `bin/ringzero run`, through its
 * shebang), read the VMM's command line and environment once the guest is up, quit it.
 */
async function runEcho(nodeArgs: string[] | null, env: NodeJS.ProcessEnv): Promise<Outcome> {
  const dir = tempDir('pool');
  try {
    const kernel = guestKernel(dir, 'echo');
    const args = ['run', '--engine', 'soft', '--kernel', kernel, '--memory', '64M'];
    const child = spawn(nodeArgs === null ? bin : process.execPath, nodeArgs === null ? args : [...nodeArgs, bin, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env },
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString('latin1'); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString('latin1'); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor('the guest banner', () => output.includes('ringzero test guest: ready\n'), 30_000);
      // (the same pid: execv replaced the process image, so /proc/PID is the VMM that answers)
      const cmdline = fs.readFileSync(`/proc/${child.pid}/cmdline`, 'latin1').split('\0').filter((a) => a !== '');
      const environ = fs.readFileSync(`/proc/${child.pid}/environ`, 'latin1').split('\0').filter((a) => a !== '');
      child.stdin.write('hi');
      await waitFor('the echo', () => output.includes('hi'), 10_000);
      child.stdin.write('q');
      return { cmdline, environ, output, status: await exited };
    } finally {
      child.kill('SIGKILL');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const poolFlags = (cmdline: string[]) => cmdline.filter((a) => a.startsWith('--v8-pool-size'));
/** The pool a VMM on this host gets: clamp(cores - 1, 1, 4). */
const want = Math.max(1, Math.min(4, os.availableParallelism() - 1));

test('a plain soft-engine run re-executes itself with --v8-pool-size; its console still works', async () => {
  const r = await runEcho([], { RINGZERO_V8_POOL_SIZE: '' });
  assert.deepEqual(poolFlags(r.cmdline), [`--v8-pool-size=${want}`], r.cmdline.join(' '));
  assert.equal(path.resolve(r.cmdline[r.cmdline.indexOf(`--v8-pool-size=${want}`) + 1]), path.resolve(bin));
  assert.equal(r.status, 0, r.output);
});

test('RINGZERO_V8_POOL_SIZE sets the pool; 0 leaves Node\'s; an explicit --v8-pool-size is kept', async () => {
  assert.deepEqual(poolFlags((await runEcho([], { RINGZERO_V8_POOL_SIZE: '2' })).cmdline), ['--v8-pool-size=2']);
  assert.deepEqual(poolFlags((await runEcho([], { RINGZERO_V8_POOL_SIZE: '0' })).cmdline), []);
  assert.deepEqual(poolFlags((await runEcho(['--v8-pool-size=3'], { RINGZERO_V8_POOL_SIZE: '' })).cmdline), ['--v8-pool-size=3']);
});

test('started through its shebang, a run has one --v8-pool-size, the one this host wants, and no marker left', async () => {
  const r = await runEcho(null, { RINGZERO_V8_POOL_SIZE: '' });
  // (one worker from the shebang itself on a 2-core host; elsewhere the re-exec replaced the shebang's option)
  assert.deepEqual(poolFlags(r.cmdline), [`--v8-pool-size=${want}`], r.cmdline.join(' '));
  // (env(1) starts `node` by name; the re-exec by process.execPath, an absolute path)
  assert.equal(path.isAbsolute(r.cmdline[0]), want !== 1, `re-executed only where the host wants another size: ${r.cmdline.join(' ')}`);
  assert.equal(r.status, 0, r.output);
  // (re-executed: the new image's environment is the one execv passed, from which the marker was removed)
  const three = await runEcho(null, { RINGZERO_V8_POOL_SIZE: '3' });
  assert.deepEqual(poolFlags(three.cmdline), ['--v8-pool-size=3']);
  assert.deepEqual(three.environ.filter((v) => v.startsWith('RINGZERO_SHEBANG_POOL=')), [], 'the marker is not passed on');
  assert.ok(three.environ.includes('RINGZERO_V8_POOL_SIZE=3'));
  assert.deepEqual(poolFlags((await runEcho(null, { RINGZERO_V8_POOL_SIZE: '0' })).cmdline), []);
});

test('NODE_EXTRA_CA_CERTS does not reach a VMM: not through the shebang, not through the re-exec of a plain run', async () => {
  const ca = '/etc/ssl/certs/ca-certificates.crt';
  const extra = (environ: string[]) => environ.filter((v) => v.startsWith('NODE_EXTRA_CA_CERTS='));
  // (through its shebang, `env -u` starts node without it)
  const viaShebang = await runEcho(null, { RINGZERO_V8_POOL_SIZE: '', NODE_EXTRA_CA_CERTS: ca });
  assert.deepEqual(extra(viaShebang.environ), []);
  assert.equal(viaShebang.status, 0, viaShebang.output);
  // (a plain run re-executes itself with the pool size: the new image gets the environment without it)
  const reexec = await runEcho([], { RINGZERO_V8_POOL_SIZE: '2', NODE_EXTRA_CA_CERTS: ca });
  assert.deepEqual(poolFlags(reexec.cmdline), ['--v8-pool-size=2']);
  assert.deepEqual(extra(reexec.environ), []);
  assert.equal(reexec.status, 0, reexec.output);
});
