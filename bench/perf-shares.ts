// bench/perf-shares (issues 4 and 5): where a soft-engine VMM's guest thread spent a `perf record -g` profile, by the
// engine's parts: translated code in V8's Liftoff tier and in its TurboFan tier, the dispatcher (rz.dispatch), the
// memory and flag libraries (rz.mem.*, rz.flag.*), JavaScript helpers called from wasm (by the helper's import name:
// wr, rd, rp, sy, ...), and the samples with no wasm frame at all (the run loop, the JavaScript tier, the
// translator, interrupt delivery, GC). The profile needs the VMM's JIT code named: NODE_OPTIONS=--perf-basic-prof
// (set from node's start: with RINGZERO_V8_FLAGS the flag comes too late for part of the JavaScript), as
// bench/io-passes's RINGZERO_BENCH_PERF=DIR records it, one file per pass.
//
//   node --import tsx bench/perf-shares.ts PERF.DATA [PERF.DATA ...] [--top 20] [--tid TID]
//
// --tid: only that thread's samples (a `perf record -a` profile, as bench/boot-threads's RZ_PERF records, holds every
// thread of the host; `perf report -s pid` names them).
//
// V8 names wasm code `wasm-function[I]-I-liftoff` or `...-turbofan` (I: the index in its module) and the named
// library functions `rz.NAME-I-TIER`. JavaScript frame names can be wrong where V8 reused a freed code range for
// other code (the map keeps both), so the helper and outside-wasm rows name the outermost JavaScript frame only.
import { execFileSync } from 'node:child_process';
import { benchArgs, printTable } from './support/common.ts';

const { values, positionals } = benchArgs(import.meta.url, { options: { top: { type: 'string', default: '20' }, tid: { type: 'string', default: '' } }, allowPositionals: true });
const top = Number(values.top);

const isWasm = (s: string) => s.includes('wasm-function[') || s.startsWith('JS:rz.');
const short = (s: string) => s.replace(/ \/\S+:(\d+):\d+$/, '@$1').replace(/^JS:/, '');

for (const file of positionals) {
  const text = execFileSync('perf', ['script', '-i', file, '-F', 'ip,sym', ...(values.tid !== '' ? ['--tid', values.tid] : [])], { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
  const parts = new Map<string, number>(), detail = new Map<string, number>();
  const add = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  let n = 0;
  for (const sample of text.split('\n\n')) {
    const syms = sample.split('\n').map((l) => l.trim()).filter((l) => l !== '').map((l) => { const i = l.indexOf(' '); return i < 0 ? '?' : l.slice(i + 1); });
    if (syms.length === 0) continue;
    n++;
    const leaf = syms[0];
    if (isWasm(leaf)) {
      if (leaf.includes('wasm-function[')) add(parts, leaf.endsWith('-liftoff') ? 'translated code, Liftoff' : 'translated code, TurboFan');
      else add(parts, leaf.startsWith('JS:rz.mem.') ? 'memory library (rz.mem.*)' : leaf.replace(/^JS:/, '').replace(/-\d+-\w+$/, ''));
      continue;
    }
    const w = syms.findIndex(isWasm);
    if (w > 0) {
      // (the helper: the outermost JavaScript frame below the first wasm frame, past the wasm-to-js wrapper)
      const js = syms.slice(0, w).filter((s) => s.startsWith('JS:') && !s.includes('wasm-to-js'));
      add(parts, 'helpers called from wasm');
      add(detail, `helper ${js.length > 0 ? short(js[js.length - 1]) : 'native ' + short(leaf)}`);
    } else {
      add(parts, 'no wasm frame (run loop, JavaScript tier, translator, events, GC)');
      // (the frame the outermost JavaScript frame, the machine's run loop, called: SoftCpu.execBlock, checkEvents, ...)
      const js = syms.filter((s) => s.startsWith('JS:'));
      add(detail, `outside ${js.length > 1 ? short(js[js.length - 2]) : js.length > 0 ? short(js[0]) : short(leaf)}`);
    }
  }
  console.log(`\n${file}: ${n} samples`);
  const rows = (m: Map<string, number>, k: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, v]) => [name, String(v), `${((100 * v) / n).toFixed(1)}%`]);
  printTable(['part', 'samples', 'share'], rows(parts, 100));
  printTable(['helper / outside wasm', 'samples', 'share'], rows(detail, top));
}
