// A minimal WebAssembly binary emitter (no dependency): LEB128, the sections a translated module needs (types,
// imports, functions, exports, code) and a function-body builder with labelled blocks. Encodings from the
// WebAssembly Core Specification 2.0, §5 (binary format): §5.2.2 integers (LEB128), §5.4 instructions, §5.5 modules.
import v8 from 'node:v8';

/**
 * Branch hints (on; RINGZERO_WASM_HINTS=0: off): the translator marks branches whose one side is
 * cold (a TLB probe's miss, a helper's event check, a #GP, the dispatcher's ways out) with Body.hint, and modules
 * carry them in the custom section "metadata.code.branch_hint" (the WebAssembly branch-hinting proposal: per
 * function, the byte offset of each hinted `if`/`br_if` from the start of its body's local declarations, and 0
 * unlikely / 1 likely). V8 11.3 reads it under --experimental-wasm-branch-hinting (set here) and TurboFan then
 * places the unlikely side out of line, after the function's hot path (checked: an `if` hinted unlikely moved its
 * body behind the function's `ret`), so the straight-line code of a block stays dense in the instruction cache.
 * Hints change no result: only where code goes. Measured (session 28, loaded host, `bench/engines --paired`, one build,
 * off against on, 3 pairs): syscall loop 0.89x wall (0.86-0.97), md5 0.91x (0.68-0.95), ash loop 0.89x (0.84-0.91);
 * boot 0.95x wall, 0.91x guest thread (one pair). Every pair faster. Again at ceaa181 (with the session's other
 * changes), 3 pairs: ash 0.85x wall (0.83-0.90; guest thread 0.82x), syscall 0.90x (0.86-0.93; thread 0.90x).
 */
let HINTS = process.env.RINGZERO_WASM_HINTS !== '0';
if (HINTS) v8.setFlagsFromString('--experimental-wasm-branch-hinting');
/** Turn branch hints on or off for modules encoded from now on (tests); returns the old setting. */
export function setBranchHints(on: boolean): boolean {
  const old = HINTS;
  if (on && !old) v8.setFlagsFromString('--experimental-wasm-branch-hinting');
  HINTS = on;
  return old;
}

/**
 * `local.set x` followed at once by `local.get x` is emitted as `local.tee x` (Body.get): the same code in one
 * operation less (RINGZERO_WASM_PEEP_TEE=0: off, as before).
 */
const PEEP_TEE = process.env.RINGZERO_WASM_PEEP_TEE !== '0';

/** Value types (§5.3.1). */
export const I32 = 0x7f, I64 = 0x7e, F64 = 0x7c;
/** The 128-bit vector type of the SIMD proposal (merged in Core 2.0, §5.3.1; Node 20's V8 has it). */
export const V128 = 0x7b;
/** Block type "no result" (§5.4.1). */
const EMPTY = 0x40;

/** Opcodes used by the translator (§5.4). */
export const Op = {
  unreachable: 0x00, block: 0x02, loop: 0x03, if: 0x04, else: 0x05, end: 0x0b, br: 0x0c, brIf: 0x0d,
  return: 0x0f, call: 0x10, drop: 0x1a, select: 0x1b,
  localGet: 0x20, localSet: 0x21, localTee: 0x22,
  i32Load: 0x28, i64Load: 0x29, f64Load: 0x2b, i32Load8u: 0x2d, i32Load16u: 0x2f, i64Load8u: 0x31, i64Load16u: 0x33,
  i64Load32s: 0x34, i64Load32u: 0x35,
  i32Store: 0x36, i64Store: 0x37, f64Store: 0x39, i32Store8: 0x3a, i32Store16: 0x3b, i64Store8: 0x3c, i64Store16: 0x3d,
  i64Store32: 0x3e,
  i32Const: 0x41, i64Const: 0x42, f64Const: 0x44,
  i32Eqz: 0x45, i32Eq: 0x46, i32Ne: 0x47, i32LtS: 0x48, i32LtU: 0x49, i32GtS: 0x4a, i32GtU: 0x4b, i32LeS: 0x4c,
  i32LeU: 0x4d, i32GeS: 0x4e, i32GeU: 0x4f,
  i64Eqz: 0x50, i64Eq: 0x51, i64Ne: 0x52, i64LtS: 0x53, i64LtU: 0x54, i64GtS: 0x55, i64GtU: 0x56, i64LeS: 0x57,
  i64LeU: 0x58, i64GeS: 0x59, i64GeU: 0x5a,
  f64Eq: 0x61, f64Ne: 0x62, f64Lt: 0x63, f64Ge: 0x66,
  i32Popcnt: 0x69, i32Add: 0x6a, i32Sub: 0x6b, i32And: 0x71, i32Or: 0x72, i32Xor: 0x73, i32Shl: 0x74, i32ShrS: 0x75,
  i32ShrU: 0x76, i64Popcnt: 0x7b,
  i64Add: 0x7c, i64Sub: 0x7d, i64And: 0x83, i64Or: 0x84, i64Xor: 0x85, i64Shl: 0x86, i64ShrS: 0x87, i64ShrU: 0x88,
  f64Add: 0xa0,
  i32WrapI64: 0xa7, i64ExtendI32s: 0xac, i64ExtendI32u: 0xad, f64ConvertI64s: 0xb9,
  i32Extend8s: 0xc0, i32Extend16s: 0xc1,
} as const;

/**
 * SIMD opcodes (Core 2.0 §5.4.8): each is the prefix byte 0xFD followed by this number as an unsigned LEB128
 * (Body.simd / Body.simdMem / Body.shuffle emit them).
 */
export const Simd = {
  v128Load: 0x00, v128Store: 0x0b, i8x16Shuffle: 0x0d,
  i8x16Eq: 0x23, i8x16GtS: 0x27, i16x8Eq: 0x2d, i16x8GtS: 0x31, i32x4Eq: 0x37, i32x4GtS: 0x3b,
  v128Not: 0x4d, v128And: 0x4e, v128AndNot: 0x4f, v128Or: 0x50, v128Xor: 0x51,
  i8x16Bitmask: 0x64, i8x16Add: 0x6e, i8x16AddSatS: 0x6f, i8x16AddSatU: 0x70, i8x16Sub: 0x71, i8x16SubSatS: 0x72,
  i8x16SubSatU: 0x73, i8x16MinU: 0x77, i8x16MaxU: 0x79, i8x16AvgrU: 0x7b,
  i16x8AddSatS: 0x8f, i16x8AddSatU: 0x90, i16x8SubSatS: 0x92, i16x8SubSatU: 0x93, i16x8MinS: 0x96, i16x8MaxS: 0x98,
  i16x8AvgrU: 0x9b, i16x8Add: 0x8e, i16x8Sub: 0x91, i16x8Mul: 0x95,
  i32x4Add: 0xae, i32x4Sub: 0xb1, i64x2Add: 0xce, i64x2Sub: 0xd1,
} as const;

/** Unsigned LEB128 (§5.2.2) of a non-negative integer below 2^53. */
export function uleb(out: number[], v: number): void {
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
}

function name(out: number[], s: string): void {
  // (names are ASCII here: import/export names like 'e', 'ld4', 'f17'; Buffer.from cost ~4 us a call, ~50 per module)
  if (/^[\x00-\x7f]*$/.test(s)) {
    uleb(out, s.length);
    for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i));
    return;
  }
  const bytes = Buffer.from(s, 'utf8');
  uleb(out, bytes.length);
  for (const b of bytes) out.push(b);
}

/**
 * A function body: locals declared up front, code appended with the helpers below into a growable byte buffer
 * (translation speed matters: blocks are translated while the guest runs).
 */
export class Body {
  private buf: Uint8Array;
  private len = 0;
  /** The scratch scope this body's buffer belongs to (withScratch), or -1: a buffer of its own (arenaSlice). */
  private readonly scope: number;
  private readonly localTypes: number[] = [];
  /** Open blocks/loops/ifs, innermost last: a label is an index into this stack. */
  private readonly labels: number[] = [];
  /** Per label (by number): its index in `labels` while open, else -1. */
  private readonly labelAt: number[] = [];
  private nextLabel = 0;
  /** Branch hints (HINTS): code offset * 2 + 1 when likely taken, in increasing order; null until the first. */
  private hints: number[] | null = null;
  /** How many blocks/loops/ifs are open (the translator's register cache looks at it). */
  nest = 0;
  /** Calls emitted, but for callUncounted's (the translator's exitIfSlow: whether an instruction made calls other than its inline probes' slow paths). */
  calls = 0;

  /**
   * `scratch`: inside withScratch, take the buffer from the scratch arena, which is rewound when that scope ends (for
   * bodies that are encoded into their module before then: the translator's); else, and for every body built
   * outside a scope, a slice of the shared arena that stays valid as long as the body lives.
   */
  constructor(readonly paramCount: number, scratch = false) {
    this.scope = scratch && scratchDepth > 0 ? scratchScope : -1;
    this.buf = this.alloc(BODY_START);
  }

  private alloc(n: number): Uint8Array {
    if (this.scope < 0) return arenaSlice(n);
    if (this.scope !== scratchScope) throw new Error('a scratch body was used after its scope ended');
    return scratchSlice(n);
  }
  /** The buffer, checked to be still this body's (a scratch body's scope has not ended). */
  private live(): Uint8Array {
    if (this.scope >= 0 && this.scope !== scratchScope) throw new Error('a scratch body was used after its scope ended');
    return this.buf;
  }

  local(type: number): number {
    this.localTypes.push(type);
    return this.paramCount + this.localTypes.length - 1;
  }

  /**
   * Make room for `n` more bytes: every emitting method asks once for the most it may write (a LEB128 of a u32/i32
   * takes at most 5 bytes, of an i64 10), then writes with `put`, unchecked (one capacity check per operation rather
   * than per byte: the build of a batch runs on the main thread while the guest waits).
   */
  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = this.alloc(size);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
  private put(b: number): void { this.buf[this.len++] = b; }
  private byte(b: number): void { this.room(1); this.put(b); }
  /** (the caller made room: 5 bytes) */
  private uleb(v: number): void {
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      this.put(b);
    } while (v !== 0);
  }
  /** (the caller made room: 10 bytes) */
  private sleb(v: number): void {
    if ((v | 0) !== v) {
      // (an exact integer beyond int32, |v| < 2^53: as two int32 halves, one split instead of a division per 7-bit group)
      const hi = Math.floor(v / 4294967296);
      this.sleb64(v - hi * 4294967296 | 0, hi | 0);
      return;
    }
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) { this.put(b); return; }
      this.put(b | 0x80);
    }
  }

  /** Signed LEB128 of the 64-bit integer hi * 2^32 + (lo >>> 0), given as two int32 halves (the caller made room: 10 bytes). */
  private sleb64(lo: number, hi: number): void {
    for (;;) {
      const b = lo & 0x7f;
      lo = (lo >>> 7) | (hi << 25);
      hi >>= 7;
      if ((hi === 0 && lo === 0 && (b & 0x40) === 0) || (hi === -1 && lo === -1 && (b & 0x40) !== 0)) { this.put(b); return; }
      this.put(b | 0x80);
    }
  }

  /** One opcode byte, or two (a 0xFC-prefixed opcode, call_indirect's type, ...). */
  // (the most used operations below write their bytes through a local, with a one-byte fast path for a LEB128 below
  // 128 (64 signed): the translator's own code runs unoptimized for the first batches of a boot, where every call to
  // put/uleb/room is a real call)
  op(a: number, b = -1): this {
    if (this.len + 2 > this.buf.length) this.room(2);
    const buf = this.buf;
    buf[this.len++] = a;
    if (b >= 0) buf[this.len++] = b;
    return this;
  }
  i32(v: number): this {
    if (this.len + 6 > this.buf.length) this.room(6);
    v |= 0;
    if (v >= -64 && v < 64) { const buf = this.buf, n = this.len; buf[n] = Op.i32Const; buf[n + 1] = v & 0x7f; this.len = n + 2; return this; }
    this.put(Op.i32Const); this.sleb(v); return this;
  }
  /** i64.const: a number (an exact integer, |v| < 2^53) or a bigint. */
  i64(v: bigint | number): this {
    if (this.len + 11 > this.buf.length) this.room(11);
    if (typeof v === 'number' && v >= -64 && v < 64 && (v | 0) === v) {
      const buf = this.buf, n = this.len; buf[n] = Op.i64Const; buf[n + 1] = v & 0x7f; this.len = n + 2; return this;
    }
    this.put(Op.i64Const);
    if (typeof v === 'number') this.sleb(v);
    else this.sleb64(Number(BigInt.asIntN(32, v)), Number(BigInt.asIntN(32, v >> 32n)));
    return this;
  }
  /** i64.const of hi * 2^32 + (lo >>> 0) (two int32 halves: no number or BigInt arithmetic). */
  i64hl(hi: number, lo: number): this { this.room(11); this.put(Op.i64Const); this.sleb64(lo | 0, hi | 0); return this; }
  f64(v: number): this {
    this.room(9);
    this.put(Op.f64Const);
    F64_SCRATCH[0] = v;
    for (let i = 0; i < 8; i++) this.put(F64_BYTES[i]);
    return this;
  }
  /** A SIMD instruction without immediates (0xFD prefix, LEB128 opcode). */
  simd(op: number): this { this.room(6); this.put(0xfd); this.uleb(op); return this; }
  /** A SIMD load/store with its memarg. */
  simdMem(op: number, align: number, offset: number): this { this.simd(op); this.room(10); this.uleb(align); this.uleb(offset); return this; }
  /** i8x16.shuffle with its 16 lane indices (0-15 the first operand's bytes, 16-31 the second's). */
  shuffle(lanes: readonly number[]): this {
    this.simd(Simd.i8x16Shuffle);
    this.room(16);
    for (let i = 0; i < 16; i++) this.put(lanes[i]);
    return this;
  }
  get(l: number): this {
    // (right after `local.set l`, nothing emitted since: that set becomes `local.tee l`, the same value left on the
    // stack in one operation; ~34k of a boot's ~4.7M translated operations were such pairs)
    if (this.len === this.setEnd && l === this.setLocal && PEEP_TEE) { this.buf[this.setAt] = Op.localTee; this.setEnd = -1; return this; }
    return this.opU(Op.localGet, l);
  }
  set(l: number): this {
    this.setAt = this.len;
    this.opU(Op.localSet, l);
    this.setEnd = this.len; this.setLocal = l;
    return this;
  }
  /** Opcode `op` and its unsigned LEB128 immediate `v` (as uleb: a negative one as its uint32). */
  private opU(op: number, v: number): this {
    if (this.len + 6 > this.buf.length) this.room(6);
    if (v >= 0 && v < 128) { const buf = this.buf, n = this.len; buf[n] = op; buf[n + 1] = v; this.len = n + 2; return this; }
    this.put(op); this.uleb(v); return this;
  }
  /** The last `local.set`: its opcode's offset, its end and its local (get: set + get -> tee). */
  private setAt = -1;
  private setEnd = -1;
  private setLocal = -1;
  tee(l: number): this { return this.opU(Op.localTee, l); }
  call(f: number): this { this.calls++; return this.opU(Op.call, f); }
  /** A call that is not counted in `calls` (the translator's resolveCf: the flag library, which reads the record only). */
  callUncounted(f: number): this { return this.opU(Op.call, f); }
  /** return_call (the tail-call proposal, Node 20's V8 11.3 by default): 0x12, function index. */
  returnCall(f: number): this { this.room(6); this.put(0x12); this.uleb(f); return this; }
  /** return_call_indirect (0x13): type index, table index; the table index operand on the stack. */
  returnCallIndirect(type: number, table: number): this { this.room(12); this.put(0x13); this.uleb(type); this.uleb(table); return this; }
  /** A load/store with alignment hint log2 `align` and a constant offset (§5.4.6 memarg). */
  mem(opcode: number, align: number, offset: number): this {
    if (this.len + 11 > this.buf.length) this.room(11);
    if (align >= 0 && align < 128 && offset >= 0 && offset < 128) {
      const buf = this.buf, n = this.len; buf[n] = opcode; buf[n + 1] = align; buf[n + 2] = offset; this.len = n + 3; return this;
    }
    this.put(opcode);
    this.uleb(align);
    this.uleb(offset);
    return this;
  }

  /**
   * Hint the branch emitted next (an `if` opened or a `br_if`, its condition already pushed): `likely` true when it is
   * usually taken (for an `if`, its `then` side runs), false when hardly ever (HINTS; nothing when off).
   */
  hint(likely: boolean): this {
    if (!HINTS) return this;
    const h = this.hints ?? (this.hints = []);
    const at = this.len * 2;
    if (h.length === 0 || (h[h.length - 1] >> 1) < this.len) h.push(at + (likely ? 1 : 0));
    return this;
  }
  /** The hints recorded (code offsets * 2 + likely), or null. */
  branchHints(): readonly number[] | null { return this.hints; }

  /** Open a block (kind: Op.block, Op.loop or Op.if) with no result; returns its label. */
  open(kind: number): number {
    this.nest++;
    return this.openTyped(kind, EMPTY);
  }
  /**
   * A block with a result type (§5.4.1 blocktype; open() passes EMPTY), not counted in `nest` (Translator's GP_SHARE block around `out`:
   * straight-line code stays at depth `base`; its closer adds one to nest first).
   */
  openTyped(kind: number, type: number): number {
    if (this.len + 2 > this.buf.length) this.room(2);
    const buf = this.buf, n = this.len;
    buf[n] = kind; buf[n + 1] = type; this.len = n + 2;
    const id = this.nextLabel++;
    this.labelAt.push(this.labels.length);
    this.labels.push(id);
    return id;
  }
  else(): this { this.byte(Op.else); return this; }
  close(): this {
    this.nest--;
    const id = this.labels.pop();
    if (id !== undefined) this.labelAt[id] = -1;
    this.byte(Op.end);
    return this;
  }
  private depth(label: number): number {
    // (labels are numbered in the order they open and close innermost first: each open one's place in the stack is
    // labelAt[label], no search of the stack)
    const i = label >= 0 && label < this.labelAt.length ? this.labelAt[label] : -1;
    if (i < 0) throw new Error('branch to a label that is not open');
    return this.labels.length - 1 - i;
  }
  br(label: number): this { return this.opU(Op.br, this.depth(label)); }
  brIf(label: number): this { return this.opU(Op.brIf, this.depth(label)); }
  /** br_table (Core spec §5.4.1, opcode 0x0E): to labels[i] for the i32 on the stack, `def` when out of range. */
  brTable(labels: readonly number[], def: number): this {
    this.room(6 + 5 * (labels.length + 1));
    this.put(0x0e); this.uleb(labels.length);
    for (const l of labels) this.uleb(this.depth(l));
    this.uleb(this.depth(def));
    return this;
  }

  /** The encoded body (§5.5.13): locals grouped by runs of one type, the code, `end`. */
  encode(): Uint8Array {
    const head = this.head();
    const out = new Uint8Array(head.length + this.len + 1);
    this.writeTo(out, 0, head);
    return out;
  }

  /** The local declarations (§5.5.13: vector of (count, type) for runs of one type). */
  head(): number[] {
    if (this.labels.length !== 0) throw new Error('unclosed block');
    const head: number[] = [0];
    const types = this.localTypes;
    let groups = 0;
    for (let i = 0; i < types.length;) {
      let j = i + 1;
      while (j < types.length && types[j] === types[i]) j++;
      uleb(head, j - i); head.push(types[i]);
      groups++;
      i = j;
    }
    if (groups < 0x80) head[0] = groups;
    else { const g: number[] = []; uleb(g, groups); head.splice(0, 1, ...g); }
    return head;
  }

  /** Bytes of code so far, and a view of them (RINGZERO_WASM_DUMP, ./dump.ts). */
  get length(): number { return this.len; }
  code(): Uint8Array { return this.live().subarray(0, this.len); }

  /** Encoded size given head(): the head, the code, `end`. */
  size(head: number[]): number { return head.length + this.len + 1; }

  /** Write head, code and `end` into `out` at `at`; returns the offset after them. */
  writeTo(out: Uint8Array, at: number, head: number[]): number {
    for (let i = 0; i < head.length; i++) out[at++] = head[i];
    out.set(this.live().subarray(0, this.len), at);
    at += this.len;
    out[at++] = Op.end;
    return at;
  }
}

/**
 * Bodies take their first buffer (and any larger one they grow into) as a slice of a shared arena rather than a
 * `new Uint8Array` each: a typed array over 64 bytes gets its own off-heap backing store, whose allocation (and
 * external-memory accounting) cost more than the emission of a small block. A slice keeps its arena alive; an arena
 * is dropped from here once full.
 */
const BODY_START = 512;
const ARENA_SIZE = 256 * 1024;
let arena = new Uint8Array(ARENA_SIZE);
let arenaUsed = 0;
function arenaSlice(n: number): Uint8Array {
  if (n > ARENA_SIZE >> 2) return new Uint8Array(n);
  if (arenaUsed + n > ARENA_SIZE) { arena = new Uint8Array(ARENA_SIZE); arenaUsed = 0; }
  const s = arena.subarray(arenaUsed, arenaUsed + n);
  arenaUsed += n;
  return s;
}

/**
 * The scratch arena (withScratch): the translator's bodies live only until their module is encoded, so their
 * buffers can be handed out again once that is done. The shared arena above is dropped when full and a fresh one
 * allocated: a Linux boot filled ~110 of them (~28 MiB), each 64 pages that the kernel had to fault in and zero (on
 * this host, a VM, ~0.3 ms of the main thread apiece, measured) and that the caches had never seen. The scratch
 * chunks are kept and reused, so a batch's bodies are written into memory that is already mapped and warm.
 */
const scratchChunks: Uint8Array[] = [];
let scratchChunk = 0;
let scratchUsed = 0;
let scratchDepth = 0;
/** Incremented when the outermost scope ends: a body of an older scope must not be read or grown any more. */
let scratchScope = 0;
function scratchSlice(n: number): Uint8Array {
  if (n > ARENA_SIZE >> 2) return new Uint8Array(n);
  if (scratchUsed + n > ARENA_SIZE) { scratchChunk++; scratchUsed = 0; }
  if (scratchChunk === scratchChunks.length) scratchChunks.push(new Uint8Array(ARENA_SIZE));
  const s = scratchChunks[scratchChunk].subarray(scratchUsed, scratchUsed + n);
  scratchUsed += n;
  return s;
}

/**
 * Run `fn`, inside which the bodies constructed with `scratch` take their buffers from the scratch arena; when the
 * outermost scope ends the arena is rewound (its chunks are kept for the next scope) and those bodies become
 * unusable (their code(), writeTo() and growth throw). The caller must be done with them: encoded into a module.
 */
export function withScratch<T>(fn: () => T): T {
  scratchDepth++;
  try {
    return fn();
  } finally {
    if (--scratchDepth === 0) {
      scratchScope++;
      scratchChunk = 0;
      scratchUsed = 0;
      // (a burst that needed many chunks does not pin them all: keep what an ordinary batch uses)
      if (scratchChunks.length > SCRATCH_KEEP) scratchChunks.length = SCRATCH_KEEP;
    }
  }
}
/** Scratch chunks kept between scopes (2 MiB; the Linux boot's batches averaged ~120 KiB of body buffers). */
const SCRATCH_KEEP = 8;

const F64_SCRATCH = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64_SCRATCH.buffer);

/** The bytes of uleb(v) (v below 2^53). */
function ulebSize(v: number): number {
  let n = 1;
  while (v >= 128) { v = Math.floor(v / 128); n++; }
  return n;
}
/** uleb(v) written into `out` at `at`; returns the offset after it. */
function ulebAt(out: Uint8Array, at: number, v: number): number {
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 0x80;
    out[at++] = b;
  } while (v !== 0);
  return at;
}

/** A growable byte buffer (ModuleBuilder.encode's, reused from module to module). */
class Sink {
  buf = new Uint8Array(1 << 16);
  len = 0;
  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
  byte(b: number): void { this.room(1); this.buf[this.len++] = b; }
  bytes(a: readonly number[]): void { this.room(a.length); for (let i = 0; i < a.length; i++) this.buf[this.len++] = a[i]; }
  /** uleb (v below 2^53: at most 8 bytes). */
  uleb(v: number): void { this.room(8); this.len = ulebAt(this.buf, this.len, v); }
  /** A name (§5.2.4): its UTF-8 length and bytes (names here are ASCII: 'e', 'ld4', 'f17'...). */
  name(s: string): void {
    let ascii = true;
    for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) { ascii = false; break; }
    if (ascii) {
      this.uleb(s.length);
      this.room(s.length);
      for (let i = 0; i < s.length; i++) this.buf[this.len++] = s.charCodeAt(i);
      return;
    }
    const bytes = Buffer.from(s, 'utf8');
    this.uleb(bytes.length);
    this.room(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
  /** Section `id` holding the bytes of `content`, which is emptied. */
  section(id: number, content: Sink): void {
    this.byte(id);
    this.uleb(content.len);
    this.room(content.len);
    this.buf.set(content.buf.subarray(0, content.len), this.len);
    this.len += content.len;
    content.len = 0;
  }
}
const OUT = new Sink(), SEC = new Sink();
const MAGIC = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const TABLE_IMPORT = [0x01, 0x70, 0x00, 0x00];
const MEMORY_IMPORT = [0x02, 0x03, 0x00, 0x80, 0x80, 0x04];

export interface FuncType { params: number[]; results: number[] }

function sameTypes(a: number[], b: number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A module: imported memory and functions, defined functions (exported by name). */
export class ModuleBuilder {
  private readonly types: FuncType[] = [];
  private readonly imports: { module: string; field: string; kind: 'func' | 'memory' | 'table'; type?: number }[] = [];
  private readonly funcs: { type: number; body: Body; exportName?: string; debugName?: string }[] = [];
  private importedFuncs = 0;

  type(params: number[], results: number[]): number {
    const types = this.types;
    for (let i = 0; i < types.length; i++) if (sameTypes(types[i].params, params) && sameTypes(types[i].results, results)) return i;
    types.push({ params, results });
    return types.length - 1;
  }

  importMemory(module: string, field: string): void {
    this.imports.push({ module, field, kind: 'memory' });
  }

  /** Import a table of funcref (limits: at least 0 elements). */
  importTable(module: string, field: string): void {
    this.imports.push({ module, field, kind: 'table' });
  }

  /** Import a function; returns its function index (imports come first in the index space, §2.5.1). */
  importFunc(module: string, field: string, type: number): number {
    if (this.funcs.length !== 0) throw new Error('imports must be declared before functions');
    this.imports.push({ module, field, kind: 'func', type });
    return this.importedFuncs++;
  }

  /**
   * Define a function; `debugName` (optional) goes into the module's name section (encode), which V8 uses for the
   * function in stack traces and in its code-event logs (node --perf-basic-prof's /tmp/perf-PID.map: without it a
   * function is "wasm-function[index]", which says neither which module nor which guest code).
   */
  func(type: number, body: Body, exportName?: string, debugName?: string): number {
    this.funcs.push({ type, body, exportName, debugName });
    return this.importedFuncs + this.funcs.length - 1;
  }

  encode(): Uint8Array<ArrayBuffer> {
    // (the sections are written into two reused byte buffers, OUT and SEC, not arrays of numbers: a boot's ~260
    // modules made ~90 KB of garbage apiece that way, mostly the branch hints; the code section's bodies are written
    // straight into the result, once)
    const out = OUT, sec = SEC;
    out.len = 0; sec.len = 0;
    out.bytes(MAGIC);
    // 1: types
    sec.uleb(this.types.length);
    for (const t of this.types) {
      sec.byte(0x60);
      sec.uleb(t.params.length); sec.bytes(t.params);
      sec.uleb(t.results.length); sec.bytes(t.results);
    }
    out.section(1, sec);
    // 2: imports (memory: limits flag 3, shared with a maximum (threads proposal), at least 0 and at most 65536
    // pages: any GuestMemory's fits; it is shared so that V8 does not count it as external memory, see
    // src/memory/guest-memory.ts addWasmRegion)
    sec.uleb(this.imports.length);
    for (const i of this.imports) {
      sec.name(i.module); sec.name(i.field);
      if (i.kind === 'func') { sec.byte(0x00); sec.uleb(i.type!); }
      else if (i.kind === 'table') sec.bytes(TABLE_IMPORT); // funcref, min 0
      else sec.bytes(MEMORY_IMPORT);
    }
    out.section(2, sec);
    // 3: function declarations
    const funcs = this.funcs;
    sec.uleb(funcs.length);
    for (let i = 0; i < funcs.length; i++) sec.uleb(funcs[i].type);
    out.section(3, sec);
    // 7: exports
    let exported = 0;
    for (let i = 0; i < funcs.length; i++) if (funcs[i].exportName !== undefined) exported++;
    sec.uleb(exported);
    for (let i = 0; i < funcs.length; i++) {
      const e = funcs[i].exportName;
      if (e !== undefined) { sec.name(e); sec.byte(0x00); sec.uleb(this.importedFuncs + i); }
    }
    out.section(7, sec);
    const heads: number[][] = [];
    for (let i = 0; i < funcs.length; i++) heads.push(funcs[i].body.head());
    // 0: "metadata.code.branch_hint" (HINTS), before the code section as the proposal places it: per function with
    // hints, in increasing index order, its hints with their offsets from the start of the body's local declarations
    if (HINTS) {
      let hinted = 0;
      for (let i = 0; i < funcs.length; i++) { const h = funcs[i].body.branchHints(); if (h !== null && h.length > 0) hinted++; }
      if (hinted > 0) {
        sec.name('metadata.code.branch_hint');
        sec.uleb(hinted);
        for (let i = 0; i < funcs.length; i++) {
          const h = funcs[i].body.branchHints();
          if (h === null || h.length === 0) continue;
          sec.uleb(this.importedFuncs + i);
          sec.uleb(h.length);
          const head = heads[i].length;
          for (let j = 0; j < h.length; j++) { const x = h[j]; sec.uleb(head + (x >> 1)); sec.byte(1); sec.byte(x & 1); }
        }
        out.section(0, sec);
      }
    }
    // 10: code (each body written once, straight into the result)
    let size = ulebSize(funcs.length);
    const sizes: number[] = [];
    for (let i = 0; i < funcs.length; i++) { const n = funcs[i].body.size(heads[i]); size += ulebSize(n) + n; sizes.push(n); }
    out.byte(10);
    out.uleb(size);
    const at = out.len;
    out.uleb(funcs.length);
    const result = new Uint8Array(at + size);
    result.set(out.buf.subarray(0, out.len));
    let p = out.len;
    for (let i = 0; i < funcs.length; i++) {
      p = ulebAt(result, p, sizes[i]);
      p = funcs[i].body.writeTo(result, p, heads[i]);
    }
    if (p !== result.length) throw new Error('code section size mismatch');
    return this.withNames(result);
  }

  /**
   * `bytes` with a custom section "name" appended when any function has a debugName (Core spec §7.4.1, the name
   * section: subsection 1, the function names, as a name map of function index -> name in increasing index order).
   */
  private withNames(bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
    // (a loop, no callbacks or pairs: this runs for every module, see translate.ts pick)
    let count = 0;
    for (const f of this.funcs) if (f.debugName !== undefined) count++;
    if (count === 0) return bytes;
    const map: number[] = [];
    uleb(map, count);
    for (let i = 0; i < this.funcs.length; i++) {
      const n = this.funcs[i].debugName;
      if (n !== undefined) { uleb(map, this.importedFuncs + i); name(map, n); }
    }
    const content: number[] = [];
    name(content, 'name');
    content.push(1);
    uleb(content, map.length);
    for (const b of map) content.push(b);
    const head: number[] = [0];
    uleb(head, content.length);
    const out = new Uint8Array(bytes.length + head.length + content.length);
    out.set(bytes);
    out.set(head, bytes.length);
    out.set(content, bytes.length + head.length);
    return out;
  }
}
