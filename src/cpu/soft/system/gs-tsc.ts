// SWAPGS and RDTSCP (0F 01 F8, 0F 01 F9), shared by the interpreter (./tables-ops.ts decodes 0F 01), the block
// cache's fast forms and the wasm translator's helper `sy` (../fast-forms.ts). In a module of their own: RDTSCP reads
// an MSR, and ./msr.ts imports ./control.ts, which the fast forms import too (a cycle would leave one uninitialized).
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { loadTscIntoEdxEax } from './control.ts';
import { MSR, storedMsr } from './msr.ts';

/** SWAPGS (0F 01 F8); also the block cache's form and the wasm translator's helper (../fast-forms.ts execSy). */
export function swapgs(cpu: SoftCpu): void {
  if (!cpu.mode64) cpu.ud();
  if (cpu.cpl !== 0) cpu.gp(0);
  const base = cpu.segBase[C.GS];
  cpu.segBase[C.GS] = cpu.kernelGsBase;
  cpu.kernelGsBase = base;
}

/** RDTSCP (0F 01 F9); also the block cache's form and the wasm translator's helper (../fast-forms.ts execSy). */
export function rdtscp(cpu: SoftCpu): void {
  if ((cpu.cr4 & C.CR4_TSD) && cpu.cpl !== 0) cpu.gp(0); // CPL is 3 in virtual-8086 mode, 0 in real mode
  loadTscIntoEdxEax(cpu);
  cpu.setReg(4, 1, Number(storedMsr(cpu, MSR.TSC_AUX) & 0xffffffffn) | 0); // ECX = IA32_TSC_AUX
}
