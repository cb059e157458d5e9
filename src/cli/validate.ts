// Checks of the user's inputs. Each failure is a UsageError with one line that says what is wrong.

import { accessSync, closeSync, constants as fsConstants, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { BootError, parseBzImage } from '../boot/bzimage.ts';
import { MAX_CPUS, MAX_DISKS, type DiskConfig } from '../vmm/config.ts';

export class UsageError extends Error {}

export const MIB = 1024 * 1024;
export const MIN_MEMORY = 64 * MIB;
export const MAX_MEMORY = 64 * 1024 * MIB;

const UNIT_SHIFT: Record<string, number> = { k: 10, m: 20, g: 30, t: 40 };

/**
 * A memory size: a number with an optional K, M, G or T unit (binary multiples; "M", "MB" and "MiB" all mean
 * 2^20 bytes). A bare number is MiB, as with QEMU's -m. Must be a whole number of MiB within 64 MiB..64 GiB.
 */
export function parseMemorySize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?)?\s*$/i.exec(text);
  if (match === null) throw new UsageError(`invalid memory size '${text}': use a number with a unit, e.g. 256M or 4G`);
  const shift = match[2] === undefined ? 20 : UNIT_SHIFT[match[2].toLowerCase()];
  const bytes = Number(match[1]) * 2 ** shift;
  if (!Number.isFinite(bytes) || bytes % MIB !== 0) {
    throw new UsageError(`invalid memory size '${text}': must be a whole number of MiB`);
  }
  if (bytes < MIN_MEMORY) throw new UsageError(`memory size '${text}' is too small: at least 64M`);
  if (bytes > MAX_MEMORY) throw new UsageError(`memory size '${text}' is too large: at most 64G`);
  return bytes;
}

export function parseCpuCount(text: string): number {
  if (!/^\s*\d+\s*$/.test(text)) throw new UsageError(`invalid cpu count '${text}': a whole number from 1 to ${MAX_CPUS}`);
  const cpus = Number(text);
  if (cpus < 1 || cpus > MAX_CPUS) throw new UsageError(`invalid cpu count '${text}': from 1 to ${MAX_CPUS}`);
  return cpus;
}

function checkFile(path: string, what: string): number {
  let stat;
  try {
    stat = statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `${what} '${path}' does not exist` : `cannot read ${what} '${path}' (${code})`);
  }
  if (!stat.isFile()) throw new UsageError(`${what} '${path}' is not a regular file`);
  return stat.size;
}

function readWhole(path: string, what: string): Buffer {
  checkFile(path, what);
  try {
    return readFileSync(path);
  } catch (error) {
    throw new UsageError(`cannot read ${what} '${path}' (${(error as NodeJS.ErrnoException).code})`);
  }
}

function readHead(path: string, what: string, length: number): Buffer {
  const size = checkFile(path, what);
  let fd;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw new UsageError(`cannot read ${what} '${path}' (${(error as NodeJS.ErrnoException).code})`);
  }
  try {
    const head = Buffer.alloc(Math.min(length, size));
    readSync(fd, head, 0, head.length, 0);
    return head;
  } finally {
    closeSync(fd);
  }
}

/** Far above any real bzImage (Debian's is 14 MiB); keeps us from reading a disk image whole by mistake. */
const MAX_KERNEL_BYTES = 256 * MIB;

/**
 * Check that `path` is a bzImage the boot loader (src/boot/bzimage.ts) accepts: "HdrS" at 0x202, boot protocol
 * 2.12 or later with a 64-bit entry point, consistent sizes. Returns the protocol version.
 */
export function checkBzImage(path: string): number {
  if (checkFile(path, 'kernel') > MAX_KERNEL_BYTES) throw new UsageError(`kernel '${path}' is too large to be a bzImage`);
  const image = readWhole(path, 'kernel');
  try {
    return parseBzImage(image).protocol;
  } catch (error) {
    if (error instanceof BootError) throw new UsageError(`kernel '${path}': ${error.message}`);
    throw error;
  }
}

/** Check that `path` is a readable, non-empty file. */
export function checkInitrd(path: string): void {
  const head = readHead(path, 'initrd', 1);
  if (head.length === 0) throw new UsageError(`initrd '${path}' is empty`);
}

/** virtio-blk serial numbers are at most 20 bytes (VIRTIO_BLK_ID_BYTES, virtio 1.2 §5.2.6). */
const MAX_SERIAL = 20;

/**
 * One `--disk FILE[,readonly][,serial=S]`: an existing regular file, readable (and writable unless readonly),
 * a serial of up to 20 printable ASCII characters.
 */
export function parseDiskSpec(text: string): DiskConfig {
  const [path, ...flags] = text.split(',');
  if (path === '') throw new UsageError(`invalid --disk '${text}': use FILE[,readonly][,serial=NAME]`);
  const disk: DiskConfig = { path, readonly: false };
  for (const flag of flags) {
    if (flag === 'readonly' || flag === 'ro') disk.readonly = true;
    else if (flag.startsWith('serial=')) {
      const serial = flag.slice('serial='.length);
      if (!/^[\x21-\x7e]{1,20}$/.test(serial)) {
        throw new UsageError(`invalid serial '${serial}' in --disk '${text}': 1 to ${MAX_SERIAL} printable ASCII characters, no spaces or commas`);
      }
      disk.serial = serial;
    } else {
      throw new UsageError(`unknown --disk option '${flag}' in '${text}': use readonly or serial=NAME`);
    }
  }
  const size = checkFile(path, 'disk image');
  if (size < 512) throw new UsageError(`disk image '${path}' is smaller than one 512-byte sector`);
  try {
    accessSync(path, disk.readonly ? fsConstants.R_OK : fsConstants.R_OK | fsConstants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(disk.readonly ? `cannot read disk image '${path}' (${code})` : `cannot write disk image '${path}' (${code}): add ,readonly to use it read-only`);
  }
  return disk;
}

/** Every `--disk`, in order; at most MAX_DISKS, each image file at most once. */
export function parseDisks(specs: readonly string[]): DiskConfig[] {
  if (specs.length > MAX_DISKS) throw new UsageError(`too many disks (${specs.length}): at most ${MAX_DISKS}`);
  const disks = specs.map(parseDiskSpec);
  const seen = new Map<string, string>();
  for (const disk of disks) {
    const stat = statSync(disk.path);
    const key = `${stat.dev}:${stat.ino}`;
    const other = seen.get(key);
    if (other !== undefined) throw new UsageError(`disk image '${disk.path}' is given twice (also as '${other}')`);
    seen.set(key, disk.path);
  }
  return disks;
}

export const CONSOLE_KINDS = ['serial', 'virtio'] as const;
