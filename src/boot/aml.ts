// A small encoder for ACPI Machine Language (ACPI 6.4 §20.2, "AML Grammar Definition") and for
// resource descriptors (§6.4, "Resource Data Types for ACPI"): enough to write a static DSDT.
// Every builder returns the encoded bytes as a plain number[]; callers concatenate them.

export type Aml = number[];

export class AmlError extends Error {}

// Opcodes (ACPI 6.4 §20.2.5 "Term Objects Encoding" and §20.3 opcode table).
const ZERO_OP = 0x00;
const ONE_OP = 0x01;
const NAME_OP = 0x08;
const BYTE_PREFIX = 0x0a;
const WORD_PREFIX = 0x0b;
const DWORD_PREFIX = 0x0c;
const STRING_PREFIX = 0x0d;
const QWORD_PREFIX = 0x0e;
const SCOPE_OP = 0x10;
const BUFFER_OP = 0x11;
const PACKAGE_OP = 0x12;
const METHOD_OP = 0x14;
const DUAL_NAME_PREFIX = 0x2e;
const MULTI_NAME_PREFIX = 0x2f;
const ROOT_CHAR = 0x5c; // '\'
const PARENT_PREFIX_CHAR = 0x5e; // '^'
const EXT_OP_PREFIX = 0x5b;
const DEVICE_OP = 0x82; // after EXT_OP_PREFIX
const RETURN_OP = 0xa4;

/**
 * PkgLength (§20.2.4) for a body of `bodyLength` bytes. The encoded length counts the PkgLength
 * bytes themselves. One byte holds up to 63; otherwise bits 7-6 of the lead byte give the number of
 * following bytes (1-3), its bits 3-0 the low nibble, and the following bytes the higher bits.
 */
export function pkgLength(bodyLength: number): Aml {
  if (!Number.isInteger(bodyLength) || bodyLength < 0) throw new AmlError(`bad package length ${bodyLength}`);
  if (bodyLength + 1 < 0x40) return [bodyLength + 1];
  for (let extra = 1; extra <= 3; extra++) {
    const total = bodyLength + 1 + extra;
    if (total < 2 ** (4 + 8 * extra)) {
      const out = [(extra << 6) | (total & 0x0f)];
      for (let i = 0; i < extra; i++) out.push(Math.floor(total / 2 ** (4 + 8 * i)) & 0xff);
      return out;
    }
  }
  throw new AmlError(`package of ${bodyLength} bytes is too large for AML (max 2^28)`);
}

/** A 4-character NameSeg (§20.2.2): a lead letter or '_', then letters, digits or '_', padded with '_'. */
export function nameSeg(seg: string): Aml {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(seg)) throw new AmlError(`invalid AML name segment "${seg}"`);
  const padded = seg.padEnd(4, '_');
  return Array.from(padded, (c) => c.charCodeAt(0));
}

/** A NameString (§20.2.2): optional '\' root or '^' parent prefixes, then dot-separated segments. */
export function nameString(path: string): Aml {
  const out: Aml = [];
  let rest = path;
  if (rest.startsWith('\\')) {
    out.push(ROOT_CHAR);
    rest = rest.slice(1);
  } else {
    while (rest.startsWith('^')) {
      out.push(PARENT_PREFIX_CHAR);
      rest = rest.slice(1);
    }
  }
  const segs = rest === '' ? [] : rest.split('.');
  if (segs.length === 0) out.push(ZERO_OP); // NullName
  else if (segs.length === 1) out.push(...nameSeg(segs[0]));
  else if (segs.length === 2) out.push(DUAL_NAME_PREFIX, ...nameSeg(segs[0]), ...nameSeg(segs[1]));
  else {
    if (segs.length > 255) throw new AmlError(`name path "${path}" has too many segments`);
    out.push(MULTI_NAME_PREFIX, segs.length);
    for (const s of segs) out.push(...nameSeg(s));
  }
  return out;
}

function littleEndian(value: bigint, bytes: number): Aml {
  const out: Aml = [];
  for (let i = 0; i < bytes; i++) out.push(Number((value >> BigInt(8 * i)) & 0xffn));
  return out;
}

/** An integer constant (§20.2.3) in the shortest encoding: ZeroOp, OneOp, or a Byte/Word/DWord/QWord prefix. */
export function integer(value: number | bigint): Aml {
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new AmlError(`integer ${value} is outside 0..2^64-1`);
  if (v === 0n) return [ZERO_OP];
  if (v === 1n) return [ONE_OP];
  if (v <= 0xffn) return [BYTE_PREFIX, Number(v)];
  if (v <= 0xffffn) return [WORD_PREFIX, ...littleEndian(v, 2)];
  if (v <= 0xffff_ffffn) return [DWORD_PREFIX, ...littleEndian(v, 4)];
  return [QWORD_PREFIX, ...littleEndian(v, 8)];
}

/** A DWord constant whatever its value (for fields the OS expects as DWords, e.g. _PRT addresses). */
export function dword(value: number): Aml {
  return [DWORD_PREFIX, ...littleEndian(BigInt(value >>> 0), 4)];
}

/** A String (§20.2.3): ASCII 0x01-0x7F, NUL-terminated. */
export function string(s: string): Aml {
  const out: Aml = [STRING_PREFIX];
  for (const c of s) {
    const code = c.charCodeAt(0);
    if (c.length !== 1 || code < 0x01 || code > 0x7f) throw new AmlError(`AML strings are ASCII without NUL: ${JSON.stringify(s)}`);
    out.push(code);
  }
  out.push(0);
  return out;
}

/**
 * A compressed EISA ID (the ASL EisaId() macro, ACPI 6.4 §19.6.35): three letters packed 5 bits
 * each into a big-endian word, then four hex digits as a big-endian word. "PNP0A03" -> 0x030AD041.
 */
export function eisaId(id: string): Aml {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new AmlError(`invalid EISA ID "${id}"`);
  const letters = ((id.charCodeAt(0) - 0x40) << 10) | ((id.charCodeAt(1) - 0x40) << 5) | (id.charCodeAt(2) - 0x40);
  const product = parseInt(id.slice(3), 16);
  const bytes = [letters >> 8, letters & 0xff, product >> 8, product & 0xff];
  return [DWORD_PREFIX, ...bytes];
}

/** Name(path, object) (§20.2.5.1 DefName). */
export function name(path: string, object: Aml): Aml {
  return [NAME_OP, ...nameString(path), ...object];
}

/** Scope(path) { terms } (§20.2.5.1 DefScope). */
export function scope(path: string, ...terms: Aml[]): Aml {
  const body = [...nameString(path), ...terms.flat()];
  return [SCOPE_OP, ...pkgLength(body.length), ...body];
}

/** Device(name) { terms } (§20.2.5.2 DefDevice). */
export function device(path: string, ...terms: Aml[]): Aml {
  const body = [...nameString(path), ...terms.flat()];
  return [EXT_OP_PREFIX, DEVICE_OP, ...pkgLength(body.length), ...body];
}

/** Method(name, argCount, serialized) { terms } (§20.2.5.2 DefMethod). */
export function method(path: string, argCount: number, serialized: boolean, ...terms: Aml[]): Aml {
  if (!Number.isInteger(argCount) || argCount < 0 || argCount > 7) throw new AmlError(`a method takes 0-7 arguments, not ${argCount}`);
  const flags = argCount | (serialized ? 0x08 : 0);
  const body = [...nameString(path), flags, ...terms.flat()];
  return [METHOD_OP, ...pkgLength(body.length), ...body];
}

/** Return(value) (§20.2.5.3 DefReturn). */
export function returnOp(value: Aml): Aml {
  return [RETURN_OP, ...value];
}

/** Package() { elements } (§20.2.5.4 DefPackage); up to 255 elements. */
export function pkg(...elements: Aml[]): Aml {
  if (elements.length > 255) throw new AmlError(`a Package holds at most 255 elements, not ${elements.length}`);
  const body = [elements.length, ...elements.flat()];
  return [PACKAGE_OP, ...pkgLength(body.length), ...body];
}

/** Buffer() { bytes } (§20.2.5.4 DefBuffer). */
export function buffer(bytes: ArrayLike<number>): Aml {
  const body = [...integer(bytes.length), ...Array.from(bytes)];
  return [BUFFER_OP, ...pkgLength(body.length), ...body];
}

// ---- Resource descriptors (ACPI 6.4 §6.4) ----

function le(value: number | bigint, bytes: number): Aml {
  return littleEndian(BigInt(value), bytes);
}

/** I/O port descriptor, small item 0x47 (§6.4.2.5), 16-bit decode. */
export function ioPort(min: number, max: number, alignment: number, length: number): Aml {
  return [0x47, 0x01, ...le(min, 2), ...le(max, 2), alignment & 0xff, length & 0xff];
}

/** IRQ descriptor without flags, small item 0x22 (§6.4.2.1): edge-triggered, active-high, exclusive (ISA). */
export function irqNoFlags(...irqs: number[]): Aml {
  let mask = 0;
  for (const irq of irqs) {
    if (!Number.isInteger(irq) || irq < 0 || irq > 15) throw new AmlError(`ISA IRQ ${irq} is outside 0-15`);
    mask |= 1 << irq;
  }
  return [0x22, ...le(mask, 2)];
}

/** Address space resource types (§6.4.3.5, "Resource Type"). */
const RESOURCE_MEMORY = 0;
const RESOURCE_IO = 1;
const RESOURCE_BUS = 2;
/** General flags for a bridge window: producer (bit 0 = 0), positive decode, min and max fixed (bits 2, 3). */
const PRODUCER_FIXED = 0x0c;
/** I/O type-specific flags: _RNG = 3, both ISA and non-ISA ranges (§6.4.3.5.1 Table 6.50 I/O flags). */
const IO_RANGE_ENTIRE = 0x03;
/** Memory type-specific flags (Table 6.49): bit 0 read/write; bits 2-1 _MEM: 0 non-cacheable, 1 cacheable. */
const MEM_RW_NONCACHEABLE = 0x01;
const MEM_RW_CACHEABLE = 0x03;

function addressLength(min: bigint, max: bigint): bigint {
  if (max < min) throw new AmlError(`address range 0x${min.toString(16)}-0x${max.toString(16)} is empty`);
  return max - min + 1n;
}

/** WordBusNumber: word address space descriptor, large item 0x88 (§6.4.3.5.3), as a producer. */
export function wordBusNumber(min: number, max: number): Aml {
  const len = addressLength(BigInt(min), BigInt(max));
  return [0x88, ...le(0x0d, 2), RESOURCE_BUS, PRODUCER_FIXED, 0, ...le(0, 2), ...le(min, 2), ...le(max, 2), ...le(0, 2), ...le(len, 2)];
}

/** DWordIO: dword address space descriptor, large item 0x87 (§6.4.3.5.2), an I/O window. */
export function dwordIo(min: number, max: number): Aml {
  const len = addressLength(BigInt(min), BigInt(max));
  return [0x87, ...le(0x17, 2), RESOURCE_IO, PRODUCER_FIXED, IO_RANGE_ENTIRE, ...le(0, 4), ...le(min, 4), ...le(max, 4), ...le(0, 4), ...le(len, 4)];
}

/** DWordMemory: dword address space descriptor (§6.4.3.5.2), a read/write memory window. */
export function dwordMemory(min: number, max: number, cacheable = false): Aml {
  const len = addressLength(BigInt(min), BigInt(max));
  const flags = cacheable ? MEM_RW_CACHEABLE : MEM_RW_NONCACHEABLE;
  return [0x87, ...le(0x17, 2), RESOURCE_MEMORY, PRODUCER_FIXED, flags, ...le(0, 4), ...le(min, 4), ...le(max, 4), ...le(0, 4), ...le(len, 4)];
}

/** QWordMemory: qword address space descriptor, large item 0x8A (§6.4.3.5.1), a read/write memory window. */
export function qwordMemory(min: bigint | number, max: bigint | number, cacheable = false): Aml {
  const lo = BigInt(min);
  const hi = BigInt(max);
  const len = addressLength(lo, hi);
  const flags = cacheable ? MEM_RW_CACHEABLE : MEM_RW_NONCACHEABLE;
  return [0x8a, ...le(0x2b, 2), RESOURCE_MEMORY, PRODUCER_FIXED, flags, ...le(0, 8), ...le(lo, 8), ...le(hi, 8), ...le(0, 8), ...le(len, 8)];
}

/**
 * ResourceTemplate() { descriptors }: a Buffer of the descriptors closed by an End Tag (small item
 * 0x79, §6.4.2.9) whose checksum byte is 0, meaning "treat as correct".
 */
export function resourceTemplate(...descriptors: Aml[]): Aml {
  return buffer([...descriptors.flat(), 0x79, 0x00]);
}
