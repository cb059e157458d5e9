// The KVM engine: host detection, per-vCPU CPUID, MMIO and port exit dispatch, stopping a vCPU stuck in guest code (worker and main thread),
// closing while a vCPU runs, ioeventfd, the in-kernel irqchip, the dirty log. Live parts skip without /dev/kvm.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { detectKvm, type HostProbe } from '../src/kvm/host.ts';
import { KvmEngine, vcpuCpuid, buildVcpuCpuid } from '../src/cpu/kvm/engine.ts';
import { KVM_FEATURE, wantedPvFeatures } from '../src/cpu/kvm/cpuid.ts';
import { eventfd } from '../src/kvm/sys.ts';
import { KvmError } from '../src/kvm/kvm.ts';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import { PortBus, MmioBus } from '../src/devices/bus.ts';
import type { Vcpu } from '../src/cpu/engine.ts';

const host = detectKvm();
const skip = host.verdict === 'none' ? `no usable KVM: ${host.reason}` : false;

function fakeProbe(files: Record<string, string>, api: number | Error): HostProbe {
  return {
    exists: (p) => p in files,
    readText: (p) => files[p] ?? '',
    apiVersion: () => { if (api instanceof Error) throw api; return api; },
  };
}

test('detectKvm: hardware, pvm and none verdicts from /dev/kvm, /sys/module and the cpu flags', () => {
  const intel = detectKvm(fakeProbe({ '/dev/kvm': '', '/sys/module/kvm': '', '/sys/module/kvm_intel': '', '/proc/cpuinfo': 'flags\t: fpu vmx sse2\n' }, 12));
  assert.equal(intel.verdict, 'hardware');
  assert.match(intel.reason, /kvm_intel with vmx/);
  const pvm = detectKvm(fakeProbe({ '/dev/kvm': '', '/sys/module/kvm': '', '/sys/module/kvm_pvm': '', '/proc/cpuinfo': 'flags\t: fpu hypervisor\n' }, 12));
  assert.equal(pvm.verdict, 'pvm');
  assert.deepEqual(pvm.modules, ['kvm', 'kvm_pvm']);
  const absent = detectKvm(fakeProbe({ '/proc/cpuinfo': 'flags\t: svm\n' }, 12));
  assert.equal(absent.verdict, 'none');
  assert.match(absent.reason, /load kvm_amd/);
  const denied = detectKvm(fakeProbe({ '/dev/kvm': '', '/sys/module/kvm_amd': '' }, new KvmError('open(/dev/kvm)', 13)));
  assert.equal(denied.verdict, 'none');
  assert.match(denied.reason, /EACCES/);
  assert.equal(denied.deviceOpenable, false);
});

test('detectKvm on this host agrees with /sys/module', () => {
  if (fs.existsSync('/sys/module/kvm_pvm') && fs.existsSync('/dev/kvm')) assert.equal(host.verdict, 'pvm');
  if (!fs.existsSync('/dev/kvm')) assert.equal(host.verdict, 'none');
});

test('vcpuCpuid: APIC ID in leaf 1 EBX[31:24] and leaf 0xB EDX, the hypervisor bit, the CPU count', () => {
  const supported = [
    { function: 1, index: 0, flags: 0, eax: 0x800f12, ebx: 0xff00_0800, ecx: 0x1, edx: 0x1 },
    { function: 0xb, index: 0, flags: 1, eax: 1, ebx: 2, ecx: 0x100, edx: 0 },
    { function: 0x8000001e, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 },
  ];
  const c = vcpuCpuid(supported, 3, 4);
  assert.equal(c[0].ebx >>> 24, 3);
  assert.equal((c[0].ebx >>> 16) & 0xff, 4);
  assert.equal(c[0].ebx & 0xffff, 0x0800, 'CLFLUSH size kept');
  assert.equal(c[0].ecx >>> 31, 1);
  assert.equal((c[0].edx >>> 28) & 1, 1);
  assert.equal(c[1].edx, 3);
  assert.equal(c[2].eax, 3);
  assert.equal(supported[0].ebx, 0xff00_0800, 'input not modified');
});

/** Poll `cond` every few ms until it holds; fail with `what()` after `ms`. */
async function until(cond: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** `p`, or a failure naming `what` if it has not settled within `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const e = new Error(`timed out after ${ms} ms waiting for ${what}`);
      // Said at once: a vCPU that cannot be kicked out of KVM_RUN also hangs the cleanup, so the test may never end.
      process.stderr.write(`# ${e.message}\n`);
      reject(e);
    }, ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Real mode at 0x1000 with CS base 0. */
function realModeAt(v: Vcpu, rip: number): void {
  const s = v.getSpecialRegisters();
  s.cs = { ...s.cs, selector: 0, base: 0 };
  v.setSpecialRegisters(s);
  const r = v.getRegisters();
  r.rip = BigInt(rip);
  v.setRegisters(r);
}

for (const inlineBoot of [false, true]) {
  const where = inlineBoot ? 'main thread' : 'worker';
  test(`${where}: stop() ends a run stuck in a guest loop, run() resumes it, close() while running does not hang`, { skip }, async () => {
    const mem = new GuestMemory(64 * MiB);
    const ports = new PortBus();
    let outs = 0;
    ports.register(0x80, 1, { ioRead: () => 0, ioWrite: () => { outs++; } }, 'counter');
    const engine = await KvmEngine.create({ mem, ports, mmio: new MmioBus(), inlineBoot });
    try {
      // l: out 0x80, al; jmp l  -- an exit per iteration, forever
      mem.write(0x1000, Uint8Array.from([0xe6, 0x80, 0xeb, 0xfc]));
      // jmp $  -- no exit at all: only the kick gets the thread out
      mem.write(0x2000, Uint8Array.from([0xeb, 0xfe]));
      const v = engine.vcpus[0];
      realModeAt(v, 0x2000);
      setTimeout(() => v.stop(), 50);
      const t0 = Date.now();
      // Only the kick gets a worker out of `jmp $`: without it this would hang, so fail by a deadline instead.
      assert.deepEqual(await within(v.run(), 20_000, 'stop() to kick the vCPU out of a loop without exits'), { reason: 'stopped' });
      assert.ok(Date.now() - t0 < 3000);
      assert.equal(v.getRegisters().rip, 0x2000n);
      const second = v.run();
      assert.throws(() => v.getRegisters(), /in progress/);
      assert.rejects(v.run(), /in progress/);
      await new Promise((r) => setTimeout(r, 20));
      v.stop();
      assert.deepEqual(await second, { reason: 'stopped' });
      realModeAt(v, 0x1000);
      // Stop once the guest has made progress, not after a fixed delay: on a loaded host 50 ms of wall time may
      // hold no guest time at all. The deadline is generous; missing it means run() did not resume the guest.
      const looping = v.run();
      await until(() => outs > 10, 20_000, () => `the guest to make progress after run() (${outs} exits in 20 s)`);
      v.stop();
      assert.deepEqual(await within(looping, 20_000, 'stop() to end the exiting loop'), { reason: 'stopped' });
      assert.ok(outs > 10, `the guest made progress (${outs} exits)`);
      // Leave it running and close the engine underneath.
      const pending = v.run();
      await new Promise((r) => setTimeout(r, 20));
      await engine.close();
      assert.deepEqual(await pending, { reason: 'stopped' });
    } finally {
      await engine.close();
      mem.close();
    }
  });
}

for (const inlineBoot of [false, true]) {
  const where = inlineBoot ? 'main thread' : 'worker';
  test(`${where}: MMIO and port exits reach the buses with the guest's address, size and data`, { skip }, async () => {
    const mem = new GuestMemory(64 * MiB);
    const ports = new PortBus();
    const mmio = new MmioBus();
    const MMIO_BASE = 0x0800_0000; // 128 MiB: above the 64 MiB of RAM, so every access there exits
    const log: string[] = [];
    mmio.register(MMIO_BASE, 0x1000, {
      mmioRead: (off, size) => { log.push(`r${size}@${off}`); return off === 8 && size === 4 ? 0xcafef00d : 0; },
      mmioWrite: (off, size, value) => { log.push(`w${size}@${off}=${value.toString(16)}`); },
    }, 'probe');
    ports.register(0x80, 4, { ioRead: () => 0, ioWrite: (port, size, value) => { log.push(`out${size}@${port.toString(16)}=${value.toString(16)}`); } }, 'port');
    const engine = await KvmEngine.create({ mem, ports, mmio, inlineBoot });
    try {
      mem.write(0x1000, Uint8Array.from([
        0xb0, 0x5a, /* mov al, 0x5a */ 0xa2, 0x00, 0x00, /* mov [0], al */
        0xb8, 0x34, 0x12, /* mov ax, 0x1234 */ 0xa3, 0x02, 0x00, /* mov [2], ax */
        0x66, 0xb8, 0xef, 0xbe, 0xad, 0xde, /* mov eax, 0xdeadbeef */ 0x66, 0xa3, 0x04, 0x00, /* mov [4], eax */
        0x66, 0xa1, 0x08, 0x00, /* mov eax, [8] */ 0x66, 0xe7, 0x80, /* out 0x80, eax */
        0xf4, /* hlt */
      ]));
      const v = engine.vcpus[0];
      realModeAt(v, 0x1000);
      const s = v.getSpecialRegisters();
      s.ds = { ...s.ds, selector: 0, base: MMIO_BASE }; // real mode with a descriptor-cache base past RAM
      v.setSpecialRegisters(s);
      assert.deepEqual(await v.run(), { reason: 'halt' });
      assert.deepEqual(log, ['w1@0=5a', 'w2@2=1234', 'w4@4=deadbeef', 'r4@8', 'out4@80=cafef00d']);
    } finally {
      await engine.close();
      mem.close();
    }
  });
}

test('ioeventfd: a guest write to a port signals the eventfd in the kernel with no exit to user space', { skip }, async () => {
  const mem = new GuestMemory(64 * MiB);
  const ports = new PortBus();
  const seen: number[] = [];
  ports.register(0x80, 1, { ioRead: () => 0, ioWrite: (_p, _s, v) => { seen.push(v); } }, 'p80');
  ports.register(0x81, 1, { ioRead: () => 0, ioWrite: (_p, _s, v) => { seen.push(0x100 | v); } }, 'p81');
  const engine = await KvmEngine.create({ mem, ports, mmio: new MmioBus() });
  const efd = eventfd();
  try {
    engine.vm.ioeventfd({ addr: 0x80, len: 1, fd: efd, pio: true });
    // mov al, 7; out 0x80, al; out 0x80, al; out 0x81, al; hlt
    mem.write(0x1000, Uint8Array.from([0xb0, 0x07, 0xe6, 0x80, 0xe6, 0x80, 0xe6, 0x81, 0xf4]));
    const v = engine.vcpus[0];
    realModeAt(v, 0x1000);
    assert.deepEqual(await v.run(), { reason: 'halt' });
    assert.deepEqual(seen, [0x107], 'only the port without an ioeventfd reached the bus');
    const count = Buffer.alloc(8);
    assert.equal(fs.readSync(efd, count), 8);
    assert.equal(count.readBigUInt64LE(0), 2n);
  } finally {
    fs.closeSync(efd);
    await engine.close();
    mem.close();
  }
});

test('in-kernel irqchip and PIT: KVM_IRQ_LINE, KVM_SIGNAL_MSI, LAPIC and MP state are reachable', { skip }, async () => {
  const mem = new GuestMemory(64 * MiB);
  const engine = await KvmEngine.create({ mem, ports: new PortBus(), mmio: new MmioBus(), irqchip: true, pit: true, cpus: 2 });
  try {
    engine.irqLine(4, true);
    engine.irqLine(4, false);
    assert.ok(engine.vm.signalMsi(0xfee0_0000n, 0x30) >= 0);
    const lapic = engine.vcpus[1].vcpu.getLapic();
    assert.equal(lapic.readUInt32LE(0x20) >>> 24, 1, 'LAPIC ID register of vCPU 1');
    assert.equal(engine.vcpus[0].vcpu.getMpState(), 0, 'BSP runnable');
    assert.equal(engine.vcpus[1].vcpu.getMpState(), 1, 'AP uninitialized (waits for INIT/SIPI)');
  } finally {
    await engine.close();
    mem.close();
  }
});

test('dirty log: pages the guest writes are reported once', { skip }, async () => {
  const mem = new GuestMemory(64 * MiB);
  const engine = await KvmEngine.create({ mem, ports: new PortBus(), mmio: new MmioBus(), dirtyLog: true });
  try {
    engine.vm.getDirtyLog(0); // clear whatever the setup wrote
    // mov [0x5000], al; mov [0x7ff0], al; hlt
    mem.write(0x1000, Uint8Array.from([0xa2, 0x00, 0x50, 0xa2, 0xf0, 0x7f, 0xf4]));
    const v = engine.vcpus[0];
    realModeAt(v, 0x1000);
    assert.deepEqual(await v.run(), { reason: 'halt' });
    const bits = engine.vm.getDirtyLog(0);
    const dirty = [];
    for (let i = 0; i < bits.length * 8; i++) if (bits[i >> 3] & (1 << (i & 7))) dirty.push(i);
    assert.ok(dirty.includes(5) && dirty.includes(7), `pages 5 and 7 dirty: ${dirty}`);
    assert.ok(!dirty.includes(6));
    const again = engine.vm.getDirtyLog(0);
    assert.ok(again.every((b) => b === 0), 'reading the log clears it');
  } finally {
    await engine.close();
    mem.close();
  }
});

test('buildVcpuCpuid: KVM signature leaf, PV features filtered by what KVM has and the irqchip, 0xB subleaves added', () => {
  const supported = [
    { function: 0, index: 0, flags: 0, eax: 0xd, ebx: 0, ecx: 0, edx: 0 },
    { function: 1, index: 0, flags: 0, eax: 0xa10f11, ebx: 0x20800, ecx: 0x1, edx: 0x1 },
    { function: 0xb, index: 0, flags: 1, eax: 0, ebx: 0, ecx: 0, edx: 0 },
    { function: 0x4000_0000, index: 0, flags: 0, eax: 0x4000_0001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d },
    // everything KVM can offer except PV_UNHALT (bit 7)
    { function: 0x4000_0001, index: 0, flags: 0, eax: 0x0100_7e7b, ebx: 0, ecx: 0, edx: 0 },
  ];
  const find = (c: ReturnType<typeof buildVcpuCpuid>, fn: number, index = 0) => c.find((e) => e.function === fn && e.index === index)!;
  const withChip = buildVcpuCpuid(supported, { apicId: 2, cpus: 3, irqchip: true });
  const sig = find(withChip, 0x4000_0000);
  assert.equal(Buffer.from(new Uint32Array([sig.ebx, sig.ecx, sig.edx]).buffer).toString('latin1'), 'KVMKVMKVM\0\0\0');
  const f = find(withChip, 0x4000_0001).eax;
  const has = (b: number) => ((f >>> b) & 1) === 1;
  assert.ok(has(KVM_FEATURE.CLOCKSOURCE2) && has(KVM_FEATURE.CLOCKSOURCE) && has(KVM_FEATURE.CLOCKSOURCE_STABLE_BIT));
  assert.ok(has(KVM_FEATURE.PV_EOI) && has(KVM_FEATURE.STEAL_TIME) && has(KVM_FEATURE.PV_SEND_IPI));
  assert.ok(!has(KVM_FEATURE.PV_UNHALT), 'KVM lacks it: not offered');
  assert.ok(!has(KVM_FEATURE.ASYNC_PF) && !has(KVM_FEATURE.ASYNC_PF_INT), 'async PF never offered');
  const noChip = find(buildVcpuCpuid(supported, { apicId: 0, cpus: 1, irqchip: false }), 0x4000_0001).eax;
  assert.equal(noChip & (1 << KVM_FEATURE.PV_EOI), 0, 'PV EOI needs the in-kernel LAPIC');
  assert.equal(noChip & ~wantedPvFeatures(false), 0);
  // Leaf 0xB: subleaf 1 (core level) and 2 (end) exist now, x2APIC ID in each.
  assert.deepEqual([find(withChip, 0xb, 1).eax, find(withChip, 0xb, 1).ebx, find(withChip, 0xb, 1).ecx, find(withChip, 0xb, 1).edx], [2, 3, 0x201, 2]);
  assert.equal((find(withChip, 0xb, 2).ecx >> 8) & 0xff, 0, 'level type 0 ends the enumeration');
  assert.equal(find(withChip, 1).ebx >>> 24, 2);
  assert.equal(buildVcpuCpuid([], { apicId: 0, cpus: 1, irqchip: true }).length, 0, 'no PV leaves without KVM\'s');
});

test('a guest program on KVM reads its CPUID: KVM signature, PV features, APIC ID and topology per vCPU', { skip }, async () => {
  const mem = new GuestMemory(64 * MiB);
  const ports = new PortBus();
  let current: Vcpu | undefined;
  ports.register(0xe1, 1, { ioRead: () => 0, ioWrite: () => { current?.stop(); } }, 'done');
  const engine = await KvmEngine.create({ mem, ports, mmio: new MmioBus(), irqchip: true, cpus: 2 });
  try {
    // cpuid 0x40000000 -> [0x2000..0x200f]; 0x40000001 eax -> [0x2010]; 1 ebx ecx -> [0x2014], [0x2018];
    // 0xb subleaf 1 eax ebx ecx edx -> [0x201c..0x202b]; out 0xe1, al (the host stops the vCPU); hlt
    // (source: as --32 with .code16, ld -Ttext=0x1000 --oformat binary)
    mem.write(0x1000, Buffer.from('66b8000000400fa266a3002066891e042066890e08206689160c2066b8010000400fa266a3102066b8010000000fa2'
      + '66891e142066890e182066b80b00000066b9010000000fa266a31c2066891e202066890e24206689162820e6e1f4', 'hex'));
    const supportedPv = engine.kvm.supportedCpuid().find((e) => e.function === 0x4000_0001)?.eax ?? 0;
    for (const v of engine.vcpus) {
      if (v.index > 0) v.vcpu.setMpState(0); // the AP runs without INIT/SIPI for this test
      realModeAt(v, 0x1000);
      current = v;
      mem.write(0x2000, new Uint8Array(0x30));
      assert.deepEqual(await v.run(), { reason: 'stopped' });
      const d = Buffer.from(mem.read(0x2000, 0x30));
      assert.equal(d.readUInt32LE(0), 0x4000_0001, 'max hypervisor leaf');
      assert.equal(d.subarray(4, 16).toString('latin1'), 'KVMKVMKVM\0\0\0');
      const pv = d.readUInt32LE(0x10);
      assert.equal(pv, (supportedPv & wantedPvFeatures(true)) >>> 0, `PV features 0x${pv.toString(16)}`);
      if (supportedPv & (1 << KVM_FEATURE.CLOCKSOURCE2)) assert.ok(pv & (1 << KVM_FEATURE.CLOCKSOURCE2), 'kvm-clock offered');
      assert.equal(d.readUInt32LE(0x14) >>> 24, v.index, 'leaf 1 EBX: initial APIC ID');
      assert.equal((d.readUInt32LE(0x14) >>> 16) & 0xff, 2, 'leaf 1 EBX: logical processors');
      assert.equal(d.readUInt32LE(0x18) >>> 31, 1, 'hypervisor bit');
      assert.deepEqual([d.readUInt32LE(0x1c), d.readUInt32LE(0x20), d.readUInt32LE(0x24), d.readUInt32LE(0x28)], [1, 2, 0x201, v.index], 'leaf 0xB core level');
    }
  } finally {
    await engine.close();
    mem.close();
  }
});

test('posted ports (worker): OUTs to them complete in the worker, reach the bus in order before the next exit, and on the timer', { skip }, async () => {
  const mem = new GuestMemory(64 * MiB);
  const ports = new PortBus();
  const log: string[] = [];
  ports.register(0x80, 1, { ioRead: () => 0, ioWrite: (_p, _s, v) => { log.push(`80=${v}`); } }, 'post');
  ports.register(0xe1, 1, { ioRead: () => 0, ioWrite: (_p, _s, v) => { log.push(`e1=${v}`); } }, 'mark');
  const engine = await KvmEngine.create({ mem, ports, mmio: new MmioBus(), postedPorts: [0x80] });
  try {
    // mov cx,100; l: mov al,cl; out 0x80,al; loop l; mov al,0x55; out 0xe1,al; mov al,0x77; out 0x80,al; jmp $
    mem.write(0x1000, Uint8Array.from([0xb9, 0x64, 0x00, 0x88, 0xc8, 0xe6, 0x80, 0xe2, 0xfa, 0xb0, 0x55, 0xe6, 0xe1, 0xb0, 0x77, 0xe6, 0x80, 0xeb, 0xfe]));
    const v = engine.vcpus[0];
    realModeAt(v, 0x1000);
    const running = v.run();
    // The last write is followed by no exit at all (jmp $): the drain timer must deliver it.
    for (let i = 0; i < 300 && log.at(-1) !== '80=119'; i++) await new Promise((r) => setTimeout(r, 10));
    v.stop();
    assert.deepEqual(await running, { reason: 'stopped' });
    const expected = [...Array.from({ length: 100 }, (_, i) => `80=${100 - i}`), 'e1=85', '80=119'];
    assert.deepEqual(log, expected);
    assert.equal(v.postedExits, 101, 'every OUT to 0x80 completed in the worker');
    assert.equal(v.exits, 1, 'only the OUT to 0xe1 came to the main thread');
  } finally {
    await engine.close();
    mem.close();
  }
});
