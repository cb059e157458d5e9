// The live-migration stream between two VMM processes over TCP (one connection, source -> destination, with the
// destination's answers coming back on the same socket).
//
// Frames: a 9-byte header { type u8, a u32 LE, b u32 LE } and a payload whose length the header fixes:
//   JSON  (1): a = payload bytes; one JSON message (below)
//   PAGES (2): a = first page, b = page count; payload = count * 4096 bytes of the memory image (low RAM, then high)
//   ZERO  (3): a = first page, b = page count; no payload: those pages are now zero
//   DISK  (4): a = disk index, b = payload bytes; payload = offset u64 LE, then the disk's bytes from there (a whole
//              number of 512-byte sectors, at most MAX_DISK_DATA) (version 3: copy-storage)
//   DISK_ZERO (5): a = disk index, b = 16; payload = offset u64 LE, length u64 LE: that range now reads as zeros
// JSON messages, source to destination:
//   {kind:"hello", format, version, snapshotVersion, config, memorySize[, disks]}   before any page; `disks` (version
//                                           3, copy-storage): [{index, size, format, readonly}] for every disk: the
//                                           destination creates its own copy of each and fills it from DISK frames
//   {kind:"sync"}                           before the stop-and-copy: answer when everything before it is applied
//                                           (and the disk copies flushed)
//   {kind:"state", state}                   the snapshot format's state file ({format, version, crc32, body}, body
//                                           without `memory`), sent while the VM is paused, after the last pages
//   {kind:"go"}                             after "loaded": run the VM there; from this message on the source never
//                                           resumes the VM by itself (version 2)
// destination to source:
//   {kind:"ready"}                          after hello: the destination machine is built, pages may come
//   {kind:"synced"}                         the answer to sync
//   {kind:"loaded"}                         after state: restored and ready to run, but not running (version 2);
//                                           with copy-storage, only once every disk copy is durable (fdatasync)
//   {kind:"resumed"}                        after go: the destination VM runs; the source may end
//   {kind:"error", message}                 at any point before go: the destination gives up (the source resumes)
// The switch-over is two-phase so the guest never runs on both sides: a link lost before "loaded" reaches the source
// leaves the source as the VM of record (it resumes; the destination, never told "go", discards its copy); once the
// source has sent "go" it cannot know whether the message arrived, so a link lost then leaves the source paused in
// 'switch-over-unknown' until someone who can ask the destination resolves it (source.ts resolveSwitchover).
// The state crosses with the snapshot format's CRC (src/vmm/snapshot.ts), so one definition of "complete and intact"
// covers snapshots and migration; TCP's own checksum covers the pages.
import type net from 'node:net';
import { ByteQueue } from '../sys/byte-queue.ts';

export const MIGRATION_FORMAT = 'ringzero-migration';
/**
 * Bump on any change of the frames or messages (2: the two-phase switch-over, "loaded" and "go"; 3: copy-storage,
 * DISK and DISK_ZERO frames and hello's `disks`). A peer of another version is refused at hello, with both versions
 * named.
 */
export const MIGRATION_VERSION = 3;
export const PAGE = 4096;
export const T_JSON = 1, T_PAGES = 2, T_ZERO = 3, T_DISK = 4, T_DISK_ZERO = 5;
/** Largest run of disk bytes in one DISK frame. */
export const MAX_DISK_DATA = 1 << 20;
const HEADER = 9;
/** Largest JSON message accepted (the state of a VM is well under this). */
const MAX_JSON = 64 * 1024 * 1024;
/** Largest PAGES frame accepted. */
export const MAX_FRAME_PAGES = 256;

export type Frame =
  | { type: typeof T_JSON; message: Record<string, unknown> }
  | { type: typeof T_PAGES; first: number; count: number; data: Buffer }
  | { type: typeof T_ZERO; first: number; count: number }
  | { type: typeof T_DISK; disk: number; offset: number; data: Buffer }
  | { type: typeof T_DISK_ZERO; disk: number; offset: number; length: number };

/** A DISK frame: `data` (copied) at byte `offset` of disk `disk`. */
export function diskFrame(disk: number, offset: number, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER + 8 + data.length);
  out.writeUInt8(T_DISK, 0);
  out.writeUInt32LE(disk, 1);
  out.writeUInt32LE(8 + data.length, 5);
  out.writeBigUInt64LE(BigInt(offset), HEADER);
  out.set(data, HEADER + 8);
  return out;
}

/** A DISK_ZERO frame: [offset, offset+length) of disk `disk` reads as zeros. */
export function diskZeroFrame(disk: number, offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER + 16);
  out.writeUInt8(T_DISK_ZERO, 0);
  out.writeUInt32LE(disk, 1);
  out.writeUInt32LE(16, 5);
  out.writeBigUInt64LE(BigInt(offset), HEADER);
  out.writeBigUInt64LE(BigInt(length), HEADER + 8);
  return out;
}

export function jsonFrame(message: Record<string, unknown>): Buffer {
  const body = Buffer.from(JSON.stringify(message));
  const h = Buffer.alloc(HEADER);
  h.writeUInt8(T_JSON, 0);
  h.writeUInt32LE(body.length, 1);
  return Buffer.concat([h, body]);
}

/** A PAGES frame (copying `data`: guest RAM may change after this returns) or, with no data, a ZERO frame. */
export function pagesFrame(first: number, count: number, data?: Uint8Array, into?: Buffer): Buffer {
  const len = HEADER + (data ? data.length : 0);
  const out = into ? into.subarray(0, len) : Buffer.allocUnsafe(len);
  out.writeUInt8(data ? T_PAGES : T_ZERO, 0);
  out.writeUInt32LE(first, 1);
  out.writeUInt32LE(count, 5);
  if (data) out.set(data, HEADER);
  return out;
}

/**
 * Reusable buffers for large PAGES frames (up to MAX_FRAME_PAGES pages): one is taken per frame and given back once the
 * socket has handed the frame to the kernel (its write callback; until then the stream holds the bytes). A fresh
 * Buffer.allocUnsafe of 1 MiB per frame is a new mapping each time, faulted in page by page and unmapped when
 * collected: measured here ~5.5 ms of CPU per MiB against ~0.15 ms for a copy into a reused buffer, and in a VMM's
 * CPU profile of a migration's pre-copy (default guest, 256 MiB, ~70 MiB sent) 2.5 s of its 8.1 s main thread was
 * pagesFrame, on the thread that runs the guest.
 */
export class FrameBuffers {
  private readonly free: Buffer[] = [];
  /** How many buffers are kept for reuse (the socket rarely holds more than two frames: writeFrame waits for drain). */
  private static readonly KEEP = 8;

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(HEADER + MAX_FRAME_PAGES * PAGE);
  }

  give(buf: Buffer): void {
    if (this.free.length < FrameBuffers.KEEP) this.free.push(buf);
  }
}

export class ProtocolError extends Error {}

/**
 * Test-only fault injection: where to drop the link (tests set it per call, or for a whole VMM process through
 * RINGZERO_TEST_MIGRATION_FAULT). 'source:after-state': the source cuts the link right after sending the state;
 * 'source:before-go': after the destination's "loaded", instead of sending "go"; 'destination:after-go': the
 * destination takes "go" and runs the VM but cuts the link instead of answering "resumed".
 */
export type FaultPoint = 'source:after-state' | 'source:before-go' | 'destination:after-go';
const FAULTS: readonly string[] = ['source:after-state', 'source:before-go', 'destination:after-go'];

export function faultPoint(given: FaultPoint | undefined): FaultPoint | undefined {
  if (given !== undefined) return given;
  const env = process.env.RINGZERO_TEST_MIGRATION_FAULT;
  return env !== undefined && FAULTS.includes(env) ? env as FaultPoint : undefined;
}

/** Incremental frame parser over a socket's chunks. */
export class FrameReader {
  private readonly bytes = new ByteQueue();
  private header: { type: number; a: number; b: number } | undefined;
  /**
   * With `reusePages` (the destination, which copies each PAGES frame into guest RAM at once), a PAGES frame whose
   * bytes span socket chunks is gathered into one reused buffer rather than a new one per frame (see FrameBuffers for
   * what a fresh 1 MiB buffer costs): its data is then only good until the next call of next().
   */
  private readonly scratch: Buffer | undefined;

  constructor(opts: { reusePages?: boolean } = {}) {
    this.scratch = opts.reusePages ? Buffer.allocUnsafe(MAX_FRAME_PAGES * PAGE) : undefined;
  }

  /** Take a chunk of the stream; its frames come from next(). */
  add(chunk: Buffer): void {
    this.bytes.push(chunk);
  }

  /** Every whole frame the stream holds after `chunk`. */
  push(chunk: Buffer): Frame[] {
    this.add(chunk);
    const out: Frame[] = [];
    for (let f = this.next(); f; f = this.next()) out.push(f);
    return out;
  }

  /** The next whole frame, or undefined until more bytes come. */
  next(): Frame | undefined {
    if (!this.header) {
      if (this.bytes.length < HEADER) return undefined;
      const h = this.bytes.take(HEADER);
      this.header = { type: h.readUInt8(0), a: h.readUInt32LE(1), b: h.readUInt32LE(5) };
      if (this.header.type === T_JSON && this.header.a > MAX_JSON) throw new ProtocolError(`JSON message of ${this.header.a} bytes`);
      if (this.header.type === T_PAGES && (this.header.b === 0 || this.header.b > MAX_FRAME_PAGES)) throw new ProtocolError(`PAGES frame of ${this.header.b} pages`);
      if (this.header.type === T_DISK && (this.header.b <= 8 || this.header.b > 8 + MAX_DISK_DATA)) throw new ProtocolError(`DISK frame of ${this.header.b} bytes`);
      if (this.header.type === T_DISK_ZERO && this.header.b !== 16) throw new ProtocolError(`DISK_ZERO frame of ${this.header.b} bytes`);
      if (this.header.type < T_JSON || this.header.type > T_DISK_ZERO) throw new ProtocolError(`unknown frame type ${this.header.type}`);
    }
    const h = this.header;
    const need = h.type === T_JSON ? h.a : h.type === T_PAGES ? h.b * PAGE : h.type === T_DISK || h.type === T_DISK_ZERO ? h.b : 0;
    if (this.bytes.length < need) return undefined;
    this.header = undefined;
    if (h.type === T_JSON) {
      let message: unknown;
      try {
        message = JSON.parse(this.bytes.take(need).toString('utf8'));
      } catch {
        throw new ProtocolError('a JSON message is not valid JSON');
      }
      if (typeof message !== 'object' || message === null) throw new ProtocolError('a JSON message is not an object');
      return { type: T_JSON, message: message as Record<string, unknown> };
    } else if (h.type === T_PAGES) {
      return { type: T_PAGES, first: h.a, count: h.b, data: this.bytes.take(need, this.scratch) };
    } else if (h.type === T_DISK || h.type === T_DISK_ZERO) {
      const body = this.bytes.take(need);
      const offset = body.readBigUInt64LE(0);
      if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(`a disk offset of ${offset}`);
      if (h.type === T_DISK) return { type: T_DISK, disk: h.a, offset: Number(offset), data: body.subarray(8) };
      const length = body.readBigUInt64LE(8);
      if (length > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(`a disk range of ${length} bytes`);
      return { type: T_DISK_ZERO, disk: h.a, offset: Number(offset), length: Number(length) };
    } else {
      return { type: T_ZERO, first: h.a, count: h.b };
    }
  }
}

/** Parse "HOST:PORT" (a bracketed IPv6 host allowed); throws a one-line message on anything else. */
export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) throw new Error(`${what} '${text}' is not HOST:PORT (a port from 1 to 65535)`);
  return { host: m[1] ?? m[2], port };
}

/** Write `buf` and resolve once the socket takes more (backpressure); rejects if the socket is gone. */
export function writeFrame(socket: net.Socket, buf: Buffer, written?: () => void): Promise<void> {
  if (socket.destroyed) return Promise.reject(new Error('the connection is closed'));
  if (socket.write(buf, written)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (error?: Error) => { socket.off('drain', onDrain); socket.off('close', onClose); if (error) reject(error); else resolve(); };
    const onDrain = () => done();
    const onClose = () => done(new Error('the connection closed'));
    socket.on('drain', onDrain);
    socket.on('close', onClose);
  });
}
