// One zeroed buffer and the all-zero test that the VMM's bulk paths share: the snapshot writer and its digest, the
// migration's page and disk-grain senders, the block cache's sweep, and raw disks' write-zeroes. Comparing against
// zeros with Buffer.compare is a memcmp, many times faster than a JavaScript loop over the bytes.

/** 1 MiB of zeros, never written: a source for writing zeros and the reference of isAllZero. */
export const ZEROS: Uint8Array = new Uint8Array(1 << 20);

/** Whether every byte of `bytes` is 0. */
export function isAllZero(bytes: Uint8Array): boolean {
  for (let at = 0; at < bytes.length; at += ZEROS.length) {
    const piece = bytes.subarray(at, Math.min(bytes.length, at + ZEROS.length));
    if (Buffer.compare(piece, ZEROS.subarray(0, piece.length)) !== 0) return false;
  }
  return true;
}
