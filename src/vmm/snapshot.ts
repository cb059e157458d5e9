// VM snapshots: the format, and saving/restoring a paused Machine (either engine: one format for both).
//
// A snapshot is a directory of two files:
//   memory      the guest RAM image (low region, then the region above 4 GiB, as laid out in the memfd), sparse:
//               pages that are zero are holes. Restore maps it MAP_PRIVATE (GuestMemory's file source), so pages
//               are read lazily on first touch, guest writes stay private, and restore time does not grow with RAM.
//   state.json  { format, version, crc32, body }: body holds the header (ringzero version, engine, cpus, memory
//               size), the VM definition, the guest time, every vCPU's architectural state in an engine-neutral shape
//               (see snapshot-cpu.ts), every device's state (virtio functions: src/devices/virtio/pci.ts saveState,
//               reached through devices.pci; the 8259 pair, IOAPIC and PIT in the soft engine's shape on both engines,
//               KVM's in-kernel ones converted, plus KVM's raw structs in devices.kvm for a KVM-to-KVM restore), and
//               the memory image's size and digest. crc32 covers
//               format, version and body (zlib's CRC-32, the one of ISO 3309 / ITU-T V.42).
// Readers refuse a snapshot of another format version or with a bad checksum before anything is built, with one
// error naming the problem (SnapshotError). The memory digest (SHA-256 over the non-zero 64 KiB chunks, each
// prefixed with its offset) is checked on request (verifyMemory), and whenever the memory file's modification time is
// not the one the state recorded when the snapshot was written: a file written since (in place, or a copy that did
// not keep its time) is read whole and refused unless it matches, while one left as it was written is mapped without
// reading it, so a restore does not grow with RAM. (A change that leaves the time alone, such as a disk's bit rot
// or a deliberate forgery, is found only by verifyMemory.) The memory file's size is always checked.
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
import type { KvmVmState } from '../cpu/kvm/state.ts';
import type { HotList } from '../cpu/soft/hot-list.ts';
import { isAllZero } from '../sys/zero.ts';
import { preadFully, pwriteFully } from '../sys/file-io.ts';

export const SNAPSHOT_FORMAT = 'ringzero-snapshot';
/**
 * Bump on any change of the body's shape: older/newer readers then refuse the snapshot instead of misreading it.
 * 1: CPUs, interrupt controllers, timers, legacy devices (a VM with virtio devices was refused).
 * 2: plus virtio-pci functions (transport registers, MSI-X table and PBA, each virtqueue's indices, the device
 *    model's own state) inside devices.pci, and diff snapshots (memory.base, memory.pages).
 * 3: snapshots of the KVM engine: devices.kvm (the in-kernel irqchip, PIT and kvm-clock as KVM's structs) next to
 *    their conversions in devices.pic / ioapic / pit; header.engine 'kvm'.
 * Not a change of shape: an optional section that a reader may ignore without misreading anything else, and that
 * says which layout it has itself. Snapshots of session 15's builds may carry one, `warm` (a list of the soft
 * engine's translated blocks, with a file `warm` beside the state), which was measured to buy nothing and removed:
 * this reader ignores it (the state's CRC covers it all the same). Since session 19 a soft-engine snapshot carries
 * `hot`: the hot-block list a live migration sends (src/cpu/soft/hot-list.ts, its own layout number `format`), which
 * the restored VMM translates so that its guest does not start on a cold translator; a snapshot without it restores
 * as before, one whose list has a layout this reader does not know restores without using it, and a damaged one is
 * refused with the rest of the state (the CRC).
 */
export const SNAPSHOT_VERSION = 3;
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
  /** The 8259 pair, IOAPIC and 8254: the soft engine's own, or KVM's in-kernel ones converted (either engine loads them). */
  pic?: DualPicState;
  ioapic?: IoapicState;
  pit?: PitState;
  /** Saved on KVM: the in-kernel devices and kvm-clock as the kernel's structs (a KVM restore loads these instead). */
  kvm?: KvmVmState;
}

export interface SnapshotBody {
  header: SnapshotHeader;
  config: VmConfig;
  /** VmClock guest nanoseconds at the save instant. */
  guestTimeNs: number;
  vcpus: VcpuState[];
  devices: DeviceStates;
  memory: SnapshotMemory;
  /** Soft engine: the translated blocks at the save instant, for the restored VMM to translate again (optional). */
  hot?: HotList;
}

export interface SnapshotMemory {
  file: string;
  size: number;
  sha256: string;
  /**
   * A diff snapshot: its memory file holds only the pages written since `base` was taken (a sparse file of the full
   * size), `pages` says which (a page bitmap, one bit per 4 KiB page, deflated, base64; a dirty page that is zero is a
   * hole in the file), and restore applies it over the base's memory (itself a full snapshot or another diff).
   */
  base?: { dir: string; crc32: string };
  pages?: string;
  /**
   * The memory file's modification time (ns, stat's mtimeNs) once written: a file whose time differs was written or
   * copied since, and is checked against sha256 before it is used. Absent in snapshots written before it was added.
   */
  mtimeNs?: string;
}

export interface StateFile {
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
export function dataExtents(fd: number, from: number, to: number): [number, number][] {
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
        if (isAllZero(bytes)) continue;
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
      pwriteFully(fd, bytes, offset);
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
        const n = preadFully(fd, buf.subarray(0, len), at);
        const bytes = buf.subarray(0, n);
        if (isAllZero(bytes)) continue;
        digest.add(at, bytes);
      }
    }
    return digest.hex();
  } finally {
    fs.closeSync(fd);
  }
}

// ---- diff snapshots ----

export interface DiffOptions {
  /** One byte per 4 KiB page of the memory image: non-zero = written since the base (GuestMemory.harvestDirtyLog). */
  pages: Uint8Array;
  /** The base snapshot directory, as it will be recorded (absolute). */
  baseDir: string;
  /** The base's state-file checksum: a base replaced since is refused at restore. */
  baseCrc32: string;
}

const PAGE = 4096;

/** A page list as the state file keeps it: one bit per page (LSB first), deflated, base64. */
export function encodePageBitmap(pages: Uint8Array): string {
  const bits = new Uint8Array(Math.ceil(pages.length / 8));
  for (let p = 0; p < pages.length; p++) if (pages[p]) bits[p >> 3] |= 1 << (p & 7);
  return zlib.deflateRawSync(bits).toString('base64');
}

export function decodePageBitmap(text: string, pageCount: number): Uint8Array {
  const bits = zlib.inflateRawSync(Buffer.from(text, 'base64'));
  if (bits.length !== Math.ceil(pageCount / 8)) throw new SnapshotError(`diff snapshot page map covers ${bits.length * 8} pages, not ${pageCount}`);
  const pages = new Uint8Array(pageCount);
  for (let p = 0; p < pageCount; p++) pages[p] = (bits[p >> 3] >> (p & 7)) & 1;
  return pages;
}

/** Runs of set pages: [firstPage, count]. */
export function pageRuns(pages: Uint8Array, maxRun = 256): [number, number][] {
  const runs: [number, number][] = [];
  for (let p = 0; p < pages.length;) {
    if (!pages[p]) { p++; continue; }
    let q = p + 1;
    while (q < pages.length && pages[q] && q - p < maxRun) q++;
    runs.push([p, q - p]);
    p = q;
  }
  return runs;
}

/** The image bytes [offset, offset+len) of guest RAM (image offsets: low region, then high). */
function imageBytes(mem: GuestMemory, offset: number, len: number): Uint8Array {
  for (const r of mem.regions) {
    if (offset >= r.fileOffset && offset + len <= r.fileOffset + r.size) return r.bytes.subarray(offset - r.fileOffset, offset - r.fileOffset + len);
  }
  throw new RangeError(`image range 0x${offset.toString(16)}+0x${len.toString(16)} is not in one RAM region`);
}

/** Write the listed pages of guest RAM to `file` (sparse, full size; zero pages stay holes) and return its digest. */
function writeDiffImage(mem: GuestMemory, file: string, pages: Uint8Array): string {
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    fs.ftruncateSync(fd, mem.size);
    for (const [first, count] of pageRuns(pages, CHUNK / PAGE)) {
      // Runs never cross a 64 KiB chunk here, so the digest matches memoryImageDigest's chunking of the file.
      for (let p = first; p < first + count;) {
        const chunkEnd = Math.min(first + count, (Math.floor(p / (CHUNK / PAGE)) + 1) * (CHUNK / PAGE));
        const bytes = imageBytes(mem, p * PAGE, (chunkEnd - p) * PAGE);
        if (!isAllZero(bytes)) pwriteFully(fd, bytes, p * PAGE);
        p = chunkEnd;
      }
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    // The digest of the file as written (its data extents only: the diff's size, not RAM's).
    return memoryImageDigest(file);
  } catch (error) {
    try { fs.closeSync(fd); } catch { /* closed */ }
    throw error;
  }
}

/** One diff of a chain, oldest first: its memory file and the pages it holds. */
export interface DiffLayer {
  dir: string;
  memoryFile: string;
  pages: Uint8Array;
}

/**
 * Copy each diff's pages over guest RAM (a private mapping of the chain's full base): restore time grows with the
 * diffs' size, not with guest memory. Pages that are holes in a diff file read as zeros, as they were written.
 */
export function applyDiffLayers(mem: GuestMemory, layers: DiffLayer[]): void {
  for (const layer of layers) {
    const fd = fs.openSync(layer.memoryFile, 'r');
    try {
      for (const [first, count] of pageRuns(layer.pages)) {
        const into = imageBytes(mem, first * PAGE, count * PAGE);
        const n = preadFully(fd, into, first * PAGE);
        if (n !== into.length) throw new SnapshotError(`diff snapshot ${layer.dir}: memory image ends inside page ${first}`);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
}

// ---- the state, sealed (also what live migration sends: src/migration) ----

/** The state as a state file holds it: format, version and a CRC over both and the body. */
export function sealState(body: SnapshotBody): StateFile {
  return { format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, crc32: checksum(SNAPSHOT_FORMAT, SNAPSHOT_VERSION, body), body };
}

/**
 * Check a parsed state (format, version, CRC) and return its body; throws SnapshotError naming `what` (e.g.
 * "snapshot /dir") and, for a damaged one, `container` (the file or stream it came in).
 */
export function openState(parsed: unknown, what: string, container: string): SnapshotBody {
  const state = parsed as StateFile;
  if (typeof state !== 'object' || state === null || state.format !== SNAPSHOT_FORMAT) {
    throw new SnapshotError(`${what.replace(/^snapshot /, '')} is not a ringzero snapshot (format ${JSON.stringify(state?.format)})`);
  }
  const crcOk = typeof state.crc32 === 'string' && checksum(state.format, state.version, state.body) === state.crc32;
  if (state.version !== SNAPSHOT_VERSION) {
    if (!crcOk) throw new SnapshotError(`${what} is damaged: checksum mismatch in ${container}`);
    const by = state.body?.header?.ringzeroVersion;
    throw new SnapshotError(`${what} has format version ${state.version}${by ? ` (ringzero ${by})` : ''}; this ringzero ${ringzeroVersion()} reads version ${SNAPSHOT_VERSION} only`);
  }
  if (!crcOk) throw new SnapshotError(`${what} is damaged: checksum mismatch in ${container}`);
  return state.body;
}

// ---- the snapshot directory ----

/**
 * Write a snapshot directory: everything goes to a fresh sibling directory first, which then replaces `dir`, so a
 * crash never leaves a state file next to another snapshot's memory (and a RAM image mapped by a running VM restored
 * from `dir` is never overwritten in place: it keeps its inode).
 */
export function writeSnapshot(dir: string, body: Omit<SnapshotBody, 'memory'>, mem: GuestMemory, diff?: DiffOptions): SnapshotBody {
  const target = path.resolve(dir);
  const tmp = `${target}.tmp-${process.pid}-${Date.now()}`;
  fs.mkdirSync(tmp, { recursive: true });
  try {
    let memory: SnapshotMemory;
    const memoryFile = path.join(tmp, MEMORY_FILE);
    if (diff) {
      const sha256 = writeDiffImage(mem, memoryFile, diff.pages);
      memory = { file: MEMORY_FILE, size: mem.size, sha256, base: { dir: diff.baseDir, crc32: diff.baseCrc32 }, pages: encodePageBitmap(diff.pages) };
    } else {
      memory = { file: MEMORY_FILE, size: mem.size, sha256: writeMemoryImage(mem, memoryFile) };
    }
    memory.mtimeNs = memoryMtimeNs(memoryFile);
    const full: SnapshotBody = { ...body, memory };
    const state = sealState(full);
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

/** A memory file's modification time as SnapshotMemory.mtimeNs records it. */
export function memoryMtimeNs(file: string): string {
  return fs.statSync(file, { bigint: true }).mtimeNs.toString();
}

function sameTime(aNs: string, bNs: string): boolean {
  try {
    const d = BigInt(aNs) - BigInt(bNs);
    return d > -1_000_000n && d < 1_000_000n;
  } catch {
    return false;
  }
}

export interface ReadSnapshotOptions {
  /** Also check the memory image's digest (reads the whole image: time grows with guest memory). Default false. */
  verifyMemory?: boolean;
  /** How deep in a diff chain this read is (internal). */
  chainDepth?: number;
}

/**
 * Read and validate a snapshot directory; throws SnapshotError naming the first problem. Changes nothing. For a diff
 * snapshot, `memoryFile` is the full snapshot at the root of its chain and `diffs` the layers to apply over it, oldest
 * first (applyDiffLayers); `crc32` is this state file's checksum (what a diff on top of it records).
 */
export function readSnapshot(dir: string, opts: ReadSnapshotOptions = {}): { body: SnapshotBody; memoryFile: string; diffs: DiffLayer[]; crc32: string; memoryCheck: MemoryCheck } {
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
  openState(state, `snapshot ${dir}`, STATE_FILE);
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
  // (to the millisecond: a copy that keeps the time through utimes(2)'s double seconds, as Node's fs.cp does, may move
  // it by a fraction of a microsecond; a write, which comes well after the snapshot was written, moves it by more)
  const changed = body.memory.mtimeNs !== undefined && !sameTime(memoryMtimeNs(memoryFile), body.memory.mtimeNs);
  const memoryCheck: MemoryCheck = opts.verifyMemory || changed ? 'digest' : body.memory.mtimeNs !== undefined ? 'unchanged' : 'unrecorded';
  if (memoryCheck === 'digest' && memoryImageDigest(memoryFile) !== body.memory.sha256) {
    throw new SnapshotError(`snapshot ${dir} is damaged: the memory image does not match its SHA-256${changed ? ' (it was written or copied after the snapshot: its modification time changed)' : ''}`);
  }
  if (!body.memory.base) return { body, memoryFile, diffs: [], crc32: state.crc32, memoryCheck };
  // A diff: its base (full or diff) first, recursively, each checked as this one was.
  const depth = opts.chainDepth ?? 0;
  if (depth >= MAX_CHAIN) throw new SnapshotError(`snapshot ${dir}: the diff chain is longer than ${MAX_CHAIN} (or loops)`);
  const baseDir = path.resolve(dir, body.memory.base.dir);
  let base: ReturnType<typeof readSnapshot>;
  try {
    base = readSnapshot(baseDir, { ...opts, chainDepth: depth + 1 });
  } catch (error) {
    throw new SnapshotError(`diff snapshot ${dir}: its base ${baseDir} cannot be used: ${(error as Error).message}`);
  }
  if (base.crc32 !== body.memory.base.crc32) throw new SnapshotError(`diff snapshot ${dir}: its base ${baseDir} was replaced since the diff was taken`);
  if (base.body.memory.size !== body.memory.size) throw new SnapshotError(`diff snapshot ${dir}: its base has ${base.body.memory.size} bytes of memory, the diff ${body.memory.size}`);
  if (typeof body.memory.pages !== 'string') throw new SnapshotError(`diff snapshot ${dir} is damaged: no page map`);
  let pages: Uint8Array;
  try {
    pages = decodePageBitmap(body.memory.pages, size / PAGE);
  } catch (error) {
    throw new SnapshotError(`diff snapshot ${dir} is damaged: ${(error as Error).message}`);
  }
  return { body, memoryFile: base.memoryFile, diffs: [...base.diffs, { dir, memoryFile, pages }], crc32: state.crc32, memoryCheck };
}

/**
 * How readSnapshot checked this snapshot's memory file: against its SHA-256 (asked for, or its modification time
 * changed), by its unchanged modification time alone, or not at all (a snapshot from before the time was recorded).
 */
export type MemoryCheck = 'digest' | 'unchanged' | 'unrecorded';

/** Longest chain of diffs over one full snapshot. */
const MAX_CHAIN = 64;
