// kvm-clock on the software CPU (src/cpu/soft/system/pvclock.ts): the KVM CPUID leaves, the two kvm-clock MSRs, the
// published pvclock_vcpu_time_info and pvclock_wall_clock (Linux Documentation/virt/kvm/x86/msr.rst, cpuid.rst,
// arch/x86/include/asm/pvclock-abi.h), and that the time the guest computes from them agrees with its own RDTSC.
// The VM clock is paused and set by hand so every expectation is exact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { longModeMachine, runCode, hexBytes, DATA, type Machine } from './support/soft-cpu.ts';
import { MSR } from '../src/cpu/soft/system/msr.ts';
import {
  KVM_CPUID_BASE, MSR_KVM_SYSTEM_TIME_NEW, MSR_KVM_WALL_CLOCK_NEW, PVCLOCK_TSC_STABLE_BIT, PVTI, pvclockRead, timeScale,
} from '../src/cpu/soft/system/pvclock.ts';
import { restoreSoftCpu, saveSoftCpu } from '../src/vmm/snapshot-cpu.ts';

const RAX = 0, RCX = 1, RDX = 2, RBX = 3;

function setReg(m: Machine, i: number, v: bigint | number): void {
  m.cpu.setGpr(i, BigInt.asUintN(64, BigInt(v)));
}

function cpuid(m: Machine, leaf: number): number[] {
  setReg(m, RAX, leaf);
  setReg(m, RCX, 0);
  runCode(m, hexBytes('0f a2'));
  return [RAX, RBX, RCX, RDX].map((r) => Number(m.cpu.getGpr(r)));
}

function wrmsr(m: Machine, index: number, value: bigint): number {
  setReg(m, RCX, index);
  setReg(m, RAX, value & 0xffffffffn);
  setReg(m, RDX, value >> 32n);
  runCode(m, hexBytes('0f 30'));
  return m.cpu.lastException;
}

function rdmsr(m: Machine, index: number): bigint {
  setReg(m, RCX, index);
  runCode(m, hexBytes('0f 32'));
  assert.equal(m.cpu.lastException, -1, `RDMSR ${index.toString(16)} faulted`);
  return (m.cpu.getGpr(RDX) << 32n) | (m.cpu.getGpr(RAX) & 0xffffffffn);
}

function rdtsc(m: Machine): bigint {
  runCode(m, hexBytes('0f 31'));
  return ((m.cpu.getGpr(RDX) & 0xffffffffn) << 32n) | (m.cpu.getGpr(RAX) & 0xffffffffn);
}

function text(...regs: number[]): string {
  let s = '';
  for (const r of regs) for (let k = 0; k < 4; k++) s += String.fromCharCode((r >>> (8 * k)) & 0xff);
  return s;
}

function readPvti(m: Machine, gpa: number) {
  const b = Buffer.from(m.mem.read(gpa, 32));
  return {
    version: b.readUInt32LE(PVTI.version),
    tscTimestamp: b.readBigUInt64LE(PVTI.tscTimestamp),
    systemTime: b.readBigUInt64LE(PVTI.systemTime),
    mul: b.readUInt32LE(PVTI.tscToSystemMul),
    shift: b.readInt8(PVTI.tscShift),
    flags: b.readUInt8(PVTI.flags),
  };
}

test('CPUID: the KVM signature and kvm-clock features at 40000100h; invariant TSC hidden; ringzero stays at 40000000h', () => {
  const m = longModeMachine();
  const [max, b, c, d] = cpuid(m, KVM_CPUID_BASE);
  assert.equal(text(b, c, d), 'KVMKVMKVM\0\0\0');
  assert.equal(max, KVM_CPUID_BASE + 1, 'EAX: the highest KVM leaf');
  const [features, , , hints] = cpuid(m, KVM_CPUID_BASE + 1);
  assert.ok(features & (1 << 3), 'KVM_FEATURE_CLOCKSOURCE2');
  assert.ok(features & (1 << 24), 'KVM_FEATURE_CLOCKSOURCE_STABLE_BIT');
  assert.equal(features & 1, 0, 'not the legacy MSRs 11h/12h');
  assert.equal(features & ~((1 << 3) | (1 << 24)), 0, 'no other PV feature (PV EOI, steal time, async PF...) that is not implemented');
  assert.equal(hints, 0);
  assert.deepEqual(cpuid(m, KVM_CPUID_BASE + 2), [0, 0, 0, 0]);
  assert.equal(text(...cpuid(m, 0x40000000).slice(1)).replace(/\0+$/, ''), 'ringzero');
  // Linux rates kvm-clock below the TSC when the TSC is invariant (kvmclock.c), so that bit must be off.
  assert.equal(cpuid(m, 0x80000007)[3] & (1 << 8), 0);
});

test('timeScale: the scale Linux applies turns ticks into ns for several TSC rates', () => {
  for (const hz of [2e9, 1e9, 2.5e9, 3.1e9, 1e6, 999_999_999]) {
    const s = timeScale(hz);
    assert.ok(s.mul >= 2 ** 31 && s.mul < 2 ** 32, `mul in [2^31, 2^32) for ${hz}`);
    const ticks = BigInt(hz) * 10n; // 10 s
    const ns = pvclockRead({ tscTimestamp: 0n, systemTime: 0n, ...s }, ticks);
    assert.ok(Math.abs(Number(ns) - 10e9) <= 10, `${hz} Hz: 10 s of ticks -> ${ns} ns`);
  }
  assert.deepEqual(timeScale(2e9), { mul: 2 ** 31, shift: 0 }, '2 GHz: exactly ticks / 2');
});

test('MSR_KVM_SYSTEM_TIME_NEW publishes pvclock_vcpu_time_info that agrees with RDTSC as guest time moves', () => {
  const m = longModeMachine();
  m.clock.pause();
  m.clock.set(5_000_000_000);
  const gpa = DATA + 0x1040;
  m.mem.write(gpa, new Uint8Array(32).fill(0xee)); // garbage before: the version protocol starts from it
  assert.equal(wrmsr(m, MSR_KVM_SYSTEM_TIME_NEW, BigInt(gpa) | 1n), -1);
  assert.equal(rdmsr(m, MSR_KVM_SYSTEM_TIME_NEW), BigInt(gpa) | 1n, 'reads back as written');
  const p = readPvti(m, gpa);
  assert.equal(p.version % 2, 0, 'even version: the update is complete');
  assert.notEqual(p.version, 0xeeeeeeee, 'the version moved on');
  assert.equal(p.flags, PVCLOCK_TSC_STABLE_BIT);
  assert.equal(p.systemTime, 5_000_000_000n, 'system_time is guest ns');
  assert.equal(p.tscTimestamp, rdtsc(m), 'tsc_timestamp is the TSC at the same instant');
  for (const ns of [5_000_000_000, 5_000_000_001, 7_250_000_000, 3600e9]) {
    m.clock.set(ns);
    assert.equal(pvclockRead(p, rdtsc(m)), BigInt(ns), `guest computes ${ns} ns from RDTSC`);
  }
  // A second write bumps the version by 2 and republishes.
  assert.equal(wrmsr(m, MSR_KVM_SYSTEM_TIME_NEW, BigInt(gpa) | 1n), -1);
  const q = readPvti(m, gpa);
  assert.equal(q.version, (p.version + 2) >>> 0);
  assert.equal(q.systemTime, 3600_000_000_000n);
  // Disabling (bit 0 clear) stops publishing.
  assert.equal(wrmsr(m, MSR_KVM_SYSTEM_TIME_NEW, BigInt(gpa)), -1);
  m.clock.set(4000e9);
  assert.equal(readPvti(m, gpa).version, q.version);
});

test('a guest that rewrote its TSC still reads guest time from the pvclock', () => {
  const m = longModeMachine();
  m.clock.pause();
  m.clock.set(1_000_000_000);
  assert.equal(wrmsr(m, MSR.TSC, 123_456_789n), -1);
  const gpa = DATA + 0x2000;
  assert.equal(wrmsr(m, MSR_KVM_SYSTEM_TIME_NEW, BigInt(gpa) | 1n), -1);
  const p = readPvti(m, gpa);
  assert.equal(p.tscTimestamp, 123_456_789n);
  assert.equal(p.systemTime, 1_000_000_000n);
  m.clock.set(2_000_000_000);
  assert.equal(pvclockRead(p, rdtsc(m)), 2_000_000_000n);
});

test('MSR_KVM_WALL_CLOCK_NEW: the wall-clock time at guest time 0', () => {
  const m = longModeMachine();
  m.clock.pause();
  m.clock.set(30_000_000_000); // the VM has run 30 s
  const gpa = DATA + 0x3000;
  const before = Date.now();
  assert.equal(wrmsr(m, MSR_KVM_WALL_CLOCK_NEW, BigInt(gpa)), -1);
  const after = Date.now();
  const b = Buffer.from(m.mem.read(gpa, 12));
  assert.equal(b.readUInt32LE(0) % 2, 0);
  const bootMs = b.readUInt32LE(4) * 1000 + b.readUInt32LE(8) / 1e6;
  assert.ok(bootMs >= before - 30_000 - 1 && bootMs <= after - 30_000 + 1, `boot at ${bootMs}, expected ${before - 30_000}..${after - 30_000}`);
  assert.ok(b.readUInt32LE(8) < 1e9, 'nsec below a second');
  assert.equal(rdmsr(m, MSR_KVM_WALL_CLOCK_NEW), BigInt(gpa));
});

test('a hostile address (outside RAM, or straddling its end) is accepted and touches nothing', () => {
  const m = longModeMachine(); // 64 MiB of RAM
  assert.equal(m.mem.size, 64 * 1024 * 1024);
  for (const gpa of [0xfee00000n, 64n * 1024n * 1024n - 8n, 0xfffffffffff0n, (1n << 63n) - 4n]) {
    assert.equal(wrmsr(m, MSR_KVM_SYSTEM_TIME_NEW, gpa | 1n), -1, `system time at ${gpa.toString(16)}`);
    assert.equal(wrmsr(m, MSR_KVM_WALL_CLOCK_NEW, gpa), -1, `wall clock at ${gpa.toString(16)}`);
  }
  assert.deepEqual([...m.mem.read(64 * 1024 * 1024 - 8, 8)], new Array(8).fill(0), 'the last bytes of RAM untouched');
});

test('snapshots carry the kvm-clock MSRs, and a restore republishes the time page', () => {
  const m = longModeMachine();
  const gpa = DATA + 0x1000;
  wrmsr(m, MSR_KVM_SYSTEM_TIME_NEW, BigInt(gpa) | 1n);
  wrmsr(m, MSR_KVM_WALL_CLOCK_NEW, BigInt(gpa + 0x100));
  const state = saveSoftCpu(m.cpu, undefined, false);
  assert.equal(state.msrs['0x4b564d01'], '0x' + (BigInt(gpa) | 1n).toString(16));
  assert.equal(state.msrs['0x4b564d00'], '0x' + BigInt(gpa + 0x100).toString(16));
  const n = longModeMachine();
  n.clock.pause();
  n.clock.set(9_000_000_000); // the restored VM's clock shows the saved guest time before the vCPUs load
  n.mem.write(gpa, new Uint8Array(32).fill(0x55)); // a stale page, as a KVM snapshot would leave it
  const { droppedMsrs } = restoreSoftCpu(n.cpu, state);
  assert.deepEqual(droppedMsrs, []);
  assert.equal(rdmsr(n, MSR_KVM_SYSTEM_TIME_NEW), BigInt(gpa) | 1n);
  assert.equal(rdmsr(n, MSR_KVM_WALL_CLOCK_NEW), BigInt(gpa + 0x100));
  // The restore republished the time page for this CPU's TSC.
  const p = readPvti(n, gpa);
  assert.equal(p.version % 2, 0);
  assert.equal(p.systemTime, 9_000_000_000n);
  assert.deepEqual([p.mul, p.shift, p.flags], [2 ** 31, 0, PVCLOCK_TSC_STABLE_BIT]);
  n.clock.set(9_500_000_000);
  assert.equal(pvclockRead(p, rdtsc(n)), 9_500_000_000n);
});
