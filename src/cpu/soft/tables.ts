// Opcode dispatch tables. Instruction families (./ops/*.ts, ./system/*.ts) fill them when imported
// (./index.ts imports them all). An empty slot raises #UD and logs the opcode once, as the issue asks.
import type { OpHandler, SoftCpu } from './cpu.ts';

const hex2 = (n: number) => n.toString(16).padStart(2, '0');

/** One-byte opcodes. */
export const ops1: OpHandler[] = new Array(256);
/** Two-byte opcodes 0F xx. */
export const ops0f: OpHandler[] = new Array(256);
/** Three-byte opcodes 0F 38 xx and 0F 3A xx. */
export const ops0f38: OpHandler[] = new Array(256);
export const ops0f3a: OpHandler[] = new Array(256);

for (let i = 0; i < 256; i++) {
  ops1[i] = (c: SoftCpu) => c.unimplemented(`opcode ${hex2(i)}`);
  ops0f[i] = (c: SoftCpu) => c.unimplemented(`opcode 0f ${hex2(i)}`);
  ops0f38[i] = (c: SoftCpu) => c.unimplemented(`opcode 0f 38 ${hex2(i)}`);
  ops0f3a[i] = (c: SoftCpu) => c.unimplemented(`opcode 0f 3a ${hex2(i)}`);
}
ops0f[0x38] = (c: SoftCpu) => { const b = c.fetch8(); c.opcode = 0x3800 | b; ops0f38[b](c); };
ops0f[0x3a] = (c: SoftCpu) => { const b = c.fetch8(); c.opcode = 0x3a00 | b; ops0f3a[b](c); };

/** Register `handler` for one-byte opcode `op` (or a range [op, last]). */
export function def1(op: number, handler: OpHandler, last = op): void {
  for (let i = op; i <= last; i++) ops1[i] = handler;
}

export function def0f(op: number, handler: OpHandler, last = op): void {
  for (let i = op; i <= last; i++) ops0f[i] = handler;
}

/**
 * Opcode FF's ModRM.reg extensions (/0 inc, /1 dec, /2 call near, /3 call far, /4 jmp near, /5 jmp far, /6 push).
 * ops1[0xff] decodes the ModRM byte first, so an entry starts with `cpu.modrm`/`mod`/`rm`/`eaOff` already set.
 */
export const groupFF: OpHandler[] = new Array(8);
for (let i = 0; i < 8; i++) groupFF[i] = (c: SoftCpu) => c.unimplemented(`opcode ff /${i}`);
ops1[0xff] = (c: SoftCpu) => { c.decodeModrm(); groupFF[(c.modrm >> 3) & 7](c); };
