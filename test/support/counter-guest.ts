// The counter guest of the snapshot tests: a tiny synthetic kernel that programs the 8259 pair and the 8254 (channel 0,
// mode 2, 100 Hz), takes the timer interrupt through its own IDT, and prints a counter on COM1 for every tick (4 hex
// digits and a newline), powering off through ACPI when the counter reaches its limit.
import fs from 'node:fs';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { makeBzImage } from '../../src/boot/synthetic.ts';
import type { VmConfig } from '../../src/vmm/config.ts';
import type { Machine } from '../../src/vmm/machine.ts';
import { MiB } from '../../src/memory/guest-memory.ts';

/*
 * The guest (GNU as --64, ld -Ttext=0 --oformat binary), position-independent, entered at payload offset 0x200:
 *   lea stack_top(%rip),%rsp
 *   build an interrupt gate (CS 0x10, type 0x8E) for vector 0x20 -> timer in idt; lidt idtr
 *   8259 pair: ICW1 0x11, ICW2 0x20/0x28, ICW3 4/2, ICW4 1; OCW1 0xFE (only IRQ0) / 0xFF
 *   8254: control 0x34 (channel 0, LSB+MSB, mode 2), count 0x2E9C (100 Hz); sti
 *   mainloop: if printed == ticks { hlt; jmp mainloop }; printed++; print printed as 4 hex digits + "\n";
 *             if printed == limit { outw 0x3400 -> 0x604 (PM1a_CNT: SLP_TYP 5 | SLP_EN) }; jmp mainloop
 *   putc: wait for LSR.THRE (0x3FD bit 5), out to 0x3F8
 *   timer: push %rax; incl ticks(%rip); EOI (0x20 -> port 0x20); pop %rax; iretq
 *   data at 0xFC: limit (.long 0x40), ticks, printed, "0123456789abcdef", idtr; idt (4 KiB) and stack follow (zeros).
 */
export const GUEST_HEX = '488d2529150000488d05e0000000488d3d1b0100004881c70002000066890766c74702100066c74704008e48c1e8106689470648c1e8'
  + '10894708c7470c00000000488d05e8000000488905d30000000f011dca000000b011e620e6a0b020e621b028e6a1b004e621b002e6a1b0'
  + '01e621e6a1b0fee621b0ffe6a1b034e643b09ce640b02ee640fb8b05770000003b056d0000007503f4ebefffc089056400000089c3b1'
  + '0c89d8d3e883e00f488d35560000008a0406e82100000080e90479e5b00ae8150000003b1d3000000075b966ba040666b8003466eff4eb'
  + 'fd88c466bafd03eca82074fb88e066baf803eec350ff050b000000b020e6205848cf400000000000000000000000303132333435363738'
  + '396162636465660f1f840000000000ff0f0000000000000000660f1f440000';
export const ENTRY = 0x200;
export const LIMIT_OFFSET = 0xfc;

export function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rz-snap-'));
}

export function counterKernel(limit: number): string {
  const code = Buffer.from(GUEST_HEX, 'hex');
  code.writeUInt32LE(limit, LIMIT_OFFSET);
  const payload = new Uint8Array(16384);
  payload.set(code, ENTRY);
  const file = path.join(tmpDir(), 'counter.bzImage');
  fs.writeFileSync(file, makeBzImage({ payload }));
  return file;
}

export function config(kernel: string, memory = 64 * MiB): VmConfig {
  return { engine: 'soft', kernel, cmdline: 'console=ttyS0', cpus: 1, memory, onReboot: 'exit' };
}

export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * The counter values in complete lines: text after the last newline is a line still being printed (read mid-way,
 * "02" of "0234" would parse as 2), so it is left out.
 */
export function counterLines(text: string): number[] {
  return text.split('\n').slice(0, -1).filter((l) => l.length > 0).map((l) => parseInt(l, 16));
}


/** Assert that the counter's lines are consecutive: no value lost or repeated (a migration, restore or backup). */
export function consecutive(lines: number[], what: string): void {
  for (let i = 1; i < lines.length; i++) assert.equal(lines[i], lines[i - 1] + 1, `${what}: ${lines.slice(Math.max(0, i - 2), i + 2)}`);
}

/**
 * End a test's machine: ask its run loop to exit, wait for `running` (its run()), run `beforeClose` (a control server
 * to close first), then close the machine.
 */
export async function stopMachine(m: Machine, running: Promise<unknown>, beforeClose?: () => void): Promise<void> {
  m.requestExit({ kind: 'error', message: 'test over' });
  await running;
  beforeClose?.();
  m.close();
}
