// virtio-net (virtio 1.2 §5.1) on a host packet backend (a TAP device, src/net/tap.ts): one receive queue
// and one transmit queue, no control queue, no multiqueue.
//
// Offered features: VIRTIO_NET_F_MAC (the MAC is in the configuration), VIRTIO_NET_F_STATUS (link state, changed
// at run time by setLinkUp) and VIRTIO_NET_F_MRG_RXBUF; with a backend that takes and hands over offloaded frames
// (a TAP with IFF_VNET_HDR: setOffload), also:
//   - GUEST_CSUM: the host's kernel marks a received frame's checksum as verified (DATA_VALID) or leaves it
//     partial (NEEDS_CSUM, csum_start/csum_offset), so the guest does not checksum every byte it receives;
//   - GUEST_TSO4/6 (each needs GUEST_CSUM, §5.1.3.1): the TAP hands over TCP segments of up to 64 KiB
//     (TUNSETOFFLOAD TUN_F_TSO4/6) and the guest receives them whole, gso_type/gso_size/hdr_len telling it how
//     they were cut (its GRO does the same for frames it gets one by one);
//   - CSUM: the guest leaves a transmitted frame's TCP/UDP checksum to the host (NEEDS_CSUM, csum_start/offset);
//   - HOST_TSO4/6 (each needs CSUM): the guest sends TCP segments of up to 64 KiB with gso_type/gso_size and the
//     host's kernel cuts them (or delivers them whole to a local socket).
// Not offered: ECN with GSO (GUEST_ECN/HOST_ECN), UFO/USO (Linux 6.1's driver sends no UFO and knows no USO),
// VIRTIO_NET_F_MTU (the MTU is Linux's default 1500), the control queue and multiqueue.
// RINGZERO_NET_FEATURES (a comma-separated subset of mrg_rxbuf, guest_csum, guest_tso, csum, host_tso, or
// "none") narrows the offer; bench/io uses it to measure the device with and without them.
//
// Every frame carries a struct virtio_net_hdr (12 bytes: flags, gso_type, hdr_len, gso_size, csum_start,
// csum_offset, num_buffers): with VIRTIO_F_VERSION_1 num_buffers is always present (§5.1.6). The TAP is opened
// with the same 12-byte header (TUNSETVNETHDRSZ), so a header crosses between guest and host in the same layout,
// but never unchecked: the device passes only the fields the negotiated features give meaning to.
//   Transmit (§5.1.6.2): NEEDS_CSUM only with CSUM and with csum_start + csum_offset + 2 inside the frame; a GSO
//   type only the negotiated HOST_TSO4/6, with NEEDS_CSUM and a non-zero gso_size (Linux's driver always sends
//   them so); every other flag (DATA_VALID from a guest would tell the host to skip its own checksum check),
//   hdr_len/gso_size without GSO, csum fields without NEEDS_CSUM and num_buffers are zeroed. Anything else is
//   dropped and counted, not sent out wrong. The host's kernel checks the header again (virtio_net_hdr_to_skb).
//   Receive (§5.1.6.4): the TAP's checksum flags and offsets reach the guest only with GUEST_CSUM (otherwise the
//   header is all zero, as the spec requires), GSO frames only of a type the guest negotiated (the TAP is asked
//   for no other; one that comes anyway is dropped without using a buffer).
//
// Receive buffers: without MRG_RXBUF every frame goes into one descriptor chain (Linux posts 1518-byte buffers,
// or with GUEST_TSO and no MRG_RXBUF "big" chains of 17 pages); a frame larger than the chain is dropped and the
// chain returned empty. With MRG_RXBUF (§5.1.6.3, §5.1.6.4.2) a frame is spread over as many chains as it takes,
// each filled completely but the last, num_buffers in the first chain's header says how many, and all of them
// are published in the used ring at once (the driver expects to find them together). If the guest has not posted
// enough buffers yet, the chains taken are put back on the ring unused, the frame waits in the device (one
// frame) and the device asks to be notified when more buffers come; a frame that needs more chains than the
// ring holds is dropped. A chain shorter than the header (or empty) breaks §5.1.6.3.1's rule that every
// buffer hold at least the header: the frame is dropped and every chain taken for it returned with length 0,
// which a driver discards. Measured before MRG_RXBUF (bench/io's TCP test, soft engine, 4 MiB host -> guest):
// GUEST_TSO4/6 without it was slower than plain frames (refilling the 17-page chains cost more than the
// segments saved), which is why GUEST_TSO came with mergeable buffers only.
//
// Frames are read from the backend only while the guest has posted receive buffers; otherwise they stay queued
// in the host kernel (the TAP's txqueuelen bounds them, and the kernel drops beyond it, as a full NIC ring would).
import { VirtqueueError, gather, scatter, type DescriptorChain, type SplitQueue } from './queue.ts';
import { VirtioDevice, VIRTIO_ID_NET, bit, readLe } from './device.ts';

// Feature bits (§5.1.3).
export const VIRTIO_NET_F_CSUM = 0n, VIRTIO_NET_F_GUEST_CSUM = 1n, VIRTIO_NET_F_MTU = 3n, VIRTIO_NET_F_MAC = 5n;
export const VIRTIO_NET_F_GUEST_TSO4 = 7n, VIRTIO_NET_F_GUEST_TSO6 = 8n, VIRTIO_NET_F_GUEST_ECN = 9n, VIRTIO_NET_F_GUEST_UFO = 10n;
export const VIRTIO_NET_F_HOST_TSO4 = 11n, VIRTIO_NET_F_HOST_TSO6 = 12n, VIRTIO_NET_F_HOST_ECN = 13n, VIRTIO_NET_F_HOST_UFO = 14n;
export const VIRTIO_NET_F_MRG_RXBUF = 15n, VIRTIO_NET_F_STATUS = 16n, VIRTIO_NET_F_CTRL_VQ = 17n, VIRTIO_NET_F_MQ = 22n;
/** Link status bit of the configuration's status field (§5.1.4). */
export const VIRTIO_NET_S_LINK_UP = 1;
// virtio_net_hdr flags and gso types (§5.1.6).
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1, VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_GSO_NONE = 0, VIRTIO_NET_HDR_GSO_TCPV4 = 1, VIRTIO_NET_HDR_GSO_UDP = 3, VIRTIO_NET_HDR_GSO_TCPV6 = 4;
/** gso_type's ECN bit (§5.1.6): the segments carry CWR; only with GUEST_ECN/HOST_ECN, not offered. */
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
 * Largest plain frame accepted either way: without GSO, Linux never builds more than MTU + Ethernet header
 * (+ VLAN tag); 65535 leaves room for a guest that raises its MTU, as a TAP accepts that much.
 */
export const NET_MAX_FRAME = 65535;
/**
 * Largest GSO frame either way, and the largest read from the backend: a 64 KiB segment is an IP datagram of up
 * to 65535 bytes behind its Ethernet header (and a VLAN tag).
 */
export const NET_MAX_RX_FRAME = 65535 + ETH_HEADER_BYTES + 4;
/**
 * RINGZERO_NET_TX_IRQ=defer: the interrupt of a transmit completion of small frames (TX_IRQ_HOLD_MAX) waits for
 * the driver's next transmit notify, or else the event loop's next turn (a halted guest reaches it at once; a busy
 * one within the run loop's slice), instead of being sent from inside the notify. The chains are transmitted and their used entries published at once as
 * before: only the interrupt moves, so the guest's next start_xmit frees them without one (Linux 6.1 virtio_net
 * frees finished transmit buffers before queueing each frame) and one interrupt then covers the frames of a burst.
 * Why: the device completes a frame inside the notify, so with EVENT_IDX (virtqueue_enable_cb_delayed asking for
 * the next completion when nothing is outstanding) each frame cost the guest an interrupt, a NAPI poll and an EOI
 * exit: bench/io per MiB, the guest's own /proc/interrupts, ringzero against QEMU TCG (whose transmit runs in a
 * bottom half, after the guest may have queued more): host -> guest 15.4 against 5.75 transmit interrupts (one
 * per ACK frame), guest -> host 22.1 against 10.4. The virtio spec does not require a notification at any given
 * moment (§2.7.7.2: used_event only says when the driver needs none). `now` (the default): as before.
 *
 * RINGZERO_NET_TX_IRQ=rx: the transmit completion's interrupt waits (as with `defer`, whatever the frames' size) only
 * when the same notify also raised a receive interrupt: the host's answer to what was sent (an ACK to a data segment,
 * the data an ACK released) taken at once by onNotify. Linux 6.1 virtio_net's receive poll frees finished transmit
 * buffers itself before it looks at the receive ring (virtnet_poll -> virtnet_poll_cleantx, with napi_tx, the
 * default) and then asks for the next completion (virtqueue_enable_cb_delayed moves used_event past what it freed),
 * so by the event loop's next turn the held interrupt is usually no longer wanted: the check reads used_event then,
 * as any device that publishes used.idx before it decides to interrupt does (§2.7.10; QEMU reads it in its bottom
 * half). A data segment's sender is not held up by TCP small queues: the receive interrupt that arrives with it
 * frees the segment. When nothing was received in the notify, the interrupt goes at once as with `now`.
 * Measured (session 26, bench/io --only ringzero,tcp,tcpout --net-mb 64, five alternating runs each at load 14-21,
 * medians): the card's interrupts per MiB guest -> host 36.1 -> 22.5 (transmit completions 22.1 -> 7.5; QEMU TCG's
 * 10.4 in session 25), host -> guest 11.5 -> 7.2 (6.4 -> 2.3), LAPIC EOI writes per MiB 48.3 -> 34.7 and 21.4 -> 17.8;
 * guest instructions per MiB 418 k -> 383 k and 418 k -> 411 k (both within the runs' spread, which the host's load
 * moves through the guest's TSO segment sizes); process CPU per pass within the noise.
 */
export type TxIrq = 'now' | 'defer' | 'rx';
/**
 * Only a pass of small frames (TCP ACKs: 54-86 bytes of frame behind the 12-byte header) holds its interrupt. A data
 * segment's completion is what the sender's TCP waits for: Linux keeps a transmitted skb charged to its socket until
 * the driver frees it (TCP small queues, tcp_wfree), so holding it can only delay guest -> host. (Two runs with every
 * completion held sent 232 and 314 frames per MiB of 3-4.5 KB at load 25-35, against 84.6 for the default in one run,
 * but a later default run at that load sent 236 too: the host's load moves the guest's segment sizes that much.)
 */
const TX_IRQ_HOLD_MAX = NET_HDR_BYTES + 128;
const txIrqFromEnv = (): TxIrq => {
  const v = process.env.RINGZERO_NET_TX_IRQ;
  return v === 'defer' || v === 'rx' ? v : 'now';
};
/**
 * RINGZERO_NET_TX_POLL=1 (soft engine; off by default): after a transmit notify the device keeps the driver's
 * notifications off and looks at the transmit ring itself between the run loop's slices (every 20,000 guest
 * instructions, SLICE), until TX_POLL_IDLE looks in a row find nothing; then it asks for notifications again
 * (§2.7.10: with EVENT_IDX, avail_event = the next index; without, the NO_NOTIFY flag cleared) and looks once more.
 * Why: bench/io (session 28, both VMMs' counts per MiB, QEMU's from its trace log) found the guest -> host pass
 * costing 22 notifications and 36 interrupts per MiB here against QEMU TCG's 4.4 and 8.6: a frame completes inside
 * its notify, so avail_event always moves past it at once and every TSO segment the guest sends is a notify (1.7
 * chains each, QEMU 7.7: its transmit runs in a bottom half with notifications off meanwhile), followed by an
 * interrupt for its completion and one for the host's ACK taken right after. Leaving notifications off (the
 * driver checks avail_event before each kick, virtqueue_kick_prepare) lets frames queued in the next slice go
 * together, as QEMU's bottom half takes them. A frame then waits at most the rest of a slice. Only a pass that sent a
 * data frame (larger than TX_IRQ_HOLD_MAX) starts the polling: a guest that receives sends ACKs, which the host's
 * next data waits for (polling after ACKs too took host -> guest from 10.9 to 4.9 MB/s in one pair, with +11% guest
 * instructions per MiB).
 */
export const txPollFromEnv = (): boolean => process.env.RINGZERO_NET_TX_POLL === '1';
/** Looks in a row that find the transmit ring empty before notifications go back on. */
const TX_POLL_IDLE = 2;
/** A one-shot between the run loop's slices (VirtioMachine.sliceTimer). */
export interface SliceTimer { arm(): void; disarm(): void }

/** Configuration: mac[6], status u16, max_virtqueue_pairs u16 (§5.1.4). */
const CONFIG_BYTES = 10;

/** The features RINGZERO_NET_FEATURES can name (each offered only where the backend allows it). */
export const NET_FEATURE_NAMES = ['mrg_rxbuf', 'guest_csum', 'guest_tso', 'csum', 'host_tso'] as const;
export type NetFeatureName = (typeof NET_FEATURE_NAMES)[number];

/** Parse RINGZERO_NET_FEATURES: unset or empty is every feature, "none" none; an unknown name throws. */
export function parseNetFeatures(text: string | undefined): Set<NetFeatureName> {
  if (text === undefined || text.trim() === '') return new Set(NET_FEATURE_NAMES);
  if (text.trim() === 'none') return new Set();
  const out = new Set<NetFeatureName>();
  for (const word of text.split(',').map((w) => w.trim()).filter((w) => w !== '')) {
    if (!(NET_FEATURE_NAMES as readonly string[]).includes(word)) {
      throw new Error(`RINGZERO_NET_FEATURES: unknown feature '${word}' (known: ${NET_FEATURE_NAMES.join(', ')}, or none)`);
    }
    out.add(word as NetFeatureName);
  }
  return out;
}

/** Where frames go and come from: a TAP device, or a test double. Frames include the 12-byte header. */
export interface NetBackend {
  /** One frame into `into`; its length, or undefined when none is waiting. */
  read(into: Uint8Array): number | undefined;
  /** Send one frame; false when it was dropped. */
  write(frame: Uint8Array): boolean;
  /**
   * Send a frame of `length` bytes that `fill` writes into the buffer it is handed (false: send nothing, and the
   * call returns false): a backend that queues frames (the TAP's writer thread) hands over the frame's place in its
   * queue, so a transmitted frame is copied out of guest RAM once. `scratch` (at least `length` bytes) serves where
   * the backend needs a buffer of its own. Without it the device fills `scratch` and calls write().
   */
  writeWith?(length: number, fill: (into: Uint8Array) => boolean, scratch: Uint8Array): boolean;
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
  /** Length of the frame in rxFrame still waiting for receive buffers (mergeable buffers ran out), if any. */
  private rxHeld: number | undefined;
  private readonly txFrame = new Uint8Array(NET_HDR_BYTES + NET_MAX_RX_FRAME);
  /** The transmit chain being sent, for fillTx. */
  private txChain: DescriptorChain | undefined;
  /**
   * Copy the chain being sent into `into` (exactly its readable bytes) and make its header what the backend may see;
   * false when the frame is not to be sent (fixTransmitHeader).
   */
  private readonly fillTx = (into: Uint8Array): boolean => {
    gather(this.txChain!.readable, 0, into);
    return this.fixTransmitHeader(into);
  };
  private readonly numBuffers = new Uint8Array(2);
  private closed = false;
  /** RINGZERO_NET_TX_IRQ=defer/rx: transmit completions published whose interrupt (if the driver wants one) waits. */
  private txIrqHeld = false;
  /** The largest frame (header included) of the current transmit pass. */
  private txLargest = 0;
  /** RINGZERO_NET_TX_POLL: the timer between slices, whether the device is polling, and empty looks in a row. */
  private readonly txPollTimer: SliceTimer | undefined;
  private txPolling = false;
  private txIdlePolls = 0;

  /**
   * `features` narrows what is offered (default: RINGZERO_NET_FEATURES, else all); the offloads also need a backend
   * that can be told what to hand over and takes offloaded frames (setOffload: a TAP).
   */
  constructor(private readonly backend: NetBackend, readonly mac: Uint8Array, features: Set<NetFeatureName> = parseNetFeatures(process.env.RINGZERO_NET_FEATURES),
    /** When a transmit completion's interrupt goes (RINGZERO_NET_TX_IRQ above). */
    private readonly txIrq: TxIrq = txIrqFromEnv(),
    /** RINGZERO_NET_TX_POLL: the machine's timer between slices (soft engine), to poll the transmit ring with. */
    sliceTimer?: (callback: () => void) => SliceTimer) {
    super();
    this.txPollTimer = sliceTimer?.(() => this.pollTx());
    if (mac.length !== 6) throw new RangeError('a MAC address has 6 bytes');
    let f = bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS);
    if (features.has('mrg_rxbuf')) f |= bit(VIRTIO_NET_F_MRG_RXBUF);
    if (backend.setOffload) {
      // §5.1.3.1: GUEST_TSO4/6 need GUEST_CSUM, HOST_TSO4/6 need CSUM; never offer one without the other.
      if (features.has('guest_csum')) {
        f |= bit(VIRTIO_NET_F_GUEST_CSUM);
        if (features.has('guest_tso')) f |= bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO6);
      }
      if (features.has('csum')) {
        f |= bit(VIRTIO_NET_F_CSUM);
        if (features.has('host_tso')) f |= bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_HOST_TSO6);
      }
    }
    this.deviceFeatures = f;
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
    // A transmit interrupt held when the snapshot was taken is not in it: the queue's restored bookkeeping (the used
    // index last signalled) tells whether the driver still waits for one, once the machine is whole again.
    if (this.txIrq !== 'now') setImmediate(() => { if (!this.closed) this.transport?.usedBuffers(TX_QUEUE); });
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
    if (index === TX_QUEUE && this.txPollTimer && this.txIrq === 'now') {
      this.txLargest = 0;
      this.transmitPolled();
      if (this.txPolling) return; // (a kick while polling: the looks go on)
      if (this.txLargest > TX_IRQ_HOLD_MAX) {
        this.txPolling = true;
        this.txIdlePolls = 0;
        this.txPollTimer.arm();
        return;
      }
      // Small frames only (TCP ACKs of a guest that receives): notifications on again at once, as without polling,
      // since the host's next data waits for them.
      this.enableTxNotification();
    } else if (index === TX_QUEUE) {
      const sent = this.counters.txFrames;
      let published = 0;
      if (this.txIrq === 'rx') published = this.drain(TX_QUEUE, (chain) => this.transmit(chain), false);
      else if (this.txIrq === 'defer') this.transmitDeferred();
      else this.drain(TX_QUEUE, (chain) => this.transmit(chain));
      // What the host answers to a frame (a TCP ACK, the next data segments the ACK released) is usually queued on
      // the TAP by the time write(2) returns: the host's stack runs its receive path inside the write. Taking it
      // now, not when the event loop next runs the TAP's readiness callback (up to the run loop's 8 ms yield while
      // the vCPU is busy), keeps that delay out of both ends' round-trip times, which size their TSO segments.
      const received = this.counters.txFrames !== sent && this.receive();
      if (this.txIrq === 'rx') this.txIrqAfterReceive(published, received);
    } else if (index === RX_QUEUE) this.receive();
  }

  /**
   * RINGZERO_NET_TX_IRQ=rx, after a notify's transmit pass (`published` chains, their interrupt not sent) and the
   * host's answer taken: the transmit interrupt waits to the event loop's next turn when a receive interrupt went to
   * the driver meanwhile, else it goes now (with any still held).
   */
  private txIrqAfterReceive(published: number, received: boolean): void {
    if (published === 0 && !this.txIrqHeld) return;
    if (received) {
      if (!this.txIrqHeld) {
        this.txIrqHeld = true;
        setImmediate(() => this.releaseTxIrq());
      }
    } else {
      this.txIrqHeld = false;
      this.transport.usedBuffers(TX_QUEUE);
    }
  }

  /**
   * RINGZERO_NET_TX_IRQ=defer: transmit what is available and publish it; the interrupt for it goes with the next
   * notify's (which also covers what was held) or at the event loop's next turn.
   */
  private transmitDeferred(): void {
    this.txLargest = 0;
    const done = this.drain(TX_QUEUE, (chain) => this.transmit(chain), false);
    if (this.txIrqHeld || this.txLargest > TX_IRQ_HOLD_MAX) {
      this.txIrqHeld = false;
      this.transport.usedBuffers(TX_QUEUE);
    } else if (done > 0) {
      this.txIrqHeld = true;
      setImmediate(() => this.releaseTxIrq());
    }
  }

  /**
   * RINGZERO_NET_TX_POLL: transmit every available chain with the driver's notifications left off (§2.7.10; with
   * EVENT_IDX avail_event stays where it was, so the driver's next frames do not kick), publish and interrupt as
   * the driver asks (used_event), then take the host's answer as onNotify does.
   */
  private transmitPolled(): void {
    const q = this.transport.queue(TX_QUEUE);
    if (!q) return;
    q.disableNotification();
    const sent = this.counters.txFrames;
    let done = 0;
    // (bounded per pass, as drain(): the rest waits for the next look)
    for (let budget = q.size; budget > 0; budget--) {
      const chain = q.pop();
      if (!chain) break;
      q.push(chain.head, this.transmit(chain));
      done++;
    }
    if (done > 0) this.transport.usedBuffers(TX_QUEUE);
    if (this.counters.txFrames !== sent) this.receive();
  }

  /** Notifications on again, then a look for chains made available before the driver could see that (§2.7.10). */
  private enableTxNotification(): boolean {
    const q = this.transport.queue(TX_QUEUE);
    if (!q) return true;
    for (let rounds = 0; rounds < 4; rounds++) {
      q.enableNotification();
      if (q.pending() === 0) return true;
      this.transmitPolled();
    }
    this.transport.processLater(TX_QUEUE);
    return false;
  }

  /** RINGZERO_NET_TX_POLL: a look at the transmit ring between slices (the timer's callback). */
  private pollTx(): void {
    if (!this.txPolling || this.closed) return;
    try {
      const q = this.transport.queue(TX_QUEUE);
      if (!q) {
        this.txPolling = false;
        return;
      }
      if (q.pending() > 0) {
        this.txIdlePolls = 0;
        this.transmitPolled();
      } else if (++this.txIdlePolls >= TX_POLL_IDLE) {
        this.txPolling = false;
        this.enableTxNotification();
        return;
      }
      this.txPollTimer!.arm();
    } catch (error) {
      this.txPolling = false;
      this.transport.needsReset(error instanceof VirtqueueError ? error.message : `internal error: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** Send the held transmit interrupt, if still held (a later notify may have sent it; a reset drops it). */
  private releaseTxIrq(): void {
    if (!this.txIrqHeld || this.closed) return;
    this.txIrqHeld = false;
    this.transport.usedBuffers(TX_QUEUE);
  }

  onActivate(): void {
    this.applyOffloads();
    this.receive();
  }

  onReset(): void {
    this.txIrqHeld = false;
    this.txPolling = false;
    this.txPollTimer?.disarm();
    this.rxHeld = undefined; // a frame waiting for the old driver's buffers is lost, as on a NIC reset
    this.setBackendOffload(0);
  }

  /** Whether the driver negotiated `feature` (and, for dependent features, what it depends on, §5.1.3.1). */
  private has(feature: bigint): boolean {
    const n = this.transport?.negotiated ?? 0n;
    if ((n & bit(feature)) === 0n) return false;
    if (feature === VIRTIO_NET_F_GUEST_TSO4 || feature === VIRTIO_NET_F_GUEST_TSO6) return (n & bit(VIRTIO_NET_F_GUEST_CSUM)) !== 0n;
    if (feature === VIRTIO_NET_F_HOST_TSO4 || feature === VIRTIO_NET_F_HOST_TSO6) return (n & bit(VIRTIO_NET_F_CSUM)) !== 0n;
    return true;
  }

  /** Receive offloads the driver negotiated, as backend flags. */
  private get offloads(): number {
    if (!this.has(VIRTIO_NET_F_GUEST_CSUM)) return 0;
    return OFFLOAD_CSUM | (this.has(VIRTIO_NET_F_GUEST_TSO4) ? OFFLOAD_TSO4 : 0) | (this.has(VIRTIO_NET_F_GUEST_TSO6) ? OFFLOAD_TSO6 : 0);
  }

  private applyOffloads(): void {
    // Refused (an old kernel): fall back to the checksum alone, then to plain frames, which every driver takes
    // whatever it negotiated (fixReceiveHeader drops what the backend was not asked for).
    const wanted = this.offloads;
    if (this.setBackendOffload(wanted)) return;
    if (wanted !== OFFLOAD_CSUM && wanted !== 0 && this.setBackendOffload(OFFLOAD_CSUM)) return;
    this.setBackendOffload(0);
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
   * Make the receive header the guest may see (in place, in rxFrame; num_buffers 1); false when the frame needs
   * offload work the guest did not negotiate (it is dropped). Idempotent: a frame held for buffers passes again.
   */
  private fixReceiveHeader(): boolean {
    const h = this.rxFrame;
    const gso = h[1];
    if (gso !== VIRTIO_NET_HDR_GSO_NONE) {
      // §5.1.6.4.2: only the GSO types the driver negotiated (the ECN bit needs GUEST_ECN, not offered).
      const ok = (gso === VIRTIO_NET_HDR_GSO_TCPV4 && this.has(VIRTIO_NET_F_GUEST_TSO4))
        || (gso === VIRTIO_NET_HDR_GSO_TCPV6 && this.has(VIRTIO_NET_F_GUEST_TSO6));
      if (!ok) return false;
    }
    if (!this.has(VIRTIO_NET_F_GUEST_CSUM)) {
      // Without GUEST_CSUM the host's flags never reach the guest (§5.1.6.4.2); the TAP sets none then anyway.
      h.fill(0, 0, NET_HDR_BYTES);
    } else {
      h[0] &= VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
      if (gso === VIRTIO_NET_HDR_GSO_NONE) h.fill(0, 2, 6); // hdr_len, gso_size mean nothing without GSO
      if ((h[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) === 0) h.fill(0, 6, 10); // nor csum_start/offset without NEEDS_CSUM
    }
    h[10] = 1; // num_buffers = 1 (little-endian u16 at offset 10)
    h[11] = 0;
    return true;
  }

  close(): void {
    this.closed = true;
    this.txPolling = false;
    this.txPollTimer?.disarm();
    this.rxHeld = undefined;
    this.backend.close();
  }

  private transmit(chain: DescriptorChain): number {
    // §5.1.6.2: transmit buffers are device-readable only.
    if (chain.writable.length > 0) throw new VirtqueueError('virtio-net transmit buffer is device-writable');
    const length = chain.readableBytes;
    if (length < NET_HDR_BYTES + ETH_HEADER_BYTES || length > NET_HDR_BYTES + NET_MAX_RX_FRAME || !this.linkUp) {
      this.counters.txDropped++;
      return 0;
    }
    if (length > this.txLargest) this.txLargest = length;
    // The frame is copied out of guest RAM once, and the header checked and rewritten in that copy (fillTx), never
    // in guest RAM, which the guest may still change: straight into the backend's queue where it has one.
    this.txChain = chain;
    let sent: boolean;
    if (this.backend.writeWith) {
      sent = this.backend.writeWith(length, this.fillTx, this.txFrame);
    } else {
      const frame = this.txFrame.subarray(0, length);
      sent = this.fillTx(frame) && this.backend.write(frame);
    }
    this.txChain = undefined;
    if (sent) {
      this.counters.txFrames++;
      this.counters.txBytes += length - NET_HDR_BYTES;
    } else {
      this.counters.txDropped++;
    }
    return 0;
  }

  /**
   * Check the guest's header against what it negotiated (§5.1.6.2.1) and rewrite it, in place, to what the backend
   * may see; false when the frame is not to be sent (it asks for work that was not negotiated or its offsets lie).
   */
  private fixTransmitHeader(frame: Uint8Array): boolean {
    const frameBytes = frame.length - NET_HDR_BYTES;
    const h = new DataView(frame.buffer, frame.byteOffset, NET_HDR_BYTES);
    const needsCsum = (frame[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
    const gso = frame[1];
    if (needsCsum) {
      // Without CSUM the driver must not ask (§5.1.6.2.1): such a frame's checksum is incomplete, so it is dropped
      // rather than sent out wrong. The 16-bit checksum must lie inside the frame.
      if (!this.has(VIRTIO_NET_F_CSUM)) return false;
      if (h.getUint16(6, true) + h.getUint16(8, true) + 2 > frameBytes) return false;
    }
    if (gso !== VIRTIO_NET_HDR_GSO_NONE) {
      const ok = (gso === VIRTIO_NET_HDR_GSO_TCPV4 && this.has(VIRTIO_NET_F_HOST_TSO4))
        || (gso === VIRTIO_NET_HDR_GSO_TCPV6 && this.has(VIRTIO_NET_F_HOST_TSO6));
      // A TCP segment's checksum is always left partial (Linux's driver sends GSO only with NEEDS_CSUM), and each
      // piece has a size.
      if (!ok || !needsCsum || h.getUint16(4, true) === 0) return false;
    } else if (frameBytes > NET_MAX_FRAME) {
      return false;
    }
    // DATA_VALID (a driver MUST NOT set it) and unknown flags never reach the host: a host that believed
    // DATA_VALID would skip checking the guest's checksum.
    frame[0] = needsCsum ? VIRTIO_NET_HDR_F_NEEDS_CSUM : 0;
    if (gso === VIRTIO_NET_HDR_GSO_NONE) frame.fill(0, 2, 6);
    if (!needsCsum) frame.fill(0, 6, 10);
    frame[10] = 0; // num_buffers: unused on transmit (§5.1.6.2)
    frame[11] = 0;
    return true;
  }

  /** Move frames from the backend into posted receive chains while both exist; true when that interrupted the driver. */
  private receive(): boolean {
    const q = this.transport.queue(RX_QUEUE);
    if (!q || this.closed || !this.linkUp) return false;
    const mergeable = this.has(VIRTIO_NET_F_MRG_RXBUF);
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
      let n = this.rxHeld;
      this.rxHeld = undefined;
      if (n === undefined) n = this.backend.read(this.rxFrame);
      if (n === undefined) {
        this.backend.whenReadable(() => this.transport.processLater(RX_QUEUE));
        break;
      }
      if (n < NET_HDR_BYTES + ETH_HEADER_BYTES) continue; // nothing a guest could use
      if (!this.fixReceiveHeader()) {
        this.counters.rxDropped++; // no buffer used for it
        continue;
      }
      if (mergeable) {
        const outcome = this.receiveMerged(q, n);
        if (outcome === 'wait') {
          // Not enough buffers posted for this frame: keep it, and hear from the driver when it posts more.
          this.rxHeld = n;
          if (q.enableNotificationForMore()) break;
          continue;
        }
        if (outcome !== 'dropped') delivered++;
        continue;
      }
      const chain = q.pop()!;
      if (chain.readable.length > 0) throw new VirtqueueError('virtio-net receive buffer is device-readable');
      delivered++;
      if (chain.writableBytes < n) {
        // §5.1.6.3.1 has the driver post buffers big enough; one that is not loses this frame only.
        this.counters.rxDropped++;
        q.push(chain.head, 0);
        continue;
      }
      q.push(chain.head, scatter(chain.writable, 0, this.rxFrame.subarray(0, n)));
      this.counters.rxFrames++;
      this.counters.rxBytes += n - NET_HDR_BYTES;
    }
    return delivered > 0 && this.transport.usedBuffers(RX_QUEUE);
  }

  /**
   * Spread the `n` bytes in rxFrame (header included) over as many receive chains as they take (§5.1.6.4.2):
   * 'delivered'; 'wait' when the ring ran out first (the chains taken are back on the ring, unused); 'dropped'
   * when the frame can never fit the ring (nothing used); 'refused' when a chain was too short for the header
   * (the frame is dropped, the chains taken for it are used with length 0).
   */
  private receiveMerged(q: SplitQueue, n: number): 'delivered' | 'wait' | 'dropped' | 'refused' {
    const heads: number[] = [];
    const lengths: number[] = [];
    let first: DescriptorChain | undefined;
    let offset = 0;
    while (offset < n) {
      if (heads.length === q.size) {
        // Every buffer the ring can hold is not enough: waiting would stall receive for good.
        q.unpop(heads.length);
        this.counters.rxDropped++;
        return 'dropped';
      }
      if (q.pending() === 0) {
        q.unpop(heads.length);
        return 'wait';
      }
      const chain = q.pop()!;
      if (chain.readable.length > 0) throw new VirtqueueError('virtio-net receive buffer is device-readable');
      heads.push(chain.head);
      if (chain.writableBytes < NET_HDR_BYTES) {
        // §5.1.6.3.1: with MRG_RXBUF every buffer holds at least the header. This frame is lost; the chains
        // taken for it go back used and empty, which a driver discards as a short packet.
        for (const head of heads) q.push(head, 0, false);
        q.publishUsed();
        this.counters.rxDropped++;
        return 'refused';
      }
      const take = Math.min(chain.writableBytes, n - offset);
      scatter(chain.writable, 0, this.rxFrame.subarray(offset, offset + take));
      lengths.push(take);
      first ??= chain;
      offset += take;
    }
    // num_buffers (le16 at offset 10 of the header, in the first chain: at least 12 bytes long, checked above).
    this.numBuffers[0] = heads.length & 0xff;
    this.numBuffers[1] = heads.length >> 8;
    scatter(first!.writable, 10, this.numBuffers);
    // §5.1.6.4.2: the driver must see every buffer of the frame used together.
    for (let i = 0; i < heads.length; i++) q.push(heads[i], lengths[i], false);
    q.publishUsed();
    this.counters.rxFrames++;
    this.counters.rxBytes += n - NET_HDR_BYTES;
    return 'delivered';
  }
}
