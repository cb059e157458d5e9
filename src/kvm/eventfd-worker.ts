// The eventfd watcher's thread (see eventfd-watcher.ts): blocks in poll(2) on the control eventfd and every watched
// eventfd, drains the ready ones (read(2) resets an eventfd's counter) and marks them in the shared ready bitmap, then
// wakes the main thread through Atomics.notify on the sequence word. Nothing here touches guest memory or devices.
import { workerData } from 'node:worker_threads';
import { libc, lastErrno } from '../sys/libc.ts';
import { W, MAX_FDS, type WatcherData } from './eventfd-watcher.ts';
import { futexWord, futexWake } from './sys.ts';

function futexWakeAll(word: Buffer): void {
  futexWake(word, 2);
}

const pollFn = libc.func('int poll(void *fds, unsigned long nfds, int timeout)') as (fds: Buffer, n: number, timeout: number) => number;
const readFn = libc.func('long read(int fd, void *buf, unsigned long count)') as (fd: number, buf: Buffer, n: number) => number;

const data = workerData as WatcherData;
const sab = new Int32Array(data.sab);
const wake = data.wake.map((w) => ({ words: new Int32Array(w.sab), index: w.index, futex: futexWord(w.sab, w.index) }));
const POLLIN = 1;
const EINTR = 4;
const pollfds = Buffer.alloc(8 * (MAX_FDS + 1)); // struct pollfd { int fd; short events; short revents; }
const counter = Buffer.alloc(8);
let generation = -1;
let n = 0;

function loadList(): void {
  generation = Atomics.load(sab, W.GENERATION);
  n = Math.min(Atomics.load(sab, W.COUNT), MAX_FDS);
  pollfds.writeInt32LE(data.controlFd, 0);
  pollfds.writeInt16LE(POLLIN, 4);
  for (let i = 0; i < n; i++) {
    pollfds.writeInt32LE(Atomics.load(sab, W.FDS + i), 8 * (i + 1));
    pollfds.writeInt16LE(POLLIN, 8 * (i + 1) + 4);
  }
}

Atomics.store(sab, W.STARTED, 1);
Atomics.notify(sab, W.STARTED);
for (;;) {
  if (Atomics.load(sab, W.QUIT)) break;
  if (Atomics.load(sab, W.GENERATION) !== generation) loadList();
  for (let i = 0; i <= n; i++) pollfds.writeInt16LE(0, 8 * i + 6);
  const r = pollFn(pollfds, n + 1, -1);
  if (r < 0) {
    const e = lastErrno();
    if (e === EINTR) continue;
    Atomics.store(sab, W.ERROR, e);
    break;
  }
  let any = false;
  for (let i = 0; i <= n; i++) {
    const revents = pollfds.readInt16LE(8 * i + 6);
    if (revents === 0) continue;
    const fd = pollfds.readInt32LE(8 * i);
    readFn(fd, counter, 8); // non-blocking eventfd: resets the counter (EAGAIN if someone else drained it)
    if (i === 0) continue; // control: the list changed, or quit
    if (revents & POLLIN) {
      const k = i - 1;
      Atomics.or(sab, W.READY + (k >> 5), 1 << (k & 31));
      any = true;
    }
  }
  if (any) {
    Atomics.add(sab, W.SEQ, 1);
    Atomics.notify(sab, W.SEQ);
    // E.g. the main thread waiting for a vCPU's exit: in V8's Atomics.wait, or in a raw futex wait on the same word
    // (src/cpu/kvm/channel.ts RAW_FUTEX), where the vCPU's worker may sleep too: wake every raw sleeper, the worker
    // just sleeps again.
    for (const w of wake) { Atomics.notify(w.words, w.index); futexWakeAll(w.futex); }
  }
}
Atomics.store(sab, W.DONE, 1);
Atomics.notify(sab, W.SEQ);
