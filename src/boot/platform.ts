// The fixed layout of ringzero's PC: where the firmware tables, boot structures and chipset registers
// live. The ACPI tables describe these addresses to the guest and the devices decode them, so they
// are defined once here.
import { MiB, GiB } from '../memory/guest-memory.ts';

// ---- MMIO in the 32-bit hole [3 GiB, 4 GiB) ----
/** Window handed to PCI BARs (described in the host bridge's _CRS). */
export const PCI_MMIO32_BASE = 0xc000_0000;
export const PCI_MMIO32_END = 0xdfff_ffff;
/** PCI Express enhanced configuration space (ECAM): 1 MiB per bus (32 devices x 8 functions x 4 KiB). */
export const PCI_ECAM_BASE = 0xe000_0000;
export const PCI_ECAM_BUSES = 256;
export const PCI_ECAM_SIZE = PCI_ECAM_BUSES * MiB;
export const IOAPIC_BASE = 0xfec0_0000;
/** The IOAPIC has 24 redirection entries: GSI 0-23. */
export const IOAPIC_GSI_COUNT = 24;
export const LAPIC_BASE = 0xfee0_0000;
/** Size of the window above RAM offered to 64-bit PCI BARs. */
export const PCI_MMIO64_SIZE = 32 * GiB;

// ---- Legacy ISA devices (ports and ISA IRQs) ----
export const COM1_PORT = 0x3f8;
export const COM1_IRQ = 4;
export const RTC_PORT = 0x70;
export const RTC_IRQ = 8;
export const PIT_PORT = 0x40;
export const PIT_IRQ = 0;
/** ISA IRQ0 (the PIT) is wired to IOAPIC pin 2 on every PC (ACPI 6.4 §5.2.12.5, interrupt source override). */
export const PIT_GSI = 2;
export const I8042_DATA_PORT = 0x60;
export const I8042_CMD_PORT = 0x64;
export const I8042_KBD_IRQ = 1;
export const PCI_CONFIG_ADDRESS_PORT = 0xcf8;
export const PCI_CONFIG_DATA_PORT = 0xcfc;

// ---- ACPI fixed hardware (ACPI 6.4 §4.8), decoded by src/devices/acpi-pm.ts ----
/** SCI: ISA IRQ 9, level-triggered active-high (FADT SCI_INT + MADT override). */
export const ACPI_SCI_IRQ = 9;
/** PM1a event block: PM1_STS (2 bytes) then PM1_EN (2 bytes). Same base as the ICH9/PIIX4 PM blocks in QEMU's PCs. */
export const ACPI_PM1A_EVT_PORT = 0x600;
export const ACPI_PM1_EVT_LEN = 4;
/** PM1a control block: PM1_CNT (2 bytes). */
export const ACPI_PM1A_CNT_PORT = 0x604;
export const ACPI_PM1_CNT_LEN = 2;
/** PM timer: 32-bit counter at 3.579545 MHz. */
export const ACPI_PM_TMR_PORT = 0x608;
export const ACPI_PM_TMR_LEN = 4;
/** Reset control register (the PIIX/ICH "RST_CNT" at 0xCF9), named by the FADT RESET_REG. */
export const ACPI_RESET_PORT = 0xcf9;
export const ACPI_RESET_VALUE = 0x06;
/** SLP_TYP value that \_S5 names: the PM device powers off when SLP_EN is written with it. */
export const ACPI_S5_SLP_TYP = 5;

// ---- Boot structures in low memory (Linux 64-bit boot protocol, see linux.ts) ----
export const BOOT_GDT_ADDR = 0x500;
/**
 * The setup_data list (boot.rst, "Details of Header Fields": setup_data): one SETUP_RNG_SEED entry. Linux reserves
 * all of the first MiB early (arch/x86/realmode/init.c, reserve_real_mode), so nothing overwrites it before
 * parse_setup_data reads it (and zeroes the seed).
 */
export const SETUP_DATA_ADDR = 0x6000;
export const ZERO_PAGE_ADDR = 0x7000;
/** Initial stack: grows down from just below the page tables, above the zero page. */
export const BOOT_STACK_TOP = 0x8ff0;
export const PML4_ADDR = 0x9000;
export const PDPT_ADDR = 0xa000;
/** Four page directories (one per GiB) follow the PDPT: 0xb000-0xefff. */
export const PD_ADDR = 0xb000;
export const CMDLINE_ADDR = 0x20000;
/** Highest byte + 1 of the command-line area (the rest of conventional memory below the EBDA). */
export const CMDLINE_AREA_END = 0x80000;
/** Start of the Extended BIOS Data Area: conventional RAM ends here (e820). */
export const EBDA_START = 0x9fc00;
/** The BIOS area [EBDA, 1 MiB) is reserved in the e820 map; the ACPI tables live in its top 128 KiB. */
export const BIOS_AREA_END = 0x100000;
/** The RSDP must be 16-byte aligned in 0xE0000-0xFFFFF, where an OS scans for it (ACPI 6.4 §5.2.5.1). */
export const ACPI_RSDP_ADDR = 0xe0000;
export const ACPI_AREA_END = 0x100000;

/**
 * The IOAPIC input a PCI device's INTx pin reaches: GSIs 16-23, rotated by slot as a PCI-to-PCI
 * bridge swizzle would (PCI-to-PCI Bridge Architecture Specification §9.1), so neighbouring slots
 * spread over the inputs. `slot` is the device number 0-31 on bus 0, `pin` 0-3 for INTA#-INTD#.
 * The DSDT's _PRT describes exactly this table; PCI devices must assert the same GSI. The GSIs are
 * level-triggered, active-low (the _PRT form with a GSI number, ACPI 6.4 §6.2.13).
 */
export function pciIntxGsi(slot: number, pin: number): number {
  return 16 + ((slot + pin) & 7);
}
