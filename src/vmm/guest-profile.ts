// Guest profile (issue 4: find where the software engine spends a boot): which guest code the instructions run.
//
// Sampling costs nothing on the CPU's paths: the soft engine's run loop gives each vCPU slices of a fixed number of
// instructions (Machine's SLICE), and a slice that ends because its budget ran out ends at an instruction boundary
// that falls uniformly over the instructions executed. Recording RIP there gives one sample per SLICE instructions,
// weighted by instruction count (not by host time: an instruction that costs the engine 10x counts once).
//
// Addresses are kept as the CPU keeps linear addresses in 64-bit mode: signed numbers (exact for canonical ones).
// Symbols come from the guest's own /proc/kallsyms (`grep -i ' t ' /proc/kallsyms` in the guest; boot it with
// `nokaslr` so the addresses match between runs, or take kallsyms from the same boot).
import fs from 'node:fs';

export interface KernelSymbol {
  /** Signed 64-bit address, as the CPU's linear addresses. */
  address: number;
  name: string;
}

export interface ProfileEntry {
  /** The symbol the samples fell in ("+0x..." offsets dropped), or the address (hex) when no symbol covers it. */
  where: string;
  samples: number;
  percent: number;
}

export interface ProfileReport {
  samples: number;
  /** Instructions per sample. */
  every: number;
  /** By symbol when symbols were given, else by 64 KiB region of the address space ("low/user" or kernel). */
  top: ProfileEntry[];
  /** Every sampled address (unsigned hex) with its count, most sampled first. */
  addresses: Array<[string, number]>;
}

/** Unsigned hex of a signed 64-bit linear address. */
export function hexAddress(address: number): string {
  return BigInt.asUintN(64, BigInt(address)).toString(16);
}

/** Parse /proc/kallsyms text: "ffffffff81000000 T _text" lines; text symbols only (t/T/w/W), sorted by address. */
export function parseKallsyms(text: string): KernelSymbol[] {
  const out: KernelSymbol[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]{1,16})\s+([tTwW])\s+(\S+)/.exec(line);
    if (m === null) continue;
    out.push({ address: Number(BigInt.asIntN(64, BigInt(`0x${m[1]}`))), name: m[3] });
  }
  out.sort((a, b) => a.address - b.address);
  return out;
}

export class GuestProfile {
  private readonly counts = new Map<number, number>();
  samples = 0;

  /** `every`: the run loop's slice length, in instructions. */
  constructor(readonly every: number) {}

  /** Forget the samples so far (RINGZERO_BOOT_PHASES: one profile per boot phase). */
  reset(): void {
    this.counts.clear();
    this.samples = 0;
  }

  record(rip: number): void {
    this.samples++;
    this.counts.set(rip, (this.counts.get(rip) ?? 0) + 1);
  }

  report(symbols: readonly KernelSymbol[] = [], limit = 40): ProfileReport {
    const byWhere = new Map<string, number>();
    for (const [rip, n] of this.counts) {
      const where = symbols.length > 0 ? symbolFor(symbols, rip) : regionOf(rip);
      byWhere.set(where, (byWhere.get(where) ?? 0) + n);
    }
    const total = this.samples || 1;
    const top = [...byWhere].sort((a, b) => b[1] - a[1]).slice(0, limit)
      .map(([where, samples]) => ({ where, samples, percent: Math.round((1000 * samples) / total) / 10 }));
    const addresses = [...this.counts].sort((a, b) => b[1] - a[1]).map(([rip, n]): [string, number] => [hexAddress(rip), n]);
    return { samples: this.samples, every: this.every, top, addresses };
  }

  /** Write the report as JSON to `file`; returns it. */
  write(file: string, symbols: readonly KernelSymbol[] = []): ProfileReport {
    const report = this.report(symbols);
    fs.writeFileSync(file, `${JSON.stringify(report, null, 1)}\n`);
    return report;
  }
}

/** The symbol holding `rip` (the last one at or below it), or its region when it is below every symbol. */
export function symbolFor(symbols: readonly KernelSymbol[], rip: number): string {
  let lo = 0, hi = symbols.length - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (symbols[mid].address <= rip) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  // User space (non-negative addresses) never belongs to a kernel symbol.
  if (found < 0 || (rip >= 0 && symbols[found].address < 0)) return regionOf(rip);
  return symbols[found].name;
}

function regionOf(rip: number): string {
  const base = Math.floor(rip / 65536) * 65536;
  return `${rip >= 0 ? 'low/user' : 'kernel'} 0x${hexAddress(base)}`;
}

/** Lines for a terminal: the top entries of a report. */
export function formatProfile(report: ProfileReport, lines = 20): string {
  const head = `ringzero: guest profile: ${report.samples} samples, one per ${report.every} instructions\n`;
  return head + report.top.slice(0, lines).map((e) => `ringzero:   ${e.percent.toFixed(1).padStart(5)}%  ${e.where}\n`).join('');
}
