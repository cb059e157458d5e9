// A TAP's writes on a thread of their own (issue 5: "device work off the vCPU's path where it pays"): the VMM's
// default since session 29, RINGZERO_NET_TX_THREAD=0 writes on the device's thread as before.
//
// A write(2) to a TAP is where the host's network stack takes the frame: for a frame addressed to the host (bench/io's
// guest -> host TCP) the host's whole receive path, TCP included, runs inside that call (tun_get_user ->
// netif_receive_skb). On the soft engine the virtio-net transmit ran it on the vCPU's thread: 12.7% of the main
// thread's CPU-profile samples during bench/io's tcpout (session 27), where QEMU does its TAP writes from its main
// loop, off the vCPU thread. Here the device copies each frame into a ring in shared memory (out of guest RAM straight into its
// place in the ring, writeWith) and a worker thread writes it, in order; the guest's buffer is free (and its
// completion published) as soon as the copy is made.
//
// Small frames go straight to the fd when nothing is queued (`directMax`): the answer to a TCP ACK the guest sends
// (the data segments it releases) is usually on the TAP when the write returns, which the device takes in the same
// notify (net.ts onNotify) and both ends' TCP size their segments by the round trip they see. A small frame written
// while larger ones are still queued waits behind them, so frames leave in the order the guest sent them.
//
// Why on by default (session 29, bench/net-passes: two VMMs, one with RINGZERO_NET_TX_THREAD=0, taking turns pass
// by pass at host load 15-23): guest -> host faster in 16 of 17 pairs (16-32 MiB passes; MB/s with the thread /
// without, in one run: 6.3/4.2, 44.7/16.7, 75.8/29.0, 124.0/27.2, 75.2/28.3, 87.9/61.8, 43.6/27.6, 91.0/42.1,
// 70.8/45.5), the guest thread's run-queue wait 1.3-3.4x shorter (the host's receive inside write(2) wakes the
// receiving process from the vCPU's thread, which the scheduler then tends to preempt) and its CPU lower in 9 of 14
// warm passes; the guest's instructions and the card's interrupts per MiB about the same. Host -> guest (ACKs only,
// written at once): 9 of 15 faster. Session 27's quiet-host runs (two each way) were mixed: on a quiet host the
// vCPU's thread has a core either way.
//
// The ring: RING_BYTES of records [u32 length][frame], each 8-aligned, that never straddle the ring's end (a length
// of PAD sends the reader to the next lap). The producer's and the consumer's byte counters run modulo 2^32 (the
// ring's size divides it), so `written - consumed` is what is queued.
import fs from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { spawnModuleWorker, siblingModule } from '../kvm/spawn.ts';

/** Ring bytes: 32 of the largest frames (64 KiB GSO segments plus the header). */
const RING_BYTES = 1 << 21;
/** A record length that sends the reader to the ring's next lap. */
export const PAD = 0xffffffff;
/** Int32 slots of the control words (before the ring, in the same SharedArrayBuffer). */
export const WRITTEN = 0, CONSUMED = 1, STOP = 2, STOPPED = 3;
export const CONTROL_BYTES = 16;
export interface TapWriterData { sab: SharedArrayBuffer; fd: number; size: number }

export class TapWriter {
  private readonly sab = new SharedArrayBuffer(CONTROL_BYTES + RING_BYTES);
  private readonly ctl = new Int32Array(this.sab, 0, 4);
  private readonly ring = new Uint8Array(this.sab, CONTROL_BYTES, RING_BYTES);
  private readonly view = new DataView(this.sab, CONTROL_BYTES, RING_BYTES);
  private readonly worker: Worker;
  private written = 0;
  private stopped = false;
  /** Frames queued for the thread, and those written at once (for tests and stats). */
  readonly counters = { queued: 0, direct: 0 };

  /** `fd`: the TAP's (owned by the caller, which must stop() this before closing it); `directMax`: see the top. */
  constructor(private readonly fd: number, private readonly directMax = 256) {
    const data: TapWriterData = { sab: this.sab, fd, size: RING_BYTES };
    this.worker = spawnModuleWorker(siblingModule(import.meta.url, 'tap-writer-worker'), data);
    this.worker.unref();
  }

  /** Bytes queued and not yet written by the thread. */
  private queued(): number {
    return (this.written - (Atomics.load(this.ctl, CONSUMED) >>> 0)) >>> 0;
  }

  /** Wait (briefly) until `bytes` more fit in the ring. */
  private waitForRoom(bytes: number): void {
    for (;;) {
      const consumed = Atomics.load(this.ctl, CONSUMED);
      if (RING_BYTES - ((this.written - (consumed >>> 0)) >>> 0) >= bytes) return;
      Atomics.wait(this.ctl, CONSUMED, consumed, 100);
    }
  }

  /** Send one frame (header included); false only when it cannot be taken (too large, or stopped). */
  write(frame: Uint8Array): boolean {
    return this.writeWith(frame.length, (into) => { into.set(frame); return true; }, frame);
  }

  /**
   * Send a frame of `len` bytes that `fill` writes into the buffer it is given (returning false to send nothing
   * after all): for a large frame, or one written while others are queued, that buffer is its place in the ring, so the
   * frame is copied once, not into a bounce buffer and then again into the ring. A small frame with nothing queued is
   * filled into `scratch` (or a buffer of its own) and written at once, as write() does.
   */
  writeWith(len: number, fill: (into: Uint8Array) => boolean, scratch?: Uint8Array): boolean {
    if (this.stopped) return false;
    if (len <= this.directMax && this.queued() === 0) {
      const frame = scratch !== undefined && scratch.length >= len ? scratch.subarray(0, len) : new Uint8Array(len);
      if (!fill(frame)) return false;
      this.counters.direct++;
      try {
        return fs.writeSync(this.fd, frame) === len;
      } catch {
        return false; // as Tap.write: the frame is lost, as on a wire
      }
    }
    const need = (4 + len + 7) & ~7;
    if (need > RING_BYTES / 2) return false;
    let pos = this.written & (RING_BYTES - 1);
    if (pos + need > RING_BYTES) {
      // The record would straddle the end: pad to the next lap (the pad's length word fits, as pos is 8-aligned).
      const pad = RING_BYTES - pos;
      this.waitForRoom(pad + need);
      this.view.setUint32(pos, PAD, true);
      this.written = (this.written + pad) >>> 0;
      pos = 0;
    } else {
      this.waitForRoom(need);
    }
    // (the record is the thread's only once WRITTEN moves past it: until then `fill` may use or abandon it; a pad
    // written above just goes out with the next record)
    if (!fill(this.ring.subarray(pos + 4, pos + 4 + len))) return false;
    this.view.setUint32(pos, len, true);
    this.written = (this.written + need) >>> 0;
    Atomics.store(this.ctl, WRITTEN, this.written | 0);
    Atomics.notify(this.ctl, WRITTEN);
    this.counters.queued++;
    return true;
  }

  /** Write what is queued, then end the thread (at most ~5 s): after this the caller may close the fd. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    const deadline = Date.now() + 5000;
    while (this.queued() !== 0 && Date.now() < deadline) Atomics.wait(this.ctl, CONSUMED, Atomics.load(this.ctl, CONSUMED), 50);
    Atomics.store(this.ctl, STOP, 1);
    Atomics.notify(this.ctl, WRITTEN);
    Atomics.wait(this.ctl, STOPPED, 0, Math.max(1, deadline - Date.now()));
    void this.worker.terminate();
  }
}
