// ACPI 6.4 firmware tables for ringzero's PC, written into the reserved BIOS area below 1 MiB:
// RSDP (at 0xE0000, where the OS also scans for it), XSDT and RSDT, FADT, FACS, DSDT (AML from
// aml.ts), MADT and MCFG. The tables describe the fixed machine of platform.ts; every table's
// checksum makes its bytes sum to zero mod 256 (ACPI 6.4 §5.2.6).
import type { GuestMemory } from '../memory/guest-memory.ts';
import { GiB } from '../memory/guest-memory.ts';
import * as aml from './aml.ts';
import {
  ACPI_AREA_END, ACPI_PM1A_CNT_PORT, ACPI_PM1A_EVT_PORT, ACPI_PM1_CNT_LEN, ACPI_PM1_EVT_LEN, ACPI_PM_TMR_LEN,
  ACPI_PM_TMR_PORT, ACPI_RESET_PORT, ACPI_RESET_VALUE, ACPI_RSDP_ADDR, ACPI_S5_SLP_TYP, ACPI_SCI_IRQ, COM1_IRQ,
  COM1_PORT, I8042_CMD_PORT, I8042_DATA_PORT, I8042_KBD_IRQ, IOAPIC_BASE, LAPIC_BASE, PCI_CONFIG_ADDRESS_PORT,
  PCI_ECAM_BASE, PCI_ECAM_BUSES, PCI_MMIO32_BASE, PCI_MMIO32_END, PCI_MMIO64_SIZE, PIT_GSI, PIT_IRQ, RTC_IRQ,
  RTC_PORT, pciIntxGsi,
} from './platform.ts';

export class AcpiError extends Error {}

export interface AcpiPlatform {
  /** Number of vCPUs; their local APIC IDs and ACPI processor UIDs are 0..cpus-1. */
  cpus: number;
  /** End (exclusive) of guest RAM above 4 GiB, or 4 GiB when there is none; the 64-bit PCI window starts above it. */
  highRamEnd: number;
  /**
   * MADT PCAT_COMPAT: the machine also has a pair of 8259 PICs, which the OS must mask when it
   * uses the IOAPIC (ACPI 6.4 §5.2.12, Table 5.44). Default true: ringzero's PC has them.
   */
  dual8259?: boolean;
}

export interface AcpiTableInfo {
  address: number;
  length: number;
}

export interface AcpiTables {
  /** Guest physical address of the RSDP (goes in boot_params.acpi_rsdp_addr). */
  rsdp: number;
  /** Address and length of each table, by signature (RSDP included). */
  tables: Record<'RSDP' | 'XSDT' | 'RSDT' | 'FACP' | 'FACS' | 'DSDT' | 'APIC' | 'MCFG', AcpiTableInfo>;
  /** The bytes of [base, base + image.length): everything above, ready to copy into guest memory. */
  base: number;
  image: Uint8Array;
}

// Identification written in every header (ACPI 6.4 §5.2.6, Table 5.29).
const OEM_ID = 'RINGZR';
const OEM_TABLE_ID = 'RINGZERO';
const OEM_REVISION = 1;
const CREATOR_ID = 'RZRO';
const CREATOR_REVISION = 1;
const HEADER_SIZE = 36;

const FADT_MAJOR = 6;
const FADT_MINOR = 4;
const FADT_SIZE = 276;
const FACS_SIZE = 64;
/** DSDT revision 2: integers are 64 bits wide (ACPI 6.4 §5.2.11.1), needed for the QWord window. */
const DSDT_REVISION = 2;
const MADT_REVISION = 5;

function ascii(s: string, len: number): number[] {
  return Array.from(s.padEnd(len, ' ').slice(0, len), (c) => c.charCodeAt(0));
}

/** Sum of bytes mod 256. */
export function byteSum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let s = 0;
  for (let i = start; i < end; i++) s = (s + bytes[i]) & 0xff;
  return s;
}

/** Set bytes[at] so that bytes[start, end) sums to 0 mod 256. */
function fixChecksum(bytes: Uint8Array, at: number, start = 0, end = bytes.length): void {
  bytes[at] = 0;
  bytes[at] = (0x100 - byteSum(bytes, start, end)) & 0xff;
}

/** A table = standard 36-byte header (Table 5.29) + body, with length and checksum filled in. */
function table(signature: string, revision: number, body: Uint8Array): Uint8Array {
  const t = new Uint8Array(HEADER_SIZE + body.length);
  const v = new DataView(t.buffer);
  t.set(ascii(signature, 4), 0);
  v.setUint32(4, t.length, true);
  t[8] = revision;
  t.set(ascii(OEM_ID, 6), 10);
  t.set(ascii(OEM_TABLE_ID, 8), 16);
  v.setUint32(24, OEM_REVISION, true);
  t.set(ascii(CREATOR_ID, 4), 28);
  v.setUint32(32, CREATOR_REVISION, true);
  t.set(body, HEADER_SIZE);
  fixChecksum(t, 9);
  return t;
}

/** Generic Address Structure (ACPI 6.4 §5.2.3.2) in I/O space. accessSize: 1 byte, 2 word, 3 dword. */
function ioGas(v: DataView, at: number, port: number, bitWidth: number, accessSize: number): void {
  v.setUint8(at, 1); // Address Space ID: System I/O
  v.setUint8(at + 1, bitWidth);
  v.setUint8(at + 2, 0); // bit offset
  v.setUint8(at + 3, accessSize);
  v.setBigUint64(at + 4, BigInt(port), true);
}

// ---- FADT (ACPI 6.4 §5.2.9, Table 5.34); offsets are from the start of the table ----
/** FADT Flags (Table 5.35). */
const FADT_WBINVD = 1 << 0;
const FADT_PROC_C1 = 1 << 2;
// PWR_BUTTON (bit 4) stays clear: the power button is the fixed-feature one in PM1_STS/PM1_EN (§4.8.2.2.1.1), which
// the VMM presses for a graceful shutdown. Linux then creates the LNXPWRBN device the ACPI button driver binds to.
const FADT_SLP_BUTTON = 1 << 5; // set: no fixed-feature sleep button
const FADT_FIX_RTC = 1 << 6; // set: RTC wake status is not in the fixed registers
const FADT_TMR_VAL_EXT = 1 << 8; // the PM timer is 32 bits wide
const FADT_RESET_REG_SUP = 1 << 10;
export const FADT_HW_REDUCED_ACPI = 1 << 20;
/** IA-PC boot architecture flags (Table 5.36). */
const IAPC_LEGACY_DEVICES = 1 << 0; // ISA devices the OS cannot enumerate (COM1, RTC, PIT)
const IAPC_8042 = 1 << 1;
const IAPC_VGA_NOT_PRESENT = 1 << 2;

function buildFadt(dsdt: number, facs: number): Uint8Array {
  const body = new Uint8Array(FADT_SIZE - HEADER_SIZE);
  const v = new DataView(body.buffer);
  const at = (off: number) => off - HEADER_SIZE;
  v.setUint32(at(36), facs, true); // FIRMWARE_CTRL (X_FIRMWARE_CTRL stays 0: the FACS is below 4 GiB)
  v.setUint32(at(40), dsdt, true); // DSDT
  v.setUint8(at(45), 0); // Preferred_PM_Profile: unspecified
  v.setUint16(at(46), ACPI_SCI_IRQ, true); // SCI_INT
  // SMI_CMD = 0: the machine is always in ACPI mode, so the OS never hands control over (§4.8.2.1.1).
  v.setUint32(at(48), 0, true);
  v.setUint32(at(56), ACPI_PM1A_EVT_PORT, true);
  v.setUint32(at(64), ACPI_PM1A_CNT_PORT, true);
  v.setUint32(at(76), ACPI_PM_TMR_PORT, true);
  v.setUint8(at(88), ACPI_PM1_EVT_LEN);
  v.setUint8(at(89), ACPI_PM1_CNT_LEN);
  v.setUint8(at(91), ACPI_PM_TMR_LEN);
  v.setUint16(at(96), 101, true); // P_LVL2_LAT > 100: C2 not supported
  v.setUint16(at(98), 1001, true); // P_LVL3_LAT > 1000: C3 not supported
  v.setUint16(at(109), IAPC_LEGACY_DEVICES | IAPC_8042 | IAPC_VGA_NOT_PRESENT, true);
  v.setUint32(at(112), FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_FIX_RTC | FADT_TMR_VAL_EXT | FADT_RESET_REG_SUP, true);
  ioGas(v, at(116), ACPI_RESET_PORT, 8, 1); // RESET_REG
  v.setUint8(at(128), ACPI_RESET_VALUE);
  v.setUint8(at(131), FADT_MINOR);
  v.setBigUint64(at(140), BigInt(dsdt), true); // X_DSDT
  ioGas(v, at(148), ACPI_PM1A_EVT_PORT, ACPI_PM1_EVT_LEN * 8, 2); // X_PM1a_EVT_BLK
  ioGas(v, at(172), ACPI_PM1A_CNT_PORT, ACPI_PM1_CNT_LEN * 8, 2); // X_PM1a_CNT_BLK
  ioGas(v, at(208), ACPI_PM_TMR_PORT, ACPI_PM_TMR_LEN * 8, 3); // X_PM_TMR_BLK
  return table('FACP', FADT_MAJOR, body);
}

/** FACS (ACPI 6.4 §5.2.10, Table 5.37): no header checksum; version 2. */
function buildFacs(): Uint8Array {
  const t = new Uint8Array(FACS_SIZE);
  const v = new DataView(t.buffer);
  t.set(ascii('FACS', 4), 0);
  v.setUint32(4, FACS_SIZE, true);
  t[32] = 2; // Version
  return t;
}

// ---- MADT (ACPI 6.4 §5.2.12) ----
const MADT_PCAT_COMPAT = 1;
const MADT_LOCAL_APIC = 0;
const MADT_IO_APIC = 1;
const MADT_INT_SRC_OVERRIDE = 2;
const MADT_LOCAL_APIC_NMI = 4;
/** MPS INTI flags (Table 5.50): polarity bits 1-0 (1 high, 3 low), trigger bits 3-2 (1 edge, 3 level). */
const INTI_EDGE_HIGH = 0x0005;
const INTI_LEVEL_HIGH = 0x000d;

function buildMadt(p: AcpiPlatform): Uint8Array {
  const parts: number[] = [];
  const u16 = (x: number) => [x & 0xff, (x >> 8) & 0xff];
  const u32 = (x: number) => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff];
  parts.push(...u32(LAPIC_BASE), ...u32((p.dual8259 ?? true) ? MADT_PCAT_COMPAT : 0));
  for (let cpu = 0; cpu < p.cpus; cpu++) {
    // Processor Local APIC (§5.2.12.2): UID, APIC ID, flags bit 0 = enabled.
    parts.push(MADT_LOCAL_APIC, 8, cpu, cpu, ...u32(1));
  }
  // I/O APIC (§5.2.12.3): its ID follows the CPUs' APIC IDs so none collide.
  parts.push(MADT_IO_APIC, 12, p.cpus, 0, ...u32(IOAPIC_BASE), ...u32(0));
  // Interrupt Source Overrides (§5.2.12.5): bus 0 (ISA), source IRQ, GSI, flags.
  parts.push(MADT_INT_SRC_OVERRIDE, 10, 0, PIT_IRQ, ...u32(PIT_GSI), ...u16(INTI_EDGE_HIGH));
  parts.push(MADT_INT_SRC_OVERRIDE, 10, 0, ACPI_SCI_IRQ, ...u32(ACPI_SCI_IRQ), ...u16(INTI_LEVEL_HIGH));
  // Local APIC NMI (§5.2.12.7): every processor (UID 0xFF), LINT1, conforming flags.
  parts.push(MADT_LOCAL_APIC_NMI, 6, 0xff, ...u16(0), 1);
  return table('APIC', MADT_REVISION, Uint8Array.from(parts));
}

/** MCFG (PCI Firmware Specification 3.2 §4.1.2): one ECAM allocation for segment 0, buses 0-255. */
function buildMcfg(): Uint8Array {
  const body = new Uint8Array(8 + 16);
  const v = new DataView(body.buffer);
  v.setBigUint64(8, BigInt(PCI_ECAM_BASE), true);
  v.setUint16(16, 0, true); // PCI segment group
  v.setUint8(18, 0); // start bus
  v.setUint8(19, PCI_ECAM_BUSES - 1); // end bus
  return table('MCFG', 1, body);
}

/** The 64-bit PCI window: 1 GiB-aligned above the end of RAM (and above 4 GiB). */
export function pciMmio64Window(highRamEnd: number): { base: number; end: number } {
  const base = Math.ceil(Math.max(highRamEnd, 4 * GiB) / GiB) * GiB;
  return { base, end: base + PCI_MMIO64_SIZE - 1 };
}

/** The DSDT's AML body (the definition block without its header). */
export function buildDsdtAml(p: AcpiPlatform): Uint8Array {
  const window64 = pciMmio64Window(p.highRamEnd);
  const prt: aml.Aml[] = [];
  for (let slot = 0; slot < 32; slot++) {
    for (let pin = 0; pin < 4; pin++) {
      // _PRT entry (ACPI 6.4 §6.2.13): address 0xSSSSFFFF (any function), pin, source 0 = a GSI, the GSI.
      prt.push(aml.pkg(aml.integer(slot * 0x10000 + 0xffff), aml.integer(pin), aml.integer(0), aml.integer(pciIntxGsi(slot, pin))));
    }
  }

  const body = [
    // \_S5: soft-off (§7.4.2.5): SLP_TYPa, SLP_TYPb, reserved, reserved.
    aml.name('\\_S5_', aml.pkg(aml.integer(ACPI_S5_SLP_TYP), aml.integer(ACPI_S5_SLP_TYP), aml.integer(0), aml.integer(0))),
    aml.scope('\\_SB_',
      aml.device('PCI0',
        aml.name('_HID', aml.eisaId('PNP0A08')), // PCI Express root bridge
        aml.name('_CID', aml.eisaId('PNP0A03')), // compatible with a PCI root bridge
        aml.name('_SEG', aml.integer(0)),
        aml.name('_BBN', aml.integer(0)),
        aml.name('_UID', aml.integer(0)),
        aml.name('_CRS', aml.resourceTemplate(
          aml.wordBusNumber(0, PCI_ECAM_BUSES - 1),
          // The configuration ports are the bridge's own (consumed), the rest of I/O space is forwarded.
          aml.ioPort(PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_ADDRESS_PORT, 1, 8),
          aml.dwordIo(0x0000, 0x0cf7),
          aml.dwordIo(0x0d00, 0xffff),
          aml.dwordMemory(PCI_MMIO32_BASE, PCI_MMIO32_END),
          aml.qwordMemory(window64.base, window64.end),
        )),
        aml.name('_PRT', aml.pkg(...prt)), // 128 entries: within a Package's 255
      ),
      aml.device('COM1',
        aml.name('_HID', aml.eisaId('PNP0501')), // 16550A-compatible UART
        aml.name('_UID', aml.integer(1)),
        aml.name('_CRS', aml.resourceTemplate(aml.ioPort(COM1_PORT, COM1_PORT, 1, 8), aml.irqNoFlags(COM1_IRQ))),
      ),
      aml.device('RTC_',
        aml.name('_HID', aml.eisaId('PNP0B00')), // AT real-time clock
        aml.name('_CRS', aml.resourceTemplate(aml.ioPort(RTC_PORT, RTC_PORT, 1, 2), aml.irqNoFlags(RTC_IRQ))),
      ),
      aml.device('KBD_',
        aml.name('_HID', aml.eisaId('PNP0303')), // IBM enhanced keyboard on an i8042
        aml.name('_CRS', aml.resourceTemplate(
          aml.ioPort(I8042_DATA_PORT, I8042_DATA_PORT, 1, 1),
          aml.ioPort(I8042_CMD_PORT, I8042_CMD_PORT, 1, 1),
          aml.irqNoFlags(I8042_KBD_IRQ),
        )),
      ),
    ),
  ];
  return Uint8Array.from(body.flat());
}

/**
 * Build every table for `p`, laid out from `base` (the RSDP first, 16-byte aligned tables after it).
 * Pure: returns the bytes and where each table sits.
 */
export function buildAcpiTables(p: AcpiPlatform, base = ACPI_RSDP_ADDR): AcpiTables {
  if (!Number.isInteger(p.cpus) || p.cpus < 1 || p.cpus > 254) throw new AcpiError(`cannot describe ${p.cpus} CPUs (1-254: APIC IDs are 8 bits and the IOAPIC takes the next one)`);
  if (base % 16 !== 0) throw new AcpiError('the RSDP must be 16-byte aligned');

  const dsdt = table('DSDT', DSDT_REVISION, buildDsdtAml(p));
  const madt = buildMadt(p);
  const mcfg = buildMcfg();
  const facs = buildFacs();
  const tablesInXsdt = 3; // FADT, MADT, MCFG
  const xsdtSize = HEADER_SIZE + 8 * tablesInXsdt;
  const rsdtSize = HEADER_SIZE + 4 * tablesInXsdt;

  let cursor = base;
  const place = (length: number, align = 16): AcpiTableInfo => {
    cursor = Math.ceil(cursor / align) * align;
    const info = { address: cursor, length };
    cursor += length;
    return info;
  };
  const layout = {
    RSDP: place(36),
    XSDT: place(xsdtSize),
    RSDT: place(rsdtSize),
    FACP: place(FADT_SIZE),
    FACS: place(FACS_SIZE, 64), // the FACS must be 64-byte aligned (§5.2.10)
    DSDT: place(dsdt.length),
    APIC: place(madt.length),
    MCFG: place(mcfg.length),
  };
  if (cursor > ACPI_AREA_END) throw new AcpiError(`ACPI tables need ${cursor - base} bytes, more than the BIOS area holds`);

  const fadt = buildFadt(layout.DSDT.address, layout.FACS.address);
  const pointed = [layout.FACP.address, layout.APIC.address, layout.MCFG.address];
  const xsdtBody = new Uint8Array(8 * tablesInXsdt);
  const rsdtBody = new Uint8Array(4 * tablesInXsdt);
  pointed.forEach((addr, i) => {
    new DataView(xsdtBody.buffer).setBigUint64(8 * i, BigInt(addr), true);
    new DataView(rsdtBody.buffer).setUint32(4 * i, addr, true);
  });
  const xsdt = table('XSDT', 1, xsdtBody);
  const rsdt = table('RSDT', 1, rsdtBody);

  // RSDP (§5.2.5.3, Table 5.27), revision 2: checksum covers the first 20 bytes, extended checksum all 36.
  const rsdp = new Uint8Array(36);
  const rv = new DataView(rsdp.buffer);
  rsdp.set(ascii('RSD PTR ', 8), 0);
  rsdp.set(ascii(OEM_ID, 6), 9);
  rsdp[15] = 2;
  rv.setUint32(16, layout.RSDT.address, true);
  rv.setUint32(20, 36, true);
  rv.setBigUint64(24, BigInt(layout.XSDT.address), true);
  fixChecksum(rsdp, 8, 0, 20);
  fixChecksum(rsdp, 32, 0, 36);

  const image = new Uint8Array(cursor - base);
  const put = (info: AcpiTableInfo, bytes: Uint8Array) => image.set(bytes, info.address - base);
  put(layout.RSDP, rsdp);
  put(layout.XSDT, xsdt);
  put(layout.RSDT, rsdt);
  put(layout.FACP, fadt);
  put(layout.FACS, facs);
  put(layout.DSDT, dsdt);
  put(layout.APIC, madt);
  put(layout.MCFG, mcfg);
  return { rsdp: layout.RSDP.address, tables: layout, base, image };
}

/** Build the tables and copy them into guest memory (the BIOS area must be RAM-backed, reserved in e820). */
export function writeAcpiTables(mem: GuestMemory, p: AcpiPlatform): AcpiTables {
  const t = buildAcpiTables(p);
  mem.write(t.base, t.image);
  return t;
}
