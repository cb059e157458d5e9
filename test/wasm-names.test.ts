// Function names in the modules the wasm translator builds (src/cpu/soft/wasm/emit.ts ModuleBuilder.func's debugName,
// the name section of Core spec §7.4.1): V8 names a wasm function after it in stack traces and in the code-event log
// that node --perf-basic-prof writes (/tmp/perf-PID.map), where an unnamed one is only "wasm-function[index]" (which
// module, which guest code?). Translated modules name their functions only with RINGZERO_WASM_NAMES=1
// (translate.ts WASM_NAMES; buildModule's `names`).
import test from 'node:test';
import assert from 'node:assert/strict';
import { ModuleBuilder, Body, Op } from '../src/cpu/soft/wasm/emit.ts';
import { buildModule } from '../src/cpu/soft/wasm/translate.ts';

/** The function names of a module's name section (subsection 1), decoded (ASCII names, one-byte LEB128 lengths). */
function functionNames(mod: WebAssembly.Module): Map<number, string> {
  const out = new Map<number, string>();
  const sections = WebAssembly.Module.customSections(mod, 'name');
  if (sections.length === 0) return out;
  const u = new Uint8Array(sections[0]);
  let p = 0;
  const leb = (): number => { let v = 0, shift = 0, b: number; do { b = u[p++]; v |= (b & 0x7f) << shift; shift += 7; } while (b & 0x80); return v >>> 0; };
  while (p < u.length) {
    const id = u[p++], size = leb(), end = p + size;
    if (id === 1) {
      for (let n = leb(); n > 0; n--) {
        const index = leb(), len = leb();
        out.set(index, String.fromCharCode(...u.subarray(p, p + len)));
        p += len;
      }
    }
    p = end;
  }
  return out;
}

test('a debugName names the function in V8 stack traces (unnamed: wasm-function[index])', () => {
  const m = new ModuleBuilder();
  const cb = m.importFunc('e', 'cb', m.type([], []));
  const b1 = new Body(0);
  b1.call(cb);
  const named = m.func(m.type([], []), b1, 'named', 'rz.test.named');
  const b2 = new Body(0);
  b2.call(cb);
  m.func(m.type([], []), b2, 'unnamed');
  const mod = new WebAssembly.Module(m.encode());
  const stacks: string[] = [];
  const inst = new WebAssembly.Instance(mod, { e: { cb: () => { stacks.push(new Error('here').stack ?? ''); } } });
  (inst.exports.named as () => void)();
  (inst.exports.unnamed as () => void)();
  assert.match(stacks[0], /rz\.test\.named/);
  assert.doesNotMatch(stacks[1], /rz\.test/);
  assert.match(stacks[1], /wasm-function\[2\]/);
  assert.deepEqual([...functionNames(mod)], [[named, 'rz.test.named']]);
});

test('a module without debugNames has no name section', () => {
  const m = new ModuleBuilder();
  const b = new Body(0);
  b.i32(1).op(Op.drop);
  m.func(m.type([], []), b, 'f');
  assert.equal(WebAssembly.Module.customSections(new WebAssembly.Module(m.encode()), 'name').length, 0);
});

test('buildModule names its block functions when given names (RINGZERO_WASM_NAMES=1), else not', () => {
  const body = (): Body => {
    const b = new Body(5);
    b.i32(0);
    return b;
  };
  const named = new WebAssembly.Module(buildModule([body(), body()], 0, ['rz.gffffffff81000000', 'rz.p2000']));
  const names = functionNames(named);
  // (imports first in the index space: the helpers, the flag library, the memory library's eight functions)
  const fns = [...names.values()];
  assert.deepEqual(fns, ['rz.gffffffff81000000', 'rz.p2000']);
  const exports = WebAssembly.Module.exports(named).map((e) => e.name);
  assert.deepEqual(exports, ['f0', 'f1']);
  const first = [...names.keys()][0];
  assert.equal(names.get(first + 1), 'rz.p2000');
  const plain = new WebAssembly.Module(buildModule([body()]));
  assert.equal(WebAssembly.Module.customSections(plain, 'name').length, 0);
});
