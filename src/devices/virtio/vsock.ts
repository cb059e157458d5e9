// virtio-vsock (virtio 1.2 §5.10): stream sockets between the guest (its CID from the configuration) and
// the host (CID 2), with the host side as Firecracker exposes it (docs/vsock.md there):
//   host -> guest: connect to the Unix socket PATH and send "CONNECT <port>\n"; once the guest accepts, the
//                  device answers "OK <host port>\n" and the connection carries the stream both ways;
//   guest -> host: a guest connect to CID 2 port P becomes a connect to the Unix socket "PATH_P".
//
// Queues: rx (0, device -> driver packets), tx (1, driver -> device), event (2: only for a transport reset
// after migration, which never happens here, so its buffers are simply held). Every packet starts with the
// 44-byte struct virtio_vsock_hdr (§5.10.6). Flow control is the spec's credit scheme (§5.10.6.3): each
// side advertises buf_alloc (its receive buffer) and fwd_cnt (bytes it has consumed), and a sender keeps
// what it has in flight within the peer's buf_alloc. Here fwd_cnt counts bytes written out to the host's
// Unix socket, so a slow host reader stops the guest's sender; the guest's credit stops reads from the host
// socket (it is paused), so neither side's buffers grow without bound.
//
// The guest is not trusted: a packet from another CID, for an unknown connection, of an unknown type or
// operation, or that overruns the credit it was given, is answered with RST (or dropped when it is itself
// a RST), never an exception; only a malformed ring (device-writable buffers on tx) is DEVICE_NEEDS_RESET.
import fs from 'node:fs';
import net from 'node:net';
import { VirtqueueError, gather, scatter, type DescriptorChain } from './queue.ts';
import { VirtioDevice, readLe } from './device.ts';
import { ByteQueue } from '../../sys/byte-queue.ts';

export const VIRTIO_ID_VSOCK = 19;
export const VSOCK_RX_QUEUE = 0, VSOCK_TX_QUEUE = 1, VSOCK_EVENT_QUEUE = 2;
export const VSOCK_QUEUE_SIZE = 128;
export const VMADDR_CID_HOST = 2;
/** §5.10.4: CIDs 0-2 and 0xffffffff are reserved; the guest's CID is 32 bits in practice (Linux). */
export const MIN_GUEST_CID = 3, MAX_GUEST_CID = 0xfffffffe;
export const VSOCK_TYPE_STREAM = 1;
// Operations (§5.10.6).
export const OP_REQUEST = 1, OP_RESPONSE = 2, OP_RST = 3, OP_SHUTDOWN = 4, OP_RW = 5, OP_CREDIT_UPDATE = 6, OP_CREDIT_REQUEST = 7;
export const SHUTDOWN_RCV = 1, SHUTDOWN_SEND = 2;
export const VSOCK_HDR_BYTES = 44;
/** The largest payload either side puts in one packet (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE). */
export const VSOCK_MAX_PAYLOAD = 64 * 1024;
/** What the host advertises per connection as buf_alloc: the most guest data it buffers unwritten. */
export const HOST_BUF_ALLOC = 256 * 1024;
/** Host bytes read ahead per connection before its socket is paused. */
const HOST_READ_AHEAD = 64 * 1024;
export const MAX_CONNECTIONS = 1024;
/** Control packets waiting for rx buffers; beyond this, RSTs for unknown connections are not sent. */
const MAX_CONTROL_BACKLOG = 1024;
/** How long a host connect waits for the guest to accept (Firecracker uses 2 s). */
export const CONNECT_TIMEOUT_MS = 2000;
/** How long a connection the host closed waits for the guest's RST before it is forgotten. */
const CLOSE_TIMEOUT_MS = 10_000;
/** "CONNECT 4294967295\n" is 19 bytes; anything much longer is not a handshake. */
const MAX_HANDSHAKE_LINE = 64;
/** First port the host side uses for connections it starts (above the ports services usually listen on). */
const FIRST_HOST_PORT = 0x4000_0000;

export interface VsockOptions {
  cid: number;
  /** The Unix socket for host-initiated connections; guest-initiated ones go to `${path}_${port}`. */
  path: string;
  log?: (line: string) => void;
}

interface Packet {
  srcPort: number;
  dstPort: number;
  op: number;
  flags: number;
  /** Filled in when the packet is sent (a connection's current counters), for connection packets. */
  conn?: Connection;
}

type State = 'host-connecting' | 'guest-connecting' | 'established' | 'closing';

class Connection {
  state: State;
  /** Host bytes waiting for the guest. */
  /** Host socket bytes not yet sent to the guest. */
  pending = new ByteQueue();
  peerBufAlloc = 0;
  peerFwdCnt = 0;
  /** Bytes sent to the guest. */
  txCnt = 0;
  /** Bytes received from the guest. */
  rxCnt = 0;
  /** Of those, bytes written out to the host socket. */
  fwdCnt = 0;
  lastAdvertisedFwdCnt = 0;
  /** The host sent EOF: tell the guest (SHUTDOWN SEND) once the data before it is delivered. */
  hostEof = false;
  hostEofSent = false;
  /** The guest said it will receive nothing more. */
  guestStoppedReceiving = false;
  creditRequested = false;
  timer: NodeJS.Timeout | undefined;
  constructor(readonly guestPort: number, readonly hostPort: number, readonly socket: net.Socket, state: State) {
    this.state = state;
  }
  get key(): string { return `${this.hostPort}:${this.guestPort}`; }
  /** Bytes the guest can still take (§5.10.6.3.1). */
  get credit(): number {
    return this.peerBufAlloc - ((this.txCnt - this.peerFwdCnt) >>> 0);
  }
}

export class VirtioVsock extends VirtioDevice {
  readonly deviceType = VIRTIO_ID_VSOCK;
  readonly classCode = 0x02_80_00; // network controller, other
  readonly queueMaxSizes = [VSOCK_QUEUE_SIZE, VSOCK_QUEUE_SIZE, VSOCK_QUEUE_SIZE];
  readonly configSize = 8;
  readonly deviceFeatures = 0n; // stream sockets only: no feature bits (§5.10.3)
  readonly cid: number;
  readonly path: string;
  private readonly config = new Uint8Array(8);
  private readonly connections = new Map<string, Connection>();
  private control: Packet[] = [];
  private readonly server: net.Server;
  private nextHostPort = FIRST_HOST_PORT;
  private closed = false;
  private readonly log: (line: string) => void;
  /** Round-robin start among connections with data for the guest. */
  private dataCursor = 0;

  constructor(opts: VsockOptions) {
    super();
    if (!Number.isInteger(opts.cid) || opts.cid < MIN_GUEST_CID || opts.cid > MAX_GUEST_CID) throw new RangeError(`vsock CID ${opts.cid} is reserved or out of range`);
    this.cid = opts.cid;
    this.path = opts.path;
    this.log = opts.log ?? ((line) => process.stderr.write(`ringzero: ${line}\n`));
    new DataView(this.config.buffer).setUint32(0, opts.cid, true); // guest_cid u64; the high half stays 0
    // A socket file left by an earlier run is replaced; anything else at the path is refused by the CLI.
    try { if (fs.lstatSync(this.path).isSocket()) fs.unlinkSync(this.path); } catch { /* not there */ }
    this.server = net.createServer((socket) => this.hostConnected(socket));
    this.server.on('error', (error) => this.log(`vsock: cannot listen on ${this.path}: ${error.message}`));
    this.server.listen(this.path);
    this.server.unref();
  }

  /** Resolves once the host socket listens (for tests and callers that connect at once). */
  listening(): Promise<void> {
    return this.server.listening ? Promise.resolve() : new Promise((resolve, reject) => {
      this.server.once('listening', resolve);
      this.server.once('error', reject);
    });
  }

  /** Live connections (for tests and statistics). */
  get connectionCount(): number {
    return this.connections.size;
  }

  readConfig(offset: number, size: number): number {
    return readLe(this.config, offset, size);
  }

  onNotify(index: number): void {
    if (index === VSOCK_TX_QUEUE) this.drain(VSOCK_TX_QUEUE, (chain) => this.fromGuest(chain));
    else if (index === VSOCK_RX_QUEUE) this.toGuest();
    // Event queue buffers are kept for a transport reset event that this device never sends.
  }

  onActivate(): void {
    this.toGuest();
  }

  onReset(): void {
    // The driver is gone: every connection with it is too (the guest's sockets were reset with it).
    for (const c of [...this.connections.values()]) this.drop(c);
    this.control = [];
  }

  /**
   * Snapshot: the connections the guest knows of (their host sockets cannot follow the VM into another process) and
   * control packets not yet delivered. A restored device answers each saved connection with RST, so the guest's
   * sockets fail at once instead of waiting on a peer that is gone.
   */
  override saveDeviceState(): { connections: { guestPort: number; hostPort: number }[]; nextHostPort: number } {
    const connections = [...this.connections.values()].map((c) => ({ guestPort: c.guestPort, hostPort: c.hostPort }));
    // Control packets still queued for closed-out connections are resets or answers: replayed as RSTs below.
    for (const p of this.control) if (!connections.some((c) => c.hostPort === p.srcPort && c.guestPort === p.dstPort)) connections.push({ guestPort: p.dstPort, hostPort: p.srcPort });
    return { connections, nextHostPort: this.nextHostPort };
  }

  override restoreDeviceState(state: unknown): void {
    const s = state as { connections?: unknown; nextHostPort?: unknown } | undefined;
    const port = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;
    if (port(s?.nextHostPort) && (s!.nextHostPort as number) >= FIRST_HOST_PORT) this.nextHostPort = s!.nextHostPort as number;
    if (!Array.isArray(s?.connections)) return;
    for (const c of s!.connections as { guestPort?: unknown; hostPort?: unknown }[]) {
      if (port(c?.guestPort) && port(c?.hostPort)) this.sendControl({ srcPort: c.hostPort as number, dstPort: c.guestPort as number, op: OP_RST, flags: 0 });
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of [...this.connections.values()]) this.drop(c);
    this.server.close();
    try { if (fs.lstatSync(this.path).isSocket()) fs.unlinkSync(this.path); } catch { /* gone */ }
  }

  // ---- the host side ----

  private hostConnected(socket: net.Socket): void {
    if (this.closed) { socket.destroy(); return; }
    let line = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      line = Buffer.concat([line, chunk]);
      const nl = line.indexOf(0x0a);
      if (nl < 0) {
        if (line.length > MAX_HANDSHAKE_LINE) socket.destroy();
        return;
      }
      socket.off('data', onData);
      socket.pause();
      const match = /^CONNECT (\d{1,10})$/.exec(line.subarray(0, nl).toString('latin1').trimEnd());
      const port = match ? Number(match[1]) : NaN;
      if (!(port <= 0xffffffff) || this.connections.size >= MAX_CONNECTIONS) {
        socket.destroy();
        return;
      }
      const c = new Connection(port, this.allocateHostPort(), socket, 'host-connecting');
      this.connections.set(c.key, c);
      const rest = line.subarray(nl + 1);
      if (rest.length > 0) c.pending.push(Buffer.from(rest));
      this.watch(c);
      c.timer = setTimeout(() => { if (c.state === 'host-connecting') this.reset(c); }, CONNECT_TIMEOUT_MS);
      c.timer.unref();
      this.sendControl({ srcPort: c.hostPort, dstPort: c.guestPort, op: OP_REQUEST, flags: 0, conn: c });
    };
    socket.on('data', onData);
    socket.on('error', () => {});
  }

  private allocateHostPort(): number {
    for (;;) {
      const port = this.nextHostPort;
      this.nextHostPort = this.nextHostPort >= 0xfffffffe ? FIRST_HOST_PORT : this.nextHostPort + 1;
      if (![...this.connections.values()].some((c) => c.hostPort === port)) return port;
    }
  }

  /** Wire a connection's host socket: data toward the guest, EOF and close. */
  private watch(c: Connection): void {
    c.socket.on('data', (chunk: Buffer) => {
      if (c.guestStoppedReceiving || this.connections.get(c.key) !== c) return;
      c.pending.push(chunk);
      if (c.pending.length >= HOST_READ_AHEAD) c.socket.pause();
      this.transport?.processLater(VSOCK_RX_QUEUE);
    });
    c.socket.on('end', () => {
      c.hostEof = true;
      this.transport?.processLater(VSOCK_RX_QUEUE);
    });
    c.socket.on('close', () => {
      if (this.connections.get(c.key) !== c) return;
      if (c.state !== 'established') { this.reset(c); return; }
      // Deliver what is left, then a full SHUTDOWN; the guest answers with RST (or we give up later).
      c.hostEof = true;
      c.state = 'closing';
      c.timer = setTimeout(() => this.drop(c), CLOSE_TIMEOUT_MS);
      c.timer.unref();
      this.transport?.processLater(VSOCK_RX_QUEUE);
    });
    c.socket.on('error', () => {});
  }

  /** Forget a connection and close its host socket. */
  private drop(c: Connection): void {
    if (this.connections.get(c.key) === c) this.connections.delete(c.key);
    clearTimeout(c.timer);
    c.socket.destroy();
  }

  /** RST the guest's end and drop ours. */
  private reset(c: Connection): void {
    this.drop(c);
    this.sendControl({ srcPort: c.hostPort, dstPort: c.guestPort, op: OP_RST, flags: 0 });
  }

  // ---- packets from the guest ----

  private fromGuest(chain: DescriptorChain): number {
    if (chain.writable.length > 0) throw new VirtqueueError('virtio-vsock tx packet with device-writable buffers');
    if (chain.readableBytes < VSOCK_HDR_BYTES) return 0; // not a packet: dropped
    const raw = new Uint8Array(VSOCK_HDR_BYTES);
    gather(chain.readable, 0, raw);
    const h = new DataView(raw.buffer);
    const srcCid = h.getUint32(0, true) + h.getUint32(4, true) * 2 ** 32;
    const dstCid = h.getUint32(8, true) + h.getUint32(12, true) * 2 ** 32;
    const srcPort = h.getUint32(16, true), dstPort = h.getUint32(20, true);
    const len = h.getUint32(24, true), type = h.getUint16(28, true), op = h.getUint16(30, true);
    const flags = h.getUint32(32, true), bufAlloc = h.getUint32(36, true), fwdCnt = h.getUint32(40, true);
    // A packet claiming another source is spoofed: dropped without an answer (there is nobody to answer).
    if (srcCid !== this.cid) return 0;
    const rst = () => { if (op !== OP_RST) this.sendControl({ srcPort: dstPort, dstPort: srcPort, op: OP_RST, flags: 0 }); };
    if (dstCid !== VMADDR_CID_HOST || type !== VSOCK_TYPE_STREAM) { rst(); return 0; }
    const c = this.connections.get(`${dstPort}:${srcPort}`);
    // A length the chain does not hold (or beyond any packet's): the stream cannot be trusted any more.
    if (len > VSOCK_MAX_PAYLOAD || len > chain.readableBytes - VSOCK_HDR_BYTES) {
      if (c) this.reset(c);
      else rst();
      return 0;
    }
    if (op === OP_REQUEST) {
      if (c) { this.reset(c); return 0; } // a second REQUEST for a live pair: the guest lost track of it
      this.guestConnect(srcPort, dstPort, bufAlloc, fwdCnt);
      return 0;
    }
    if (!c) { rst(); return 0; }
    c.peerBufAlloc = bufAlloc;
    c.peerFwdCnt = fwdCnt;
    c.creditRequested = false;
    switch (op) {
      case OP_RESPONSE:
        if (c.state !== 'host-connecting') { this.reset(c); break; }
        clearTimeout(c.timer);
        c.state = 'established';
        c.socket.write(`OK ${c.hostPort}\n`);
        c.socket.resume();
        break;
      case OP_RST:
        this.drop(c);
        break;
      case OP_SHUTDOWN:
        if (flags & SHUTDOWN_RCV) {
          c.guestStoppedReceiving = true;
          c.pending = new ByteQueue();
          c.socket.resume(); // read and discard, so the host writer is not stuck
        }
        if (flags & SHUTDOWN_SEND) c.socket.end();
        if ((flags & (SHUTDOWN_RCV | SHUTDOWN_SEND)) === (SHUTDOWN_RCV | SHUTDOWN_SEND)) {
          // The guest closed its socket and waits for our RST (Linux's virtio_transport_close).
          if (this.connections.get(c.key) === c) this.connections.delete(c.key);
          clearTimeout(c.timer);
          c.socket.end(); // written data still goes out; the socket then closes
          this.sendControl({ srcPort: c.hostPort, dstPort: c.guestPort, op: OP_RST, flags: 0 });
        }
        break;
      case OP_RW: {
        if (c.state !== 'established' && c.state !== 'closing') { this.reset(c); break; }
        // §5.10.6.3.1: the guest must stay within the buf_alloc we advertised.
        if (((c.rxCnt - c.fwdCnt) >>> 0) + len > HOST_BUF_ALLOC) { this.reset(c); break; }
        if (len === 0) break;
        const data = Buffer.alloc(len);
        gather(chain.readable, VSOCK_HDR_BYTES, data);
        c.rxCnt = (c.rxCnt + len) >>> 0;
        if (c.state === 'closing' || c.socket.destroyed || !c.socket.writable) {
          c.fwdCnt = (c.fwdCnt + len) >>> 0; // the host is gone: consumed and discarded
          break;
        }
        c.socket.write(data, () => {
          c.fwdCnt = (c.fwdCnt + len) >>> 0;
          // Tell the guest about freed space once a quarter of the buffer has drained since the last word.
          if (((c.fwdCnt - c.lastAdvertisedFwdCnt) >>> 0) >= HOST_BUF_ALLOC / 4 && this.connections.get(c.key) === c) {
            this.sendControl({ srcPort: c.hostPort, dstPort: c.guestPort, op: OP_CREDIT_UPDATE, flags: 0, conn: c });
          }
        });
        break;
      }
      case OP_CREDIT_UPDATE:
        break; // the counters above are the update; data may flow again
      case OP_CREDIT_REQUEST:
        this.sendControl({ srcPort: c.hostPort, dstPort: c.guestPort, op: OP_CREDIT_UPDATE, flags: 0, conn: c });
        break;
      default:
        this.reset(c);
    }
    this.transport.processLater(VSOCK_RX_QUEUE);
    return 0;
  }

  /** The guest connects to host port `hostPort`: connect to the Unix socket PATH_<port>. */
  private guestConnect(guestPort: number, hostPort: number, bufAlloc: number, fwdCnt: number): void {
    if (this.connections.size >= MAX_CONNECTIONS) {
      this.sendControl({ srcPort: hostPort, dstPort: guestPort, op: OP_RST, flags: 0 });
      return;
    }
    const socket = net.createConnection(`${this.path}_${hostPort}`);
    const c = new Connection(guestPort, hostPort, socket, 'guest-connecting');
    c.peerBufAlloc = bufAlloc;
    c.peerFwdCnt = fwdCnt;
    this.connections.set(c.key, c);
    socket.once('connect', () => {
      if (this.connections.get(c.key) !== c) return;
      c.state = 'established';
      this.sendControl({ srcPort: hostPort, dstPort: guestPort, op: OP_RESPONSE, flags: 0, conn: c });
    });
    this.watch(c);
  }

  // ---- packets to the guest ----

  private sendControl(p: Packet): void {
    if (this.closed) return;
    // A guest that posts no rx buffers while provoking answers gets no more than the backlog.
    if (this.control.length >= MAX_CONTROL_BACKLOG && p.op === OP_RST) return;
    this.control.push(p);
    this.transport?.processLater(VSOCK_RX_QUEUE);
  }

  /** Fill posted rx buffers: control packets first, then data round-robin over connections. */
  private toGuest(): void {
    const q = this.transport.queue(VSOCK_RX_QUEUE);
    if (!q || this.closed) return;
    let sent = 0;
    let budget = 4 * q.size;
    while (budget-- > 0) {
      // Buffers first: choosing a data packet has effects (credit, end of stream) that must not be lost.
      if (q.pending() === 0) {
        q.enableNotification();
        if (q.pending() === 0) break;
      }
      const next = this.control.length > 0 ? this.control[0] : this.nextData();
      if (!next) break;
      const chain = q.pop()!;
      if (chain.readable.length > 0) throw new VirtqueueError('virtio-vsock rx buffer is device-readable');
      if (chain.writableBytes < VSOCK_HDR_BYTES) throw new VirtqueueError('virtio-vsock rx buffer smaller than a packet header');
      if (next === this.control[0]) this.control.shift();
      q.push(chain.head, this.write(chain, next));
      sent++;
    }
    if (budget < 0) this.transport.processLater(VSOCK_RX_QUEUE);
    if (sent > 0) this.transport.usedBuffers(VSOCK_RX_QUEUE);
  }

  /** The next data (or end-of-data) packet some connection has for the guest. */
  private nextData(): Packet | undefined {
    const all = [...this.connections.values()];
    for (let i = 0; i < all.length; i++) {
      const c = all[(this.dataCursor + i) % all.length];
      if (c.state !== 'established' && c.state !== 'closing') continue;
      if (c.pending.length > 0 && !c.guestStoppedReceiving) {
        if (c.credit > 0) {
          this.dataCursor = (this.dataCursor + i + 1) % all.length;
          return { srcPort: c.hostPort, dstPort: c.guestPort, op: OP_RW, flags: 0, conn: c };
        }
        if (!c.creditRequested) {
          c.creditRequested = true;
          return { srcPort: c.hostPort, dstPort: c.guestPort, op: OP_CREDIT_REQUEST, flags: 0, conn: c };
        }
        continue;
      }
      if (c.hostEof && !c.hostEofSent && c.pending.length === 0) {
        c.hostEofSent = true;
        const flags = c.state === 'closing' ? SHUTDOWN_SEND | SHUTDOWN_RCV : SHUTDOWN_SEND;
        return { srcPort: c.hostPort, dstPort: c.guestPort, op: OP_SHUTDOWN, flags, conn: c };
      }
    }
    return undefined;
  }

  /** Write packet `p` into `chain`; returns the bytes written. */
  private write(chain: DescriptorChain, p: Packet): number {
    const c = p.conn;
    let payload: Buffer | undefined;
    if (p.op === OP_RW && c) {
      const room = Math.min(chain.writableBytes - VSOCK_HDR_BYTES, VSOCK_MAX_PAYLOAD, c.credit, c.pending.length);
      payload = c.pending.take(Math.max(0, room));
      c.txCnt = (c.txCnt + payload.length) >>> 0;
      if (c.pending.length < HOST_READ_AHEAD / 2 && c.socket.isPaused() && c.state === 'established') c.socket.resume();
    }
    const raw = new Uint8Array(VSOCK_HDR_BYTES);
    const h = new DataView(raw.buffer);
    h.setUint32(0, VMADDR_CID_HOST, true);
    h.setUint32(8, this.cid, true);
    h.setUint32(16, p.srcPort, true);
    h.setUint32(20, p.dstPort, true);
    h.setUint32(24, payload?.length ?? 0, true);
    h.setUint16(28, VSOCK_TYPE_STREAM, true);
    h.setUint16(30, p.op, true);
    h.setUint32(32, p.flags, true);
    h.setUint32(36, c ? HOST_BUF_ALLOC : 0, true);
    h.setUint32(40, c ? c.fwdCnt : 0, true);
    if (c) c.lastAdvertisedFwdCnt = c.fwdCnt;
    let written = scatter(chain.writable, 0, raw);
    if (payload) written += scatter(chain.writable, VSOCK_HDR_BYTES, payload);
    return written;
  }
}
