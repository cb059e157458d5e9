// `ringzero run --engine kvm` through the real CLI: on hardware KVM it runs; on kvm_pvm it is refused in one line
// unless RINGZERO_ALLOW_PVM=1 (for testing the KVM path on PVM hosts), in which case a tiny synthetic guest runs to
// its ACPI poweroff and ringzero exits 0 with the guest's console output on stdout. `auto` never picks kvm_pvm.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chooseEngine, type HostInfo } from '../src/cli/host.ts';
import { detectKvm, type KvmDetection } from '../src/kvm/host.ts';
import { ringzero as runCli } from './support/ringzero-cli.ts';
import { writeTinyKernel } from './support/guest.ts';

const kvm = detectKvm();

// The guest of test/vm-machine-engines.test.ts (source there): hello on COM1, RTC seconds check, ACPI poweroff.
const GUEST_HEX = '488d3576000000b91e000000e857000000b000e670e47188c380e30f80fb0977173c597713488d356f000000b917000000e8'
  + '32000000eb11488d3573000000b915000000e81f000000803d2c00000000750c66ba040666b8003466efeb0766baf90cb006eef4ebfd66'
  + 'bafd03eca82074fb66baf803aceeffc975edc30072696e677a65726f2067756573743a2068656c6c6f206f6e20434f4d310a72746320'
  + '7365636f6e64733a2076616c6964204243440a727463207365636f6e64733a20494e56414c49440a';

function kernelFile(): string {
  return writeTinyKernel(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rz-kvm-cli-')), 'guest.bzImage'), GUEST_HEX);
}

/** The real CLI, killed after 30 s (a KVM guest that never powers off). */
const ringzero = (args: string[], env: Record<string, string> = {}) => runCli(args, { env, timeoutMs: 30_000 });

test('run --engine kvm runs the guest to its poweroff (kvm_pvm: with RINGZERO_ALLOW_PVM=1), status 0', {
  skip: kvm.verdict === 'none' ? `no usable KVM: ${kvm.reason}` : false,
}, async () => {
  const env: Record<string, string> = kvm.verdict === 'pvm' ? { RINGZERO_ALLOW_PVM: '1' } : {};
  const r = await ringzero(['run', '--engine', 'kvm', '--kernel', kernelFile(), '--memory', '64M', '--cpus', '2'], env);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'ringzero guest: hello on COM1\nrtc seconds: valid BCD\n');
});

test('on kvm_pvm, run --engine kvm without the override is refused in one line naming kvm_pvm', {
  skip: kvm.verdict !== 'pvm' ? `this host is not kvm_pvm (${kvm.verdict})` : false,
}, async () => {
  const r = await ringzero(['run', '--engine', 'kvm', '--kernel', kernelFile(), '--memory', '64M'], { RINGZERO_ALLOW_PVM: '' });
  assert.equal(r.status, 2);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /cannot use the KVM engine: .*kvm_pvm.*--engine soft/);
});

test('chooseEngine: the PVM override allows kvm only, never auto, and never a host without a usable /dev/kvm', () => {
  const detection = (verdict: KvmDetection['verdict']): KvmDetection => ({
    verdict, reason: verdict === 'pvm' ? '/dev/kvm is kvm_pvm' : '/dev/kvm cannot be used: EACCES', devicePresent: true,
    deviceOpenable: verdict === 'pvm', apiVersion: verdict === 'pvm' ? 12 : undefined, modules: ['kvm', 'kvm_pvm'], cpuFlag: undefined,
  });
  const pvmHost: HostInfo = {
    cpuModel: 'AMD EPYC', cpuVendor: 'AuthenticAMD', logicalCpus: 2, virtualizationFlag: undefined, underHypervisor: true,
    kvmDevice: 'usable', kvmModules: ['kvm', 'kvm_pvm'], kvm: detection('pvm'),
  };
  const forced = chooseEngine(pvmHost, 'kvm', { allowPvm: true });
  assert.ok(forced.ok && forced.engine === 'kvm');
  assert.match(forced.reason, /Linux will not boot/);
  assert.ok(!chooseEngine(pvmHost, 'kvm', { allowPvm: false }).ok);
  const auto = chooseEngine(pvmHost, 'auto', { allowPvm: true });
  assert.ok(auto.ok && auto.engine === 'soft');
  const denied: HostInfo = { ...pvmHost, kvmDevice: 'no-access', kvm: detection('none') };
  const refused = chooseEngine(denied, 'kvm', { allowPvm: true });
  assert.ok(!refused.ok, 'a kvm_pvm /dev/kvm that cannot be opened is not allowed either');
});
