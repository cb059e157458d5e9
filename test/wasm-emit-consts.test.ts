// The emitter's integer constants (src/cpu/soft/wasm/emit.ts Body.i32/i64/i64hl): every encoding path (int32, exact
// numbers beyond int32 split into two halves, bigints, and the (hi, lo) form the translator uses for dispatch keys
// and flag records) must give WebAssembly the value meant; checked by running the constants in a compiled module.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Body, ModuleBuilder, I64 } from '../src/cpu/soft/wasm/emit.ts';

function run(emit: (b: Body) => void): bigint {
  const m = new ModuleBuilder();
  const b = new Body(0);
  emit(b);
  m.func(m.type([], [I64]), b, 'f');
  const inst = new WebAssembly.Instance(new WebAssembly.Module(m.encode()));
  return (inst.exports.f as () => bigint)();
}

test('i64 constants of every size come out as the value given', () => {
  const nums = [0, 1, -1, 63, 64, -64, -65, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, -(2 ** 31) - 1, 2 ** 32 - 1, 2 ** 32, -(2 ** 32),
    4294967296 * 5 + 3, 2 ** 47, -(2 ** 47), 2 ** 52 + 12345, -(2 ** 53) + 1, 2 ** 53 - 1, 0xffffffff, -0xffffffff - 1];
  for (let s = 1; s < 2 ** 53; s = s * 3 + 1) nums.push(s, -s);
  for (const v of nums) assert.equal(run((b) => b.i64(v)), BigInt(v), `number ${v}`);
  const bigs = [0n, -1n, 1n << 62n, -(1n << 63n), (1n << 63n) - 1n, 0x0101010101010101n, 0xffffffffffffffffn, 1n << 64n, 0x123456789abcdef0n];
  for (const v of bigs) assert.equal(run((b) => b.i64(v)), BigInt.asIntN(64, v), `bigint ${v}`);
  for (const [hi, lo] of [[0, 0], [0, -1], [1, 0x1234], [7, 0x7ffff000], [-1, -1], [-1, 0], [0x7fffffff, -1], [-(2 ** 31), 0], [0x12345, 0x80000000 | 0]]) {
    assert.equal(run((b) => b.i64hl(hi, lo)), (BigInt(hi) << 32n) | BigInt(lo >>> 0), `hi ${hi} lo ${lo}`);
  }
});
