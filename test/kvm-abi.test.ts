// The KVM ABI table (src/kvm/abi.ts) against the kernel's C headers: every ioctl number and struct size, plus
// register struct round trips. The C comparison compiles a tiny program and is skipped when gcc or the headers are absent.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  IOCTL, SIZE, RUN, EXIT, CAP, encodeRegs, decodeRegs, encodeSregs, decodeSregs, encodeCpuid2, decodeCpuid2,
  zeroRegisters, type SpecialRegisters,
} from '../src/kvm/abi.ts';
import { CODE64_AR, DATA_AR } from '../src/boot/linux.ts';
import { KVM_FEATURE, KVM_CPUID_SIGNATURE, KVM_CPUID_FEATURES } from '../src/cpu/kvm/cpuid.ts';
import { MSR } from '../src/cpu/kvm/state.ts';

function haveGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return existsSync('/usr/include/linux/kvm.h');
  } catch {
    return false;
  }
}

const STRUCTS = Object.keys(SIZE).filter((k) => k !== 'u64');
const RUN_FIELDS: [string, string][] = [
  ['immediate_exit', 'immediate_exit'], ['exit_reason', 'exit_reason'], ['io_direction', 'io.direction'],
  ['io_size', 'io.size'], ['io_port', 'io.port'], ['io_count', 'io.count'], ['io_data_offset', 'io.data_offset'],
  ['mmio_phys_addr', 'mmio.phys_addr'], ['mmio_data', 'mmio.data'], ['mmio_len', 'mmio.len'], ['mmio_is_write', 'mmio.is_write'],
  ['fail_entry_reason', 'fail_entry.hardware_entry_failure_reason'], ['internal_suberror', 'internal.suberror'],
  ['internal_ndata', 'internal.ndata'], ['internal_data', 'internal.data'], ['system_event_type', 'system_event.type'],
  ['system_event_data', 'system_event.data'], ['cr8', 'cr8'], ['apic_base', 'apic_base'],
];

test('ioctl numbers, struct sizes, kvm_run offsets and constants match the C headers', { skip: !haveGcc() && 'no gcc or /usr/include/linux/kvm.h' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'rz-kvm-abi-'));
  try {
    const lines = [
      '#include <stdio.h>', '#include <stddef.h>', '#include <linux/kvm.h>', 'int main(void) {',
      ...Object.keys(IOCTL).map((k) => `printf("ioctl ${k} %lu\\n", (unsigned long)${k});`),
      ...STRUCTS.map((k) => `printf("size ${k} %zu\\n", sizeof(struct ${k}));`),
      ...RUN_FIELDS.map(([k, c]) => `printf("run ${k} %zu\\n", offsetof(struct kvm_run, ${c}));`),
      ...Object.keys(EXIT).map((k) => `printf("exit ${k} %d\\n", KVM_EXIT_${k});`),
      ...Object.keys(CAP).map((k) => `printf("cap ${k} %d\\n", KVM_CAP_${k});`),
      'return 0; }',
    ];
    writeFileSync(join(dir, 'abi.c'), lines.join('\n'));
    execFileSync('gcc', ['-o', join(dir, 'abi'), join(dir, 'abi.c')]);
    const out = execFileSync(join(dir, 'abi'), { encoding: 'utf8' });
    const tables: Record<string, Record<string, number>> = {
      ioctl: IOCTL, size: SIZE, run: RUN, exit: EXIT, cap: CAP,
    };
    let checked = 0;
    for (const line of out.trim().split('\n')) {
      const [kind, name, value] = line.split(' ');
      assert.equal(tables[kind][name], Number(value), `${kind} ${name}`);
      checked++;
    }
    assert.equal(checked, Object.keys(IOCTL).length + STRUCTS.length + RUN_FIELDS.length + Object.keys(EXIT).length + Object.keys(CAP).length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kvm_regs round-trips through its byte layout in the kernel field order', () => {
  const r = zeroRegisters();
  r.rax = 1n; r.rbx = 2n; r.rsp = 0xffff_8000_0000_1000n; r.r15 = 0xdead_beef_0000_0001n; r.rip = 0x1000n; r.rflags = 0x202n;
  const b = encodeRegs(r);
  assert.equal(b.length, 144);
  assert.equal(b.readBigUInt64LE(8), 2n, 'rbx is the second field');
  assert.equal(b.readBigUInt64LE(6 * 8), 0xffff_8000_0000_1000n, 'rsp is the seventh');
  assert.equal(b.readBigUInt64LE(16 * 8), 0x1000n, 'rip after r15');
  assert.deepEqual(decodeRegs(b), r);
});

test('kvm_sregs: access rights split into kvm_segment bytes and back; control registers and tables in place', () => {
  const seg = (selector: number, accessRights: number) => ({ selector, base: 0, limit: 0xffffffff, accessRights });
  const s: SpecialRegisters = {
    cs: seg(0x10, CODE64_AR), ds: seg(0x18, DATA_AR), es: seg(0x18, DATA_AR), fs: { selector: 0, base: -0x8000_0000_0000 + 0x1000, limit: 0xfffff, accessRights: DATA_AR },
    gs: seg(0x18, DATA_AR | (3 << 5)), ss: seg(0x18, DATA_AR),
    tr: { selector: 0, base: 0, limit: 0x67, accessRights: 0x8b }, ldtr: { selector: 0, base: 0, limit: 0, accessRights: 0x10000 },
    gdt: { base: 0x500n, limit: 0x1f }, idt: { base: 0n, limit: 0 },
    cr0: 0x8000_0031n, cr2: 0x1234n, cr3: 0x9000n, cr4: 0x20n, efer: 0x500n,
  };
  const b = encodeSregs(s, { cr8: 0n, apicBase: 0xfee0_0900n, interruptBitmap: [0n, 1n << 3n, 0n, 0n] });
  assert.equal(b.length, 312);
  // cs: type 0xB, present 1, dpl 0, db 0, s 1, l 1, g 1, avl 0, unusable 0
  assert.deepEqual([...b.subarray(14, 23)], [0xb, 1, 0, 0, 1, 1, 1, 0, 0]);
  assert.equal(b.readBigUInt64LE(8 * 24 + 32), 0x8000_0031n, 'cr0 after the descriptor tables');
  assert.equal(b.readBigUInt64LE(8 * 24 + 32 + 5 * 8), 0x500n, 'efer after cr8');
  const back = decodeSregs(b);
  assert.deepEqual(back.sregs, s);
  assert.equal(back.extra.apicBase, 0xfee0_0900n);
  assert.equal(back.extra.interruptBitmap[1], 8n);
});

test('kvm_cpuid2 round-trips; the entry count comes first', () => {
  const entries = [
    { function: 0, index: 0, flags: 0, eax: 0xd, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 },
    { function: 0xb, index: 1, flags: 1, eax: 1, ebx: 2, ecx: 0x201, edx: 7 },
  ];
  const b = encodeCpuid2(entries);
  assert.equal(b.readUInt32LE(0), 2);
  assert.equal(b.length, 8 + 2 * 40);
  assert.deepEqual(decodeCpuid2(b), entries);
});

test('KVM paravirtual CPUID feature bits and kvm-clock MSR numbers match asm/kvm_para.h', { skip: !haveGcc() && 'no gcc or /usr/include/linux/kvm.h' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'rz-kvm-para-'));
  try {
    const msrs: [string, number][] = [
      ['MSR_KVM_WALL_CLOCK', MSR.KVM_WALL_CLOCK], ['MSR_KVM_SYSTEM_TIME', MSR.KVM_SYSTEM_TIME],
      ['MSR_KVM_WALL_CLOCK_NEW', MSR.KVM_WALL_CLOCK_NEW], ['MSR_KVM_SYSTEM_TIME_NEW', MSR.KVM_SYSTEM_TIME_NEW],
      ['MSR_KVM_ASYNC_PF_EN', MSR.KVM_ASYNC_PF_EN], ['MSR_KVM_STEAL_TIME', MSR.KVM_STEAL_TIME],
      ['MSR_KVM_PV_EOI_EN', MSR.KVM_PV_EOI_EN], ['MSR_KVM_POLL_CONTROL', MSR.KVM_POLL_CONTROL],
    ];
    const lines = [
      '#include <stdio.h>', '#include <linux/kvm_para.h>', 'int main(void) {',
      ...Object.keys(KVM_FEATURE).map((k) => `printf("KVM_FEATURE_${k} %d\\n", KVM_FEATURE_${k});`),
      ...msrs.map(([k]) => `printf("${k} %u\\n", (unsigned)${k});`),
      'printf("KVM_CPUID_SIGNATURE %u\\n", (unsigned)KVM_CPUID_SIGNATURE);', 'printf("KVM_CPUID_FEATURES %u\\n", (unsigned)KVM_CPUID_FEATURES);',
      'return 0; }',
    ];
    writeFileSync(join(dir, 'para.c'), lines.join('\n'));
    execFileSync('gcc', ['-o', join(dir, 'para'), join(dir, 'para.c')]);
    const want: Record<string, number> = {
      ...Object.fromEntries(Object.entries(KVM_FEATURE).map(([k, v]) => [`KVM_FEATURE_${k}`, v])),
      ...Object.fromEntries(msrs),
      KVM_CPUID_SIGNATURE, KVM_CPUID_FEATURES,
    };
    const out = execFileSync(join(dir, 'para'), { encoding: 'utf8' }).trim().split('\n');
    assert.equal(out.length, Object.keys(want).length);
    for (const line of out) {
      const [name, value] = line.split(' ');
      assert.equal(want[name], Number(value), name);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
