// The lazy-flag fast paths (condition() after SUB/CMP and logic ops, getCF() after ADD/SUB) must agree with the
// flags materialized by the general computation (getFlags) for every condition code (SDM vol. 1 appendix B).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeMachine } from './support/soft-cpu.ts';
import { Lazy } from '../src/cpu/soft/index.ts';
import * as C from '../src/cpu/soft/constants.ts';

/** The condition evaluated from whole EFLAGS (the reference). */
function fromFlags(f: number, cc: number): boolean {
  const cf = (f & C.CF) !== 0, zf = (f & C.ZF) !== 0, sf = (f & C.SF) !== 0, of = (f & C.OF) !== 0, pf = (f & C.PF) !== 0;
  const r = [of, cf, zf, cf || zf, sf, pf, sf !== of, zf || sf !== of][cc >> 1];
  return cc & 1 ? !r : r;
}

const EDGES = [0, 1, 2, 0x7f, 0x80, 0x81, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

function operands(size: number): number[] {
  const mask = size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
  const vals = EDGES.map((v) => v & mask);
  let x = 12345;
  for (let i = 0; i < 12; i++) { x = (Math.imul(x, 1103515245) + 12345) | 0; vals.push((x >>> 3) & mask); }
  // Size 4 operands are int32 by convention; smaller ones are non-negative.
  return vals.map((v) => (size === 4 ? v | 0 : v));
}

test('condition() after SUB/CMP, logic ops and ADD matches the materialized flags', () => {
  const { cpu } = makeMachine();
  let checked = 0;
  for (const size of [1, 2, 4]) {
    const ops = operands(size);
    for (const d of ops) {
      for (const s of ops) {
        const cases: [Lazy, number][] = [[Lazy.Sub, (d - s) | 0], [Lazy.Add, (d + s) | 0], [Lazy.Logic, d & s], [Lazy.Logic, d ^ s]];
        for (const [op, res] of cases) {
          for (let cc = 0; cc < 16; cc++) {
            cpu.setLazy(op, size, d, s, res);
            const fast = cpu.condition(cc);
            const cf = (cpu.setLazy(op, size, d, s, res), cpu.getCF());
            cpu.setLazy(op, size, d, s, res);
            const f = cpu.getFlags();
            assert.equal(fast, fromFlags(f, cc), `op ${op} size ${size} d=${d} s=${s} cc=${cc}`);
            assert.equal(cf, (f & C.CF) !== 0, `CF op ${op} size ${size} d=${d} s=${s}`);
            checked++;
          }
        }
      }
    }
  }
  assert.ok(checked > 10000);
});
