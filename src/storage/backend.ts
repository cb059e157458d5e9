// Block backends: what virtio-blk reads and writes through. A backend is a byte-addressed disk of a fixed virtual
// size: a raw image file (the file is the disk) or a qcow2 image (src/storage/qcow2.ts: clusters mapped through
// L1/L2 tables, optionally over a backing image). All calls are synchronous, for the reasons given in
// src/devices/virtio/blk.ts; every failure is an exception (the device turns it into VIRTIO_BLK_S_IOERR).
//
// Format detection is by magic (qcow2 starts with "QFI\xfb"), as `qemu-img info` does without -f. The caller that
// knows the format (the daemon's pool) may pass it, so a guest that writes qcow2's magic into sector 0 of a raw disk
// cannot make the host open that disk as qcow2 (and follow a backing file name the guest chose).

import fs from 'node:fs';
import { libc, preadvIov, pwritevIov, SysError } from '../sys/libc.ts';
import { ZEROS } from '../sys/zero.ts';
import { after, preadFully, preadvFully, pwriteFully, pwritevFully, totalBytes } from '../sys/file-io.ts';

export type ImageFormat = 'raw' | 'qcow2';

/** Stable codes of storage failures (the API's error bodies and the CLI's messages carry them). */
export type StorageErrorCode = 'not_found' | 'not_qcow2' | 'corrupt' | 'unsupported' | 'backing' | 'readonly' | 'range' | 'io';

export class StorageError extends Error {
  constructor(readonly code: StorageErrorCode, message: string) {
    super(message);
  }
}

export interface BlockBackend {
  readonly format: ImageFormat;
  /** The disk's size in bytes (what the guest sees). */
  readonly size: number;
  readonly readonly: boolean;
  /** Fill `buffer` from the disk at `offset` (the whole range must be inside the disk). */
  read(offset: number, buffer: Uint8Array): void;
  write(offset: number, data: Uint8Array): void;
  /**
   * Optional vectored forms: the same as read/write of each buffer in turn at consecutive offsets, in one system call
   * where the backend can (a guest's request is scattered over many pages: virtio-blk). A backend without them (qcow2,
   * the trackers that wrap a backend) is called once per buffer.
   */
  readv?(offset: number, buffers: readonly Uint8Array[]): void;
  writev?(offset: number, buffers: readonly Uint8Array[]): void;
  /**
   * Optional forms of readv/writev over host memory named by a struct iovec array (`count` entries, `length` bytes in
   * all; libc.ts preadvIov): one system call with no object per buffer. True when all `length` bytes moved; false
   * when not (fewer moved: the end of a shrunk image; or the request needs a look at its data: sector 0 of a probed
   * raw image), and the caller then does the whole request again through readv/writev, which handle those; an error
   * throws. A backend whose disk is not a plain file leaves them out.
   */
  readIov?(offset: number, iov: Uint32Array, count: number, length: number): boolean;
  writeIov?(offset: number, iov: Uint32Array, count: number, length: number): boolean;
  /** Make every completed write durable (fdatasync). */
  flush(): void;
  /** The guest no longer needs [offset, offset+length): the range may read as anything afterwards (here: zeros). */
  discard(offset: number, length: number): void;
  /** [offset, offset+length) reads as zeros afterwards. */
  writeZeroes(offset: number, length: number): void;
  close(): void;
}

export interface OpenOptions {
  readonly?: boolean;
  /** Skip probing: open as this format. */
  format?: ImageFormat;
}

/** "QFI\xfb" (qcow2 spec, header offset 0). */
export const QCOW2_MAGIC = 0x514649fb;

/** The format of an image file, by its first four bytes. */
export function detectFormat(file: string): ImageFormat {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new StorageError(code === 'ENOENT' ? 'not_found' : 'io', `cannot open image '${file}' (${code})`);
  }
  try {
    const head = Buffer.alloc(4);
    const n = fs.readSync(fd, head, 0, 4, 0);
    return n === 4 && head.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  } finally {
    fs.closeSync(fd);
  }
}

// fallocate(2) flags (linux/falloc.h): punch a hole, keeping the file size.
const FALLOC_FL_KEEP_SIZE = 0x01, FALLOC_FL_PUNCH_HOLE = 0x02;
const fallocate = libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)');

/** Deallocate [offset, offset+length) of a file (reads as zeros); false where the file system cannot. */
export function punchHole(fd: number, offset: number, length: number): boolean {
  return length === 0 || fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) === 0;
}

/** Write all of `data` at `position`; a write the file takes no bytes of is a StorageError('io'), errno errors pass. */
export function writeFully(fd: number, data: Uint8Array, position: number): void {
  try {
    pwriteFully(fd, data, position);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== undefined) throw error;
    throw new StorageError('io', (error as Error).message);
  }
}

/** Read `buffer.length` bytes at `position`; what lies past the end of the file reads as zeros. */
export function readFully(fd: number, buffer: Uint8Array, position: number): void {
  const n = preadFully(fd, buffer, position);
  if (n < buffer.length) buffer.fill(0, n);
}

/**
 * A raw image: the file is the disk. Its size is the file's size rounded down to 512-byte sectors.
 *
 * When the format was probed (not stated), the guest may not write a qcow2 magic into the first sector: the next
 * probe would take the disk for a qcow2 image whose header (and backing file name) the guest chose, and open a
 * host file of the guest's choosing. QEMU refuses the same writes on probed raw images (block/raw-format.c).
 */
export class RawBackend implements BlockBackend {
  readonly format = 'raw' as const;
  readonly size: number;
  private fd: number;

  constructor(readonly path: string, readonly readonly: boolean, private readonly probed = false) {
    try {
      // O_NOFOLLOW is left out: the user named the file; nothing the guest sends names another.
      this.fd = fs.openSync(path, readonly ? 'r' : 'r+');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new StorageError(code === 'ENOENT' ? 'not_found' : 'io', `cannot open disk image '${path}' (${code})`);
    }
    const stat = fs.fstatSync(this.fd);
    if (!stat.isFile()) {
      fs.closeSync(this.fd);
      throw new StorageError('io', `disk image '${path}' is not a regular file`);
    }
    this.size = Math.floor(stat.size / 512) * 512;
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new StorageError('range', `access [${offset}, +${length}) outside the disk (${this.size} bytes)`);
    }
  }

  read(offset: number, buffer: Uint8Array): void {
    this.check(offset, buffer.length);
    // The image may have shrunk under us: what is no longer there reads as zeros.
    readFully(this.fd, buffer, offset);
  }

  write(offset: number, data: Uint8Array): void {
    if (this.readonly) throw new StorageError('readonly', 'the disk is read-only');
    this.check(offset, data.length);
    if (this.probed && offset === 0 && data.length >= 4 && Buffer.from(data.buffer, data.byteOffset, 4).readUInt32BE(0) === QCOW2_MAGIC) {
      throw new StorageError('readonly', 'refused: a qcow2 magic written to sector 0 of a raw disk whose format was probed');
    }
    writeFully(this.fd, data, offset);
  }

  readv(offset: number, buffers: readonly Uint8Array[]): void {
    const length = totalBytes(buffers);
    this.check(offset, length);
    const n = preadvFully(this.fd, buffers, offset);
    // As read(): past the end of a shrunk file reads as zeros.
    if (n < length) for (const b of after(buffers, n)) b.fill(0);
  }

  writev(offset: number, buffers: readonly Uint8Array[]): void {
    if (this.readonly) throw new StorageError('readonly', 'the disk is read-only');
    const length = totalBytes(buffers);
    this.check(offset, length);
    if (this.probed && offset === 0 && length >= 4) {
      // The magic may be spread over several buffers: look at the first four bytes of the whole write.
      const head = new Uint8Array(4);
      let at = 0;
      for (const b of buffers) {
        const take = Math.min(b.length, 4 - at);
        head.set(b.subarray(0, take), at);
        at += take;
        if (at === 4) break;
      }
      if (Buffer.from(head.buffer).readUInt32BE(0) === QCOW2_MAGIC) {
        throw new StorageError('readonly', 'refused: a qcow2 magic written to sector 0 of a raw disk whose format was probed');
      }
    }
    try {
      pwritevFully(this.fd, buffers, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== undefined) throw error;
      throw new StorageError('io', (error as Error).message);
    }
  }

  readIov(offset: number, iov: Uint32Array, count: number, length: number): boolean {
    this.check(offset, length);
    const n = preadvIov(this.fd, iov, count, offset);
    if (n < 0) throw new SysError('preadv', -n);
    return n === length;
  }

  writeIov(offset: number, iov: Uint32Array, count: number, length: number): boolean {
    if (this.readonly) throw new StorageError('readonly', 'the disk is read-only');
    this.check(offset, length);
    // The qcow2 magic check of a probed image (writev above) looks at the data: sector 0 goes that way.
    if (this.probed && offset === 0) return false;
    const n = pwritevIov(this.fd, iov, count, offset);
    if (n < 0) throw new SysError('pwritev', -n);
    return n === length;
  }

  flush(): void {
    fs.fdatasyncSync(this.fd);
  }

  discard(offset: number, length: number): void {
    this.writeZeroes(offset, length);
  }

  writeZeroes(offset: number, length: number): void {
    if (this.readonly) throw new StorageError('readonly', 'the disk is read-only');
    this.check(offset, length);
    if (punchHole(this.fd, offset, length)) return;
    // EOPNOTSUPP on file systems without hole punching (tmpfs has it, some FUSE ones not): write zeros.
    for (let done = 0; done < length;) {
      const n = Math.min(ZEROS.length, length - done);
      writeFully(this.fd, ZEROS.subarray(0, n), offset + done);
      done += n;
    }
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
