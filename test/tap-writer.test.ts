// RINGZERO_NET_TX_THREAD's writer (src/net/tap-writer.ts): frames reach the fd whole and in the order written, across
// the ring's laps, with small frames written at once only when nothing is queued; stop() writes what is queued first.
// The fd is a plain file here (each write appends), so the file is the frames in the order the thread wrote them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TapWriter } from '../src/net/tap-writer.ts';

/** Run `fn` with `fd` open for writing on a new file (standing in for a TAP), then close and remove it. */
function withOutFile(fn: (fd: number, file: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-tapwriter-'));
  const file = path.join(dir, 'out');
  const fd = fs.openSync(file, 'w');
  try {
    fn(fd, file);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('frames of mixed sizes leave in order, whole, over several laps of the ring; stop() drains the queue', () => {
  withOutFile((fd, file) => {
    const w = new TapWriter(fd, 100);
    const expected: Uint8Array[] = [];
    // 65 KiB frames (GSO-sized) and small ones interleaved: 300 of the large make ~19 MiB, nine laps of the 2 MiB ring.
    for (let i = 0; i < 600; i++) {
      const len = i % 2 === 0 ? 65_000 + (i % 7) * 77 : 40 + (i % 50);
      const frame = new Uint8Array(len);
      for (let k = 0; k < len; k += 997) frame[k] = (i * 31 + k) & 0xff;
      frame[0] = i & 0xff; frame[1] = i >> 8; frame[len - 1] = 0xa5;
      assert.equal(w.write(frame), true);
      expected.push(frame);
    }
    w.stop();
    assert.equal(w.write(new Uint8Array(64)), false, 'nothing is taken after stop()');
    const got = fs.readFileSync(file);
    assert.equal(got.length, expected.reduce((n, f) => n + f.length, 0));
    let at = 0;
    for (const f of expected) {
      assert.ok(Buffer.compare(got.subarray(at, at + f.length), f) === 0, `frame ${f[0] | (f[1] << 8)} in place`);
      at += f.length;
    }
    assert.ok(w.counters.queued >= 300, 'the large frames went through the thread');
    assert.equal(w.counters.queued + w.counters.direct, 600);
  });
});

test('a small frame with nothing queued is written before write() returns', () => {
  withOutFile((fd, file) => {
    const w = new TapWriter(fd, 256);
    w.write(Uint8Array.from([1, 2, 3, 4]));
    assert.deepEqual([...fs.readFileSync(file)], [1, 2, 3, 4], 'on the fd at once (the host answers inside the write)');
    assert.equal(w.counters.direct, 1);
    w.stop();
  });
});

test('writeWith: the frame is filled in its place in the ring; a fill that declines sends nothing, across pads and laps', () => {
  withOutFile((fd, file) => {
    const w = new TapWriter(fd, 100);
    const expected: Uint8Array[] = [];
    // 300 KiB-sized frames over several laps of the 2 MiB ring, every third one declined after its bytes were written
    // into the ring (as the device does when a header fails its check): the next record takes the same place.
    for (let i = 0; i < 60; i++) {
      const len = 300_000 + i * 13;
      const keep = i % 3 !== 1;
      const ok = w.writeWith(len, (into) => {
        assert.equal(into.length, len);
        into.fill(keep ? i : 0xdd);
        into[0] = i;
        return keep;
      });
      assert.equal(ok, keep);
      if (keep) { const f = new Uint8Array(len).fill(i); expected.push(f); }
    }
    // A small frame with nothing queued goes straight to the fd, filled into the scratch buffer given.
    w.stop();
    const got = fs.readFileSync(file);
    assert.equal(got.length, expected.reduce((n, f) => n + f.length, 0));
    let at = 0;
    for (const f of expected) {
      assert.ok(Buffer.from(got.subarray(at, at + f.length)).equals(Buffer.from(f)), `frame at ${at}`);
      at += f.length;
    }
  });
  withOutFile((fd, file) => {
    const w = new TapWriter(fd, 256);
    const scratch = new Uint8Array(64);
    assert.equal(w.writeWith(4, (into) => { assert.equal(into.buffer, scratch.buffer); into.set([9, 8, 7, 6]); return true; }, scratch), true);
    assert.equal(w.writeWith(4, () => false, scratch), false, 'declined: nothing written');
    assert.deepEqual([...fs.readFileSync(file)], [9, 8, 7, 6], 'written before writeWith returned');
    w.stop();
  });
});
