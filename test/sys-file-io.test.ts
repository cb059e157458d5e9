// src/sys/file-io.ts: positioned reads and writes that do not stop at a short transfer. The write case is checked on
// a tiny tmpfs, where a write larger than the free space is short (pwrite(2) returns what fit) and the next one fails
// with ENOSPC: a caller that trusts one fs.writeSync loses the rest silently; pwriteFully must throw instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { preadFully, preadvFully, pwriteFully, pwritevFully, IOV_MAX } from '../src/sys/file-io.ts';

test('preadFully reads up to the end of the file and leaves the rest of the buffer as it was', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-fileio-'));
  try {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, Buffer.from('0123456789'));
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(8, 0xee);
      assert.equal(preadFully(fd, buf, 4), 6);
      assert.deepEqual([...buf], [...Buffer.from('456789'), 0xee, 0xee]);
      assert.equal(preadFully(fd, buf.subarray(0, 3), 0), 3);
      assert.equal(preadFully(fd, buf, 10), 0);
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('pwriteFully throws on a full file system where one fs.writeSync would be silently short', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-fileio-'));
  try {
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'rz-fileio', dir], { stdio: 'ignore' });
    } catch {
      t.skip('cannot mount a tmpfs here (needs root)');
      return;
    }
    try {
      const big = Buffer.alloc(256 * 1024, 0x5a);
      const fd = fs.openSync(path.join(dir, 'a'), 'w');
      try {
        const n = fs.writeSync(fd, big, 0, big.length, 0);
        assert.ok(n > 0 && n < big.length, `one write is short on a full tmpfs (took ${n} of ${big.length})`);
      } finally {
        fs.closeSync(fd);
      }
      fs.rmSync(path.join(dir, 'a'));
      const fd2 = fs.openSync(path.join(dir, 'b'), 'w+');
      try {
        assert.throws(() => pwriteFully(fd2, big, 0), (e: NodeJS.ErrnoException) => e.code === 'ENOSPC');
        // What fits is written whole, in order.
        const small = Buffer.alloc(4096, 0x33);
        fs.ftruncateSync(fd2, 0);
        pwriteFully(fd2, small, 100);
        const back = Buffer.alloc(4096);
        assert.equal(preadFully(fd2, back, 100), 4096);
        assert.deepEqual(back, small);
      } finally {
        fs.closeSync(fd2);
      }
    } finally {
      execFileSync('umount', [dir]);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('preadvFully/pwritevFully: buffers in turn, more than IOV_MAX of them, zero-length ones, the end of the file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-fileio-'));
  try {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, '');
    const fd = fs.openSync(file, 'r+');
    try {
      // 1500 buffers of 1-3 bytes (and some empty): two system calls' worth of iovecs.
      const sizes = Array.from({ length: IOV_MAX + 476 }, (_, i) => (i % 7 === 0 ? 0 : 1 + (i % 3)));
      const total = sizes.reduce((a, b) => a + b, 0);
      let k = 0;
      const out = sizes.map((n) => Uint8Array.from({ length: n }, () => (k++ * 31 + 7) & 0xff));
      pwritevFully(fd, out, 100);
      const whole = fs.readFileSync(file);
      assert.equal(whole.length, 100 + total);
      assert.ok(whole.subarray(0, 100).every((x) => x === 0));
      assert.deepEqual([...whole.subarray(100)], Array.from({ length: total }, (_, i) => (i * 31 + 7) & 0xff));
      const back = sizes.map((n) => new Uint8Array(n).fill(0xee));
      assert.equal(preadvFully(fd, back, 100), total);
      assert.deepEqual(back, out);
      // Past the end: what is there, then the buffers are left as they were.
      const tail = [new Uint8Array(3).fill(0xee), new Uint8Array(5).fill(0xee)];
      assert.equal(preadvFully(fd, tail, 100 + total - 4), 4);
      assert.deepEqual([...tail[0], ...tail[1]], [...whole.subarray(100 + total - 4), 0xee, 0xee, 0xee, 0xee]);
      assert.equal(preadvFully(fd, [], 0), 0);
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
