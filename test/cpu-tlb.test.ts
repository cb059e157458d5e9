// The software CPU's two-level TLB (src/cpu/soft/cpu.ts): the first level is direct-mapped on a 12-bit slot of the
// page number (tlbSlot; translated code probes it inline), the second level refills it without a page walk. Pages
// 64 GiB apart share a first-level slot; the second level must make their alternation walk-free, and must never outlive
// what the architecture lets a TLB keep (SDM vol. 3A §4.10): INVLPG, CR3 loads (non-global pages), full flushes,
// permissions it did not see (a write to a clean page walks and sets D; a user access to a supervisor page faults).
import test from 'node:test';
import assert from 'node:assert/strict';
import { longModeMachine, PAGE_TABLES, type Machine } from './support/soft-cpu.ts';
import { CPU_FAULT } from '../src/cpu/soft/index.ts';
import * as C from '../src/cpu/soft/constants.ts';

/** setupFlatLongMode's PDPT and page directory (identity, 2 MiB pages), and 4 KiB page tables we put under them. */
const PDPT = PAGE_TABLES + 4096, PD = PAGE_TABLES + 8192;
const PT_A = 0x30000, PT_B = 0x31000, PD_B = 0x32000;
/**
 * Two 2 MiB windows mapped with 4 KiB pages, 64 GiB apart: the same first-level TLB slots page for page (tlbSlot
 * mixes the 16 MiB window number, mod 4096, into the slot: pages 16 MiB apart no longer share one).
 */
const WIN_A = 0x1000000, WIN_B = 64 * 2 ** 30 + 0x1000000;

function setup(): Machine {
  const m = longModeMachine();
  const pd = (va: number, v: number) => m.cpu.ramView.setUint32(PD + (va / 0x200000) * 8, v, true);
  m.mem.write(PT_A, new Uint8Array(4096));
  m.mem.write(PT_B, new Uint8Array(4096));
  pd(WIN_A, PT_A | C.PTE_P | C.PTE_RW | C.PTE_US);
  // (WIN_B: PDPT entry 64, a page directory of its own, its entry 8)
  m.mem.write(PD_B, new Uint8Array(4096));
  m.cpu.ramView.setUint32(PDPT + 64 * 8, PD_B | C.PTE_P | C.PTE_RW | C.PTE_US, true);
  m.cpu.ramView.setUint32(PD_B + 8 * 8, PT_B | C.PTE_P | C.PTE_RW | C.PTE_US, true);
  m.cpu.cr4 |= C.CR4_PGE;
  m.cpu.flushTlb(true);
  return m;
}

/** Map 4 KiB page `va` (in WIN_A or WIN_B) to `pa` with PTE flags. */
function map(m: Machine, va: number, pa: number, flags: number): void {
  const pt = va >= WIN_B ? PT_B : PT_A;
  const base = va >= WIN_B ? WIN_B : WIN_A;
  m.cpu.ramView.setUint32(pt + ((va - base) / 4096) * 8, pa | flags, true);
}
const pte = (m: Machine, va: number) => m.cpu.ramView.getUint32((va >= WIN_B ? PT_B : PT_A) + ((va - (va >= WIN_B ? WIN_B : WIN_A)) / 4096) * 8, true);

function fault(fn: () => void): number {
  try { fn(); } catch (e) { if (e !== CPU_FAULT) throw e; return -1; }
  return 0;
}

test('pages 64 GiB apart alternate without page walks once both are known', () => {
  const m = setup();
  const c = m.cpu;
  const P = C.PTE_P | C.PTE_RW | C.PTE_A | C.PTE_D;
  for (let k = 0; k < 8; k++) {
    map(m, WIN_A + k * 4096, 0x100000 + k * 4096, P);
    map(m, WIN_B + k * 4096, 0x200000 + k * 4096, P);
    c.ramView.setUint32(0x100000 + k * 4096, 0xa0 + k, true);
    c.ramView.setUint32(0x200000 + k * 4096, 0xb0 + k, true);
  }
  for (let k = 0; k < 8; k++) { c.readLin(WIN_A + k * 4096, 4); c.readLin(WIN_B + k * 4096, 4); }
  const walks = c.tlbWalks, hits = c.tlbL2Hits;
  for (let round = 0; round < 10; round++) {
    for (let k = 0; k < 8; k++) {
      assert.equal(c.readLin(WIN_A + k * 4096 + 4 * round, 4), round === 0 ? 0xa0 + k : 0);
      assert.equal(c.readLin(WIN_B + k * 4096, 4), 0xb0 + k);
    }
  }
  assert.equal(c.tlbWalks, walks, 'no walk');
  assert.ok(c.tlbL2Hits - hits >= 150, `second-level refills: ${c.tlbL2Hits - hits}`);
});

test('INVLPG and CR3 loads drop second-level entries; global pages survive a CR3 load only', () => {
  const m = setup();
  const c = m.cpu;
  const P = C.PTE_P | C.PTE_RW | C.PTE_A | C.PTE_D;
  c.ramView.setUint32(0x100000, 0x11, true);
  c.ramView.setUint32(0x101000, 0x22, true);
  c.ramView.setUint32(0x102000, 0x33, true);
  map(m, WIN_A, 0x100000, P);
  map(m, WIN_B, 0x102000, P); // evicts WIN_A from the first level on every use
  assert.equal(c.readLin(WIN_A, 4), 0x11);
  assert.equal(c.readLin(WIN_B, 4), 0x33);
  // Remap WIN_A without telling the CPU: a TLB may keep the old translation...
  map(m, WIN_A, 0x101000, P);
  assert.equal(c.readLin(WIN_A, 4), 0x11, 'stale until invalidated (from the second level)');
  // ...until INVLPG.
  c.invalidatePage(WIN_A);
  assert.equal(c.readLin(WIN_A, 4), 0x22, 'INVLPG drops it from both levels');
  assert.equal(c.readLin(WIN_B, 4), 0x33);
  // A CR3 load (non-global flush) drops non-global pages; a global one stays until a full flush.
  map(m, WIN_A, 0x100000, P | C.PTE_G);
  c.invalidatePage(WIN_A);
  assert.equal(c.readLin(WIN_A, 4), 0x11);
  assert.equal(c.readLin(WIN_B, 4), 0x33); // WIN_A now lives in the second level only
  map(m, WIN_A, 0x101000, P | C.PTE_G);
  map(m, WIN_B, 0x101000, P);
  c.flushTlb(false);
  assert.equal(c.readLin(WIN_B, 4), 0x22, 'non-global page re-walked after the CR3 load');
  assert.equal(c.readLin(WIN_A, 4), 0x11, 'global page kept across the CR3 load');
  c.flushTlb(true);
  assert.equal(c.readLin(WIN_A, 4), 0x22, 'global page re-walked after a full flush');
});

test('the second level grants only what a walk allowed: D set by the first write, user access to supervisor pages fault', () => {
  const m = setup();
  const c = m.cpu;
  map(m, WIN_A, 0x100000, C.PTE_P | C.PTE_RW | C.PTE_US); // clean, not accessed, user page
  map(m, WIN_B, 0x102000, C.PTE_P | C.PTE_RW); // supervisor page
  c.readLin(WIN_A, 4);
  assert.equal(pte(m, WIN_A) & (C.PTE_A | C.PTE_D), C.PTE_A, 'a read sets A only');
  c.readLin(WIN_B, 4); // evicts WIN_A from the first level
  c.writeLin(WIN_A, 4, 0x5555);
  assert.equal(pte(m, WIN_A) & C.PTE_D, C.PTE_D, 'the first write walks and sets D');
  assert.equal(c.ramView.getUint32(0x100000, true), 0x5555);
  // Supervisor translation of WIN_B is known to both levels; a CPL-3 access must still fault (#PF, P|U).
  c.readLin(WIN_A, 4);
  c.cpl = 3;
  assert.equal(fault(() => c.readLin(WIN_B, 4)), -1, 'user read of a supervisor page faults');
  assert.equal(c.faultVector, C.EXC_PF);
  assert.equal(c.faultError & (C.PFEC_P | C.PFEC_U), C.PFEC_P | C.PFEC_U);
  assert.equal(c.readLin(WIN_A, 4), 0x5555, 'user read of the user page');
  c.cpl = 0;
  // A read-only page stays read-only for supervisor writes with CR0.WP.
  map(m, WIN_A + 4096, 0x101000, C.PTE_P | C.PTE_A | C.PTE_D);
  map(m, WIN_B + 4096, 0x103000, C.PTE_P | C.PTE_RW | C.PTE_A | C.PTE_D);
  c.readLin(WIN_A + 4096, 4);
  c.readLin(WIN_B + 4096, 4);
  assert.equal(fault(() => c.writeLin(WIN_A + 4096, 4, 1)), -1, 'write to a read-only page faults');
  assert.equal(c.faultError & (C.PFEC_P | C.PFEC_W), C.PFEC_P | C.PFEC_W);
});

test('a CR3-style flush (non-global entries) empties exactly the non-global slots, over many fills and flushes', () => {
  // The flush visits only the slots filled since the last full flush (SoftCpu.tlbList): checked against every slot.
  const m = setup();
  const c = m.cpu;
  const P = C.PTE_P | C.PTE_RW | C.PTE_A | C.PTE_D;
  for (let k = 0; k < 512; k++) {
    map(m, WIN_A + k * 4096, 0x100000 + k * 4096, P | (k % 3 === 0 ? C.PTE_G : 0));
    map(m, WIN_B + k * 4096, 0x100000 + k * 4096, P | (k % 5 === 0 ? C.PTE_G : 0));
  }
  const tlb = c.tlb; // (entry e = bank << 12 | slot: tag at e * 2, physical page at e * 2 + 1)
  const global = (c as unknown as { tlbGlobal: Uint8Array }).tlbGlobal;
  let x = 12345;
  for (let round = 0; round < 40; round++) {
    // fill a pseudo-random set of pages (both windows: slot collisions; reads and writes)
    for (let j = 0; j < 300; j++) {
      x = (Math.imul(x, 1103515245) + 12345) | 0;
      const k = (x >>> 8) & 511, va = ((x >>> 20) & 1 ? WIN_B : WIN_A) + k * 4096;
      if ((x >>> 21) & 1) c.writeLin(va, 4, j); else c.readLin(va, 4);
    }
    if (round % 10 === 9) { c.flushTlb(true); assert.ok(tlb.every((t, k) => k % 2 === 1 || Number.isNaN(t)), 'full flush'); continue; }
    const before = Float64Array.from(tlb);
    c.flushTlb(false);
    for (let i = 0; i < 4096; i++) {
      for (let bank = 0; bank < 6; bank++) {
        const e = (bank << 12) | i, t = e * 2;
        if (global[e]) assert.ok(Object.is(tlb[t], before[t]) && Object.is(tlb[t + 1], before[t + 1]), `global slot ${i} bank ${bank} kept`);
        else assert.ok(Number.isNaN(tlb[t]), `non-global slot ${i} bank ${bank} emptied (round ${round})`);
      }
    }
    // and the translations still come out right after the flush
    assert.equal(c.translate(WIN_A + 7 * 4096 + 5, 0, false), 0x100000 + 7 * 4096 + 5);
  }
});
