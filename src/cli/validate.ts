// Checks of the user's inputs. Each failure is a UsageError with one line that says what is wrong.

import { accessSync, closeSync, constants as fsConstants, existsSync, lstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { userInfo } from 'node:os';
import { dirname } from 'node:path';
import { BootError, MAX_SETUP_BYTES, parseBzImageHead } from '../boot/bzimage.ts';
import { MAX_CPUS, MAX_DISKS, MAX_NICS, type DiskConfig, type NetConfig, type VsockConfig } from '../vmm/config.ts';
import { macProblem } from '../manager/nics.ts';

export class UsageError extends Error {}

// `run`'s engine choices and default memory size live here, not in host.ts and run-config.ts: main.ts needs them for
// the help text, and importing those (with the image builder and the KVM probe) would cost every command.
export type EngineRequest = 'auto' | 'soft' | 'kvm';
export const ENGINE_REQUESTS: readonly EngineRequest[] = ['auto', 'soft', 'kvm'];
export const DEFAULT_MEMORY = '256M';

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
  const size = checkFile(path, 'kernel');
  if (size > MAX_KERNEL_BYTES) throw new UsageError(`kernel '${path}' is too large to be a bzImage`);
  // Only the setup part: its checks need no more than that and the file's size, and reading the whole 14 MB of
  // Debian's kernel (once more: the machine reads it to boot) cost the VMM's main thread tens of ms of fresh pages.
  const head = readHead(path, 'kernel', MAX_SETUP_BYTES);
  try {
    return parseBzImageHead(head, size).protocol;
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
 * One `--disk FILE[,readonly][,serial=S][,format=raw|qcow2]`: an existing regular file, readable (and writable
 * unless readonly), a serial of up to 20 printable ASCII characters, and the image format when it is not to be
 * probed (format=qcow2 must find qcow2's magic; format=raw opens anything as raw, sector 0 included).
 */
export function parseDiskSpec(text: string): DiskConfig {
  const [path, ...flags] = text.split(',');
  if (path === '') throw new UsageError(`invalid --disk '${text}': use FILE[,readonly][,serial=NAME][,format=raw|qcow2]`);
  const disk: DiskConfig = { path, readonly: false };
  for (const flag of flags) {
    if (flag === 'readonly' || flag === 'ro') disk.readonly = true;
    else if (flag.startsWith('serial=')) {
      const serial = flag.slice('serial='.length);
      if (!/^[\x21-\x7e]{1,20}$/.test(serial)) {
        throw new UsageError(`invalid serial '${serial}' in --disk '${text}': 1 to ${MAX_SERIAL} printable ASCII characters, no spaces or commas`);
      }
      disk.serial = serial;
    } else if (flag.startsWith('format=')) {
      const format = flag.slice('format='.length);
      if (format !== 'raw' && format !== 'qcow2') throw new UsageError(`invalid format '${format}' in --disk '${text}': raw or qcow2`);
      if (disk.format !== undefined && disk.format !== format) throw new UsageError(`--disk '${text}' gives two formats`);
      disk.format = format;
    } else {
      throw new UsageError(`unknown --disk option '${flag}' in '${text}': use readonly, serial=NAME or format=raw|qcow2`);
    }
  }
  const size = checkFile(path, 'disk image');
  if (size < 512) throw new UsageError(`disk image '${path}' is smaller than one 512-byte sector`);
  if (disk.format === 'qcow2' && !hasQcow2Magic(path)) throw new UsageError(`disk image '${path}' is not a qcow2 image (no qcow2 header): use format=raw, or leave format= out to probe`);
  try {
    accessSync(path, disk.readonly ? fsConstants.R_OK : fsConstants.R_OK | fsConstants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(disk.readonly ? `cannot read disk image '${path}' (${code})` : `cannot write disk image '${path}' (${code}): add ,readonly to use it read-only`);
  }
  return disk;
}

/** Whether the file starts with qcow2's magic "QFI\xfb" (qcow2 spec, header offset 0). */
function hasQcow2Magic(file: string): boolean {
  const head = readHead(file, 'disk image', 4);
  return head.length === 4 && head.readUInt32BE(0) === 0x514649fb;
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

/** Linux interface names (dev_valid_name): 1 to 15 bytes, none of '/', ':' or whitespace. */
const INTERFACE_NAME = /^[A-Za-z0-9_.@+-]{1,15}$/;
/** sun_path holds 108 bytes with the terminating NUL. */
export const MAX_UNIX_PATH = 107;

/**
 * The `tap=NAME[,mac=XX:XX:XX:XX:XX:XX]` of `--net` (run) and of `--nic` (a clone's card, `restore --as`): a TAP
 * interface name and, when given, a usable unicast MAC in lower case. Shapes only: whether the TAP can be opened is
 * the caller's to check (`--net` here, at once; a clone's TAP by the daemon's VMM).
 */
export function parseTapSpec(text: string, option: string): { tap: string; mac?: string } {
  let tap: string | undefined;
  let mac: string | undefined;
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if ((key === 'tap' && tap !== undefined) || (key === 'mac' && mac !== undefined)) throw new UsageError(`${key}= is given twice in ${option} '${text}'`);
    if (key === 'tap') tap = value;
    else if (key === 'mac') mac = value;
    else throw new UsageError(`unknown ${option} option '${part}' in '${text}': use tap=NAME[,mac=XX:XX:XX:XX:XX:XX]`);
  }
  if (tap === undefined) throw new UsageError(`invalid ${option} '${text}': use tap=NAME[,mac=XX:XX:XX:XX:XX:XX]`);
  if (!INTERFACE_NAME.test(tap) || tap === '.' || tap === '..') {
    throw new UsageError(`invalid TAP name '${tap}' in ${option} '${text}': 1 to 15 letters, digits or _.@+-`);
  }
  if (mac === undefined) return { tap };
  const problem = macProblem(mac);
  if (problem !== undefined) throw new UsageError(`invalid MAC '${mac}' in ${option} '${text}': ${problem}`);
  return { tap, mac: mac.toLowerCase() };
}

/**
 * One `--net tap=NAME[,mac=XX:XX:XX:XX:XX:XX]` (parseTapSpec). Without mac= the MAC is derived from the TAP name
 * (locally administered, so it never collides with a vendor's), so a VM keeps its MAC from one run to the next.
 * Whether the TAP can be opened is checked against /sys when possible.
 */
export function parseNetSpec(text: string): NetConfig {
  const { tap, mac: given } = parseTapSpec(text, '--net');
  let mac = given;
  if (mac === undefined) {
    const hash = createHash('sha256').update(`ringzero-net:${tap}`).digest();
    hash[0] = 0x02; // locally administered, unicast (IEEE 802 §8.2)
    mac = Array.from(hash.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(':');
  }
  checkTap(tap);
  return { tap, mac };
}

/** What can be known about TAP `name` before opening it: /dev/net/tun, and whether it is a TAP we may use. */
function checkTap(name: string): void {
  if (!existsSync('/dev/net/tun')) throw new UsageError(`cannot use TAP '${name}': this host has no /dev/net/tun (load the tun module)`);
  const sys = `/sys/class/net/${name}`;
  if (!existsSync(sys)) {
    // Attaching creates a TAP that lives as long as the VM: only with CAP_NET_ADMIN (root here).
    if (process.getuid?.() !== 0) {
      throw new UsageError(`TAP '${name}' does not exist: create it with 'sudo ip tuntap add dev ${name} mode tap user ${userInfo().username}'`);
    }
    return;
  }
  let flags: number;
  try {
    flags = Number(readFileSync(`${sys}/tun_flags`, 'utf8').trim());
  } catch {
    throw new UsageError(`interface '${name}' is not a TAP device`);
  }
  const IFF_TAP = 0x0002;
  if (!(flags & IFF_TAP)) throw new UsageError(`interface '${name}' is a TUN device, not TAP: recreate it with 'ip tuntap add dev ${name} mode tap'`);
  if (process.getuid?.() !== 0) {
    const owner = Number(readFileSync(`${sys}/owner`, 'utf8').trim());
    if (owner !== -1 && owner !== process.getuid?.()) throw new UsageError(`TAP '${name}' belongs to uid ${owner}: recreate it with 'ip tuntap add dev ${name} mode tap user ${userInfo().username}'`);
  }
}

/** Every `--net`, in order; at most MAX_NICS, each TAP once. */
export function parseNets(specs: readonly string[]): NetConfig[] {
  if (specs.length > MAX_NICS) throw new UsageError(`too many --net (${specs.length}): at most ${MAX_NICS}`);
  const nets = specs.map(parseNetSpec);
  const taps = new Set<string>();
  const macs = new Set<string>();
  for (const n of nets) {
    if (taps.has(n.tap)) throw new UsageError(`TAP '${n.tap}' is given twice`);
    if (macs.has(n.mac)) throw new UsageError(`MAC ${n.mac} is given twice`);
    taps.add(n.tap);
    macs.add(n.mac);
  }
  return nets;
}

/**
 * `--vsock CID[,path=PATH]`: the guest's CID (3 to 4294967294; 0-2 and 2^32-1 are reserved, virtio 1.2 §5.10.4)
 * and the host's Unix socket (default ./ringzero-vsock-<CID>.sock); guest connects to port P reach PATH_P.
 */
export function parseVsockSpec(text: string): VsockConfig {
  const [cidText, ...rest] = text.split(',');
  if (!/^\d{1,10}$/.test(cidText)) throw new UsageError(`invalid --vsock '${text}': use CID[,path=SOCKET] with a CID from 3 to 4294967294`);
  const cid = Number(cidText);
  if (cid < 3 || cid > 0xfffffffe) throw new UsageError(`invalid vsock CID ${cidText}: 0, 1, 2 and 4294967295 are reserved; use 3 to 4294967294`);
  let path = `ringzero-vsock-${cid}.sock`;
  for (const part of rest) {
    if (part.startsWith('path=') && part.length > 5) path = part.slice(5);
    else throw new UsageError(`unknown --vsock option '${part}' in '${text}': use path=SOCKET`);
  }
  // Guest-initiated connections use PATH_<port>, up to 11 more bytes.
  checkSocketPath(path, '--vsock path', 11);
  return { cid, path };
}

/** A Unix socket path the VMM will create: short enough, in an existing directory, not over another file. */
export function checkSocketPath(path: string, what: string, suffix = 0): void {
  if (Buffer.byteLength(path) + suffix > MAX_UNIX_PATH) throw new UsageError(`${what} '${path}' is too long for a Unix socket (at most ${MAX_UNIX_PATH - suffix} bytes)`);
  let stat;
  try {
    stat = lstatSync(path);
  } catch {
    const parent = dirname(path);
    if (!existsSync(parent)) throw new UsageError(`${what} '${path}': directory '${parent}' does not exist`);
    return;
  }
  // A socket file is left over from an earlier run and is replaced; any other file is the user's.
  if (!stat.isSocket()) throw new UsageError(`${what} '${path}' exists and is not a socket`);
}
