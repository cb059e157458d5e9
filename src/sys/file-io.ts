// Positioned file I/O that loops on short transfers. pread(2)/pwrite(2) may move fewer bytes than asked (a signal,
// a file system's own limits, a disk filling up), and a caller that ignores the count loses data silently: the
// disk models, the snapshot and backup writers and the kernel cache all read and write through these two.
import fs from 'node:fs';

/**
 * Read into all of `buffer` from `position`, looping on short reads. Returns the bytes read: fewer than
 * `buffer.length` only at the end of the file (the rest of `buffer` is left as it was).
 */
export function preadFully(fd: number, buffer: Uint8Array, position: number): number {
  let done = 0;
  while (done < buffer.length) {
    const n = fs.readSync(fd, buffer, done, buffer.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * Write all of `data` at `position`, looping on short writes. Errors (ENOSPC, EIO) throw as fs.writeSync's do; a
 * write that takes no bytes at all throws too, since looping on it would never end.
 */
export function pwriteFully(fd: number, data: Uint8Array, position: number): void {
  for (let done = 0; done < data.length;) {
    const n = fs.writeSync(fd, data, done, data.length - done, position + done);
    if (n === 0) throw new Error(`short write: the file took none of ${data.length - done} bytes at ${position + done}`);
    done += n;
  }
}

/**
 * iovecs per preadv(2)/pwritev(2): IOV_MAX on Linux (limits.h, UIO_MAXIOV). A longer list (a guest's indirect
 * descriptor table may name thousands of buffers) goes in several calls.
 */
export const IOV_MAX = 1024;

/** Bytes in a list of buffers. */
export function totalBytes(buffers: readonly Uint8Array[]): number {
  let n = 0;
  for (const b of buffers) n += b.length;
  return n;
}

/** The buffers after their first `skip` bytes (views, no copy). */
export function after(buffers: readonly Uint8Array[], skip: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const b of buffers) {
    if (skip >= b.length) { skip -= b.length; continue; }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

/**
 * Fill `buffers` in turn from `position` with preadv(2) (fs.readvSync): one system call for a request scattered over
 * many pages instead of one per page (a 1 MiB O_DIRECT read is 256 buffers of 4 KiB), looping on short reads as
 * preadFully does. Returns the bytes read: fewer than the buffers hold only at the end of the file (the rest of them
 * is left as it was).
 */
export function preadvFully(fd: number, buffers: readonly Uint8Array[], position: number): number {
  let done = 0;
  for (let from = 0; from < buffers.length; from += IOV_MAX) {
    const list = buffers.slice(from, from + IOV_MAX);
    const want = totalBytes(list);
    for (let got = 0; got < want;) {
      const n = fs.readvSync(fd, got === 0 ? list : after(list, got), position + done + got);
      if (n === 0) return done + got;
      got += n;
    }
    done += want;
  }
  return done;
}

/**
 * Write `buffers` in turn at `position` with pwritev(2) (fs.writevSync), looping on short writes; a write that takes
 * no bytes at all throws, as in pwriteFully.
 */
export function pwritevFully(fd: number, buffers: readonly Uint8Array[], position: number): void {
  for (let from = 0; from < buffers.length; from += IOV_MAX) {
    const list = buffers.slice(from, from + IOV_MAX);
    const want = totalBytes(list);
    for (let got = 0; got < want;) {
      const n = fs.writevSync(fd, got === 0 ? list : after(list, got), position + got);
      if (n === 0) throw new Error(`short write: the file took none of ${want - got} bytes at ${position + got}`);
      got += n;
    }
    position += want;
  }
}
