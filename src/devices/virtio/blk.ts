// virtio-blk (virtio 1.2 §5.2) on a block backend (src/storage: a raw image file, or a qcow2 image with its
// backing chain, detected by magic): read, write, flush (fdatasync before the request completes, so an
// acknowledged write survives the VMM being killed), get-ID (the serial the guest shows in /dev/disk/by-id),
// discard and write-zeroes (the backend deallocates: a punched hole, or zero clusters in qcow2), read-only disks.
//
// Synchronous I/O, on the thread that wrote the notify register. Measured on this machine (Node 20, ext4,
// page-cached 64 MiB image, a Linux boot running alongside): 4 KiB readSync 7 µs, writeSync 65 µs, a
// fs.promises read awaited in turn 71 µs (the libuv thread-pool round trip), write + fdatasync 2.1 ms,
// 1 MiB readSync 1.1 ms. An asynchronous completion would also wait for the soft engine's run loop to
// yield (up to 8 ms while a vCPU runs) before its interrupt could be raised. The vCPU that kicked the queue
// waits for the result anyway and the soft engine runs every vCPU on this one thread, so doing the work at
// once is both the lowest latency and the simplest ordering (a flush covers every write completed before
// it). The cost: a flush stalls the other vCPUs for its 2 ms. On the KVM engine (vCPUs on worker threads)
// the same code can move to an I/O thread behind ioeventfd.
import type { BlockBackend } from '../../storage/backend.ts';
import { openImage } from '../../storage/qcow2.ts';
import { FlatChain, chainViews, VirtqueueError, gather, splitBuffers, type DescriptorChain, type GuestBuffer } from './queue.ts';
import { IOV_MAX } from '../../sys/file-io.ts';
import { VirtioDevice, VIRTIO_ID_BLOCK, bit, readLe } from './device.ts';

// Feature bits (§5.2.3).
export const VIRTIO_BLK_F_SIZE_MAX = 1n, VIRTIO_BLK_F_SEG_MAX = 2n, VIRTIO_BLK_F_RO = 5n, VIRTIO_BLK_F_BLK_SIZE = 6n;
export const VIRTIO_BLK_F_FLUSH = 9n, VIRTIO_BLK_F_DISCARD = 13n, VIRTIO_BLK_F_WRITE_ZEROES = 14n;
// Request types and status values (§5.2.6).
export const VIRTIO_BLK_T_IN = 0, VIRTIO_BLK_T_OUT = 1, VIRTIO_BLK_T_FLUSH = 4, VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11, VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_S_OK = 0, VIRTIO_BLK_S_IOERR = 1, VIRTIO_BLK_S_UNSUPP = 2;
/** VIRTIO_BLK_ID_BYTES: the serial is up to 20 bytes, NUL-padded (§5.2.6). */
export const VIRTIO_BLK_ID_BYTES = 20;
const WRITE_ZEROES_FLAG_UNMAP = 1;

export const SECTOR = 512;
const HEADER_BYTES = 16;
const SEGMENT_BYTES = 16;
/** The queue size offered by default (RINGZERO_BLK_QUEUE_SIZE below). */
export const BLK_QUEUE_SIZE = 256;
/** Largest single data segment announced (size_max); Linux then never builds larger ones. */
export const BLK_SIZE_MAX = 1 << 20;
/** Data segments per request (seg_max): the queue size minus header and status (the default queue's). */
export const BLK_SEG_MAX = BLK_QUEUE_SIZE - 2;
/**
 * RINGZERO_BLK_QUEUE_SIZE=N (a power of two, 256 to 1024; default 256): the queue size offered, and with it seg_max
 * (N - 2, so a request fits the ring even without indirect descriptors, as QEMU's seg-max-adjust does). Why larger:
 * Linux caps a request at seg_max segments (blk_queue_max_segments), and an O_DIRECT read of 1 MiB into a buffer
 * faulted in as single pages (the guest's page allocator decides, README bench/io session 24) has 256 of them, one
 * bio (BIO_MAX_VECS 256) that seg_max 254 splits into two requests (__bio_split_to_limits). Measured (session 26,
 * bench/io --only ringzero,read, the read right after boot, in the scattered mode, two alternating pairs at load 19-25):
 * requests per MiB 2.00 -> 1.00, guest instructions per MiB 220.2/220.8 k -> 212.3/210.9 k; the two requests went with
 * one notify and one interrupt already, so only the guest's split and second request go.
 */
export function blkQueueSizeFromEnv(text: string | undefined = process.env.RINGZERO_BLK_QUEUE_SIZE): number {
  if (text === undefined || text.trim() === '') return BLK_QUEUE_SIZE;
  const n = Number(text);
  if (!(n === 256 || n === 512 || n === 1024)) throw new Error(`RINGZERO_BLK_QUEUE_SIZE: '${text}' is not 256, 512 or 1024`);
  return n;
}
export const BLK_MAX_DISCARD_SECTORS = (1 << 30) / SECTOR;
export const BLK_MAX_DISCARD_SEGMENTS = 32;
/** Configuration layout up to write_zeroes_may_unmap and its padding (§5.2.4). */
const CONFIG_BYTES = 60;

export interface BlockOptions {
  path: string;
  readonly?: boolean;
  /** Up to 20 bytes (ASCII); /dev/disk/by-id/virtio-<serial>. */
  serial?: string;
  /** The image format (no probing); default: probed by its magic. */
  format?: 'raw' | 'qcow2';
  /** The disk to serve; default: `path` opened as `format`, or as raw or qcow2 by its magic. */
  backend?: BlockBackend;
  /** The queue size offered (seg_max follows it); default RINGZERO_BLK_QUEUE_SIZE, else 256. */
  queueSize?: number;
}

export class VirtioBlock extends VirtioDevice {
  readonly deviceType = VIRTIO_ID_BLOCK;
  readonly classCode = 0x018000; // mass storage, other
  readonly queueMaxSizes: readonly number[];
  readonly configSize = CONFIG_BYTES;
  readonly deviceFeatures: bigint;
  readonly readonly: boolean;
  /** 512-byte sectors: the image size rounded down (a partial last sector is not addressable). */
  readonly capacity: number;
  /** Bytes moved by completed reads and writes (Machine.stats(), /metrics). */
  readonly counters = { readBytes: 0, writeBytes: 0 };
  private backend: BlockBackend | undefined;
  private readonly config = new Uint8Array(CONFIG_BYTES);
  private readonly serial: Uint8Array;
  /** Each request is walked into this (no object per buffer), and its data buffers listed in `iov` for the backend. */
  private readonly chain = new FlatChain(BLK_QUEUE_SIZE);
  private readonly iov = new Uint32Array(4 * IOV_MAX);
  private readonly handleFlat = (chain: FlatChain): number => this.requestFlat(chain);

  constructor(opts: BlockOptions) {
    super();
    this.readonly = opts.readonly ?? false;
    const queueSize = blkQueueSizeFromEnv(opts.queueSize === undefined ? undefined : String(opts.queueSize));
    this.queueMaxSizes = [queueSize];
    this.backend = opts.backend ?? openImage(opts.path, { readonly: this.readonly, format: opts.format });
    this.capacity = Math.floor(this.backend.size / SECTOR);
    this.serial = new Uint8Array(VIRTIO_BLK_ID_BYTES);
    this.serial.set(Buffer.from(opts.serial ?? '', 'latin1').subarray(0, VIRTIO_BLK_ID_BYTES));
    this.deviceFeatures = bit(VIRTIO_BLK_F_SIZE_MAX) | bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_FLUSH)
      | (this.readonly ? bit(VIRTIO_BLK_F_RO) : bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES));
    const c = new DataView(this.config.buffer);
    c.setUint32(0, this.capacity % 2 ** 32, true);
    c.setUint32(4, Math.floor(this.capacity / 2 ** 32), true);
    c.setUint32(8, BLK_SIZE_MAX, true);
    c.setUint32(12, queueSize - 2, true); // seg_max
    c.setUint32(20, SECTOR, true); // blk_size
    c.setUint32(36, BLK_MAX_DISCARD_SECTORS, true);
    c.setUint32(40, BLK_MAX_DISCARD_SEGMENTS, true);
    c.setUint32(44, 1, true); // discard_sector_alignment: any sector
    c.setUint32(48, BLK_MAX_DISCARD_SECTORS, true); // max_write_zeroes_sectors
    c.setUint32(52, BLK_MAX_DISCARD_SEGMENTS, true);
    c.setUint8(56, 1); // write_zeroes_may_unmap
  }

  readConfig(offset: number, size: number): number {
    return readLe(this.config, offset, size);
  }

  onNotify(index: number): void {
    this.drainFlat(index, this.chain, this.handleFlat);
  }

  close(): void {
    this.backend?.close();
    this.backend = undefined;
  }

  /**
   * The backend requests go through now (a live migration copying the disk wraps it to note the guest's writes:
   * src/migration/storage.ts; the destination writes the copy through it).
   */
  get image(): BlockBackend {
    if (!this.backend) throw new Error('the disk is closed');
    return this.backend;
  }

  /**
   * Serve `backend` from the next request on (an external disk snapshot switches the disk to a fresh qcow2 overlay
   * of the image it had: src/vmm/control.ts disk-snapshot). The caller pauses the VM first: requests are served
   * synchronously, so none is half done then. Same size and writability, so nothing the guest negotiated changes.
   * Returns the previous backend, not closed (the caller closes it once every switch of the batch succeeded).
   */
  replaceBackend(backend: BlockBackend): BlockBackend {
    if (!this.backend) throw new Error('the disk is closed');
    if (Math.floor(backend.size / SECTOR) !== this.capacity) throw new Error(`the new image has ${backend.size} bytes, the disk ${this.capacity * SECTOR}`);
    if (backend.readonly !== this.readonly) throw new Error(`the new image is ${backend.readonly ? 'read-only' : 'writable'}, the disk is not`);
    const previous = this.backend;
    this.backend = backend;
    return previous;
  }

  /**
   * Serve one request walked into flat arrays. The common read and write (the header alone in the first buffer, the
   * status byte alone in the last, every data buffer between them, at most IOV_MAX of them) go to the backend's
   * readIov/writeIov straight from the walk's host addresses: a 1 MiB read scattered over 256 pages then costs one
   * system call and no object per page (bench/blk-notify). Everything else, and a backend without those, goes through
   * request() on views of the same buffers.
   */
  private requestFlat(c: FlatChain): number {
    const n = c.count;
    const backend = this.backend;
    if (n >= 3 && n - 2 <= IOV_MAX && c.len[0] === HEADER_BYTES && c.len[n - 1] === 1 && backend?.readIov && backend.writeIov) {
      const mem = this.transport.mem;
      const h = mem.regions[c.region[0]];
      const at = c.gpa[0] - h.guestBase;
      const type = h.view.getUint32(at, true);
      const sector = h.view.getUint32(at + 8, true) + h.view.getUint32(at + 12, true) * 2 ** 32;
      const read = type === VIRTIO_BLK_T_IN && c.readable === 1;
      if (read || (type === VIRTIO_BLK_T_OUT && c.readable === n - 1 && !this.readonly)) {
        const bytes = read ? c.writableBytes - 1 : c.readableBytes - HEADER_BYTES;
        let status = VIRTIO_BLK_S_IOERR;
        let done = false;
        if (this.inRange(sector, bytes)) {
          const iov = this.iov, host = c.host, len = c.len;
          for (let i = 1, k = 0; i < n - 1; i++, k += 4) {
            const a = host[i];
            iov[k] = a % 4294967296;
            iov[k + 1] = Math.floor(a / 4294967296);
            iov[k + 2] = len[i];
            iov[k + 3] = 0;
          }
          try {
            done = read ? backend.readIov(sector * SECTOR, iov, n - 2, bytes) : backend.writeIov(sector * SECTOR, iov, n - 2, bytes);
            status = VIRTIO_BLK_S_OK;
          } catch {
            // as transfer(): the guest sees a failed request
            done = true;
          }
        } else done = true;
        if (done) {
          if (status === VIRTIO_BLK_S_OK) {
            if (read) this.counters.readBytes += bytes; else this.counters.writeBytes += bytes;
          }
          const s = mem.regions[c.region[n - 1]];
          s.bytes[c.gpa[n - 1] - s.guestBase] = status;
          return read && status === VIRTIO_BLK_S_OK ? bytes + 1 : 1;
        }
        // (not all of it moved, or it needs a look at its data: the whole request again, below)
      }
    }
    return this.request(chainViews(this.transport.mem, c));
  }

  /** Serve one request (§5.2.6); returns the bytes written into the chain. */
  private request(chain: DescriptorChain): number {
    // The header must be device-readable and the status byte device-writable: a chain without both is not
    // a request at all, and §5.2.6.1 gives the device no way to answer it but a reset.
    if (chain.readableBytes < HEADER_BYTES) throw new VirtqueueError('virtio-blk request without a readable 16-byte header');
    if (chain.writableBytes < 1) throw new VirtqueueError('virtio-blk request without a writable status byte');
    const header = new Uint8Array(HEADER_BYTES);
    gather(chain.readable, 0, header);
    const h = new DataView(header.buffer);
    const type = h.getUint32(0, true);
    const sector = h.getUint32(8, true) + h.getUint32(12, true) * 2 ** 32;
    const [, readData] = splitBuffers(chain.readable, HEADER_BYTES);
    const readBytes = chain.readableBytes - HEADER_BYTES;
    const [writeData, statusBuffers] = splitBuffers(chain.writable, chain.writableBytes - 1);
    const writeBytes = chain.writableBytes - 1;
    const statusByte = statusBuffers[statusBuffers.length - 1];

    let status: number;
    let written = 0;
    switch (type) {
      case VIRTIO_BLK_T_IN:
        if (readBytes !== 0) throw new VirtqueueError('virtio-blk read with device-readable data buffers');
        status = this.transfer(sector, writeData, writeBytes, false);
        if (status === VIRTIO_BLK_S_OK) written = writeBytes;
        break;
      case VIRTIO_BLK_T_OUT:
        if (writeBytes !== 0) throw new VirtqueueError('virtio-blk write with device-writable data buffers');
        status = this.readonly ? VIRTIO_BLK_S_IOERR : this.transfer(sector, readData, readBytes, true);
        break;
      case VIRTIO_BLK_T_FLUSH:
        status = this.flush();
        break;
      case VIRTIO_BLK_T_GET_ID: {
        const n = Math.min(VIRTIO_BLK_ID_BYTES, writeBytes);
        let copied = 0;
        for (const b of writeData) {
          const take = Math.min(b.length, n - copied);
          b.set(this.serial.subarray(copied, copied + take));
          copied += take;
          if (copied === n) break;
        }
        written = n;
        status = VIRTIO_BLK_S_OK;
        break;
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES:
        status = this.readonly ? VIRTIO_BLK_S_IOERR : this.zeroRanges(type, readData, readBytes);
        break;
      default:
        status = VIRTIO_BLK_S_UNSUPP;
    }
    statusByte[statusByte.length - 1] = status;
    return written + 1;
  }

  /** Whether [sector, sector + bytes/512) is a whole number of sectors inside the disk. */
  private inRange(sector: number, bytes: number): boolean {
    return bytes % SECTOR === 0 && Number.isSafeInteger(sector) && sector + bytes / SECTOR <= this.capacity;
  }

  private transfer(sector: number, buffers: GuestBuffer[], bytes: number, write: boolean): number {
    if (!this.inRange(sector, bytes)) return VIRTIO_BLK_S_IOERR;
    let position = sector * SECTOR;
    const backend = this.backend!;
    try {
      // One vectored call for the whole request where the backend has it: Linux scatters a request over its pages, so
      // a 1 MiB O_DIRECT read is 256 buffers of 4 KiB, and a system call each cost ~12 µs (bench/io's read: 3.7 ms
      // of the VMM's CPU per MiB against ~0.2 ms for one preadv of the same 256 buffers).
      if (write && backend.writev) backend.writev(position, buffers);
      else if (!write && backend.readv) backend.readv(position, buffers);
      else {
        for (const b of buffers) {
          if (write) backend.write(position, b); else backend.read(position, b);
          position += b.length;
        }
      }
    } catch {
      // EIO, ENOSPC, a corrupt qcow2 table, a closed disk...: the guest sees a failed request, the VMM goes on
      return VIRTIO_BLK_S_IOERR;
    }
    if (write) this.counters.writeBytes += bytes; else this.counters.readBytes += bytes;
    return VIRTIO_BLK_S_OK;
  }

  private flush(): number {
    try {
      this.backend!.flush();
      return VIRTIO_BLK_S_OK;
    } catch {
      return VIRTIO_BLK_S_IOERR;
    }
  }

  /** DISCARD and WRITE_ZEROES: segments of {sector u64, num_sectors u32, flags u32} (§5.2.6). */
  private zeroRanges(type: number, buffers: GuestBuffer[], bytes: number): number {
    if (bytes === 0 || bytes % SEGMENT_BYTES !== 0) return VIRTIO_BLK_S_IOERR;
    const count = bytes / SEGMENT_BYTES;
    if (count > BLK_MAX_DISCARD_SEGMENTS) return VIRTIO_BLK_S_IOERR;
    const segments = new Uint8Array(bytes);
    gather(buffers, 0, segments);
    const v = new DataView(segments.buffer);
    const ranges: [number, number][] = [];
    for (let i = 0; i < count; i++) {
      const at = i * SEGMENT_BYTES;
      const sector = v.getUint32(at, true) + v.getUint32(at + 4, true) * 2 ** 32;
      const sectors = v.getUint32(at + 8, true);
      const flags = v.getUint32(at + 12, true);
      // §5.2.6.2: unmap is meaningless for discard, and reserved flag bits must be zero: UNSUPP.
      if (flags & ~WRITE_ZEROES_FLAG_UNMAP || (type === VIRTIO_BLK_T_DISCARD && flags !== 0)) return VIRTIO_BLK_S_UNSUPP;
      if (sectors > BLK_MAX_DISCARD_SECTORS || !this.inRange(sector, sectors * SECTOR)) return VIRTIO_BLK_S_IOERR;
      ranges.push([sector * SECTOR, sectors * SECTOR]);
    }
    try {
      for (const [offset, length] of ranges) {
        if (type === VIRTIO_BLK_T_DISCARD) this.backend!.discard(offset, length);
        else this.backend!.writeZeroes(offset, length);
      }
    } catch {
      return VIRTIO_BLK_S_IOERR;
    }
    return VIRTIO_BLK_S_OK;
  }
}
