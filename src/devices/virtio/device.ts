// What a virtio device model (blk, rng, console, ...) provides, and what the transport offers it.
// The transport (pci.ts) owns feature negotiation, status, queues and interrupts; a device model only
// parses and completes the chains on its own queues.
import type { GuestMemory } from '../../memory/guest-memory.ts';
import type { DescriptorChain, FlatChain, SplitQueue } from './queue.ts';

// Device types (virtio 1.2 §5): the PCI device ID is 0x1040 + type (§4.1.2).
export const VIRTIO_ID_NET = 1, VIRTIO_ID_BLOCK = 2, VIRTIO_ID_CONSOLE = 3, VIRTIO_ID_RNG = 4;
/** Short names of the device types (stats, logs). */
export const VIRTIO_TYPE_NAMES: Record<number, string> = { 1: 'virtio-net', 2: 'virtio-blk', 3: 'virtio-console', 4: 'virtio-rng', 5: 'virtio-balloon', 19: 'virtio-vsock' };

// Reserved feature bits (§6).
export const VIRTIO_F_INDIRECT_DESC = 28n;
export const VIRTIO_F_EVENT_IDX = 29n;
export const VIRTIO_F_VERSION_1 = 32n;

export const bit = (n: bigint): bigint => 1n << n;

/** What the transport lets a device model do. */
export interface VirtioTransport {
  readonly mem: GuestMemory;
  /** The live queue `index`, or undefined while it is disabled (or the device is not DRIVER_OK). */
  queue(index: number): SplitQueue | undefined;
  /** Features both sides agreed on (valid once FEATURES_OK is set). */
  readonly negotiated: bigint;
  /** The device put buffers in queue `index`'s used ring: interrupt the driver if it wants one (true: it did). */
  usedBuffers(index: number): boolean;
  /** The device configuration changed (config_generation bumps, configuration interrupt). */
  configChanged(): void;
  /** Something the driver did is beyond repair: DEVICE_NEEDS_RESET (§2.1.2). */
  needsReset(reason: string): void;
  /** Run the device's onNotify(index) later, guarded like a guest notification (errors become NEEDS_RESET). */
  processLater(index: number): void;
}

export abstract class VirtioDevice {
  abstract readonly deviceType: number;
  /** Device-specific feature bits offered (the transport adds VERSION_1, INDIRECT_DESC, EVENT_IDX). */
  abstract readonly deviceFeatures: bigint;
  /** Maximum size of each queue (powers of two). */
  abstract readonly queueMaxSizes: readonly number[];
  /** Bytes of device-specific configuration (§4.1.4.6). */
  abstract readonly configSize: number;
  /** PCI class code (24 bits). */
  abstract readonly classCode: number;

  protected transport!: VirtioTransport;

  bind(transport: VirtioTransport): void {
    this.transport = transport;
  }

  /** Little-endian read of the device configuration; `offset + size <= configSize`. */
  abstract readConfig(offset: number, size: number): number;
  writeConfig(_offset: number, _size: number, _value: number): void {}
  /** The driver notified queue `index` (only called while DRIVER_OK, queue enabled). */
  abstract onNotify(index: number): void;
  /** DRIVER_OK: every enabled queue is live. */
  onActivate(): void {}
  /** The driver reset the device: forget every chain held. */
  onReset(): void {}
  /** Release host resources (files). */
  close(): void {}
  /**
   * Snapshot support: the device model's own state beyond the transport's (plain JSON data; undefined when the
   * model keeps none). Called while the VM is paused, so no request is half done: every model completes a chain
   * within the notification that popped it.
   */
  saveDeviceState(): unknown {
    return undefined;
  }
  /** Inverse of saveDeviceState, on a freshly built model bound to its restored transport; may throw on bad data. */
  restoreDeviceState(_state: unknown): void {}

  /**
   * Complete every available chain on queue `index` with `handle`, which returns the bytes written into
   * the chain's writable buffers. Notification suppression (§2.7.10) while draining; at most a few rounds
   * of the ring per call so a driver that keeps refilling from another vCPU thread cannot starve the VMM.
   * With `signal` false the caller decides when to tell the driver (usedBuffers); returns the chains completed.
   */
  protected drain(index: number, handle: (chain: DescriptorChain) => number, signal = true): number {
    return this.drainQueue(index, signal, (q) => {
      const chain = q.pop();
      if (chain === undefined) return false;
      q.push(chain.head, handle(chain));
      return true;
    });
  }

  /**
   * drain() with the chains walked into `chain` (SplitQueue.popFlat: no object per buffer), which `handle` reads
   * before the next one is walked into it.
   */
  protected drainFlat(index: number, chain: FlatChain, handle: (chain: FlatChain) => number): number {
    return this.drainQueue(index, true, (q) => {
      if (!q.popFlat(chain)) return false;
      q.push(chain.head, handle(chain));
      return true;
    });
  }

  /** drain()'s loop: `serveOne` completes the next available chain of `q`, false when there is none. */
  private drainQueue(index: number, signal: boolean, serveOne: (q: SplitQueue) => boolean): number {
    const q = this.transport.queue(index);
    if (!q) return 0;
    let budget = 4 * q.size;
    let done = 0;
    for (;;) {
      q.disableNotification();
      while (budget > 0 && serveOne(q)) {
        done++;
        budget--;
      }
      q.enableNotification();
      // A chain made available between the last pop and enableNotification would otherwise sit unseen.
      if (budget === 0 || q.pending() === 0) break;
    }
    if (done > 0 && signal) this.transport.usedBuffers(index);
    if (budget === 0 && q.pending() > 0) this.transport.processLater(index);
    return done;
  }
}

// Little-endian field readers for device configuration structures.
export function readLe(bytes: Uint8Array, offset: number, size: number): number {
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + (bytes[offset + i] ?? 0);
  return v >>> 0;
}
