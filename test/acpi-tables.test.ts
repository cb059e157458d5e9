import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAcpiTables, byteSum, FADT_HW_REDUCED_ACPI, type AcpiTables } from '../src/boot/acpi.ts';
import * as aml from '../src/boot/aml.ts';
import {
  ACPI_PM1A_CNT_PORT, ACPI_PM1A_EVT_PORT, ACPI_PM_TMR_PORT, ACPI_S5_SLP_TYP, IOAPIC_BASE, LAPIC_BASE, PCI_ECAM_BASE, pciIntxGsi,
} from '../src/boot/platform.ts';

const GiB = 2 ** 30;

function bytesOf(t: AcpiTables, sig: keyof AcpiTables['tables']): Uint8Array {
  const info = t.tables[sig];
  return t.image.subarray(info.address - t.base, info.address - t.base + info.length);
}
function at(t: AcpiTables, addr: number, len: number): Uint8Array {
  assert.ok(addr >= t.base && addr + len <= t.base + t.image.length, `0x${addr.toString(16)} is inside the tables`);
  return t.image.subarray(addr - t.base, addr - t.base + len);
}
const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
const text = (b: Uint8Array) => String.fromCharCode(...b);

/** Follow RSDP -> XSDT -> tables as an OS does, checking every signature, length and checksum. */
function walk(t: AcpiTables): Map<string, Uint8Array> {
  const rsdp = at(t, t.rsdp, 36);
  assert.equal(t.rsdp % 16, 0);
  assert.equal(text(rsdp.subarray(0, 8)), 'RSD PTR ');
  assert.equal(byteSum(rsdp, 0, 20), 0, 'RSDP checksum (first 20 bytes)');
  assert.equal(byteSum(rsdp, 0, 36), 0, 'RSDP extended checksum');
  assert.equal(rsdp[15], 2, 'RSDP revision 2');
  assert.equal(dv(rsdp).getUint32(20, true), 36);
  const found = new Map<string, Uint8Array>();
  const readTable = (addr: number, sig?: string): Uint8Array => {
    const len = dv(at(t, addr, 36)).getUint32(4, true);
    const tb = at(t, addr, len);
    if (sig) assert.equal(text(tb.subarray(0, 4)), sig);
    assert.equal(byteSum(tb), 0, `${text(tb.subarray(0, 4))} checksum`);
    found.set(text(tb.subarray(0, 4)), tb);
    return tb;
  };
  const xsdt = readTable(Number(dv(rsdp).getBigUint64(24, true)), 'XSDT');
  const rsdt = readTable(dv(rsdp).getUint32(16, true), 'RSDT');
  const n = (xsdt.length - 36) / 8;
  assert.equal((rsdt.length - 36) / 4, n, 'RSDT lists as many tables as the XSDT');
  for (let i = 0; i < n; i++) {
    const addr = Number(dv(xsdt).getBigUint64(36 + 8 * i, true));
    assert.equal(dv(rsdt).getUint32(36 + 4 * i, true), addr, 'RSDT and XSDT agree');
    readTable(addr);
  }
  const fadt = found.get('FACP')!;
  readTable(Number(dv(fadt).getBigUint64(140, true)), 'DSDT');
  const facsAddr = dv(fadt).getUint32(36, true);
  assert.equal(facsAddr % 64, 0, 'FACS 64-byte aligned');
  const facs = at(t, facsAddr, 64);
  assert.equal(text(facs.subarray(0, 4)), 'FACS');
  assert.equal(dv(facs).getUint32(4, true), 64);
  found.set('FACS', facs);
  return found;
}

test('RSDP, XSDT and RSDT lead to FADT, MADT, MCFG and DSDT with valid checksums', () => {
  const t = buildAcpiTables({ cpus: 2, highRamEnd: 4 * GiB });
  assert.equal(t.rsdp, 0xe0000);
  const found = walk(t);
  assert.deepEqual([...found.keys()].sort(), ['APIC', 'DSDT', 'FACP', 'FACS', 'MCFG', 'RSDT', 'XSDT']);
  assert.ok(t.base + t.image.length <= 0x100000);
});

test('FADT: revision 6, SCI 9, PM blocks, 32-bit PM timer, reset register, not hardware-reduced', () => {
  const t = buildAcpiTables({ cpus: 1, highRamEnd: 4 * GiB });
  const f = dv(walk(t).get('FACP')!);
  assert.equal(f.byteLength, 276);
  assert.equal(f.getUint8(8), 6, 'major revision');
  assert.equal(f.getUint8(131) >= 0 && f.getUint8(131) <= 5, true, 'minor revision');
  assert.equal(f.getUint16(46, true), 9, 'SCI_INT');
  assert.equal(f.getUint32(48, true), 0, 'no SMI_CMD: always in ACPI mode');
  assert.equal(f.getUint32(56, true), ACPI_PM1A_EVT_PORT);
  assert.equal(f.getUint32(64, true), ACPI_PM1A_CNT_PORT);
  assert.equal(f.getUint32(76, true), ACPI_PM_TMR_PORT);
  assert.deepEqual([f.getUint8(88), f.getUint8(89), f.getUint8(91)], [4, 2, 4], 'PM1_EVT_LEN, PM1_CNT_LEN, PM_TMR_LEN');
  const flags = f.getUint32(112, true);
  assert.ok(flags & (1 << 8), 'TMR_VAL_EXT');
  assert.ok(flags & (1 << 10), 'RESET_REG_SUP');
  assert.equal(flags & FADT_HW_REDUCED_ACPI, 0, 'HW_REDUCED_ACPI off');
  assert.equal(flags & (1 << 4), 0, 'PWR_BUTTON clear: the power button is the fixed-feature one (PM1 PWRBTN_STS/EN)');
  assert.equal(flags & (1 << 5), 1 << 5, 'SLP_BUTTON set: no sleep button');
  const iapc = f.getUint16(109, true);
  assert.equal(iapc & 3, 3, 'legacy devices and 8042 present');
  // RESET_REG: system I/O, 8 bits at 0xCF9, value 6.
  assert.deepEqual([f.getUint8(116), f.getUint8(117), f.getUint8(118)], [1, 8, 0]);
  assert.equal(f.getBigUint64(120, true), 0xcf9n);
  assert.equal(f.getUint8(128), 6);
  // X_DSDT and DSDT agree; the X_ register blocks match the 32-bit ones.
  assert.equal(f.getBigUint64(140, true), BigInt(f.getUint32(40, true)));
  for (const [gasAt, port, bits] of [[148, ACPI_PM1A_EVT_PORT, 32], [172, ACPI_PM1A_CNT_PORT, 16], [208, ACPI_PM_TMR_PORT, 32]]) {
    assert.equal(f.getUint8(gasAt), 1, 'system I/O');
    assert.equal(f.getUint8(gasAt + 1), bits);
    assert.equal(f.getBigUint64(gasAt + 4, true), BigInt(port));
  }
});

function madtEntries(madt: Uint8Array): { type: number; body: DataView }[] {
  const out = [];
  for (let off = 44; off < madt.length; ) {
    const type = madt[off];
    const len = madt[off + 1];
    assert.ok(len >= 2 && off + len <= madt.length, 'MADT entry inside the table');
    out.push({ type, body: dv(madt.subarray(off, off + len)) });
    off += len;
  }
  return out;
}

test('MADT: one enabled local APIC per vCPU, the IOAPIC after them, IRQ0 -> GSI2 and SCI overrides', () => {
  for (const cpus of [1, 4, 64]) {
    const t = buildAcpiTables({ cpus, highRamEnd: 4 * GiB });
    const madt = walk(t).get('APIC')!;
    assert.equal(dv(madt).getUint32(36, true), LAPIC_BASE);
    assert.equal(dv(madt).getUint32(40, true) & 1, 1, 'PCAT_COMPAT: the 8259s exist');
    const e = madtEntries(madt);
    const lapics = e.filter((x) => x.type === 0);
    assert.equal(lapics.length, cpus);
    lapics.forEach((l, i) => {
      assert.equal(l.body.getUint8(2), i, 'processor UID');
      assert.equal(l.body.getUint8(3), i, 'APIC ID');
      assert.equal(l.body.getUint32(4, true) & 1, 1, 'enabled');
    });
    const ioapics = e.filter((x) => x.type === 1);
    assert.equal(ioapics.length, 1);
    assert.equal(ioapics[0].body.getUint8(2), cpus, 'IOAPIC ID');
    assert.equal(ioapics[0].body.getUint32(4, true), IOAPIC_BASE);
    assert.equal(ioapics[0].body.getUint32(8, true), 0, 'GSI base');
    const overrides = e.filter((x) => x.type === 2).map((o) => ({ bus: o.body.getUint8(2), irq: o.body.getUint8(3), gsi: o.body.getUint32(4, true), flags: o.body.getUint16(8, true) }));
    assert.deepEqual(overrides, [
      { bus: 0, irq: 0, gsi: 2, flags: 0x5 }, // edge, active high
      { bus: 0, irq: 9, gsi: 9, flags: 0xd }, // level, active high
    ]);
  }
  assert.equal(dv(walk(buildAcpiTables({ cpus: 1, highRamEnd: 4 * GiB, dual8259: false })).get('APIC')!).getUint32(40, true), 0);
  assert.throws(() => buildAcpiTables({ cpus: 0, highRamEnd: 4 * GiB }));
  assert.throws(() => buildAcpiTables({ cpus: 255, highRamEnd: 4 * GiB }));
});

test('MCFG: ECAM at 0xE0000000 for segment 0, buses 0-255', () => {
  const m = dv(walk(buildAcpiTables({ cpus: 1, highRamEnd: 4 * GiB })).get('MCFG')!);
  assert.equal(m.byteLength, 36 + 8 + 16);
  assert.equal(m.getBigUint64(44, true), BigInt(PCI_ECAM_BASE));
  assert.equal(m.getUint16(52, true), 0);
  assert.equal(m.getUint8(54), 0);
  assert.equal(m.getUint8(55), 255);
});

// ---- A small AML reader, enough for what the DSDT uses (ACPI 6.4 §20.2) ----
type AmlValue = bigint | string | AmlValue[] | { buffer: Uint8Array };

class AmlReader {
  pos = 0;
  readonly names = new Map<string, AmlValue>();
  constructor(readonly b: Uint8Array) {}
  pkgLength(): number {
    const lead = this.b[this.pos];
    const extra = lead >> 6;
    let len = extra === 0 ? lead & 0x3f : lead & 0x0f;
    for (let i = 0; i < extra; i++) len |= this.b[this.pos + 1 + i] << (4 + 8 * i);
    const end = this.pos + len;
    this.pos += 1 + extra;
    return end;
  }
  nameString(): string {
    let prefix = '';
    while (this.b[this.pos] === 0x5c || this.b[this.pos] === 0x5e) prefix += String.fromCharCode(this.b[this.pos++]);
    let count = 1;
    if (this.b[this.pos] === 0x2e) { count = 2; this.pos++; }
    else if (this.b[this.pos] === 0x2f) { count = this.b[this.pos + 1]; this.pos += 2; }
    else if (this.b[this.pos] === 0) { this.pos++; return prefix; }
    const segs = [];
    for (let i = 0; i < count; i++) { segs.push(text(this.b.subarray(this.pos, this.pos + 4))); this.pos += 4; }
    return prefix + segs.join('.');
  }
  le(n: number): bigint {
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.b[this.pos + i]);
    this.pos += n;
    return v;
  }
  dataObject(): AmlValue {
    const op = this.b[this.pos++];
    switch (op) {
      case 0x00: return 0n;
      case 0x01: return 1n;
      case 0xff: return 0xffffffffffffffffn;
      case 0x0a: return this.le(1);
      case 0x0b: return this.le(2);
      case 0x0c: return this.le(4);
      case 0x0e: return this.le(8);
      case 0x0d: { const end = this.b.indexOf(0, this.pos); const s = text(this.b.subarray(this.pos, end)); this.pos = end + 1; return s; }
      case 0x12: {
        const end = this.pkgLength();
        const n = this.b[this.pos++];
        const items: AmlValue[] = [];
        while (this.pos < end) items.push(this.dataObject());
        assert.equal(items.length, n, 'package element count');
        return items;
      }
      case 0x11: {
        const end = this.pkgLength();
        const size = Number(this.dataObject() as bigint);
        const buf = this.b.slice(this.pos, end);
        assert.equal(buf.length, size, 'buffer size');
        this.pos = end;
        return { buffer: buf };
      }
      default: throw new Error(`unexpected AML opcode 0x${op.toString(16)} at ${this.pos - 1}`);
    }
  }
  termList(end: number, scope: string): void {
    while (this.pos < end) {
      const op = this.b[this.pos++];
      if (op === 0x08) {
        const n = this.nameString();
        this.names.set(this.resolve(scope, n), this.dataObject());
      } else if (op === 0x10) {
        const e = this.pkgLength();
        const n = this.nameString();
        this.termList(e, this.resolve(scope, n));
      } else if (op === 0x5b && this.b[this.pos] === 0x82) {
        this.pos++;
        const e = this.pkgLength();
        const n = this.nameString();
        const path = this.resolve(scope, n);
        this.names.set(path, 'Device');
        this.termList(e, path);
      } else throw new Error(`unexpected AML term 0x${op.toString(16)} at ${this.pos - 1}`);
    }
    assert.equal(this.pos, end, 'terms end exactly at the package end');
  }
  resolve(scope: string, n: string): string {
    return n.startsWith('\\') ? n : `${scope === '\\' ? '\\' : scope + '.'}${n}`;
  }
}

interface Resource { kind: string; [k: string]: unknown }
function parseResources(buf: Uint8Array): Resource[] {
  const out: Resource[] = [];
  const v = dv(buf);
  for (let i = 0; i < buf.length; ) {
    const tag = buf[i];
    if (tag & 0x80) {
      const len = v.getUint16(i + 1, true);
      const type = buf[i + 3];
      if (tag === 0x88) out.push({ kind: 'word', type, min: v.getUint16(i + 8, true), max: v.getUint16(i + 10, true), len: v.getUint16(i + 14, true) });
      else if (tag === 0x87) out.push({ kind: 'dword', type, min: v.getUint32(i + 10, true), max: v.getUint32(i + 14, true), len: v.getUint32(i + 22, true) });
      else if (tag === 0x8a) out.push({ kind: 'qword', type, min: v.getBigUint64(i + 14, true), max: v.getBigUint64(i + 22, true), len: v.getBigUint64(i + 38, true) });
      else throw new Error(`large item 0x${tag.toString(16)}`);
      i += 3 + len;
    } else {
      const name = (tag >> 3) & 0xf;
      const len = tag & 7;
      if (name === 0x8) out.push({ kind: 'io', min: v.getUint16(i + 2, true), max: v.getUint16(i + 4, true), len: buf[i + 7] });
      else if (name === 0x4) out.push({ kind: 'irq', mask: v.getUint16(i + 1, true) });
      else if (name === 0xf) { out.push({ kind: 'end' }); assert.equal(i + 2, buf.length, 'end tag is last'); }
      else throw new Error(`small item ${name}`);
      i += 1 + len;
    }
  }
  return out;
}

test('AML encodings: PkgLength, integers, names, EISA IDs', () => {
  assert.deepEqual(aml.pkgLength(0), [1]);
  assert.deepEqual(aml.pkgLength(62), [63]);
  assert.deepEqual(aml.pkgLength(63), [0x41, 0x04]); // 63 + 2 = 65 = 0x41
  assert.deepEqual(aml.pkgLength(4093), [0x4f, 0xff]); // 4095 fits in 12 bits
  assert.deepEqual(aml.pkgLength(4094), [0x80 | 0x1, 0x00, 0x01]); // 4097 needs 3 bytes
  for (const len of [0, 1, 62, 63, 64, 300, 4093, 4094, 70000, 1 << 20]) {
    const enc = aml.pkgLength(len);
    const r = new AmlReader(Uint8Array.from([...enc, ...new Array(len).fill(0)]));
    assert.equal(r.pkgLength(), enc.length + len, `PkgLength ${len} round-trips`);
  }
  assert.deepEqual(aml.integer(0), [0x00]);
  assert.deepEqual(aml.integer(1), [0x01]);
  assert.deepEqual(aml.integer(0xff), [0x0a, 0xff]);
  assert.deepEqual(aml.integer(0x100), [0x0b, 0x00, 0x01]);
  assert.deepEqual(aml.integer(0x10000), [0x0c, 0, 0, 1, 0]);
  assert.deepEqual(aml.integer(2n ** 32n), [0x0e, 0, 0, 0, 0, 1, 0, 0, 0]);
  assert.throws(() => aml.integer(-1));
  assert.deepEqual(aml.string('AB'), [0x0d, 0x41, 0x42, 0]);
  assert.deepEqual(aml.nameString('\\_SB_.PCI0'), [0x5c, 0x2e, ...Buffer.from('_SB_PCI0')]);
  assert.deepEqual(aml.nameString('A.B.C'), [0x2f, 3, ...Buffer.from('A___B___C___')]);
  assert.deepEqual(aml.nameString('^FOO'), [0x5e, ...Buffer.from('FOO_')]);
  assert.throws(() => aml.nameSeg('pci0'));
  assert.deepEqual(aml.eisaId('PNP0A03'), [0x0c, 0x41, 0xd0, 0x0a, 0x03]); // = 0x030AD041
  const m = aml.method('_STA', 0, false, aml.returnOp(aml.integer(0x0f)));
  assert.deepEqual(m, [0x14, 9, ...Buffer.from('_STA'), 0x00, 0xa4, 0x0a, 0x0f]);
});

test('DSDT: \\_S5_, the PCI host bridge with its windows and routing, COM1, RTC, keyboard', () => {
  const highRamEnd = 4 * GiB + 2 * GiB + 12345;
  const t = buildAcpiTables({ cpus: 2, highRamEnd });
  const dsdt = walk(t).get('DSDT')!;
  assert.equal(dsdt[8], 2, 'revision 2: 64-bit integers');
  const r = new AmlReader(dsdt);
  r.pos = 36;
  r.termList(dsdt.length, '\\');
  const get = (p: string) => r.names.get(p);
  assert.deepEqual(get('\\_S5_'), [BigInt(ACPI_S5_SLP_TYP), BigInt(ACPI_S5_SLP_TYP), 0n, 0n]);
  assert.equal(get('\\_SB_.PCI0'), 'Device');
  assert.equal(get('\\_SB_.PCI0._HID'), 0x080ad041n); // EisaId("PNP0A08")
  assert.equal(get('\\_SB_.PCI0._CID'), 0x030ad041n); // EisaId("PNP0A03")
  assert.equal(get('\\_SB_.PCI0._SEG'), 0n);
  assert.equal(get('\\_SB_.PCI0._BBN'), 0n);
  assert.equal(get('\\_SB_.PCI0._UID'), 0n);
  const crs = parseResources((get('\\_SB_.PCI0._CRS') as { buffer: Uint8Array }).buffer);
  assert.deepEqual(crs, [
    { kind: 'word', type: 2, min: 0, max: 255, len: 256 },
    { kind: 'io', min: 0xcf8, max: 0xcf8, len: 8 },
    { kind: 'dword', type: 1, min: 0, max: 0xcf7, len: 0xcf8 },
    { kind: 'dword', type: 1, min: 0xd00, max: 0xffff, len: 0xf300 },
    { kind: 'dword', type: 0, min: 0xc0000000, max: 0xdfffffff, len: 0x20000000 },
    { kind: 'qword', type: 0, min: 7n * BigInt(GiB), max: 7n * BigInt(GiB) + 32n * BigInt(GiB) - 1n, len: 32n * BigInt(GiB) },
    { kind: 'end' },
  ]);
  const prt = get('\\_SB_.PCI0._PRT') as bigint[][];
  assert.equal(prt.length, 128);
  for (const [addr, pin, source, gsi] of prt) {
    assert.equal(addr & 0xffffn, 0xffffn, 'any function');
    assert.equal(source, 0n, 'GSI form');
    assert.equal(gsi, BigInt(pciIntxGsi(Number(addr >> 16n), Number(pin))));
    assert.ok(gsi >= 16n && gsi <= 23n);
  }
  assert.equal(get('\\_SB_.COM1._HID'), 0x0105d041n); // PNP0501
  assert.deepEqual(parseResources((get('\\_SB_.COM1._CRS') as { buffer: Uint8Array }).buffer), [
    { kind: 'io', min: 0x3f8, max: 0x3f8, len: 8 }, { kind: 'irq', mask: 1 << 4 }, { kind: 'end' },
  ]);
  assert.deepEqual(parseResources((get('\\_SB_.RTC_._CRS') as { buffer: Uint8Array }).buffer), [
    { kind: 'io', min: 0x70, max: 0x70, len: 2 }, { kind: 'irq', mask: 1 << 8 }, { kind: 'end' },
  ]);
  assert.deepEqual(parseResources((get('\\_SB_.KBD_._CRS') as { buffer: Uint8Array }).buffer), [
    { kind: 'io', min: 0x60, max: 0x60, len: 1 }, { kind: 'io', min: 0x64, max: 0x64, len: 1 }, { kind: 'irq', mask: 1 << 1 }, { kind: 'end' },
  ]);
});

function haveIasl(): boolean {
  return spawnSync('iasl', ['-v'], { encoding: 'utf8' }).status === 0;
}

test('iasl disassembles every table and recompiles the DSDT to the same AML', (t) => {
  if (!haveIasl()) {
    t.skip('iasl is not installed (apt-get install acpica-tools)');
    return;
  }
  const tables = buildAcpiTables({ cpus: 4, highRamEnd: 6 * GiB });
  const dir = mkdtempSync(join(tmpdir(), 'ringzero-acpi-'));
  try {
    for (const sig of ['FACP', 'APIC', 'MCFG', 'XSDT', 'RSDT', 'FACS', 'DSDT'] as const) {
      const file = join(dir, `${sig.toLowerCase()}.dat`);
      writeFileSync(file, bytesOf(tables, sig));
      const r = spawnSync('iasl', ['-d', file], { cwd: dir, encoding: 'utf8' });
      assert.equal(r.status, 0, `iasl -d ${sig}: ${r.stdout}${r.stderr}`);
      const dsl = readFileSync(file.replace(/\.dat$/, '.dsl'), 'utf8');
      assert.doesNotMatch(dsl, /Invalid|\*\*\*\* Unknown|Error/i, `${sig} disassembly is clean`);
    }
    const dsl = readFileSync(join(dir, 'dsdt.dsl'), 'utf8');
    for (const needle of ['Device (PCI0)', 'EisaId ("PNP0A08")', 'Name (\\_S5, Package (0x04)', 'QWordMemory', 'Device (COM1)', 'EisaId ("PNP0501")']) {
      assert.ok(dsl.includes(needle), `DSDT disassembly mentions ${needle}`);
    }
    const facp = readFileSync(join(dir, 'facp.dsl'), 'utf8');
    assert.match(facp, /32-bit PM Timer \(V1\) : 1/);
    assert.match(facp, /Hardware Reduced \(V5\) : 0/);
    assert.match(facp, /Address : 0000000000000CF9/);
    // Independent check of our encoder: iasl, without optimizations, compiles the disassembly back to the same bytes.
    const r = spawnSync('iasl', ['-oa', '-p', join(dir, 'again'), join(dir, 'dsdt.dsl')], { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const again = readFileSync(join(dir, 'again.aml'));
    assert.deepEqual(new Uint8Array(again.subarray(36)), bytesOf(tables, 'DSDT').subarray(36));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
