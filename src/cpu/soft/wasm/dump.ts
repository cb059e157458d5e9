// RINGZERO_WASM_DUMP=FILE (development only, off by default): the translator appends every function it emits to
// FILE as text, instruction by instruction (guest address, opcode, fast form, then the wasm operations it became and
// their count), so the code generated for hot guest code can be read next to the guest's disassembly and measured
// in wasm operations per guest instruction. Operation names follow the Core specification's text format (§5.4
// gives the binary encodings decoded here); only the opcodes the translator emits are named, others print as hex.
import { appendFileSync } from 'node:fs';

export const DUMP_FILE = process.env.RINGZERO_WASM_DUMP ?? '';

const NAMES: Record<number, string> = {
  0x00: 'unreachable', 0x02: 'block', 0x03: 'loop', 0x04: 'if', 0x05: 'else', 0x0b: 'end', 0x0c: 'br', 0x0d: 'br_if',
  0x0e: 'br_table', 0x0f: 'return', 0x10: 'call', 0x1a: 'drop', 0x1b: 'select',
  0x20: 'local.get', 0x21: 'local.set', 0x22: 'local.tee',
  0x28: 'i32.load', 0x29: 'i64.load', 0x2b: 'f64.load', 0x2d: 'i32.load8_u', 0x2f: 'i32.load16_u', 0x31: 'i64.load8_u',
  0x33: 'i64.load16_u', 0x34: 'i64.load32_s', 0x35: 'i64.load32_u', 0x36: 'i32.store', 0x37: 'i64.store',
  0x39: 'f64.store', 0x3a: 'i32.store8', 0x3b: 'i32.store16', 0x3c: 'i64.store8', 0x3d: 'i64.store16', 0x3e: 'i64.store32',
  0x41: 'i32.const', 0x42: 'i64.const', 0x44: 'f64.const',
  0x45: 'i32.eqz', 0x46: 'i32.eq', 0x47: 'i32.ne', 0x48: 'i32.lt_s', 0x49: 'i32.lt_u', 0x4a: 'i32.gt_s', 0x4b: 'i32.gt_u',
  0x4c: 'i32.le_s', 0x4d: 'i32.le_u', 0x4e: 'i32.ge_s', 0x4f: 'i32.ge_u', 0x50: 'i64.eqz', 0x51: 'i64.eq', 0x52: 'i64.ne',
  0x53: 'i64.lt_s', 0x54: 'i64.lt_u', 0x55: 'i64.gt_s', 0x56: 'i64.gt_u', 0x57: 'i64.le_s', 0x58: 'i64.le_u',
  0x59: 'i64.ge_s', 0x5a: 'i64.ge_u', 0x61: 'f64.eq', 0x62: 'f64.ne', 0x63: 'f64.lt', 0x66: 'f64.ge',
  0x69: 'i32.popcnt', 0x6a: 'i32.add', 0x6b: 'i32.sub', 0x6c: 'i32.mul', 0x71: 'i32.and', 0x72: 'i32.or', 0x73: 'i32.xor',
  0x74: 'i32.shl', 0x75: 'i32.shr_s', 0x76: 'i32.shr_u', 0x77: 'i32.rotl', 0x78: 'i32.rotr',
  0x7c: 'i64.add', 0x7d: 'i64.sub', 0x7e: 'i64.mul', 0x7f: 'i64.div_s', 0x80: 'i64.div_u', 0x81: 'i64.rem_s',
  0x82: 'i64.rem_u', 0x83: 'i64.and', 0x84: 'i64.or', 0x85: 'i64.xor', 0x86: 'i64.shl', 0x87: 'i64.shr_s',
  0x88: 'i64.shr_u', 0x89: 'i64.rotl', 0x8a: 'i64.rotr', 0xa0: 'f64.add', 0xa7: 'i32.wrap_i64',
  0xac: 'i64.extend_i32_s', 0xad: 'i64.extend_i32_u', 0xb7: 'f64.convert_i32_s', 0xb9: 'f64.convert_i64_s',
  0xc0: 'i32.extend8_s', 0xc1: 'i32.extend16_s',
};

/** Decode wasm code bytes [from, to) into one text line per operation. */
export function disassemble(code: Uint8Array, from: number, to: number): string[] {
  const out: string[] = [];
  let p = from;
  const uleb = (): number => { let v = 0, s = 0, x; do { x = code[p++]; v += (x & 0x7f) * 2 ** s; s += 7; } while (x & 0x80); return v; };
  const sleb = (): string => {
    let v = 0n, s = 0n, x;
    do { x = code[p++]; v |= BigInt(x & 0x7f) << s; s += 7n; } while (x & 0x80);
    if (x & 0x40) v -= 1n << s;
    return v.toString();
  };
  while (p < to) {
    const op = code[p++];
    let name = NAMES[op] ?? `op_${op.toString(16)}`, arg = '';
    if (op === 0x02 || op === 0x03 || op === 0x04) p++;
    else if (op === 0x0c || op === 0x0d || op === 0x10 || (op >= 0x20 && op <= 0x22)) arg = String(uleb());
    else if (op === 0x0e) { const n = uleb(); const l: number[] = []; for (let i = 0; i <= n; i++) l.push(uleb()); arg = l.join(','); }
    else if (op >= 0x28 && op <= 0x3e) { uleb(); arg = 'offset=' + uleb(); }
    else if (op === 0x41 || op === 0x42) arg = sleb();
    else if (op === 0x44) { arg = String(new DataView(code.buffer, code.byteOffset + p, 8).getFloat64(0, true)); p += 8; }
    else if (op === 0xfc) { const s = uleb(); name = s === 6 ? 'i64.trunc_sat_f64_s' : s === 7 ? 'i64.trunc_sat_f64_u' : s === 10 ? 'memory.copy' : s === 11 ? 'memory.fill' : `0xfc ${s}`; p += s === 10 ? 2 : s === 11 ? 1 : 0; }
    else if (op === 0xfd) { name = `simd ${uleb()}`; }
    out.push(arg ? `${name} ${arg}` : name);
  }
  return out;
}

/** One function's dump: `marks` = [label, code start, code end] per guest instruction (and prologue/epilogue). */
export function dumpFunction(title: string, code: Uint8Array, marks: [string, number, number][]): void {
  const lines = [`== ${title}`];
  let total = 0, guest = 0;
  for (const [label, s, e] of marks) {
    const ops = disassemble(code, s, e);
    total += ops.length;
    if (!label.startsWith('(')) guest++;
    lines.push(`-- ${label}: ${ops.length} ops`);
    for (const o of ops) lines.push('     ' + o);
  }
  lines.push(`== ${guest} guest instructions, ${total} wasm operations in them (${(total / Math.max(guest, 1)).toFixed(1)} per instruction)`);
  appendFileSync(DUMP_FILE, lines.join('\n') + '\n');
}
