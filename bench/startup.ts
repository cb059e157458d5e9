// bench/startup: what a ringzero process costs before it does its work, with the bundle (built by scripts/build.mjs) as
// bin/ringzero runs it (dist/cjs/main.cjs through vm.Script with its V8 code caches, written by a warm-up run of each
// kind first, as the first VMM or command to run long enough would), against the ES module bundle without a code cache
// (RINGZERO_CODE_CACHE=0: dist/esm) and the sources through tsx (RINGZERO_NO_BUNDLE=1), alternating run by run, and
// QEMU's process start to its QMP greeting as the reference in the same run.
//
//   node --import tsx bench/startup.ts [--runs 7]
//
// Cases (wall time from spawn, and the process's CPU time user+sys from /usr/bin/time):
//   help     `ringzero --help` to exit.
//   run      `ringzero run --engine soft` of a tiny synthetic kernel (src/boot/synthetic.ts) that prints two lines on
//            COM1 and powers off: to the first console byte on stdout, and to exit (CPU: the whole process).
//   restore  `ringzero run --restore DIR` of a snapshot of a tiny guest that prints '.' every ~2M instructions: to the
//            first byte after the restore (then the process is ended; CPU: the process to that point).
//   list     `ringzero list` against a running daemon (an empty one), to exit.
//   qemu     `qemu-system-x86_64 -M none -S -qmp stdio`: to the QMP greeting (then quit).
// Rebuilds the bundle first. Prints medians and the ratios bundle/esm and bundle/tsx, then one JSON line.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBzImage } from '../src/boot/synthetic.ts';
import { controlRequest } from '../src/vmm/control.ts';
import { median, benchArgs } from './support/common.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'ringzero');
const { values } = benchArgs(import.meta.url, { options: { runs: { type: 'string', default: '7' } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs: a positive integer');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringzero-bench-startup-'));
const children = new Set<number>();
process.on('exit', () => {
  for (const pid of children) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  fs.rmSync(work, { recursive: true, force: true });
});

// hello on COM1, an RTC check, ACPI poweroff (the guest of test/vm-kvm-cli.test.ts).
const HELLO_HEX = '488d3576000000b91e000000e857000000b000e670e47188c380e30f80fb0977173c597713488d356f000000b917000000e8'
  + '32000000eb11488d3573000000b915000000e81f000000803d2c00000000750c66ba040666b8003466efeb0766baf90cb006eef4ebfd66'
  + 'bafd03eca82074fb66baf803aceeffc975edc30072696e677a65726f2067756573743a2068656c6c6f206f6e20434f4d310a72746320'
  + '7365636f6e64733a2076616c6964204243440a727463207365636f6e64733a20494e56414c49440a';
// loop: mov ecx, 2000000; l: dec ecx; jnz l; mov dx, 0x3f8; mov al, '.'; out dx, al; jmp loop
const DOTS_HEX = 'b980841e00ffc975fc66baf803b02eeeebee';

function kernel(name: string, hex: string): string {
  const payload = new Uint8Array(4096).fill(0xf4);
  payload.set(Buffer.from(hex, 'hex'), 0x200);
  const file = path.join(work, `${name}.bzImage`);
  fs.writeFileSync(file, makeBzImage({ payload }));
  return file;
}

interface Sample { firstByteMs?: number; exitMs: number; cpuMs: number }

/** Spawn `cmd args` under /usr/bin/time; `stopAtFirstByte` ends the process at its first stdout byte. */
function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv, stopAtFirstByte = false, input?: string): Promise<Sample> {
  const timeFile = path.join(work, 'time.txt');
  fs.rmSync(timeFile, { force: true });
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn('/usr/bin/time', ['-f', '%U %S', '-o', timeFile, cmd, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child.pid!);
    let firstByteMs: number | undefined;
    let stderr = '';
    const timer = setTimeout(() => { stopChild(child.pid!); reject(new Error(`${cmd} ${args.join(' ')}: no answer in 60 s: ${stderr}`)); }, 60_000);
    if (input !== undefined) child.stdin.end(input);
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.stdout.on('data', () => {
      if (firstByteMs !== undefined) return;
      firstByteMs = performance.now() - start;
      if (stopAtFirstByte) stopChild(child.pid!);
    });
    child.on('exit', (code) => {
      const exitMs = performance.now() - start;
      clearTimeout(timer);
      children.delete(child.pid!);
      const [user, sys] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
      if (!stopAtFirstByte && code !== 0) return reject(new Error(`${cmd} ${args.join(' ')}: status ${code}: ${stderr}`));
      resolve({ firstByteMs, exitMs, cpuMs: (user + sys) * 1000 });
    });
  });
}

/** End the process that /usr/bin/time `timePid` runs (time itself then exits and writes its figures). */
function stopChild(timePid: number): void {
  let kids: string[] = [];
  try {
    kids = fs.readFileSync(`/proc/${timePid}/task/${timePid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch { /* gone */ }
  for (const pid of kids) try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  execFileSync(process.execPath, [path.join(root, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  const hello = kernel('hello', HELLO_HEX);

  // A snapshot of the dots guest, taken through its control socket.
  const snap = path.join(work, 'snap');
  const socket = path.join(work, 'control.sock');
  const vm = spawn(process.execPath, [bin, 'run', '--engine', 'soft', '--kernel', kernel('dots', DOTS_HEX), '--memory', '64M', '--control-socket', socket], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.add(vm.pid!);
  await new Promise<void>((resolve) => vm.stdout.once('data', () => resolve()));
  const answer = await controlRequest(socket, { cmd: 'snapshot', dir: snap }, 30_000) as { ok: boolean; error?: string };
  if (!answer.ok) throw new Error(`snapshot: ${answer.error}`);
  vm.kill('SIGKILL');
  children.delete(vm.pid!);

  // An empty daemon for `list`.
  const apiSocket = path.join(work, 'api.sock');
  const daemon = spawn(process.execPath, [bin, 'daemon', '--state-dir', path.join(work, 'state'), '--socket', apiSocket], { stdio: 'ignore' });
  children.add(daemon.pid!);
  for (let i = 0; i < 200 && !fs.existsSync(apiSocket); i++) await sleep(50);

  const modes = {
    bundle: { ...process.env, RINGZERO_NO_BUNDLE: '', RINGZERO_CODE_CACHE: '' },
    esm: { ...process.env, RINGZERO_NO_BUNDLE: '', RINGZERO_CODE_CACHE: '0' },
    tsx: { ...process.env, RINGZERO_NO_BUNDLE: '1' },
  };
  type Mode = keyof typeof modes;
  // The code caches of `run` and of the other commands (the daemon above wrote its own): a VMM and a command that
  // write theirs at exit (RINGZERO_CODE_CACHE_MS=0), as a VMM or command living 1.5 s would.
  const warm = { ...modes.bundle, RINGZERO_CODE_CACHE_MS: '0' };
  await measure(process.execPath, [bin, 'run', '--engine', 'soft', '--kernel', hello, '--memory', '64M'], warm);
  await measure(process.execPath, [bin, '--help'], warm);
  const figures: Record<string, number[]> = {};
  const add = (key: string, v: number | undefined) => { if (v !== undefined) (figures[key] ??= []).push(v); };
  const qemu = (() => { try { execFileSync('qemu-system-x86_64', ['--version']); return true; } catch { return false; } })();

  for (let r = 0; r < runs; r++) {
    for (const mode of (r % 3 === 0 ? ['bundle', 'esm', 'tsx'] : r % 3 === 1 ? ['esm', 'tsx', 'bundle'] : ['tsx', 'bundle', 'esm']) as Mode[]) {
      const env = modes[mode];
      let s = await measure(process.execPath, [bin, '--help'], env);
      add(`${mode}_help_ms`, s.exitMs); add(`${mode}_help_cpu_ms`, s.cpuMs);
      s = await measure(process.execPath, [bin, 'run', '--engine', 'soft', '--kernel', hello, '--memory', '64M'], env);
      add(`${mode}_run_first_byte_ms`, s.firstByteMs); add(`${mode}_run_exit_ms`, s.exitMs); add(`${mode}_run_cpu_ms`, s.cpuMs);
      s = await measure(process.execPath, [bin, 'run', '--restore', snap], env, true);
      add(`${mode}_restore_first_byte_ms`, s.firstByteMs); add(`${mode}_restore_cpu_ms`, s.cpuMs);
      s = await measure(process.execPath, [bin, 'list', '--socket', apiSocket], env);
      add(`${mode}_list_ms`, s.exitMs); add(`${mode}_list_cpu_ms`, s.cpuMs);
    }
    if (qemu) {
      const s = await measure('qemu-system-x86_64', ['-M', 'none', '-display', 'none', '-nodefaults', '-S', '-qmp', 'stdio'], process.env, true);
      add('qemu_qmp_greeting_ms', s.firstByteMs); add('qemu_qmp_greeting_cpu_ms', s.cpuMs);
    }
  }
  daemon.kill('SIGTERM');

  const med: Record<string, number> = {};
  for (const [k, v] of Object.entries(figures)) med[k] = median(v);
  const row = (label: string, key: string) => {
    const b = med[`bundle_${key}`], e = med[`esm_${key}`], t = med[`tsx_${key}`];
    console.log(`  ${label.padEnd(34)} bundle ${b.toFixed(0).padStart(5)} ms   esm ${e.toFixed(0).padStart(5)} ms   tsx ${t.toFixed(0).padStart(5)} ms   `
      + `bundle/esm ${(b / e).toFixed(2)}x   bundle/tsx ${(b / t).toFixed(2)}x`);
  };
  console.log(`medians of ${runs} (wall from spawn; cpu = user+sys of the process):`);
  row('--help, to exit', 'help_ms');
  row('--help, cpu', 'help_cpu_ms');
  row('run tiny kernel, to first byte', 'run_first_byte_ms');
  row('run tiny kernel, to exit', 'run_exit_ms');
  row('run tiny kernel, cpu', 'run_cpu_ms');
  row('run --restore, to first byte', 'restore_first_byte_ms');
  row('run --restore, cpu to first byte', 'restore_cpu_ms');
  row('list (daemon call), to exit', 'list_ms');
  row('list (daemon call), cpu', 'list_cpu_ms');
  if (qemu) {
    console.log(`  qemu -M none to its QMP greeting: ${med.qemu_qmp_greeting_ms.toFixed(0)} ms (cpu ${med.qemu_qmp_greeting_cpu_ms.toFixed(0)} ms); `
      + `bundled run to first byte / that: ${(med.bundle_run_first_byte_ms / med.qemu_qmp_greeting_ms).toFixed(2)}x`);
  }
  console.log(JSON.stringify({ bench: 'startup', runs, ...Object.fromEntries(Object.entries(med).map(([k, v]) => [k, Math.round(v * 10) / 10])) }));
}

await main();
process.exit(0);
