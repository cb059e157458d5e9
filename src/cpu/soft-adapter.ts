// The software CPU behind the engine-independent Vcpu interface (src/cpu/engine.ts). The soft CPU already
// dispatches port I/O and MMIO to the buses in its environment; this adapter converts register state to the common
// shape and runs instruction slices, yielding to the event loop every few milliseconds so the thread stays responsive.
import { SoftCpu, RunExit, type CpuEnvironment } from './soft/index.ts';
import * as C from './soft/constants.ts';
import type { Engine, EngineMachine, Registers, SpecialRegisters, Vcpu, VcpuExit } from './engine.ts';
import { GPR_BY_NUMBER } from './engine.ts';
import { VmClock } from '../vmm/clock.ts';
import type { SegmentState } from '../boot/linux.ts';

/** Instructions per slice between checks of the stop flag, the clock and the yield deadline. */
const SLICE = 20_000;
const YIELD_MS = 8;

const u32 = (n: number) => BigInt(n >>> 0);
/** A number holding a (possibly negative, canonical) 64-bit value -> its unsigned 64-bit bigint. */
const u64 = (n: number) => BigInt.asUintN(64, BigInt(n));
const num = (v: bigint) => Number(BigInt.asIntN(64, v));

export class SoftVcpu implements Vcpu {
  readonly engine = 'soft' as const;
  private running = false;
  private stopRequested = false;

  constructor(readonly cpu: SoftCpu, readonly index = cpu.env.cpuIndex ?? 0) {}

  private idle(what: string): void {
    if (this.running) throw new Error(`vCPU ${this.index}: ${what} while run() is in progress`);
  }

  getRegisters(): Registers {
    this.idle('getRegisters');
    const c = this.cpu;
    const r = { rip: c.getRip(), rflags: c.getRflags() } as Registers;
    GPR_BY_NUMBER.forEach((name, i) => { r[name] = c.getGpr(i); });
    return r;
  }

  setRegisters(r: Registers): void {
    this.idle('setRegisters');
    const c = this.cpu;
    GPR_BY_NUMBER.forEach((name, i) => c.setGpr(i, BigInt.asUintN(64, r[name])));
    c.setRip(r.rip);
    c.setRflags(r.rflags);
  }

  getSpecialRegisters(): SpecialRegisters {
    this.idle('getSpecialRegisters');
    const c = this.cpu;
    const seg = (i: number): SegmentState => ({ selector: c.segSel[i], base: c.segBase[i], limit: c.segLimit[i] >>> 0, accessRights: c.segAttr[i] });
    return {
      es: seg(C.ES), cs: seg(C.CS), ss: seg(C.SS), ds: seg(C.DS), fs: seg(C.FS), gs: seg(C.GS),
      tr: { selector: c.trSel, base: c.trBase, limit: c.trLimit >>> 0, accessRights: c.trAttr },
      ldtr: { selector: c.ldtrSel, base: c.ldtrBase, limit: c.ldtrLimit >>> 0, accessRights: c.ldtrAttr },
      gdt: { base: u64(c.gdtrBase), limit: c.gdtrLimit },
      idt: { base: u64(c.idtrBase), limit: c.idtrLimit },
      cr0: u32(c.cr0), cr2: u64(c.cr2), cr3: u64(c.cr3), cr4: u32(c.cr4), efer: u32(c.efer),
    };
  }

  setSpecialRegisters(s: SpecialRegisters): void {
    this.idle('setSpecialRegisters');
    const c = this.cpu;
    // Control registers first: loading CS derives the CPL and the mode from CR0.PE and EFER.LMA.
    c.cr0 = Number(s.cr0 & 0xffffffffn) | 0;
    c.cr2 = num(s.cr2);
    c.cr3 = num(s.cr3);
    c.cr4 = Number(s.cr4 & 0xffffffffn) | 0;
    c.efer = Number(s.efer & 0xffffffffn) | 0;
    c.gdtrBase = num(s.gdt.base); c.gdtrLimit = s.gdt.limit;
    c.idtrBase = num(s.idt.base); c.idtrLimit = s.idt.limit;
    c.trSel = s.tr.selector; c.trBase = s.tr.base; c.trLimit = s.tr.limit; c.trAttr = s.tr.accessRights;
    c.ldtrSel = s.ldtr.selector; c.ldtrBase = s.ldtr.base; c.ldtrLimit = s.ldtr.limit; c.ldtrAttr = s.ldtr.accessRights;
    const load = (i: number, g: SegmentState) => c.loadSegmentRaw(i, g.selector, g.base, g.limit, g.accessRights);
    load(C.ES, s.es); load(C.SS, s.ss); load(C.DS, s.ds); load(C.FS, s.fs); load(C.GS, s.gs);
    load(C.CS, s.cs);
    c.updateMode();
    c.flushTlb(true);
  }

  async run(): Promise<VcpuExit> {
    this.idle('run');
    this.running = true;
    const c = this.cpu;
    c.halted = false;
    let lastYield = Date.now();
    try {
      for (;;) {
        if (this.stopRequested) { this.stopRequested = false; return { reason: 'stopped' }; }
        let r: RunExit;
        try {
          r = c.run(SLICE);
        } catch (e) {
          return { reason: 'error', message: `soft engine: ${(e as Error).message ?? String(e)}` };
        }
        c.env.clock.runDue();
        if (r === RunExit.Halted) return { reason: 'halt' };
        if (r === RunExit.Shutdown) return { reason: 'shutdown' };
        if (r === RunExit.Stopped) { this.stopRequested = false; return { reason: 'stopped' }; }
        if (Date.now() - lastYield >= YIELD_MS) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          lastYield = Date.now();
        }
      }
    } finally {
      this.running = false;
    }
  }

  stop(): void {
    this.stopRequested = true;
    this.cpu.stopRequested = true;
  }
}

/** A software engine with `cpus` vCPUs and no local APICs: for programs that need only RAM and the buses. */
export function createSoftEngine(machine: EngineMachine & { cpus?: number; clock?: VmClock }): Engine {
  const clock = machine.clock ?? new VmClock();
  const cpus = machine.cpus ?? 1;
  const vcpus: SoftVcpu[] = [];
  for (let i = 0; i < cpus; i++) {
    const env: CpuEnvironment = { mem: machine.mem, ports: machine.ports, mmio: machine.mmio, clock, cpuIndex: i, cpuCount: cpus };
    vcpus.push(new SoftVcpu(new SoftCpu(env), i));
  }
  return {
    kind: 'soft',
    vcpus,
    close: async () => { for (const v of vcpus) v.stop(); },
  };
}
