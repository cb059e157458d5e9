// Decoded-block cache of the software CPU (issue 4, first step: stop decoding every instruction every time).
//
// What it is:
// - A *block* is the run of instructions from a start address up to and including the first control transfer
//   (or other "terminator": anything that can change RIP non-sequentially, the CPU mode, the interrupt flag or
//   the paging structures; see TERMINATOR), capped at MAX_BLOCK instructions and within its 4 KiB physical page,
//   except that its last instruction may straddle the page's end (Block.pfn2: then it depends on the next page
//   too). With the wasm translator a conditional jump that fell through when the block was recorded does not end
//   it (SoftCpu.fellThrough): it is a side exit, taken or not at each run (runBlock and translated code leave the
//   block when it is taken). Blocks are keyed by the physical address of their first byte plus the
//   decoding mode (64-bit / 32-bit / 16-bit default sizes), so two linear aliases of one page share blocks and a change of page
//   tables needs no flush (the lookup translates RIP first, as instruction fetch does).
// - Each entry of a block holds what the prefix decoder found (operand/address size, segment override,
//   REP/LOCK/66, REX bits, opcode), how many bytes that took, the instruction's length and its handler. A replay
//   restores that decoder state and calls the handler, which still fetches its ModRM/immediates from the code
//   page (through the fetch window, so the bytes are the live ones). Hot forms (register moves, ALU with
//   register/immediate operands, push/pop, Jcc, ...) get a `fast` function that runs with operands decoded once.
// - A block is recorded the Nth time its start address is reached (HOT_THRESHOLD; WASM_HOT_THRESHOLD with the wasm
//   translator), while it executes; until then the interpreter runs as before, so cold code (most of a boot) pays
//   one table probe per block and no allocation.
//
// Invalidation: every physical page of low RAM has a "holds decoded code" byte (`codePages`) and a generation
// (`pageGen`). A block remembers its page's generation; a write into a code page (the CPU's writeLin fast and
// slow paths, physWrite*, the REP MOVS/STOS fast paths, or devices/loaders through `invalidateCodeRange`) bumps the
// generation, which makes every block of the page stale at its next lookup, and raises `eventPending` on the
// vCPUs so a block that wrote into its own page stops after the writing instruction (self-modifying code sees
// its new bytes at the next instruction, as on P6 and later, SDM vol. 3A §11.6). A page that keeps being
// rewritten (data next to code) stops being cached after THRASH_LIMIT invalidations.
//
// The cache is shared by the vCPUs of one GuestMemory (they run on one thread): see `codeCacheFor`.
import { Buffer } from 'node:buffer';
import type { GuestMemory } from '../../memory/guest-memory.ts';
import type { OpHandler, SoftCpu } from './cpu.ts';
import type { JitFn } from './jit/translate.ts';
import type { WasmCode } from './wasm/translate.ts';
import { CODE_PAGES, PAGE_GEN } from './wasm/layout.ts';
import { isAllZero } from '../../sys/zero.ts';
import { readProcStat, statCpuSeconds } from '../../sys/proc-stat.ts';

/** Longest block, in instructions (bounds the event latency of a block to this many instructions). */
export const MAX_BLOCK = 32;
/** A block start is recorded when it has been reached this many times. */
export let HOT_THRESHOLD = Number(process.env.RINGZERO_BLOCK_HOT ?? 2);
/**
 * The same with the wasm translator (RINGZERO_BLOCK_HOT sets both). Later than without it: a recorded block costs
 * its BlockEntry objects (~1.4 KiB a block, kept while it is cached: young-generation GC copies them), and code reached
 * only a few times runs about as fast interpreted. Measured on the Linux boot (interleaved, loaded host): 2 -> 5 took
 * 22.7 -> 24.7 MIPS per process CPU-second (means of 4 boots each).
 */
export let WASM_HOT_THRESHOLD = Number(process.env.RINGZERO_BLOCK_HOT ?? 5);
/** CodeCache.displaced (RINGZERO_BLOCK_DISPLACED=0: off) and the most blocks it holds before it is emptied. */
const DISPLACE = process.env.RINGZERO_BLOCK_DISPLACED !== '0';
const DISPLACED_MAX = 8192;
/** Invalidations after which a page is no longer cached (data sharing a page with code). */
const THRASH_LIMIT = 64;
/**
 * Slots of the direct-mapped block table (SoftCpu.execBlock: slot (pa ^ pa >>> 12) mod 2^TABLE_BITS). Two hot blocks
 * of one slot that are not translated yet evict each other, are recorded again at every visit and so never reach
 * the translation threshold: with 2^16 slots and the ~50k blocks a boot records, that happened to hot code (a test
 * in cpu-wasm-dispatch has such a pair). 2^18: a 2 MiB array.
 */
const TABLE_BITS = 18;
const TABLE_SIZE = 1 << TABLE_BITS;
export const TABLE_MASK = TABLE_SIZE - 1;
/** Shift folding the page number into the block table index. */
const TABLE_BITS_SHIFT = 12;
/** The block-table slot of the block starting at physical address `pa` (the page number folded into the low bits). */
export function tableSlot(pa: number): number {
  return (pa ^ (pa >>> TABLE_BITS_SHIFT)) & TABLE_MASK;
}
/**
 * A cached 64-bit block is translated to JavaScript (./jit/translate.ts) when it has been replayed this often
 * (RINGZERO_JIT_HOT). A generated function costs V8 a few milliseconds (bytecode, baseline code, then an optimizing
 * compile on a helper thread) before it runs faster than closure replay, so only blocks that run tens of thousands
 * of times repay it: measured on the first 150M instructions of the Linux boot, a threshold of 1000 cost 60% more
 * CPU than closure replay, 20000 about the same, while guest loops run 2-8x faster (bench/cpu.ts).
 */
export let JIT_THRESHOLD = Number(process.env.RINGZERO_JIT_HOT ?? 20000);
/**
 * Most instructions SoftCpu.execBlock runs through chained blocks (and self-looping translated blocks) before it
 * returns to the run loop, where halts and stop requests are looked at. Interrupts do not wait for it: every block
 * boundary of a chain, every loop iteration of a translated block and every translated instruction that may raise
 * an event (memory access, replayed handler) checks eventPending. So an event raised while a chain runs is taken
 * after at most the instruction that raised it, and the run loop regains control at least every CHAIN_LIMIT
 * (+ one block, MAX_BLOCK) instructions. At most 32704: a translated function's helpers get the instructions it ran
 * before the current pass in 15 bits of their `pos` (wasm/translate.ts Translator.pos, POS_N; 11 bits, so at most
 * 2016, until session 19), and a region goes on while that count is below CHAIN_LIMIT. 1024 until blocks could hold page-straddling instructions: then busybox's md5
 * loop no longer left wasm at its straddler once per 64-byte block but at the limit, ~0.8 times per block; with 2016
 * the dispatcher returned to JavaScript 1.72M -> 1.35M times over a boot + md5 of 32 MiB, and the md5's main-thread
 * CPU went 3.28/3.45/3.32/4.35/2.85/2.83/2.69 -> 3.57/3.24/2.94/2.48/3.98/2.29/2.47 s (7 interleaved pairs, busy
 * host; means 3.25 -> 3.00 s). 8000 tried in session 19 (boot + md5 of 32 MiB, 2016 vs 8000 side by side, host load
 * 8-35): calls into wasm 1.18-1.20M -> 0.89-0.93M, the md5's main-thread CPU 3.99/4.95, 3.99/3.59, 2.20/2.23,
 * 3.83/3.22, 3.93/3.46 s: not clear enough to change it. RINGZERO_CHAIN_LIMIT sets it (A/B).
 * 20000 since session 22, the run loop's slice (vmm/machine.ts SLICE: SoftCpu.run's budget, so a call into wasm now
 * ends at the slice's end rather than ~10 times per slice): nothing but halts and stop requests waits for the limit,
 * and neither can arrive while a chain runs (stop requests and device interrupts come from the event loop, between
 * slices; a halt or an event the guest raises itself ends the chain at once). Linux's system-call loop (dd bs=1,
 * ~705 instructions per call) returned to JavaScript at the limit ~0.35 times per system call; each return costs
 * execBlock, WasmEngine.run's flag and system-state copies and the JS-to-wasm call. Two VMMs on one pinned host CPU,
 * 6 alternating rounds of dd bs=1 count=100000 (load ~30): main-thread CPU 20000/2016 median 0.953 (0.69-1.03, lower
 * in 5 of 6); bench/engines --paired syscall 8000/2016: thread CPU 0.98x (0.94-0.99).
 */
export const CHAIN_LIMIT = Math.min(Number(process.env.RINGZERO_CHAIN_LIMIT ?? 20000), 32704);

export type FastHandler = (cpu: SoftCpu, e: BlockEntry) => void;

/**
 * Run entry `e`, at `rip`, through its handler with the decoder state of its recording, as SoftCpu.runBlock does for
 * an entry without a fast form (which inlines the same on its hot path). One shared function for the replays of the
 * translators and of a straddling entry's guard: its call of the handler is megamorphic, so V8 does not inline every
 * replayed handler into each caller (which made optimizing one generated JavaScript block cost tens of milliseconds).
 */
export function replayHandler(c: SoftCpu, e: BlockEntry, rip: number): void {
  c.opsize = e.opsize; c.adsize = e.adsize; c.segOverride = e.segOverride; c.rep = e.rep; c.lock = e.lock;
  c.p66 = e.p66; c.rex = e.rex; c.rexW = e.rexW; c.rexR = e.rexR; c.rexX = e.rexX; c.rexB = e.rexB; c.opcode = e.opcode;
  c.rip = rip + e.opLen;
  e.handler(c);
}

/** One decoded instruction of a block. */
export class BlockEntry {
  handler: OpHandler;
  /** Pre-decoded form (operands in a/b/imm...), or null to replay the handler with the decoder state below. */
  fast: FastHandler | null = null;
  /**
   * Small fields packed in one integer (why: see dec1): len | opLen << 4 | size << 8 | (ash = 8) << 13 |
   * (bsh = 8) << 14 | scale << 15 | (seg + 1) << 19 | form << 22. A setter given a value its bits cannot hold throws
   * (badField): entries are written only when a block is recorded.
   */
  private pk = 4 << 8;
  /**
   * The decoder state at dispatch, which only a handler replay restores (and the translators read once), packed in
   * two small integers behind the accessors below. Replaying blocks is bound by memory loads: a boot keeps ~250k
   * entries, far more than the caches hold, and a microbenchmark replaying 20k blocks of 7 instructions ran ~4x
   * slower an instruction than one replaying 1k. With the small fields packed (pk, dec1, dec2) an entry takes 137
   * bytes instead of 273, and replaying the 20k blocks went from ~93 to ~63 ns an instruction. dec1: opsize | adsize << 4 |
   * (segOverride + 1) << 8 | rep << 12 | lock << 20 | p66 << 21 | rexW << 22; dec2: opcode (< 0x4000) | rex << 14 |
   * REX.R, X, B (each 0 or 8, as SoftCpu.applyRex makes them) as bits 22-24.
   */
  private dec1 = 4 | (8 << 4);
  private dec2 = 0;
  get opsize(): number { return this.dec1 & 15; }
  set opsize(v: number) { this.dec1 = (this.dec1 & ~15) | v; if (this.opsize !== v) badField('opsize', v); }
  get adsize(): number { return (this.dec1 >> 4) & 15; }
  set adsize(v: number) { this.dec1 = (this.dec1 & ~0xf0) | (v << 4); if (this.adsize !== v) badField('adsize', v); }
  get segOverride(): number { return ((this.dec1 >> 8) & 15) - 1; }
  set segOverride(v: number) { this.dec1 = (this.dec1 & ~0xf00) | ((v + 1) << 8); if (this.segOverride !== v) badField('segOverride', v); }
  get rep(): number { return (this.dec1 >> 12) & 0xff; }
  set rep(v: number) { this.dec1 = (this.dec1 & ~0xff000) | (v << 12); if (this.rep !== v) badField('rep', v); }
  get lock(): boolean { return (this.dec1 & (1 << 20)) !== 0; }
  set lock(v: boolean) { this.dec1 = v ? this.dec1 | (1 << 20) : this.dec1 & ~(1 << 20); }
  get p66(): boolean { return (this.dec1 & (1 << 21)) !== 0; }
  set p66(v: boolean) { this.dec1 = v ? this.dec1 | (1 << 21) : this.dec1 & ~(1 << 21); }
  get rexW(): boolean { return (this.dec1 & (1 << 22)) !== 0; }
  set rexW(v: boolean) { this.dec1 = v ? this.dec1 | (1 << 22) : this.dec1 & ~(1 << 22); }
  get opcode(): number { return this.dec2 & 0x3fff; }
  set opcode(v: number) { this.dec2 = (this.dec2 & ~0x3fff) | v; if (this.opcode !== v) badField('opcode', v); }
  get rex(): number { return (this.dec2 >> 14) & 0xff; }
  set rex(v: number) { this.dec2 = (this.dec2 & ~(0xff << 14)) | (v << 14); if (this.rex !== v) badField('rex', v); }
  get rexR(): number { return (this.dec2 >> 19) & 8; }
  set rexR(v: number) { this.dec2 = (this.dec2 & ~(1 << 22)) | ((v & 8) << 19); if (this.rexR !== v) badField('rexR', v); }
  get rexX(): number { return (this.dec2 >> 20) & 8; }
  set rexX(v: number) { this.dec2 = (this.dec2 & ~(1 << 23)) | ((v & 8) << 20); if (this.rexX !== v) badField('rexX', v); }
  get rexB(): number { return (this.dec2 >> 21) & 8; }
  set rexB(v: number) { this.dec2 = (this.dec2 & ~(1 << 24)) | ((v & 8) << 21); if (this.rexB !== v) badField('rexB', v); }
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
  get len(): number { return this.pk & 15; }
  set len(v: number) { this.pk = (this.pk & ~15) | v; if (this.len !== v) badField('len', v); }
  /** Bytes of prefixes and opcode (RIP is set to start + opLen before the handler runs). */
  get opLen(): number { return (this.pk >> 4) & 15; }
  set opLen(v: number) { this.pk = (this.pk & ~0xf0) | (v << 4); if (this.opLen !== v) badField('opLen', v); }
  /** Operand size of a form (1, 2, 4, 8; or a scale shift). */
  get size(): number { return (this.pk >> 8) & 31; }
  set size(v: number) { this.pk = (this.pk & ~(31 << 8)) | (v << 8); if (this.size !== v) badField('size', v); }
  /** Byte-register operands of the 8-bit forms: the bit position (0, or 8 for AH..BH) of `a` and of `b`. */
  get ash(): number { return (this.pk >> 10) & 8; }
  set ash(v: number) { this.pk = (this.pk & ~(1 << 13)) | ((v & 8) << 10); if (this.ash !== v) badField('ash', v); }
  get bsh(): number { return (this.pk >> 11) & 8; }
  set bsh(v: number) { this.pk = (this.pk & ~(1 << 14)) | ((v & 8) << 11); if (this.bsh !== v) badField('bsh', v); }
  /** Scale factor (1, 2, 4, 8) and segment (-1: none) of the memory operand recipe. */
  get scale(): number { return (this.pk >> 15) & 15; }
  set scale(v: number) { this.pk = (this.pk & ~(15 << 15)) | (v << 15); if (this.scale !== v) badField('scale', v); }
  get seg(): number { return ((this.pk >> 19) & 7) - 1; }
  set seg(v: number) { this.pk = (this.pk & ~(7 << 19)) | ((v + 1) << 19); if (this.seg !== v) badField('seg', v); }
  /** Which fast form `fast` is (fast-forms.ts Form, fewer than 512; 0 = none), for the translators. */
  get form(): number { return this.pk >> 22; }
  set form(v: number) { this.pk = (this.pk & 0x3fffff) | (v << 22); if (this.form !== v) badField('form', v); }
  constructor(handler: OpHandler) { this.handler = handler; }
}

function badField(name: string, v: number): never {
  throw new Error(`BlockEntry.${name} cannot hold ${v} (a packed field)`);
}

/** How many of the latest slice-end RIPs CodeCache keeps (a power of two): ~1-3 s of a busy guest. */
export const RIP_SAMPLES = 8192;

export class Block {
  readonly entries: BlockEntry[];
  readonly n: number;
  /** The generated JavaScript of this block, once it is hot (null until then, or if it cannot be translated). */
  fn: JitFn | null = null;
  /** The block translated to WebAssembly (./wasm/translate.ts, RINGZERO_JIT=wasm), once it is hot. */
  wasm: WasmCode | null = null;
  /** Replays so far (counts toward JIT_THRESHOLD; -1 once translation was tried). */
  runs = 0;
  /** The last two blocks that followed this one (chaining; each is re-validated by pa + gen + mode when used). */
  next: Block | null = null;
  next2: Block | null = null;
  /**
   * The RIP (linear) the last run of this block left to in SoftCpu.runChain, in this page or not: what an indirect
   * exit (JMP/CALL through a register or memory) joins when the block is translated (translate.ts IND_JOIN,
   * indTarget; next/next2 hold same-page successors only). 0: none seen.
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
  constructor(readonly pa: number, readonly mode: number, readonly gen: number, entries: BlockEntry[]) {
    this.entries = entries;
    this.n = entries.length;
  }
}

export interface CodeCacheStats {
  /** Blocks recorded (a block recorded again after an invalidation counts again). */
  blocks: number;
  /** Instructions in the recorded blocks. */
  instructionsCached: number;
  /** Pages whose blocks were dropped because they were written. */
  invalidations: number;
  /** Blocks translated to JavaScript functions (./jit/translate.ts). */
  compiled: number;
  /** Blocks entered straight from the previous one (chained) rather than through the lookup table. */
  chainHits: number;
}

/**
 * codePages bit: the page is armed for the dirty-page log (not necessarily code). Bit 0 (value 1) is "holds decoded
 * code"; every check of codePages is "!== 0", so an armed page sends its next store to invalidatePage.
 */
export const PAGE_WRITE_LOGGED = 2;


export class CodeCache {
  /** Per 4 KiB page of low RAM: 1 when decoded code of that page may be cached. */
  readonly codePages: Uint8Array;
  readonly pageGen: Int32Array;
  private readonly pageInvalidations: Uint16Array;
  /** Per page: 1 when the page thrashed and is no longer cached. */
  readonly noCache: Uint8Array;
  readonly table: (Block | undefined)[] = new Array(TABLE_SIZE).fill(undefined);
  /**
   * Translated blocks by `pa * 16 + mode`: the table is direct-mapped, so a hot block can be evicted by another one
   * with the same slot; translation is the expensive part, so an evicted translated block is found here again
   * (and re-validated by its page generation) rather than recorded and compiled anew.
   */
  readonly translated = new Map<number, Block>();
  /**
   * Untranslated blocks by `pa * 16 + mode` that another block pushed out of their table slot (addBlock, and
   * SoftCpu.execBlock putting a translated block back): without it such a block was recorded anew at its next visit,
   * its run count back at 0, so two hot blocks of one slot never reached the translation threshold, nor did one that
   * shares its slot with a translated block visited in between (which took the slot back every time). Linux's
   * copy_user_generic_string tail (`xor eax,eax / jmp __x86_return_thunk`, once per 4 KiB copied) shared its slot
   * with two translated user-space blocks of md5sum's pipe loop: it left wasm for JavaScript ~33.5k times per boot +
   * 64 MiB piped, at every copy. Re-validated by page generation on lookup like `translated`; cleared when it
   * holds DISPLACED_MAX blocks (RINGZERO_BLOCK_DISPLACED=0: off).
   */
  readonly displaced = new Map<number, Block>();
  /**
   * The block of `key` (`pa * 16 + mode`, in page `page`) that was pushed out of its table slot and kept, translated
   * (`translated`) or not (`displaced`, which gives it up: it goes back into its slot), when its page was not written
   * since; a stale one is dropped. Undefined when there is none.
   */
  keptBlock(key: number, page: number): Block | undefined {
    const t = this.translated.get(key);
    if (t !== undefined) {
      if (t.gen === this.pageGen[page]) return t;
      this.translated.delete(key);
    }
    const d = this.displaced.get(key);
    if (d === undefined) return undefined;
    this.displaced.delete(key);
    return d.gen === this.pageGen[page] ? d : undefined;
  }
  /** Put `b`, just pushed out of its slot, into `displaced` when it is not translated (else `translated` has it). */
  displace(b: Block): void {
    if (!DISPLACE || b.wasm !== null || b.fn !== null || b.gen !== this.pageGen[b.pa >>> 12]) return;
    if (this.displaced.size >= DISPLACED_MAX) this.displaced.clear();
    this.displaced.set(b.pa * 16 + b.mode, b);
  }
  readonly hot = new Uint8Array(TABLE_SIZE);
  readonly cpus: SoftCpu[] = [];
  /**
   * Where the guest ran lately: the linear RIP at the end of each of the run loop's slices that used up its budget
   * (Machine.run), the last RIP_SAMPLES of them, a statistical sample of the code the guest spends its time in (one
   * per 20k instructions, a few thousand a second). ./hot-list.ts lists the translated blocks it hits first.
   */
  readonly ripSamples = new Float64Array(RIP_SAMPLES);
  ripSampled = 0;
  sampleRip(rip: number): void {
    this.ripSamples[this.ripSampled++ & (RIP_SAMPLES - 1)] = rip;
  }
  readonly stats: CodeCacheStats = { blocks: 0, instructionsCached: 0, invalidations: 0, compiled: 0, chainHits: 0 };

  /**
   * Count a block just recorded (SoftCpu.recordBlock) or rebuilt (./hot-list.ts) and put it in table slot `slot`:
   * over the block there when `evict`, else only into an empty slot.
   */
  addBlock(b: Block, slot: number, evict: boolean): void {
    const o = this.table[slot];
    if (evict || o === undefined) {
      if (o !== undefined && o !== b) this.displace(o);
      this.table[slot] = b;
    }
    this.stats.blocks++;
    this.stats.instructionsCached += b.entries.length;
  }

  /** `codePagesIn`: where the code-page bytes and generations live (the wasm memory, for translated code). */
  constructor(readonly lowSize: number, codePagesIn?: ArrayBuffer) {
    const pages = Math.ceil(lowSize / 4096);
    // Not cleared: the wasm memory is a fresh one (one per GuestMemory), and touching its 2.5 MiB of page bytes and
    // generations at 2 GiB of RAM faulted every page of them in on each machine built, a restore's included (~1 ms).
    // Nor would stale values do harm: a marked page only sends the next store through invalidatePage (and the first
    // vCPU reset's invalidateAll clears every mark), and a generation is only compared with the ones blocks record.
    this.codePages = codePagesIn ? new Uint8Array(codePagesIn, CODE_PAGES, pages) : new Uint8Array(pages);
    this.pageGen = codePagesIn ? new Int32Array(codePagesIn, PAGE_GEN, pages) : new Int32Array(pages);
    this.pageInvalidations = new Uint16Array(pages);
    this.noCache = new Uint8Array(pages);
  }

  /**
   * The dirty-page log (GuestMemory.startDirtyLog), while it is on. Every page of it is armed by setting
   * PAGE_WRITE_LOGGED in codePages, so the first CPU store into the page takes the code-write path (whatever store
   * path it was: writeLin, physWrite*, REP MOVS/STOS) and lands here, which marks the page and disarms it; later
   * stores into that page run at full speed until the next harvest re-arms it. A page whose bits are cleared for
   * any other reason (invalidateAll) is marked dirty too, so no store is ever missed.
   */
  private dirtyLog: Uint8Array | undefined;

  armDirtyLog(log: Uint8Array | undefined): void {
    this.dirtyLog = log;
    const pages = this.codePages;
    if (log) for (let p = 0; p < pages.length; p++) pages[p] |= PAGE_WRITE_LOGGED;
    else for (let p = 0; p < pages.length; p++) pages[p] &= ~PAGE_WRITE_LOGGED;
  }

  /** A write hit page `page` (index into codePages) that holds cached code or is armed for the dirty-page log. */
  invalidatePage(page: number): void {
    if (this.dirtyLog) this.dirtyLog[page] = 1;
    if ((this.codePages[page] & ~PAGE_WRITE_LOGGED) === 0) { this.codePages[page] = 0; return; } // no code there
    this.codePages[page] = 0;
    this.pageGen[page] = (this.pageGen[page] + 1) | 0;
    this.stats.invalidations++;
    if (++this.pageInvalidations[page] >= THRASH_LIMIT) this.noCache[page] = 1;
    // Stop any block being executed at its next instruction boundary (checkEvents tolerates a spurious wake-up).
    for (const c of this.cpus) c.eventPending = true;
  }

  /** Physical range [gpa, gpa+len) was written by something other than the CPU's store paths (DMA, loaders). */
  invalidateRange(gpa: number, len: number): void {
    if (len <= 0 || gpa >= this.lowSize) return;
    const last = Math.min(gpa + len, this.lowSize) - 1;
    for (let p = Math.floor(gpa / 4096); p <= Math.floor(last / 4096); p++) if (this.codePages[p]) this.invalidatePage(p);
  }

  /** Drop everything (machine reset, kernel reload). */
  invalidateAll(): void {
    const pages = this.codePages;
    const log = this.dirtyLog;
    // Swept one chunk at a time, each skipped when a native compare finds it all zero: every vCPU reset (each one
    // built, each restore) comes here, and a loop over every page was ~3 ms at 2 GiB in a fresh process.
    for (let base = 0; base < pages.length; base += SWEEP_CHUNK) {
      const end = Math.min(base + SWEEP_CHUNK, pages.length);
      if (isAllZero(pages.subarray(base, end))) continue;
      for (let p = base; p < end; p++) {
        if (pages[p] !== 0) {
          pages[p] = 0; this.pageGen[p] = (this.pageGen[p] + 1) | 0; if (log) log[p] = 1;
        }
      }
    }
    this.translated.clear();
    this.displaced.clear();
    for (const c of this.cpus) c.eventPending = true;
  }
}

/** Pages per step of CodeCache.invalidateAll's sweep (16 MiB of guest RAM). */
const SWEEP_CHUNK = 4096;

const caches = new WeakMap<GuestMemory, CodeCache>();

/** The block cache shared by the vCPUs of `mem`. */
export function codeCacheFor(mem: GuestMemory): CodeCache {
  let c = caches.get(mem);
  if (!c) {
    const cache = new CodeCache(mem.lowSize, mem.wasmMemory?.buffer);
    caches.set(mem, cache);
    // Device DMA into guest RAM must drop stale decoded code just as a CPU store does.
    mem.onExternalWrite((gpa, len) => cache.invalidateRange(gpa, len));
    // The CPU's stores feed the dirty-page log through the code-write check (see armDirtyLog). Only low RAM has
    // that check: stores above 4 GiB are not seen, which GuestMemory.startDirtyLog refuses.
    mem.onDirtyLogArm((log) => cache.armDirtyLog(log));
    c = cache;
  }
  return c;
}

/** `ringzero run --stats`: what the soft engine did, over `ms` of run time (lines for stderr). */
export function softEngineStats(cpus: SoftCpu[], ms: number): string {
  const total = cpus.reduce((n, c) => n + c.instructions, 0);
  const fromBlocks = cpus.reduce((n, c) => n + c.blockInstructions, 0);
  const jitted = cpus.reduce((n, c) => n + c.jitInstructions, 0);
  const cpu = process.cpuUsage();
  const cpuSec = (cpu.user + cpu.system) / 1e6;
  const mainSec = mainThreadCpuSeconds();
  const s = cpus[0].codeCache.stats;
  const on = cpus.some((c) => c.blockCacheEnabled);
  const pct = (a: number, b: number) => (b > 0 ? ((100 * a) / b).toFixed(1) : '0.0');
  return [
    `ringzero: stats: ${total} instructions in ${(ms / 1000).toFixed(2)} s: ${(total / Math.max(ms, 1) / 1000).toFixed(1)} MIPS wall, ` +
      `${(total / Math.max(cpuSec, 1e-6) / 1e6).toFixed(1)} MIPS per process CPU-second (${cpuSec.toFixed(2)} s CPU` +
      (mainSec >= 0 ? `, ${mainSec.toFixed(2)} s of it on the main thread)` : ')'),
    on
      ? `ringzero: stats: block cache: ${s.blocks} blocks recorded (${s.instructionsCached} instructions), ` +
        `${pct(fromBlocks, total)}% of instructions run from cached blocks, ${s.invalidations} page invalidations`
      : 'ringzero: stats: block cache off (--no-translate)',
    `ringzero: stats: TLB: ${cpus.reduce((n, c) => n + c.tlbWalks, 0)} page walks, ` +
      `${cpus.reduce((n, c) => n + c.tlbL2Hits, 0)} first-level misses refilled from the second level`,
    ...(on && cpus[0].wasm && cpus[0].jitEnabled ? [`ringzero: stats: wasm: ${cpus[0].wasm.statsLine()}`] : []),
    ...(!on ? [] : cpus.some((c) => c.jitEnabled)
      ? [`ringzero: stats: JIT: ${s.compiled} blocks compiled to ${cpus[0].wasm ? 'WebAssembly' : 'JavaScript'}, ${pct(jitted, total)}% of instructions run in them; ` +
          `${s.chainHits} chained block entries` +
          (cpus[0].wasm && !cpus[0].wasm.countsChains ? ' (region branches and tail calls not counted: RINGZERO_WASM_COUNT_CHAINS=1)' : '')]
      : [`ringzero: stats: JIT off (RINGZERO_JIT=0: closure replay); ${s.chainHits} chained block entries`]),
    '',
  ].join('\n');
}

/**
 * CPU seconds of this process's main thread (Linux: /proc/self/task/<pid>/stat utime + stime, in clock ticks of 10 ms),
 * or -1. Process CPU also counts V8's background threads (wasm and JavaScript compiles, GC), which a loaded host
 * inflates; the main thread's is what the guest waits for.
 */
export function mainThreadCpuSeconds(): number {
  const stat = readProcStat(`/proc/self/task/${process.pid}/stat`);
  return stat === undefined ? -1 : statCpuSeconds(stat);
}

/** Set the hot threshold (tests: 0 records every block the first time it runs). */
export function setHotThreshold(n: number): void {
  HOT_THRESHOLD = n;
  WASM_HOT_THRESHOLD = n;
}

/** Set the translation threshold (tests: 0 translates every 64-bit block at its first replay). */
export function setJitThreshold(n: number): void {
  JIT_THRESHOLD = n;
}

// =====================================================================================================
// Terminators: opcodes (as `cpu.opcode`: one-byte xx, 0F xx as 0x1xx, 0F 38 xx as 0x38xx) after which a block ends.

export const TERMINATOR = new Uint8Array(0x4000);
{
  const one = [
    0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d, 0x7e, 0x7f, // Jcc rel8
    0xe0, 0xe1, 0xe2, 0xe3, // LOOPcc, JrCXZ
    0xe8, 0xe9, 0xea, 0xeb, 0x9a, // CALL/JMP near and far
    0xc2, 0xc3, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xf1, // RET, RETF, INT3, INT n, INTO, IRET, INT1
    0xf4, 0xfa, 0xfb, 0x9d, 0x8e, 0x17, 0x1f, 0x07, // HLT, CLI, STI, POPF, MOV Sreg, POP SS/DS/ES
    0x62, 0xc4, 0xc5, 0xc8, 0xc9, // BOUND/EVEX, LES/LDS/VEX (mode-dependent meaning), ENTER/LEAVE kept simple
    0x6c, 0x6d, 0x6e, 0x6f, 0xe4, 0xe5, 0xe6, 0xe7, 0xec, 0xed, 0xee, 0xef, // port I/O (devices may stop the CPU)
    0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, // string ops (REP re-executes itself)
    0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, // x87 (FPU state, rarely hot in the kernel)
  ];
  for (const o of one) TERMINATOR[o] = 1;
  TERMINATOR[0xff] = 2; // group 5: only /2-/5 (indirect CALL/JMP, near and far) end a block (SoftCpu.endsBlock)
  const two = [
    0x00, 0x01, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x20, 0x21, 0x22, 0x23, 0x30, 0x32, 0x33, 0x34, 0x35, 0x37,
    0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, // Jcc rel32
    0xa1, 0xa9, 0xaa, 0xa2, 0xae, 0xb2, 0xb4, 0xb5, 0xc7, 0xff, 0xb9,
  ];
  for (const o of two) TERMINATOR[0x100 | o] = 1;
  // group 7 (LGDT, LIDT, LMSW, INVLPG, SWAPGS, ...) ends a block, except SERIALIZE (0F 01 E8: SoftCpu.endsBlock)
  TERMINATOR[0x101] = 2;
}
