// Architectural constants of x86-64 used across the software CPU (Intel SDM vol. 3A unless stated).

// EFLAGS bits (SDM vol. 1 §3.4.3)
export const CF = 1 << 0;
export const PF = 1 << 2;
export const AF = 1 << 4;
export const ZF = 1 << 6;
export const SF = 1 << 7;
export const TF = 1 << 8;
export const IF = 1 << 9;
export const DF = 1 << 10;
export const OF = 1 << 11;
export const IOPL = 3 << 12;
export const NT = 1 << 14;
export const RF = 1 << 16;
export const VM = 1 << 17;
export const AC = 1 << 18;
export const VIF = 1 << 19;
export const VIP = 1 << 20;
export const ID = 1 << 21;
/** The six status flags computed by arithmetic. */
export const ARITH_FLAGS = CF | PF | AF | ZF | SF | OF;
/** Bit 1 of EFLAGS always reads as 1. */
export const FLAGS_FIXED = 1 << 1;
/** The EFLAGS bits this CPU implements (reserved bits 3, 5, 15 and 22-31 read as 0): SoftCpu.setFlagsValue keeps these. */
export const FLAGS_IMPLEMENTED = 0x3f7fd5;
/** The RFLAGS bits SYSRET loads from R11 (SDM vol. 2B SYSRET: R11 & 3C7FD7H, then bit 1 set). */
export const SYSRET_FLAGS = 0x3c7fd7;

// Segment register numbers, in the order the ModRM sreg field and prefixes use (SDM vol. 2 §3.1.1.3 table 3-6)
export const ES = 0;
export const CS = 1;
export const SS = 2;
export const DS = 3;
export const FS = 4;
export const GS = 5;

// Segment attribute word (the VMX access-rights layout, SDM vol. 3C §24.4.1): descriptor byte 5 in bits 0-7,
// the flags nibble of byte 6 in bits 12-15, and "unusable" in bit 16.
export const SEG_TYPE_MASK = 0xf;
export const SEG_S = 1 << 4; // code/data (1) vs system (0)
export const SEG_DPL_SHIFT = 5;
export const SEG_P = 1 << 7;
export const SEG_AVL = 1 << 12;
export const SEG_L = 1 << 13; // 64-bit code segment
export const SEG_DB = 1 << 14; // default operation size 32 (code) / big (stack)
export const SEG_G = 1 << 15;
export const SEG_UNUSABLE = 1 << 16;
export const SEG_TYPE_ACCESSED = 1;
export const SEG_TYPE_WRITABLE = 2; // data
export const SEG_TYPE_READABLE = 2; // code
export const SEG_TYPE_EXPAND_DOWN = 4; // data
export const SEG_TYPE_CONFORMING = 4; // code
export const SEG_TYPE_CODE = 8;

// Control registers (SDM vol. 3A §2.5)
export const CR0_PE = 1 << 0;
export const CR0_MP = 1 << 1;
export const CR0_EM = 1 << 2;
export const CR0_TS = 1 << 3;
export const CR0_ET = 1 << 4;
export const CR0_NE = 1 << 5;
export const CR0_WP = 1 << 16;
export const CR0_AM = 1 << 18;
export const CR0_NW = 1 << 29;
export const CR0_CD = 1 << 30;
export const CR0_PG = 1 << 31;

export const CR4_VME = 1 << 0;
export const CR4_PVI = 1 << 1;
export const CR4_TSD = 1 << 2;
export const CR4_DE = 1 << 3;
export const CR4_PSE = 1 << 4;
export const CR4_PAE = 1 << 5;
export const CR4_MCE = 1 << 6;
export const CR4_PGE = 1 << 7;
export const CR4_PCE = 1 << 8;
export const CR4_OSFXSR = 1 << 9;
export const CR4_OSXMMEXCPT = 1 << 10;
export const CR4_UMIP = 1 << 11;

// EFER (SDM vol. 3A §2.2.1)
export const EFER_SCE = 1 << 0;
export const EFER_LME = 1 << 8;
export const EFER_LMA = 1 << 10;
export const EFER_NXE = 1 << 11;

// Exception vectors (SDM vol. 3A §6.3.1 table 6-1)
export const EXC_DE = 0;
export const EXC_DB = 1;
export const EXC_NMI = 2;
export const EXC_BP = 3;
export const EXC_OF = 4;
export const EXC_BR = 5;
export const EXC_UD = 6;
export const EXC_NM = 7;
export const EXC_DF = 8;
export const EXC_TS = 10;
export const EXC_NP = 11;
export const EXC_SS = 12;
export const EXC_GP = 13;
export const EXC_PF = 14;
export const EXC_MF = 16;
export const EXC_AC = 17;
export const EXC_MC = 18;
export const EXC_XM = 19;

// Page-table entry bits (SDM vol. 3A §4.5)
export const PTE_P = 1 << 0;
export const PTE_RW = 1 << 1;
export const PTE_US = 1 << 2;
export const PTE_PWT = 1 << 3;
export const PTE_PCD = 1 << 4;
export const PTE_A = 1 << 5;
export const PTE_D = 1 << 6;
export const PTE_PS = 1 << 7;
export const PTE_G = 1 << 8;

// #PF error code bits (SDM vol. 3A §4.7)
export const PFEC_P = 1 << 0;
export const PFEC_W = 1 << 1;
export const PFEC_U = 1 << 2;
export const PFEC_RSVD = 1 << 3;
export const PFEC_I = 1 << 4;

/** Physical address width this CPU reports in CPUID 0x80000008 (and that page tables are masked to). */
export const MAXPHYADDR = 40;

export const TWO32 = 4294967296;
export const TWO47 = 140737488355328;
