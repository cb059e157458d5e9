// A live migration's destination starts with the source's hot code translated (issue 7).
//
// Why: a migration's destination is a new VMM process: its block cache and wasm translations are empty and its V8
// cold, so the guest's first hundreds of milliseconds there run at interpreter speed (README "Live migration",
// session 17: a restore in a fresh process ran median 20 loop passes in its first 500 ms of CPU, a second restore of
// the same snapshot in the same process 590, with the same guest code's wasm already compiled in that process).
// Session 15 carried a list of translated blocks into a restore and rebuilt and translated them lazily after the
// resume, which bought nothing: the translating itself then ran on the cold main thread while the guest waited.
//
// What: the source lists its translated blocks (exportHotList: physical address, the linear address they were
// queued at, instruction lengths, a hash of their bytes) and sends that list with the pages holding them at the start
// of the pre-copy (src/migration/source.ts). The destination, whose Machine exists from the stream's hello on, has
// those pages then and rebuilds and translates the blocks into its own block cache and wasm runtime while the rest of
// the pre-copy arrives (pretranslate): V8 compiles the modules on its background threads and they are installed
// before the guest runs there, and the translator's JavaScript has been warmed up by the work.
//
// Why it never runs wrong code: a block is rebuilt only when the hash of its bytes in the received memory matches
// and its shape is one the recorder makes (at most MAX_BLOCK instructions within one page, control transfers only
// at its end or as fall-through Jcc side exits); from then on it is an ordinary block whose page is marked as holding
// code, and every later page the stream brings invalidates the code of that page (the destination calls
// CodeCache.invalidateRange for each PAGES/ZERO frame), so a page rewritten at the source after it was listed never
// runs its old translation. A restore into the destination's machine keeps these blocks (restoreSoftCpu's keepCode):
// they describe the memory the state goes with. An instruction length is never trusted beyond the hash: a fast form
// is decoded from memory and kept only when its length matches, and a replayed handler fetches its own operands.
//
// The prefix decoding below mirrors SoftCpu.beginInstruction/decodePrefixes in 64-bit mode (SDM vol. 2 §2.1.1,
// §2.2.1); test/migrate-hot.test.ts checks that every translated block of a running guest rebuilds field for field
// equal to the block the CPU recorded.
import zlib from 'node:zlib';
import type { OpHandler, SoftCpu } from './cpu.ts';
import { Block, BlockEntry, MAX_BLOCK, TERMINATOR, tableSlot } from './code-cache.ts';
import { compileFast } from './fast-forms.ts';
import { ops1, ops0f } from './tables.ts';
import * as C from './constants.ts';

/** The list as it travels (a JSON message of the migration stream). */
export interface HotList {
  /** Layout of the records (HOT_FORMAT); a reader that does not know it ignores the list. */
  format: number;
  blocks: number;
  /** The records, deflated, base64. */
  data: string;
}

export const HOT_FORMAT = 1;
/** Bytes of a record before its instruction lengths: pa u32, n u8, bytes u16, hash u32, lin f64. */
const RECORD_HEAD = 19;
/** The 64-bit block mode (SoftCpu.blockMode): the only one the wasm translator translates. */
const MODE64 = 8;
/**
 * At most this many blocks are listed. Measured at load ~25 with the full list (~8.5k blocks of a booted Linux guest):
 * taking it cost the source 120-164 ms of wall time, and the destination got through 3968 of them before the state came.
 */
export const MAX_LISTED = Number(process.env.RINGZERO_MIGRATE_HOT_MAX ?? 2048);
/** The most a caller may ask exportHotList for (a migrate parameter is checked against it): 16 bits of block count, more than a booted guest translates. */
export const MAX_LISTED_LIMIT = 65536;

/**
 * The translated, still valid 64-bit blocks of `cpu`'s block cache, the most recently translated first (see
 * MAX_LISTED), and the pages they lie in (one byte per page of low RAM); undefined when there are none.
 * Records, little-endian: physical address (u32: code lives in low RAM), instruction count n (u8), bytes of the page
 * the instructions cover (u16), their hash (u32, hashBytes), the linear address the block was queued at (f64; NaN:
 * unknown), then each instruction's length as the block holds it (u8; the last one 0 when it may branch).
 */
export function exportHotList(cpu: SoftCpu, max = MAX_LISTED, order: HotOrder = HOT_ORDER): { list: HotList; pages: Uint8Array } | undefined {
  const engine = cpu.wasm;
  if (engine === null) return undefined;
  const cache = cpu.codeCache, ram = cpu.ram;
  let blocks: Block[] = [];
  for (const b of cache.translated.values()) {
    if (b.mode !== MODE64 || b.wasm === null || b.pfn2 >= 0 || b.gen !== cache.pageGen[b.pa >>> 12] || b.n > MAX_BLOCK) continue;
    blocks.push(b);
  }
  if (blocks.length === 0 || !(max >= 1)) return undefined;
  // At most MAX_LISTED (a booted Linux guest has ~8.5k translated blocks, most of them from its boot, and the
  // destination may not get through the whole list before the state arrives), the most recently translated first;
  // with order 'sampled', those the latest slice-end RIPs (CodeCache.ripSamples) landed on come before them, by how
  // often, then those in the pages they landed in (see HOT_ORDER).
  blocks.reverse();
  if (order === 'sampled') blocks = bySamples(blocks, recentSamples(cache.ripSamples, cache.ripSampled, cpu.rip), (b) => engine.linearOf(b));
  blocks = blocks.slice(0, Math.floor(max));
  let size = 0;
  for (const b of blocks) size += RECORD_HEAD + b.n;
  const out = Buffer.alloc(size);
  const pages = new Uint8Array(Math.ceil(cache.lowSize / 4096));
  let p = 0;
  for (const b of blocks) {
    // (the lengths from the translation's instruction offsets: one small array rather than n entry objects)
    const offs = b.wasm!.offs, n = b.n, last = b.entries[n - 1];
    const bytes = offs[n - 1] + (last.len > 0 ? last.len : last.opLen);
    out.writeUInt32LE(b.pa >>> 0, p);
    out[p + 4] = n;
    out.writeUInt16LE(bytes, p + 5);
    out.writeUInt32LE(hashBytes(ram, b.pa, bytes), p + 7);
    out.writeDoubleLE(engine.linearOf(b) ?? NaN, p + 11);
    p += RECORD_HEAD;
    for (let i = 0; i < n - 1; i++) out[p++] = offs[i + 1] - offs[i];
    out[p++] = last.len;
    pages[b.pa >>> 12] = 1;
  }
  return { list: { format: HOT_FORMAT, blocks: blocks.length, data: zlib.deflateRawSync(out, { level: 1 }).toString('base64') }, pages };
}

export type HotOrder = 'recent' | 'sampled';
/**
 * The hot-block list's order (RINGZERO_MIGRATE_HOT_ORDER): 'recent' (the default), the most recently translated first;
 * 'sampled', the blocks where the guest's slices ended lately first (bySamples), then as 'recent'. Session 24: with
 * 'recent' the 1024 blocks the two-host test lists missed the guest's steady hot code (the timer interrupt, the
 * scheduler, the tty and serial driver, translated long before), and in a destination's first 250 ms 0.1-6k of its
 * 60-220k guest instructions ran in translated code; with 'sampled' 6-94k of 40-220k. But the gap on the consoles did
 * not follow (three alternating pairs of test/manager-migrate's two-host test at load 15-34: the destination's way
 * from its first instruction to its first value 157/163/577 ms against 256/66/266 ms): the cold process's
 * JavaScript, which translated code calls into, sets the pace there. So not the default.
 */
export const HOT_ORDER: HotOrder = process.env.RINGZERO_MIGRATE_HOT_ORDER === 'sampled' ? 'sampled' : 'recent';

/**
 * How many samples halve a sample's weight (bySamples): 1024 samples are ~20M guest instructions, a second or less of
 * a warm guest's time, so what the guest runs now outweighs what it ran most in the ring's whole span (8192 samples,
 * up to minutes of an idle guest's time).
 */
export const SAMPLE_HALF_LIFE = 1024;

/**
 * The ring's samples, oldest first (`count`: how many were ever taken), then `now` (where the vCPU stands as the list
 * is taken: the code it executes this moment, also when its latest slices ended on HLT rather than a used-up budget).
 */
export function recentSamples(ring: Float64Array, count: number, now: number): Float64Array {
  const n = Math.min(count, ring.length), out = new Float64Array(n + 1);
  const start = count > ring.length ? count % ring.length : 0;
  for (let k = 0; k < n; k++) out[k] = ring[(start + k) % ring.length];
  out[n] = now;
  return out;
}

/**
 * `blocks` (the most recently translated first) reordered by the RIP samples (oldest first, each weighing half as much
 * per SAMPLE_HALF_LIFE newer ones): the blocks starting where samples landed (by their weight), then the blocks in
 * pages samples landed in (by the page's weight), then the rest, each group in the order given. `linear` is a block's
 * linear address (undefined: unknown, ranked with the rest). Why the weights: session 25 measured that a list by
 * translation order alternates between hops that hold the guest's current code and hops that do not; by plain sample
 * counts, a loop the guest ran long ago but no longer would still rank over the one it runs now.
 */
export function bySamples<T>(blocks: T[], samples: Float64Array, linear: (b: T) => number | undefined): T[] {
  if (samples.length === 0) return blocks;
  const at = new Map<number, number>(), inPage = new Map<number, number>();
  for (let k = 0; k < samples.length; k++) {
    const rip = samples[k], w = 2 ** (-(samples.length - 1 - k) / SAMPLE_HALF_LIFE);
    at.set(rip, (at.get(rip) ?? 0) + w);
    const page = Math.floor(rip / 4096);
    inPage.set(page, (inPage.get(page) ?? 0) + w);
  }
  // (exact hits rank over any page weight: a block's own samples say more than its page's)
  const scored = blocks.map((b, i) => {
    const lin = linear(b);
    return { b, i, s: lin === undefined ? 0 : at.get(lin) ?? 0, p: lin === undefined ? 0 : inPage.get(Math.floor(lin / 4096)) ?? 0 };
  });
  scored.sort((x, y) => y.s - x.s || y.p - x.p || x.i - y.i);
  return scored.map((x) => x.b);
}

/** FNV-1a (32-bit) of ram[pa, pa+len), unsigned: whether a block's bytes are the ones listed. */
export function hashBytes(ram: Uint8Array, pa: number, len: number): number {
  let h = 0x811c9dc5;
  for (let i = pa, end = pa + len; i < end; i++) h = Math.imul(h ^ ram[i], 0x01000193);
  return h >>> 0;
}

/** One listed block. */
export interface HotRecord {
  pa: number;
  bytes: number;
  hash: number;
  /** The linear address it was queued at (undefined: unknown). */
  lin: number | undefined;
  lens: Uint8Array;
}

/**
 * The records of a list, or null when it is not one this reader knows (another format, not inflatable, a truncated
 * record): the list is then ignored as a whole. Values are checked when each block is rebuilt.
 */
export function decodeHotList(list: unknown): HotRecord[] | null {
  const s = list as Partial<HotList>;
  if (typeof s !== 'object' || s === null || s.format !== HOT_FORMAT || typeof s.data !== 'string') return null;
  let buf: Buffer;
  try {
    buf = zlib.inflateRawSync(Buffer.from(s.data, 'base64'), { maxOutputLength: 64 << 20 });
  } catch {
    return null;
  }
  const out: HotRecord[] = [];
  for (let p = 0; p < buf.length; p += RECORD_HEAD + buf[p + 4]) {
    if (p + RECORD_HEAD > buf.length || p + RECORD_HEAD + buf[p + 4] > buf.length) return null;
    const lin = buf.readDoubleLE(p + 11);
    out.push({
      pa: buf.readUInt32LE(p), bytes: buf.readUInt16LE(p + 5), hash: buf.readUInt32LE(p + 7),
      lin: Number.isFinite(lin) ? lin : undefined, lens: buf.subarray(p + RECORD_HEAD, p + RECORD_HEAD + buf[p + 4]),
    });
  }
  return out;
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
 * 8), reading nothing at or past `end`; false if they do not fit or are longer than the CPU takes (it raises #GP).
 * The rules are SoftCpu.beginInstruction/decodePrefixes' (a REX prefix counts only right before the opcode;
 * ES/CS/SS/DS overrides are null in 64-bit mode).
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
 * Whether an instruction with this decoding may stand before the end of a block (SoftCpu.endsBlock says it does not
 * end one: not a terminator, FF other than /2-/5, 0F 01 only as SERIALIZE; `modrm`: its ModRM byte), or is a Jcc
 * without a 66h prefix, which the recorder leaves as a side exit when it fell through (SoftCpu.fellThrough).
 */
function mayContinue(d: Decoded, modrm: number): boolean {
  const t = TERMINATOR[d.opcode];
  if (t === 0) return true;
  if (t === 2) {
    if (d.opcode === 0x101) return modrm === 0xe8 && d.rep === 0;
    const r = (modrm >> 3) & 7;
    return r < 2 || r > 5;
  }
  return !d.p66 && ((d.opcode >= 0x70 && d.opcode <= 0x7f) || (d.opcode >= 0x180 && d.opcode <= 0x18f));
}

/**
 * The block `r` describes, rebuilt from `cpu`'s low RAM as SoftCpu.recordBlock records it (not installed), or null
 * when the record does not match memory or is not a block the recorder makes. Its generation is the page's now.
 */
export function rebuildBlock(cpu: SoftCpu, r: HotRecord): Block | null {
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

/** What pretranslate did (Machine.pretranslated; `ringzero run --stats` prints it at the destination). */
export interface PretranslateReport {
  /** Blocks listed; rebuilt and queued for translation; skipped (bytes changed, malformed, already there). */
  listed: number;
  queued: number;
  skipped: number;
  /** Blocks whose translation was installed (counted as their modules come back from V8). */
  installed: number;
  /** The list was ignored as a whole (unknown format, no translator): why. */
  ignored?: string;
  /** Main-thread time spent rebuilding and translating (ms). */
  ms: number;
  /** Stopped before the end of the list (the source's sync came first). */
  cut: boolean;
  /** Blocks installed when stop() was called (the destination: when the source's sync came, before its pause). */
  installedAtStop?: number;
}

/**
 * Rebuild the listed blocks in `cpu`'s block cache and translate them, CHUNK at a time between turns of the event
 * loop (the migration stream keeps arriving), at most MAX_FLYING modules compiling at once. Returns the report and
 * stop(), which ends it before the next chunk (the source is about to pause: what is compiling still installs,
 * nothing more is started). `onDone` is called once the last queued module was installed or given up.
 */
export function pretranslate(cpu: SoftCpu, list: unknown, onDone?: (r: PretranslateReport) => void, opts: PretranslateOptions = {}): { report: PretranslateReport; stop(): void } {
  const rest = opts.rest ?? 2;
  const report: PretranslateReport = { listed: 0, queued: 0, skipped: 0, installed: 0, ms: 0, cut: false };
  const engine = cpu.wasm, cache = cpu.codeCache;
  let stopped = false;
  const records = (decodeHotList(list) ?? []).slice(0, opts.max ?? Infinity);
  const queuedBlocks: Block[] = [];
  let next = 0;
  const handle = {
    report,
    stop: () => {
      if (stopped) return;
      stopped = true;
      report.cut = next < records.length;
      report.installedAtStop = queuedBlocks.reduce((n, b) => n + (b.wasm !== null ? 1 : 0), 0);
    },
  };
  if (records.length === 0 || engine === null || !cpu.blockCacheEnabled || !cpu.jitEnabled) {
    report.ignored = engine === null || !cpu.jitEnabled || !cpu.blockCacheEnabled ? 'no wasm translator here' : 'not a hot-block list this ringzero reads';
    queueMicrotask(() => onDone?.(report));
    return handle;
  }
  report.listed = records.length;
  let finished = false;
  const check = () => {
    // (done when nothing is left to start and every queued block's module came back; once: the poll and a step
    // scheduled after the last one may both find it done)
    if (finished || !(stopped || next >= records.length)) return;
    let flying = 0, installed = 0;
    for (const b of queuedBlocks) { if (b.wasm !== null) installed++; else if (b.runs < -1) flying++; }
    report.installed = installed;
    if (flying === 0) { finished = true; clearInterval(poll); onDone?.(report); }
  };
  const poll = setInterval(check, 5);
  poll.unref();
  const step = () => {
    if (stopped || next >= records.length) { check(); return; }
    if (engine.compiling >= MAX_FLYING) { setTimeout(step, 2); return; }
    const t = performance.now();
    for (let k = 0; k < CHUNK && next < records.length; next++) {
      const r = records[next];
      const page = r.pa >>> 12;
      if (page >= cache.noCache.length || cache.noCache[page] !== 0 || cache.translated.has(r.pa * 16 + MODE64)) { report.skipped++; continue; }
      const slot = tableSlot(r.pa), have = cache.table[slot];
      // (a guest already running here recorded this block itself: it translates it when it becomes hot)
      if (have !== undefined && have.pa === r.pa && have.mode === MODE64 && have.gen === cache.pageGen[page]) { report.skipped++; continue; }
      const b = rebuildBlock(cpu, r);
      if (b === null) { report.skipped++; continue; }
      cache.codePages[page] |= 1;
      cache.addBlock(b, slot, false);
      engine.enqueue(b, r.lin);
      queuedBlocks.push(b);
      report.queued++;
      k++;
    }
    engine.flush(cpu);
    const took = performance.now() - t;
    report.ms += took;
    // By default at most a third of the main thread: the rest goes to the stream (with a step per turn of the event
    // loop, one socket read came between steps, and the pre-copy took 1.4-2x as long) or the guest.
    if (rest > 0) setTimeout(step, Math.min(rest * took, 100));
    else setImmediate(step);
  };
  setImmediate(step);
  return handle;
}

export interface PretranslateOptions {
  /**
   * Main-thread time left to others after each step, as a multiple of the step's (default 2: pretranslate takes at
   * most a third of the thread); 0: a step per turn of the event loop (nothing else waits for the thread).
   */
  rest?: number;
  /** Only the first this many records (the most recently translated). */
  max?: number;
}

/** Blocks rebuilt and translated per step (one module each). */
const CHUNK = 64;
/** Modules compiling in the background at most while the list is translated (V8's worker pool has 4 threads). */
const MAX_FLYING = 4;
