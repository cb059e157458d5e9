// Decompressing the kernel in the VMM instead of in the guest. A bzImage's protected-mode part is a small
// decompressor plus the real kernel (vmlinux, an ELF file) compressed; Debian's cloud kernel uses LZ4. On a software
// CPU the guest's own decompression costs about a quarter of the boot, so when the payload is LZ4 ringzero decodes
// it here and loads vmlinux's segments at their physical addresses, then enters vmlinux's 64-bit entry point
// (startup_64) directly, as Firecracker and Cloud Hypervisor do for an uncompressed kernel. The kernel code that
// runs is the same; what is skipped is the decompressor stub (and with it, physical-address randomization).
//
// Formats: the payload is "lz4 -l" (the legacy frame: magic 0x184C2102, then blocks each preceded by its
// compressed size as u32 LE; lib/decompress_unlz4.c), followed by the 4-byte uncompressed size the kernel build
// appends (scripts/Makefile.lib size_append). Blocks use the LZ4 block format (lz4 project, doc/lz4_Block_format.md).
// vmlinux is ELF64 (System V ABI): PT_LOAD program headers carry p_paddr, p_offset, p_filesz, p_memsz.

const LZ4_LEGACY_MAGIC = 0x184c2102;
/** Upper bound of one legacy block's decompressed size (8 MiB). */
const LZ4_LEGACY_BLOCK = 8 << 20;

export class KernelFormatError extends Error {}

export function isLz4Legacy(payload: Uint8Array): boolean {
  return payload.length >= 8 && new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0, true) === LZ4_LEGACY_MAGIC;
}

/** Decode a legacy LZ4 stream whose last 4 bytes give the decompressed size. */
export function decompressLz4Legacy(payload: Uint8Array): Uint8Array {
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const total = v.getUint32(payload.length - 4, true);
  const out = new Uint8Array(total);
  let o = 0;
  let i = 4; // after the magic
  const end = payload.length - 4;
  while (i + 4 <= end) {
    const size = v.getUint32(i, true);
    i += 4;
    if (size === LZ4_LEGACY_MAGIC) continue; // concatenated frames
    if (size === 0 || i + size > end) throw new KernelFormatError(`LZ4 block of ${size} bytes runs past the payload`);
    o = decodeBlock(payload, i, i + size, out, o, Math.min(out.length, o + LZ4_LEGACY_BLOCK));
    i += size;
  }
  if (o !== total) throw new KernelFormatError(`LZ4 payload decoded to ${o} bytes, the kernel says ${total}`);
  return out;
}

/** One LZ4 block from src[s, e) into dst at `o` (not past `limit`); returns the new output position. */
function decodeBlock(src: Uint8Array, s: number, e: number, dst: Uint8Array, o: number, limit: number): number {
  // Most sequences are short (in Debian's 6.1 cloud kernel 1.8M of 2M literal runs and 1.3M of 2M matches are
  // under 8 bytes), so short copies are plain loops: set/copyWithin cost a call (and set a subarray) each. Over
  // half of the output (26 of 53 MB) is overlapping matches at offset 1, runs of one byte: those are fills.
  while (s < e) {
    const token = src[s++];
    let lit = token >>> 4;
    if (lit === 15) { let b: number; do { b = src[s++]; lit += b; } while (b === 255 && s < e); }
    if (s + lit > e || o + lit > limit) throw new KernelFormatError('LZ4 literals run past the block');
    if (lit < SHORT_COPY) for (let k = 0; k < lit; k++) dst[o + k] = src[s + k];
    else dst.set(src.subarray(s, s + lit), o);
    s += lit;
    o += lit;
    if (s >= e) break; // the last sequence has literals only
    const offset = src[s] | (src[s + 1] << 8);
    s += 2;
    let len = (token & 15) + 4;
    if ((token & 15) === 15) { let b: number; do { b = src[s++]; len += b; } while (b === 255 && s < e); }
    if (offset === 0 || offset > o || o + len > limit) throw new KernelFormatError('LZ4 match outside the output');
    if (len < SHORT_COPY) {
      // Byte by byte forward, which is also right when the match overlaps its own output (offset < len).
      for (let k = 0; k < len; k++) dst[o + k] = dst[o + k - offset];
    } else if (offset >= len) {
      dst.copyWithin(o, o - offset, o - offset + len);
    } else if (offset === 1) {
      dst.fill(dst[o - 1], o, o + len);
    } else {
      // An overlapping match repeats the last `offset` bytes: copy them a period at a time (each copy's source
      // lies wholly before its destination, which copyWithin's memmove semantics need).
      for (let k = 0; k < len; k += offset) dst.copyWithin(o + k, o + k - offset, o + k - offset + Math.min(offset, len - k));
    }
    o += len;
  }
  return o;
}

/** Copies shorter than this are loops (see decodeBlock). */
const SHORT_COPY = 16;

export interface ElfSegment {
  paddr: number;
  data: Uint8Array;
  memsz: number;
}

export interface Vmlinux {
  entry: number;
  segments: ElfSegment[];
}

/** The loadable segments and entry point of an x86-64 vmlinux. */
export function parseVmlinux(elf: Uint8Array): Vmlinux {
  const v = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  if (elf.length < 64 || v.getUint32(0, false) !== 0x7f454c46) throw new KernelFormatError('the decompressed kernel is not an ELF file');
  if (elf[4] !== 2 || elf[5] !== 1 || v.getUint16(18, true) !== 62) throw new KernelFormatError('the decompressed kernel is not little-endian ELF64 for x86-64');
  const entry = Number(v.getBigUint64(24, true));
  const phoff = Number(v.getBigUint64(32, true));
  const phentsize = v.getUint16(54, true);
  const phnum = v.getUint16(56, true);
  const segments: ElfSegment[] = [];
  for (let k = 0; k < phnum; k++) {
    const at = phoff + k * phentsize;
    if (at + 56 > elf.length) throw new KernelFormatError('ELF program headers run past the file');
    if (v.getUint32(at, true) !== 1) continue; // PT_LOAD only
    const offset = Number(v.getBigUint64(at + 8, true));
    const paddr = Number(v.getBigUint64(at + 24, true));
    const filesz = Number(v.getBigUint64(at + 32, true));
    const memsz = Number(v.getBigUint64(at + 40, true));
    if (offset + filesz > elf.length || filesz > memsz) throw new KernelFormatError('an ELF segment runs past the file');
    segments.push({ paddr, data: elf.subarray(offset, offset + filesz), memsz });
  }
  if (segments.length === 0) throw new KernelFormatError('the ELF file has no loadable segment');
  return { entry, segments };
}
