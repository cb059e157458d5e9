// bench/phase-counts (issue 4): what each of bench/engines' workloads costs the soft engine's translator, in counts
// (modules, module bytes, blocks translated, regions, CALLEES copies, blocks translated again) and in CPU seconds by
// thread (the guest thread, V8's other threads: TurboFan, Liftoff, GC), phase by phase in one session: the boot to
// the prompt, md5 (twice: cold, warm), the ash loop (twice) and the syscall loop, as bench/engines --paired runs them.
// Env switches are inherited by the VMM (set them on the command line).
//
//   node --import tsx bench/phase-counts.ts [--bin PATH/bin/ringzero] [--ash N] [--sys N] [--md5 MiB] [--all] [--exits]
//
// --all prints every counter that moved; else the translator's. --exits runs the VMM with RINGZERO_WASM_EXIT_STATS=1
// (larger code: its byte counts are not the default's) and prints the warm ash loop's function exits per iteration.
// Session 30 (RET_BRANCH + CALLEES=64 + IND_JOIN, ash 20000, md5 16 MiB): CALLEES copies at the boot 342 blocks (of
// 15642 translated), md5 64 + 63 (cold, warm: blocks of md5_process_block64 among them), ash 350 + 12, syscall
// 64 + 29; warm ash per iteration: dispatcher entries + tail calls 375 + 326 off, 262 + 297 with the three.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BenchGuest } from './support/session.ts';
import { controlRequest } from '../src/vmm/control.ts';
import { CMDLINE, benchArgs, positiveInt, requireImage } from './support/common.ts';
import { threadRunTimes } from '../src/sys/proc-stat.ts';

const { values } = benchArgs(import.meta.url, {
  options: {
    bin: { type: 'string' },
    ash: { type: 'string', default: '200000' },
    sys: { type: 'string', default: '200000' },
    md5: { type: 'string', default: '64' },
    all: { type: 'boolean', default: false },
    exits: { type: 'boolean', default: false },
  },
});
requireImage('phase-counts');
if (values.exits) process.env.RINGZERO_WASM_EXIT_STATS = '1'; // (inherited by the VMM)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-phase-counts-'));
const sock = path.join(dir, 'control.sock');
const args = ['--engine', 'soft', '--cpus', '1', '--memory', '256M', '--cmdline', CMDLINE, '--control-socket', sock];
const guest = values.bin ? BenchGuest.ringzeroAt('ringzero', values.bin, args) : BenchGuest.ringzero('ringzero', args);

function flatten(x: unknown, pre = '', out: Record<string, number> = {}): Record<string, number> {
  if (typeof x === 'number') out[pre] = x;
  else if (x && typeof x === 'object') for (const [k, v] of Object.entries(x)) flatten(v, pre ? `${pre}.${k}` : k, out);
  return out;
}
function threads(pid: number): { main: number; other: number } {
  let main = 0, other = 0;
  for (const { tid, ns } of threadRunTimes(pid)) { if (tid === pid) main += ns / 1e9; else other += ns / 1e9; }
  return { main, other };
}
const KEYS = /^soft\.wasm\.(modules|bytes|compiled|regions|regionBlocks|reregioned|reformed|callees|calls|direct)$|^instructions$/;
const pid = (): number => guest.session.child.pid!;
let last = { s: {} as Record<string, number>, t: { main: 0, other: 0 } };
const rows: Record<string, Record<string, number>> = {};
async function mark(name: string, ms: number): Promise<void> {
  const s = flatten(await controlRequest(sock, { cmd: 'stats' }, 30_000)), t = threads(pid()), prevS = last.s;
  const row: Record<string, number> = { ms: Math.round(ms), mainCpu: Number((t.main - last.t.main).toFixed(2)), otherCpu: Number((t.other - last.t.other).toFixed(2)) };
  for (const k of Object.keys(s)) {
    if (k.startsWith('process.')) continue;
    const d = s[k] - (last.s[k] ?? 0);
    if (d !== 0 && (values.all || KEYS.test(k))) row[k] = Number(d.toFixed(3));
  }
  rows[name] = row;
  // (--exits: the warm ash loop's function exits per iteration: entries through the dispatcher, tail calls, region
  // branches, memory-library calls)
  if (values.exits && name === 'ash2') {
    const n = positiveInt('ash', values.ash), per = (k: string): number => Number(((s[k] - (prevS[k] ?? 0)) / n).toFixed(1));
    const x = Object.keys(s).filter((k) => /^soft\.wasm\.x\./.test(k) && Math.abs(per(k)) >= 0.5);
    console.log(`ash2 per iteration: direct=${per('soft.wasm.direct')} tails=${per('soft.wasm.tails')} intra=${per('soft.wasm.intra')} libCalls=${per('soft.wasm.libCalls')} instr=${per('instructions')} ${x.map((k) => `${k.slice(12)}=${per(k)}`).join(' ')}`);
  }
  console.log(`${name} at=${Date.now()}: ${Object.entries(row).map(([k, v]) => `${k.replace(/^soft\.wasm\./, '')}=${v}`).join(' ')}`);
  last = { s, t };
}
try {
  const t0 = performance.now();
  await guest.waitForShell();
  await mark('boot', performance.now() - t0);
  const md5 = positiveInt('md5', values.md5), ash = positiveInt('ash', values.ash), sys = positiveInt('sys', values.sys);
  const work: [string, string][] = [
    ['md5', `dd if=/dev/zero bs=1M count=${md5} 2>/dev/null | md5sum`], ['md5', ''],
    ['ash', `i=0; while [ $i -lt ${ash} ]; do i=$((i+1)); done; echo $i`], ['ash', ''],
    ['syscall', `dd if=/dev/zero of=/dev/null bs=1 count=${sys}`], ['syscall', ''],
  ];
  let prev = '';
  for (const [k, c] of work) {
    const cmd = c === '' ? prev : c;
    prev = cmd;
    const r = await guest.timed(k, cmd, 1_800_000);
    if (r.status !== 0) throw new Error(`${k} failed: ${r.output.slice(-300)}`);
    await mark(c === '' ? `${k}2` : k, r.hostMs);
  }
  console.log(JSON.stringify({ bench: 'phase-counts', env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('RINGZERO_'))), rows }));
} finally {
  guest.session.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
