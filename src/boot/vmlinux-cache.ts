// A disk cache of decompressed kernels. Decoding Debian's cloud kernel's LZ4 payload (14 MB in, 53 MB out) costs
// 130-300 ms of the VMM's main thread on every boot; reading its 46 MB of loadable segments back from the page cache
// and checking them costs a fraction of that. One file per kernel, named by the SHA-256 of the compressed payload (the
// only input of the decode), under ${cache}/vmlinux/ (the image cache's root, src/image/build.ts cacheDir).
//
// A file is: a 128-byte header (magic, format version, entry point, segment count, data length, the payload's
// SHA-256, the data's SHA-256), a table of segments (paddr, filesz, memsz: u64 LE each), then the segments' bytes
// back to back. It is written to a temporary name and renamed, so readers see a whole file or none; it is used only
// when the header matches and the data hashes to the stored digest, else the kernel is decoded as if it were absent
// (and the entry rewritten). Any I/O error (a read-only or missing cache directory, a full disk) means "no cache":
// the boot never fails because of it. At most MAX_ENTRIES kernels are kept; the least recently used (by mtime,
// refreshed on every hit) are removed when a new one is written.
//
// A hit can read the segments straight into their destination (the guest's RAM, `into`): reading the file into a
// buffer of its own first cost the VMM's main thread that buffer's 46 MB of fresh pages and a copy into RAM, about as
// much CPU as the rest of the load (measured: ~0.3-0.5 s per boot on the loaded 2-core host of session 17).
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from '../image/build.ts';
import { decompressLz4Legacy, parseVmlinux, type ElfSegment, type Vmlinux } from './vmlinux.ts';
import { preadFully, pwriteFully } from '../sys/file-io.ts';

const MAGIC = 0x4e4c4d56_5a52n; // "RZVMLN" as little-endian bytes (u64)
const VERSION = 1;
const HEADER = 128;
const SEGMENT_ENTRY = 24;
/** Kernels kept (Debian's cloud kernel: 46 MB each). */
export const MAX_ENTRIES = 4;
/** More segments than any vmlinux has: a header claiming more is damaged. */
const MAX_SEGMENTS = 64;

/** ${RINGZERO_CACHE:-~/.cache/ringzero}/vmlinux. */
export function vmlinuxCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheDir(env), 'vmlinux');
}

export interface CachedDecodeResult {
  vmlinux: Vmlinux;
  /** 'hit': read from the cache; 'miss': decoded (and stored if the directory was writable); 'off': no cache. */
  source: 'hit' | 'miss' | 'off';
}

/**
 * Where a hit puts segment `paddr` of `memsz` bytes: memsz bytes whose first filesz receive the file's data, or
 * undefined when that segment cannot go there (the entry is then treated as absent and the kernel decoded).
 */
export type SegmentDestination = (paddr: number, memsz: number) => Uint8Array | undefined;

/**
 * How a hit reads `length` bytes of the entry's file `fd` at `position` into the destination of segment `paddr`
 * (into(paddr, memsz)); false when the file ended first. Default: pread into that destination. The guest's RAM is
 * filled through its memfd instead (GuestMemory.readFile), without a page fault per page.
 */
export type SegmentReader = (paddr: number, fd: number, position: number, length: number) => boolean;

/**
 * vmlinux's loadable segments from a bzImage's LZ4 payload, through the cache in `dir` (undefined: no cache).
 * Throws KernelFormatError when the payload is damaged, exactly as decoding it would. With `into`, a hit reads each
 * segment's bytes into into(paddr, memsz) and returns them there (its `data` are views of those destinations); a
 * rejected entry may have written into destinations before it was found damaged, which the decoded kernel the caller
 * then loads overwrites.
 */
export function decodeVmlinuxCached(payload: Uint8Array, dir: string | undefined, into?: SegmentDestination, read?: SegmentReader): CachedDecodeResult {
  if (dir === undefined) return { vmlinux: parseVmlinux(decompressLz4Legacy(payload)), source: 'off' };
  const key = createHash('sha256').update(payload).digest();
  const file = join(dir, `${key.toString('hex').slice(0, 32)}.vmlinux`);
  const cached = readEntry(file, key, into, read);
  if (cached) {
    try {
      const now = new Date();
      fs.utimesSync(file, now, now); // most recently used
    } catch { /* a read-only cache still serves */ }
    return { vmlinux: cached, source: 'hit' };
  }
  const vmlinux = parseVmlinux(decompressLz4Legacy(payload));
  writeEntry(dir, file, key, vmlinux);
  return { vmlinux, source: 'miss' };
}

function readEntry(file: string, key: Buffer, into: SegmentDestination | undefined, read: SegmentReader | undefined): Vmlinux | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    return readOpenEntry(fd, key, into, read);
  } catch {
    return undefined; // an I/O error or a destination that is not RAM: as if absent
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads exactly `into.length` bytes at `position`; false if the file ends first. */
function readFully(fd: number, into: Uint8Array, position: number): boolean {
  return preadFully(fd, into, position) === into.length;
}

function readOpenEntry(fd: number, key: Buffer, into: SegmentDestination | undefined, read: SegmentReader | undefined): Vmlinux | undefined {
  const size = fs.fstatSync(fd).size;
  const head = Buffer.alloc(HEADER);
  if (size < HEADER || !readFully(fd, head, 0)) return undefined;
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (v.getBigUint64(0, true) !== MAGIC || v.getUint32(8, true) !== VERSION) return undefined;
  const entry = Number(v.getBigUint64(16, true));
  const count = v.getUint32(24, true);
  const dataLength = Number(v.getBigUint64(32, true));
  if (count === 0 || count > MAX_SEGMENTS) return undefined;
  const dataStart = HEADER + count * SEGMENT_ENTRY;
  if (size !== dataStart + dataLength) return undefined; // truncated or grown
  if (!head.subarray(40, 72).equals(key)) return undefined; // another kernel (a hash-prefix collision)
  const table = Buffer.alloc(count * SEGMENT_ENTRY);
  if (!readFully(fd, table, HEADER)) return undefined;
  const t = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const layout: { paddr: number; filesz: number; memsz: number }[] = [];
  let total = 0;
  for (let k = 0; k < count; k++) {
    const paddr = Number(t.getBigUint64(k * SEGMENT_ENTRY, true));
    const filesz = Number(t.getBigUint64(k * SEGMENT_ENTRY + 8, true));
    const memsz = Number(t.getBigUint64(k * SEGMENT_ENTRY + 16, true));
    if (filesz > memsz) return undefined;
    total += filesz;
    layout.push({ paddr, filesz, memsz });
  }
  if (total !== dataLength) return undefined;
  // Without destinations the segments share one buffer, as the file holds them.
  const own = into === undefined ? new Uint8Array(dataLength) : undefined;
  const hash = createHash('sha256');
  const segments: ElfSegment[] = [];
  let at = 0;
  for (const { paddr, filesz, memsz } of layout) {
    const dest = own ? own.subarray(at, at + filesz) : into!(paddr, memsz)?.subarray(0, filesz);
    if (dest === undefined || dest.length !== filesz) return undefined;
    if (!(own === undefined && read !== undefined ? read(paddr, fd, dataStart + at, filesz) : readFully(fd, dest, dataStart + at))) return undefined;
    hash.update(dest);
    segments.push({ paddr, data: dest, memsz });
    at += filesz;
  }
  if (!head.subarray(72, 104).equals(hash.digest())) return undefined; // damaged data
  return { entry, segments };
}

function writeEntry(dir: string, file: string, key: Buffer, vmlinux: Vmlinux): void {
  const count = vmlinux.segments.length;
  if (count > MAX_SEGMENTS) return;
  const header = Buffer.alloc(HEADER + count * SEGMENT_ENTRY);
  const v = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const hash = createHash('sha256');
  let dataLength = 0;
  vmlinux.segments.forEach((seg, k) => {
    const t = HEADER + k * SEGMENT_ENTRY;
    v.setBigUint64(t, BigInt(seg.paddr), true);
    v.setBigUint64(t + 8, BigInt(seg.data.length), true);
    v.setBigUint64(t + 16, BigInt(seg.memsz), true);
    hash.update(seg.data);
    dataLength += seg.data.length;
  });
  v.setBigUint64(0, MAGIC, true);
  v.setUint32(8, VERSION, true);
  v.setBigUint64(16, BigInt(vmlinux.entry), true);
  v.setUint32(24, count, true);
  v.setBigUint64(32, BigInt(dataLength), true);
  header.set(key, 40);
  header.set(hash.digest(), 72);
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number | undefined;
  try {
    fs.mkdirSync(dir, { recursive: true });
    fd = fs.openSync(tmp, 'wx', 0o644);
    pwriteFully(fd, header, 0);
    let at = header.length;
    for (const seg of vmlinux.segments) {
      pwriteFully(fd, seg.data, at);
      at += seg.data.length;
    }
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch {
    // Unwritable or full: boot without caching.
    if (fd !== undefined) try { fs.closeSync(fd); } catch { /* already reported by the write */ }
    try { fs.rmSync(tmp, { force: true }); } catch { /* nothing to clean */ }
    return;
  }
  prune(dir, file);
}

/** Keep the MAX_ENTRIES most recently used entries (by mtime), and drop stale temporaries of dead writers. */
function prune(dir: string, keep: string): void {
  try {
    const entries: { path: string; mtime: number }[] = [];
    for (const name of fs.readdirSync(dir)) {
      const path = join(dir, name);
      let st: fs.Stats;
      try { st = fs.statSync(path); } catch { continue; }
      if (name.endsWith('.vmlinux')) entries.push({ path, mtime: st.mtimeMs });
      // A temporary more than an hour old belongs to a writer that died (a live one finishes in seconds).
      else if (name.includes('.vmlinux.tmp-') && Date.now() - st.mtimeMs > 3600_000) fs.rmSync(path, { force: true });
    }
    entries.sort((a, b) => b.mtime - a.mtime);
    let kept = 0;
    for (const e of entries) {
      if (e.path === keep || kept < MAX_ENTRIES - 1) { if (e.path !== keep) kept++; continue; }
      fs.rmSync(e.path, { force: true });
    }
  } catch { /* pruning is best effort */ }
}
