// qcow2 (QEMU's copy-on-write image format), versions 2 (read) and 3 (read and write), after QEMU's specification
// docs/interop/qcow2.txt. The guest disk is cut into clusters (2^cluster_bits bytes); a two-level table (L1 -> L2)
// maps each guest cluster to a host cluster of the image file, to "reads as zeros" (v3's zero flag), or to nothing:
// then the backing image (raw or qcow2) shows through, or zeros. Every host cluster in use has a reference count in
// refcount blocks, found through the refcount table. Compressed clusters, encryption, external data files and
// extended L2 entries are refused with a clear error (code 'unsupported'); internal snapshots are read but an image
// that has some is opened read-only.
//
// Writing, and what a kill or a power loss leaves (the order of the metadata updates):
//   - Host clusters are only ever taken from the end of the file, in batches: their refcounts are set to 1 and made
//     durable (fdatasync) before any of them is handed out. So no L1/L2 entry on disk can point at a cluster whose
//     refcount is 0; clusters reserved but never used are at worst leaks (`qemu-img check` reports them as leaked
//     clusters, not errors), and close() gives them back.
//   - A new data cluster is written whole (the guest's data plus what it covers of the backing image or zeros)
//     before the L2 entry that points at it; a new L2 table is written before the L1 entry that points at it.
//   - Every write is issued to the file (pwrite) before the request completes, so a killed VMM loses no completed
//     write: the page cache keeps it. flush() is fdatasync.
//   - Freeing (discard, write-zeroes of whole clusters) clears the L2 entry before it lowers the refcount: a crash in
//     between leaks the cluster. Freed clusters are not reused (the file's hole is punched instead).
//   What is NOT guaranteed: after a power loss (not a kill) between two flushes, a cluster allocated in that window
//   may show zeros where its copy of the backing image was not yet on disk. A guest that flushes (every Linux file
//   system does at commit) loses nothing it was told is durable.

import fs from 'node:fs';
import nodePath from 'node:path';
import {
  punchHole, QCOW2_MAGIC, RawBackend, readFully, StorageError, writeFully, detectFormat,
  type BlockBackend, type ImageFormat, type OpenOptions,
} from './backend.ts';

// Header layout (qcow2.txt, "Header"): byte offsets of the fields.
const H_MAGIC = 0, H_VERSION = 4, H_BACKING_OFFSET = 8, H_BACKING_SIZE = 16, H_CLUSTER_BITS = 20, H_SIZE = 24;
const H_CRYPT = 32, H_L1_SIZE = 36, H_L1_OFFSET = 40, H_RT_OFFSET = 48, H_RT_CLUSTERS = 56, H_NB_SNAPSHOTS = 60;
const H_INCOMPATIBLE = 72, H_COMPATIBLE = 80, H_AUTOCLEAR = 88, H_REFCOUNT_ORDER = 96, H_HEADER_LENGTH = 100;
const H_COMPRESSION_TYPE = 104;
const V2_HEADER_LENGTH = 72, V3_MIN_HEADER_LENGTH = 104, V3_HEADER_LENGTH = 112;

// Incompatible feature bits (qcow2.txt, bytes 72-79).
const INCOMPAT_DIRTY = 1, INCOMPAT_CORRUPT = 2, INCOMPAT_DATA_FILE = 4, INCOMPAT_COMPRESSION = 8, INCOMPAT_EXTL2 = 16;
const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

// Header extension types (qcow2.txt, "Header extensions").
const EXT_END = 0, EXT_BACKING_FORMAT = 0xe2792aca;

// L1/L2 entries (qcow2.txt, "Cluster mapping"), as their high and low 32-bit halves.
const HI_COPIED = 0x80000000; // bit 63: refcount is exactly 1
const HI_COMPRESSED = 0x40000000; // bit 62 (L2)
const HI_OFFSET_MASK = 0x00ffffff; // bits 32-55 of the offset
const LO_OFFSET_MASK = 0xfffffe00; // bits 9-31
const LO_ZERO = 1; // bit 0 (L2, v3): reads as zeros

/** Largest disk we create or open: 32 TiB (qemu's own limit on L1 size allows far more; this keeps offsets exact). */
export const QCOW2_MAX_SIZE = 2 ** 45;
const MIN_CLUSTER_BITS = 9, MAX_CLUSTER_BITS = 21;
/** qemu refuses backing file names over 1023 bytes. */
const MAX_BACKING_NAME = 1023;
/** Backing chains deeper than this are refused (a loop, or something nobody meant). */
const MAX_CHAIN_DEPTH = 16;
/**
 * Host clusters reserved (refcount set, file extended, synced) at a time: the first batch is small and each next one
 * twice the last, up to the maximum, so a short session leaks little when killed and a long one syncs seldom.
 */
const RESERVE_FIRST = 2, RESERVE_MAX = 64;
/** Writable opens scan at most this many L2 tables to give back what a killed writer had reserved (reclaimTail). */
const MAX_RECLAIM_SCAN = 512;
/** L2 tables kept in memory. */
const L2_CACHE_TABLES = 64;

const u64 = (b: Buffer, at: number): number => {
  const hi = b.readUInt32BE(at), lo = b.readUInt32BE(at + 4);
  if (hi >= 0x200000) return Number.POSITIVE_INFINITY; // past 2^53: no sane image has such a value
  return hi * 2 ** 32 + lo;
};
const putU64 = (b: Buffer, at: number, v: number): void => {
  b.writeUInt32BE(Math.floor(v / 2 ** 32), at);
  b.writeUInt32BE(v % 2 ** 32, at + 4);
};

export interface Qcow2Info {
  format: 'qcow2';
  version: number;
  virtualSize: number;
  clusterSize: number;
  refcountBits: number;
  /** The backing file as written in the image (may be relative to the image's directory). */
  backingFile?: string;
  backingFormat?: ImageFormat;
  /** The backing file resolved to a path. */
  backingPath?: string;
  snapshots: number;
  dirty: boolean;
  corrupt: boolean;
}

export interface CreateQcow2Options {
  /** Virtual size in bytes (a multiple of 512). Default: the backing image's size. */
  size?: number;
  /** Default 16 (64 KiB clusters, as qemu-img). */
  clusterBits?: number;
  /** The backing file name to record (relative names are resolved from the new image's directory) and its format. */
  backingFile?: string;
  backingFormat?: ImageFormat;
}

function corrupt(file: string, what: string): StorageError {
  return new StorageError('corrupt', `qcow2 image '${file}' is corrupt: ${what}`);
}

/** Open an image as a block backend: qcow2 or raw by magic (unless `format` is given), with its backing chain. */
export function openImage(file: string, options: OpenOptions = {}): BlockBackend {
  return openChain(file, options.format, options.readonly ?? false, 0, new Set());
}

function openChain(file: string, format: ImageFormat | undefined, readonly: boolean, depth: number, seen: Set<string>): BlockBackend {
  if (depth > MAX_CHAIN_DEPTH) throw new StorageError('backing', `backing chain deeper than ${MAX_CHAIN_DEPTH} at '${file}'`);
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new StorageError(depth > 0 ? 'backing' : code === 'ENOENT' ? 'not_found' : 'io',
      depth > 0 ? `backing file '${file}' cannot be opened (${code})` : `cannot open image '${file}' (${code})`);
  }
  if (seen.has(real)) throw new StorageError('backing', `backing chain loops back to '${file}'`);
  seen.add(real);
  const kind = format ?? detectFormat(file);
  if (kind === 'raw') return new RawBackend(file, readonly, format === undefined);
  return new Qcow2Image(file, readonly, (backingPath, backingFormat) => openChain(backingPath, backingFormat, true, depth + 1, seen));
}

export class Qcow2Image implements BlockBackend {
  readonly format = 'qcow2' as const;
  readonly size: number;
  readonly readonly: boolean;
  readonly version: number;
  readonly clusterBits: number;
  readonly clusterSize: number;
  readonly backingFile?: string;
  readonly backingFormat?: ImageFormat;
  readonly backingPath?: string;
  private fd: number;
  private readonly l2Bits: number;
  private readonly l1: number[] = [];
  private readonly l1Offset: number;
  private readonly refcountOrder: number;
  private readonly refblockEntries: number;
  private refcountTable: number[] = [];
  private refcountTableOffset: number;
  private readonly refblocks = new Map<number, Buffer>();
  private readonly l2Cache = new Map<number, Buffer>();
  private readonly header: Buffer;
  private backing?: BlockBackend;
  private readonly snapshots: number;
  private readonly dirty: boolean;
  private readonly corruptBit: boolean;
  /** First cluster index past everything allocated (where the next allocation goes). */
  private nextFree: number;
  /** Clusters whose refcount is already 1 on disk, not yet used. */
  private reserved: number[] = [];
  private reserveBatch = RESERVE_FIRST;

  constructor(readonly path: string, readonly: boolean, openBacking?: (file: string, format: ImageFormat | undefined) => BlockBackend) {
    try {
      this.fd = fs.openSync(path, readonly ? 'r' : 'r+');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new StorageError(code === 'ENOENT' ? 'not_found' : 'io', `cannot open image '${path}' (${code})`);
    }
    try {
      const fileSize = fs.fstatSync(this.fd).size;
      const head = Buffer.alloc(V3_HEADER_LENGTH);
      readFully(this.fd, head, 0);
      if (head.readUInt32BE(H_MAGIC) !== QCOW2_MAGIC) throw new StorageError('not_qcow2', `'${path}' is not a qcow2 image (no QFI\\xfb magic)`);
      if (fileSize < V2_HEADER_LENGTH) throw corrupt(path, `the file ends inside the header (${fileSize} bytes)`);
      const version = head.readUInt32BE(H_VERSION);
      if (version !== 2 && version !== 3) throw new StorageError('unsupported', `qcow2 image '${path}' has version ${version}: only 2 and 3 are known`);
      this.version = version;
      const clusterBits = head.readUInt32BE(H_CLUSTER_BITS);
      if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) throw corrupt(path, `cluster_bits ${clusterBits} is not in 9..21`);
      this.clusterBits = clusterBits;
      this.clusterSize = 2 ** clusterBits;
      this.l2Bits = clusterBits - 3;
      const headerLength = version === 2 ? V2_HEADER_LENGTH : head.readUInt32BE(H_HEADER_LENGTH);
      if (version === 3 && (headerLength < V3_MIN_HEADER_LENGTH || headerLength % 8 !== 0 || headerLength > this.clusterSize)) {
        throw corrupt(path, `header_length ${headerLength}`);
      }
      // The whole first cluster holds the header, its extensions and the backing file name.
      this.header = Buffer.alloc(this.clusterSize);
      readFully(this.fd, this.header, 0);
      const h = this.header;
      if (h.readUInt32BE(H_CRYPT) !== 0) throw new StorageError('unsupported', `qcow2 image '${path}' is encrypted: encryption is not supported`);
      const incompatible = version === 3 ? u64(h, H_INCOMPATIBLE) : 0;
      if (incompatible & INCOMPAT_DATA_FILE) throw new StorageError('unsupported', `qcow2 image '${path}' keeps its data in an external file: not supported`);
      if (incompatible & INCOMPAT_COMPRESSION) throw new StorageError('unsupported', `qcow2 image '${path}' uses a non-zlib compression type: compression is not supported`);
      if (incompatible & INCOMPAT_EXTL2) throw new StorageError('unsupported', `qcow2 image '${path}' has extended L2 entries (subclusters): not supported`);
      if (!Number.isFinite(incompatible) || (incompatible & ~INCOMPAT_KNOWN) !== 0 || incompatible >= 2 ** 31) {
        throw new StorageError('unsupported', `qcow2 image '${path}' has unknown incompatible features (0x${h.readBigUInt64BE(H_INCOMPATIBLE).toString(16)})`);
      }
      this.dirty = (incompatible & INCOMPAT_DIRTY) !== 0;
      this.corruptBit = (incompatible & INCOMPAT_CORRUPT) !== 0;
      if (version === 3 && headerLength > H_COMPRESSION_TYPE && h.readUInt8(H_COMPRESSION_TYPE) !== 0) {
        throw new StorageError('unsupported', `qcow2 image '${path}' uses compression type ${h.readUInt8(H_COMPRESSION_TYPE)}: not supported`);
      }
      this.refcountOrder = version === 3 ? h.readUInt32BE(H_REFCOUNT_ORDER) : 4;
      if (this.refcountOrder > 6) throw corrupt(path, `refcount_order ${this.refcountOrder}`);
      this.refblockEntries = (this.clusterSize * 8) >> this.refcountOrder;

      this.size = u64(h, H_SIZE);
      if (!(this.size <= QCOW2_MAX_SIZE)) throw new StorageError('unsupported', `qcow2 image '${path}': virtual size over ${QCOW2_MAX_SIZE} bytes`);
      const l1Size = h.readUInt32BE(H_L1_SIZE);
      const l1Needed = Math.ceil(this.size / (this.clusterSize * 2 ** this.l2Bits));
      if (l1Size < l1Needed) throw corrupt(path, `L1 table of ${l1Size} entries cannot map ${this.size} bytes`);
      this.l1Offset = u64(h, H_L1_OFFSET);
      if (this.l1Offset % this.clusterSize !== 0 || this.l1Offset === 0 || this.l1Offset + l1Size * 8 > fileSize) {
        throw corrupt(path, `L1 table offset ${this.l1Offset} (${l1Size} entries) is not inside the file at a cluster boundary`);
      }
      this.refcountTableOffset = u64(h, H_RT_OFFSET);
      const rtClusters = h.readUInt32BE(H_RT_CLUSTERS);
      if (this.refcountTableOffset % this.clusterSize !== 0 || this.refcountTableOffset === 0 || rtClusters === 0
        || this.refcountTableOffset + rtClusters * this.clusterSize > fileSize) {
        throw corrupt(path, `refcount table at ${this.refcountTableOffset} (${rtClusters} clusters) is not inside the file`);
      }
      this.snapshots = h.readUInt32BE(H_NB_SNAPSHOTS);

      // Header extensions (v3 only; v2 has none defined that we need).
      let extAt = headerLength;
      while (version === 3 && extAt + 8 <= this.clusterSize) {
        const type = h.readUInt32BE(extAt), length = h.readUInt32BE(extAt + 4);
        if (type === EXT_END) break;
        if (extAt + 8 + length > this.clusterSize) throw corrupt(path, `header extension 0x${type.toString(16)} runs past the first cluster`);
        if (type === EXT_BACKING_FORMAT) {
          const name = h.toString('latin1', extAt + 8, extAt + 8 + length);
          if (name !== 'raw' && name !== 'qcow2') throw new StorageError('unsupported', `qcow2 image '${path}': backing format '${name}' is not supported (raw, qcow2)`);
          this.backingFormat = name;
        }
        extAt += 8 + Math.ceil(length / 8) * 8;
      }

      const backingOffset = u64(h, H_BACKING_OFFSET);
      const backingSize = h.readUInt32BE(H_BACKING_SIZE);
      if (backingOffset !== 0) {
        if (backingSize === 0 || backingSize > MAX_BACKING_NAME || backingOffset + backingSize > this.clusterSize) {
          throw corrupt(path, `backing file name at ${backingOffset} (${backingSize} bytes) is not inside the first cluster`);
        }
        this.backingFile = h.toString('utf8', backingOffset, backingOffset + backingSize);
        this.backingPath = nodePath.isAbsolute(this.backingFile) ? this.backingFile : nodePath.resolve(nodePath.dirname(nodePath.resolve(this.path)), this.backingFile);
      }

      if (!readonly) {
        if (this.version !== 3) throw new StorageError('unsupported', `qcow2 image '${path}' is version 2: only version 3 is written (qemu-img amend -o compat=1.1)`);
        if (this.snapshots > 0) throw new StorageError('unsupported', `qcow2 image '${path}' has ${this.snapshots} internal snapshot(s): it can only be opened read-only`);
        if (this.dirty) throw new StorageError('corrupt', `qcow2 image '${path}' is marked dirty (lazy refcounts): repair it with qemu-img check -r all`);
        if (this.corruptBit) throw new StorageError('corrupt', `qcow2 image '${path}' is marked corrupt: repair it with qemu-img check -r all`);
        if (this.refcountOrder < 3 || this.refcountOrder > 5) {
          throw new StorageError('unsupported', `qcow2 image '${path}' has ${2 ** this.refcountOrder}-bit refcounts: only 8, 16 and 32 are written`);
        }
      }
      this.readonly = readonly;

      const l1 = Buffer.alloc(l1Size * 8);
      readFully(this.fd, l1, this.l1Offset);
      for (let i = 0; i < l1Size; i++) {
        const hi = l1.readUInt32BE(i * 8), lo = l1.readUInt32BE(i * 8 + 4);
        const offset = (hi & HI_OFFSET_MASK) * 2 ** 32 + (lo & LO_OFFSET_MASK);
        if (offset % this.clusterSize !== 0) throw corrupt(path, `L1 entry ${i} points at ${offset}, not a cluster boundary`);
        this.l1.push(offset);
      }
      const rt = Buffer.alloc(rtClusters * this.clusterSize);
      readFully(this.fd, rt, this.refcountTableOffset);
      for (let i = 0; i < rt.length / 8; i++) {
        const offset = u64(rt, i * 8) - (rt.readUInt32BE(i * 8 + 4) & 0x1ff); // bits 0-8 are reserved
        if (offset % this.clusterSize !== 0) throw corrupt(path, `refcount table entry ${i} points at ${offset}, not a cluster boundary`);
        this.refcountTable.push(offset);
      }
      this.nextFree = Math.ceil(fileSize / this.clusterSize);

      if (this.backingPath !== undefined) {
        if (!openBacking) throw new StorageError('backing', `qcow2 image '${path}' has a backing file and no way to open it was given`);
        this.backing = openBacking(this.backingPath, this.backingFormat);
      }
      // Autoclear bits we do not know (bitmaps) must be cleared by a writer that does not maintain what they describe.
      if (!readonly && version === 3 && (h.readUInt32BE(H_AUTOCLEAR) !== 0 || h.readUInt32BE(H_AUTOCLEAR + 4) !== 0)) {
        h.fill(0, H_AUTOCLEAR, H_AUTOCLEAR + 8);
        writeFully(this.fd, h.subarray(H_AUTOCLEAR, H_AUTOCLEAR + 8), H_AUTOCLEAR);
        fs.fdatasyncSync(this.fd);
      }
      // After the autoclear bits are cleared: what they described (bitmaps) is no longer referenced.
      if (!readonly) this.reclaimTail();
    } catch (error) {
      this.backing?.close();
      fs.closeSync(this.fd);
      throw error;
    }
  }

  info(): Qcow2Info {
    return {
      format: 'qcow2', version: this.version, virtualSize: this.size, clusterSize: this.clusterSize, refcountBits: 2 ** this.refcountOrder,
      ...(this.backingFile !== undefined ? { backingFile: this.backingFile, backingPath: this.backingPath } : {}),
      ...(this.backingFormat !== undefined ? { backingFormat: this.backingFormat } : {}),
      snapshots: this.snapshots, dirty: this.dirty, corrupt: this.corruptBit,
    };
  }

  // --- reading ---------------------------------------------------------------------------------------------------

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new StorageError('range', `access [${offset}, +${length}) outside the disk (${this.size} bytes)`);
    }
  }

  /** The L2 table of L1 slot `l1Index` (cached), or undefined if none is allocated. */
  private l2Table(l1Index: number): { offset: number; table: Buffer } | undefined {
    const offset = this.l1[l1Index];
    if (offset === 0) return undefined;
    let table = this.l2Cache.get(offset);
    if (table) {
      this.l2Cache.delete(offset); // move to the back: most recently used
    } else {
      table = Buffer.alloc(this.clusterSize);
      readFully(this.fd, table, offset);
      if (this.l2Cache.size >= L2_CACHE_TABLES) this.l2Cache.delete(this.l2Cache.keys().next().value!);
    }
    this.l2Cache.set(offset, table);
    return { offset, table };
  }

  /** What guest cluster `vc` maps to. */
  private lookup(vc: number): { kind: 'unallocated' } | { kind: 'zero'; host: number } | { kind: 'data'; host: number } {
    const l1Index = Math.floor(vc / 2 ** this.l2Bits);
    const l2 = this.l2Table(l1Index);
    if (!l2) return { kind: 'unallocated' };
    const at = (vc % 2 ** this.l2Bits) * 8;
    const hi = l2.table.readUInt32BE(at), lo = l2.table.readUInt32BE(at + 4);
    if (hi & HI_COMPRESSED) throw new StorageError('unsupported', `qcow2 image '${this.path}' has compressed clusters: compression is not supported`);
    const host = (hi & HI_OFFSET_MASK) * 2 ** 32 + (lo & LO_OFFSET_MASK);
    if (host % this.clusterSize !== 0) throw corrupt(this.path, `L2 entry for guest cluster ${vc} points at ${host}, not a cluster boundary`);
    if (this.version === 3 && (lo & LO_ZERO)) return { kind: 'zero', host };
    return host === 0 ? { kind: 'unallocated' } : { kind: 'data', host };
  }

  /** Read guest bytes that this image does not hold: from the backing image, zeros past its end or without one. */
  private readBacking(offset: number, buffer: Uint8Array): void {
    const have = this.backing ? Math.max(0, Math.min(buffer.length, this.backing.size - offset)) : 0;
    if (have > 0) this.backing!.read(offset, buffer.subarray(0, have));
    buffer.fill(0, have);
  }

  read(offset: number, buffer: Uint8Array): void {
    this.checkRange(offset, buffer.length);
    let done = 0;
    while (done < buffer.length) {
      const at = offset + done;
      const vc = Math.floor(at / this.clusterSize);
      const inCluster = at % this.clusterSize;
      const n = Math.min(this.clusterSize - inCluster, buffer.length - done);
      const piece = buffer.subarray(done, done + n);
      const where = this.lookup(vc);
      if (where.kind === 'data') readFully(this.fd, piece, where.host + inCluster);
      else if (where.kind === 'zero') piece.fill(0);
      else this.readBacking(at, piece);
      done += n;
    }
  }

  /**
   * The guest ranges this image holds itself (not read through to its backing file), in order, adjacent clusters of
   * one kind merged: `zero` for zero clusters (qcow2 v3 L2 bit 0), data otherwise. Clipped to the disk's size.
   */
  allocatedRuns(): Array<{ offset: number; length: number; zero: boolean }> {
    const runs: Array<{ offset: number; length: number; zero: boolean }> = [];
    const perTable = 2 ** this.l2Bits;
    for (let l1Index = 0; l1Index < this.l1.length; l1Index++) {
      if (this.l1[l1Index] === 0) continue;
      for (let i = 0; i < perTable; i++) {
        const vc = l1Index * perTable + i;
        const offset = vc * this.clusterSize;
        if (offset >= this.size) break;
        const where = this.lookup(vc);
        if (where.kind === 'unallocated') continue;
        const zero = where.kind === 'zero';
        const length = Math.min(this.clusterSize, this.size - offset);
        const last = runs[runs.length - 1];
        if (last && last.zero === zero && last.offset + last.length === offset) last.length += length;
        else runs.push({ offset, length, zero });
      }
    }
    return runs;
  }

  // --- refcounts and allocation ----------------------------------------------------------------------------------

  private refblock(tableIndex: number): Buffer | undefined {
    const offset = this.refcountTable[tableIndex] ?? 0;
    if (offset === 0) return undefined;
    let block = this.refblocks.get(offset);
    if (!block) {
      block = Buffer.alloc(this.clusterSize);
      readFully(this.fd, block, offset);
      this.refblocks.set(offset, block);
    }
    return block;
  }

  private getRef(block: Buffer, index: number): number {
    switch (this.refcountOrder) {
      case 3: return block.readUInt8(index);
      case 4: return block.readUInt16BE(index * 2);
      case 5: return block.readUInt32BE(index * 4);
      default: {
        const bits = 2 ** this.refcountOrder;
        if (bits === 64) return u64(block, index * 8);
        const byte = block[Math.floor((index * bits) / 8)];
        return (byte >> ((index * bits) % 8)) & ((1 << bits) - 1);
      }
    }
  }

  /** Set a refcount in memory; returns the byte range of the block that changed. */
  private setRef(block: Buffer, index: number, value: number): [number, number] {
    switch (this.refcountOrder) {
      case 3: block.writeUInt8(value, index); return [index, index + 1];
      case 4: block.writeUInt16BE(value, index * 2); return [index * 2, index * 2 + 2];
      default: block.writeUInt32BE(value, index * 4); return [index * 4, index * 4 + 4];
    }
  }

  refcount(cluster: number): number {
    const block = this.refblock(Math.floor(cluster / this.refblockEntries));
    return block ? this.getRef(block, cluster % this.refblockEntries) : 0;
  }

  /**
   * Reserve host clusters at the end of the file: refcount 1 on disk, the file extended over them, all synced, so a
   * crash at any later point leaks them at worst.
   */
  private reserve(count: number): void {
    const dirty = new Map<number, [number, number]>(); // refblock offset -> changed byte range
    const got: number[] = [];
    while (got.length < count) {
      const c = this.nextFree;
      const tableIndex = Math.floor(c / this.refblockEntries);
      if (tableIndex >= this.refcountTable.length) {
        throw new StorageError('unsupported', `qcow2 image '${this.path}': its refcount table is full (growing it is not supported)`);
      }
      if ((this.refcountTable[tableIndex] ?? 0) === 0) {
        // A new refcount block, placed at this very cluster, which it covers: it counts itself.
        const block = Buffer.alloc(this.clusterSize);
        this.setRef(block, c % this.refblockEntries, 1);
        const offset = c * this.clusterSize;
        writeFully(this.fd, block, offset);
        fs.fdatasyncSync(this.fd); // the block is on disk before the table points at it
        this.refblocks.set(offset, block);
        this.refcountTable[tableIndex] = offset;
        const entry = Buffer.alloc(8);
        putU64(entry, 0, offset);
        writeFully(this.fd, entry, this.refcountTableOffset + tableIndex * 8);
        this.nextFree++;
        continue;
      }
      const block = this.refblock(tableIndex)!;
      const index = c % this.refblockEntries;
      this.nextFree++;
      if (this.getRef(block, index) !== 0) continue; // in use already (a stray past the end of the file): skip it
      const [from, to] = this.setRef(block, index, 1);
      const offset = this.refcountTable[tableIndex];
      const range = dirty.get(offset);
      dirty.set(offset, range ? [Math.min(range[0], from), Math.max(range[1], to)] : [from, to]);
      got.push(c);
    }
    for (const [offset, [from, to]] of dirty) writeFully(this.fd, this.refblocks.get(offset)!.subarray(from, to), offset + from);
    const end = this.nextFree * this.clusterSize;
    if (fs.fstatSync(this.fd).size < end) fs.ftruncateSync(this.fd, end);
    fs.fdatasyncSync(this.fd);
    this.reserved.push(...got);
  }

  /** One host cluster with refcount 1 on disk (the byte offset). */
  private allocate(): number {
    if (this.reserved.length === 0) {
      this.reserve(this.reserveBatch);
      this.reserveBatch = Math.min(RESERVE_MAX, this.reserveBatch * 2);
    }
    return this.reserved.shift()! * this.clusterSize;
  }

  /** Drop a host cluster's refcount to 0 and punch its hole (after every reference to it is gone from disk). */
  private free(host: number): void {
    const c = host / this.clusterSize;
    const tableIndex = Math.floor(c / this.refblockEntries);
    const block = this.refblock(tableIndex);
    if (!block) return;
    const index = c % this.refblockEntries;
    if (this.getRef(block, index) !== 1) return; // shared or already free: leave it (never happens without snapshots)
    const [from, to] = this.setRef(block, index, 0);
    writeFully(this.fd, block.subarray(from, to), this.refcountTable[tableIndex] + from);
    punchHole(this.fd, host, this.clusterSize);
  }

  /**
   * Give back the clusters a killed writer had reserved and not used: they sit at the end of the file, past every
   * cluster anything refers to, with refcount 1. Only done when the tables are small enough to scan quickly (at most
   * MAX_RECLAIM_SCAN L2 tables); otherwise they stay leaked, which is harmless.
   */
  private reclaimTail(): void {
    const l2Offsets = this.l1.filter((offset) => offset !== 0);
    if (l2Offsets.length > MAX_RECLAIM_SCAN) return;
    const cs = this.clusterSize;
    let last = 0; // the highest cluster index anything refers to
    const see = (offset: number, clusters = 1) => { last = Math.max(last, offset / cs + clusters - 1); };
    see(this.refcountTableOffset, Math.ceil((this.refcountTable.length * 8) / cs));
    see(this.l1Offset, Math.max(1, Math.ceil((this.l1.length * 8) / cs)));
    for (const offset of this.refcountTable) if (offset !== 0) see(offset);
    const table = Buffer.alloc(cs);
    for (const offset of l2Offsets) {
      see(offset);
      readFully(this.fd, table, offset);
      for (let at = 0; at < cs; at += 8) {
        const hi = table.readUInt32BE(at);
        if (hi & HI_COMPRESSED) return; // another layout of the offset: leave the image as it is
        const host = (hi & HI_OFFSET_MASK) * 2 ** 32 + (table.readUInt32BE(at + 4) & LO_OFFSET_MASK);
        if (host !== 0) see(host);
      }
    }
    const end = this.nextFree;
    if (end <= last + 1) return;
    const leaked: number[] = [];
    for (let c = last + 1; c < end; c++) if (this.refcount(c) !== 0) leaked.push(c);
    this.reserved = leaked;
    this.releaseReserved(); // refcounts to 0, synced, then the file cut back
    if (this.nextFree > last + 1 && this.reserved.length === 0) {
      fs.ftruncateSync(this.fd, (last + 1) * cs);
      this.nextFree = last + 1;
    }
  }

  // --- writing ---------------------------------------------------------------------------------------------------

  private writable(): void {
    if (this.readonly) throw new StorageError('readonly', 'the disk is read-only');
  }

  /** The L2 table for guest cluster `vc`, allocated (zeroed, then linked from L1) if it has none. */
  private l2ForWrite(vc: number): { offset: number; table: Buffer } {
    const l1Index = Math.floor(vc / 2 ** this.l2Bits);
    const existing = this.l2Table(l1Index);
    if (existing) return existing;
    const offset = this.allocate();
    const table = Buffer.alloc(this.clusterSize);
    writeFully(this.fd, table, offset);
    const entry = Buffer.alloc(8);
    putU64(entry, 0, offset);
    entry.writeUInt32BE((entry.readUInt32BE(0) | HI_COPIED) >>> 0, 0);
    writeFully(this.fd, entry, this.l1Offset + l1Index * 8);
    this.l1[l1Index] = offset;
    if (this.l2Cache.size >= L2_CACHE_TABLES) this.l2Cache.delete(this.l2Cache.keys().next().value!);
    this.l2Cache.set(offset, table);
    return { offset, table };
  }

  /** Point guest cluster `vc`'s L2 entry at `host` (0: none) with the zero flag or not, in memory and on disk. */
  private setL2(vc: number, host: number, zero: boolean): void {
    const l2 = this.l2ForWrite(vc);
    const at = (vc % 2 ** this.l2Bits) * 8;
    const hi = (host === 0 ? 0 : HI_COPIED) | Math.floor(host / 2 ** 32);
    const lo = (host % 2 ** 32) | (zero ? LO_ZERO : 0);
    l2.table.writeUInt32BE(hi >>> 0, at);
    l2.table.writeUInt32BE(lo >>> 0, at + 4);
    writeFully(this.fd, l2.table.subarray(at, at + 8), l2.offset + at);
  }

  write(offset: number, data: Uint8Array): void {
    this.writable();
    this.checkRange(offset, data.length);
    let done = 0;
    while (done < data.length) {
      const at = offset + done;
      const vc = Math.floor(at / this.clusterSize);
      const inCluster = at % this.clusterSize;
      const n = Math.min(this.clusterSize - inCluster, data.length - done);
      this.writeInCluster(vc, inCluster, data.subarray(done, done + n));
      done += n;
    }
  }

  private writeInCluster(vc: number, inCluster: number, piece: Uint8Array): void {
    const where = this.lookup(vc);
    if (where.kind === 'data') {
      writeFully(this.fd, piece, where.host + inCluster);
      return;
    }
    // A new cluster: its whole content is written before the L2 entry points at it.
    const clusterStart = vc * this.clusterSize;
    const valid = Math.min(this.clusterSize, this.size - clusterStart); // the last cluster may pass the disk's end
    let content: Uint8Array;
    if (inCluster === 0 && piece.length >= valid) {
      content = piece;
    } else {
      const full = Buffer.alloc(this.clusterSize);
      if (where.kind === 'unallocated') this.readBacking(clusterStart, full.subarray(0, valid));
      full.set(piece, inCluster);
      content = full;
    }
    // A zero cluster that kept its host cluster (qemu's preallocated zeros) is written in place.
    const host = where.kind === 'zero' && where.host !== 0 && this.refcount(where.host / this.clusterSize) === 1 ? where.host : this.allocate();
    writeFully(this.fd, content, host);
    this.setL2(vc, host, false);
  }

  flush(): void {
    fs.fdatasyncSync(this.fd);
  }

  discard(offset: number, length: number): void {
    this.zeroRange(offset, length, false);
  }

  writeZeroes(offset: number, length: number): void {
    this.zeroRange(offset, length, true);
  }

  /** Whole clusters become zero clusters (their host clusters freed); with `partial`, the edges are written with zeros. */
  private zeroRange(offset: number, length: number, partial: boolean): void {
    this.writable();
    this.checkRange(offset, length);
    const end = offset + length;
    let at = offset;
    while (at < end) {
      const vc = Math.floor(at / this.clusterSize);
      const clusterStart = vc * this.clusterSize;
      const clusterEnd = Math.min(clusterStart + this.clusterSize, this.size);
      const stop = Math.min(end, clusterEnd);
      if (at === clusterStart && stop === clusterEnd) {
        const where = this.lookup(vc);
        // Without a backing image an unallocated cluster already reads as zeros.
        if (!(where.kind === 'unallocated' && !this.backing) && !(where.kind === 'zero' && where.host === 0)) {
          this.setL2(vc, 0, true);
          if (where.kind !== 'unallocated' && where.host !== 0) this.free(where.host);
        }
      } else if (partial) {
        this.write(at, new Uint8Array(stop - at));
      }
      at = stop;
    }
  }

  /** Give back the clusters reserved and not used (refcount 0, and the file's tail cut off). */
  private releaseReserved(): void {
    if (this.reserved.length === 0) return;
    const changed = new Map<number, [number, number]>();
    for (const c of this.reserved) {
      const tableIndex = Math.floor(c / this.refblockEntries);
      const block = this.refblock(tableIndex)!;
      const [from, to] = this.setRef(block, c % this.refblockEntries, 0);
      const offset = this.refcountTable[tableIndex];
      const range = changed.get(offset);
      changed.set(offset, range ? [Math.min(range[0], from), Math.max(range[1], to)] : [from, to]);
    }
    for (const [offset, [from, to]] of changed) writeFully(this.fd, this.refblocks.get(offset)!.subarray(from, to), offset + from);
    // The reserved clusters were the last ones taken: cut the file back to the first of them if they end it.
    const sorted = [...this.reserved].sort((a, b) => a - b);
    let tail = this.nextFree;
    while (sorted.length > 0 && sorted[sorted.length - 1] === tail - 1) {
      sorted.pop();
      tail--;
    }
    fs.fdatasyncSync(this.fd);
    if (tail < this.nextFree) {
      fs.ftruncateSync(this.fd, tail * this.clusterSize);
      this.nextFree = tail;
    }
    this.reserved = [];
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      if (!this.readonly) {
        this.releaseReserved();
        fs.fdatasyncSync(this.fd);
      }
    } finally {
      fs.closeSync(this.fd);
      this.fd = -1;
      this.backing?.close();
    }
  }
}

/**
 * Create a qcow2 v3 image at `file` (which must not exist): header, refcount table, one refcount block, L1 table,
 * no data clusters. The refcount table is sized for the whole disk, so it never has to grow.
 */
export function createQcow2(file: string, options: CreateQcow2Options): void {
  const clusterBits = options.clusterBits ?? 16;
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new StorageError('range', `cluster size 2^${clusterBits} is not in 512 B..2 MiB`);
  }
  const cs = 2 ** clusterBits;
  let size = options.size;
  if (options.backingFile !== undefined) {
    if (Buffer.byteLength(options.backingFile) > MAX_BACKING_NAME || options.backingFile.includes('\0')) {
      throw new StorageError('range', `backing file name is longer than ${MAX_BACKING_NAME} bytes`);
    }
    const resolved = nodePath.isAbsolute(options.backingFile) ? options.backingFile : nodePath.resolve(nodePath.dirname(nodePath.resolve(file)), options.backingFile);
    const backing = openImage(resolved, { readonly: true, format: options.backingFormat });
    size ??= backing.size;
    backing.close();
  }
  if (size === undefined || !Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0 || size > QCOW2_MAX_SIZE) {
    throw new StorageError('range', `invalid size ${size}: a multiple of 512 bytes, 512 B to ${QCOW2_MAX_SIZE / 2 ** 40} TiB`);
  }
  const l2Entries = cs / 8;
  const l1Size = Math.ceil(size / (cs * l2Entries));
  const l1Clusters = Math.max(1, Math.ceil((l1Size * 8) / cs));
  const refblockEntries = (cs * 8) / 16;
  // Host clusters a fully written disk needs: data, L2 tables, L1, the table itself, refcount blocks (with margin).
  const hostClusters = Math.ceil(size / cs) + Math.ceil(size / (cs * l2Entries)) + l1Clusters + 16;
  const refblocks = Math.ceil((hostClusters * 1.05 + 64) / refblockEntries);
  const rtClusters = Math.max(1, Math.ceil((refblocks * 8) / cs));
  const rtOffset = cs, refblockOffset = (1 + rtClusters) * cs, l1Offset = (2 + rtClusters) * cs;
  const metadataClusters = 2 + rtClusters + l1Clusters;
  if (metadataClusters > refblockEntries) throw new StorageError('range', `size ${size} needs more metadata than one refcount block covers: use larger clusters`);

  const header = Buffer.alloc(cs);
  header.writeUInt32BE(QCOW2_MAGIC, H_MAGIC);
  header.writeUInt32BE(3, H_VERSION);
  header.writeUInt32BE(clusterBits, H_CLUSTER_BITS);
  putU64(header, H_SIZE, size);
  header.writeUInt32BE(l1Size, H_L1_SIZE);
  putU64(header, H_L1_OFFSET, l1Offset);
  putU64(header, H_RT_OFFSET, rtOffset);
  header.writeUInt32BE(rtClusters, H_RT_CLUSTERS);
  header.writeUInt32BE(4, H_REFCOUNT_ORDER); // 16-bit refcounts, as qemu-img's default
  header.writeUInt32BE(V3_HEADER_LENGTH, H_HEADER_LENGTH);
  let at = V3_HEADER_LENGTH;
  if (options.backingFile !== undefined && options.backingFormat !== undefined) {
    header.writeUInt32BE(EXT_BACKING_FORMAT, at);
    header.writeUInt32BE(options.backingFormat.length, at + 4);
    header.write(options.backingFormat, at + 8, 'latin1');
    at += 8 + Math.ceil(options.backingFormat.length / 8) * 8;
  }
  at += 8; // the end-of-extensions marker (type 0, length 0)
  if (options.backingFile !== undefined) {
    const name = Buffer.from(options.backingFile, 'utf8');
    if (at + name.length > cs) throw new StorageError('range', 'backing file name does not fit in the first cluster: use larger clusters');
    putU64(header, H_BACKING_OFFSET, at);
    header.writeUInt32BE(name.length, H_BACKING_SIZE);
    name.copy(header, at);
  }

  const table = Buffer.alloc(rtClusters * cs);
  putU64(table, 0, refblockOffset);
  const block = Buffer.alloc(cs);
  for (let c = 0; c < metadataClusters; c++) block.writeUInt16BE(1, c * 2);

  const fd = fs.openSync(file, 'wx', 0o644);
  try {
    writeFully(fd, header, 0);
    writeFully(fd, table, rtOffset);
    writeFully(fd, block, refblockOffset);
    fs.ftruncateSync(fd, metadataClusters * cs); // the L1 table: zeros
    fs.fsyncSync(fd);
  } catch (error) {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    throw error;
  }
  fs.closeSync(fd);
}

export interface CommitResult {
  /** The backing image written (absolute, as resolved from the header above it). */
  backingPath: string;
  backingFormat: ImageFormat;
  /** The images between the overlay and the image written, top down (their content was committed too). */
  intermediates: string[];
  /** Guest bytes copied from the data clusters of the committed images, and bytes zeroed for their zero clusters. */
  dataBytes: number;
  zeroBytes: number;
}

/**
 * Block commit (QEMU's `qemu-img commit [-b BASE]`, libvirt's blockcommit [--base]): write everything the qcow2
 * overlay `overlay` holds, and with `base` everything the images between them hold too, into the image below (its
 * immediate backing file, or `base`, which must be in the overlay's backing chain). That image is opened writable (its
 * format from the header above it, else probed: a probed raw image refuses a qcow2 magic in its first sector, as any
 * probed raw disk does); the images above it are read-only and not changed. The images are committed bottom-up, each
 * one's own clusters (data, or zeros for its zero clusters), so an upper image's content lands over a lower one's and
 * `base` then reads what the overlay read. Every range written is one some image above holds, so what the overlay
 * reads never changes: a commit cut short can be run again. The intermediate images' own view does change (`base`
 * below them now holds upper content): callers drop them from use. `base` is synced before this returns. The caller
 * makes sure nothing else reads the images concerned.
 */
export function commitOverlay(overlay: string, base?: string): CommitResult {
  const target = base === undefined ? undefined : realOrSelf(base);
  const found: { base?: BlockBackend; basePath?: string; intermediates: Qcow2Image[] } = { intermediates: [] };
  const seen = new Set([realOrSelf(overlay)]);
  const openBelow = (file: string, format: ImageFormat | undefined, depth: number): BlockBackend => {
    if (target === undefined || realOrSelf(file) === target) {
      // The image written: writable; its own backing chain (if any) read-only, as openImage opens chains.
      found.base = openChain(file, format, false, depth, seen);
      found.basePath = file;
      return found.base;
    }
    // Above the image written: read-only, and committed too.
    if (depth > MAX_CHAIN_DEPTH) throw new StorageError('backing', `backing chain deeper than ${MAX_CHAIN_DEPTH} at '${file}'`);
    const real = realOrSelf(file);
    if (seen.has(real)) throw new StorageError('backing', `backing chain loops back to '${file}'`);
    seen.add(real);
    if ((format ?? detectFormat(file)) === 'raw') return new RawBackend(file, true, format === undefined); // the chain ends here
    const image = new Qcow2Image(file, true, (backingPath, backingFormat) => openBelow(backingPath, backingFormat, depth + 1));
    found.intermediates.push(image); // after its own backing: bottom-up
    return image;
  };
  const top = new Qcow2Image(overlay, true, (backingPath, backingFormat) => openBelow(backingPath, backingFormat, 1));
  try {
    const into = found.base;
    if (into === undefined || found.basePath === undefined) {
      throw new StorageError('range', base === undefined
        ? `'${overlay}' has no backing file: there is nothing to commit it into`
        : `'${base}' is not in the backing chain of '${overlay}'`);
    }
    if (into.size < top.size) {
      throw new StorageError('unsupported', `'${overlay}' (${top.size} bytes) is larger than its backing file (${into.size} bytes): growing the backing file is not supported`);
    }
    const chunk = Buffer.alloc(1 << 20);
    let dataBytes = 0, zeroBytes = 0;
    for (const image of [...found.intermediates, top]) {
      for (const run of image.allocatedRuns()) {
        const length = Math.min(run.length, into.size - run.offset);
        if (length <= 0) continue;
        if (run.zero) {
          into.writeZeroes(run.offset, length);
          zeroBytes += length;
          continue;
        }
        for (let done = 0; done < length;) {
          const n = Math.min(chunk.length, length - done);
          const piece = chunk.subarray(0, n);
          image.read(run.offset + done, piece);
          into.write(run.offset + done, piece);
          done += n;
        }
        dataBytes += length;
      }
    }
    into.flush();
    return {
      backingPath: found.basePath, backingFormat: into.format, intermediates: found.intermediates.map((i) => i.path).reverse(), dataBytes, zeroBytes,
    };
  } finally {
    top.close(); // closes the chain below too (a qcow2 image written gives back its reserved clusters)
  }
}

function realOrSelf(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return file;
  }
}

/** What an image file is: its format, virtual size, backing file (qcow2), and the space it takes on the host. */
export interface ImageInfo {
  format: ImageFormat;
  virtualSize: number;
  actualSize: number;
  clusterSize?: number;
  backingFile?: string;
  backingFormat?: ImageFormat;
  backingPath?: string;
}

export function imageInfo(file: string, format?: ImageFormat): ImageInfo {
  const kind = format ?? detectFormat(file);
  const actualSize = fs.statSync(file).blocks * 512;
  if (kind === 'raw') {
    const raw = new RawBackend(file, true);
    raw.close();
    return { format: 'raw', virtualSize: raw.size, actualSize };
  }
  // Only the header: the backing file is not opened (its absence is reported when the image is used).
  const image = new Qcow2Image(file, true, (backingPath, backingFormat) => new NullBackend(backingPath, backingFormat ?? 'raw'));
  const info = image.info();
  image.close();
  return {
    format: 'qcow2', virtualSize: info.virtualSize, actualSize, clusterSize: info.clusterSize,
    ...(info.backingFile !== undefined ? { backingFile: info.backingFile, backingPath: info.backingPath } : {}),
    ...(info.backingFormat !== undefined ? { backingFormat: info.backingFormat } : {}),
  };
}

/** Stands in for a backing image that is named but not opened (imageInfo). */
class NullBackend implements BlockBackend {
  readonly size = 0;
  readonly readonly = true;
  constructor(readonly path: string, readonly format: ImageFormat) {}
  read(): void { throw new StorageError('backing', 'backing image not opened'); }
  write(): void { throw new StorageError('readonly', 'read-only'); }
  flush(): void {}
  discard(): void {}
  writeZeroes(): void {}
  close(): void {}
}

/**
 * Copy the disk `src` (any format, its backing chain read through) into a new standalone image `dst` of `format`
 * (which must not exist): zero runs are left unallocated (holes in a raw file, no cluster in qcow2). Synced.
 */
export function copyImage(src: string, dst: string, format: ImageFormat, srcFormat?: ImageFormat): void {
  const from = openImage(src, { readonly: true, format: srcFormat });
  const chunk = 1 << 20, grain = 65536;
  const zero = Buffer.alloc(grain);
  try {
    if (format === 'qcow2') createQcow2(dst, { size: from.size });
    else fs.closeSync(fs.openSync(dst, 'wx', 0o644));
  } catch (error) {
    from.close();
    throw error;
  }
  try {
    let to: BlockBackend | undefined;
    try {
      to = format === 'qcow2' ? openImage(dst, { format: 'qcow2' }) : new RawBackend(dst, false);
      const rawFd = format === 'raw' ? fs.openSync(dst, 'r+') : -1;
      try {
        if (rawFd >= 0) fs.ftruncateSync(rawFd, from.size);
        const buffer = Buffer.alloc(chunk);
        for (let at = 0; at < from.size; at += chunk) {
          const n = Math.min(chunk, from.size - at);
          const piece = buffer.subarray(0, n);
          from.read(at, piece);
          for (let g = 0; g < n; g += grain) {
            const part = piece.subarray(g, Math.min(g + grain, n));
            if (part.equals(zero.subarray(0, part.length))) continue;
            if (rawFd >= 0) writeFully(rawFd, part, at + g);
            else to.write(at + g, part);
          }
        }
        if (rawFd >= 0) fs.fsyncSync(rawFd);
      } finally {
        if (rawFd >= 0) fs.closeSync(rawFd);
      }
      to.flush();
    } finally {
      to?.close();
    }
  } catch (error) {
    fs.rmSync(dst, { force: true });
    throw error;
  } finally {
    from.close();
  }
}
