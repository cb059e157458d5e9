// The whole machine (devices, buses, Linux boot path, run loop) on both engines with a tiny guest "kernel": a
// synthetic bzImage (src/boot/synthetic.ts) whose 64-bit entry writes a line to COM1 (polling LSR.THRE), reads the
// CMOS RTC seconds and checks they are BCD, reports that on COM1 too, then powers off through ACPI PM1a_CNT
// (SLP_TYP 5 | SLP_EN) or resets through 0xCF9. Both engines must print the same console output and end the same
// way. On kvm_pvm the guest runs through KVM's instruction emulator: slow per instruction, but this one is short.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBzImage } from '../src/boot/synthetic.ts';
import { Machine, type MachineExit, type MachineOptions } from '../src/vmm/machine.ts';
import { runVm } from '../src/vmm/run.ts';
import type { ConsoleIo, VmConfig, EngineKind } from '../src/vmm/config.ts';
import { detectKvm } from '../src/kvm/host.ts';
import { KvmIrqRouter, kvmGsiRoutes, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER } from '../src/vmm/kvm-platform.ts';
import { encodeGsiRouting, topologyCpuid } from '../src/vmm/kvm-machine.ts';
import { MiB } from '../src/memory/guest-memory.ts';
import { captureConsole } from './support/capture-console.ts';

const kvmHost = detectKvm();
const kvmSkip = kvmHost.verdict === 'none' ? `no usable KVM: ${kvmHost.reason}` : false;

/*
 * The guest (GNU as --64, ld -Ttext=0 --oformat binary); position-independent, entered at payload offset 0x200:
 *   _start: lea hello(%rip),%rsi; mov $30,%ecx; call print
 *           mov $0,%al; out %al,$0x70; in $0x71,%al          # CMOS register 0: seconds
 *           mov %al,%bl; and $0xf,%bl; cmp $9,%bl; ja bad; cmp $0x59,%al; ja bad
 *           lea ok(%rip),%rsi; mov $23,%ecx; call print; jmp finish
 *   bad:    lea nok(%rip),%rsi; mov $21,%ecx; call print
 *   finish: cmpb $0,action(%rip); jne reset
 *           mov $0x604,%dx; mov $0x3400,%ax; out %ax,%dx; jmp halt   # PM1a_CNT: SLP_TYP=5 (bits 12:10) | SLP_EN (bit 13)
 *   reset:  mov $0xcf9,%dx; mov $6,%al; out %al,%dx                     # RST_CNT: SYS_RST | RST_CPU
 *   halt:   hlt; jmp halt
 *   print:  mov $0x3fd,%dx; 1: in %dx,%al; test $0x20,%al; jz 1b        # LSR.THRE
 *           mov $0x3f8,%dx; lodsb; out %al,%dx; dec %ecx; jnz print; ret
 *   action: .byte 0          (0: power off, 1: reset)
 *   hello:  "ringzero guest: hello on COM1\n"   ok: "rtc seconds: valid BCD\n"   nok: "rtc seconds: INVALID\n"
 */
const GUEST_HEX = '488d3576000000b91e000000e857000000b000e670e47188c380e30f80fb0977173c597713488d356f000000b917000000e8'
  + '32000000eb11488d3573000000b915000000e81f000000803d2c00000000750c66ba040666b8003466efeb0766baf90cb006eef4ebfd66'
  + 'bafd03eca82074fb66baf803aceeffc975edc30072696e677a65726f2067756573743a2068656c6c6f206f6e20434f4d310a72746320'
  + '7365636f6e64733a2076616c6964204243440a727463207365636f6e64733a20494e56414c49440a';
const ACTION_OFFSET = 0x7c;
const ENTRY = 0x200;
const EXPECTED_CONSOLE = 'ringzero guest: hello on COM1\nrtc seconds: valid BCD\n';

function guestKernel(action: 'poweroff' | 'reset'): string {
  const code = Buffer.from(GUEST_HEX, 'hex');
  code[ACTION_OFFSET] = action === 'reset' ? 1 : 0;
  const payload = new Uint8Array(4096).fill(0xf4);
  payload.set(code, ENTRY);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rz-machine-')), `guest-${action}.bzImage`);
  fs.writeFileSync(file, makeBzImage({ payload }));
  return file;
}

function config(engine: EngineKind, kernel: string, cpus: number): VmConfig {
  return { engine, kernel, cmdline: 'console=ttyS0', cpus, memory: 64 * MiB, onReboot: 'exit' };
}

/** Boot the guest on one engine through the Machine; a watchdog turns a hang into a failure instead of a stuck test. */
async function boot(engine: EngineKind, action: 'poweroff' | 'reset', cpus = 1, options: MachineOptions = {}): Promise<{ exit: MachineExit; console: string; ms: number }> {
  const io = captureConsole();
  const m = new Machine(config(engine, guestKernel(action), cpus), io, options);
  const t0 = performance.now();
  const watchdog = setTimeout(() => m.requestExit({ kind: 'error', message: `watchdog: no exit after 20 s; console: ${JSON.stringify(io.text())}` }), 20_000);
  try {
    m.loadKernel();
    const exit = await m.run();
    return { exit, console: io.text(), ms: performance.now() - t0 };
  } finally {
    clearTimeout(watchdog);
    m.close();
  }
}

for (const engine of ['soft', 'kvm'] as const) {
  const skip = engine === 'kvm' ? kvmSkip : false;
  test(`${engine}: the guest prints on COM1, reads the RTC and powers off through ACPI PM1a_CNT`, { skip }, async () => {
    const r = await boot(engine, 'poweroff');
    assert.deepEqual(r.exit, { kind: 'poweroff' }, r.console);
    assert.equal(r.console, EXPECTED_CONSOLE);
  });

  if (engine === 'kvm') {
    test('kvm: the same with the single BSP on a worker thread instead of the main thread', { skip }, async () => {
      for (const action of ['poweroff', 'reset'] as const) {
        const r = await boot(engine, action, 1, { kvmInlineBsp: false });
        assert.deepEqual(r.exit, { kind: action }, r.console);
        assert.equal(r.console, EXPECTED_CONSOLE);
      }
    });
  }

  test(`${engine}: a write of 0x06 to 0xCF9 resets the machine`, { skip }, async () => {
    const r = await boot(engine, 'reset');
    assert.deepEqual(r.exit, { kind: 'reset' }, r.console);
    assert.equal(r.console, EXPECTED_CONSOLE);
  });

  test(`${engine}: with 2 vCPUs (the AP never started) poweroff still ends the run, all vCPUs stopped`, { skip }, async () => {
    const r = await boot(engine, 'poweroff', 2);
    assert.deepEqual(r.exit, { kind: 'poweroff' }, r.console);
    assert.equal(r.console, EXPECTED_CONSOLE);
  });

  test(`${engine}: runVm exits with status 0 after poweroff and after reset under onReboot 'exit'`, { skip }, async () => {
    for (const action of ['poweroff', 'reset'] as const) {
      const io = captureConsole();
      assert.equal(await runVm(config(engine, guestKernel(action), 1), io), 0);
      assert.equal(io.text(), EXPECTED_CONSOLE);
    }
  });
}

/*
 * Two vCPUs: the BSP copies a real-mode trampoline to 0x10000, sends INIT then a startup IPI with vector 0x10 to APIC
 * ID 1 through its LAPIC's ICR (0xFEE00310 / 0xFEE00300: 0x4500 INIT level assert, 0x4610 StartUp vector 0x10; SDM
 * vol. 3A §11.6.1 and §9.4.4), waits for the AP's flag at 0x10800, prints and powers off. The AP (CS = 0x1000, IP = 0)
 * prints its own line on COM1 first, then sets the flag and halts with interrupts off.
 *   BSP: lea ap_start(%rip),%rsi; mov $0x10000,%edi; mov $73,%ecx; rep movsb; mov $0xfee00000,%ebx
 *        movl $0x01000000,0x310(%rbx); movl $0x4500,0x300(%rbx); movl $0x01000000,0x310(%rbx); movl $0x4610,0x300(%rbx)
 *   wait: pause; cmpb $0,0x10800; je wait; (print bspmsg); (poweroff as above); halt: hlt; jmp halt
 *   AP (.code16): mov %cs,%ax; mov %ax,%ds; mov $apmsg,%si; mov $38,%cx; (print with LSR polling, lodsb)
 *        movb $1,0x800; 4: cli; hlt; jmp 4b
 */
const SMP_GUEST_HEX = '488d358f000000bf00000100b949000000f3a4bb0000e0fec7831003000000000001c7830003000000450000c78310030000'
  + '00000001c7830003000010460000f390803c25000801000074f4488d352b000000b918000000e80d00000066ba040666b8003466eff4eb'
  + 'fd66bafd03eca82074fb66baf803aceeffc975edc34253503a207468652041502068617320737461727465640a8cc88ed8be2300b92600'
  + 'bafd03eca82074fbbaf803acee4975f0c606000801faf4ebfc41503a207374617274656420627920494e49542f5349504920696e207265'
  + '616c206d6f64650a';

for (const engine of ['soft', 'kvm'] as const) {
  test(`${engine}: the BSP starts the AP with INIT/SIPI through its LAPIC; the AP runs real-mode code at vector * 4 KiB`, { skip: engine === 'kvm' ? kvmSkip : false }, async () => {
    const payload = new Uint8Array(4096).fill(0xf4);
    payload.set(Buffer.from(SMP_GUEST_HEX, 'hex'), ENTRY);
    const kernel = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rz-machine-')), 'smp.bzImage');
    fs.writeFileSync(kernel, makeBzImage({ payload }));
    const io = captureConsole();
    const m = new Machine(config(engine, kernel, 2), io);
    const watchdog = setTimeout(() => m.requestExit({ kind: 'error', message: `watchdog: no exit after 20 s; console: ${JSON.stringify(io.text())}` }), 20_000);
    try {
      m.loadKernel();
      assert.deepEqual(await m.run(), { kind: 'poweroff' });
      assert.equal(io.text(), 'AP: started by INIT/SIPI in real mode\nBSP: the AP has started\n');
    } finally {
      clearTimeout(watchdog);
      m.close();
    }
  });
}

/*
 * An interrupt from a machine device through each engine's interrupt controllers: the guest installs a 64-bit
 * interrupt gate for vector 0x41 (lidt of a 4 KiB IDT at 0x30000), software-enables its LAPIC (SVR = 0x1FF), routes
 * IOAPIC pin 4 to vector 0x41 (redirection entry 4: registers 0x18/0x19, fixed, physical, edge, unmasked), masks the
 * 8259s (OCW1 0xFF), sets COM1's MCR.OUT2 and IER.ETBEI, then `sti; hlt`. The empty transmitter raises IRQ 4 at once:
 * on the soft engine through the machine's IOAPIC and LAPIC, on KVM through KVM_IRQ_LINE, the GSI routing and the
 * in-kernel IOAPIC, waking the vCPU from HLT in the kernel. The handler clears IER, reads IIR, prints, EOIs, powers off.
 */
const IRQ_GUEST_HEX = '488d0581000000bf1004030066890766c74702100066c74704008e48c1e8106689470648c1e810894708c7470c000000000f01'
  + '1d9d000000bb0000e0fec783f0000000ff010000c7838000000000000000bb0000c0fec70319000000c7431000000000c70318000000c7'
  + '431041000000b0ffe621e6a166bafc03b008ee66baf903b002eefbf4ebfd66baf90330c0ee66bafa03ec488d3544000000b93c000000e8'
  + '1c000000bb0000e0fec783b00000000000000066ba040666b8003466eff4ebfd66bafd03eca82074fb66baf803aceeffc975edc3ff0f00'
  + '0003000000000049525120342028434f4d31205448524529206172726976656420617320766563746f722030783431207468726f756768'
  + '2074686520494f415049430a';

for (const engine of ['soft', 'kvm'] as const) {
  test(`${engine}: COM1's interrupt reaches the guest's IDT through the IOAPIC and LAPIC and wakes it from HLT`, { skip: engine === 'kvm' ? kvmSkip : false }, async () => {
    const payload = new Uint8Array(4096).fill(0xf4);
    payload.set(Buffer.from(IRQ_GUEST_HEX, 'hex'), ENTRY);
    const kernel = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rz-machine-')), 'irq.bzImage');
    fs.writeFileSync(kernel, makeBzImage({ payload }));
    const io = captureConsole();
    const m = new Machine(config(engine, kernel, 1), io);
    const watchdog = setTimeout(() => m.requestExit({ kind: 'error', message: `watchdog: no exit after 10 s; console: ${JSON.stringify(io.text())}` }), 10_000);
    try {
      m.loadKernel();
      assert.deepEqual(await m.run(), { kind: 'poweroff' });
      assert.equal(io.text(), 'IRQ 4 (COM1 THRE) arrived as vector 0x41 through the IOAPIC\n');
    } finally {
      clearTimeout(watchdog);
      m.close();
    }
  });
}

test('both engines print the same console output', { skip: kvmSkip }, async () => {
  const [soft, kvm] = [await boot('soft', 'poweroff'), await boot('kvm', 'poweroff')];
  assert.equal(kvm.console, soft.console);
  assert.deepEqual(kvm.exit, soft.exit);
});

test('KvmIrqRouter: lines are ORed per GSI, levels before attach are replayed, bad GSIs never reach KVM', () => {
  const router = new KvmIrqRouter();
  const seen: [number, boolean][] = [];
  const a = router.line(16);
  const b = router.line(16);
  a.set(true);
  router.attach((gsi, level) => seen.push([gsi, level]));
  assert.deepEqual(seen, [[16, true]], 'the level driven before the VM existed');
  b.set(true);
  a.set(false);
  assert.deepEqual(seen, [[16, true]], 'still asserted by b');
  b.set(false);
  router.line(4).pulse();
  router.setLevel(99, true);
  router.setLevel(-1, true);
  assert.deepEqual(seen, [[16, true], [16, false], [4, true], [4, false]]);
  router.detach();
  router.line(5).set(true);
  assert.equal(seen.length, 4);
  assert.equal(router.level(5), true);
});

test('GSI routing: IRQ0 reaches 8259 pin 0 and IOAPIC pin 2, the cascade has no route, PCI GSIs only the IOAPIC', () => {
  const routes = kvmGsiRoutes();
  const of = (gsi: number) => routes.filter((r) => r.gsi === gsi).map((r) => [r.irqchip, r.pin]);
  assert.deepEqual(of(0), [[KVM_IRQCHIP_PIC_MASTER, 0], [KVM_IRQCHIP_IOAPIC, 2]]);
  assert.deepEqual(of(2), []);
  assert.deepEqual(of(4), [[KVM_IRQCHIP_PIC_MASTER, 4], [KVM_IRQCHIP_IOAPIC, 4]]);
  assert.deepEqual(of(9), [[1, 1], [KVM_IRQCHIP_IOAPIC, 9]]);
  assert.deepEqual(of(19), [[KVM_IRQCHIP_IOAPIC, 19]]);
  const buf = encodeGsiRouting(routes);
  assert.equal(buf.readUInt32LE(0), routes.length);
  assert.equal(buf.length, 8 + 48 * routes.length);
  assert.deepEqual([buf.readUInt32LE(8), buf.readUInt32LE(12), buf.readUInt32LE(24), buf.readUInt32LE(28)], [0, 1, 0, 0]);
});

test('topologyCpuid: leaf 0xB levels and x2APIC IDs, leaf 4 cores per package, AMD NC', () => {
  const entries = [
    { function: 0xb, index: 0, flags: 1, eax: 1, ebx: 2, ecx: 0x100, edx: 0 },
    { function: 0xb, index: 1, flags: 1, eax: 7, ebx: 64, ecx: 0x201, edx: 0 },
    { function: 4, index: 0, flags: 1, eax: 0x1c00_4121, ebx: 0, ecx: 0, edx: 0 },
    { function: 4, index: 3, flags: 1, eax: 0x1c03_c163, ebx: 0, ecx: 0, edx: 0 },
    { function: 0x8000_0008, index: 0, flags: 0, eax: 0x3030, ebx: 0, ecx: 0x703f, edx: 0 },
  ];
  const t = topologyCpuid(entries, 2, 3);
  assert.deepEqual([t[0].eax, t[0].ebx, t[0].ecx, t[0].edx], [0, 1, 0x100, 2]);
  assert.deepEqual([t[1].eax, t[1].ebx, t[1].ecx, t[1].edx], [2, 3, 0x201, 2]);
  assert.equal(t[2].eax >>> 26, 3, 'core IDs per package - 1 (4 addressable for 3 vCPUs)');
  assert.equal((t[2].eax >>> 14) & 0xfff, 0, 'L1 not shared');
  assert.equal((t[3].eax >>> 14) & 0xfff, 3, 'L3 shared by the package');
  assert.equal(t[2].eax & 0x3fff, 0x0121, 'cache type and level kept');
  assert.equal(t[4].ecx & 0xff, 2);
  assert.equal((t[4].ecx >> 12) & 0xf, 2);
});
