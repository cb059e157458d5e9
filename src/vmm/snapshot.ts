// VM snapshots: the format, and saving/restoring a paused soft-engine Machine.
//
// A snapshot is a directory of two files:
//   memory      the guest RAM image (low region, then the region above 4 GiB, as laid out in the memfd), sparse:
//               pages that are zero are holes. Restore maps it MAP_PRIVATE (GuestMemory's file source), so pages
//               are read lazily on first touch, guest writes stay private, and restore time does not grow with RAM.
//   state.json  { format, version, crc32, body }: body holds the header (ringzero version, engine, cpus, memory
//               size), the VM definition, the guest time, every vCPU's architectural state in an engine-neutral shape
//               (see snapshot-cpu.ts), every device's state, and the memory image's size and digest. crc32 covers
//               format, version and body (zlib's CRC-32, the one of ISO 3309 / ITU-T V.42).
// Readers refuse a snapshot of another format version or with a bad checksum before anything is built, with one
// error naming the problem (SnapshotError). The memory digest (SHA-256 over the non-zero 64 KiB chunks, each
// prefixed with its offset) is checked only on request (verifyMemory), since checking it means reading all of RAM;
// the memory file's size is always checked.
//
// Firecracker's snapshot design (a memory file mapped on restore plus a versioned state file with a CRC) is the
// model; nothing is taken from its code.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import { libc, lastErrno } from '../sys/libc.ts';
import type { GuestMemory } from '../memory/guest-memory.ts';
import type { VmConfig } from './config.ts';
import type { VcpuState } from './snapshot-cpu.ts';
import type { Serial16550State } from '../devices/serial.ts';
import type { DualPicState } from '../devices/irq/pic.ts';
import type { IoapicState } from '../devices/irq/ioapic.ts';
import type { PitState } from '../devices/pit.ts';
import type { RtcState } from '../devices/rtc.ts';
import type { I8042State } from '../devices/i8042.ts';
import type { AcpiPmState } from '../devices/acpi-pm.ts';
import type { PciHostState } from '../devices/pci/host.ts';

export const SNAPSHOT_FORMAT = 'ringzero-snapshot';
/** Bump on any change of the body's shape: older/newer readers then refuse the snapshot instead of misreading it. */
export const SNAPSHOT_VERSION = 1;
export const STATE_FILE = 'state.json';
export const MEMORY_FILE = 'memory';
const CHUNK = 64 * 1024;

export class SnapshotError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotError';
  }
}

export interface SnapshotHeader {
  ringzeroVersion: string;
  /** Engine the VM ran on when saved (the state itself is engine-neutral). */
  engine: 'soft' | 'kvm';
  cpus: number;
  memorySize: number;
  createdAt: string;
}

export interface DeviceStates {
  serial: Serial16550State;
  rtc: RtcState;
  i8042: I8042State;
  acpiPm: AcpiPmState;
  pci: PciHostState;
  /** The machine's own 8259 pair, IOAPIC and 8254 (soft engine; KVM's in-kernel ones would go here too). */
  pic?: DualPicState;
  ioapic?: IoapicState;
  pit?: PitState;
}

export interface SnapshotBody {
  header: SnapshotHeader;
  config: VmConfig;
  /** VmClock guest nanoseconds at the save instant. */
  guestTimeNs: number;
  vcpus: VcpuState[];
  devices: DeviceStates;
  memory: { file: string; size: number; sha256: string };
}

interface StateFile {
  format: string;
  version: number;
  crc32: string;
  body: SnapshotBody;
}

export function ringzeroVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

function checksum(format: string, version: number, body: unknown): string {
  const text = JSON.stringify({ format, version, body });
  return zlib.crc32(text).toString(16).padStart(8, '0');
}

// ---- memory image ----

const lseek = libc.func('int64_t lseek(int fd, int64_t offset, int whence)') as (fd: number, offset: number, whence: number) => number;
const SEEK_DATA = 3, SEEK_HOLE = 4;
const ENXIO = 6;

/** The [start, end) extents of `fd` holding data within [from, to) (SEEK_DATA/SEEK_HOLE; everything if unsupported). */
function dataExtents(fd: number, from: number, to: number): [number, number][] {
  const out: [number, number][] = [];
  let pos = from;
  while (pos < to) {
    const start = lseek(fd, pos, SEEK_DATA);
    if (start < 0) {
      // ENXIO: no data after pos. Anything else (a file system without SEEK_DATA): treat the rest as data.
      if (lastErrno() !== ENXIO) out.push([pos, to]);
      break;
    }
    if (start >= to) break;
    let end = lseek(fd, start, SEEK_HOLE);
    if (end < 0 || end > to) end = to;
    out.push([start, end]);
    pos = end;
  }
  return out;
}

const ZERO_CHUNK = new Uint8Array(CHUNK);

/**
 * Visit every non-zero 64 KiB chunk of guest RAM (by offset in the memory image). A memfd's holes are skipped without
 * touching them; a RAM region that is a private mapping of a file is scanned whole (its changes live only in memory).
 */
function forEachDataChunk(mem: GuestMemory, visit: (imageOffset: number, bytes: Uint8Array) => void): void {
  for (const r of mem.regions) {
    const extents = mem.privateFile ? [[r.fileOffset, r.fileOffset + r.size] as [number, number]] : dataExtents(mem.fd, r.fileOffset, r.fileOffset + r.size);
    let next = 0; // extents may share a chunk: visit each chunk once
    for (const [start, end] of extents) {
      for (let at = Math.max(next, Math.floor(start / CHUNK) * CHUNK); at < end; at += CHUNK) {
        next = at + CHUNK;
        const len = Math.min(CHUNK, r.fileOffset + r.size - at);
        const bytes = r.bytes.subarray(at - r.fileOffset, at - r.fileOffset + len);
        if (Buffer.compare(bytes, ZERO_CHUNK.subarray(0, len)) === 0) continue;
        visit(at, bytes);
      }
    }
  }
}

function chunkDigest(): { add(offset: number, bytes: Uint8Array): void; hex(): string } {
  const h = crypto.createHash('sha256');
  const prefix = Buffer.alloc(8);
  return {
    add(offset, bytes) {
      prefix.writeBigUInt64LE(BigInt(offset));
      h.update(prefix);
      h.update(bytes);
    },
    hex: () => h.digest('hex'),
  };
}

/** Write guest RAM to `file` (sparse) and return its digest. */
export function writeMemoryImage(mem: GuestMemory, file: string): string {
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    fs.ftruncateSync(fd, mem.size);
    const digest = chunkDigest();
    forEachDataChunk(mem, (offset, bytes) => {
      fs.writeSync(fd, bytes, 0, bytes.length, offset);
      digest.add(offset, bytes);
    });
    fs.fsyncSync(fd);
    return digest.hex();
  } finally {
    fs.closeSync(fd);
  }
}

/** The digest of a memory image file, computed as writeMemoryImage does (reads every data extent of the file). */
export function memoryImageDigest(file: string): string {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const digest = chunkDigest();
    const buf = Buffer.alloc(CHUNK);
    let next = 0;
    for (const [start, end] of dataExtents(fd, 0, size)) {
      for (let at = Math.max(next, Math.floor(start / CHUNK) * CHUNK); at < end; at += CHUNK) {
        next = at + CHUNK;
        const len = Math.min(CHUNK, size - at);
        const n = fs.readSync(fd, buf, 0, len, at);
        const bytes = buf.subarray(0, n);
        if (Buffer.compare(bytes, ZERO_CHUNK.subarray(0, n)) === 0) continue;
        digest.add(at, bytes);
      }
    }
    return digest.hex();
  } finally {
    fs.closeSync(fd);
  }
}

// ---- the snapshot directory ----

/**
 * Write a snapshot directory: everything goes to a fresh sibling directory first, which then replaces `dir`, so a
 * crash never leaves a state file next to another snapshot's memory (and a RAM image mapped by a running VM restored
 * from `dir` is never overwritten in place: it keeps its inode).
 */
export function writeSnapshot(dir: string, body: Omit<SnapshotBody, 'memory'>, mem: GuestMemory): SnapshotBody {
  const target = path.resolve(dir);
  const tmp = `${target}.tmp-${process.pid}-${Date.now()}`;
  fs.mkdirSync(tmp, { recursive: true });
  try {
    const sha256 = writeMemoryImage(mem, path.join(tmp, MEMORY_FILE));
    const full: SnapshotBody = { ...body, memory: { file: MEMORY_FILE, size: mem.size, sha256 } };
    const state: StateFile = { format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, crc32: checksum(SNAPSHOT_FORMAT, SNAPSHOT_VERSION, full), body: full };
    const stateFile = path.join(tmp, STATE_FILE);
    fs.writeFileSync(stateFile, JSON.stringify(state));
    const fd = fs.openSync(stateFile, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    let old: string | undefined;
    if (fs.existsSync(target)) {
      old = `${target}.old-${process.pid}-${Date.now()}`;
      fs.renameSync(target, old);
    }
    fs.renameSync(tmp, target);
    if (old) fs.rmSync(old, { recursive: true, force: true });
    return full;
  } catch (error) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw error;
  }
}

export interface ReadSnapshotOptions {
  /** Also check the memory image's digest (reads the whole image: time grows with guest memory). Default false. */
  verifyMemory?: boolean;
}

/** Read and validate a snapshot directory; throws SnapshotError naming the first problem. Changes nothing. */
export function readSnapshot(dir: string, opts: ReadSnapshotOptions = {}): { body: SnapshotBody; memoryFile: string } {
  const stateFile = path.join(dir, STATE_FILE);
  let text: string;
  try {
    text = fs.readFileSync(stateFile, 'utf8');
  } catch (error) {
    throw new SnapshotError(`${dir} is not a snapshot: cannot read ${STATE_FILE} (${(error as NodeJS.ErrnoException).code ?? error})`);
  }
  let state: StateFile;
  try {
    state = JSON.parse(text) as StateFile;
  } catch {
    throw new SnapshotError(`snapshot ${dir} is damaged: ${STATE_FILE} is not valid JSON`);
  }
  if (typeof state !== 'object' || state === null || state.format !== SNAPSHOT_FORMAT) {
    throw new SnapshotError(`${dir} is not a ringzero snapshot (format ${JSON.stringify(state?.format)})`);
  }
  const crcOk = typeof state.crc32 === 'string' && checksum(state.format, state.version, state.body) === state.crc32;
  if (state.version !== SNAPSHOT_VERSION) {
    if (!crcOk) throw new SnapshotError(`snapshot ${dir} is damaged: checksum mismatch in ${STATE_FILE}`);
    const by = state.body?.header?.ringzeroVersion;
    throw new SnapshotError(`snapshot ${dir} has format version ${state.version}${by ? ` (ringzero ${by})` : ''}; this ringzero ${ringzeroVersion()} reads version ${SNAPSHOT_VERSION} only`);
  }
  if (!crcOk) throw new SnapshotError(`snapshot ${dir} is damaged: checksum mismatch in ${STATE_FILE}`);
  const body = state.body;
  const memoryFile = path.join(dir, path.basename(body.memory.file));
  let size: number;
  try {
    size = fs.statSync(memoryFile).size;
  } catch {
    throw new SnapshotError(`snapshot ${dir} is incomplete: its memory image ${body.memory.file} is missing`);
  }
  if (size !== body.memory.size || size !== body.header.memorySize) {
    throw new SnapshotError(`snapshot ${dir} is damaged: memory image is ${size} bytes, the state says ${body.memory.size}`);
  }
  if (opts.verifyMemory && memoryImageDigest(memoryFile) !== body.memory.sha256) {
    throw new SnapshotError(`snapshot ${dir} is damaged: the memory image does not match its SHA-256`);
  }
  return { body, memoryFile };
}
