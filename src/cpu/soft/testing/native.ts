// Runs a snippet of user-mode x86-64 code natively on the host CPU, at the fixed addresses of layout.ts,
// and returns the register, flag, SSE and scratch-memory state it leaves. The reference side of the
// differential test of the software CPU.
//
// One RWX mapping at REGION_BASE holds a trampoline, a state block, the snippet and its scratch area. The
// trampoline (called through koffi as `void run(void *)`) saves the callee-saved host registers and MXCSR,
// loads XMM0-15, MXCSR, RFLAGS and all sixteen GPRs (RSP too: the snippet runs on a stack inside the scratch
// area) from the state block and jumps to the snippet. The snippet is followed by `jmp EPILOGUE`, which stores
// everything back, clears DF (the SysV ABI requires it on return) and restores the host state.
// The state block sits at a fixed address, so the trampoline uses absolute [disp32] operands and never needs a
// register to find it: the snippet may clobber every register.
//
// A snippet that faults (SIGSEGV, SIGFPE, SIGILL) kills the process: callers must only run code that cannot fault.
import { koffi, libc, lastErrno, SysError, PROT_READ, PROT_WRITE, PROT_EXEC, MAP_PRIVATE, MAP_ANONYMOUS } from '../../../sys/libc.ts';
import {
  REGION_BASE, REGION_SIZE, TRAMPOLINE, EPILOGUE, STATE_BLOCK, CODE_BASE, CODE_SIZE, SCRATCH_BASE, SCRATCH_SIZE,
  SNIPPET_FLAGS, MXCSR_MASKS, type SnippetState,
} from './layout.ts';

// Offsets inside the state block; the trampoline below has them built in.
const S_GPR = 0x00;
const S_RFLAGS = 0x80;
const S_MXCSR = 0x88;
const S_XMM = 0x100;

/**
 * The trampoline, assembled with GNU as from this source (intel syntax) with BASE=0x70000000,
 * STATE=BASE+0x1000, S_RFLAGS=STATE+0x80, S_MXCSR=STATE+0x88, HOST_RSP=STATE+0x90, HOST_MXCSR=STATE+0x98,
 * S_XMM=STATE+0x100, SNIPPET=BASE+0x2000:
 *
 *   entry (offset 0):
 *     push rbx; push rbp; push r12; push r13; push r14; push r15
 *     mov [HOST_RSP], rsp; stmxcsr [HOST_MXCSR]; ldmxcsr [S_MXCSR]
 *     movdqu xmmN, [S_XMM+N*16]            (N = 0..15)
 *     push qword ptr [S_RFLAGS]; popfq      (on the host stack, before RSP is switched)
 *     mov <gpr N>, [STATE+N*8]              (N = 0..15, RSP included)
 *     jmp SNIPPET
 *   epilogue (offset 0x200):
 *     mov [STATE+N*8], <gpr N>              (N = 0..15)
 *     mov rsp, [HOST_RSP]; pushfq; pop qword ptr [S_RFLAGS]; cld
 *     movdqu [S_XMM+N*16], xmmN
 *     stmxcsr [S_MXCSR]; ldmxcsr [HOST_MXCSR]
 *     pop r15; pop r14; pop r13; pop r12; pop rbp; pop rbx; ret
 */
const TRAMPOLINE_HEX =
  '5355415441554156415748892425901000700fae1c25981000700fae142588100070f30f6f042500110070f30f6f0c2510110070f30f6f142520110070f30f6f' +
  '1c2530110070f30f6f242540110070f30f6f2c2550110070f30f6f342560110070f30f6f3c2570110070f3440f6f042580110070f3440f6f0c2590110070f344' +
  '0f6f1425a0110070f3440f6f1c25b0110070f3440f6f2425c0110070f3440f6f2c25d0110070f3440f6f3425e0110070f3440f6f3c25f0110070ff3425801000' +
  '709d488b042500100070488b0c2508100070488b142510100070488b1c2518100070488b242520100070488b2c2528100070488b342530100070488b3c253810' +
  '00704c8b0425401000704c8b0c25481000704c8b1425501000704c8b1c25581000704c8b2425601000704c8b2c25681000704c8b3425701000704c8b3c257810' +
  '0070e9b91e0000' + '00'.repeat(0x200 - 0x147) +
  '488904250010007048890c2508100070488914251010007048891c2518100070488924252010007048892c2528100070488934253010007048893c2538100070' +
  '4c890425401000704c890c25481000704c891425501000704c891c25581000704c892425601000704c892c25681000704c893425701000704c893c2578100070' +
  '488b2425901000709c8f042580100070fcf30f7f042500110070f30f7f0c2510110070f30f7f142520110070f30f7f1c2530110070f30f7f242540110070f30f' +
  '7f2c2550110070f30f7f342560110070f30f7f3c2570110070f3440f7f042580110070f3440f7f0c2590110070f3440f7f1425a0110070f3440f7f1c25b01100' +
  '70f3440f7f2425c0110070f3440f7f2c25d0110070f3440f7f3425e0110070f3440f7f3c25f01100700fae1c25881000700fae142598100070415f415e415d41' +
  '5c5d5bc3';

/** Linux: fail with EEXIST instead of replacing whatever is mapped at the address (mman-common.h). */
const MAP_FIXED_NOREPLACE = 0x100000;
const mmapFixed = libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)');
const RUN_PROTO = koffi.proto('void ringzero_snippet_run(void *state)');

interface Region { bytes: Uint8Array; view: DataView; run: (state: null) => void }
let region: Region | undefined;

function mapRegion(): Region {
  if (region) return region;
  const p = mmapFixed(BigInt(REGION_BASE), REGION_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  const address = typeof p === 'bigint' ? p : BigInt(koffi.address(p));
  if (address !== BigInt(REGION_BASE)) {
    const errno = lastErrno();
    throw new SysError(`mmap at fixed 0x${REGION_BASE.toString(16)} (got 0x${address.toString(16)})`, errno);
  }
  const buffer = koffi.view(p, REGION_SIZE) as ArrayBuffer;
  const bytes = new Uint8Array(buffer);
  bytes.set(Buffer.from(TRAMPOLINE_HEX, 'hex'), TRAMPOLINE - REGION_BASE);
  const fn = koffi.decode(p, RUN_PROTO) as (state: null) => void;
  region = { bytes, view: new DataView(buffer), run: fn };
  return region;
}

/** `jmp rel32` from `from` to `to` (E9 cd, SDM vol. 2 JMP). */
export function jmpRel32(from: number, to: number): Uint8Array {
  const out = new Uint8Array(5);
  out[0] = 0xe9;
  new DataView(out.buffer).setInt32(1, to - (from + 5), true);
  return out;
}

/** Maximum snippet length: the code page minus the closing jump. */
export const MAX_SNIPPET = CODE_SIZE - 5;

/** Run `code` natively from state `s`; returns the state it leaves. `s` is not modified. */
export function runNative(code: Uint8Array, s: SnippetState): SnippetState {
  if (code.length > MAX_SNIPPET) throw new RangeError(`snippet of ${code.length} bytes is larger than ${MAX_SNIPPET}`);
  if ((s.mxcsr & MXCSR_MASKS) !== MXCSR_MASKS) throw new RangeError('MXCSR must mask every SIMD exception for a native run');
  const r = mapRegion();
  const { bytes, view } = r;
  const codeOff = CODE_BASE - REGION_BASE;
  bytes.set(code, codeOff);
  bytes.set(jmpRel32(CODE_BASE + code.length, EPILOGUE), codeOff + code.length);
  const st = STATE_BLOCK - REGION_BASE;
  for (let i = 0; i < 16; i++) view.setBigUint64(st + S_GPR + i * 8, BigInt.asUintN(64, s.gpr[i]), true);
  // Only the snippet-controllable flags: TF would trap, AC would make misaligned accesses fault.
  view.setBigUint64(st + S_RFLAGS, (s.rflags & BigInt(SNIPPET_FLAGS)) | 0x202n, true);
  view.setUint32(st + S_MXCSR, s.mxcsr >>> 0, true);
  bytes.set(s.xmm.subarray(0, 256), st + S_XMM);
  bytes.set(s.mem.subarray(0, SCRATCH_SIZE), SCRATCH_BASE - REGION_BASE);
  r.run(null);
  const gpr: bigint[] = [];
  for (let i = 0; i < 16; i++) gpr.push(view.getBigUint64(st + S_GPR + i * 8, true));
  return {
    gpr,
    rflags: view.getBigUint64(st + S_RFLAGS, true),
    xmm: bytes.slice(st + S_XMM, st + S_XMM + 256),
    mxcsr: view.getUint32(st + S_MXCSR, true),
    mem: bytes.slice(SCRATCH_BASE - REGION_BASE, SCRATCH_BASE - REGION_BASE + SCRATCH_SIZE),
  };
}
