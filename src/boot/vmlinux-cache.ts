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
// much CPU as the rest of the load (measured: ~0.3-0.5 s per boot on the loaded 2-core host of session 17). The data's
// digest is then checked on the file's bytes as they are read (hashFileRange), not through the destination.
//
// Finding an entry by the payload's hash needs the payload: the whole bzImage read and hashed. A memo per kernel file
// (`<hash of its identity>.key`: the payload's SHA-256, 32 bytes; at most MAX_MEMOS) lets the loader find the entry
// of a file it has seen by the file's identity alone (fileIdentity: device, inode, size, modification and change
// times), without reading the file (decodeVmlinuxByIdentity); it also records the entry's own identity once its data
// matched its digest, so an entry nothing has changed since is not hashed at every start. Measured (session 39,
// Debian's cloud kernel, Machine.loadKernel from open to the boot state, 5-6 starts each): 210-250 ms before, 78-84 ms
// with the memo and the digest over the file's bytes, 33-39 ms once the entry's identity is recorded.
import { createHash, randomBytes, type Hash } from 'node:crypto';
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
/** Payload-key memos kept (decodeVmlinuxByIdentity: 32 bytes each, one per kernel file identity seen). */
export const MAX_MEMOS = 64;
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
export function decodeVmlinuxCached(payload: Uint8Array, dir: string | undefined, into?: SegmentDestination, read?: SegmentReader, identity?: string): CachedDecodeResult {
  if (dir === undefined) return { vmlinux: parseVmlinux(decompressLz4Legacy(payload)), source: 'off' };
  const key = createHash('sha256').update(payload).digest();
  const file = join(dir, `${key.toString('hex').slice(0, 32)}.vmlinux`);
  const cached = readEntry(file, key, into, read);
  if (cached) {
    if (identity !== undefined) writeMemo(dir, identity, key, cached.identity);
    return { vmlinux: cached.vmlinux, source: 'hit' };
  }
  const vmlinux = parseVmlinux(decompressLz4Legacy(payload));
  // (the memo only once the entry it names is there: a memo without its entry is a miss that reads the file anyway;
  // without the entry's identity, whose data the next start then checks)
  if (writeEntry(dir, file, key, vmlinux) && identity !== undefined) writeMemo(dir, identity, key, undefined);
  return { vmlinux, source: 'miss' };
}

/**
 * A kernel file's identity for the payload-key memo (decodeVmlinuxByIdentity): device, inode, size, and the
 * modification and change times in nanoseconds, from fstat(2). Any write to the file, and any rename or link over its
 * name, gives it another (the kernel sets ctime on every change, and no system call sets ctime to a chosen value): the
 * test git's index makes to know a file unchanged without reading it. Undefined while the file's last change is under
 * RACY_MS old: timestamps advance in clock ticks (or whole seconds on some filesystems), so a second change within
 * the same tick would leave the identity as it is ("racily clean" files, as git calls them, are read).
 */
export function fileIdentity(fd: number): string | undefined {
  const st = fs.fstatSync(fd, { bigint: true });
  return settled(st) ? identityOf(st) : undefined;
}

function identityOf(st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/** Whether a file's last change is old enough for its identity to vouch for its contents (RACY_MS). */
function settled(st: fs.BigIntStats): boolean {
  return Date.now() - Number(st.ctimeMs) >= RACY_MS;
}

/** How old a file's last change must be before its identity (fileIdentity) vouches for its contents. */
export const RACY_MS = 2000;

/** The memo of the payload key of the kernel file with identity `identity`: `${cache}/vmlinux/<hash>.key`. */
function memoPath(dir: string, identity: string): string {
  return join(dir, `${createHash('sha256').update(`ringzero-kernel-file:${identity}`).digest('hex').slice(0, 32)}.key`);
}

/**
 * A hit found through the kernel file's identity alone (fileIdentity), without reading the file: the memo written
 * by decodeVmlinuxCached when a kernel of that identity was last decoded or found names its payload's SHA-256, and the
 * entry of that key is read as decodeVmlinuxCached's hit is. Undefined (the caller reads the file and goes the usual
 * way) when there is no memo or no valid entry. Why: finding the entry by the payload's hash meant reading the whole
 * bzImage (14 MB for Debian's cloud kernel) into a fresh buffer and hashing its payload, ~80 ms of the VMM's main
 * thread on each start on session 39's host, before the guest's first instruction.
 *
 * The memo also holds the entry file's own identity as it was when its data last matched its digest: while the entry
 * keeps that identity (no write, rename or link has touched it since), its 46 MB are not hashed again (~40 ms).
 */
export function decodeVmlinuxByIdentity(identity: string, dir: string, into?: SegmentDestination, read?: SegmentReader): CachedDecodeResult | undefined {
  let memo: Buffer;
  try {
    memo = fs.readFileSync(memoPath(dir, identity));
  } catch {
    return undefined;
  }
  if (memo.length < 32) return undefined;
  const key = memo.subarray(0, 32);
  const checked = memo.length > 32 ? memo.subarray(32).toString('utf8') : undefined;
  const file = join(dir, `${key.toString('hex').slice(0, 32)}.vmlinux`);
  const got = readEntry(file, key, into, read, checked);
  if (!got) return undefined;
  writeMemo(dir, identity, key, got.identity);
  return { vmlinux: got.vmlinux, source: 'hit' };
}

/**
 * Note that the kernel file `identity` holds the payload whose SHA-256 is `key`, and (`entry`) the identity of that
 * key's entry when its data last matched its digest (atomically: a whole memo or none; unchanged contents are not
 * written again).
 */
function writeMemo(dir: string, identity: string, key: Buffer, entry: string | undefined): void {
  const memo = memoPath(dir, identity);
  const bytes = Buffer.concat([key, Buffer.from(entry ?? '', 'utf8')]);
  try {
    if (fs.readFileSync(memo).equals(bytes)) return;
  } catch { /* absent: written below */ }
  const tmp = `${memo}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(tmp, bytes, { flag: 'wx', mode: 0o644 });
    fs.renameSync(tmp, memo);
  } catch {
    try { fs.rmSync(tmp, { force: true }); } catch { /* nothing to clean */ }
    return;
  }
  prune(dir, memo);
}

/**
 * How stale an entry's mtime may get before a hit refreshes it (the entries are kept least recently used first, by
 * mtime): a refresh changes the entry's identity (its ctime), after which the next start hashes its data again, so
 * starts in quick succession leave it alone.
 */
const TOUCH_AFTER_MS = 60_000;

/**
 * Read the entry `file` of `key`; its data is checked against its digest unless the file still has identity `checked`
 * (decodeVmlinuxByIdentity). Returns the kernel and the entry's identity as it is now that it is known good (after
 * a hit's refresh of its mtime; undefined while that is too recent to vouch for it, RACY_MS), or undefined (absent,
 * damaged, changed while read).
 */
function readEntry(file: string, key: Buffer, into: SegmentDestination | undefined, read: SegmentReader | undefined, checked?: string): { vmlinux: Vmlinux; identity: string | undefined } | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    // (`raw`, whether or not it vouches yet: to see a change made while the entry was read)
    const raw = identityOf(st);
    const vmlinux = readOpenEntry(fd, key, into, read, !settled(st) || raw !== checked);
    if (!vmlinux) return undefined;
    const after = fs.fstatSync(fd, { bigint: true });
    if (identityOf(after) !== raw) return undefined;
    // (most recently used: the mtime, of this very inode, which the refresh gives a new identity; see TOUCH_AFTER_MS)
    if (Date.now() - Number(after.mtimeMs) <= TOUCH_AFTER_MS) return { vmlinux, identity: settled(after) ? raw : undefined };
    try {
      const now = new Date();
      fs.futimesSync(fd, now, now);
    } catch { /* a read-only cache still serves */ }
    return { vmlinux, identity: fileIdentity(fd) };
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

/** The chunk hashFileRange reads through (allocated once per process: its pages stay mapped from one read to the next). */
let hashChunk: Uint8Array | undefined;
const HASH_CHUNK = 1 << 20;

/**
 * Hash `length` bytes of `fd` at `position` as the file holds them, read in chunks through one reused buffer; false
 * when the file ends first. Why not hash the destination after `read` has filled it: that destination is the guest's
 * RAM, whose memfd pages `read` fills without mapping them (GuestMemory.readFile), so hashing them there took a page
 * fault per 16 pages on top of the hash. Measured on the 46 MB of Debian's cloud kernel (session 39, a 2-vCPU host
 * whose page faults are costly): the check took ~160 ms of the VMM's main thread before the guest's first
 * instruction through the mapping, against the hash alone here. The bytes the guest gets are the file's bytes the
 * hash covered: `read` copies the same range of the same file, which a writer replaces only by renaming a new file in.
 */
function hashFileRange(fd: number, position: number, length: number, hash: Hash): boolean {
  const chunk = (hashChunk ??= new Uint8Array(HASH_CHUNK));
  for (let done = 0; done < length;) {
    const part = chunk.subarray(0, Math.min(HASH_CHUNK, length - done));
    if (!readFully(fd, part, position + done)) return false;
    hash.update(part);
    done += part.length;
  }
  return true;
}

function readOpenEntry(fd: number, key: Buffer, into: SegmentDestination | undefined, read: SegmentReader | undefined, verify: boolean): Vmlinux | undefined {
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
    if (own === undefined && read !== undefined) {
      if ((verify && !hashFileRange(fd, dataStart + at, filesz, hash)) || !read(paddr, fd, dataStart + at, filesz)) return undefined;
    } else {
      if (!readFully(fd, dest, dataStart + at)) return undefined;
      if (verify) hash.update(dest);
    }
    segments.push({ paddr, data: dest, memsz });
    at += filesz;
  }
  if (verify && !head.subarray(72, 104).equals(hash.digest())) return undefined; // damaged data
  return { entry, segments };
}

/** Store a decoded kernel; true when its entry was written. */
function writeEntry(dir: string, file: string, key: Buffer, vmlinux: Vmlinux): boolean {
  const count = vmlinux.segments.length;
  if (count > MAX_SEGMENTS) return false;
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
    return false;
  }
  prune(dir, file);
  return true;
}

/**
 * Keep the MAX_ENTRIES most recently used entries and MAX_MEMOS memos (by mtime; `keep`, just written, is one of
 * them), and drop stale temporaries of dead writers.
 */
function prune(dir: string, keep: string): void {
  try {
    const entries: { path: string; mtime: number }[] = [];
    const memos: { path: string; mtime: number }[] = [];
    for (const name of fs.readdirSync(dir)) {
      const path = join(dir, name);
      let st: fs.Stats;
      try { st = fs.statSync(path); } catch { continue; }
      if (name.endsWith('.vmlinux')) entries.push({ path, mtime: st.mtimeMs });
      else if (name.endsWith('.key')) memos.push({ path, mtime: st.mtimeMs });
      // A temporary more than an hour old belongs to a writer that died (a live one finishes in seconds).
      else if ((name.includes('.vmlinux.tmp-') || name.includes('.key.tmp-')) && Date.now() - st.mtimeMs > 3600_000) fs.rmSync(path, { force: true });
    }
    for (const [list, max] of [[entries, MAX_ENTRIES], [memos, MAX_MEMOS]] as const) {
      list.sort((a, b) => b.mtime - a.mtime);
      let kept = 0;
      for (const e of list) {
        if (e.path === keep || kept < max - 1) { if (e.path !== keep) kept++; continue; }
        fs.rmSync(e.path, { force: true });
      }
    }
  } catch { /* pruning is best effort */ }
}
