// Flag instructions (CMC, CLC, STC, CLD, STD), XLAT, the BCD adjustments (DAA, DAS, AAA, AAS, AAM, AAD), BOUND,
// the multi-byte/hint NOPs and UD2. Intel SDM vol. 2, the instruction pages of each.
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';
import { def1, def0f } from '../tables.ts';

// ---- CMC (F5), CLC (F8), STC (F9), CLD (FC), STD (FD)

def1(0xf5, (c) => { c.settleFlags(); c.flags ^= C.CF; });
def1(0xf8, (c) => { c.settleFlags(); c.flags &= ~C.CF; });
def1(0xf9, (c) => { c.settleFlags(); c.flags |= C.CF; });
def1(0xfc, (c) => { c.flags &= ~C.DF; });
def1(0xfd, (c) => { c.flags |= C.DF; });

// ---- XLAT (D7): AL <- [seg:rBX + AL] with the address size.

def1(0xd7, (c) => {
  const seg = c.segOverride >= 0 ? c.segOverride : C.DS;
  const al = c.gpr[0] & 0xff;
  const a = c.adsize;
  const off = a === 8 ? c.wrapAddr(c.getReg64Num(3) + al) : a === 4 ? ((c.gpr[6] >>> 0) + al) >>> 0 : (c.gpr[6] + al) & 0xffff;
  const v = c.readLin(c.linear(seg, off), 1);
  c.gpr[0] = (c.gpr[0] & ~0xff) | v;
});

// ---- BCD adjustments (invalid in 64-bit mode)

const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let b = i, p = 1;
  while (b) { p ^= b & 1; b >>= 1; }
  PARITY[i] = p;
}

/** SF, ZF and PF of an 8-bit result. */
function szp(v: number): number {
  return (v & 0x80 ? C.SF : 0) | (v === 0 ? C.ZF : 0) | (PARITY[v] ? C.PF : 0);
}

function setAl(c: SoftCpu, v: number): void {
  c.gpr[0] = (c.gpr[0] & ~0xff) | (v & 0xff);
}

def1(0x27, (c) => { // DAA
  if (c.mode64) c.ud();
  const oldAl = c.gpr[0] & 0xff;
  const oldCf = c.getCF();
  let al = oldAl, cf = false, af = false;
  if ((al & 0x0f) > 9 || c.getAF()) {
    cf = oldCf || al + 6 > 0xff;
    al = (al + 6) & 0xff;
    af = true;
  }
  if (oldAl > 0x99 || oldCf) { al = (al + 0x60) & 0xff; cf = true; } else cf = false;
  setAl(c, al);
  c.setArith(szp(al) | (cf ? C.CF : 0) | (af ? C.AF : 0));
});

def1(0x2f, (c) => { // DAS
  if (c.mode64) c.ud();
  const oldAl = c.gpr[0] & 0xff;
  const oldCf = c.getCF();
  let al = oldAl, cf = false, af = false;
  if ((al & 0x0f) > 9 || c.getAF()) {
    cf = oldCf || al < 6;
    al = (al - 6) & 0xff;
    af = true;
  }
  if (oldAl > 0x99 || oldCf) { al = (al - 0x60) & 0xff; cf = true; }
  setAl(c, al);
  c.setArith(szp(al) | (cf ? C.CF : 0) | (af ? C.AF : 0));
});

def1(0x37, (c) => { // AAA
  if (c.mode64) c.ud();
  let ax = c.gpr[0] & 0xffff;
  let f = 0;
  if ((ax & 0x0f) > 9 || c.getAF()) { ax = (ax + 0x106) & 0xffff; f = C.AF | C.CF; }
  ax &= 0xff0f;
  c.gpr[0] = (c.gpr[0] & ~0xffff) | ax;
  c.setArith(f | szp(ax & 0xff));
});

def1(0x3f, (c) => { // AAS
  if (c.mode64) c.ud();
  let ax = c.gpr[0] & 0xffff;
  let f = 0;
  if ((ax & 0x0f) > 9 || c.getAF()) { ax = (ax - 6) & 0xffff; ax = (ax - 0x100) & 0xffff; f = C.AF | C.CF; }
  ax &= 0xff0f;
  c.gpr[0] = (c.gpr[0] & ~0xffff) | ax;
  c.setArith(f | szp(ax & 0xff));
});

def1(0xd4, (c) => { // AAM imm8
  if (c.mode64) c.ud();
  const base = c.fetch8();
  if (base === 0) c.fault(C.EXC_DE);
  const al = c.gpr[0] & 0xff;
  const ah = Math.floor(al / base), nal = al % base;
  c.gpr[0] = (c.gpr[0] & ~0xffff) | (ah << 8) | nal;
  c.setArith(szp(nal));
});

def1(0xd5, (c) => { // AAD imm8
  if (c.mode64) c.ud();
  const base = c.fetch8();
  const al = c.gpr[0] & 0xff, ah = (c.gpr[0] >> 8) & 0xff;
  const nal = (al + ah * base) & 0xff;
  c.gpr[0] = (c.gpr[0] & ~0xffff) | nal;
  c.setArith(szp(nal));
});

// ---- BOUND (62): #BR when the signed index is outside [lower, upper]; in 64-bit mode 62 is not BOUND.

def1(0x62, (c) => {
  if (c.mode64) c.ud();
  c.decodeModrm();
  if (c.mod === 3) c.ud();
  const size = c.opsize;
  const lower = c.readLin(c.eaLinear(), size);
  const upper = c.readLin(c.eaLinear(size), size);
  const idx = c.getReg(size, c.reg);
  const sx = (v: number) => (size === 2 ? (v << 16) >> 16 : v | 0);
  if (sx(idx) < sx(lower) || sx(idx) > sx(upper)) c.fault(C.EXC_BR);
});

// ---- NOP r/m (0F 1F /0 and the reserved hint space 0F 19-1F), PREFETCH hints (0F 18, 0F 0D), ENDBR (F3 0F 1E):
// they decode a ModRM operand but never access it.

const nopRm = (c: SoftCpu) => { c.decodeModrm(); };
def0f(0x18, nopRm, 0x1f);
def0f(0x0d, nopRm);

// ---- UD2 (0F 0B)

def0f(0x0b, (c) => c.ud());
