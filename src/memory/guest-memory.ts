// Guest physical memory: one memfd holding all RAM, mapped in (up to) two regions around the
// 32-bit PCI hole, as on a PC: [0, lowEnd) and [4 GiB, 4 GiB + highSize).
// The memfd lets vCPU worker threads, the KVM engine and snapshots map the same pages.
import fs from 'node:fs';
import { preadFully } from '../sys/file-io.ts';
import { memfd, mmap, mmapFixed, munmap, madvise, MADV_HUGEPAGE, close, sendfileAt, koffi, libc, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE } from '../sys/libc.ts';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Start of the 32-bit MMIO hole (PCI BARs, ECAM, IOAPIC, LAPIC, HPET); RAM above it moves to 4 GiB. */
export const PCI_HOLE_START = 3 * GiB;
export const HIGH_RAM_START = 4 * GiB;
export const MIN_MEMORY = 64 * MiB;
export const MAX_MEMORY = 64 * GiB;
/**
 * Where low RAM sits inside `GuestMemory.wasmMemory` (the software CPU's WebAssembly translator,
 * src/cpu/soft/wasm): the bytes below hold the CPUs' state areas and the code-page bytes (its layout.ts: 8 MiB of
 * tables, then 32 vCPU state areas of 512 KiB).
 */
export const WASM_RAM_OFFSET = 24 * MiB;
/** RINGZERO_WASM_THP=1: the wasm memory's tables on transparent huge pages (GuestMemory.addWasmRegion). */
let WASM_THP = process.env.RINGZERO_WASM_THP === '1';
/** Switch WASM_THP for memories made from now on (tests); returns the old setting. */
export function setWasmThp(on: boolean): boolean { const old = WASM_THP; WASM_THP = on; return old; }

export interface RamRegion {
  /** Guest physical address of the first byte. */
  readonly guestBase: number;
  readonly size: number;
  /** Offset of the region inside the memfd. */
  readonly fileOffset: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly hostAddress: bigint;
}

/** Where RAM comes from: a fresh memfd (the default), or a snapshot's memory file mapped copy-on-write. */
export interface GuestMemorySource {
  /**
   * A file holding the RAM image (low region then high region, as in the memfd): mapped MAP_PRIVATE, so pages are
   * read lazily on first touch and guest writes stay in this process; the file is never modified.
   */
  file: string;
}

export interface GuestMemoryOptions {
  /**
   * Map low RAM inside a WebAssembly.Memory (at WASM_RAM_OFFSET) so translated code reaches it with plain loads
   * and stores. Default: on when RINGZERO_JIT=wasm. Falls back silently when it cannot be done.
   */
  wasm?: boolean;
}

export class GuestMemory {
  /** The memfd, or the opened snapshot memory file when `privateFile` is true (its contents are NOT the live RAM). */
  readonly fd: number;
  /** RAM is a private copy-on-write mapping of a file: other mappers of `fd` would not see the guest's writes. */
  readonly privateFile: boolean;
  readonly regions: RamRegion[] = [];
  /** RAM below the PCI hole: the region the soft engine reads on its fast path. */
  readonly low: Uint8Array;
  readonly lowView: DataView;
  readonly lowSize: number;
  readonly highSize: number;
  /** The WebAssembly memory whose bytes [WASM_RAM_OFFSET, +lowSize) are low RAM (see GuestMemoryOptions.wasm). */
  wasmMemory: WebAssembly.Memory | undefined;

  constructor(readonly size: number, source?: GuestMemorySource, options: GuestMemoryOptions = {}) {
    if (!Number.isInteger(size) || size % (4 * KiB) !== 0) throw new RangeError(`memory size ${size} is not a whole number of 4 KiB pages`);
    if (size < MIN_MEMORY || size > MAX_MEMORY) throw new RangeError(`memory size must be between ${MIN_MEMORY / MiB} MiB and ${MAX_MEMORY / GiB} GiB`);
    this.privateFile = source !== undefined;
    if (source) {
      const fd = fs.openSync(source.file, 'r');
      const fileSize = fs.fstatSync(fd).size;
      if (fileSize !== size) {
        fs.closeSync(fd);
        throw new RangeError(`memory file ${source.file} holds ${fileSize} bytes, not the ${size} bytes of guest RAM`);
      }
      this.fd = fd;
    } else {
      this.fd = memfd('ringzero-ram', size);
    }
    this.lowSize = Math.min(size, PCI_HOLE_START);
    this.highSize = size - this.lowSize;
    if ((options.wasm ?? process.env.RINGZERO_JIT === 'wasm') && !this.addWasmRegion()) this.wasmMemory = undefined;
    if (this.regions.length === 0) this.addRegion(0, this.lowSize, 0);
    if (this.highSize > 0) this.addRegion(HIGH_RAM_START, this.highSize, this.lowSize);
    this.low = this.regions[0].bytes;
    this.lowView = this.regions[0].view;
  }

  /** Regions mapped over pages V8 owns (a WebAssembly.Memory's, kept here): close() gives them anonymous pages back. */
  private readonly v8Pages = new Map<RamRegion, WebAssembly.Memory>();

  private addRegion(guestBase: number, size: number, fileOffset: number): void {
    // A private mapping of a read-only file descriptor may still be PROT_WRITE: writes go to anonymous copies.
    const sharing = this.privateFile ? MAP_PRIVATE : MAP_SHARED;
    // Laid over a shared WebAssembly.Memory when one fits (at most 4 GiB), as the wasm region is: an ArrayBuffer over a
    // plain mapping (koffi.view) is counted as external memory, and V8 collects garbage at once for a large one (see
    // addWasmRegion): the KVM engine's restores and the soft engine's without the translator paid that too.
    const carrier = sharedCarrier(size);
    if (carrier) {
      try {
        mmapFixed(carrier.address, size, PROT_READ | PROT_WRITE, sharing | MAP_NORESERVE, this.fd, fileOffset);
        const buffer = carrier.memory.buffer;
        const region = { guestBase, size, fileOffset, bytes: new Uint8Array(buffer, 0, size), view: new DataView(buffer, 0, size), hostAddress: carrier.address };
        this.regions.push(region);
        this.v8Pages.set(region, carrier.memory);
        return;
      } catch {
        // a plain mapping, below
      }
    }
    const { address, buffer } = mmap(size, PROT_READ | PROT_WRITE, sharing | MAP_NORESERVE, this.fd, fileOffset);
    this.regions.push({ guestBase, size, fileOffset, bytes: new Uint8Array(buffer), view: new DataView(buffer), hostAddress: address });
  }

  /**
   * Low RAM laid over a fixed-size WebAssembly.Memory: the memfd is mapped (MAP_FIXED) over the memory's own pages
   * at WASM_RAM_OFFSET, so wasm loads and stores, this process's typed arrays and every other mapping of the memfd
   * (vCPU workers, KVM, snapshots) see the same bytes. wasm32 addresses stop at 4 GiB, which low RAM (at most
   * 3 GiB) plus the offset respects. Returns false (nothing mapped) when it cannot be done.
   *
   * The memory is a shared one (its buffer a SharedArrayBuffer; the translator's modules import it as shared,
   * src/cpu/soft/wasm/emit.ts): V8 counts a plain ArrayBuffer's bytes as external memory, and creating one of more
   * than 64 MiB makes it collect garbage for "external memory pressure" at once (a full, memory-reducing GC: ~9 ms
   * of CPU for 2 GiB in a fresh process, more with a larger heap, and for 256 MiB a scavenge plus an incremental
   * marking finished ~100 ms later), which made a restore's cost grow with the guest's memory. A shared memory is
   * not counted. Nothing else changes: no atomics are used, the memory never grows.
   */
  private addWasmRegion(): boolean {
    try {
      const carrier = sharedCarrier(WASM_RAM_OFFSET + this.lowSize);
      if (!carrier) return false;
      const wm = carrier.memory;
      // RINGZERO_WASM_THP=1: the translator's tables and state areas below RAM (the dispatch table's 4 MiB, the
      // TLBs, page generations: wasm/layout.ts) on transparent huge pages, before anything touches them past the
      // first page (backingAddress), so that a dispatcher entry or TLB probe does not miss the host's TLB (2 MiB
      // pages: 12 entries cover the 24 MiB). Guest RAM is a memfd (shmem), which this host's THP setting leaves alone.
      // Off by default: paired off/on (session 28, loaded host, 3 pairs) syscall loop 1.00x wall (0.91-1.02), guest
      // thread 0.97x (0.90-0.98); md5 0.97x (0.92-1.02): the dispatcher's and probes' slow loads are not mostly TLB misses.
      if (WASM_THP) { try { madvise(carrier.address, WASM_RAM_OFFSET, MADV_HUGEPAGE); } catch { /* (no THP: as before) */ } }
      const address = carrier.address + BigInt(WASM_RAM_OFFSET);
      const sharing = this.privateFile ? MAP_PRIVATE : MAP_SHARED;
      mmapFixed(address, this.lowSize, PROT_READ | PROT_WRITE, sharing | MAP_NORESERVE, this.fd, 0);
      this.wasmMemory = wm;
      const buffer = wm.buffer;
      const region = {
        guestBase: 0, size: this.lowSize, fileOffset: 0, hostAddress: address,
        bytes: new Uint8Array(buffer, WASM_RAM_OFFSET, this.lowSize), view: new DataView(buffer, WASM_RAM_OFFSET, this.lowSize),
      };
      this.regions.push(region);
      this.v8Pages.set(region, wm);
      return true;
    } catch {
      return false;
    }
  }

  /** The region holding [gpa, gpa+len), or undefined when any byte is outside RAM. */
  regionFor(gpa: number, len = 1): RamRegion | undefined {
    for (const r of this.regions) if (gpa >= r.guestBase && gpa + len <= r.guestBase + r.size) return r;
    return undefined;
  }

  isRam(gpa: number, len = 1): boolean {
    return this.regionFor(gpa, len) !== undefined;
  }

  /** A view of guest RAM [gpa, gpa+len); throws if the range is not wholly RAM. */
  slice(gpa: number, len: number): Uint8Array {
    const r = this.regionFor(gpa, len);
    if (!r) throw new RangeError(`guest range 0x${gpa.toString(16)}+0x${len.toString(16)} is not RAM`);
    return r.bytes.subarray(gpa - r.guestBase, gpa - r.guestBase + len);
  }

  write(gpa: number, data: Uint8Array): void {
    this.slice(gpa, data.length).set(data);
    this.noteExternalWrite(gpa, data.length);
  }

  /**
   * Read `length` bytes of file `fd` at `position` into guest RAM at `gpa` (wholly RAM, else RangeError); true when
   * the file held them all. Like writing through slice(), it does not call noteExternalWrite: the caller does.
   *
   * RAM in the memfd is filled through the memfd itself (sendfile(2), a copy inside the kernel): reading into the
   * mapping instead (pread) took a page fault per 4 KiB page, whose fresh page the kernel zeroed before the copy.
   * Measured on the 46 MB of a cached kernel (src/boot/vmlinux-cache.ts) on this session's host: ~200 ms of CPU and
   * 11.3k faults through the mapping, ~23 ms and none through the memfd (the pages are then mapped on first touch
   * 16 at a time, by the kernel's fault-around, as the page cache's are). A snapshot's private mapping reads through
   * the mapping as before.
   */
  readFile(gpa: number, fd: number, position: number, length: number): boolean {
    const r = this.regionFor(gpa, length);
    if (!r) throw new RangeError(`guest range 0x${gpa.toString(16)}+0x${length.toString(16)} is not RAM`);
    if (!this.privateFile) {
      try {
        return sendfileAt(this.fd, r.fileOffset + gpa - r.guestBase, fd, position, length) === length;
      } catch {
        // a file sendfile cannot read: through the mapping, below
      }
    }
    return preadFully(fd, r.bytes.subarray(gpa - r.guestBase, gpa - r.guestBase + length), position) === length;
  }

  private readonly externalWriteListeners: ((gpa: number, len: number) => void)[] = [];

  /**
   * Something other than a vCPU writes [gpa, gpa+len): a device's DMA into a guest buffer, a loader. Whoever keeps
   * state derived from guest RAM (the software CPU's cache of decoded code) listens here to drop it.
   */
  noteExternalWrite(gpa: number, len: number): void {
    if (this.dirtyLog) this.markDirty(gpa, len);
    for (const listener of this.externalWriteListeners) listener(gpa, len);
  }

  // ---- dirty-page log (diff snapshots, live migration) ----
  //
  // One byte per 4 KiB page of the memory image (low region then high region, as in the memfd), set when the page
  // is written while logging is on. Writers: devices and loaders through noteExternalWrite, and the CPU's store
  // paths through whoever registered with onDirtyLogArm (the soft CPU's code cache: it routes the first store into
  // each page after an arm through its code-write check, see src/cpu/soft/code-cache.ts), which is told to re-arm
  // every page whenever the log is started or harvested.

  /** The current log (undefined while logging is off). Page index = image offset / 4096. */
  dirtyLog: Uint8Array | undefined;
  private readonly armListeners: ((log: Uint8Array | undefined) => void)[] = [];
  /** Whether every RAM writer can report its writes (set by the engine: the soft CPU tracks low RAM only). */
  private dirtyLogLimit: string | undefined;

  get pageCount(): number {
    return this.size / 4096;
  }

  /** Register a CPU-side store tracker: called with the log on start/harvest (re-arm every page), undefined on stop. */
  onDirtyLogArm(listener: (log: Uint8Array | undefined) => void): void {
    this.armListeners.push(listener);
    if (this.dirtyLog) listener(this.dirtyLog);
  }

  /** An engine that cannot track some writes says why; startDirtyLog then refuses with that reason. */
  limitDirtyLog(reason: string): void {
    this.dirtyLogLimit = reason;
  }

  /**
   * Whether the CPU's stores above 4 GiB reach the log: not the soft CPU's (its code-cache check covers low RAM), but
   * KVM's dirty log covers every memory slot (src/vmm/kvm-platform.ts KvmGuestMemory sets this).
   */
  protected readonly highRamTracked: boolean = false;

  /** Start logging writes (every page clean). Throws when some RAM writer cannot be tracked. */
  startDirtyLog(): void {
    if (this.dirtyLogLimit) throw new Error(`dirty-page tracking is not available: ${this.dirtyLogLimit}`);
    if (this.highSize > 0 && !this.highRamTracked) throw new Error('dirty-page tracking covers RAM below the PCI hole only: this VM has memory above 4 GiB (more than 3 GiB)');
    this.dirtyLog = new Uint8Array(this.pageCount);
    for (const l of this.armListeners) l(this.dirtyLog);
  }

  /** The pages written since the log started or was last harvested (a copy), and a clean log from now on. */
  harvestDirtyLog(): Uint8Array {
    const log = this.dirtyLog;
    if (!log) throw new Error('dirty-page logging is not on');
    const out = Uint8Array.from(log);
    log.fill(0);
    for (const l of this.armListeners) l(log);
    return out;
  }

  stopDirtyLog(): void {
    if (!this.dirtyLog) return;
    this.dirtyLog = undefined;
    for (const l of this.armListeners) l(undefined);
  }

  /** Image offset of guest-physical `gpa` (RAM only), or -1. */
  imageOffset(gpa: number): number {
    const r = this.regionFor(gpa);
    return r ? r.fileOffset + (gpa - r.guestBase) : -1;
  }

  /** Mark guest-physical [gpa, gpa+len) written (no-op while logging is off; non-RAM parts are ignored). */
  markDirty(gpa: number, len: number): void {
    const log = this.dirtyLog;
    if (!log || len <= 0) return;
    for (const r of this.regions) {
      const start = Math.max(gpa, r.guestBase), end = Math.min(gpa + len, r.guestBase + r.size);
      if (start >= end) continue;
      const first = Math.floor((r.fileOffset + start - r.guestBase) / 4096), last = Math.floor((r.fileOffset + end - 1 - r.guestBase) / 4096);
      log.fill(1, first, last + 1);
    }
  }

  onExternalWrite(listener: (gpa: number, len: number) => void): void {
    this.externalWriteListeners.push(listener);
  }

  read(gpa: number, len: number): Uint8Array {
    return Uint8Array.from(this.slice(gpa, len));
  }

  close(): void {
    for (const r of this.regions) {
      // A WebAssembly memory's pages belong to V8: put anonymous pages back rather than leave a hole.
      if (this.v8Pages.has(r)) mmapFixed(r.hostAddress, r.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
      else munmap(r.hostAddress, r.size);
    }
    this.regions.length = 0;
    this.v8Pages.clear();
    close(this.fd);
  }
}

/**
 * A shared WebAssembly.Memory of at least `size` bytes to lay a RAM region over, and its address; undefined when
 * there is none (more than 4 GiB, the wasm32 limit, or V8 refuses).
 */
function sharedCarrier(size: number): { memory: WebAssembly.Memory; address: bigint } | undefined {
  const pages = Math.ceil(size / 65536);
  if (pages > 65536) return undefined;
  try {
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    return { memory, address: backingAddress(memory.buffer) };
  } catch {
    return undefined;
  }
}

let memmoveFn: ((dest: Uint8Array, src: Uint8Array, n: number) => unknown) | undefined;

/**
 * The address of `buffer`'s first byte. koffi.address takes no SharedArrayBuffer, but koffi hands a typed array
 * over one to C as a pointer to its bytes (no copy), and memmove(p, p, 0) returns p (it moves nothing). Checked
 * before anything is mapped there: a byte written through the buffer must be read at that address (a copy would
 * make RAM land on some other memory; the caller then goes without the wasm memory).
 */
function backingAddress(buffer: ArrayBuffer | SharedArrayBuffer): bigint {
  memmoveFn ??= libc.func('void *memmove(void *dest, const void *src, size_t n)') as (dest: Uint8Array, src: Uint8Array, n: number) => unknown;
  const first = new Uint8Array(buffer, 0, 1);
  const pointer = memmoveFn(first, first, 0);
  first[0] = 0x5a;
  const seen = new Uint8Array(koffi.view(pointer as never, 1) as ArrayBuffer)[0];
  first[0] = 0;
  if (seen !== 0x5a) throw new Error('cannot locate the WebAssembly memory');
  return BigInt(koffi.address(pointer as never));
}
