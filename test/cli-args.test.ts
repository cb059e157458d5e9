// The ringzero command as a user runs it: bin/ringzero by absolute path, from another directory.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { detectHost, hardwareKvmProblem } from '../src/cli/host.ts';
import { makeBzImage } from '../src/boot/synthetic.ts';
import { DEFAULT_CMDLINE } from '../src/vmm/config.ts';
import { ringzero as runCli, type RingzeroResult } from './support/ringzero-cli.ts';

/** A well-formed bzImage header (src/boot/synthetic.ts) with the given protocol version and load flags. */
function fakeBzImage(version = 0x020f, loadflags = 0x01, xloadflags = 0x01): Buffer {
  return Buffer.from(makeBzImage({ protocol: version, loadflags, xloadflags }));
}

const scratch = mkdtempSync(join(tmpdir(), 'ringzero-cli-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const emptyCache = join(scratch, 'empty-cache');
const fakeCache = join(scratch, 'fake-cache');

// A stand-in bzImage (valid header only) and initramfs, and a cache holding them as a built image.
const kernel = join(scratch, 'bzImage');
const header = fakeBzImage();
writeFileSync(kernel, header);
const notKernel = join(scratch, 'notes.txt');
writeFileSync(notKernel, 'hello\n'.repeat(200));
const imageDir = join(fakeCache, 'images', '0123456789abcdef');
mkdirSync(imageDir, { recursive: true });
writeFileSync(join(imageDir, 'bzImage'), header);
writeFileSync(join(imageDir, 'initramfs.cpio'), '070701');
writeFileSync(join(imageDir, 'manifest.json'), JSON.stringify({ kernelVersion: '6.1.0-test', builtAt: '2026-01-01T00:00:00Z' }));

type Result = RingzeroResult;

/** The CLI with the given image cache, from a neutral directory (test/support/ringzero-cli.ts). */
function ringzero(args: string[], cache = emptyCache, extra: { env?: Record<string, string>; input?: string } = {}): Promise<Result> {
  return runCli(args, { cwd: tmpdir(), env: { RINGZERO_CACHE: cache, RINGZERO_DEBUG: '', ...extra.env }, input: extra.input, timeoutMs: 20_000 });
}

/** One line on stderr, nothing on stdout, a non-zero status, no stack trace. */
function assertOneLineError(result: Result, pattern: RegExp, what: string): void {
  assert.notEqual(result.status, 0, `${what}: non-zero status`);
  assert.equal(result.stdout, '', `${what}: nothing on stdout`);
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  assert.equal(lines.length, 1, `${what}: one line, got ${JSON.stringify(result.stderr)}`);
  assert.match(lines[0], /^ringzero: /, what);
  assert.match(lines[0], pattern, what);
  assert.doesNotMatch(result.stderr, /\n\s+at /, `${what}: no stack trace`);
}

test('bad inputs to run: one clear line each, non-zero status', async () => {
  const cases: [string[], RegExp][] = [
    [['run', '--kernel', kernel, '--memory', '1M'], /memory size '1M' is too small/],
    [['run', '--kernel', kernel, '--memory', '65G'], /too large/],
    [['run', '--kernel', kernel, '--memory', 'lots'], /invalid memory size 'lots'/],
    [['run', '--kernel', kernel, '--cpus', '0'], /invalid cpu count '0'/],
    [['run', '--kernel', kernel, '--cpus', '65'], /invalid cpu count '65'/],
    [['run', '--kernel', kernel, '--engine', 'turbo'], /unknown engine 'turbo'/],
    [['run', '--kernel', kernel, '--on-reboot', 'halt'], /--on-reboot 'halt'/],
    [['run', '--kernel', join(scratch, 'missing')], /kernel '.*missing' does not exist/],
    [['run', '--kernel', notKernel], /kernel '.*notes.txt': not a bzImage/],
    [['run', '--kernel', kernel, '--initrd', join(scratch, 'missing-initrd')], /initrd '.*missing-initrd' does not exist/],
    [['run'], /no default image built yet/],
    [['run', '--bogus'], /unknown option '--bogus'/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['image', 'path'], /no default image built yet/],
  ];
  // Four at a time: fourteen CLI processes at once took over the 20 s timeout on a host at load 30-40 (each
  // starts Node and loads the bundle); a failure here must mean a wrong message, not a slow host.
  const results: Result[] = [];
  for (let start = 0; start < cases.length; start += 4) {
    results.push(...(await Promise.all(cases.slice(start, start + 4).map(([args]) => ringzero(args)))));
  }
  cases.forEach(([args, pattern], index) => assertOneLineError(results[index], pattern, args.join(' ')));
});

test('run --engine kvm is refused with the reason when hardware KVM is not usable', {
  skip: hardwareKvmProblem(detectHost()) === undefined ? 'this host has hardware KVM' : false,
}, async () => {
  const result = await ringzero(['run', '--kernel', kernel, '--engine', 'kvm']);
  assertOneLineError(result, /cannot use the KVM engine: .*--engine soft/, 'run --engine kvm');
  if (detectHost().kvmModules.includes('kvm_pvm')) assert.match(result.stderr, /kvm_pvm/);
});

test('image path prints the kernel, the initramfs and the root disk when built, one a line', async () => {
  const result = await ringzero(['image', 'path'], fakeCache);
  assert.equal(result.status, 0, result.stderr);
  assert.equal(result.stdout, `${join(imageDir, 'bzImage')}\n${join(imageDir, 'initramfs.cpio')}\n`);
  // With the ext4 root disk built, its path is the third line.
  writeFileSync(join(imageDir, 'rootfs.ext4'), '');
  try {
    const withRoot = await ringzero(['image', 'path'], fakeCache);
    assert.equal(withRoot.stdout, `${join(imageDir, 'bzImage')}\n${join(imageDir, 'initramfs.cpio')}\n${join(imageDir, 'rootfs.ext4')}\n`);
  } finally {
    rmSync(join(imageDir, 'rootfs.ext4'));
  }
});

test('doctor describes the host and the engine choice', async () => {
  const result = await ringzero(['doctor'], fakeCache);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /^cpu: /m);
  assert.match(result.stdout, /^\/dev\/kvm: /m);
  assert.match(result.stdout, /^engine auto picks: (soft|kvm), because /m);
  assert.match(result.stdout, /^default image: kernel 6\.1\.0-test, /m);
});

test('run hands a VmConfig and a pipe console to runVm, and exits with its status', async () => {
  // A stand-in runVm: prints the config it got, echoes the console input it receives, then ends with status 7.
  const fakeRunVm = join(scratch, 'fake-run.mts');
  writeFileSync(fakeRunVm, `
    export async function runVm(config, io) {
      io.write(new TextEncoder().encode(JSON.stringify(config) + '\\n'));
      const input = [];
      io.onInput((data) => input.push(...data));
      await new Promise((resolve) => setTimeout(resolve, 300));
      io.write(new TextEncoder().encode('guest got: ' + new TextDecoder().decode(Uint8Array.from(input)) + '\\n'));
      return 7;
    }
  `);
  const result = await ringzero(['run', '--engine', 'soft', '--cpus', '2', '--memory', '512MiB', '--on-reboot', 'restart'],
    fakeCache, { env: { RINGZERO_RUNVM_MODULE: fakeRunVm }, input: 'ls\n' });
  assert.equal(result.status, 7, result.stderr);
  const [configLine, echoLine] = result.stdout.split('\n');
  assert.deepEqual(JSON.parse(configLine), {
    engine: 'soft', kernel: join(imageDir, 'bzImage'), initrd: join(imageDir, 'initramfs.cpio'),
    cmdline: DEFAULT_CMDLINE, cpus: 2, memory: 512 * 1024 * 1024, onReboot: 'restart',
  });
  assert.equal(echoLine, 'guest got: ls', 'piped input reaches the guest, and its end does not stop the VM');
  assert.equal(result.stderr, '', 'no escape hint on a pipe, no engine line for an explicit engine');
});
