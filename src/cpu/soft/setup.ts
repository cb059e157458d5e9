// Helpers that put a software CPU straight into a mode, for tests and for the 64-bit boot protocol.
import type { SoftCpu } from './cpu.ts';
import * as C from './constants.ts';

export interface FlatLongModeOptions {
  /** Guest-physical address of a free, 4 KiB-aligned area for the page tables (needs 4 KiB * (2 + GiB mapped)). */
  pml4: number;
  /** Bytes to identity-map from address 0 with 2 MiB pages (rounded up to 1 GiB). */
  identityMapBytes: number;
  cpl: 0 | 3;
}

/**
 * 64-bit mode, flat segments, identity paging with 2 MiB pages (writable, user-accessible), SSE enabled.
 * Used by tests (and the differential suite) that run small programs without firmware.
 */
export function setupFlatLongMode(cpu: SoftCpu, opts: FlatLongModeOptions): void {
  const mem = cpu.mem;
  const gib = Math.max(1, Math.ceil(opts.identityMapBytes / 2 ** 30));
  const pml4 = opts.pml4;
  const pdpt = pml4 + 4096;
  const pd0 = pml4 + 8192;
  const table = mem.slice(pml4, 4096 * (2 + gib));
  table.fill(0);
  const dv = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const flags = C.PTE_P | C.PTE_RW | C.PTE_US;
  dv.setUint32(0, pdpt | flags, true);
  for (let g = 0; g < gib; g++) {
    dv.setUint32(4096 + g * 8, (pd0 + g * 4096) | flags, true);
    for (let e = 0; e < 512; e++) {
      const phys = g * 2 ** 30 + e * 2 ** 21;
      const off = 8192 + g * 4096 + e * 8;
      dv.setUint32(off, (phys % 2 ** 32) | flags | C.PTE_PS, true);
      dv.setUint32(off + 4, Math.floor(phys / 2 ** 32), true);
    }
  }
  cpu.cr0 = C.CR0_PE | C.CR0_PG | C.CR0_ET | C.CR0_NE | C.CR0_WP | C.CR0_MP;
  cpu.cr4 = C.CR4_PAE | C.CR4_OSFXSR | C.CR4_OSXMMEXCPT;
  cpu.cr3 = pml4;
  cpu.efer = C.EFER_LME | C.EFER_LMA | C.EFER_NXE | C.EFER_SCE;
  const rpl = opts.cpl;
  const dpl = rpl << C.SEG_DPL_SHIFT;
  const data = C.SEG_P | C.SEG_S | C.SEG_TYPE_WRITABLE | C.SEG_TYPE_ACCESSED | C.SEG_DB | C.SEG_G | dpl;
  for (const s of [C.ES, C.SS, C.DS, C.FS, C.GS]) cpu.loadSegmentRaw(s, rpl === 3 ? 0x2b : 0x18, 0, 0xffffffff, data);
  cpu.loadSegmentRaw(C.CS, rpl === 3 ? 0x33 : 0x10, 0, 0xffffffff,
    C.SEG_P | C.SEG_S | C.SEG_TYPE_CODE | C.SEG_TYPE_READABLE | C.SEG_TYPE_ACCESSED | C.SEG_L | C.SEG_G | dpl);
  cpu.setFlagsValue(C.FLAGS_FIXED);
  cpu.updateMode();
  cpu.flushTlb(true);
}
