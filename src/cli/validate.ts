// Checks of the user's inputs. Each failure is a UsageError with one line that says what is wrong.

import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { BootError, parseBzImage } from '../boot/bzimage.ts';
import { MAX_CPUS } from '../vmm/config.ts';

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
