// The 64-bit pair arithmetic behind the soft CPU's ALU (src/cpu/soft/ops/alu-common.ts) against BigInt, on edge
// values and seeded random ones: shifts by 0..64, 64x64->128 products (signed and unsigned, both the exact
// double fast path and the 32-bit-limb path), 128/64 division with small and large divisors.
import test from 'node:test';
import assert from 'node:assert/strict';
import { out, shl64, shr64, sar64, mul64, mulU32, udiv128 } from '../src/cpu/soft/ops/alu-common.ts';

const M64 = (1n << 64n) - 1n;
const lo = (v: bigint) => Number(BigInt.asIntN(32, v));
const hi = (v: bigint) => Number(BigInt.asIntN(32, v >> 32n));
const pair = (l: number, h: number) => (BigInt(h >>> 0) << 32n) | BigInt(l >>> 0);

let seed = 0x2545f491;
function rnd32(): number {
  seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
  return seed >>> 0;
}
const EDGES = [0n, 1n, 2n, 3n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x1_0000_0000n, 0x1f_ffff_ffff_ffffn, 0x20_0000_0000_0000n,
  0x7fff_ffff_ffff_ffffn, 0x8000_0000_0000_0000n, 0xffff_ffff_ffff_fffen, M64];
function values(n: number): bigint[] {
  const v = [...EDGES];
  for (let i = 0; i < n; i++) {
    const r = (BigInt(rnd32()) << 32n) | BigInt(rnd32());
    const shift = BigInt(rnd32() % 64);
    v.push(r >> shift, BigInt.asUintN(64, -(r >> shift)));
  }
  return v;
}

test('64-bit shifts on int32 pairs match BigInt for every count 0..64', () => {
  for (const v of values(20)) {
    for (let c = 0; c <= 64; c++) {
      const l = shl64(lo(v), hi(v), c);
      assert.equal(pair(l, out.hi), (v << BigInt(c)) & M64, `shl ${v} ${c}`);
      const r = shr64(lo(v), hi(v), c);
      assert.equal(pair(r, out.hi), v >> BigInt(c), `shr ${v} ${c}`);
      if (c < 64) {
        const s = sar64(lo(v), hi(v), c);
        assert.equal(pair(s, out.hi), BigInt.asUintN(64, BigInt.asIntN(64, v) >> BigInt(c)), `sar ${v} ${c}`);
      }
    }
  }
});

test('32x32 and 64x64 products, unsigned and signed, match BigInt', () => {
  for (let i = 0; i < 2000; i++) {
    const a = rnd32() >>> (rnd32() % 32), b = rnd32();
    const l = mulU32(a, b);
    assert.equal(pair(l, out.hi), BigInt(a) * BigInt(b));
  }
  const vs = values(60);
  for (const a of vs) {
    for (const b of vs) {
      let l = mul64(lo(a), hi(a), lo(b), hi(b), false);
      let p = pair(l, out.hi) | (pair(out.hi2lo, out.hi2hi) << 64n);
      assert.equal(p, a * b, `mul ${a} ${b}`);
      l = mul64(lo(a), hi(a), lo(b), hi(b), true);
      p = pair(l, out.hi) | (pair(out.hi2lo, out.hi2hi) << 64n);
      assert.equal(p, BigInt.asUintN(128, BigInt.asIntN(64, a) * BigInt.asIntN(64, b)), `imul ${a} ${b}`);
    }
  }
});

test('128/64 division: quotient and remainder, overflow and zero divisor refused', () => {
  const vs = values(40);
  for (const d of vs) {
    for (const nl of vs.slice(0, 30)) {
      for (const nh of [0n, 1n, d === 0n ? 0n : d - 1n, d, M64]) {
        const n = (nh << 64n) | nl;
        const ok = udiv128(hi(nh), lo(nh), hi(nl), lo(nl), hi(d), lo(d));
        if (d === 0n || nh >= d) { assert.equal(ok, false, `refuse ${n} / ${d}`); continue; }
        assert.equal(ok, true, `${n} / ${d}`);
        assert.equal(pair(out.qLo, out.qHi), n / d, `q ${n} / ${d}`);
        assert.equal(pair(out.remLo, out.remHi), n % d, `r ${n} / ${d}`);
      }
    }
  }
});
