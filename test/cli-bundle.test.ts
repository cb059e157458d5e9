// The CLI bundle (scripts/build.mjs, npm's `prepare`) and bin/ringzero's choice between it and tsx: the bundle runs
// while it is fresh, never once a file under src/ is newer (or added), nor with RINGZERO_NO_BUNDLE=1; the build refuses
// sources it cannot bundle faithfully; a bundled `--help` and a bundled tiny-kernel run (soft engine, and the KVM
// engine's worker-thread entry where /dev/kvm is usable) work, and so does the bundled eventfd watcher thread.
// Everything happens in a temporary copy of the tree (bin, scripts, src, package.json; node_modules linked), so the
// real sources' times and the real dist/ are left alone.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { detectKvm } from '../src/kvm/host.ts';
import { MAX_FDS, W } from '../src/kvm/eventfd-watcher.ts';
import { eventfd } from '../src/kvm/sys.ts';
import { ringzero as runCli, type RingzeroResult } from './support/ringzero-cli.ts';
import { writeTinyKernel } from './support/guest.ts';

const exec = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MARK = 'ringzero-test: the bundle runs';

// The guest of test/vm-kvm-cli.test.ts: hello on COM1, an RTC check, ACPI poweroff.
const GUEST_HEX = '488d3576000000b91e000000e857000000b000e670e47188c380e30f80fb0977173c597713488d356f000000b917000000e8'
  + '32000000eb11488d3573000000b915000000e81f000000803d2c00000000750c66ba040666b8003466efeb0766baf90cb006eef4ebfd66'
  + 'bafd03eca82074fb66baf803aceeffc975edc30072696e677a65726f2067756573743a2068656c6c6f206f6e20434f4d310a72746320'
  + '7365636f6e64733a2076616c6964204243440a727463207365636f6e64733a20494e56414c49440a';
const GUEST_OUTPUT = 'ringzero guest: hello on COM1\nrtc seconds: valid BCD\n';

const tree = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-bundle-'));
test.after(() => fs.rmSync(tree, { recursive: true, force: true }));
for (const part of ['bin', 'scripts', 'src']) fs.cpSync(path.join(root, part), path.join(tree, part), { recursive: true });
fs.copyFileSync(path.join(root, 'package.json'), path.join(tree, 'package.json'));
fs.symlinkSync(path.join(root, 'node_modules'), path.join(tree, 'node_modules'));
const bin = path.join(tree, 'bin', 'ringzero');
const mainJs = path.join(tree, 'dist', 'esm', 'main.js');

async function build(): Promise<{ code: number; stderr: string }> {
  try {
    const r = await exec(process.execPath, [path.join(tree, 'scripts', 'build.mjs')], { cwd: tree, timeout: 120_000 });
    return { code: 0, stderr: r.stderr };
  } catch (error) {
    const e = error as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

const mainCjs = path.join(tree, 'dist', 'cjs', 'main.cjs');
const CJS_MARK = `${MARK} as CommonJS`;
const ESM_MARK = `${MARK} as ES modules`;

/**
 * Build, then make the bundle announce itself on stderr: main.js (keeping its stamp, the mtime the build left) and
 * main.cjs (what bin/ringzero runs with the code cache; after its 'use strict' line, which must stay first).
 */
async function buildMarked(): Promise<void> {
  const r = await build();
  assert.equal(r.code, 0, r.stderr);
  const stamp = fs.statSync(mainJs).mtime;
  fs.writeFileSync(mainJs, `process.stderr.write(${JSON.stringify(`${ESM_MARK}\n`)});\n${fs.readFileSync(mainJs, 'utf8')}`);
  fs.utimesSync(mainJs, stamp, stamp);
  const cjs = fs.readFileSync(mainCjs, 'utf8');
  const firstLine = cjs.indexOf('\n') + 1;
  assert.equal(cjs.slice(0, firstLine), "'use strict';\n");
  fs.writeFileSync(mainCjs, `${cjs.slice(0, firstLine)}process.stderr.write(${JSON.stringify(`${CJS_MARK}\n`)});\n${cjs.slice(firstLine)}`);
}

/** The code caches beside main.cjs (bin/ringzero names them main.cjs.<inode>-<size>-<mtime>.<restore|run|daemon|cli>.cache). */
const codeCaches = (): string[] => fs.readdirSync(path.dirname(mainCjs)).filter((n) => n.endsWith('.cache'));

/** The copy's CLI, its bundle allowed unless env says otherwise (test/support/ringzero-cli.ts). */
function ringzero(args: string[], env: Record<string, string> = {}): Promise<RingzeroResult> {
  return runCli(args, { bin, env: { RINGZERO_NO_BUNDLE: '', ...env } });
}

function kernelFile(): string {
  return writeTinyKernel(path.join(tree, 'guest.bzImage'), GUEST_HEX);
}

test('a fresh bundle runs --help; RINGZERO_NO_BUNDLE=1 runs the sources through tsx', async () => {
  await buildMarked();
  for (const name of ['main.js', 'worker.js', 'eventfd-worker.js']) assert.ok(fs.existsSync(path.join(tree, 'dist', 'esm', name)), name);
  const bundled = await ringzero(['--help']);
  assert.equal(bundled.status, 0, bundled.stderr);
  assert.match(bundled.stdout, /^Usage: ringzero /);
  assert.ok(bundled.stderr.includes(MARK), 'the fresh bundle was not used');
  const forced = await ringzero(['--help'], { RINGZERO_NO_BUNDLE: '1' });
  assert.equal(forced.status, 0, forced.stderr);
  assert.equal(forced.stdout, bundled.stdout);
  assert.ok(!forced.stderr.includes(MARK), 'RINGZERO_NO_BUNDLE=1 still ran the bundle');
});

test('a source newer than the bundle, or a new source file, makes bin/ringzero run the sources', async () => {
  await buildMarked();
  assert.ok((await ringzero(['--help'])).stderr.includes(MARK));
  // An edit after the build (which took a while): the file's times are past the build's start.
  const edited = path.join(tree, 'src', 'cli', 'validate.ts');
  const now = new Date();
  assert.ok(now.getTime() > fs.statSync(mainJs).mtimeMs);
  fs.utimesSync(edited, now, now);
  const stale = await ringzero(['--help']);
  assert.equal(stale.status, 0, stale.stderr);
  assert.match(stale.stdout, /^Usage: ringzero /);
  assert.ok(!stale.stderr.includes(MARK), 'a stale bundle ran after a source edit');

  await buildMarked();
  assert.ok((await ringzero(['--help'])).stderr.includes(MARK), 'the rebuilt bundle was not used');
  // A file copied in with an old mtime: its folder (and its own ctime) changed.
  const added = path.join(tree, 'src', 'vmm', 'added-by-test.ts');
  fs.writeFileSync(added, 'export const x = 1;\n');
  fs.utimesSync(added, new Date(2000, 0, 1), new Date(2000, 0, 1));
  assert.ok(!(await ringzero(['--help'])).stderr.includes(MARK), 'a stale bundle ran after a file was added');
  fs.rmSync(added);
});

test('the build refuses a worker it would not bundle and a path that moves with the bundle', async () => {
  const extra = path.join(tree, 'src', 'vmm', 'bad-by-test.ts');
  try {
    fs.writeFileSync(extra, "import { Worker } from 'node:worker_threads';\nexport const w = () => new Worker(new URL('./x.js', import.meta.url));\n");
    // Not imported by anything: the Worker check covers every source file.
    let r = await build();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /src\/vmm\/bad-by-test\.ts: new Worker\( outside src\/kvm\/spawn\.ts/);
    // Reached from the CLI, a relative URL one level up would name another file from dist/esm/.
    fs.writeFileSync(extra, "export const data = new URL('../boot/synthetic.ts', import.meta.url);\n");
    const main = path.join(tree, 'src', 'cli', 'main.ts');
    const original = fs.readFileSync(main, 'utf8');
    fs.writeFileSync(main, `import '../vmm/bad-by-test.ts';\n${original}`);
    try {
      r = await build();
    } finally {
      fs.writeFileSync(main, original);
    }
    assert.equal(r.code, 1);
    assert.match(r.stderr, /src\/vmm\/bad-by-test\.ts: new URL\('\.\.\/boot\/synthetic\.ts', import\.meta\.url\) names dist\/boot\/synthetic\.ts/);
  } finally {
    fs.rmSync(extra, { force: true });
  }
});

test('the CommonJS bundle and its code cache: written by a run, taken by the next, refused when damaged, dropped by a rebuild', async () => {
  await buildMarked();
  assert.deepEqual(codeCaches(), [], 'a build leaves no code cache');
  const run = (env: Record<string, string> = {}) => ringzero(['run', '--engine', 'soft', '--kernel', kernelFile(), '--memory', '64M'], { RINGZERO_CODE_CACHE_MS: '0', ...env });
  const first = await run();
  assert.equal(first.status, 0, first.stderr);
  assert.equal(first.stdout, GUEST_OUTPUT);
  assert.ok(first.stderr.includes(CJS_MARK) && !first.stderr.includes(ESM_MARK), first.stderr);
  const [cache] = codeCaches();
  assert.ok(cache, 'the run wrote no code cache');
  assert.match(cache, /\.run\.cache$/, 'a VMM\'s cache is its own');
  const cacheFile = path.join(path.dirname(mainCjs), cache);
  const written = fs.readFileSync(cacheFile);
  // Taken: the next run works from it and does not write another.
  const second = await run();
  assert.equal(second.status, 0, second.stderr);
  assert.equal(second.stdout, GUEST_OUTPUT);
  assert.deepEqual(codeCaches(), [cache]);
  assert.ok(fs.readFileSync(cacheFile).equals(written), 'an accepted cache was rewritten');
  // Damaged: V8 refuses it, the run compiles as without one, and writes a good one again.
  fs.writeFileSync(cacheFile, Buffer.alloc(written.length, 0x5a));
  const damaged = await run();
  assert.equal(damaged.status, 0, damaged.stderr);
  assert.equal(damaged.stdout, GUEST_OUTPUT);
  assert.ok(fs.readFileSync(cacheFile).equals(written) || fs.readFileSync(cacheFile)[0] !== 0x5a, 'the damaged cache was not replaced');
  // A restoring VMM starts from the booted VMMs' cache and writes its own (here: a usage error's exit).
  const restore = await ringzero(['run', '--incoming', 'unix:/nowhere'], { RINGZERO_CODE_CACHE_MS: '0' });
  assert.equal(restore.status, 2, restore.stderr);
  assert.deepEqual(codeCaches().map((n) => n.replace(/^.*\.(\w+)\.cache$/, '$1')).sort(), ['restore', 'run']);
  // RINGZERO_CODE_CACHE=0: the ES module bundle.
  const modules = await ringzero(['--help'], { RINGZERO_CODE_CACHE: '0' });
  assert.ok(modules.stderr.includes(ESM_MARK) && !modules.stderr.includes(CJS_MARK), modules.stderr);
  // A rebuild removes the caches of the old main.cjs.
  await buildMarked();
  assert.deepEqual(codeCaches(), []);
});

test('a bundled run of a tiny kernel on the soft engine: its console output, status 0', async () => {
  await buildMarked();
  const r = await ringzero(['run', '--engine', 'soft', '--kernel', kernelFile(), '--memory', '64M']);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stderr.includes(MARK), 'the bundle was not used');
  assert.equal(r.stdout, GUEST_OUTPUT);
});

const kvm = detectKvm();
test('a bundled run on the KVM engine (its vCPU worker is dist/esm/worker.js)', {
  skip: kvm.verdict === 'none' ? `no usable KVM: ${kvm.reason}` : false,
}, async () => {
  await buildMarked();
  const r = await ringzero(['run', '--engine', 'kvm', '--kernel', kernelFile(), '--memory', '64M', '--cpus', '2'],
    kvm.verdict === 'pvm' ? { RINGZERO_ALLOW_PVM: '1' } : {});
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stderr.includes(MARK), 'the bundle was not used');
  assert.equal(r.stdout, GUEST_OUTPUT);
});

test('the bundled eventfd watcher thread (dist/esm/eventfd-worker.js) marks a signalled eventfd ready', async () => {
  await buildMarked();
  const sab = new SharedArrayBuffer((W.READY + MAX_FDS / 32) * 4);
  const words = new Int32Array(sab);
  const control = eventfd();
  const watched = eventfd();
  const one = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);
  words[W.FDS] = watched;
  words[W.COUNT] = 1;
  words[W.GENERATION] = 1;
  const worker = new Worker(new URL(`file://${path.join(tree, 'dist', 'esm', 'eventfd-worker.js')}`), { workerData: { sab, controlFd: control, wake: [] } });
  const failed = new Promise<never>((_, reject) => worker.on('error', reject));
  const until = async (what: string, ok: () => boolean) => {
    const deadline = Date.now() + 20_000;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`the watcher thread: no ${what}`);
      await Promise.race([new Promise((r) => setTimeout(r, 10)), failed]);
    }
  };
  try {
    await until('start', () => Atomics.load(words, W.STARTED) === 1);
    fs.writeSync(watched, one);
    await until('ready mark', () => (Atomics.load(words, W.READY) & 1) === 1);
    assert.ok(Atomics.load(words, W.SEQ) >= 1);
  } finally {
    // The thread blocks in poll(2), where terminate() cannot reach it: ask it to quit through the control eventfd.
    Atomics.store(words, W.QUIT, 1);
    fs.writeSync(control, one);
    await until('exit', () => Atomics.load(words, W.DONE) === 1);
    await worker.terminate();
    fs.closeSync(control);
    fs.closeSync(watched);
  }
});
