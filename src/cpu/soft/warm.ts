// Warm code caches across a snapshot restore or a live migration (issue 7): the hot-block list.
//
// Why: a VM restored from a snapshot, or received by migration, starts in a fresh VMM with an empty block cache, so
// every hot block of its guest is interpreted again, recorded at its WASM_HOT_THRESHOLD-th visit, replayed WASM_HOT
// (100) times and only then queued for translation. A loop the guest runs thousands of times a second gets there in
// microseconds, but the kernel paths it takes a hundred times a second (the timer interrupt, a console write, the
// scheduler) take a second or more, during which the guest runs at interpreter speed.
//
// What: the snapshot carries, for each block the wasm translator had translated (and whose page was not written
// since), its physical address, the length of each of its instructions, how many bytes of its page they cover and a
// hash of those bytes (exportWarm; the state file's optional `warm` section, src/vmm/snapshot.ts). Once the restored
// guest runs, startWarmup arms the block-table slot of each listed block (armWarm); when the guest first reaches one,
// SoftCpu.execBlock asks CodeCache.warm, which checks it against the restored memory and rebuilds it from there
// without executing it (the same prefix decoding as SoftCpu.beginInstruction, the handler from the opcode tables, the
// fast form from compileFast, which reads the operands from memory itself: exactly what SoftCpu.recordBlock would
// have built) and primes it (WasmEngine.prime): translated after WARM_REPLAYS runs instead of ~100, and never
// interpreted or recorded again. Lazily, because a booted Linux guest lists ~8k blocks of which it runs a fraction
// soon after, and in a fresh VMM process (its V8 not warmed up yet) every block translated costs ~1 ms of the main
// thread: rebuilding all of them and translating each at its first run made the guest slower in its first seconds
// than a cold restore (bench/restore-warm); the replays before translation keep it to the blocks that are hot now.
//
// Why it never runs wrong code: a block is rebuilt only when the hash of its bytes in the restored memory matches (a
// diff chain, a page the guest reused, a damaged or foreign list: skipped), its shape is one the recorder makes
// (at most MAX_BLOCK instructions in one page, control transfers only at its end or as fall-through Jcc side exits),
// and from then on it is an ordinary block: its page is marked as holding code, so a later write invalidates it
// (page generation). Beyond the hash, an instruction length is never trusted: a fast form is decoded from memory and
// kept only when its length matches, and a replayed handler fetches its own operands, after which the block is left
// whenever RIP is not where the next entry starts (SoftCpu.runBlock, WasmEngine.replay). Only 64-bit blocks are
// listed: the wasm translator translates no others.
import fs from 'node:fs';
import zlib from 'node:zlib';
import type { OpHandler, SoftCpu } from './cpu.ts';
import { TABLE_BITS_SHIFT } from './cpu.ts';
import { Block, BlockEntry, MAX_BLOCK, TABLE_MASK, TERMINATOR, WASM_HOT_THRESHOLD } from './code-cache.ts';
import { compileFast } from './fast-forms.ts';
import { ops1, ops0f } from './tables.ts';
import * as C from './constants.ts';

/**
 * The hot-block list as taken (exportWarm), carried by a migration (its `sync` message, src/migration) and written by
 * a snapshot as a file of its own (src/vmm/snapshot.ts: the state file keeps only a WarmFileRef, so reading and
 * checking the state at restore costs nothing more).
 */
export interface WarmSection {
  /** Layout of the records (WARM_FORMAT); a reader that does not know it ignores the section. */
  format: number;
  /** Blocks listed. */
  blocks: number;
  /** The records (see exportWarm), deflated, base64. */
  data: string;
}

/** A snapshot's `warm`: the list in the file `file` of the snapshot directory (the records deflated), with its CRC-32. */
export interface WarmFileRef {
  format: number;
  blocks: number;
  file: string;
  crc32: string;
}

/** What startWarmup reads: a section, or a snapshot's file (its absolute path and expected CRC-32). */
export type WarmSource = WarmSection | { format: number; path: string; crc32: string };

export const WARM_FORMAT = 1;
/** Bytes of a record before its instruction lengths: pa u32, n u8, bytes u16, hash u32. */
const RECORD_HEAD = 11;
/** The 64-bit block mode (SoftCpu.blockMode). */
const MODE64 = 8;

/**
 * The translated, still valid 64-bit blocks of `cpus`' block cache (shared by the vCPUs of one GuestMemory), as a
 * warm section; undefined when there are none (no translator, nothing hot yet). Records, little-endian: the block's
 * physical address (u32: code lives in low RAM), its instruction count n, the bytes of its page its instructions
 * cover from its start (u16; the last instruction's prefixes and opcode at least), their hash (hashBytes), then
 * each instruction's length as the block holds it (u8; the last one 0 when it may branch).
 */
export function exportWarm(cpus: SoftCpu[]): WarmSection | undefined {
  const cpu = cpus[0];
  if (cpu === undefined || cpu.wasm === null) return undefined;
  const cache = cpu.codeCache, ram = cpu.ram;
  const blocks: Block[] = [];
  let size = 0;
  for (const b of cache.translated.values()) {
    if (b.mode !== MODE64 || b.wasm === null || b.gen !== cache.pageGen[b.pa >>> 12] || b.n > MAX_BLOCK) continue;
    blocks.push(b);
    size += RECORD_HEAD + b.n;
  }
  if (blocks.length === 0) return undefined;
  const out = Buffer.alloc(size);
  let p = 0;
  for (const b of blocks) {
    // (the lengths from the translation's instruction offsets: one small array, where the entries are n objects
    // spread over the heap, which a cache walk of thousands of blocks pays for in misses)
    const offs = b.wasm!.offs, n = b.n, last = b.entries[n - 1];
    const at = offs[n - 1];
    const bytes = at + (last.len > 0 ? last.len : last.opLen);
    out.writeUInt32LE(b.pa >>> 0, p);
    out[p + 4] = n;
    out.writeUInt16LE(bytes, p + 5);
    out.writeUInt32LE(hashBytes(ram, b.pa, bytes), p + 7);
    p += RECORD_HEAD;
    for (let i = 0; i < n - 1; i++) out[p++] = offs[i + 1] - offs[i];
    out[p++] = last.len;
  }
  return { format: WARM_FORMAT, blocks: blocks.length, data: zlib.deflateRawSync(out, { level: 1 }).toString('base64') };
}

/**
 * FNV-1a (32-bit) of ram[pa, pa+len), unsigned: tells whether a block's bytes are the ones listed (not a defence
 * against a crafted list, which needs none: see the top of this file). In JavaScript rather than zlib.crc32, whose
 * call costs more than hashing the ~40 bytes of a block here, thousands of times while the VM is paused.
 */
export function hashBytes(ram: Uint8Array, pa: number, len: number): number {
  let h = 0x811c9dc5;
  for (let i = pa, end = pa + len; i < end; i++) h = Math.imul(h ^ ram[i], 0x01000193);
  return h >>> 0;
}

/** One listed block, decoded from a section. */
export interface WarmRecord {
  pa: number;
  bytes: number;
  hash: number;
  lens: Uint8Array;
}

/**
 * The records of a warm section, or null when it is not one this reader knows (another format, not inflatable, a
 * truncated record): the section is then ignored as a whole. Values are checked when each block is rebuilt.
 */
export function decodeWarm(section: unknown): WarmRecord[] | null {
  const buf = inflateWarm(section);
  if (buf === null) return null;
  const out: WarmRecord[] = [];
  for (let p = 0; p < buf.length; p += RECORD_HEAD + buf[p + 4]) {
    if (p + RECORD_HEAD > buf.length || p + RECORD_HEAD + buf[p + 4] > buf.length) return null;
    out.push(recordAt(buf, p));
  }
  return out;
}

/** The records of a section, inflated (null: not a section this reader knows, or damaged). */
function inflateWarm(section: unknown): Buffer | null {
  const s = section as Partial<WarmSection & { path: string; crc32: string }>;
  if (typeof s !== 'object' || s === null || s.format !== WARM_FORMAT) return null;
  try {
    let deflated: Buffer;
    if (typeof s.data === 'string') deflated = Buffer.from(s.data, 'base64');
    else if (typeof s.path === 'string') {
      deflated = fs.readFileSync(s.path);
      if (zlib.crc32(deflated).toString(16).padStart(8, '0') !== s.crc32) return null;
    } else return null;
    return zlib.inflateRawSync(deflated, { maxOutputLength: 64 << 20 });
  } catch {
    return null;
  }
}

function recordAt(buf: Buffer, p: number): WarmRecord {
  return { pa: buf.readUInt32LE(p), bytes: buf.readUInt16LE(p + 5), hash: buf.readUInt32LE(p + 7), lens: buf.subarray(p + RECORD_HEAD, p + RECORD_HEAD + buf[p + 4]) };
}

/** What SoftCpu.beginInstruction leaves after the prefixes and opcode, in 64-bit mode. */
interface Decoded {
  opsize: number; adsize: number; segOverride: number; rep: number; lock: boolean; p66: boolean;
  rex: number; opcode: number; opLen: number; handler: OpHandler;
}

const LEGACY = new Uint8Array(256);
for (const b of [0x66, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0xf0, 0xf2, 0xf3]) LEGACY[b] = 1;

/**
 * Decode the prefixes and opcode of the instruction at ram[p] in 64-bit mode (default operand size 4, address size
 * 8), reading nothing at or past `end`; null if they do not fit or are longer than the CPU takes (it raises #GP).
 * The rules are SoftCpu.beginInstruction/decodePrefixes' (SDM vol. 2 §2.1.1, §2.2.1: a REX prefix counts only right
 * before the opcode; ES/CS/SS/DS overrides are null in 64-bit mode).
 */
function decodeHead(ram: Uint8Array, p: number, end: number, d: Decoded): boolean {
  const start = p;
  let opsize = 4, adsize = 8, seg = -1, rep = 0, lock = false, p66 = false, rex = 0;
  if (p >= end) return false;
  let b = ram[p++];
  if (LEGACY[b] !== 0 || (b & 0xf0) === 0x40) {
    for (let n = 0; ; n++) {
      if (n >= 14) return false;
      if (LEGACY[b] !== 0) {
        if (b === 0x66) { p66 = true; opsize = 2; } else if (b === 0x67) adsize = 4;
        else if (b === 0xf0) lock = true;
        else if (b === 0xf2 || b === 0xf3) rep = b;
        else seg = b === 0x26 ? C.ES : b === 0x2e ? C.CS : b === 0x36 ? C.SS : b === 0x3e ? C.DS : b === 0x64 ? C.FS : C.GS;
        rex = 0;
      } else if ((b & 0xf0) === 0x40) {
        rex = b;
      } else break;
      if (p >= end) return false;
      b = ram[p++];
    }
    if (seg < C.FS) seg = -1;
  }
  if ((rex & 8) !== 0) opsize = 8;
  let handler: OpHandler, opcode: number;
  if (b === 0x0f) {
    if (p >= end) return false;
    b = ram[p++];
    opcode = 0x100 | b;
    handler = ops0f[b];
  } else {
    opcode = b;
    handler = ops1[b];
  }
  d.opsize = opsize; d.adsize = adsize; d.segOverride = seg; d.rep = rep; d.lock = lock; d.p66 = p66; d.rex = rex;
  d.opcode = opcode; d.opLen = p - start; d.handler = handler;
  return true;
}

/**
 * Whether an instruction with this decoding may stand before the end of a block: not a control transfer or other
 * terminator (code-cache.ts TERMINATOR; FF only as CALL/JMP, by its ModRM reg field at `modrm`), except a Jcc without
 * a 66h prefix, which the recorder leaves as a side exit when it fell through (SoftCpu.fellThrough).
 */
function mayContinue(d: Decoded, modrm: number): boolean {
  const t = TERMINATOR[d.opcode];
  if (t === 0) return true;
  if (t === 2) { const r = (modrm >> 3) & 7; return r < 2 || r > 5; }
  return !d.p66 && ((d.opcode >= 0x70 && d.opcode <= 0x7f) || (d.opcode >= 0x180 && d.opcode <= 0x18f));
}

/**
 * The block `r` describes, rebuilt from `cpu`'s low RAM as SoftCpu.recordBlock would record it (not installed), or
 * null when the record does not match memory or is not a block the recorder makes. Its generation is the page's now.
 */
export function rebuildBlock(cpu: SoftCpu, r: WarmRecord): Block | null {
  const ram = cpu.ram, cache = cpu.codeCache;
  const pa = r.pa, n = r.lens.length, bytes = r.bytes;
  if (n === 0 || n > MAX_BLOCK || bytes === 0 || (pa & 0xfff) + bytes > 4096 || pa + bytes > cache.lowSize || pa + bytes > ram.length) return null;
  if (hashBytes(ram, pa, bytes) !== r.hash) return null;
  const end = pa + bytes;
  const entries: BlockEntry[] = [];
  const d = {} as Decoded;
  let at = 0;
  for (let i = 0; i < n; i++) {
    const len = r.lens[i], last = i === n - 1;
    if (!decodeHead(ram, pa + at, end, d)) return null;
    const e = new BlockEntry(d.handler);
    e.opLen = d.opLen; e.opsize = d.opsize; e.adsize = d.adsize; e.segOverride = d.segOverride; e.rep = d.rep;
    e.lock = d.lock; e.p66 = d.p66; e.rex = d.rex; e.rexW = (d.rex & 8) !== 0; e.rexR = (d.rex & 4) << 1;
    e.rexX = (d.rex & 2) << 2; e.rexB = (d.rex & 1) << 3; e.opcode = d.opcode;
    if (last && len === 0) {
      // a last instruction that may branch (recordBlock: its prefixes and opcode in the page, the rest fetched by the
      // handler; a fast form only when all of it lies in the page)
      if (at + d.opLen !== bytes) return null;
      const k = compileFast(cpu, e, pa + at, 0);
      if (k !== 0 && (pa & 0xfff) + at + k <= 4096) e.len = k;
      else { e.fast = null; e.form = 0; }
    } else {
      if (len < d.opLen || len > 15 || at + len > bytes || (last ? at + len !== bytes : !mayContinue(d, ram[pa + at + d.opLen]))) return null;
      e.len = len;
      compileFast(cpu, e, pa + at, len);
    }
    entries.push(e);
    at += len;
  }
  return new Block(pa, MODE64, cache.pageGen[pa >>> 12], entries);
}

export interface WarmReport {
  /**
   * Blocks listed; of those, rebuilt when the guest reached them, and skipped (bytes changed, malformed, no room:
   * counted when the guest reaches them).
   */
  listed: number;
  rebuilt: number;
  skipped: number;
  /** Listed blocks the guest had reached (and recorded) before the list was read: primed as they are. */
  primedExisting: number;
  /** The whole section was ignored (unknown format, damaged, RINGZERO_WARM=0): why. */
  ignored?: string;
  /** Main-thread time spent on the list: reading it, and rebuilding the blocks reached so far. */
  ms: number;
}

/** Runs of a rebuilt block before it is queued for translation (RINGZERO_WARM_REPLAYS; WASM_HOT without the list). */
const WARM_REPLAYS = Number(process.env.RINGZERO_WARM_REPLAYS ?? 10);
/** How long the blocks of a list not reached yet are kept (ms): a guest that did not get there by then is elsewhere. */
const KEEP_MS = 60_000;
/**
 * After the list is read, the queue of blocks waiting for translation is flushed at these delays (ms, each after the
 * previous: ~7 s in all; RINGZERO_WARM_FLUSH=0: not): WasmEngine.exec translates a batch once WASM_BATCH blocks wait
 * or one of them ran WASM_BATCH_WAIT more times, which a block the guest reaches a few times a second may wait for
 * for minutes once the blocks around it are translated and no longer pass through exec. Not sooner: in the first
 * tenth of a second the queue fills by itself, and flushing it every few milliseconds then (1, 2, 4, ... ms) made
 * small batches, whose blocks form fewer regions (translate.ts): the restored guest's rate after 2-3 CPU-seconds was
 * ~25% lower (bench/restore-warm, 4 pairs: 4300 against 5870 iterations per CPU-second, medians).
 */
const FLUSH_DELAYS = process.env.RINGZERO_WARM_FLUSH === '0' ? [] : [100, 250, 500, 1000, 1000, 2000, 2000];

/**
 * Arm `cpu`'s block cache with the listed blocks (`buf`: the inflated records; synchronous: between run-loop slices,
 * never while a block runs). Each listed block is remembered and its table slot's hot counter set so that the guest's
 * next visit there asks CodeCache.warm, which rebuilds it (instead of recording it after WASM_HOT_THRESHOLD visits)
 * and primes it: translated after WARM_REPLAYS more runs instead of ~100. So only the blocks the restored guest
 * actually runs are rebuilt, and only those it runs often are translated; a listed block the guest had already
 * recorded is primed where it is. Returns the function that forgets what is left (also done after KEEP_MS).
 */
export function armWarm(cpu: SoftCpu, buf: Buffer, report: WarmReport): () => void {
  const engine = cpu.wasm, cache = cpu.codeCache;
  // (the record offset of each listed address; records are made, and their bytes hashed, only when the guest gets
  // there: hashing them all would fault in every listed page of the mapped memory image and cost ~20-40 ms of a fresh
  // process for a booted Linux guest's ~8k blocks)
  const waiting = new Map<number, number>();
  for (let p = 0; p < buf.length; p += RECORD_HEAD + buf[p + 4]) {
    if (p + RECORD_HEAD > buf.length || p + RECORD_HEAD + buf[p + 4] > buf.length) break;
    report.listed++;
    const pa = buf.readUInt32LE(p), page = pa >>> 12;
    if (engine === null || !cpu.blockCacheEnabled || !cpu.jitEnabled || page >= cache.noCache.length || cache.noCache[page] !== 0 ||
      cache.translated.has(pa * 16 + MODE64) || waiting.has(pa)) { report.skipped++; continue; }
    const slot = (pa ^ (pa >>> TABLE_BITS_SHIFT)) & TABLE_MASK;
    const old = cache.table[slot];
    if (old !== undefined && old.gen === cache.pageGen[old.pa >>> 12] && old.pa === pa && old.mode === MODE64) {
      // (reached and recorded before the list was read: primed as it is, if the list still describes it)
      const r = recordAt(buf, p);
      if (pa + r.bytes <= cpu.ram.length && hashBytes(cpu.ram, pa, r.bytes) === r.hash) { engine.prime(old, WARM_REPLAYS); report.primedExisting++; } else report.skipped++;
      continue;
    }
    waiting.set(pa, p);
    if (cache.hot[slot] < WASM_HOT_THRESHOLD) cache.hot[slot] = WASM_HOT_THRESHOLD;
  }
  if (waiting.size === 0 || engine === null) return () => {};
  const forget = () => { waiting.clear(); if (cache.warm === lookup) cache.warm = null; };
  const lookup = (pa: number): Block | null => {
    const p = waiting.get(pa);
    if (p === undefined) return null;
    waiting.delete(pa);
    if (waiting.size === 0) forget();
    const t = performance.now();
    // (rebuildBlock checks the bytes' hash first: a block whose bytes changed is skipped)
    const b = rebuildBlock(cpu, recordAt(buf, p));
    if (b === null) { report.skipped++; report.ms += performance.now() - t; return null; }
    cache.codePages[b.pa >>> 12] |= 1;
    cache.stats.blocks++;
    cache.stats.instructionsCached += b.n;
    engine.prime(b, WARM_REPLAYS);
    report.rebuilt++;
    report.ms += performance.now() - t;
    return b;
  };
  cache.warm = lookup;
  setTimeout(forget, KEEP_MS).unref();
  return forget;
}

/**
 * Warm `cpu`'s block cache from a snapshot's warm section once its guest runs again (armWarm), in a setImmediate
 * callback: the restore itself pays nothing. `alive` says whether the machine still runs (nothing is done once it
 * does not). RINGZERO_WARM=0 ignores the section (to compare). `done` gets the report once the list is armed; the
 * report object goes on counting the blocks rebuilt as the guest reaches them.
 */
export function startWarmup(cpu: SoftCpu, section: unknown, alive: () => boolean, done?: (report: WarmReport) => void): void {
  const report: WarmReport = { listed: 0, rebuilt: 0, skipped: 0, primedExisting: 0, ms: 0 };
  if (process.env.RINGZERO_WARM === '0') { report.ignored = 'RINGZERO_WARM=0'; done?.(report); return; }
  const engine = cpu.wasm;
  let flushes = 0;
  let forget = () => {};
  const flush = () => {
    if (!alive()) { forget(); return; }
    engine?.flush(cpu);
    if (flushes < FLUSH_DELAYS.length) setTimeout(flush, FLUSH_DELAYS[flushes++]).unref();
  };
  setImmediate(() => {
    if (!alive()) { report.ignored = 'the machine stopped first'; done?.(report); return; }
    const t0 = performance.now();
    const buf = inflateWarm(section);
    if (buf === null) { report.ignored = 'not a warm section this ringzero reads'; done?.(report); return; }
    forget = armWarm(cpu, buf, report);
    report.ms += performance.now() - t0;
    done?.(report);
    if (engine !== null && report.listed > report.skipped && FLUSH_DELAYS.length > 0) setTimeout(flush, FLUSH_DELAYS[flushes++]).unref();
  });
}
