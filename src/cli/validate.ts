// Checks of the user's inputs. Each failure is a UsageError with one line that says what is wrong.

import { closeSync, openSync, readSync, statSync } from 'node:fs';
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

function readHead(path: string, what: string, length: number): Buffer {
  let stat;
  try {
    stat = statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `${what} '${path}' does not exist` : `cannot read ${what} '${path}' (${code})`);
  }
  if (!stat.isFile()) throw new UsageError(`${what} '${path}' is not a regular file`);
  let fd;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw new UsageError(`cannot read ${what} '${path}' (${(error as NodeJS.ErrnoException).code})`);
  }
  try {
    const head = Buffer.alloc(Math.min(length, stat.size));
    readSync(fd, head, 0, head.length, 0);
    return head;
  } finally {
    closeSync(fd);
  }
}

// Offsets in the real-mode kernel header (Linux Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header").
const BOOT_FLAG_OFFSET = 0x1fe; // 0xAA55
const HEADER_MAGIC_OFFSET = 0x202; // "HdrS"
const PROTOCOL_VERSION_OFFSET = 0x206;
const LOADFLAGS_OFFSET = 0x211;
const LOADED_HIGH = 0x01; // loadflags bit 0: protected-mode code loads at 1 MiB, i.e. a bzImage
/** Protocol 2.06 added cmdline_size; older kernels are long gone and we don't support them. */
export const MIN_BOOT_PROTOCOL = 0x0206;

/** Check that `path` is a readable bzImage with boot protocol >= 2.06; returns the protocol version. */
export function checkBzImage(path: string): number {
  const head = readHead(path, 'kernel', 0x240);
  if (head.length < 0x240 || head.readUInt16LE(BOOT_FLAG_OFFSET) !== 0xaa55
    || head.toString('latin1', HEADER_MAGIC_OFFSET, HEADER_MAGIC_OFFSET + 4) !== 'HdrS') {
    throw new UsageError(`kernel '${path}' is not a bzImage (no "HdrS" boot header at 0x202)`);
  }
  const version = head.readUInt16LE(PROTOCOL_VERSION_OFFSET);
  const versionText = `${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}`;
  if (version < MIN_BOOT_PROTOCOL) {
    throw new UsageError(`kernel '${path}' uses boot protocol ${versionText}; ringzero needs 2.06 or later`);
  }
  if ((head[LOADFLAGS_OFFSET] & LOADED_HIGH) === 0) {
    throw new UsageError(`kernel '${path}' is a zImage (loaded low), not a bzImage`);
  }
  return version;
}

/** Check that `path` is a readable, non-empty file. */
export function checkInitrd(path: string): void {
  const head = readHead(path, 'initrd', 1);
  if (head.length === 0) throw new UsageError(`initrd '${path}' is empty`);
}
