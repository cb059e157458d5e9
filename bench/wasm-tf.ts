// What V8's TurboFan costs for a boot's translated modules (issue 4), offline: translates every batch of a capture
// (RINGZERO_WASM_CAPTURE, runtime.ts) as bench/wasm-build.ts does, then compiles each module with TurboFan alone
// (--no-liftoff: every function, where a boot tiers up only its hot ones) in a child process under
// --turbo-stats-wasm, and prints the compile's CPU and V8's table per TurboFan phase.
//
//   node --import tsx bench/wasm-tf.ts CAPTURE.jsonl [--inline] [--batches N] [--flags '--turbo-force-mid-tier-regalloc ...']
//
// Why: a boot's V8 workers spend about as much CPU as its guest thread, half of it TurboFan's wasm tier-ups, and
// register allocation is ~58% of those (--turbo-stats-wasm on a boot, session 32). A change to the translator's code
// shape or to V8's flags can be weighed here in seconds, without a boot. The CPU of a loaded host varies by 20-30%
// from run to run; V8's zone bytes per phase ("space") do not (±0.01% over 4 runs of the same capture): they are the
// count to compare. --inline: as translated once user code ran (runtime.ts INLINE_LATE). --batches N: the first N.
// --flags: more V8 flags for the child (a V8 flag that changes TurboFan's work, e.g. --no-wasm-loop-peeling).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const file = args.find((a, i) => !a.startsWith('--') && !['--batches', '--flags'].includes(args[i - 1]));
if (!file) throw new Error("usage: bench/wasm-tf.ts CAPTURE.jsonl [--inline] [--batches N] [--flags '...']");
const inline = args.includes('--inline');
const limit = Number(opt('--batches') ?? Infinity);

if (args.includes('--child')) {
  // (the child: V8 flags set on its command line by the parent, so they hold from the first compile)
  const { readCapture, buildBatch } = await import('./support/capture.ts');
  const { batches } = readCapture(file);
  const mods: Uint8Array<ArrayBuffer>[] = [];
  for (const { blocks, lins } of batches.slice(0, limit)) {
    const m = buildBatch(blocks, lins, inline);
    // (a copy: buildBatch's bytes may be scratch reused by the next batch)
    if (m !== null) mods.push(new Uint8Array(m));
  }
  const c0 = process.cpuUsage();
  for (const m of mods) new WebAssembly.Module(m);
  const c = process.cpuUsage(c0);
  console.log(`wasm-tf ${mods.length} ${mods.reduce((s, m) => s + m.length, 0)} ${(c.user + c.system) / 1000}`);
} else {
  const flags = ['--no-liftoff', '--no-wasm-lazy-compilation', '--experimental-wasm-branch-hinting', '--turbo-stats-wasm',
    ...(opt('--flags') ?? '').split(/\s+/).filter((f) => f !== '')];
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [...flags, '--import', 'tsx', self, file, '--child', ...(inline ? ['--inline'] : []),
    ...(Number.isFinite(limit) ? ['--batches', String(limit)] : [])], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  const head = /^wasm-tf (\d+) (\d+) ([\d.]+)$/m.exec(r.stdout);
  if (head === null) throw new Error(`no result line from the child: ${r.stdout.slice(0, 500)}`);
  // (V8's table: "  V8.TFName   time (  pct%)   space (  pct%)  max  absmax"; a group's row, under a dashed line, sums the
  // phases above it (V8.TFRegisterAllocation, V8.WasmOptimization...): only the phases are taken. Its times are
  // summed wall times of the compile threads, not CPU.)
  const phases: { name: string; ms: number; bytes: number }[] = [];
  let afterRule = false;
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*V8\.(\w+)\s+([\d.]+)\s+\(\s*[\d.]+%\)\s+(\d+)\s+\(/.exec(line);
    if (m !== null && !afterRule && m[1].startsWith('TF')) phases.push({ name: m[1], ms: Number(m[2]), bytes: Number(m[3]) });
    afterRule = /^\s*-{10,}\s*$/.test(line);
  }
  const total = /^\s*totals\s+([\d.]+)\s+\(\s*[\d.]+%\)\s+(\d+)/m.exec(r.stdout);
  const [modules, bytes, cpuMs] = [Number(head[1]), Number(head[2]), Number(head[3])];
  const zone = total ? Number(total[2]) : phases.reduce((s, p) => s + p.bytes, 0);
  console.log(`${modules} modules, ${(bytes / 1048576).toFixed(2)} MiB of wasm${inline ? ' (inline)' : ''}: TurboFan CPU ${cpuMs.toFixed(0)} ms, zone ${(zone / 1048576).toFixed(1)} MiB (${(zone / bytes).toFixed(1)} bytes per wasm byte)`);
  for (const p of phases.sort((a, b) => b.bytes - a.bytes).slice(0, 10)) {
    console.log(`  ${p.name.padEnd(30)} ${(p.bytes / 1048576).toFixed(1).padStart(8)} MiB ${(100 * p.bytes / zone).toFixed(1).padStart(5)}%  ${p.ms.toFixed(0).padStart(7)} ms (threads' wall)`);
  }
  console.log(JSON.stringify({ bench: 'wasm-tf', modules, bytes, inline, flags: opt('--flags') ?? '', cpuMs: Math.round(cpuMs), zoneBytes: zone,
    phases: Object.fromEntries(phases.map((p) => [p.name, p.bytes])) }));
}
