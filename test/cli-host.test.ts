import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseEngine, describeHost, parseCpuinfo, type HostInfo } from '../src/cli/host.ts';

const THIS_KIND_OF_MACHINE: HostInfo = {
  cpuModel: 'AMD EPYC', cpuVendor: 'AuthenticAMD', logicalCpus: 2, virtualizationFlag: undefined,
  underHypervisor: true, kvmDevice: 'usable', kvmModules: ['kvm', 'kvm_pvm'],
};
const INTEL_WITH_KVM: HostInfo = {
  cpuModel: 'Intel Xeon', cpuVendor: 'GenuineIntel', logicalCpus: 8, virtualizationFlag: 'vmx',
  underHypervisor: false, kvmDevice: 'usable', kvmModules: ['kvm', 'kvm_intel'],
};

test('parseCpuinfo reads model, vendor, cpu count and the virtualization flags', () => {
  const block = (n: number, flags: string) =>
    `processor\t: ${n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU\nflags\t\t: fpu ${flags} sse2\n`;
  const info = parseCpuinfo(`${block(0, 'vmx hypervisor')}\n${block(1, 'vmx hypervisor')}\n`);
  assert.deepEqual(info, {
    cpuModel: 'Intel(R) Xeon(R) CPU', cpuVendor: 'GenuineIntel', logicalCpus: 2, virtualizationFlag: 'vmx', underHypervisor: true,
  });
  assert.equal(parseCpuinfo(block(0, 'svm')).virtualizationFlag, 'svm');
  assert.equal(parseCpuinfo(block(0, 'vmxnet')).virtualizationFlag, undefined, 'whole flags only');
  assert.equal(parseCpuinfo('').cpuModel, 'unknown');
});

test('on a kvm_pvm host, auto picks soft and kvm is refused with the reason', () => {
  const auto = chooseEngine(THIS_KIND_OF_MACHINE, 'auto');
  assert.equal(auto.ok && auto.engine, 'soft');
  assert.match(auto.ok ? auto.reason : '', /kvm_pvm/);
  const kvm = chooseEngine(THIS_KIND_OF_MACHINE, 'kvm');
  assert.equal(kvm.ok, false);
  assert.match(kvm.ok ? '' : kvm.error, /kvm_pvm.*--engine soft/);
  assert.deepEqual(chooseEngine(THIS_KIND_OF_MACHINE, 'soft'), { ok: true, engine: 'soft', reason: 'software engine requested' });
});

test('hardware KVM is picked only with vmx/svm, a usable /dev/kvm and the vendor module', () => {
  assert.equal(chooseEngine(INTEL_WITH_KVM, 'auto').ok && (chooseEngine(INTEL_WITH_KVM, 'auto') as { engine: string }).engine, 'kvm');
  assert.equal(chooseEngine(INTEL_WITH_KVM, 'kvm').ok, true);
  const cases: [Partial<HostInfo>, RegExp][] = [
    [{ kvmDevice: 'absent' }, /does not exist/],
    [{ kvmDevice: 'no-access' }, /not readable and writable/],
    [{ kvmModules: ['kvm'] }, /kvm_intel is not loaded/],
    [{ virtualizationFlag: undefined }, /no vmx or svm/],
    [{ kvmModules: ['kvm', 'kvm_intel', 'kvm_pvm'] }, /kvm_pvm/],
  ];
  for (const [change, reason] of cases) {
    const host = { ...INTEL_WITH_KVM, ...change };
    const auto = chooseEngine(host, 'auto');
    assert.ok(auto.ok && auto.engine === 'soft', JSON.stringify(change));
    assert.match(auto.reason, reason);
    const kvm = chooseEngine(host, 'kvm');
    assert.ok(!kvm.ok);
    assert.match(kvm.error, reason);
  }
});

test('describeHost says what the host has and what auto picks', () => {
  const lines = describeHost(THIS_KIND_OF_MACHINE).join('\n');
  assert.match(lines, /cpu: AMD EPYC \(AuthenticAMD\), 2 logical cpus/);
  assert.match(lines, /virtualization extensions: none/);
  assert.match(lines, /kvm modules loaded: kvm, kvm_pvm/);
  assert.match(lines, /engine auto picks: soft, because .*kvm_pvm/);
});
