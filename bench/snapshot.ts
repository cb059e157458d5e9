// bench/snapshot: snapshot size and time, and restore time, for the default guest at its shell prompt, on ringzero's
// software engine against QEMU's binary translator (`qemu-system-x86_64 -accel tcg`) on the same kernel, initramfs,
// command line and memory size, in the same run (issue 7).
//
//   node --import tsx bench/snapshot.ts [--runs 3] [--sizes 256M,2G] [--timeout 600] [--spare-warm-up-ms 1500] [--no-spare]
//
// Per memory size, each VMM boots the guest once to `~ # `, then for N runs:
//   snapshot  ringzero: the control socket's {"cmd":"snapshot"} (pause, write state.json + sparse memory, resume),
//             timed request to answer. QEMU: QMP `stop`, `migrate "exec:cat > FILE"`, poll `query-migrate` until
//             completed, `cont` (its savevm needs a qcow2 disk, which this guest has none of; migrate-to-file is
//             what savevm writes, minus the disk). Size: bytes allocated on disk (du) and apparent size.
//   restore   a fresh VMM process from the snapshot: `ringzero run --restore DIR` and `qemu … -incoming "exec:cat
//             FILE"` (+ `cont` once the incoming migration has landed, paused as it was saved). Timed from spawn to
//             the guest answering a newline on its serial console with its prompt (both), and for QEMU also to
//             query-status "running". ringzero is also restored in this process (Machine.restore, no process start):
//             the restore call alone and to the prompt. And into a spare VMM (`ringzero vmm-spare`, as the daemon's
//             `--vmm-pool` keeps them: started, warmed up for --spare-warm-up-ms of CPU at nice 10, then handed `run
//             --restore DIR`, which is what the daemon's `snapshot restore` and backup restore do with a pool): timed
//             from the hand-off to the prompt, with the spare's CPU over that span (--no-spare: not measured).
// ringzero runs as bin/ringzero with its bundle rebuilt from the working tree at the start (so it runs dist/cjs/main.cjs
// with the V8 code cache that the first VMM to live 1.5 s, the boot below, writes: what a user's and the daemon's VMMs
// run), not through tsx (`--tsx` to measure that path). A new-process restore is
// split into its parts with the VMM's RINGZERO_RESTORE_TIMING line (src/vmm/run.ts): process start to Machine.restore
// (Node itself, then loading the CLI and the engine), Machine.restore, and the guest answering at its prompt after it
// (a fresh V8 and a cold CPU: the soft engine's decoded-block cache and translations start empty). CPU times (the
// process's, all threads, from /proc/PID/stat at the prompt; ringzero's main thread from its schedstat) are printed
// with the wall times: a loaded host stretches wall time, CPU time much less.
// Prints the medians and the ratios ringzero/QEMU, then one JSON line. The machine is noisy: only the ratios measured
// in the same run mean anything.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { DEFAULT_CMDLINE } from '../src/vmm/config.ts';
import { controlRequest } from '../src/vmm/control.ts';
import { Machine } from '../src/vmm/machine.ts';
import { readProcStat, statCpuSeconds } from '../src/sys/proc-stat.ts';
import { median, benchArgs } from './support/common.ts';
import { Qmp } from './support/qmp.ts';
import { killAllVmms, spareReady, VmmProcess } from './support/vmm-process.ts';
import { Spare } from '../src/manager/pool.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = benchArgs(import.meta.url, {
  options: {
    runs: { type: 'string', default: '3' },
    sizes: { type: 'string', default: '256M,2G' },
    timeout: { type: 'string', default: '600' },
    tsx: { type: 'boolean', default: false },
    'spare-warm-up-ms': { type: 'string', default: '1500' },
    'no-spare': { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs);
const sizes = values.sizes!.split(',');
const timeoutMs = Number(values.timeout) * 1000;
const image = findDefaultImage();
if (!image) {
  console.error('bench/snapshot: no default image; run `bin/ringzero image build` first');
  process.exit(2);
}
const qemuPresent = spawnSync('qemu-system-x86_64', ['--version']).status === 0;
if (!qemuPresent) console.error('bench/snapshot: qemu-system-x86_64 not found (apt-get install qemu-system-x86): ringzero alone');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringzero-bench-snapshot-'));
process.on('exit', () => {
  killAllVmms();
  fs.rmSync(work, { recursive: true, force: true });
});

const vmm = (cmd: string, args: string[]) => new VmmProcess(cmd, args, timeoutMs);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function diskUsage(file: string): { bytes: number; allocated: number } {
  const st = fs.statSync(file);
  return { bytes: st.size, allocated: st.blocks * 512 };
}

function dirUsage(dir: string): { bytes: number; allocated: number } {
  let bytes = 0, allocated = 0;
  for (const name of fs.readdirSync(dir)) {
    const u = diskUsage(path.join(dir, name));
    bytes += u.bytes; allocated += u.allocated;
  }
  return { bytes, allocated };
}

interface Samples {
  snapshotMs: number[]; restoreMs: number[]; allocated: number; bytes: number; runningMs?: number[]; restoreCallMs?: number[]; inProcessMs?: number[];
  /** Into a spare VMM: hand-off to the prompt, Machine.restore in it, the spare's CPU over the span. */
  spareMs?: number[]; spareCallMs?: number[]; spareCpuMs?: number[];
  /** CPU time of the restored process at the prompt (all threads). */
  restoreCpuMs: number[];
  parts?: RestoreParts[];
}

// The bundle, rebuilt now (a stale one would make bin/ringzero fall back to tsx, which costs ~0.3-1 s of start-up).
let ringzeroCmd = path.join(root, 'bin', 'ringzero');
let ringzeroPre: string[] = [];
let ringzeroFrom = 'bin/ringzero through tsx (--tsx)';
if (!values.tsx) {
  const built = spawnSync(process.execPath, [path.join(root, 'scripts', 'build.mjs'), '--quiet'], { stdio: 'inherit' });
  const bundle = path.join(root, 'dist', 'cjs', 'main.cjs');
  if (built.status === 0 && fs.existsSync(bundle)) {
    ringzeroCmd = process.execPath;
    ringzeroPre = [path.join(root, 'bin', 'ringzero')];
    ringzeroFrom = 'bin/ringzero with the bundle built now from the working tree (dist/cjs/main.cjs and its code cache)';
  } else {
    ringzeroFrom = 'bin/ringzero (no bundle could be built)';
  }
}
console.log(`ringzero runs from ${ringzeroFrom}`);
const rzVmm = (args: string[], env?: Record<string, string>) => new VmmProcess(ringzeroCmd, [...ringzeroPre, ...args], timeoutMs, env);

/** CPU time of process `pid` so far, all its threads (ms; /proc/PID/stat utime + stime). */
function processCpuMs(pid: number): number {
  const stat = readProcStat(`/proc/${pid}/stat`);
  if (stat === undefined) throw new Error(`process ${pid} is gone`);
  return statCpuSeconds(stat) * 1000;
}
/** CPU time of process `pid`'s main thread so far (ms; its schedstat, in ns). */
function mainThreadCpuMs(pid: number): number {
  return Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
}

interface RestoreParts { startMs: number; restoreMs: number; guestMs: number; startCpuMs: number; restoreCpuMs: number; guestCpuMs: number; cpuMs: number }

async function benchRingzero(memory: string): Promise<Samples> {
  const socket = path.join(work, `rz-${memory}.sock`);
  const t0 = performance.now();
  const vm = rzVmm(['run', '--engine', 'soft', '--memory', memory, '--cmdline', DEFAULT_CMDLINE, '--control-socket', socket]);
  await vm.waitForOutput(GUEST_PROMPT);
  console.log(`  ringzero ${memory}: at the prompt after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await vm.pingPrompt(); // settled: the shell answers
  const s: Samples = { snapshotMs: [], restoreMs: [], allocated: 0, bytes: 0, restoreCallMs: [], inProcessMs: [], restoreCpuMs: [], parts: [] };
  const dir = path.join(work, `rz-${memory}`);
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const answer = await controlRequest(socket, { cmd: 'snapshot', dir }, timeoutMs);
    if (answer.ok !== true) throw new Error(`ringzero snapshot: ${JSON.stringify(answer)}`);
    s.snapshotMs.push(performance.now() - t);
  }
  await vm.kill();
  ({ bytes: s.bytes, allocated: s.allocated } = dirUsage(dir));
  for (let i = 0; i < runs; i++) {
    const spawnedAt = performance.timeOrigin + performance.now();
    const t = performance.now();
    const restored = rzVmm(['run', '--restore', dir], { RINGZERO_RESTORE_TIMING: '1' });
    await restored.pingPrompt();
    const wall = performance.now() - t;
    const pid = restored.child.pid!;
    const cpuMs = processCpuMs(pid), mainCpu = mainThreadCpuMs(pid);
    s.restoreMs.push(wall);
    s.restoreCpuMs.push(cpuMs);
    await restored.kill();
    const m = /ringzero: restore timing (\{.*\})/.exec(restored.err);
    if (m) {
      const r = JSON.parse(m[1]) as { timeOrigin: number; startMs: number; restoreMs: number; startCpuMs: number; restoreCpuMs: number };
      const startMs = r.timeOrigin - spawnedAt + r.startMs;
      s.parts!.push({
        startMs, restoreMs: r.restoreMs, guestMs: wall - startMs - r.restoreMs,
        startCpuMs: r.startCpuMs, restoreCpuMs: r.restoreCpuMs, guestCpuMs: mainCpu - r.startCpuMs - r.restoreCpuMs, cpuMs,
      });
    }
    const p = await restoreInProcess(dir);
    s.restoreCallMs!.push(p.callMs);
    s.inProcessMs!.push(p.promptMs);
    if (!values['no-spare']) {
      const r = await restoreIntoSpare(dir);
      (s.spareMs ??= []).push(r.wallMs);
      (s.spareCallMs ??= []).push(r.callMs);
      (s.spareCpuMs ??= []).push(r.cpuMs);
      console.log(`  ringzero ${memory} restore into a spare #${i + 1} (${r.note}): to the prompt ${r.wallMs.toFixed(0)} ms (Machine.restore ${r.callMs.toFixed(1)} ms), its CPU ${r.cpuMs.toFixed(0)} ms`);
    }
  }
  return s;
}

/**
 * Restore into a spare VMM, as the daemon does with its pool: spawned, warmed up, then handed `run --restore DIR`.
 * Timed from the hand-off to the guest answering at its prompt; CPU is the spare's over that span (all threads).
 */
async function restoreIntoSpare(dir: string): Promise<{ wallMs: number; callMs: number; cpuMs: number; note: string }> {
  const warmUpMs = Number(values['spare-warm-up-ms']);
  const spare = Spare.spawn({ file: ringzeroCmd, args: ringzeroPre }, {
    warmUpMs, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, RINGZERO_RESTORE_TIMING: '1' },
  });
  const proc = new VmmProcess(ringzeroCmd, [], timeoutMs, undefined, spare.child);
  const note = await spareReady(spare, () => proc.err);
  await sleep(1000); // (a daemon's spare has usually waited a while: V8's background compiles of its warm-up done)
  const cpu0 = processCpuMs(spare.pid);
  const t = performance.now();
  await spare.take(['run', '--restore', dir]);
  await proc.pingPrompt();
  const wallMs = performance.now() - t;
  const cpuMs = processCpuMs(spare.pid) - cpu0;
  await proc.kill();
  const m = /ringzero: restore timing (\{.*\})/.exec(proc.err);
  const callMs = m ? (JSON.parse(m[1]) as { restoreMs: number }).restoreMs : NaN;
  return { wallMs, callMs, cpuMs, note };
}

/** Restore into this process: no process start or module loading, the VMM's own cost. */
async function restoreInProcess(dir: string): Promise<{ callMs: number; promptMs: number }> {
  let out = '';
  let receiver: ((data: Uint8Array) => void) | undefined;
  const decoder = new TextDecoder();
  const io = {
    write: (data: Uint8Array) => { out += decoder.decode(data, { stream: true }); },
    onInput: (r: (data: Uint8Array) => void) => { receiver = r; return () => { receiver = undefined; }; },
  };
  const t = performance.now();
  const machine = Machine.restore(dir, io);
  const callMs = performance.now() - t;
  const running = machine.run();
  const enter = new Uint8Array([0x0a]);
  const deadline = performance.now() + timeoutMs;
  let nextPing = 0;
  while (!out.includes(GUEST_PROMPT)) {
    if (performance.now() > deadline) throw new Error(`in-process restore: no prompt:\n${out.slice(-1500)}`);
    if (performance.now() >= nextPing) { receiver?.(enter); nextPing = performance.now() + 20; }
    await sleep(1);
  }
  const promptMs = performance.now() - t;
  machine.requestExit({ kind: 'poweroff' });
  await running;
  machine.close();
  return { callMs, promptMs };
}

const qemuArgs = (memory: string, qmpSocket: string): string[] => [
  '-accel', 'tcg', '-M', 'q35', '-smp', '1', '-m', memory, '-display', 'none', '-serial', 'stdio', '-monitor', 'none',
  '-no-reboot', '-kernel', image!.kernel, '-initrd', image!.initrd, '-append', DEFAULT_CMDLINE,
  '-qmp', `unix:${qmpSocket},server=on,wait=off`,
];

async function benchQemu(memory: string): Promise<Samples> {
  const socket = path.join(work, `qemu-${memory}.qmp`);
  const t0 = performance.now();
  const vm = vmm('qemu-system-x86_64', qemuArgs(memory, socket));
  await vm.waitForOutput(GUEST_PROMPT);
  console.log(`  qemu-tcg ${memory}: at the prompt after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await vm.pingPrompt();
  const qmp = await Qmp.connect(socket);
  const file = path.join(work, `qemu-${memory}.mig`);
  const s: Samples = { snapshotMs: [], restoreMs: [], allocated: 0, bytes: 0, runningMs: [], restoreCpuMs: [] };
  for (let i = 0; i < runs; i++) {
    fs.rmSync(file, { force: true });
    const t = performance.now();
    await qmp.execute('stop');
    await qmp.execute('migrate', { uri: `exec:cat > ${file}` });
    for (;;) {
      const m = await qmp.execute('query-migrate');
      if (m.status === 'completed') break;
      if (m.status === 'failed' || m.status === 'cancelled') throw new Error(`QEMU migrate to file: ${JSON.stringify(m)}`);
      await sleep(1);
    }
    await qmp.execute('cont');
    s.snapshotMs.push(performance.now() - t);
    await vm.pingPrompt(); // it carries on after the save, as ringzero's does
  }
  qmp.close();
  await vm.kill();
  ({ bytes: s.bytes, allocated: s.allocated } = diskUsage(file));
  for (let i = 0; i < runs; i++) {
    const qsock = path.join(work, `qemu-${memory}-in.qmp`);
    const t = performance.now();
    const restored = vmm('qemu-system-x86_64', [...qemuArgs(memory, qsock), '-incoming', `exec:cat ${file}`]);
    const q = await Qmp.connect(qsock);
    for (;;) {
      const status = await q.status();
      if (status === 'running') break;
      // Saved while stopped, the incoming VM lands paused (QEMU keeps the source's run state): resume it.
      if (status === 'paused' || status === 'postmigrate') { await q.execute('cont'); continue; }
      if (status !== 'inmigrate' && status !== 'prelaunch') throw new Error(`QEMU -incoming: status ${status}`);
      await sleep(1);
    }
    s.runningMs!.push(performance.now() - t);
    q.close();
    await restored.pingPrompt();
    s.restoreMs.push(performance.now() - t);
    s.restoreCpuMs.push(processCpuMs(restored.child.pid!));
    await restored.kill();
  }
  return s;
}

const MiB = 1024 * 1024;
const figures: Record<string, number | string> = { bench: 'snapshot', engine: 'soft', reference: 'qemu-tcg', runs };
figures.ringzero_from = values.tsx ? 'tsx' : ringzeroPre.length > 0 ? 'bin-bundle-code-cache' : 'bin';
// What a new ringzero process costs before it restores anything: Node and the CLI loading (`ringzero --help`), and
// Node alone (`node -e 0`), both as the wall time to exit.
const startMs: number[] = [], nodeMs: number[] = [];
for (let i = 0; i < runs; i++) {
  let t = performance.now();
  spawnSync(ringzeroCmd, [...ringzeroPre, '--help'], { stdio: 'ignore' });
  startMs.push(performance.now() - t);
  t = performance.now();
  spawnSync(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  nodeMs.push(performance.now() - t);
}
figures.ringzero_process_start_ms = median(startMs);
figures.node_process_start_ms = median(nodeMs);
console.log(`ringzero process start (--help): ${median(startMs).toFixed(0)} ms (node -e 0: ${median(nodeMs).toFixed(0)} ms)`);
const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
for (const memory of sizes) {
  const key = memory.toLowerCase();
  console.log(`${memory}:`);
  const rz = await benchRingzero(memory);
  const rzSnap = median(rz.snapshotMs), rzRestore = median(rz.restoreMs);
  const rzCall = median(rz.restoreCallMs!), rzInProc = median(rz.inProcessMs!);
  console.log(`  ringzero ${memory}: snapshot ${rzSnap.toFixed(0)} ms, ${(rz.allocated / MiB).toFixed(1)} MiB on disk (${(rz.bytes / MiB).toFixed(0)} MiB apparent); ` +
    `restore to prompt ${rzRestore.toFixed(0)} ms (new process), in process ${rzInProc.toFixed(1)} ms (Machine.restore ${rzCall.toFixed(1)} ms)`);
  const part = (k: keyof RestoreParts) => median(rz.parts!.map((p) => p[k]));
  if (rz.parts!.length > 0) {
    console.log(`  ringzero ${memory} new-process restore, wall (main-thread CPU): process start to Machine.restore ${part('startMs').toFixed(0)} ms (${part('startCpuMs').toFixed(0)}), `
      + `Machine.restore ${part('restoreMs').toFixed(1)} ms (${part('restoreCpuMs').toFixed(1)}), guest to its prompt ${part('guestMs').toFixed(0)} ms (${part('guestCpuMs').toFixed(0)}); `
      + `process CPU at the prompt ${median(rz.restoreCpuMs).toFixed(0)} ms`);
    Object.assign(figures, {
      [`ringzero_${key}_restore_start_ms`]: part('startMs'), [`ringzero_${key}_restore_start_cpu_ms`]: part('startCpuMs'),
      [`ringzero_${key}_restore_newprocess_call_ms`]: part('restoreMs'), [`ringzero_${key}_restore_newprocess_call_cpu_ms`]: part('restoreCpuMs'),
      [`ringzero_${key}_restore_guest_ms`]: part('guestMs'), [`ringzero_${key}_restore_guest_cpu_ms`]: part('guestCpuMs'),
    });
  }
  if (rz.spareMs) {
    console.log(`  ringzero ${memory} restore into a spare VMM (warmed up ${values['spare-warm-up-ms']} ms): hand-off to prompt ${median(rz.spareMs).toFixed(0)} ms `
      + `(new process: ${rzRestore.toFixed(0)} ms, ${ratio(median(rz.spareMs), rzRestore).toFixed(2)}x), Machine.restore ${median(rz.spareCallMs!).toFixed(1)} ms, its CPU ${median(rz.spareCpuMs!).toFixed(0)} ms (new process ${median(rz.restoreCpuMs).toFixed(0)} ms)`);
    Object.assign(figures, {
      [`ringzero_${key}_restore_spare_ms`]: median(rz.spareMs), [`ringzero_${key}_restore_spare_call_ms`]: median(rz.spareCallMs!),
      [`ringzero_${key}_restore_spare_cpu_ms`]: median(rz.spareCpuMs!), [`ringzero_${key}_restore_spare_vs_new`]: ratio(median(rz.spareMs), rzRestore),
    });
  }
  Object.assign(figures, {
    [`ringzero_${key}_restore_cpu_ms`]: median(rz.restoreCpuMs),
    [`ringzero_${key}_snapshot_ms`]: rzSnap, [`ringzero_${key}_snapshot_mib`]: rz.allocated / MiB, [`ringzero_${key}_snapshot_apparent_mib`]: rz.bytes / MiB,
    [`ringzero_${key}_restore_ms`]: rzRestore, [`ringzero_${key}_restore_inprocess_ms`]: rzInProc, [`ringzero_${key}_restore_call_ms`]: rzCall,
  });
  if (qemuPresent) {
    const q = await benchQemu(memory);
    const qSnap = median(q.snapshotMs), qRestore = median(q.restoreMs), qRunning = median(q.runningMs!);
    const qCpu = median(q.restoreCpuMs), rzCpu = median(rz.restoreCpuMs);
    console.log(`  qemu-tcg ${memory}: snapshot ${qSnap.toFixed(0)} ms, ${(q.allocated / MiB).toFixed(1)} MiB on disk; restore to running ${qRunning.toFixed(0)} ms, to prompt ${qRestore.toFixed(0)} ms (process CPU ${qCpu.toFixed(0)} ms)`);
    console.log(`  ratio ringzero/qemu-tcg ${memory}: new-process restore CPU time to the prompt ${ratio(rzCpu, qCpu).toFixed(2)}x`);
    Object.assign(figures, { [`qemu_tcg_${key}_restore_cpu_ms`]: qCpu, [`ratio_${key}_restore_cpu`]: ratio(rzCpu, qCpu) });
    console.log(`  ratio ringzero/qemu-tcg ${memory}: snapshot time ${ratio(rzSnap, qSnap).toFixed(2)}x, size ${ratio(rz.allocated, q.allocated).toFixed(2)}x, ` +
      `restore (new process, to prompt) ${ratio(rzRestore, qRestore).toFixed(2)}x, in-process restore vs QEMU's ${ratio(rzInProc, qRestore).toFixed(3)}x`);
    Object.assign(figures, {
      [`qemu_tcg_${key}_snapshot_ms`]: qSnap, [`qemu_tcg_${key}_snapshot_mib`]: q.allocated / MiB,
      [`qemu_tcg_${key}_restore_ms`]: qRestore, [`qemu_tcg_${key}_restore_running_ms`]: qRunning,
      [`ratio_${key}_snapshot_time`]: ratio(rzSnap, qSnap), [`ratio_${key}_snapshot_size`]: ratio(rz.allocated, q.allocated),
      [`ratio_${key}_restore`]: ratio(rzRestore, qRestore),
    });
  }
}
if (sizes.length > 1) {
  const [a, b] = [sizes[0].toLowerCase(), sizes[sizes.length - 1].toLowerCase()];
  const growth = ratio(figures[`ringzero_${b}_restore_inprocess_ms`] as number, figures[`ringzero_${a}_restore_inprocess_ms`] as number);
  figures[`ringzero_restore_growth_${a}_to_${b}`] = growth;
  console.log(`ringzero in-process restore ${b} / ${a}: ${growth.toFixed(2)}x (goal: under 20 ms and not growing with memory)`);
  const call = (k: string) => figures[`ringzero_${k}_restore_newprocess_call_cpu_ms`] as number | undefined;
  if (call(a) !== undefined && call(b) !== undefined) {
    figures[`ringzero_restore_call_cpu_growth_${a}_to_${b}`] = ratio(call(b)!, call(a)!);
    console.log(`ringzero Machine.restore in a new process, main-thread CPU: ${call(a)!.toFixed(1)} ms (${a}), ${call(b)!.toFixed(1)} ms (${b}): ${ratio(call(b)!, call(a)!).toFixed(2)}x`);
  }
}
console.log(JSON.stringify(figures));
process.exit(0);
