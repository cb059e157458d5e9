// bench/js-tiers (issue 4, session 34): how much TurboFan work V8 spends on the VMM's own JavaScript during a boot.
// Boots the default image with a build (--bin: a bin/ringzero), runs `uname -r` and `poweroff -f`, with bin/ringzero's
// default V8 flags plus `--trace-opt --trace-deopt-verbose` (RINGZERO_V8_FLAGS replaces the defaults, so they are
// repeated here), and summarizes V8's trace from the VMM's stdout: TurboFan compiles (all, OSR), their summed compile
// time (V8's three phases: prepare, execute, finalize; ms of wall time on loaded workers, so noisy), deopts by kind
// and reason, and the functions compiled most, with their deopt reasons and sites. The counts do not depend on the
// host's load much (V8 optimizes on feedback, which the guest's code decides), the milliseconds do.
// --trace FILE: summarize a saved trace instead of booting; --save FILE: keep the boot's trace; --top N (default 25);
// --flags '...': more V8 flags (e.g. `--log-code --logfile=F --no-logfile-per-isolate`, whose code-creation lines name
// each sfi's file:line:col, for the anonymous functions).
//
//   node --import tsx bench/js-tiers.ts [--bin bin/ringzero] [--save FILE] [--trace FILE] [--top N]
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { BenchGuest } from './support/session.ts';
import { CMDLINE, requireImage } from './support/common.ts';

const { values } = parseArgs({ options: {
  bin: { type: 'string', default: 'bin/ringzero' }, save: { type: 'string' }, trace: { type: 'string' }, top: { type: 'string', default: '25' }, flags: { type: 'string', default: '' },
} });

/** bin/ringzero's defaults on V8 11.3 (its `v8Flags`), plus the traces. */
const FLAGS = '--max-optimized-bytecode-size=30000 --no-wasm-lazy-compilation --wasm-tiering-budget=9000000 ' +
  '--experimental-wasm-branch-hinting --trace-opt --trace-deopt-verbose';

let text: string;
if (values.trace) text = fs.readFileSync(values.trace, 'utf8');
else {
  requireImage('js-tiers');
  const g = BenchGuest.ringzeroAt('js', values.bin!, ['--engine', 'soft', '--cpus', '1', '--memory', '256M', '--cmdline', CMDLINE], { RINGZERO_V8_FLAGS: `${FLAGS} ${values.flags}` });
  const prompt = await g.waitForShell();
  await g.ask('u', 'uname -r');
  const wall = (performance.now() - g.started) / 1000;
  await g.poweroff();
  g.close();
  text = g.output;
  console.log(`prompt ${(prompt / 1000).toFixed(2)} s, to uname ${wall.toFixed(2)} s`);
  if (values.save) fs.writeFileSync(values.save, text);
}

interface Fn { compiles: number; osr: number; ms: number; deopts: Map<string, number> }
const fns = new Map<string, Fn>();
const fn = (name: string): Fn => {
  let f = fns.get(name);
  if (!f) fns.set(name, (f = { compiles: 0, osr: 0, ms: 0, deopts: new Map() }));
  return f;
};
const reasons = new Map<string, number>();
let compiles = 0, osr = 0, ms = 0, deopts = 0;
const lines = text.split(/\r?\n/);
// `[completed compiling 0x... <JSFunction NAME (sfi = 0x...)> (target TURBOFAN) (OSR) - took A, B, C ms]`
// (NAME is empty for an anonymous function; functions are told apart by NAME and sfi, as many share a name: get, run.)
const done = /\[completed (?:optimizing|compiling) 0x[0-9a-f]+ <JSFunction ((?:[^ >]+ )?)\(sfi = (0x[0-9a-f]+)\)> \(target (\w+)\)( OSR)?.* - took ([\d.]+), ([\d.]+), ([\d.]+) ms\]/;
// `[bailout (kind: deopt-eager, reason: wrong map): begin. deoptimizing 0x... <JSFunction NAME (sfi = ...)>, ...`
const bail = /\[bailout \(kind: ([\w-]+), reason: ([^)]*)\): begin\. deoptimizing 0x[0-9a-f]+ <JSFunction ((?:[^ >]+ )?)\(sfi = (0x[0-9a-f]+)\)>/;
for (let i = 0; i < lines.length; i++) {
  const line = lines[i];
  let m = done.exec(line);
  if (m) {
    if (m[3] !== 'TURBOFAN') continue;
    const t = Number(m[5]) + Number(m[6]) + Number(m[7]);
    const f = fn(`${m[1] || '(anonymous) '}${m[2]}`);
    f.compiles++; f.ms += t; compiles++; ms += t;
    if (m[4]) { f.osr++; osr++; }
    continue;
  }
  m = bail.exec(line);
  if (m) {
    deopts++;
    const why = `${m[1].replace('deopt-', '')}: ${m[2]}`;
    reasons.set(why, (reasons.get(why) ?? 0) + 1);
    // --trace-deopt-verbose: `;;; deoptimize at <FILE:LINE:COL>` (the innermost inlined position first) a few lines on.
    let site = '';
    for (let j = i + 1; j < Math.min(lines.length, i + 12); j++) {
      const s = /;;; deoptimize at <([^>]*)>/.exec(lines[j]);
      if (s) { site = s[1].replace(/^.*\//, ''); break; }
    }
    const f = fn(`${m[3] || '(anonymous) '}${m[4]}`);
    const key = `${why}${site ? ` @${site}` : ''}`;
    f.deopts.set(key, (f.deopts.get(key) ?? 0) + 1);
  }
}
console.log(`TurboFan: ${compiles} compiles (${osr} OSR) of ${[...fns.values()].filter((f) => f.compiles > 0).length} functions, ` +
  `${ms.toFixed(0)} ms summed; ${deopts} deopts in ${[...fns.values()].filter((f) => f.deopts.size > 0).length} functions`);
console.log('deopts by reason: ' + [...reasons].sort((a, b) => b[1] - a[1]).map(([r, n]) => `${n} ${r}`).join('; '));
const top = Number(values.top);
console.log(`\nby compiles (then ms), top ${top}:`);
for (const [name, f] of [...fns].sort((a, b) => b[1].compiles - a[1].compiles || b[1].ms - a[1].ms).slice(0, top)) {
  console.log(`  ${String(f.compiles).padStart(3)} ${f.osr ? `(${f.osr} OSR) ` : ''}${f.ms.toFixed(0).padStart(6)} ms  ${name}`);
  for (const [d, n] of [...f.deopts].sort((a, b) => b[1] - a[1])) console.log(`        ${n}x ${d}`);
}
console.log(`\nby summed compile ms, top ${top}:`);
for (const [name, f] of [...fns].sort((a, b) => b[1].ms - a[1].ms).slice(0, top)) {
  console.log(`  ${f.ms.toFixed(0).padStart(6)} ms ${String(f.compiles).padStart(3)}x  ${name}`);
}
