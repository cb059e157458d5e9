// virtio-vsock through the Linux-like test driver, against real Unix sockets on the host side (Firecracker's
// scheme): host-initiated connections with the CONNECT handshake, guest-initiated ones to PATH_<port>, data
// both ways, credit-based flow control, shutdown and reset, and hostile packets. busybox in the default guest
// has no AF_VSOCK tool, so this file is where the stream protocol is tested.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestBench } from './support/virtio-driver.ts';
import {
  VirtioVsock, VSOCK_RX_QUEUE, VSOCK_TX_QUEUE, VSOCK_HDR_BYTES, OP_REQUEST, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW,
  OP_CREDIT_UPDATE, OP_CREDIT_REQUEST, SHUTDOWN_RCV, SHUTDOWN_SEND, HOST_BUF_ALLOC, VSOCK_MAX_PAYLOAD,
} from '../src/devices/virtio/vsock.ts';

const dir = mkdtempSync(join(tmpdir(), 'ringzero-vsock-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const CID = 42;
const NEEDS_RESET = 0x40;
const RX_BUF = 4096;
let seq = 0;

interface Pkt { srcCid: number; dstCid: number; srcPort: number; dstPort: number; len: number; type: number; op: number; flags: number; bufAlloc: number; fwdCnt: number; data: Buffer }

/** A driver for the device: posts rx buffers, sends packets, reads what the device sent. */
class Guest {
  readonly b: TestBench;
  readonly dev: VirtioVsock;
  readonly path: string;
  private readonly rx: number[] = [];
  inbox: Pkt[] = [];
  constructor(rxBuffers = 32) {
    this.path = join(dir, `v${seq++}.sock`);
    this.dev = new VirtioVsock({ cid: CID, path: this.path, log: () => {} });
    this.b = new TestBench(this.dev);
    this.b.bringUp({ msix: true });
    for (let i = 0; i < rxBuffers; i++) this.rx.push(this.b.alloc(VSOCK_HDR_BYTES + RX_BUF));
    // One descriptor per chain from slot 0 up: head i is buffer i.
    for (let i = 0; i < rxBuffers; i++) this.b.addChain(VSOCK_RX_QUEUE, [[this.rx[i], VSOCK_HDR_BYTES + RX_BUF, true]], i === rxBuffers - 1);
  }
  send(p: Partial<Pkt> & { op: number }, data: Buffer = Buffer.alloc(0)): void {
    const raw = Buffer.alloc(VSOCK_HDR_BYTES + data.length);
    raw.writeBigUInt64LE(BigInt(p.srcCid ?? CID), 0);
    raw.writeBigUInt64LE(BigInt(p.dstCid ?? 2), 8);
    raw.writeUInt32LE(p.srcPort ?? 0, 16);
    raw.writeUInt32LE(p.dstPort ?? 0, 20);
    raw.writeUInt32LE(p.len ?? data.length, 24);
    raw.writeUInt16LE(p.type ?? 1, 28);
    raw.writeUInt16LE(p.op, 30);
    raw.writeUInt32LE(p.flags ?? 0, 32);
    raw.writeUInt32LE(p.bufAlloc ?? 65536, 36);
    raw.writeUInt32LE(p.fwdCnt ?? 0, 40);
    data.copy(raw, VSOCK_HDR_BYTES);
    const at = this.b.alloc(raw.length);
    this.b.mem.write(at, raw);
    this.b.addChain(VSOCK_TX_QUEUE, [[at, raw.length, false]]);
    this.b.used(VSOCK_TX_QUEUE);
  }
  /** Collect packets from the used ring, reposting each buffer. */
  collect(): void {
    for (const u of this.b.used(VSOCK_RX_QUEUE)) {
      const at = this.rx[u.id % this.rx.length];
      const raw = Buffer.from(this.b.mem.read(at, u.len));
      this.inbox.push({
        srcCid: Number(raw.readBigUInt64LE(0)), dstCid: Number(raw.readBigUInt64LE(8)), srcPort: raw.readUInt32LE(16),
        dstPort: raw.readUInt32LE(20), len: raw.readUInt32LE(24), type: raw.readUInt16LE(28), op: raw.readUInt16LE(30),
        flags: raw.readUInt32LE(32), bufAlloc: raw.readUInt32LE(36), fwdCnt: raw.readUInt32LE(40), data: raw.subarray(VSOCK_HDR_BYTES),
      });
      this.b.addChain(VSOCK_RX_QUEUE, [[at, VSOCK_HDR_BYTES + RX_BUF, true]], false);
    }
    this.b.kick(VSOCK_RX_QUEUE);
  }
  async next(what: string, match: (p: Pkt) => boolean = () => true): Promise<Pkt> {
    const deadline = Date.now() + 3000;
    for (;;) {
      this.collect();
      const i = this.inbox.findIndex(match);
      if (i >= 0) return this.inbox.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`no ${what} (have ops ${this.inbox.map((p) => p.op).join(',')})`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  close(): void { this.b.close(); }
}

function readUntil(socket: net.Socket, predicate: (all: Buffer) => boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let all = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error(`host socket got only ${JSON.stringify(all.toString('latin1').slice(0, 80))}`)), 3000);
    const on = (d: Buffer) => {
      all = Buffer.concat([all, d]);
      if (predicate(all)) { clearTimeout(timer); socket.off('data', on); resolve(all); }
    };
    socket.on('data', on);
  });
}

async function connectFromHost(g: Guest, port: number): Promise<{ socket: net.Socket; hostPort: number }> {
  await g.dev.listening();
  const socket = net.createConnection(g.path);
  await new Promise((r) => socket.once('connect', r));
  const ok = readUntil(socket, (all) => all.includes(0x0a));
  socket.write(`CONNECT ${port}\n`);
  const req = await g.next('REQUEST', (p) => p.op === OP_REQUEST);
  assert.equal(req.dstCid, CID);
  assert.equal(req.srcCid, 2);
  assert.equal(req.dstPort, port);
  assert.equal(req.bufAlloc, HOST_BUF_ALLOC);
  g.send({ op: OP_RESPONSE, srcPort: port, dstPort: req.srcPort });
  const line = (await ok).toString('latin1');
  assert.equal(line, `OK ${req.srcPort}\n`);
  return { socket, hostPort: req.srcPort };
}

test('configuration: the guest CID; reserved CIDs are refused', () => {
  const g = new Guest();
  try {
    assert.equal(g.b.mmio.read(g.b.caps.device, 4), CID);
    assert.equal(g.b.mmio.read(g.b.caps.device + 4, 4), 0);
    assert.equal(g.b.r(0x12, 2), 3, 'rx, tx and event queues');
  } finally { g.close(); }
  for (const cid of [0, 1, 2, 2 ** 32 - 1, 1.5]) assert.throws(() => new VirtioVsock({ cid, path: join(dir, 'x.sock') }), RangeError);
});

test('host-initiated: CONNECT handshake, data both ways, guest close answered with RST', async () => {
  const g = new Guest();
  try {
    const { socket, hostPort } = await connectFromHost(g, 5000);
    socket.write('hello guest');
    const rw = await g.next('RW from the host', (p) => p.op === OP_RW);
    assert.equal(rw.data.toString(), 'hello guest');
    assert.equal(rw.srcPort, hostPort);
    assert.equal(rw.dstPort, 5000);
    const got = readUntil(socket, (all) => all.toString() === 'hello host');
    g.send({ op: OP_RW, srcPort: 5000, dstPort: hostPort }, Buffer.from('hello host'));
    await got;
    // Guest closes: SHUTDOWN with both flags; the device answers RST and the host sees EOF.
    const ended = new Promise((r) => socket.once('end', r));
    g.send({ op: OP_SHUTDOWN, srcPort: 5000, dstPort: hostPort, flags: SHUTDOWN_RCV | SHUTDOWN_SEND });
    await g.next('RST', (p) => p.op === OP_RST && p.dstPort === 5000);
    await ended;
    assert.equal(g.dev.connectionCount, 0);
    socket.destroy();
  } finally { g.close(); }
  assert.equal(existsSync(g.path), false, 'the listening socket is removed on close');
});

test('host-initiated: a guest RST fails the connect; bad handshakes are closed', async () => {
  const g = new Guest();
  try {
    await g.dev.listening();
    const refused = net.createConnection(g.path);
    const closed = new Promise((r) => refused.once('close', r));
    refused.write('CONNECT 7\n');
    const req = await g.next('REQUEST', (p) => p.op === OP_REQUEST);
    g.send({ op: OP_RST, srcPort: 7, dstPort: req.srcPort });
    await closed;
    for (const line of ['HELLO\n', 'CONNECT -1\n', 'CONNECT 99999999999\n', `CONNECT ${'9'.repeat(80)}`]) {
      const s = net.createConnection(g.path);
      const done = new Promise((r) => s.once('close', r));
      s.on('error', () => {});
      s.write(line);
      await done;
    }
    assert.equal(g.dev.connectionCount, 0);
  } finally { g.close(); }
});

test('guest-initiated: connect to PATH_<port>, data both ways, host close becomes SHUTDOWN then RST', async () => {
  const g = new Guest();
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(`${g.path}_6000`, r));
  try {
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    g.send({ op: OP_REQUEST, srcPort: 1234, dstPort: 6000 });
    const resp = await g.next('RESPONSE', (p) => p.op === OP_RESPONSE);
    assert.deepEqual([resp.srcPort, resp.dstPort], [6000, 1234]);
    const host = await accepted;
    const got = readUntil(host, (all) => all.toString() === 'ping');
    g.send({ op: OP_RW, srcPort: 1234, dstPort: 6000 }, Buffer.from('ping'));
    await got;
    host.end('pong');
    const rw = await g.next('RW', (p) => p.op === OP_RW);
    assert.equal(rw.data.toString(), 'pong');
    const shut = await g.next('SHUTDOWN', (p) => p.op === OP_SHUTDOWN);
    assert.ok(shut.flags & SHUTDOWN_SEND, 'the host will send nothing more');
    g.send({ op: OP_RST, srcPort: 1234, dstPort: 6000 });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(g.dev.connectionCount, 0);
    // Nobody listens on port 6001: the guest's connect is refused with RST.
    g.send({ op: OP_REQUEST, srcPort: 1235, dstPort: 6001 });
    const rst = await g.next('RST for a closed port', (p) => p.op === OP_RST);
    assert.deepEqual([rst.srcPort, rst.dstPort], [6001, 1235]);
  } finally { g.close(); server.close(); }
});

test('credit: the host sends no more than the guest\'s buf_alloc allows until fwd_cnt moves', async () => {
  const g = new Guest();
  try {
    const { socket, hostPort } = await connectFromHost(g, 5001);
    // The RESPONSE above advertised buf_alloc 65536; shrink it to 1000 with a credit update.
    g.send({ op: OP_CREDIT_UPDATE, srcPort: 5001, dstPort: hostPort, bufAlloc: 1000, fwdCnt: 0 });
    socket.write(Buffer.alloc(3000, 0x61));
    let got = 0;
    while (got < 1000) got += (await g.next('RW', (p) => p.op === OP_RW)).data.length;
    assert.equal(got, 1000);
    const request = await g.next('CREDIT_REQUEST once out of credit', (p) => p.op === OP_CREDIT_REQUEST);
    assert.equal(request.dstPort, 5001);
    await new Promise((r) => setTimeout(r, 30));
    g.collect();
    assert.equal(g.inbox.filter((p) => p.op === OP_RW).length, 0, 'nothing beyond the credit');
    g.send({ op: OP_CREDIT_UPDATE, srcPort: 5001, dstPort: hostPort, bufAlloc: 1000, fwdCnt: 1000 });
    while (got < 2000) got += (await g.next('RW after the update', (p) => p.op === OP_RW)).data.length;
    assert.equal(got, 2000);
    // A CREDIT_REQUEST from the guest is answered with the host's counters.
    g.send({ op: OP_RW, srcPort: 5001, dstPort: hostPort, bufAlloc: 1000, fwdCnt: 1000 }, Buffer.alloc(500));
    await new Promise((r) => setTimeout(r, 20));
    g.send({ op: OP_CREDIT_REQUEST, srcPort: 5001, dstPort: hostPort, bufAlloc: 1000, fwdCnt: 1000 });
    const update = await g.next('CREDIT_UPDATE', (p) => p.op === OP_CREDIT_UPDATE);
    assert.equal(update.bufAlloc, HOST_BUF_ALLOC);
    assert.equal(update.fwdCnt, 500, 'the 500 bytes were written to the host socket');
    socket.destroy();
  } finally { g.close(); }
});

test('hostile packets: wrong CID, unknown connection or op, credit overrun, bad lengths, bad rings', async () => {
  const g = new Guest();
  try {
    const { socket, hostPort } = await connectFromHost(g, 5002);
    socket.on('error', () => {});
    const quiet = async () => { await new Promise((r) => setTimeout(r, 20)); g.collect(); const n = g.inbox.length; g.inbox = []; return n; };
    g.send({ op: OP_RW, srcCid: 7, srcPort: 5002, dstPort: hostPort }, Buffer.from('spoof'));
    assert.equal(await quiet(), 0, 'a spoofed source CID is dropped silently');
    g.send({ op: OP_RW, srcPort: 9, dstPort: 9 }, Buffer.from('x'));
    assert.equal((await g.next('RST for an unknown connection', (p) => p.op === OP_RST)).dstPort, 9);
    g.send({ op: OP_RST, srcPort: 9, dstPort: 9 });
    assert.equal(await quiet(), 0, 'a RST is never answered');
    g.send({ op: OP_REQUEST, dstCid: 3, srcPort: 10, dstPort: 10 });
    await g.next('RST for another CID', (p) => p.op === OP_RST && p.dstPort === 10);
    g.send({ op: OP_REQUEST, type: 2, srcPort: 11, dstPort: 11 });
    await g.next('RST for SEQPACKET', (p) => p.op === OP_RST && p.dstPort === 11);
    g.send({ op: OP_RW, srcPort: 5002, dstPort: hostPort, len: 5000 }, Buffer.from('short'));
    await g.next('RST for a length beyond the buffer', (p) => p.op === OP_RST && p.dstPort === 5002);
    assert.equal(g.dev.connectionCount, 0, 'that connection is gone');

    const second = await connectFromHost(g, 5003);
    second.socket.on('error', () => {});
    g.send({ op: 99, srcPort: 5003, dstPort: second.hostPort });
    await g.next('RST for an unknown op', (p) => p.op === OP_RST && p.dstPort === 5003);

    // Credit overrun: more than HOST_BUF_ALLOC in flight before the host socket could take any of it.
    const third = await connectFromHost(g, 5004);
    third.socket.on('error', () => {});
    third.socket.pause();
    const chunk = Buffer.alloc(VSOCK_MAX_PAYLOAD, 1);
    for (let i = 0; i <= HOST_BUF_ALLOC / VSOCK_MAX_PAYLOAD; i++) g.send({ op: OP_RW, srcPort: 5004, dstPort: third.hostPort }, chunk);
    await g.next('RST for a credit overrun', (p) => p.op === OP_RST && p.dstPort === 5004);
    g.send({ op: OP_RW, srcPort: 5004, dstPort: third.hostPort, len: VSOCK_MAX_PAYLOAD + 1 }, Buffer.alloc(VSOCK_MAX_PAYLOAD + 1));
    assert.equal(g.b.status & NEEDS_RESET, 0, 'protocol errors are not a device reset');

    // A header shorter than 44 bytes is dropped; a device-writable tx buffer needs a reset.
    const at = g.b.alloc(16);
    g.b.addChain(VSOCK_TX_QUEUE, [[at, 16, false]]);
    assert.equal(g.b.used(VSOCK_TX_QUEUE).length, 1);
    g.b.addChain(VSOCK_TX_QUEUE, [[at, 64, true]]);
    assert.ok(g.b.status & NEEDS_RESET, 'device-writable tx buffer');
    assert.equal(g.dev.connectionCount, 0, 'no connection left half-open by the reset');
    for (const s of [socket, second.socket, third.socket]) s.destroy();
  } finally { g.close(); }
});

test('hostile rx buffers: device-readable or too small for a header need a reset; the device recovers', async () => {
  const path = join(dir, 'rx.sock');
  const dev = new VirtioVsock({ cid: CID, path, log: () => {} });
  const b = new TestBench(dev);
  try {
    for (const [len, writable] of [[VSOCK_HDR_BYTES + 100, false], [VSOCK_HDR_BYTES - 1, true]] as const) {
      b.bringUp({ msix: true });
      const at = b.alloc(len);
      b.addChain(VSOCK_RX_QUEUE, [[at, len, writable]]);
      // Give the device something to send: a packet for an unknown connection provokes a RST.
      const raw = Buffer.alloc(VSOCK_HDR_BYTES);
      raw.writeUInt32LE(CID, 0); raw.writeUInt32LE(2, 8); raw.writeUInt16LE(1, 28); raw.writeUInt16LE(OP_RW, 30);
      const tx = b.alloc(raw.length);
      b.mem.write(tx, raw);
      b.addChain(VSOCK_TX_QUEUE, [[tx, raw.length, false]]);
      await new Promise((r) => setTimeout(r, 10));
      assert.ok(b.status & NEEDS_RESET, `rx buffer of ${len} bytes, writable ${writable}`);
    }
  } finally { b.close(); }
});
