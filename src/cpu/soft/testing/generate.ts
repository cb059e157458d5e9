// Random user-mode x86-64 snippets for the differential test of the software CPU against the host CPU.
//
// A case is 1-4 "units" (one instruction, or a short fixed group such as `jcc` over a filler) drawn from one
// instruction family, with random registers, flags, XMM registers, MXCSR and scratch memory. The generator is
// driven by a table of instruction forms (FORMS below) written in the operand notation of the SDM opcode maps
// (vol. 2 appendix A.2: E = ModRM r/m, G = ModRM reg, I = immediate, V/W/U = XMM reg / xmm-or-memory / xmm
// register only, b/w/d/q/v/y/z = sizes), each with the flags it reads, defines and leaves undefined.
//
// Nothing generated may fault on the host (a fault kills the test process), so the generator keeps invariants:
// - every memory access falls inside the scratch area: base/index registers of memory operands are "pinned"
//   to values chosen for that purpose and no instruction in the case writes them;
// - values that must avoid a fault or an architecturally undefined result (divisors and dividends, BSF/BSR
//   sources, bit offsets of BT on memory, shift counts in CL) are pinned too, in registers or in the CONST area,
//   which no instruction writes;
// - RSP is only moved by pushes and pops (tracked, so [rsp+disp] stays on the snippet stack); RFLAGS is only
//   loaded with arithmetic flags and DF (TF would trap; AC would make misaligned accesses fault);
// - MXCSR keeps every SIMD exception masked; 16-byte SSE memory operands are aligned unless the form allows not.
// Flags an instruction leaves undefined are tracked through the case: a later instruction that would read one
// (ADC, Jcc, PUSHF, ...) is not generated, and those still undefined at the end are masked by the comparison.
import { Rng } from './rng.ts';
import {
  CODE_BASE, SCRATCH_BASE, SCRATCH_SIZE, DATA_OFF, DATA_SIZE, CONST_OFF, CONST_SIZE, INITIAL_RSP, MXCSR_MASKS,
  CF, PF, AF, ZF, SF, OF, DF, STATUS_FLAGS, GPR_NAMES, type SnippetState,
} from './layout.ts';

export interface FlagEffect {
  /** Flags read. */
  r: number;
  /** Flags written with a defined value. */
  w: number;
  /** Flags written with an undefined value. */
  u: number;
}
const NO_FLAGS: FlagEffect = { r: 0, w: 0, u: 0 };
const ALL = STATUS_FLAGS;
const LOGIC: FlagEffect = { r: 0, w: ALL & ~AF, u: AF };
const ARITH: FlagEffect = { r: 0, w: ALL, u: 0 };

/** Flags each condition code reads (SDM vol. 1 appendix B table B-1), by the cc nibble. */
const CC_READS = [OF, OF, CF, CF, ZF, ZF, CF | ZF, CF | ZF, SF, SF, PF, PF, SF | OF, SF | OF, ZF | SF | OF, ZF | SF | OF];
const CC_NAMES = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'];

/** One generated unit: machine code plus what the case bookkeeping needs to re-link or shrink it. */
export interface Unit {
  bytes: Uint8Array;
  /** Human-readable form, e.g. "add dword [rbx+rsi*4+0x10], eax". */
  text: string;
  family: string;
  form: string;
  fx: FlagEffect;
  /** A RIP-relative disp32 at `at` for an instruction ending at `end` (unit offsets), or an absolute imm32 holding the unit's end address. */
  /** The memory operand's address and size, for reproducers. */
  mem?: { ea: number; bytes: number };
  fixup?: { kind: 'rip'; at: number; end: number; target: number } | { kind: 'unit-end'; at: number };
}

export interface TestCase {
  seed: number;
  index: number;
  family: string;
  units: Unit[];
  code: Uint8Array;
  state: SnippetState;
  /** Status flags whose final value is architecturally undefined. */
  undefinedFlags: number;
  /** Registers whose initial value was chosen for safety (the shrinker leaves them alone). */
  pinned: number[];
}

// ---------------------------------------------------------------------------------------------------------
// Operand notation

type Access = 'r' | 'w' | 'rw' | 'n';
type Kind = 'E' | 'M' | 'R' | 'G' | 'Z' | 'I' | 'V' | 'W' | 'U' | 'O' | 'AL' | 'rAX' | 'CL';
interface OpSpec {
  kind: Kind;
  /** b w d q v y z (GPR/immediate sizes), x (xmm), or for W/M memory size in bytes via `mbytes`. */
  size: string;
  acc: Access;
  /** Memory size in bytes of W/M operands; 0 = from the operand size. */
  mbytes: number;
  /** 16-byte memory operand that need not be aligned (MOVUPS, MOVDQU...). */
  unaligned: boolean;
}

function parseOps(spec: string, firstAccess: Access): OpSpec[] {
  if (!spec) return [];
  return spec.split(',').map((s, n) => {
    const [body, accStr] = s.split(':');
    const acc = (accStr as Access | undefined) ?? (n === 0 ? firstAccess : 'r');
    if (body === 'AL' || body === 'rAX' || body === 'CL') return { kind: body, size: body === 'rAX' ? 'v' : 'b', acc, mbytes: 0, unaligned: false };
    const kind = body[0] as Kind;
    let size = body.slice(1);
    let unaligned = false;
    if (size.endsWith('u')) { unaligned = true; size = size.slice(0, -1); }
    const mbytes = kind === 'W' || kind === 'M' ? ({ x: 16, q: 8, d: 4, w: 2, b: 1 } as Record<string, number>)[size] ?? 0 : 0;
    return { kind, size, acc, mbytes, unaligned };
  });
}

/** An instruction form of the table. */
interface Form {
  family: string;
  mn: string;
  ops: OpSpec[];
  opcode: number[];
  /** ModRM.reg opcode extension (/digit). */
  ext?: number;
  /** Mandatory SSE prefix (66, F2, F3). */
  pfx?: number;
  /** Operand sizes for v/y operands (default 16/32/64, or 32/64 for y). */
  sizes?: number[];
  /** Default operand size 64 (PUSH/POP): no REX.W needed, 66 gives 16. */
  d64?: boolean;
  lock?: boolean;
  /** The opcode's low nibble is a condition code. */
  cc?: boolean;
  fl?: FlagEffect | ((i: Inst) => FlagEffect);
  /** Implicit full GPRs read and written. */
  imp?: { r?: number[]; w?: number[] };
  /** Value an operand must hold (pinned), by operand index. */
  val?: (c: CaseBuilder, i: Inst, op: number) => bigint | undefined;
  /** Immediate value. */
  imm?: (c: CaseBuilder, i: Inst) => number;
  /** Runs after the size is chosen and before operands: may pin implicit registers. */
  pre?: (c: CaseBuilder, i: Inst) => boolean;
  rsp?: (i: Inst) => number;
  /** Whole custom generator (strings, branches, flag loads). */
  custom?: (c: CaseBuilder) => Unit | null;
  /** Operand-size prefix or REX.W forced (e.g. 16-bit forms). */
  memOnlyLock?: boolean;
}

interface Inst {
  form: Form;
  size: number;
  mem: boolean;
  rex8: boolean;
  cc: number;
  imm: number;
  /** Values of pinned operands, by operand index. */
  vals: (bigint | undefined)[];
  scratch: Record<string, bigint | number>;
}

// ---------------------------------------------------------------------------------------------------------
// Register names

const R8_REX = ['al', 'cl', 'dl', 'bl', 'spl', 'bpl', 'sil', 'dil'];
const R8_LEGACY = ['al', 'cl', 'dl', 'bl', 'ah', 'ch', 'dh', 'bh'];
const R16 = ['ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di'];
function gprName(code: number, size: number, rex: boolean): string {
  if (size === 64) return GPR_NAMES[code];
  if (code >= 8) return `r${code}${size === 32 ? 'd' : size === 16 ? 'w' : 'b'}`;
  if (size === 32) return 'e' + R16[code];
  if (size === 16) return R16[code];
  return rex ? R8_REX[code] : R8_LEGACY[code];
}
const hex = (v: number | bigint) => (v < 0 ? '-0x' + (-BigInt(v)).toString(16) : '0x' + BigInt(v).toString(16));
const SIZE_PTR: Record<number, string> = { 1: 'byte', 2: 'word', 4: 'dword', 8: 'qword', 16: 'xmmword' };

// ---------------------------------------------------------------------------------------------------------
// Interesting values

const EDGE32 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe, 0x12345678];

function gprValue(r: Rng): bigint {
  switch (r.below(8)) {
    case 0: return BigInt(r.below(17));
    case 1: return BigInt.asUintN(64, -BigInt(r.int(1, 16)));
    case 2: return BigInt(r.pick(EDGE32));
    case 3: return (r.u64() & ~0xffffffffn) | BigInt(r.pick(EDGE32));
    case 4: return BigInt(r.pick([0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn, 0x8000000000000001n]));
    case 5: return BigInt(r.u32());
    default: return r.u64();
  }
}

const F32_EDGE = [0, 0x80000000, 0x3f800000, 0xbf800000, 0x3fc00000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7fa00001,
  0x7fc12345, 0x00000001, 0x807fffff, 0x00800000, 0x7f7fffff, 0x4f000000, 0xcf000000, 0x4effffff, 0x5f000000, 0x40490fdb, 0x3eaaaaab];
const F64_EDGE = [0n, 0x8000000000000000n, 0x3ff0000000000000n, 0xbff0000000000000n, 0x7ff0000000000000n, 0xfff0000000000000n,
  0x7ff8000000000000n, 0xfff8000000000000n, 0x7ff4000000000001n, 0x7ff8000000012345n, 0x0000000000000001n, 0x800fffffffffffffn,
  0x0010000000000000n, 0x7fefffffffffffffn, 0x41e0000000000000n, 0xc1e0000000000000n, 0x43e0000000000000n, 0xc3e0000000000000n,
  0x400921fb54442d18n, 0x3fd5555555555555n, 0x41dfffffffc00000n, 0x3ff8000000000000n, 0x4330000000000000n];

/** 16 bytes for an XMM register or a memory operand: random bits, floats, doubles or integer edge values. */
function vectorValue(r: Rng, out: Uint8Array, off: number): void {
  const v = new DataView(out.buffer, out.byteOffset + off, 16);
  switch (r.below(6)) {
    case 0: r.fill(out.subarray(off, off + 16)); break;
    case 1: case 2:
      for (let i = 0; i < 4; i++) v.setUint32(i * 4, r.chance(0.6) ? r.pick(F32_EDGE) : floatBits32(r), true);
      break;
    case 3: case 4:
      for (let i = 0; i < 2; i++) v.setBigUint64(i * 8, r.chance(0.6) ? r.pick(F64_EDGE) : floatBits64(r), true);
      break;
    default:
      for (let i = 0; i < 4; i++) v.setUint32(i * 4, r.chance(0.5) ? r.pick(EDGE32) : r.u32() & r.pick([0xff, 0xffff, 0x80ff80ff, 0xffffffff]), true);
  }
}
const f32 = new Float32Array(1);
const f64 = new Float64Array(1);
function floatBits32(r: Rng): number {
  f32[0] = (r.below(2001) - 1000) / r.pick([1, 3, 7, 1024, 0.001]);
  return new Uint32Array(f32.buffer)[0];
}
function floatBits64(r: Rng): bigint {
  f64[0] = (r.below(2001) - 1000) / r.pick([1, 3, 7, 1024, 0.001, 1e-300]);
  return new BigUint64Array(f64.buffer)[0];
}

// ---------------------------------------------------------------------------------------------------------
// Case construction

type PinKind = 'addr' | 'val' | 'str' | 'count';
interface Pin { kind: PinKind; owner: number }

interface MemOperand {
  mod: number;
  rm: number;
  sib: number;
  disp: number;
  dispSize: 0 | 1 | 4;
  rip: boolean;
  rexX: boolean;
  rexB: boolean;
  addr32: boolean;
  ea: number;
  text: string;
  /** moffs form: the 8-byte absolute address. */
}

/** Builds one case: the evolving register/flag bookkeeping and the initial state. */
export class CaseBuilder {
  readonly gpr: bigint[] = [];
  readonly pins: (Pin | undefined)[] = new Array(16).fill(undefined);
  readonly dirty: boolean[] = new Array(16).fill(false);
  undef = 0;
  rsp = Number(INITIAL_RSP);
  constNext = SCRATCH_BASE + CONST_OFF;
  unitIndex = 0;
  codeLength = 0;
  /** Implicit writes of the instruction being built: never pinned by its own operands. */
  reserved = new Set<number>();
  /** Registers written by operands of the instruction being built. */
  writtenNow = new Set<number>();
  readonly mem = new Uint8Array(SCRATCH_SIZE);
  readonly xmm = new Uint8Array(256);
  rflags: bigint;
  mxcsr: number;

  /** Random rounding control, FTZ and DAZ in MXCSR (else round to nearest, no FTZ/DAZ; sticky flags stay random). */
  constructor(readonly rng: Rng, readonly randomRounding = true) {
    for (let i = 0; i < 16; i++) this.gpr.push(i === 4 ? INITIAL_RSP : gprValue(rng));
    this.rflags = BigInt((rng.u32() & STATUS_FLAGS) | (rng.chance(0.25) ? DF : 0));
    // Rounding mode (bits 13-14), FTZ (15), DAZ (6) and sticky exception flags (0-5) random, exceptions masked.
    this.mxcsr = MXCSR_MASKS | this.roundingBits() | (rng.chance(0.3) ? rng.u32() & 0x3f : 0);
    rng.fill(this.mem);
    const mv = new DataView(this.mem.buffer);
    for (let off = 0; off < SCRATCH_SIZE; off += 16) if (rng.chance(0.5)) vectorValue(rng, this.mem, off);
    for (let n = 0; n < 32; n++) mv.setBigUint64(rng.below(SCRATCH_SIZE / 8) * 8, gprValue(rng), true);
    for (let x = 0; x < 16; x++) vectorValue(rng, this.xmm, x * 16);
  }

  /** MXCSR rounding control (bits 13-14), FTZ (15) and DAZ (6): SDM vol. 1 §10.2.3. */
  roundingBits(): number {
    const r = this.rng;
    if (!this.randomRounding) return 0;
    return (r.below(4) << 13) | (r.chance(0.2) ? 0x8000 : 0) | (r.chance(0.2) ? 0x40 : 0);
  }

  snapshot(): () => void {
    const gpr = [...this.gpr], pins = [...this.pins], dirty = [...this.dirty];
    const { undef, rsp, constNext } = this;
    return () => {
      for (let i = 0; i < 16; i++) { this.gpr[i] = gpr[i]; this.pins[i] = pins[i]; this.dirty[i] = dirty[i]; }
      this.undef = undef; this.rsp = rsp; this.constNext = constNext;
    };
  }

  /** May `reg` get a chosen initial value? (Not RSP, not written earlier, not pinned already, not written by this instruction.) */
  canPin(reg: number, self = false): boolean {
    return reg !== 4 && !this.dirty[reg] && this.pins[reg] === undefined && (self || !this.reserved.has(reg)) && !this.writtenNow.has(reg);
  }

  pin(reg: number, kind: PinKind, value: bigint, self = false): boolean {
    if (!this.canPin(reg, self)) return false;
    this.pins[reg] = { kind, owner: this.unitIndex };
    this.gpr[reg] = BigInt.asUintN(64, value);
    return true;
  }

  /** Pin the sub-register (`size` bits at `shift`) of `reg` to `value`, keeping random other bits. */
  pinPart(reg: number, size: number, shift: number, value: bigint): boolean {
    const mask = ((1n << BigInt(size)) - 1n) << BigInt(shift);
    return this.pin(reg, 'val', (this.gpr[reg] & ~mask) | ((BigInt.asUintN(size, value) << BigInt(shift)) & mask));
  }

  canWrite(reg: number): boolean {
    if (reg === 4) return false;
    const p = this.pins[reg];
    return p === undefined || (p.owner === this.unitIndex && p.kind === 'val');
  }

  /** A CONST-area slot holding `value` (little endian, `bytes` long). */
  constSlot(value: bigint, bytes: number, align: number): number | undefined {
    const a = Math.max(align, 1);
    const ea = Math.ceil(this.constNext / a) * a;
    if (ea + bytes > SCRATCH_BASE + CONST_OFF + CONST_SIZE) return undefined;
    this.constNext = ea + bytes;
    for (let i = 0; i < bytes; i++) this.mem[ea - SCRATCH_BASE + i] = Number((BigInt.asUintN(64, value) >> BigInt(8 * i)) & 0xffn);
    return ea;
  }

  /** Encode a memory operand that accesses `bytes` bytes: at `fixedEa`, or somewhere random in the data area or near RSP. */
  memOperand(bytes: number, align: number, fixedEa?: number): MemOperand | undefined {
    const r = this.rng;
    let ea: number;
    if (fixedEa !== undefined) ea = fixedEa;
    else if (r.chance(0.15)) ea = this.rsp + r.int(-0x80, 0x80);
    else ea = SCRATCH_BASE + DATA_OFF + 0x100 + r.below(DATA_SIZE - 0x200);
    if (fixedEa === undefined) {
      const a = align > 1 ? align : r.chance(0.5) ? Math.min(bytes, 8) : 1;
      ea -= ea % a;
    }
    const mode = r.pick(['abs', 'rip', 'base', 'base', 'bi', 'bi', 'index', 'rsp']);
    const addr32 = (mode === 'base' || mode === 'bi' || mode === 'index') && r.chance(0.15);
    const m = this.encodeMem(ea, mode, addr32);
    return m ?? this.encodeMem(ea, 'abs', false);
  }

  private encodeMem(ea: number, mode: string, addr32: boolean): MemOperand | undefined {
    const r = this.rng;
    const m: MemOperand = { mod: 0, rm: 4, sib: 0, disp: 0, dispSize: 4, rip: false, rexX: false, rexB: false, addr32, ea, text: '' };
    const wrap = (v: bigint) => (addr32 ? BigInt.asIntN(32, v) : BigInt.asIntN(64, v));
    const fitsDisp = (d: bigint) => d >= -0x8000_0000n && d <= 0x7fff_ffffn;
    if (mode === 'abs') {
      m.sib = (4 << 3) | 5;
      m.disp = ea;
      m.text = `[${hex(ea)}]`;
      return m;
    }
    if (mode === 'rip') {
      m.rm = 5;
      m.rip = true;
      m.disp = ea; // patched at link time
      m.text = `[rip->${hex(ea)}]`;
      return m;
    }
    // Index register (none for 'base' and 'rsp').
    let index = -1;
    let scale = 0;
    let indexValue = 0n;
    if (mode === 'bi' || mode === 'index') {
      scale = r.below(4);
      const existing = [...Array(16).keys()].filter((i) => i !== 4 && this.pins[i]?.kind === 'addr' && this.gpr[i] < 0x400n);
      if (existing.length && r.chance(0.4)) index = r.pick(existing);
      else {
        const free = [...Array(16).keys()].filter((i) => this.canPin(i));
        if (!free.length) return undefined;
        index = r.pick(free);
        const small = BigInt(r.int(-64, 64));
        if (!this.pin(index, 'addr', addr32 ? (r.u64() & ~0xffffffffn) | BigInt.asUintN(32, small) : small)) return undefined;
      }
      indexValue = addr32 ? BigInt.asIntN(32, this.gpr[index]) : BigInt.asIntN(64, this.gpr[index]);
    }
    const scaled = indexValue << BigInt(scale);
    // Base register.
    let base = -1;
    let disp = 0n;
    if (mode === 'rsp') {
      base = 4;
      disp = BigInt(ea - this.rsp);
    } else if (mode !== 'index') {
      const candidates = [...Array(16).keys()].filter((i) => i !== 4 && this.pins[i]?.kind === 'addr' && i !== index);
      const reuse = candidates.filter((i) => fitsDisp(wrap(BigInt(ea) - this.gpr[i] - scaled)));
      if (reuse.length && r.chance(0.5)) {
        base = r.pick(reuse);
        disp = wrap(BigInt(ea) - this.gpr[base] - scaled);
      } else {
        const free = [...Array(16).keys()].filter((i) => this.canPin(i) && i !== index);
        if (!free.length) return undefined;
        base = r.pick(free);
        disp = BigInt(r.pick([0, 0, r.int(-128, 127), r.int(-0x8000_0000, 0x7fff_ffff), r.int(-5000, 5000)]));
        const value = BigInt(ea) - disp - scaled;
        if (!this.pin(base, 'addr', addr32 ? (r.u64() & ~0xffffffffn) | BigInt.asUintN(32, value) : value)) return undefined;
      }
    } else {
      disp = BigInt(ea) - scaled;
    }
    if (!fitsDisp(disp)) return undefined;
    m.disp = Number(disp);
    if (base === -1) {
      m.mod = 0;
      m.sib = (scale << 6) | ((index & 7) << 3) | 5;
      m.rexX = index >= 8;
      m.dispSize = 4;
    } else {
      m.dispSize = disp === 0n && (base & 7) !== 5 ? 0 : disp >= -128n && disp <= 127n ? 1 : 4;
      m.mod = m.dispSize === 0 ? 0 : m.dispSize === 1 ? 1 : 2;
      m.rexB = base >= 8;
      if (index === -1 && (base & 7) !== 4) m.rm = base & 7;
      else {
        m.rm = 4;
        m.sib = (scale << 6) | ((index === -1 ? 4 : index & 7) << 3) | (base & 7);
        m.rexX = index >= 8;
      }
    }
    const a = addr32 ? (n: number) => (n >= 8 ? `r${n}d` : 'e' + GPR_NAMES[n].slice(1)) : (n: number) => GPR_NAMES[n];
    const parts: string[] = [];
    if (base !== -1) parts.push(a(base));
    if (index !== -1) parts.push(`${a(index)}*${1 << scale}`);
    let text = parts.join('+');
    if (m.disp !== 0 || !parts.length) text += (m.disp < 0 ? '-' : '+') + hex(Math.abs(m.disp));
    m.text = `[${text}]`;
    return m;
  }

  /**
   * A random ModRM/SIB address for LEA, which computes the address without accessing memory: any registers,
   * scale, displacement and address size, including RIP-relative and the no-base SIB forms.
   */
  leaOperand(): MemOperand {
    const r = this.rng;
    const mod = r.below(3);
    const rm = r.below(8);
    const sib = r.below(256);
    const dispSize: 0 | 1 | 4 = mod === 1 ? 1 : mod === 2 || (mod === 0 && (rm === 5 || (rm === 4 && (sib & 7) === 5))) ? 4 : 0;
    const disp = dispSize === 1 ? r.int(-128, 127) : dispSize === 4 ? r.u32() | 0 : 0;
    return { mod, rm, sib, disp, dispSize, rip: false, rexX: r.chance(0.3), rexB: r.chance(0.3), addr32: r.chance(0.2), ea: 0, text: `[modrm ${mod}/${rm}${rm === 4 ? ` sib ${hex(sib)}` : ''} disp ${hex(disp)}]` };
  }

  /** Pick a general register for an operand: returns [code, full register, high-byte]. */
  pickGpr(size: number, rex8: boolean, acc: Access, value?: bigint, legacyBytes = false): [number, number, boolean] | undefined {
    const r = this.rng;
    const codes = (size === 8 && !rex8) || legacyBytes ? 8 : 16;
    const order = [...Array(codes).keys()];
    for (let k = order.length - 1; k > 0; k--) { const j = r.below(k + 1); [order[k], order[j]] = [order[j], order[k]]; }
    for (const code of order) {
      const high = size === 8 && !rex8 && code >= 4;
      const reg = high ? code - 4 : code;
      if ((acc === 'w' || acc === 'rw') && !this.canWrite(reg)) continue;
      if (value !== undefined) {
        if (!this.canPin(reg)) continue;
        if (!this.pinPart(reg, size === 8 ? 8 : size, high ? 8 : 0, value)) continue;
      }
      return [code, reg, high];
    }
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Generic encoder for table forms

function defaultImm(r: Rng, bytes: number): bigint {
  const v = r.chance(0.3) ? BigInt(r.pick([0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff])) : r.u64();
  return BigInt.asUintN(bytes * 8, v);
}

function sizesOf(f: Form): number[] {
  if (f.sizes) return f.sizes;
  if (f.ops.some((o) => o.size === 'v' || o.size === 'z')) return f.d64 ? [64, 16] : [16, 32, 64];
  if (f.ops.some((o) => o.size === 'y')) return [32, 64];
  if (f.ops.some((o) => o.size === 'b')) return [8];
  if (f.ops.some((o) => o.size === 'w')) return [16];
  if (f.ops.some((o) => o.size === 'd')) return [32];
  if (f.ops.some((o) => o.size === 'q')) return [64];
  return [0];
}

function gprBits(o: OpSpec, size: number): number {
  switch (o.size) {
    case 'b': return 8;
    case 'w': return 16;
    case 'd': return 32;
    case 'q': return 64;
    default: return size;
  }
}

function buildForm(c: CaseBuilder, f: Form): Unit | null {
  const r = c.rng;
  const i: Inst = { form: f, size: r.pick(sizesOf(f)), mem: false, rex8: false, cc: f.cc ? r.below(16) : -1, imm: 0, vals: [], scratch: {} };
  const has8 = f.ops.some((o) => o.size === 'b' && o.kind !== 'I' && o.kind !== 'AL' && o.kind !== 'CL');
  i.rex8 = has8 && r.chance(0.4);
  c.reserved = new Set(f.imp?.w ?? []);
  c.writtenNow = new Set();
  if (f.pre && !f.pre(c, i)) return null;
  const rmIndex = f.ops.findIndex((o) => 'EMRWU'.includes(o.kind));
  const rmSpec = rmIndex >= 0 ? f.ops[rmIndex] : undefined;
  if (rmSpec) i.mem = rmSpec.kind === 'M' || (rmSpec.kind !== 'R' && rmSpec.kind !== 'U' && r.chance(0.45));
  const lock = !!f.lock && i.mem && r.chance(0.35);
  let rexW = false, rexR = false, rexX = false, rexB = false;
  const sized = !!f.sizes || !!f.d64 || f.ops.some((o) => (o.size === 'v' || o.size === 'y' || o.size === 'z') && o.kind !== 'V');
  if (i.size === 64 && !f.d64 && sized) rexW = true;
  const opsize16 = i.size === 16 && sized;
  // AH..BH exist only without a REX prefix: REX.W forces the REX meaning of byte registers.
  if (has8 && rexW) i.rex8 = true;
  let modrmReg = f.ext ?? 0;
  let modrm = -1;
  let mem: MemOperand | undefined;
  const opcode = [...f.opcode];
  if (f.cc) opcode[opcode.length - 1] += i.cc;
  const texts: string[] = new Array(f.ops.length).fill('');
  const writes: number[] = [];
  let imm: { bytes: number; value: bigint } | undefined;
  let moffs: number | undefined;
  // Memory-capable operand first: its base/index pins must not collide with registers the instruction writes.
  const order = [...f.ops.keys()].sort((a, b) => (a === rmIndex ? -1 : b === rmIndex ? 1 : 0));
  for (const n of order) {
    const o = f.ops[n];
    const value = f.val?.(c, i, n);
    i.vals[n] = value;
    const bits = gprBits(o, i.size);
    switch (o.kind) {
      case 'E': case 'M': case 'R': case 'W': case 'U': {
        const xmmOp = o.kind === 'W' || o.kind === 'U';
        if (i.mem) {
          const bytes = o.mbytes || bits / 8;
          const align = xmmOp && bytes === 16 && !o.unaligned ? 16 : 1;
          let ea: number | undefined;
          if (value !== undefined) {
            ea = c.constSlot(value, bytes, align > 1 ? align : r.chance(0.5) ? Math.min(bytes, 8) : 1);
            if (ea === undefined) return null;
          }
          mem = f.family === 'lea' ? c.leaOperand() : c.memOperand(bytes, align, ea);
          if (!mem) return null;
          if (mem.rip && f.family === 'lea') { /* lea of a RIP-relative address: fine */ }
          rexX = mem.rexX;
          rexB = mem.rexB;
          if (has8 && (rexX || rexB)) i.rex8 = true;
          modrm = (mem.mod << 6) | (modrmReg << 3) | mem.rm;
          texts[n] = `${o.kind === 'M' && f.family === 'lea' ? '' : SIZE_PTR[bytes] + ' '}${mem.text}`;
        } else if (xmmOp) {
          const x = r.below(16);
          rexB = x >= 8;
          modrm = (3 << 6) | (modrmReg << 3) | (x & 7);
          texts[n] = `xmm${x}`;
        } else {
          const g = c.pickGpr(bits, i.rex8, o.acc, value, has8 && !i.rex8);
          if (!g) return null;
          const [code, reg] = g;
          if (o.acc === 'w' || o.acc === 'rw') { writes.push(reg); c.writtenNow.add(reg); }
          rexB = code >= 8;
          modrm = (3 << 6) | (modrmReg << 3) | (code & 7);
          texts[n] = gprName(code, bits, i.rex8);
        }
        break;
      }
      case 'G': case 'V': {
        let code: number;
        if (o.kind === 'V') {
          code = r.below(16);
          texts[n] = `xmm${code}`;
        } else {
          const g = c.pickGpr(bits, i.rex8, o.acc, value, has8 && !i.rex8);
          if (!g) return null;
          code = g[0];
          if (o.acc === 'w' || o.acc === 'rw') { writes.push(g[1]); c.writtenNow.add(g[1]); }
          texts[n] = gprName(code, bits, i.rex8);
        }
        rexR = code >= 8;
        modrmReg = code & 7;
        if (modrm >= 0) modrm = (modrm & ~0x38) | (modrmReg << 3);
        break;
      }
      case 'Z': {
        const g = c.pickGpr(bits, i.rex8, o.acc, value, has8 && !i.rex8);
        if (!g) return null;
        if (o.acc === 'w' || o.acc === 'rw') { writes.push(g[1]); c.writtenNow.add(g[1]); }
        rexB = g[0] >= 8;
        opcode[opcode.length - 1] += g[0] & 7;
        texts[n] = gprName(g[0], bits, i.rex8);
        break;
      }
      case 'AL': case 'rAX': case 'CL': {
        const reg = o.kind === 'CL' ? 1 : 0;
        if (value !== undefined && !c.pinPart(reg, 8, 0, value)) return null;
        if (o.acc === 'w' || o.acc === 'rw') {
          if (!c.canWrite(reg)) return null;
          writes.push(reg);
        }
        texts[n] = o.kind === 'CL' ? 'cl' : gprName(0, o.kind === 'AL' ? 8 : i.size, false);
        break;
      }
      case 'O': {
        const bytes = bits / 8;
        moffs = SCRATCH_BASE + DATA_OFF + r.below(DATA_SIZE - 8);
        texts[n] = `${SIZE_PTR[bytes]} [moffs ${hex(moffs)}]`;
        break;
      }
      case 'I': {
        const bytes = o.size === 'b' ? 1 : o.size === 'w' ? 2 : o.size === 'd' ? 4 : o.size === 'z' ? (i.size === 16 ? 2 : 4) : i.size / 8;
        const v = f.imm ? BigInt.asUintN(bytes * 8, BigInt(f.imm(c, i))) : defaultImm(r, bytes);
        i.imm = Number(BigInt.asIntN(Math.min(bytes * 8, 53), v));
        imm = { bytes, value: v };
        texts[n] = hex(v);
        break;
      }
    }
  }
  if (rmSpec && modrm < 0) return null;
  if (modrm < 0 && f.ext !== undefined) modrm = (3 << 6) | (f.ext << 3);
  // Implicit register writes may only touch unpinned registers (or ones this instruction pinned for itself).
  for (const w of f.imp?.w ?? []) {
    if (!c.canWrite(w)) return null;
    writes.push(w);
  }
  const fx = typeof f.fl === 'function' ? f.fl(i) : f.fl ?? NO_FLAGS;
  const reads = fx.r | (i.cc >= 0 ? CC_READS[i.cc] : 0);
  if (reads & c.undef) return null;
  // Encode: legacy prefixes, the mandatory prefix, REX, opcode, ModRM, SIB, displacement, immediate.
  const out: number[] = [];
  if (lock) out.push(0xf0);
  if (mem?.addr32) out.push(0x67);
  if (opsize16) out.push(0x66);
  if (f.pfx) out.push(f.pfx);
  const rex = (rexW ? 8 : 0) | (rexR ? 4 : 0) | (rexX ? 2 : 0) | (rexB ? 1 : 0);
  if (rex || i.rex8) out.push(0x40 | rex);
  out.push(...opcode);
  let fixup: Unit['fixup'];
  if (modrm >= 0) {
    out.push(modrm);
    if (mem) {
      if (mem.rm === 4 && mem.mod !== 3) out.push(mem.sib);
      if (mem.rip) fixup = { kind: 'rip', at: out.length, end: 0, target: mem.ea };
      if (mem.dispSize === 1) out.push(mem.disp & 0xff);
      else if (mem.dispSize === 4) for (let k = 0; k < 4; k++) out.push((mem.disp >>> (8 * k)) & 0xff);
    }
  }
  if (moffs !== undefined) for (let k = 0; k < 8; k++) out.push(k < 4 ? (moffs >>> (8 * k)) & 0xff : 0);
  if (imm) for (let k = 0; k < imm.bytes; k++) out.push(Number((imm.value >> BigInt(8 * k)) & 0xffn));
  if (fixup?.kind === 'rip') fixup.end = out.length;
  for (const w of writes) c.dirty[w] = true;
  c.undef = (c.undef & ~(fx.w | fx.u)) | fx.u;
  if (f.rsp) c.rsp += f.rsp(i);
  // "cbw/cwde/cdqe": the name for 16/32/64-bit operands.
  const sizedName = f.mn.includes('/') ? f.mn.split('/')[[16, 32, 64].indexOf(i.size)] : f.mn;
  const mn = (lock ? 'lock ' : '') + (f.cc ? sizedName.replace('cc', CC_NAMES[i.cc]) : sizedName);
  const memInfo = mem && f.family !== 'lea' ? { ea: mem.ea, bytes: rmSpec?.mbytes || gprBits(rmSpec!, i.size) / 8 } : moffs !== undefined ? { ea: moffs, bytes: i.size / 8 } : undefined;
  return { mem: memInfo, fixup, bytes: Uint8Array.from(out), text: `${mn} ${texts.filter((t) => t).join(', ')}`.trim(), family: f.family, form: formName(f), fx: { r: reads, w: fx.w, u: fx.u } };
}

function formName(f: Form): string {
  const ops = f.ops.map((o) => o.kind + (o.kind.length === 1 ? o.size : '') + (o.unaligned ? 'u' : '')).join(',');
  return `${f.mn} ${ops}`.trim() + ` [${[f.pfx, ...f.opcode].filter((b) => b !== undefined).map((b) => b!.toString(16).padStart(2, '0')).join(' ')}${f.ext !== undefined ? ' /' + f.ext : ''}]`;
}

// ---------------------------------------------------------------------------------------------------------
// The table of forms

const FORMS: Form[] = [];
type FormOpts = Partial<Omit<Form, 'family' | 'mn' | 'ops' | 'opcode'>> & { dst?: Access };
function F(family: string, mn: string, ops: string, opcode: number[], o: FormOpts = {}): void {
  const { dst, ...rest } = o;
  FORMS.push({ family, mn, ops: parseOps(ops, dst ?? 'rw'), opcode, ...rest });
}
function C(family: string, mn: string, custom: (c: CaseBuilder) => Unit | null): void {
  FORMS.push({ family, mn, ops: [], opcode: [], custom });
}

/** Masked shift/rotate count (SDM vol. 2 SAL/SAR/SHL/SHR: 5 bits, 6 with REX.W). */
const countOf = (i: Inst, n: number) => Number((i.form.ops[n]?.kind === 'CL' ? i.vals[n]! : i.form.ops[n]?.kind === 'I' ? BigInt(i.imm) : 1n) & (i.size === 64 ? 63n : 31n));
const countVal = (c: CaseBuilder, i: Inst): number => {
  const r = c.rng;
  const size = i.size || 8;
  return r.pick([0, 1, 1, 2, r.below(size), size - 1, size, size + 1, r.below(256), 31, 32, 33, 63, 64]);
};

// ALU group: 00-3F and 80/81/83 (SDM vol. 2 ADD..CMP; AF undefined after the logical ops, OF=CF=0).
['add', 'or', 'adc', 'sbb', 'and', 'sub', 'xor', 'cmp'].forEach((mn, n) => {
  const logic = mn === 'or' || mn === 'and' || mn === 'xor';
  const fl: FlagEffect = logic ? LOGIC : { r: mn === 'adc' || mn === 'sbb' ? CF : 0, w: ALL, u: 0 };
  const dst: Access = mn === 'cmp' ? 'r' : 'rw';
  const lock = mn !== 'cmp';
  F('alu', mn, 'Eb,Gb', [n * 8], { fl, dst, lock });
  F('alu', mn, 'Ev,Gv', [n * 8 + 1], { fl, dst, lock });
  F('alu', mn, 'Gb,Eb', [n * 8 + 2], { fl, dst });
  F('alu', mn, 'Gv,Ev', [n * 8 + 3], { fl, dst });
  F('alu', mn, 'AL,Ib', [n * 8 + 4], { fl, dst });
  F('alu', mn, 'rAX,Iz', [n * 8 + 5], { fl, dst });
  F('alu', mn, 'Eb,Ib', [0x80], { ext: n, fl, dst, lock });
  F('alu', mn, 'Ev,Iz', [0x81], { ext: n, fl, dst, lock });
  F('alu', mn, 'Ev,Ib', [0x83], { ext: n, fl, dst, lock });
});

// INC/DEC (CF unchanged), NEG, NOT (SDM vol. 2).
const INCDEC: FlagEffect = { r: 0, w: ALL & ~CF, u: 0 };
F('unary', 'inc', 'Eb', [0xfe], { ext: 0, fl: INCDEC, lock: true });
F('unary', 'inc', 'Ev', [0xff], { ext: 0, fl: INCDEC, lock: true });
F('unary', 'dec', 'Eb', [0xfe], { ext: 1, fl: INCDEC, lock: true });
F('unary', 'dec', 'Ev', [0xff], { ext: 1, fl: INCDEC, lock: true });
F('unary', 'not', 'Eb', [0xf6], { ext: 2, lock: true });
F('unary', 'not', 'Ev', [0xf7], { ext: 2, lock: true });
F('unary', 'neg', 'Eb', [0xf6], { ext: 3, fl: ARITH, lock: true });
F('unary', 'neg', 'Ev', [0xf7], { ext: 3, fl: ARITH, lock: true });

F('test', 'test', 'Eb,Gb', [0x84], { dst: 'r', fl: LOGIC });
F('test', 'test', 'Ev,Gv', [0x85], { dst: 'r', fl: LOGIC });
F('test', 'test', 'AL,Ib', [0xa8], { dst: 'r', fl: LOGIC });
F('test', 'test', 'rAX,Iz', [0xa9], { dst: 'r', fl: LOGIC });
F('test', 'test', 'Eb,Ib', [0xf6], { ext: 0, dst: 'r', fl: LOGIC });
F('test', 'test', 'Ev,Iz', [0xf7], { ext: 0, dst: 'r', fl: LOGIC });

// Shifts (SDM vol. 2 SAL/SAR/SHL/SHR): count 0 leaves the flags alone; OF is defined for count 1 only; AF is
// undefined; CF is undefined when the count is at least the operand size.
function shiftFlags(countOp: number) {
  return (i: Inst): FlagEffect => {
    const n = countOf(i, countOp);
    if (n === 0) return NO_FLAGS;
    const u = AF | (n > 1 ? OF : 0) | (n >= i.size ? CF : 0);
    return { r: 0, w: (CF | PF | ZF | SF | OF) & ~u, u };
  };
}
// Rotates (SDM vol. 2 RCL/RCR/ROL/ROR): only CF and OF change, OF defined for a masked count of 1; RCL/RCR read CF.
function rotateFlags(countOp: number, throughCarry: boolean) {
  return (i: Inst): FlagEffect => {
    const n = countOf(i, countOp);
    if (n === 0) return { r: 0, w: 0, u: 0 };
    return { r: throughCarry ? CF : 0, w: CF | (n === 1 ? OF : 0), u: n === 1 ? 0 : OF };
  };
}
const clCount = (c: CaseBuilder, i: Inst, op: number) => (i.form.ops[op]?.kind === 'CL' ? BigInt(countVal(c, i)) : undefined);
for (const [ext, mn] of [[0, 'rol'], [1, 'ror'], [2, 'rcl'], [3, 'rcr'], [4, 'shl'], [5, 'shr'], [7, 'sar']] as const) {
  const family = ext < 4 ? 'rotate' : 'shift';
  const fl = (op: number) => (ext < 4 ? rotateFlags(op, ext === 2 || ext === 3) : shiftFlags(op));
  F(family, mn, 'Eb,Ib', [0xc0], { ext, fl: fl(1), imm: countVal });
  F(family, mn, 'Ev,Ib', [0xc1], { ext, fl: fl(1), imm: countVal });
  F(family, mn, 'Eb', [0xd0], { ext, fl: fl(1) });
  F(family, mn, 'Ev', [0xd1], { ext, fl: fl(1) });
  F(family, mn, 'Eb,CL', [0xd2], { ext, fl: fl(1), val: clCount });
  F(family, mn, 'Ev,CL', [0xd3], { ext, fl: fl(1), val: clCount });
}

// SHLD/SHRD (SDM vol. 2): a count above the operand size gives undefined results, so 16-bit counts stay <= 15.
const shiftdCount = (c: CaseBuilder, i: Inst) => (i.size === 16 ? c.rng.pick([0, 1, 2, c.rng.below(16), 15]) : countVal(c, i));
const shiftdFlags = (i: Inst): FlagEffect => {
  const n = countOf(i, 2);
  if (n === 0) return NO_FLAGS;
  const u = AF | (n > 1 ? OF : 0);
  return { r: 0, w: (CF | PF | ZF | SF | OF) & ~u, u };
};
for (const [mn, op] of [['shld', 0xa4], ['shrd', 0xac]] as const) {
  F('shiftd', mn, 'Ev,Gv,Ib', [0x0f, op], { fl: shiftdFlags, imm: shiftdCount });
  F('shiftd', mn, 'Ev,Gv,CL', [0x0f, op + 1], { fl: shiftdFlags, val: (c, i, n) => (n === 2 ? BigInt(shiftdCount(c, i)) : undefined) });
}

// MUL/IMUL: CF and OF defined, SF ZF AF PF undefined (SDM vol. 2 MUL, IMUL).
const MULF: FlagEffect = { r: 0, w: CF | OF, u: SF | ZF | AF | PF };
F('mul', 'mul', 'Eb', [0xf6], { ext: 4, dst: 'r', fl: MULF, imp: { r: [0], w: [0] } });
F('mul', 'mul', 'Ev', [0xf7], { ext: 4, dst: 'r', fl: MULF, imp: { r: [0], w: [0, 2] } });
F('mul', 'imul', 'Eb', [0xf6], { ext: 5, dst: 'r', fl: MULF, imp: { r: [0], w: [0] } });
F('mul', 'imul', 'Ev', [0xf7], { ext: 5, dst: 'r', fl: MULF, imp: { r: [0], w: [0, 2] } });
F('mul', 'imul', 'Gv,Ev', [0x0f, 0xaf], { fl: MULF });
F('mul', 'imul', 'Gv,Ev,Iz', [0x69], { dst: 'w', fl: MULF });
F('mul', 'imul', 'Gv,Ev,Ib', [0x6b], { dst: 'w', fl: MULF });

// DIV/IDIV: the dividend and divisor are pinned so the quotient fits (no #DE); all six flags undefined.
function divPre(signed: boolean) {
  return (c: CaseBuilder, i: Inst): boolean => {
    const r = c.rng;
    const n = BigInt(i.size);
    const wrap = (v: bigint) => (signed ? BigInt.asIntN(Number(n), v) : BigInt.asUintN(Number(n), v));
    let d = 0n;
    while (d === 0n) d = wrap(r.chance(0.3) ? BigInt(r.int(-5, 5)) : r.chance(0.5) ? BigInt(r.u32()) >> BigInt(r.below(32)) : r.u64());
    const q = wrap(r.chance(0.3) ? BigInt(r.int(-3, 3)) : r.u64() >> BigInt(r.below(64)));
    const absD = d < 0n ? -d : d;
    const rem = absD === 1n ? 0n : BigInt.asUintN(64, r.u64()) % absD;
    // Truncating division: the remainder takes the dividend's sign (SDM vol. 2 IDIV).
    const qd = q * d;
    const dividend = !signed || rem === 0n ? qd + rem : qd > 0n ? qd + rem : qd < 0n ? qd - rem : r.chance(0.5) ? rem : -rem;
    i.scratch.divisor = d;
    const dv = BigInt.asUintN(Number(2n * n), dividend);
    if (i.size === 8) return c.pin(0, 'val', (c.gpr[0] & ~0xffffn) | dv, true);
    const lo = BigInt.asUintN(Number(n), dv), hi = dv >> n;
    const mask = (1n << n) - 1n;
    return c.pin(0, 'val', (c.gpr[0] & ~mask) | lo, true) && c.pin(2, 'val', (c.gpr[2] & ~mask) | hi, true);
  };
}
const DIVF: FlagEffect = { r: 0, w: 0, u: ALL };
const divisor = (_c: CaseBuilder, i: Inst, op: number) => (op === 0 ? i.scratch.divisor as bigint : undefined);
F('div', 'div', 'Eb', [0xf6], { ext: 6, dst: 'r', fl: DIVF, imp: { r: [0], w: [0] }, pre: divPre(false), val: divisor });
F('div', 'div', 'Ev', [0xf7], { ext: 6, dst: 'r', fl: DIVF, imp: { r: [0, 2], w: [0, 2] }, pre: divPre(false), val: divisor });
F('div', 'idiv', 'Eb', [0xf6], { ext: 7, dst: 'r', fl: DIVF, imp: { r: [0], w: [0] }, pre: divPre(true), val: divisor });
F('div', 'idiv', 'Ev', [0xf7], { ext: 7, dst: 'r', fl: DIVF, imp: { r: [0, 2], w: [0, 2] }, pre: divPre(true), val: divisor });

// BT/BTS/BTR/BTC: CF is the bit; OF SF AF PF undefined (Intel), ZF undefined on AMD. A register bit offset on a
// memory operand addresses outside the operand, so it is pinned small.
const BTF: FlagEffect = { r: 0, w: CF, u: OF | SF | AF | PF | ZF };
const btOffset = (c: CaseBuilder, i: Inst, op: number) => (op === 1 && i.mem && i.form.ops[1].kind === 'G' ? BigInt(c.rng.int(-200, 200)) : undefined);
[['bt', 0xa3, 4], ['bts', 0xab, 5], ['btr', 0xb3, 6], ['btc', 0xbb, 7]].forEach(([mn, op, ext]) => {
  const dst: Access = mn === 'bt' ? 'r' : 'rw';
  F('bt', mn as string, 'Ev,Gv', [0x0f, op as number], { dst, fl: BTF, lock: mn !== 'bt', val: btOffset });
  F('bt', mn as string, 'Ev,Ib', [0x0f, 0xba], { ext: ext as number, dst, fl: BTF, lock: mn !== 'bt' });
});

// BSF/BSR: the source is pinned non-zero (a zero source leaves the destination undefined); ZF defined, others undefined.
const nonZero = (c: CaseBuilder, i: Inst, op: number) => {
  if (op !== 1) return undefined;
  let v = 0n;
  while (BigInt.asUintN(i.size, v) === 0n) v = gprValue(c.rng) >> BigInt(c.rng.below(64));
  return v;
};
F('bitscan', 'bsf', 'Gv,Ev', [0x0f, 0xbc], { dst: 'w', fl: { r: 0, w: ZF, u: CF | OF | SF | AF | PF }, val: nonZero });
F('bitscan', 'bsr', 'Gv,Ev', [0x0f, 0xbd], { dst: 'w', fl: { r: 0, w: ZF, u: CF | OF | SF | AF | PF }, val: nonZero });
F('popcnt', 'popcnt', 'Gv,Ev', [0x0f, 0xb8], { pfx: 0xf3, dst: 'w', fl: ARITH });

// LEA computes an address without accessing memory.
F('lea', 'lea', 'Gv,M', [0x8d], { dst: 'w' });

// MOV and friends.
F('mov', 'mov', 'Eb,Gb', [0x88], { dst: 'w' });
F('mov', 'mov', 'Ev,Gv', [0x89], { dst: 'w' });
F('mov', 'mov', 'Gb,Eb', [0x8a], { dst: 'w' });
F('mov', 'mov', 'Gv,Ev', [0x8b], { dst: 'w' });
F('mov', 'mov', 'Zb,Ib', [0xb0], { dst: 'w' });
F('mov', 'mov', 'Zv,Iv', [0xb8], { dst: 'w' });
F('mov', 'mov', 'Eb,Ib', [0xc6], { ext: 0, dst: 'w' });
F('mov', 'mov', 'Ev,Iz', [0xc7], { ext: 0, dst: 'w' });
F('mov', 'mov', 'AL,Ob', [0xa0], { dst: 'w' });
F('mov', 'mov', 'rAX,Ov', [0xa1], { dst: 'w' });
F('mov', 'mov', 'Ob,AL', [0xa2], { dst: 'w' });
F('mov', 'mov', 'Ov,rAX', [0xa3], { dst: 'w' });
F('movx', 'movzx', 'Gv,Eb', [0x0f, 0xb6], { dst: 'w' });
F('movx', 'movzx', 'Gv,Ew', [0x0f, 0xb7], { dst: 'w', sizes: [32, 64] });
F('movx', 'movsx', 'Gv,Eb', [0x0f, 0xbe], { dst: 'w' });
F('movx', 'movsx', 'Gv,Ew', [0x0f, 0xbf], { dst: 'w', sizes: [32, 64] });
F('movx', 'movsxd', 'Gv,Ed', [0x63], { dst: 'w', sizes: [64] });
F('cmov', 'cmovcc', 'Gv,Ev', [0x0f, 0x40], { cc: true });
F('cmov', 'setcc', 'Eb', [0x0f, 0x90], { cc: true, ext: 0, dst: 'w' });

// Exchanges.
F('xchg', 'xchg', 'Eb,Gb:rw', [0x86]);
F('xchg', 'xchg', 'Ev,Gv:rw', [0x87]);
F('xchg', 'xchg', 'Zv,rAX:rw', [0x90]);
F('xchg', 'xadd', 'Eb,Gb:rw', [0x0f, 0xc0], { fl: ARITH, lock: true });
F('xchg', 'xadd', 'Ev,Gv:rw', [0x0f, 0xc1], { fl: ARITH, lock: true });
F('xchg', 'cmpxchg', 'Eb,Gb', [0x0f, 0xb0], { fl: ARITH, lock: true, imp: { r: [0], w: [0] } });
F('xchg', 'cmpxchg', 'Ev,Gv', [0x0f, 0xb1], { fl: ARITH, lock: true, imp: { r: [0], w: [0] } });

// BSWAP (16-bit form undefined: not generated), CBW/CWDE/CDQE, CWD/CDQ/CQO.
F('convert', 'bswap', 'Zv', [0x0f, 0xc8], { sizes: [32, 64] });
F('convert', 'cbw/cwde/cdqe', '', [0x98], { sizes: [16, 32, 64], imp: { r: [0], w: [0] } });
F('convert', 'cwd/cdq/cqo', '', [0x99], { sizes: [16, 32, 64], imp: { r: [0], w: [2] } });

// Stack: pushes and pops move RSP by the operand size (64, or 16 with 66).
const down = (i: Inst) => -i.size / 8;
const up = (i: Inst) => i.size / 8;
F('stack', 'push', 'Zv', [0x50], { dst: 'r', d64: true, rsp: down });
F('stack', 'pop', 'Zv', [0x58], { dst: 'w', d64: true, rsp: up });
F('stack', 'push', 'Ib', [0x6a], { sizes: [64, 16], rsp: down, d64: true });
F('stack', 'push', 'Iz', [0x68], { d64: true, rsp: down });
F('stack', 'push', 'Ev', [0xff], { ext: 6, dst: 'r', d64: true, rsp: down });
F('stack', 'pop', 'Ev', [0x8f], { ext: 0, dst: 'w', d64: true, rsp: up });
F('stack', 'pushf', '', [0x9c], { sizes: [64, 16], fl: { r: ALL, w: 0, u: 0 }, rsp: down, d64: true });

// Flag instructions.
F('flags', 'lahf', '', [0x9f], { fl: { r: SF | ZF | AF | PF | CF, w: 0, u: 0 }, imp: { w: [0] } });
F('flags', 'sahf', '', [0x9e], { fl: { r: 0, w: SF | ZF | AF | PF | CF, u: 0 }, imp: { r: [0] } });
F('flags', 'clc', '', [0xf8], { fl: { r: 0, w: CF, u: 0 } });
F('flags', 'stc', '', [0xf9], { fl: { r: 0, w: CF, u: 0 } });
F('flags', 'cmc', '', [0xf5], { fl: { r: CF, w: CF, u: 0 } });
F('flags', 'cld', '', [0xfc]);
F('flags', 'std', '', [0xfd]);

// POPF of a value with only arithmetic flags and DF, pushed just before (TF or AC would fault on the host).
C('stack', 'push imm; popf', (c) => {
  const r = c.rng;
  const v = (r.u32() & STATUS_FLAGS) | (r.chance(0.3) ? DF : 0);
  const w16 = r.chance(0.25);
  const bytes = w16 ? [0x66, 0x68, v & 0xff, v >> 8, 0x66, 0x9d] : [0x68, v & 0xff, v >> 8, 0, 0, 0x9d];
  c.undef = 0;
  return { bytes: Uint8Array.from(bytes), text: `push ${hex(v)}; popf${w16 ? 'w' : 'q'}`, family: 'stack', form: `popf${w16 ? 'w' : 'q'} [9d]`, fx: { r: 0, w: ALL, u: 0 } };
});

// String instructions (SDM vol. 2 MOVS/CMPS/STOS/LODS/SCAS and REP): RSI/RDI point into the data area and RCX is
// a small count; these registers are pinned for the whole case and only string instructions move them.
const STRINGS = [
  { mn: 'movs', op: 0xa4, si: true, di: true, cmp: false, rax: '' },
  { mn: 'cmps', op: 0xa6, si: true, di: true, cmp: true, rax: '' },
  { mn: 'stos', op: 0xaa, si: false, di: true, cmp: false, rax: 'r' },
  { mn: 'lods', op: 0xac, si: true, di: false, cmp: false, rax: 'w' },
  { mn: 'scas', op: 0xae, si: false, di: true, cmp: true, rax: 'r' },
] as const;
for (const s of STRINGS) {
  C('string', s.mn, (c) => {
    const r = c.rng;
    const size = r.pick([8, 16, 32, 64]);
    const rep = r.pick(s.cmp ? [0, 0xf3, 0xf2] : [0, 0xf3]);
    const ptr = (reg: number) => {
      const p = c.pins[reg];
      if (p?.kind === 'str') return true;
      return c.pin(reg, 'str', BigInt(SCRATCH_BASE + DATA_OFF + r.int(0x300, 0xd00)));
    };
    if (s.si && !ptr(6)) return null;
    if (s.di && !ptr(7)) return null;
    // (counts above 8 too: the translator runs a REP MOVS/STOS inside one page as one memory.copy/fill)
    if (rep && c.pins[1]?.kind !== 'count' && !c.pin(1, 'count', BigInt(r.chance(0.3) ? r.int(9, 48) : r.int(0, 8)))) return null;
    if (s.rax === 'w' && !c.canWrite(0)) return null;
    for (const reg of [6, 7, 1]) if (c.pins[reg]?.kind === 'str' || c.pins[reg]?.kind === 'count') c.dirty[reg] = true;
    if (s.rax === 'w') c.dirty[0] = true;
    // With REP and a zero count CMPS/SCAS leave the flags unchanged: conservatively, nothing becomes defined.
    const fx: FlagEffect = s.cmp ? (rep ? { r: DF, w: 0, u: 0 } : { r: DF, w: ALL, u: 0 }) : { r: DF, w: 0, u: 0 };
    if (s.cmp && !rep) c.undef = 0;
    const bytes: number[] = [];
    if (rep) bytes.push(rep);
    if (size === 16) bytes.push(0x66);
    if (size === 64) bytes.push(0x48);
    bytes.push(size === 8 ? s.op : s.op + 1);
    const suffix = { 8: 'b', 16: 'w', 32: 'd', 64: 'q' }[size];
    const prefix = rep === 0xf3 ? (s.cmp ? 'repe ' : 'rep ') : rep === 0xf2 ? 'repne ' : '';
    return { bytes: Uint8Array.from(bytes), text: prefix + s.mn + suffix, family: 'string', form: `${prefix}${s.mn}${size === 8 ? 'b' : 'v'}`, fx };
  });
}

// Short forward branches over a filler instruction that changes no flags (NOT r32 or MOV r32, imm32).
function filler(c: CaseBuilder): { bytes: number[]; text: string } | null {
  const r = c.rng;
  const regs = [...Array(16).keys()].filter((x) => c.canWrite(x));
  if (!regs.length) return null;
  const reg = r.pick(regs);
  c.dirty[reg] = true;
  const rex = reg >= 8 ? [0x41] : [];
  if (r.chance(0.5)) return { bytes: [...rex, 0xf7, 0xd0 | (reg & 7)], text: `not ${gprName(reg, 32, false)}` };
  const v = r.u32();
  return { bytes: [...rex, 0xb8 + (reg & 7), v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24], text: `mov ${gprName(reg, 32, false)}, ${hex(v)}` };
}
function branch(mn: string, head: (c: CaseBuilder, cc: number) => { bytes: number[]; reads: number; rel: 1 | 4; writes?: number[]; reads64?: number[] } | null) {
  C('branch', mn, (c) => {
    const cc = c.rng.below(16);
    const h = head(c, cc);
    if (!h || (h.reads & c.undef)) return null;
    for (const w of h.writes ?? []) { if (!c.canWrite(w)) return null; c.dirty[w] = true; }
    const fill = filler(c);
    if (!fill) return null;
    const bytes = [...h.bytes];
    const rel = fill.bytes.length;
    if (h.rel === 1) bytes.push(rel);
    else bytes.push(rel, 0, 0, 0);
    return {
      bytes: Uint8Array.from([...bytes, ...fill.bytes]), text: `${mn.replace('cc', CC_NAMES[cc])} +${rel}; ${fill.text}`, family: 'branch', form: mn,
      fx: { r: h.reads, w: 0, u: 0 },
    };
  });
}
branch('jcc rel8', (_c, cc) => ({ bytes: [0x70 + cc], reads: CC_READS[cc], rel: 1 }));
branch('jcc rel32', (_c, cc) => ({ bytes: [0x0f, 0x80 + cc], reads: CC_READS[cc], rel: 4 }));
branch('jmp rel8', () => ({ bytes: [0xeb], reads: 0, rel: 1 }));
branch('jmp rel32', () => ({ bytes: [0xe9], reads: 0, rel: 4 }));
branch('loop', (c) => ({ bytes: c.rng.chance(0.2) ? [0x67, 0xe2] : [0xe2], reads: 0, rel: 1, writes: [1] }));
branch('loope', (c) => ({ bytes: c.rng.chance(0.2) ? [0x67, 0xe1] : [0xe1], reads: ZF, rel: 1, writes: [1] }));
branch('loopne', (c) => ({ bytes: c.rng.chance(0.2) ? [0x67, 0xe0] : [0xe0], reads: ZF, rel: 1, writes: [1] }));
branch('jrcxz', (c) => ({ bytes: c.rng.chance(0.3) ? [0x67, 0xe3] : [0xe3], reads: 0, rel: 1 }));
C('branch', 'call rel32', (c) => {
  const fill = filler(c);
  if (!fill) return null;
  c.rsp -= 8;
  const rel = fill.bytes.length;
  return { bytes: Uint8Array.from([0xe8, rel, 0, 0, 0, ...fill.bytes]), text: `call +${rel}; ${fill.text}`, family: 'branch', form: 'call rel32', fx: NO_FLAGS };
});
C('branch', 'ret', (c) => {
  // push imm32 (the address after the filler, patched at link time); ret [imm16]; filler
  const fill = filler(c);
  if (!fill) return null;
  const extra = c.rng.chance(0.3) ? c.rng.below(5) * 8 : -1;
  const ret = extra >= 0 ? [0xc2, extra, 0] : [0xc3];
  c.rsp += extra > 0 ? extra : 0;
  return {
    bytes: Uint8Array.from([0x68, 0, 0, 0, 0, ...ret, ...fill.bytes]), text: `push <end>; ret${extra >= 0 ? ' ' + extra : ''}; ${fill.text}`,
    family: 'branch', form: extra >= 0 ? 'ret imm16' : 'ret', fx: NO_FLAGS, fixup: { kind: 'unit-end', at: 1 },
  };
});

// ---- SSE / SSE2 (SDM vol. 2; prefixes select ps/pd/ss/sd). 16-byte memory operands are aligned unless 'u'.
const P66 = 0x66, PF3 = 0xf3, PF2 = 0xf2;
const sseInt: [string, number][] = [
  ['paddb', 0xfc], ['paddw', 0xfd], ['paddd', 0xfe], ['paddq', 0xd4], ['psubb', 0xf8], ['psubw', 0xf9], ['psubd', 0xfa], ['psubq', 0xfb],
  ['paddusb', 0xdc], ['paddusw', 0xdd], ['psubusb', 0xd8], ['psubusw', 0xd9], ['paddsb', 0xec], ['paddsw', 0xed], ['psubsb', 0xe8], ['psubsw', 0xe9],
  ['pxor', 0xef], ['pand', 0xdb], ['por', 0xeb], ['pandn', 0xdf],
  ['pcmpeqb', 0x74], ['pcmpeqw', 0x75], ['pcmpeqd', 0x76], ['pcmpgtb', 0x64], ['pcmpgtw', 0x65], ['pcmpgtd', 0x66],
  ['punpcklbw', 0x60], ['punpcklwd', 0x61], ['punpckldq', 0x62], ['punpcklqdq', 0x6c],
  ['punpckhbw', 0x68], ['punpckhwd', 0x69], ['punpckhdq', 0x6a], ['punpckhqdq', 0x6d],
  ['packsswb', 0x63], ['packuswb', 0x67], ['packssdw', 0x6b],
  ['pmullw', 0xd5], ['pmulhw', 0xe5], ['pmulhuw', 0xe4], ['pmuludq', 0xf4], ['pmaddwd', 0xf5], ['psadbw', 0xf6],
  ['pminub', 0xda], ['pmaxub', 0xde], ['pminsw', 0xea], ['pmaxsw', 0xee], ['pavgb', 0xe0], ['pavgw', 0xe3],
];
for (const [mn, op] of sseInt) F('sse-int', mn, 'Vx,Wx', [0x0f, op], { pfx: P66 });
F('sse-int', 'pmovmskb', 'Gd,Ux', [0x0f, 0xd7], { pfx: P66, dst: 'w' });
F('sse-shuffle', 'pshufd', 'Vx,Wx,Ib', [0x0f, 0x70], { pfx: P66, dst: 'w' });
F('sse-shuffle', 'pshuflw', 'Vx,Wx,Ib', [0x0f, 0x70], { pfx: PF2, dst: 'w' });
F('sse-shuffle', 'pshufhw', 'Vx,Wx,Ib', [0x0f, 0x70], { pfx: PF3, dst: 'w' });
const shiftImm = (c: CaseBuilder) => c.rng.pick([0, 1, 3, 7, 8, 15, 16, 31, 32, 63, 64, 200, c.rng.below(256)]);
for (const [mn, op, ext] of [['psrlw', 0x71, 2], ['psraw', 0x71, 4], ['psllw', 0x71, 6], ['psrld', 0x72, 2], ['psrad', 0x72, 4], ['pslld', 0x72, 6],
  ['psrlq', 0x73, 2], ['psrldq', 0x73, 3], ['psllq', 0x73, 6], ['pslldq', 0x73, 7]] as const) {
  F('sse-shift', mn, 'Ux,Ib', [0x0f, op], { pfx: P66, ext, imm: shiftImm });
}
for (const [mn, op] of [['psrlw', 0xd1], ['psrld', 0xd2], ['psrlq', 0xd3], ['psraw', 0xe1], ['psrad', 0xe2], ['psllw', 0xf1], ['pslld', 0xf2], ['psllq', 0xf3]] as const) {
  F('sse-shift', mn, 'Vx,Wx', [0x0f, op], { pfx: P66 });
}
// Moves.
F('sse-move', 'movd', 'Vx,Ey', [0x0f, 0x6e], { pfx: P66, dst: 'w' });
F('sse-move', 'movd', 'Ey,Vx', [0x0f, 0x7e], { pfx: P66, dst: 'w' });
F('sse-move', 'movq', 'Vx,Wq', [0x0f, 0x7e], { pfx: PF3, dst: 'w' });
F('sse-move', 'movq', 'Wq,Vx', [0x0f, 0xd6], { pfx: P66, dst: 'w' });
F('sse-move', 'movdqa', 'Vx,Wx', [0x0f, 0x6f], { pfx: P66, dst: 'w' });
F('sse-move', 'movdqa', 'Wx,Vx', [0x0f, 0x7f], { pfx: P66, dst: 'w' });
F('sse-move', 'movdqu', 'Vx,Wxu', [0x0f, 0x6f], { pfx: PF3, dst: 'w' });
F('sse-move', 'movdqu', 'Wxu,Vx', [0x0f, 0x7f], { pfx: PF3, dst: 'w' });
F('sse-move', 'movaps', 'Vx,Wx', [0x0f, 0x28], { dst: 'w' });
F('sse-move', 'movaps', 'Wx,Vx', [0x0f, 0x29], { dst: 'w' });
F('sse-move', 'movapd', 'Vx,Wx', [0x0f, 0x28], { pfx: P66, dst: 'w' });
F('sse-move', 'movups', 'Vx,Wxu', [0x0f, 0x10], { dst: 'w' });
F('sse-move', 'movups', 'Wxu,Vx', [0x0f, 0x11], { dst: 'w' });
F('sse-move', 'movupd', 'Vx,Wxu', [0x0f, 0x10], { pfx: P66, dst: 'w' });
F('sse-move', 'movss', 'Vx,Wd', [0x0f, 0x10], { pfx: PF3, dst: 'w' });
F('sse-move', 'movss', 'Wd,Vx', [0x0f, 0x11], { pfx: PF3, dst: 'w' });
F('sse-move', 'movsd', 'Vx,Wq', [0x0f, 0x10], { pfx: PF2, dst: 'w' });
F('sse-move', 'movsd', 'Wq,Vx', [0x0f, 0x11], { pfx: PF2, dst: 'w' });
F('sse-move', 'movhlps', 'Vx,Ux', [0x0f, 0x12]);
F('sse-move', 'movlhps', 'Vx,Ux', [0x0f, 0x16]);
F('sse-move', 'movlps', 'Vx,Mq', [0x0f, 0x12]);
F('sse-move', 'movlps', 'Mq,Vx', [0x0f, 0x13], { dst: 'w' });
F('sse-move', 'movhps', 'Vx,Mq', [0x0f, 0x16]);
F('sse-move', 'movhps', 'Mq,Vx', [0x0f, 0x17], { dst: 'w' });
F('sse-move', 'movlpd', 'Vx,Mq', [0x0f, 0x12], { pfx: P66 });
F('sse-move', 'movhpd', 'Vx,Mq', [0x0f, 0x16], { pfx: P66 });
// Floating-point arithmetic in the four precisions.
const precisions = [['ps', undefined, 'Wx'], ['pd', P66, 'Wx'], ['ss', PF3, 'Wd'], ['sd', PF2, 'Wq']] as const;
for (const [base, op] of [['add', 0x58], ['mul', 0x59], ['sub', 0x5c], ['min', 0x5d], ['div', 0x5e], ['max', 0x5f], ['sqrt', 0x51]] as const) {
  for (const [p, pfx, w] of precisions) F('sse-float', base + p, `Vx,${w}`, [0x0f, op], { pfx });
}
for (const [base, op] of [['and', 0x54], ['andn', 0x55], ['or', 0x56], ['xor', 0x57]] as const) {
  F('sse-float', base + 'ps', 'Vx,Wx', [0x0f, op]);
  F('sse-float', base + 'pd', 'Vx,Wx', [0x0f, op], { pfx: P66 });
}
F('sse-float', 'stmxcsr', 'Md', [0x0f, 0xae], { ext: 3, dst: 'w' });
F('sse-float', 'ldmxcsr', 'Md', [0x0f, 0xae], {
  ext: 2, dst: 'r',
  val: (c) => BigInt(MXCSR_MASKS | c.roundingBits() | (c.rng.u32() & 0x3f)),
});
// Comparisons.
const cmpPredicate = (c: CaseBuilder) => c.rng.below(8);
for (const [p, pfx, w] of precisions) F('sse-cmp', 'cmp' + p, `Vx,${w},Ib`, [0x0f, 0xc2], { pfx, imm: cmpPredicate });
const COMIF: FlagEffect = { r: 0, w: ALL, u: 0 };
F('sse-cmp', 'ucomiss', 'Vx:r,Wd', [0x0f, 0x2e], { fl: COMIF });
F('sse-cmp', 'comiss', 'Vx:r,Wd', [0x0f, 0x2f], { fl: COMIF });
F('sse-cmp', 'ucomisd', 'Vx:r,Wq', [0x0f, 0x2e], { pfx: P66, fl: COMIF });
F('sse-cmp', 'comisd', 'Vx:r,Wq', [0x0f, 0x2f], { pfx: P66, fl: COMIF });
// Conversions.
F('sse-cvt', 'cvtsi2sd', 'Vx,Ey', [0x0f, 0x2a], { pfx: PF2, dst: 'rw' });
F('sse-cvt', 'cvtsi2ss', 'Vx,Ey', [0x0f, 0x2a], { pfx: PF3, dst: 'rw' });
F('sse-cvt', 'cvttsd2si', 'Gy,Wq', [0x0f, 0x2c], { pfx: PF2, dst: 'w' });
F('sse-cvt', 'cvttss2si', 'Gy,Wd', [0x0f, 0x2c], { pfx: PF3, dst: 'w' });
F('sse-cvt', 'cvtsd2si', 'Gy,Wq', [0x0f, 0x2d], { pfx: PF2, dst: 'w' });
F('sse-cvt', 'cvtss2si', 'Gy,Wd', [0x0f, 0x2d], { pfx: PF3, dst: 'w' });
F('sse-cvt', 'cvtsd2ss', 'Vx,Wq', [0x0f, 0x5a], { pfx: PF2 });
F('sse-cvt', 'cvtss2sd', 'Vx,Wd', [0x0f, 0x5a], { pfx: PF3 });
F('sse-cvt', 'cvtps2pd', 'Vx,Wq', [0x0f, 0x5a], { dst: 'w' });
F('sse-cvt', 'cvtpd2ps', 'Vx,Wx', [0x0f, 0x5a], { pfx: P66, dst: 'w' });
F('sse-cvt', 'cvtdq2ps', 'Vx,Wx', [0x0f, 0x5b], { dst: 'w' });
F('sse-cvt', 'cvtps2dq', 'Vx,Wx', [0x0f, 0x5b], { pfx: P66, dst: 'w' });
F('sse-cvt', 'cvttps2dq', 'Vx,Wx', [0x0f, 0x5b], { pfx: PF3, dst: 'w' });
F('sse-cvt', 'cvtdq2pd', 'Vx,Wq', [0x0f, 0xe6], { pfx: PF3, dst: 'w' });
F('sse-cvt', 'cvttpd2dq', 'Vx,Wx', [0x0f, 0xe6], { pfx: P66, dst: 'w' });
F('sse-cvt', 'cvtpd2dq', 'Vx,Wx', [0x0f, 0xe6], { pfx: PF2, dst: 'w' });
// Shuffles and masks.
F('sse-shuffle', 'shufps', 'Vx,Wx,Ib', [0x0f, 0xc6]);
F('sse-shuffle', 'shufpd', 'Vx,Wx,Ib', [0x0f, 0xc6], { pfx: P66 });
F('sse-shuffle', 'unpcklps', 'Vx,Wx', [0x0f, 0x14]);
F('sse-shuffle', 'unpckhps', 'Vx,Wx', [0x0f, 0x15]);
F('sse-shuffle', 'unpcklpd', 'Vx,Wx', [0x0f, 0x14], { pfx: P66 });
F('sse-shuffle', 'unpckhpd', 'Vx,Wx', [0x0f, 0x15], { pfx: P66 });
F('sse-shuffle', 'movmskps', 'Gd,Ux', [0x0f, 0x50], { dst: 'w' });
F('sse-shuffle', 'movmskpd', 'Gd,Ux', [0x0f, 0x50], { pfx: P66, dst: 'w' });

// ---------------------------------------------------------------------------------------------------------
// Families and cases

// The SSE families run with MXCSR rounding to nearest without FTZ/DAZ; their "-rc" twins run the same forms
// with random rounding control, flush-to-zero and denormals-are-zero.
const ROUNDING_TWINS: Record<string, string> = { 'sse-float-rc': 'sse-float', 'sse-cmp-rc': 'sse-cmp', 'sse-cvt-rc': 'sse-cvt' };
const BASE_FAMILIES = [...new Set(FORMS.map((f) => f.family))];
export const FAMILIES: string[] = [...BASE_FAMILIES, ...Object.keys(ROUNDING_TWINS)];
const BY_FAMILY = new Map<string, Form[]>(FAMILIES.map((fam) => [fam, FORMS.filter((f) => f.family === (ROUNDING_TWINS[fam] ?? fam))]));
/** Every form, for coverage reports. */
export const FORM_COUNT = FORMS.length;

function buildUnit(c: CaseBuilder, f: Form): Unit | null {
  const restore = c.snapshot();
  c.reserved = new Set();
  c.writtenNow = new Set();
  const u = f.custom ? f.custom(c) : buildForm(c, f);
  if (!u) restore();
  return u;
}

/** Lay units out at CODE_BASE and patch their RIP-relative displacements and absolute return addresses. */
export function link(units: readonly Unit[]): Uint8Array {
  const total = units.reduce((n, u) => n + u.bytes.length, 0);
  const code = new Uint8Array(total);
  const view = new DataView(code.buffer);
  let at = 0;
  for (const u of units) {
    code.set(u.bytes, at);
    if (u.fixup?.kind === 'rip') view.setInt32(at + u.fixup.at, u.fixup.target - (CODE_BASE + at + u.fixup.end), true);
    else if (u.fixup?.kind === 'unit-end') view.setInt32(at + u.fixup.at, CODE_BASE + at + u.bytes.length, true);
    at += u.bytes.length;
  }
  return code;
}

/**
 * Flags undefined at the end of `units`, or -1 when some unit reads a flag that is undefined at that point
 * (such a sequence is not a valid test).
 */
export function undefinedFlagsAfter(units: readonly Unit[]): number {
  let undef = 0;
  for (const u of units) {
    if (u.fx.r & undef) return -1;
    undef = (undef & ~(u.fx.w | u.fx.u)) | u.fx.u;
    if (u.form.startsWith('popf')) undef = 0;
  }
  return undef;
}

function caseRng(seed: number, index: number): Rng {
  return new Rng((seed ^ Math.imul(index + 1, 0x9e3779b1) ^ (index >>> 16)) >>> 0);
}

/** Generate case `index` of the run with `seed`, from `family`. Deterministic in (seed, index, family). */
export function generateCase(seed: number, index: number, family: string): TestCase {
  const forms = BY_FAMILY.get(family);
  if (!forms) throw new Error(`unknown instruction family ${family}`);
  const rng = caseRng(seed, index);
  const c = new CaseBuilder(rng, !family.startsWith('sse') || family.endsWith('-rc'));
  const count = 1 + rng.below(4);
  const units: Unit[] = [];
  for (let n = 0; n < count; n++) {
    c.unitIndex = n;
    let u: Unit | null = null;
    for (let attempt = 0; attempt < 30 && !u; attempt++) u = buildUnit(c, rng.pick(forms));
    if (!u) break;
    units.push(u);
  }
  if (!units.length) throw new Error(`could not generate a ${family} instruction (seed ${seed}, case ${index})`);
  const state: SnippetState = { gpr: [...c.gpr], rflags: c.rflags, xmm: c.xmm, mxcsr: c.mxcsr, mem: c.mem };
  const pinned = [...Array(16).keys()].filter((i) => c.pins[i] !== undefined || i === 4);
  return { seed, index, family, units, code: link(units), state, undefinedFlags: undefinedFlagsAfter(units), pinned };
}

/** Forms of a family, for listing. */
export function formsOf(family: string): string[] {
  return (BY_FAMILY.get(family) ?? []).map((f) => (f.custom ? f.mn : formName(f)));
}
