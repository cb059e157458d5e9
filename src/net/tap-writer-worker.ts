// The TAP writer's thread (see tap-writer.ts): takes the frames the device queued in the shared ring, in order, and
// writes each to the TAP fd; the host's network stack runs inside that write(2), here instead of on the vCPU's thread.
// Nothing here touches guest memory or devices: only the ring, which the device filled with copies.
import fs from 'node:fs';
import { workerData } from 'node:worker_threads';
import { CONSUMED, CONTROL_BYTES, PAD, STOP, STOPPED, WRITTEN, type TapWriterData } from './tap-writer.ts';

const { sab, fd, size } = workerData as TapWriterData;
const ctl = new Int32Array(sab, 0, 4);
const ring = new Uint8Array(sab, CONTROL_BYTES, size);
const view = new DataView(sab, CONTROL_BYTES, size);
let consumed = Atomics.load(ctl, CONSUMED) >>> 0;
// The ring's pages are faulted in here, once, before the guest sends anything: otherwise the device's copy into the
// ring takes the host's page faults (a zeroed page allocated per 4 KiB) on the vCPU's thread during the first 2 MiB
// sent, the first lap. Measured (session 32, `perf record` of bench/net-passes' first guest -> host pass, 16 MiB):
// 22 of the main thread's 978 samples (2.2%) were page faults under that copy, none in the next pass. An atomic add
// of 0 writes each page without changing a byte, so it is safe while the device may already be queueing frames (the
// ring's words keep whatever it stored).
const words = new Int32Array(sab, CONTROL_BYTES, size >>> 2);
for (let i = 0; i < words.length; i += 1024) Atomics.add(words, i, 0);
Atomics.add(words, words.length - 1, 0);
for (;;) {
  if (Atomics.load(ctl, STOP) !== 0) break;
  const written = Atomics.load(ctl, WRITTEN) >>> 0;
  if (written === consumed) {
    Atomics.wait(ctl, WRITTEN, written | 0, 1000);
    continue;
  }
  const pos = consumed & (size - 1);
  const len = view.getUint32(pos, true);
  if (len === PAD) {
    consumed = (consumed + (size - pos)) >>> 0;
  } else {
    // A frame the kernel refuses (EIO while the interface goes down, EINVAL) is lost, as on a wire.
    try { fs.writeSync(fd, ring.subarray(pos + 4, pos + 4 + len)); } catch { /* dropped */ }
    consumed = (consumed + ((4 + len + 7) & ~7)) >>> 0;
  }
  Atomics.store(ctl, CONSUMED, consumed | 0);
  Atomics.notify(ctl, CONSUMED);
}
Atomics.store(ctl, STOPPED, 1);
Atomics.notify(ctl, STOPPED);
