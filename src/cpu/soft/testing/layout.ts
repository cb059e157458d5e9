// The fixed address layout shared by the native runner and the software CPU run of a snippet.
// Everything lives at the same absolute addresses on the host and in the guest, so absolute and RIP-relative
// addressing, pushes and string instructions touch the same bytes in both worlds.

/** Base of the region; below 2 GiB so every address also fits a sign-extended disp32 (absolute [disp32]). */
export const REGION_BASE = 0x7000_0000;
/** Host trampoline (entry at +0, epilogue at +0x200). Not used by the guest run. */
export const TRAMPOLINE = REGION_BASE;
export const EPILOGUE = REGION_BASE + 0x200;
/** State block the trampoline loads from and stores to (native only). */
export const STATE_BLOCK = REGION_BASE + 0x1000;
/** Where snippet code is placed; a `jmp EPILOGUE` follows it. */
export const CODE_BASE = REGION_BASE + 0x2000;
export const CODE_SIZE = 0x2000;
/** The scratch data area the snippet may read and write (compared after every run). */
export const SCRATCH_BASE = REGION_BASE + 0x4000;
export const SCRATCH_SIZE = 0x2000;
export const REGION_SIZE = SCRATCH_BASE + SCRATCH_SIZE - REGION_BASE;

// Sub-areas of the scratch area (offsets from SCRATCH_BASE). General operands go anywhere in DATA;
// CONST holds values the generator pinned (divisors, bsf sources) and no instruction writes; the stack is on top.
export const DATA_OFF = 0x0000;
export const DATA_SIZE = 0x1000;
export const CONST_OFF = 0x1000;
export const CONST_SIZE = 0x400;
export const STACK_LOW_OFF = 0x1400;
/** Initial RSP: 16-byte aligned with 0x400 bytes above it for pops and 0x800 below for pushes. */
export const STACK_TOP_OFF = 0x1c00;
export const INITIAL_RSP = BigInt(SCRATCH_BASE + STACK_TOP_OFF);

/** Snippet register/flag/SSE state and the scratch memory contents. */
export interface SnippetState {
  /** rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15 (the ModRM numbering), as unsigned 64-bit values. */
  gpr: bigint[];
  /** Only the six arithmetic flags and DF are meaningful on input; bit 1 and IF are set by the runners. */
  rflags: bigint;
  /** XMM0-15, 16 bytes each, little endian. */
  xmm: Uint8Array;
  mxcsr: number;
  /** SCRATCH_SIZE bytes at SCRATCH_BASE. */
  mem: Uint8Array;
}

export const GPR_NAMES = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

// RFLAGS bits (Intel SDM vol. 1 §3.4.3).
export const CF = 0x1;
export const PF = 0x4;
export const AF = 0x10;
export const ZF = 0x40;
export const SF = 0x80;
export const DF = 0x400;
export const OF = 0x800;
export const STATUS_FLAGS = CF | PF | AF | ZF | SF | OF;
/** The flags a snippet may set and that are compared. */
export const SNIPPET_FLAGS = STATUS_FLAGS | DF;
/** What user-mode RFLAGS always holds on Linux: bit 1 (fixed) and IF. */
export const USER_RFLAGS_FIXED = 0x202n;

/** MXCSR with every exception masked (bits 7-12, SDM vol. 1 §10.2.3): unmasked SSE exceptions would kill the test process. */
export const MXCSR_MASKS = 0x1f80;

export function cloneState(s: SnippetState): SnippetState {
  return { gpr: [...s.gpr], rflags: s.rflags, xmm: Uint8Array.from(s.xmm), mxcsr: s.mxcsr, mem: Uint8Array.from(s.mem) };
}

export function flagNames(mask: number): string {
  const names: string[] = [];
  for (const [bit, name] of [[CF, 'CF'], [PF, 'PF'], [AF, 'AF'], [ZF, 'ZF'], [SF, 'SF'], [DF, 'DF'], [OF, 'OF']] as const) if (mask & bit) names.push(name);
  return names.join('|') || '-';
}
