// The WebAssembly emitter's scratch arena (src/cpu/soft/wasm/emit.ts withScratch): bodies built inside a scope share
// buffers that are handed out again after it, so their code must come out byte-for-byte as a body of its own would,
// growing past their first buffer included, and a scratch body used after its scope must fail loudly rather than
// read bytes another batch has written over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Body, ModuleBuilder, Op, I32, withScratch } from '../src/cpu/soft/wasm/emit.ts';

/** A body returning `k`, padded with `pad` (i32.const; drop) pairs so that it grows past its first buffers. */
function fill(b: Body, k: number, pad: number): Body {
  for (let i = 0; i < pad; i++) b.i32(i * 7919 + k).op(Op.drop);
  b.i32(k);
  return b;
}

function moduleOf(bodies: Body[]): Uint8Array<ArrayBuffer> {
  const m = new ModuleBuilder();
  const t = m.type([], [I32]);
  bodies.forEach((b, i) => m.func(t, b, 'f' + i));
  return m.encode();
}

test('scratch bodies encode like ordinary ones, across scopes that reuse the same buffers', async () => {
  const sizes = [0, 3, 200, 5000, 40000];
  const plain = moduleOf(sizes.map((pad, k) => fill(new Body(0), k, pad)));
  for (let round = 0; round < 3; round++) {
    // (each round rewinds the arena and rewrites it: a module built from stale buffers would differ)
    const bytes = withScratch(() => moduleOf(sizes.map((pad, k) => fill(new Body(0, true), k, pad))));
    assert.deepEqual(bytes, plain);
  }
  const inst = new WebAssembly.Instance(await WebAssembly.compile(plain));
  sizes.forEach((_, k) => assert.equal((inst.exports['f' + k] as () => number)(), k));
});

test('a body kept from a scope that ended throws instead of reading another batch’s bytes', () => {
  const kept = withScratch(() => fill(new Body(0, true), 1, 10));
  withScratch(() => fill(new Body(0, true), 2, 10)); // writes over the rewound arena
  assert.throws(() => moduleOf([kept]), /after its scope ended/);
  assert.throws(() => kept.code(), /after its scope ended/);
  assert.throws(() => fill(kept, 3, 100), /after its scope ended/); // growing needs a new buffer
});

test('nested scopes rewind only when the outermost ends; bodies without scratch are never rewound', () => {
  const own = fill(new Body(0, true), 4, 50); // outside any scope: a buffer of its own
  const bytes = withScratch(() => {
    const outer = fill(new Body(0, true), 5, 50);
    withScratch(() => fill(new Body(0, true), 6, 50));
    return moduleOf([outer]); // still valid: the inner scope's end did not rewind
  });
  assert.deepEqual(bytes, moduleOf([fill(new Body(0), 5, 50)]));
  withScratch(() => fill(new Body(0, true), 7, 500));
  assert.deepEqual(moduleOf([own]), moduleOf([fill(new Body(0), 4, 50)]));
});
