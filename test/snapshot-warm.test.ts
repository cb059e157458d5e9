// Warm code caches across a restore (src/cpu/soft/warm.ts): a snapshot lists the blocks the wasm translator had
// translated; a restore rebuilds them from the restored memory, without executing them, and queues each for
// translation at its first run. Checked: a rebuilt block is exactly what the recorder built; a listed block whose
// bytes no longer match is skipped and one with wrong instruction lengths never runs them; and on a Machine, a block
// the guest runs rarely is translated within a few visits after a restore (with the list) where a cold restore needs
// over a hundred, while a listed block whose bytes changed in the memory image is ignored and the new code runs; the
// same at a live migration's destination (the list comes in the migration's sync message).
// Small guest programs only (no Linux boot). Machine code from GNU as (Intel syntax in the comments).
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CODE, DATA, STACK_TOP, hexBytes, runBlocksToHalt, translatorMachine, type Machine as CpuMachine } from './support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold, HOT_THRESHOLD, WASM_HOT_THRESHOLD, JIT_THRESHOLD, type Block } from '../src/cpu/soft/code-cache.ts';
import { exportWarm, decodeWarm, rebuildBlock, hashBytes, type WarmRecord, type WarmReport, type WarmFileRef } from '../src/cpu/soft/warm.ts';
import type { GuestMemory } from '../src/memory/guest-memory.ts';
import { MiB } from '../src/memory/guest-memory.ts';
import { Machine } from '../src/vmm/machine.ts';
import { makeBzImage } from '../src/boot/synthetic.ts';
import { readSnapshot, MEMORY_FILE, STATE_FILE, WARM_FILE } from '../src/vmm/snapshot.ts';
import { captureConsole } from './support/capture-console.ts';
import { migrateMachine } from '../src/migration/source.ts';
import { receiveMigration } from '../src/migration/destination.ts';
import { tmpDir, config } from './support/counter-guest.ts';

const memories: GuestMemory[] = [];
const dirs: string[] = [];
test.after(() => {
  for (const m of memories) m.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Every field of a block entry the replay, the fast forms and the translators read. */
const FIELDS = ['handler', 'fast', 'form', 'len', 'opLen', 'opsize', 'adsize', 'segOverride', 'rep', 'lock', 'p66', 'rex', 'rexW', 'rexR',
  'rexX', 'rexB', 'opcode', 'a', 'b', 'imm', 'immHi', 'op', 'base', 'index', 'disp', 'size', 'ash', 'bsh', 'scale', 'seg'] as const;

function sameBlock(rebuilt: Block, recorded: Block): string[] {
  const diffs: string[] = [];
  if (rebuilt.n !== recorded.n) return [`${rebuilt.n} entries, recorded ${recorded.n}`];
  for (let k = 0; k < rebuilt.n; k++) {
    for (const f of FIELDS) {
      const a = (rebuilt.entries[k] as unknown as Record<string, unknown>)[f], b = (recorded.entries[k] as unknown as Record<string, unknown>)[f];
      if (a !== b) diffs.push(`entry ${k} ${f}: ${String(a)} vs ${String(b)}`);
    }
  }
  return diffs;
}

/** A wasm-translating CPU (every block recorded at its first run and translated at its first replay) that ran `code`. */
function translatedRun(code: number[]): CpuMachine {
  setHotThreshold(0);
  setJitThreshold(0);
  try {
    const m = translatorMachine(true, memories);
    m.cpu.setGpr(4, BigInt(STACK_TOP));
    m.mem.write(CODE, Uint8Array.from(code));
    assert.equal(runBlocksToHalt(m, 100_000), -1, 'the program runs to its HLT');
    assert.ok(m.cpu.halted);
    return m;
  } finally {
    setHotThresholds();
  }
}
// The defaults, set again after a phase that changed them (the wasm recording threshold, 5, is the one the Machines
// below use; setHotThreshold sets the JavaScript paths' one, 2 by default, to the same value, which they do not use).
const DEFAULTS = { hot: HOT_THRESHOLD, wasmHot: WASM_HOT_THRESHOLD, jit: JIT_THRESHOLD };
function setHotThresholds(): void {
  setHotThreshold(DEFAULTS.wasmHot);
  setJitThreshold(DEFAULTS.jit);
}

/*
 * Three passes over assorted forms (as --64, ld -Ttext=0x100000): mov rbx,0x200000; mov r12d,3; top: mov rax,[rbx];
 * add rax,7; lea rcx,[rax+rax*2+5]; imul rdx,rcx,13; xor edx,ecx; mov [rbx+8],rdx; mov word [rbx+16],ax; add ax,3;
 * movzx esi,byte [rbx+17]; movsx rdi,word [rbx+16]; cmp rsi,rdi; cmovg rsi,rdi; setne r8b; shl rdx,3; sar rcx,1;
 * ror eax,5; bswap eax; bsf r9,rcx; test r9,r9; jz 1f; inc r9; 1: mov fs:[rbx+0x78],eax; nop dword [rax]; push rax; push 0x1234; pop r10;
 * pop r11; call func; movdqa xmm0,[rbx+0x40]; paddd xmm0,xmm0; pxor xmm0,[rbx+0x50]; nop; movdqu [rbx+0x60],xmm0;
 * lock xadd [rbx+0x70],eax; cld; lea rdi,[rbx+0x100]; mov ecx,8; rep stosb; cqo; mov r13,0x123456789a; adc r13,r13;
 * dec r12d; jnz top; hlt; func: mov eax,[rbx+4]; not eax; neg rax; ret
 */
const ASSORTED = '48c7c30000200041bc03000000488b034883c007488d4c4005486bd10d31ca48895308668943106683c0030fb67311480fbf7b104839fe480f4ff7'
  + '410f95c048c1e20348d1f9c1c8050fc84c0fbcc94d85c9740349ffc1648943780f1f4000506834120000415a415be841000000660f6f4340660ffec0'
  + '660fef435090f30f7f4360f00fc14370fc488dbb00010000b908000000f3aa489949bd9a785634120000004d11ed41ffcc0f855ffffffff48b4304'
  + 'f7d048f7d8c3';

function translatedBlocks(m: CpuMachine): Block[] {
  return [...m.cpu.codeCache.translated.values()].filter((b) => b.wasm !== null && b.mode === 8 && b.gen === m.cpu.codeCache.pageGen[b.pa >>> 12]);
}

test('a block rebuilt from the warm list is the block the recorder built', () => {
  const m = translatedRun(hexBytes(ASSORTED.replace(/(..)/g, '$1 ')));
  const recorded = new Map(translatedBlocks(m).map((b) => [b.pa, b]));
  assert.ok(recorded.size >= 4, `blocks translated: ${recorded.size}`);
  const section = exportWarm([m.cpu]);
  assert.ok(section);
  assert.equal(section.blocks, recorded.size);
  const records = decodeWarm(JSON.parse(JSON.stringify(section)));
  assert.ok(records);
  assert.deepEqual(records.map((r) => r.pa).sort(), [...recorded.keys()].sort());
  for (const r of records) {
    const b = rebuildBlock(m.cpu, r);
    assert.ok(b, `block at ${r.pa.toString(16)} rebuilt`);
    assert.deepEqual(sameBlock(b, recorded.get(r.pa)!), [], `block at ${r.pa.toString(16)}`);
  }
  // (the forms the program was written for are there: SSE, LOCK, REP, FS override, 66h and REX prefixes)
  const opcodes = new Set([...recorded.values()].flatMap((b) => b.entries.map((e) => e.opcode)));
  for (const op of [0x16f, 0x1fe, 0x1ef, 0x1c1, 0xaa, 0x89, 0x1bc, 0x14f]) assert.ok(opcodes.has(op), `opcode ${op.toString(16)} in a translated block`);
});

test('a listed block is skipped when its bytes changed, and wrong instruction lengths never run', () => {
  // mov rbx,0x200000; mov rcx,5; l: add qword [rbx],rcx; add rcx,0x11223344; dec rcx; mov rax,[rbx]; cmp rcx,0x7fffffff;
  // jb l; hlt
  const code = hexBytes('48 c7 c3 00 00 20 00 48 c7 c1 05 00 00 00 48 01 0b 48 81 c1 44 33 22 11 48 ff c9 48 8b 03 48 81 f9 ff ff ff 7f 72 e7 f4');
  const m = translatedRun(code);
  const loop = CODE + 14;
  const section = exportWarm([m.cpu])!;
  const records = decodeWarm(section)!;
  const r = records.find((x) => x.pa === loop);
  assert.ok(r, 'the loop block is listed');
  assert.deepEqual([...r.lens], [3, 7, 3, 3, 7, 2]);
  assert.ok(rebuildBlock(m.cpu, r));
  // one byte of it changed (the ADD's immediate): not rebuilt
  const changed = m.mem.read(loop + 5, 1);
  m.mem.write(loop + 5, Uint8Array.of(changed[0] ^ 1));
  assert.equal(rebuildBlock(m.cpu, r), null, 'a block whose bytes changed is not rebuilt');
  m.mem.write(loop + 5, changed);
  // records whose hash matches but whose shape is not a block's: an instruction shorter than its prefixes and
  // opcode, more instructions than MAX_BLOCK, a block past its page
  const bad = (lens: number[]): WarmRecord => {
    const bytes = lens.reduce((a, b) => a + b, 0);
    return { pa: loop, bytes, hash: hashBytes(m.cpu.ram, loop, bytes), lens: Uint8Array.from(lens) };
  };
  assert.equal(rebuildBlock(m.cpu, bad([1, 9, 3, 3, 7, 2])), null, 'a length shorter than its REX prefix and opcode');
  assert.equal(rebuildBlock(m.cpu, { ...bad([1, 1, 1]), lens: new Uint8Array(33).fill(1), bytes: 33, hash: hashBytes(m.cpu.ram, loop, 33) }), null, '33 instructions');
  assert.equal(rebuildBlock(m.cpu, { ...r, pa: loop + 4096 - 8 }), null, 'past its page');
  // lengths that split instructions yet cover the same bytes (3+7 as 4+6): whatever is rebuilt runs exactly as the
  // code does, as far as it runs: no fast form is kept for a length its decoder disagrees with, and a replayed
  // handler that ends elsewhere than the next entry starts leaves the block there
  const b = rebuildBlock(m.cpu, bad([4, 6, 3, 3, 7, 2]));
  assert.ok(b, 'rebuilt (the lengths are checked as it runs)');
  {
    const ref = translatedRun(code);
    for (const c of [m.cpu, ref.cpu]) { c.setGpr(3, 0x200000n); c.setGpr(1, 5n); c.rip = loop; c.halted = false; c.eventPending = false; }
    m.mem.write(DATA, new Uint8Array(8));
    ref.mem.write(DATA, new Uint8Array(8));
    const k = m.cpu.runBlock(b, 32);
    assert.ok(k >= 1);
    for (let i = 0; i < k; i++) ref.cpu.step();
    assert.equal(m.cpu.rip, ref.cpu.rip, `RIP after ${k} instructions`);
    for (const i of [0, 1, 3]) assert.equal(m.cpu.getGpr(i), ref.cpu.getGpr(i), `register ${i}`);
    assert.deepEqual(m.mem.read(DATA, 8), ref.mem.read(DATA, 8));
  }
  // a section of another layout, or damaged, is ignored as a whole
  assert.equal(decodeWarm({ format: 99, blocks: 1, data: '' }), null);
  assert.equal(decodeWarm({ format: 1, blocks: 1, data: 'not deflate' }), null);
  assert.equal(decodeWarm(undefined), null);
  const file = path.join(tmpDir(), 'warm');
  dirs.push(path.dirname(file));
  fs.writeFileSync(file, Buffer.from(section.data, 'base64'));
  assert.equal(decodeWarm({ format: 1, path: file, crc32: '00000000' }), null, 'a list file that does not match its CRC');
});

/*
 * The Machine-level guest (as --64, ld -Ttext=0; entered at payload offset 0x200, data at payload offset 0x2000 and
 * its stack below payload offset 0x3000, a page apart from the code):
 *   lea rsp,[rip+stack_top]; lea rbx,[rip+data]
 *   loop: call work; add qword [rbx],1; mov rax,[rbx]; test eax,0x3ffff; jnz loop
 *         add qword [rbx+16],1; mov rcx,[rbx+16]; add [rbx+24],rcx; jmp loop      (the rare block: every 2^18 passes)
 *   work: mov rcx,[rbx]; imul rdx,rcx,3; xor [rbx+8],rdx; ret
 */
const LOOP_GUEST = '488d25f92d0000488d1df21d0000e81d00000048830301488b03a9ffff030075ed4883431001488b4b1048014b18ebde488b0b486bd10348315308c3';
const RARE = 0x21;
/** The blocks at `loop` (CALL), after it (ADD..JNZ) and `work`. */
const LOOP = 0x0e, ADD = 0x13, WORK = 0x30;
const DATA_OFF = 0x1e00;

function loopKernel(): string {
  const payload = new Uint8Array(16384);
  payload.set(Buffer.from(LOOP_GUEST, 'hex'), 0x200);
  const dir = tmpDir();
  dirs.push(dir);
  const file = path.join(dir, 'loop.bzImage');
  fs.writeFileSync(file, makeBzImage({ payload }));
  return file;
}

/** Where the guest's code landed in guest-physical memory (found by its bytes: it is there once). */
function codeBase(m: Machine): number {
  const low = Buffer.from(m.mem.low.buffer, m.mem.low.byteOffset, m.mem.low.length);
  const code = Buffer.from(LOOP_GUEST, 'hex');
  const at = low.indexOf(code);
  assert.ok(at >= 0 && low.indexOf(code, at + 1) < 0, 'the guest code is in RAM once');
  return at;
}

const u64 = (m: Machine, gpa: number) => Number(Buffer.from(m.mem.read(gpa, 8)).readBigUInt64LE());

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const translatedAt = (m: Machine, pa: number) => m.vcpus[0].cpu.codeCache.translated.get(pa * 16 + 8)?.wasm != null;

/**
 * Boot the loop guest with every block translated at its first replay (so its rare block is translated after a few
 * visits), and snapshot it once the rare block is translated; the thresholds are the defaults again afterwards.
 */
async function snapshotLoopGuest(): Promise<{ dir: string; base: number }> {
  const dir = path.join(tmpDir(), 'snap');
  dirs.push(path.dirname(dir));
  setJitThreshold(0);
  const m = new Machine(config(loopKernel()), captureConsole());
  try {
    m.loadKernel();
    const base = codeBase(m);
    const run = m.run();
    await until(() => u64(m, base + DATA_OFF + 16) >= 8 && translatedAt(m, base + RARE), 30_000, 'the rare block translated');
    await m.pause();
    setHotThresholds();
    const body = await m.snapshot(dir);
    assert.ok(body.warm && body.warm.blocks >= 4, `blocks listed: ${body.warm?.blocks}`);
    m.requestExit({ kind: 'poweroff' });
    m.resume();
    await run;
    return { dir, base };
  } finally {
    setHotThresholds();
    m.close();
  }
}

/** Restore `dir`, run until the rare block has run `visits` more times, pause; returns the machine (paused, running). */
async function restoreAndRun(dir: string, base: number, visits: number, env: { warm: boolean }): Promise<{ m: Machine; run: Promise<unknown>; report?: WarmReport }> {
  const saved = process.env.RINGZERO_WARM;
  if (!env.warm) process.env.RINGZERO_WARM = '0';
  try {
    const m = Machine.restore(dir, captureConsole());
    const run = m.run();
    const rare0 = u64(m, base + DATA_OFF + 16);
    await until(() => u64(m, base + DATA_OFF + 16) >= rare0 + visits, 60_000, `${visits} visits of the rare block`);
    await m.pause();
    const report = await m.warmup;
    return { m, run, report };
  } finally {
    if (saved === undefined) delete process.env.RINGZERO_WARM; else process.env.RINGZERO_WARM = saved;
  }
}

async function stop(x: { m: Machine; run: Promise<unknown> }): Promise<void> {
  x.m.requestExit({ kind: 'poweroff' });
  x.m.resume();
  await x.run;
  x.m.close();
}

/**
 * Visits of the rare block after the restore: with the list it is rebuilt at the first and queued for translation
 * after RINGZERO_WARM_REPLAYS (10) more runs, then translated at the warm-up's next flush (within 0.1-0.5 s) and
 * compiled in the background; a cold restore records it at the 5th (WASM_HOT_THRESHOLD) and queues it after 100
 * replays more: never within 100 visits.
 */
const VISITS = 100;

test('after a restore the listed blocks are rebuilt when reached and translated within a few runs; a cold restore needs over a hundred', async () => {
  const { dir, base } = await snapshotLoopGuest();
  // (the defaults: a block is recorded at its WASM_HOT_THRESHOLD-th visit and translated after ~100 replays)
  const cold = await restoreAndRun(dir, base, VISITS, { warm: false });
  try {
    assert.equal(cold.report?.ignored, 'RINGZERO_WARM=0');
    assert.ok(!translatedAt(cold.m, base + RARE), `cold: the rare block is not translated after ${VISITS} visits`);
  } finally {
    await stop(cold);
  }
  const warm = await restoreAndRun(dir, base, VISITS, { warm: true });
  try {
    const r = warm.report!;
    assert.equal(r.ignored, undefined);
    assert.ok(r.listed >= 4 && r.rebuilt + r.primedExisting >= 4 && r.rebuilt + r.primedExisting + r.skipped === r.listed, JSON.stringify(r));
    assert.ok(translatedAt(warm.m, base + RARE), `warm: the rare block is translated within ${VISITS} visits (${JSON.stringify(r)})`);
    for (const off of [LOOP, ADD, WORK]) assert.ok(translatedAt(warm.m, base + off), `block +${off.toString(16)} translated`);
  } finally {
    await stop(warm);
  }
});

test('a listed block whose bytes changed in the memory image is ignored: the new code runs', async () => {
  const { dir, base } = await snapshotLoopGuest();
  const { body } = readSnapshot(dir);
  const ref = body.warm as WarmFileRef;
  assert.equal(ref.file, WARM_FILE, 'the list is a file of its own');
  const records = decodeWarm({ format: ref.format, path: path.join(dir, WARM_FILE), crc32: ref.crc32 })!;
  assert.ok(records.some((r) => r.pa === base + ADD), 'the loop block is listed');
  // `add qword [rbx],1` becomes `add qword [rbx],0` in the image (the state's CRC does not cover the memory image)
  const image = path.join(dir, MEMORY_FILE);
  const fd = fs.openSync(image, 'r+');
  try {
    assert.equal(fs.readSync(fd, Buffer.alloc(4), 0, 4, base + ADD), 4);
    fs.writeSync(fd, Uint8Array.of(0), 0, 1, base + ADD + 3);
  } finally {
    fs.closeSync(fd);
  }
  assert.ok(fs.existsSync(path.join(dir, STATE_FILE)));
  const m = Machine.restore(dir, captureConsole());
  const counter = u64(m, base + DATA_OFF);
  const run = m.run();
  try {
    const r = await m.warmup!;
    assert.equal(r.listed, records.length);
    const i0 = m.vcpus[0].cpu.instructions;
    await until(() => m.vcpus[0].cpu.instructions > i0 + 2_000_000, 60_000, 'two million instructions');
    await m.pause();
    // (checked when reached, or at once if the guest had recorded it before the list was read)
    assert.ok(r.skipped >= 1, `the changed block is skipped: ${JSON.stringify(r)}`);
    assert.equal(u64(m, base + DATA_OFF), counter, 'the counter stays: `add [rbx],0` ran, never the listed `add [rbx],1`');
    assert.ok(translatedAt(m, base + ADD), 'the new loop block is translated');
    assert.equal(m.vcpus[0].cpu.codeCache.translated.get((base + ADD) * 16 + 8)!.entries[0].imm, 0);
  } finally {
    await stop({ m, run });
  }
});

test('a migrated guest starts from the source\'s hot-block list: the destination translates the rare block within a few visits', async () => {
  setJitThreshold(0);
  const src = new Machine(config(loopKernel()), captureConsole());
  let dest: Machine | undefined;
  let destRun: Promise<unknown> | undefined;
  src.loadKernel();
  const base = codeBase(src);
  const running = src.run();
  try {
    await until(() => u64(src, base + DATA_OFF + 16) >= 8 && translatedAt(src, base + RARE), 30_000, 'the rare block translated');
    setHotThresholds();
    let gotPort!: (p: number) => void;
    const port = new Promise<number>((r) => { gotPort = r; });
    const incoming = receiveMigration({ host: '127.0.0.1', port: 0, onListening: (a) => gotPort(a.port) }, captureConsole());
    incoming.catch(() => {});
    const result = await migrateMachine(src, { host: '127.0.0.1', port: await port, downtimeMs: 50 });
    assert.equal(result.phase, 'completed');
    dest = await incoming;
    src.requestExit({ kind: 'poweroff' });
    await running;
    destRun = dest.run();
    const rare0 = u64(dest, base + DATA_OFF + 16);
    await until(() => u64(dest!, base + DATA_OFF + 16) >= rare0 + VISITS, 60_000, `${VISITS} visits of the rare block`);
    await dest.pause();
    const r = await dest.warmup;
    assert.ok(r && r.ignored === undefined && r.listed >= 4 && r.rebuilt + r.primedExisting >= 4, `the list came along: ${JSON.stringify(r)}`);
    assert.ok(translatedAt(dest, base + RARE), `the rare block is translated within ${VISITS} visits at the destination`);
  } finally {
    setHotThresholds();
    src.requestExit({ kind: 'poweroff' });
    await running;
    src.close();
    if (dest) {
      dest.requestExit({ kind: 'poweroff' });
      dest.resume();
      await destRun;
      dest.close();
    }
  }
});
