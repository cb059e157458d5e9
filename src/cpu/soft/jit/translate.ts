// The JavaScript translator of the software CPU (issue 4): one generated function per hot 64-bit block.
//
// A block of the decoded-block cache (../code-cache.ts) that keeps being replayed is translated into JavaScript
// source, compiled once with `new Function` (V8 then optimizes it like any hot function). The generated code:
// - executes the fast forms of ../fast-forms.ts (MOV, LEA, ALU incl. 8-bit, INC/DEC, shifts, MOVZX/MOVSXD, CMOVcc,
//   SETcc, NOP, PUSH/POP, Jcc/JMP/CALL/RET) straight-line, with register numbers, immediates and address recipes
//   as constants;
// - does memory operands through SoftCpu.readLin/writeLin, whose software-TLB fast path V8 inlines into the
//   generated function (their type feedback is shared by all blocks, so a TLB miss taken for the first time does
//   not deoptimize a block; an inline copy of the probe did, and cost more than it saved);
// - keeps the lazy-flag record (../cpu.ts setLazy) in locals and evaluates a following Jcc/SETcc/CMOVcc/INC/DEC
//   from them; the record is stored into the CPU only where something else may look at it (before a replayed
//   handler or a shift, at the exit and when a fault unwinds the block);
// - replays every other instruction through its interpreter handler with the decoder state restored, as
//   SoftCpu.runBlock does;
// - loops inside the function when the block ends with a branch back to its own start, for at most LOOP_LIMIT
//   instructions per call (and never more than the caller's budget), re-checking eventPending/stopRequested at
//   every iteration.
//
// Exactness, as the interpreter: `cpu.instructions` counts every instruction executed, the faulting one included;
// a fault leaves `ripStart` at the faulting instruction and every earlier instruction's state committed, the
// flag record included (the catch clause stores it); an instruction that raises eventPending (a store into a code
// page, an MMIO access, a replayed handler) ends the function right after it, so self-modifying code and
// interrupts are seen at the next instruction boundary.
import type { SoftCpu } from '../cpu.ts';
import { CPU_FAULT } from '../fault.ts';
import type { Block, BlockEntry } from '../code-cache.ts';
import { replayHandler } from '../code-cache.ts';
import { Form } from '../fast-forms.ts';
import { shift32, shift64 } from '../ops/alu-shift.ts';
import { out, szp } from '../ops/alu-common.ts';
import * as C from '../constants.ts';

/** A translated block: runs it (looping while it branches to itself) and returns the instructions executed. */
export type JitFn = (c: SoftCpu, left: number) => number;

/** Most instructions one call of a self-looping block executes before it returns to the dispatcher. */
export const LOOP_LIMIT = 1024;

// Lazy-flag kinds (../cpu.ts Lazy) and ALU operations (as in ../fast-forms.ts).
const L_ADD = 1, L_SUB = 3, L_LOGIC = 5, L_INC = 6, L_DEC = 7;
const ADD = 0, OR = 1, AND = 4, SUB = 5, XOR = 6, CMP = 7, TEST = 8;
const KIND = [L_ADD, L_LOGIC, 0, 0, L_LOGIC, L_SUB, L_LOGIC, L_SUB, L_LOGIC];


/** Where the lazy-flag record is at a point of the generated code. */
const enum Pend {
  /** In the CPU's fields (lop === 0). */
  None = 0,
  /** In the locals, from an instruction whose kind and size the translator knows (`kind`, `size`). */
  Static = 1,
  /** In the locals if lop !== 0, else in the CPU (the top of a self-loop). */
  Dyn = 2,
}

const TWO47 = 140737488355328;

class Emitter {
  out: string[] = [];
  pend = Pend.None;
  kind = 0;
  size = 4;
  usesLoop = false;
  constructor(readonly block: Block, readonly offs: number[]) {}

  line(s: string): void { this.out.push(s); }

  /** Store the flag record of the locals into the CPU (code for the current pend state); afterwards Pend.None. */
  flush(): string {
    let s = '';
    if (this.pend === Pend.Static) {
      s = `c.lazyOp=${this.kind};c.lazySize=${this.size};c.lazyDst=ld;c.lazySrc=ls;c.lazyRes=lr;`;
      s += this.size === 8 ? 'c.lazyDstHi=ldh;c.lazySrcHi=lsh;c.lazyResHi=lrh;' : 'c.lazyDstHi=0;c.lazySrcHi=0;c.lazyResHi=0;';
      if (this.kind === L_INC || this.kind === L_DEC) s += 'c.lazyCarry=lcy;';
      s += 'lop=0;';
    } else if (this.pend === Pend.Dyn) {
      s = 'if(lop!==0){' + DYN_FLUSH + '}';
    }
    this.pend = Pend.None;
    return s;
  }

  /**
   * Code that leaves the function after `count` instructions of this pass with RIP = `rip` (an expression; null:
   * as the replayed handler left it). Every exit goes through the one exit sequence after the loop (which stores
   * the flag record and the counts), so a rarely taken exit has no property access or call of its own: V8 would
   * compile such a path without type feedback and deoptimize the whole function the first time it is taken.
   */
  exit(count: number, rip: string | null): string {
    return `{xc=${count};xr=${rip ?? KEEP_RIP};break L;}`;
  }

  /** Expression of CF as 0/1 for INC/DEC (may emit a flush first). */
  carry(): string {
    if (this.pend === Pend.Static) {
      const k = this.kind;
      if (k === L_LOGIC) return '0';
      if (k === L_INC || k === L_DEC) return 'lcy';
      if (this.size === 1) {
        if (k === L_SUB) return '(ld<ls?1:0)';
        if (k === L_ADD) return '(lr<ld?1:0)';
      } else if (this.size === 4) {
        if (k === L_SUB) return '((ld>>>0)<(ls>>>0)?1:0)';
        if (k === L_ADD) return '((lr>>>0)<(ld>>>0)?1:0)';
      } else {
        if (k === L_SUB) return '((ldh>>>0)<(lsh>>>0)||(ldh===lsh&&(ld>>>0)<(ls>>>0))?1:0)';
        if (k === L_ADD) return '((lrh>>>0)<(ldh>>>0)||(lrh===ldh&&(lr>>>0)<(ld>>>0))?1:0)';
      }
    }
    this.line(this.flush());
    return '(c.getCF()?1:0)';
  }

  /** Expression of condition `cc` (Jcc/SETcc/CMOVcc encoding; may emit a flush first). */
  cond(cc: number): string {
    const r = this.pend === Pend.Static ? this.condStatic(cc >> 1) : null;
    if (r === null) {
      this.line(this.flush());
      return `c.condition(${cc})`;
    }
    return cc & 1 ? `!(${r})` : `(${r})`;
  }

  private condStatic(c: number): string | null {
    if (this.size === 1) return this.condStatic8(c);
    const k = this.kind, w = this.size === 8;
    const Z = w ? '(lr===0&&lrh===0)' : '(lr===0)';
    const S = w ? '(lrh<0)' : '(lr<0)';
    if (k === L_LOGIC) {
      switch (c) {
        case 0: case 1: return 'false';
        case 2: case 3: return Z;
        case 4: case 6: return S;
        case 7: return `${Z}||${S}`;
        default: return null;
      }
    }
    if (k === L_SUB) {
      const B = w ? '((ldh>>>0)<(lsh>>>0)||(ldh===lsh&&(ld>>>0)<(ls>>>0)))' : '((ld>>>0)<(ls>>>0))';
      const BE = w ? '((ldh>>>0)<(lsh>>>0)||(ldh===lsh&&(ld>>>0)<=(ls>>>0)))' : '((ld>>>0)<=(ls>>>0))';
      const L = w ? '(ldh<lsh||(ldh===lsh&&(ld>>>0)<(ls>>>0)))' : '(ld<ls)';
      const LE = w ? '(ldh<lsh||(ldh===lsh&&(ld>>>0)<=(ls>>>0)))' : '(ld<=ls)';
      switch (c) {
        case 0: return w ? '(((ldh^lsh)&(ldh^lrh))<0)' : '(((ld^ls)&(ld^lr))<0)';
        case 1: return B;
        case 2: return Z;
        case 3: return BE;
        case 4: return S;
        case 6: return L;
        case 7: return LE;
        default: return null;
      }
    }
    if (k === L_ADD) {
      const O = w ? '(((ldh^lrh)&(lsh^lrh))<0)' : '(((ld^lr)&(ls^lr))<0)';
      const B = w ? '((lrh>>>0)<(ldh>>>0)||(lrh===ldh&&(lr>>>0)<(ld>>>0)))' : '((lr>>>0)<(ld>>>0))';
      switch (c) {
        case 0: return O;
        case 1: return B;
        case 2: return Z;
        case 3: return `(${B}||${Z})`;
        case 4: return S;
        case 6: return `(${S}!==${O})`;
        case 7: return `(${Z}||${S}!==${O})`;
        default: return null;
      }
    }
    if (k === L_INC || k === L_DEC) {
      let O: string;
      if (k === L_INC) O = w ? '(lrh===-2147483648&&lr===0)' : '(lr===-2147483648)';
      else O = w ? '(lrh===2147483647&&lr===-1)' : '(lr===2147483647)';
      switch (c) {
        case 0: return O;
        case 1: return '(lcy!==0)';
        case 2: return Z;
        case 3: return `(lcy!==0||${Z})`;
        case 4: return S;
        case 6: return `(${S}!==${O})`;
        case 7: return `(${Z}||${S}!==${O})`;
        default: return null;
      }
    }
    return null;
  }

  /** Conditions after an 8-bit producer (the locals hold zero-extended bytes). */
  private condStatic8(c: number): string | null {
    const k = this.kind;
    const Z = '(lr===0)', S = '((lr&128)!==0)';
    if (k === L_LOGIC) {
      switch (c) {
        case 0: case 1: return 'false';
        case 2: case 3: return Z;
        case 4: case 6: return S;
        case 7: return `${Z}||${S}`;
        default: return null;
      }
    }
    if (k === L_SUB) {
      switch (c) {
        case 0: return '(((ld^ls)&(ld^lr)&128)!==0)';
        case 1: return '(ld<ls)';
        case 2: return '(ld===ls)';
        case 3: return '(ld<=ls)';
        case 4: return S;
        case 6: return '((ld<<24>>24)<(ls<<24>>24))';
        case 7: return '((ld<<24>>24)<=(ls<<24>>24))';
        default: return null;
      }
    }
    return null;
  }

  /** Set the static flag record after a producer. */
  produced(kind: number, size: number): void {
    this.pend = Pend.Static;
    this.kind = kind;
    this.size = size;
    this.line(`lop=${kind};lsz=${size};`);
  }
}

/** `xr` value of an exit that leaves RIP as a replayed handler set it (never a RIP: those are integers). */
const KEEP_RIP = '0.5';

/** Store the locals' flag record (whatever produced it) into the CPU. */
const DYN_FLUSH = 'c.lazyOp=lop;c.lazySize=lsz;c.lazyDst=ld;c.lazySrc=ls;c.lazyRes=lr;c.lazyDstHi=ldh;c.lazySrcHi=lsh;c.lazyResHi=lrh;c.lazyCarry=lcy;lop=0;';

/** Linear address of the entry's memory operand into `a` (64-bit address size), `rip` = next instruction. */
function eaCode(e: BlockEntry, nextOff: number): string {
  const parts: string[] = [];
  const b = e.base;
  if (b >= 0) parts.push(`(R[${2 * b + 1}]*4294967296+(R[${2 * b}]>>>0))`);
  else if (b === -2) parts.push(`(r0+${nextOff})`);
  if (e.index >= 0) {
    const x = `(R[${2 * e.index + 1}]*4294967296+(R[${2 * e.index}]>>>0))`;
    parts.push(e.scale === 1 ? x : `${x}*${e.scale}`);
  }
  if (e.disp !== 0 || parts.length === 0) parts.push(String(e.disp));
  let s = `a=${parts.join('+')};`;
  // Wrap into the signed 64-bit range (only a sum of two or more terms can leave it).
  if (parts.length > 1) s += 'if(a>=9223372036854775808)a-=18446744073709551616;else if(a<-9223372036854775808)a+=18446744073709551616;';
  if (e.seg >= 0) s += `a=c.linear(${e.seg},a);`;
  return s;
}

/**
 * Load `size` bytes at `a` into v (and vh for size 8). Through SoftCpu.readLin, whose TLB fast path V8 inlines
 * here: its feedback is shared by every block, so its slow path does not deoptimize a block that never took it.
 */
function loadCode(size: number): string {
  return size === 8 ? 'v=c.readLin(a,8);vh=c.hi;' : `v=c.readLin(a,${size});`;
}

/** Store `size` bytes (lo, hi expressions) at `a` (SoftCpu.writeLin: the code-page check is on its fast path). */
function storeCode(size: number, lo: string, hi: string): string {
  return size === 8 ? `c.writeLin(a,8,${lo},${hi});` : `c.writeLin(a,${size},${lo});`;
}

/** ALU result of op on (d, dh) and (s, sh) into the flag locals; `size` 4 or 8. */
function aluCode(op: number, size: number, d: string, dh: string, s: string, sh: string): string {
  if (size === 4) {
    let r: string;
    switch (op) {
      case ADD: r = '(ld+ls)|0'; break;
      case SUB: case CMP: r = '(ld-ls)|0'; break;
      case OR: r = 'ld|ls'; break;
      case XOR: r = 'ld^ls'; break;
      default: r = 'ld&ls';
    }
    return `ld=${d};ls=${s};lr=${r};`;
  }
  let r: string;
  switch (op) {
    case ADD: r = 't=(ld>>>0)+(ls>>>0);lrh=(ldh+lsh+(t>4294967295?1:0))|0;lr=t|0;'; break;
    case SUB: case CMP: r = 't=(ld>>>0)-(ls>>>0);lrh=(ldh-lsh-(t<0?1:0))|0;lr=t|0;'; break;
    case OR: r = 'lr=ld|ls;lrh=ldh|lsh;'; break;
    case XOR: r = 'lr=ld^ls;lrh=ldh^lsh;'; break;
    default: r = 'lr=ld&ls;lrh=ldh&lsh;';
  }
  return `ld=${d};ldh=${dh};ls=${s};lsh=${sh};${r}`;
}

/** A byte register (register, bit position) as an expression, and an assignment to it. */
const rd8 = (r: number, sh: number) => (sh ? `((R[${2 * r}]>>8)&255)` : `(R[${2 * r}]&255)`);
const wr8 = (r: number, sh: number, v: string) =>
  (sh ? `R[${2 * r}]=(R[${2 * r}]&-65281)|((${v}&255)<<8);` : `R[${2 * r}]=(R[${2 * r}]&-256)|(${v}&255);`);

/** 8-bit ALU result of op into the flag locals (zero-extended bytes). */
function alu8Code(op: number, d: string, s: string): string {
  let r: string;
  switch (op) {
    case ADD: r = '(ld+ls)&255'; break;
    case SUB: case CMP: r = '(ld-ls)&255'; break;
    case OR: r = 'ld|ls'; break;
    case XOR: r = 'ld^ls'; break;
    default: r = 'ld&ls';
  }
  return `ld=${d};ls=${s};lr=${r};`;
}

/**
 * 32-bit shift/rotate of register r by constant n (1..31). SHL/SHR/SAR write all six arithmetic flags (so the
 * pending record is dead and not stored); ROL/ROR write CF and OF only, over the materialized flags.
 */
function shift32Code(em: Emitter, op: number, r: number, n: number): string {
  const A = C.ARITH_FLAGS, CF = C.CF, OF = C.OF, AF = C.AF;
  let s = `t=R[${2 * r}];`;
  switch (op) {
    case 0: case 1: // ROL, ROR
      s = em.flush() + 'c.settleFlags();' + s;
      s += op === 0
        ? `v=(t<<${n})|(t>>>${32 - n});p=v&1;q=((v>>>31)^p)&1;`
        : `v=(t>>>${n})|(t<<${32 - n});p=(v>>>31)&1;q=((v>>>31)^(v>>>30))&1;`;
      s += `R[${2 * r}]=v;R[${2 * r + 1}]=0;c.flags=(c.flags&${~(CF | OF)})|p|(q?${OF}:0);`;
      return s;
    case 4: case 6: s += `v=t<<${n};p=(t>>>${32 - n})&1;q=((v>>>31)^p)&1;`; break; // SHL/SAL
    case 5: s += `v=(t>>>${n})|0;p=(t>>>${n - 1})&1;q=((v>>>31)^(v>>>30))&1;`; break; // SHR
    default: s += `v=t>>${n};p=(t>>${n - 1})&1;q=0;`; // SAR
  }
  em.pend = Pend.None;
  return s + `R[${2 * r}]=v;R[${2 * r + 1}]=0;c.flags=(c.flags&${~A})|SZP(4,v,0)|p|${AF}|(q?${OF}:0);c.lazyOp=0;lop=0;`;
}

/** Translate a 64-bit-mode block; null if it has nothing worth translating. */
export function translateBlock(block: Block): JitFn | null {
  const es = block.entries;
  const N = es.length;
  const offs: number[] = [];
  let off = 0;
  for (let i = 0; i < N; i++) {
    offs.push(off);
    off += es[i].len;
  }
  const em = new Emitter(block, offs);
  const last = es[N - 1];
  // A block whose final direct branch targets its own start loops inside the function.
  const lastNext = offs[N - 1] + last.len;
  const selfLoop = (last.form === Form.Jcc || last.form === Form.Jmp) && last.len > 0 && lastNext + last.disp === 0;
  if (selfLoop) em.pend = Pend.Dyn;
  const handlers: string[] = [];
  for (let i = 0; i < N; i++) {
    const e = es[i];
    const o = offs[i];
    const next = o + e.len;
    const isLast = i === N - 1;
    const after = isLast ? null : `r0+${next}`;
    const f = e.form;
    em.line(`// ${i}: +${o} opcode ${e.opcode.toString(16)} form ${f}`);
    // A memory operand, a branch's canonical check or a handler may fault: say which instruction this is.
    // (Forms after Nop have no inline code here: they are replayed like Form.None.)
    const mayFault = f === Form.None || f > Form.Nop || f === Form.MovStore64 || f === Form.MovStore32 || f === Form.MovLoad64 ||
      f === Form.MovLoad32 || f === Form.MovImmMem64 || f === Form.MovImmMem32 || f === Form.AluMR || f === Form.AluRM ||
      f === Form.AluMI || f === Form.Jcc || f === Form.Jmp || f === Form.Call || f === Form.Ret || f === Form.Push ||
      f === Form.Pop || f === Form.MovzxMem || f === Form.MovsxdMem || f === Form.Alu8RM || f === Form.Alu8MR ||
      f === Form.Alu8MI || f === Form.Mov8RM || f === Form.Mov8MR || f === Form.Mov8MI || f === Form.CmovRM;
    if (mayFault) em.line(`ix=${i};`);
    // Memory instructions: stop after them when they raised an event (a store into code, an MMIO side effect).
    const evCheck = () => { if (!isLast) em.line(`if(c.eventPending)${em.exit(i + 1, after)}`); };
    const ea = () => em.line(eaCode(e, next));
    switch (f) {
      case Form.MovRR64: em.line(`R[${2 * e.b}]=R[${2 * e.a}];R[${2 * e.b + 1}]=R[${2 * e.a + 1}];`); break;
      case Form.MovRR32: em.line(`R[${2 * e.b}]=R[${2 * e.a}];R[${2 * e.b + 1}]=0;`); break;
      case Form.MovStore64: ea(); em.line(storeCode(8, `R[${2 * e.a}]`, `R[${2 * e.a + 1}]`)); evCheck(); break;
      case Form.MovStore32: ea(); em.line(storeCode(4, `R[${2 * e.a}]`, '0')); evCheck(); break;
      case Form.MovLoad64: ea(); em.line(loadCode(8)); em.line(`R[${2 * e.a}]=v;R[${2 * e.a + 1}]=vh;`); evCheck(); break;
      case Form.MovLoad32: ea(); em.line(loadCode(4)); em.line(`R[${2 * e.a}]=v;R[${2 * e.a + 1}]=0;`); evCheck(); break;
      case Form.MovImmReg: em.line(`R[${2 * e.a}]=${e.imm};R[${2 * e.a + 1}]=${e.immHi};`); break;
      case Form.MovImmMem64: ea(); em.line(storeCode(8, String(e.imm), String(e.immHi))); evCheck(); break;
      case Form.MovImmMem32: ea(); em.line(storeCode(4, String(e.imm), '0')); evCheck(); break;
      case Form.Lea: {
        // Exact 64-bit sum on int32 halves (as ../fast-forms.ts lea); e.size is the scale shift, e.immHi the opsize.
        let s = '';
        const b = e.base;
        if (b >= 0) s += `t=R[${2 * b}];th=R[${2 * b + 1}];`;
        else if (b === -2) s += `t=r0+${next};th=Math.floor(t/4294967296)|0;t=t|0;`;
        else s += 't=0;th=0;';
        if (e.index >= 0) {
          const sh = e.size;
          s += sh ? `v=R[${2 * e.index}]<<${sh};vh=(R[${2 * e.index + 1}]<<${sh})|(R[${2 * e.index}]>>>${32 - sh});` : `v=R[${2 * e.index}];vh=R[${2 * e.index + 1}];`;
          s += 'p=(t>>>0)+(v>>>0);th=(th+vh+(p>4294967295?1:0))|0;t=p|0;';
        }
        if (e.disp !== 0) s += `p=(t>>>0)+${e.disp >>> 0};th=(th+${e.disp >> 31}+(p>4294967295?1:0))|0;t=p|0;`;
        s += `R[${2 * e.a}]=t;R[${2 * e.a + 1}]=${e.immHi === 8 ? 'th' : '0'};`;
        em.line(s);
        break;
      }
      case Form.AluRR: case Form.AluRI: {
        const op = e.op, size = e.size, rd = e.b;
        const s = f === Form.AluRR ? `R[${2 * e.a}]` : String(e.imm);
        const sh = f === Form.AluRR ? (size === 8 ? `R[${2 * e.a + 1}]` : '0') : String(e.immHi);
        em.line(aluCode(op, size, `R[${2 * rd}]`, `R[${2 * rd + 1}]`, s, sh));
        if (op < CMP) em.line(`R[${2 * rd}]=lr;R[${2 * rd + 1}]=${size === 8 ? 'lrh' : '0'};`);
        em.produced(KIND[op], size);
        break;
      }
      case Form.AluRM: {
        const op = e.op, size = e.size, rd = e.b;
        ea(); em.line(loadCode(size));
        em.line(aluCode(op, size, `R[${2 * rd}]`, `R[${2 * rd + 1}]`, 'v', size === 8 ? 'vh' : '0'));
        if (op < CMP) em.line(`R[${2 * rd}]=lr;R[${2 * rd + 1}]=${size === 8 ? 'lrh' : '0'};`);
        em.produced(KIND[op], size);
        evCheck();
        break;
      }
      case Form.AluMR: case Form.AluMI: {
        const op = e.op, size = e.size;
        const s = f === Form.AluMR ? `R[${2 * e.a}]` : String(e.imm);
        const sh = f === Form.AluMR ? (size === 8 ? `R[${2 * e.a + 1}]` : '0') : String(e.immHi);
        ea(); em.line(loadCode(size));
        // The store may fault after the load: compute into temporaries, commit the flag record after the store.
        em.line(`t=${s};th=${sh};`);
        const saved = em.pend;
        // (the record locals are overwritten only after the store succeeded, so a fault leaves the old record)
        const tmp = aluCode(op, size, 'v', 'vh', 't', 'th').replace(/\bl([dsr]h?)\b/g, 'q$1');
        em.line(tmp);
        if (op < CMP) em.line(storeCode(size, 'qr', 'qrh'));
        em.pend = saved;
        em.line(`ld=qd;ls=qs;lr=qr;${size === 8 ? 'ldh=qdh;lsh=qsh;lrh=qrh;' : ''}`);
        em.produced(KIND[op], size);
        evCheck();
        break;
      }
      case Form.IncDec: {
        const r = e.b, dec = e.op === 1;
        const cy = em.carry();
        em.line(`lcy=${cy};`);
        if (e.size === 8) {
          em.line(dec
            ? `ld=R[${2 * r}];ldh=R[${2 * r + 1}];lr=(ld-1)|0;lrh=(ldh-(ld===0?1:0))|0;`
            : `ld=R[${2 * r}];ldh=R[${2 * r + 1}];lr=(ld+1)|0;lrh=(ldh+(lr===0?1:0))|0;`);
          em.line(`ls=1;lsh=0;R[${2 * r}]=lr;R[${2 * r + 1}]=lrh;`);
        } else {
          em.line(`ld=R[${2 * r}];lr=(ld${dec ? '-' : '+'}1)|0;ls=1;R[${2 * r}]=lr;R[${2 * r + 1}]=0;`);
        }
        em.produced(dec ? L_DEC : L_INC, e.size);
        break;
      }
      case Form.ShiftImm: {
        if (e.size === 4 && e.op !== 2 && e.op !== 3) {
          // 32-bit SHL/SHR/SAR/ROL/ROR by a constant 1..31, flags as ../ops/alu-shift.ts shift32 sets them.
          em.line(shift32Code(em, e.op, e.b, e.imm));
          break;
        }
        em.line(em.flush());
        em.line('c.settleFlags();');
        const r = e.b;
        if (e.size === 8) em.line(`t=shift64(c,${e.op},R[${2 * r}],R[${2 * r + 1}],${e.imm});R[${2 * r}]=t;R[${2 * r + 1}]=OUT.hi;`);
        else em.line(`R[${2 * r}]=shift32(c,${e.op},4,R[${2 * r}],${e.imm});R[${2 * r + 1}]=0;`);
        break;
      }
      case Form.Push: case Form.Call: {
        // 64-bit push (../ops/flow-branch.ts push64): the write happens before RSP changes.
        let lo: string, hi: string;
        if (f === Form.Call) {
          em.line(`t=r0+${next};if(t+${e.disp}< -${TWO47}||t+${e.disp}>=${TWO47})c.gp(0);`);
          lo = 't|0'; hi = '(Math.floor(t/4294967296)|0)';
        } else { lo = `R[${2 * e.a}]`; hi = `R[${2 * e.a + 1}]`; }
        em.line(`q=R[8];qh=R[9];qr=(q-8)|0;qrh=(q>>>0)<8?(qh-1)|0:qh;a=qrh*4294967296+(qr>>>0);`);
        em.line(storeCode(8, lo, hi));
        em.line('R[8]=qr;R[9]=qrh;');
        if (f === Form.Call) {
          em.line(em.exit(i + 1, `r0+${next + e.disp}`));
        } else evCheck();
        break;
      }
      case Form.Pop: case Form.Ret: {
        em.line('q=R[8];qh=R[9];a=qh*4294967296+(q>>>0);');
        em.line(loadCode(8));
        if (f === Form.Ret) {
          em.line(`t=vh*4294967296+(v>>>0);if(t< -${TWO47}||t>=${TWO47})c.gp(0);`);
          em.line('if((q>>>0)>4294967287)R[9]=(qh+1)|0;R[8]=(q+8)|0;');
          em.line(em.exit(i + 1, 't'));
        } else {
          em.line(`if((q>>>0)>4294967287)R[9]=(qh+1)|0;R[8]=(q+8)|0;R[${2 * e.a}]=v;R[${2 * e.a + 1}]=vh;`);
          evCheck();
        }
        break;
      }
      case Form.MovzxReg8: em.line(`R[${2 * e.a}]=(R[${2 * e.b}]>>${e.imm})&255;R[${2 * e.a + 1}]=0;`); break;
      case Form.MovzxReg16: em.line(`R[${2 * e.a}]=R[${2 * e.b}]&65535;R[${2 * e.a + 1}]=0;`); break;
      case Form.MovzxMem: ea(); em.line(loadCode(e.size)); em.line(`R[${2 * e.a}]=v;R[${2 * e.a + 1}]=0;`); evCheck(); break;
      case Form.MovsxdReg: em.line(`v=R[${2 * e.b}];R[${2 * e.a}]=v;R[${2 * e.a + 1}]=v>>31;`); break;
      case Form.MovsxdMem: ea(); em.line(loadCode(4)); em.line(`R[${2 * e.a}]=v;R[${2 * e.a + 1}]=v>>31;`); evCheck(); break;
      case Form.Alu8RR: case Form.Alu8RI: case Form.Alu8RM: {
        const op = e.op;
        let src: string;
        if (f === Form.Alu8RR) src = rd8(e.a, e.ash);
        else if (f === Form.Alu8RI) src = String(e.imm);
        else { ea(); em.line(loadCode(1)); src = 'v'; }
        em.line(alu8Code(op, rd8(e.b, e.bsh), src));
        if (op < CMP) em.line(wr8(e.b, e.bsh, 'lr'));
        em.produced(KIND[op], 1);
        if (f === Form.Alu8RM) evCheck();
        break;
      }
      case Form.Alu8MR: case Form.Alu8MI: {
        const op = e.op;
        ea(); em.line(loadCode(1));
        em.line(`t=${f === Form.Alu8MR ? rd8(e.a, e.ash) : e.imm};`);
        em.line(alu8Code(op, 'v', 't').replace(/\bl([dsr])\b/g, 'q$1'));
        if (op < CMP) em.line(storeCode(1, 'qr', '0'));
        em.line('ld=qd;ls=qs;lr=qr;');
        em.produced(KIND[op], 1);
        evCheck();
        break;
      }
      case Form.Mov8RR: em.line(wr8(e.b, e.bsh, rd8(e.a, e.ash))); break;
      case Form.Mov8RI: em.line(wr8(e.b, e.bsh, String(e.imm))); break;
      case Form.Mov8RM: ea(); em.line(loadCode(1)); em.line(wr8(e.b, e.bsh, 'v')); evCheck(); break;
      case Form.Mov8MR: ea(); em.line(storeCode(1, rd8(e.a, e.ash), '0')); evCheck(); break;
      case Form.Mov8MI: ea(); em.line(storeCode(1, String(e.imm), '0')); evCheck(); break;
      case Form.CmovRR: case Form.CmovRM: {
        if (f === Form.CmovRM) { ea(); em.line(loadCode(e.size)); if (e.size === 4) em.line('vh=0;'); }
        else em.line(`v=R[${2 * e.a}];vh=${e.size === 8 ? `R[${2 * e.a + 1}]` : '0'};`);
        const cond = em.cond(e.op);
        em.line(`if(${cond}){R[${2 * e.b}]=v;R[${2 * e.b + 1}]=vh;}${e.size === 4 ? `else R[${2 * e.b + 1}]=0;` : ''}`);
        if (f === Form.CmovRM) evCheck();
        break;
      }
      case Form.Setcc: { const cond = em.cond(e.op); em.line(wr8(e.b, e.bsh, `(${cond}?1:0)`)); break; }
      case Form.Nop: break;
      case Form.Jcc: case Form.Jmp: {
        const target = next + e.disp;
        const cond = f === Form.Jcc ? em.cond(e.a) : 'true';
        const check = target === 0 ? '' : `t=r0+${target};if(t< -${TWO47}||t>=${TWO47})c.gp(0);`;
        let taken: string;
        if (selfLoop && isLast) {
          // Loop back while the budget, the loop limit and events allow; the flag record stays in the locals.
          taken = `{n+=${N};if(n+${N}<=left&&n+${N}<=${LOOP_LIMIT}&&!c.eventPending&&!c.stopRequested)continue;` +
            `${em.exit(0, 'r0')}}`;
        } else {
          taken = `{${check}${em.exit(i + 1, target === 0 ? 'r0' : 't')}}`;
        }
        if (f === Form.Jmp) em.line(taken);
        else { em.line(`if(${cond})${taken}`); em.line(em.exit(i + 1, `r0+${next}`)); }
        break;
      }
      default: {
        // Replay the interpreter's handler with the decoder state of the recording.
        em.line(em.flush());
        em.line(`c.ripStart=r0+${o};c.instructions=I0+n+${i + 1};`);
        em.line(`RP(c,E${i},r0+${o});`);
        handlers.push(`const E${i}=E[${i}];`);
        if (!isLast) em.line(`if(c.rip!==r0+${next}||c.eventPending)${em.exit(i + 1, null)}`);
        else em.line(em.exit(i + 1, null));
      }
    }
    if (isLast && f !== Form.Jcc && f !== Form.Jmp && f !== Form.Call && f !== Form.Ret && f !== Form.None) {
      em.line(em.exit(i + 1, `r0+${next}`));
    }
  }
  const body = em.out.join('\n');
  const src = `${handlers.join('\n')}
const OFF=${JSON.stringify(offs)};
return function jit_${block.pa.toString(16)}(c,left){
const R=c.gpr,r0=c.rip,I0=c.instructions;
let n=0,ix=0,lop=0,lsz=0,ld=0,ls=0,lr=0,ldh=0,lsh=0,lrh=0,lcy=0;
let a=0,p=0,v=0,vh=0,t=0,th=0,q=0,qh=0,qd=0,qs=0,qr=0,qdh=0,qsh=0,qrh=0;
let xc=0,xr=0;
try{
L:for(;;){
${body}
}
if(lop!==0){${DYN_FLUSH}}
if(xr!==${KEEP_RIP})c.rip=xr;
c.instructions=I0+n+xc;c.blockInstructions+=n+xc;
return n+xc;
}catch(err){
if(err===FAULT){c.instructions=I0+n+ix+1;c.ripStart=r0+OFF[ix];c.blockInstructions+=n+ix;c.jitInstructions+=n+ix;if(lop!==0){${DYN_FLUSH}}}
throw err;
}
};`;
  try {
    const factory = new Function('E', 'FAULT', 'shift32', 'shift64', 'OUT', 'RP', 'SZP', src) as
      (E: BlockEntry[], fault: unknown, s32: typeof shift32, s64: typeof shift64, o: typeof out, rp: typeof replayHandler,
        z: typeof szp) => JitFn;
    return factory(es, CPU_FAULT, shift32, shift64, out, replayHandler, szp);
  } catch (err) {
    // A translator bug must not take the guest down: keep replaying the block (and say so once).
    if (!reported) {
      reported = true;
      process.stderr.write(`ringzero: JIT: could not compile a block at ${block.pa.toString(16)}: ${(err as Error).message}\n`);
    }
    return null;
  }
}

let reported = false;

/** The generated source of a block, for debugging (RINGZERO_JIT_DUMP). */
export function jitSource(fn: JitFn): string {
  return fn.toString();
}
