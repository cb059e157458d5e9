// virtio-net (virtio 1.2 §5.1) on a host packet backend (a TAP device, src/net/tap.ts): one receive queue
// and one transmit queue, no control queue, no multiqueue.
//
// Offered features: VIRTIO_NET_F_MAC (the MAC is in the configuration) and VIRTIO_NET_F_STATUS (link state,
// changed at run time by setLinkUp); with a backend that can hand over offloaded frames (a TAP: setOffload), the
// receive checksum offload GUEST_CSUM: the host's kernel marks a frame's checksum as verified (DATA_VALID) or
// leaves it partial (NEEDS_CSUM, csum_start/csum_offset), so the guest does not checksum every byte it receives.
// Measured with bench/io's TCP test on the soft engine (4 MiB host -> guest, in-process counters): 19.9 M guest
// instructions and 4.4 s of VMM CPU without it, 13.3 M and 2.0 s with it (csum_partial and __skb_checksum were
// about 7% of the guest's samples, and fewer instructions per frame let the host's TCP send faster).
// Not offered, so the guest does them itself: transmit checksum and segmentation offload (CSUM, HOST_TSO*, UFO),
// receive segmentation offload (GUEST_TSO4/6), VIRTIO_NET_F_MRG_RXBUF (without it every received frame goes into
// one descriptor chain: Linux posts 1518-byte "small" buffers plus the header) and VIRTIO_NET_F_MTU (the MTU is
// Linux's default 1500). GUEST_TSO4/6 were tried and measured slower without MRG_RXBUF: Linux then posts "big"
// chains of 17 pages per frame (§5.1.6.3.1), and at the soft engine's rates the host's TSO autosizing made
// segments of ~2.9 KB on average, so refilling those chains (try_fill_recv, virtqueue_add_split: ~20% of the
// guest's samples) cost more than the segments saved: 16.9 M instructions and 3.1 s CPU for the same 4 MiB.
//
// Every frame carries a struct virtio_net_hdr (12 bytes: flags, gso_type, hdr_len, gso_size, csum_start,
// csum_offset, num_buffers): with VIRTIO_F_VERSION_1 num_buffers is always present (§5.1.6). The TAP backend
// is opened with the same 12-byte header, but the device never passes the guest's header through: it
// writes an all-zero header (no checksum or GSO work asked of the host). Receive headers come from the host's
// kernel: their checksum flags and offsets are passed on (num_buffers set to 1) when the guest negotiated
// GUEST_CSUM; without it the device writes flags 0 itself, as §5.1.6.4 requires. A GSO frame (never asked of the
// TAP, so never expected) is dropped.
//
// Receive: frames are read from the backend only while the guest has posted receive buffers; otherwise they
// stay queued in the host kernel (the TAP's txqueuelen bounds them, and the kernel drops beyond it, as a
// full NIC ring would). A frame larger than the chain offered for it is dropped and counted.
import { VirtqueueError, gather, scatter, type DescriptorChain } from './queue.ts';
import { VirtioDevice, VIRTIO_ID_NET, bit, readLe } from './device.ts';

// Feature bits (§5.1.3).
export const VIRTIO_NET_F_CSUM = 0n, VIRTIO_NET_F_GUEST_CSUM = 1n, VIRTIO_NET_F_MTU = 3n, VIRTIO_NET_F_MAC = 5n;
export const VIRTIO_NET_F_GUEST_TSO4 = 7n, VIRTIO_NET_F_GUEST_TSO6 = 8n;
export const VIRTIO_NET_F_MRG_RXBUF = 15n, VIRTIO_NET_F_STATUS = 16n, VIRTIO_NET_F_CTRL_VQ = 17n, VIRTIO_NET_F_MQ = 22n;
/** Link status bit of the configuration's status field (§5.1.4). */
export const VIRTIO_NET_S_LINK_UP = 1;
// virtio_net_hdr flags and gso types (§5.1.6).
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1, VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_GSO_NONE = 0, VIRTIO_NET_HDR_GSO_TCPV4 = 1, VIRTIO_NET_HDR_GSO_TCPV6 = 4;
/** gso_type's ECN bit (§5.1.6): the segments carry CWR; only with VIRTIO_NET_F_GUEST_ECN, not offered. */
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;
/** What a backend may be asked to hand over (the TAP's TUN_F_* flags, linux/if_tun.h). */
export const OFFLOAD_CSUM = 0x01, OFFLOAD_TSO4 = 0x02, OFFLOAD_TSO6 = 0x04;
/** struct virtio_net_hdr with num_buffers (VERSION_1). */
export const NET_HDR_BYTES = 12;
export const RX_QUEUE = 0, TX_QUEUE = 1;
export const NET_QUEUE_SIZE = 256;
/** Ethernet header; a frame shorter than that is not a frame. */
const ETH_HEADER_BYTES = 14;
/**
 * Largest frame accepted either way: without GSO, Linux never builds more than MTU + Ethernet header
 * (+ VLAN tag); 65535 leaves room for a guest that raises its MTU, as a TAP accepts that much.
 */
export const NET_MAX_FRAME = 65535;
/**
 * Largest frame read from the backend: a 64 KiB GSO segment is an IP datagram of up to 65535 bytes behind its
 * Ethernet header (and a VLAN tag).
 */
export const NET_MAX_RX_FRAME = 65535 + ETH_HEADER_BYTES + 4;
/** Configuration: mac[6], status u16, max_virtqueue_pairs u16 (§5.1.4). */
const CONFIG_BYTES = 10;

/** Where frames go and come from: a TAP device, or a test double. Frames include the 12-byte header. */
export interface NetBackend {
  /** One frame into `into`; its length, or undefined when none is waiting. */
  read(into: Uint8Array): number | undefined;
  /** Send one frame; false when it was dropped. */
  write(frame: Uint8Array): boolean;
  /** Call back once when a frame may be read. */
  whenReadable(callback: () => void): void;
  /**
   * Which offloaded frames the backend may read in (OFFLOAD_* flags: partial checksums, TCP segments up to 64 KiB,
   * described by the header). A backend without it gives plain frames only, and the device offers no offloads.
   */
  setOffload?(flags: number): void;
  close(): void;
}

export interface NetCounters {
  rxFrames: number;
  rxBytes: number;
  /** Frames read from the host that did not fit the guest's buffer. */
  rxDropped: number;
  txFrames: number;
  txBytes: number;
  /** Frames the guest sent that were malformed or that the backend refused. */
  txDropped: number;
}

/** Parse "52:54:00:12:34:56"; undefined unless six hex octets. */
export function parseMac(text: string): Uint8Array | undefined {
  const m = /^([0-9a-f]{2})(?::([0-9a-f]{2})){5}$/i.test(text) ? text.split(':') : undefined;
  return m ? Uint8Array.from(m.map((x) => parseInt(x, 16))) : undefined;
}

export function formatMac(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}

export class VirtioNet extends VirtioDevice {
  readonly deviceType = VIRTIO_ID_NET;
  readonly classCode = 0x020000; // network controller, Ethernet
  readonly queueMaxSizes = [NET_QUEUE_SIZE, NET_QUEUE_SIZE];
  readonly configSize = CONFIG_BYTES;
  readonly deviceFeatures: bigint;
  readonly counters: NetCounters = { rxFrames: 0, rxBytes: 0, rxDropped: 0, txFrames: 0, txBytes: 0, txDropped: 0 };
  private readonly config = new Uint8Array(CONFIG_BYTES);
  /** Receive bounce buffer: one frame as the backend gives it (header + frame). */
  private readonly rxFrame = new Uint8Array(NET_HDR_BYTES + NET_MAX_RX_FRAME);
  private readonly txFrame = new Uint8Array(NET_HDR_BYTES + NET_MAX_FRAME);
  private closed = false;

  constructor(private readonly backend: NetBackend, readonly mac: Uint8Array) {
    super();
    if (mac.length !== 6) throw new RangeError('a MAC address has 6 bytes');
    // GUEST_CSUM needs a backend that can be told what to hand over.
    this.deviceFeatures = bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS) | (backend.setOffload ? bit(VIRTIO_NET_F_GUEST_CSUM) : 0n);
    this.config.set(mac, 0);
    const c = new DataView(this.config.buffer);
    c.setUint16(6, VIRTIO_NET_S_LINK_UP, true);
    c.setUint16(8, 1, true); // max_virtqueue_pairs (read only with MQ)
  }

  readConfig(offset: number, size: number): number {
    return readLe(this.config, offset, size);
  }

  get linkUp(): boolean {
    return (this.config[6] & VIRTIO_NET_S_LINK_UP) !== 0;
  }

  /** Cable in or out: the guest sees the change through a configuration interrupt (§5.1.4.2). */
  setLinkUp(up: boolean): void {
    if (up === this.linkUp) return;
    this.config[6] = up ? VIRTIO_NET_S_LINK_UP : 0;
    this.transport?.configChanged();
    if (up) this.transport?.processLater(RX_QUEUE);
  }

  /**
   * Snapshot: the link state and the counters. The MAC is the configuration's and the TAP is reopened by name from
   * it; frames queued in the host kernel stay with the old TAP file (a NIC loses its ring contents the same way).
   */
  override saveDeviceState(): { mac: string; linkUp: boolean; counters: NetCounters } {
    return { mac: formatMac(this.mac), linkUp: this.linkUp, counters: { ...this.counters } };
  }

  override restoreDeviceState(state: unknown): void {
    const s = state as { mac?: unknown; linkUp?: unknown; counters?: Partial<NetCounters> } | undefined;
    if (typeof s?.mac === 'string' && s.mac !== formatMac(this.mac)) throw new Error(`virtio-net: the snapshot's MAC ${s.mac} is not this card's ${formatMac(this.mac)}`);
    this.config[6] = s?.linkUp === false ? 0 : VIRTIO_NET_S_LINK_UP;
    this.applyOffloads(); // the features the restored driver negotiated
    for (const k of Object.keys(this.counters) as (keyof NetCounters)[]) {
      const v = s?.counters?.[k];
      if (Number.isSafeInteger(v) && (v as number) >= 0) this.counters[k] = v as number;
    }
    this.announce();
  }

  /**
   * After a restore (a snapshot started again, or a live migration received) the guest's MAC may now be behind another
   * switch port or on another host, and the bridges on the way keep sending its frames to the old port until they see
   * one from it: a guest that only receives would never be found. So the card says where it is, as QEMU does after a
   * migration: a broadcast RARP request (RFC 903; ethertype 0x8035, ARP layout of RFC 826 with opcode 3) from the
   * guest's MAC, three times in the first 150 ms in case one is lost. The guest is not involved.
   */
  private announce(): void {
    if (!this.linkUp) return;
    const frame = new Uint8Array(NET_HDR_BYTES + 60); // zero virtio_net_hdr, then the minimum Ethernet frame (padded)
    const f = frame.subarray(NET_HDR_BYTES);
    f.fill(0xff, 0, 6); // destination: broadcast
    f.set(this.mac, 6);
    f.set([0x80, 0x35, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03], 12); // RARP: Ethernet, IPv4, hlen 6, plen 4, op 3
    f.set(this.mac, 22); // sender hardware address (protocol address 0.0.0.0)
    f.set(this.mac, 32); // target hardware address (protocol address 0.0.0.0)
    const send = () => { if (!this.closed) this.backend.write(frame); };
    send();
    for (const ms of [50, 150]) setTimeout(send, ms).unref();
  }

  onNotify(index: number): void {
    if (index === TX_QUEUE) this.drain(TX_QUEUE, (chain) => this.transmit(chain));
    else if (index === RX_QUEUE) this.receive();
  }

  onActivate(): void {
    this.applyOffloads();
    this.receive();
  }

  onReset(): void {
    this.setBackendOffload(0);
  }

  /** Receive offloads the driver negotiated, as backend flags. */
  private get offloads(): number {
    return ((this.transport?.negotiated ?? 0n) & bit(VIRTIO_NET_F_GUEST_CSUM)) !== 0n ? OFFLOAD_CSUM : 0;
  }

  private applyOffloads(): void {
    // Refused (an old kernel): the guest gets plain frames, which every driver takes whatever it negotiated.
    if (!this.setBackendOffload(this.offloads)) this.setBackendOffload(0);
  }

  private setBackendOffload(flags: number): boolean {
    if (this.closed || !this.backend.setOffload) return false;
    try {
      this.backend.setOffload(flags);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Make the receive header the guest may see (in place, in rxFrame); false when the frame needs offload work the
   * guest did not negotiate (it is dropped).
   */
  private fixReceiveHeader(): boolean {
    const h = this.rxFrame;
    const offloads = this.offloads;
    // GSO was never asked of the backend (GUEST_TSO*/UFO are not offered): such a frame cannot be handed over.
    if (h[1] !== VIRTIO_NET_HDR_GSO_NONE) return false;
    if (offloads === 0) {
      // Without GUEST_CSUM the host's flags never reach the guest (§5.1.6.4); the TAP sets none then anyway.
      h.fill(0, 0, NET_HDR_BYTES);
    } else {
      h[0] &= VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
    }
    h[10] = 1; // num_buffers = 1 (little-endian u16 at offset 10)
    h[11] = 0;
    return true;
  }

  close(): void {
    this.closed = true;
    this.backend.close();
  }

  private transmit(chain: DescriptorChain): number {
    // §5.1.6.2: transmit buffers are device-readable only.
    if (chain.writable.length > 0) throw new VirtqueueError('virtio-net transmit buffer is device-writable');
    const length = chain.readableBytes;
    if (length < NET_HDR_BYTES + ETH_HEADER_BYTES || length > NET_HDR_BYTES + NET_MAX_FRAME || !this.linkUp) {
      this.counters.txDropped++;
      return 0;
    }
    const frame = this.txFrame.subarray(0, length);
    gather(chain.readable, 0, frame);
    const h = new DataView(frame.buffer, frame.byteOffset, NET_HDR_BYTES);
    // Without CSUM and the HOST_* GSO features the driver must send neither (§5.1.6.2.1): such a frame's
    // checksum is incomplete, so it is dropped rather than sent out wrong.
    if ((h.getUint8(0) & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0 || h.getUint8(1) !== VIRTIO_NET_HDR_GSO_NONE) {
      this.counters.txDropped++;
      return 0;
    }
    frame.fill(0, 0, NET_HDR_BYTES);
    if (this.backend.write(frame)) {
      this.counters.txFrames++;
      this.counters.txBytes += length - NET_HDR_BYTES;
    } else {
      this.counters.txDropped++;
    }
    return 0;
  }

  /** Move frames from the backend into posted receive chains while both exist. */
  private receive(): void {
    const q = this.transport.queue(RX_QUEUE);
    if (!q || this.closed || !this.linkUp) return;
    let delivered = 0;
    // Bounded work per call, so a flood from the host cannot hold the vCPU thread.
    let budget = q.size;
    for (;;) {
      if (q.pending() === 0) {
        // Out of buffers: ask for a notification when the driver posts more, and look again in case it
        // did so in between (§2.7.10).
        q.enableNotification();
        if (q.pending() === 0) break;
      }
      if (budget-- === 0) {
        this.transport.processLater(RX_QUEUE);
        break;
      }
      const n = this.backend.read(this.rxFrame);
      if (n === undefined) {
        this.backend.whenReadable(() => this.transport.processLater(RX_QUEUE));
        break;
      }
      if (n < NET_HDR_BYTES + ETH_HEADER_BYTES) continue; // nothing a guest could use
      const chain = q.pop()!;
      if (chain.readable.length > 0) throw new VirtqueueError('virtio-net receive buffer is device-readable');
      if (chain.writableBytes < n) {
        // §5.1.6.3.1 has the driver post buffers big enough; one that is not loses this frame only.
        this.counters.rxDropped++;
        q.push(chain.head, 0);
        delivered++;
        continue;
      }
      if (!this.fixReceiveHeader()) {
        this.counters.rxDropped++;
        q.push(chain.head, 0);
        delivered++;
        continue;
      }
      const frame = this.rxFrame.subarray(0, n);
      q.push(chain.head, scatter(chain.writable, 0, frame));
      this.counters.rxFrames++;
      this.counters.rxBytes += n - NET_HDR_BYTES;
      delivered++;
    }
    if (delivered > 0) this.transport.usedBuffers(RX_QUEUE);
  }
}
