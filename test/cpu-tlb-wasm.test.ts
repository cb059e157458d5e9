// Translated code's view of the first-level TLB (src/cpu/soft/cpu.ts SoftCpu.wtlb, probed by
// src/cpu/soft/wasm/tlb-probe.ts): an integer tag (the page's linear address), an addend and the physical page, filled
// only for pages of low RAM that lie entirely inside it, and always either empty or the same page as the
// interpreter's entry of that slot (fillTlb, flushTlb, invalidatePage write both). The probe compares the tag with
// the page of an access's last byte in the slot of its first byte's page, so an access crossing a page end misses
// as long as a page sharing its predecessor's slot gets no entry (tlbEdge), nor do the two pages where the last byte
// can be mapped while the first is not (page 0, after a wrap at 2^64, and the first canonical page of the upper half).
import test from 'node:test';
import assert from 'node:assert/strict';
import { hexBytes, runBlocksToHalt, cpuState, CODE, DATA, PAGE_TABLES, translatorMachine, interpreterOrWasmMachine, type Machine } from './support/soft-cpu.ts';
import * as C from '../src/cpu/soft/constants.ts';
import { ModuleBuilder, Body, I32, I64 } from '../src/cpu/soft/wasm/emit.ts';
import { emitTlbSlot } from '../src/cpu/soft/wasm/tlb-probe.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { tlbSlot } from '../src/cpu/soft/cpu.ts';
import type { GuestMemory } from '../src/memory/guest-memory.ts';

setHotThreshold(0);
setJitThreshold(0);

const memories: GuestMemory[] = [];
/**
 * The first window end (16 MiB, at 26 GiB) whose two pages share a first-level slot (tlbSlot: w * MIX = 0x30e mod
 * 2048, here w = 0x61a): the last page of the window and WEND's.
 */
const WEND = 0x61b000000;
test.after(() => { for (const m of memories) m.close(); });

test('a page that shares its predecessor\'s slot (a 16 MiB window end) never gets an entry in the wasm view', () => {
  let n = 0;
  for (let w = 0; w < 1 << 20; w++) {
    const v = w * 4096 + 0x1000;
    if (tlbSlot(v) === tlbSlot(v - 1)) n++;
  }
  assert.equal(n, 512, 'window ends where two consecutive pages share a slot (of 2^20)');
  assert.equal(tlbSlot(WEND / 4096), tlbSlot(WEND / 4096 - 1), 'WEND is one');
});

/** Check every entry of the wasm view against the interpreter's; returns how many it holds. */
function checkViews(m: Machine): number {
  const c = m.cpu, wt = c.wtlb!, tlb = c.tlb, pfnOf = c.tlbPfn, ram = c.ramSize;
  let held = 0;
  for (let e = 0; e < 6 * 4096; e++) {
    const lo = wt[4 * e], vpn = tlb[2 * e];
    const edge = vpn === 0 || vpn === -(2 ** 35) || ((vpn & 0xfff) === 0 && tlbSlot(vpn - 1) === tlbSlot(vpn));
    const jsRam = !Number.isNaN(vpn) && pfnOf[4 * e + 2] * 4096 + 4096 <= ram && !edge;
    if ((lo & 0xfff) !== 0) {
      assert.equal(lo, -1, `entry ${e}: empty is -1`);
      assert.ok(!jsRam, `entry ${e}: the interpreter's page ${vpn} is in RAM, translated code's entry is empty`);
      continue;
    }
    held++;
    const lin = wt[4 * e + 1] * 2 ** 32 + (lo >>> 0);
    assert.equal(lin / 4096, vpn, `entry ${e}: the same page as the interpreter's`);
    const pfn = pfnOf[4 * e + 2];
    assert.equal(wt[4 * e + 3] >>> 0, pfn, `entry ${e}: physical page`);
    assert.equal(wt[4 * e + 2], (pfn * 4096 - lin) | 0, `entry ${e}: addend`);
    assert.ok(pfn * 4096 + 4096 <= ram, `entry ${e}: a page of low RAM`);
  }
  return held;
}

test('the wasm view holds exactly the interpreter\'s entries of RAM pages, over fills, CR3-style and full flushes and INVLPG', () => {
  const m = translatorMachine(true, memories);
  const c = m.cpu;
  let x = 777, held = 0;
  for (let round = 0; round < 30; round++) {
    for (let j = 0; j < 400; j++) {
      x = (Math.imul(x, 1103515245) + 12345) | 0;
      // (the 1 GiB identity map: RAM below 64 MiB, nothing above; page 0 too)
      const va = ((x >>> 4) % 0x6000) * 4096 + (x & 0xff8);
      // (no writes below 2 MiB: the page tables are there)
      if ((x >>> 30) & 1 && va >= 0x200000) c.writeLin(va, 4, j); else c.readLin(va, 4);
    }
    held += checkViews(m);
    if (round % 3 === 0) c.invalidatePage(((x >>> 4) % 0x6000) * 4096);
    else if (round % 3 === 1) c.flushTlb(false);
    else c.flushTlb(true);
    checkViews(m);
  }
  assert.ok(held > 1000, `entries held in the wasm view: ${held}`);
});

// mov ecx,200
// 1: mov eax,[rsi] / add r8,rax / mov ebx,[rdi] / add r9,rbx / mov eax,[rdx] / add r10,rax / mov [rbp],ecx
//    mov eax,[r13] / dec ecx / jnz 1b
// mov eax,[r11] / hlt
// A self-looping block (inline probes): rsi reads RAM, rdi a page outside RAM (64 MiB of RAM; the bus answers all
// ones), rdx 4 bytes across the end of RAM (2 in its last page, 2 outside), rbp stores into RAM, r13 reads linear
// page 0. Then, through the memory library, a load at 2^64 - 2, whose last bytes wrap to page 0: the upper half's top
// is not mapped, so it must fault (#PF) though page 0 is in the interpreter's TLB.
const LOOP = hexBytes('b9 c8 00 00 00 8b 06 49 01 c0 8b 1f 49 01 d9 8b 02 49 01 c2 89 4d 00 41 8b 45 00 ff c9 75 e6 41 8b 03 f4');

function runLoop(mode: 'interpreter' | 'wasm'): { m: Machine; state: unknown } {
  const m = interpreterOrWasmMachine(mode, memories);
  m.mem.write(CODE, Uint8Array.from(LOOP));
  m.mem.write(DATA, Uint8Array.from([1, 2, 3, 4]));
  m.mem.write(0x3fffffc, Uint8Array.from([9, 8, 7, 6]));
  m.mem.write(0x10, Uint8Array.from([5, 0, 0, 0]));
  const c = m.cpu;
  c.setGpr(6, BigInt(DATA)); c.setGpr(7, 0x5000000n); c.setGpr(2, 0x3fffffen); c.setGpr(5, BigInt(DATA + 0x800));
  c.setGpr(13, 0x10n); c.setGpr(11, -2n);
  const fault = runBlocksToHalt(m, 10_000);
  return { m, state: { ...cpuState(m), vector: fault, stored: Buffer.from(m.mem.read(DATA + 0x800, 4)).toString('hex') } };
}

test('translated code reads RAM, a page outside RAM and across the end of RAM, and faults on a wrap to page 0, as the interpreter does', () => {
  const ref = runLoop('interpreter'), w = runLoop('wasm');
  assert.deepEqual(w.state, ref.state);
  assert.equal((ref.state as { vector: number }).vector, 14, 'the wrapping load faults (#PF)');
  const c = w.m.cpu;
  assert.ok(c.jitInstructions > 1000, `instructions run in wasm: ${c.jitInstructions}`);
  // the page outside RAM and page 0: in the interpreter's read bank, not in translated code's
  for (const vpn of [0x5000, 0]) {
    const e = tlbSlot(vpn);
    assert.equal(c.tlb[2 * e], vpn, `page ${vpn.toString(16)} in the interpreter's read bank`);
    assert.equal(c.wtlb![4 * e], -1, `page ${vpn.toString(16)} not in translated code's`);
  }
  checkViews(w.m);
});

// mov ecx,100
// 1: mov eax,[rsi] / add r8,rax / mov eax,[rdi] / add r9,rax / dec ecx / jnz 1b / hlt
// A self-looping block (inline probes): rsi reads WEND's page, rdi 4 bytes across the window end into it. The two
// sides map to physical pages that are not neighbours (2 MiB pages at 16 MiB and 32 MiB), so a load that took WEND's
// entry for the page of its first byte would read the 2 bytes before 32 MiB.
const CROSS = hexBytes('b9 64 00 00 00 8b 06 49 01 c0 8b 07 49 01 c1 ff c9 75 f2 f4');
const PD_HI = 0x32000;

function runCross(mode: 'interpreter' | 'wasm'): { m: Machine; state: unknown } {
  const m = interpreterOrWasmMachine(mode, memories);
  const v = m.cpu.ramView;
  // (PDPT entry 24: a page directory of its own; its entries 215 and 216 map the 2 MiB pages on each side of WEND)
  m.mem.write(PD_HI, new Uint8Array(4096));
  const f = C.PTE_P | C.PTE_RW | C.PTE_US;
  v.setUint32(PAGE_TABLES + 4096 + 24 * 8, PD_HI | f, true);
  v.setUint32(PD_HI + 215 * 8, 0x1000000 | f | C.PTE_PS, true);
  v.setUint32(PD_HI + 216 * 8, 0x2000000 | f | C.PTE_PS, true);
  m.cpu.flushTlb(true);
  m.mem.write(0x11ffffc, Uint8Array.from([1, 2, 3, 4]));
  m.mem.write(0x1fffffc, Uint8Array.from([5, 6, 7, 8]));
  m.mem.write(0x2000000, Uint8Array.from([9, 10, 11, 12]));
  m.mem.write(CODE, Uint8Array.from(CROSS));
  m.cpu.setGpr(6, BigInt(WEND)); m.cpu.setGpr(7, BigInt(WEND - 2));
  const fault = runBlocksToHalt(m, 10_000);
  return { m, state: { ...cpuState(m), vector: fault } };
}

test('a load across the window end into WEND\'s page reads both pages in translated code, with WEND\'s entry in use', () => {
  const ref = runCross('interpreter'), w = runCross('wasm');
  assert.deepEqual(w.state, ref.state);
  // r9: 100 loads of bytes 3 4 9 10 (0x0a090403)
  assert.equal((ref.state as { regs: string[] }).regs[9], (100 * 0x0a090403).toString(16));
  assert.ok(w.m.cpu.jitInstructions > 300, `instructions run in wasm: ${w.m.cpu.jitInstructions}`);
  checkViews(w.m);
});

test('translated code\'s slot of an address (tlb-probe.ts emitTlbSlot) is tlbSlot of its page, for addresses of both halves and past 2^32 pages', () => {
  const m = new ModuleBuilder();
  const b = new Body(1);
  emitTlbSlot(b, 0);
  m.func(m.type([I64], [I32]), b, 'slot');
  const slot = new WebAssembly.Instance(new WebAssembly.Module(m.encode())).exports.slot as (a: bigint) => number;
  let x = 99;
  for (let k = 0; k < 20000; k++) {
    x = (Math.imul(x, 1103515245) + 12345) | 0;
    const hi = k % 4 === 0 ? -1 - (x & 0xffff) : k % 4 === 1 ? x & 0x7fff : k % 4 === 2 ? x : (x >>> 16);
    const a = (BigInt(hi) << 32n) | BigInt((Math.imul(x, 0x9e3779b1) >>> 0));
    const vpn = Number(a >> 12n);
    assert.equal(slot(a), tlbSlot(vpn) << 4, `address ${a.toString(16)}`);
  }
});
