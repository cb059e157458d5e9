// The differential test of the software CPU: run a snippet on ringzero's SoftCpu and natively on the host,
// compare what they leave, and on a mismatch shrink the case and print a reproducer.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestMemory, GiB } from '../../../memory/guest-memory.ts';
import { PortBus, MmioBus } from '../../../devices/bus.ts';
import { VmClock } from '../../../vmm/clock.ts';
import { SoftCpu, CPU_FAULT, setupFlatLongMode } from '../index.ts';
import { setHotThreshold, setJitThreshold } from '../code-cache.ts';
import { runNative, jmpRel32 } from './native.ts';
import { generateCase, link, undefinedFlagsAfter, type TestCase, type Unit } from './generate.ts';
import {
  CODE_BASE, EPILOGUE, SCRATCH_BASE, SCRATCH_SIZE, SNIPPET_FLAGS, USER_RFLAGS_FIXED, GPR_NAMES, flagNames, type SnippetState,
} from './layout.ts';

/** Guest-physical home of the identity page tables: low memory, far from the snippet region. */
const PAGE_TABLES = 0x10_000;
/** Enough to cover the snippet region at 0x7000_0000. */
const GUEST_MEMORY = 2 * GiB;
/** A snippet of at most 4 units with REP counts <= 8 needs far fewer steps; more means a runaway. */
const STEP_LIMIT = 10_000;
/**
 * RINGZERO_DIFF_CACHE=1: run each snippet through the decoded-block cache (../code-cache.ts) instead of step():
 * once to record its blocks (every block is recorded the first time it runs), then again from the same state
 * replaying them; the replay is what is compared.
 */
/**
 * RINGZERO_DIFF_JIT=1: the same, with every 64-bit block translated to JavaScript (../jit/translate.ts) at its
 * first replay, so the generated code is what is compared. (RINGZERO_DIFF_CACHE=1 alone compares closure replay.)
 */
const JIT_MODE = process.env.RINGZERO_DIFF_JIT === '1';
/**
 * RINGZERO_DIFF_WASM=1: the same through the WebAssembly translator (../wasm/translate.ts, the default engine's): the
 * suite's memory is a wasm-backed GuestMemory and every 64-bit block is translated at its first replay.
 */
const WASM_MODE = process.env.RINGZERO_DIFF_WASM === '1';
const CACHE_MODE = process.env.RINGZERO_DIFF_CACHE === '1' || JIT_MODE || WASM_MODE;
if (CACHE_MODE) setHotThreshold(0);
if (JIT_MODE || WASM_MODE) setJitThreshold(0);

export interface SoftRun {
  state: SnippetState;
  /** Exception vector the soft CPU raised, or -1. */
  exception: number;
  /** Why the run did not reach the end of the snippet (exception, runaway, escaped RIP), or ''. */
  error: string;
}

let machine: { cpu: SoftCpu; mem: GuestMemory } | undefined;

function softMachine(): { cpu: SoftCpu; mem: GuestMemory } {
  if (machine) return machine;
  // (The memory and the CPU say explicitly whether they use wasm: RINGZERO_JIT in the environment does not decide.)
  const mem = new GuestMemory(GUEST_MEMORY, undefined, { wasm: WASM_MODE });
  const cpu = new SoftCpu({ mem, ports: new PortBus(), mmio: new MmioBus(), clock: new VmClock(), wasm: WASM_MODE });
  if (WASM_MODE && cpu.wasm === null) throw new Error('RINGZERO_DIFF_WASM=1: the suite\'s memory could not be placed in a WebAssembly.Memory');
  machine = { cpu, mem };
  return machine;
}

/** What the soft CPU of the suite executed through generated code so far (JIT/wasm mode check). */
export function softJitCounts(): { compiled: number; jitInstructions: number; wasm: boolean } {
  const c = machine?.cpu;
  return { compiled: c?.codeCache.stats.compiled ?? 0, jitInstructions: c?.jitInstructions ?? 0, wasm: (c?.wasm ?? null) !== null };
}

/** Run `code` on the software CPU in 64-bit user mode (CPL 3) with identity paging, from state `s`. */
export function runSoft(code: Uint8Array, s: SnippetState): SoftRun {
  if (!CACHE_MODE) return runSoftOnce(code, s, false, true);
  runSoftOnce(code, s, true, true);
  return runSoftOnce(code, s, true, false);
}

let warmRuns = 0;

function runSoftOnce(code: Uint8Array, s: SnippetState, blocks: boolean, reset: boolean): SoftRun {
  const { cpu, mem } = softMachine();
  if (reset) cpu.reset(); // (a reset also forgets the cached blocks)
  else { cpu.fpu.reset(); cpu.halted = false; }
  cpu.blockCacheEnabled = blocks;
  cpu.jitEnabled = JIT_MODE || WASM_MODE;
  setupFlatLongMode(cpu, { pml4: PAGE_TABLES, identityMapBytes: GUEST_MEMORY, cpl: 3 });
  const end = CODE_BASE + code.length;
  // The replay run keeps the code as the recording run left it: rewriting it would count as a code write and drop
  // the blocks the replay is meant to exercise.
  if (reset) {
    mem.write(CODE_BASE, code);
    mem.write(end, jmpRel32(end, EPILOGUE));
  }
  mem.write(SCRATCH_BASE, s.mem.subarray(0, SCRATCH_SIZE));
  for (let i = 0; i < 16; i++) cpu.setGpr(i, BigInt.asUintN(64, s.gpr[i]));
  // The same RFLAGS the native trampoline's POPFQ produces in user mode: the snippet flags plus bit 1 and IF.
  cpu.setRflags((s.rflags & BigInt(SNIPPET_FLAGS)) | USER_RFLAGS_FIXED);
  cpu.xmm.set(s.xmm.subarray(0, 256));
  cpu.mxcsr = s.mxcsr;
  cpu.setRip(BigInt(CODE_BASE));
  // The translated run of every other case starts with the scratch pages in the TLB (as the recording run left them
  // before setupFlatLongMode flushed it), so the translator's inline fast paths that need a TLB hit (REP MOVS/STOS
  // as one memory.copy/fill, inline probes) run too, not only its memory-library calls that fill the TLB.
  if (WASM_MODE && !reset && (++warmRuns & 1) !== 0) {
    for (let a = SCRATCH_BASE; a < SCRATCH_BASE + SCRATCH_SIZE; a += 4096) { cpu.translate(a, 1, true); cpu.translate(a, 0, true); }
  }
  cpu.lastException = -1;
  let exception = -1;
  let error = '';
  for (let steps = 0; ; steps++) {
    const rip = Number(cpu.getRip());
    if (rip === end) break;
    // A block runs on into the `jmp EPILOGUE` that follows the snippet (it changes nothing else).
    if (blocks && rip === EPILOGUE) break;
    if (rip < CODE_BASE || rip > end) { error = `RIP escaped the snippet: 0x${rip.toString(16)}`; break; }
    if (steps >= STEP_LIMIT) { error = `did not finish in ${STEP_LIMIT} steps (RIP 0x${rip.toString(16)})`; break; }
    try {
      // (No interrupt source here: a stale eventPending, e.g. from loading IF, would end every block after one instruction.)
      if (blocks) { cpu.eventPending = false; cpu.execBlock(STEP_LIMIT - steps); }
      else cpu.step();
    } catch (e) {
      if (e !== CPU_FAULT) {
        error = `soft CPU threw ${e instanceof Error ? e.stack ?? e.message : String(e)}`;
        break;
      }
      exception = cpu.lastException;
      error = `exception #${exception} (${EXCEPTION_NAMES[exception] ?? '?'}) at 0x${rip.toString(16)}`;
      break;
    }
  }
  const gpr: bigint[] = [];
  for (let i = 0; i < 16; i++) gpr.push(cpu.getGpr(i));
  return {
    state: { gpr, rflags: cpu.getRflags(), xmm: Uint8Array.from(cpu.xmm), mxcsr: cpu.mxcsr >>> 0, mem: mem.read(SCRATCH_BASE, SCRATCH_SIZE) },
    exception,
    error,
  };
}

const EXCEPTION_NAMES: Record<number, string> = { 0: '#DE', 1: '#DB', 3: '#BP', 6: '#UD', 7: '#NM', 12: '#SS', 13: '#GP', 14: '#PF', 17: '#AC', 19: '#XM' };

export interface Difference {
  what: string;
  native: string;
  soft: string;
}

const h64 = (v: bigint) => '0x' + BigInt.asUintN(64, v).toString(16).padStart(16, '0');
const hexBytes = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
/** An XMM register as its two 64-bit halves, high first (how debuggers print it). */
const xmmText = (b: Uint8Array, i: number) => {
  const v = new DataView(b.buffer, b.byteOffset + i * 16, 16);
  return `${h64(v.getBigUint64(8, true))}_${h64(v.getBigUint64(0, true)).slice(2)}`;
};

/** Differences between the native and soft end states; flags in `undefinedFlags` are not compared. */
export function compare(native: SnippetState, soft: SnippetState, undefinedFlags: number): Difference[] {
  const out: Difference[] = [];
  for (let i = 0; i < 16; i++) {
    if (BigInt.asUintN(64, native.gpr[i]) !== BigInt.asUintN(64, soft.gpr[i])) out.push({ what: GPR_NAMES[i], native: h64(native.gpr[i]), soft: h64(soft.gpr[i]) });
  }
  const mask = SNIPPET_FLAGS & ~undefinedFlags;
  const nf = Number(native.rflags) & mask, sf = Number(soft.rflags) & mask;
  if (nf !== sf) out.push({ what: `rflags (differ: ${flagNames(nf ^ sf)})`, native: flagNames(nf), soft: flagNames(sf) });
  for (let x = 0; x < 16; x++) {
    for (let k = 0; k < 16; k++) {
      if (native.xmm[x * 16 + k] !== soft.xmm[x * 16 + k]) {
        out.push({ what: `xmm${x}`, native: xmmText(native.xmm, x), soft: xmmText(soft.xmm, x) });
        break;
      }
    }
  }
  if (native.mxcsr !== soft.mxcsr) out.push({ what: 'mxcsr', native: '0x' + native.mxcsr.toString(16), soft: '0x' + soft.mxcsr.toString(16) });
  // Memory: one entry per run of differing bytes (with a little context).
  for (let i = 0; i < SCRATCH_SIZE; i++) {
    if (native.mem[i] === soft.mem[i]) continue;
    let j = i;
    while (j < SCRATCH_SIZE && (native.mem[j] !== soft.mem[j] || (j + 1 < SCRATCH_SIZE && native.mem[j + 1] !== soft.mem[j + 1]))) j++;
    const end = Math.min(Math.max(j, i + 1), i + 32);
    out.push({ what: `mem[0x${(SCRATCH_BASE + i).toString(16)}..+${end - i}]`, native: hexBytes(native.mem.subarray(i, end)), soft: hexBytes(soft.mem.subarray(i, end)) });
    i = j;
  }
  return out;
}

export interface CaseResult {
  ok: boolean;
  diffs: Difference[];
  native: SnippetState;
  soft: SoftRun;
}

/** Run a case both ways and compare. */
export function checkCase(tc: Pick<TestCase, 'code' | 'state' | 'undefinedFlags'>): CaseResult {
  const native = runNative(tc.code, tc.state);
  const soft = runSoft(tc.code, tc.state);
  const diffs = compare(native, soft.state, tc.undefinedFlags);
  if (soft.error) diffs.unshift({ what: 'soft run', native: 'reached the end', soft: soft.error });
  return { ok: diffs.length === 0, diffs, native, soft };
}

/**
 * Smaller variant of a failing case that still fails: drop units (keeping flag reads defined), then set
 * unpinned registers, XMM registers and flags to simple values. Pinned registers (addresses, divisors, counts)
 * keep their values, so the shrunk case is as safe to run natively as the original.
 */
export function shrink(tc: TestCase, budget = 400): TestCase {
  let best = tc;
  let tries = 0;
  const fails = (c: TestCase) => (++tries, !checkCase(c).ok);
  const withUnits = (units: Unit[]): TestCase | undefined => {
    const undef = undefinedFlagsAfter(units);
    return undef < 0 || !units.length ? undefined : { ...best, units, code: link(units), undefinedFlags: undef };
  };
  for (let progress = true; progress && tries < budget;) {
    progress = false;
    for (let k = 0; k < best.units.length && best.units.length > 1 && tries < budget; k++) {
      const c = withUnits(best.units.filter((_, n) => n !== k));
      if (c && fails(c)) { best = c; progress = true; k--; }
    }
  }
  for (let i = 0; i < 16 && tries < budget; i++) {
    if (best.pinned.includes(i)) continue;
    for (const v of [0n, 1n, 0xffff_ffff_ffff_ffffn]) {
      if (best.state.gpr[i] === v) break;
      const gpr = [...best.state.gpr];
      gpr[i] = v;
      const c = { ...best, state: { ...best.state, gpr } };
      if (fails(c)) { best = c; break; }
    }
  }
  for (let x = 0; x < 16 && tries < budget; x++) {
    if (best.state.xmm.subarray(x * 16, x * 16 + 16).every((b) => b === 0)) continue;
    const xmm = Uint8Array.from(best.state.xmm);
    xmm.fill(0, x * 16, x * 16 + 16);
    const c = { ...best, state: { ...best.state, xmm } };
    if (fails(c)) best = c;
  }
  if (best.state.rflags !== 0n) {
    const c = { ...best, state: { ...best.state, rflags: 0n } };
    if (fails(c)) best = c;
  }
  return best;
}

let objdumpChecked: boolean | undefined;
/** objdump's disassembly of `code` at CODE_BASE, or '' when binutils is not installed. */
export function disassemble(code: Uint8Array): string {
  if (objdumpChecked === undefined) objdumpChecked = spawnSync('objdump', ['--version']).status === 0;
  if (!objdumpChecked) return '';
  const dir = mkdtempSync(join(tmpdir(), 'ringzero-diff-'));
  try {
    const file = join(dir, 'snippet.bin');
    writeFileSync(file, code);
    const r = spawnSync('objdump', ['-D', '-b', 'binary', '-m', 'i386:x86-64', '-M', 'intel', `--adjust-vma=0x${CODE_BASE.toString(16)}`, file], { encoding: 'utf8' });
    return r.stdout.split('\n').filter((l) => /^\s+[0-9a-f]+:\t/.test(l)).map((l) => '    ' + l.trim()).join('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A reproducer: seed, case, code, disassembly, initial state, differences. */
export function describe(tc: TestCase, result: CaseResult): string {
  const s = tc.state;
  const lines = [
    `MISMATCH family=${tc.family} seed=${tc.seed} case=${tc.index}  (rerun: RINGZERO_DIFF_SEED=${tc.seed} RINGZERO_DIFF_ONLY=${tc.family}:${tc.index})`,
    `  forms: ${tc.units.map((u) => u.form).join(' ; ')}`,
    `  code:  ${hexBytes(tc.code)}`,
    `  units: ${tc.units.map((u) => u.text).join(' ; ')}`,
  ];
  const dis = disassemble(tc.code);
  if (dis) lines.push('  objdump:', dis);
  lines.push('  initial state:');
  for (let i = 0; i < 16; i += 4) lines.push('    ' + [0, 1, 2, 3].map((k) => `${GPR_NAMES[i + k].padStart(3)}=${h64(s.gpr[i + k])}`).join(' '));
  lines.push(`    rflags=${flagNames(Number(s.rflags) & SNIPPET_FLAGS)} mxcsr=0x${s.mxcsr.toString(16)}`);
  for (const u of tc.units) {
    if (!u.mem || u.mem.ea < SCRATCH_BASE || u.mem.ea >= SCRATCH_BASE + SCRATCH_SIZE) continue;
    const off = u.mem.ea - SCRATCH_BASE;
    lines.push(`    mem[0x${u.mem.ea.toString(16)}..+${u.mem.bytes}] = ${hexBytes(s.mem.subarray(off, off + u.mem.bytes))}  (${u.text})`);
  }
  const usesXmm = tc.units.some((u) => u.family.startsWith('sse'));
  if (usesXmm) for (let x = 0; x < 16; x++) lines.push(`    xmm${x}=${xmmText(s.xmm, x)}`);
  if (tc.undefinedFlags) lines.push(`  undefined flags (not compared): ${flagNames(tc.undefinedFlags)}`);
  lines.push('  differences (native vs soft):');
  for (const d of result.diffs) lines.push(`    ${d.what}: native ${d.native}  soft ${d.soft}`);
  return lines.join('\n');
}

export interface FamilyReport {
  family: string;
  cases: number;
  passed: number;
  /** Shrunk reproducers of the first failures. */
  reproducers: string[];
  /** Failure counts by the form(s) left after shrinking. */
  failingForms: Map<string, number>;
}

/**
 * Run `cases` generated cases of `family` (case indices start, start+stride, ...), shrinking and describing the
 * first `maxReproducers` failures and attributing up to `maxShrunk` failures to forms.
 */
export function runFamily(family: string, seed: number, cases: number, opts: { start?: number; stride?: number; maxReproducers?: number; maxShrunk?: number } = {}): FamilyReport {
  const { start = 0, stride = 1, maxReproducers = 3, maxShrunk = 10 } = opts;
  const report: FamilyReport = { family, cases, passed: 0, reproducers: [], failingForms: new Map() };
  let failures = 0;
  for (let n = 0; n < cases; n++) {
    const tc = generateCase(seed, start + n * stride, family);
    const r = checkCase(tc);
    if (r.ok) { report.passed++; continue; }
    failures++;
    if (failures <= maxShrunk) {
      const small = shrink(tc);
      const key = small.units.map((u) => u.form).join(' ; ');
      report.failingForms.set(key, (report.failingForms.get(key) ?? 0) + 1);
      if (report.reproducers.length < maxReproducers) report.reproducers.push(describe(small, checkCase(small)));
    }
  }
  return report;
}
