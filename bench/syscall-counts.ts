// bench/syscall-counts (issue 4): what one guest system call costs the soft engine, in counts that host load does
// not change. Boots the default guest (bench/engines' command line), runs bench/engines' syscall workload
// (`dd if=/dev/zero of=/dev/null bs=1 count=N`: 2N one-byte read/write calls) and an empty one (count=0), reads the
// machine's counters through the control socket's {"cmd":"stats"} before and after each, and prints the difference
// per system call: guest instructions, returns from wasm to JavaScript (wasm.calls), dispatcher entries by how the
// last block left (x.KIND.direct/lookup: translate.ts X_NAMES; x.KIND.tail: tail calls), replays and helper calls
// (wasm.replays, conds: RDTSC, SYSCALL/SYSRET slow paths), memory-library calls, page walks (soft.tlbWalks) and
// device exits. It also prints the guest's /sys/devices/system/cpu/vulnerabilities (whether the kernel runs with
// page-table isolation or other entry-path mitigations on the CPUID the soft engine presents).
//
//   node --import tsx bench/syscall-counts.ts [--count 100000] [--bin PATH/bin/ringzero] [--exit-stats] [--ash]
//
// --ash runs bench/engines' ash workload instead (`i=0; while [ $i -lt N ]; do i=$((i+1)); done`) and prints the
// counts per loop iteration.
//
// --exit-stats runs the VMM with RINGZERO_WASM_EXIT_STATS=1 (the x.* and write-back counters; slower code, same
// guest path). Wall time is printed too but means little on a loaded host. Ends with one JSON line.
import { BenchGuest } from './support/session.ts';
import { controlRequest } from '../src/vmm/control.ts';
import { CMDLINE, benchArgs, positiveInt, requireImage } from './support/common.ts';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';

const { values } = benchArgs(import.meta.url, {
  options: {
    count: { type: 'string', default: '100000' },
    bin: { type: 'string' },
    'exit-stats': { type: 'boolean', default: false },
    ash: { type: 'boolean', default: false },
  },
});
const count = positiveInt('count', values.count);
requireImage('syscall-counts');
if (values['exit-stats']) process.env.RINGZERO_WASM_EXIT_STATS = '1'; // (inherited by the VMM)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-syscall-counts-'));
const sock = path.join(dir, 'control.sock');
const args = ['--engine', 'soft', '--cmdline', CMDLINE, '--control-socket', sock];
const guest = values.bin ? BenchGuest.ringzeroAt('ringzero', values.bin, args) : BenchGuest.ringzero('ringzero', args);

/** Every numeric leaf of a stats answer, by dotted path. */
function flatten(x: unknown, pre = '', out: Record<string, number> = {}): Record<string, number> {
  if (typeof x === 'number') out[pre] = x;
  else if (x && typeof x === 'object') for (const [k, v] of Object.entries(x)) flatten(v, pre ? `${pre}.${k}` : k, out);
  return out;
}

async function measure(n: number): Promise<{ d: Record<string, number>; ms: number }> {
  const a = flatten(await controlRequest(sock, { cmd: 'stats' }, 30_000));
  const ash = values.ash;
  const cmd = ash ? `i=0; while [ $i -lt ${n} ]; do i=$((i+1)); done; echo $i` : `dd if=/dev/zero of=/dev/null bs=1 count=${n}`;
  const r = await guest.timed(`${ash ? 'ash' : 'dd'}${n}`, cmd, 1_800_000);
  if (!new RegExp(ash ? `(^|\\n)${n}\\n` : `${n}\\+0 records out`).test(r.output)) throw new Error(`${cmd} failed: ${r.output}`);
  const b = flatten(await controlRequest(sock, { cmd: 'stats' }, 30_000));
  const d: Record<string, number> = {};
  for (const k of Object.keys(b)) if (k in a && !k.startsWith('process.')) d[k] = b[k] - a[k];
  return { d, ms: r.hostMs };
}

try {
  await guest.waitForShell();
  const vuln = await guest.ask('vuln', "grep . /sys/devices/system/cpu/vulnerabilities/* | sed 's,.*/,,' | tr '\\n' ' '");
  console.log(`guest vulnerabilities: ${vuln}`);
  await measure(1000); // (warm: the path translated)
  const empty = await measure(1);
  const full = await measure(count + 1);
  const calls = values.ash ? count : 2 * count;
  const per: Record<string, number> = {};
  for (const k of Object.keys(full.d)) {
    const v = (full.d[k] - (empty.d[k] ?? 0)) / calls;
    if (Math.abs(v) >= 0.001 && !/Ms$|bytes|guestNs|compile|build/i.test(k)) per[k] = Number(v.toFixed(3));
  }
  const unit = values.ash ? 'loop iteration' : 'system call';
  console.log(`${values.ash ? 'ash loop' : 'dd bs=1'} count=${count}: ${calls} ${unit}s, ${(full.ms - empty.ms).toFixed(0)} ms host time (${((full.ms - empty.ms) * 1e3 / calls).toFixed(2)} µs per ${unit}; loaded hosts vary)`);
  console.log(`per ${unit}:`);
  for (const [k, v] of Object.entries(per)) console.log(`  ${k.padEnd(40)} ${v}`);
  console.log(JSON.stringify({ bench: 'syscall-counts', workload: values.ash ? 'ash' : 'syscall', count, exitStats: values['exit-stats'], usPerCall: Number(((full.ms - empty.ms) * 1e3 / calls).toFixed(3)), perCall: per }));
} finally {
  guest.session.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
