// virtio-balloon (virtio 1.2 §5.5): the host sets a target size (num_pages, in 4 KiB pages) and the guest
// inflates (gives pages to the host, inflateq) or deflates (takes them back, deflateq) toward it, reporting
// its progress in `actual`. Pages the guest gives up are released to the host at once: their range of the
// guest-RAM memfd is punched out (fallocate PUNCH_HOLE), which frees the memory and makes every mapping
// (the soft engine's, KVM's) read zeros there, the same a freshly touched page would.
//
// Offered: VIRTIO_BALLOON_F_STATS_VQ (the guest's memory statistics, §5.5.6.3). Not offered:
// VIRTIO_BALLOON_F_MUST_TELL_HOST (nothing needs to happen before the guest reuses a deflated page: the
// punched hole simply fills again on first touch), VIRTIO_BALLOON_F_DEFLATE_ON_OOM (so the guest keeps the
// host's target rather than deflating under memory pressure, and Linux takes the ballooned pages out of
// MemTotal), free page hinting, page poisoning and free page reporting.
import { libc, lastErrno } from '../../sys/libc.ts';
import { VirtqueueError, gather, type DescriptorChain } from './queue.ts';
import { VirtioDevice, bit, readLe } from './device.ts';

export const VIRTIO_ID_BALLOON = 5;
// Feature bits (§5.5.3).
export const VIRTIO_BALLOON_F_MUST_TELL_HOST = 0n, VIRTIO_BALLOON_F_STATS_VQ = 1n, VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2n;
export const INFLATE_QUEUE = 0, DEFLATE_QUEUE = 1, STATS_QUEUE = 2;
/** The balloon's unit, whatever the guest's page size (§5.5.6). */
export const BALLOON_PAGE = 4096;
export const BALLOON_QUEUE_SIZE = 128;
/** Configuration: num_pages u32 (device), actual u32 (driver) (§5.5.4). */
const CONFIG_BYTES = 8;
const ACTUAL_OFFSET = 4;
/** Statistics tags (§5.5.6.3), by name. */
export const BALLOON_STAT_NAMES = [
  'swap-in', 'swap-out', 'major-faults', 'minor-faults', 'free-memory', 'total-memory', 'available-memory',
  'disk-caches', 'hugetlb-allocations', 'hugetlb-failures',
] as const;
/** struct virtio_balloon_stat: tag u16, val u64, packed. */
const STAT_BYTES = 10;
const MAX_STATS = 64;

const FALLOC_FL_KEEP_SIZE = 0x01, FALLOC_FL_PUNCH_HOLE = 0x02;
const fallocate = libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)');

export interface BalloonStats {
  /** Target in 4 KiB pages, as last set by the host. */
  targetPages: number;
  /** The guest's own count of pages in the balloon (`actual`). */
  actualPages: number;
  /** Pages this device released to the host (inflates minus deflates it saw, RAM pages only). */
  inflatedPages: number;
  /** The guest's statistics, by name (bytes for the memory sizes, counts otherwise), from its last report. */
  guest: Partial<Record<(typeof BALLOON_STAT_NAMES)[number] | `tag-${number}`, number>>;
  /** When the guest last reported statistics (Date.now()), or undefined if never. */
  reportedAt?: number;
}

export class VirtioBalloon extends VirtioDevice {
  readonly deviceType = VIRTIO_ID_BALLOON;
  readonly classCode = 0x05_00_00; // memory controller (as QEMU announces it)
  readonly queueMaxSizes = [BALLOON_QUEUE_SIZE, BALLOON_QUEUE_SIZE, BALLOON_QUEUE_SIZE];
  readonly configSize = CONFIG_BYTES;
  readonly deviceFeatures = bit(VIRTIO_BALLOON_F_STATS_VQ);
  private readonly config = new Uint8Array(CONFIG_BYTES);
  private inflated = 0;
  private guestStats: BalloonStats['guest'] = {};
  private reportedAt: number | undefined;
  /** The stats buffer the driver left with the device: returning it asks for a fresh report. */
  private statsHead: number | undefined;
  private statsWaiters: (() => void)[] = [];
  /** Punch failures are reported once, not per page. */
  private punchFailed = false;

  constructor(private readonly log: (line: string) => void = (line) => process.stderr.write(`ringzero: ${line}\n`)) {
    super();
  }

  /** Guest RAM, through the transport the device is bound to. */
  private get mem() {
    return this.transport.mem;
  }

  readConfig(offset: number, size: number): number {
    return readLe(this.config, offset, size);
  }

  writeConfig(offset: number, size: number, value: number): void {
    // Only `actual` is the driver's to write (§5.5.4); num_pages is the device's.
    if (offset === ACTUAL_OFFSET && size === 4) new DataView(this.config.buffer).setUint32(ACTUAL_OFFSET, value >>> 0, true);
  }

  /** Ask the guest to hold `pages` 4 KiB pages in the balloon (0 gives everything back). */
  setTarget(pages: number): void {
    if (!Number.isInteger(pages) || pages < 0) throw new RangeError(`balloon target ${pages} is not a page count`);
    const max = this.transport ? Math.floor(this.mem.size / BALLOON_PAGE) : 0xffffffff;
    new DataView(this.config.buffer).setUint32(0, Math.min(pages, max), true);
    this.transport?.configChanged();
  }

  stats(): BalloonStats {
    const c = new DataView(this.config.buffer);
    return {
      targetPages: c.getUint32(0, true), actualPages: c.getUint32(ACTUAL_OFFSET, true), inflatedPages: this.inflated,
      guest: { ...this.guestStats }, ...(this.reportedAt !== undefined ? { reportedAt: this.reportedAt } : {}),
    };
  }

  /**
   * Ask the guest for fresh statistics (by returning the buffer it left, §5.5.6.3) and wait for them, at most
   * `timeoutMs`; resolves with whatever is known then.
   */
  async refreshStats(timeoutMs = 2000): Promise<BalloonStats> {
    const q = this.transport?.queue(STATS_QUEUE);
    if (!q || this.statsHead === undefined || !(this.transport.negotiated & bit(VIRTIO_BALLOON_F_STATS_VQ))) return this.stats();
    const head = this.statsHead;
    this.statsHead = undefined;
    const fresh = new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.statsWaiters = this.statsWaiters.filter((w) => w !== done); resolve(); }, timeoutMs);
      const done = () => { clearTimeout(timer); resolve(); };
      this.statsWaiters.push(done);
    });
    q.push(head, 0);
    this.transport.usedBuffers(STATS_QUEUE);
    await fresh;
    return this.stats();
  }

  onNotify(index: number): void {
    if (index === INFLATE_QUEUE) this.drain(index, (chain) => this.pages(chain, true));
    else if (index === DEFLATE_QUEUE) this.drain(index, (chain) => this.pages(chain, false));
    else if (index === STATS_QUEUE) this.takeStats();
  }

  /**
   * Snapshot: num_pages (the host's target), actual (the driver's), the pages released, and whether the driver left
   * a statistics buffer with the device (its head index: the buffer itself is in guest RAM).
   */
  override saveDeviceState(): { config: number[]; inflated: number; statsHead?: number; guestStats: BalloonStats['guest'] } {
    return { config: Array.from(this.config), inflated: this.inflated, guestStats: { ...this.guestStats }, ...(this.statsHead !== undefined ? { statsHead: this.statsHead } : {}) };
  }

  override restoreDeviceState(state: unknown): void {
    const s = state as { config?: unknown; inflated?: unknown; statsHead?: unknown; guestStats?: unknown } | undefined;
    if (!s || !Array.isArray(s.config) || s.config.length !== CONFIG_BYTES || !s.config.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) {
      throw new Error('virtio-balloon: bad configuration in the snapshot');
    }
    this.config.set(s.config as number[]);
    this.inflated = Number.isSafeInteger(s.inflated) && (s.inflated as number) >= 0 ? s.inflated as number : 0;
    this.statsHead = Number.isInteger(s.statsHead) && (s.statsHead as number) >= 0 && (s.statsHead as number) < BALLOON_QUEUE_SIZE ? s.statsHead as number : undefined;
    this.guestStats = typeof s.guestStats === 'object' && s.guestStats !== null ? { ...(s.guestStats as BalloonStats['guest']) } : {};
  }

  onReset(): void {
    // A new driver starts with an empty balloon (§5.5.6.1); pages punched out stay released until touched.
    this.inflated = 0;
    this.statsHead = undefined;
    new DataView(this.config.buffer).setUint32(ACTUAL_OFFSET, 0, true);
    for (const w of this.statsWaiters.splice(0)) w();
  }

  close(): void {
    for (const w of this.statsWaiters.splice(0)) w();
  }

  /** An inflate or deflate request: an array of 32-bit page frame numbers (§5.5.6). */
  private pages(chain: DescriptorChain, inflate: boolean): number {
    if (chain.writable.length > 0) throw new VirtqueueError('virtio-balloon page list in a device-writable buffer');
    // Linux sends at most 256 PFNs per request; a longer list is read in pieces, never allocated whole.
    const piece = new Uint8Array(4 * 256);
    const view = new DataView(piece.buffer);
    let runStart = -1, runLength = 0;
    const flush = () => {
      if (runLength > 0 && inflate) this.release(runStart, runLength);
      runLength = 0;
    };
    const count = Math.floor(chain.readableBytes / 4);
    for (let done = 0; done < count;) {
      const n = Math.min(256, count - done);
      gather(chain.readable, 4 * done, piece.subarray(0, 4 * n));
      for (let i = 0; i < n; i++) {
        const gpa = view.getUint32(4 * i, true) * BALLOON_PAGE;
        // A frame outside RAM (the MMIO hole, past the end) is ignored: there is nothing there to give back.
        if (!this.mem.isRam(gpa, BALLOON_PAGE)) continue;
        if (inflate) this.inflated++;
        else if (this.inflated > 0) this.inflated--;
        if (runLength > 0 && gpa === runStart + runLength * BALLOON_PAGE && this.mem.isRam(runStart, (runLength + 1) * BALLOON_PAGE)) {
          runLength++;
        } else {
          flush();
          runStart = gpa;
          runLength = 1;
        }
      }
      done += n;
    }
    flush();
    return 0;
  }

  /** Give [gpa, gpa + pages * 4 KiB) back to the host: punch it out of the memfd. */
  private release(gpa: number, pages: number): void {
    const r = this.mem.regionFor(gpa, pages * BALLOON_PAGE);
    if (!r) return;
    const offset = r.fileOffset + (gpa - r.guestBase);
    if (fallocate(this.mem.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, pages * BALLOON_PAGE) !== 0 && !this.punchFailed) {
      this.punchFailed = true;
      this.log(`virtio-balloon: cannot release guest pages to the host (fallocate errno ${lastErrno()}); the balloon only limits the guest`);
    }
  }

  /** The driver made its statistics buffer available: read it and keep the buffer for the next request. */
  private takeStats(): void {
    const q = this.transport.queue(STATS_QUEUE);
    if (!q) return;
    let chain: DescriptorChain | undefined;
    while ((chain = q.pop()) !== undefined) {
      if (chain.writable.length > 0) throw new VirtqueueError('virtio-balloon statistics in a device-writable buffer');
      // Only one buffer is ever outstanding; a second one means the first is returned unread.
      if (this.statsHead !== undefined) {
        q.push(this.statsHead, 0);
        this.transport.usedBuffers(STATS_QUEUE);
      }
      this.statsHead = chain.head;
      const count = Math.min(MAX_STATS, Math.floor(chain.readableBytes / STAT_BYTES));
      const raw = new Uint8Array(count * STAT_BYTES);
      gather(chain.readable, 0, raw);
      const v = new DataView(raw.buffer);
      const stats: BalloonStats['guest'] = {};
      for (let i = 0; i < count; i++) {
        const tag = v.getUint16(i * STAT_BYTES, true);
        const value = Number(v.getBigUint64(i * STAT_BYTES + 2, true));
        stats[BALLOON_STAT_NAMES[tag] ?? `tag-${tag}`] = value;
      }
      this.guestStats = stats;
      this.reportedAt = Date.now();
    }
    q.enableNotification();
    for (const w of this.statsWaiters.splice(0)) w();
  }
}
