// String instructions: MOVS (A4/A5), CMPS (A6/A7), STOS (AA/AB), LODS (AC/AD), SCAS (AE/AF), INS (6C/6D),
// OUTS (6E/6F), with REP/REPE/REPNE (Intel SDM vol. 2B "REP/REPE/REPZ/REPNE/REPNZ" and each instruction's page).
//
// The pointers (rSI, rDI) and the counter (rCX) have the *address* size; the source segment is DS (overridable),
// the destination is always ES. Each iteration updates rSI/rDI/rCX before the next one starts, so a fault in
// the middle leaves the registers describing exactly the iterations done, and re-executing the instruction
// (the run loop rewinds RIP to its start) resumes the copy where it stopped, as on hardware (SDM vol. 1 §7.3.9.2:
// a repeated string instruction can be interrupted between iterations).
//
// A repeated instruction does at most a bounded amount of work per step and then re-executes itself (RIP back to
// the instruction's start) while rCX is not zero, so interrupts are recognized during long copies.
//
// Fast paths: REP STOS and REP MOVS with DF = 0 fill/copy whole runs of RAM inside a page with
// TypedArray.fill/copyWithin/set (the kernel clears and copies pages this way). An element the fast path cannot take
// (it straddles a page boundary or an address-size wrap, or is not in RAM) is done alone the generic way and the
// fast path resumes after it: a `rep movsq` whose source is not 8-byte aligned (Linux's copy_user_generic_string
// aligns only the destination, so every network receive copies so) meets such an element at every source page.
import type { SoftCpu } from '../cpu.ts';
import { Lazy } from '../lazy.ts';
import * as C from '../constants.ts';
import { def1 } from '../tables.ts';
import { checkIoPermission } from '../system/control.ts';

const TWO32 = C.TWO32;
/** Elements one step handles on the generic path before re-executing the instruction. */
const SLOW_CHUNK = 1024;
/** Bytes one step handles on the fast paths before re-executing the instruction. */
const FAST_CHUNK = 256 * 1024;
/** What the fast paths may still copy or fill in the current step (shared by a step's fast runs). */
let fastBudget = 0;

// ---- address-size register helpers

/** rSI/rDI (or any register) as an address of the current address size. */
function getPtr(c: SoftCpu, r: number): number {
  const a = c.adsize;
  return a === 8 ? c.gpr[2 * r + 1] * TWO32 + (c.gpr[2 * r] >>> 0) : a === 4 ? c.gpr[2 * r] >>> 0 : c.gpr[2 * r] & 0xffff;
}

/** Add `delta` to a pointer register, wrapping at the address size (a 32-bit write zero-extends in 64-bit mode). */
function advancePtr(c: SoftCpu, r: number, delta: number): void {
  const a = c.adsize;
  if (a === 8) {
    const lo = (c.gpr[2 * r] >>> 0) + delta;
    const carry = Math.floor(lo / TWO32);
    c.gpr[2 * r] = lo | 0;
    if (carry !== 0) c.gpr[2 * r + 1] = (c.gpr[2 * r + 1] + carry) | 0;
  } else if (a === 4) {
    c.gpr[2 * r] = (c.gpr[2 * r] + delta) | 0;
    if (c.mode64) c.gpr[2 * r + 1] = 0;
  } else {
    c.gpr[2 * r] = (c.gpr[2 * r] & ~0xffff) | ((c.gpr[2 * r] + delta) & 0xffff);
  }
}

/** rCX as an unsigned count of the address size, capped (only a bounded number of elements is done per step). */
function getCount(c: SoftCpu): number {
  const a = c.adsize;
  if (a === 8) return c.gpr[3] !== 0 ? 0x100000000 : c.gpr[2] >>> 0;
  return a === 4 ? c.gpr[2] >>> 0 : c.gpr[2] & 0xffff;
}

function subCount(c: SoftCpu, n: number): void {
  const a = c.adsize;
  if (a === 8) {
    let lo = (c.gpr[2] >>> 0) - n;
    if (lo < 0) { lo += TWO32; c.gpr[3] = (c.gpr[3] - 1) | 0; }
    c.gpr[2] = lo | 0;
  } else if (a === 4) {
    c.gpr[2] = (c.gpr[2] - n) | 0;
    if (c.mode64) c.gpr[3] = 0;
  } else {
    c.gpr[2] = (c.gpr[2] & ~0xffff) | ((c.gpr[2] - n) & 0xffff);
  }
}

/** Bytes left before a pointer of the current address size wraps (Infinity for 64-bit addresses). */
function bytesBeforeWrap(c: SoftCpu, ptr: number): number {
  const a = c.adsize;
  return a === 8 ? Infinity : a === 4 ? TWO32 - ptr : 0x10000 - ptr;
}

function elementSize(c: SoftCpu): number {
  return (c.opcode & 1) === 0 ? 1 : c.opsize;
}

function srcSeg(c: SoftCpu): number {
  return c.segOverride >= 0 ? c.segOverride : C.DS;
}

/** RAM behind physical [pa, pa+len) as (buffer, offset), or false when any of it is not RAM. */
let spanBuf: Uint8Array = new Uint8Array(0);
let spanOff = 0;
function ramSpan(c: SoftCpu, pa: number, len: number): boolean {
  if (pa + len <= c.ramSize) { spanBuf = c.ram; spanOff = pa; return true; }
  // High RAM (above 4 GiB) is RAM too; MMIO and the LAPIC page (in the PCI hole) are not.
  const r = c.mem.regionFor(pa, len);
  if (!r) return false;
  spanBuf = r.bytes; spanOff = pa - r.guestBase;
  return true;
}

/** After a repeated instruction's chunk: re-execute it while the counter is not exhausted. */
function again(c: SoftCpu): void {
  if (getCount(c) !== 0) c.rip = c.ripStart;
}

// ---- MOVS

function movsOne(c: SoftCpu, size: number, seg: number, step: number): void {
  const v = c.readLin(c.linear(seg, getPtr(c, 6)), size);
  const hi = c.hi;
  c.writeLin(c.linear(C.ES, getPtr(c, 7)), size, v, hi);
  advancePtr(c, 6, step);
  advancePtr(c, 7, step);
}

/** REP MOVS with DF = 0 over RAM. Returns false when the generic path must do (part of) the work. */
function movsFast(c: SoftCpu, size: number, seg: number): boolean {
  const user = c.cpl === 3;
  while (fastBudget > 0) {
    const count = getCount(c);
    if (count === 0) return true;
    const si = getPtr(c, 6), di = getPtr(c, 7);
    const srcLin = c.linear(seg, si), dstLin = c.linear(C.ES, di);
    let bytes = Math.min(count * size, 4096 - (srcLin & 0xfff), 4096 - (dstLin & 0xfff), fastBudget,
      bytesBeforeWrap(c, si), bytesBeforeWrap(c, di));
    const n = Math.floor(bytes / size);
    if (n === 0) return false; // an element straddles a page or a wrap: generic path
    bytes = n * size;
    const srcPa = c.translate(srcLin, 0, user);
    const dstPa = c.translate(dstLin, 1, user);
    if (!ramSpan(c, srcPa, bytes)) return false;
    const sBuf = spanBuf, sOff = spanOff;
    if (!ramSpan(c, dstPa, bytes)) return false;
    const dBuf = spanBuf, dOff = spanOff;
    if (dBuf === c.ram) c.noteCodeWrite(dOff, bytes); // drop decoded blocks of code pages being overwritten
    if (sBuf === dBuf) {
      const dist = dOff - sOff;
      if (dist > 0 && dist < bytes) {
        // Forward overlap: the element-by-element copy replicates the source; a forward byte copy is the same
        // thing when the distance is at least one element, otherwise leave it to the generic path.
        if (dist < size) return false;
        for (let k = 0; k < bytes; k++) dBuf[dOff + k] = sBuf[sOff + k];
      } else {
        dBuf.copyWithin(dOff, sOff, sOff + bytes);
      }
    } else {
      dBuf.set(sBuf.subarray(sOff, sOff + bytes), dOff);
    }
    advancePtr(c, 6, bytes);
    advancePtr(c, 7, bytes);
    subCount(c, n);
    fastBudget -= bytes;
  }
  return true;
}

function movs(c: SoftCpu): void {
  const size = elementSize(c);
  const seg = srcSeg(c);
  const step = c.flags & C.DF ? -size : size;
  if (c.rep === 0) { movsOne(c, size, seg, step); return; }
  if (step > 0) {
    // Fast runs; each element they cannot take goes the generic way alone (at most SLOW_CHUNK of them per step).
    // movsFast is false only with elements left, and its budget bounds the bytes.
    fastBudget = FAST_CHUNK;
    for (let slow = 0; slow < SLOW_CHUNK && !movsFast(c, size, seg); slow++) {
      movsOne(c, size, seg, step);
      subCount(c, 1);
    }
    again(c);
    return;
  }
  const n = Math.min(getCount(c), SLOW_CHUNK);
  for (let k = 0; k < n; k++) {
    movsOne(c, size, seg, step);
    subCount(c, 1);
  }
  again(c);
}

def1(0xa4, movs, 0xa5);

// ---- STOS

function stosOne(c: SoftCpu, size: number, step: number): void {
  const v = c.getReg(size, 0);
  c.writeLin(c.linear(C.ES, getPtr(c, 7)), size, v, c.gpr[1]);
  advancePtr(c, 7, step);
}

/** Little-endian bytes of rAX for the element size (scratch for the fast fill). */
const pattern = new Uint8Array(8);

/** fillBytes' 32-bit view of the last buffer it filled (null: that buffer is not 4-aligned). */
let wordsOf: Uint8Array | null = null;
let words: Int32Array | null = null;

/**
 * buf[off, off + len) = byte. Through 32-bit elements where it can: guest RAM is a SharedArrayBuffer, whose byte-wise
 * fill V8 does element by element (~1.2 us per 4 KiB page here against ~0.33 us as 1024 words), and the kernel clears
 * every page it hands out with REP STOS.
 */
function fillBytes(buf: Uint8Array, off: number, len: number, byte: number): void {
  if (len < 64) { buf.fill(byte, off, off + len); return; }
  if (buf !== wordsOf) {
    wordsOf = buf;
    // (a RAM region may pass 2^31 bytes (a 4 GiB guest's low RAM is 3 GiB): no shift on its length)
    words = (buf.byteOffset & 3) === 0 ? new Int32Array(buf.buffer, buf.byteOffset, Math.floor(buf.byteLength / 4)) : null;
  }
  if (words === null) { buf.fill(byte, off, off + len); return; }
  // (offsets may pass 2^31 in a large RAM region: no shifts on them, only their low bits)
  const end = off + len, a = off + ((4 - (off & 3)) & 3), b = end - (end & 3);
  if (a !== off) buf.fill(byte, off, a);
  words.fill(Math.imul(byte, 0x01010101), a / 4, b / 4);
  if (b !== end) buf.fill(byte, b, end);
}

function stosFast(c: SoftCpu, size: number): boolean {
  const user = c.cpl === 3;
  const lo = c.gpr[0], hi = c.gpr[1];
  for (let k = 0; k < size; k++) pattern[k] = k < 4 ? (lo >>> (8 * k)) & 0xff : (hi >>> (8 * (k - 4))) & 0xff;
  let uniform = true;
  for (let k = 1; k < size; k++) if (pattern[k] !== pattern[0]) uniform = false;
  while (fastBudget > 0) {
    const count = getCount(c);
    if (count === 0) return true;
    const di = getPtr(c, 7);
    const lin = c.linear(C.ES, di);
    let bytes = Math.min(count * size, 4096 - (lin & 0xfff), fastBudget, bytesBeforeWrap(c, di));
    const n = Math.floor(bytes / size);
    if (n === 0) return false;
    bytes = n * size;
    const pa = c.translate(lin, 1, user);
    if (!ramSpan(c, pa, bytes)) return false;
    const buf = spanBuf, off = spanOff;
    if (buf === c.ram) c.noteCodeWrite(off, bytes);
    if (uniform) {
      fillBytes(buf, off, bytes, pattern[0]);
    } else {
      for (let k = 0; k < size; k++) buf[off + k] = pattern[k];
      // Double the filled prefix until the run is full.
      for (let done = size; done < bytes; done *= 2) buf.copyWithin(off + done, off, off + Math.min(done, bytes - done));
    }
    advancePtr(c, 7, bytes);
    subCount(c, n);
    fastBudget -= bytes;
  }
  return true;
}

function stos(c: SoftCpu): void {
  const size = elementSize(c);
  const step = c.flags & C.DF ? -size : size;
  if (c.rep === 0) { stosOne(c, size, step); return; }
  if (step > 0) {
    // As movs: fast runs, each element they cannot take done alone the generic way.
    fastBudget = FAST_CHUNK;
    for (let slow = 0; slow < SLOW_CHUNK && !stosFast(c, size); slow++) {
      stosOne(c, size, step);
      subCount(c, 1);
    }
    again(c);
    return;
  }
  const n = Math.min(getCount(c), SLOW_CHUNK);
  for (let k = 0; k < n; k++) {
    stosOne(c, size, step);
    subCount(c, 1);
  }
  again(c);
}

def1(0xaa, stos, 0xab);

// ---- LODS

function lods(c: SoftCpu): void {
  const size = elementSize(c);
  const seg = srcSeg(c);
  const step = c.flags & C.DF ? -size : size;
  const n = c.rep === 0 ? 1 : Math.min(getCount(c), SLOW_CHUNK);
  for (let k = 0; k < n; k++) {
    const v = c.readLin(c.linear(seg, getPtr(c, 6)), size);
    c.setReg(size, 0, v, c.hi);
    advancePtr(c, 6, step);
    if (c.rep !== 0) subCount(c, 1);
  }
  if (c.rep !== 0) again(c);
}

def1(0xac, lods, 0xad);

// ---- CMPS and SCAS: flags as CMP (SUB without storing); REPE stops on ZF = 0, REPNE on ZF = 1.

/** Set the lazy flags of `a - b` at `size` (size 8 takes the high halves). */
function compare(c: SoftCpu, size: number, a: number, ah: number, b: number, bh: number): void {
  if (size === 8) {
    const lo = (a - b) | 0;
    const borrow = (a >>> 0) < (b >>> 0) ? 1 : 0;
    c.setLazy(Lazy.Sub, 8, a, b, lo, ah, bh, (ah - bh - borrow) | 0);
  } else {
    c.setLazy(Lazy.Sub, size, a, b, (a - b) | 0);
  }
}

function cmps(c: SoftCpu): void {
  const size = elementSize(c);
  const seg = srcSeg(c);
  const step = c.flags & C.DF ? -size : size;
  const rep = c.rep;
  const n = rep === 0 ? 1 : Math.min(getCount(c), SLOW_CHUNK);
  for (let k = 0; k < n; k++) {
    const a = c.readLin(c.linear(seg, getPtr(c, 6)), size);
    const ah = c.hi;
    const b = c.readLin(c.linear(C.ES, getPtr(c, 7)), size);
    const bh = c.hi;
    compare(c, size, a, ah, b, bh);
    advancePtr(c, 6, step);
    advancePtr(c, 7, step);
    if (rep === 0) return;
    subCount(c, 1);
    if (c.getZF() !== (rep === 0xf3)) return; // REPE ends on a difference, REPNE on a match
  }
  again(c);
}

def1(0xa6, cmps, 0xa7);

function scas(c: SoftCpu): void {
  const size = elementSize(c);
  const step = c.flags & C.DF ? -size : size;
  const rep = c.rep;
  const a = c.getReg(size, 0);
  const ah = c.gpr[1];
  const n = rep === 0 ? 1 : Math.min(getCount(c), SLOW_CHUNK);
  for (let k = 0; k < n; k++) {
    const b = c.readLin(c.linear(C.ES, getPtr(c, 7)), size);
    const bh = c.hi;
    compare(c, size, a, ah, b, bh);
    advancePtr(c, 7, step);
    if (rep === 0) return;
    subCount(c, 1);
    if (c.getZF() !== (rep === 0xf3)) return;
  }
  again(c);
}

def1(0xae, scas, 0xaf);

// ---- INS (6C/6D) and OUTS (6E/6F): port DX, element size 1 or 2/4 (no 64-bit port I/O).

function ioSize(c: SoftCpu): 1 | 2 | 4 {
  return (c.opcode & 1) === 0 ? 1 : c.opsize === 2 ? 2 : 4;
}

function ins(c: SoftCpu): void {
  const size = ioSize(c);
  const port = c.gpr[4] & 0xffff;
  checkIoPermission(c, port, size);
  const step = c.flags & C.DF ? -size : size;
  const n = c.rep === 0 ? 1 : Math.min(getCount(c), SLOW_CHUNK);
  for (let k = 0; k < n; k++) {
    const lin = c.linear(C.ES, getPtr(c, 7));
    // Check the destination before reading the port: a port read has side effects (SDM INS: #PF before input).
    c.probeWrite(lin, size);
    const v = c.env.ports.read(port, size);
    c.writeLin(lin, size, v);
    advancePtr(c, 7, step);
    if (c.rep !== 0) subCount(c, 1);
  }
  if (c.rep !== 0) again(c);
}

function outs(c: SoftCpu): void {
  const size = ioSize(c);
  const port = c.gpr[4] & 0xffff;
  checkIoPermission(c, port, size);
  const seg = srcSeg(c);
  const step = c.flags & C.DF ? -size : size;
  const n = c.rep === 0 ? 1 : Math.min(getCount(c), SLOW_CHUNK);
  for (let k = 0; k < n; k++) {
    const v = c.readLin(c.linear(seg, getPtr(c, 6)), size);
    c.env.ports.write(port, size, size === 4 ? v >>> 0 : v);
    advancePtr(c, 6, step);
    if (c.rep !== 0) subCount(c, 1);
  }
  if (c.rep !== 0) again(c);
}

def1(0x6c, ins, 0x6d);
def1(0x6e, outs, 0x6f);
