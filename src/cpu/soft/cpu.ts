// The software x86-64 CPU: architectural state, instruction fetch and prefix/ModRM decoding, the memory
// path (segmentation, paging with a software TLB, RAM/MMIO), lazy arithmetic flags and the execution loop.
// Instruction families live in ./ops/*.ts and register themselves in the opcode tables (./tables.ts);
// exception and interrupt delivery, far transfers and the other system instructions live in ./system/*.ts.
//
// Value conventions (hot paths, so no BigInt):
// - A 64-bit general register is two int32 halves: gpr[2 * i] (low), gpr[2 * i + 1] (high); register i is one 8-byte
//   little-endian slot at byte 8 * i, so translated code (./wasm) loads and stores it with one i64 access.
// - Operand values of size 1 and 2 are non-negative numbers; size 4 values are int32 (use `>>> 0` for unsigned);
//   size 8 values are returned as the low int32 with the high int32 left in `this.hi`.
// - Linear addresses in 64-bit mode are signed numbers (canonical addresses are exact doubles); in legacy modes they
//   are unsigned 32-bit numbers. Physical addresses are non-negative numbers.
// - A guest exception is raised with `this.fault(vector, errorCode)`, which throws the shared CPU_FAULT sentinel;
//   handlers must do every access that can fault before they change architectural state.

import type { GuestMemory } from '../../memory/guest-memory.ts';
import type { PortBus, MmioBus, AccessSize, MmioDevice } from '../../devices/bus.ts';
import type { VmClock } from '../../vmm/clock.ts';
import * as C from './constants.ts';
import { Lazy } from './lazy.ts';
import { CPU_FAULT } from './fault.ts';
export { Lazy, CPU_FAULT };
import { ops1, ops0f } from './tables.ts';
import { FpuState } from './ops/fpu-state.ts';
import { CodeCache, codeCacheFor, Block, BlockEntry, type FastHandler, replayHandler, TERMINATOR, MAX_BLOCK, HOT_THRESHOLD, WASM_HOT_THRESHOLD, tableSlot, JIT_THRESHOLD, CHAIN_LIMIT } from './code-cache.ts';
import { compileFast } from './fast-forms.ts';
import { translateBlock } from './jit/translate.ts';
import { wasmStateFor, type WasmEngine } from './wasm/runtime.ts';
import { clearRas, dispatchEntry, sseViews, S_PEND, tlbSlot } from './wasm/layout.ts';
export { tlbSlot };

export interface CpuEnvironment {
  mem: GuestMemory;
  ports: PortBus;
  mmio: MmioBus;
  clock: VmClock;
  /** This vCPU's local APIC (xAPIC MMIO page and interrupt source), if the machine has one. */
  lapic?: LocalApic;
  /** APIC ID / vCPU index. */
  cpuIndex?: number;
  cpuCount?: number;
  /**
   * Use the decoded-block cache (./code-cache.ts). Default: on, unless RINGZERO_TRANSLATE=0 in the environment
   * (`ringzero run --no-translate` sets this to false).
   */
  blockCache?: boolean;
  /** Use the WebAssembly translator (needs a wasm-backed GuestMemory). Default: RINGZERO_JIT=wasm. */
  wasm?: boolean;
}

/** What the CPU needs from its local APIC (src/devices/irq/lapic.ts implements it). */
export interface LocalApic extends MmioDevice {
  hasInterrupt(): boolean;
  acknowledge(): number;
  readApicBaseMsr(): bigint;
  writeApicBaseMsr(value: bigint): void;
  hasNmi?(): boolean;
  takeNmi?(): void;
  /** IA32_TSC_DEADLINE (TSC-deadline timer mode): offered in CPUID only by a LAPIC that has it. */
  readTscDeadline?(): bigint;
  writeTscDeadline?(tsc: bigint, deadlineNs: number): void;
}

/**
 * SoftCpu.msrs: a Map that counts its changes (`ver`), so a decoded copy of some MSRs (./system/fastcall.ts's
 * SYSCALL MSRs, read twice per system call) is checked with one compare instead of a lookup per MSR.
 */
export class MsrMap extends Map<number, bigint> {
  ver = 0;
  /** A decoded copy of some of its MSRs (./system/fastcall.ts), valid while it holds this map's `ver`. */
  decoded: object | null = null;
  override set(k: number, v: bigint): this { this.ver++; return super.set(k, v); }
  override delete(k: number): boolean { this.ver++; return super.delete(k); }
  override clear(): void { this.ver++; super.clear(); }
}

/** Why `run` returned. */
export const enum RunExit {
  Budget = 0,
  Halted = 1,
  Stopped = 2,
  Shutdown = 3,
}

const TLB_BITS = 12;
const TLB_SIZE = 1 << TLB_BITS;

/**
 * Linear pages that never get an entry in translated code's view of the TLB (SoftCpu.wtlb), `slot` being the page's
 * (tlbSlot). That view's probe takes the slot of an access's first byte and compares the entry's tag with the page
 * of its last byte (./wasm/tlb-probe.ts emitTlbKey), so an access crossing into page P + 1 must not find P + 1 in P's
 * slot: a page sharing its predecessor's slot (at one window end in 2048, see tlbSlot) gets no entry. Nor do page 0
 * and the first page of the canonical upper half (-2^47), where an access's last byte can be mapped while its first
 * is not: one that starts in the last bytes of the address space wraps to page 0, one that starts in the last
 * non-canonical page (#GP) ends in the first canonical one. Accesses to them miss and take the slow path.
 */
function tlbEdge(vpn: number, slot: number): boolean {
  return vpn === 0 || vpn === -34359738368 || ((vpn & 0xfff) === 0 && tlbSlot(vpn - 1) === slot);
}

/**
 * Second-level TLB (JavaScript only: translated code probes the first level): 16384 entries indexed by a hash of the
 * page number, refilling the first level without a page walk. The first level is direct-mapped on the low 12 bits
 * of the page number, so pages 16 MiB apart evict each other: the kernel's text and its rodata/data and modules did,
 * which made ~90% of the Linux boot's 440k page walks.
 */
const L2_BITS = 14;
const L2_MASK = (1 << L2_BITS) - 1;
function l2Index(vpn: number): number {
  const x = vpn | 0; // (ToInt32 of an exact integer: its low 32 bits)
  return (x ^ (x >>> L2_BITS) ^ (x >>> (2 * L2_BITS))) & L2_MASK;
}
/** TLB banks: (access << 1 | user) selects one of six banks of TLB_SIZE entries. */
const TLB_READ = 0 << 1, TLB_WRITE = 1 << 1, TLB_FETCH = 2 << 1;
/**
 * An entry is two f64 of `SoftCpu.tlb`, (tag, physical page): entry e = bank << TLB_BITS | slot is at index e << 1.
 * ENTRY_SHIFT turns (bank, slot) into that index; BANK_* are the indexes of the supervisor and user read/write banks.
 */
const ENTRY_SHIFT = 1;
const BANK_SHIFT = TLB_BITS + ENTRY_SHIFT;
const BANK_READ = TLB_READ << BANK_SHIFT, BANK_READ_USER = (TLB_READ | 1) << BANK_SHIFT;
const BANK_WRITE = TLB_WRITE << BANK_SHIFT, BANK_WRITE_USER = (TLB_WRITE | 1) << BANK_SHIFT;
/**
 * The first-level banks a miss of (access, user) fills, as a mask of bits (access << 1 | user), to AND with the
 * banks the walk allowed: a read or a write fills this privilege's read and write banks (data pages are read and
 * written together), a fetch only its fetch bank. Filling the other privilege's banks, or the fetch bank on a read
 * (and the read bank on a fetch), evicted entries that were in use: the kernel's code pages and the data it reads
 * sat on the same slots (pages 16 MiB apart in its image) and displaced each other on every switch, ~230k of the
 * ~470k second-level refills of a boot and a 16 MiB dd.
 */
function fillMask(access: number, user: boolean): number {
  return (access === 2 ? 1 << TLB_FETCH : (1 << TLB_READ) | (1 << TLB_WRITE)) << (user ? 1 : 0);
}

export type OpHandler = (cpu: SoftCpu) => void;

const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let b = i, p = 1;
  while (b) { p ^= b & 1; b >>= 1; }
  PARITY[i] = p ? C.PF : 0;
}

/** PREFIX_KIND[b]: 0 not a prefix, 1 legacy prefix (66 67 26 2E 36 3E 64 65 F0 F2 F3), 2 REX (40-4F, 64-bit mode only). */
const PREFIX_LEGACY = 1, PREFIX_REX = 2;
const PREFIX_KIND = new Uint8Array(256);
for (const p of [0x66, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0xf0, 0xf2, 0xf3]) PREFIX_KIND[p] = PREFIX_LEGACY;
for (let p = 0x40; p <= 0x4f; p++) PREFIX_KIND[p] = PREFIX_REX;

/** Blocks go on past a conditional jump that fell through when they are recorded (SoftCpu.fellThrough). */
const SIDE_EXITS = process.env.RINGZERO_WASM_SIDE_EXITS !== '0';
/**
 * SLICE_END (RINGZERO_WASM_SLICE_END, on unless =0): a run slice (run(budget)) ends before a translated block that
 * no longer fits its budget, instead of running that block's first instructions in JavaScript. Why (issue 5, session
 * 31): the machine runs the guest in slices of 20000 instructions (vmm/machine.ts SLICE), and each slice's end fell
 * inside a translated block (the dispatcher enters a block only whole): the block's first `left` instructions were
 * replayed in JavaScript (WasmEngine.exec's `b.n > room`), and the next slice began mid-block, where no translated
 * block starts, so the JavaScript tier ran on to the next block start (interpretRun, or blocks recorded at those odd
 * addresses, which stay "warming"). On bench/io's warm O_DIRECT read (bench/io-passes, 128 MiB passes,
 * RINGZERO_TIER_STATS with EXIT_STATS's per-RIP counts) that was most of the ~300 guest instructions per MiB run
 * outside wasm (tooLong at internal_get_user_pages_fast, try_grab_folio, __blk_rq_map_sg, ...; warming at offsets
 * inside them). Ending the slice early (by less than one block) leaves c.instructions exact (it counts what ran); only
 * the slice's budget, which paces the run loop, is cut short. Not at a slice's first block (progress), nor for
 * callers of execBlock outside run() (testing/diff.ts).
 * On by default (=0: off). bench/engines --paired, the same build with it off (A) and on (B), 2 runs at host load
 * 26-45: md5 0.78x/0.78x wall (guest thread 0.80x/0.77x), ash 0.68x/0.76x, syscalls 0.80x/0.91x (tight loops' long
 * blocks, presumably: the longer the block, the more of it each slice's end replayed); bench/io-passes read passes
 * 3-8 1.76 -> 1.60 ms per MiB (median).
 */
let SLICE_END = process.env.RINGZERO_WASM_SLICE_END !== '0';
/** Switch SLICE_END (tests); returns the old setting. */
export function setSliceEnd(on: boolean): boolean { const old = SLICE_END; SLICE_END = on; return old; }

const SIGN_BIT = [0, 0x80, 0x8000, 0, 0x80000000, 0, 0, 0, 0x80000000];
const SIZE_MASK = [0, 0xff, 0xffff, 0, 0xffffffff];

/**
 * Number fields of SoftCpu that come to hold 64-bit addresses or unsigned 32-bit values. V8 stores a number field as
 * a small integer (int32) until a value outside that range (or a double computed by unoptimized code) is stored in
 * it, and then turns the field into a double: that replaces the map of every SoftCpu and deoptimizes each optimized
 * function that checked it, ~80 of them at once. Linux writes several of these (CR2, CR3, TR, KERNEL_GS_BASE) after
 * the hot code is optimized, so the constructor makes them doubles from the start (their values unchanged).
 */
const DOUBLE_FIELDS = ['cr2', 'cr3', 'tscOffset', 'gdtrBase', 'idtrBase', 'ldtrBase', 'trBase', 'ldtrLimit', 'trLimit'] as const;

/** A copy of a straddling instruction's bytes (two physical pages) for compileFast (SoftCpu.recordBlock). */
const STRADDLE_BYTES = new Uint8Array(32);

/** Undo recordBlock's early code mark of page `p` when no block came to depend on it (and nothing wrote it since). */
function unmark(cache: CodeCache, p: number, prev: number, gen: number): void {
  if (cache.codePages[p] === 1 && cache.pageGen[p] === gen) cache.codePages[p] = prev;
}

/**
 * The `fast` of a block's last instruction when it straddles its page's end into physical page `pfn2` (Block.pfn2):
 * when the next linear page is still `pfn2` in this privilege's fetch TLB and `pfn2` has generation `gen2`, it runs
 * as recorded (`real`, its fast form, else its handler with the decoder state of the entry); otherwise it is
 * interpreted (step(): its live bytes, and a fetch fault on the next page is raised as the interpreter raises it),
 * and a stale `pfn2` invalidates the block's own page (`page`) so that the block is recorded again. Only these
 * entries carry the check: the other blocks' instructions pay nothing for it. RIP: as SoftCpu.runBlock leaves it
 * before a fast form (after the instruction); `ripStart` is the instruction's start.
 */
function straddleGuard(real: FastHandler | null, pfn2: number, gen2: number, page: number): FastHandler {
  return (c, e) => {
    const r = c.ripStart;
    const gen = c.codeCache.pageGen;
    if (gen[pfn2] === gen2 && c.fetchPfn(Math.floor(r / 4096) + 1) === pfn2) {
      if (real !== null) real(c, e);
      else replayHandler(c, e, r);
      return;
    }
    c.straddleMisses++;
    if (gen[pfn2] !== gen2) c.codeCache.invalidatePage(page);
    // (the caller counted the instruction; step() counts it again)
    c.instructions--;
    c.rip = r;
    c.step();
  };
}

export class SoftCpu {
  readonly env: CpuEnvironment;
  readonly mem: GuestMemory;
  readonly ram: Uint8Array;
  readonly ramView: DataView;
  readonly ramSize: number;

  // ---- general registers and instruction pointer
  /** Register i's low half at [2 * i], its high half at [2 * i + 1] (the state area's layout: ./wasm/layout.ts S_GPR). */
  readonly gpr = new Int32Array(32);
  rip = 0;
  /** Address of the first byte (prefixes included) of the instruction being executed. */
  ripStart = 0;

  // ---- flags: `flags` holds every EFLAGS bit; its arithmetic bits are stale while `lazyOp` != None
  flags = C.FLAGS_FIXED;
  lazyOp: Lazy = Lazy.None;
  lazySize = 4;
  lazyRes = 0;
  lazyResHi = 0;
  lazyDst = 0;
  lazyDstHi = 0;
  lazySrc = 0;
  lazySrcHi = 0;
  /** CF before an INC/DEC (they preserve it), or the carry-in of ADC/SBB. */
  lazyCarry = 0;

  // ---- segments (index ES..GS), plus LDTR and TR
  readonly segSel = new Int32Array(6);
  readonly segBase = new Float64Array(6);
  readonly segLimit = new Float64Array(6);
  readonly segAttr = new Int32Array(6);
  ldtrSel = 0; ldtrBase = 0; ldtrLimit = 0xffff; ldtrAttr = 0x82;
  trSel = 0; trBase = 0; trLimit = 0xffff; trAttr = 0x8b;
  gdtrBase = 0; gdtrLimit = 0xffff;
  idtrBase = 0; idtrLimit = 0xffff;
  cpl = 0;

  // ---- control, debug and model-specific state
  cr0 = C.CR0_ET | C.CR0_CD | C.CR0_NW;
  cr2 = 0;
  cr3 = 0;
  cr4 = 0;
  efer = 0;
  readonly dr = new Float64Array(8);
  /** MSRs without dedicated fields, by number (values as bigint: they are rarely accessed). */
  readonly msrs = new MsrMap();
  /**
   * IA32_KERNEL_GS_BASE: with the wasm translator, a view of the state area's S_KGS (./wasm/layout.ts), which
   * translated SWAPGS swaps with the GS base inline; else an array of its own.
   */
  private readonly kgs: Float64Array<ArrayBuffer> = new Float64Array(1);
  get kernelGsBase(): number { return this.kgs[0]; }
  set kernelGsBase(v: number) { this.kgs[0] = v; }
  /** TSC = tscOffset + guest clock ns * tscPerNs */
  tscOffset = 0;

  // ---- SSE / x87 state (the families in ops/sse.ts and ops/x87.ts own the details)
  readonly xmm = new Uint8Array(256);
  readonly xmmView = new DataView(this.xmm.buffer);
  mxcsr = 0x1f80;
  readonly fpuState: Record<string, unknown> = {};
  /** x87/MMX registers and typed views of `xmm` (ops/fpu-state.ts). */
  readonly fpu = new FpuState(this.xmm);

  // ---- mode, derived from CR0/EFER/CS and recomputed by `updateMode`
  /** 64-bit mode (EFER.LMA and CS.L). */
  mode64 = false;
  /** Protected mode (CR0.PE) and not virtual-8086. */
  protectedMode = false;
  /** Default operand size from CS: 2 or 4 (64-bit mode: 4). */
  defOpsize = 2;
  /** Default address size: 2, 4 or 8. */
  defAdsize = 2;
  /** Paging active, and which form: 0 none, 2 two-level, 3 PAE, 4 four-level. */
  pagingLevels = 0;

  // ---- decoder state for the current instruction
  opsize = 4;
  adsize = 8;
  segOverride = -1;
  /** 0, 0xF2 (REPNE) or 0xF3 (REP/REPE). */
  rep = 0;
  lock = false;
  /** Whether a 0x66 prefix was present (SSE mandatory prefix). */
  p66 = false;
  rex = 0;
  rexW = false;
  /** REX.R, REX.X, REX.B as 0 or 8 for adding to register numbers. */
  rexR = 0;
  rexX = 0;
  rexB = 0;
  opcode = 0;
  modrm = 0;
  mod = 0;
  /** ModRM.reg with REX.R applied. */
  reg = 0;
  /** ModRM.rm with REX.B applied (a register number when mod == 3). */
  rm = 0;
  /** Effective address offset (before the segment base) of the memory operand. */
  eaOff = 0;
  /** Segment of the memory operand, after overrides and the BP/SP-means-SS rule. */
  eaSeg = C.DS;
  /** True when the ModRM operand is RIP-relative: its displacement is relative to the *next* instruction. */
  ripRel = false;
  /** The high int32 of the last 64-bit value read or computed. */
  hi = 0;

  // ---- interrupt/exception state
  /** Set by interrupt sources; checked at instruction boundaries. */
  eventPending = false;
  /** STI / MOV SS / POP SS block interrupts for one instruction (SDM vol. 3A §6.8.3). */
  interruptShadow = false;
  halted = false;
  /** A stop was requested (pause, shutdown): run() returns at the next boundary. */
  stopRequested = false;
  faultVector = -1;
  faultError = -1;
  /** Vector of the last exception raised (for tests and diagnostics), -1 if none. */
  lastException = -1;
  /** Number of exceptions currently being delivered (for #DF and triple fault). */
  deliveryDepth = 0;
  shutdown = false;
  onTripleFault: (() => void) | undefined;

  // ---- statistics
  instructions = 0;
  readonly unimplementedLogged = new Set<string>();

  // ---- TLB, first level: six banks of TLB_SIZE direct-mapped entries, bank = access * 2 + user (access 0 read,
  // 1 write, 2 fetch; user 0 supervisor, 1 user), each entry 16 bytes: its tag, the linear page number (f64, NaN
  // when empty), then its physical page number (u32: physical addresses have MAXPHYADDR = 40 bits, so page numbers
  // 28; translated code loads it with one i64.load32_u, where the physical address as an f64 took a saturating
  // conversion) and 4 unused bytes. Every bank keeps its own physical page, so a kernel page and a user
  // page (or a code page and a data page) on the same slot no longer evict each other (they did while the banks of a
  // slot shared one physical page), and a probe reads the tag and the page from the same cache line.
  // (JavaScript's view. Translated code probes its own view of the same entries in the wasm memory, wtlb.)
  readonly tlb = new Float64Array((6 * TLB_SIZE) << ENTRY_SHIFT).fill(NaN);
  /** `tlb` as u32 words: the physical page number of the entry whose tag is tlb[t] is tlbPfn[2 * t + 2]. */
  readonly tlbPfn = new Uint32Array(this.tlb.buffer);
  /**
   * Translated code's view of the first level (./wasm/layout.ts S_TLB, in the state area; null without the wasm
   * translator): per entry (bank << TLB_BITS | slot) four i32 words, the tag (the page's linear address as an i64:
   * low, high word; -1 empty), the addend (the page's RAM offset less its linear address, mod 2^32) and the
   * physical page number (./wasm/tlb-probe.ts reads them). Entry e holds the same page as `tlb`'s entry e or is
   * empty: it is written and cleared with it (fillTlb, flushTlb, invalidatePage), and filled only for a page of low
   * RAM that lies entirely inside it (not an edge page, tlbEdge), so a hit there needs no RAM-size check. MMIO and
   * high RAM pages stay in `tlb` (the interpreter's accesses check the RAM size) and miss here.
   */
  readonly wtlb: Int32Array<ArrayBuffer> | null = null;
  /** Per entry (bank << TLB_BITS | slot): the page is global (survives a CR3 load). */
  private readonly tlbGlobal = new Uint8Array(6 * TLB_SIZE);
  /**
   * The first-level entries filled as non-global since the last flush, each listed once (tlbListed), so that a flush
   * of the non-global entries (every CR3 load) visits those rather than all 6 * TLB_SIZE entries: that loop was ~2%
   * of the Linux boot's main thread. Global entries are not listed (only a full flush, which clears everything,
   * drops them): when they were kept in the list, each of the boot's ~18k CR3 loads walked the ~5k global kernel
   * entries again (97M visits a boot). An entry holds a NaN tag unless it is global or listed.
   */
  private readonly tlbList = new Int32Array(6 * TLB_SIZE);
  private readonly tlbListed = new Uint8Array(6 * TLB_SIZE);
  private tlbListN = 0;
  // The second level: page number (NaN: empty), physical page, the banks (bit (access << 1 | user)) the walk allowed,
  // whether the page is global, and the flush generation it was filled in (tlbGenAll for global pages, else tlbGen):
  // a flush bumps the generations instead of clearing the arrays.
  private readonly l2Tag = new Float64Array(1 << L2_BITS).fill(NaN);
  private readonly l2Phys = new Float64Array(1 << L2_BITS);
  private readonly l2Banks = new Uint8Array(1 << L2_BITS);
  private readonly l2Global = new Uint8Array(1 << L2_BITS);
  private readonly l2Gen = new Int32Array(1 << L2_BITS);
  private tlbGen = 1;
  private tlbGenAll = 1;
  /** Page walks and second-level refills so far (statistics). */
  tlbWalks = 0;
  tlbL2Hits = 0;

  // ---- decoded-block cache (./code-cache.ts), shared by the vCPUs of one GuestMemory
  readonly codeCache: CodeCache;
  /** The cache's per-page "holds decoded code" bytes, checked by every store into low RAM. */
  readonly codePages: Uint8Array;
  /** Whether run() executes through the block cache. */
  blockCacheEnabled: boolean;
  /**
   * Whether hot cached blocks are translated to JavaScript (./jit/translate.ts) rather than replayed through
   * closures. Default: on, unless RINGZERO_JIT=0 (closure replay only, to compare).
   */
  jitEnabled: boolean;
  /**
   * The WebAssembly translator (./wasm/translate.ts) when RINGZERO_JIT=wasm and the memory is wasm-backed: it then
   * replaces the JavaScript translator, and gpr, the TLB and segBase are views into its memory.
   */
  readonly wasm: WasmEngine | null = null;
  /** Byte offset of this vCPU's state area in the wasm memory (./wasm/layout.ts). */
  readonly wasmState: number = 0;

  constructor(env: CpuEnvironment) {
    this.env = env;
    this.mem = env.mem;
    this.codeCache = codeCacheFor(env.mem);
    this.codeCache.cpus.push(this);
    this.codePages = this.codeCache.codePages;
    this.blockCacheEnabled = env.blockCache ?? process.env.RINGZERO_TRANSLATE !== '0';
    this.jitEnabled = process.env.RINGZERO_JIT !== '0';
    const w = (env.wasm ?? process.env.RINGZERO_JIT === 'wasm') ? wasmStateFor(env.mem) : null;
    if (w !== null) {
      this.wasm = w.engine; this.wasmState = w.st;
      this.gpr = w.gpr; this.wtlb = w.tlb; this.segBase = w.segBase; this.kgs = w.kgs;
      // (the XMM file and the SSE-usable word live in the state area too, for ./wasm/sse.ts)
      const v = sseViews(env.mem.wasmMemory!.buffer as ArrayBuffer, w.st);
      this.xmm = v.xmm; this.xmmView = new DataView(v.xmm.buffer, v.xmm.byteOffset, 256); this.fpu = new FpuState(v.xmm, v.sseOk);
    }
    this.ram = env.mem.low;
    this.fetchBuf = this.ram;
    this.ramView = env.mem.lowView;
    this.fetchView = this.ramView;
    this.ramSize = env.mem.lowSize;
    for (const f of DOUBLE_FIELDS) { const v = this[f]; this[f] = 0.5; this[f] = v; }
    this.reset();
  }

  /**
   * Power-on / INIT state (SDM vol. 3A §9.1.1 table 9-1). `keepCode`: the decoded and translated blocks stay (a
   * migration's destination, whose blocks were built from the memory the restored state goes with: ../hot-list.ts).
   */
  reset(keepCode = false): void {
    this.gpr.fill(0);
    this.gpr[4] = 0x600; // EDX: family/model/stepping
    this.flags = C.FLAGS_FIXED;
    this.lazyOp = Lazy.None;
    for (let s = 0; s < 6; s++) this.loadSegmentRaw(s, 0, 0, 0xffff, C.SEG_P | C.SEG_S | 3);
    this.loadSegmentRaw(C.CS, 0xf000, 0xffff0000, 0xffff, C.SEG_P | C.SEG_S | C.SEG_TYPE_CODE | 3);
    this.rip = 0xfff0;
    this.gdtrBase = 0; this.gdtrLimit = 0xffff;
    this.idtrBase = 0; this.idtrLimit = 0xffff;
    this.ldtrSel = 0; this.ldtrBase = 0; this.ldtrLimit = 0xffff; this.ldtrAttr = 0x82;
    this.trSel = 0; this.trBase = 0; this.trLimit = 0xffff; this.trAttr = 0x8b;
    this.cr0 = C.CR0_ET | C.CR0_CD | C.CR0_NW;
    this.cr2 = this.cr3 = this.cr4 = 0;
    this.efer = 0;
    this.dr.fill(0);
    this.dr[6] = 0xffff0ff0;
    this.dr[7] = 0x400;
    this.xmm.fill(0);
    this.mxcsr = 0x1f80;
    this.fpu.reset();
    this.cpl = 0;
    this.halted = false;
    this.interruptShadow = false;
    this.shutdown = false;
    this.deliveryDepth = 0;
    this.updateMode();
    this.flushTlb(true);
    // Memory may have been rewritten behind the CPU (a new image loaded before a reset): forget decoded blocks.
    if (!keepCode) this.codeCache?.invalidateAll();
  }

  // =====================================================================================================
  // Modes and segments

  /** Recompute the derived mode fields after a change of CR0, CR4, EFER, EFLAGS.VM or CS. */
  updateMode(): void {
    const lma = (this.efer & C.EFER_LMA) !== 0;
    this.protectedMode = (this.cr0 & C.CR0_PE) !== 0 && (this.flags & C.VM) === 0;
    const csAttr = this.segAttr[C.CS];
    this.mode64 = lma && (csAttr & C.SEG_L) !== 0;
    if (this.mode64) {
      this.defOpsize = 4;
      this.defAdsize = 8;
    } else if (this.protectedMode && (csAttr & C.SEG_DB) !== 0) {
      this.defOpsize = 4;
      this.defAdsize = 4;
    } else {
      this.defOpsize = 2;
      this.defAdsize = 2;
    }
    this.fpu.setSseUsable(this.cr0, this.cr4);
    this.invalidateFetch();
    this.blockModeKey = this.blockMode();
    let levels = 0;
    if (this.cr0 & C.CR0_PG) levels = lma ? 4 : this.cr4 & C.CR4_PAE ? 3 : 2;
    if (levels !== this.pagingLevels) {
      this.pagingLevels = levels;
      this.flushTlb(true);
    }
  }

  /** Load a segment register's hidden part directly (no checks): used by mode setup and by ./system. */
  loadSegmentRaw(seg: number, selector: number, base: number, limit: number, attr: number): void {
    this.segSel[seg] = selector & 0xffff;
    this.segBase[seg] = base;
    this.segLimit[seg] = limit;
    this.segAttr[seg] = attr;
    if (seg === C.CS) {
      // CPL is CS.RPL in protected mode (SDM vol. 3A §5.5), 3 in virtual-8086 mode and 0 in real mode.
      this.cpl = !(this.cr0 & C.CR0_PE) ? 0 : this.flags & C.VM ? 3 : selector & 3;
      this.updateMode();
      this.invalidateFetch();
    }
  }

  /**
   * Load CS with a flat 64-bit code segment while already in 64-bit mode (SYSCALL, SYSRET to 64-bit code: CS.L set
   * before and after, CR0/CR4/EFER and RFLAGS.VM unchanged): what updateMode derives stays the same, only CPL
   * (CS.RPL: protected mode, SDM vol. 3A §5.5) and the fetch window change. Skipping updateMode saved ~1.8% of the
   * VMM's main thread on a loop of one-byte reads and writes (two such loads per system call).
   */
  loadCs64(selector: number, attr: number): void {
    this.segSel[C.CS] = selector & 0xffff;
    this.segBase[C.CS] = 0;
    this.segLimit[C.CS] = 0xffffffff;
    this.segAttr[C.CS] = attr;
    this.cpl = selector & 3;
    this.invalidateFetch();
  }

  /** Real-mode / virtual-8086 segment load: base = selector * 16. */
  loadSegmentReal(seg: number, selector: number): void {
    selector &= 0xffff;
    this.segSel[seg] = selector;
    this.segBase[seg] = selector * 16;
    if (this.flags & C.VM) {
      this.segLimit[seg] = 0xffff;
      this.segAttr[seg] = C.SEG_P | C.SEG_S | 3 | (3 << C.SEG_DPL_SHIFT) | (seg === C.CS ? C.SEG_TYPE_CODE : 0);
    }
    if (seg === C.CS) this.invalidateFetch();
  }

  // =====================================================================================================
  // Exceptions

  /** Raise a guest exception: record it and unwind the current instruction. */
  fault(vector: number, errorCode = -1): never {
    this.faultVector = vector;
    this.faultError = errorCode;
    this.lastException = vector;
    throw CPU_FAULT;
  }

  ud(): never {
    return this.fault(C.EXC_UD);
  }

  gp(code = 0): never {
    return this.fault(C.EXC_GP, code);
  }

  /** Log an opcode the CPU does not implement (once per opcode), then raise #UD as a real CPU would. */
  unimplemented(what: string): never {
    if (!this.unimplementedLogged.has(what)) {
      this.unimplementedLogged.add(what);
      const bytes = this.peekBytes(this.ripStart, 16);
      process.stderr.write(`ringzero: vCPU ${this.env.cpuIndex ?? 0}: unimplemented ${what} at ${hex(this.ripStart)} [${bytes}]: #UD\n`);
    }
    return this.ud();
  }

  peekBytes(lin: number, n: number): string {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      try {
        const phys = this.translate(this.linear(C.CS, lin + i), 0, false);
        out.push(phys < this.ramSize ? this.ram[phys].toString(16).padStart(2, '0') : '??');
      } catch {
        out.push('--');
      }
    }
    return out.join(' ');
  }

  // =====================================================================================================
  // Execution

  /**
   * Execute up to `budget` instructions. Returns why it stopped. Interrupts are taken at instruction
   * boundaries; HLT returns `Halted` so the run loop can sleep until the next event.
   */
  run(budget: number): RunExit {
    let left = budget;
    try {
      while (left > 0) {
        try {
          while (left > 0) {
            if (this.eventPending || this.halted || this.stopRequested) {
              if (this.eventPending) {
                this.checkEvents();
                if (this.shutdown) return RunExit.Shutdown;
              }
              if (this.halted) return RunExit.Halted;
              if (this.stopRequested) { this.stopRequested = false; return RunExit.Stopped; }
            }
            if (this.blockCacheEnabled) {
              left -= this.execBlock(left);
              // (SLICE_END: from the second block of the slice on, a translated block that does not fit ends it)
              this.sliceEnd = SLICE_END;
            } else {
              left--;
              this.step();
            }
          }
        } catch (e) {
          if (e !== CPU_FAULT) throw e;
          left--;
          this.rip = this.ripStart;
          this.deliverFault();
          if (this.shutdown) return RunExit.Shutdown;
        }
      }
    } finally {
      this.sliceEnd = false;
    }
    return RunExit.Budget;
  }

  /**
   * SLICE_END: run() is past its slice's first block, so execBlock (and WasmEngine.exec) may end the slice before a
   * translated block longer than what is left of the budget; they then return what was left, which ends run's loop.
   */
  sliceEnd = false;

  /** Stack-operation size in 64-bit mode defaults to 8 (PUSH, POP, CALL, RET, ...; SDM vol. 1 §3.6.1). */
  stackOpsize(): number {
    if (this.mode64) return this.opsize === 2 ? 2 : 8;
    return this.opsize;
  }

  /** Execute one instruction. Guest exceptions propagate as CPU_FAULT (run() delivers them). */
  step(): void {
    let b = this.beginInstruction();
    this.opcode = b;
    if (b === 0x0f) {
      b = this.fetch8();
      this.opcode = 0x100 | b;
      this.ops0f[b](this);
    } else {
      this.ops1[b](this);
    }
  }

  /**
   * Start an instruction: reset the per-instruction decoder state, consume the prefixes (SDM vol. 2 §2.1.1; a REX
   * prefix counts only right before the opcode) and return the first opcode byte.
   */
  private beginInstruction(): number {
    this.ripStart = this.rip;
    this.instructions++;
    this.opsize = this.defOpsize;
    this.adsize = this.defAdsize;
    this.segOverride = -1;
    this.rep = 0;
    this.lock = false;
    this.p66 = false;
    let b = this.fetch8();
    // Most instructions have no prefix: one table load decides (REX bytes are prefixes only in 64-bit mode).
    const kind = PREFIX_KIND[b];
    if (kind !== 0 && (kind === PREFIX_LEGACY || this.mode64)) {
      if (kind === PREFIX_REX) {
        // The common 64-bit case: a lone REX prefix right before the opcode.
        const next = this.fetch8();
        if (PREFIX_KIND[next] === 0) { this.rex = b; b = next; } else b = this.decodePrefixes(next, 1);
      } else {
        b = this.decodePrefixes(b, 0);
      }
      this.applyRex();
    } else {
      this.clearRex();
    }
    return b;
  }

  // =====================================================================================================
  // Decoded-block cache (./code-cache.ts explains the design)

  /** blockMode(), recomputed by updateMode(). */
  private blockModeKey = 0;
  /** Instructions executed from cached blocks (statistics). */
  blockInstructions = 0;
  /** Straddling instructions interpreted because their next page's mapping or generation changed (straddleGuard). */
  straddleMisses = 0;

  /** Whether the instruction just executed ends a block (TERMINATOR; FF ends one only as CALL/JMP, 0F 01 all but SERIALIZE). */
  private endsBlock(): boolean {
    const t = TERMINATOR[this.opcode];
    if (t !== 2) return t !== 0;
    // (0F 01: all but SERIALIZE, which changes no state here: Linux's sync_core runs it after each text_poke_early)
    if (this.opcode === 0x101) return this.modrm !== 0xe8 || this.rep !== 0;
    const r = (this.modrm >> 3) & 7;
    return r >= 2 && r <= 5;
  }

  /** Decoding mode of the cache key: 8 in 64-bit mode, else the default operand size (4 or 2); 0 = not cached. */
  private blockMode(): number {
    if (this.mode64) return 8;
    // Outside 64-bit mode only flat-based protected-mode code is cached (IP wrap-around then falls on a page end).
    return this.protectedMode && this.segBase[C.CS] === 0 ? this.defOpsize : 0;
  }

  /**
   * Execute one block from the cache (recording it when its start has become hot) or, for cold code, interpret
   * up to the next block boundary. Returns the number of instructions executed; faults propagate like step()'s.
   */
  execBlock(left: number): number {
    const rip = this.rip;
    this.ripStart = rip;
    if (!(rip >= this.fetchRipLo && rip < this.fetchRipHi)) {
      // (a fetch fault here is the next instruction's: counted, as beginInstruction counts it before its fetch)
      this.instructions++;
      this.refillFetch();
      this.instructions--;
    }
    if (this.fetchBuf !== this.ram) return this.interpretRun(left);
    const pa = rip + this.fetchDelta;
    const cache = this.codeCache;
    const page = pa >>> 12;
    const w = this.wasm;
    if (w !== null && this.blockModeKey === 8 && this.jitEnabled) {
      // A translated 64-bit block of this address and page generation that fits the budget: straight into the wasm
      // dispatcher, through its own table of translated blocks (16 bytes per entry: no Block object to load, no
      // runChain/exec layers; the chain after it is followed inside wasm).
      // (two ways per set: layout.ts dispatchEntry)
      const I = w.i32, s = dispatchEntry(pa) >> 2, e = I[s] === pa ? s : s + 4, idx = I[e + 2];
      if (I[e] === pa && I[e + 1] === cache.pageGen[page] && idx !== 0) {
        if (I[e + 3] <= left) return w.enter(this, idx, left);
        if (this.sliceEnd) return left;
      }
    }
    const slot = tableSlot(pa);
    const b = cache.table[slot];
    if (b !== undefined) {
      if (b.pa === pa && b.gen === cache.pageGen[page] && b.mode === this.blockModeKey) return this.runChain(b, left);
      // Another block holds the slot: this one may have been translated, or pushed out, and kept.
      const k = cache.keptBlock(pa * 16 + this.blockModeKey, page);
      if (k !== undefined) {
        cache.displace(b);
        cache.table[slot] = k;
        return this.runChain(k, left);
      }
    }
    if (cache.noCache[page] === 0 && ++cache.hot[slot] > (w !== null ? WASM_HOT_THRESHOLD : HOT_THRESHOLD) && this.blockModeKey !== 0) {
      cache.hot[slot] = 0;
      return this.recordBlock(pa, slot, left);
    }
    return this.interpretRun(left);
  }

  /** Instructions executed in translated (JavaScript) blocks (statistics). */
  jitInstructions = 0;

  /**
   * Run block `b`, then the blocks that follow it while RIP stays in the fetch window's page: each successor is
   * found through the block's `next`/`next2` memo (else the table) and re-validated by physical address, page
   * generation and mode, so a chain never runs stale or other-mode code. Stops at events, halts, stop requests,
   * the budget and CHAIN_LIMIT instructions (code-cache.ts explains the latency bound).
   */
  private runChain(b: Block, left: number): number {
    const cache = this.codeCache;
    const wasm = this.jitEnabled ? this.wasm : null;
    let n = 0;
    for (;;) {
      const room = left - n;
      if (wasm !== null) n += wasm.exec(this, b, room);
      else {
      // (A block translated while another vCPU, or this one earlier, had translation on runs as closures when it is off.)
      let fn = this.jitEnabled ? b.fn : null;
      if (fn === null && b.runs >= 0 && this.jitEnabled && b.mode === 8 && ++b.runs > JIT_THRESHOLD) {
        b.runs = -1;
        fn = b.fn = b.pfn2 < 0 ? translateBlock(b) : null; // (a straddling block runs under its guard: closures)
        if (fn !== null) {
          cache.stats.compiled++;
          cache.translated.set(b.pa * 16 + b.mode, b);
        }
      }
      if (fn !== null && b.n <= room) {
        const k = fn(this, room);
        this.jitInstructions += k;
        n += k;
      } else {
        n += this.runBlock(b, room);
      }
      }
      const rip = this.rip;
      b.lastRip = rip;
      if (n >= left || n >= CHAIN_LIMIT || this.eventPending || this.halted || this.stopRequested) return n;
      if (!(rip >= this.fetchRipLo && rip < this.fetchRipHi) || this.fetchBuf !== this.ram) return n;
      const pa = rip + this.fetchDelta;
      let nb = b.next;
      if (nb === null || nb.pa !== pa) {
        nb = b.next2;
        if (nb === null || nb.pa !== pa) {
          nb = cache.table[tableSlot(pa)] ?? null;
          if (nb === null || nb.pa !== pa) return n;
          b.next2 = b.next;
          b.next = nb;
        }
      }
      if (nb.gen !== cache.pageGen[pa >>> 12] || nb.mode !== this.blockModeKey) return n;
      cache.stats.chainHits++;
      this.ripStart = rip;
      b = nb;
    }
  }

  /**
   * Interpret instructions up to a block terminator (or an event), or until RIP enters the next page. That last stop
   * is for an instruction that straddles a page end, when it is interpreted (cold, or its block's guard found its next
   * page changed: recordBlock, straddleGuard): without the stop so was everything after it up to the next branch, in
   * the next page, however hot (bench/io, 16 MiB of TCP: ~110k instructions, at six such sites in Linux's receive path
   * and in virtio_net). Now execBlock looks the next page's instructions up in the block cache.
   */
  private interpretRun(left: number): number {
    let n = 0;
    const r0 = this.rip;
    const nextPage = r0 - (r0 & 0xfff) + 4096;
    do {
      n++;
      this.step();
    } while (n < left && (TERMINATOR[this.opcode] === 0 || !this.endsBlock()) && !(this.eventPending || this.halted || this.stopRequested) &&
      !(this.rip >= nextPage && this.rip < nextPage + 4096));
    return n;
  }

  /** Replay a cached block. State is committed per instruction, so leaving early is always precise. */
  runBlock(b: Block, left: number): number {
    const es = b.entries;
    const n = b.n < left ? b.n : left;
    let rip = this.rip;
    let k = 0;
    for (;;) {
      const e = es[k];
      this.ripStart = rip;
      this.instructions++;
      const fast = e.fast;
      if (fast !== null) {
        this.rip = rip + e.len;
        fast(this, e);
      } else {
        this.opsize = e.opsize;
        this.adsize = e.adsize;
        this.segOverride = e.segOverride;
        this.rep = e.rep;
        this.lock = e.lock;
        this.p66 = e.p66;
        this.rex = e.rex;
        this.rexW = e.rexW;
        this.rexR = e.rexR;
        this.rexX = e.rexX;
        this.rexB = e.rexB;
        this.opcode = e.opcode;
        this.rip = rip + e.opLen;
        e.handler(this);
      }
      k++;
      rip += e.len;
      // (HLT and the other instructions that stop the CPU end blocks; a stop request waits for the block's end.)
      if (k >= n || this.rip !== rip || this.eventPending) break;
    }
    this.blockInstructions += k;
    return k;
  }

  /**
   * Execute a block for the first time while recording it; install it if nothing invalidated its page meanwhile.
   * A 64-bit instruction that is not a terminator and straddles the page's end becomes the block's last instruction
   * (before, the block stopped before it, so it was interpreted at every pass: busybox's md5 loop has one, run once per
   * 64-byte block, and so do hot kernel paths): the block then depends on the next page too (Block.pfn2/gen2), which is
   * marked as holding code before the instruction runs (so a store into it, the instruction's own included, bumps its
   * generation and the block is not installed), and the instruction runs under straddleGuard.
   */
  private recordBlock(pa: number, slot: number, left: number): number {
    const cache = this.codeCache;
    const page = pa >>> 12;
    const mode = this.blockModeKey;
    cache.codePages[page] = 1;
    const gen = cache.pageGen[page];
    const entries: BlockEntry[] = [];
    const blockRip = this.rip;
    const room = 4096 - (pa & 0xfff);
    let n = 0;
    let pfn2 = -1, gen2 = 0, mark2 = 0;
    for (;;) {
      const start = this.rip;
      const at = start - blockRip;
      // Near the page end (an instruction is at most 15 bytes): the next page's physical page from this privilege's
      // fetch TLB, without a walk (a miss: no straddler this time), marked as code before the instruction runs.
      let next = -1, nextGen = 0, nextMark = 0;
      if (mode === 8 && room - at < 15) {
        next = this.fetchPfn(Math.floor(start / 4096) + 1);
        if (next >= 0 && next * 4096 + 4096 <= this.ramSize && next !== page) {
          nextMark = cache.codePages[next];
          cache.codePages[next] = 1;
          nextGen = cache.pageGen[next];
        } else next = -1;
      }
      const e = this.stepRecord();
      n++;
      if (TERMINATOR[this.opcode] !== 0 && this.endsBlock() && !this.fellThrough(e, mode, start, at, room)) {
        if (next >= 0) unmark(cache, next, nextMark, nextGen);
        // The last instruction: its prefixes and opcode must lie in the page (the handler fetches the rest); a
        // fast form needs all of it there (compileFast reads only the bytes of the length it returns).
        e.len = 0;
        if (at + e.opLen <= room) {
          if (mode === 8) {
            const n = compileFast(this, e, pa + at, 0);
            if (n !== 0 && at + n <= room) e.len = n;
            else { e.fast = null; e.form = 0; }
          }
          entries.push(e);
        }
        break;
      }
      const len = this.rip - start;
      if (len <= 0 || len > 15) break;
      if (at + len > room) {
        // Straddles the page end. Its bytes are in two physical pages: the form decodes a copy of them. (The fetch
        // went through the page `next` is, unless the TLB changed meanwhile: then no straddler.)
        if (next >= 0 && this.fetchBuf === this.ram && ((this.rip - 1 + this.fetchDelta) >>> 12) === next &&
            cache.pageGen[next] === nextGen) {
          e.len = len | 0;
          const sc = STRADDLE_BYTES, k = room - at;
          sc.set(this.ram.subarray(pa + at, pa + room), 0);
          sc.set(this.ram.subarray(next * 4096, next * 4096 + len - k), k);
          compileFast(this, e, 0, len, sc);
          e.fast = straddleGuard(e.fast, next, nextGen, page);
          entries.push(e);
          pfn2 = next; gen2 = nextGen; mark2 = nextMark;
        } else if (next >= 0) unmark(cache, next, nextMark, nextGen);
        break;
      }
      if (next >= 0) unmark(cache, next, nextMark, nextGen);
      e.len = len | 0;
      if (mode === 8) compileFast(this, e, pa + at, len);
      entries.push(e);
      if (n >= left || entries.length >= MAX_BLOCK || this.eventPending || this.halted || this.stopRequested || this.blockModeKey !== mode) break;
    }
    if (entries.length > 0 && cache.pageGen[page] === gen && (pfn2 < 0 || cache.pageGen[pfn2] === gen2)) {
      const b = new Block(pa, mode, gen, entries);
      if (pfn2 >= 0) { b.pfn2 = pfn2; b.gen2 = gen2; }
      cache.addBlock(b, slot, true);
    } else if (pfn2 >= 0) unmark(cache, pfn2, mark2, gen2);
    return n;
  }

  /**
   * The physical page number that this privilege's fetch bank of the first-level TLB maps linear page `vpn` to, or
   * -1 when it holds no entry for it (no walk: this never faults).
   */
  fetchPfn(vpn: number): number {
    const t = ((TLB_FETCH | (this.cpl === 3 ? 1 : 0)) << BANK_SHIFT) | (tlbSlot(vpn) << ENTRY_SHIFT);
    return this.tlb[t] === vpn ? this.tlbPfn[2 * t + 2] : -1;
  }

  /**
   * Whether the instruction just recorded is a conditional jump (Jcc rel8/rel32, no 66h prefix) that fell through
   * (RIP is right after it) and lies in the page: with the wasm translator the block then goes on past it, the
   * jump becoming a side exit (translated code and runBlock leave the block when it is taken; an instruction that
   * ends a block is otherwise its last). Fewer, longer blocks: fewer dispatcher entries, and the flags of a compare
   * stay known to the instructions after its Jcc. (RINGZERO_WASM_SIDE_EXITS=0: off.)
   */
  private fellThrough(e: BlockEntry, mode: number, start: number, at: number, room: number): boolean {
    if (!SIDE_EXITS || mode !== 8 || this.wasm === null || e.p66) return false;
    const op = this.opcode;
    const len = op >= 0x70 && op <= 0x7f ? e.opLen + 1 : op >= 0x180 && op <= 0x18f ? e.opLen + 4 : 0;
    return len !== 0 && this.rip === start + len && at + len <= room;
  }

  /** step(), also returning the decoder state at dispatch as a block entry. */
  private stepRecord(): BlockEntry {
    let b = this.beginInstruction();
    let handler: OpHandler;
    if (b === 0x0f) {
      b = this.fetch8();
      this.opcode = 0x100 | b;
      handler = this.ops0f[b];
    } else {
      this.opcode = b;
      handler = this.ops1[b];
    }
    const e = new BlockEntry(handler);
    e.opLen = (this.rip - this.ripStart) | 0; // (an int32: a double would replace BlockEntry's map, see DOUBLE_FIELDS)
    e.opsize = this.opsize; e.adsize = this.adsize; e.segOverride = this.segOverride; e.rep = this.rep;
    e.lock = this.lock; e.p66 = this.p66; e.rex = this.rex; e.rexW = this.rexW; e.rexR = this.rexR;
    e.rexX = this.rexX; e.rexB = this.rexB; e.opcode = this.opcode;
    handler(this);
    return e;
  }

  /** A store hit physical [pa, pa+len) of low RAM outside the fast path: drop cached code of those pages. */
  noteCodeWrite(pa: number, len: number): void {
    const pages = this.codePages;
    const last = Math.min(pa + len, this.ramSize) - 1;
    const first = Math.floor(pa / 4096), end = Math.floor(last / 4096);
    for (let p = first; p <= end; p++) if (pages[p] !== 0) this.codeCache.invalidatePage(p);
  }

  /**
   * Parse the prefixes starting with `b` (SDM vol. 2 §2.1.1) and return the opcode byte that follows. A REX
   * prefix counts only when it immediately precedes the opcode; the result is left in `rex`.
   */
  private decodePrefixes(b: number, seen: number): number {
    this.rex = 0;
    for (let n = seen; ; n++) {
      if (n >= 14) this.gp(0); // longer than 15 bytes
      switch (b) {
        case 0x66: this.p66 = true; this.opsize = this.defOpsize === 2 ? 4 : 2; this.rex = 0; b = this.fetch8(); continue;
        case 0x67: this.adsize = this.defAdsize === 8 ? 4 : this.defAdsize === 4 ? 2 : 4; this.rex = 0; b = this.fetch8(); continue;
        case 0x26: this.segOverride = C.ES; this.rex = 0; b = this.fetch8(); continue;
        case 0x2e: this.segOverride = C.CS; this.rex = 0; b = this.fetch8(); continue;
        case 0x36: this.segOverride = C.SS; this.rex = 0; b = this.fetch8(); continue;
        case 0x3e: this.segOverride = C.DS; this.rex = 0; b = this.fetch8(); continue;
        case 0x64: this.segOverride = C.FS; this.rex = 0; b = this.fetch8(); continue;
        case 0x65: this.segOverride = C.GS; this.rex = 0; b = this.fetch8(); continue;
        case 0xf0: this.lock = true; this.rex = 0; b = this.fetch8(); continue;
        case 0xf2: case 0xf3: this.rep = b; this.rex = 0; b = this.fetch8(); continue;
      }
      if (this.mode64 && (b & 0xf0) === 0x40) { this.rex = b; b = this.fetch8(); continue; }
      break;
    }
    if (this.mode64 && this.segOverride < C.FS) this.segOverride = -1; // ES/CS/SS/DS overrides are null in 64-bit mode
    return b;
  }

  /** The opcode tables, held per instance so dispatch is a field load rather than a module-binding access. */
  private readonly ops1: OpHandler[] = ops1;
  private readonly ops0f: OpHandler[] = ops0f;

  // =====================================================================================================
  // Instruction fetch

  // The fetch window: the RIP values [fetchRipLo, fetchRipHi) whose bytes lie in the current code page, and
  // `fetchDelta` mapping such a RIP to its index in `fetchBuf`. The window never reaches the IP wrap point
  // (0xFFFF / 0xFFFFFFFF outside 64-bit mode), so the fast path can simply add to RIP; the slow path handles
  // page changes, wrap-around and faults. An empty window (lo > hi) forces a refill.
  private fetchRipLo = 1.5;
  private fetchRipHi = 0.5;
  private fetchDelta = 0.5;
  private fetchBuf: Uint8Array;
  private fetchView: DataView;

  /** Set by WasmEngine.syncSys around its segment loads: invalidateFetch keeps the return-address stack. */
  rasKeep = false;

  /** Forget the fetch window (code page, CS or paging changed). */
  invalidateFetch(): void {
    this.fetchRipLo = 1.5;
    this.fetchRipHi = 0.5;
    // (and the wasm translator's return-address predictions, made under the old mapping: ./wasm/layout.ts S_RASP;
    // not while the runtime loads CS/SS after an inline privilege switch, WasmEngine.syncSys, whose new predictions hold)
    if (this.wasm !== null && !this.rasKeep) clearRas(this.wasm.i32, this.wasmState);
  }

  /** Derive REX.W/R/X/B from `rex` after prefix decoding (REX.W makes the operand size 8). */
  applyRex(): void {
    const rex = this.rex;
    this.rexW = (rex & 8) !== 0;
    this.rexR = (rex & 4) << 1;
    this.rexX = (rex & 2) << 2;
    this.rexB = (rex & 1) << 3;
    if (this.rexW) this.opsize = 8;
  }

  clearRex(): void {
    this.rex = 0;
    this.rexW = false;
    this.rexR = 0;
    this.rexX = 0;
    this.rexB = 0;
  }

  fetch8(): number {
    const rip = this.rip;
    if (rip >= this.fetchRipLo && rip < this.fetchRipHi) {
      this.rip = rip + 1;
      return this.fetchBuf[rip + this.fetchDelta];
    }
    return this.fetch8Slow();
  }

  private fetch8Slow(): number {
    const rip = this.rip;
    this.refillFetch();
    const v = this.fetchBuf[rip + this.fetchDelta];
    // IP wraps at the code segment's size outside 64-bit mode.
    this.rip = this.mode64 ? rip + 1 : this.defAdsize === 2 ? (rip + 1) & 0xffff : (rip + 1) >>> 0;
    return v;
  }

  fetch16(): number {
    const rip = this.rip;
    if (rip >= this.fetchRipLo && rip + 2 <= this.fetchRipHi) {
      this.rip = rip + 2;
      return this.fetchView.getUint16(rip + this.fetchDelta, true);
    }
    const lo = this.fetch8();
    return lo | (this.fetch8() << 8);
  }

  fetch32(): number {
    const rip = this.rip;
    if (rip >= this.fetchRipLo && rip + 4 <= this.fetchRipHi) {
      this.rip = rip + 4;
      return this.fetchView.getInt32(rip + this.fetchDelta, true);
    }
    const lo = this.fetch16();
    return lo | (this.fetch16() << 16);
  }

  /** Sign-extended 8-bit immediate. */
  fetchS8(): number {
    return (this.fetch8() << 24) >> 24;
  }

  /** Immediate of the current operand size (size 8 fetches a sign-extended imm32, as x86-64 does). */
  fetchImm(size: number): number {
    if (size === 1) return this.fetch8();
    if (size === 2) return this.fetch16();
    const v = this.fetch32();
    if (size === 8) this.hi = v >> 31;
    return v;
  }

  /** Point the fetch window at the page holding the byte at the current RIP (translating it: may fault). */
  private refillFetch(): void {
    const rip = this.rip;
    const lin = this.mode64 ? rip : (this.segBase[C.CS] + rip) >>> 0;
    const phys = this.translate(lin, 2, this.cpl === 3);
    const pageOff = lin & 0xfff;
    const base = phys - pageOff;
    let buf: Uint8Array, view: DataView, off: number;
    if (base + 4096 <= this.ramSize) {
      buf = this.ram; view = this.ramView; off = base;
    } else {
      const r = this.mem.regionFor(base, 4096);
      // Executing from MMIO or from outside RAM: this machine has no ROM, so treat it as a bus error.
      if (!r) this.gp(0);
      buf = r.bytes; view = r.view; off = base - r.guestBase;
    }
    this.fetchBuf = buf;
    this.fetchView = view;
    let lo = rip - pageOff, hi = lo + 4096;
    if (!this.mode64) {
      // Stop the window before the IP wrap point (the slow path wraps RIP).
      const wrap = this.defAdsize === 2 ? 0xffff : 0xffffffff;
      if (hi > wrap) hi = wrap;
      if (lo < 0) lo = 0;
    }
    this.fetchRipLo = lo;
    this.fetchRipHi = hi;
    this.fetchDelta = off - (rip - pageOff);
  }

  // =====================================================================================================
  // Registers

  /** Read general register `i` (0-15) of `size` bytes; size 1 honours the AH..BH encoding without REX. */
  getReg(size: number, i: number): number {
    switch (size) {
      case 1:
        if (i < 4 || this.rex || i > 7) return this.gpr[2 * i] & 0xff;
        return (this.gpr[2 * (i - 4)] >> 8) & 0xff;
      case 2: return this.gpr[2 * i] & 0xffff;
      case 4: return this.gpr[2 * i];
      default: this.hi = this.gpr[2 * i + 1]; return this.gpr[2 * i];
    }
  }

  /** Write general register `i`; size 4 zero-extends into the upper half (SDM vol. 1 §3.4.1.1), 1 and 2 merge. */
  setReg(size: number, i: number, v: number, hi = 0): void {
    switch (size) {
      case 1:
        if (i < 4 || this.rex || i > 7) this.gpr[2 * i] = (this.gpr[2 * i] & ~0xff) | (v & 0xff);
        else this.gpr[2 * (i - 4)] = (this.gpr[2 * (i - 4)] & ~0xff00) | ((v & 0xff) << 8);
        return;
      case 2: this.gpr[2 * i] = (this.gpr[2 * i] & ~0xffff) | (v & 0xffff); return;
      case 4: this.gpr[2 * i] = v; this.gpr[2 * i + 1] = 0; return;
      default: this.gpr[2 * i] = v; this.gpr[2 * i + 1] = hi;
    }
  }

  /** Register `i` as a signed number (exact when it fits in 53 bits, which covers canonical addresses). */
  getReg64Num(i: number): number {
    return this.gpr[2 * i + 1] * C.TWO32 + (this.gpr[2 * i] >>> 0);
  }

  setReg64Num(i: number, v: number): void {
    this.gpr[2 * i] = v | 0;
    this.gpr[2 * i + 1] = Math.floor(v / C.TWO32) | 0;
  }

  getGpr(i: number): bigint {
    return (BigInt(this.gpr[2 * i + 1] >>> 0) << 32n) | BigInt(this.gpr[2 * i] >>> 0);
  }

  setGpr(i: number, v: bigint): void {
    this.gpr[2 * i] = Number(v & 0xffffffffn) | 0;
    this.gpr[2 * i + 1] = Number((v >> 32n) & 0xffffffffn) | 0;
  }

  getRip(): bigint {
    return BigInt.asUintN(64, BigInt(this.rip));
  }

  setRip(v: bigint): void {
    this.rip = Number(BigInt.asIntN(64, v));
  }

  /** The instruction pointer after a near branch to `target`, truncated to the operand size (SDM JMP/CALL). */
  branchTarget(target: number): number {
    if (this.mode64) return target;
    return this.opsize === 2 ? target & 0xffff : target >>> 0;
  }

  // =====================================================================================================
  // ModRM / SIB decoding (SDM vol. 2 §2.1.5 tables 2-1..2-3, §2.2.1)

  decodeModrm(): void {
    const rip = this.rip;
    // Fast path: 32/64-bit addressing with all of ModRM, SIB and disp32 (at most 6 bytes) inside the fetch window,
    // read straight from the code page with one RIP update.
    if (this.adsize !== 2 && rip >= this.fetchRipLo && rip + 6 <= this.fetchRipHi) {
      const buf = this.fetchBuf;
      const start = rip + this.fetchDelta;
      let p = start;
      const m = buf[p++];
      this.modrm = m;
      const mod = m >> 6;
      this.mod = mod;
      this.reg = ((m >> 3) & 7) | this.rexR;
      const rm = m & 7;
      this.ripRel = false;
      if (mod === 3) {
        this.rm = rm | this.rexB;
        this.rip = rip + 1;
        return;
      }
      this.rm = rm;
      const a64 = this.adsize === 8;
      const g = this.gpr;
      let seg = C.DS;
      let ea: number;
      if (rm === 4) {
        const sib = buf[p++];
        const baseLow = sib & 7;
        const index = ((sib >> 3) & 7) | this.rexX;
        if (baseLow === 5 && mod === 0) {
          ea = this.fetchView.getInt32(p, true);
          p += 4;
        } else {
          const base = baseLow | this.rexB;
          ea = a64 ? g[2 * base + 1] * C.TWO32 + (g[2 * base] >>> 0) : g[2 * base] >>> 0;
          if (base === 4 || base === 5) seg = C.SS; // rsp/rbp as base default to SS (r12/r13 do not)
        }
        if (index !== 4) ea += (a64 ? g[2 * index + 1] * C.TWO32 + (g[2 * index] >>> 0) : g[2 * index] >>> 0) * (1 << (sib >> 6));
      } else if (rm === 5 && mod === 0) {
        ea = this.fetchView.getInt32(p, true);
        p += 4;
        // RIP-relative in 64-bit mode: resolved against the end of the instruction by resolveEa().
        if (this.mode64) this.ripRel = true;
      } else {
        const base = rm | this.rexB;
        ea = a64 ? g[2 * base + 1] * C.TWO32 + (g[2 * base] >>> 0) : g[2 * base] >>> 0;
        if (rm === 5) seg = C.SS;
      }
      if (mod === 1) { ea += (buf[p++] << 24) >> 24; }
      else if (mod === 2) { ea += this.fetchView.getInt32(p, true); p += 4; }
      this.rip = rip + (p - start);
      this.eaSeg = this.segOverride >= 0 ? this.segOverride : seg;
      if (this.ripRel) this.eaOff = ea;
      else if (a64) this.eaOff = ea >= 9223372036854775808 ? ea - 18446744073709551616 : ea < -9223372036854775808 ? ea + 18446744073709551616 : ea;
      else this.eaOff = ea >>> 0;
      return;
    }
    this.decodeModrmSlow();
  }

  private decodeModrmSlow(): void {
    const m = this.fetch8();
    this.modrm = m;
    this.mod = m >> 6;
    this.reg = ((m >> 3) & 7) | this.rexR;
    const rm = m & 7;
    this.ripRel = false;
    if (this.mod === 3) {
      this.rm = rm | this.rexB;
      return;
    }
    this.rm = rm;
    if (this.adsize === 2) { this.decodeEa16(rm); return; }
    let seg = C.DS;
    let ea: number;
    if (rm === 4) {
      const sib = this.fetch8();
      const scale = sib >> 6;
      const index = ((sib >> 3) & 7) | this.rexX;
      const baseLow = sib & 7;
      const base = baseLow | this.rexB;
      if (baseLow === 5 && this.mod === 0) {
        ea = this.fetch32();
      } else {
        ea = this.regAddr(base);
        if (baseLow === 4 || baseLow === 5) seg = C.SS; // rsp/rbp (and r12/r13) as base default to SS
        if (base === 12 || base === 13) seg = C.DS; // ...but r12/r13 are not stack registers
      }
      if (index !== 4) ea += this.regAddr(index) * (1 << scale);
    } else if (rm === 5 && this.mod === 0) {
      const disp = this.fetch32();
      if (this.mode64) {
        // RIP-relative: relative to the end of the instruction; immediates may still follow, so callers that
        // fetch an immediate after decodeModrm must call fixRipRel(immBytes) — see `ea()`.
        this.ripRel = true;
        ea = disp;
      } else {
        ea = disp;
      }
    } else {
      const base = rm | this.rexB;
      ea = this.regAddr(base);
      if (rm === 5) seg = C.SS;
    }
    if (this.mod === 1) ea += this.fetchS8();
    else if (this.mod === 2) ea += this.fetch32();
    this.eaSeg = this.segOverride >= 0 ? this.segOverride : seg;
    if (this.ripRel) {
      this.eaOff = ea; // displacement only; resolved against rip in resolveEa()
    } else {
      this.eaOff = this.wrapAddr(ea);
    }
  }

  /** A register's value as an address component of the current address size. */
  private regAddr(i: number): number {
    if (this.adsize === 8) return this.gpr[2 * i + 1] * C.TWO32 + (this.gpr[2 * i] >>> 0);
    return this.gpr[2 * i] >>> 0;
  }

  wrapAddr(ea: number): number {
    if (this.adsize === 8) {
      // Bring the sum back into the signed 64-bit range (two's complement wrap), exact for canonical values.
      if (ea >= 9223372036854775808) ea -= 18446744073709551616;
      else if (ea < -9223372036854775808) ea += 18446744073709551616;
      return ea;
    }
    if (this.adsize === 4) return ea >>> 0;
    return ea & 0xffff;
  }

  private decodeEa16(rm: number): void {
    const r = this.gpr;
    let ea = 0;
    let seg = C.DS;
    switch (rm) {
      case 0: ea = (r[6] & 0xffff) + (r[12] & 0xffff); break; // bx+si
      case 1: ea = (r[6] & 0xffff) + (r[14] & 0xffff); break; // bx+di
      case 2: ea = (r[10] & 0xffff) + (r[12] & 0xffff); seg = C.SS; break; // bp+si
      case 3: ea = (r[10] & 0xffff) + (r[14] & 0xffff); seg = C.SS; break; // bp+di
      case 4: ea = r[12] & 0xffff; break;
      case 5: ea = r[14] & 0xffff; break;
      case 6:
        if (this.mod === 0) { ea = this.fetch16(); } else { ea = r[10] & 0xffff; seg = C.SS; }
        break;
      case 7: ea = r[6] & 0xffff; break;
    }
    if (this.mod === 1) ea += this.fetchS8();
    else if (this.mod === 2) ea += this.fetch16();
    this.eaOff = ea & 0xffff;
    this.eaSeg = this.segOverride >= 0 ? this.segOverride : seg;
  }

  /**
   * Finish a RIP-relative address once the whole instruction has been fetched. Every handler that uses a
   * memory operand calls this (via readRm/writeRm/eaLinear) after fetching its immediates.
   */
  resolveEa(): void {
    if (this.ripRel) {
      this.eaOff = this.wrapAddr(this.rip + this.eaOff);
      this.ripRel = false;
    }
  }

  /** Linear address of the ModRM memory operand (plus `delta` bytes). */
  eaLinear(delta = 0): number {
    this.resolveEa();
    return this.linear(this.eaSeg, delta ? this.wrapAddr(this.eaOff + delta) : this.eaOff);
  }

  /** Read the ModRM r/m operand. */
  readRm(size: number): number {
    if (this.mod === 3) return this.getReg(size, this.rm);
    return this.readLin(this.eaLinear(), size);
  }

  /** Write the ModRM r/m operand (for size 8 pass the high half). */
  writeRm(size: number, v: number, hi = 0): void {
    if (this.mod === 3) { this.setReg(size, this.rm, v, hi); return; }
    this.writeLin(this.eaLinear(), size, v, hi);
  }

  // =====================================================================================================
  // Segmentation: offset -> linear (SDM vol. 3A §3.4, §5.3; in 64-bit mode only FS/GS have a base)

  linear(seg: number, off: number): number {
    if (this.mode64) {
      if (seg < C.FS) return off;
      let lin = this.segBase[seg] + off;
      if (lin >= 9223372036854775808) lin -= 18446744073709551616;
      return lin;
    }
    return (this.segBase[seg] + off) >>> 0;
  }

  // =====================================================================================================
  // Paging (SDM vol. 3A ch. 4) and the TLB

  flushTlb(includingGlobal: boolean): void {
    const tlb = this.tlb;
    this.tlbGen = (this.tlbGen + 1) | 0;
    if (includingGlobal) this.tlbGenAll = (this.tlbGenAll + 1) | 0;
    const wt = this.wtlb;
    if (includingGlobal) {
      tlb.fill(NaN); // (the physical pages too: harmless, they are read only after a tag matched)
      if (wt !== null) wt.fill(-1);
      this.tlbListed.fill(0);
      this.tlbListN = 0;
    } else {
      // (the listed entries only: every other entry is empty or global; one refilled as global since it was listed
      // stays)
      const list = this.tlbList, listed = this.tlbListed, global = this.tlbGlobal;
      for (let k = 0, n = this.tlbListN; k < n; k++) {
        const e = list[k];
        listed[e] = 0;
        if (global[e] === 0) { tlb[e << ENTRY_SHIFT] = NaN; if (wt !== null) wt[e << 2] = -1; }
      }
      this.tlbListN = 0;
    }
    this.invalidateFetch();
  }

  /**
   * INVLPG: drop the translations of the page holding `lin`. The TLB keeps large pages as 4 KiB entries, so
   * every entry of the surrounding 2 MiB region goes too (and everything, if a 1 GiB page was ever cached).
   */
  invalidatePage(lin: number): void {
    if (this.tlbHasHugePages) {
      this.flushTlb(true);
      this.tlbHasHugePages = false;
      return;
    }
    const first = Math.floor(lin / 2097152) * 512;
    for (let vpn = first; vpn < first + 512; vpn++) {
      const t = tlbSlot(vpn) << ENTRY_SHIFT;
      for (let bank = 0; bank < 6; bank++) {
        if (this.tlb[(bank << BANK_SHIFT) | t] === vpn) {
          this.tlb[(bank << BANK_SHIFT) | t] = NaN;
          if (this.wtlb !== null) this.wtlb[((bank << BANK_SHIFT) | t) << 1] = -1;
        }
      }
      const j = l2Index(vpn);
      if (this.l2Tag[j] === vpn) this.l2Tag[j] = NaN;
    }
    this.invalidateFetch();
  }

  /** A 1 GiB (or 4 MiB) page has been cached since the last full flush. */
  private tlbHasHugePages = false;

  /**
   * Translate a linear address. `access`: 0 read, 1 write, 2 execute. `user`: a CPL-3 access (SDM §4.6).
   * Returns the physical address or raises #PF (or #GP for a non-canonical address in 64-bit mode).
   */
  translate(lin: number, access: number, user: boolean): number {
    if (this.pagingLevels === 0) return this.mode64 ? lin : lin >>> 0;
    const off = lin & 0xfff;
    const vpn = (lin - off) / 4096; // exact: lin - off is a multiple of 4096 (also for negative lin)
    const i = tlbSlot(vpn);
    const bank = (access << 1) | (user ? 1 : 0);
    const t = (bank << BANK_SHIFT) | (i << ENTRY_SHIFT);
    if (this.tlb[t] === vpn) return this.tlbPfn[2 * t + 2] * 4096 + off;
    const j = l2Index(vpn);
    if (this.l2Tag[j] === vpn && ((this.l2Banks[j] >> bank) & 1) !== 0 &&
        this.l2Gen[j] === (this.l2Global[j] !== 0 ? this.tlbGenAll : this.tlbGen)) {
      this.tlbL2Hits++;
      return this.fillTlb(vpn, i, this.l2Phys[j], this.l2Banks[j] & fillMask(access, user), this.l2Global[j]) + off;
    }
    return this.walk(lin, vpn, access, user);
  }

  /**
   * Put page `vpn` (first-level slot `i`) with physical page `phys` into the banks of `banks` (bit per bank); the
   * other banks' entries of this slot stay as they are. Returns `phys`.
   */
  private fillTlb(vpn: number, i: number, phys: number, banks: number, global: number): number {
    const tlb = this.tlb, listed = this.tlbListed, wt = this.wtlb;
    // (translated code's view: the page's linear address as two i32 words and the addend, or empty, see wtlb)
    const ram = wt !== null && phys + 4096 <= this.ramSize && !tlbEdge(vpn, i);
    const lin = vpn * 4096, lo = lin | 0, hi = Math.floor(vpn / 1048576) | 0, add = (phys - lin) | 0;
    for (let bank = 0; bank < 6; bank++) {
      if (((banks >> bank) & 1) === 0) continue;
      const e = (bank << TLB_BITS) | i;
      tlb[e << ENTRY_SHIFT] = vpn;
      this.tlbPfn[(e << (ENTRY_SHIFT + 1)) + 2] = phys / 4096; // (phys: a page base below 2^MAXPHYADDR)
      if (ram) { const k = e << 2; wt[k] = lo; wt[k + 1] = hi; wt[k + 2] = add; wt[k + 3] = phys / 4096; }
      else if (wt !== null) wt[e << 2] = -1;
      this.tlbGlobal[e] = global;
      if (global === 0 && listed[e] === 0) { listed[e] = 1; this.tlbList[this.tlbListN++] = e; }
    }
    return phys;
  }

  private walk(lin: number, vpn: number, access: number, user: boolean): number {
    const levels = this.pagingLevels;
    if (levels === 4 && (lin < -C.TWO47 || lin >= C.TWO47)) this.gp(0);
    const write = access === 1;
    const fetch = access === 2;
    const nxe = (this.efer & C.EFER_NXE) !== 0;
    const wp = (this.cr0 & C.CR0_WP) !== 0;
    // Split the linear address into 32-bit halves (lin may be negative in 64-bit mode).
    const linHi = Math.floor(lin / C.TWO32) | 0;
    const linLo = lin >>> 0;
    let allowWrite = true, allowUser = true, allowExec = true;
    let table: number;
    let entryAddr: number;
    let lo = 0, hi = 0;
    let pageSize = 4096;
    let pageBase = 0;
    const pfec = (write ? C.PFEC_W : 0) | (user ? C.PFEC_U : 0) | (fetch && nxe ? C.PFEC_I : 0);
    const touched: number[] = this.walkTouched;
    touched.length = 0;

    if (levels === 2) {
      // 32-bit paging (§4.3): PDE for bits 31:22, PTE for 21:12; 4 MiB pages with CR4.PSE.
      table = this.cr3 & 0xfffff000;
      entryAddr = table + ((linLo >>> 22) << 2);
      lo = this.physRead32(entryAddr);
      if (!(lo & C.PTE_P)) this.pageFault(lin, pfec);
      allowWrite = (lo & C.PTE_RW) !== 0; allowUser = (lo & C.PTE_US) !== 0;
      touched.push(entryAddr, lo, 0);
      if ((lo & C.PTE_PS) && (this.cr4 & C.CR4_PSE)) {
        pageSize = 4 * 1024 * 1024;
        pageBase = (lo & 0xffc00000) >>> 0;
      } else {
        entryAddr = (lo & 0xfffff000) + (((linLo >>> 12) & 0x3ff) << 2);
        lo = this.physRead32(entryAddr);
        if (!(lo & C.PTE_P)) this.pageFault(lin, pfec);
        allowWrite &&= (lo & C.PTE_RW) !== 0; allowUser &&= (lo & C.PTE_US) !== 0;
        touched.push(entryAddr, lo, 0);
        pageBase = (lo & 0xfffff000) >>> 0;
      }
    } else {
      const physMaskHi = (1 << (C.MAXPHYADDR - 32)) - 1;
      let idx: number;
      if (levels === 4) {
        table = ((this.cr3 & 0xfffff000) >>> 0) + ((Math.floor(this.cr3 / C.TWO32) & physMaskHi) * C.TWO32);
        // PML4 (bits 47:39), PDPT (38:30)
        idx = (linHi >>> 7) & 0x1ff;
        entryAddr = table + idx * 8;
        lo = this.physRead32(entryAddr); hi = this.physRead32(entryAddr + 4);
        if (!(lo & C.PTE_P)) this.pageFault(lin, pfec);
        if (lo & C.PTE_PS) this.pageFault(lin, pfec | C.PFEC_P | C.PFEC_RSVD);
        allowWrite = (lo & C.PTE_RW) !== 0; allowUser = (lo & C.PTE_US) !== 0; if (nxe && hi < 0) allowExec = false;
        touched.push(entryAddr, lo, 0);
        table = (lo & 0xfffff000) >>> 0; table += (hi & physMaskHi) * C.TWO32;
        idx = ((linHi & 0x7f) << 2) | (linLo >>> 30);
      } else {
        // PAE (§4.4): 4 PDPTEs at CR3[31:5]
        table = (this.cr3 & 0xffffffe0) >>> 0;
        idx = linLo >>> 30;
      }
      entryAddr = table + idx * 8;
      lo = this.physRead32(entryAddr); hi = this.physRead32(entryAddr + 4);
      if (!(lo & C.PTE_P)) this.pageFault(lin, pfec);
      if (levels === 4) {
        allowWrite &&= (lo & C.PTE_RW) !== 0; allowUser &&= (lo & C.PTE_US) !== 0; if (nxe && hi < 0) allowExec = false;
        touched.push(entryAddr, lo, 0);
      }
      if (levels === 4 && (lo & C.PTE_PS)) {
        pageSize = 1 << 30;
        pageBase = (lo & 0xc0000000) >>> 0; pageBase += (hi & physMaskHi) * C.TWO32;
      } else {
        table = (lo & 0xfffff000) >>> 0; table += (hi & physMaskHi) * C.TWO32;
        // PD (bits 29:21)
        entryAddr = table + ((linLo >>> 21) & 0x1ff) * 8;
        lo = this.physRead32(entryAddr); hi = this.physRead32(entryAddr + 4);
        if (!(lo & C.PTE_P)) this.pageFault(lin, pfec);
        allowWrite &&= (lo & C.PTE_RW) !== 0; allowUser &&= (lo & C.PTE_US) !== 0; if (nxe && hi < 0) allowExec = false;
        touched.push(entryAddr, lo, 0);
        if (lo & C.PTE_PS) {
          pageSize = 2 * 1024 * 1024;
          pageBase = (lo & 0xffe00000) >>> 0; pageBase += (hi & physMaskHi) * C.TWO32;
        } else {
          table = (lo & 0xfffff000) >>> 0; table += (hi & physMaskHi) * C.TWO32;
          // PT (bits 20:12)
          entryAddr = table + ((linLo >>> 12) & 0x1ff) * 8;
          lo = this.physRead32(entryAddr); hi = this.physRead32(entryAddr + 4);
          if (!(lo & C.PTE_P)) this.pageFault(lin, pfec);
          allowWrite &&= (lo & C.PTE_RW) !== 0; allowUser &&= (lo & C.PTE_US) !== 0; if (nxe && hi < 0) allowExec = false;
          touched.push(entryAddr, lo, 0);
          pageBase = (lo & 0xfffff000) >>> 0; pageBase += (hi & physMaskHi) * C.TWO32;
        }
      }
    }
    // Permission checks (§4.6). Supervisor writes to read-only pages fault only with CR0.WP.
    if (user && !allowUser) this.pageFault(lin, pfec | C.PFEC_P);
    if (write && !allowWrite && (user || wp)) this.pageFault(lin, pfec | C.PFEC_P);
    if (fetch && !allowExec) this.pageFault(lin, pfec | C.PFEC_P);
    // Accessed bits on every level, dirty on the leaf for writes (§4.8).
    const leafAddr = touched[touched.length - 3];
    for (let k = 0; k < touched.length; k += 3) {
      const addr = touched[k], val = touched[k + 1];
      let nv = val | C.PTE_A;
      if (write && addr === leafAddr) nv |= C.PTE_D;
      if (nv !== val) this.physWrite32(addr, nv);
    }
    const leafVal = touched[touched.length - 2] | (write ? C.PTE_D : 0);
    const global = (leafVal & C.PTE_G) !== 0 && (this.cr4 & C.CR4_PGE) !== 0;
    if (pageSize > 2097152) this.tlbHasHugePages = true;
    // Physical base of this 4 KiB page, inside a large page when the leaf was a 2 MiB / 4 MiB / 1 GiB entry.
    const phys = pageBase + ((linLo & (pageSize - 1)) >>> 0) - (linLo & 0xfff);
    const i = tlbSlot(vpn);
    const u = user ? 1 : 0;
    let banks = 1 << (TLB_READ | u);
    if (allowExec) banks |= 1 << (TLB_FETCH | u);
    // Cache write permission only once the dirty bit is set, so the first write of a clean page walks and sets it.
    // Supervisor writes to read-only pages are allowed while CR0.WP is clear.
    if ((leafVal & C.PTE_D) && (allowWrite || (!user && !wp))) banks |= 1 << (TLB_WRITE | u);
    const g = global ? 1 : 0;
    this.fillTlb(vpn, i, phys, banks & fillMask(access, user), g);
    // The second level keeps the banks of both privileges while the entry stays the same translation.
    const j = l2Index(vpn);
    const gen = g !== 0 ? this.tlbGenAll : this.tlbGen;
    if (this.l2Tag[j] === vpn && this.l2Phys[j] === phys && this.l2Global[j] === g && this.l2Gen[j] === gen) banks |= this.l2Banks[j];
    this.l2Tag[j] = vpn; this.l2Phys[j] = phys; this.l2Banks[j] = banks; this.l2Global[j] = g; this.l2Gen[j] = gen;
    this.tlbWalks++;
    return phys + (lin & 0xfff);
  }

  private readonly walkTouched: number[] = [];

  pageFault(lin: number, code: number): never {
    this.cr2 = lin;
    return this.fault(C.EXC_PF, code);
  }

  // =====================================================================================================
  // Physical memory (RAM fast path; MMIO through the bus; the LAPIC page is private to this vCPU)

  physRead32(pa: number): number {
    if (pa + 4 <= this.ramSize) return this.ramView.getInt32(pa, true);
    return this.physReadSlow(pa, 4);
  }

  physWrite32(pa: number, v: number): void {
    if (pa + 4 <= this.ramSize) {
      if (this.codePages[pa >>> 12] !== 0) this.noteCodeWrite(pa, 4);
      this.ramView.setInt32(pa, v, true);
      return;
    }
    this.physWriteSlow(pa, 4, v);
  }

  /** Read 1, 2 or 4 bytes of physical memory outside low RAM (high RAM, LAPIC, MMIO devices). */
  physReadSlow(pa: number, size: AccessSize): number {
    const lapic = this.env.lapic;
    if (lapic && pa >= 0xfee00000 && pa < 0xfee01000) return lapic.mmioRead(pa - 0xfee00000, size);
    if (pa < this.ramSize) {
      // Straddles the end of low RAM: byte by byte.
      let v = 0;
      for (let k = 0; k < size; k++) v |= this.physReadSlow1(pa + k) << (8 * k);
      return size === 4 ? v : v >>> 0;
    }
    const r = this.mem.regionFor(pa, size);
    if (r) {
      const o = pa - r.guestBase;
      return size === 1 ? r.bytes[o] : size === 2 ? r.view.getUint16(o, true) : r.view.getInt32(o, true);
    }
    const v = this.env.mmio.read(pa, size);
    return size === 4 ? v | 0 : v;
  }

  private physReadSlow1(pa: number): number {
    if (pa < this.ramSize) return this.ram[pa];
    return this.physReadSlow(pa, 1);
  }

  physWriteSlow(pa: number, size: AccessSize, v: number): void {
    const lapic = this.env.lapic;
    if (lapic && pa >= 0xfee00000 && pa < 0xfee01000) { lapic.mmioWrite(pa - 0xfee00000, size, size === 4 ? v >>> 0 : v); return; }
    if (pa < this.ramSize) {
      this.noteCodeWrite(pa, size);
      for (let k = 0; k < size; k++) {
        const a = pa + k, b = (v >>> (8 * k)) & 0xff;
        if (a < this.ramSize) this.ram[a] = b; else this.physWriteSlow(a, 1, b);
      }
      return;
    }
    const r = this.mem.regionFor(pa, size);
    if (r) {
      const o = pa - r.guestBase;
      if (size === 1) r.bytes[o] = v; else if (size === 2) r.view.setUint16(o, v, true); else r.view.setInt32(o, v, true);
      return;
    }
    this.env.mmio.write(pa, size, size === 4 ? v >>> 0 : v & SIZE_MASK[size]);
  }

  // =====================================================================================================
  // Linear memory access with the current privilege (user = CPL 3)

  /** Read `size` bytes at a linear address. Size 8 returns the low half and leaves the high half in `hi`. */
  readLin(lin: number, size: number): number {
    // Fast path: a TLB hit on a RAM page, the access inside the page (the TLB is empty while paging is off).
    const off = lin & 0xfff;
    if (off + size <= 4096) {
      const vpn = (lin - off) / 4096;
      const i = tlbSlot(vpn);
      const t = (this.cpl === 3 ? BANK_READ_USER : BANK_READ) | (i << ENTRY_SHIFT);
      if (this.tlb[t] === vpn) {
        const pa = this.tlbPfn[2 * t + 2] * 4096 + off;
        if (pa + size <= this.ramSize) {
          switch (size) {
            case 1: return this.ram[pa];
            case 2: return this.ramView.getUint16(pa, true);
            case 4: return this.ramView.getInt32(pa, true);
            default: this.hi = this.ramView.getInt32(pa + 4, true); return this.ramView.getInt32(pa, true);
          }
        }
      }
    }
    return this.readLinSlow(lin, size);
  }

  private readLinSlow(lin: number, size: number): number {
    const off = lin & 0xfff;
    if (off + size <= 4096) {
      const pa = this.translate(lin, 0, this.cpl === 3);
      if (pa + size <= this.ramSize) {
        const v = this.ramView;
        switch (size) {
          case 1: return this.ram[pa];
          case 2: return v.getUint16(pa, true);
          case 4: return v.getInt32(pa, true);
          default: this.hi = v.getInt32(pa + 4, true); return v.getInt32(pa, true);
        }
      }
      if (size === 8) {
        const lo = this.physReadSlow(pa, 4);
        this.hi = this.physReadSlow(pa + 4, 4);
        return lo;
      }
      return this.physReadSlow(pa, size as AccessSize);
    }
    return this.readLinSplit(lin, size);
  }

  /** An access that crosses a page boundary: translate both pages first (so a fault leaves nothing done). */
  private readLinSplit(lin: number, size: number): number {
    const first = 4096 - (lin & 0xfff);
    const user = this.cpl === 3;
    const pa1 = this.translate(lin, 0, user);
    const pa2 = this.translate(this.addLin(lin, first), 0, user);
    let lo = 0, hi = 0;
    for (let k = 0; k < size; k++) {
      const pa = k < first ? pa1 + k : pa2 + (k - first);
      const b = pa < this.ramSize ? this.ram[pa] : this.physReadSlow(pa, 1);
      if (k < 4) lo |= b << (8 * k); else hi |= b << (8 * (k - 4));
    }
    if (size === 8) this.hi = hi;
    return size === 4 || size === 8 ? lo : lo >>> 0;
  }

  /** Write `size` bytes at a linear address (size 8: `hi` is the high half). */
  writeLin(lin: number, size: number, v: number, hi = 0): void {
    const off = lin & 0xfff;
    if (off + size <= 4096) {
      const vpn = (lin - off) / 4096;
      const i = tlbSlot(vpn);
      const t = (this.cpl === 3 ? BANK_WRITE_USER : BANK_WRITE) | (i << ENTRY_SHIFT);
      if (this.tlb[t] === vpn) {
        const pa = this.tlbPfn[2 * t + 2] * 4096 + off;
        if (pa + size <= this.ramSize) {
          if (this.codePages[pa >>> 12] !== 0) this.noteCodeWrite(pa, size);
          switch (size) {
            case 1: this.ram[pa] = v; return;
            case 2: this.ramView.setUint16(pa, v, true); return;
            case 4: this.ramView.setInt32(pa, v, true); return;
            default: this.ramView.setInt32(pa, v, true); this.ramView.setInt32(pa + 4, hi, true); return;
          }
        }
      }
    }
    this.writeLinSlow(lin, size, v, hi);
  }

  private writeLinSlow(lin: number, size: number, v: number, hi: number): void {
    const off = lin & 0xfff;
    if (off + size <= 4096) {
      const pa = this.translate(lin, 1, this.cpl === 3);
      if (pa + size <= this.ramSize) {
        if (this.codePages[pa >>> 12] !== 0) this.noteCodeWrite(pa, size);
        const dv = this.ramView;
        switch (size) {
          case 1: this.ram[pa] = v; return;
          case 2: dv.setUint16(pa, v, true); return;
          case 4: dv.setInt32(pa, v, true); return;
          default: dv.setInt32(pa, v, true); dv.setInt32(pa + 4, hi, true); return;
        }
      }
      if (size === 8) { this.physWriteSlow(pa, 4, v); this.physWriteSlow(pa + 4, 4, hi); return; }
      this.physWriteSlow(pa, size as AccessSize, v);
      return;
    }
    const first = 4096 - off;
    const user = this.cpl === 3;
    const pa1 = this.translate(lin, 1, user);
    const pa2 = this.translate(this.addLin(lin, first), 1, user);
    if (pa1 < this.ramSize) this.noteCodeWrite(pa1, first);
    if (pa2 < this.ramSize) this.noteCodeWrite(pa2, size - first);
    for (let k = 0; k < size; k++) {
      const pa = k < first ? pa1 + k : pa2 + (k - first);
      const b = k < 4 ? (v >>> (8 * k)) & 0xff : (hi >>> (8 * (k - 4))) & 0xff;
      if (pa < this.ramSize) this.ram[pa] = b; else this.physWriteSlow(pa, 1, b);
    }
  }

  /** Check that a write to [lin, lin+size) would not fault, without writing (for multi-part instructions). */
  probeWrite(lin: number, size: number): void {
    const user = this.cpl === 3;
    this.translate(lin, 1, user);
    if ((lin & 0xfff) + size > 4096) this.translate(this.addLin(lin, 4096 - (lin & 0xfff)), 1, user);
  }

  addLin(lin: number, delta: number): number {
    const r = lin + delta;
    return this.mode64 ? r : r >>> 0;
  }

  /** Supervisor-privilege read of a system structure (GDT, IDT, TSS): SDM §4.6 "implicit supervisor access". */
  readSys(lin: number, size: number): number {
    const saved = this.cpl;
    this.cpl = 0;
    try {
      return this.readLin(lin, size);
    } finally {
      this.cpl = saved;
    }
  }

  writeSys(lin: number, size: number, v: number, hi = 0): void {
    const saved = this.cpl;
    this.cpl = 0;
    try {
      this.writeLin(lin, size, v, hi);
    } finally {
      this.cpl = saved;
    }
  }

  // =====================================================================================================
  // Stack (SDM vol. 1 §6.2; the stack-address size comes from SS.B outside 64-bit mode)

  stackSize(): number {
    if (this.mode64) return 8;
    return this.segAttr[C.SS] & C.SEG_DB ? 4 : 2;
  }

  getSp(): number {
    const s = this.stackSize();
    if (s === 8) return this.getReg64Num(4);
    return s === 4 ? this.gpr[8] >>> 0 : this.gpr[8] & 0xffff;
  }

  setSp(v: number): void {
    const s = this.stackSize();
    if (s === 8) this.setReg64Num(4, v);
    else if (s === 4) { this.gpr[8] = v; this.gpr[9] = 0; }
    else this.gpr[8] = (this.gpr[8] & ~0xffff) | (v & 0xffff);
  }

  private spAdd(sp: number, d: number): number {
    const s = this.stackSize();
    const r = sp + d;
    return s === 8 ? r : s === 4 ? r >>> 0 : r & 0xffff;
  }

  /** Push `size` bytes (size 8: `hi` is the high half). The write happens before RSP changes. */
  push(size: number, v: number, hi = 0): void {
    const sp = this.spAdd(this.getSp(), -size);
    this.writeLin(this.linear(C.SS, sp), size, v, hi);
    this.setSp(sp);
  }

  /** Pop `size` bytes (size 8 leaves the high half in `hi`). */
  pop(size: number): number {
    const sp = this.getSp();
    const v = this.readLin(this.linear(C.SS, sp), size);
    const h = this.hi;
    this.setSp(this.spAdd(sp, size));
    this.hi = h;
    return v;
  }

  /** Read at stack offset `delta` from the current SP without popping. */
  peekStack(delta: number, size: number): number {
    return this.readLin(this.linear(C.SS, this.spAdd(this.getSp(), delta)), size);
  }

  // =====================================================================================================
  // Lazy arithmetic flags

  /** Record the inputs and result of an arithmetic operation (64-bit ones pass the high halves). */
  setLazy(op: Lazy, size: number, dst: number, src: number, res: number, dstHi = 0, srcHi = 0, resHi = 0): void {
    this.lazyOp = op;
    this.lazySize = size;
    this.lazyDst = dst;
    this.lazySrc = src;
    this.lazyRes = res;
    this.lazyDstHi = dstHi;
    this.lazySrcHi = srcHi;
    this.lazyResHi = resHi;
  }

  /** Set the six arithmetic flags explicitly (bits of C.ARITH_FLAGS). */
  setArith(bits: number): void {
    this.flags = (this.flags & ~C.ARITH_FLAGS) | (bits & C.ARITH_FLAGS);
    this.lazyOp = Lazy.None;
  }

  /** Materialize the lazy flags into `flags`. */
  settleFlags(): void {
    if (this.lazyOp === Lazy.None) return;
    const f = this.computeArith();
    this.flags = (this.flags & ~C.ARITH_FLAGS) | f;
    this.lazyOp = Lazy.None;
  }

  getFlags(): number {
    this.settleFlags();
    return this.flags | C.FLAGS_FIXED;
  }

  getRflags(): bigint {
    return BigInt(this.getFlags() >>> 0);
  }

  setRflags(v: bigint): void {
    this.setFlagsValue(Number(v & 0xffffffffn));
  }

  /** Write EFLAGS wholesale (no privilege filtering: POPF/IRET filter before calling). */
  setFlagsValue(v: number): void {
    const vmChanged = ((this.flags ^ v) & C.VM) !== 0;
    this.flags = (v | C.FLAGS_FIXED) & C.FLAGS_IMPLEMENTED;
    this.lazyOp = Lazy.None;
    if (v & C.IF) this.eventPending = true;
    if (vmChanged) this.updateMode();
  }

  // (Two functions, by operand size: computeArith was optimized by TurboFan before all of its lazy-flag kinds had
  // been seen, and each kind first met later deoptimized it (13 compiles per boot, --trace-deopt); halves are cheaper
  // to compile again (per boot 13 compiles, 160-210 ms -> 16, 60-350 ms of background TurboFan on a loaded host).)
  private computeArith(): number {
    return this.lazySize === 8 ? this.computeArith64() : this.computeArithNarrow();
  }

  private computeArith64(): number {
    const res = this.lazyRes, dst = this.lazyDst, src = this.lazySrc;
    let f = PARITY[res & 0xff];
    const rh = this.lazyResHi, dh = this.lazyDstHi, sh = this.lazySrcHi;
    if (res === 0 && rh === 0) f |= C.ZF;
    if (rh < 0) f |= C.SF;
    switch (this.lazyOp) {
      case Lazy.Add: case Lazy.Adc: {
        const c = this.lazyOp === Lazy.Adc && this.lazyCarry;
        const cmp = cmpU64(rh, res, dh, dst);
        if (c ? cmp <= 0 : cmp < 0) f |= C.CF;
        if (((dh ^ rh) & (sh ^ rh)) < 0) f |= C.OF;
        f |= (dst ^ src ^ res) & C.AF;
        break;
      }
      case Lazy.Sub: case Lazy.Sbb: {
        const c = this.lazyOp === Lazy.Sbb && this.lazyCarry;
        const cmp = cmpU64(dh, dst, sh, src);
        if (c ? cmp <= 0 : cmp < 0) f |= C.CF;
        if (((dh ^ sh) & (dh ^ rh)) < 0) f |= C.OF;
        f |= (dst ^ src ^ res) & C.AF;
        break;
      }
      case Lazy.Logic: break;
      case Lazy.Inc:
        if (this.lazyCarry) f |= C.CF;
        if (rh === (0x80000000 | 0) && res === 0) f |= C.OF;
        if ((res & 0xf) === 0) f |= C.AF;
        break;
      case Lazy.Dec:
        if (this.lazyCarry) f |= C.CF;
        if (rh === 0x7fffffff && res === -1) f |= C.OF;
        if ((res & 0xf) === 0xf) f |= C.AF;
        break;
    }
    return f;
  }

  private computeArithNarrow(): number {
    const size = this.lazySize;
    const res = this.lazyRes, dst = this.lazyDst, src = this.lazySrc;
    let f = PARITY[res & 0xff];
    const mask = SIZE_MASK[size];
    const sign = SIGN_BIT[size];
    const r = (res & mask) >>> 0, d = (dst & mask) >>> 0, s = (src & mask) >>> 0;
    if (r === 0) f |= C.ZF;
    if (r & sign) f |= C.SF;
    switch (this.lazyOp) {
      case Lazy.Add: case Lazy.Adc: {
        const c = this.lazyOp === Lazy.Adc && this.lazyCarry;
        if (c ? r <= d : r < d) f |= C.CF;
        if ((d ^ r) & (s ^ r) & sign) f |= C.OF;
        f |= (d ^ s ^ r) & C.AF;
        break;
      }
      case Lazy.Sub: case Lazy.Sbb: {
        const c = this.lazyOp === Lazy.Sbb && this.lazyCarry;
        if (c ? d <= s : d < s) f |= C.CF;
        if ((d ^ s) & (d ^ r) & sign) f |= C.OF;
        f |= (d ^ s ^ r) & C.AF;
        break;
      }
      case Lazy.Logic: break;
      case Lazy.Inc:
        if (this.lazyCarry) f |= C.CF;
        if (r === sign) f |= C.OF;
        if ((r & 0xf) === 0) f |= C.AF;
        break;
      case Lazy.Dec:
        if (this.lazyCarry) f |= C.CF;
        if (r === ((sign - 1) >>> 0)) f |= C.OF;
        if ((r & 0xf) === 0xf) f |= C.AF;
        break;
    }
    return f;
  }

  getCF(): boolean {
    switch (this.lazyOp) {
      case Lazy.None: return (this.flags & C.CF) !== 0;
      case Lazy.Logic: return false;
      case Lazy.Inc: case Lazy.Dec: return this.lazyCarry !== 0;
      case Lazy.Add:
        // Without carry-in, an unsigned add carried iff the truncated result is below an operand.
        if (this.lazySize !== 8) {
          const mask = SIZE_MASK[this.lazySize];
          return ((this.lazyRes & mask) >>> 0) < ((this.lazyDst & mask) >>> 0);
        }
        return (this.computeArith() & C.CF) !== 0;
      case Lazy.Sub:
        if (this.lazySize !== 8) {
          const mask = SIZE_MASK[this.lazySize];
          return ((this.lazyDst & mask) >>> 0) < ((this.lazySrc & mask) >>> 0);
        }
        return (this.computeArith() & C.CF) !== 0;
      default: return (this.computeArith() & C.CF) !== 0;
    }
  }

  getZF(): boolean {
    switch (this.lazyOp) {
      case Lazy.None: return (this.flags & C.ZF) !== 0;
      default:
        if (this.lazySize === 8) return this.lazyRes === 0 && this.lazyResHi === 0;
        return (this.lazyRes & SIZE_MASK[this.lazySize]) === 0;
    }
  }

  getSF(): boolean {
    switch (this.lazyOp) {
      case Lazy.None: return (this.flags & C.SF) !== 0;
      default:
        if (this.lazySize === 8) return this.lazyResHi < 0;
        return (this.lazyRes & SIGN_BIT[this.lazySize]) !== 0;
    }
  }

  getOF(): boolean {
    if (this.lazyOp === Lazy.None) return (this.flags & C.OF) !== 0;
    if (this.lazyOp === Lazy.Logic) return false;
    return (this.computeArith() & C.OF) !== 0;
  }

  getPF(): boolean {
    if (this.lazyOp === Lazy.None) return (this.flags & C.PF) !== 0;
    return PARITY[this.lazyRes & 0xff] !== 0;
  }

  getAF(): boolean {
    if (this.lazyOp === Lazy.None) return (this.flags & C.AF) !== 0;
    return (this.computeArith() & C.AF) !== 0;
  }

  /** Evaluate condition code `cc` (0-15) as Jcc/SETcc/CMOVcc do (SDM vol. 1 appendix B). */
  condition(cc: number): boolean {
    // Fast paths for the flag producers that dominate real code: CMP/SUB and TEST/AND/OR/XOR below 64 bits.
    const op = this.lazyOp;
    if (op === Lazy.Sub && this.lazySize !== 8) return this.conditionSub(cc);
    if (op === Lazy.Logic) return this.conditionLogic(cc);
    let r: boolean;
    switch (cc >> 1) {
      case 0: r = this.getOF(); break;
      case 1: r = this.getCF(); break;
      case 2: r = this.getZF(); break;
      case 3: r = this.getCF() || this.getZF(); break;
      case 4: r = this.getSF(); break;
      case 5: r = this.getPF(); break;
      case 6: r = this.getSF() !== this.getOF(); break;
      default: r = this.getZF() || this.getSF() !== this.getOF(); break;
    }
    return (cc & 1) ? !r : r;
  }

  /** `condition` after a SUB/CMP of size 1, 2 or 4: every condition is a comparison of the operands. */
  private conditionSub(cc: number): boolean {
    const size = this.lazySize;
    const mask = SIZE_MASK[size];
    const d = this.lazyDst & mask, s = this.lazySrc & mask;
    let r: boolean;
    switch (cc >> 1) {
      case 0: { const sign = SIGN_BIT[size]; r = ((d ^ s) & (d ^ this.lazyRes) & sign) !== 0; break; } // O
      case 1: r = (d >>> 0) < (s >>> 0); break; // B: unsigned below
      case 2: r = d === s; break; // Z: equal
      case 3: r = (d >>> 0) <= (s >>> 0); break; // BE
      case 4: r = (this.lazyRes & SIGN_BIT[size]) !== 0; break; // S
      case 5: r = PARITY[this.lazyRes & 0xff] !== 0; break; // P
      case 6: { const sh = 32 - 8 * size; r = (d << sh) >> sh < (s << sh) >> sh; break; } // L: SF != OF is signed less
      default: { const sh = 32 - 8 * size; r = (d << sh) >> sh <= (s << sh) >> sh; break; } // LE
    }
    return (cc & 1) ? !r : r;
  }

  /** `condition` after a logic operation: CF = OF = 0, so B/O are false and L/LE reduce to SF/ZF. */
  private conditionLogic(cc: number): boolean {
    let r: boolean;
    switch (cc >> 1) {
      case 0: case 1: r = false; break;
      case 2: case 3: r = this.getZF(); break;
      case 4: case 6: r = this.getSF(); break;
      case 5: r = PARITY[this.lazyRes & 0xff] !== 0; break;
      default: r = this.getZF() || this.getSF(); break;
    }
    return (cc & 1) ? !r : r;
  }

  // =====================================================================================================
  // Events: interrupts, NMI, and exception delivery (the delivery itself lives in ./system/interrupts.ts)

  /** Called at an instruction boundary when an event may be pending. Returns true if one was taken. */
  checkEvents(): boolean {
    if (this.interruptShadow) {
      // This boundary is inside the shadow of STI / MOV SS: no interrupt here; look again at the next one.
      this.interruptShadow = false;
      this.eventPending = true;
      return false;
    }
    const lapic = this.env.lapic;
    this.ripStart = this.rip;
    if (lapic?.hasNmi?.()) {
      lapic.takeNmi!();
      this.halted = false;
      this.deliverEvent(C.EXC_NMI, EventKind.Nmi, -1);
      return true;
    }
    if ((this.flags & C.IF) && lapic && lapic.hasInterrupt()) {
      const vector = lapic.acknowledge();
      this.halted = false;
      this.eventPending = lapic.hasInterrupt();
      this.deliverEvent(vector, EventKind.External, -1);
      return true;
    }
    this.eventPending = false;
    return false;
  }

  /** Deliver the exception recorded by `fault()` (rip already points at the faulting instruction). */
  private deliverFault(): void {
    this.deliverEvent(this.faultVector, EventKind.Exception, this.faultError);
  }

  /**
   * Deliver an event through the IDT (or IVT in real mode). Installed by ./system/interrupts.ts; until then
   * an event is a triple fault.
   */
  deliverEvent(vector: number, kind: EventKind, errorCode: number): void {
    const impl = deliverEventImpl;
    if (!impl) { this.tripleFault(); return; }
    this.deliveryDepth++;
    try {
      impl(this, vector, kind, errorCode);
    } catch (e) {
      if (e !== CPU_FAULT) throw e;
      // The event's frame points at the instruction that caused it (or, for an interrupt, the next one).
      this.rip = this.ripStart;
      // A fault during delivery: contributory/page-fault combinations become #DF, a fault during #DF is a triple fault.
      if (vector === C.EXC_DF || this.deliveryDepth > 2) { this.tripleFault(); return; }
      const second = this.faultVector;
      if (isDoubleFaultPair(vector, kind, second)) {
        this.deliverEvent(C.EXC_DF, EventKind.Exception, 0);
      } else {
        this.deliverEvent(second, EventKind.Exception, this.faultError);
      }
    } finally {
      this.deliveryDepth--;
    }
  }

  tripleFault(): void {
    if (!this.unimplementedLogged.has('triple-fault')) {
      this.unimplementedLogged.add('triple-fault');
      process.stderr.write(`ringzero: vCPU ${this.env.cpuIndex ?? 0}: triple fault (last exception ${this.lastException} at ${hex(this.ripStart)})\n`);
    }
    this.shutdown = true;
    this.halted = true;
    this.onTripleFault?.();
  }

  /** Wake the vCPU for an event (called by the LAPIC and by devices). */
  notifyEvent(): void {
    this.eventPending = true;
    // (an interrupt may be pending now: translated STI asks the helper again, ./wasm/layout.ts S_PEND)
    if (this.wasm !== null) this.wasm.i32[(this.wasmState + S_PEND) >> 2] = 1;
  }
}

/** Kinds of events for delivery (they differ in error codes, RF/TF handling and privilege checks). */
export const enum EventKind {
  Exception = 0,
  External = 1,
  Nmi = 2,
  /** INT n */
  Software = 3,
  /** INT3 / INTO: software exceptions */
  SoftwareException = 4,
  /** ICEBP (INT1) */
  PrivilegedSoftware = 5,
}

export type DeliverEventFn = (cpu: SoftCpu, vector: number, kind: EventKind, errorCode: number) => void;
let deliverEventImpl: DeliverEventFn | undefined;

/** ./system/interrupts.ts installs the IDT delivery here. */
export function installEventDelivery(fn: DeliverEventFn): void {
  deliverEventImpl = fn;
}

const CONTRIBUTORY = new Set([C.EXC_DE, C.EXC_TS, C.EXC_NP, C.EXC_SS, C.EXC_GP]);

function isDoubleFaultPair(first: number, kind: EventKind, second: number): boolean {
  if (kind !== EventKind.Exception) return false;
  if (CONTRIBUTORY.has(first) && CONTRIBUTORY.has(second)) return true;
  if (first === C.EXC_PF && (CONTRIBUTORY.has(second) || second === C.EXC_PF)) return true;
  return false;
}

/** Unsigned compare of two 64-bit values given as (hi, lo) int32 pairs: -1, 0 or 1. */
export function cmpU64(ah: number, al: number, bh: number, bl: number): number {
  const a1 = ah >>> 0, b1 = bh >>> 0;
  if (a1 !== b1) return a1 < b1 ? -1 : 1;
  const a0 = al >>> 0, b0 = bl >>> 0;
  return a0 === b0 ? 0 : a0 < b0 ? -1 : 1;
}

export function hex(n: number): string {
  if (n < 0) return '0x' + BigInt.asUintN(64, BigInt(n)).toString(16);
  return '0x' + n.toString(16);
}
