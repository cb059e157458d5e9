import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { HostInfo } from '../src/cli/host.ts';
import { buildVmConfig, DEFAULT_CMDLINE, type RunOptions } from '../src/cli/run-config.ts';
import { checkBzImage, checkInitrd, parseCpuCount, parseMemorySize, UsageError } from '../src/cli/validate.ts';
import { MAX_CPUS } from '../src/vmm/config.ts';
import { makeBzImage } from '../src/boot/synthetic.ts';

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'ringzero-validate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A well-formed bzImage header (src/boot/synthetic.ts) with the given protocol version and load flags. */
function fakeBzImage(version = 0x020f, loadflags = 0x01, xloadflags = 0x01): Buffer {
  return Buffer.from(makeBzImage({ protocol: version, loadflags, xloadflags }));
}

function bzImage(version: number, loadflags = 0x01, xloadflags = 0x01): string {
  const path = join(dir, `bz-${version.toString(16)}-${loadflags}-${xloadflags}`);
  writeFileSync(path, fakeBzImage(version, loadflags, xloadflags));
  return path;
}

test('memory sizes: units, bare MiB, limits', () => {
  assert.equal(parseMemorySize('256M'), 256 * MiB);
  assert.equal(parseMemorySize('256'), 256 * MiB);
  assert.equal(parseMemorySize('512MiB'), 512 * MiB);
  assert.equal(parseMemorySize('4G'), 4096 * MiB);
  assert.equal(parseMemorySize('4gb'), 4096 * MiB);
  assert.equal(parseMemorySize('1.5G'), 1536 * MiB);
  assert.equal(parseMemorySize('65536K'), 64 * MiB);
  assert.equal(parseMemorySize('64G'), 64 * 1024 * MiB);
  assert.throws(() => parseMemorySize('63M'), /too small/);
  assert.throws(() => parseMemorySize('65G'), /too large/);
  assert.throws(() => parseMemorySize('1T'), /too large/);
  assert.throws(() => parseMemorySize('100000K'), /whole number of MiB/);
  for (const bad of ['', 'lots', '-256M', '256X', '256 M B', '0x100M']) {
    assert.throws(() => parseMemorySize(bad), UsageError, bad);
  }
});

test('cpu counts: 1 to MAX_CPUS', () => {
  assert.equal(parseCpuCount('1'), 1);
  assert.equal(parseCpuCount(String(MAX_CPUS)), MAX_CPUS);
  for (const bad of ['0', String(MAX_CPUS + 1), '-1', '1.5', 'two', '']) assert.throws(() => parseCpuCount(bad), UsageError, bad);
});

test('a kernel must be a bzImage with a 64-bit entry point (boot protocol 2.12 or later)', () => {
  assert.equal(checkBzImage(bzImage(0x020f)), 0x020f);
  assert.equal(checkBzImage(bzImage(0x020c)), 0x020c);
  assert.throws(() => checkBzImage(bzImage(0x0206)), /boot protocol 2\.06 is too old/);
  assert.throws(() => checkBzImage(bzImage(0x020f, 0)), /zImage/);
  assert.throws(() => checkBzImage(bzImage(0x020f, 1, 0)), /XLF_KERNEL_64/);
  const text = join(dir, 'text');
  writeFileSync(text, 'not a kernel at all\n'.repeat(100));
  assert.throws(() => checkBzImage(text), /kernel '.*text': not a bzImage/);
  const tiny = join(dir, 'tiny');
  writeFileSync(tiny, 'x');
  assert.throws(() => checkBzImage(tiny), /not a bzImage/);
  assert.throws(() => checkBzImage(join(dir, 'missing')), /does not exist/);
  assert.throws(() => checkBzImage(dir), /not a regular file/);
});

test('an initrd must exist and not be empty', () => {
  const empty = join(dir, 'empty');
  writeFileSync(empty, '');
  assert.throws(() => checkInitrd(empty), /empty/);
  assert.throws(() => checkInitrd(join(dir, 'missing')), /does not exist/);
  const good = join(dir, 'initrd');
  writeFileSync(good, '070701');
  checkInitrd(good);
});

const SOFT_HOST: HostInfo = {
  cpuModel: 'x', cpuVendor: 'x', logicalCpus: 2, virtualizationFlag: undefined, underHypervisor: true,
  kvmDevice: 'usable', kvmModules: ['kvm', 'kvm_pvm'],
};

function options(change: Partial<RunOptions> = {}): RunOptions {
  return { engine: 'auto', cmdline: DEFAULT_CMDLINE, cpus: '1', memory: '256M', onReboot: 'exit', ...change };
}

test('buildVmConfig: defaults to the built image and says why auto picked soft', () => {
  const kernel = bzImage(0x020f);
  const initrd = join(dir, 'initrd-default');
  writeFileSync(initrd, 'cpio');
  const logged: string[] = [];
  const config = buildVmConfig(options(), SOFT_HOST, (line) => logged.push(line), () => ({ kernel, initrd }));
  assert.deepEqual(config, {
    engine: 'soft', kernel, initrd, cmdline: DEFAULT_CMDLINE, cpus: 1, memory: 256 * MiB, onReboot: 'exit',
  });
  assert.equal(logged.length, 1);
  assert.match(logged[0], /^engine auto picks soft: .*kvm_pvm/);
});

test('buildVmConfig: an explicit kernel does not take the default initramfs; errors are UsageErrors', () => {
  const kernel = bzImage(0x020f);
  const none = () => undefined;
  const config = buildVmConfig(options({ kernel, engine: 'soft', cpus: '4', memory: '1G', onReboot: 'restart' }), SOFT_HOST, () => {}, none);
  assert.equal(config.initrd, undefined);
  assert.equal(config.cpus, 4);
  assert.equal(config.memory, 1024 * MiB);
  assert.equal(config.onReboot, 'restart');
  assert.throws(() => buildVmConfig(options(), SOFT_HOST, () => {}, none), /no default image built yet/);
  assert.throws(() => buildVmConfig(options({ kernel, engine: 'fast' }), SOFT_HOST, () => {}, none), /unknown engine 'fast'/);
  assert.throws(() => buildVmConfig(options({ kernel, engine: 'kvm' }), SOFT_HOST, () => {}, none), /kvm_pvm/);
  assert.throws(() => buildVmConfig(options({ kernel, onReboot: 'halt' }), SOFT_HOST, () => {}, none), /--on-reboot 'halt'/);
  assert.throws(() => buildVmConfig(options({ kernel, initrd: join(dir, 'nope') }), SOFT_HOST, () => {}, none), /initrd .* does not exist/);
});
