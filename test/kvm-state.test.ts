// vCPU state across engines (src/cpu/kvm/state.ts): a long-mode guest loop runs on KVM, is paused mid-loop (the kick
// out of KVM_RUN), its state saved as the snapshot format's VcpuState and loaded into the software engine, which
// finishes the loop with the result an uninterrupted run gives; and the reverse (soft -> KVM). Also KVM -> KVM with
// the in-kernel irqchip: LAPIC, MP state and the VM-wide irqchip/PIT/clock state survive. Skipped without /dev/kvm.
import test from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Machine } from '../src/vmm/machine.ts';
import { captureConsole } from './support/capture-console.ts';
import assert from 'node:assert/strict';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import { PortBus, MmioBus } from '../src/devices/bus.ts';
import { KvmEngine, type KvmVcpuHandle } from '../src/cpu/kvm/engine.ts';
import { createSoftEngine, SoftVcpu } from '../src/cpu/soft-adapter.ts';
import { saveKvmVcpu, restoreKvmVcpu, saveKvmVm, restoreKvmVm, MSR, kvmIrqchipToSoft, softIrqchipToKvm, kvmPitToSoft, softPitToKvm } from '../src/cpu/kvm/state.ts';
import { Pit, nsToTicks } from '../src/devices/pit.ts';
import { VmClock } from '../src/vmm/clock.ts';
import type { IrqLine } from '../src/devices/irq/router.ts';
import { DualPic } from '../src/devices/irq/pic.ts';
import { Ioapic } from '../src/devices/irq/ioapic.ts';
import { ApicBus } from '../src/devices/irq/apic-bus.ts';
import { saveSoftCpu, restoreSoftCpu, checkVcpuState, type VcpuState } from '../src/vmm/snapshot-cpu.ts';
import type { Vcpu, SpecialRegisters } from '../src/cpu/engine.ts';
import { detectKvm } from '../src/kvm/host.ts';
import { CODE64_AR, DATA_AR } from '../src/boot/linux.ts';
import { writeTinyKernel } from './support/guest.ts';

const host = detectKvm();
const skip = host.verdict === 'none' ? `no usable KVM: ${host.reason}` : false;

const CODE = 0x1000, DATA = 0x2000, GDT = 0x500, PML4 = 0x10000;
const PORT = 0xe0;
// loop: add rax,rcx; rol rbx,7; xor rbx,rax; mov [0x2000],rbx; test ecx,0x3fff; jnz 1f; out 0xe0,al;
// 1: dec rcx; jnz loop; hlt      (as --64, ld -Ttext=0x1000 --oformat binary)
const LOOP = '4801c848c1c3074831c348891c2500200000f7c1ff3f00007502e6e048ffc975dff4';

/** What the loop leaves for rcx = n: rax, rbx, the stored qword, and the bytes written to the port. */
function expected(n: number): { rax: bigint; rbx: bigint; outs: number[] } {
  let rax = 0n, rbx = 0n;
  const outs: number[] = [];
  const M = (1n << 64n) - 1n;
  for (let i = n; i > 0; i--) {
    rax = (rax + BigInt(i)) & M;
    rbx = (((rbx << 7n) | (rbx >> 57n)) & M) ^ rax;
    if ((i & 0x3fff) === 0) outs.push(Number(rax & 0xffn));
  }
  return { rax, rbx, outs };
}

/** Identity-mapped 1 GiB (2 MiB pages), a flat 64-bit GDT, the loop at CODE. */
function longMode(mem: GuestMemory): SpecialRegisters {
  const gdt = Buffer.alloc(32);
  gdt.writeBigUInt64LE(0x00af9a000000ffffn, 16);
  gdt.writeBigUInt64LE(0x00cf92000000ffffn, 24);
  mem.write(GDT, gdt);
  const pt = Buffer.alloc(3 * 4096);
  pt.writeUInt32LE((PML4 + 0x1000) | 3, 0);
  pt.writeUInt32LE((PML4 + 0x2000) | 3, 0x1000);
  for (let e = 0; e < 512; e++) pt.writeUInt32LE((e * 2 ** 21) | 0x83, 0x2000 + 8 * e);
  mem.write(PML4, pt);
  mem.write(CODE, Buffer.from(LOOP, 'hex'));
  const flat = (selector: number, accessRights: number) => ({ selector, base: 0, limit: 0xffffffff, accessRights });
  return {
    cs: flat(0x10, CODE64_AR), ds: flat(0x18, DATA_AR), es: flat(0x18, DATA_AR), fs: flat(0x18, DATA_AR),
    gs: flat(0x18, DATA_AR), ss: flat(0x18, DATA_AR),
    tr: { selector: 0, base: 0, limit: 0xffff, accessRights: 0x8b }, ldtr: { selector: 0, base: 0, limit: 0, accessRights: 0x10000 },
    gdt: { base: BigInt(GDT), limit: 31 }, idt: { base: 0n, limit: 0 },
    cr0: 0x8000_0031n, cr2: 0n, cr3: BigInt(PML4), cr4: 0x20n, efer: 0x500n,
  };
}

function start(v: Vcpu, mem: GuestMemory, n: number): void {
  v.setSpecialRegisters(longMode(mem));
  const r = v.getRegisters();
  for (const k of Object.keys(r) as (keyof typeof r)[]) r[k] = 0n;
  r.rcx = BigInt(n);
  r.rip = BigInt(CODE);
  r.rsp = 0x8000n;
  r.rflags = 2n;
  v.setRegisters(r);
}

/** A port that records the loop's outs and stops the vCPU `stopOnFirst` names at the first one. */
function portDevice(): { ports: PortBus; outs: number[]; stopOnFirst: { v?: Vcpu } } {
  const ports = new PortBus();
  const outs: number[] = [];
  const stopOnFirst: { v?: Vcpu } = {};
  ports.register(PORT, 1, { ioRead: () => 0, ioWrite: (_p, _s, value) => { outs.push(value); stopOnFirst.v?.stop(); stopOnFirst.v = undefined; } }, 'loop port');
  return { ports, outs, stopOnFirst };
}

const XMM5 = 160 + 5 * 16;
const PATTERN = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const gpr = (s: VcpuState, i: number) => BigInt(s.gprs[i]);

test('KVM -> soft: a loop paused mid-way on KVM finishes on the software engine with the same result', { skip }, async () => {
  const N = 40000;
  const want = expected(N);
  const mem = new GuestMemory(64 * MiB);
  const { ports, outs, stopOnFirst } = portDevice();
  const kvm = await KvmEngine.create({ mem, ports, mmio: new MmioBus() });
  let state: VcpuState;
  try {
    const v = kvm.vcpus[0];
    start(v, mem, N);
    // XMM5 through the restore path: the pattern must come out of the soft engine at the end.
    const ctx = { kvm: kvm.kvm, irqchip: false };
    const initial = saveKvmVcpu(v.vcpu, ctx);
    const fx = Buffer.from(initial.fxsave, 'base64');
    PATTERN.copy(fx, XMM5);
    restoreKvmVcpu(v.vcpu, { ...initial, fxsave: fx.toString('base64') }, ctx);
    // Stop by the kick once the guest is inside the pure compute, or at the loop's first out (iteration 7233 of
    // 40000), whichever comes first: either way mid-loop. Not by a fixed delay: on a loaded host a 30 ms timer can
    // fire before the worker has run one guest instruction (rcx still N). The loop stores rbx to DATA every
    // iteration, and this thread sees guest RAM: a nonzero qword there means the guest is under way.
    mem.write(DATA, new Uint8Array(8));
    stopOnFirst.v = v;
    const running = v.run();
    const deadline = Date.now() + 20_000;
    while (Buffer.from(mem.read(DATA, 8)).readBigUInt64LE(0) === 0n && stopOnFirst.v) {
      assert.ok(Date.now() < deadline, 'the guest loop did not start within 20 s');
      await new Promise((r) => setTimeout(r, 1));
    }
    v.stop();
    assert.deepEqual(await running, { reason: 'stopped' });
    state = saveKvmVcpu(v.vcpu, ctx);
  } finally {
    await kvm.close();
  }
  checkVcpuState(state, 0);
  const rcx = gpr(state, 1);
  assert.ok(rcx > 0n && rcx < BigInt(N), `paused mid-loop (rcx ${rcx})`);
  assert.equal(BigInt(state.msrs['0x' + MSR.APIC_BASE.toString(16)]) & 0xfffff000n, 0xfee00000n, 'APIC base from KVM_GET_SREGS');
  assert.ok(state.msrs['0x10'], 'TSC saved');

  const soft = createSoftEngine({ mem, ports, mmio: new MmioBus() });
  try {
    const sv = soft.vcpus[0] as SoftVcpu;
    restoreSoftCpu(sv.cpu, state);
    assert.deepEqual(await sv.run(), { reason: 'halt' });
    const r = sv.getRegisters();
    assert.equal(r.rax, want.rax);
    assert.equal(r.rbx, want.rbx);
    assert.equal(r.rcx, 0n);
    assert.equal(Buffer.from(mem.read(DATA, 8)).readBigUInt64LE(0), want.rbx);
    assert.deepEqual(outs, want.outs);
    const after = Buffer.from(saveSoftCpu(sv.cpu, undefined, false).fxsave, 'base64');
    assert.deepEqual(after.subarray(XMM5, XMM5 + 16), PATTERN, 'XMM5 crossed engines');
  } finally {
    await soft.close();
    mem.close();
  }
});

test('soft -> KVM: a loop paused mid-way on the software engine finishes on KVM with the same result', { skip }, async () => {
  const N = 40000;
  const want = expected(N);
  const mem = new GuestMemory(64 * MiB);
  const { ports, outs, stopOnFirst } = portDevice();
  const soft = createSoftEngine({ mem, ports, mmio: new MmioBus() });
  let state: VcpuState;
  try {
    const sv = soft.vcpus[0] as SoftVcpu;
    start(sv, mem, N);
    const fx = Buffer.from(saveSoftCpu(sv.cpu, undefined, false).fxsave, 'base64');
    PATTERN.copy(fx, XMM5);
    restoreSoftCpu(sv.cpu, { ...saveSoftCpu(sv.cpu, undefined, false), fxsave: fx.toString('base64') });
    stopOnFirst.v = sv;
    assert.deepEqual(await sv.run(), { reason: 'stopped' });
    state = saveSoftCpu(sv.cpu, undefined, false);
  } finally {
    await soft.close();
  }
  const rcx = gpr(state, 1);
  assert.ok(rcx > 0n && rcx < BigInt(N), `paused mid-loop (rcx ${rcx})`);

  const kvm = await KvmEngine.create({ mem, ports, mmio: new MmioBus() });
  try {
    const v = kvm.vcpus[0];
    const ctx = { kvm: kvm.kvm, irqchip: false };
    const report = restoreKvmVcpu(v.vcpu, state, ctx);
    assert.deepEqual(report.notes, []);
    const watchdog = setTimeout(() => v.stop(), 20_000);
    assert.deepEqual(await v.run(), { reason: 'halt' });
    clearTimeout(watchdog);
    const r = v.getRegisters();
    assert.equal(r.rax, want.rax);
    assert.equal(r.rbx, want.rbx);
    assert.equal(r.rcx, 0n);
    assert.equal(Buffer.from(mem.read(DATA, 8)).readBigUInt64LE(0), want.rbx);
    assert.deepEqual(outs, want.outs);
    const after = Buffer.from(saveKvmVcpu(v.vcpu, ctx).fxsave, 'base64');
    assert.deepEqual(after.subarray(XMM5, XMM5 + 16), PATTERN, 'XMM5 crossed engines');
  } finally {
    await kvm.close();
    mem.close();
  }
});

test('KVM -> KVM with the in-kernel irqchip: LAPIC, MP states, irqchip, PIT and kvm-clock carried over', { skip }, async () => {
  const mem = new GuestMemory(64 * MiB);
  const a = await KvmEngine.create({ mem, ports: new PortBus(), mmio: new MmioBus(), irqchip: true, pit: true, cpus: 2 });
  let saved: { vcpus: VcpuState[]; vm: ReturnType<typeof saveKvmVm> };
  let lapic1: Buffer;
  let ioapic: Buffer;
  try {
    const ctx = { kvm: a.kvm, irqchip: true };
    // Something recognisable: TPR of vCPU 1, an IOAPIC line raised, the BSP's registers.
    const page = a.vcpus[1].vcpu.getLapic();
    page.writeUInt32LE(0x20, 0x80);
    a.vcpus[1].vcpu.setLapic(page);
    a.irqLine(5, true);
    start(a.vcpus[0], mem, 7);
    lapic1 = a.vcpus[1].vcpu.getLapic();
    ioapic = a.vm.getIrqchip(2);
    saved = { vcpus: a.vcpus.map((v: KvmVcpuHandle) => saveKvmVcpu(v.vcpu, ctx)), vm: saveKvmVm(a.vm, { irqchip: true, pit: true }) };
  } finally {
    await a.close();
  }
  assert.equal(saved.vcpus[0].mpState, 'runnable');
  assert.equal(saved.vcpus[1].mpState, 'wait-for-sipi');
  assert.equal(Buffer.from(saved.vcpus[1].lapic!.page, 'base64').readUInt32LE(0x20) >>> 24, 1, 'LAPIC ID 1');

  const b = await KvmEngine.create({ mem, ports: new PortBus(), mmio: new MmioBus(), irqchip: true, pit: true, cpus: 2 });
  try {
    const ctx = { kvm: b.kvm, irqchip: true };
    restoreKvmVm(b.vm, saved.vm);
    b.vcpus.forEach((v, i) => restoreKvmVcpu(v.vcpu, saved.vcpus[i], ctx));
    assert.equal(b.vcpus[1].vcpu.getLapic().readUInt32LE(0x80), 0x20, 'TPR');
    assert.deepEqual(b.vcpus[1].vcpu.getLapic().subarray(0, 0x380), lapic1.subarray(0, 0x380));
    assert.deepEqual(b.vm.getIrqchip(2), ioapic, 'IOAPIC (with the raised line) restored');
    assert.equal(b.vcpus[1].vcpu.getMpState(), 2, 'AP waits for SIPI (INIT_RECEIVED)');
    assert.equal(b.vcpus[0].getRegisters().rcx, 7n);
    assert.ok(b.vm.getClock().clock >= BigInt(saved.vm.clockNs), 'kvm-clock continues from the saved value');
  } finally {
    await b.close();
    mem.close();
  }
});

test('KvmCpus.saveState / restoreState (the snapshot hook): a paused Machine\'s state loads into another one, which runs the guest to its poweroff', { skip }, async () => {
  // The synthetic guest of test/vm-machine-engines.test.ts: hello on COM1, RTC check, ACPI poweroff.
  const GUEST_HEX = '488d3576000000b91e000000e857000000b000e670e47188c380e30f80fb0977173c597713488d356f000000b917000000e8'
    + '32000000eb11488d3573000000b915000000e81f000000803d2c00000000750c66ba040666b8003466efeb0766baf90cb006eef4ebfd66'
    + 'bafd03eca82074fb66baf803aceeffc975edc30072696e677a65726f2067756573743a2068656c6c6f206f6e20434f4d310a72746320'
    + '7365636f6e64733a2076616c6964204243440a727463207365636f6e64733a20494e56414c49440a';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-kvm-state-'));
  const kernel = writeTinyKernel(path.join(dir, 'guest.bzImage'), GUEST_HEX);
  const config = { engine: 'kvm' as const, kernel, cmdline: 'console=ttyS0', cpus: 2, memory: 64 * MiB, onReboot: 'exit' as const };
  async function startPaused(m: Machine): Promise<{ running: Promise<unknown> }> {
    m.loadKernel();
    await m.pause();
    const running = m.run();
    for (let i = 0; i < 500 && !m.kvmCpus; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(m.kvmCpus);
    return { running };
  }
  const a = new Machine(config, captureConsole());
  let saved: Awaited<ReturnType<NonNullable<Machine['kvmCpus']>['saveState']>>;
  try {
    const { running } = await startPaused(a);
    saved = await a.kvmCpus!.saveState();
    a.requestExit({ kind: 'poweroff' });
    a.resume();
    await running;
  } finally {
    a.close();
  }
  assert.equal(saved.vcpus.length, 2);
  saved.vcpus.forEach((s, i) => checkVcpuState(s, i));
  assert.equal(saved.vcpus[0].mpState, 'runnable');
  assert.equal(saved.vcpus[1].mpState, 'wait-for-sipi');
  assert.equal(BigInt(saved.vcpus[0].efer) & 0x500n, 0x500n, 'long mode (LME|LMA) at the 64-bit entry');
  assert.equal(Buffer.from(saved.vcpus[0].lapic!.page, 'base64').readUInt32LE(0x350), 0x700, 'virtual wire: LINT0 ExtINT');
  assert.ok(saved.kvm.irqchip && saved.kvm.pit);

  const io = captureConsole();
  const b = new Machine(config, io);
  try {
    const { running } = await startPaused(b);
    // Scramble the BSP first, so that only the restore can make the guest work.
    const r = b.kvmCpus!.vcpus[0].getRegisters();
    r.rip = 0n;
    b.kvmCpus!.vcpus[0].setRegisters(r);
    // The in-kernel devices from their software-engine form (what a soft snapshot holds), not KVM's raw structs.
    assert.equal(saved.devices.ioapic.redirectionLow.length, 24);
    assert.equal(saved.devices.pit.channels.length, 3);
    const reports = b.kvmCpus!.restoreState(saved.vcpus, { devices: saved.devices });
    assert.deepEqual(reports.map((x) => x.notes), [[], []]);
    assert.equal(b.kvmCpus!.vcpus[0].getRegisters().rip, BigInt(saved.vcpus[0].rip));
    b.resume();
    assert.deepEqual(await running, { kind: 'poweroff' });
    assert.equal(io.text(), 'ringzero guest: hello on COM1\nrtc seconds: valid BCD\n');
  } finally {
    b.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('in-kernel 8259 pair and IOAPIC -> the software engine\'s DualPic/Ioapic -> KVM again: the same registers', { skip }, async () => {
  const mem = new GuestMemory(64 * MiB);
  const a = await KvmEngine.create({ mem, ports: new PortBus(), mmio: new MmioBus(), irqchip: true });
  const b = await KvmEngine.create({ mem, ports: new PortBus(), mmio: new MmioBus(), irqchip: true });
  try {
    // IOAPIC pin 5: vector 0x35, level-triggered, masked, destination APIC 1; PIC: vector bases, a mask, ELCR.
    const io = a.vm.getIrqchip(2);
    io.writeUInt32LE(0x35 | (1 << 15) | (1 << 16), 24 + 8 * 5);
    io.writeUInt32LE(1 << 24, 24 + 8 * 5 + 4);
    io.writeUInt32LE(0x10, 8); // IOREGSEL
    a.vm.setIrqchip(2, io);
    const master = a.vm.getIrqchip(0);
    master[2] = 0xfa; master[5] = 0x20; master[14] = 0x08; // imr, irq_base, elcr
    a.vm.setIrqchip(0, master);
    const slave = a.vm.getIrqchip(1);
    slave[5] = 0x28; slave[14] = 0x0c;
    a.vm.setIrqchip(1, slave);
    a.irqLine(5, true);
    a.irqLine(9, true);
    const saved = saveKvmVm(a.vm, { irqchip: true, pit: false });

    const soft = kvmIrqchipToSoft(saved.irqchip!);
    assert.equal(soft.pic.master.vectorBase, 0x20);
    assert.equal(soft.pic.master.imr, 0xfa);
    assert.equal(soft.pic.slave.elcr, 0x0c);
    assert.equal(soft.ioapic.redirectionLow[5], 0x35 | (1 << 15) | (1 << 16));
    assert.ok(soft.ioapic.asserted & (1 << 5), 'pin 5 asserted');
    // Through the real software devices and back.
    const apicBus = new ApicBus();
    const pic = new DualPic(() => {});
    const ioapic = new Ioapic(apicBus);
    pic.restoreState(soft.pic);
    ioapic.restoreState(soft.ioapic);
    restoreKvmVm(b.vm, { irqchip: softIrqchipToKvm(pic.saveState(), ioapic.saveState()), clockNs: saved.clockNs });
    for (const chip of [0, 1, 2]) assert.deepEqual(b.vm.getIrqchip(chip), a.vm.getIrqchip(chip), `chip ${chip}`);
  } finally {
    await a.close();
    await b.close();
    mem.close();
  }
});

test('in-kernel 8254 -> the software engine\'s Pit (counting on in VmClock time) -> KVM again', { skip }, async () => {
  const mem = new GuestMemory(64 * MiB);
  const a = await KvmEngine.create({ mem, ports: new PortBus(), mmio: new MmioBus(), irqchip: true, pit: true });
  try {
    // Channel 2: mode 2 (rate generator), LSB+MSB, count 11932 (100 Hz), gate high, loaded by KVM_SET_PIT2 (which
    // reloads every channel: its count_load_time becomes the set instant) 25 ms ago: the phase converts. Channel 0:
    // the same programming, but KVM runs it on an hrtimer and never exposes its phase (its count_load_time is 0 once
    // the guest has programmed it): it converts as counting, a fresh period from the conversion instant.
    const st = a.vm.getPit2();
    for (const o of [0, 48]) {
      st.writeUInt32LE(11932, o);
      st[o + 12] = 3; st[o + 13] = 2; st[o + 14] = 0; st[o + 15] = 1;
    }
    const loadedAt = process.hrtime.bigint();
    a.vm.setPit2(st);
    await new Promise((r) => setTimeout(r, 25));
    const guestNow = 5_000_000_000;
    const raw = a.vm.getPit2();
    raw.writeBigInt64LE(0n, 16); // as after the guest's own programming of channel 0
    const soft = kvmPitToSoft(raw, guestNow);
    const [c0, , c2] = soft.channels;
    assert.deepEqual([c0.mode, c0.rw, c0.reload, c0.counting], [2, 3, 11932, true]);
    assert.equal(c0.loadTick, nsToTicks(guestNow), 'channel 0: a fresh period');
    assert.deepEqual([c2.mode, c2.rw, c2.reload, c2.counting, c2.gate], [2, 3, 11932, true, true]);
    const agoTicks = nsToTicks(guestNow) - c2.loadTick;
    assert.ok(agoTicks >= nsToTicks(24_000_000) && agoTicks < nsToTicks(60_000_000), `channel 2 loaded ${agoTicks} ticks ago`);
    assert.ok(soft.irqDeadlineNs! > guestNow && soft.irqDeadlineNs! <= guestNow + 10_000_200, 'next IRQ0 within one period (11932 ticks)');
    // An unprogrammed channel 0 (mode 0xff after KVM's reset) does not count.
    const reset = Buffer.from(raw);
    reset[13] = 0xff;
    assert.equal(kvmPitToSoft(reset, guestNow).channels[0].counting, false);

    // A real soft PIT at that guest time reads a count consistent with the phase.
    const clock = new VmClock();
    clock.pause();
    clock.set(guestNow);
    let pulses = 0;
    const pit = new Pit(clock, { set: () => {}, pulse: () => { pulses++; } } as unknown as IrqLine);
    pit.restoreState(soft);
    pit.ioWrite(0x43, 1, 0x80); // latch channel 2
    const count = pit.ioRead(0x42, 1) | (pit.ioRead(0x42, 1) << 8);
    assert.equal(count, 11932 - (agoTicks % 11932));
    assert.equal(pulses, 0);

    // And back: the same programming, channel 2's load instant where KVM had it (within the conversion's rounding and
    // the time it took), and KVM takes it.
    const back = softPitToKvm(pit.saveState(), clock.now());
    const drift = Number(back.readBigInt64LE(48 + 16) - loadedAt);
    assert.ok(Math.abs(drift) < 20_000_000, `load time moved by ${drift} ns`);
    a.vm.setPit2(back);
    const again = a.vm.getPit2();
    assert.deepEqual([again.readUInt32LE(0), again[12], again[13]], [11932, 3, 2]);
    assert.deepEqual([again.readUInt32LE(48), again[48 + 12], again[48 + 13]], [11932, 3, 2]);
  } finally {
    await a.close();
    mem.close();
  }
});
