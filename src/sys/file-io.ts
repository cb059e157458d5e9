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
