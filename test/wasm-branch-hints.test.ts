// Branch hints (src/cpu/soft/wasm/emit.ts Body.hint, RINGZERO_WASM_HINTS): a module built with hints on carries the
// custom section "metadata.code.branch_hint" before its code section, and each hint names, by its offset from the
// start of the function body's local declarations (where V8 11.3 looks them up: an `if` hinted at that offset had
// its body moved behind the function's return, one at the offset from the first instruction did not), exactly an
// `if` or `br_if` of that function, with the direction given. The hinted code computes what the unhinted code does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Body, ModuleBuilder, Op, I32, I64, setBranchHints } from '../src/cpu/soft/wasm/emit.ts';
import { memFnBody, LD_PARAMS } from '../src/cpu/soft/wasm/tlb-probe.ts';

function uleb(buf: Uint8Array, p: number): [number, number] {
  let v = 0, shift = 0;
  for (;;) {
    const b = buf[p++];
    v += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return [v, p];
  }
}

/** The module's sections in order: id, custom name (id 0), payload bounds. */
function sections(bytes: Uint8Array): { id: number; name?: string; start: number; end: number }[] {
  const out: { id: number; name?: string; start: number; end: number }[] = [];
  let p = 8;
  while (p < bytes.length) {
    const id = bytes[p++];
    let size; [size, p] = uleb(bytes, p);
    const end = p + size;
    if (id === 0) {
      let n; let q; [n, q] = uleb(bytes, p);
      out.push({ id, name: Buffer.from(bytes.subarray(q, q + n)).toString(), start: q + n, end });
    } else out.push({ id, start: p, end });
    p = end;
  }
  return out;
}

/** Hints by function index: [offset, direction][] as the section lists them. */
function hintsOf(bytes: Uint8Array): Map<number, [number, number][]> {
  const s = sections(bytes).find((x) => x.name === 'metadata.code.branch_hint');
  const out = new Map<number, [number, number][]>();
  if (s === undefined) return out;
  let p = s.start, nf; [nf, p] = uleb(bytes, p);
  for (let i = 0; i < nf; i++) {
    let f, nh; [f, p] = uleb(bytes, p); [nh, p] = uleb(bytes, p);
    const hs: [number, number][] = [];
    for (let k = 0; k < nh; k++) {
      let off, size; [off, p] = uleb(bytes, p); [size, p] = uleb(bytes, p);
      assert.equal(size, 1);
      hs.push([off, bytes[p++]]);
    }
    out.set(f, hs);
  }
  assert.equal(p, s.end);
  return out;
}

/** Each defined function's body (from its local declarations to its `end`), by function index. */
function bodies(bytes: Uint8Array, imported: number): Uint8Array[] {
  const s = sections(bytes).find((x) => x.id === 10)!;
  let p = s.start, n; [n, p] = uleb(bytes, p);
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) { let size; [size, p] = uleb(bytes, p); out[imported + i] = bytes.subarray(p, p + size); p += size; }
  return out;
}

/** f(x): two locals, an `if` hinted unlikely, a `br_if` hinted likely, an unhinted `if`. */
function sample(m: ModuleBuilder): void {
  const b = new Body(1);
  const t = b.local(I32), u = b.local(I64);
  b.i64(5).set(u);
  b.get(0).i32(100).op(Op.i32GtU).hint(false).open(Op.if);
  b.get(0).i32(3).op(0x6c).set(0); // (i32.mul)
  b.close();
  const out = b.open(Op.block);
  b.get(0).i32(1).op(Op.i32And).hint(true).brIf(out);
  b.get(0).i32(7).op(Op.i32Add).set(0);
  b.close();
  b.get(0).op(Op.i32Eqz).open(Op.if);
  b.i32(9).set(t);
  b.close();
  b.get(0).get(t).op(Op.i32Add).get(u).op(Op.i32WrapI64).op(Op.i32Add);
  m.func(m.type([I32], [I32]), b, 'f');
}

test('hints name the if and br_if they were given for, by offset from the local declarations', () => {
  const old = setBranchHints(true);
  try {
    const m = new ModuleBuilder();
    m.importFunc('e', 'g', m.type([], []));
    m.func(m.type([], []), new Body(0), 'plain'); // (no hints: not listed)
    sample(m);
    const bytes = m.encode();
    const order = sections(bytes).map((x) => x.name ?? x.id);
    assert.ok(order.indexOf('metadata.code.branch_hint') < order.indexOf(10), `section order ${order}`);
    const hints = hintsOf(bytes), code = bodies(bytes, 1);
    assert.deepEqual([...hints.keys()], [2]);
    const hs = hints.get(2)!;
    assert.deepEqual(hs.map(([off, d]) => [code[2][off], d]), [[Op.if, 0], [Op.brIf, 1]]);
    assert.ok(hs[0][0] < hs[1][0]);
    const f = new WebAssembly.Instance(new WebAssembly.Module(bytes), { e: { g: () => {} } }).exports.f as (x: number) => number;
    setBranchHints(false);
    const m2 = new ModuleBuilder();
    sample(m2);
    const plain = m2.encode();
    assert.equal(hintsOf(plain).size, 0);
    const g = new WebAssembly.Instance(new WebAssembly.Module(plain)).exports.f as (x: number) => number;
    for (const x of [0, 1, 2, 99, 100, 101, 102, 1000, 0x7fffffff, -1]) assert.equal(f(x), g(x), `f(${x})`);
  } finally {
    setBranchHints(old);
  }
});

test('the memory library probe hints its ways to the slow path unlikely', () => {
  const old = setBranchHints(true);
  try {
    for (const write of [false, true]) {
      const m = new ModuleBuilder();
      m.importMemory('e', 'm');
      m.importFunc('e', 'rd', m.type([0x7c, I32, I32], [I32]));
      m.importFunc('e', 'wr', m.type([0x7c, I32, I32, I32, I32], []));
      m.func(m.type(write ? [I32, I32, I64, I64, I32] : LD_PARAMS, write ? [] : [I64]), memFnBody(8, write, 0, 1), 'f');
      const bytes = m.encode();
      const hs = hintsOf(bytes).get(2)!, code = bodies(bytes, 2)[2];
      // (the tag compare, and for a store the code-page byte)
      assert.deepEqual(hs.map(([off, d]) => [code[off], d]), write ? [[Op.brIf, 0], [Op.brIf, 0]] : [[Op.brIf, 0]]);
    }
  } finally {
    setBranchHints(old);
  }
});
