// System instructions and event delivery of the software CPU. Importing this module registers them all:
// interrupt/exception delivery (installed into cpu.ts), segment loads, far transfers and IRET, fast system
// calls, the descriptor-table instructions, and D2's control-register/MSR/CPUID/TSC instructions.
import './control.ts';
import './msr.ts';
import './cpuid.ts';
import './interrupts.ts';
import './segments.ts';
import './far.ts';
import './fastcall.ts';
import './tables-ops.ts';

export { deliverEvent, iret } from './interrupts.ts';
export { loadSegment } from './segments.ts';
export { farTransfer, retf } from './far.ts';
