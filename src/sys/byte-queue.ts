// A FIFO of socket bytes kept as received chunks.
/**
 * The bytes a socket has delivered and nobody has consumed yet, kept as the chunks they came in (no quadratic
 * concatenation): the migration frame readers (src/migration/protocol.ts FrameReader, the daemons' link in
 * src/manager/migration.ts) and virtio-vsock's host-to-guest data use it.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The first `n` bytes (n <= length), left in the queue. */
  peek(n: number): Buffer {
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0].subarray(0, n);
  }

  /**
   * Remove and return the first `n` bytes (n <= length). `scratch` (at least n bytes), when given, receives bytes that
   * span chunks instead of a new buffer: the result is then only good until the next call that uses it.
   */
  take(n: number, scratch?: Buffer): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = scratch ? scratch.subarray(0, n) : Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0];
        const k = Math.min(c.length, n - filled);
        c.copy(out, filled, 0, k);
        filled += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.length -= n;
    return out;
  }
}
