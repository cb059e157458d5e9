var __defProp = Object.defineProperty;
var __export = (target, all) => {
  for (var name2 in all)
    __defProp(target, name2, { get: all[name2], enumerable: true });
};

// bench/wasm-build.ts
import { readFileSync as readFileSync2 } from "node:fs";
import { createHash } from "node:crypto";

// src/sys/proc-stat.ts
import { readFileSync } from "node:fs";
var CLOCK_TICKS = 100;
function readProcStat(path) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return void 0;
  }
  const close2 = text.lastIndexOf(")");
  return { comm: text.slice(text.indexOf("(") + 1, close2), fields: text.slice(close2 + 2).split(" ") };
}
function statCpuSeconds(stat) {
  return (Number(stat.fields[11]) + Number(stat.fields[12])) / CLOCK_TICKS;
}

// src/cpu/soft/wasm/layout.ts
var layout_exports = {};
__export(layout_exports, {
  CODE_PAGES: () => CODE_PAGES,
  DISPATCH: () => DISPATCH,
  DISPATCH_BITS: () => DISPATCH_BITS,
  HOT_COUNTS: () => HOT_COUNTS,
  HOT_SLOTS: () => HOT_SLOTS,
  MAX_WASM_CPUS: () => MAX_WASM_CPUS,
  PAGE_GEN: () => PAGE_GEN,
  PHITS_N: () => PHITS_N,
  RAS_N: () => RAS_N,
  RAS_STRIDE: () => RAS_STRIDE,
  STATE_BASE: () => STATE_BASE,
  STATE_STRIDE: () => STATE_STRIDE,
  S_BLK: () => S_BLK,
  S_CDEPTH: () => S_CDEPTH,
  S_CHAIN: () => S_CHAIN,
  S_CHAINS: () => S_CHAINS,
  S_CPL: () => S_CPL,
  S_CRET: () => S_CRET,
  S_DIRECT: () => S_DIRECT,
  S_EFL: () => S_EFL,
  S_END: () => S_END,
  S_FEPOCH: () => S_FEPOCH,
  S_GPR: () => S_GPR,
  S_HI: () => S_HI,
  S_IFW: () => S_IFW,
  S_INTRA: () => S_INTRA,
  S_KGS: () => S_KGS,
  S_LCY: () => S_LCY,
  S_LD: () => S_LD,
  S_LOP: () => S_LOP,
  S_LR: () => S_LR,
  S_LS: () => S_LS,
  S_LSTAR: () => S_LSTAR,
  S_LSZ: () => S_LSZ,
  S_NBASE: () => S_NBASE,
  S_NCALLS: () => S_NCALLS,
  S_NEXT: () => S_NEXT,
  S_NHITS: () => S_NHITS,
  S_NKEY: () => S_NKEY,
  S_NNEST: () => S_NNEST,
  S_PEND: () => S_PEND,
  S_PHITS: () => S_PHITS,
  S_R0: () => S_R0,
  S_RAS: () => S_RAS,
  S_RASP: () => S_RASP,
  S_RIP: () => S_RIP,
  S_SCE: () => S_SCE,
  S_SEG: () => S_SEG,
  S_SFMASK: () => S_SFMASK,
  S_SSE: () => S_SSE,
  S_STAR_CS: () => S_STAR_CS,
  S_STAR_RET: () => S_STAR_RET,
  S_SYS: () => S_SYS,
  S_SYS_CR4: () => S_SYS_CR4,
  S_SYS_EFER: () => S_SYS_EFER,
  S_TAILS: () => S_TAILS,
  S_TLB: () => S_TLB,
  S_TSD: () => S_TSD,
  S_USER: () => S_USER,
  S_WBSTATS: () => S_WBSTATS,
  S_XKIND: () => S_XKIND,
  S_XMM: () => S_XMM,
  S_XSTATS: () => S_XSTATS,
  TLB_BANK: () => TLB_BANK,
  TLB_ENTRY_SHIFT: () => TLB_ENTRY_SHIFT,
  TLB_FETCH_DELTA: () => TLB_FETCH_DELTA,
  TLB_SLOT_MIX: () => TLB_SLOT_MIX,
  TLB_USER_DELTA: () => TLB_USER_DELTA,
  TLB_WRITE_DELTA: () => TLB_WRITE_DELTA,
  dispatchEntry: () => dispatchEntry,
  sGpr: () => sGpr,
  sseViews: () => sseViews,
  tlbSlot: () => tlbSlot
});

// src/sys/libc.ts
import koffi from "koffi";
var libc = koffi.load("libc.so.6");
var memfdCreate = libc.func("int memfd_create(const char *name, unsigned int flags)");
var ftruncate = libc.func("int ftruncate(int fd, int64_t length)");
var mmapFn = libc.func("void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)");
var munmapFn = libc.func("int munmap(void *addr, size_t length)");
var closeFn = libc.func("int close(int fd)");
var lseekFn = libc.func("int64_t lseek(int fd, int64_t offset, int whence)");
var sendfileFn = libc.func("int64_t sendfile(int out_fd, int in_fd, _Inout_ int64_t *offset, size_t count)");
var MAP_FAILED = BigInt.asUintN(64, -1n);

// src/memory/guest-memory.ts
var KiB = 1024;
var MiB = 1024 * KiB;
var GiB = 1024 * MiB;
var PCI_HOLE_START = 3 * GiB;
var HIGH_RAM_START = 4 * GiB;
var MIN_MEMORY = 64 * MiB;
var MAX_MEMORY = 64 * GiB;
var WASM_RAM_OFFSET = 24 * MiB;
var WASM_THP = process.env.RINGZERO_WASM_THP === "1";

// src/cpu/soft/wasm/layout.ts
var HOT_COUNTS = 0;
var HOT_SLOTS = 16 * 1024;
var CODE_PAGES = 64 * 1024;
var PAGE_GEN = 1024 * 1024;
var DISPATCH = 4 * 1024 * 1024;
var DISPATCH_BITS = 17;
var STATE_BASE = 8 * 1024 * 1024;
function dispatchEntry(pa) {
  return DISPATCH + (((pa ^ pa >>> 12) & (1 << DISPATCH_BITS) - 1) << 5);
}
var STATE_STRIDE = 512 * 1024;
var MAX_WASM_CPUS = (WASM_RAM_OFFSET - STATE_BASE) / STATE_STRIDE;
var S_GPR = 0;
var sGpr = (r) => S_GPR + 8 * r;
var S_LOP = 128;
var S_LSZ = 132;
var S_LD = 136;
var S_LS = 144;
var S_LR = 152;
var S_LCY = 160;
var S_HI = 164;
var S_CHAIN = 168;
var S_NBASE = 172;
var S_RIP = 176;
var S_R0 = 184;
var S_BLK = 240;
var S_CHAINS = 244;
var S_DIRECT = 248;
var S_NEXT = 252;
var S_SEG = 192;
var S_XMM = 256;
var S_SSE = 512;
var S_INTRA = 520;
var S_RASP = 524;
var RAS_N = 16;
var RAS_STRIDE = 32;
var S_NKEY = 1008;
var S_EFL = 1016;
var S_TLB = 1024;
var TLB_ENTRY_SHIFT = 4;
var TLB_BANK = 4096 << TLB_ENTRY_SHIFT;
var TLB_WRITE_DELTA = 2 * TLB_BANK;
var TLB_FETCH_DELTA = 4 * TLB_BANK;
var TLB_USER_DELTA = TLB_BANK;
var TLB_SLOT_MIX = 2531;
function tlbSlot(vpn) {
  const x = vpn | 0;
  return (x ^ Math.imul(x >>> 12, TLB_SLOT_MIX)) & 4095;
}
var S_END = S_TLB + 6 * TLB_BANK;
var S_USER = S_END;
var S_XKIND = S_USER + 4;
var S_XSTATS = S_USER + 16;
var S_KGS = S_USER + 8;
var S_CPL = S_XSTATS + 256;
var S_PEND = S_CPL + 4;
var S_IFW = S_CPL + 8;
var S_PHITS = S_USER + 512;
var PHITS_N = 4096;
var S_RAS = S_PHITS + 4 * PHITS_N;
function sseViews(buffer, st) {
  return { xmm: new Uint8Array(buffer, st + S_XMM, 256), sseOk: new Int32Array(buffer, st + S_SSE, 1) };
}
var S_SYS = S_CPL + 12;
var S_SCE = S_CPL + 16;
var S_STAR_CS = S_CPL + 20;
var S_STAR_RET = S_CPL + 24;
var S_SFMASK = S_CPL + 28;
var S_SYS_EFER = S_CPL + 32;
var S_LSTAR = S_CPL + 40;
var S_TSD = S_CPL + 48;
var S_SYS_CR4 = S_CPL + 52;
var S_TAILS = S_CPL + 56;
var S_CRET = S_CPL + 64;
var S_CDEPTH = S_CPL + 72;
var S_NCALLS = S_CPL + 76;
var S_NHITS = S_CPL + 80;
var S_NNEST = S_CPL + 84;
var S_FEPOCH = S_CPL + 88;
var S_WBSTATS = S_USER + 400;

// src/sys/zero.ts
var ZEROS = new Uint8Array(1 << 20);

// src/cpu/soft/code-cache.ts
var HOT_THRESHOLD = Number(process.env.RINGZERO_BLOCK_HOT ?? 2);
var WASM_HOT_THRESHOLD = Number(process.env.RINGZERO_BLOCK_HOT ?? 5);
var DISPLACE = process.env.RINGZERO_BLOCK_DISPLACED !== "0";
var TABLE_BITS = 18;
var TABLE_SIZE = 1 << TABLE_BITS;
var TABLE_MASK = TABLE_SIZE - 1;
var JIT_THRESHOLD = Number(process.env.RINGZERO_JIT_HOT ?? 2e4);
var CHAIN_LIMIT = Math.min(Number(process.env.RINGZERO_CHAIN_LIMIT ?? 2e4), 32704);
var BlockEntry = class {
  handler;
  /** Pre-decoded form (operands in a/b/imm...), or null to replay the handler with the decoder state below. */
  fast = null;
  /**
   * Small fields packed in one integer (why: see dec1): len | opLen << 4 | size << 8 | (ash = 8) << 13 |
   * (bsh = 8) << 14 | scale << 15 | (seg + 1) << 19 | form << 22. A setter given a value its bits cannot hold throws
   * (badField): entries are written only when a block is recorded.
   */
  pk = 4 << 8;
  /**
   * The decoder state at dispatch, which only a handler replay restores (and the translators read once), packed in
   * two small integers behind the accessors below. Replaying blocks is bound by memory loads: a boot keeps ~250k
   * entries, far more than the caches hold, and a microbenchmark replaying 20k blocks of 7 instructions ran ~4x
   * slower an instruction than one replaying 1k. With the small fields packed (pk, dec1, dec2) an entry takes 137
   * bytes instead of 273, and replaying the 20k blocks went from ~93 to ~63 ns an instruction. dec1: opsize | adsize << 4 |
   * (segOverride + 1) << 8 | rep << 12 | lock << 20 | p66 << 21 | rexW << 22; dec2: opcode (< 0x4000) | rex << 14 |
   * REX.R, X, B (each 0 or 8, as SoftCpu.applyRex makes them) as bits 22-24.
   */
  dec1 = 4 | 8 << 4;
  dec2 = 0;
  get opsize() {
    return this.dec1 & 15;
  }
  set opsize(v) {
    this.dec1 = this.dec1 & ~15 | v;
    if (this.opsize !== v) badField("opsize", v);
  }
  get adsize() {
    return this.dec1 >> 4 & 15;
  }
  set adsize(v) {
    this.dec1 = this.dec1 & ~240 | v << 4;
    if (this.adsize !== v) badField("adsize", v);
  }
  get segOverride() {
    return (this.dec1 >> 8 & 15) - 1;
  }
  set segOverride(v) {
    this.dec1 = this.dec1 & ~3840 | v + 1 << 8;
    if (this.segOverride !== v) badField("segOverride", v);
  }
  get rep() {
    return this.dec1 >> 12 & 255;
  }
  set rep(v) {
    this.dec1 = this.dec1 & ~1044480 | v << 12;
    if (this.rep !== v) badField("rep", v);
  }
  get lock() {
    return (this.dec1 & 1 << 20) !== 0;
  }
  set lock(v) {
    this.dec1 = v ? this.dec1 | 1 << 20 : this.dec1 & ~(1 << 20);
  }
  get p66() {
    return (this.dec1 & 1 << 21) !== 0;
  }
  set p66(v) {
    this.dec1 = v ? this.dec1 | 1 << 21 : this.dec1 & ~(1 << 21);
  }
  get rexW() {
    return (this.dec1 & 1 << 22) !== 0;
  }
  set rexW(v) {
    this.dec1 = v ? this.dec1 | 1 << 22 : this.dec1 & ~(1 << 22);
  }
  get opcode() {
    return this.dec2 & 16383;
  }
  set opcode(v) {
    this.dec2 = this.dec2 & ~16383 | v;
    if (this.opcode !== v) badField("opcode", v);
  }
  get rex() {
    return this.dec2 >> 14 & 255;
  }
  set rex(v) {
    this.dec2 = this.dec2 & ~(255 << 14) | v << 14;
    if (this.rex !== v) badField("rex", v);
  }
  get rexR() {
    return this.dec2 >> 19 & 8;
  }
  set rexR(v) {
    this.dec2 = this.dec2 & ~(1 << 22) | (v & 8) << 19;
    if (this.rexR !== v) badField("rexR", v);
  }
  get rexX() {
    return this.dec2 >> 20 & 8;
  }
  set rexX(v) {
    this.dec2 = this.dec2 & ~(1 << 23) | (v & 8) << 20;
    if (this.rexX !== v) badField("rexX", v);
  }
  get rexB() {
    return this.dec2 >> 21 & 8;
  }
  set rexB(v) {
    this.dec2 = this.dec2 & ~(1 << 24) | (v & 8) << 21;
    if (this.rexB !== v) badField("rexB", v);
  }
  // ---- operands of the fast forms (meaning depends on the form)
  a = 0;
  b = 0;
  imm = 0;
  immHi = 0;
  /** Operation selector of a form (ALU operation, INC/DEC, condition code). */
  op = 0;
  /** Memory operand recipe: base register (-1 none, -2 RIP-relative), index (-1 none), disp (and scale, seg below). */
  base = -1;
  index = -1;
  disp = 0;
  /** Whole instruction length (0 for the block's last instruction, which may branch). */
  get len() {
    return this.pk & 15;
  }
  set len(v) {
    this.pk = this.pk & ~15 | v;
    if (this.len !== v) badField("len", v);
  }
  /** Bytes of prefixes and opcode (RIP is set to start + opLen before the handler runs). */
  get opLen() {
    return this.pk >> 4 & 15;
  }
  set opLen(v) {
    this.pk = this.pk & ~240 | v << 4;
    if (this.opLen !== v) badField("opLen", v);
  }
  /** Operand size of a form (1, 2, 4, 8; or a scale shift). */
  get size() {
    return this.pk >> 8 & 31;
  }
  set size(v) {
    this.pk = this.pk & ~(31 << 8) | v << 8;
    if (this.size !== v) badField("size", v);
  }
  /** Byte-register operands of the 8-bit forms: the bit position (0, or 8 for AH..BH) of `a` and of `b`. */
  get ash() {
    return this.pk >> 10 & 8;
  }
  set ash(v) {
    this.pk = this.pk & ~(1 << 13) | (v & 8) << 10;
    if (this.ash !== v) badField("ash", v);
  }
  get bsh() {
    return this.pk >> 11 & 8;
  }
  set bsh(v) {
    this.pk = this.pk & ~(1 << 14) | (v & 8) << 11;
    if (this.bsh !== v) badField("bsh", v);
  }
  /** Scale factor (1, 2, 4, 8) and segment (-1: none) of the memory operand recipe. */
  get scale() {
    return this.pk >> 15 & 15;
  }
  set scale(v) {
    this.pk = this.pk & ~(15 << 15) | v << 15;
    if (this.scale !== v) badField("scale", v);
  }
  get seg() {
    return (this.pk >> 19 & 7) - 1;
  }
  set seg(v) {
    this.pk = this.pk & ~(7 << 19) | v + 1 << 19;
    if (this.seg !== v) badField("seg", v);
  }
  /** Which fast form `fast` is (fast-forms.ts Form, fewer than 512; 0 = none), for the translators. */
  get form() {
    return this.pk >> 22;
  }
  set form(v) {
    this.pk = this.pk & 4194303 | v << 22;
    if (this.form !== v) badField("form", v);
  }
  constructor(handler) {
    this.handler = handler;
  }
};
function badField(name2, v) {
  throw new Error(`BlockEntry.${name2} cannot hold ${v} (a packed field)`);
}
var Block = class {
  constructor(pa, mode, gen, entries) {
    this.pa = pa;
    this.mode = mode;
    this.gen = gen;
    this.entries = entries;
    this.n = entries.length;
  }
  pa;
  mode;
  gen;
  entries;
  n;
  /** The generated JavaScript of this block, once it is hot (null until then, or if it cannot be translated). */
  fn = null;
  /** The block translated to WebAssembly (./wasm/translate.ts, RINGZERO_JIT=wasm), once it is hot. */
  wasm = null;
  /** Replays so far (counts toward JIT_THRESHOLD; -1 once translation was tried). */
  runs = 0;
  /** The last two blocks that followed this one (chaining; each is re-validated by pa + gen + mode when used). */
  next = null;
  next2 = null;
  /**
   * The RIP (linear) the last run of this block left to in SoftCpu.runChain, in this page or not: what an indirect
   * exit (RET, JMP/CALL through a register or memory) predicts when the block is translated (translate.ts
   * Translator.predictExit; next/next2 hold same-page successors only). 0: none seen.
   */
  lastRip = 0;
  /**
   * A block whose last instruction straddles the end of its page (SoftCpu.recordBlock) depends on a second physical
   * page too: its page number (-1: none, the common case) and that page's generation when it was recorded. That
   * instruction checks, each time it runs, that the next linear page still maps to this page in this privilege's
   * fetch TLB and that the generation is unchanged, and is interpreted otherwise (SoftCpu.straddleGuard in the
   * JavaScript tier, Translator.straddleCheck in translated code); nothing else of the block needs the check.
   */
  pfn2 = -1;
  gen2 = 0;
};
var CODE_BYTES = process.env.RINGZERO_CODE_BYTES === "1";
var TERMINATOR = new Uint8Array(16384);
{
  const one = [
    112,
    113,
    114,
    115,
    116,
    117,
    118,
    119,
    120,
    121,
    122,
    123,
    124,
    125,
    126,
    127,
    // Jcc rel8
    224,
    225,
    226,
    227,
    // LOOPcc, JrCXZ
    232,
    233,
    234,
    235,
    154,
    // CALL/JMP near and far
    194,
    195,
    202,
    203,
    204,
    205,
    206,
    207,
    241,
    // RET, RETF, INT3, INT n, INTO, IRET, INT1
    244,
    250,
    251,
    157,
    142,
    23,
    31,
    7,
    // HLT, CLI, STI, POPF, MOV Sreg, POP SS/DS/ES
    98,
    196,
    197,
    200,
    201,
    // BOUND/EVEX, LES/LDS/VEX (mode-dependent meaning), ENTER/LEAVE kept simple
    108,
    109,
    110,
    111,
    228,
    229,
    230,
    231,
    236,
    237,
    238,
    239,
    // port I/O (devices may stop the CPU)
    164,
    165,
    166,
    167,
    170,
    171,
    172,
    173,
    174,
    175,
    // string ops (REP re-executes itself)
    216,
    217,
    218,
    219,
    220,
    221,
    222,
    223
    // x87 (FPU state, rarely hot in the kernel)
  ];
  for (const o of one) TERMINATOR[o] = 1;
  TERMINATOR[255] = 2;
  const two = [
    0,
    1,
    5,
    6,
    7,
    8,
    9,
    11,
    32,
    33,
    34,
    35,
    48,
    50,
    51,
    52,
    53,
    55,
    128,
    129,
    130,
    131,
    132,
    133,
    134,
    135,
    136,
    137,
    138,
    139,
    140,
    141,
    142,
    143,
    // Jcc rel32
    161,
    169,
    170,
    162,
    174,
    178,
    180,
    181,
    199,
    255,
    185
  ];
  for (const o of two) TERMINATOR[256 | o] = 1;
  TERMINATOR[257] = 2;
}

// src/cpu/soft/constants.ts
var CF = 1 << 0;
var PF = 1 << 2;
var AF = 1 << 4;
var ZF = 1 << 6;
var SF = 1 << 7;
var TF = 1 << 8;
var IF = 1 << 9;
var DF = 1 << 10;
var OF = 1 << 11;
var IOPL = 3 << 12;
var NT = 1 << 14;
var RF = 1 << 16;
var VM = 1 << 17;
var AC = 1 << 18;
var VIF = 1 << 19;
var VIP = 1 << 20;
var ID = 1 << 21;
var ARITH_FLAGS = CF | PF | AF | ZF | SF | OF;
var FLAGS_FIXED = 1 << 1;
var FLAGS_IMPLEMENTED = 4161493;
var SYSRET_FLAGS = 3964887;
var CS = 1;
var SS = 2;
var DS = 3;
var FS = 4;
var GS = 5;
var SEG_TYPE_MASK = 15;
var SEG_S = 1 << 4;
var SEG_DPL_SHIFT = 5;
var SEG_P = 1 << 7;
var SEG_AVL = 1 << 12;
var SEG_L = 1 << 13;
var SEG_DB = 1 << 14;
var SEG_G = 1 << 15;
var SEG_UNUSABLE = 1 << 16;
var SEG_TYPE_ACCESSED = 1;
var SEG_TYPE_WRITABLE = 2;
var SEG_TYPE_READABLE = 2;
var SEG_TYPE_CODE = 8;
var CR0_PE = 1 << 0;
var CR0_MP = 1 << 1;
var CR0_EM = 1 << 2;
var CR0_TS = 1 << 3;
var CR0_ET = 1 << 4;
var CR0_NE = 1 << 5;
var CR0_WP = 1 << 16;
var CR0_AM = 1 << 18;
var CR0_NW = 1 << 29;
var CR0_CD = 1 << 30;
var CR0_PG = 1 << 31;
var CR4_VME = 1 << 0;
var CR4_PVI = 1 << 1;
var CR4_TSD = 1 << 2;
var CR4_DE = 1 << 3;
var CR4_PSE = 1 << 4;
var CR4_PAE = 1 << 5;
var CR4_MCE = 1 << 6;
var CR4_PGE = 1 << 7;
var CR4_PCE = 1 << 8;
var CR4_OSFXSR = 1 << 9;
var CR4_OSXMMEXCPT = 1 << 10;
var CR4_UMIP = 1 << 11;
var EFER_SCE = 1 << 0;
var EFER_LME = 1 << 8;
var EFER_LMA = 1 << 10;
var EFER_NXE = 1 << 11;
var EXC_DE = 0;
var EXC_NM = 7;
var PTE_P = 1 << 0;
var PTE_RW = 1 << 1;
var PTE_US = 1 << 2;
var PTE_PWT = 1 << 3;
var PTE_PCD = 1 << 4;
var PTE_A = 1 << 5;
var PTE_D = 1 << 6;
var PTE_PS = 1 << 7;
var PTE_G = 1 << 8;
var PFEC_P = 1 << 0;
var PFEC_W = 1 << 1;
var PFEC_U = 1 << 2;
var PFEC_RSVD = 1 << 3;
var PFEC_I = 1 << 4;
var MAXPHYADDR = 40;
var TWO32 = 4294967296;
var TWO47 = 140737488355328;

// src/cpu/soft/tables.ts
var hex2 = (n) => n.toString(16).padStart(2, "0");
var ops1 = new Array(256);
var ops0f = new Array(256);
var ops0f38 = new Array(256);
var ops0f3a = new Array(256);
for (let i = 0; i < 256; i++) {
  ops1[i] = (c) => c.unimplemented(`opcode ${hex2(i)}`);
  ops0f[i] = (c) => c.unimplemented(`opcode 0f ${hex2(i)}`);
  ops0f38[i] = (c) => c.unimplemented(`opcode 0f 38 ${hex2(i)}`);
  ops0f3a[i] = (c) => c.unimplemented(`opcode 0f 3a ${hex2(i)}`);
}
ops0f[56] = (c) => {
  const b = c.fetch8();
  c.opcode = 14336 | b;
  ops0f38[b](c);
};
ops0f[58] = (c) => {
  const b = c.fetch8();
  c.opcode = 14848 | b;
  ops0f3a[b](c);
};
function def1(op, handler, last = op) {
  for (let i = op; i <= last; i++) ops1[i] = handler;
}
function def0f(op, handler, last = op) {
  for (let i = op; i <= last; i++) ops0f[i] = handler;
}
var groupFF = new Array(8);
for (let i = 0; i < 8; i++) groupFF[i] = (c) => c.unimplemented(`opcode ff /${i}`);
ops1[255] = (c) => {
  c.decodeModrm();
  groupFF[c.modrm >> 3 & 7](c);
};

// src/cpu/soft/ops/flow-branch.ts
var TWO472 = TWO47;
var TWO322 = TWO32;
function branchTo(c, target) {
  if (c.mode64) {
    if (target < -TWO472 || target >= TWO472) c.gp(0);
    c.rip = target;
  } else {
    c.rip = c.opsize === 2 ? target & 65535 : target >>> 0;
  }
}
function push64(c, lo, hi) {
  const spLo = c.gpr[8], spHi = c.gpr[9];
  const nLo = spLo - 8 | 0;
  const nHi = spLo >>> 0 < 8 ? spHi - 1 | 0 : spHi;
  c.writeLin(nHi * TWO322 + (nLo >>> 0), 8, lo, hi);
  c.gpr[8] = nLo;
  c.gpr[9] = nHi;
}
function num64(lo, hi) {
  return hi * TWO322 + (lo >>> 0);
}
def1(112, (c) => {
  const d = c.fetchS8();
  if (c.condition(c.opcode & 15)) branchTo(c, c.rip + d);
}, 127);
def0f(128, (c) => {
  const d = c.mode64 || c.opsize !== 2 ? c.fetch32() : c.fetch16() << 16 >> 16;
  if (c.condition(c.opcode & 15)) branchTo(c, c.rip + d);
}, 143);
def1(235, (c) => {
  const d = c.fetchS8();
  branchTo(c, c.rip + d);
});
def1(233, (c) => {
  const d = c.mode64 || c.opsize !== 2 ? c.fetch32() : c.fetch16() << 16 >> 16;
  branchTo(c, c.rip + d);
});
def1(232, (c) => {
  if (c.mode64) {
    const d2 = c.fetch32();
    const ret3 = c.rip;
    const target = ret3 + d2;
    if (target < -TWO472 || target >= TWO472) c.gp(0);
    push64(c, ret3 | 0, Math.floor(ret3 / TWO322) | 0);
    c.rip = target;
    return;
  }
  const size = c.opsize;
  const d = size === 2 ? c.fetch16() << 16 >> 16 : c.fetch32();
  const ret2 = c.rip;
  c.push(size, size === 2 ? ret2 & 65535 : ret2 | 0);
  c.rip = size === 2 ? ret2 + d & 65535 : ret2 + d >>> 0;
});
function ret(c, release) {
  if (c.mode64 && c.opsize !== 2 && release === 0) {
    const spLo = c.gpr[8], spHi = c.gpr[9];
    const lo = c.readLin(spHi * TWO322 + (spLo >>> 0), 8);
    const target2 = num64(lo, c.hi);
    if (target2 < -TWO472 || target2 >= TWO472) c.gp(0);
    if (spLo >>> 0 > 4294967287) c.gpr[9] = spHi + 1 | 0;
    c.gpr[8] = spLo + 8 | 0;
    c.rip = target2;
    return;
  }
  const size = c.stackOpsize();
  let target;
  if (size === 8) {
    const lo = c.peekStack(0, 8);
    target = num64(lo, c.hi);
    if (target < -TWO472 || target >= TWO472) c.gp(0);
  } else {
    const v = c.peekStack(0, size);
    target = size === 2 ? v : v >>> 0;
  }
  c.setSp(c.getSp() + size + release);
  c.rip = target;
}
def1(195, (c) => ret(c, 0));
def1(194, (c) => {
  const n = c.fetch16();
  ret(c, n);
});
function decCounter(c) {
  const a = c.adsize;
  const lo = c.gpr[2];
  if (a === 2) {
    const v2 = lo - 1 & 65535;
    c.gpr[2] = lo & ~65535 | v2;
    return v2 !== 0;
  }
  const v = lo - 1 | 0;
  c.gpr[2] = v;
  if (a === 4) {
    if (c.mode64) c.gpr[3] = 0;
    return v !== 0;
  }
  if (lo === 0) c.gpr[3] = c.gpr[3] - 1 | 0;
  return v !== 0 || c.gpr[3] !== 0;
}
def1(224, (c) => {
  const d = c.fetchS8();
  if (decCounter(c) && !c.getZF()) branchTo(c, c.rip + d);
});
def1(225, (c) => {
  const d = c.fetchS8();
  if (decCounter(c) && c.getZF()) branchTo(c, c.rip + d);
});
def1(226, (c) => {
  const d = c.fetchS8();
  if (decCounter(c)) branchTo(c, c.rip + d);
});
def1(227, (c) => {
  const d = c.fetchS8();
  const a = c.adsize;
  const zero = a === 2 ? (c.gpr[2] & 65535) === 0 : a === 4 ? c.gpr[2] === 0 : c.gpr[2] === 0 && c.gpr[3] === 0;
  if (zero) branchTo(c, c.rip + d);
});

// src/cpu/soft/ops/alu-common.ts
var PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let b = i, p = 1;
  while (b) {
    p ^= b & 1;
    b >>= 1;
  }
  PARITY[i] = p ? PF : 0;
}
var MASK = [0, 255, 65535, 0, 4294967295];
var SIGN = [0, 128, 32768, 0, 2147483648];
var out = { hi: 0, hi2lo: 0, hi2hi: 0, qLo: 0, qHi: 0, remLo: 0, remHi: 0 };
function szp(size, lo, hi) {
  let f = PARITY[lo & 255];
  if (size === 8) {
    if (lo === 0 && hi === 0) f |= ZF;
    if (hi < 0) f |= SF;
    return f;
  }
  if ((lo & MASK[size]) === 0) f |= ZF;
  if (lo & SIGN[size]) f |= SF;
  return f;
}
function setSomeFlags(cpu2, mask, bits) {
  cpu2.settleFlags();
  cpu2.flags = cpu2.flags & ~mask | bits & mask;
}
function noLock(cpu2) {
  if (cpu2.lock) cpu2.ud();
}
function shl64(lo, hi, c) {
  if (c === 0) {
    out.hi = hi;
    return lo;
  }
  if (c < 32) {
    out.hi = hi << c | lo >>> 32 - c;
    return lo << c;
  }
  out.hi = c === 64 ? 0 : lo << c - 32;
  return 0;
}
function shr64(lo, hi, c) {
  if (c === 0) {
    out.hi = hi;
    return lo;
  }
  if (c < 32) {
    out.hi = hi >>> c | 0;
    return lo >>> c | hi << 32 - c;
  }
  out.hi = 0;
  return c === 64 ? 0 : hi >>> c - 32 | 0;
}
function sar64(lo, hi, c) {
  if (c === 0) {
    out.hi = hi;
    return lo;
  }
  if (c < 32) {
    out.hi = hi >> c;
    return lo >>> c | hi << 32 - c;
  }
  out.hi = hi >> 31;
  return hi >> c - 32;
}
function bit64(lo, hi, i) {
  return i < 32 ? lo >>> i & 1 : hi >>> i - 32 & 1;
}
function mulU32(a, b) {
  const a0 = a & 65535, a1 = a >>> 16, b0 = b & 65535, b1 = b >>> 16;
  const p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0;
  const mid = (p00 >>> 16) + (p01 & 65535) + (p10 & 65535);
  out.hi = a1 * b1 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) | 0;
  return mid << 16 | p00 & 65535 | 0;
}
function mul64(al, ah, bl, bh, signed) {
  const p = ((signed ? ah : ah >>> 0) * TWO32 + (al >>> 0)) * ((signed ? bh : bh >>> 0) * TWO32 + (bl >>> 0));
  if (p < 9007199254740992 && p > -9007199254740992) {
    out.hi = Math.floor(p / TWO32) | 0;
    out.hi2lo = out.hi2hi = p < 0 ? -1 : 0;
    return p | 0;
  }
  const w0 = mulU32(al >>> 0, bl >>> 0), h0 = out.hi >>> 0;
  const l1 = mulU32(al >>> 0, bh >>> 0) >>> 0, h1 = out.hi >>> 0;
  const l2 = mulU32(ah >>> 0, bl >>> 0) >>> 0, h2 = out.hi >>> 0;
  const l3 = mulU32(ah >>> 0, bh >>> 0) >>> 0, h3 = out.hi >>> 0;
  const s1 = h0 + l1 + l2;
  const c1 = Math.floor(s1 / TWO32);
  const s2 = h1 + h2 + l3 + c1;
  const c2 = Math.floor(s2 / TWO32);
  let w2 = s2 >>> 0, w3 = h3 + c2 >>> 0;
  if (signed) {
    if (ah < 0) {
      const t = (w2 >>> 0) - (bl >>> 0);
      w2 = t >>> 0;
      w3 = w3 - (bh >>> 0) - (t < 0 ? 1 : 0) >>> 0;
    }
    if (bh < 0) {
      const t = (w2 >>> 0) - (al >>> 0);
      w2 = t >>> 0;
      w3 = w3 - (ah >>> 0) - (t < 0 ? 1 : 0) >>> 0;
    }
  }
  out.hi = s1 | 0;
  out.hi2lo = w2 | 0;
  out.hi2hi = w3 | 0;
  return w0;
}
function divWord(r, w, d) {
  let t = r * 65536 + (w >>> 16);
  const qh = Math.floor(t / d);
  r = t - qh * d;
  t = r * 65536 + (w & 65535);
  const ql = Math.floor(t / d);
  out.remLo = t - ql * d;
  return qh << 16 | ql | 0;
}
function udiv128(n3, n2, n1, n0, dh, dl) {
  if (dh === 0) {
    const d2 = dl >>> 0;
    if (d2 === 0 || n3 !== 0 || n2 >>> 0 >= d2) return false;
    const qh = divWord(n2 >>> 0, n1, d2);
    const ql = divWord(out.remLo, n0, d2);
    out.qLo = ql;
    out.qHi = qh;
    out.remHi = 0;
    out.remLo |= 0;
    return true;
  }
  const u = (v) => BigInt(v >>> 0);
  const n = u(n3) << 96n | u(n2) << 64n | u(n1) << 32n | u(n0);
  const d = u(dh) << 32n | u(dl);
  if (n >> 64n >= d) return false;
  const q = n / d, r = n % d;
  out.qLo = Number(q & 0xffffffffn) | 0;
  out.qHi = Number(q >> 32n) | 0;
  out.remLo = Number(r & 0xffffffffn) | 0;
  out.remHi = Number(r >> 32n) | 0;
  return true;
}

// src/cpu/soft/ops/alu-shift.ts
var ROL = 0;
var ROR = 1;
var RCL = 2;
var SHL = 4;
var SHR = 5;
var SAL6 = 6;
var SAR = 7;
function shift32(cpu2, op, size, v, c) {
  const bits = size * 8;
  const mask = MASK[size];
  const msb = SIGN[size];
  let r, cf;
  switch (op) {
    case SHL:
    case SAL6:
      r = v << c & mask;
      cf = c <= bits ? v >>> bits - c & 1 : 0;
      cpu2.setArith(shiftFlags(size, r, cf, (r & msb ? 1 : 0) ^ cf));
      return size === 4 ? r | 0 : r;
    case SHR:
      r = (v & mask) >>> c;
      cf = (v & mask) >>> c - 1 & 1;
      cpu2.setArith(shiftFlags(size, r, cf, topTwo(r, bits)));
      return size === 4 ? r | 0 : r;
    case SAR: {
      const sv = size === 1 ? v << 24 >> 24 : size === 2 ? v << 16 >> 16 : v;
      r = sv >> c & mask;
      cf = sv >> c - 1 & 1;
      cpu2.setArith(shiftFlags(size, r, cf, 0));
      return size === 4 ? r | 0 : r;
    }
    case ROL: {
      const t = c & bits - 1;
      v &= mask;
      r = t ? (v << t | v >>> bits - t) & mask : v;
      cf = r & 1;
      setSomeFlags(cpu2, CF | OF, cf | ((r & msb ? 1 : 0) ^ cf ? OF : 0));
      return size === 4 ? r | 0 : r;
    }
    case ROR: {
      const t = c & bits - 1;
      v &= mask;
      r = t ? (v >>> t | v << bits - t) & mask : v;
      cf = r & msb ? 1 : 0;
      setSomeFlags(cpu2, CF | OF, cf | (topTwo(r, bits) ? OF : 0));
      return size === 4 ? r | 0 : r;
    }
    case RCL: {
      const t = size === 1 ? c % 9 : size === 2 ? c % 17 : c;
      const cin = cpu2.getCF() ? 1 : 0;
      v &= mask;
      if (t === 0) {
        r = v;
        cf = cin;
      } else if (size === 4) {
        r = v << t | cin << t - 1 | (t === 1 ? 0 : v >>> 33 - t);
        cf = v >>> 32 - t & 1;
      } else {
        const x = cin << bits | v;
        const w = (x << t | x >>> bits + 1 - t) & (mask << 1 | 1);
        r = w & mask;
        cf = w >>> bits & 1;
      }
      setSomeFlags(cpu2, CF | OF, cf | ((r & msb ? 1 : 0) ^ cf ? OF : 0));
      return size === 4 ? r | 0 : r;
    }
    default: {
      const t = size === 1 ? c % 9 : size === 2 ? c % 17 : c;
      const cin = cpu2.getCF() ? 1 : 0;
      v &= mask;
      if (t === 0) {
        r = v;
        cf = cin;
      } else if (size === 4) {
        r = v >>> t | cin << 32 - t | (t === 1 ? 0 : v << 33 - t);
        cf = v >>> t - 1 & 1;
      } else {
        const x = cin << bits | v;
        const w = (x >>> t | x << bits + 1 - t) & (mask << 1 | 1);
        r = w & mask;
        cf = w >>> bits & 1;
      }
      setSomeFlags(cpu2, CF | OF, cf | (topTwo(r, bits) ? OF : 0));
      return size === 4 ? r | 0 : r;
    }
  }
}
function topTwo(r, bits) {
  return (r >>> bits - 1 ^ r >>> bits - 2) & 1;
}
function shiftFlags(size, r, cf, of) {
  return szp(size, r, 0) | cf | AF | (of ? OF : 0);
}
function shift64(cpu2, op, lo, hi, c) {
  let rl, rh, cf;
  switch (op) {
    case SHL:
    case SAL6:
      rl = shl64(lo, hi, c);
      rh = out.hi;
      cf = bit64(lo, hi, 64 - c);
      cpu2.setArith(szp(8, rl, rh) | cf | AF | (rh >>> 31 ^ cf ? OF : 0));
      break;
    case SHR:
      rl = shr64(lo, hi, c);
      rh = out.hi;
      cf = bit64(lo, hi, c - 1);
      cpu2.setArith(szp(8, rl, rh) | cf | AF | (topTwo(rh, 32) ? OF : 0));
      break;
    case SAR:
      rl = sar64(lo, hi, c);
      rh = out.hi;
      cf = bit64(lo, hi, c - 1);
      cpu2.setArith(szp(8, rl, rh) | cf | AF);
      break;
    case ROL:
      rl = shl64(lo, hi, c) | shr64(lo, hi, 64 - c);
      rh = rotHi(lo, hi, c);
      cf = rl & 1;
      setSomeFlags(cpu2, CF | OF, cf | (rh >>> 31 ^ cf ? OF : 0));
      break;
    case ROR:
      rl = shr64(lo, hi, c) | shl64(lo, hi, 64 - c);
      rh = rotHi(lo, hi, 64 - c);
      cf = rh >>> 31;
      setSomeFlags(cpu2, CF | OF, cf | (topTwo(rh, 32) ? OF : 0));
      break;
    case RCL: {
      const cin = cpu2.getCF() ? 1 : 0;
      rl = shl64(lo, hi, c);
      rh = out.hi;
      const cl = shl64(cin, 0, c - 1), ch = out.hi;
      const ql = shr64(lo, hi, 65 - c), qh = out.hi;
      rl = rl | cl | ql;
      rh = rh | ch | qh;
      cf = bit64(lo, hi, 64 - c);
      setSomeFlags(cpu2, CF | OF, cf | (rh >>> 31 ^ cf ? OF : 0));
      break;
    }
    default: {
      const cin = cpu2.getCF() ? 1 : 0;
      rl = shr64(lo, hi, c);
      rh = out.hi;
      const cl = shl64(cin, 0, 64 - c), ch = out.hi;
      const ql = shl64(lo, hi, 65 - c), qh = out.hi;
      rl = rl | cl | ql;
      rh = rh | ch | qh;
      cf = bit64(lo, hi, c - 1);
      setSomeFlags(cpu2, CF | OF, cf | (topTwo(rh, 32) ? OF : 0));
    }
  }
  out.hi = rh;
  return rl;
}
function rotHi(lo, hi, c) {
  shl64(lo, hi, c);
  const a = out.hi;
  shr64(lo, hi, 64 - c);
  return a | out.hi;
}
function group2(cpu2, size, count) {
  const op = cpu2.modrm >> 3 & 7;
  const c = count & (size === 8 ? 63 : 31);
  const reg = cpu2.mod === 3;
  if (cpu2.lock) cpu2.ud();
  let lin = 0, v;
  if (reg) v = cpu2.getReg(size, cpu2.rm);
  else {
    lin = cpu2.eaLinear();
    v = cpu2.readLin(lin, size);
  }
  const vh = cpu2.hi;
  if (c === 0) {
    if (reg && size === 4) cpu2.gpr[2 * cpu2.rm + 1] = 0;
    return;
  }
  cpu2.settleFlags();
  const savedFlags = cpu2.flags;
  let r, rh = 0;
  if (size === 8) {
    r = shift64(cpu2, op, v, vh, c);
    rh = out.hi;
  } else r = shift32(cpu2, op, size, v, c);
  if (reg) {
    cpu2.setReg(size, cpu2.rm, r, rh);
    return;
  }
  const newFlags = cpu2.flags;
  cpu2.flags = savedFlags;
  cpu2.writeLin(lin, size, r, rh);
  cpu2.flags = newFlags;
}
def1(192, (cpu2) => {
  const size = cpu2.opcode & 1 ? cpu2.opsize : 1;
  cpu2.decodeModrm();
  group2(cpu2, size, cpu2.fetch8());
}, 193);
def1(208, (cpu2) => {
  const size = cpu2.opcode & 1 ? cpu2.opsize : 1;
  cpu2.decodeModrm();
  group2(cpu2, size, 1);
}, 209);
def1(210, (cpu2) => {
  const size = cpu2.opcode & 1 ? cpu2.opsize : 1;
  cpu2.decodeModrm();
  group2(cpu2, size, cpu2.gpr[2] & 255);
}, 211);
function doubleShift(cpu2, right, size, d, dh, s, sh, c) {
  let r, rh = 0, cf, of;
  if (size === 8) {
    if (right) {
      r = shr64(d, dh, c) | shl64(s, sh, 64 - c);
      rh = (shr64(d, dh, c), out.hi) | (shl64(s, sh, 64 - c), out.hi);
      cf = bit64(d, dh, c - 1);
      of = topTwo(rh, 32);
    } else {
      r = shl64(d, dh, c) | shr64(s, sh, 64 - c);
      rh = (shl64(d, dh, c), out.hi) | (shr64(s, sh, 64 - c), out.hi);
      cf = bit64(d, dh, 64 - c);
      of = rh >>> 31 ^ cf;
    }
    cpu2.setArith(szp(8, r, rh) | cf | AF | (of ? OF : 0));
    out.hi = rh;
    return r;
  }
  if (size === 4) {
    if (right) {
      r = d >>> c | s << 32 - c;
      cf = d >>> c - 1 & 1;
      of = topTwo(r, 32);
    } else {
      r = d << c | s >>> 32 - c;
      cf = d >>> 32 - c & 1;
      of = r >>> 31 ^ cf;
    }
  } else if (right) {
    if (c <= 16) {
      r = (d >>> c | s << 16 - c) & 65535;
      cf = d >>> c - 1 & 1;
    } else {
      r = (s >>> c - 16 | s << 32 - c) & 65535;
      cf = 0;
    }
    of = topTwo(r, 16);
  } else if (c < 16) {
    r = (d << c | s >>> 16 - c) & 65535;
    cf = d >>> 16 - c & 1;
    of = r >>> 15 ^ cf;
  } else if (c === 16) {
    r = s;
    cf = d & 1;
    of = cf;
  } else {
    r = (s << c - 16 | s >>> 32 - c) & 65535;
    cf = 0;
    of = 0;
  }
  cpu2.setArith(szp(size, r, 0) | cf | AF | (of ? OF : 0));
  out.hi = 0;
  return r;
}
function shiftDouble(cpu2, right, count) {
  const size = cpu2.opsize;
  const c = count & (size === 8 ? 63 : 31);
  const reg = cpu2.mod === 3;
  if (cpu2.lock) cpu2.ud();
  const s = cpu2.getReg(size, cpu2.reg), sh = cpu2.hi;
  let lin = 0, d;
  if (reg) d = cpu2.getReg(size, cpu2.rm);
  else {
    lin = cpu2.eaLinear();
    d = cpu2.readLin(lin, size);
  }
  const dh = cpu2.hi;
  if (c === 0) {
    if (reg && size === 4) cpu2.gpr[2 * cpu2.rm + 1] = 0;
    return;
  }
  cpu2.settleFlags();
  const savedFlags = cpu2.flags;
  const r = doubleShift(cpu2, right, size, d, dh, s, sh, c), rh = out.hi;
  if (reg) {
    cpu2.setReg(size, cpu2.rm, r, rh);
    return;
  }
  const newFlags = cpu2.flags;
  cpu2.flags = savedFlags;
  cpu2.writeLin(lin, size, r, rh);
  cpu2.flags = newFlags;
}
def0f(164, (cpu2) => {
  cpu2.decodeModrm();
  shiftDouble(cpu2, false, cpu2.fetch8());
});
def0f(165, (cpu2) => {
  cpu2.decodeModrm();
  shiftDouble(cpu2, false, cpu2.gpr[2] & 255);
});
def0f(172, (cpu2) => {
  cpu2.decodeModrm();
  shiftDouble(cpu2, true, cpu2.fetch8());
});
def0f(173, (cpu2) => {
  cpu2.decodeModrm();
  shiftDouble(cpu2, true, cpu2.gpr[2] & 255);
});

// src/cpu/soft/ops/alu-bits.ts
var BT = 0;
var BTS = 1;
var BTR = 2;
var BTC = 3;
function bitOp(cpu2, kind, size, bit, delta) {
  const reg = cpu2.mod === 3;
  if (cpu2.lock && (reg || kind === BT)) cpu2.ud();
  let lin = 0, lo;
  if (reg) lo = cpu2.getReg(size, cpu2.rm);
  else {
    lin = cpu2.eaLinear(delta);
    lo = cpu2.readLin(lin, size);
  }
  let hi = cpu2.hi;
  let cf;
  if (bit < 32) {
    const m = 1 << bit;
    cf = lo >>> bit & 1;
    if (kind === BTS) lo |= m;
    else if (kind === BTR) lo &= ~m;
    else if (kind === BTC) lo ^= m;
  } else {
    const m = 1 << bit - 32;
    cf = hi >>> bit - 32 & 1;
    if (kind === BTS) hi |= m;
    else if (kind === BTR) hi &= ~m;
    else if (kind === BTC) hi ^= m;
  }
  if (kind !== BT) {
    if (size === 2) lo &= 65535;
    if (reg) cpu2.setReg(size, cpu2.rm, lo, hi);
    else cpu2.writeLin(lin, size, lo, hi);
  }
  setSomeFlags(cpu2, CF, cf);
}
function bitOpReg(cpu2) {
  const kind = cpu2.opcode >> 3 & 3;
  cpu2.decodeModrm();
  const size = cpu2.opsize;
  const off = cpu2.getReg(size, cpu2.reg);
  const bits = size * 8;
  if (cpu2.mod === 3) {
    bitOp(cpu2, kind, size, off & bits - 1, 0);
    return;
  }
  let delta;
  if (size === 8) {
    const offNum = cpu2.hi * TWO32 + (off >>> 0);
    delta = Math.floor(offNum / 64) * 8;
  } else {
    const signed = size === 2 ? off << 16 >> 16 : off;
    delta = (signed >> (size === 2 ? 4 : 5)) * size;
  }
  bitOp(cpu2, kind, size, off & bits - 1, delta);
}
def0f(163, bitOpReg);
def0f(171, bitOpReg);
def0f(179, bitOpReg);
def0f(187, bitOpReg);
def0f(186, (cpu2) => {
  cpu2.decodeModrm();
  const op = cpu2.modrm >> 3 & 7;
  if (op < 4) cpu2.ud();
  const size = cpu2.opsize;
  const bit = cpu2.fetch8() & size * 8 - 1;
  bitOp(cpu2, op - 4, size, bit, 0);
});
function bitScan(cpu2) {
  noLock(cpu2);
  cpu2.decodeModrm();
  const size = cpu2.opsize;
  let lo = cpu2.readRm(size);
  let hi = size === 8 ? cpu2.hi : 0;
  if (size === 2) lo &= 65535;
  if (lo === 0 && hi === 0) {
    cpu2.setArith(ZF | PF);
    return;
  }
  let idx;
  if (cpu2.opcode === 444) {
    idx = lo !== 0 ? 31 - Math.clz32(lo & -lo) : 63 - Math.clz32(hi & -hi);
  } else {
    idx = hi !== 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(lo);
  }
  cpu2.setReg(size, cpu2.reg, idx, 0);
  cpu2.setArith(PARITY[idx]);
}
def0f(188, bitScan, 189);
function popcount32(v) {
  v = v - (v >>> 1 & 1431655765);
  v = (v & 858993459) + (v >>> 2 & 858993459);
  return Math.imul(v + (v >>> 4) & 252645135, 16843009) >>> 24;
}
def0f(184, (cpu2) => {
  if (cpu2.rep !== 243) cpu2.ud();
  noLock(cpu2);
  cpu2.decodeModrm();
  const size = cpu2.opsize;
  let lo = cpu2.readRm(size);
  const hi = size === 8 ? cpu2.hi : 0;
  if (size === 2) lo &= 65535;
  const n = popcount32(lo) + popcount32(hi);
  cpu2.setReg(size, cpu2.reg, n, 0);
  cpu2.setArith(n === 0 ? ZF : 0);
});

// src/cpu/soft/ops/alu-muldiv.ts
function setMulFlags(cpu2, overflow) {
  setSomeFlags(cpu2, CF | OF, overflow ? CF | OF : 0);
}
function setDivFlags(cpu2) {
  setSomeFlags(cpu2, SF | ZF | PF | AF, AF);
}
function divideError(cpu2) {
  return cpu2.fault(EXC_DE);
}
function group3(cpu2) {
  const size = cpu2.opcode & 1 ? cpu2.opsize : 1;
  cpu2.decodeModrm();
  const op = cpu2.modrm >> 3 & 7;
  if (op === 2 || op === 3) {
    notNeg(cpu2, size, op === 3);
    return;
  }
  noLock(cpu2);
  if (op < 2) {
    const s = cpu2.fetchImm(size), sh = cpu2.hi;
    const d = cpu2.readRm(size);
    cpu2.setLazy(5 /* Logic */, size, 0, 0, d & s, 0, 0, cpu2.hi & sh);
    return;
  }
  const v = cpu2.readRm(size), vh = cpu2.hi;
  switch (op) {
    case 4:
      mul(cpu2, size, v, vh);
      return;
    case 5:
      imul1(cpu2, size, v, vh);
      return;
    case 6:
      div(cpu2, size, v, vh);
      return;
    default:
      idiv(cpu2, size, v, vh);
  }
}
def1(246, group3, 247);
function notNeg(cpu2, size, neg) {
  const reg = cpu2.mod === 3;
  if (reg && cpu2.lock) cpu2.ud();
  let lin = 0, v;
  if (reg) v = cpu2.getReg(size, cpu2.rm);
  else {
    lin = cpu2.eaLinear();
    v = cpu2.readLin(lin, size);
  }
  const vh = cpu2.hi;
  let r, rh = 0;
  if (!neg) {
    r = ~v;
    rh = ~vh;
    if (size < 4) r &= size === 1 ? 255 : 65535;
  } else if (size === 8) {
    r = -v | 0;
    rh = -vh - (v !== 0 ? 1 : 0) | 0;
  } else {
    r = -v | 0;
    if (size < 4) r &= size === 1 ? 255 : 65535;
  }
  if (reg) cpu2.setReg(size, cpu2.rm, r, rh);
  else cpu2.writeLin(lin, size, r, rh);
  if (neg) cpu2.setLazy(3 /* Sub */, size, 0, v, r, 0, vh, rh);
}
function mul(cpu2, size, v, vh) {
  const R = cpu2.gpr;
  switch (size) {
    case 1: {
      const p = (R[0] & 255) * v;
      cpu2.setReg(2, 0, p);
      setMulFlags(cpu2, p > 255);
      return;
    }
    case 2: {
      const p = (R[0] & 65535) * v;
      cpu2.setReg(2, 0, p & 65535);
      cpu2.setReg(2, 2, p >>> 16);
      setMulFlags(cpu2, p > 65535);
      return;
    }
    case 4: {
      const lo = mulU32(R[0] >>> 0, v >>> 0), hi = out.hi;
      cpu2.setReg(4, 0, lo);
      cpu2.setReg(4, 2, hi);
      setMulFlags(cpu2, hi !== 0);
      return;
    }
    default: {
      const lo = mul64(R[0], cpu2.gpr[1], v, vh, false);
      const hi = out.hi, w2 = out.hi2lo, w3 = out.hi2hi;
      cpu2.setReg(8, 0, lo, hi);
      cpu2.setReg(8, 2, w2, w3);
      setMulFlags(cpu2, w2 !== 0 || w3 !== 0);
    }
  }
}
function imul1(cpu2, size, v, vh) {
  const R = cpu2.gpr;
  switch (size) {
    case 1: {
      const p = (R[0] << 24 >> 24) * (v << 24 >> 24);
      cpu2.setReg(2, 0, p & 65535);
      setMulFlags(cpu2, p < -128 || p > 127);
      return;
    }
    case 2: {
      const p = (R[0] << 16 >> 16) * (v << 16 >> 16);
      cpu2.setReg(2, 0, p & 65535);
      cpu2.setReg(2, 2, p >> 16 & 65535);
      setMulFlags(cpu2, p < -32768 || p > 32767);
      return;
    }
    case 4: {
      const a = R[0];
      const lo = mulU32(a >>> 0, v >>> 0);
      const hi = out.hi - (a < 0 ? v : 0) - (v < 0 ? a : 0) | 0;
      cpu2.setReg(4, 0, lo);
      cpu2.setReg(4, 2, hi);
      setMulFlags(cpu2, hi !== lo >> 31);
      return;
    }
    default: {
      const lo = mul64(R[0], cpu2.gpr[1], v, vh, true);
      const hi = out.hi, w2 = out.hi2lo, w3 = out.hi2hi;
      cpu2.setReg(8, 0, lo, hi);
      cpu2.setReg(8, 2, w2, w3);
      setMulFlags(cpu2, w2 !== hi >> 31 || w3 !== hi >> 31);
    }
  }
}
function div(cpu2, size, v, vh) {
  const R = cpu2.gpr;
  switch (size) {
    case 1: {
      if (v === 0) divideError(cpu2);
      const n = R[0] & 65535;
      const q = Math.floor(n / v);
      if (q > 255) divideError(cpu2);
      cpu2.setReg(2, 0, n - q * v << 8 | q);
      break;
    }
    case 2: {
      if (v === 0) divideError(cpu2);
      const n = (R[4] & 65535) * 65536 + (R[0] & 65535);
      const q = Math.floor(n / v);
      if (q > 65535) divideError(cpu2);
      cpu2.setReg(2, 0, q);
      cpu2.setReg(2, 2, n - q * v);
      break;
    }
    case 4: {
      const d = v >>> 0;
      if (d === 0 || R[4] >>> 0 >= d) divideError(cpu2);
      const q = divWord(R[4] >>> 0, R[0], d);
      cpu2.setReg(4, 0, q);
      cpu2.setReg(4, 2, out.remLo | 0);
      break;
    }
    default: {
      if (!udiv128(R[5], R[4], R[1], R[0], vh, v)) divideError(cpu2);
      const ql = out.qLo, qh = out.qHi;
      cpu2.setReg(8, 0, ql, qh);
      cpu2.setReg(8, 2, out.remLo, out.remHi);
    }
  }
  setDivFlags(cpu2);
}
function idiv(cpu2, size, v, vh) {
  const R = cpu2.gpr;
  switch (size) {
    case 1: {
      const d = v << 24 >> 24;
      if (d === 0) divideError(cpu2);
      const n = R[0] << 16 >> 16;
      const q = Math.trunc(n / d);
      if (q > 127 || q < -128) divideError(cpu2);
      cpu2.setReg(2, 0, (n - q * d & 255) << 8 | q & 255);
      break;
    }
    case 2: {
      const d = v << 16 >> 16;
      if (d === 0) divideError(cpu2);
      const n = R[4] << 16 | R[0] & 65535;
      const q = Math.trunc(n / d);
      if (q > 32767 || q < -32768) divideError(cpu2);
      cpu2.setReg(2, 0, q & 65535);
      cpu2.setReg(2, 2, n - q * d & 65535);
      break;
    }
    case 4: {
      if (v === 0) divideError(cpu2);
      let nh = R[4], nl = R[0];
      const nNeg = nh < 0;
      if (nNeg) {
        nl = -nl | 0;
        nh = ~nh + (nl === 0 ? 1 : 0) | 0;
      }
      const dNeg = v < 0;
      const d = dNeg ? -v >>> 0 : v >>> 0;
      if (nh >>> 0 >= d) divideError(cpu2);
      const q = divWord(nh >>> 0, nl, d) >>> 0;
      const r = out.remLo;
      const qNeg = nNeg !== dNeg;
      if (q > (qNeg ? 2147483648 : 2147483647)) divideError(cpu2);
      cpu2.setReg(4, 0, qNeg ? -q | 0 : q | 0);
      cpu2.setReg(4, 2, nNeg ? -r | 0 : r | 0);
      break;
    }
    default: {
      let n3 = R[5], n2 = R[4], n1 = R[1], n0 = R[0];
      const nNeg = n3 < 0;
      if (nNeg) {
        n0 = ~n0;
        n1 = ~n1;
        n2 = ~n2;
        n3 = ~n3;
        n0 = n0 + 1 | 0;
        if (n0 === 0) {
          n1 = n1 + 1 | 0;
          if (n1 === 0) {
            n2 = n2 + 1 | 0;
            if (n2 === 0) n3 = n3 + 1 | 0;
          }
        }
      }
      const dNeg = vh < 0;
      let dl = v, dh = vh;
      if (dNeg) {
        dl = -v | 0;
        dh = ~vh + (dl === 0 ? 1 : 0) | 0;
      }
      if (!udiv128(n3, n2, n1, n0, dh, dl)) divideError(cpu2);
      let ql = out.qLo, qh = out.qHi;
      let rl = out.remLo, rh = out.remHi;
      const qNeg = nNeg !== dNeg;
      if (qh < 0 && !(qNeg && qh === (2147483648 | 0) && ql === 0)) divideError(cpu2);
      if (qNeg) {
        ql = -ql | 0;
        qh = ~qh + (ql === 0 ? 1 : 0) | 0;
      }
      if (nNeg) {
        rl = -rl | 0;
        rh = ~rh + (rl === 0 ? 1 : 0) | 0;
      }
      cpu2.setReg(8, 0, ql, qh);
      cpu2.setReg(8, 2, rl, rh);
    }
  }
  setDivFlags(cpu2);
}
function imulTrunc(cpu2, size, reg, a, ah, b, bh) {
  switch (size) {
    case 2: {
      const p = (a << 16 >> 16) * (b << 16 >> 16);
      cpu2.setReg(2, reg, p & 65535);
      setMulFlags(cpu2, p < -32768 || p > 32767);
      return;
    }
    case 4: {
      const p = a * b;
      cpu2.setReg(4, reg, Math.imul(a, b));
      setMulFlags(cpu2, p > 2147483647 || p < -2147483648);
      return;
    }
    default: {
      const lo = mul64(a, ah, b, bh, true);
      const hi = out.hi;
      const of = out.hi2lo !== hi >> 31 || out.hi2hi !== hi >> 31;
      cpu2.setReg(8, reg, lo, hi);
      setMulFlags(cpu2, of);
    }
  }
}
def0f(175, (cpu2) => {
  noLock(cpu2);
  cpu2.decodeModrm();
  const size = cpu2.opsize;
  const b = cpu2.readRm(size), bh = cpu2.hi;
  const a = cpu2.getReg(size, cpu2.reg), ah = cpu2.hi;
  imulTrunc(cpu2, size, cpu2.reg, a, ah, b, bh);
});
def1(105, (cpu2) => {
  noLock(cpu2);
  cpu2.decodeModrm();
  const size = cpu2.opsize;
  const imm = cpu2.fetchImm(size), immh = cpu2.hi;
  const a = cpu2.readRm(size);
  imulTrunc(cpu2, size, cpu2.reg, a, cpu2.hi, imm, immh);
});
def1(107, (cpu2) => {
  noLock(cpu2);
  cpu2.decodeModrm();
  const size = cpu2.opsize;
  const imm = cpu2.fetchS8();
  const a = cpu2.readRm(size);
  imulTrunc(cpu2, size, cpu2.reg, a, cpu2.hi, imm, imm >> 31);
});

// src/cpu/soft/ops/fpu-state.ts
var F80 = 10;

// src/cpu/soft/ops/sse-common.ts
var MX_IE = 1 << 0;
var MX_DE = 1 << 1;
var MX_ZE = 1 << 2;
var MX_OE = 1 << 3;
var MX_UE = 1 << 4;
var MX_PE = 1 << 5;
var MX_DAZ = 1 << 6;
var MX_UM = 1 << 11;
var MX_FTZ = 1 << 15;
function views(buf) {
  return {
    u8: new Uint8Array(buf),
    i8: new Int8Array(buf),
    u16: new Uint16Array(buf),
    i16: new Int16Array(buf),
    i32: new Int32Array(buf),
    u32: new Uint32Array(buf),
    f32: new Float32Array(buf),
    f64: new Float64Array(buf)
  };
}
var D = views(new ArrayBuffer(16));
var S = views(new ArrayBuffer(16));
var T = views(new ArrayBuffer(16));
function sseCheck(cpu2) {
  if (cpu2.cr0 & CR0_EM || !(cpu2.cr4 & CR4_OSFXSR) || cpu2.lock) cpu2.ud();
  if (cpu2.cr0 & CR0_TS) cpu2.fault(EXC_NM);
}
function mmxCheck(cpu2) {
  if (cpu2.cr0 & CR0_EM || cpu2.lock) cpu2.ud();
  if (cpu2.cr0 & CR0_TS) cpu2.fault(EXC_NM);
}
function loadXmm(dst, reg, cpu2) {
  const x = cpu2.fpu.xi32, o = reg << 2;
  dst[0] = x[o];
  dst[1] = x[o + 1];
  dst[2] = x[o + 2];
  dst[3] = x[o + 3];
}
function storeXmm(src, reg, cpu2) {
  const x = cpu2.fpu.xi32, o = reg << 2;
  x[o] = src[0];
  x[o + 1] = src[1];
  x[o + 2] = src[2];
  x[o + 3] = src[3];
}
function mmxTransition(cpu2) {
  cpu2.fpu.top = 0;
  cpu2.fpu.tagValid = 255;
}
function loadMm(dst, n, cpu2) {
  const v = cpu2.fpu.regsView, o = (n & 7) * F80;
  dst[0] = v.getInt32(o, true);
  dst[1] = v.getInt32(o + 4, true);
}
function storeMm(lo, hi, n, cpu2) {
  const v = cpu2.fpu.regsView, o = (n & 7) * F80;
  v.setInt32(o, lo, true);
  v.setInt32(o + 4, hi, true);
  v.setUint16(o + 8, 65535, true);
}
function readMem(cpu2, dst, bytes, aligned) {
  const lin = cpu2.eaLinear();
  if (bytes === 4) {
    dst[0] = cpu2.readLin(lin, 4);
    return;
  }
  if (bytes === 8) {
    dst[0] = cpu2.readLin(lin, 8);
    dst[1] = cpu2.hi;
    return;
  }
  if (aligned && lin & 15) cpu2.gp(0);
  const a = cpu2.readLin(lin, 8), b = cpu2.hi;
  const c = cpu2.readLin(cpu2.addLin(lin, 8), 8), d = cpu2.hi;
  dst[0] = a;
  dst[1] = b;
  dst[2] = c;
  dst[3] = d;
}
function writeMem(cpu2, src, bytes, aligned) {
  const lin = cpu2.eaLinear();
  if (bytes === 4) {
    cpu2.writeLin(lin, 4, src[0]);
    return;
  }
  if (bytes === 8) {
    cpu2.writeLin(lin, 8, src[0], src[1]);
    return;
  }
  if (aligned && lin & 15) cpu2.gp(0);
  cpu2.probeWrite(lin, 16);
  cpu2.writeLin(lin, 8, src[0], src[1]);
  cpu2.writeLin(cpu2.addLin(lin, 8), 8, src[2], src[3]);
}
function loadXmmSrc(cpu2, bytes, aligned) {
  if (cpu2.mod === 3) loadXmm(S.i32, cpu2.rm, cpu2);
  else readMem(cpu2, S.i32, bytes, aligned);
}
var INDEF32 = 4290772992 | 0;
var INDEF64_HI = 4294443008 | 0;
var MIN_NORMAL32 = 2 ** -126;
var MIN_NORMAL64 = 2 ** -1022;
var dF32 = new Float32Array(1);
var dI32 = new Int32Array(dF32.buffer);
var cvF = new Float64Array(1);
var cvI = new Int32Array(cvF.buffer);

// src/cpu/soft/ops/sse-int.ts
var lastImm = 0;
var INT_FN = /* @__PURE__ */ new Map();
function intOp(fn, opts = {}) {
  const h = (cpu2) => {
    cpu2.decodeModrm();
    if (opts.imm) lastImm = cpu2.fetch8();
    if (cpu2.rep) cpu2.ud();
    if (cpu2.p66) {
      sseCheck(cpu2);
      loadXmm(D.i32, cpu2.reg, cpu2);
      loadXmmSrc(cpu2, 16, true);
      fn(16);
      storeXmm(D.i32, cpu2.reg, cpu2);
      return;
    }
    if (opts.xmmOnly) cpu2.ud();
    mmxCheck(cpu2);
    loadMm(D.i32, cpu2.reg, cpu2);
    if (cpu2.mod === 3) loadMm(S.i32, cpu2.rm, cpu2);
    else readMem(cpu2, S.i32, 8, false);
    mmxTransition(cpu2);
    fn(8);
    storeMm(D.i32[0], D.i32[1], cpu2.reg, cpu2);
  };
  INT_FN.set(h, fn);
  return h;
}
function copyT(n) {
  for (let i = 0; i < n >> 2; i++) D.i32[i] = T.i32[i];
}
function unpack(e, high) {
  return (n) => {
    const base = high ? n >> 1 : 0, cnt = (n >> 1) / e;
    let o = 0;
    for (let k = 0; k < cnt; k++) {
      for (let j = 0; j < e; j++) T.u8[o++] = D.u8[base + k * e + j];
      for (let j = 0; j < e; j++) T.u8[o++] = S.u8[base + k * e + j];
    }
    copyT(n);
  };
}
def0f(96, intOp(unpack(1, false)));
def0f(97, intOp(unpack(2, false)));
def0f(98, intOp(unpack(4, false)));
def0f(104, intOp(unpack(1, true)));
def0f(105, intOp(unpack(2, true)));
def0f(106, intOp(unpack(4, true)));
def0f(108, intOp(unpack(8, false), { xmmOnly: true }));
def0f(109, intOp(unpack(8, true), { xmmOnly: true }));
var sat8s = (v) => v > 127 ? 127 : v < -128 ? -128 : v;
var sat8u = (v) => v > 255 ? 255 : v < 0 ? 0 : v;
var sat16s = (v) => v > 32767 ? 32767 : v < -32768 ? -32768 : v;
var sat16u = (v) => v > 65535 ? 65535 : v < 0 ? 0 : v;
function packWB(unsigned) {
  return (n) => {
    const w = n >> 1;
    for (let k = 0; k < n; k++) {
      const v = k < w ? D.i16[k] : S.i16[k - w];
      if (unsigned) T.u8[k] = sat8u(v);
      else T.i8[k] = sat8s(v);
    }
    copyT(n);
  };
}
def0f(99, intOp(packWB(false)));
def0f(103, intOp(packWB(true)));
def0f(107, intOp((n) => {
  const d = n >> 2;
  for (let k = 0; k < d * 2; k++) T.i16[k] = sat16s(k < d ? D.i32[k] : S.i32[k - d]);
  copyT(n);
}));
def0f(100, intOp((n) => {
  for (let i = 0; i < n; i++) D.u8[i] = D.i8[i] > S.i8[i] ? 255 : 0;
}));
def0f(101, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.u16[i] = D.i16[i] > S.i16[i] ? 65535 : 0;
}));
def0f(102, intOp((n) => {
  for (let i = 0; i < n >> 2; i++) D.i32[i] = D.i32[i] > S.i32[i] ? -1 : 0;
}));
def0f(116, intOp((n) => {
  for (let i = 0; i < n; i++) D.u8[i] = D.u8[i] === S.u8[i] ? 255 : 0;
}));
def0f(117, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.u16[i] = D.u16[i] === S.u16[i] ? 65535 : 0;
}));
def0f(118, intOp((n) => {
  for (let i = 0; i < n >> 2; i++) D.i32[i] = D.i32[i] === S.i32[i] ? -1 : 0;
}));
def0f(219, intOp((n) => {
  for (let i = 0; i < n >> 2; i++) D.i32[i] &= S.i32[i];
}));
def0f(223, intOp((n) => {
  for (let i = 0; i < n >> 2; i++) D.i32[i] = ~D.i32[i] & S.i32[i];
}));
def0f(235, intOp((n) => {
  for (let i = 0; i < n >> 2; i++) D.i32[i] |= S.i32[i];
}));
def0f(239, intOp((n) => {
  for (let i = 0; i < n >> 2; i++) D.i32[i] ^= S.i32[i];
}));
def0f(252, intOp((n) => {
  for (let i = 0; i < n; i++) D.u8[i] += S.u8[i];
}));
def0f(253, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.u16[i] += S.u16[i];
}));
def0f(254, intOp((n) => {
  for (let i = 0; i < n >> 2; i++) D.i32[i] = D.i32[i] + S.i32[i] | 0;
}));
def0f(248, intOp((n) => {
  for (let i = 0; i < n; i++) D.u8[i] -= S.u8[i];
}));
def0f(249, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.u16[i] -= S.u16[i];
}));
def0f(250, intOp((n) => {
  for (let i = 0; i < n >> 2; i++) D.i32[i] = D.i32[i] - S.i32[i] | 0;
}));
def0f(212, intOp((n) => {
  for (let i = 0; i < n >> 2; i += 2) {
    const a = D.i32[i] >>> 0, b = S.i32[i] >>> 0, lo = a + b >>> 0;
    D.i32[i + 1] = D.i32[i + 1] + S.i32[i + 1] + (lo < a ? 1 : 0) | 0;
    D.i32[i] = lo | 0;
  }
}));
def0f(251, intOp((n) => {
  for (let i = 0; i < n >> 2; i += 2) {
    const a = D.i32[i] >>> 0, b = S.i32[i] >>> 0;
    D.i32[i + 1] = D.i32[i + 1] - S.i32[i + 1] - (a < b ? 1 : 0) | 0;
    D.i32[i] = a - b | 0;
  }
}));
def0f(236, intOp((n) => {
  for (let i = 0; i < n; i++) D.i8[i] = sat8s(D.i8[i] + S.i8[i]);
}));
def0f(237, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.i16[i] = sat16s(D.i16[i] + S.i16[i]);
}));
def0f(232, intOp((n) => {
  for (let i = 0; i < n; i++) D.i8[i] = sat8s(D.i8[i] - S.i8[i]);
}));
def0f(233, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.i16[i] = sat16s(D.i16[i] - S.i16[i]);
}));
def0f(220, intOp((n) => {
  for (let i = 0; i < n; i++) D.u8[i] = sat8u(D.u8[i] + S.u8[i]);
}));
def0f(221, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.u16[i] = sat16u(D.u16[i] + S.u16[i]);
}));
def0f(216, intOp((n) => {
  for (let i = 0; i < n; i++) D.u8[i] = sat8u(D.u8[i] - S.u8[i]);
}));
def0f(217, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.u16[i] = sat16u(D.u16[i] - S.u16[i]);
}));
def0f(218, intOp((n) => {
  for (let i = 0; i < n; i++) if (S.u8[i] < D.u8[i]) D.u8[i] = S.u8[i];
}));
def0f(222, intOp((n) => {
  for (let i = 0; i < n; i++) if (S.u8[i] > D.u8[i]) D.u8[i] = S.u8[i];
}));
def0f(234, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) if (S.i16[i] < D.i16[i]) D.i16[i] = S.i16[i];
}));
def0f(238, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) if (S.i16[i] > D.i16[i]) D.i16[i] = S.i16[i];
}));
def0f(224, intOp((n) => {
  for (let i = 0; i < n; i++) D.u8[i] = D.u8[i] + S.u8[i] + 1 >> 1;
}));
def0f(227, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.u16[i] = D.u16[i] + S.u16[i] + 1 >> 1;
}));
def0f(213, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.u16[i] = Math.imul(D.i16[i], S.i16[i]);
}));
def0f(229, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.u16[i] = D.i16[i] * S.i16[i] >> 16;
}));
def0f(228, intOp((n) => {
  for (let i = 0; i < n >> 1; i++) D.u16[i] = D.u16[i] * S.u16[i] / 65536;
}));
def0f(245, intOp((n) => {
  for (let i = 0; i < n >> 2; i++) D.i32[i] = D.i16[2 * i] * S.i16[2 * i] + D.i16[2 * i + 1] * S.i16[2 * i + 1] | 0;
}));
def0f(244, intOp((n) => {
  for (let i = 0; i < n >> 2; i += 2) {
    const a = D.u32[i], b = S.u32[i];
    const al = a & 65535, ah = a >>> 16, bl = b & 65535, bh = b >>> 16;
    const mid = al * bh + ah * bl;
    let low = al * bl + mid % 65536 * 65536;
    const carry = low >= 4294967296 ? 1 : 0;
    low -= carry * 4294967296;
    D.u32[i] = low;
    D.u32[i + 1] = ah * bh + Math.floor(mid / 65536) + carry;
  }
}));
def0f(246, intOp((n) => {
  for (let g = 0; g < n; g += 8) {
    let sum = 0;
    for (let j = 0; j < 8; j++) sum += Math.abs(D.u8[g + j] - S.u8[g + j]);
    D.i32[g >> 2] = sum;
    D.i32[(g >> 2) + 1] = 0;
  }
}));
function countOf() {
  return S.i32[1] !== 0 || S.i32[0] >>> 0 > 64 ? 64 : S.i32[0];
}
function shiftW(kind, c, n) {
  for (let i = 0; i < n >> 1; i++) {
    if (kind === 1) D.i16[i] = D.i16[i] >> (c > 15 ? 15 : c);
    else if (c > 15) D.u16[i] = 0;
    else D.u16[i] = kind === 0 ? D.u16[i] >>> c : D.u16[i] << c;
  }
}
function shiftD(kind, c, n) {
  for (let i = 0; i < n >> 2; i++) {
    if (kind === 1) D.i32[i] = D.i32[i] >> (c > 31 ? 31 : c);
    else if (c > 31) D.i32[i] = 0;
    else D.i32[i] = kind === 0 ? D.i32[i] >>> c : D.i32[i] << c;
  }
}
function shiftQ(left, c, n) {
  for (let i = 0; i < n >> 2; i += 2) {
    const lo = D.i32[i], hi = D.i32[i + 1];
    let rl, rh;
    if (c > 63) {
      rl = 0;
      rh = 0;
    } else if (c === 0) {
      rl = lo;
      rh = hi;
    } else if (left) {
      if (c >= 32) {
        rh = lo << c - 32;
        rl = 0;
      } else {
        rh = hi << c | lo >>> 32 - c;
        rl = lo << c;
      }
    } else if (c >= 32) {
      rl = hi >>> c - 32;
      rh = 0;
    } else {
      rl = lo >>> c | hi << 32 - c;
      rh = hi >>> c;
    }
    D.i32[i] = rl;
    D.i32[i + 1] = rh;
  }
}
def0f(209, intOp((n) => shiftW(0, countOf(), n)));
def0f(225, intOp((n) => shiftW(1, countOf(), n)));
def0f(241, intOp((n) => shiftW(2, countOf(), n)));
def0f(210, intOp((n) => shiftD(0, countOf(), n)));
def0f(226, intOp((n) => shiftD(1, countOf(), n)));
def0f(242, intOp((n) => shiftD(2, countOf(), n)));
def0f(211, intOp((n) => shiftQ(false, countOf(), n)));
def0f(243, intOp((n) => shiftQ(true, countOf(), n)));
function shiftImm(group) {
  return (cpu2) => {
    cpu2.decodeModrm();
    const c = cpu2.fetch8();
    const r = cpu2.modrm >> 3 & 7;
    if (cpu2.mod !== 3 || cpu2.rep) cpu2.ud();
    const xmm2 = cpu2.p66;
    if (xmm2) {
      sseCheck(cpu2);
      loadXmm(D.i32, cpu2.rm, cpu2);
    } else {
      mmxCheck(cpu2);
      loadMm(D.i32, cpu2.rm, cpu2);
    }
    const n = xmm2 ? 16 : 8;
    if (group === 113 && (r === 2 || r === 4 || r === 6)) shiftW(r === 2 ? 0 : r === 4 ? 1 : 2, c, n);
    else if (group === 114 && (r === 2 || r === 4 || r === 6)) shiftD(r === 2 ? 0 : r === 4 ? 1 : 2, c, n);
    else if (group === 115 && (r === 2 || r === 6)) shiftQ(r === 6, c, n);
    else if (group === 115 && xmm2 && (r === 3 || r === 7)) {
      const k = c > 16 ? 16 : c;
      for (let i = 0; i < 16; i++) {
        const from = r === 3 ? i + k : i - k;
        T.u8[i] = from >= 0 && from < 16 ? D.u8[from] : 0;
      }
      copyT(16);
    } else cpu2.ud();
    if (xmm2) storeXmm(D.i32, cpu2.rm, cpu2);
    else {
      mmxTransition(cpu2);
      storeMm(D.i32[0], D.i32[1], cpu2.rm, cpu2);
    }
  };
}
def0f(113, shiftImm(113));
def0f(114, shiftImm(114));
def0f(115, shiftImm(115));
def0f(112, (cpu2) => {
  cpu2.decodeModrm();
  const imm = cpu2.fetch8();
  if (!cpu2.p66 && !cpu2.rep) {
    mmxCheck(cpu2);
    if (cpu2.mod === 3) loadMm(S.i32, cpu2.rm, cpu2);
    else readMem(cpu2, S.i32, 8, false);
    mmxTransition(cpu2);
    for (let i = 0; i < 4; i++) D.u16[i] = S.u16[imm >> 2 * i & 3];
    storeMm(D.i32[0], D.i32[1], cpu2.reg, cpu2);
    return;
  }
  sseCheck(cpu2);
  loadXmmSrc(cpu2, 16, true);
  if (cpu2.rep === 243) {
    D.i32[0] = S.i32[0];
    D.i32[1] = S.i32[1];
    for (let i = 0; i < 4; i++) D.u16[4 + i] = S.u16[4 + (imm >> 2 * i & 3)];
  } else if (cpu2.rep === 242) {
    D.i32[2] = S.i32[2];
    D.i32[3] = S.i32[3];
    for (let i = 0; i < 4; i++) D.u16[i] = S.u16[imm >> 2 * i & 3];
  } else {
    for (let i = 0; i < 4; i++) D.i32[i] = S.i32[imm >> 2 * i & 3];
  }
  storeXmm(D.i32, cpu2.reg, cpu2);
});
def0f(196, (cpu2) => {
  cpu2.decodeModrm();
  const imm = cpu2.fetch8();
  if (cpu2.rep) cpu2.ud();
  if (cpu2.p66) sseCheck(cpu2);
  else mmxCheck(cpu2);
  const w = cpu2.mod === 3 ? cpu2.getReg(4, cpu2.rm) & 65535 : cpu2.readLin(cpu2.eaLinear(), 2);
  if (cpu2.p66) {
    loadXmm(D.i32, cpu2.reg, cpu2);
    D.u16[imm & 7] = w;
    storeXmm(D.i32, cpu2.reg, cpu2);
  } else {
    loadMm(D.i32, cpu2.reg, cpu2);
    mmxTransition(cpu2);
    D.u16[imm & 3] = w;
    storeMm(D.i32[0], D.i32[1], cpu2.reg, cpu2);
  }
});
def0f(197, (cpu2) => {
  cpu2.decodeModrm();
  const imm = cpu2.fetch8();
  if (cpu2.mod !== 3 || cpu2.rep) cpu2.ud();
  let w;
  if (cpu2.p66) {
    sseCheck(cpu2);
    loadXmm(S.i32, cpu2.rm, cpu2);
    w = S.u16[imm & 7];
  } else {
    mmxCheck(cpu2);
    loadMm(S.i32, cpu2.rm, cpu2);
    mmxTransition(cpu2);
    w = S.u16[imm & 3];
  }
  cpu2.setReg(4, cpu2.reg, w);
});
def0f(215, (cpu2) => {
  cpu2.decodeModrm();
  if (cpu2.mod !== 3 || cpu2.rep) cpu2.ud();
  let n;
  if (cpu2.p66) {
    sseCheck(cpu2);
    loadXmm(S.i32, cpu2.rm, cpu2);
    n = 16;
  } else {
    mmxCheck(cpu2);
    loadMm(S.i32, cpu2.rm, cpu2);
    mmxTransition(cpu2);
    n = 8;
  }
  let m = 0;
  for (let i = 0; i < n; i++) m |= S.u8[i] >> 7 << i;
  cpu2.setReg(4, cpu2.reg, m);
});
def0f(110, (cpu2) => {
  cpu2.decodeModrm();
  if (cpu2.rep) cpu2.ud();
  if (cpu2.p66) sseCheck(cpu2);
  else mmxCheck(cpu2);
  const size = cpu2.rexW ? 8 : 4;
  const lo = cpu2.readRm(size), hi = size === 8 ? cpu2.hi : 0;
  if (cpu2.p66) {
    D.i32[0] = lo;
    D.i32[1] = hi;
    D.i32[2] = 0;
    D.i32[3] = 0;
    storeXmm(D.i32, cpu2.reg, cpu2);
  } else {
    mmxTransition(cpu2);
    storeMm(lo, hi, cpu2.reg, cpu2);
  }
});
def0f(126, (cpu2) => {
  cpu2.decodeModrm();
  if (cpu2.rep === 243) {
    sseCheck(cpu2);
    if (cpu2.mod === 3) loadXmm(S.i32, cpu2.rm, cpu2);
    else readMem(cpu2, S.i32, 8, false);
    D.i32[0] = S.i32[0];
    D.i32[1] = S.i32[1];
    D.i32[2] = 0;
    D.i32[3] = 0;
    storeXmm(D.i32, cpu2.reg, cpu2);
    return;
  }
  if (cpu2.rep) cpu2.ud();
  if (cpu2.p66) {
    sseCheck(cpu2);
    loadXmm(S.i32, cpu2.reg, cpu2);
  } else {
    mmxCheck(cpu2);
    loadMm(S.i32, cpu2.reg, cpu2);
  }
  if (cpu2.rexW) cpu2.writeRm(8, S.i32[0], S.i32[1]);
  else cpu2.writeRm(4, S.i32[0]);
  if (!cpu2.p66) mmxTransition(cpu2);
});
def0f(111, (cpu2) => {
  cpu2.decodeModrm();
  if (cpu2.p66 || cpu2.rep === 243) {
    sseCheck(cpu2);
    loadXmmSrc(cpu2, 16, cpu2.rep !== 243);
    storeXmm(S.i32, cpu2.reg, cpu2);
    return;
  }
  if (cpu2.rep) cpu2.ud();
  mmxCheck(cpu2);
  if (cpu2.mod === 3) loadMm(S.i32, cpu2.rm, cpu2);
  else readMem(cpu2, S.i32, 8, false);
  mmxTransition(cpu2);
  storeMm(S.i32[0], S.i32[1], cpu2.reg, cpu2);
});
def0f(127, (cpu2) => {
  cpu2.decodeModrm();
  if (cpu2.p66 || cpu2.rep === 243) {
    sseCheck(cpu2);
    loadXmm(S.i32, cpu2.reg, cpu2);
    if (cpu2.mod === 3) storeXmm(S.i32, cpu2.rm, cpu2);
    else writeMem(cpu2, S.i32, 16, cpu2.rep !== 243);
    return;
  }
  if (cpu2.rep) cpu2.ud();
  mmxCheck(cpu2);
  loadMm(S.i32, cpu2.reg, cpu2);
  if (cpu2.mod === 3) {
    mmxTransition(cpu2);
    storeMm(S.i32[0], S.i32[1], cpu2.rm, cpu2);
    return;
  }
  writeMem(cpu2, S.i32, 8, false);
  mmxTransition(cpu2);
});
def0f(240, (cpu2) => {
  cpu2.decodeModrm();
  if (cpu2.rep !== 242 || cpu2.mod === 3) cpu2.ud();
  sseCheck(cpu2);
  readMem(cpu2, S.i32, 16, false);
  storeXmm(S.i32, cpu2.reg, cpu2);
});
def0f(214, (cpu2) => {
  cpu2.decodeModrm();
  if (cpu2.rep === 243 || cpu2.rep === 242) {
    if (cpu2.mod !== 3) cpu2.ud();
    sseCheck(cpu2);
    mmxCheck(cpu2);
    if (cpu2.rep === 243) {
      loadMm(S.i32, cpu2.rm, cpu2);
      D.i32[0] = S.i32[0];
      D.i32[1] = S.i32[1];
      D.i32[2] = 0;
      D.i32[3] = 0;
      mmxTransition(cpu2);
      storeXmm(D.i32, cpu2.reg, cpu2);
    } else {
      loadXmm(S.i32, cpu2.rm, cpu2);
      mmxTransition(cpu2);
      storeMm(S.i32[0], S.i32[1], cpu2.reg, cpu2);
    }
    return;
  }
  if (!cpu2.p66) cpu2.ud();
  sseCheck(cpu2);
  loadXmm(S.i32, cpu2.reg, cpu2);
  if (cpu2.mod === 3) {
    S.i32[2] = 0;
    S.i32[3] = 0;
    storeXmm(S.i32, cpu2.rm, cpu2);
  } else {
    writeMem(cpu2, S.i32, 8, false);
  }
});
def0f(231, (cpu2) => {
  cpu2.decodeModrm();
  if (cpu2.mod === 3 || cpu2.rep) cpu2.ud();
  if (cpu2.p66) {
    sseCheck(cpu2);
    loadXmm(S.i32, cpu2.reg, cpu2);
    writeMem(cpu2, S.i32, 16, true);
  } else {
    mmxCheck(cpu2);
    loadMm(S.i32, cpu2.reg, cpu2);
    writeMem(cpu2, S.i32, 8, false);
    mmxTransition(cpu2);
  }
});
def0f(195, (cpu2) => {
  cpu2.decodeModrm();
  if (cpu2.mod === 3 || cpu2.p66 || cpu2.rep || cpu2.lock) cpu2.ud();
  const size = cpu2.rexW ? 8 : 4;
  const v = cpu2.getReg(size, cpu2.reg);
  cpu2.writeRm(size, v, cpu2.hi);
});
def0f(247, (cpu2) => {
  cpu2.decodeModrm();
  if (cpu2.mod !== 3 || cpu2.rep) cpu2.ud();
  let n;
  if (cpu2.p66) {
    sseCheck(cpu2);
    n = 16;
    loadXmm(D.i32, cpu2.reg, cpu2);
    loadXmm(S.i32, cpu2.rm, cpu2);
  } else {
    mmxCheck(cpu2);
    n = 8;
    loadMm(D.i32, cpu2.reg, cpu2);
    loadMm(S.i32, cpu2.rm, cpu2);
  }
  const off = cpu2.adsize === 8 ? cpu2.getReg64Num(7) : cpu2.adsize === 4 ? cpu2.gpr[14] >>> 0 : cpu2.gpr[14] & 65535;
  const lin = cpu2.linear(cpu2.segOverride >= 0 ? cpu2.segOverride : DS, off);
  let any = false;
  for (let i = 0; i < n; i++) if (S.u8[i] & 128) any = true;
  if (any) {
    cpu2.probeWrite(lin, n);
    for (let i = 0; i < n; i++) if (S.u8[i] & 128) cpu2.writeLin(cpu2.addLin(lin, i), 1, D.u8[i]);
  }
  if (!cpu2.p66) mmxTransition(cpu2);
});
def0f(119, (cpu2) => {
  if (cpu2.p66 || cpu2.rep) cpu2.ud();
  mmxCheck(cpu2);
  cpu2.fpu.tagValid = 0;
});

// src/cpu/soft/ops/interrupt-flag.ts
function stiSetsIf(c) {
  if (c.flags & IF) return false;
  c.flags |= IF;
  const lapic = c.env.lapic;
  if (lapic === void 0 || !lapic.hasInterrupt()) return false;
  c.interruptShadow = true;
  c.eventPending = true;
  return true;
}
function settleRestoredIf(c, wasPending) {
  if (wasPending || !c.eventPending || c.interruptShadow) return;
  const lapic = c.env.lapic;
  if (lapic !== void 0 && (lapic.hasInterrupt() || lapic.hasNmi?.() === true)) return;
  c.eventPending = false;
}

// src/cpu/soft/system/control.ts
var TSC_HZ = 2e9;
var TSC_PER_NS = TSC_HZ / 1e9;
function readTsc(c) {
  const t = c.tscOffset + Math.floor(c.env.clock.now() * TSC_PER_NS);
  return t < 0 ? 0 : t;
}
function writeTsc(c, value) {
  c.tscOffset = value - Math.floor(c.env.clock.now() * TSC_PER_NS);
}
function loadTscIntoEdxEax(c) {
  const t = readTsc(c);
  c.setReg(4, 0, t % TWO32 | 0);
  c.setReg(4, 2, Math.floor(t / TWO32) | 0);
}
function rdtsc(c) {
  if (c.cr4 & CR4_TSD && c.cpl !== 0) c.gp(0);
  loadTscIntoEdxEax(c);
}
def0f(49, rdtsc);
function iopl(c) {
  return c.flags >> 12 & 3;
}
function requireCpl0(c) {
  if (c.cpl !== 0) c.gp(0);
}
function checkIoPermission(c, port, size) {
  if (!(c.cr0 & CR0_PE)) return;
  if (!(c.flags & VM) && c.cpl <= iopl(c)) return;
  const type = c.trAttr & SEG_TYPE_MASK;
  if (type !== 9 && type !== 11 || c.trLimit < 103) c.gp(0);
  const mapBase = c.readSys(c.addLin(c.trBase, 102), 2);
  const off = mapBase + (port >> 3);
  if (off + 1 > c.trLimit) c.gp(0);
  const bits = c.readSys(c.addLin(c.trBase, off), 2);
  const mask = (1 << size) - 1 << (port & 7);
  if (bits & mask) c.gp(0);
}
function ioSize(c) {
  return (c.opcode & 1) === 0 ? 1 : c.opsize === 2 ? 2 : 4;
}
function doIn(c, port) {
  const size = ioSize(c);
  checkIoPermission(c, port, size);
  const v = c.env.ports.read(port, size);
  c.setReg(size, 0, v | 0);
}
function doOut(c, port) {
  const size = ioSize(c);
  checkIoPermission(c, port, size);
  const v = c.gpr[0];
  c.env.ports.write(port, size, size === 1 ? v & 255 : size === 2 ? v & 65535 : v >>> 0);
}
def1(228, (c) => doIn(c, c.fetch8()), 229);
def1(230, (c) => doOut(c, c.fetch8()), 231);
def1(236, (c) => doIn(c, c.gpr[4] & 65535), 237);
def1(238, (c) => doOut(c, c.gpr[4] & 65535), 239);
function checkIfChange(c) {
  if (!(c.cr0 & CR0_PE)) return;
  if (c.flags & VM ? iopl(c) < 3 : c.cpl > iopl(c)) c.gp(0);
}
def1(250, (c) => {
  checkIfChange(c);
  c.flags &= ~IF;
});
def1(251, (c) => {
  checkIfChange(c);
  stiSetsIf(c);
});
def1(244, (c) => {
  requireCpl0(c);
  c.halted = true;
});
def0f(6, (c) => {
  requireCpl0(c);
  c.cr0 &= ~CR0_TS;
});
def0f(8, (c) => requireCpl0(c));
def0f(9, (c) => requireCpl0(c));
var CR0_WRITABLE = CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_NE | CR0_WP | CR0_AM | CR0_NW | CR0_CD | CR0_PG;
var CR4_SUPPORTED = CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE | CR4_PGE | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT;
var CR4_FLUSH_ALL = CR4_PGE | CR4_PAE | CR4_PSE;
var tprWithoutApic = /* @__PURE__ */ new WeakMap();
function fetchCrModrm(c) {
  const m = c.fetch8();
  c.modrm = m;
  return (m >> 3 & 7 | c.rexR) << 4 | (m & 7 | c.rexB);
}
function setRegFromNum(c, r, v) {
  if (c.mode64) c.setReg(8, r, v | 0, Math.floor(v / TWO32) | 0);
  else c.setReg(4, r, v | 0);
}
function regLo(c, r) {
  return c.gpr[2 * r];
}
function regHi(c, r) {
  return c.mode64 ? c.gpr[2 * r + 1] : 0;
}
function readCr8(c) {
  const lapic = c.env.lapic;
  if (lapic) return lapic.mmioRead(128, 4) >>> 4 & 15;
  return tprWithoutApic.get(c) ?? 0;
}
function writeCr8(c, v) {
  const lapic = c.env.lapic;
  if (lapic) lapic.mmioWrite(128, 4, (v & 15) << 4);
  else tprWithoutApic.set(c, v & 15);
  c.eventPending = true;
}
def0f(32, (c) => {
  const x = fetchCrModrm(c);
  const cr = x >> 4, r = x & 15;
  if (cr !== 0 && cr !== 2 && cr !== 3 && cr !== 4 && cr !== 8) c.ud();
  requireCpl0(c);
  let v;
  switch (cr) {
    case 0:
      v = c.cr0 >>> 0;
      break;
    case 2:
      v = c.cr2;
      break;
    case 3:
      v = c.cr3;
      break;
    case 4:
      v = c.cr4 >>> 0;
      break;
    default:
      v = readCr8(c);
      break;
  }
  setRegFromNum(c, r, v);
});
def0f(34, (c) => {
  const x = fetchCrModrm(c);
  const cr = x >> 4, r = x & 15;
  if (cr !== 0 && cr !== 2 && cr !== 3 && cr !== 4 && cr !== 8) c.ud();
  requireCpl0(c);
  const lo = regLo(c, r), hi = regHi(c, r);
  switch (cr) {
    case 0:
      writeCr0(c, lo, hi);
      break;
    case 2:
      c.cr2 = c.mode64 ? hi * TWO32 + (lo >>> 0) : lo >>> 0;
      break;
    case 3:
      writeCr3(c, lo, hi);
      break;
    case 4:
      writeCr4(c, lo, hi);
      break;
    case 8:
      if (hi !== 0 || (lo & ~15) !== 0) c.gp(0);
      writeCr8(c, lo);
      break;
  }
});
function writeCr0(c, lo, hi = 0) {
  if (hi !== 0) c.gp(0);
  const old = c.cr0;
  const v = old & ~CR0_WRITABLE | lo & CR0_WRITABLE | CR0_ET | 0;
  if (v & CR0_PG && !(v & CR0_PE)) c.gp(0);
  if (v & CR0_NW && !(v & CR0_CD)) c.gp(0);
  const pagingOn = (v & CR0_PG) !== 0 && (old & CR0_PG) === 0;
  const pagingOff = (v & CR0_PG) === 0 && (old & CR0_PG) !== 0;
  let efer = c.efer;
  if (pagingOn && efer & EFER_LME) {
    if (!(c.cr4 & CR4_PAE) || c.segAttr[CS] & SEG_L) c.gp(0);
    efer |= EFER_LMA;
  }
  if (pagingOff) {
    if (c.mode64) c.gp(0);
    efer &= ~EFER_LMA;
  }
  c.cr0 = v;
  c.efer = efer;
  c.updateMode();
  if ((old ^ v) & (CR0_PG | CR0_WP | CR0_PE)) c.flushTlb(true);
}
function writeCr3(c, lo, hi = 0) {
  let v;
  if (c.efer & EFER_LMA) {
    if (hi >>> MAXPHYADDR - 32 !== 0) c.gp(0);
    v = hi * TWO32 + (lo >>> 0);
  } else {
    v = lo >>> 0;
  }
  c.cr3 = v;
  c.flushTlb(false);
}
function writeCr4(c, lo, hi = 0) {
  if (hi !== 0 || (lo & ~CR4_SUPPORTED) !== 0) c.gp(0);
  const old = c.cr4;
  if (c.efer & EFER_LMA && !(lo & CR4_PAE)) c.gp(0);
  c.cr4 = lo;
  c.updateMode();
  if ((old ^ lo) & CR4_FLUSH_ALL) c.flushTlb(true);
}
var DR6_FIXED = 4294905840;
var DR6_WRITABLE = 57359;
var DR7_FIXED = 1024;
var DR7_WRITABLE = 4294910975;
function debugRegIndex(c, n) {
  if (n > 7) c.ud();
  if (n === 4 || n === 5) {
    if (c.cr4 & CR4_DE) c.ud();
    return n + 2;
  }
  return n;
}
def0f(33, (c) => {
  const x = fetchCrModrm(c);
  const n = debugRegIndex(c, x >> 4);
  requireCpl0(c);
  setRegFromNum(c, x & 15, c.dr[n]);
});
def0f(35, (c) => {
  const x = fetchCrModrm(c);
  const n = debugRegIndex(c, x >> 4);
  requireCpl0(c);
  const r = x & 15;
  const lo = regLo(c, r), hi = regHi(c, r);
  if (n >= 6) {
    if (hi !== 0) c.gp(0);
    c.dr[n] = n === 6 ? (lo & DR6_WRITABLE | DR6_FIXED) >>> 0 : (lo & DR7_WRITABLE | DR7_FIXED) >>> 0;
  } else {
    c.dr[n] = c.mode64 ? hi * TWO32 + (lo >>> 0) : lo >>> 0;
  }
});

// src/cpu/soft/system/msr.ts
var MSR = {
  TSC: 16,
  PLATFORM_ID: 23,
  APIC_BASE: 27,
  FEATURE_CONTROL: 58,
  BIOS_SIGN_ID: 139,
  PLATFORM_INFO: 206,
  MTRRCAP: 254,
  SYSENTER_CS: 372,
  SYSENTER_ESP: 373,
  SYSENTER_EIP: 374,
  MCG_CAP: 377,
  MCG_STATUS: 378,
  MISC_ENABLE: 416,
  DEBUGCTL: 473,
  MTRR_PHYSBASE0: 512,
  MTRR_FIX64K_00000: 592,
  MTRR_FIX16K_80000: 600,
  MTRR_FIX16K_A0000: 601,
  MTRR_FIX4K_C0000: 616,
  MTRR_FIX4K_F8000: 623,
  PAT: 631,
  MTRR_DEF_TYPE: 767,
  EFER: 3221225600,
  STAR: 3221225601,
  LSTAR: 3221225602,
  CSTAR: 3221225603,
  SFMASK: 3221225604,
  FS_BASE: 3221225728,
  GS_BASE: 3221225729,
  KERNEL_GS_BASE: 3221225730,
  TSC_AUX: 3221225731
};
var table = /* @__PURE__ */ new Map();
function registerMsr(index, handler) {
  table.set(index >>> 0, handler);
}
function readMsr(c, index) {
  const h = table.get(index >>> 0);
  if (!h) return c.gp(0);
  return h.read(c);
}
function writeMsr(c, index, value) {
  const h = table.get(index >>> 0);
  if (!h) return c.gp(0);
  h.write(c, BigInt.asUintN(64, value));
}
function storedMsr(c, index) {
  return c.msrs.get(index) ?? resetValues.get(index) ?? 0n;
}
def0f(50, (c) => {
  if (c.cpl !== 0) c.gp(0);
  const v = readMsr(c, c.gpr[2]);
  c.setReg(4, 0, Number(v & 0xffffffffn) | 0);
  c.setReg(4, 2, Number(v >> 32n & 0xffffffffn) | 0);
});
def0f(48, (c) => {
  if (c.cpl !== 0) c.gp(0);
  const v = BigInt(c.gpr[4] >>> 0) << 32n | BigInt(c.gpr[0] >>> 0);
  writeMsr(c, c.gpr[2], v);
});
var resetValues = /* @__PURE__ */ new Map();
var LOW47 = 1n << 47n;
function isCanonical(v) {
  const s = BigInt.asIntN(64, v);
  return s >= -LOW47 && s < LOW47;
}
function canonicalNumber(v) {
  return Number(BigInt.asIntN(64, v));
}
function toU64(n) {
  return BigInt.asUintN(64, BigInt(n));
}
function plain(index, reset, validate = () => true) {
  resetValues.set(index, reset);
  registerMsr(index, {
    read: (c) => c.msrs.get(index) ?? reset,
    write: (c, v) => {
      if (validate === null || !validate(v)) c.gp(0);
      c.msrs.set(index, v);
    }
  });
}
var MTRR_TYPES = /* @__PURE__ */ new Set([0, 1, 4, 5, 6]);
var PAT_TYPES = /* @__PURE__ */ new Set([0, 1, 4, 5, 6, 7]);
var PHYS_MASK = (1n << BigInt(MAXPHYADDR)) - 1n;
function allBytes(v, ok) {
  for (let k = 0n; k < 64n; k += 8n) if (!ok.has(Number(v >> k & 0xffn))) return false;
  return true;
}
registerMsr(MSR.TSC, {
  read: (c) => BigInt(readTsc(c)),
  write: (c, v) => writeTsc(c, Number(v))
});
plain(MSR.TSC_AUX, 0n, (v) => v >> 32n === 0n);
plain(MSR.PLATFORM_ID, 0n, null);
registerMsr(MSR.BIOS_SIGN_ID, { read: () => 0n, write: () => {
} });
plain(MSR.FEATURE_CONTROL, 1n, null);
plain(MSR.PLATFORM_INFO, BigInt(Math.round(TSC_HZ / 1e8)) << 8n, null);
var MISC_ENABLE_WRITABLE = 1n | 1n << 22n | 1n << 23n | 1n << 34n;
resetValues.set(MSR.MISC_ENABLE, 0x1801n);
registerMsr(MSR.MISC_ENABLE, {
  read: (c) => c.msrs.get(MSR.MISC_ENABLE) ?? 0x1801n,
  write: (c, v) => {
    const old = c.msrs.get(MSR.MISC_ENABLE) ?? 0x1801n;
    c.msrs.set(MSR.MISC_ENABLE, old & ~MISC_ENABLE_WRITABLE | v & MISC_ENABLE_WRITABLE);
  }
});
plain(MSR.DEBUGCTL, 0n, (v) => (v & ~0x3n) === 0n);
plain(MSR.MCG_CAP, 0n, null);
plain(MSR.MCG_STATUS, 0n, (v) => v === 0n);
registerMsr(MSR.APIC_BASE, {
  read: (c) => c.env.lapic ? c.env.lapic.readApicBaseMsr() : c.msrs.get(MSR.APIC_BASE) ?? 0xfee00900n,
  write: (c, v) => {
    if ((v & 0x6ffn) !== 0n || (v & ~PHYS_MASK) !== 0n) c.gp(0);
    if (c.env.lapic) c.env.lapic.writeApicBaseMsr(v);
    else c.msrs.set(MSR.APIC_BASE, v & ~0x100n | 0x100n);
    c.eventPending = true;
  }
});
plain(MSR.SYSENTER_CS, 0n, (v) => v >> 32n === 0n);
plain(MSR.SYSENTER_ESP, 0n, isCanonical);
plain(MSR.SYSENTER_EIP, 0n, isCanonical);
plain(MSR.STAR, 0n);
plain(MSR.LSTAR, 0n, isCanonical);
plain(MSR.CSTAR, 0n, isCanonical);
plain(MSR.SFMASK, 0n, (v) => v >> 32n === 0n);
var EFER_WRITABLE = EFER_SCE | EFER_LME | EFER_NXE;
registerMsr(MSR.EFER, {
  read: (c) => BigInt(c.efer >>> 0),
  write: (c, v) => {
    if (v >> 32n !== 0n) c.gp(0);
    const lo = Number(v);
    if (lo & ~(EFER_WRITABLE | EFER_LMA)) c.gp(0);
    const old = c.efer;
    if (c.cr0 & CR0_PG && (old ^ lo) & EFER_LME) c.gp(0);
    const nv = lo & EFER_WRITABLE | old & EFER_LMA;
    c.efer = nv;
    c.updateMode();
    if ((old ^ nv) & EFER_NXE) c.flushTlb(true);
  }
});
function segmentBase(index, seg) {
  registerMsr(index, {
    read: (c) => toU64(c.segBase[seg]),
    write: (c, v) => {
      if (!isCanonical(v)) c.gp(0);
      c.segBase[seg] = canonicalNumber(v);
    }
  });
}
segmentBase(MSR.FS_BASE, FS);
segmentBase(MSR.GS_BASE, GS);
registerMsr(MSR.KERNEL_GS_BASE, {
  read: (c) => toU64(c.kernelGsBase),
  write: (c, v) => {
    if (!isCanonical(v)) c.gp(0);
    c.kernelGsBase = canonicalNumber(v);
  }
});
plain(MSR.PAT, 0x0007040600070406n, (v) => allBytes(v, PAT_TYPES));
var MTRR_VARIABLE_COUNT = 8;
plain(MSR.MTRRCAP, BigInt(MTRR_VARIABLE_COUNT) | 0x100n | 0x400n, null);
plain(MSR.MTRR_DEF_TYPE, 0x806n, (v) => (v & ~0xcffn) === 0n && MTRR_TYPES.has(Number(v & 0xffn)));
for (const i of [MSR.MTRR_FIX64K_00000, MSR.MTRR_FIX16K_80000, MSR.MTRR_FIX16K_A0000]) plain(i, 0n, (v) => allBytes(v, MTRR_TYPES));
for (let i = MSR.MTRR_FIX4K_C0000; i <= MSR.MTRR_FIX4K_F8000; i++) plain(i, 0n, (v) => allBytes(v, MTRR_TYPES));
for (let n = 0; n < MTRR_VARIABLE_COUNT; n++) {
  plain(MSR.MTRR_PHYSBASE0 + 2 * n, 0n, (v) => (v & ~(PHYS_MASK & ~0xf00n)) === 0n && MTRR_TYPES.has(Number(v & 0xffn)));
  plain(MSR.MTRR_PHYSBASE0 + 2 * n + 1, 0n, (v) => (v & ~(PHYS_MASK & ~0x7ffn)) === 0n);
}

// src/cpu/soft/system/descriptors.ts
function flatCodeAttr(dpl, long) {
  return SEG_P | SEG_S | SEG_TYPE_CODE | SEG_TYPE_READABLE | SEG_TYPE_ACCESSED | SEG_G | dpl << SEG_DPL_SHIFT | (long ? SEG_L : SEG_DB);
}
function flatDataAttr(dpl) {
  return SEG_P | SEG_S | SEG_TYPE_WRITABLE | SEG_TYPE_ACCESSED | SEG_G | SEG_DB | dpl << SEG_DPL_SHIFT;
}
function isCanonical2(lin) {
  return lin >= -TWO47 && lin < TWO47;
}

// src/cpu/soft/system/fastcall.ts
var MSR_SYSENTER_CS = MSR.SYSENTER_CS;
var MSR_SYSENTER_ESP = MSR.SYSENTER_ESP;
var MSR_SYSENTER_EIP = MSR.SYSENTER_EIP;
var MSR_STAR = MSR.STAR;
var MSR_LSTAR = MSR.LSTAR;
var MSR_CSTAR = MSR.CSTAR;
var MSR_SFMASK = MSR.SFMASK;
function msrValue(cpu2, index) {
  return storedMsr(cpu2, index);
}
function msrAddress(cpu2, index) {
  return Number(BigInt.asIntN(64, msrValue(cpu2, index)));
}
function msrLow32(cpu2, index) {
  return Number(msrValue(cpu2, index) & 0xffffffffn);
}
function syscallMsrs(cpu2) {
  const m = cpu2.msrs;
  let r = m.decoded;
  if (r === null || r.ver !== m.ver) {
    const starHi = Number(msrValue(cpu2, MSR_STAR) >> 32n & 0xffffffffn);
    r = {
      ver: m.ver,
      callCs: starHi & 65535,
      retBase: starHi >>> 16 & 65535,
      lstarNum: msrAddress(cpu2, MSR_LSTAR),
      cstarNum: msrAddress(cpu2, MSR_CSTAR),
      mask: msrLow32(cpu2, MSR_SFMASK)
    };
    m.decoded = r;
  }
  return r;
}
var CODE64_CPL0 = flatCodeAttr(0, true);
var CODE64_CPL3 = flatCodeAttr(3, true);
var DATA_CPL0 = flatDataAttr(0);
var DATA_CPL3 = flatDataAttr(3);
function syscall(cpu2) {
  if (!(cpu2.efer & EFER_SCE) || !(cpu2.efer & EFER_LMA)) cpu2.ud();
  const m = syscallMsrs(cpu2);
  const target = cpu2.mode64 ? m.lstarNum : m.cstarNum;
  const flags = cpu2.getFlags();
  const rip = cpu2.rip;
  cpu2.setReg64Num(1, rip);
  cpu2.setReg(4, 11, flags & ~RF);
  cpu2.setFlagsValue(flags & ~m.mask & ~RF);
  const csSel = m.callCs;
  if (cpu2.mode64) syscallSegments64(cpu2, csSel);
  else {
    cpu2.loadSegmentRaw(SS, csSel + 8 & 65532, 0, 4294967295, DATA_CPL0);
    cpu2.loadSegmentRaw(CS, csSel & 65532, 0, 4294967295, CODE64_CPL0);
  }
  cpu2.rip = target;
}
function syscallSegments64(cpu2, csSel) {
  cpu2.loadSegmentRaw(SS, csSel + 8 & 65532, 0, 4294967295, DATA_CPL0);
  cpu2.loadCs64(csSel & 65532, CODE64_CPL0);
}
function sysretSegments64(cpu2, base) {
  cpu2.loadSegmentRaw(SS, base + 8 & 65535 | 3, 0, 4294967295, DATA_CPL3);
  cpu2.loadCs64(base + 16 & 65532 | 3, CODE64_CPL3);
}
def0f(5, syscall);
function sysret(cpu2, to64) {
  if (!(cpu2.efer & EFER_SCE) || !cpu2.mode64) cpu2.ud();
  if (cpu2.cpl !== 0) cpu2.gp(0);
  const base = syscallMsrs(cpu2).retBase;
  const rip = to64 ? cpu2.getReg64Num(1) : cpu2.gpr[2] >>> 0;
  if (!isCanonical2(rip)) cpu2.gp(0);
  const wasPending = cpu2.eventPending;
  cpu2.setFlagsValue(cpu2.gpr[22] & SYSRET_FLAGS | FLAGS_FIXED);
  if (to64) sysretSegments64(cpu2, base);
  else {
    cpu2.loadSegmentRaw(SS, base + 8 & 65535 | 3, 0, 4294967295, DATA_CPL3);
    cpu2.loadSegmentRaw(CS, base & 65532 | 3, 0, 4294967295, flatCodeAttr(3, false));
  }
  cpu2.rip = rip;
  settleRestoredIf(cpu2, wasPending);
}
def0f(7, (cpu2) => sysret(cpu2, cpu2.opsize === 8));
def0f(52, (cpu2) => {
  if (!(cpu2.cr0 & CR0_PE)) cpu2.gp(0);
  const cs = msrLow32(cpu2, MSR_SYSENTER_CS) & 65535;
  if ((cs & 65532) === 0) cpu2.gp(0);
  const lma = (cpu2.efer & EFER_LMA) !== 0;
  const eip = msrAddress(cpu2, MSR_SYSENTER_EIP);
  const esp = msrAddress(cpu2, MSR_SYSENTER_ESP);
  cpu2.setFlagsValue(cpu2.getFlags() & ~(VM | IF | RF));
  cpu2.loadSegmentRaw(SS, cs + 8 & 65532, 0, 4294967295, flatDataAttr(0));
  cpu2.loadSegmentRaw(CS, cs & 65532, 0, 4294967295, flatCodeAttr(0, lma));
  if (lma) {
    cpu2.setReg64Num(4, esp);
    cpu2.rip = eip;
  } else {
    cpu2.gpr[8] = esp;
    cpu2.gpr[9] = 0;
    cpu2.rip = eip >>> 0;
  }
});
def0f(53, (cpu2) => {
  const cs = msrLow32(cpu2, MSR_SYSENTER_CS) & 65535;
  if (!cpu2.protectedMode || (cs & 65532) === 0 || cpu2.cpl !== 0) cpu2.gp(0);
  const to64 = cpu2.opsize === 8;
  if (to64) {
    const rip = cpu2.getReg64Num(2), rsp = cpu2.getReg64Num(1);
    if (!isCanonical2(rip) || !isCanonical2(rsp)) cpu2.gp(0);
    cpu2.loadSegmentRaw(SS, cs + 40 & 65532 | 3, 0, 4294967295, flatDataAttr(3));
    cpu2.loadSegmentRaw(CS, cs + 32 & 65532 | 3, 0, 4294967295, flatCodeAttr(3, true));
    cpu2.setReg64Num(4, rsp);
    cpu2.rip = rip;
  } else {
    const rip = cpu2.gpr[4] >>> 0, esp = cpu2.gpr[2];
    cpu2.loadSegmentRaw(SS, cs + 24 & 65532 | 3, 0, 4294967295, flatDataAttr(3));
    cpu2.loadSegmentRaw(CS, cs + 16 & 65532 | 3, 0, 4294967295, flatCodeAttr(3, false));
    cpu2.gpr[8] = esp;
    cpu2.gpr[9] = 0;
    cpu2.rip = rip;
  }
});

// src/cpu/soft/fast-forms.ts
var SSE_FN = new Array(256);
var sseImm = 0;
var pshufd = () => {
  const d = D.i32, s = S.i32, k = sseImm;
  d[0] = s[k & 3];
  d[1] = s[k >> 2 & 3];
  d[2] = s[k >> 4 & 3];
  d[3] = s[k >> 6 & 3];
};
SSE_FN[112] = pshufd;
var SSE_OPS = new Uint8Array(256);
for (const op of [16, 17, 18, 19, 22, 23, 40, 41, 43, 110, 111, 112, 126, 127, 214, 215, 231]) SSE_OPS[op] = 1;
for (const op of [84, 85, 86, 87]) SSE_OPS[op] = 3;
var SY_SYSCALL = 16;
var SY_SYSRETQ = 17;
var SY_TSC = 18;

// src/cpu/soft/wasm/emit.ts
import v8 from "node:v8";
var HINTS = process.env.RINGZERO_WASM_HINTS !== "0";
if (HINTS) v8.setFlagsFromString("--experimental-wasm-branch-hinting");
var I32 = 127;
var I64 = 126;
var F64 = 124;
var EMPTY = 64;
var Op = {
  unreachable: 0,
  block: 2,
  loop: 3,
  if: 4,
  else: 5,
  end: 11,
  br: 12,
  brIf: 13,
  return: 15,
  call: 16,
  drop: 26,
  select: 27,
  localGet: 32,
  localSet: 33,
  localTee: 34,
  i32Load: 40,
  i64Load: 41,
  f64Load: 43,
  i32Load8u: 45,
  i32Load16u: 47,
  i64Load8u: 49,
  i64Load16u: 51,
  i64Load32s: 52,
  i64Load32u: 53,
  i32Store: 54,
  i64Store: 55,
  f64Store: 57,
  i32Store8: 58,
  i32Store16: 59,
  i64Store8: 60,
  i64Store16: 61,
  i64Store32: 62,
  i32Const: 65,
  i64Const: 66,
  f64Const: 68,
  i32Eqz: 69,
  i32Eq: 70,
  i32Ne: 71,
  i32LtS: 72,
  i32LtU: 73,
  i32GtS: 74,
  i32GtU: 75,
  i32LeS: 76,
  i32LeU: 77,
  i32GeS: 78,
  i32GeU: 79,
  i64Eqz: 80,
  i64Eq: 81,
  i64Ne: 82,
  i64LtS: 83,
  i64LtU: 84,
  i64GtS: 85,
  i64GtU: 86,
  i64LeS: 87,
  i64LeU: 88,
  i64GeS: 89,
  i64GeU: 90,
  f64Eq: 97,
  f64Ne: 98,
  f64Lt: 99,
  f64Ge: 102,
  i32Popcnt: 105,
  i32Add: 106,
  i32Sub: 107,
  i32And: 113,
  i32Or: 114,
  i32Xor: 115,
  i32Shl: 116,
  i32ShrS: 117,
  i32ShrU: 118,
  i64Popcnt: 123,
  i64Add: 124,
  i64Sub: 125,
  i64And: 131,
  i64Or: 132,
  i64Xor: 133,
  i64Shl: 134,
  i64ShrS: 135,
  i64ShrU: 136,
  f64Add: 160,
  i32WrapI64: 167,
  i64ExtendI32s: 172,
  i64ExtendI32u: 173,
  f64ConvertI64s: 185,
  i32Extend8s: 192,
  i32Extend16s: 193
};
var Simd = {
  v128Load: 0,
  v128Store: 11,
  i8x16Shuffle: 13,
  i8x16Eq: 35,
  i8x16GtS: 39,
  i16x8Eq: 45,
  i16x8GtS: 49,
  i32x4Eq: 55,
  i32x4GtS: 59,
  v128Not: 77,
  v128And: 78,
  v128AndNot: 79,
  v128Or: 80,
  v128Xor: 81,
  i8x16Bitmask: 100,
  i8x16Add: 110,
  i8x16AddSatS: 111,
  i8x16AddSatU: 112,
  i8x16Sub: 113,
  i8x16SubSatS: 114,
  i8x16SubSatU: 115,
  i8x16MinU: 119,
  i8x16MaxU: 121,
  i8x16AvgrU: 123,
  i16x8AddSatS: 143,
  i16x8AddSatU: 144,
  i16x8SubSatS: 146,
  i16x8SubSatU: 147,
  i16x8MinS: 150,
  i16x8MaxS: 152,
  i16x8AvgrU: 155,
  i16x8Add: 142,
  i16x8Sub: 145,
  i16x8Mul: 149,
  i32x4Add: 174,
  i32x4Sub: 177,
  i64x2Add: 206,
  i64x2Sub: 209
};
function uleb(out2, v) {
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 128;
    out2.push(b);
  } while (v !== 0);
}
function name(out2, s) {
  if (/^[\x00-\x7f]*$/.test(s)) {
    uleb(out2, s.length);
    for (let i = 0; i < s.length; i++) out2.push(s.charCodeAt(i));
    return;
  }
  const bytes = Buffer.from(s, "utf8");
  uleb(out2, bytes.length);
  for (const b of bytes) out2.push(b);
}
var Body = class {
  /**
   * `scratch`: inside withScratch, take the buffer from the scratch arena, which is rewound when that scope ends (for
   * bodies that are encoded into their module before then: the translator's); else, and for every body built
   * outside a scope, a slice of the shared arena that stays valid as long as the body lives.
   */
  constructor(paramCount, scratch2 = false) {
    this.paramCount = paramCount;
    this.scope = scratch2 && scratchDepth > 0 ? scratchScope : -1;
    this.buf = this.alloc(BODY_START);
  }
  paramCount;
  buf;
  len = 0;
  /** The scratch scope this body's buffer belongs to (withScratch), or -1: a buffer of its own (arenaSlice). */
  scope;
  localTypes = [];
  /** Open blocks/loops/ifs, innermost last: a label is an index into this stack. */
  labels = [];
  nextLabel = 0;
  /** Branch hints (HINTS): code offset * 2 + 1 when likely taken, in increasing order; null until the first. */
  hints = null;
  alloc(n) {
    if (this.scope < 0) return arenaSlice(n);
    if (this.scope !== scratchScope) throw new Error("a scratch body was used after its scope ended");
    return scratchSlice(n);
  }
  /** The buffer, checked to be still this body's (a scratch body's scope has not ended). */
  live() {
    if (this.scope >= 0 && this.scope !== scratchScope) throw new Error("a scratch body was used after its scope ended");
    return this.buf;
  }
  local(type) {
    this.localTypes.push(type);
    return this.paramCount + this.localTypes.length - 1;
  }
  /**
   * Make room for `n` more bytes: every emitting method asks once for the most it may write (a LEB128 of a u32/i32
   * takes at most 5 bytes, of an i64 10), then writes with `put`, unchecked (one capacity check per operation rather
   * than per byte: the build of a batch runs on the main thread while the guest waits).
   */
  room(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = this.alloc(size);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
  put(b) {
    this.buf[this.len++] = b;
  }
  byte(b) {
    this.room(1);
    this.put(b);
  }
  /** (the caller made room: 5 bytes) */
  uleb(v) {
    do {
      let b = v & 127;
      v >>>= 7;
      if (v !== 0) b |= 128;
      this.put(b);
    } while (v !== 0);
  }
  /** (the caller made room: 10 bytes) */
  sleb(v) {
    if ((v | 0) !== v) {
      const hi = Math.floor(v / 4294967296);
      this.sleb64(v - hi * 4294967296 | 0, hi | 0);
      return;
    }
    for (; ; ) {
      const b = v & 127;
      v >>= 7;
      if (v === 0 && (b & 64) === 0 || v === -1 && (b & 64) !== 0) {
        this.put(b);
        return;
      }
      this.put(b | 128);
    }
  }
  /** Signed LEB128 of the 64-bit integer hi * 2^32 + (lo >>> 0), given as two int32 halves (the caller made room: 10 bytes). */
  sleb64(lo, hi) {
    for (; ; ) {
      const b = lo & 127;
      lo = lo >>> 7 | hi << 25;
      hi >>= 7;
      if (hi === 0 && lo === 0 && (b & 64) === 0 || hi === -1 && lo === -1 && (b & 64) !== 0) {
        this.put(b);
        return;
      }
      this.put(b | 128);
    }
  }
  /** One opcode byte, or two (a 0xFC-prefixed opcode, call_indirect's type, ...). */
  op(a, b = -1) {
    this.room(2);
    this.put(a);
    if (b >= 0) this.put(b);
    return this;
  }
  i32(v) {
    this.room(6);
    this.put(Op.i32Const);
    this.sleb(v | 0);
    return this;
  }
  /** i64.const: a number (an exact integer, |v| < 2^53) or a bigint. */
  i64(v) {
    this.room(11);
    this.put(Op.i64Const);
    if (typeof v === "number") this.sleb(v);
    else this.sleb64(Number(BigInt.asIntN(32, v)), Number(BigInt.asIntN(32, v >> 32n)));
    return this;
  }
  /** i64.const of hi * 2^32 + (lo >>> 0) (two int32 halves: no number or BigInt arithmetic). */
  i64hl(hi, lo) {
    this.room(11);
    this.put(Op.i64Const);
    this.sleb64(lo | 0, hi | 0);
    return this;
  }
  f64(v) {
    this.room(9);
    this.put(Op.f64Const);
    F64_SCRATCH[0] = v;
    for (let i = 0; i < 8; i++) this.put(F64_BYTES[i]);
    return this;
  }
  /** A SIMD instruction without immediates (0xFD prefix, LEB128 opcode). */
  simd(op) {
    this.room(6);
    this.put(253);
    this.uleb(op);
    return this;
  }
  /** A SIMD load/store with its memarg. */
  simdMem(op, align, offset) {
    this.simd(op);
    this.room(10);
    this.uleb(align);
    this.uleb(offset);
    return this;
  }
  /** i8x16.shuffle with its 16 lane indices (0-15 the first operand's bytes, 16-31 the second's). */
  shuffle(lanes) {
    this.simd(Simd.i8x16Shuffle);
    this.room(16);
    for (let i = 0; i < 16; i++) this.put(lanes[i]);
    return this;
  }
  get(l) {
    this.room(6);
    this.put(Op.localGet);
    this.uleb(l);
    return this;
  }
  set(l) {
    this.room(6);
    this.put(Op.localSet);
    this.uleb(l);
    return this;
  }
  tee(l) {
    this.room(6);
    this.put(Op.localTee);
    this.uleb(l);
    return this;
  }
  call(f) {
    this.room(6);
    this.put(Op.call);
    this.uleb(f);
    return this;
  }
  /** return_call (the tail-call proposal, Node 20's V8 11.3 by default): 0x12, function index. */
  returnCall(f) {
    this.room(6);
    this.put(18);
    this.uleb(f);
    return this;
  }
  /** return_call_indirect (0x13): type index, table index; the table index operand on the stack. */
  returnCallIndirect(type, table2) {
    this.room(12);
    this.put(19);
    this.uleb(type);
    this.uleb(table2);
    return this;
  }
  /**
   * return_call whose function index is written later (patchIndex): 0x12 and a LEB128 padded to 5 bytes (a valid
   * encoding of any u32, Core spec §5.2.2); returns the offset of those 5 bytes.
   */
  returnCallLater() {
    this.room(6);
    this.put(18);
    const at = this.len;
    this.put(128);
    this.put(128);
    this.put(128);
    this.put(128);
    this.put(0);
    return at;
  }
  /** A call whose function index is written later (patchIndex), as returnCallLater. */
  callLater() {
    this.room(6);
    this.put(Op.call);
    const at = this.len;
    this.put(128);
    this.put(128);
    this.put(128);
    this.put(128);
    this.put(0);
    return at;
  }
  /** Write function index `f` into the 5 bytes at `at` that returnCallLater left. */
  patchIndex(at, f) {
    const buf = this.live();
    for (let i = 0; i < 4; i++) {
      buf[at + i] = f & 127 | 128;
      f >>>= 7;
    }
    buf[at + 4] = f & 127;
  }
  /** A load/store with alignment hint log2 `align` and a constant offset (§5.4.6 memarg). */
  mem(opcode, align, offset) {
    this.room(11);
    this.put(opcode);
    this.uleb(align);
    this.uleb(offset);
    return this;
  }
  /**
   * Hint the branch emitted next (an `if` opened or a `br_if`, its condition already pushed): `likely` true when it is
   * usually taken (for an `if`, its `then` side runs), false when hardly ever (HINTS; nothing when off).
   */
  hint(likely) {
    if (!HINTS) return this;
    const h = this.hints ?? (this.hints = []);
    const at = this.len * 2;
    if (h.length === 0 || h[h.length - 1] >> 1 < this.len) h.push(at + (likely ? 1 : 0));
    return this;
  }
  /** The hints recorded (code offsets * 2 + likely), or null. */
  branchHints() {
    return this.hints;
  }
  /** Open a block (kind: Op.block, Op.loop or Op.if) with no result; returns its label. */
  open(kind) {
    this.room(2);
    this.put(kind);
    this.put(EMPTY);
    const id = this.nextLabel++;
    this.labels.push(id);
    return id;
  }
  else() {
    this.byte(Op.else);
    return this;
  }
  close() {
    this.labels.pop();
    this.byte(Op.end);
    return this;
  }
  depth(label) {
    const i = this.labels.lastIndexOf(label);
    if (i < 0) throw new Error("branch to a label that is not open");
    return this.labels.length - 1 - i;
  }
  br(label) {
    this.room(6);
    this.put(Op.br);
    this.uleb(this.depth(label));
    return this;
  }
  brIf(label) {
    this.room(6);
    this.put(Op.brIf);
    this.uleb(this.depth(label));
    return this;
  }
  /** br_table (Core spec §5.4.1, opcode 0x0E): to labels[i] for the i32 on the stack, `def` when out of range. */
  brTable(labels, def) {
    this.room(6 + 5 * (labels.length + 1));
    this.put(14);
    this.uleb(labels.length);
    for (const l of labels) this.uleb(this.depth(l));
    this.uleb(this.depth(def));
    return this;
  }
  /** The encoded body (§5.5.13): locals grouped by runs of one type, the code, `end`. */
  encode() {
    const head = this.head();
    const out2 = new Uint8Array(head.length + this.len + 1);
    this.writeTo(out2, 0, head);
    return out2;
  }
  /** The local declarations (§5.5.13: vector of (count, type) for runs of one type). */
  head() {
    if (this.labels.length !== 0) throw new Error("unclosed block");
    const head = [0];
    const types = this.localTypes;
    let groups = 0;
    for (let i = 0; i < types.length; ) {
      let j = i + 1;
      while (j < types.length && types[j] === types[i]) j++;
      uleb(head, j - i);
      head.push(types[i]);
      groups++;
      i = j;
    }
    if (groups < 128) head[0] = groups;
    else {
      const g = [];
      uleb(g, groups);
      head.splice(0, 1, ...g);
    }
    return head;
  }
  /** Bytes of code so far, and a view of them (RINGZERO_WASM_DUMP, ./dump.ts). */
  get length() {
    return this.len;
  }
  code() {
    return this.live().subarray(0, this.len);
  }
  /** Encoded size given head(): the head, the code, `end`. */
  size(head) {
    return head.length + this.len + 1;
  }
  /** Write head, code and `end` into `out` at `at`; returns the offset after them. */
  writeTo(out2, at, head) {
    for (let i = 0; i < head.length; i++) out2[at++] = head[i];
    out2.set(this.live().subarray(0, this.len), at);
    at += this.len;
    out2[at++] = Op.end;
    return at;
  }
};
var BODY_START = 512;
var ARENA_SIZE = 256 * 1024;
var arena = new Uint8Array(ARENA_SIZE);
var arenaUsed = 0;
function arenaSlice(n) {
  if (n > ARENA_SIZE >> 2) return new Uint8Array(n);
  if (arenaUsed + n > ARENA_SIZE) {
    arena = new Uint8Array(ARENA_SIZE);
    arenaUsed = 0;
  }
  const s = arena.subarray(arenaUsed, arenaUsed + n);
  arenaUsed += n;
  return s;
}
var scratchChunks = [];
var scratchChunk = 0;
var scratchUsed = 0;
var scratchDepth = 0;
var scratchScope = 0;
function scratchSlice(n) {
  if (n > ARENA_SIZE >> 2) return new Uint8Array(n);
  if (scratchUsed + n > ARENA_SIZE) {
    scratchChunk++;
    scratchUsed = 0;
  }
  if (scratchChunk === scratchChunks.length) scratchChunks.push(new Uint8Array(ARENA_SIZE));
  const s = scratchChunks[scratchChunk].subarray(scratchUsed, scratchUsed + n);
  scratchUsed += n;
  return s;
}
function withScratch(fn) {
  scratchDepth++;
  try {
    return fn();
  } finally {
    if (--scratchDepth === 0) {
      scratchScope++;
      scratchChunk = 0;
      scratchUsed = 0;
      if (scratchChunks.length > SCRATCH_KEEP) scratchChunks.length = SCRATCH_KEEP;
    }
  }
}
var SCRATCH_KEEP = 8;
var F64_SCRATCH = new Float64Array(1);
var F64_BYTES = new Uint8Array(F64_SCRATCH.buffer);
function sameTypes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
var ModuleBuilder = class {
  types = [];
  imports = [];
  funcs = [];
  importedFuncs = 0;
  type(params, results) {
    const types = this.types;
    for (let i = 0; i < types.length; i++) if (sameTypes(types[i].params, params) && sameTypes(types[i].results, results)) return i;
    types.push({ params, results });
    return types.length - 1;
  }
  importMemory(module, field) {
    this.imports.push({ module, field, kind: "memory" });
  }
  /** Import a table of funcref (limits: at least 0 elements). */
  importTable(module, field) {
    this.imports.push({ module, field, kind: "table" });
  }
  /** Import a function; returns its function index (imports come first in the index space, §2.5.1). */
  importFunc(module, field, type) {
    if (this.funcs.length !== 0) throw new Error("imports must be declared before functions");
    this.imports.push({ module, field, kind: "func", type });
    return this.importedFuncs++;
  }
  /**
   * Define a function; `debugName` (optional) goes into the module's name section (encode), which V8 uses for the
   * function in stack traces and in its code-event logs (node --perf-basic-prof's /tmp/perf-PID.map: without it a
   * function is "wasm-function[index]", which says neither which module nor which guest code).
   */
  func(type, body, exportName, debugName) {
    this.funcs.push({ type, body, exportName, debugName });
    return this.importedFuncs + this.funcs.length - 1;
  }
  encode() {
    const out2 = [0, 97, 115, 109, 1, 0, 0, 0];
    const section = (id, content) => {
      out2.push(id);
      uleb(out2, content.length);
      for (const b of content) out2.push(b);
    };
    const ty = [];
    uleb(ty, this.types.length);
    for (const t of this.types) {
      ty.push(96);
      uleb(ty, t.params.length);
      ty.push(...t.params);
      uleb(ty, t.results.length);
      ty.push(...t.results);
    }
    section(1, ty);
    const im = [];
    uleb(im, this.imports.length);
    for (const i of this.imports) {
      name(im, i.module);
      name(im, i.field);
      if (i.kind === "func") {
        im.push(0);
        uleb(im, i.type);
      } else if (i.kind === "table") im.push(1, 112, 0, 0);
      else im.push(2, 3, 0, 128, 128, 4);
    }
    section(2, im);
    const fn = [];
    uleb(fn, this.funcs.length);
    for (const f of this.funcs) uleb(fn, f.type);
    section(3, fn);
    const ex = [];
    const exported = this.funcs.map((f, i) => [f, i]).filter(([f]) => f.exportName !== void 0);
    uleb(ex, exported.length);
    for (const [f, i] of exported) {
      name(ex, f.exportName);
      ex.push(0);
      uleb(ex, this.importedFuncs + i);
    }
    section(7, ex);
    const heads = this.funcs.map((f) => f.body.head());
    if (HINTS) {
      const hinted = this.funcs.map((f, i) => [f.body.branchHints(), i]).filter(([h]) => h !== null && h.length > 0);
      if (hinted.length > 0) {
        const bh = [];
        name(bh, "metadata.code.branch_hint");
        uleb(bh, hinted.length);
        for (const [h, i] of hinted) {
          uleb(bh, this.importedFuncs + i);
          uleb(bh, h.length);
          const head = heads[i].length;
          for (const x of h) {
            uleb(bh, head + (x >> 1));
            bh.push(1, x & 1);
          }
        }
        section(0, bh);
      }
    }
    const co = [];
    uleb(co, this.funcs.length);
    let size = co.length;
    const sizes = this.funcs.map((f, i) => {
      const n = f.body.size(heads[i]);
      const h = [];
      uleb(h, n);
      size += h.length + n;
      return h;
    });
    out2.push(10);
    uleb(out2, size);
    for (const b of co) out2.push(b);
    const result = new Uint8Array(out2.length + size - co.length);
    result.set(out2);
    let p = out2.length;
    for (let i = 0; i < this.funcs.length; i++) {
      const h = sizes[i];
      for (let k = 0; k < h.length; k++) result[p++] = h[k];
      p = this.funcs[i].body.writeTo(result, p, heads[i]);
    }
    if (p !== result.length) throw new Error("code section size mismatch");
    return this.withNames(result);
  }
  /**
   * `bytes` with a custom section "name" appended when any function has a debugName (Core spec §7.4.1, the name
   * section: subsection 1, the function names, as a name map of function index -> name in increasing index order).
   */
  withNames(bytes) {
    const named = this.funcs.map((f, i) => [f.debugName, this.importedFuncs + i]).filter(([n]) => n !== void 0);
    if (named.length === 0) return bytes;
    const map = [];
    uleb(map, named.length);
    for (const [n, i] of named) {
      uleb(map, i);
      name(map, n);
    }
    const content = [];
    name(content, "name");
    content.push(1);
    uleb(content, map.length);
    for (const b of map) content.push(b);
    const head = [0];
    uleb(head, content.length);
    const out2 = new Uint8Array(bytes.length + head.length + content.length);
    out2.set(bytes);
    out2.set(head, bytes.length);
    out2.set(content, bytes.length + head.length);
    return out2;
  }
};

// src/cpu/soft/wasm/tlb-probe.ts
var L = { ...layout_exports };
function emitTlbSlot(b, a) {
  b.get(a).i64(8).op(Op.i64ShrU).op(Op.i32WrapI64);
  b.get(a).i64(24).op(Op.i64ShrU).op(Op.i32WrapI64).i32(L.TLB_SLOT_MIX << L.TLB_ENTRY_SHIFT).op(
    108
    /* i32.mul */
  ).op(Op.i32Xor);
  b.i32(4095 << L.TLB_ENTRY_SHIFT).op(Op.i32And);
}
function emitTlbKey(b, a, size, align = 0) {
  b.get(a);
  if (align !== 0) {
    b.i64(-4096 | align - 1).op(Op.i64And);
    return;
  }
  if (size > 1) b.i64(size - 1).op(Op.i64Add);
  b.i64(-4096).op(Op.i64And);
}
function emitTlbProbe(b, tag, a, l, size, write, slow, align = 0) {
  emitTlbEntry(b, tag, a, l);
  emitTlbKey(b, a, size, align);
  if (l.key !== void 0) b.tee(l.key);
  b.op(Op.i64Ne).hint(false).brIf(slow);
  if (write) emitCodePageCheck(b, l, slow);
  emitRamOffset(b, a, l);
}
function emitTlbEntry(b, tag, a, l) {
  emitTlbSlot(b, a);
  b.get(tag).op(Op.i32Add).tee(l.ti).mem(Op.i64Load, 3, 0);
}
function emitRamOffset(b, a, l) {
  b.get(a).op(Op.i32WrapI64).get(l.ti).mem(Op.i32Load, 2, 8);
  if (l.add !== void 0) b.tee(l.add);
  b.op(Op.i32Add);
}
function emitCodePageCheck(b, l, slow) {
  b.get(l.ti).mem(Op.i32Load, 2, 12).mem(Op.i32Load8u, 0, L.CODE_PAGES).hint(false).brIf(slow);
}
function emitTlbProbeRun(b, tag, a, l, n, write, slow) {
  emitTlbEntry(b, tag, a, l);
  b.get(a).get(n).i32(-1).op(Op.i32Add).op(Op.i64ExtendI32u).op(Op.i64Add).i64(-4096).op(Op.i64And);
  b.op(Op.i64Ne).hint(false).brIf(slow);
  if (write) emitCodePageCheck(b, l, slow);
  emitRamOffset(b, a, l);
}
function emitRamAccess(b, size, write) {
  if (write) b.mem(size === 1 ? Op.i64Store8 : size === 2 ? Op.i64Store16 : size === 4 ? Op.i64Store32 : Op.i64Store, 0, WASM_RAM_OFFSET);
  else b.mem(size === 1 ? Op.i64Load8u : size === 2 ? Op.i64Load16u : size === 4 ? Op.i64Load32u : Op.i64Load, 0, WASM_RAM_OFFSET);
}
var LD_PARAMS = [I32, I32, I64, I32];
var ST_PARAMS = [I32, I32, I64, I64, I32];
function memFnBody(size, write, fRd, fWr) {
  const b = new Body(write ? 5 : 4);
  const st = 0, tag = 1, a = 2, w = 3, pos = write ? 4 : 3;
  const ti = b.local(I32);
  const slow = b.open(Op.block);
  emitTlbProbe(b, tag, a, { ti }, size, write, slow);
  if (write) b.get(w);
  emitRamAccess(b, size, write);
  b.op(Op.return);
  b.close();
  b.get(a).op(Op.f64ConvertI64s).i32(size);
  if (write) {
    b.get(w).op(Op.i32WrapI64).get(w).i64(32).op(Op.i64ShrU).op(Op.i32WrapI64).get(pos).call(fWr);
  } else {
    b.get(pos).call(fRd).op(Op.i64ExtendI32u);
    if (size === 8) b.get(st).mem(Op.i64Load32u, 2, L.S_HI).i64(32).op(Op.i64Shl).op(Op.i64Or);
  }
  return b;
}

// src/cpu/soft/wasm/sse.ts
var L2 = { ...layout_exports };
var F_RP = 2;
var scratch = /* @__PURE__ */ new WeakMap();
function locals(b) {
  let s = scratch.get(b);
  if (s === void 0) {
    s = { off: b.local(I32), ti: b.local(I32), p: b.local(I32), vpn: b.local(I64), p64: b.local(I64) };
    scratch.set(b, s);
  }
  return s;
}
var xmm = (r) => L2.S_XMM + 16 * r;
function unpackLanes(e, high) {
  const out2 = [], base = high ? 8 : 0;
  for (let k = 0; k < 8 / e; k++) {
    for (let j = 0; j < e; j++) out2.push(base + k * e + j);
    for (let j = 0; j < e; j++) out2.push(16 + base + k * e + j);
  }
  return out2;
}
var UNPACK = {
  96: unpackLanes(1, false),
  97: unpackLanes(2, false),
  98: unpackLanes(4, false),
  108: unpackLanes(8, false),
  104: unpackLanes(1, true),
  105: unpackLanes(2, true),
  106: unpackLanes(4, true),
  109: unpackLanes(8, true)
};
var BINARY = {
  116: Simd.i8x16Eq,
  117: Simd.i16x8Eq,
  118: Simd.i32x4Eq,
  100: Simd.i8x16GtS,
  101: Simd.i16x8GtS,
  102: Simd.i32x4GtS,
  219: Simd.v128And,
  235: Simd.v128Or,
  239: Simd.v128Xor,
  252: Simd.i8x16Add,
  253: Simd.i16x8Add,
  254: Simd.i32x4Add,
  212: Simd.i64x2Add,
  248: Simd.i8x16Sub,
  249: Simd.i16x8Sub,
  250: Simd.i32x4Sub,
  251: Simd.i64x2Sub,
  236: Simd.i8x16AddSatS,
  237: Simd.i16x8AddSatS,
  220: Simd.i8x16AddSatU,
  221: Simd.i16x8AddSatU,
  232: Simd.i8x16SubSatS,
  233: Simd.i16x8SubSatS,
  216: Simd.i8x16SubSatU,
  217: Simd.i16x8SubSatU,
  218: Simd.i8x16MinU,
  222: Simd.i8x16MaxU,
  234: Simd.i16x8MinS,
  238: Simd.i16x8MaxS,
  224: Simd.i8x16AvgrU,
  227: Simd.i16x8AvgrU,
  213: Simd.i16x8Mul
};
function bitScan2(T2, e, next) {
  const b = T2.b, s = locals(b), size = e.size;
  if (e.form === 99 /* BitScanM */) {
    T2.ea(e, next);
    T2.load(size);
  } else if (size === 8) {
    b.get(T2.st).mem(Op.i64Load, 3, L2.sGpr(e.a)).set(T2.v);
  } else b.get(T2.st).mem(Op.i64Load32u, 2, L2.sGpr(e.a)).set(T2.v);
  b.get(T2.v).op(Op.i64Eqz).open(Op.if);
  b.i32(
    68
    /* ZF | PF */
  ).set(s.ti);
  b.else();
  if (e.op === 0) b.get(T2.v).op(
    122
    /* i64.ctz */
  );
  else b.i64(63).get(T2.v).op(
    121
    /* i64.clz */
  ).op(Op.i64Sub);
  b.op(Op.i32WrapI64).set(s.off);
  T2.set32(e.b, () => {
    b.get(s.off);
  });
  b.get(s.off).op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz).i32(2).op(Op.i32Shl).set(s.ti);
  b.close();
  b.get(s.ti);
  T2.explicit(size);
  return e.form === 99 /* BitScanM */ ? 2 : 1;
}
function hasOp(op) {
  return op === 223 || op === 112 || BINARY[op] !== void 0 || UNPACK[op] !== void 0;
}
function operate(T2, op, dst, imm, src) {
  const b = T2.b;
  if (op === 112) {
    src();
    src();
    const lanes = [];
    for (let i = 0; i < 4; i++) {
      const s = imm >> 2 * i & 3;
      for (let j = 0; j < 4; j++) lanes.push(4 * s + j);
    }
    b.shuffle(lanes);
    return;
  }
  if (op === 223) {
    src();
    b.get(T2.st).simdMem(Simd.v128Load, 0, xmm(dst)).simd(Simd.v128AndNot);
    return;
  }
  b.get(T2.st).simdMem(Simd.v128Load, 0, xmm(dst));
  src();
  const u = UNPACK[op];
  if (u !== void 0) b.shuffle(u);
  else b.simd(BINARY[op]);
}
function probe16(T2, s, slow, aligned, write) {
  const b = T2.b;
  emitTlbProbe(b, write ? T2.wtag : T2.rtag, T2.a, { ti: s.ti }, 16, write, slow, aligned ? 16 : 0);
  b.set(s.p);
}
function emitSse(T2, e, i, next) {
  const f = e.form;
  if (f === 98 /* BitScanR */ || f === 99 /* BitScanM */) return bitScan2(T2, e, next);
  if ((f < 87 /* SseMovRR */ || f > 97 /* SseMovqXX */) && (f < 102 /* SseHalfLoad */ || f > 104 /* SseHalfMove */)) return 0;
  if ((f === 90 /* SseOpRR */ || f === 91 /* SseOpRM */) && !hasOp(e.op)) return 0;
  const b = T2.b, st = T2.st;
  let lib = 0;
  const done = b.open(Op.block);
  const slow = b.open(Op.block);
  b.get(st).mem(Op.i32Load, 2, L2.S_SSE).op(Op.i32Eqz).brIf(slow);
  switch (f) {
    case 87 /* SseMovRR */:
      b.get(st).get(st).simdMem(Simd.v128Load, 0, xmm(e.a)).simdMem(Simd.v128Store, 0, xmm(e.b));
      break;
    case 88 /* SseLoad */: {
      const s = locals(b);
      T2.ea(e, next);
      probe16(T2, s, slow, e.op === 1, false);
      b.get(st).get(s.p).simdMem(Simd.v128Load, 0, WASM_RAM_OFFSET).simdMem(Simd.v128Store, 0, xmm(e.a));
      break;
    }
    case 89 /* SseStore */: {
      const s = locals(b);
      T2.ea(e, next);
      probe16(T2, s, slow, e.op === 1, true);
      b.get(s.p).get(st).simdMem(Simd.v128Load, 0, xmm(e.a)).simdMem(Simd.v128Store, 0, WASM_RAM_OFFSET);
      break;
    }
    case 90 /* SseOpRR */:
      b.get(st);
      operate(T2, e.op, e.b, e.imm, () => {
        b.get(st).simdMem(Simd.v128Load, 0, xmm(e.a));
      });
      b.simdMem(Simd.v128Store, 0, xmm(e.b));
      break;
    case 91 /* SseOpRM */: {
      const s = locals(b);
      T2.ea(e, next);
      probe16(T2, s, slow, true, false);
      b.get(st);
      operate(T2, e.op, e.b, e.imm, () => {
        b.get(s.p).simdMem(Simd.v128Load, 0, WASM_RAM_OFFSET);
      });
      b.simdMem(Simd.v128Store, 0, xmm(e.b));
      break;
    }
    case 92 /* SsePmovmskb */:
      T2.set32(e.b, () => {
        b.get(st).simdMem(Simd.v128Load, 0, xmm(e.a)).simd(Simd.i8x16Bitmask);
      });
      break;
    case 93 /* SseMovdXR */:
    case 94 /* SseMovdXM */:
      if (f === 94 /* SseMovdXM */) {
        lib = 2;
        T2.ea(e, next);
        T2.load(e.size);
        b.get(T2.v).set(T2.w);
      } else if (e.size === 8) {
        b.get(st).mem(Op.i64Load, 3, L2.sGpr(e.a)).set(T2.w);
      } else b.get(st).mem(Op.i64Load32u, 2, L2.sGpr(e.a)).set(T2.w);
      b.get(st).get(T2.w).mem(Op.i64Store, 3, xmm(e.b));
      b.get(st).i64(0).mem(Op.i64Store, 3, xmm(e.b) + 8);
      break;
    case 95 /* SseMovdRX */:
      if (e.size === 8) {
        b.get(st).mem(Op.i64Load, 3, xmm(e.a)).set(T2.w);
        T2.set64(e.b, T2.w);
      } else T2.set32(e.b, () => {
        b.get(st).mem(Op.i32Load, 2, xmm(e.a));
      });
      break;
    case 96 /* SseMovdMX */:
      lib = 2;
      T2.ea(e, next);
      b.get(st).mem(Op.i64Load, 3, xmm(e.a)).set(T2.w);
      T2.store(e.size);
      break;
    case 102 /* SseHalfLoad */:
      lib = 2;
      T2.ea(e, next);
      T2.load(8);
      b.get(st).get(T2.v).mem(Op.i64Store, 3, xmm(e.a) + 8 * e.op);
      break;
    case 103 /* SseHalfStore */:
      lib = 2;
      T2.ea(e, next);
      b.get(st).mem(Op.i64Load, 3, xmm(e.a) + 8 * e.op).set(T2.w);
      T2.store(8);
      break;
    case 104 /* SseHalfMove */:
      b.get(st).get(st).mem(Op.i64Load, 3, xmm(e.a) + (e.op === 0 ? 8 : 0)).mem(Op.i64Store, 3, xmm(e.b) + (e.op === 0 ? 0 : 8));
      break;
    case 97 /* SseMovqXX */:
      b.get(st).get(st).mem(Op.i64Load, 3, xmm(e.a)).mem(Op.i64Store, 3, xmm(e.b));
      b.get(st).i64(0).mem(Op.i64Store, 3, xmm(e.b) + 8);
      break;
  }
  b.br(done);
  b.close();
  T2.pos();
  b.call(F_RP);
  b.open(Op.if);
  T2.xk(
    5
    /* translate.ts X_HELPER */
  );
  b.i32(i + 1).set(T2.xc).br(T2.out);
  b.close();
  b.close();
  return lib === 2 ? 2 : 1;
}

// src/cpu/soft/wasm/dump.ts
import { appendFileSync } from "node:fs";
var DUMP_FILE = process.env.RINGZERO_WASM_DUMP ?? "";
var NAMES = {
  0: "unreachable",
  2: "block",
  3: "loop",
  4: "if",
  5: "else",
  11: "end",
  12: "br",
  13: "br_if",
  14: "br_table",
  15: "return",
  16: "call",
  26: "drop",
  27: "select",
  32: "local.get",
  33: "local.set",
  34: "local.tee",
  40: "i32.load",
  41: "i64.load",
  43: "f64.load",
  45: "i32.load8_u",
  47: "i32.load16_u",
  49: "i64.load8_u",
  51: "i64.load16_u",
  52: "i64.load32_s",
  53: "i64.load32_u",
  54: "i32.store",
  55: "i64.store",
  57: "f64.store",
  58: "i32.store8",
  59: "i32.store16",
  60: "i64.store8",
  61: "i64.store16",
  62: "i64.store32",
  65: "i32.const",
  66: "i64.const",
  68: "f64.const",
  69: "i32.eqz",
  70: "i32.eq",
  71: "i32.ne",
  72: "i32.lt_s",
  73: "i32.lt_u",
  74: "i32.gt_s",
  75: "i32.gt_u",
  76: "i32.le_s",
  77: "i32.le_u",
  78: "i32.ge_s",
  79: "i32.ge_u",
  80: "i64.eqz",
  81: "i64.eq",
  82: "i64.ne",
  83: "i64.lt_s",
  84: "i64.lt_u",
  85: "i64.gt_s",
  86: "i64.gt_u",
  87: "i64.le_s",
  88: "i64.le_u",
  89: "i64.ge_s",
  90: "i64.ge_u",
  97: "f64.eq",
  98: "f64.ne",
  99: "f64.lt",
  102: "f64.ge",
  105: "i32.popcnt",
  106: "i32.add",
  107: "i32.sub",
  108: "i32.mul",
  113: "i32.and",
  114: "i32.or",
  115: "i32.xor",
  116: "i32.shl",
  117: "i32.shr_s",
  118: "i32.shr_u",
  119: "i32.rotl",
  120: "i32.rotr",
  124: "i64.add",
  125: "i64.sub",
  126: "i64.mul",
  127: "i64.div_s",
  128: "i64.div_u",
  129: "i64.rem_s",
  130: "i64.rem_u",
  131: "i64.and",
  132: "i64.or",
  133: "i64.xor",
  134: "i64.shl",
  135: "i64.shr_s",
  136: "i64.shr_u",
  137: "i64.rotl",
  138: "i64.rotr",
  160: "f64.add",
  167: "i32.wrap_i64",
  172: "i64.extend_i32_s",
  173: "i64.extend_i32_u",
  183: "f64.convert_i32_s",
  185: "f64.convert_i64_s",
  192: "i32.extend8_s",
  193: "i32.extend16_s"
};
function disassemble(code, from, to) {
  const out2 = [];
  let p = from;
  const uleb2 = () => {
    let v = 0, s = 0, x;
    do {
      x = code[p++];
      v += (x & 127) * 2 ** s;
      s += 7;
    } while (x & 128);
    return v;
  };
  const sleb = () => {
    let v = 0n, s = 0n, x;
    do {
      x = code[p++];
      v |= BigInt(x & 127) << s;
      s += 7n;
    } while (x & 128);
    if (x & 64) v -= 1n << s;
    return v.toString();
  };
  while (p < to) {
    const op = code[p++];
    let name2 = NAMES[op] ?? `op_${op.toString(16)}`, arg = "";
    if (op === 2 || op === 3 || op === 4) p++;
    else if (op === 12 || op === 13 || op === 16 || op >= 32 && op <= 34) arg = String(uleb2());
    else if (op === 14) {
      const n = uleb2();
      const l = [];
      for (let i = 0; i <= n; i++) l.push(uleb2());
      arg = l.join(",");
    } else if (op >= 40 && op <= 62) {
      uleb2();
      arg = "offset=" + uleb2();
    } else if (op === 65 || op === 66) arg = sleb();
    else if (op === 68) {
      arg = String(new DataView(code.buffer, code.byteOffset + p, 8).getFloat64(0, true));
      p += 8;
    } else if (op === 252) {
      const s = uleb2();
      name2 = s === 6 ? "i64.trunc_sat_f64_s" : s === 7 ? "i64.trunc_sat_f64_u" : s === 10 ? "memory.copy" : s === 11 ? "memory.fill" : `0xfc ${s}`;
      p += s === 10 ? 2 : s === 11 ? 1 : 0;
    } else if (op === 253) {
      name2 = `simd ${uleb2()}`;
    }
    out2.push(arg ? `${name2} ${arg}` : name2);
  }
  return out2;
}
function dumpFunction(title, code, marks) {
  const lines = [`== ${title}`];
  let total = 0, guest = 0;
  for (const [label, s, e] of marks) {
    const ops = disassemble(code, s, e);
    total += ops.length;
    if (!label.startsWith("(")) guest++;
    lines.push(`-- ${label}: ${ops.length} ops`);
    for (const o of ops) lines.push("     " + o);
  }
  lines.push(`== ${guest} guest instructions, ${total} wasm operations in them (${(total / Math.max(guest, 1)).toFixed(1)} per instruction)`);
  appendFileSync(DUMP_FILE, lines.join("\n") + "\n");
}

// src/cpu/soft/wasm/translate.ts
var L3 = { ...layout_exports };
var POS_MEMBER = 20;
var K_SHIFT = 20;
var REGION_MAX = Number(process.env.RINGZERO_WASM_REGION_MAX ?? 32);
var REGIONS = process.env.RINGZERO_WASM_REGIONS !== "0";
var REGION_REGS = process.env.RINGZERO_WASM_REGION_REGS === "1";
var REGION_DIRTY = process.env.RINGZERO_WASM_REGION_DIRTY !== "0";
var CROSS_PAGE = process.env.RINGZERO_WASM_CROSS_PAGE !== "0";
var LOOP_LIMIT = 1024;
var STRING_INLINE_MAX = 32;
var BULK_STRING = process.env.RINGZERO_WASM_BULK_STRING !== "0";
var BULK_PASSES = 16;
var STRING_TOUCH = process.env.RINGZERO_WASM_STRING_TOUCH === "1";
var STRING_TOUCHES = 4;
var STRING_EDGE = process.env.RINGZERO_WASM_STRING_EDGE === "1";
var L_ADD = 1;
var L_ADC = 2;
var L_SUB = 3;
var L_SBB = 4;
var L_LOGIC = 5;
var L_INC = 6;
var L_DEC = 7;
var EXPLICIT = -2;
var ADD = 0;
var OR = 1;
var AND = 4;
var SUB = 5;
var XOR = 6;
var CMP = 7;
var TEST = 8;
var KIND = [L_ADD, L_LOGIC, 0, 0, L_LOGIC, L_SUB, L_LOGIC, L_SUB, L_LOGIC];
var TWO473 = 140737488355328;
var I64_MIN = -(2n ** 63n);
var I64_MAX = 2n ** 63n - 1n;
var ARITH = 2261;
var RF2 = 1 << 16;
var VM2 = 1 << 17;
var IF2 = 1 << 9;
var PRIV_CHAIN = process.env.RINGZERO_WASM_PRIV_CHAIN !== "0";
var F_RD = 0;
var F_WR = 1;
var F_RP2 = 2;
var F_GP = 4;
var F_SY = 6;
var LOCAL_MEM = process.env.RINGZERO_WASM_LOCAL_MEM === "1";
var F_FA = 7;
var F_LD = 8;
var F_ST = 12;
var F_TAIL = 16;
var LOG2 = [0, 0, 1, 0, 2, 0, 0, 0, 3];
var DIRECT_CHAIN = process.env.RINGZERO_WASM_DIRECT !== "0";
var RAS = process.env.RINGZERO_WASM_RAS !== "0";
var RAS_USER = process.env.RINGZERO_WASM_RAS_USER !== "0";
var INLINE_MEM = process.env.RINGZERO_WASM_INLINE_MEM !== "0";
var INLINE_ALL = process.env.RINGZERO_WASM_INLINE_ALL === "1";
var LAST_PAGE = process.env.RINGZERO_WASM_LAST_PAGE !== "0";
var LP_NONE = 1n;
var LOOP_INLINE = process.env.RINGZERO_WASM_LOOP_INLINE !== "0";
var LOOP_ENTRY = process.env.RINGZERO_WASM_LOOP_ENTRY !== "0";
var SELF_EDGE = process.env.RINGZERO_WASM_SELF_EDGE !== "0";
function midSelfEdge(block) {
  if (!SELF_EDGE) return false;
  const offs = blockOffsets(block);
  if (offs === null) return false;
  const es = block.entries;
  for (let i = 0; i < es.length - 1; i++) {
    const e = es[i];
    if ((e.form === 18 /* Jcc */ || e.form === 19 /* Jmp */) && e.len > 0 && offs[i] + e.len + e.disp === 0) return true;
  }
  return false;
}
var JCC_FLUSH = process.env.RINGZERO_WASM_JCC_FLUSH !== "0";
var HOIST_FLUSH = process.env.RINGZERO_WASM_HOIST_FLUSH !== "0";
var ZX = process.env.RINGZERO_WASM_ZX !== "0";
var hoistStats = { n: 0 };
var SLOW_RIP = process.env.RINGZERO_WASM_SLOW_RIP !== "0";
var NEXT_KEY = process.env.RINGZERO_WASM_NEXT_KEY !== "0";
var R0_ONE = process.env.RINGZERO_WASM_R0_ONE !== "0";
var EXIT_STATS = process.env.RINGZERO_WASM_EXIT_STATS === "1";
var COUNT_CHAINS = EXIT_STATS || process.env.RINGZERO_WASM_COUNT_CHAINS === "1";
var PREDICT = process.env.RINGZERO_WASM_PREDICT === "1";
var CALLRET = process.env.RINGZERO_WASM_CALLRET === "1";
var CALLRET_DEPTH = Math.max(1, Number(process.env.RINGZERO_WASM_CALLRET_DEPTH ?? 32) | 0);
var CALLRET_NEST = process.env.RINGZERO_WASM_CALLRET_NEST !== "0";
var CALLRET_COUNT = EXIT_STATS;
var RET_TAIL = process.env.RINGZERO_WASM_RET_TAIL === "1";
var SITE_STATS = process.env.RINGZERO_WASM_SITE_STATS ?? "";
var SITE_EXITS = SITE_STATS !== "" && process.env.RINGZERO_WASM_SITE_EXITS === "1";
var SITE_USER = process.env.RINGZERO_WASM_SITE_USER === "1";
var WASM_NAMES = process.env.RINGZERO_WASM_NAMES === "1";
var SITE_BASE = STATE_BASE + (MAX_WASM_CPUS - 1) * STATE_STRIDE;
var SITE_MAX = STATE_STRIDE >> 2;
var siteInfo = [];
var X_SAME = 0;
var X_CROSS = 1;
var X_REGION = 2;
var X_IND = 3;
var X_RET = 4;
var X_HELPER = 5;
var X_LOOP = 6;
var X_OTHER = 7;
var X_NAMES = ["same-page", "cross-page", "region-miss", "indirect", "ret", "helper", "self-loop", "other"];
var TIER1 = { slot: -1, inline: false };
var BLOCK_TYPE = 0;
var TBody = class extends Body {
  /** (a scratch body inside WasmEngine.flush's withScratch: encoded into its module before the scope ends) */
  constructor(paramCount) {
    super(paramCount, true);
  }
  nest = 0;
  /** The memory functions called (bit LOG2[size], + 4 for a store): buildModule defines those. */
  memUsed = 0;
  /** Memory operands emitted (loads and stores through Translator.load/store): tier-2 candidates need some. */
  memOps = 0;
  /** Calls emitted (Translator.exitIfSlow: whether an instruction made calls other than its inline probes' slow paths). */
  calls = 0;
  call(f) {
    this.calls++;
    return super.call(f);
  }
  /** A call that is not counted in `calls` (Translator.resolveCf: the flag library, which reads the record only). */
  callUncounted(f) {
    return super.call(f);
  }
  open(kind) {
    this.nest++;
    return super.open(kind);
  }
  close() {
    this.nest--;
    return super.close();
  }
};
var Translator = class {
  constructor(block, offs, opts = TIER1) {
    this.block = block;
    this.offs = offs;
    this.opts = opts;
    const b = this.b = new TBody(5);
    this.n = b.local(I32);
    this.xc = b.local(I32);
    this.rtag = b.local(I32);
    this.wtag = b.local(I32);
    this.lcy = b.local(I32);
    this.fl = b.local(I32);
    this.c32 = b.local(I32);
    this.r0i = b.local(I64);
    this.a = b.local(I64);
    this.v = b.local(I64);
    this.w = b.local(I64);
    this.t = b.local(I64);
    this.ld = b.local(I64);
    this.ls = b.local(I64);
    this.lr = b.local(I64);
    this.tf = b.local(F64);
    this.x1 = b.local(I64);
    this.x2 = b.local(I64);
    this.t32 = b.local(I32);
    this.t64 = b.local(I64);
    this.pTi = b.local(I32);
    this.rv = b.local(I64);
    this.slowL = b.local(I32);
    this.runOk = b.local(I32);
    this.runPa = b.local(I32);
  }
  block;
  offs;
  opts;
  b;
  // params
  st = 0;
  r0 = 1;
  left = 2;
  user = 3;
  k = 4;
  /** Set while emitting the members of a region. */
  region = null;
  // locals
  n;
  xc;
  rtag;
  wtag;
  r0i;
  a;
  v;
  w;
  t;
  ld;
  ls;
  lr;
  lcy;
  tf;
  c32;
  fl;
  x1;
  x2;
  t32;
  t64;
  /** The inline memory probe's TLB entry address. */
  pTi;
  /**
   * The register cache: guest register r's 64-bit value in local rc[r] (-1: none yet) with status rs[r]: 0 not
   * cached, 1 the same as the state area, 2 newer than the state area (dirty). Only straight-line code (at depth
   * `base`, outside every if/loop the translator opens inside an instruction) loads into the cache or makes a
   * register dirty; code inside a branch or loop reads the cache or the state area and writes both (its status then
   * stays right on every path). Dirty registers are written back (flush) before anything that may fault or look
   * at the state area (memory library, helpers) and at every exit; a replay or the SSE hook forgets the cache.
   */
  rc = new Array(16).fill(-1);
  rs = new Array(16).fill(0);
  /** Bit r set exactly when rs[r] is 2 (flush, called before every access, helper and exit, skips a clean cache). */
  dirty = 0;
  /**
   * ZX: bit r set when rc[r] is cached (rs[r] !== 0) and holds a 32-bit value zero-extended (the last write to r in
   * this block's straight-line code was a 32-bit one); cleared by every other write and reload of the local.
   */
  zx = 0;
  /** REGION_REGS: the registers cached (and of them dirty) when the region member being emitted starts (emitCode). */
  entryRegs = 0;
  entryDirty = 0;
  base = 1;
  /** Set while ./sse.ts emits (it reads registers from the state area itself): the cache is neither filled nor dirtied. */
  noCache = false;
  /** What produced the flag locals (null: unknown here, the state area holds the record). */
  kind = 0;
  size = 0;
  known = false;
  /**
   * The flag locals hold a record (kind, size) that the state area does not have yet (see produced): it is stored
   * where something can read it (commitFlags, from flush: before the memory library, a helper, an exit). Only
   * straight-line code defers; inside a branch or loop a producer stores through. Never set while !known.
   */
  fdirty = false;
  /**
   * A ROL/ROR by a constant whose flags are not computed yet (0: none, 1: ROL, 2: ROR; emitShiftImm): the flags are
   * the known record's (kind, size, untouched in the flag locals) with CF and OF replaced by those of the rotated
   * value in local `rv` (rotSize bytes); SDM vol. 2B ROL/ROR: CF and OF only, the others unchanged. md5's rotates
   * are followed by a load (whose fault would see the flags) or end a region member, and the next ADD overwrites
   * them: the flags are worked out only where something can see them (settleRot; commitFlags inside a branch, such
   * as a memory access's slow path or an exit, stores them without changing the locals). Only straight-line code
   * that never touches the flag locals before its producer's last step runs while one is pending (ROT_KEEP); emitCode
   * settles it before any other form. Always with fdirty (the state area does not have those flags).
   */
  rot = 0;
  rotSize = 4;
  /**
   * The known record is an INC/DEC (fdirty, straight-line level) whose carry-in (local lcy: CF before it, which
   * INC/DEC keep; SDM vol. 2A INC/DEC) is not worked out yet: it is the CF of the record the state area still holds
   * (the block did not know the flags there, or an INC/DEC before it was just as lazy). The flag library computes it
   * only where something reads CF (cond, materialize) or stores the record (storeFlags, on that path only): a loop
   * whose INC/DEC at the top had its CF recomputed on every pass now does it only when the flags leave before the
   * next producer. Never with rot (a rotate first works out the carry: storeRot overwrites S_LOP before reading).
   */
  cfLazy = false;
  rv;
  /**
   * An inline probe's slow path (the memory library, which may stop the chain) ran since the last exitIfSlow check
   * (local, i32 0/1), and how many such slow paths the current instruction has / the body's call count at its start:
   * when its calls are all such slow paths, exitIfSlow reads S_CHAIN only after one of them ran, not on every TLB hit.
   */
  slowL;
  /**
   * A stack run (stackRun): whether its one probe hit (i32 0/1) and the RAM offset of its lowest byte (i32); per
   * instruction index of the block, the byte offset of that instruction's stack access from it (runOff, valid below
   * runEnd), and the current access's (runCur, -1: none; load/store take it).
   */
  runOk;
  runPa;
  runOff = [];
  runEnd = 0;
  runCur = -1;
  insSlow = 0;
  insCalls = 0;
  /**
   * SLOW_WB: slowL may be 1 where the code being emitted runs (set by an earlier instruction's slow path that no
   * flagged exitIfSlow cleared: an unflagged check, another region member, the loop's previous pass). While it is
   * not, a flagged check's slowL says that a slow path of the current instruction ran.
   */
  slowMaybe = false;
  /**
   * SLOW_WB: the current instruction's first inline slow path ran its flush (every dirty register and a deferred flag
   * record written back on that path) with slowL 0 before it; since then the registers in slowMod were written
   * (set64, setFrom) and, when slowFl, the flags were produced again. On every path where a slow path of the
   * instruction ran, the state area holds all the others: a flagged exitIfSlow writes back only these.
   */
  slowTrack = false;
  slowMod = 0;
  slowFl = false;
  /**
   * Per base register of the address (slot 16: none; ea sets aKey), the page of the last inline load probe through it
   * (LAST_PAGE): its linear address (i64 local; LP_NONE after a probe that missed) and its TLB entry's addend (i32
   * local, ./tlb-probe.ts), -1 until used. lpAt: the body's call count while those locals hold what this block's straight-line
   * code last set (-1: not since the block started); any call other than the memory library's (a helper may change
   * the paging state) makes them stale. The slot only picks which page to compare with: any slot is correct.
   */
  lpVpn = new Array(17).fill(-1);
  lpBase = new Array(17).fill(-1);
  lpAt = new Array(17).fill(-1);
  aKey = 16;
  /** After a memory-library call emitted with the body's call count `before`: the slots valid then stay valid. */
  lpKeep(before) {
    for (let i = 0; i < 17; i++) if (this.lpAt[i] === before) this.lpAt[i] = this.b.calls;
  }
  selfLoop = false;
  /** The region member being emitted lies on a cycle of the region's branches (a loop split over blocks): inline probes. */
  loopMember = false;
  /** RINGZERO_WASM_DUMP: [label, code start, code end] of each instruction emitted (./dump.ts), else null. */
  marks = DUMP_FILE ? [] : null;
  out = -1;
  top = -1;
  ix = 0;
  /** emitCode: the current instruction accessed memory (an exitIfSlow check follows it) / was replayed (no exit after it). */
  insMem = false;
  insReplayed = false;
  /** Inside a branch or loop of the current instruction (or the SSE hook): no cache state changes. */
  nested() {
    return this.noCache || this.b.nest > this.base;
  }
  /** The cache local of register r. */
  rl(r) {
    if (this.rc[r] < 0) this.rc[r] = this.b.local(I64);
    return this.rc[r];
  }
  /**
   * Write the dirty registers and a deferred flag record back to the state area (at straight-line level they become
   * clean). Tried and not kept (session 15, branch s15-flags-guard2): no write-back before a memory-library call,
   * but a try/catch_all around it whose handler writes them back and rethrows (only a fault needs them there):
   * fewer stores on every path, but registers then stay dirty to every exit, so the code grew by 20-30% (45.4 ->
   * 61.5 wasm operations per guest instruction) and boot + ash 100k / md5 32 MiB took more CPU (35.0 -> 39.1 s and
   * 18.8 -> 21.9 s in one interleaved round, main thread 27.5 -> 29.5 and 12.4 -> 13.3 s).
   * Tried again and not kept (session 20, branch s20-wb-defer): the same with small code, as TCG restores state on a
   * fault: each call site sets an i32 local to the mask of cached registers (when it changes), the slow path's
   * fault (S_MEMFAULT) or event exit goes to one write-back by mask per function, and a helper throws the fault
   * again. Boot + ash 30k (873M instructions, EXIT_STATS): write-backs 404M (215M before library calls) -> 319M
   * (most move to the block exits, which write back every dirty register), code -1%; but V8 compiles code under a
   * try/catch_all slower: main-thread CPU on/off side by side (load 15-35), try around the function: ash 5.36/4.84
   * and 5.57/4.65 s, md5 32 MiB 4.10/3.34 s (the try alone, nothing deferred: md5 3.62/3.02 s); try around each
   * call: md5 3.24/2.99, ash 5.31/4.62 s. With a status check after each call instead of a try (the slow path
   * returns, S_MEMFAULT set): md5 3.17/3.16, 3.10/3.35 s, ash 6.60/6.77, 6.08/5.82 s, but to the prompt 13.51/13.18,
   * 12.77/12.51, 11.99/11.03, 13.04/12.03 s (boot +2..+9%): the write-backs saved are paid back at the exits and
   * in the checks.
   */
  flush(flags = true, except = 0) {
    if (flags) this.commitFlags();
    const m0 = this.dirty & ~except;
    if (m0 === 0) return;
    const keep = this.nested();
    for (let r = 0, m = m0; m !== 0; r++, m >>>= 1) {
      if ((m & 1) === 0) continue;
      this.writeBack(r, this.rc[r]);
      if (!keep) this.rs[r] = 1;
    }
    if (!keep) this.dirty &= except;
  }
  /**
   * REGION_REGS: the registers a branch to region member j may leave dirty in their locals (R.dIn[j], decided here
   * at the first branch to j emitted: those of j's entry registers dirty now, with REGION_DIRTY; none without).
   * Every other dirty register is written back before the branch (flush's `except`).
   */
  keepDirty(j) {
    const R = this.region;
    if (!REGION_REGS) return 0;
    if (R.dIn[j] < 0) R.dIn[j] = REGION_DIRTY ? this.dirty & R.regs[j] : 0;
    return R.dIn[j];
  }
  /** keepDirty of the region member a static exit to r0 + `ripOff` branches to (0: it leaves the function). */
  keepFor(ripOff) {
    const to = REGION_REGS ? this.regionTarget(ripOff) : void 0;
    return to === void 0 ? 0 : this.keepDirty(to.j);
  }
  /**
   * DEAD_REGS: the registers a static exit to r0 + `ripOff` need not write back on its way into known translated code
   * (a region member's or an installed tail-call target's deadRegs; exitStatic, tailExit); 0 when it leaves.
   */
  deadFor(ripOff) {
    if (!DEAD_REGS) return 0;
    const to = this.regionTarget(ripOff);
    if (to !== void 0) return this.region.dead[to.j];
    if (!this.opts.tail) return 0;
    return this.targetAt(ripOff, this.opts.tail).t?.dead ?? 0;
  }
  /**
   * REGION_REGS, on a branch's path to region member j (inside the branch's `if`: the cache state stays the one of
   * the code after it): the registers j expects in their locals that are not cached here, loaded from the state
   * area (which holds them: not cached means not dirty).
   */
  edgeLoad(j) {
    const b = this.b, m = this.region.regs[j];
    for (let r = 0; r < 16; r++) {
      if ((m >>> r & 1) === 0 || this.rs[r] !== 0) continue;
      if (EXIT_STATS) this.wbCount(7);
      b.get(this.st).mem(Op.i64Load, 3, L3.sGpr(r)).set(this.rl(r));
    }
  }
  /** The backward branch to member j of the region: k = the br_table index of j's code, then to the br_table. */
  branchBack(j) {
    const R = this.region;
    this.b.i32(j + R.kBack).set(this.k).br(R.disp);
  }
  /**
   * Store the i64 local `l` into register r's 8-byte slot in the state area (layout.ts S_GPR): one i64.store, 3
   * operations (when the halves were two arrays it took two i64.store32 and a shift, 8).
   */
  writeBack(r, l) {
    if (EXIT_STATS) this.wbCount(this.wbCtx);
    this.b.get(this.st).get(l).mem(Op.i64Store, 3, L3.sGpr(r));
  }
  /** SITE_STATS: count this memory-library call at a new site of the current instruction. */
  siteCount(kind) {
    const l = this.curLin(), off = this.offs[this.ix] ?? 0;
    if (SITE_USER && !userLinear(l)) return;
    const i = Math.min(siteInfo.length, SITE_MAX - 1);
    const e = this.block.entries[this.ix];
    const where = this.selfLoop || this.loopMember ? "l" : this.region !== null ? "r" : "f";
    siteInfo.push({ lin: l === void 0 ? void 0 : l + off, pa: this.block.pa + off, kind: `${kind} form=${e?.form ?? -1} ${where} seg=${e?.seg ?? -1}` });
    this.b.i32(0).i32(0).mem(Op.i32Load, 2, SITE_BASE + 4 * i).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, SITE_BASE + 4 * i);
  }
  /**
   * EXIT_STATS: the counter writeBack bumps (layout.ts S_WBSTATS: 0 before a memory-library call, 1 other (helpers,
   * replays, slow paths), 3 before a branch to a region member, 8 at a way out of the function (leave, a tail call), 9
   * a block-ending Jcc's write-back when neither target is a region member, 10 hoisted before a side exit
   * (hoistFlush), 11 at a self-loop's back edge); 2 counts library calls, 4 register loads into the cache, 5 reads of
   * an uncached register from the state area, 6 loads at a region member's dispatcher entry, 7 loads on a branch to a
   * member. Per system call of bench/syscall-counts (~700 guest instructions, session 27): 0: 54, 1: 39, 3: 50-54,
   * 8: 108, 9: 4, 10: 100; so most write-backs are where something outside the function can read the registers (a
   * memory-library call, 135 per system call, whose miss may fault; ~50 ways out), or hoisted to before one.
   */
  wbCtx = 1;
  wbCount(k) {
    const o = L3.S_WBSTATS + 4 * k;
    this.b.get(this.st).get(this.st).mem(Op.i32Load, 2, o).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, o);
  }
  /** Forget the cache (after a replay, which may have changed any register in the state area). */
  forget() {
    this.rs.fill(0);
    this.dirty = 0;
    this.zx = 0;
    this.slowTrack = false;
  }
  /** Forget register r (a helper wrote it in the state area). */
  drop(r) {
    this.rs[r] = 0;
    this.dirty &= ~(1 << r);
    this.zx &= ~(1 << r);
    this.slowTrack = false;
  }
  /** Registers kept in locals across a self-loop (null: none; the loop's top starts with an empty cache). */
  loopPre = null;
  loopDirty = [];
  /** SLOW_WB: slowL may be 1 at the self-loop's back edge (recorded by the first emission: slowClear). */
  backSlow = true;
  /** SLOW_WB: the self-loop's top is entered with slowL 0 (emitCode, backEdge keeps it so). */
  loopSlow = false;
  /** The registers dirty at the self-loop's back edge (recorded by the first emission). */
  backDirty = new Array(16).fill(false);
  /**
   * At a self-loop's back edge: make the registers match what the loop's top assumes. Without loopPre, everything
   * is written back (the top starts empty). With it, each kept register must be in its local (reloaded if a replay
   * forgot it) and written back unless the top takes it as dirty; any other dirty register is written back.
   */
  backEdge() {
    const b = this.b;
    this.backSlow = this.slowMaybe;
    if (this.loopSlow && this.slowMaybe) b.i32(0).set(this.slowL);
    this.commitFlags();
    for (let r = 0; r < 16; r++) this.backDirty[r] = this.rs[r] === 2;
    const pre = this.loopPre;
    this.wbCtx = 11;
    if (pre === null) {
      this.flush();
      this.wbCtx = 1;
      return;
    }
    for (let r = 0; r < 16; r++) {
      const kept = pre.includes(r);
      if (kept && this.rs[r] === 0) {
        b.get(this.st).mem(Op.i64Load, 3, L3.sGpr(r)).set(this.rl(r));
      } else if (this.rs[r] === 2 && !(kept && this.loopDirty.includes(r))) {
        this.writeBack(r, this.rc[r]);
      }
    }
    this.wbCtx = 1;
  }
  /**
   * A Jcc or JMP (rel8, rel32) that straddles the end of the page (the block's last instruction: SoftCpu.recordBlock
   * gives it no form, since its displacement lies partly in the next page, which this block's page generation does not
   * cover). When the next page is in this privilege's fetch TLB bank and in RAM (so fetching the instruction's bytes
   * could not fault nor reach a device), it runs here: not taken, on to the instruction after it (`fallOff`, in the
   * next page); taken, the displacement is read from RAM as the fetch would read it (its bytes in this page, which the
   * block's page generation covers, and in the next page through that TLB entry), the target checked for canonical
   * form (#GP(0)) and left to the dispatcher. Otherwise the caller replays it. Linux has a `ja rel32` at a page end in
   * psi_group_change (about 10 per 4 KiB random read, 40% taken), a `jbe` in tcp_v4_rcv, `jmp rel8` in
   * pick_next_task_fair and `jmp rel32` in internal_get_user_pages_fast.
   */
  straddlingBranch(e, o, i) {
    const b = this.b, jcc = e.opcode !== 235 && e.opcode !== 233;
    const immLen = e.opcode === 235 || e.opcode >= 112 && e.opcode <= 127 ? 1 : 4;
    const fallOff = o + e.opLen + immLen;
    const check = () => {
      b.get(this.r0i).i64(fallOff).op(Op.i64Add).i64(-4096).op(Op.i64And).set(this.t);
      this.fetchEntry(this.t, this.c32);
      b.mem(Op.i64Load32u, 2, L3.TLB_FETCH_DELTA + 12).i64(12).op(Op.i64Shl).set(this.w);
      b.get(this.c32).mem(Op.i64Load, 3, L3.TLB_FETCH_DELTA).get(this.t).op(Op.i64Eq).set(this.c32);
    };
    const taken = () => {
      b.get(this.c32).open(Op.if);
      const start = (this.block.pa & 4095) + o + e.opLen;
      for (let k = 0; k < immLen; k++) {
        const at = start + k;
        if (at < 4096) b.i32(this.block.pa - (this.block.pa & 4095) + at);
        else b.get(this.w).i64(at - 4096).op(Op.i64Add).op(Op.i32WrapI64);
        b.mem(Op.i32Load8u, 0, WASM_RAM_OFFSET);
        if (k > 0) b.i32(8 * k).op(Op.i32Shl).op(Op.i32Or);
      }
      if (immLen === 1) b.i32(24).op(Op.i32Shl).i32(24).op(Op.i32ShrS);
      b.op(
        183
        /* f64.convert_i32_s */
      );
      this.r0f(fallOff);
      b.op(Op.f64Add);
      this.checkCanonicalF64();
      b.get(this.st).get(this.tf).mem(Op.f64Store, 3, L3.S_RIP);
      b.i32(i + 1).set(this.xc);
      this.leave();
      b.close();
    };
    if (jcc) {
      this.cond(e.opcode & 15);
      b.op(Op.i32Eqz).open(Op.if);
      check();
      b.get(this.c32).open(Op.if);
      this.exitStatic(i + 1, fallOff);
      b.close();
      b.else();
      check();
      taken();
      b.close();
    } else {
      check();
      taken();
    }
  }
  /**
   * Before the block's last instruction when it straddles the page end (Block.pfn2: its bytes are partly in another
   * physical page, which the block's page generation does not cover): unless this privilege's fetch TLB bank maps the
   * next linear page to that page (first-level tag, then physical page, as crossBranch probes) and that page still has
   * the generation the block was recorded with, the instruction is replayed (its guard, SoftCpu straddleGuard, then
   * interprets it: live bytes, and the fetch's #PF if the page is gone) and the block ends. Only such blocks emit this.
   */
  straddleCheck(i) {
    const b = this.b, blk = this.block;
    this.fetchMapsTo(4096 - (blk.pa & 4095), blk.pfn2, blk.gen2);
    b.op(Op.i32Eqz).open(Op.if);
    this.flush();
    this.pos();
    b.call(F_RP2).op(Op.drop);
    this.xk(X_HELPER);
    b.i32(i + 1).set(this.xc).br(this.out);
    b.close();
  }
  /**
   * Push (i32) the address, less TLB_FETCH_DELTA, of this privilege's fetch-bank TLB entry for the page address in i64
   * local `page` (rtag, the prologue's read bank, plus its slot), also set in i32 local `into`.
   */
  fetchEntry(page, into) {
    emitTlbSlot(this.b, page);
    this.b.get(this.rtag).op(Op.i32Add).tee(into);
  }
  /**
   * Push (i32) whether this privilege's fetch-TLB bank maps the linear page of r0 + `ripOff` to physical page `pfn`
   * (first-level tag, then the physical page: ./tlb-probe.ts's probe, on the fetch bank) and that page still has
   * generation `gen`: what the dispatcher's lookup would require to enter code there (straddleCheck, crossBranch).
   * Uses t64 and t32.
   */
  fetchMapsTo(ripOff, pfn, gen) {
    const b = this.b;
    b.get(this.r0i).i64(ripOff).op(Op.i64Add).i64(-4096).op(Op.i64And).set(this.t64);
    this.fetchEntry(this.t64, this.t32);
    b.mem(Op.i64Load, 3, L3.TLB_FETCH_DELTA).get(this.t64).op(Op.i64Eq);
    b.get(this.t32).mem(Op.i32Load, 2, L3.TLB_FETCH_DELTA + 12).i32(pfn).op(Op.i32Eq).op(Op.i32And);
    b.i32(0).mem(Op.i32Load, 2, L3.PAGE_GEN + 4 * pfn).i32(gen).op(Op.i32Eq).op(Op.i32And);
  }
  /**
   * HOIST_FLUSH, at straight-line level before a branch that leaves after instruction i (a side exit, exitIfSlow):
   * write back now what the code after instruction i writes back anyway before it changes it (hoistMask).
   */
  hoistFlush(i) {
    if (!HOIST_FLUSH || this.nested()) return;
    const h = hoistMask(this, i);
    if (h === null) return;
    if (h.flags && this.fdirty || (this.dirty & h.regs) !== 0) hoistStats.n++;
    if (h.flags) this.commitFlags();
    if ((this.dirty & h.regs) !== 0) {
      this.wbCtx = 10;
      this.flush(false, ~h.regs);
      this.wbCtx = 1;
    }
  }
  /**
   * Where S_CHAIN is known to be 1 (CHAIN_KNOWN): the body's call count while it is (-1: not known). Only a helper
   * clears it, and a call into translated code (the dispatcher, a tail call, a region branch) happens only while it
   * is 1; so at a block's start (not a self-loop's top: its back edge does not check) it is 1 until the next call,
   * and again after exitIfSlow, which leaves when it is 0 (a flagged one: when the instruction's calls, all slow
   * paths, ran; else none ran and it is what it was).
   */
  chainAt = -1;
  /** Push (i32) S_CHAIN and-ed with what `rest` pushes, or only the latter where S_CHAIN is known to be 1. */
  chainOn(rest) {
    const b = this.b;
    if (CHAIN_KNOWN && this.chainAt === b.calls) {
      rest();
      return;
    }
    b.get(this.st).mem(Op.i32Load, 2, L3.S_CHAIN);
    rest();
    b.op(Op.i32And);
  }
  /**
   * Push (i32) whether a branch to a region member of `n` instructions goes on, the count with this block's done in
   * c32: the chain on (chainOn), the count below the dispatcher's limit and the member within the budget (Region.lim).
   */
  regionFits(n) {
    const b = this.b, R = this.region;
    if (R.lim >= 0) {
      this.chainOn(() => {
        b.get(this.c32).get(R.lim).op(Op.i32LeS);
      });
      return;
    }
    this.chainOn(() => {
      b.get(this.c32).get(R.climit).op(Op.i32LtS);
    });
    b.get(this.c32).i32(n).op(Op.i32Add).get(this.left).op(Op.i32LeS).op(Op.i32And);
  }
  /** Leave the block (after `xc` was set): dirty registers written back first. */
  leave() {
    const c = this.wbCtx;
    if (c === 1) this.wbCtx = 8;
    this.flush();
    this.wbCtx = c;
    this.b.br(this.out);
  }
  /** RINGZERO_WASM_EXIT_STATS=1: note the kind of the exit that follows (X_*). */
  xk(kind) {
    if (EXIT_STATS) this.b.get(this.st).i32(kind).mem(Op.i32Store, 2, L3.S_XKIND);
    if (SITE_EXITS) this.siteCount("x." + X_NAMES[kind]);
  }
  // ---- registers (8-byte slots in the state area: layout.ts S_GPR)
  /** Push the 64-bit value of register r (i64). */
  r64(r) {
    const b = this.b;
    if (this.rs[r] !== 0) {
      b.get(this.rc[r]);
      return;
    }
    if (EXIT_STATS) this.wbCount(this.nested() ? 5 : 4);
    b.get(this.st).mem(Op.i64Load, 3, L3.sGpr(r));
    if (!this.nested()) {
      b.tee(this.rl(r));
      this.rs[r] = 1;
      this.zx &= ~(1 << r);
    }
  }
  /** Push the low 32 bits of register r (i32). */
  r32(r) {
    if (this.rs[r] !== 0) {
      this.b.get(this.rc[r]).op(Op.i32WrapI64);
      return;
    }
    if (EXIT_STATS) this.wbCount(5);
    this.b.get(this.st).mem(Op.i32Load, 2, L3.sGpr(r));
  }
  /**
   * Load `size` bytes at `a` into register r, zero-extended (`zx32`: a 32-bit result, as set32 makes it): at
   * straight-line level straight into r's cache local on every path of the access (RINGZERO_WASM_LOAD_REG=0: through
   * local v, as load then set64). r's old value stays in its local until the access is done: a slow path's
   * write-backs and fault see it.
   */
  loadReg(r, size, zx32, addr) {
    if (!LOAD_REG || this.nested()) {
      this.load(size, void 0, this.v, addr);
      if (zx32) this.set32(r, () => this.b.get(this.v).op(Op.i32WrapI64));
      else this.set64(r, this.v);
      return;
    }
    this.load(size, void 0, this.rl(r), addr);
    this.rs[r] = 2;
    this.dirty |= 1 << r;
    this.slowMod |= 1 << r;
    if (ZX && zx32) this.zx |= 1 << r;
    else this.zx &= ~(1 << r);
  }
  /**
   * A push of local w (PUSH, CALL, PUSH imm/memory): RSP - 8 is the address, and RSP changes after the store (which
   * may fault: RSP unchanged then). In a stack run the access needs the address only on its slow path (its hit
   * goes to the run's RAM offset), and RSP's local, cached by the run, moves by 8 (RUN_RSP).
   */
  pushStore(check) {
    const b = this.b, run = RUN_RSP && this.runCur >= 0;
    const addr = () => {
      this.r64(4);
      b.i64(8).op(Op.i64Sub);
    };
    if (!run) {
      addr();
      b.set(this.a);
      this.store(8, check);
      this.set64(4, this.a);
      return;
    }
    this.store(8, check, addr);
    this.setFrom(4, () => {
      this.r64(4);
      b.i64(8).op(Op.i64Sub);
    });
  }
  /** Store i64 local `l` into register r. */
  set64(r, l) {
    const b = this.b;
    this.zx &= ~(1 << r);
    this.slowMod |= 1 << r;
    if (!this.nested()) {
      b.get(l).set(this.rl(r));
      this.rs[r] = 2;
      this.dirty |= 1 << r;
      return;
    }
    this.writeBack(r, l);
    if (this.rs[r] !== 0) b.get(l).set(this.rc[r]);
  }
  /**
   * Store the i64 produced by `emit` into register r: at straight-line level straight into its cache local (no
   * temporary: Liftoff, which runs most translated code, compiles every local.get/set as a move).
   */
  setFrom(r, emit) {
    const b = this.b;
    this.zx &= ~(1 << r);
    this.slowMod |= 1 << r;
    if (!this.nested()) {
      emit();
      b.set(this.rl(r));
      this.rs[r] = 2;
      this.dirty |= 1 << r;
      return;
    }
    emit();
    b.set(this.t64);
    this.set64(r, this.t64);
  }
  /** Store the i32 produced by `emit` into the low half of r and zero the high half. */
  set32(r, emit) {
    this.setFrom(r, () => {
      emit();
      this.b.op(Op.i64ExtendI32u);
    });
    if (ZX && !this.nested()) this.zx |= 1 << r;
  }
  /** Push byte register (r, bit position sh) zero-extended (i32). */
  r8(r, sh) {
    this.r32(r);
    if (sh) this.b.i32(sh).op(Op.i32ShrU);
    this.b.i32(255).op(Op.i32And);
  }
  /** Write the low byte of the i32 produced by `emit` into byte register (r, sh). */
  set8(r, sh, emit) {
    this.setLow(r, 255 << sh, () => {
      emit();
      this.b.i32(255).op(Op.i32And);
      if (sh) this.b.i32(sh).op(Op.i32Shl);
    });
  }
  /** Replace the bits `mask` of register r's low half by the i32 produced by `emit` (already in place, masked). */
  setLow(r, mask, emit) {
    const b = this.b;
    emit();
    b.set(this.t32);
    this.r64(r);
    b.i64(-(mask >>> 0) - 1).op(Op.i64And);
    b.get(this.t32).op(Op.i64ExtendI32u).op(Op.i64Or).set(this.t64);
    this.set64(r, this.t64);
  }
  /** Push the `pos` argument of a helper for the current instruction (k << POS_MEMBER | n << 5 | index). */
  pos() {
    const b = this.b;
    if (this.region !== null) b.get(this.n).i32(5).op(Op.i32Shl).i32(this.region.cur << POS_MEMBER | this.ix).op(Op.i32Or);
    else if (this.selfLoop) b.get(this.n).i32(5).op(Op.i32Shl).i32(this.ix).op(Op.i32Or);
    else b.i32(this.ix);
  }
  // ---- memory
  /** Effective address of e's memory operand into local `a` (64-bit address size); `next` = offset of the next instruction. */
  ea(e, next) {
    const b = this.b;
    let terms = 0;
    this.aKey = e.base >= 0 ? e.base : 16;
    if (e.base >= 0) {
      this.r64(e.base);
      terms++;
    } else if (e.base === -2) {
      b.get(this.r0i).i64(next).op(Op.i64Add);
      terms++;
    }
    if (e.index >= 0) {
      this.r64(e.index);
      if (e.scale > 1) b.i64(Math.log2(e.scale)).op(Op.i64Shl);
      if (terms) b.op(Op.i64Add);
      terms++;
    }
    if (e.disp !== 0 || terms === 0) {
      b.i64(e.disp);
      if (terms) b.op(Op.i64Add);
    }
    if (e.seg >= 0) {
      b.get(this.st).mem(Op.f64Load, 3, L3.S_SEG + 8 * e.seg).op(252, 6).op(Op.i64Add);
    }
    b.set(this.a);
  }
  /**
   * The memory library's fast path inline (RINGZERO_WASM_INLINE_MEM=0: off): `a` within one page, its TLB tag in the
   * bank `tag` (this privilege, read or write), the physical address in low RAM, and for a store a page without
   * decoded code; on a hit the access is done here (leaves the block `hit` with the access emitted by `access`),
   * else the code after it runs the library call, whose slow path may fault. Only that path can fault or run
   * JavaScript, so dirty cached registers are written back there alone (Translator.flush inside the branch).
   */
  probe(size, tag, write, access, pre) {
    const b = this.b;
    const hit = b.open(Op.block);
    const slow = b.open(Op.block);
    pre?.(slow);
    emitTlbProbe(b, tag, this.a, { ti: this.pTi }, size, write, slow);
    access();
    b.br(hit);
    b.close();
  }
  /**
   * An access of a stack run (stackRun) whose probe hit: done by `access` at the run's RAM offset (leaves the block
   * `hit`); else the code after it calls the memory library, as after a probe() miss, so that a run that did not fit
   * one mapped page faults at exactly the instruction and with the state the interpreter's would.
   */
  runAccess(access) {
    const b = this.b;
    const hit = b.open(Op.block);
    const slow = b.open(Op.block);
    b.get(this.runOk).op(Op.i32Eqz).hint(false).brIf(slow);
    access(slow);
    b.br(hit);
    b.close();
  }
  /**
   * SLOW_WB, before an inline access of the current instruction opens its blocks: at its first slow path, when slowL
   * may be stale here (slowMaybe), clear it at straight-line level first, so that a flagged exitIfSlow's slowL means
   * this instruction's slow path ran (slowTrack).
   */
  slowStart() {
    if (this.insSlow !== 0) return;
    this.slowTrack = false;
    if (!SLOW_WB || this.nested() || this.ix === this.block.entries.length - 1) return;
    if (this.slowMaybe) {
      this.b.i32(0).set(this.slowL);
      this.slowMaybe = false;
    }
    this.slowTrack = true;
  }
  /** SLOW_WB, in the slow path after its flush: the first one starts slowMod and slowFl. */
  slowFlushed() {
    if (this.insSlow === 0) {
      this.slowMod = 0;
      this.slowFl = false;
    }
  }
  /**
   * Load `size` bytes at `a` into local `v` (zero-extended): inline on a TLB hit, else through the memory library.
   * `check` (a RET's canonical check): `hit` runs on the inline path after the load and may branch to the label it
   * gets (the slow path, which loads again through the library), `slow` after the library's load, where the
   * registers were written back.
   */
  load(size, check, dst = this.v, addr) {
    const b = this.b;
    const run = this.runCur;
    this.runCur = -1;
    if (addr !== void 0 && run < 0) {
      addr();
      b.set(this.a);
    }
    const inline = run >= 0 || this.memInline();
    if (inline) this.slowStart();
    const before = b.calls;
    const key = this.aKey;
    const keep = this.lpAt[key] === before;
    const lp = LAST_PAGE && inline && run < 0;
    if (lp && this.lpVpn[key] < 0) {
      this.lpVpn[key] = b.local(I64);
      this.lpBase[key] = b.local(I32);
    }
    const lpVpn = this.lpVpn[key], lpBase = this.lpBase[key];
    b.memOps++;
    if (run >= 0) {
      this.runAccess((slow) => {
        b.get(this.runPa);
        b.mem(size === 4 ? Op.i64Load32u : Op.i64Load, 0, WASM_RAM_OFFSET + run).set(dst);
        check?.hit(slow);
      });
    } else if (inline) {
      const hit = b.open(Op.block);
      const slow = b.open(Op.block);
      if (lp && keep) {
        const other = b.open(Op.block);
        emitTlbKey(b, this.a, size);
        b.get(lpVpn).op(Op.i64Ne).brIf(other);
        if (size > 1) b.get(this.a).get(lpVpn).op(Op.i64LtU).brIf(other);
        b.get(this.a).op(Op.i32WrapI64).get(lpBase).op(Op.i32Add);
        emitRamAccess(b, size, false);
        b.set(dst);
        check?.hit(slow);
        b.br(hit);
        b.close();
      }
      emitTlbProbe(b, this.rtag, this.a, lp ? { ti: this.pTi, key: lpVpn, add: lpBase } : { ti: this.pTi }, size, false, slow);
      emitRamAccess(b, size, false);
      b.set(dst);
      check?.hit(slow);
      b.br(hit);
      b.close();
    }
    if (EXIT_STATS) this.wbCount(2);
    this.wbCtx = 0;
    this.flush();
    this.wbCtx = 1;
    if (inline) this.slowFlushed();
    b.get(this.st).get(this.rtag);
    if (addr !== void 0 && run >= 0) addr();
    else b.get(this.a);
    this.pos();
    if (SITE_STATS) this.siteCount("ld" + size + (inline ? run >= 0 ? "r" : "i" : ""));
    b.call(F_LD + LOG2[size]).set(dst);
    b.memUsed |= 1 << LOG2[size];
    check?.slow();
    if (lp) b.i64(LP_NONE).set(lpVpn);
    if (inline) {
      b.i32(1).set(this.slowL);
      this.insSlow++;
      b.close();
    }
    this.lpKeep(before);
    if (lp && !this.nested()) this.lpAt[key] = b.calls;
  }
  /**
   * Store the low `size` bytes of local `w` at `a`: inline on a TLB hit, else through the memory library. `check` (a
   * CALL's target check, which comes before its push): `hit` runs on the inline path before the store and may
   * branch to the label it gets (the slow path), `slow` in the slow path before the library's store, where the
   * registers were written back.
   */
  store(size, check, addr) {
    const b = this.b;
    const run = this.runCur;
    this.runCur = -1;
    if (addr !== void 0 && run < 0) {
      addr();
      b.set(this.a);
    }
    const inline = run >= 0 || this.memInline();
    if (inline) this.slowStart();
    b.memOps++;
    if (run >= 0) {
      this.runAccess((slow) => {
        check?.hit(slow);
        b.get(this.runPa).get(this.w);
        b.mem(size === 4 ? Op.i64Store32 : Op.i64Store, 0, WASM_RAM_OFFSET + run);
      });
    } else if (inline) {
      this.probe(size, this.wtag, true, () => {
        b.get(this.w);
        emitRamAccess(b, size, true);
      }, check?.hit);
    }
    if (EXIT_STATS) this.wbCount(2);
    this.wbCtx = 0;
    this.flush();
    this.wbCtx = 1;
    if (inline) this.slowFlushed();
    check?.slow();
    b.get(this.st).get(this.wtag);
    if (addr !== void 0 && run >= 0) addr();
    else b.get(this.a);
    b.get(this.w);
    this.pos();
    const before = b.calls;
    if (SITE_STATS) this.siteCount("st" + size + (inline ? run >= 0 ? "r" : "i" : ""));
    b.call(F_ST + LOG2[size]);
    b.memUsed |= 16 << LOG2[size];
    if (inline) {
      b.i32(1).set(this.slowL);
      this.insSlow++;
      b.close();
    }
    this.lpKeep(before);
  }
  // ---- exits
  /** Leave with `count` instructions of this pass done and RIP = r0 + `ripOff`. */
  exitConst(count, ripOff, kind = X_OTHER) {
    const b = this.b;
    this.xk(kind);
    b.get(this.st);
    this.r0f(ripOff);
    b.mem(Op.f64Store, 3, L3.S_RIP);
    b.i32(count).set(this.xc);
    this.leave();
  }
  /** Push r0 + `off` (the RIP of the block being run, plus an offset) as an f64 (R0_ONE: from r0i). */
  r0f(off = 0) {
    const b = this.b;
    if (R0_ONE) {
      b.get(this.r0i);
      if (off !== 0) b.i64(off).op(Op.i64Add);
      b.op(Op.f64ConvertI64s);
    } else {
      b.get(this.r0);
      if (off !== 0) b.f64(off).op(Op.f64Add);
    }
  }
  /** Move r0 (and r0i) on by `off`: a branch between a region's blocks. */
  r0move(off) {
    const b = this.b;
    if (off === 0) return;
    if (!R0_ONE) b.get(this.r0).f64(off).op(Op.f64Add).set(this.r0);
    b.get(this.r0i).i64(off).op(Op.i64Add).set(this.r0i);
  }
  /**
   * Emit the first two words of a DISPATCH entry for the block at `tpa` in this block's page (so of this block's page
   * generation) as one i64.const: pa in the low half, the generation in the high half.
   */
  entryKey(tpa) {
    this.b.i64hl(this.block.gen, tpa);
  }
  /**
   * Leave with `count` instructions of this pass done towards the static target r0 + `ripOff` (a direct branch, the
   * fall-through), telling the dispatcher where the target's translated block is when it lies in this block's
   * physical page: its physical address is then this block's + ripOff under the same translation (RIP's page did
   * not change, and nothing that changes the mapping or the mode is a fast form), and its page generation must be
   * this block's (current while this block runs: an invalidation stops the chain through S_CHAIN). Its dispatch
   * entry is at a constant address, so the block checks (pa, generation) with one 64-bit compare and leaves the
   * entry's address in S_NEXT: the dispatcher then skips the fetch-TLB probe and the table lookup.
   * (A tail call into the successor, measured first, made the boot slower: see the commit message.)
   */
  exitStatic(count, ripOff) {
    const b = this.b, pa = this.block.pa, tpa = pa + ripOff;
    const R = this.region, to = this.regionTarget(ripOff);
    if (to !== void 0 && to.cross) {
      this.crossBranch(count, ripOff, to.j);
      return;
    }
    if (R !== null && to !== void 0) {
      const j = to.j;
      this.wbCtx = 3;
      this.flush(!(EDGE_DEAD && flagsDead(R.members[j], -1)), this.keepDirty(j) | R.dead[j]);
      this.wbCtx = 1;
      b.get(this.n).i32(count).op(Op.i32Add).set(this.c32);
      this.regionFits(R.members[j].n);
      b.hint(true).open(Op.if);
      b.get(this.c32).set(this.n);
      this.r0move(ripOff);
      if (COUNT_CHAINS) b.get(R.intra).i32(1).op(Op.i32Add).set(R.intra);
      if (SITE_EXITS) this.siteCount("b");
      if (REGION_REGS) this.edgeLoad(j);
      if (j > R.cur) b.br(R.labels[j]);
      else this.branchBack(j);
      b.close();
      this.exitConst(count, ripOff, X_REGION);
      return;
    }
    if (this.opts.tail) this.tailExit(count, ripOff);
    if (DIRECT_CHAIN && ripOff !== 0 && tpa >>> 12 === pa >>> 12 && tpa >= 0) {
      const e = L3.dispatchEntry(tpa);
      if (NEXT_KEY) {
        b.get(this.st).i32(e).mem(Op.i32Store, 2, L3.S_NEXT);
        b.get(this.st);
        this.entryKey(tpa);
        b.mem(Op.i64Store, 3, L3.S_NKEY);
      } else {
        b.get(this.st).i32(e).i32(e + 16).i32(0);
        b.i32(0).mem(Op.i64Load, 3, e + 16);
        this.entryKey(tpa);
        b.op(Op.i64Eq).op(Op.select);
        b.i32(0).mem(Op.i64Load, 3, e);
        this.entryKey(tpa);
        b.op(Op.i64Eq).op(Op.select);
        b.mem(Op.i32Store, 2, L3.S_NEXT);
      }
    }
    this.exitConst(count, ripOff, tpa >>> 12 === pa >>> 12 && tpa >= 0 ? X_SAME : X_CROSS);
  }
  /**
   * Whether a static exit to r0 + `ripOff` branches (when it branches, not when it leaves) to a region member that
   * overwrites every arithmetic flag before anything can see them (flagsDead from its start), as exitStatic and
   * crossBranch decide: then the flags need not be stored on that path.
   */
  edgeDead(ripOff) {
    const to = EDGE_DEAD ? this.regionTarget(ripOff) : void 0;
    return to !== void 0 && flagsDead(this.region.members[to.j], -1);
  }
  /**
   * The region member a static exit to r0 + `ripOff` branches to when it branches (exitStatic): one on another page
   * found by linear address (`cross`: crossBranch), else one at the target's physical address on this block's page;
   * undefined when the exit leaves the function.
   */
  regionTarget(ripOff) {
    const R = this.region;
    if (R === null) return void 0;
    const pa = this.block.pa, tpa = pa + ripOff;
    if (CROSS_PAGE && tpa >>> 12 !== pa >>> 12 && R.lins.length > 0) {
      const jl = R.atLin.get(R.lins[R.cur] + ripOff);
      if (jl !== void 0 && jl !== R.cur && R.members[jl].pa >>> 12 !== pa >>> 12) return { j: jl, cross: true };
    }
    const j = R.at.get(tpa);
    return j !== void 0 && tpa >>> 12 === pa >>> 12 ? { j, cross: false } : void 0;
  }
  /** The linear address the block being emitted was queued at (a region member's, or translateBody's), if known. */
  lin = void 0;
  curLin() {
    const R = this.region;
    return R === null ? this.lin : R.lins.length > 0 ? R.lins[R.cur] : void 0;
  }
  /**
   * The translation at r0 + `ripOff` that a static exit may enter directly (tailExit, callNest): in this block's page
   * by physical address and this block's generation (`same`), else by its linear address; null: none.
   */
  targetAt(ripOff, ctx) {
    const tpa = this.block.pa + ripOff;
    const same = tpa >>> 12 === this.block.pa >>> 12 && tpa >= 0;
    if (same) return { t: ctx.find(tpa, this.block.gen), same };
    const lin = this.curLin();
    return { t: lin !== void 0 ? ctx.findLin(lin + ripOff) : null, same };
  }
  /**
   * A static exit to r0 + `ripOff` whose target was already translated and installed when this batch was built
   * (EmitOpts.tail: in this block's page with its page generation, else the block queued at that linear address):
   * a tail call (return_call, wasm tail calls) into that translation when the dispatcher would have entered it.
   * Checked as the dispatcher would: the chain is still on (S_CHAIN), its instruction count (S_NBASE + this call's)
   * below CHAIN_LIMIT, the target fits the budget; another page must also be mapped by this privilege's fetch-TLB
   * bank to the target's physical page and still have its generation (fetchMapsTo, as crossBranch); in this block's
   * page its generation is this block's, current while this block runs. Then S_NBASE, S_R0 and S_BLK move to the
   * target as the dispatcher moves them, and the target returns the instructions it ran to the dispatcher, which
   * adds them to S_NBASE. The function called is the translation found at build time, which stays right for that
   * code: the runtime never reuses its function-table index (S_BLK's helpers look the blocks up there; WasmEngine
   * pinned) and the checks above fail once its page changed. Else (or no target) the exit goes on as before.
   */
  tailExit(count, ripOff) {
    const b = this.b, tpa = this.block.pa + ripOff;
    const { t, same } = this.targetAt(ripOff, this.opts.tail);
    if (t === null) return;
    const tt = t;
    this.wbCtx = 8;
    this.flush(true, DEAD_REGS ? tt.dead ?? 0 : 0);
    this.wbCtx = 1;
    this.tailTo(tt, count, same ? X_SAME : X_CROSS, same ? tpa : -1, () => {
      if (!same) {
        this.fetchMapsTo(ripOff, tt.pa >>> 12, tt.gen);
        b.op(Op.i32And);
      }
    }, () => {
      this.r0f(ripOff);
    });
  }
  /**
   * The tail call of tailExit and predictExit into installed translation `t` (dirty registers already written back):
   * when the chain is on, the call's instruction count with `count` more stays below CHAIN_LIMIT and t fits the
   * budget, and what `cond` pushes (i32s and-ed to those; may push nothing) holds, S_NBASE, S_R0 and S_BLK move to
   * t (its RIP, an f64, pushed by `rip`) and t is called with return_call; else the code goes on after it. `kind` is
   * the exit kind counted (EXIT_STATS) and `samePa` t's physical address when it lies in this block's page (-1 else).
   */
  tailTo(t, count, kind, samePa, cond, rip) {
    const b = this.b, ctx = this.opts.tail;
    let fi = -1;
    if (t.fn !== null) {
      fi = ctx.index.get(t.fn) ?? -1;
      if (fi < 0) {
        fi = ctx.fns.push(t.fn) - 1;
        ctx.index.set(t.fn, fi);
      }
    }
    b.get(this.n).i32(count).op(Op.i32Add).set(this.c32);
    this.chainOn(() => {
      b.get(this.st).mem(Op.i32Load, 2, L3.S_NBASE).get(this.c32).op(Op.i32Add).i32(CHAIN_LIMIT).op(Op.i32LtS);
    });
    b.get(this.c32).i32(t.n).op(Op.i32Add).get(this.left).op(Op.i32LeS).op(Op.i32And);
    cond();
    b.hint(true).open(Op.if);
    b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_NBASE).get(this.c32).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_NBASE);
    rip();
    b.set(this.tf);
    b.get(this.st).get(this.tf).mem(Op.f64Store, 3, L3.S_R0);
    b.get(this.st).i32(t.word).mem(Op.i32Store, 2, L3.S_BLK);
    if (samePa >= 0) {
      const ph = L3.S_PHITS + 4 * (samePa >>> 12 & L3.PHITS_N - 1);
      b.get(this.st).get(this.st).mem(Op.i32Load, 2, ph).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, ph);
    }
    const R = this.region;
    if (COUNT_CHAINS) b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_TAILS).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_TAILS);
    if (COUNT_CHAINS && R !== null) b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_INTRA).get(R.intra).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_INTRA);
    if (SITE_EXITS) this.siteCount("t." + X_NAMES[kind]);
    if (EXIT_STATS) {
      const o = L3.S_XSTATS + 4 * (kind * 8 + 5);
      b.get(this.st).get(this.st).mem(Op.i32Load, 2, o).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, o);
    }
    b.get(this.st).get(this.tf).get(this.left).get(this.c32).op(Op.i32Sub).get(this.user).i32(t.word >>> K_SHIFT);
    if (t.local !== void 0) ctx.sites.push({ body: b, at: b.returnCallLater(), local: t.local });
    else b.returnCall(F_TAIL + fi);
    b.close();
  }
  /**
   * An indirect exit (RET, indirect JMP/CALL: the target in local `v`, canonical, already in S_RIP) predicted from
   * where this block's last run in the JavaScript tier went (Block.lastRip: a PLT slot's `jmp [rip+GOT]` always goes
   * to the same function, a RET of a function called from one place to the same return address): when the block
   * last queued at that linear address is installed (TailCtx.findLin), `v` is that address and the dispatcher
   * would enter it there (this privilege's fetch-TLB bank maps the address's page to the target's
   * physical page, of the target's generation: fetchMapsAt; chain on, limit, budget: tailTo), a tail call into it
   * instead of the trip through the dispatcher (its indirect call_indirect, whose one call site predicts badly, and
   * for a JMP/CALL its TLB probe and table lookup). A RET's return-address prediction (rasPop) may have named a
   * dispatch entry in S_NEXT: cleared on the tail-call path, or the entry the callee's own exit names would be read
   * stale. RINGZERO_WASM_PREDICT=1: on (off by default, see PREDICT).
   */
  predictExit(count, kind) {
    const ctx = this.opts.tail;
    if (!PREDICT || ctx === null || ctx === void 0 || this.nested()) return;
    const b = this.b, lin = this.block.lastRip, t = ctx.findLin(lin);
    if (t === null) return;
    this.flush();
    const vpn = Math.floor(lin / 4096);
    b.get(this.v).i64(lin).op(Op.i64Eq).open(Op.if);
    this.tailTo(t, count, kind, -1, () => {
      this.fetchMapsAt(vpn, t.pa >>> 12, t.gen);
      b.op(Op.i32And);
    }, () => {
      if (kind === X_RET) b.get(this.st).i32(0).mem(Op.i32Store, 2, L3.S_NEXT);
      b.f64(lin);
    });
    b.close();
  }
  /**
   * CALLRET: the CALL whose push is done (`count` instructions of this pass) to r0 + `ripOff`, return address r0 +
   * `next`. When its target is an installed translation (or one of this batch) and the dispatcher would enter it
   * (tailTo's checks) and fewer than CALLRET_DEPTH such calls are on the wasm stack: S_NBASE, S_R0, S_BLK move to
   * the target as for a tail call, but the target's function is called; when it did not return at the return address
   * (it left at its first block's exit, a helper, ...), the nested dispatcher chains on from there until RIP is the
   * return address or the chain must stop. Then S_NBASE, S_R0 and S_BLK are this block's again, and when RIP is the
   * return address, the chain is on, the privilege is this block's, nothing changed the fetch mapping (S_FEPOCH: a
   * context switch in the callee) and this block's page still has its generation, this block goes
   * on there as its static exit would (exitStatic, with the callee's instructions in `n`): registers and flags come
   * from the state area. Else it leaves with the count so far in S_NBASE (returning 0) and RIP where the callee
   * left: the dispatcher that called it then stops or goes on from there, as it would have after the callee.
   */
  callNest(count, ripOff, next) {
    const ctx = this.opts.tail;
    if (!CALLRET || ctx === null || ctx === void 0 || ctx.nest === null || this.nested()) return;
    const b = this.b, pa = this.block.pa, rpa = pa + next;
    if (rpa >>> 12 !== pa >>> 12 || rpa < 0) return;
    const { t, same } = this.targetAt(ripOff, ctx);
    if (t === null) return;
    this.flush();
    const fnIndex = (fn) => {
      let i = ctx.index.get(fn) ?? -1;
      if (i < 0) {
        i = ctx.fns.push(fn) - 1;
        ctx.index.set(fn, i);
      }
      return F_TAIL + i;
    };
    const fi = t.fn !== null ? fnIndex(t.fn) : -1, ni = CALLRET_NEST ? fnIndex(ctx.nest) : -1;
    if (this.cnb < 0) {
      this.cnb = b.local(I32);
      this.cna = b.local(I32);
      this.csb = b.local(I32);
      this.csr = b.local(F64);
      this.cep = b.local(I32);
    }
    const nb = this.cnb, na = this.cna, sblk = this.csb, sr0 = this.csr;
    b.get(this.n).i32(count).op(Op.i32Add).set(this.c32);
    b.get(this.st).mem(Op.i32Load, 2, L3.S_CHAIN);
    b.get(this.st).mem(Op.i32Load, 2, L3.S_NBASE).get(this.c32).op(Op.i32Add).i32(CHAIN_LIMIT).op(Op.i32LtS).op(Op.i32And);
    b.get(this.c32).i32(t.n).op(Op.i32Add).get(this.left).op(Op.i32LeS).op(Op.i32And);
    b.get(this.st).mem(Op.i32Load, 2, L3.S_CDEPTH).i32(CALLRET_DEPTH).op(Op.i32LtS).op(Op.i32And);
    if (!same) {
      this.fetchMapsTo(ripOff, t.pa >>> 12, t.gen);
      b.op(Op.i32And);
    }
    b.open(Op.if);
    b.get(this.st).mem(Op.i32Load, 2, L3.S_NBASE).set(nb);
    b.get(this.st).mem(Op.f64Load, 3, L3.S_R0).set(sr0);
    b.get(this.st).mem(Op.i32Load, 2, L3.S_BLK).set(sblk);
    b.get(this.st).mem(Op.i32Load, 2, L3.S_FEPOCH).set(this.cep);
    b.get(this.st).get(nb).get(this.c32).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_NBASE);
    this.r0f(ripOff);
    b.set(this.tf);
    b.get(this.st).get(this.tf).mem(Op.f64Store, 3, L3.S_R0);
    b.get(this.st).i32(t.word).mem(Op.i32Store, 2, L3.S_BLK);
    b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_CDEPTH).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_CDEPTH);
    if (CALLRET_COUNT) b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_NCALLS).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_NCALLS);
    b.get(this.st).get(this.tf).get(this.left).get(this.c32).op(Op.i32Sub).get(this.user).i32(t.word >>> K_SHIFT);
    if (t.local !== void 0) {
      ctx.sites.push({ body: b, at: b.callLater(), local: t.local });
      b.calls++;
    } else b.call(fi);
    b.get(this.st).mem(Op.i32Load, 2, L3.S_NBASE).op(Op.i32Add).set(na);
    this.r0f(next);
    b.set(this.tf);
    b.get(this.st).mem(Op.f64Load, 3, L3.S_RIP).get(this.tf).op(Op.f64Ne).open(Op.if);
    b.get(this.st).get(na).mem(Op.i32Store, 2, L3.S_NBASE);
    if (CALLRET_NEST) {
      b.get(this.st).get(this.tf).mem(Op.f64Store, 3, L3.S_CRET);
      b.get(this.st).f64(0).get(this.left).get(nb).op(Op.i32Add).get(this.user).i32(0).call(ni).set(na);
    } else {
      b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_CDEPTH).i32(1).op(Op.i32Sub).mem(Op.i32Store, 2, L3.S_CDEPTH);
      b.i32(0).set(this.n).i32(0).set(this.xc).br(this.out);
    }
    b.else();
    b.get(this.st).i32(0).mem(Op.i32Store, 2, L3.S_NEXT);
    b.close();
    b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_CDEPTH).i32(1).op(Op.i32Sub).mem(Op.i32Store, 2, L3.S_CDEPTH);
    b.get(this.st).get(nb).mem(Op.i32Store, 2, L3.S_NBASE);
    b.get(this.st).get(sr0).mem(Op.f64Store, 3, L3.S_R0);
    b.get(this.st).get(sblk).mem(Op.i32Store, 2, L3.S_BLK);
    b.get(this.st).mem(Op.f64Load, 3, L3.S_RIP).get(this.tf).op(Op.f64Eq);
    b.get(this.st).mem(Op.i32Load, 2, L3.S_CHAIN).op(Op.i32And);
    b.get(this.st).mem(Op.i32Load, 2, L3.S_USER).get(this.user).op(Op.i32Eq).op(Op.i32And);
    b.get(this.st).mem(Op.i32Load, 2, L3.S_FEPOCH).get(this.cep).op(Op.i32Eq).op(Op.i32And);
    b.i32(0).mem(Op.i32Load, 2, L3.PAGE_GEN + 4 * (pa >>> 12)).i32(this.block.gen).op(Op.i32Eq).op(Op.i32And);
    b.open(Op.if);
    if (CALLRET_COUNT) b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_NHITS).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_NHITS);
    b.get(na).get(nb).op(Op.i32Sub).i32(count).op(Op.i32Sub).set(this.n);
    const rs = this.rs.slice(), dirty = this.dirty, known = this.known, fdirty = this.fdirty, rot = this.rot, cfLazy = this.cfLazy;
    this.forget();
    this.known = false;
    this.fdirty = false;
    this.rot = 0;
    this.cfLazy = false;
    this.exitStatic(count, next);
    this.rs.splice(0, 16, ...rs);
    this.dirty = dirty;
    this.known = known;
    this.fdirty = fdirty;
    this.rot = rot;
    this.cfLazy = cfLazy;
    b.else();
    b.get(this.st).get(na).mem(Op.i32Store, 2, L3.S_NBASE);
    this.xk(X_OTHER);
    b.i32(0).set(this.n).i32(0).set(this.xc).br(this.out);
    b.close();
    b.close();
  }
  /** callNest's locals (-1 until its first CALL): S_NBASE, the count after the callee, S_BLK and S_R0 saved. */
  cnb = -1;
  cna = -1;
  csb = -1;
  csr = -1;
  cep = -1;
  /** fetchMapsTo for the linear page number `vpn` (a constant). Uses t32. */
  fetchMapsAt(vpn, pfn, gen) {
    const b = this.b;
    b.i32(L3.tlbSlot(vpn) << L3.TLB_ENTRY_SHIFT);
    b.get(this.rtag).op(Op.i32Add).tee(this.t32);
    b.mem(Op.i64Load, 3, L3.TLB_FETCH_DELTA).i64(BigInt(vpn) << 12n).op(Op.i64Eq);
    b.get(this.t32).mem(Op.i32Load, 2, L3.TLB_FETCH_DELTA + 12).i32(pfn).op(Op.i32Eq).op(Op.i32And);
    b.i32(0).mem(Op.i32Load, 2, L3.PAGE_GEN + 4 * pfn).i32(gen).op(Op.i32Eq).op(Op.i32And);
  }
  /**
   * A static exit to member j of the region in another physical page (a CALL, JMP, Jcc or fall-through into the
   * page): a branch when the dispatcher would have entered j and would have found it there. Besides the checks of a
   * same-page branch (chain on, instruction limit, budget), j's page generation must still be the one it was
   * translated with (the current block's being current tells nothing about another page), and the fetch-TLB bank of
   * this privilege must map the target's linear address (r0 + ripOff: the block may run under another mapping than
   * the one it was queued under) to j's physical page, as the dispatcher's lookup requires (first-level tag, then
   * the physical page; ./tlb-probe.ts's probe, on the fetch bank). Then r0 moves to the target, and S_R0 and the
   * member bits of S_BLK follow it (WasmEngine.current finds a helper's RIP from the entered block's RIP plus a pa
   * difference, which holds within one page only). Else it leaves through the dispatcher as before.
   */
  crossBranch(count, ripOff, j) {
    const b = this.b, R = this.region, m = R.members[j];
    this.wbCtx = 3;
    this.flush(!(EDGE_DEAD && flagsDead(m, -1)), this.keepDirty(j) | R.dead[j]);
    this.wbCtx = 1;
    b.get(this.n).i32(count).op(Op.i32Add).set(this.c32);
    this.regionFits(m.n);
    this.fetchMapsTo(ripOff, m.pa >>> 12, m.gen);
    b.op(Op.i32And);
    b.open(Op.if);
    b.get(this.c32).set(this.n);
    this.r0move(ripOff);
    b.get(this.st);
    this.r0f();
    b.mem(Op.f64Store, 3, L3.S_R0);
    b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_BLK).i32((1 << K_SHIFT) - 1).op(Op.i32And).i32(j << K_SHIFT).op(Op.i32Or);
    b.mem(Op.i32Store, 2, L3.S_BLK);
    if (COUNT_CHAINS) b.get(R.intra).i32(1).op(Op.i32Add).set(R.intra);
    if (REGION_REGS) this.edgeLoad(j);
    if (j > R.cur) b.br(R.labels[j]);
    else this.branchBack(j);
    b.close();
    this.exitConst(count, ripOff, X_REGION);
  }
  /** Whether this block's CALLs and RETs keep the return-address stack (RAS; RAS_USER: in user code too). */
  rasOn() {
    return RAS && (RAS_USER || !userLinear(this.curLin()));
  }
  /**
   * A CALL (after its push, which may fault) records its return address r0 + `next` on the return-address stack
   * (layout.ts S_RAS) with where that address's block is: in this block's page (nothing else is known statically) it
   * is this block's pa + next under the mapping this block runs with, of this block's page generation; its DISPATCH
   * set is a constant. A return address in another page gets a non-canonical address (no RET can match it) to keep
   * the stack in step. The stack is a prediction only: rasPop checks it against the popped address, and it lives
   * for one dispatcher call (cpl and mode fixed), emptied on every TLB flush or INVLPG (SoftCpu.invalidateFetch), so
   * the linear-to-physical mapping the CALL's block ran with is still the one the fetch TLB holds.
   */
  rasPush(next, ret2) {
    if (!this.rasOn()) return;
    const b = this.b, pa = this.block.pa, tpa = pa + next, same = tpa >>> 12 === pa >>> 12;
    b.get(this.st).mem(Op.i32Load, 2, L3.S_RASP).tee(this.t32).i32(L3.RAS_N * L3.RAS_STRIDE - 1).op(Op.i32And);
    b.get(this.st).op(Op.i32Add).tee(this.c32);
    if (same) b.get(ret2).mem(Op.i64Store, 3, L3.S_RAS);
    else b.i64(1n << 62n).mem(Op.i64Store, 3, L3.S_RAS);
    if (same) {
      b.get(this.c32);
      this.entryKey(tpa);
      b.mem(Op.i64Store, 3, L3.S_RAS + 8);
      b.get(this.c32).i32(L3.dispatchEntry(tpa)).mem(Op.i32Store, 2, L3.S_RAS + 16);
    }
    b.get(this.st).get(this.t32).i32(L3.RAS_STRIDE).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_RASP);
  }
  /**
   * A RET whose target (local `v`, canonical, already in S_RIP) is the return address on top of the stack (popped
   * either way) names that block's dispatch entry in S_NEXT when the entry holds its (pa, generation), as exitStatic
   * does: the dispatcher then enters it without the fetch-TLB probe, the lookup and the generation check.
   */
  rasPop(count = -1) {
    if (!this.rasOn()) return;
    const b = this.b;
    const tail = count >= 0 && this.retTails();
    b.get(this.st).mem(Op.i32Load, 2, L3.S_RASP).tee(this.t32).hint(true).open(Op.if);
    b.get(this.st).get(this.t32).i32(L3.RAS_STRIDE).op(Op.i32Sub).tee(this.t32).mem(Op.i32Store, 2, L3.S_RASP);
    b.get(this.t32).i32(L3.RAS_N * L3.RAS_STRIDE - 1).op(Op.i32And).get(this.st).op(Op.i32Add).tee(this.c32);
    b.mem(Op.i64Load, 3, L3.S_RAS).get(this.v).op(Op.i64Eq).hint(true).open(Op.if);
    if (tail) this.retTail(count);
    if (NEXT_KEY) {
      b.get(this.st).get(this.c32).mem(Op.i32Load, 2, L3.S_RAS + 16).mem(Op.i32Store, 2, L3.S_NEXT);
      b.get(this.st).get(this.c32).mem(Op.i64Load, 3, L3.S_RAS + 8).mem(Op.i64Store, 3, L3.S_NKEY);
      b.close();
      b.close();
      return;
    }
    b.get(this.c32).mem(Op.i32Load, 2, L3.S_RAS + 16).set(this.t32);
    b.get(this.c32).mem(Op.i64Load, 3, L3.S_RAS + 8).set(this.t);
    b.get(this.st);
    b.get(this.t32).get(this.t32).i32(16).op(Op.i32Add).i32(0);
    b.get(this.t32).mem(Op.i64Load, 3, 16).get(this.t).op(Op.i64Eq).op(Op.select);
    b.get(this.t32).mem(Op.i64Load, 3, 0).get(this.t).op(Op.i64Eq).op(Op.select);
    b.mem(Op.i32Store, 2, L3.S_NEXT);
    b.close();
    b.close();
  }
  /** RET_TAIL applies to this function's RETs: tail calls on (EmitOpts.tail), no CALLRET. */
  retTails() {
    return RET_TAIL && this.rasOn() && NEXT_KEY && !CALLRET && this.opts.tail !== null && this.opts.tail !== void 0;
  }
  /**
   * RET_TAIL, inside rasPop's hit (c32: the stack entry, `v` the return address; registers and flags written back):
   * when the entry the CALL named holds the predicted block and the dispatcher would enter it (chain on, below
   * CHAIN_LIMIT, within the budget), move S_NBASE, S_R0, S_BLK to it and tail-call its function through the table;
   * else go on (rasPop names the entry to the dispatcher, as without).
   */
  retTail(count) {
    const b = this.b;
    if (this.rte < 0) {
      this.rte = b.local(I32);
      this.rti = b.local(I32);
      this.rtk = b.local(I64);
    }
    const e = this.rte, idx = this.rti, key = this.rtk;
    b.get(this.c32).mem(Op.i32Load, 2, L3.S_RAS + 16).set(e);
    b.get(this.c32).mem(Op.i64Load, 3, L3.S_RAS + 8).set(key);
    b.get(e).mem(Op.i64Load, 3, 0).get(key).op(Op.i64Ne).open(Op.if);
    b.get(e).i32(16).op(Op.i32Add).set(e);
    b.close();
    b.get(this.n).i32(count).op(Op.i32Add).set(this.t32);
    this.chainOn(() => {
      b.get(this.st).mem(Op.i32Load, 2, L3.S_NBASE).get(this.t32).op(Op.i32Add).i32(CHAIN_LIMIT).op(Op.i32LtS);
    });
    b.get(this.t32).get(e).mem(Op.i32Load, 2, 12).op(Op.i32Add).get(this.left).op(Op.i32LeS).op(Op.i32And);
    b.get(e).mem(Op.i64Load, 3, 0).get(key).op(Op.i64Eq).op(Op.i32And);
    b.get(e).mem(Op.i32Load, 2, 8).tee(idx).i32(0).op(Op.i32Ne).op(Op.i32And);
    b.open(Op.if);
    b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_NBASE).get(this.t32).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_NBASE);
    b.get(this.v).op(Op.f64ConvertI64s).set(this.tf);
    b.get(this.st).get(this.tf).mem(Op.f64Store, 3, L3.S_R0);
    b.get(this.st).get(idx).mem(Op.i32Store, 2, L3.S_BLK);
    b.get(this.st).get(key).op(Op.i32WrapI64).i32(12).op(Op.i32ShrU).i32(L3.PHITS_N - 1).op(Op.i32And).i32(2).op(Op.i32Shl).op(Op.i32Add).tee(e);
    b.get(e).mem(Op.i32Load, 2, L3.S_PHITS).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_PHITS);
    const R = this.region;
    if (COUNT_CHAINS) b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_TAILS).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_TAILS);
    if (COUNT_CHAINS && R !== null) b.get(this.st).get(this.st).mem(Op.i32Load, 2, L3.S_INTRA).get(R.intra).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_INTRA);
    if (SITE_EXITS) this.siteCount("t.ret");
    if (EXIT_STATS) {
      const o = L3.S_XSTATS + 4 * (X_RET * 8 + 5);
      b.get(this.st).get(this.st).mem(Op.i32Load, 2, o).i32(1).op(Op.i32Add).mem(Op.i32Store, 2, o);
    }
    b.get(this.st).get(this.tf).get(this.left).get(this.t32).op(Op.i32Sub).get(this.user).get(idx).i32(K_SHIFT).op(Op.i32ShrU);
    b.get(idx).i32((1 << K_SHIFT) - 1).op(Op.i32And);
    b.returnCallIndirect(BLOCK_TYPE, 0);
    b.close();
  }
  /** retTail's locals (-1 until its first RET): the dispatch entry, its dispatch word, the key. */
  rte = -1;
  rti = -1;
  rtk = -1;
  /**
   * After a memory instruction: leave right after it when its slow path raised an event (the helper then cleared
   * S_CHAIN: a store into a code page, an MMIO side effect), so the event is seen at the next boundary.
   */
  exitIfSlow(count, ripOff) {
    const b = this.b;
    const flagged = SLOW_FLAG && this.insSlow > 0 && b.calls - this.insCalls === this.insSlow;
    if (flagged) {
      b.get(this.slowL).hint(false).open(Op.if);
      b.i32(0).set(this.slowL);
    }
    b.get(this.st).mem(Op.i32Load, 2, L3.S_CHAIN).op(Op.i32Eqz).hint(false).open(Op.if);
    if (SLOW_RIP) {
      this.xk(X_HELPER);
      b.i32(count).set(this.xc);
      if (flagged && this.slowTrack) {
        this.flush(this.slowFl, ~this.slowMod);
        b.br(this.out);
      } else this.leave();
    } else this.exitConst(count, ripOff, X_HELPER);
    b.close();
    if (flagged) {
      b.close();
      if (!this.nested()) this.slowMaybe = false;
    } else if (this.insSlow > 0) this.slowMaybe = true;
    this.chainAt = !flagged || this.chainAt === this.insCalls ? b.calls : -1;
  }
  /**
   * #GP(0) unless the static branch target r0 + `ripOff` is canonical. Nothing to check when it lies in the page of
   * the block's start (its page offset is the block's pa's): RIP there was fetched, so that page is canonical, and
   * canonical addresses are whole pages (SDM vol. 1 §3.3.7.1).
   */
  checkTarget(ripOff) {
    if (!this.targetOff(ripOff)) return;
    this.gpIf(() => this.targetFar(ripOff), true);
  }
  /** Whether the static target r0 + `ripOff` needs checkTarget's check: it leaves the page of the block's start. */
  targetOff(ripOff) {
    const o = (this.block.pa & 4095) + ripOff;
    return o < 0 || o >= 4096;
  }
  /** Whether this function's memory accesses probe the TLB inline (not counting stack runs). */
  memInline() {
    return INLINE_MEM && (this.selfLoop || this.loopMember || this.opts.inline || INLINE_ALL);
  }
  /** Whether the current instruction's next memory access probes inline (load, store), not the library alone. */
  accessInline() {
    return this.runCur >= 0 || this.memInline();
  }
  /**
   * FOLD_CHECKS: whether a check's own #GP path would write back enough (dirty registers, a deferred flag record) to
   * pay for the check on the access's slow path too (~20 operations against ~13 plus the write-backs).
   */
  foldWorth() {
    let n = 0;
    for (let m = this.dirty; m !== 0; m &= m - 1) n++;
    return 3 * n + (this.fdirty ? 9 : 0) > 8;
  }
  /** Push (i32) whether r0 + `ripOff` is not canonical (checkTarget). */
  targetFar(ripOff) {
    const b = this.b;
    if (R0_ONE) {
      b.get(this.r0i).i64(ripOff).op(Op.i64Add);
      if (ripOff >= 0) b.i64(TWO473).op(Op.i64GeS);
      else b.i64(-TWO473).op(Op.i64LtS);
      return;
    }
    b.get(this.r0).f64(ripOff).op(Op.f64Add);
    if (ripOff >= 0) b.f64(TWO473).op(Op.f64Ge);
    else b.f64(-TWO473).op(Op.f64Lt);
  }
  /** Push (i32) whether the i64 local `l` is not canonical: bits 63..47 not all equal (SDM vol. 1 §3.3.7.1). */
  nonCanonical(l) {
    this.b.get(l).i64(TWO473).op(Op.i64Add).i64(2 ** 48).op(Op.i64GeU);
  }
  /**
   * #GP(0) through the helper when `cond` pushes 1, the dirty registers written back on that path first when `flush`
   * (false where they are in the state area already: a memory access's slow path after its write-backs, FOLD_CHECKS).
   */
  gpIf(cond, flush) {
    const b = this.b;
    cond();
    b.hint(false).open(Op.if);
    if (flush) this.flush();
    this.pos();
    b.call(F_GP).op(Op.unreachable);
    b.close();
  }
  /** #GP(0) through the helper unless the i64 local `l` is canonical: bits 63..47 all equal (SDM vol. 1 §3.3.7.1). */
  checkCanonicalI64(l) {
    this.gpIf(() => this.nonCanonical(l), true);
  }
  /** #GP(0) through the helper unless the f64 on the stack is canonical (SDM vol. 1 §3.3.7.1). */
  checkCanonicalF64() {
    const b = this.b;
    this.gpIf(() => {
      b.tee(this.tf).f64(-TWO473).op(Op.f64Lt).get(this.tf).f64(TWO473).op(Op.f64Ge).op(Op.i32Or);
    }, true);
  }
  // ---- lazy flags
  /**
   * The flag locals now hold the record produced by (kind, size). At straight-line level it stays there (fdirty)
   * until something can read the state area's copy: the next producer of the block usually replaces it first (the
   * flags of `sub; test; jne` are stored once, at the exit), and a condition of the block reads the locals. Inside a
   * branch or loop it is stored at once (the other path may not produce: see the callers that produce there).
   * Rule for every form: while the record is deferred, the flag locals (ld, ls, lr, lcy) change only in the
   * producer's final step, never before a memory access or helper call of the same instruction that may fault or
   * read the flags (the fault must find the record from before). A form that computes into them earlier (ADC/SBB,
   * INC/DEC of memory, CMPXCHG, XADD, 16-bit ALU to memory, DIV) calls commitFlags first: a self-loop's inline
   * memory probe stores the record on its slow path only, where the record stays deferred.
   */
  produced(kind, size) {
    this.rot = 0;
    this.cfLazy = false;
    this.slowFl = true;
    this.known = true;
    this.kind = kind;
    this.size = size;
    if (this.nested()) this.storeFlags();
    else this.fdirty = true;
  }
  /**
   * Store the known record into the state area, only the fields its kind's flags are computed from (SoftCpu.computeArith,
   * the flag library): S_LOP and S_LSZ as one i64 (adjacent, layout.ts), then d and s for ADD/ADC/SUB/SBB, r for
   * all, the carry-in for ADC/SBB/INC/DEC; EXPLICIT: the bits in S_LD.
   */
  storeFlags() {
    const b = this.b, k = this.kind;
    if (this.cfLazy) this.resolveCf();
    if (k === EXPLICIT) {
      b.get(this.st).i32(EXPLICIT).mem(Op.i32Store, 2, L3.S_LOP);
      b.get(this.st).get(this.ld).mem(Op.i64Store, 3, L3.S_LD);
      return;
    }
    b.get(this.st).i64hl(this.size, k).mem(Op.i64Store, 3, L3.S_LOP);
    if (k !== L_LOGIC && k !== L_INC && k !== L_DEC) {
      b.get(this.st).get(this.ld).mem(Op.i64Store, 3, L3.S_LD);
      b.get(this.st).get(this.ls).mem(Op.i64Store, 3, L3.S_LS);
    }
    b.get(this.st).get(this.lr).mem(Op.i64Store, 3, L3.S_LR);
    if (k === L_INC || k === L_DEC || k === L_ADC || k === L_SBB) b.get(this.st).get(this.lcy).mem(Op.i32Store, 2, L3.S_LCY);
  }
  /** Store a deferred flag record (produced) into the state area; at straight-line level it is then clean. */
  commitFlags() {
    if (!this.fdirty) return;
    if (this.rot !== 0) {
      if (this.nested()) {
        this.storeRot();
        return;
      }
      this.settleRot();
    }
    this.storeFlags();
    if (!this.nested()) this.fdirty = false;
  }
  /** Push flag local `l` at the producer's size: i64 for size 8, else i32 (signed: sign-extended for size 1). */
  fv(l, signed) {
    const b = this.b;
    b.get(l);
    if (this.size !== 8) {
      b.op(Op.i32WrapI64);
      if (signed && this.size === 1) b.op(Op.i32Extend8s);
    }
  }
  /**
   * cfLazy: the carry-in of the deferred INC/DEC record into local lcy, from the state area's record (CF, bit 0 of
   * the flag library's `fa`, which only reads the record: it is called without counting as a call that may change
   * the paging state or stop the chain, TBody.calls). Inside a branch only that path has it: it stays lazy.
   */
  resolveCf() {
    const b = this.b;
    b.get(this.st).callUncounted(F_FA).i32(1).op(Op.i32And).set(this.lcy);
    if (!this.nested()) this.cfLazy = false;
  }
  /** Push condition `cc` (Jcc encoding) as an i32 0/1. */
  cond(cc) {
    const b = this.b;
    this.settleRot();
    if (this.cfLazy && (cc >> 1 === 1 || cc >> 1 === 3)) this.resolveCf();
    if (!this.known || !this.condStatic(cc >> 1)) {
      this.loadFlags();
      this.condStatic(cc >> 1);
    }
    if (cc & 1) b.op(Op.i32Eqz);
  }
  /**
   * The arithmetic flags of the state area's record (whoever produced it) as EXPLICIT bits into local `ld`, through
   * the flag library's `fa`; the block knows its flags from here (the state area keeps the record it had: same flags).
   */
  loadFlags() {
    this.settleRot();
    this.commitFlags();
    this.b.get(this.st).call(F_FA).op(Op.i64ExtendI32u).set(this.ld);
    this.known = true;
    this.kind = EXPLICIT;
  }
  condStatic(c) {
    const b = this.b, k = this.kind, w = this.size === 8;
    if (k === EXPLICIT) {
      const bit = (n) => {
        b.get(this.ld).op(Op.i32WrapI64);
        if (n) b.i32(n).op(Op.i32ShrU);
        b.i32(1).op(Op.i32And);
      };
      switch (c) {
        case 0:
          bit(11);
          break;
        case 1:
          bit(0);
          break;
        case 2:
          bit(6);
          break;
        case 3:
          b.get(this.ld).op(Op.i32WrapI64).i32(65).op(Op.i32And).i32(0).op(Op.i32Ne);
          break;
        case 4:
          bit(7);
          break;
        case 5:
          bit(2);
          break;
        case 6:
          bit(7);
          bit(11);
          b.op(Op.i32Xor);
          break;
        default:
          bit(6);
          bit(7);
          bit(11);
          b.op(Op.i32Xor).op(Op.i32Or);
      }
      return true;
    }
    const lt = w ? Op.i64LtS : Op.i32LtS, ltu = w ? Op.i64LtU : Op.i32LtU, leu = w ? Op.i64LeU : Op.i32LeU;
    const les = w ? Op.i64LeS : Op.i32LeS, eqz = w ? Op.i64Eqz : Op.i32Eqz, xor = w ? Op.i64Xor : Op.i32Xor;
    const and = w ? Op.i64And : Op.i32And, eq = w ? Op.i64Eq : Op.i32Eq;
    const zero = () => w ? b.i64(0) : b.i32(0);
    const Z = () => {
      this.fv(this.lr, false);
      b.op(eqz);
    };
    const S2 = () => {
      this.fv(this.lr, true);
      zero();
      b.op(lt);
    };
    const P = () => {
      b.get(this.lr).op(Op.i32WrapI64).i32(255).op(Op.i32And).op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz);
    };
    let O;
    let B;
    if (k === L_LOGIC) {
      O = () => b.i32(0);
      B = () => b.i32(0);
    } else if (k === L_SUB || k === L_SBB) {
      O = () => {
        this.fv(this.ld, true);
        this.fv(this.ls, true);
        b.op(xor);
        this.fv(this.ld, true);
        this.fv(this.lr, true);
        b.op(xor).op(and);
        zero();
        b.op(lt);
      };
      B = k === L_SUB ? () => {
        this.fv(this.ld, false);
        this.fv(this.ls, false);
        b.op(ltu);
      } : () => {
        this.fv(this.ld, false);
        this.fv(this.ls, false);
        b.op(leu);
        this.fv(this.ld, false);
        this.fv(this.ls, false);
        b.op(ltu);
        b.get(this.lcy).op(Op.select);
      };
    } else if (k === L_ADD || k === L_ADC) {
      O = () => {
        this.fv(this.ld, true);
        this.fv(this.lr, true);
        b.op(xor);
        this.fv(this.ls, true);
        this.fv(this.lr, true);
        b.op(xor).op(and);
        zero();
        b.op(lt);
      };
      B = k === L_ADD ? () => {
        this.fv(this.lr, false);
        this.fv(this.ld, false);
        b.op(ltu);
      } : () => {
        this.fv(this.lr, false);
        this.fv(this.ld, false);
        b.op(leu);
        this.fv(this.lr, false);
        this.fv(this.ld, false);
        b.op(ltu);
        b.get(this.lcy).op(Op.select);
      };
    } else if (k === L_INC || k === L_DEC) {
      if (this.size === 2) return false;
      const one = this.size === 1;
      const lim = k === L_INC ? w ? I64_MIN : one ? -128 : -2147483648 : w ? I64_MAX : one ? 127 : 2147483647;
      O = () => {
        this.fv(this.lr, true);
        if (w) b.i64(lim);
        else b.i32(lim);
        b.op(eq);
      };
      B = () => {
        b.get(this.lcy).i32(0).op(Op.i32Ne);
      };
    } else return false;
    switch (c) {
      case 0:
        O();
        break;
      case 1:
        B();
        break;
      case 2:
        Z();
        break;
      case 3:
        if (k === L_SUB) {
          this.fv(this.ld, false);
          this.fv(this.ls, false);
          b.op(leu);
        } else {
          B();
          Z();
          b.op(Op.i32Or);
        }
        break;
      case 4:
        S2();
        break;
      case 5:
        P();
        break;
      case 6:
        if (k === L_SUB) {
          this.fv(this.ld, true);
          this.fv(this.ls, true);
          b.op(lt);
        } else {
          S2();
          O();
          b.op(Op.i32Xor);
        }
        break;
      default:
        if (k === L_SUB) {
          this.fv(this.ld, true);
          this.fv(this.ls, true);
          b.op(les);
        } else {
          Z();
          S2();
          O();
          b.op(Op.i32Xor).op(Op.i32Or);
        }
    }
    return true;
  }
  /**
   * The six arithmetic flags of the known record as EFLAGS bits into local `fl` (as SoftCpu.computeArith: AF from
   * bit 4 of d^s^r, INC/DEC from the result's low nibble, 0 after logic). False (nothing emitted) when not possible.
   */
  materialize() {
    this.settleRot();
    if (this.cfLazy) this.resolveCf();
    const b = this.b, k = this.kind;
    if (k === EXPLICIT) {
      b.get(this.ld).op(Op.i32WrapI64).set(this.fl);
      return true;
    }
    if ((k === L_INC || k === L_DEC) && this.size === 2) return false;
    if (k !== L_ADD && k !== L_SUB && k !== L_ADC && k !== L_SBB && k !== L_LOGIC && k !== L_INC && k !== L_DEC) return false;
    const flag = (cc, shift) => {
      this.condStatic(cc);
      if (shift) b.i32(shift).op(Op.i32Shl);
    };
    flag(1, 0);
    flag(5, 2);
    b.op(Op.i32Or);
    flag(2, 6);
    b.op(Op.i32Or);
    flag(4, 7);
    b.op(Op.i32Or);
    flag(0, 11);
    b.op(Op.i32Or);
    if (k === L_ADD || k === L_SUB || k === L_ADC || k === L_SBB) {
      b.get(this.ld).get(this.ls).op(Op.i64Xor).get(this.lr).op(Op.i64Xor).op(Op.i32WrapI64).i32(16).op(Op.i32And).op(Op.i32Or);
    } else if (k === L_INC || k === L_DEC) {
      b.get(this.lr).op(Op.i32WrapI64).i32(15).op(Op.i32And).i32(k === L_INC ? 0 : 15).op(Op.i32Eq).i32(4).op(Op.i32Shl).op(Op.i32Or);
    }
    b.set(this.fl);
    return true;
  }
  /** Whether materialize() can work out the known record's flags inline (else the flag library must). */
  canMaterialize() {
    const k = this.kind;
    if (!this.known) return false;
    if (k === EXPLICIT) return true;
    if ((k === L_INC || k === L_DEC) && this.size === 2) return false;
    return k === L_ADD || k === L_SUB || k === L_ADC || k === L_SBB || k === L_LOGIC || k === L_INC || k === L_DEC;
  }
  /**
   * Push the flags after the pending rotate (rot) as EFLAGS bits (i32): the known record's (into local fl) with CF
   * and OF from rv. ROL: CF = bit 0 of the result, OF = top bit ^ CF; ROR: CF = top bit, OF = top two bits' xor.
   */
  rotFlags() {
    const b = this.b, rol = this.rot === 1, w = this.rotSize === 8, top = w ? 63 : 31;
    const r = this.rot;
    this.rot = 0;
    this.materialize();
    this.rot = r;
    if (rol) {
      b.get(this.rv).op(Op.i32WrapI64).i32(1).op(Op.i32And);
      b.get(this.rv).i64(top).op(Op.i64ShrU).get(this.rv).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And);
    } else {
      b.get(this.rv).i64(top).op(Op.i64ShrU).op(Op.i32WrapI64);
      b.get(this.rv).i64(top).op(Op.i64ShrU).get(this.rv).i64(top - 1).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And);
    }
    b.i32(11).op(Op.i32Shl).op(Op.i32Or).get(this.fl).i32(~2049).op(Op.i32And).op(Op.i32Or);
  }
  /** The pending rotate's flags become the known record (EXPLICIT, still deferred): at straight-line level only. */
  settleRot() {
    if (this.rot === 0) return;
    if (this.nested()) throw new Error("translate: a pending rotate settled inside a branch");
    this.rotFlags();
    this.b.op(Op.i64ExtendI32u).set(this.ld);
    this.rot = 0;
    this.known = true;
    this.kind = EXPLICIT;
    this.size = this.rotSize;
    this.fdirty = true;
  }
  /** Inside a branch (a slow path, an exit): store the pending rotate's flags, leaving the locals and the state as they are. */
  storeRot() {
    const b = this.b;
    b.get(this.st).i32(EXPLICIT).mem(Op.i32Store, 2, L3.S_LOP);
    b.get(this.st);
    this.rotFlags();
    b.op(Op.i64ExtendI32u).mem(Op.i64Store, 3, L3.S_LD);
  }
  /** The arithmetic flags before this instruction into local `fl`: inline when known here, else the helper `fl`. */
  oldFlags() {
    if (this.known && this.materialize()) return;
    this.loadFlags();
    this.materialize();
  }
  /** Commit EXPLICIT flags: the i32 on the stack holds the six arithmetic flags as EFLAGS bits. */
  explicit(size) {
    this.b.op(Op.i64ExtendI32u).set(this.ld);
    this.produced(EXPLICIT, size);
  }
  /**
   * SHL/SAL/SHR/SAR (op 4-7) by n (1..bits-1) of the 8- or 16-bit value (zero-extended i32) on the stack, as
   * ../ops/alu-shift.ts shift32 at size 1 or 2: leaves the result in local v and the six flags on the stack for
   * explicit() (AF set; OF: SHL top bit ^ CF, SHR the result's two top bits, SAR 0).
   */
  narrowShiftImm(op, n, bits) {
    const b = this.b, T2 = this, shl = op === 4 || op === 6, sar = op === 7, top = bits - 1, mask = bits === 8 ? 255 : 65535;
    if (sar) b.i32(32 - bits).op(Op.i32Shl).i32(32 - bits).op(Op.i32ShrS);
    b.op(Op.i64ExtendI32s).set(T2.t);
    b.get(T2.t).i64(n).op(shl ? Op.i64Shl : sar ? Op.i64ShrS : Op.i64ShrU).i64(mask).op(Op.i64And).set(T2.v);
    b.get(T2.t).i64(shl ? bits - n : n - 1).op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).set(T2.c32);
    b.get(T2.c32);
    if (shl) b.get(T2.v).i64(top).op(Op.i64ShrU).op(Op.i32WrapI64).get(T2.c32).op(Op.i32Xor).i32(11).op(Op.i32Shl).op(Op.i32Or);
    else if (!sar) b.get(T2.v).i64(top).op(Op.i64ShrU).get(T2.v).i64(top - 1).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And).i32(11).op(Op.i32Shl).op(Op.i32Or);
    b.get(T2.v).op(Op.i64Eqz).i32(6).op(Op.i32Shl).op(Op.i32Or);
    b.get(T2.v).op(Op.i32WrapI64);
    if (bits === 16) b.i32(8).op(Op.i32ShrU);
    b.i32(128).op(Op.i32And).op(Op.i32Or);
    b.get(T2.v).op(Op.i32WrapI64);
    if (bits === 16) b.i32(255).op(Op.i32And);
    b.op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz).i32(2).op(Op.i32Shl).op(Op.i32Or);
    b.i32(16).op(Op.i32Or);
  }
  /**
   * A shift of register r by CL (ShiftCl, ShiftDoubleCl): the count masked to 5 bits (6 for size 8) goes to local ls;
   * a count of 0 changes no flag and only clears a 32-bit register's upper half, any other runs `shift` (shiftBits
   * with n < 0). The flags before are materialized first when known here, so both paths leave an EXPLICIT record in
   * ld; otherwise the state area keeps the record on the count-0 path and the block stops knowing the flags.
   */
  shiftByCl(r, size, shift) {
    const b = this.b, T2 = this;
    const had = T2.known && T2.materialize();
    if (!had) T2.commitFlags();
    T2.r32(1);
    b.i32(size === 8 ? 63 : 31).op(Op.i32And).op(Op.i64ExtendI32u).tee(T2.ls).op(Op.i64Eqz);
    b.open(Op.if);
    if (size === 4 && r >= 0) T2.set32(r, () => T2.r32(r));
    if (had) {
      b.get(T2.fl).op(Op.i64ExtendI32u).set(T2.ld);
      T2.produced(EXPLICIT, size);
    }
    b.else();
    shift();
    b.close();
    T2.fdirty = false;
    T2.cfLazy = false;
    if (had) {
      T2.known = true;
      T2.kind = EXPLICIT;
      T2.size = size;
    } else T2.known = false;
  }
  /**
   * SHL/SAL/SHR/SAR (op 4-7) of register r by n (1..bits-1; n < 0: the count, non-zero, is the i64 in local ls), as
   * ../ops/alu-shift.ts shift32/shift64: all six arithmetic flags are written explicitly (AF set, OF from the
   * result's top bits): the record becomes EXPLICIT with those bits. With a source register `src` (constant n): SHLD
   * (op 4) / SHRD (op 5), the vacated bits filled from src; the flags follow the same formulas on the result
   * (../ops/alu-shift.ts doubleShift for sizes 4 and 8).
   */
  shiftBits(r, op, size, n, src = -1, flagsTo = -1) {
    const b = this.b, T2 = this, w = size === 8, bits = w ? 64 : 32;
    const sar = op === 7, shl = op === 4 || op === 6;
    const N64 = () => {
      if (n >= 0) b.i64(n);
      else b.get(T2.ls);
    };
    const N32 = () => {
      if (n >= 0) b.i32(n);
      else b.get(T2.ls).op(Op.i32WrapI64);
    };
    const CFSH = () => {
      if (n >= 0) b.i64(shl ? bits - n : n - 1);
      else if (shl) b.i64(bits).get(T2.ls).op(Op.i64Sub);
      else b.get(T2.ls).i64(1).op(Op.i64Sub);
    };
    if (w) {
      if (r >= 0) T2.r64(r);
      else b.get(T2.v);
      b.set(T2.t);
      b.get(T2.t);
      N64();
      b.op(shl ? Op.i64Shl : sar ? Op.i64ShrS : Op.i64ShrU).set(T2.v);
      if (src >= 0) {
        b.get(T2.v);
        T2.r64(src);
        if (n >= 0) b.i64(bits - n);
        else b.i64(bits).get(T2.ls).op(Op.i64Sub);
        b.op(shl ? Op.i64ShrU : Op.i64Shl).op(Op.i64Or).set(T2.v);
      }
      b.get(T2.t);
      CFSH();
      b.op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).set(T2.c32);
      b.get(T2.c32);
      if (shl) b.get(T2.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).get(T2.c32).op(Op.i32Xor).i32(11).op(Op.i32Shl).op(Op.i32Or);
      else if (!sar) b.get(T2.v).i64(63).op(Op.i64ShrU).get(T2.v).i64(62).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And).i32(11).op(Op.i32Shl).op(Op.i32Or);
      b.get(T2.v).op(Op.i64Eqz).i32(6).op(Op.i32Shl).op(Op.i32Or);
      b.get(T2.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).i32(7).op(Op.i32Shl).op(Op.i32Or);
      b.get(T2.v).op(Op.i32WrapI64);
    } else {
      if (r >= 0) T2.r32(r);
      else b.get(T2.v).op(Op.i32WrapI64);
      b.op(Op.i64ExtendI32u).set(T2.t);
      b.get(T2.t).op(Op.i32WrapI64);
      N32();
      b.op(shl ? Op.i32Shl : sar ? Op.i32ShrS : Op.i32ShrU).op(Op.i64ExtendI32u).set(T2.v);
      if (src >= 0) {
        b.get(T2.v);
        T2.r32(src);
        if (n >= 0) b.i32(bits - n);
        else b.i32(bits).get(T2.ls).op(Op.i32WrapI64).op(Op.i32Sub);
        b.op(shl ? Op.i32ShrU : Op.i32Shl).op(Op.i64ExtendI32u).op(Op.i64Or).set(T2.v);
      }
      b.get(T2.t);
      CFSH();
      b.op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).set(T2.c32);
      b.get(T2.c32);
      if (shl) b.get(T2.v).i64(31).op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).get(T2.c32).op(Op.i32Xor).i32(11).op(Op.i32Shl).op(Op.i32Or);
      else if (!sar) b.get(T2.v).i64(31).op(Op.i64ShrU).get(T2.v).i64(30).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And).i32(11).op(Op.i32Shl).op(Op.i32Or);
      b.get(T2.v).op(Op.i32WrapI64).op(Op.i32Eqz).i32(6).op(Op.i32Shl).op(Op.i32Or);
      b.get(T2.v).i64(24).op(Op.i64ShrU).op(Op.i32WrapI64).i32(128).op(Op.i32And).op(Op.i32Or);
      b.get(T2.v).op(Op.i32WrapI64);
    }
    b.i32(255).op(Op.i32And).op(Op.i32Popcnt).i32(1).op(Op.i32And).op(Op.i32Eqz).i32(2).op(Op.i32Shl).op(Op.i32Or);
    b.i32(16).op(Op.i32Or);
    if (flagsTo >= 0) {
      b.set(flagsTo);
      return;
    }
    b.op(Op.i64ExtendI32u).set(T2.ld);
    if (w) T2.set64(r, T2.v);
    else T2.set32(r, () => b.get(T2.v).op(Op.i32WrapI64));
    T2.produced(EXPLICIT, size);
  }
  // ---- string instructions
  /**
   * MOVS (A4/A5) and STOS (AA/AB) with a 64-bit address size, with or without REP (a block's last instruction: the
   * block cache ends blocks at string instructions), as ../ops/flow-string.ts does them element by element: MOVS
   * reads [rSI] (DS, or an FS/GS override's base) then writes [rDI], STOS writes rAX's low bytes to [rDI]; then rSI/rDI
   * move by the element size (backwards when EFLAGS.DF, which the runtime keeps in S_EFL) and, under REP, rCX counts
   * down, all stored after each element, so a fault leaves them exact for the elements done. The interpreter runs a
   * repeated instruction with at most SLOW_CHUNK (1024) elements (and 256 KiB) as one execution, whatever path it
   * takes, so counts up to STRING_INLINE_MAX run here to the end as one instruction; larger ones are replayed through
   * the helper (the JavaScript fast paths: TypedArray copies a page run at a time, re-executing the instruction per
   * chunk). False: not such an instruction.
   */
  stringOp(e, i) {
    const op = e.opcode;
    if (!stringRuns(e)) return false;
    const b = this.b, T2 = this, size = op & 1 ? e.opsize : 1, movs = op <= 165;
    b.i64(-size).i64(size).get(T2.st).mem(Op.i32Load, 2, L3.S_EFL).i32(1 << 10).op(Op.i32And).op(Op.select).set(T2.t);
    let done = -1, loop = -1, fin = -1;
    const element = () => {
      if (movs) {
        T2.r64(6);
        if (e.segOverride === 4 || e.segOverride === 5) b.get(T2.st).mem(Op.f64Load, 3, L3.S_SEG + 8 * e.segOverride).op(252, 6).op(Op.i64Add);
        b.set(T2.a);
        T2.load(size);
        b.get(T2.v).set(T2.w);
      } else {
        T2.r64(0);
        b.set(T2.w);
      }
      T2.r64(7);
      b.set(T2.a);
      T2.store(size);
      b.get(T2.a).get(T2.t).op(Op.i64Add).set(T2.a);
      T2.set64(7, T2.a);
      if (movs) {
        T2.r64(6);
        b.get(T2.t).op(Op.i64Add).set(T2.a);
        T2.set64(6, T2.a);
      }
      if (e.rep !== 0) {
        b.get(T2.x1).i64(1).op(Op.i64Sub).set(T2.x1);
        T2.set64(1, T2.x1);
      }
    };
    if (e.rep !== 0) {
      T2.r64(1);
      b.set(T2.x1);
      fin = b.open(Op.block);
      const touch = BULK_STRING && STRING_TOUCH ? b.local(I32) : -1;
      if (touch >= 0) b.i32(STRING_TOUCHES).set(touch);
      const again = touch >= 0 ? b.open(Op.loop) : -1;
      if (BULK_STRING) T2.bulkString(e, size, movs, fin);
      b.get(T2.x1).i64(STRING_INLINE_MAX).op(Op.i64GtU).open(Op.if);
      if (touch >= 0) {
        b.get(touch).open(Op.if);
        b.get(touch).i32(1).op(Op.i32Sub).set(touch);
        element();
        b.br(again);
        b.close();
      }
      T2.flush();
      T2.pos();
      b.call(F_RP2).op(Op.drop);
      T2.xk(X_HELPER);
      b.i32(i + 1).set(T2.xc).br(T2.out);
      b.close();
      if (touch >= 0) b.close();
      done = b.open(Op.block);
      loop = b.open(Op.loop);
      b.get(T2.x1).op(Op.i64Eqz).brIf(done);
    }
    element();
    if (e.rep !== 0) {
      b.br(loop);
      b.close();
      b.close();
      b.close();
    }
    T2.exitStatic(i + 1, T2.offs[i] + e.opLen);
    return true;
  }
  /**
   * REP MOVS/STOS (BULK_STRING) forwards (DF clear) as bulk-memory instructions, one per page run: each pass takes
   * the whole elements up to the nearer page end (of the destination, and of the source for MOVS), at most rCX of
   * them, and copies or fills them when both runs hit the TLB, lie in low RAM and the destination page holds no
   * decoded code (./tlb-probe.ts emitTlbProbeRun); for MOVS the destination must not start inside the source run
   * after its first byte (a forward element copy then reads bytes it wrote, which memory.copy, a memmove, does not:
   * `rep movsb` with rDI = rSI + 1 replicates a byte), and STOS needs rAX's low `size` bytes all equal (memory.fill
   * writes one byte value). After each pass rSI/rDI move by its bytes and rCX counts its elements down (stored: the
   * state is then that of the elements done, as after an interrupt between iterations, SDM vol. 2B REP), and the
   * next pass starts; rCX = 0 branches to `fin`. Anything else (a miss, an element straddling a page end, more than
   * BULK_PASSES passes) falls through to the element loop or the replay, which go on from the registers as they are.
   * Nothing can fault inside a pass once its probes hit. busybox's md5sum copies each 64-byte block with `rep movsb`,
   * and Linux's copy_user_generic_string copies pipe and socket buffers with `rep movsq`: user buffers rarely start
   * on a page boundary, so a 4 KiB copy usually spans two pages of one side (each such copy was a replay when this
   * took one page only).
   */
  bulkString(e, size, movs, fin) {
    const b = this.b, T2 = this, lg = LOG2[size];
    const n = b.local(I32), passes = b.local(I32), dpa = b.local(I32), sa = movs ? b.local(I64) : -1;
    const spa = movs ? b.local(I32) : -1;
    const pl = { ti: T2.pTi };
    const slow = b.open(Op.block);
    b.get(T2.t).i64(0).op(Op.i64LtS).brIf(slow);
    if (!movs && size > 1) {
      T2.r64(0);
      if (size < 8) b.i64(size === 2 ? 0xffffn : 0xffffffffn).op(Op.i64And);
      T2.r64(0);
      b.i64(0xffn).op(Op.i64And).i64(size === 2 ? 0x0101n : size === 4 ? 0x01010101n : 0x0101010101010101n).op(
        126
        /* i64.mul */
      );
      b.op(Op.i64Ne).brIf(slow);
    }
    b.i32(BULK_PASSES).set(passes);
    const top = b.open(Op.loop);
    b.get(T2.x1).op(Op.i64Eqz).brIf(fin);
    b.get(passes).op(Op.i32Eqz).brIf(slow);
    T2.r64(7);
    b.set(T2.a);
    b.i32(4096).get(T2.a).op(Op.i32WrapI64).i32(4095).op(Op.i32And).op(Op.i32Sub).set(n);
    if (movs) {
      T2.r64(6);
      if (e.segOverride === 4 || e.segOverride === 5) b.get(T2.st).mem(Op.f64Load, 3, L3.S_SEG + 8 * e.segOverride).op(252, 6).op(Op.i64Add);
      b.set(sa);
      b.i32(4096).get(sa).op(Op.i32WrapI64).i32(4095).op(Op.i32And).op(Op.i32Sub).tee(T2.c32);
      b.get(n).get(T2.c32).get(n).op(Op.i32LtU).op(Op.select).set(n);
    }
    if (size > 1) b.get(n).i32(-size).op(Op.i32And).set(n);
    b.get(T2.x1).get(n).i32(lg).op(Op.i32ShrU).op(Op.i64ExtendI32u).op(Op.i64LtU).open(Op.if);
    b.get(T2.x1).op(Op.i32WrapI64).i32(lg).op(Op.i32Shl).set(n);
    b.close();
    b.get(n).op(Op.i32Eqz).brIf(slow);
    emitTlbProbeRun(b, T2.wtag, T2.a, pl, n, true, slow);
    b.set(dpa);
    if (movs) {
      b.get(sa).set(T2.a);
      emitTlbProbeRun(b, T2.rtag, T2.a, pl, n, false, slow);
      b.set(spa);
      b.get(dpa).get(spa).op(Op.i32GtU).get(dpa).get(spa).get(n).op(Op.i32Add).op(Op.i32LtU).op(Op.i32And).brIf(slow);
      b.get(dpa).i32(WASM_RAM_OFFSET).op(Op.i32Add);
      b.get(spa).i32(WASM_RAM_OFFSET).op(Op.i32Add);
      b.get(n).op(252, 10).op(0, 0);
      T2.r64(6);
      b.get(n).op(Op.i64ExtendI32u).op(Op.i64Add).set(T2.v);
      T2.set64(6, T2.v);
    } else {
      b.get(dpa).i32(WASM_RAM_OFFSET).op(Op.i32Add);
      T2.r32(0);
      b.i32(255).op(Op.i32And);
      b.get(n).op(252, 11).op(0);
    }
    T2.r64(7);
    b.get(n).op(Op.i64ExtendI32u).op(Op.i64Add).set(T2.v);
    T2.set64(7, T2.v);
    b.get(T2.x1).get(n).i32(lg).op(Op.i32ShrU).op(Op.i64ExtendI32u).op(Op.i64Sub).set(T2.x1);
    T2.set64(1, T2.x1);
    b.get(passes).i32(1).op(Op.i32Sub).set(passes);
    b.br(top);
    b.close();
    b.close();
  }
  // ---- ALU
  /** lr = ld op ls at `size` (4: the locals hold zero-extended 32-bit values; 1: bytes). */
  alu(op, size) {
    const b = this.b;
    b.get(this.ld).get(this.ls);
    switch (op) {
      case ADD:
        b.op(Op.i64Add);
        break;
      case SUB:
      case CMP:
        b.op(Op.i64Sub);
        break;
      case OR:
        b.op(Op.i64Or);
        break;
      case XOR:
        b.op(Op.i64Xor);
        break;
      default:
        b.op(Op.i64And);
    }
    const logic = ZX && (op === OR || op === AND || op === XOR || op === TEST);
    if (size === 4 && !logic) b.i64(0xffffffffn).op(Op.i64And);
    else if (size === 1 && !logic) b.i64(0xffn).op(Op.i64And);
    b.set(this.lr);
  }
  /** Push register r's value at size (4: zero-extended) as i64. */
  regVal(r, size) {
    if (size === 8) this.r64(r);
    else if (this.rs[r] !== 0) {
      this.b.get(this.rc[r]);
      if ((this.zx >>> r & 1) === 0) this.b.i64(4294967295).op(Op.i64And);
    } else {
      if (EXIT_STATS) this.wbCount(5);
      this.b.get(this.st).mem(Op.i64Load32u, 2, L3.sGpr(r));
    }
  }
  /** Write lr into register r at size (4: lr already holds the zero-extended 32-bit result). */
  writeLr(r, size) {
    this.set64(r, this.lr);
    if (ZX && size === 4 && !this.nested()) this.zx |= 1 << r;
  }
};
var imm64 = (lo, hi) => hi === 0 || hi === -1 && lo < 0 ? hi === 0 ? lo >>> 0 : lo : BigInt(hi | 0) << 32n | BigInt(lo >>> 0);
function translateBody(block, lin, opts = TIER1) {
  const offs = blockOffsets(block);
  if (offs === null) return null;
  const first = emitBlock(block, offs, null, opts, lin);
  if (!first.selfLoop) {
    dump(first, [block], lin === void 0 ? [] : [lin]);
    return { body: first.b, offs, memOps: first.b.memOps };
  }
  const pre = [], dirty = [];
  for (let r = 0; r < 16; r++) if (first.rc[r] >= 0) {
    pre.push(r);
    if (first.backDirty[r]) dirty.push(r);
  }
  const T2 = emitBlock(block, offs, { pre, dirty, slowClear: !first.backSlow }, opts, lin);
  dump(T2, [block], lin === void 0 ? [] : [lin]);
  return { body: T2.b, offs, memOps: T2.b.memOps };
}
function dump(T2, blocks, lins) {
  if (T2.marks === null) return;
  const hex = (v) => v < 0 ? "-" + (-v).toString(16) : v.toString(16);
  const title = blocks.map((bl, j) => `pa ${hex(bl.pa)}${lins[j] !== void 0 ? " lin " + hex(lins[j]) : ""}`).join(", ");
  dumpFunction(title, T2.b.code(), T2.marks);
}
function prologue(T2) {
  const b = T2.b;
  b.get(T2.st).i32(L3.S_TLB).op(Op.i32Add).get(T2.user).i32(L3.TLB_USER_DELTA).op(
    108
    /* i32.mul */
  ).op(Op.i32Add).tee(T2.rtag);
  b.i32(L3.TLB_WRITE_DELTA).op(Op.i32Add).set(T2.wtag);
  b.get(T2.r0).op(252, 6).set(T2.r0i);
}
function emitBlock(block, offs, loop, opts, lin) {
  const T2 = new Translator(block, offs, opts);
  T2.lin = lin;
  const b = T2.b;
  prologue(T2);
  T2.out = b.open(Op.block);
  emitCode(T2, block, offs, loop);
  b.close();
  epilogue(T2);
  return T2;
}
function epilogue(T2) {
  const b = T2.b, slot = T2.opts.slot;
  b.get(T2.n).get(T2.xc).op(Op.i32Add);
  if (slot < 0) return;
  b.tee(T2.c32);
  b.i32(0).i32(0).mem(Op.i32Load, 2, L3.HOT_COUNTS + 4 * slot).get(T2.c32).op(Op.i32Add).mem(Op.i32Store, 2, L3.HOT_COUNTS + 4 * slot);
}
function loopRegs(block, offs, opts) {
  const es = block.entries, last = es[es.length - 1];
  if (!((last.form === 18 /* Jcc */ || last.form === 19 /* Jmp */) && last.len > 0 && offs[es.length - 1] + last.len + last.disp === 0)) return null;
  const first = emitBlock(block, offs, null, { ...opts, tail: null });
  const pre = [], dirty = [];
  for (let r = 0; r < 16; r++) if (first.rc[r] >= 0) {
    pre.push(r);
    if (first.backDirty[r]) dirty.push(r);
  }
  return { pre, dirty, slowClear: !first.backSlow };
}
var LONE_SYS = process.env.RINGZERO_WASM_LONE_SYS !== "0";
function blockOffsets(block) {
  const es = block.entries;
  const offs = [];
  let off = 0, worth = false;
  for (let i = 0; i < es.length; i++) {
    const e = es[i];
    offs.push(off);
    off += e.len;
    if (worth) continue;
    const f = e.form;
    if (f !== 0 /* None */ && (f !== 17 /* ShiftImm */ || e.op >= 4)) {
      worth = true;
      continue;
    }
    const o = e.opcode;
    worth = o === 261 || o === 263 || o === 142 || LONE_SYS && (o === 290 || o === 207 || o === 430) || (o === 164 || o === 165 || o === 170 || o === 171) && e.adsize === 8;
  }
  return worth ? offs : null;
}
function pageTargets(block) {
  const out2 = [];
  const offs = blockOffsets(block);
  if (offs === null) return out2;
  const pa = block.pa;
  for (const t of staticExits(block, offs)) {
    const x = pa + t;
    if (x >>> 12 === pa >>> 12 && x !== pa) out2.push(x);
  }
  return out2;
}
function staticExits(b, offs) {
  const es = b.entries, out2 = [];
  for (let i = 0; i < es.length; i++) {
    const e = es[i], next = offs[i] + e.len;
    if ((e.form === 18 /* Jcc */ || e.form === 19 /* Jmp */ || e.form === 20 /* Call */) && e.len > 0) out2.push(next + e.disp);
    if (i === es.length - 1 && e.len > 0 && e.form !== 19 /* Jmp */) out2.push(next);
    else if (i === es.length - 1 && e.len === 0 && STRING_EDGE && stringRuns(e)) out2.push(offs[i] + e.opLen);
  }
  return out2;
}
function userLinear(l) {
  return l !== void 0 && l >= 0 && l < 2 ** 47;
}
function stringRuns(e) {
  const op = e.opcode;
  return (op === 164 || op === 165 || op === 170 || op === 171) && e.adsize === 8;
}
function groupRegions(blocks, lins) {
  if (!REGIONS) return blocks.map((b) => [b]);
  const n = blocks.length, parent = new Int32Array(n), offs = new Array(n);
  const edges = [];
  const find = (x) => {
    let r = x;
    while (parent[r] !== r) r = parent[r];
    parent[x] = r;
    return r;
  };
  const byPa = /* @__PURE__ */ new Map(), byLin = /* @__PURE__ */ new Map(), lin = new Array(n);
  for (let i = 0; i < n; i++) {
    const b = blocks[i];
    parent[i] = i;
    offs[i] = blockOffsets(b);
    if (!byPa.has(b.pa)) byPa.set(b.pa, i);
    const l = lin[i] = CROSS_PAGE ? lins?.get(b) : void 0;
    if (l !== void 0 && !byLin.has(l)) byLin.set(l, i);
  }
  for (let i = 0; i < n; i++) {
    const b = blocks[i], o = offs[i];
    if (o === null || byPa.get(b.pa) !== i) continue;
    const bl = lin[i];
    for (const t of staticExits(b, o)) {
      const tpa = b.pa + t;
      if (tpa >>> 12 !== b.pa >>> 12 && bl !== void 0) {
        const j2 = byLin.get(bl + t);
        if (j2 === void 0 || j2 === i) continue;
        const x = blocks[j2];
        if (byPa.get(x.pa) !== j2 || x.pa >>> 12 === b.pa >>> 12 || offs[j2] === null) continue;
        const ra2 = find(i), rb2 = find(j2);
        if (ra2 !== rb2) parent[ra2] = rb2;
        (edges[i] ??= []).push(j2);
        continue;
      }
      const j = byPa.get(tpa);
      if (j === void 0 || j === i || tpa >>> 12 !== b.pa >>> 12 || blocks[j].gen !== b.gen || offs[j] === null) continue;
      const ra = find(i), rb = find(j);
      if (ra !== rb) parent[ra] = rb;
      (edges[i] ??= []).push(j);
    }
  }
  const groupOf = new Array(n), groups = [];
  for (let i = 0; i < n; i++) {
    const r = find(i);
    let g = groupOf[r];
    if (g === void 0) {
      groupOf[r] = g = [];
      groups.push(g);
    }
    g.push(i);
  }
  const out2 = [];
  for (const g of groups) {
    if (g.length <= REGION_MAX) out2.push(g.map((i) => blocks[i]));
    else for (const part of cutGroup(g, blocks, edges)) out2.push(part.map((i) => blocks[i]));
  }
  return out2;
}
function cutGroup(g, blocks, edges) {
  const inG = /* @__PURE__ */ new Map();
  g.forEach((i, k) => inG.set(i, k));
  const m = g.length, index = new Int32Array(m).fill(-1), low = new Int32Array(m), onStack = new Uint8Array(m);
  const stack = [], comps = [];
  let next = 0;
  const visit = (v) => {
    index[v] = low[v] = next++;
    stack.push(v);
    onStack[v] = 1;
    for (const j of edges[g[v]] ?? []) {
      const w2 = inG.get(j);
      if (w2 === void 0) continue;
      if (index[w2] < 0) {
        visit(w2);
        low[v] = Math.min(low[v], low[w2]);
      } else if (onStack[w2]) low[v] = Math.min(low[v], index[w2]);
    }
    if (low[v] !== index[v]) return;
    const c = [];
    let w;
    do {
      w = stack.pop();
      onStack[w] = 0;
      c.push(g[w]);
    } while (w !== v);
    comps.push(c);
  };
  for (let v = 0; v < m; v++) if (index[v] < 0) visit(v);
  const byPa = (x, y) => blocks[x].pa - blocks[y].pa;
  for (const c of comps) c.sort(byPa);
  comps.sort((x, y) => byPa(x[0], y[0]));
  const parts = [];
  let cur = [];
  for (const c of comps) {
    if (c.length > REGION_MAX) {
      if (cur.length > 0) {
        parts.push(cur);
        cur = [];
      }
      for (let i = 0; i < c.length; i += REGION_MAX) parts.push(c.slice(i, i + REGION_MAX));
      continue;
    }
    if (cur.length + c.length > REGION_MAX) {
      parts.push(cur);
      cur = [];
    }
    cur.push(...c);
  }
  if (cur.length > 0) parts.push(cur);
  return parts;
}
function translateRegion(members, lins, opts = TIER1) {
  const offsList = [];
  for (const m of members) {
    const o = blockOffsets(m);
    if (o === null) return null;
    offsList.push(o);
  }
  const loops = members.map((m, j) => loopRegs(m, offsList[j], opts));
  const T2 = new Translator(members[0], offsList[0], opts);
  const b = T2.b;
  prologue(T2);
  const rr = REGION_REGS;
  const R = {
    members,
    at: /* @__PURE__ */ new Map(),
    lins: [],
    atLin: /* @__PURE__ */ new Map(),
    labels: [],
    disp: -1,
    cur: 0,
    climit: b.local(I32),
    intra: b.local(I32),
    lim: REGION_LIM ? b.local(I32) : -1,
    entry: [],
    regs: [],
    dIn: members.map(() => -1),
    kBack: rr ? members.length : 0,
    dead: members.map((m, j) => DEAD_REGS && loops[j] === null ? deadRegs(m) : 0)
  };
  R.regs = members.map((m, j) => rr && loops[j] === null ? memberRegs(m) & ~R.dead[j] : 0);
  members.forEach((m, j) => R.at.set(m.pa, j));
  if (lins !== void 0 && members.every((m) => lins.has(m))) {
    members.forEach((m, j) => {
      const l = lins.get(m);
      R.lins.push(l);
      if (!R.atLin.has(l)) R.atLin.set(l, j);
    });
  }
  b.i32(CHAIN_LIMIT).get(T2.st).mem(Op.i32Load, 2, L3.S_NBASE).op(Op.i32Sub).set(R.climit);
  b.get(T2.left).get(R.climit).get(T2.left).get(R.climit).op(Op.i32LtS).op(Op.select).set(R.climit);
  if (R.lim >= 0) {
    const nMax = Math.max(...members.map((m) => m.n));
    b.get(R.climit).i32(1).op(Op.i32Sub).get(T2.left).i32(nMax).op(Op.i32Sub).tee(R.lim);
    b.get(R.climit).i32(1).op(Op.i32Sub).get(R.lim).op(Op.i32LtS).op(Op.select).set(R.lim);
  }
  T2.out = b.open(Op.block);
  R.disp = b.open(Op.loop);
  for (let j = members.length - 1; j >= 0; j--) {
    R.labels[j] = b.open(Op.block);
    if (rr) R.entry[j] = b.open(Op.block);
  }
  b.get(T2.k).brTable(rr ? [...R.entry, ...R.labels] : R.labels, rr ? R.entry[0] : R.labels[0]);
  T2.region = R;
  const cyc = LOOP_INLINE ? onCycles(members, R.at) : null;
  for (let j = 0; j < members.length; j++) {
    b.close();
    if (rr) {
      for (let r = 0; r < 16; r++) {
        if ((R.regs[j] >>> r & 1) === 0) continue;
        if (EXIT_STATS) T2.wbCount(6);
        b.get(T2.st).mem(Op.i64Load, 3, L3.sGpr(r)).set(T2.rl(r));
      }
      b.close();
      if (R.dIn[j] < 0) R.dIn[j] = 0;
      T2.entryRegs = R.regs[j];
      T2.entryDirty = R.dIn[j];
    }
    R.cur = j;
    T2.loopMember = cyc !== null && cyc[j];
    emitCode(T2, members[j], offsList[j], loops[j]);
    T2.entryRegs = 0;
    T2.entryDirty = 0;
    b.op(Op.unreachable);
  }
  T2.loopMember = false;
  b.close();
  b.close();
  if (COUNT_CHAINS) b.get(T2.st).get(T2.st).mem(Op.i32Load, 2, L3.S_INTRA).get(R.intra).op(Op.i32Add).mem(Op.i32Store, 2, L3.S_INTRA);
  epilogue(T2);
  dump(T2, members, R.lins);
  return { body: b, offs: offsList, memOps: b.memOps };
}
function memberRegs(block) {
  let reads = 0, written = 0;
  const rd = (r) => {
    if (r >= 0 && r < 16 && (written >>> r & 1) === 0) reads |= 1 << r;
  };
  const wr = (r) => {
    if (r >= 0 && r < 16) written |= 1 << r;
  };
  for (const e of block.entries) {
    const f = e.form;
    if (f === 0 /* None */ || EMIT[f] === void 0 || f === 116 /* Syscall */ || f === 117 /* Sysret */) break;
    rd(e.base);
    rd(e.index);
    switch (f) {
      case 1 /* MovRR64 */:
      case 2 /* MovRR32 */:
        rd(e.a);
        wr(e.b);
        break;
      case 5 /* MovLoad64 */:
      case 6 /* MovLoad32 */:
      case 7 /* MovImmReg */:
      case 10 /* Lea */:
      case 26 /* MovzxMem */:
      case 28 /* MovsxdMem */:
      case 59 /* MovsxM */:
        wr(e.a);
        break;
      case 24 /* MovzxReg8 */:
      case 25 /* MovzxReg16 */:
      case 27 /* MovsxdReg */:
      case 57 /* MovsxR8 */:
      case 58 /* MovsxR16 */:
        rd(e.b);
        wr(e.a);
        break;
      case 3 /* MovStore64 */:
      case 4 /* MovStore32 */:
      case 80 /* MovStore16 */:
      case 12 /* AluMR */:
      case 31 /* Alu8MR */:
      case 36 /* Mov8MR */:
      case 78 /* Alu16MR */:
      case 101 /* XchgM */:
      case 65 /* XaddM */:
      case 72 /* BtMR */:
      case 54 /* AdcMR */:
      case 81 /* MovLoad16 */:
        rd(e.a);
        break;
      case 64 /* CmpxchgM */:
      case 107 /* Cmpxchg8M */:
        rd(0);
        rd(e.a);
        break;
      case 11 /* AluRR */:
      case 29 /* Alu8RR */:
      case 75 /* Alu16RR */:
      case 34 /* Mov8RR */:
      case 39 /* CmovRR */:
      case 71 /* BtRR */:
      case 100 /* XchgRR */:
      case 61 /* ShiftDoubleRI */:
      case 51 /* AdcRR */:
      case 47 /* ImulRR */:
        rd(e.a);
        rd(e.b);
        break;
      case 14 /* AluRI */:
      case 13 /* AluRM */:
      case 32 /* Alu8RI */:
      case 30 /* Alu8RM */:
      case 76 /* Alu16RI */:
      case 77 /* Alu16RM */:
      case 16 /* IncDec */:
      case 119 /* IncDec8 */:
      case 17 /* ShiftImm */:
      case 111 /* Shift8Imm */:
      case 115 /* Shift16Imm */:
      case 43 /* NotNegR */:
      case 74 /* Bswap */:
      case 69 /* BtRI */:
      case 37 /* Mov8RI */:
      case 35 /* Mov8RM */:
      case 41 /* Setcc */:
      case 40 /* CmovRM */:
      case 53 /* AdcRI */:
      case 52 /* AdcRM */:
      case 48 /* ImulRM */:
        rd(e.b);
        break;
      case 60 /* ShiftCl */:
        rd(1);
        rd(e.b);
        break;
      case 114 /* ShiftDoubleCl */:
        rd(1);
        rd(e.a);
        rd(e.b);
        break;
      case 120 /* ShiftMCl */:
        rd(1);
        break;
      case 49 /* ImulRRI */:
      case 122 /* PopcntR */:
        rd(e.a);
        wr(e.b);
        break;
      case 98 /* BitScanR */:
        rd(e.a);
        rd(e.b);
        break;
      case 22 /* Push */:
        rd(e.a);
        rd(4);
        break;
      case 23 /* Pop */:
        rd(4);
        wr(e.a);
        break;
      case 20 /* Call */:
      case 21 /* Ret */:
      case 67 /* PushImm */:
      case 66 /* Pushf */:
      case 86 /* PushM */:
        rd(4);
        break;
      case 82 /* Leave */:
        rd(5);
        wr(4);
        wr(5);
        break;
      case 73 /* Cdq */:
        rd(0);
        break;
      case 45 /* MulDivR */:
        rd(0);
        rd(2);
        rd(e.b);
        break;
      case 46 /* MulDivM */:
        rd(0);
        rd(2);
        break;
      case 62 /* CallInd */:
      case 63 /* JmpInd */:
        if (e.base === -3) rd(e.b);
        if (f === 62 /* CallInd */) rd(4);
        break;
      default:
        break;
    }
  }
  return reads;
}
var DEAD_REGS = process.env.RINGZERO_WASM_DEAD_REGS === "1";
function deadRegs(block) {
  const noCarryIn = (op) => op === ADD || op === OR || op === AND || op === SUB || op === XOR || op === CMP || op === TEST;
  const es = block.entries, N = es.length, last = es[N - 1], offs = blockOffsets(block);
  if (offs === null || midSelfEdge(block)) return 0;
  if ((last.form === 18 /* Jcc */ || last.form === 19 /* Jmp */) && last.len > 0 && offs[N - 1] + last.len + last.disp === 0) return 0;
  let reads = 0, dead = 0;
  const rd = (r) => {
    if (r >= 0 && r < 16 && (dead >>> r & 1) === 0) reads |= 1 << r;
  };
  const wr = (r) => {
    if (r >= 0 && r < 16 && (reads >>> r & 1) === 0) dead |= 1 << r;
  };
  for (let i = 0; i < N; i++) {
    const e = es[i];
    if (i === N - 1 && (e.len === 0 || block.pfn2 >= 0)) break;
    switch (e.form) {
      case 1 /* MovRR64 */:
      case 2 /* MovRR32 */:
        rd(e.a);
        wr(e.b);
        break;
      case 7 /* MovImmReg */:
        wr(e.a);
        break;
      case 10 /* Lea */:
        rd(e.base);
        rd(e.index);
        wr(e.a);
        break;
      case 24 /* MovzxReg8 */:
      case 25 /* MovzxReg16 */:
      case 27 /* MovsxdReg */:
        rd(e.b);
        wr(e.a);
        break;
      case 11 /* AluRR */:
        if (!noCarryIn(e.op)) return dead;
        if ((e.op === XOR || e.op === SUB) && e.a === e.b) {
          wr(e.b);
          break;
        }
        rd(e.a);
        rd(e.b);
        if (e.op < CMP) wr(e.b);
        break;
      case 14 /* AluRI */:
        if (!noCarryIn(e.op)) return dead;
        rd(e.b);
        break;
      case 42 /* Nop */:
        break;
      default:
        return dead;
    }
  }
  return dead;
}
function onCycles(members, at) {
  const succ = members.map((m) => {
    const out2 = [];
    for (const t of pageTargets(m)) {
      const j = at.get(t);
      if (j !== void 0) out2.push(j);
    }
    return out2;
  });
  const cyc = members.map((m, j) => {
    if (midSelfEdge(m)) return true;
    const seen = new Uint8Array(members.length), stack = [...succ[j]];
    while (stack.length > 0) {
      const k = stack.pop();
      if (k === j) return true;
      if (seen[k]) continue;
      seen[k] = 1;
      for (const x of succ[k]) stack.push(x);
    }
    return false;
  });
  if (!LOOP_ENTRY) return cyc;
  const onCyc = /* @__PURE__ */ new Set();
  members.forEach((m, j) => {
    if (cyc[j]) onCyc.add(m.pa);
  });
  return members.map((m, j) => {
    if (cyc[j] || onCyc.size === 0) return cyc[j];
    const offs = blockOffsets(m);
    return offs !== null && offs.some((o) => o > 0 && onCyc.has(m.pa + o));
  });
}
function hoistMask(T2, i) {
  if (T2.memInline()) return null;
  const es = T2.block.entries;
  let written = 0, flags = true;
  for (let j = i + 1; j < es.length; j++) {
    const e = es[j], f = e.form;
    if (j === es.length - 1 && T2.block.pfn2 >= 0) return null;
    switch (f) {
      case 5 /* MovLoad64 */:
      case 6 /* MovLoad32 */:
      case 3 /* MovStore64 */:
      case 4 /* MovStore32 */:
      case 8 /* MovImmMem64 */:
      case 9 /* MovImmMem32 */:
      case 26 /* MovzxMem */:
      case 28 /* MovsxdMem */:
      case 59 /* MovsxM */:
      case 35 /* Mov8RM */:
      case 36 /* Mov8MR */:
      case 38 /* Mov8MI */:
      case 13 /* AluRM */:
      case 12 /* AluMR */:
      case 15 /* AluMI */:
      case 30 /* Alu8RM */:
      case 31 /* Alu8MR */:
      case 33 /* Alu8MI */:
      case 81 /* MovLoad16 */:
      case 80 /* MovStore16 */:
        if (e.base === 4 || (e.form === 13 /* AluRM */ || e.form === 12 /* AluMR */ || e.form === 15 /* AluMI */ ? KIND[e.op] === 0 : false)) return null;
        return { regs: 65535 & ~written, flags };
      case 11 /* AluRR */:
      case 14 /* AluRI */:
      case 29 /* Alu8RR */:
      case 32 /* Alu8RI */:
        if (KIND[e.op] === 0) return null;
        flags = false;
        break;
      case 1 /* MovRR64 */:
      case 2 /* MovRR32 */:
      case 7 /* MovImmReg */:
      case 10 /* Lea */:
      case 24 /* MovzxReg8 */:
      case 25 /* MovzxReg16 */:
      case 27 /* MovsxdReg */:
      case 57 /* MovsxR8 */:
      case 58 /* MovsxR16 */:
      case 34 /* Mov8RR */:
      case 37 /* Mov8RI */:
      case 74 /* Bswap */:
      case 73 /* Cdq */:
      case 100 /* XchgRR */:
      case 42 /* Nop */:
        break;
      case 18 /* Jcc */:
      case 19 /* Jmp */: {
        const last = es.length - 1;
        if (j !== last || T2.selfLoop || e.len === 0 || REGION_REGS) return null;
        const next = T2.offs[j] + e.len, target = next + e.disp;
        if (f === 18 /* Jcc */) {
          if (!JCC_FLUSH) return null;
          return { regs: 65535 & ~written & ~(T2.deadFor(target) | T2.deadFor(next)), flags: flags && !(T2.edgeDead(target) && T2.edgeDead(next)) };
        }
        return { regs: 65535 & ~written & ~T2.deadFor(target), flags: flags && !T2.edgeDead(target) };
      }
      default:
        if (EMIT[f] === void 0 && !(j === es.length - 1 && e.len === 0)) return { regs: 65535 & ~written, flags };
        return null;
    }
    written |= (e.a >= 0 && e.a < 16 ? 1 << e.a : 0) | (e.b >= 0 && e.b < 16 ? 1 << e.b : 0) | (f === 73 /* Cdq */ ? 5 : 0);
    if (j === es.length - 1) {
      if (REGION_REGS) return null;
      return { regs: 65535 & ~written & ~T2.deadFor(T2.offs[j] + e.len), flags: flags && !T2.edgeDead(T2.offs[j] + e.len) };
    }
  }
  return null;
}
function flagsDead(block, i) {
  const es = block.entries;
  for (let j = i + 1; j < es.length; j++) {
    const e = es[j], f = e.form;
    if (j === es.length - 1 && (e.len === 0 || block.pfn2 >= 0)) return false;
    switch (f) {
      case 11 /* AluRR */:
      case 14 /* AluRI */:
      case 29 /* Alu8RR */:
      case 32 /* Alu8RI */:
      case 75 /* Alu16RR */:
      case 76 /* Alu16RI */:
        if (KIND[e.op] !== 0) return true;
        return false;
      case 43 /* NotNegR */:
        if (e.op === 1) return true;
        break;
      case 17 /* ShiftImm */:
      case 111 /* Shift8Imm */:
      case 115 /* Shift16Imm */:
        if (e.op >= 4) return true;
        if (e.op <= 1 && f === 17 /* ShiftImm */) break;
        return false;
      case 1 /* MovRR64 */:
      case 2 /* MovRR32 */:
      case 7 /* MovImmReg */:
      case 10 /* Lea */:
      case 24 /* MovzxReg8 */:
      case 25 /* MovzxReg16 */:
      case 27 /* MovsxdReg */:
      case 57 /* MovsxR8 */:
      case 58 /* MovsxR16 */:
      case 34 /* Mov8RR */:
      case 37 /* Mov8RI */:
      case 74 /* Bswap */:
      case 73 /* Cdq */:
      case 100 /* XchgRR */:
      case 42 /* Nop */:
        break;
      default:
        return false;
    }
  }
  return false;
}
function replay(T2, i) {
  const b = T2.b;
  T2.insReplayed = true;
  T2.flush();
  T2.pos();
  b.call(F_RP2);
  T2.forget();
  b.open(Op.if);
  T2.xk(X_HELPER);
  b.i32(i + 1).set(T2.xc).br(T2.out);
  b.close();
  T2.known = false;
  T2.fdirty = false;
  T2.cfLazy = false;
  if (i === T2.block.entries.length - 1) b.op(Op.unreachable);
}
function memOp(T2, e, next) {
  T2.insMem = true;
  T2.ea(e, next);
}
function emitCode(T2, block, offs, loop) {
  const es = block.entries;
  const N = es.length;
  const b = T2.b;
  T2.block = block;
  T2.offs = offs;
  T2.rs.fill(0);
  T2.dirty = 0;
  T2.zx = 0;
  T2.known = false;
  T2.fdirty = false;
  T2.cfLazy = false;
  T2.rot = 0;
  T2.kind = 0;
  T2.size = 0;
  T2.ix = 0;
  for (let r = 0; r < 16; r++) if (T2.entryRegs >>> r & 1) T2.rs[r] = T2.entryDirty >>> r & 1 ? 2 : 1;
  T2.dirty = T2.entryDirty;
  T2.loopPre = null;
  T2.loopDirty = [];
  T2.backDirty.fill(false);
  T2.runEnd = 0;
  T2.runCur = -1;
  T2.lpAt.fill(-1);
  T2.slowMaybe = T2.slowMaybe || T2.region !== null;
  const last = es[N - 1];
  const lastNext = offs[N - 1] + last.len;
  T2.selfLoop = (last.form === 18 /* Jcc */ || last.form === 19 /* Jmp */) && last.len > 0 && lastNext + last.disp === 0;
  if (T2.selfLoop && loop !== null) {
    T2.base = b.nest;
    for (const r of loop.pre) {
      T2.r64(r);
      b.op(Op.drop);
    }
    T2.loopPre = loop.pre;
    T2.loopDirty = loop.dirty;
  }
  T2.loopSlow = LOOP_SLOW && T2.selfLoop && SLOW_WB && loop !== null && loop.slowClear === true;
  if (T2.loopSlow && T2.slowMaybe) {
    b.i32(0).set(T2.slowL);
    T2.slowMaybe = false;
  }
  if (T2.selfLoop) {
    T2.top = b.open(Op.loop);
    T2.slowMaybe = !T2.loopSlow;
  }
  T2.chainAt = T2.selfLoop ? -1 : b.calls;
  T2.base = b.nest;
  if (T2.loopPre !== null) for (const r of T2.loopPre) {
    T2.rs[r] = T2.loopDirty.includes(r) ? 2 : 1;
    if (T2.rs[r] === 2) T2.dirty |= 1 << r;
  }
  for (let i = 0; i < N; i++) {
    const e = es[i];
    const o = offs[i];
    const next = o + e.len;
    const isLast = i === N - 1;
    const f = e.form;
    T2.ix = i;
    const mark = b.length;
    T2.insMem = false;
    T2.insReplayed = false;
    T2.insSlow = 0;
    T2.insCalls = b.calls;
    T2.slowTrack = false;
    if (T2.rot !== 0 && !ROT_KEEP[f]) T2.settleRot();
    if (isLast && block.pfn2 >= 0 && f !== 0 /* None */) T2.straddleCheck(i);
    if (f === 0 /* None */ && isLast && e.len === 0 && !e.p66 && e.rep === 0 && (e.opcode === 235 || e.opcode === 233 || e.opcode >= 112 && e.opcode <= 127 || e.opcode >= 384 && e.opcode <= 399)) {
      T2.straddlingBranch(e, o, i);
      replay(T2, i);
      continue;
    }
    if (STACK_RUN && i >= T2.runEnd) stackRun(T2, es, i);
    T2.runCur = i < T2.runEnd ? T2.runOff[i] : -1;
    (EMIT[f] ?? emitOther)(T2, e, i, next);
    T2.runCur = -1;
    if (T2.insMem && !isLast) {
      if (!T2.insReplayed) T2.hoistFlush(i);
      T2.exitIfSlow(i + 1, next);
    } else if (T2.insSlow > 0) T2.slowMaybe = true;
    if (isLast && !T2.insReplayed && f !== 18 /* Jcc */ && f !== 19 /* Jmp */ && f !== 20 /* Call */ && f !== 21 /* Ret */ && f !== 62 /* CallInd */ && f !== 63 /* JmpInd */) {
      T2.exitStatic(i + 1, next);
    }
    if (T2.marks !== null) T2.marks.push([`${T2.region !== null ? "m" + T2.region.cur + " " : ""}+${o.toString(16)} op ${e.opcode.toString(16)} form ${f}`, mark, b.length]);
  }
  if (T2.selfLoop) b.close();
}
var STACK_RUN = process.env.RINGZERO_WASM_STACK_RUN !== "0";
var STACK_ONE = process.env.RINGZERO_WASM_STACK_ONE === "1";
function stackRun(T2, es, i) {
  T2.runEnd = i + 1;
  T2.runOff[i] = -1;
  let d = 0, lo = 0, hi = 0, n = 0, write = false, j = i;
  const at = [];
  const acc = (off, size, st) => {
    const l = n === 0 ? off : Math.min(lo, off), h = n === 0 ? off + size : Math.max(hi, off + size);
    if (h - l > 4096) return false;
    lo = l;
    hi = h;
    n++;
    write ||= st;
    at[j] = off;
    return true;
  };
  const rspMem = (e) => e.base === 4 && e.index < 0 && e.seg < 0;
  for (; j < es.length; j++) {
    const e = es[j], f = e.form;
    at[j] = NaN;
    if (f === 22 /* Push */ || f === 67 /* PushImm */ || f === 66 /* Pushf */ || f === 20 /* Call */ || f === 86 /* PushM */) {
      if (!acc(d - 8, 8, true)) break;
      d -= 8;
    } else if (f === 23 /* Pop */ && e.a !== 4 || f === 21 /* Ret */) {
      if (!acc(d, 8, false)) break;
      d += 8;
    } else if ((f === 3 /* MovStore64 */ || f === 4 /* MovStore32 */ || f === 8 /* MovImmMem64 */ || f === 9 /* MovImmMem32 */) && rspMem(e)) {
      if (!acc(d + e.disp, f === 3 /* MovStore64 */ || f === 8 /* MovImmMem64 */ ? 8 : 4, true)) break;
    } else if ((f === 5 /* MovLoad64 */ || f === 6 /* MovLoad32 */) && rspMem(e) && e.a !== 4) {
      if (!acc(d + e.disp, f === 5 /* MovLoad64 */ ? 8 : 4, false)) break;
    } else if (n === 0) {
      break;
    } else if ((f === 5 /* MovLoad64 */ || f === 6 /* MovLoad32 */) && e.a !== 4 || f === 13 /* AluRM */ && (e.b !== 4 || e.op >= CMP)) {
    } else if (f === 14 /* AluRI */ && e.b === 4 && e.size === 8 && (e.op === ADD || e.op === SUB) && e.immHi === (e.imm | 0) >> 31) {
      d += e.op === ADD ? e.imm | 0 : -(e.imm | 0);
    } else if (f === 10 /* Lea */ && e.a === 4 && e.base === 4 && e.index < 0 && e.immHi === 8) {
      d += e.disp;
    } else if (f === 42 /* Nop */ || (f === 1 /* MovRR64 */ || f === 2 /* MovRR32 */ || f === 11 /* AluRR */ || f === 14 /* AluRI */) && (e.b !== 4 || e.op >= CMP && f !== 1 /* MovRR64 */ && f !== 2 /* MovRR32 */) || (f === 7 /* MovImmReg */ || f === 10 /* Lea */) && e.a !== 4) {
    } else break;
    if (f === 20 /* Call */ || f === 21 /* Ret */) {
      j++;
      break;
    }
  }
  if (n < 2 && !(STACK_ONE && n === 1 && j > i && (es[j - 1].form === 20 /* Call */ || es[j - 1].form === 21 /* Ret */))) return;
  const b = T2.b;
  for (let k = i; k < j; k++) T2.runOff[k] = Number.isNaN(at[k]) ? -1 : at[k] - lo;
  T2.runEnd = j;
  T2.r64(4);
  if (lo !== 0) b.i64(lo).op(Op.i64Add);
  b.set(T2.a);
  b.i32(0).set(T2.runOk);
  const slow = b.open(Op.block);
  emitTlbProbe(b, write ? T2.wtag : T2.rtag, T2.a, { ti: T2.pTi }, hi - lo, write, slow);
  b.set(T2.runPa);
  b.i32(1).set(T2.runOk);
  b.close();
}
var ROT_LAZY = process.env.RINGZERO_WASM_ROT_LAZY !== "0";
var EDGE_DEAD = process.env.RINGZERO_WASM_EDGE_DEAD !== "0";
var SLOW_FLAG = process.env.RINGZERO_WASM_SLOW_FLAG !== "0";
var SLOW_WB = process.env.RINGZERO_WASM_SLOW_WB !== "0";
var FOLD_CHECKS = process.env.RINGZERO_WASM_FOLD_CHECKS !== "0";
var CHAIN_KNOWN = process.env.RINGZERO_WASM_CHAIN_KNOWN !== "0";
var LOAD_REG = process.env.RINGZERO_WASM_LOAD_REG !== "0";
var REGION_LIM = process.env.RINGZERO_WASM_REGION_LIM !== "0";
var RUN_RSP = process.env.RINGZERO_WASM_RUN_RSP !== "0";
var LOOP_SLOW = process.env.RINGZERO_WASM_LOOP_SLOW === "1";
var CF_LAZY = process.env.RINGZERO_WASM_CF_LAZY !== "0";
var ROT_KEEP = [];
for (const f of [
  1 /* MovRR64 */,
  2 /* MovRR32 */,
  3 /* MovStore64 */,
  4 /* MovStore32 */,
  5 /* MovLoad64 */,
  6 /* MovLoad32 */,
  7 /* MovImmReg */,
  8 /* MovImmMem64 */,
  9 /* MovImmMem32 */,
  10 /* Lea */,
  11 /* AluRR */,
  14 /* AluRI */,
  13 /* AluRM */,
  12 /* AluMR */,
  15 /* AluMI */,
  17 /* ShiftImm */,
  24 /* MovzxReg8 */,
  25 /* MovzxReg16 */,
  26 /* MovzxMem */,
  27 /* MovsxdReg */,
  28 /* MovsxdMem */,
  57 /* MovsxR8 */,
  58 /* MovsxR16 */,
  59 /* MovsxM */,
  34 /* Mov8RR */,
  37 /* Mov8RI */,
  35 /* Mov8RM */,
  36 /* Mov8MR */,
  38 /* Mov8MI */,
  29 /* Alu8RR */,
  32 /* Alu8RI */,
  30 /* Alu8RM */,
  31 /* Alu8MR */,
  33 /* Alu8MI */,
  43 /* NotNegR */,
  22 /* Push */,
  23 /* Pop */,
  74 /* Bswap */,
  73 /* Cdq */,
  100 /* XchgRR */,
  42 /* Nop */,
  19 /* Jmp */
]) ROT_KEEP[f] = true;
var EMIT = [];
function on(fn, ...forms) {
  for (const f of forms) EMIT[f] = fn;
}
on(emitMovRR64, 1 /* MovRR64 */);
on(emitMovRR32, 2 /* MovRR32 */);
on(emitMovStore64, 3 /* MovStore64 */);
on(emitMovStore32, 4 /* MovStore32 */);
on(emitMovLoad64, 5 /* MovLoad64 */);
on(emitMovLoad32, 6 /* MovLoad32 */);
on(emitMovImmReg, 7 /* MovImmReg */);
on(emitMovImmMem64, 8 /* MovImmMem64 */);
on(emitMovImmMem32, 9 /* MovImmMem32 */);
on(emitLea, 10 /* Lea */);
on(emitAluRR, 11 /* AluRR */, 14 /* AluRI */, 13 /* AluRM */);
on(emitAluMR, 12 /* AluMR */, 15 /* AluMI */);
on(emitIncDec, 16 /* IncDec */);
on(emitIncDec8, 119 /* IncDec8 */);
on(emitShiftImm, 17 /* ShiftImm */);
on(emitShiftCl, 60 /* ShiftCl */);
on(emitBtRI, 69 /* BtRI */, 71 /* BtRR */, 70 /* BtMI */, 72 /* BtMR */);
on(emitAlu16RR, 75 /* Alu16RR */, 76 /* Alu16RI */, 77 /* Alu16RM */, 78 /* Alu16MR */, 79 /* Alu16MI */);
on(emitMovStore16, 80 /* MovStore16 */);
on(emitMovLoad16, 81 /* MovLoad16 */);
on(emitCmpxchgM, 64 /* CmpxchgM */);
on(emitCmpxchg8M, 107 /* Cmpxchg8M */);
on(emitRdtsc, 105 /* Rdtsc */, 106 /* Rdtscp */);
on(emitSwapgs, 85 /* Swapgs */);
on(emitCld, 112 /* Cld */, 113 /* Std */);
on(emitMovSregR, 108 /* MovSregR */, 109 /* MovSregM */);
on(emitCmpxchg16bM, 110 /* Cmpxchg16bM */);
on(emitShift8Imm, 111 /* Shift8Imm */);
on(emitShift16Imm, 115 /* Shift16Imm */);
on(emitShift16M, 118 /* Shift16M */);
on(emitShiftMCl, 120 /* ShiftMCl */);
on(emitMovImm16M, 121 /* MovImm16M */);
on(emitPopcnt, 122 /* PopcntR */, 123 /* PopcntM */);
on(emitShiftDoubleCl, 114 /* ShiftDoubleCl */);
on(emitXchgRR, 100 /* XchgRR */);
on(emitXchgM, 101 /* XchgM */);
on(emitXaddM, 65 /* XaddM */);
on(emitShiftDoubleRI, 61 /* ShiftDoubleRI */);
on(emitCdq, 73 /* Cdq */);
on(emitBswap, 74 /* Bswap */);
on(emitPushf, 66 /* Pushf */);
on(emitCli, 83 /* Cli */, 84 /* Sti */);
on(emitPushImm, 67 /* PushImm */);
on(emitSetccM, 68 /* SetccM */);
on(emitLeave, 82 /* Leave */);
on(emitPush, 22 /* Push */, 20 /* Call */);
on(emitPop, 23 /* Pop */, 21 /* Ret */);
on(emitMovzxReg8, 24 /* MovzxReg8 */);
on(emitMovzxReg16, 25 /* MovzxReg16 */);
on(emitMovzxMem, 26 /* MovzxMem */);
on(emitMovsxdReg, 27 /* MovsxdReg */);
on(emitMovsxdMem, 28 /* MovsxdMem */);
on(emitAlu8RR, 29 /* Alu8RR */, 32 /* Alu8RI */, 30 /* Alu8RM */);
on(emitAlu8MR, 31 /* Alu8MR */, 33 /* Alu8MI */);
on(emitMov8RR, 34 /* Mov8RR */);
on(emitMov8RI, 37 /* Mov8RI */);
on(emitMov8RM, 35 /* Mov8RM */);
on(emitMov8MR, 36 /* Mov8MR */);
on(emitMov8MI, 38 /* Mov8MI */);
on(emitCmovRR, 39 /* CmovRR */, 40 /* CmovRM */);
on(emitSetcc, 41 /* Setcc */);
on(emitNop, 42 /* Nop */);
on(emitAdcRR, 51 /* AdcRR */, 52 /* AdcRM */, 53 /* AdcRI */, 54 /* AdcMR */, 55 /* AdcMI */);
on(emitIncDecM, 56 /* IncDecM */);
on(emitImulRR, 47 /* ImulRR */, 48 /* ImulRM */, 49 /* ImulRRI */, 50 /* ImulRMI */);
on(emitMulDivR, 45 /* MulDivR */, 46 /* MulDivM */);
on(emitPushM, 86 /* PushM */);
on(emitMovsxR8, 57 /* MovsxR8 */, 58 /* MovsxR16 */, 59 /* MovsxM */);
on(emitNotNegR, 43 /* NotNegR */);
on(emitNotNegM, 44 /* NotNegM */);
on(emitCallInd, 62 /* CallInd */, 63 /* JmpInd */);
on(emitJcc, 18 /* Jcc */, 19 /* Jmp */);
on(emitSyscall, 116 /* Syscall */, 117 /* Sysret */);
function emitMovRR64(T2, e, i, next) {
  T2.setFrom(e.b, () => T2.r64(e.a));
}
function emitMovRR32(T2, e, i, next) {
  T2.set32(e.b, () => T2.r32(e.a));
}
function emitMovStore64(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.r64(e.a);
  b.set(T2.w);
  T2.store(8);
}
function emitMovStore32(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.regVal(e.a, 4);
  b.set(T2.w);
  T2.store(4);
}
function emitMovLoad64(T2, e, i, next) {
  memOp(T2, e, next);
  T2.loadReg(e.a, 8, false);
}
function emitMovLoad32(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.loadReg(e.a, 4, true);
}
function emitMovImmReg(T2, e, i, next) {
  const b = T2.b;
  T2.setFrom(e.a, () => b.i64(imm64(e.imm, e.immHi)));
}
function emitMovImmMem64(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  b.i64(imm64(e.imm, e.immHi)).set(T2.w);
  T2.store(8);
}
function emitMovImmMem32(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  b.i64(e.imm >>> 0).set(T2.w);
  T2.store(4);
}
function emitLea(T2, e, i, next) {
  const b = T2.b;
  let terms = 0;
  if (e.base >= 0) {
    T2.r64(e.base);
    terms++;
  } else if (e.base === -2) {
    b.get(T2.r0i).i64(next).op(Op.i64Add);
    terms++;
  }
  if (e.index >= 0) {
    T2.r64(e.index);
    if (e.size) b.i64(e.size).op(Op.i64Shl);
    if (terms) b.op(Op.i64Add);
    terms++;
  }
  if (e.disp !== 0 || terms === 0) {
    b.i64(e.disp);
    if (terms) b.op(Op.i64Add);
  }
  b.set(T2.t);
  if (e.immHi === 8) T2.set64(e.a, T2.t);
  else T2.set32(e.a, () => b.get(T2.t).op(Op.i32WrapI64));
}
function emitAluRR(T2, e, i, next) {
  const b = T2.b, f = e.form;
  const op = e.op, size = e.size, rd = e.b;
  if (f === 13 /* AluRM */) {
    memOp(T2, e, next);
    T2.load(size);
  }
  T2.regVal(rd, size);
  b.set(T2.ld);
  if (f === 11 /* AluRR */) T2.regVal(e.a, size);
  else if (f === 14 /* AluRI */) b.i64(size === 8 ? imm64(e.imm, e.immHi) : e.imm >>> 0);
  else b.get(T2.v);
  b.set(T2.ls);
  T2.alu(op, size);
  if (op < CMP) T2.writeLr(rd, size);
  T2.produced(KIND[op], size);
}
function emitAluMR(T2, e, i, next) {
  const b = T2.b, size = e.size;
  memOp(T2, e, next);
  T2.load(size);
  aluMem(T2, e.op, size, () => {
    if (e.form === 12 /* AluMR */) T2.regVal(e.a, size);
    else b.i64(size === 8 ? imm64(e.imm, e.immHi) : e.imm >>> 0);
  });
}
function aluMem(T2, op, size, operand) {
  const b = T2.b;
  if (op >= CMP && HOIST_FLUSH) {
    b.get(T2.v).set(T2.ld);
    operand();
    b.set(T2.ls);
    T2.alu(op, size);
    T2.produced(KIND[op], size);
    return;
  }
  operand();
  b.set(T2.t);
  b.get(T2.v).get(T2.t);
  b.op(op === ADD ? Op.i64Add : op === SUB || op === CMP ? Op.i64Sub : op === OR ? Op.i64Or : op === XOR ? Op.i64Xor : Op.i64And);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  else if (size === 1) b.i64(0xffn).op(Op.i64And);
  b.set(T2.w);
  if (op < CMP) T2.store(size);
  b.get(T2.v).set(T2.ld).get(T2.t).set(T2.ls).get(T2.w).set(T2.lr);
  T2.produced(KIND[op], size);
}
function emitIncDec(T2, e, i, next) {
  const b = T2.b;
  const r = e.b, dec = e.op === 1, size = e.size;
  const lazy = incDecLazy(T2);
  if (!lazy) {
    T2.cond(2);
    b.set(T2.lcy);
  }
  T2.regVal(r, size);
  b.set(T2.ld);
  b.i64(1).set(T2.ls);
  b.get(T2.ld).i64(1).op(dec ? Op.i64Sub : Op.i64Add);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  b.set(T2.lr);
  T2.writeLr(r, size);
  T2.produced(dec ? L_DEC : L_INC, size);
  T2.cfLazy = lazy;
}
function incDecLazy(T2) {
  return CF_LAZY && !T2.nested() && T2.rot === 0 && (!T2.known || T2.cfLazy);
}
function emitIncDec8(T2, e, i, next) {
  const b = T2.b, dec = e.op === 1;
  const lazy = incDecLazy(T2);
  if (!lazy) {
    T2.cond(2);
    b.set(T2.lcy);
  }
  T2.r8(e.b, e.bsh);
  b.op(Op.i64ExtendI32u).set(T2.ld);
  b.i64(1).set(T2.ls);
  b.get(T2.ld).i64(1).op(dec ? Op.i64Sub : Op.i64Add).i64(0xffn).op(Op.i64And).set(T2.lr);
  T2.set8(e.b, e.bsh, () => b.get(T2.lr).op(Op.i32WrapI64));
  T2.produced(dec ? L_DEC : L_INC, 1);
  T2.cfLazy = lazy;
}
function emitShiftImm(T2, e, i, next) {
  const b = T2.b;
  if (e.op === 0 || e.op === 1) {
    const r = e.b, n = e.imm, w = e.size === 8;
    if (flagsDead(T2.block, i)) {
      if (w) {
        T2.r64(r);
        b.i64(n).op(
          e.op === 0 ? 137 : 138
          /* i64.rotr */
        ).set(T2.v);
        T2.set64(r, T2.v);
      } else T2.set32(r, () => {
        T2.r32(r);
        b.i32(n).op(
          e.op === 0 ? 119 : 120
          /* i32.rotr */
        );
      });
      return;
    }
    if (ROT_LAZY && !T2.nested() && (T2.rot !== 0 || T2.canMaterialize())) {
      if (T2.cfLazy) T2.resolveCf();
      if (w) T2.setFrom(r, () => {
        T2.r64(r);
        b.i64(n).op(
          e.op === 0 ? 137 : 138
          /* i64.rotr */
        ).tee(T2.rv);
      });
      else T2.setFrom(r, () => {
        T2.r32(r);
        b.i32(n).op(
          e.op === 0 ? 119 : 120
          /* i32.rotr */
        ).op(Op.i64ExtendI32u).tee(T2.rv);
      });
      T2.rot = e.op === 0 ? 1 : 2;
      T2.rotSize = e.size;
      T2.fdirty = true;
      T2.slowFl = true;
      return;
    }
    T2.oldFlags();
    if (w) {
      T2.r64(r);
      b.i64(n).op(
        e.op === 0 ? 137 : 138
        /* i64.rotr */
      ).set(T2.v);
      if (e.op === 0) {
        b.get(T2.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T2.c32);
        b.get(T2.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).get(T2.c32).op(Op.i32Xor);
      } else {
        b.get(T2.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64);
        b.get(T2.v).i64(63).op(Op.i64ShrU).get(T2.v).i64(62).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And);
      }
    } else {
      T2.r32(r);
      b.i32(n).op(
        e.op === 0 ? 119 : 120
        /* i32.rotr */
      ).op(Op.i64ExtendI32u).set(T2.v);
      if (e.op === 0) {
        b.get(T2.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T2.c32);
        b.get(T2.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU).get(T2.c32).op(Op.i32Xor);
      } else {
        b.get(T2.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU);
        b.get(T2.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU).get(T2.v).op(Op.i32WrapI64).i32(30).op(Op.i32ShrU).op(Op.i32Xor).i32(1).op(Op.i32And);
      }
    }
    b.i32(11).op(Op.i32Shl).op(Op.i32Or).get(T2.fl).i32(~2049).op(Op.i32And).op(Op.i32Or).op(Op.i64ExtendI32u).set(T2.ld);
    if (w) T2.set64(r, T2.v);
    else T2.set32(r, () => b.get(T2.v).op(Op.i32WrapI64));
    T2.produced(EXPLICIT, e.size);
    return;
  }
  if (e.op < 4) {
    replay(T2, i);
    return;
  }
  T2.shiftBits(e.b, e.op, e.size, e.imm);
}
function emitShiftCl(T2, e, i, next) {
  if (e.op <= 1) {
    emitRotateCl(T2, e);
    return;
  }
  if (e.op < 4) {
    replay(T2, i);
    return;
  }
  T2.shiftByCl(e.b, e.size, () => T2.shiftBits(e.b, e.op, e.size, -1));
}
function emitRotateCl(T2, e) {
  const b = T2.b, r = e.b, w = e.size === 8, rol = e.op === 0;
  T2.oldFlags();
  T2.r32(1);
  b.i32(w ? 63 : 31).op(Op.i32And).op(Op.i64ExtendI32u).tee(T2.x1).op(Op.i64Eqz);
  b.open(Op.if);
  if (!w) T2.set32(r, () => T2.r32(r));
  b.get(T2.fl).op(Op.i64ExtendI32u).set(T2.ld);
  b.else();
  if (w) {
    T2.r64(r);
    b.get(T2.x1).op(
      rol ? 137 : 138
      /* i64.rotr */
    ).set(T2.v);
    if (rol) {
      b.get(T2.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T2.c32);
      b.get(T2.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64).get(T2.c32).op(Op.i32Xor);
    } else {
      b.get(T2.v).i64(63).op(Op.i64ShrU).op(Op.i32WrapI64);
      b.get(T2.v).i64(63).op(Op.i64ShrU).get(T2.v).i64(62).op(Op.i64ShrU).op(Op.i64Xor).op(Op.i32WrapI64).i32(1).op(Op.i32And);
    }
  } else {
    T2.r32(r);
    b.get(T2.x1).op(Op.i32WrapI64).op(
      rol ? 119 : 120
      /* i32.rotr */
    ).op(Op.i64ExtendI32u).set(T2.v);
    if (rol) {
      b.get(T2.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T2.c32);
      b.get(T2.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU).get(T2.c32).op(Op.i32Xor);
    } else {
      b.get(T2.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU);
      b.get(T2.v).op(Op.i32WrapI64).i32(31).op(Op.i32ShrU).get(T2.v).op(Op.i32WrapI64).i32(30).op(Op.i32ShrU).op(Op.i32Xor).i32(1).op(Op.i32And);
    }
  }
  b.i32(11).op(Op.i32Shl).op(Op.i32Or).get(T2.fl).i32(~2049).op(Op.i32And).op(Op.i32Or).op(Op.i64ExtendI32u).set(T2.ld);
  if (w) T2.set64(r, T2.v);
  else T2.set32(r, () => b.get(T2.v).op(Op.i32WrapI64));
  b.close();
  T2.produced(EXPLICIT, e.size);
}
function emitBtRI(T2, e, i, next) {
  const b = T2.b, f = e.form;
  const size = e.size, kind = e.op, toMem = f === 70 /* BtMI */ || f === 72 /* BtMR */;
  const mask = size * 8 - 1;
  if (toMem) {
    memOp(T2, e, next);
    if (f === 72 /* BtMR */) {
      b.get(T2.a);
      if (size === 8) {
        T2.r64(e.a);
        b.i64(6).op(Op.i64ShrS).i64(3).op(Op.i64Shl);
      } else {
        T2.r32(e.a);
        b.i32(5).op(Op.i32ShrS).op(Op.i64ExtendI32s).i64(2).op(Op.i64Shl);
      }
      b.op(Op.i64Add).set(T2.a);
    }
    T2.load(size);
  } else {
    T2.regVal(e.b, size);
    b.set(T2.v);
  }
  if (f === 69 /* BtRI */ || f === 70 /* BtMI */) b.i64(e.imm & mask);
  else {
    T2.r32(e.a);
    b.i32(mask).op(Op.i32And).op(Op.i64ExtendI32u);
  }
  b.set(T2.t);
  T2.oldFlags();
  b.get(T2.v).get(T2.t).op(Op.i64ShrU).op(Op.i32WrapI64).i32(1).op(Op.i32And).set(T2.c32);
  if (kind !== 0) {
    b.get(T2.v).i64(1).get(T2.t).op(Op.i64Shl);
    if (kind === 2) b.i64(-1).op(Op.i64Xor);
    b.op(kind === 1 ? Op.i64Or : kind === 2 ? Op.i64And : Op.i64Xor).set(T2.w);
    if (toMem) T2.store(size);
    else if (size === 8) T2.set64(e.b, T2.w);
    else T2.set32(e.b, () => b.get(T2.w).op(Op.i32WrapI64));
  }
  b.get(T2.fl).i32(~1).op(Op.i32And).get(T2.c32).op(Op.i32Or);
  T2.explicit(size);
}
function emitAlu16RR(T2, e, i, next) {
  const b = T2.b, f = e.form;
  const op = e.op, toMem = f === 78 /* Alu16MR */ || f === 79 /* Alu16MI */;
  const r16 = (r) => {
    T2.r32(r);
    b.i32(65535).op(Op.i32And).op(Op.i64ExtendI32u);
  };
  if (toMem) T2.commitFlags();
  if (toMem || f === 77 /* Alu16RM */) {
    memOp(T2, e, next);
    T2.load(2);
  }
  if (toMem) b.get(T2.v);
  else r16(e.b);
  b.set(T2.ld);
  if (f === 75 /* Alu16RR */ || f === 78 /* Alu16MR */) r16(e.a);
  else if (f === 77 /* Alu16RM */) b.get(T2.v);
  else b.i64(e.imm & 65535);
  b.set(T2.ls);
  T2.alu(op, 4);
  if (op < CMP) {
    if (toMem) {
      b.get(T2.lr).set(T2.w);
      T2.store(2);
    } else T2.setLow(e.b, 65535, () => b.get(T2.lr).op(Op.i32WrapI64).i32(65535).op(Op.i32And));
  }
  T2.produced(KIND[op], 2);
  T2.commitFlags();
  T2.known = false;
}
function emitMovStore16(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.r32(e.a);
  b.op(Op.i64ExtendI32u).set(T2.w);
  T2.store(2);
}
function emitMovImm16M(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  b.i64(e.imm & 65535).set(T2.w);
  T2.store(2);
}
function emitPopcnt(T2, e, i, next) {
  const b = T2.b, size = e.size;
  if (e.form === 123 /* PopcntM */) {
    memOp(T2, e, next);
    T2.load(size);
  } else {
    T2.regVal(e.a, size);
    b.set(T2.v);
  }
  b.get(T2.v).op(Op.i64Popcnt).set(T2.v);
  T2.set64(e.b, T2.v);
  b.get(T2.v).op(Op.i64Eqz).i32(6).op(Op.i32Shl);
  T2.explicit(size);
}
function emitMovLoad16(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.load(2);
  T2.setLow(e.a, 65535, () => b.get(T2.v).op(Op.i32WrapI64));
}
function emitCmpxchgM(T2, e, i, next) {
  const b = T2.b;
  const size = e.size;
  T2.commitFlags();
  memOp(T2, e, next);
  T2.load(size);
  T2.regVal(0, size);
  b.set(T2.ld);
  b.get(T2.v).set(T2.ls);
  T2.alu(SUB, size);
  T2.regVal(e.a, size);
  b.get(T2.v);
  b.get(T2.lr).op(Op.i64Eqz).op(Op.select).set(T2.w);
  T2.store(size);
  b.get(T2.lr).op(Op.i64Eqz).op(Op.i32Eqz).open(Op.if);
  if (size === 8) T2.set64(0, T2.v);
  else T2.set32(0, () => b.get(T2.v).op(Op.i32WrapI64));
  b.close();
  T2.produced(L_SUB, size);
}
function emitCmpxchg8M(T2, e, i, next) {
  const b = T2.b;
  T2.commitFlags();
  memOp(T2, e, next);
  T2.load(1);
  T2.r8(0, 0);
  b.op(Op.i64ExtendI32u).set(T2.ld);
  b.get(T2.v).set(T2.ls);
  T2.alu(SUB, 1);
  T2.r8(e.a, e.ash);
  b.op(Op.i64ExtendI32u);
  b.get(T2.v);
  b.get(T2.lr).op(Op.i64Eqz).op(Op.select).set(T2.w);
  T2.store(1);
  b.get(T2.lr).op(Op.i64Eqz).op(Op.i32Eqz).open(Op.if);
  T2.set8(0, 0, () => b.get(T2.v).op(Op.i32WrapI64));
  b.close();
  T2.produced(L_SUB, 1);
}
function emitRdtsc(T2, e, i, next) {
  const b = T2.b, f = e.form;
  if (f === 105 /* Rdtsc */) {
    b.get(T2.st).mem(Op.i32Load, 2, L3.S_TSD).get(T2.st).mem(Op.i32Load, 2, L3.S_CPL).i32(0).op(Op.i32Ne).op(Op.i32And).hint(false).open(Op.if);
    T2.flush();
    b.i32(2);
    T2.pos();
    b.call(F_SY).op(Op.drop);
    b.close();
    b.i32(SY_TSC);
    T2.pos();
    b.call(F_SY).set(T2.t32);
    T2.set32(0, () => b.get(T2.t32));
    T2.set32(2, () => b.get(T2.st).mem(Op.i32Load, 2, L3.S_HI));
    return;
  }
  T2.flush();
  b.i32(3);
  T2.pos();
  b.call(F_SY).op(Op.drop);
  T2.drop(0);
  T2.drop(2);
  T2.drop(1);
}
function emitSyscall(T2, e, i, next) {
  const b = T2.b, call = e.form === 116 /* Syscall */;
  T2.insReplayed = true;
  if (call && PRIV_CHAIN) T2.oldFlags();
  T2.flush();
  b.get(T2.st);
  T2.r0f(next);
  b.mem(Op.f64Store, 3, L3.S_RIP);
  const switchTo = (cpl) => {
    b.get(T2.st).i32(cpl).mem(Op.i32Store, 2, L3.S_CPL);
    b.get(T2.st).i32(cpl === 3 ? 1 : 0).mem(Op.i32Store, 2, L3.S_USER);
    b.get(T2.st).i32(0).mem(Op.i32Store, 2, L3.S_RASP);
    b.get(T2.st).i32(call ? 1 : 2).mem(Op.i32Store, 2, L3.S_SYS);
  };
  const setFlags = () => {
    b.get(T2.st).get(T2.c32).mem(Op.i32Store, 2, L3.S_EFL);
    b.get(T2.st).i32(EXPLICIT).mem(Op.i32Store, 2, L3.S_LOP);
    b.get(T2.st).get(T2.c32).i32(ARITH).op(Op.i32And).op(Op.i64ExtendI32u).mem(Op.i64Store, 3, L3.S_LD);
  };
  if (PRIV_CHAIN && call) {
    b.get(T2.st).mem(Op.i32Load, 2, L3.S_EFL).i32(~(ARITH | RF2)).op(Op.i32And).get(T2.fl).op(Op.i32Or).i32(2).op(Op.i32Or).set(T2.fl);
    b.get(T2.fl).get(T2.st).mem(Op.i32Load, 2, L3.S_SFMASK).i32(-1).op(Op.i32Xor).op(Op.i32And).i32(2).op(Op.i32Or);
    b.i32(FLAGS_IMPLEMENTED).op(Op.i32And).set(T2.c32);
    b.get(T2.st).mem(Op.i32Load, 2, L3.S_SCE).get(T2.c32).i32(IF2).op(Op.i32And).op(Op.i32Eqz).op(Op.i32And).hint(true).open(Op.if);
    b.get(T2.r0i).i64(next).op(Op.i64Add).set(T2.t64);
    T2.writeBack(1, T2.t64);
    b.get(T2.st).get(T2.fl).op(Op.i64ExtendI32u).mem(Op.i64Store, 3, L3.sGpr(11));
    setFlags();
    b.get(T2.st).get(T2.st).mem(Op.f64Load, 3, L3.S_LSTAR).mem(Op.f64Store, 3, L3.S_RIP);
    switchTo(0);
    b.else();
  } else if (PRIV_CHAIN) {
    T2.r64(1);
    b.set(T2.t64);
    T2.r32(11);
    b.i32(SYSRET_FLAGS & FLAGS_IMPLEMENTED).op(Op.i32And).i32(2).op(Op.i32Or).set(T2.c32);
    b.get(T2.st).mem(Op.i32Load, 2, L3.S_SCE);
    b.get(T2.st).mem(Op.i32Load, 2, L3.S_CPL).op(Op.i32Eqz).op(Op.i32And);
    b.get(T2.t64).i64(16).op(Op.i64Shl).i64(16).op(Op.i64ShrS).get(T2.t64).op(Op.i64Eq).op(Op.i32And);
    b.get(T2.c32).i32(9).op(Op.i32ShrU).get(T2.st).mem(Op.i32Load, 2, L3.S_PEND).op(Op.i32And).i32(1).op(Op.i32And).op(Op.i32Eqz).op(Op.i32And);
    b.hint(true).open(Op.if);
    setFlags();
    b.get(T2.st).get(T2.t64).op(Op.f64ConvertI64s).mem(Op.f64Store, 3, L3.S_RIP);
    switchTo(3);
    b.else();
  }
  b.i32(call ? SY_SYSCALL : SY_SYSRETQ);
  T2.pos();
  b.call(F_SY).op(Op.drop);
  if (PRIV_CHAIN) b.close();
  T2.forget();
  T2.known = false;
  T2.fdirty = false;
  T2.xk(X_HELPER);
  b.i32(i + 1).set(T2.xc).br(T2.out);
}
function emitSwapgs(T2, e, i, next) {
  const b = T2.b;
  T2.flush();
  const gs = L3.S_SEG + 8 * 5;
  b.get(T2.st).mem(Op.i32Load, 2, L3.S_CPL).op(Op.i32Eqz).hint(true).open(Op.if);
  b.get(T2.st).mem(Op.f64Load, 3, gs).set(T2.tf);
  b.get(T2.st).get(T2.st).mem(Op.f64Load, 3, L3.S_KGS).mem(Op.f64Store, 3, gs);
  b.get(T2.st).get(T2.tf).mem(Op.f64Store, 3, L3.S_KGS);
  b.else();
  b.i32(4);
  T2.pos();
  b.call(F_SY).op(Op.drop);
  b.close();
}
function emitCld(T2, e, i, next) {
  const b = T2.b, f = e.form;
  b.i32(f === 112 /* Cld */ ? 5 : 6);
  T2.pos();
  b.call(F_SY).op(Op.drop);
}
function emitMovSregR(T2, e, i, next) {
  const b = T2.b, f = e.form;
  const sel = () => {
    b.i32(8 + e.op);
    T2.pos();
    b.call(F_SY);
  };
  if (f === 109 /* MovSregM */) {
    memOp(T2, e, next);
    sel();
    b.op(Op.i64ExtendI32u).set(T2.w);
    T2.store(2);
  } else if (e.size === 2) T2.setLow(e.b, 65535, sel);
  else T2.set32(e.b, sel);
}
function emitCmpxchg16bM(T2, e, i, next) {
  const b = T2.b;
  T2.oldFlags();
  memOp(T2, e, next);
  T2.gpIf(() => {
    b.get(T2.a).op(Op.i32WrapI64).i32(15).op(Op.i32And);
  }, true);
  T2.load(8);
  b.get(T2.v).set(T2.x1);
  b.get(T2.a).i64(8).op(Op.i64Add).set(T2.a);
  T2.load(8);
  b.get(T2.v).set(T2.x2);
  b.get(T2.x1);
  T2.r64(0);
  b.op(Op.i64Eq);
  b.get(T2.x2);
  T2.r64(2);
  b.op(Op.i64Eq);
  b.op(Op.i32And).set(T2.c32);
  b.get(T2.a).i64(8).op(Op.i64Sub).set(T2.a);
  T2.r64(3);
  b.get(T2.x1).get(T2.c32).op(Op.select).set(T2.w);
  T2.store(8);
  b.get(T2.a).i64(8).op(Op.i64Add).set(T2.a);
  T2.r64(1);
  b.get(T2.x2).get(T2.c32).op(Op.select).set(T2.w);
  T2.store(8);
  b.get(T2.c32).op(Op.i32Eqz).open(Op.if);
  T2.set64(0, T2.x1);
  T2.set64(2, T2.x2);
  b.close();
  b.get(T2.fl).i32(~64).op(Op.i32And).get(T2.c32).i32(6).op(Op.i32Shl).op(Op.i32Or);
  T2.explicit(8);
}
function emitShift8Imm(T2, e, i, next) {
  const b = T2.b;
  if (e.op < 4) {
    replay(T2, i);
    return;
  }
  T2.r8(e.b, e.bsh);
  T2.narrowShiftImm(e.op, e.imm, 8);
  T2.explicit(1);
  T2.set8(e.b, e.bsh, () => b.get(T2.v).op(Op.i32WrapI64));
}
function emitShift16Imm(T2, e, i, next) {
  const b = T2.b;
  const n = e.imm;
  if (e.op < 2) {
    T2.oldFlags();
    T2.r32(e.b);
    b.i32(65535).op(Op.i32And).set(T2.c32);
    b.get(T2.c32).i32(e.op === 0 ? n : 16 - n).op(Op.i32Shl).get(T2.c32).i32(e.op === 0 ? 16 - n : n).op(Op.i32ShrU).op(Op.i32Or);
    b.i32(65535).op(Op.i32And).op(Op.i64ExtendI32u).set(T2.v);
    if (e.op === 0) {
      b.get(T2.v).op(Op.i32WrapI64).i32(1).op(Op.i32And).tee(T2.c32);
      b.get(T2.v).op(Op.i32WrapI64).i32(15).op(Op.i32ShrU).get(T2.c32).op(Op.i32Xor);
    } else {
      b.get(T2.v).op(Op.i32WrapI64).i32(15).op(Op.i32ShrU);
      b.get(T2.v).op(Op.i32WrapI64).i32(15).op(Op.i32ShrU).get(T2.v).op(Op.i32WrapI64).i32(14).op(Op.i32ShrU).op(Op.i32Xor).i32(1).op(Op.i32And);
    }
    b.i32(11).op(Op.i32Shl).op(Op.i32Or).get(T2.fl).i32(~2049).op(Op.i32And).op(Op.i32Or);
    T2.explicit(2);
    T2.setLow(e.b, 65535, () => b.get(T2.v).op(Op.i32WrapI64));
    return;
  }
  T2.r32(e.b);
  b.i32(65535).op(Op.i32And);
  T2.narrowShiftImm(e.op, n, 16);
  T2.explicit(2);
  T2.setLow(e.b, 65535, () => b.get(T2.v).op(Op.i32WrapI64));
}
function emitShift16M(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.load(2);
  b.get(T2.v).op(Op.i32WrapI64);
  T2.narrowShiftImm(e.op, e.imm, 16);
  const fl = b.local(I32);
  b.set(fl);
  b.get(T2.v).set(T2.w);
  T2.store(2);
  b.get(fl);
  T2.explicit(2);
}
function emitShiftMCl(T2, e, i, next) {
  const b = T2.b, size = e.size;
  memOp(T2, e, next);
  T2.load(size);
  T2.commitFlags();
  T2.shiftByCl(-1, size, () => {
    const fl = b.local(I32);
    T2.shiftBits(-1, e.op, size, -1, -1, fl);
    b.get(T2.v).set(T2.w);
    T2.store(size);
    b.get(fl);
    T2.explicit(size);
  });
}
function emitShiftDoubleCl(T2, e, i, next) {
  T2.shiftByCl(e.b, e.size, () => T2.shiftBits(e.b, e.op === 0 ? 4 : 5, e.size, -1, e.a));
}
function emitXchgRR(T2, e, i, next) {
  const b = T2.b;
  const size = e.size;
  T2.regVal(e.a, size);
  b.set(T2.x1);
  T2.regVal(e.b, size);
  b.set(T2.x2);
  T2.set64(e.a, T2.x2);
  T2.set64(e.b, T2.x1);
}
function emitXchgM(T2, e, i, next) {
  const b = T2.b;
  const size = e.size;
  memOp(T2, e, next);
  T2.load(size);
  T2.regVal(e.a, size);
  b.set(T2.w);
  T2.store(size);
  T2.set64(e.a, T2.v);
}
function emitXaddM(T2, e, i, next) {
  const b = T2.b;
  const size = e.size;
  T2.commitFlags();
  memOp(T2, e, next);
  T2.load(size);
  b.get(T2.v).set(T2.ld);
  T2.regVal(e.a, size);
  b.set(T2.ls);
  T2.alu(ADD, size);
  b.get(T2.lr).set(T2.w);
  T2.store(size);
  if (size === 8) T2.set64(e.a, T2.v);
  else T2.set32(e.a, () => b.get(T2.v).op(Op.i32WrapI64));
  T2.produced(L_ADD, size);
}
function emitShiftDoubleRI(T2, e, i, next) {
  T2.shiftBits(e.b, e.op === 0 ? 4 : 5, e.size, e.imm, e.a);
}
function emitCdq(T2, e, i, next) {
  const b = T2.b;
  if (e.op === 0) {
    if (e.size === 8) {
      T2.r32(0);
      b.op(Op.i64ExtendI32s).set(T2.x2);
      T2.set64(0, T2.x2);
    } else T2.set32(0, () => {
      T2.r32(0);
      b.op(Op.i32Extend16s);
    });
  } else if (e.size === 8) {
    T2.r64(0);
    b.i64(63).op(Op.i64ShrS).set(T2.x2);
    T2.set64(2, T2.x2);
  } else T2.set32(2, () => {
    T2.r32(0);
    b.i32(31).op(Op.i32ShrS);
  });
}
function emitBswap(T2, e, i, next) {
  const b = T2.b;
  const r = e.b;
  const bs = () => {
    b.tee(T2.c32).i32(16711935).op(Op.i32And).i32(24).op(119).get(T2.c32).i32(4278255360 | 0).op(Op.i32And).i32(8).op(119).op(Op.i32Or);
  };
  if (e.size === 8) {
    T2.r64(r);
    b.set(T2.x2);
    b.get(T2.x2).op(Op.i32WrapI64);
    bs();
    b.op(Op.i64ExtendI32u).i64(32).op(Op.i64Shl);
    b.get(T2.x2).i64(32).op(Op.i64ShrU).op(Op.i32WrapI64);
    bs();
    b.op(Op.i64ExtendI32u).op(Op.i64Or).set(T2.x2);
    T2.set64(r, T2.x2);
  } else T2.set32(r, () => {
    T2.r32(r);
    bs();
  });
}
function emitPushf(T2, e, i, next) {
  const b = T2.b;
  T2.insMem = true;
  T2.oldFlags();
  b.get(T2.st).mem(Op.i32Load, 2, L3.S_EFL).i32(~(ARITH | RF2 | VM2)).op(Op.i32And).get(T2.fl).op(Op.i32Or).i32(2).op(Op.i32Or);
  b.op(Op.i64ExtendI32u).set(T2.w);
  T2.pushStore();
}
function emitCli(T2, e, i, next) {
  const b = T2.b, f = e.form;
  T2.flush();
  b.get(T2.st).mem(Op.i32Load, 2, L3.S_CPL);
  if (f === 84 /* Sti */) b.get(T2.st).mem(Op.i32Load, 2, L3.S_PEND).op(Op.i32Or);
  b.op(Op.i32Eqz).open(Op.if);
  b.get(T2.st).get(T2.st).mem(Op.i32Load, 2, L3.S_EFL);
  if (f === 83 /* Cli */) b.i32(~(1 << 9)).op(Op.i32And);
  else b.i32(1 << 9).op(Op.i32Or);
  b.mem(Op.i32Store, 2, L3.S_EFL);
  b.get(T2.st).i32(1).mem(Op.i32Store, 2, L3.S_IFW);
  b.else();
  b.i32(f === 83 /* Cli */ ? 0 : 1);
  T2.pos();
  b.call(F_SY);
  if (f === 83 /* Cli */) b.op(Op.drop);
  else {
    b.open(Op.if);
    T2.exitConst(i + 1, next, X_HELPER);
    b.close();
  }
  b.close();
}
function emitPushImm(T2, e, i, next) {
  const b = T2.b;
  T2.insMem = true;
  b.i64(imm64(e.imm, e.immHi)).set(T2.w);
  T2.pushStore();
}
function emitSetccM(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.cond(e.op);
  b.op(Op.i64ExtendI32u).set(T2.w);
  T2.store(1);
}
function emitLeave(T2, e, i, next) {
  const b = T2.b;
  T2.insMem = true;
  T2.r64(5);
  b.set(T2.a);
  T2.load(8);
  b.get(T2.a).i64(8).op(Op.i64Add).set(T2.t);
  T2.set64(4, T2.t);
  T2.set64(5, T2.v);
}
function emitPush(T2, e, i, next) {
  const b = T2.b, f = e.form;
  let check;
  if (f === 20 /* Call */) {
    const ripOff = next + e.disp;
    if (FOLD_CHECKS && T2.targetOff(ripOff) && T2.foldWorth()) {
      if (T2.accessInline()) check = { hit: (slow) => {
        T2.targetFar(ripOff);
        b.hint(false).brIf(slow);
      }, slow: () => T2.gpIf(() => T2.targetFar(ripOff), false) };
      else {
        T2.flush();
        T2.checkTarget(ripOff);
      }
    } else T2.checkTarget(ripOff);
    b.get(T2.r0i).i64(next).op(Op.i64Add).set(T2.w);
  } else {
    T2.r64(e.a);
    b.set(T2.w);
  }
  T2.insMem = true;
  T2.pushStore(check);
  if (f === 20 /* Call */) {
    T2.rasPush(next, T2.w);
    T2.callNest(i + 1, next + e.disp, next);
    T2.exitStatic(i + 1, next + e.disp);
  }
}
function emitPop(T2, e, i, next) {
  const b = T2.b, f = e.form;
  T2.insMem = true;
  const run = RUN_RSP && T2.runCur >= 0 && e.a !== 4;
  const addr = () => T2.r64(4);
  const rsp8 = () => T2.setFrom(4, () => {
    if (run) T2.r64(4);
    else b.get(T2.a);
    b.i64(8).op(Op.i64Add);
  });
  if (!run) {
    addr();
    b.set(T2.a);
  }
  const at = run ? addr : void 0;
  if (f === 21 /* Ret */ && FOLD_CHECKS && T2.accessInline() && T2.foldWorth()) {
    T2.load(8, { hit: (slow) => {
      T2.nonCanonical(T2.v);
      b.hint(false).brIf(slow);
    }, slow: () => T2.gpIf(() => T2.nonCanonical(T2.v), false) }, T2.v, at);
  } else if (f === 23 /* Pop */ && e.a !== 4) {
    T2.loadReg(e.a, 8, false, at);
    rsp8();
    return;
  } else {
    T2.load(8, void 0, T2.v, at);
    if (f === 21 /* Ret */) T2.checkCanonicalI64(T2.v);
  }
  rsp8();
  if (f === 21 /* Ret */) {
    b.get(T2.st).get(T2.v).op(Op.f64ConvertI64s).mem(Op.f64Store, 3, L3.S_RIP);
    const tail = T2.retTails();
    if (tail) T2.flush();
    T2.rasPop(tail ? i + 1 : -1);
    T2.predictExit(i + 1, X_RET);
    T2.xk(X_RET);
    b.i32(i + 1).set(T2.xc);
    T2.leave();
  } else T2.set64(e.a, T2.v);
}
function emitMovzxReg8(T2, e, i, next) {
  T2.set32(e.a, () => T2.r8(e.b, e.imm));
}
function emitMovzxReg16(T2, e, i, next) {
  const b = T2.b;
  T2.set32(e.a, () => {
    T2.r32(e.b);
    b.i32(65535).op(Op.i32And);
  });
}
function emitMovzxMem(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.loadReg(e.a, e.size, true);
}
function emitMovsxdReg(T2, e, i, next) {
  const b = T2.b;
  T2.r32(e.b);
  b.op(Op.i64ExtendI32s).set(T2.t);
  T2.set64(e.a, T2.t);
}
function emitMovsxdMem(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.load(4);
  b.get(T2.v).op(Op.i32WrapI64).op(Op.i64ExtendI32s).set(T2.t);
  T2.set64(e.a, T2.t);
}
function emitAlu8RR(T2, e, i, next) {
  const b = T2.b, f = e.form;
  const op = e.op;
  if (f === 30 /* Alu8RM */) {
    memOp(T2, e, next);
    T2.load(1);
    b.get(T2.v).set(T2.ls);
  } else if (f === 29 /* Alu8RR */) {
    T2.r8(e.a, e.ash);
    b.op(Op.i64ExtendI32u).set(T2.ls);
  } else b.i64(e.imm & 255).set(T2.ls);
  T2.r8(e.b, e.bsh);
  b.op(Op.i64ExtendI32u).set(T2.ld);
  T2.alu(op, 1);
  if (op < CMP) T2.set8(e.b, e.bsh, () => b.get(T2.lr).op(Op.i32WrapI64));
  T2.produced(KIND[op], 1);
}
function emitAlu8MR(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.load(1);
  aluMem(T2, e.op, 1, () => {
    if (e.form === 31 /* Alu8MR */) {
      T2.r8(e.a, e.ash);
      b.op(Op.i64ExtendI32u);
    } else b.i64(e.imm & 255);
  });
}
function emitMov8RR(T2, e, i, next) {
  T2.set8(e.b, e.bsh, () => T2.r8(e.a, e.ash));
}
function emitMov8RI(T2, e, i, next) {
  const b = T2.b;
  T2.set8(e.b, e.bsh, () => b.i32(e.imm));
}
function emitMov8RM(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.load(1);
  T2.set8(e.b, e.bsh, () => b.get(T2.v).op(Op.i32WrapI64));
}
function emitMov8MR(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  T2.r8(e.a, e.ash);
  b.op(Op.i64ExtendI32u).set(T2.w);
  T2.store(1);
}
function emitMov8MI(T2, e, i, next) {
  const b = T2.b;
  memOp(T2, e, next);
  b.i64(e.imm & 255).set(T2.w);
  T2.store(1);
}
function emitCmovRR(T2, e, i, next) {
  const b = T2.b, f = e.form;
  const size = e.size;
  if (f === 40 /* CmovRM */) {
    memOp(T2, e, next);
    T2.load(size);
  } else {
    T2.regVal(e.a, size);
    b.set(T2.v);
  }
  T2.cond(e.op);
  if (size === 8) {
    b.open(Op.if);
    T2.set64(e.b, T2.v);
    b.close();
  } else {
    b.set(T2.c32);
    T2.set32(e.b, () => {
      b.get(T2.v).op(Op.i32WrapI64);
      T2.r32(e.b);
      b.get(T2.c32).op(Op.select);
    });
  }
}
function emitSetcc(T2, e, i, next) {
  const b = T2.b;
  T2.cond(e.op);
  b.set(T2.c32);
  T2.set8(e.b, e.bsh, () => b.get(T2.c32));
}
function emitNop(T2, e, i, next) {
}
function emitAdcRR(T2, e, i, next) {
  const b = T2.b, f = e.form;
  const sbb = e.op === 3, size = e.size, toMem = f === 54 /* AdcMR */ || f === 55 /* AdcMI */;
  if (f !== 51 /* AdcRR */ && f !== 53 /* AdcRI */) T2.commitFlags();
  T2.cond(2);
  b.set(T2.lcy);
  if (toMem) {
    memOp(T2, e, next);
    T2.load(size);
    b.get(T2.v).set(T2.ld);
  } else {
    T2.regVal(e.b, size);
    b.set(T2.ld);
  }
  if (f === 52 /* AdcRM */) {
    memOp(T2, e, next);
    T2.load(size);
    b.get(T2.v);
  } else if (f === 51 /* AdcRR */ || f === 54 /* AdcMR */) T2.regVal(e.a, size);
  else b.i64(size === 8 ? imm64(e.imm, e.immHi) : e.imm >>> 0);
  b.set(T2.ls);
  const op = sbb ? Op.i64Sub : Op.i64Add;
  b.get(T2.ld).get(T2.ls).op(op).get(T2.lcy).op(Op.i64ExtendI32u).op(op);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  b.set(T2.lr);
  if (toMem) {
    b.get(T2.lr).set(T2.w);
    T2.store(size);
  } else T2.writeLr(e.b, size);
  T2.produced(sbb ? L_SBB : L_ADC, size);
}
function emitIncDecM(T2, e, i, next) {
  const b = T2.b;
  const dec = e.op === 1, size = e.size;
  T2.commitFlags();
  const lazy = incDecLazy(T2);
  if (!lazy) {
    T2.cond(2);
    b.set(T2.lcy);
  }
  memOp(T2, e, next);
  T2.load(size);
  b.get(T2.v).set(T2.ld).i64(1).set(T2.ls);
  b.get(T2.v).i64(1).op(dec ? Op.i64Sub : Op.i64Add);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  else if (size === 1) b.i64(0xffn).op(Op.i64And);
  b.tee(T2.lr).set(T2.w);
  T2.store(size);
  T2.produced(dec ? L_DEC : L_INC, size);
  T2.cfLazy = lazy;
}
function emitImulRR(T2, e, i, next) {
  const b = T2.b, f = e.form;
  const size = e.size, w = size === 8;
  const sx = () => {
    if (!w) b.op(Op.i32WrapI64).op(Op.i64ExtendI32s);
  };
  const reg = (r) => {
    if (w) T2.r64(r);
    else {
      T2.r32(r);
      b.op(Op.i64ExtendI32s);
    }
  };
  if (f === 48 /* ImulRM */ || f === 50 /* ImulRMI */) {
    memOp(T2, e, next);
    T2.load(size);
  }
  T2.oldFlags();
  if (f === 47 /* ImulRR */) {
    reg(e.b);
    b.set(T2.ld);
    reg(e.a);
    b.set(T2.ls);
  } else if (f === 48 /* ImulRM */) {
    reg(e.b);
    b.set(T2.ld);
    b.get(T2.v);
    sx();
    b.set(T2.ls);
  } else if (f === 49 /* ImulRRI */) {
    reg(e.a);
    b.set(T2.ld);
    b.i64(imm64(e.imm, e.immHi)).set(T2.ls);
  } else {
    b.get(T2.v);
    sx();
    b.set(T2.ld);
    b.i64(imm64(e.imm, e.immHi)).set(T2.ls);
  }
  b.get(T2.ld).get(T2.ls).op(
    126
    /* i64.mul */
  ).set(T2.lr);
  if (!w) {
    b.get(T2.lr).get(T2.lr).op(Op.i32WrapI64).op(Op.i64ExtendI32s).op(Op.i64Ne).set(T2.c32);
  } else {
    b.i32(0).set(T2.c32);
    b.get(T2.ld).op(Op.i64Eqz).op(Op.i32Eqz).open(Op.if);
    b.get(T2.ld).i64(-1).op(Op.i64Eq).open(Op.if);
    b.get(T2.ls).i64(I64_MIN).op(Op.i64Eq).set(T2.c32);
    b.else();
    b.get(T2.lr).get(T2.ld).op(
      127
      /* i64.div_s */
    ).get(T2.ls).op(Op.i64Ne).set(T2.c32);
    b.close();
    b.close();
  }
  if (w) T2.set64(e.b, T2.lr);
  else T2.set32(e.b, () => b.get(T2.lr).op(Op.i32WrapI64));
  b.get(T2.fl).i32(~2049).op(Op.i32And).get(T2.c32).i32(2049).op(
    108
    /* i32.mul */
  ).op(Op.i32Or);
  T2.explicit(size);
}
function emitMulDivR(T2, e, i, next) {
  const b = T2.b, f = e.form;
  const size = e.size, w = size === 8, op = e.op, M = 0xffffffffn;
  const signed = op === 5 || op === 7;
  if (f === 46 /* MulDivM */) {
    memOp(T2, e, next);
    T2.load(size);
  } else {
    T2.regVal(e.b, size);
    b.set(T2.v);
  }
  T2.oldFlags();
  if (op >= 6) T2.commitFlags();
  if (w) {
    T2.r64(0);
    b.set(T2.ld);
    b.get(T2.v).set(T2.ls);
  } else {
    T2.r32(0);
    b.op(signed ? Op.i64ExtendI32s : Op.i64ExtendI32u).set(T2.ld);
    b.get(T2.v).op(Op.i32WrapI64).op(signed ? Op.i64ExtendI32s : Op.i64ExtendI32u).set(T2.ls);
  }
  const wr = (r, l) => {
    if (w) T2.set64(r, l);
    else T2.set32(r, () => b.get(l).op(Op.i32WrapI64));
  };
  if (op === 4 || op === 5) {
    b.get(T2.ld).get(T2.ls).op(
      126
      /* i64.mul */
    ).set(T2.lr);
    if (!w) {
      b.get(T2.lr).i64(32).op(Op.i64ShrU).set(T2.t);
      if (signed) b.get(T2.lr).get(T2.lr).op(Op.i32WrapI64).op(Op.i64ExtendI32s).op(Op.i64Ne);
      else b.get(T2.t).op(Op.i64Eqz).op(Op.i32Eqz);
    } else {
      const lo32 = (l) => {
        b.get(l).i64(M).op(Op.i64And);
      };
      const hi32 = (l) => {
        b.get(l).i64(32).op(Op.i64ShrU);
      };
      lo32(T2.ld);
      hi32(T2.ls);
      b.op(126).set(T2.x1);
      hi32(T2.ld);
      lo32(T2.ls);
      b.op(126).set(T2.x2);
      lo32(T2.ld);
      lo32(T2.ls);
      b.op(126).i64(32).op(Op.i64ShrU);
      b.get(T2.x1).i64(M).op(Op.i64And).op(Op.i64Add).get(T2.x2).i64(M).op(Op.i64And).op(Op.i64Add).set(T2.w);
      hi32(T2.ld);
      hi32(T2.ls);
      b.op(126);
      b.get(T2.x1).i64(32).op(Op.i64ShrU).op(Op.i64Add).get(T2.x2).i64(32).op(Op.i64ShrU).op(Op.i64Add);
      b.get(T2.w).i64(32).op(Op.i64ShrU).op(Op.i64Add);
      if (signed) {
        b.get(T2.ls).i64(0).get(T2.ld).i64(0).op(Op.i64LtS).op(Op.select).op(Op.i64Sub);
        b.get(T2.ld).i64(0).get(T2.ls).i64(0).op(Op.i64LtS).op(Op.select).op(Op.i64Sub);
      }
      b.set(T2.t);
      if (signed) b.get(T2.t).get(T2.lr).i64(63).op(Op.i64ShrS).op(Op.i64Ne);
      else b.get(T2.t).op(Op.i64Eqz).op(Op.i32Eqz);
    }
    b.set(T2.c32);
    wr(0, T2.lr);
    wr(2, T2.t);
    b.get(T2.fl).i32(~2049).op(Op.i32And).get(T2.c32).i32(2049).op(
      108
      /* i32.mul */
    ).op(Op.i32Or);
    T2.explicit(size);
    return;
  }
  const done = b.open(Op.block), hard = b.open(Op.block);
  b.get(T2.ls).op(Op.i64Eqz).hint(false).brIf(hard);
  if (w) {
    T2.r64(2);
    b.set(T2.x1);
    if (signed) b.get(T2.x1).get(T2.ld).i64(63).op(Op.i64ShrS).op(Op.i64Ne).brIf(hard);
    else b.get(T2.x1).op(Op.i64Eqz).op(Op.i32Eqz).brIf(hard);
    b.get(T2.ld).set(T2.t);
  } else {
    T2.regVal(2, 4);
    b.i64(32).op(Op.i64Shl);
    T2.regVal(0, 4);
    b.op(Op.i64Or).set(T2.t);
    if (!signed) b.get(T2.t).i64(32).op(Op.i64ShrU).get(T2.ls).op(Op.i64GeU).brIf(hard);
  }
  if (signed) {
    b.get(T2.t).i64(I64_MIN).op(Op.i64Eq).get(T2.ls).i64(-1).op(Op.i64Eq).op(Op.i32And).brIf(hard);
  }
  b.get(T2.t).get(T2.ls).op(
    signed ? 127 : 128
    /* i64.div_u */
  ).set(T2.lr);
  b.get(T2.t).get(T2.ls).op(
    signed ? 129 : 130
    /* i64.rem_u */
  ).set(T2.x2);
  if (!w && signed) b.get(T2.lr).get(T2.lr).op(Op.i32WrapI64).op(Op.i64ExtendI32s).op(Op.i64Ne).brIf(hard);
  wr(0, T2.lr);
  wr(2, T2.x2);
  b.get(T2.fl).i32(~212).op(Op.i32And).i32(16).op(Op.i32Or);
  T2.explicit(size);
  b.br(done);
  b.close();
  T2.flush();
  T2.pos();
  b.call(F_RP2);
  b.open(Op.if);
  T2.xk(X_HELPER);
  b.i32(i + 1).set(T2.xc).br(T2.out);
  b.close();
  b.close();
  T2.known = false;
  T2.fdirty = false;
  T2.drop(0);
  T2.drop(2);
}
function emitPushM(T2, e, i, next) {
  const b = T2.b;
  const run = T2.runCur;
  T2.runCur = -1;
  memOp(T2, e, next);
  T2.load(8);
  T2.runCur = run;
  b.get(T2.v).set(T2.w);
  T2.pushStore();
}
function emitMovsxR8(T2, e, i, next) {
  const b = T2.b, f = e.form;
  if (f === 59 /* MovsxM */) {
    memOp(T2, e, next);
    T2.load(e.size);
    b.get(T2.v).op(Op.i32WrapI64);
  } else {
    T2.r32(e.b);
    if (f === 57 /* MovsxR8 */ && e.imm) b.i32(e.imm).op(Op.i32ShrU);
  }
  b.op(f === 58 /* MovsxR16 */ || f === 59 /* MovsxM */ && e.size === 2 ? Op.i32Extend16s : Op.i32Extend8s).set(T2.c32);
  if (e.op === 8) {
    b.get(T2.c32).op(Op.i64ExtendI32s).set(T2.t);
    T2.set64(e.a, T2.t);
  } else T2.set32(e.a, () => b.get(T2.c32));
}
function emitNotNegR(T2, e, i, next) {
  const b = T2.b;
  const r = e.b, size = e.size;
  if (e.op === 0) {
    T2.regVal(r, size);
    b.i64(-1).op(Op.i64Xor);
    if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
    b.set(T2.w);
    if (size === 8) T2.set64(r, T2.w);
    else T2.set32(r, () => b.get(T2.w).op(Op.i32WrapI64));
    return;
  }
  T2.regVal(r, size);
  b.set(T2.ls);
  b.i64(0).get(T2.ls).op(Op.i64Sub);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  b.set(T2.lr);
  T2.writeLr(r, size);
  b.i64(0).set(T2.ld);
  T2.produced(L_SUB, size);
}
function emitNotNegM(T2, e, i, next) {
  const b = T2.b;
  const size = e.size;
  memOp(T2, e, next);
  T2.load(size);
  if (e.op === 0) b.get(T2.v).i64(-1).op(Op.i64Xor);
  else b.i64(0).get(T2.v).op(Op.i64Sub);
  if (size === 4) b.i64(0xffffffffn).op(Op.i64And);
  b.set(T2.w);
  T2.store(size);
  if (e.op === 1) {
    b.i64(0).set(T2.ld);
    b.get(T2.v).set(T2.ls);
    b.get(T2.w).set(T2.lr);
    T2.produced(L_SUB, size);
  }
}
function emitCallInd(T2, e, i, next) {
  const b = T2.b, f = e.form;
  if (e.base === -3) {
    T2.r64(e.b);
    b.set(T2.v);
  } else {
    memOp(T2, e, next);
    T2.load(8);
  }
  T2.checkCanonicalI64(T2.v);
  if (f === 62 /* CallInd */) {
    T2.insMem = true;
    b.get(T2.r0i).i64(next).op(Op.i64Add).set(T2.w);
    T2.r64(4);
    b.i64(8).op(Op.i64Sub).set(T2.a);
    T2.store(8);
    T2.set64(4, T2.a);
    T2.rasPush(next, T2.w);
  }
  b.get(T2.st).get(T2.v).op(Op.f64ConvertI64s).mem(Op.f64Store, 3, L3.S_RIP);
  T2.predictExit(i + 1, X_IND);
  T2.xk(X_IND);
  b.i32(i + 1).set(T2.xc);
  T2.leave();
}
function emitJcc(T2, e, i, next) {
  const b = T2.b, f = e.form, N = T2.block.entries.length;
  const target = next + e.disp;
  if (f === 18 /* Jcc */ && i === N - 1 && !T2.selfLoop && JCC_FLUSH) {
    T2.wbCtx = T2.regionTarget(target) !== void 0 || T2.regionTarget(next) !== void 0 ? 3 : 9;
    T2.flush(!(T2.edgeDead(target) && T2.edgeDead(next)), (T2.keepFor(target) | T2.deadFor(target)) & (T2.keepFor(next) | T2.deadFor(next)));
    T2.wbCtx = 1;
  }
  if (f === 18 /* Jcc */ && i < N - 1) T2.hoistFlush(i);
  if (f === 18 /* Jcc */) {
    T2.cond(e.a);
    b.open(Op.if);
  }
  T2.checkTarget(target);
  if (T2.selfLoop && i === N - 1) {
    b.get(T2.n).i32(N).op(Op.i32Add).tee(T2.n).i32(N).op(Op.i32Add).tee(T2.c32).get(T2.left).op(Op.i32LeS);
    b.get(T2.c32).i32(LOOP_LIMIT).op(Op.i32LeS).op(Op.i32And);
    T2.backEdge();
    b.brIf(T2.top);
    T2.exitConst(0, 0, X_LOOP);
  } else T2.exitStatic(i + 1, target);
  if (f === 18 /* Jcc */) {
    b.close();
    if (i === N - 1) T2.exitStatic(i + 1, next);
  }
}
function emitOther(T2, e, i, next) {
  T2.flush();
  T2.noCache = true;
  const k = emitSse(T2, e, i, next);
  T2.noCache = false;
  T2.forget();
  if (k === 0) {
    if (T2.stringOp(e, i)) {
      T2.insMem = true;
      T2.insReplayed = true;
    } else replay(T2, i);
  } else if (k === 2) T2.insMem = true;
}
var memFns;
var UNUSED = new Body(0);
UNUSED.op(Op.unreachable);
function memUsedOf(b) {
  return b instanceof TBody ? b.memUsed : 255;
}
function buildModule(bodies, local = LOCAL_MEM, used = -1, tails = 0, names) {
  const m = new ModuleBuilder();
  const t = m.type([I32, F64, I32, I32, I32], [I32]);
  m.importMemory("e", "m");
  if (RET_TAIL && !local) m.importTable("e", "t");
  m.importFunc("e", "rd", m.type([F64, I32, I32], [I32]));
  m.importFunc("e", "wr", m.type([F64, I32, I32, I32, I32], []));
  m.importFunc("e", "rp", m.type([I32], [I32]));
  m.importFunc("e", "cc", m.type([I32], [I32]));
  m.importFunc("e", "gp", m.type([I32], []));
  m.importFunc("e", "fl", m.type([I32], [I32]));
  m.importFunc("e", "sy", m.type([I32, I32], [I32]));
  const ldT = m.type(LD_PARAMS, [I64]);
  const stT = m.type(ST_PARAMS, []);
  m.importFunc("e", "fa", m.type([I32], [I32]));
  if (local) {
    if (used < 0) {
      used = 0;
      for (const b of bodies) used |= memUsedOf(b);
    }
    const fns = memFns ??= Array.from({ length: 8 }, (_, i) => memFnBody(1 << (i & 3), i >= 4, F_RD, F_WR));
    const unusedT = m.type([], []);
    for (let i = 0; i < 8; i++) {
      if (used & 1 << i) m.func(i < 4 ? ldT : stT, fns[i], void 0, "rz.mem." + (i < 4 ? "ld" : "st") + (1 << (i & 3)));
      else m.func(unusedT, UNUSED);
    }
  } else {
    for (const n of [1, 2, 4, 8]) m.importFunc("e", "ld" + n, ldT);
    for (const n of [1, 2, 4, 8]) m.importFunc("e", "st" + n, stT);
  }
  if (tails > 0 && local) throw new Error("tail calls need the imported memory library");
  for (let i = 0; i < tails; i++) m.importFunc("t", "f" + i, t);
  bodies.forEach((b, i) => m.func(t, b, "f" + i, names?.[i]));
  return m.encode();
}

// bench/wasm-build.ts
var file = process.argv[2];
if (!file) throw new Error("usage: bench/wasm-build.ts CAPTURE.jsonl [rounds]");
var rounds = Number(process.argv[3] ?? process.env.REPS ?? 5);
var byId = [];
var batches = [];
var noHandler = () => {
  throw new Error("not replayed here");
};
for (const line of readFileSync2(file, "utf8").split("\n")) {
  if (line === "") continue;
  const recs = JSON.parse(line);
  const blocks = [], lins = /* @__PURE__ */ new Map();
  for (const r of recs) {
    let b = byId[r.id];
    if (b === void 0) {
      const es = r.es.map((f) => {
        const e = new BlockEntry(noHandler);
        const w = e;
        [w.pk, w.dec1, w.dec2, e.a, e.b, e.imm, e.immHi, e.op, e.base, e.index, e.disp] = f;
        return e;
      });
      b = byId[r.id] = new Block(r.pa, r.mode, r.gen, es);
      b.pfn2 = r.pfn2;
      b.gen2 = r.gen2;
    }
    blocks.push(b);
    if (r.l !== void 0 && r.l !== null) lins.set(b, r.l);
  }
  batches.push({ blocks, lins });
}
var nBlocks = batches.reduce((s, b) => s + b.blocks.length, 0);
console.log(`${batches.length} batches, ${nBlocks} blocks (${byId.length} distinct)`);
function build(blocks, lins) {
  return withScratch(() => {
    const bodies = [];
    for (const group of groupRegions(blocks, lins)) {
      if (group.length > 1) {
        const t = translateRegion(group, lins, { slot: -1, inline: process.env.INLINE === "1" });
        if (t !== null) {
          bodies.push(t.body);
          continue;
        }
      }
      for (const block of group) {
        const t = translateBody(block, lins.get(block), { slot: -1, inline: process.env.INLINE === "1" });
        if (t !== null) bodies.push(t.body);
      }
    }
    return bodies.length === 0 ? null : buildModule(bodies);
  });
}
var cpu = () => statCpuSeconds(readProcStat(`/proc/self/task/${process.pid}/stat`)) * 1e3;
var perBlock = [];
var hash = "";
for (let r = 0; r < rounds; r++) {
  const h = createHash("sha256");
  let bytes = 0;
  const t0 = cpu();
  for (const { blocks, lins } of batches) {
    const m = build(blocks, lins);
    if (m !== null) {
      h.update(m);
      bytes += m.length;
    }
  }
  const ms = cpu() - t0;
  hash = h.digest("hex").slice(0, 16);
  perBlock.push(ms * 1e3 / nBlocks);
  console.log(`round ${r}: ${ms.toFixed(0)} ms, ${(ms * 1e3 / nBlocks).toFixed(2)} us/block, ${(bytes / 1048576).toFixed(2)} MiB, hash ${hash}`);
}
var warm = perBlock.slice(1).sort((a, b) => a - b);
console.log(JSON.stringify({
  bench: "wasm-build",
  blocks: nBlocks,
  batches: batches.length,
  firstUsPerBlock: +perBlock[0].toFixed(2),
  medianUsPerBlock: warm.length > 0 ? +warm[warm.length >> 1].toFixed(2) : null,
  moduleHash: hash
}));
