// What the benches share: the default image, QEMU's reference command lines (TCG on the q35 machine, as bench/boot
// has always run it), medians and ratios, and clean-up of every VMM a bench started even when it dies half-way.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { findDefaultImage, type DefaultImage } from '../../src/image/build.ts';
import { DEFAULT_CMDLINE } from '../../src/vmm/config.ts';
import { bundleStaleReason } from '../../scripts/bundle-fresh.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const RINGZERO = path.join(ROOT, 'bin', 'ringzero');
/** The same kernel command line for ringzero and QEMU: ringzero's default (src/vmm/config.ts). */
export const CMDLINE = DEFAULT_CMDLINE;
export const QEMU = 'qemu-system-x86_64';

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)];
};

/**
 * Read `file` once through the host's page cache, so each VMM's disk starts from the same host cache state. Both VMMs
 * read their disk image through that cache (ringzero's backend with preadv, QEMU's default cache=writeback), and the
 * benches make the image sparse (truncate) and run ringzero first: its first reads had the host allocate and zero-fill
 * page-cache pages for the image's holes (ext4_mpage_readpages -> zero_user_segments: 12.7% of ringzero's guest thread
 * in bench/io-passes' first 32 MiB O_DIRECT read, perf cpu-clock, session 29), which QEMU, run after it, then found
 * cached. Returns the ms it took.
 */
export function warmHostCache(file: string): number {
  const t0 = performance.now();
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    while (fs.readSync(fd, buf, 0, buf.length, null) > 0) { /* only the host's page cache is wanted */ }
  } finally {
    fs.closeSync(fd);
  }
  return performance.now() - t0;
}

/**
 * Exit 2 when `bin`'s checkout would run its TypeScript sources through tsx instead of its bundle (bin/ringzero's own
 * rule, scripts/bundle-fresh.mjs): a VMM started from the sources spends ~1 s more of its start compiling them (the
 * default guest's first console line 2.7 -> 3.7 s on session 37's host), so every ratio against QEMU would carry it,
 * as a benchmark run after an edit did before this check. RINGZERO_NO_BUNDLE=1 (the sources on purpose) skips it.
 * Checked once per checkout.
 */
const checkedBundles = new Set<string>();
export function requireFreshBundle(bin: string = RINGZERO): void {
  const file = path.resolve(bin);
  // Only a checkout's own launcher: a wrapper script (bench/boot-threads --bins) starts whichever it names.
  if (path.basename(file) !== 'ringzero' || path.basename(path.dirname(file)) !== 'bin') return;
  const root = path.dirname(path.dirname(file));
  if (process.env.RINGZERO_NO_BUNDLE === '1' || checkedBundles.has(root)) return;
  checkedBundles.add(root);
  const why = bundleStaleReason(`${root}/`);
  if (why === null) return;
  console.error(`bench: ${root}'s bundle is stale (${why}): its bin/ringzero would run the TypeScript sources through tsx, ` +
    `which starts ~1 s slower; run \`npm run build\` there (or set RINGZERO_NO_BUNDLE=1 to measure the sources)`);
  process.exit(2);
}

/** The built default image, or exit 2 with the command that builds it. */
export function requireImage(bench: string): DefaultImage {
  const image = findDefaultImage();
  if (!image) {
    console.error(`bench/${bench}: no default image; run \`bin/ringzero image build\` first`);
    process.exit(2);
  }
  return image;
}

export function qemuPresent(): boolean {
  return spawnSync(QEMU, ['--version']).status === 0;
}

export interface QemuVm {
  kernel: string;
  initrd: string;
  cmdline: string;
  cpus: number | string;
  memory: string;
}

/**
 * QEMU's binary translator on the q35 machine with the serial console on stdio, exiting instead of rebooting:
 * the reference for ringzero's soft engine. `extra` adds devices.
 */
export function qemuTcgArgs(vm: QemuVm, extra: readonly string[] = []): string[] {
  return ['-accel', 'tcg', '-M', 'q35', '-smp', String(vm.cpus), '-m', vm.memory, '-nographic', '-no-reboot',
    '-kernel', vm.kernel, '-initrd', vm.initrd, '-append', vm.cmdline, ...extra];
}

/** Kill a process group started with `detached: true` (a VMM and whatever it spawned). */
export function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try { process.kill(-pid, 'SIGKILL'); } catch { /* already gone */ }
}

const cleanups = new Set<() => void>();
let hooked = false;
/** Run `fn` when the bench ends, however it ends (normal exit, uncaught error, Ctrl-C); returns an unregister. */
export function onCleanup(fn: () => void): () => void {
  if (!hooked) {
    hooked = true;
    const runAll = () => { for (const f of [...cleanups]) { try { f(); } catch { /* best effort */ } } cleanups.clear(); };
    process.on('exit', runAll);
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { runAll(); process.exit(130); });
  }
  cleanups.add(fn);
  return () => { cleanups.delete(fn); };
}

/** "1.23x" for a ratio, "n/a" when one side is missing. */
export function ratioText(ours: number | undefined, theirs: number | undefined): string {
  if (ours === undefined || theirs === undefined || !Number.isFinite(ours) || !Number.isFinite(theirs) || theirs === 0) return 'n/a';
  return `${(ours / theirs).toFixed(2)}x`;
}

/** --scheduler NAME (bench/io, bench/io-passes): the name when given, checked to be one word; throws otherwise. */
export function schedulerOption(name: string | undefined): string | undefined {
  if (name !== undefined && !/^[a-z0-9-]+$/.test(name)) throw new Error(`--scheduler: '${name}' is not a scheduler name`);
  return name;
}

/**
 * The guest shell command that sets /dev/vda's I/O scheduler to `name` and prints the scheduler list (the one in use
 * in brackets), and the check of that output: throws when `name` is not the one in use.
 */
export function setSchedulerCommand(name: string): string {
  return `echo ${name} > /sys/block/vda/queue/scheduler; cat /sys/block/vda/queue/scheduler`;
}
export function checkScheduler(name: string, output: string, who: string): void {
  if (!output.includes(`[${name}]`)) throw new Error(`${who}: scheduler ${name} not set: ${output}`);
}

/** A positive integer option, or exit 2 naming it. */
export function positiveInt(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name}: expected a positive integer, got '${text}'`);
    process.exit(2);
  }
  return n;
}

/** A comma-separated --NAME list (blanks dropped), or exit 2 naming the first entry not in `known` and the choices. */
export function nameList(name: string, text: string | undefined, known: readonly string[]): string[] {
  const names = (text ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = names.find((n) => !known.includes(n));
  if (unknown !== undefined) {
    console.error(`--${name}: unknown '${unknown}': use ${known.join(', ')}`);
    process.exit(2);
  }
  return names;
}

/** Print a table with aligned columns. */
export function printTable(header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

/** `--help`/`-h` among `args`: print the usage that the bench's header comment gives (its leading `//` lines: one
 * text, never out of step with the file) and exit 0. */
function helpFromHeader(file: string, args: readonly string[]): void {
  if (!args.includes('--help') && !args.includes('-h')) return;
  const header: string[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.startsWith('//')) break;
    header.push(line.replace(/^\/\/ ?/, ''));
  }
  console.log(header.join('\n'));
  process.exit(0);
}

/**
 * A bench's command-line options (node:util parseArgs with `config`), with `--help`/`-h` printing the bench's header
 * comment and exiting 0, and an unknown or malformed option printed as one line with the pointer to --help, exiting 2.
 */
export function benchArgs<T extends ParseArgsConfig>(moduleUrl: string, config: T): ReturnType<typeof parseArgs<T>> {
  const file = fileURLToPath(moduleUrl);
  helpFromHeader(file, config.args ?? process.argv.slice(2));
  try {
    return parseArgs(config);
  } catch (error) {
    console.error(`${path.relative(ROOT, file)}: ${(error as Error).message} (--help for the options)`);
    process.exit(2);
  }
}

/**
 * For a bench that reads its arguments itself: `--help`/`-h` as benchArgs does, and any `--option` not in `known`
 * refused (one line, exit 2) rather than ignored, so a mistyped option does not run the bench with its defaults.
 */
export function checkBenchOptions(moduleUrl: string, args: readonly string[], known: readonly string[]): void {
  const file = fileURLToPath(moduleUrl);
  helpFromHeader(file, args);
  const unknown = args.filter((a) => a.startsWith('--') && !known.includes(a));
  if (unknown.length > 0) {
    console.error(`${path.relative(ROOT, file)}: unknown option ${unknown.join(', ')} (--help for the options)`);
    process.exit(2);
  }
}
