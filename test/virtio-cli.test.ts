// `ringzero run --disk FILE[,readonly][,serial=S] --rng --console virtio`: parsing, checks, and the VmConfig.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { HostInfo } from '../src/cli/host.ts';
import { buildVmConfig, DEFAULT_CMDLINE, VIRTIO_CONSOLE_CMDLINE, type RunOptions } from '../src/cli/run-config.ts';
import { parseDiskSpec, UsageError } from '../src/cli/validate.ts';
import { MAX_DISKS } from '../src/vmm/config.ts';
import { ringzero } from './support/ringzero-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'ringzero-vcli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function fakeBzImage(): Buffer {
  const image = Buffer.alloc(4096);
  image[0x1f1] = 1;
  image.writeUInt32LE(0x10, 0x1f4);
  image.writeUInt16LE(0xaa55, 0x1fe);
  image[0x201] = 0x6a;
  image.write('HdrS', 0x202, 'latin1');
  image.writeUInt16LE(0x020f, 0x206);
  image[0x211] = 1;
  image.writeUInt32LE(0x200000, 0x230);
  image[0x234] = 1;
  image.writeUInt16LE(1, 0x236);
  image.writeBigUInt64LE(0x1000000n, 0x258);
  image.writeUInt32LE(0x100000, 0x260);
  return image;
}
const kernel = join(dir, 'bzImage');
writeFileSync(kernel, fakeBzImage());
const diskA = join(dir, 'a.img'), diskB = join(dir, 'b.img'), tiny = join(dir, 'tiny.img'), roFile = join(dir, 'ro.img');
writeFileSync(diskA, Buffer.alloc(1 << 20));
writeFileSync(diskB, Buffer.alloc(1 << 20));
writeFileSync(tiny, Buffer.alloc(100));
writeFileSync(roFile, Buffer.alloc(4096));
chmodSync(roFile, 0o444);
symlinkSync(diskA, join(dir, 'a-link.img'));
mkdirSync(join(dir, 'adir'));

const SOFT_HOST: HostInfo = {
  cpuModel: 'x', cpuVendor: 'x', logicalCpus: 2, virtualizationFlag: undefined, underHypervisor: true,
  kvmDevice: 'usable', kvmModules: ['kvm', 'kvm_pvm'],
};
const options = (change: Partial<RunOptions> = {}): RunOptions =>
  ({ engine: 'soft', kernel, cmdline: DEFAULT_CMDLINE, cpus: '1', memory: '256M', onReboot: 'exit', ...change });
const build = (change: Partial<RunOptions>) => buildVmConfig(options(change), SOFT_HOST, () => {});

test('disks in order with readonly and serial; rng; virtio console moves the default console to hvc0', () => {
  const config = build({ disk: [diskA, `${diskB},readonly,serial=data-1`], rng: true, console: 'virtio' });
  assert.deepEqual(config.disks, [{ path: diskA, readonly: false }, { path: diskB, readonly: true, serial: 'data-1' }]);
  assert.equal(config.rng, true);
  assert.equal(config.virtioConsole, true);
  assert.equal(config.cmdline, VIRTIO_CONSOLE_CMDLINE);
  assert.equal(build({ console: 'virtio', cmdline: 'console=ttyS0 quiet' }).cmdline, 'console=ttyS0 quiet', 'an explicit --cmdline wins');
  const plain = build({ console: 'serial' });
  assert.equal('disks' in plain || 'rng' in plain || 'virtioConsole' in plain, false, 'a plain VM config is unchanged');
  // A read-only file is fine as a read-only disk (root can write anything, so only check as non-root).
  assert.equal(parseDiskSpec(`${roFile},ro`).readonly, true);
});

test('each bad --disk, --console is one clear UsageError line', () => {
  const bad: [Partial<RunOptions>, RegExp][] = [
    [{ disk: [join(dir, 'missing.img')] }, /^disk image '.*missing\.img' does not exist$/],
    [{ disk: [join(dir, 'adir')] }, /is not a regular file$/],
    [{ disk: [tiny] }, /smaller than one 512-byte sector$/],
    [{ disk: [`${diskA},fast`] }, /^unknown --disk option 'fast' in '.*': use readonly, serial=NAME or format=raw\|qcow2$/],
    [{ disk: [`${diskA},serial=`] }, /^invalid serial '' in --disk/],
    [{ disk: [`${diskA},serial=this-serial-is-way-too-long`] }, /1 to 20 printable ASCII characters/],
    [{ disk: [`${diskA},serial=a b`] }, /invalid serial 'a b'/],
    [{ disk: [''] }, /^invalid --disk '': use FILE/],
    [{ disk: [diskA, join(dir, 'a-link.img')] }, /is given twice/],
    [{ disk: Array.from({ length: MAX_DISKS + 1 }, () => diskA) }, new RegExp(`^too many disks \\(${MAX_DISKS + 1}\\): at most ${MAX_DISKS}$`)],
    [{ console: 'vga' }, /^invalid --console 'vga': use serial or virtio$/],
  ];
  for (const [change, message] of bad) {
    assert.throws(() => build(change), (e: unknown) => e instanceof UsageError && message.test(e.message) && !e.message.includes('\n'), JSON.stringify(change));
  }
  if (process.getuid?.() !== 0) assert.throws(() => parseDiskSpec(roFile), /cannot write disk image .* add ,readonly/);
});

/** The real CLI from a neutral directory, its stderr without RINGZERO_DEBUG's stacks. */
const cliOptions = (env: Record<string, string>) => ({ cwd: tmpdir(), env: { RINGZERO_DEBUG: '', ...env }, timeoutMs: 20_000 });

test('bin/ringzero: --disk repeats in order, --rng and --console virtio reach runVm; bad input is status 2', async () => {
  const fakeRunVm = join(dir, 'fake-run.mts');
  writeFileSync(fakeRunVm, 'export async function runVm(config) { process.stdout.write(JSON.stringify(config) + "\\n"); return 0; }\n');
  const ok = await ringzero(['run', '--engine', 'soft', '--kernel', kernel, '--disk', diskA, '--disk', `${diskB},readonly`, '--rng', '--console', 'virtio'],
    cliOptions({ RINGZERO_RUNVM_MODULE: fakeRunVm }));
  assert.equal(ok.status, 0, ok.stderr);
  const config = JSON.parse(ok.stdout);
  assert.deepEqual(config.disks, [{ path: diskA, readonly: false }, { path: diskB, readonly: true }]);
  assert.equal(config.rng, true);
  assert.equal(config.virtioConsole, true);
  assert.equal(config.cmdline, VIRTIO_CONSOLE_CMDLINE);
  const bad = await ringzero(['run', '--engine', 'soft', '--kernel', kernel, '--disk', `${diskA},bogus`], cliOptions({ RINGZERO_RUNVM_MODULE: fakeRunVm }));
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr, `ringzero: unknown --disk option 'bogus' in '${diskA},bogus': use readonly, serial=NAME or format=raw|qcow2\n`);
});
