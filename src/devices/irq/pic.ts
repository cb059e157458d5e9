// The PC's two cascaded 8259A programmable interrupt controllers (Intel 8259A data sheet), plus
// the ELCR edge/level control registers of the PIIX/ICH south bridges (ports 0x4D0/0x4D1).
// Master: ports 0x20/0x21, IRQ 0-7. Slave: ports 0xA0/0xA1, IRQ 8-15, its INT output wired to
// the master's IR2. The master's INT output goes to the BSP's LAPIC LINT0 (virtual wire mode)
// through `onOutput`; the CPU's INTA cycle is `acknowledge()`.
import type { AccessSize, PortBus, PortDevice } from '../bus.ts';

const CASCADE_IRQ = 2;

/** One 8259A. */
class Pic8259 {
  /** Line levels as last reported, for edge detection. */
  lineLevels = 0;
  irr = 0;
  imr = 0;
  isr = 0;
  /** Rotating priority: the IR with the highest priority is `lowestPriority + 1`. */
  priorityAdd = 0;
  vectorBase = 0;
  readIsr = false;
  pollNext = false;
  specialMask = false;
  /** 0: operational; 1: expect ICW2; 2: expect ICW3; 3: expect ICW4. */
  initStep = 0;
  needIcw4 = false;
  singleMode = false;
  autoEoi = false;
  rotateOnAutoEoi = false;
  specialFullyNested = false;
  /** ELCR: 1 bits make the IR level-sensitive. */
  elcr = 0;

  constructor(readonly isMaster: boolean, readonly elcrMask: number) {}

  setLine(irq: number, high: boolean): void {
    const bit = 1 << irq;
    if (this.elcr & bit) {
      // Level-sensitive: IRR follows the line.
      if (high) this.irr |= bit;
      else this.irr &= ~bit;
    } else if (high && !(this.lineLevels & bit)) {
      this.irr |= bit; // rising edge
    }
    if (high) this.lineLevels |= bit;
    else this.lineLevels &= ~bit;
  }

  /** Priority rank (0 = highest) of the best set bit of `mask`, or 8 when none. */
  private rank(mask: number): number {
    if ((mask & 0xff) === 0) return 8;
    let p = 0;
    while (!(mask & (1 << ((p + this.priorityAdd) & 7)))) p++;
    return p;
  }

  /** The IR that would be presented to the CPU now, or -1. */
  pending(): number {
    const requestRank = this.rank(this.irr & ~this.imr);
    if (requestRank === 8) return -1;
    let inService = this.isr;
    if (this.specialMask) inService &= ~this.imr;
    // Special fully nested mode: a slave's further requests may interrupt its own in-service one.
    if (this.specialFullyNested && this.isMaster) inService &= ~(1 << CASCADE_IRQ);
    return requestRank < this.rank(inService) ? (requestRank + this.priorityAdd) & 7 : -1;
  }

  /** INTA for `irq`: move it to ISR unless in automatic EOI mode. */
  intack(irq: number): void {
    const bit = 1 << irq;
    if (this.autoEoi) {
      if (this.rotateOnAutoEoi) this.priorityAdd = (irq + 1) & 7;
    } else {
      this.isr |= bit;
    }
    // An edge request is consumed; a level one stays while its line is high.
    if (!(this.elcr & bit)) this.irr &= ~bit;
  }

  writeCommand(value: number): void {
    if (value & 0x10) {
      // ICW1. The edge detectors are reset: a line already high must go low and high again.
      this.irr = this.lineLevels & this.elcr;
      this.imr = 0;
      this.isr = 0;
      this.priorityAdd = 0;
      this.readIsr = false;
      this.pollNext = false;
      this.specialMask = false;
      this.autoEoi = false;
      this.rotateOnAutoEoi = false;
      this.specialFullyNested = false;
      this.needIcw4 = (value & 1) !== 0;
      this.singleMode = (value & 2) !== 0;
      this.initStep = 1;
    } else if (value & 0x08) {
      // OCW3
      if (value & 0x04) this.pollNext = true;
      if (value & 0x02) this.readIsr = (value & 1) !== 0;
      if (value & 0x40) this.specialMask = (value & 0x20) !== 0;
    } else {
      // OCW2: bits 7-5 are R, SL, EOI.
      const op = value >> 5;
      switch (op) {
        case 0: this.rotateOnAutoEoi = false; break;
        case 4: this.rotateOnAutoEoi = true; break;
        case 1: // non-specific EOI
        case 5: { // rotate on non-specific EOI
          const r = this.rank(this.isr);
          if (r !== 8) {
            const irq = (r + this.priorityAdd) & 7;
            this.isr &= ~(1 << irq);
            if (op === 5) this.priorityAdd = (irq + 1) & 7;
          }
          break;
        }
        case 3: this.isr &= ~(1 << (value & 7)); break; // specific EOI
        case 7: // rotate on specific EOI
          this.isr &= ~(1 << (value & 7));
          this.priorityAdd = ((value & 7) + 1) & 7;
          break;
        case 6: this.priorityAdd = ((value & 7) + 1) & 7; break; // set priority: IR(value) lowest
        default: break; // 2: no operation
      }
    }
  }

  writeData(value: number): void {
    switch (this.initStep) {
      case 0: this.imr = value & 0xff; break; // OCW1
      case 1: // ICW2: vector bits 7-3 (8086 mode)
        this.vectorBase = value & 0xf8;
        this.initStep = this.singleMode ? (this.needIcw4 ? 3 : 0) : 2;
        break;
      case 2: // ICW3: cascade wiring, fixed on a PC
        this.initStep = this.needIcw4 ? 3 : 0;
        break;
      case 3: // ICW4
        this.autoEoi = (value & 0x02) !== 0;
        this.specialFullyNested = (value & 0x10) !== 0;
        this.initStep = 0;
        break;
    }
  }
}

/** One 8259A's registers and internal state, for snapshots. */
export interface Pic8259State {
  lineLevels: number; irr: number; imr: number; isr: number; priorityAdd: number; vectorBase: number;
  readIsr: boolean; pollNext: boolean; specialMask: boolean; initStep: number; needIcw4: boolean; singleMode: boolean;
  autoEoi: boolean; rotateOnAutoEoi: boolean; specialFullyNested: boolean; elcr: number;
}

export interface DualPicState {
  master: Pic8259State;
  slave: Pic8259State;
}

const PIC_STATE_KEYS = [
  'lineLevels', 'irr', 'imr', 'isr', 'priorityAdd', 'vectorBase', 'readIsr', 'pollNext', 'specialMask', 'initStep',
  'needIcw4', 'singleMode', 'autoEoi', 'rotateOnAutoEoi', 'specialFullyNested', 'elcr',
] as const;

function savePic(chip: Pic8259): Pic8259State {
  const out: Record<string, unknown> = {};
  for (const k of PIC_STATE_KEYS) out[k] = chip[k];
  return out as unknown as Pic8259State;
}

function restorePic(chip: Pic8259, s: Pic8259State): void {
  chip.lineLevels = s.lineLevels & 0xff;
  chip.irr = s.irr & 0xff;
  chip.imr = s.imr & 0xff;
  chip.isr = s.isr & 0xff;
  chip.priorityAdd = s.priorityAdd & 7;
  chip.vectorBase = s.vectorBase & 0xf8;
  chip.readIsr = !!s.readIsr;
  chip.pollNext = !!s.pollNext;
  chip.specialMask = !!s.specialMask;
  chip.initStep = s.initStep >= 0 && s.initStep <= 3 ? s.initStep | 0 : 0;
  chip.needIcw4 = !!s.needIcw4;
  chip.singleMode = !!s.singleMode;
  chip.autoEoi = !!s.autoEoi;
  chip.rotateOnAutoEoi = !!s.rotateOnAutoEoi;
  chip.specialFullyNested = !!s.specialFullyNested;
  chip.elcr = s.elcr & chip.elcrMask;
}

export class DualPic implements PortDevice {
  private readonly master = new Pic8259(true, 0xf8); // IRQ0-2 are never level (PIIX4 ELCR)
  private readonly slave = new Pic8259(false, 0xde); // IRQ8 and IRQ13 are never level
  private outputLevel = false;

  /** `onOutput(level)`: the master's INT pin changed. */
  constructor(private readonly onOutput: (level: boolean) => void = () => {}) {}

  /** Drive IRQ line 0-15. The cascade line IRQ2 is internal and ignored. */
  setIrq(irq: number, high: boolean): void {
    if (irq < 0 || irq > 15 || irq === CASCADE_IRQ) return;
    if (irq < 8) this.master.setLine(irq, high);
    else this.slave.setLine(irq - 8, high);
    this.update();
  }

  /** True when the master's INT output is asserted. */
  hasInterrupt(): boolean {
    return this.outputLevel;
  }

  /** The CPU's INTA cycle: the vector of the highest-priority request (spurious IRQ7/15 if it vanished). */
  acknowledge(): number {
    let vector: number;
    const irq = this.master.pending();
    if (irq < 0) {
      // The request went away between INT and INTA: the 8259A answers IR7 without setting ISR.
      vector = this.master.vectorBase + 7;
    } else if (irq === CASCADE_IRQ) {
      const slaveIrq = this.slave.pending();
      if (slaveIrq >= 0) {
        this.slave.intack(slaveIrq);
        vector = this.slave.vectorBase + slaveIrq;
      } else {
        vector = this.slave.vectorBase + 7; // spurious IRQ15
      }
      this.master.intack(irq);
    } else {
      this.master.intack(irq);
      vector = this.master.vectorBase + irq;
    }
    this.update();
    return vector;
  }

  private update(): void {
    // The slave's INT output acts as a level on IR2: it requests exactly while the slave has one.
    if (this.slave.pending() >= 0) this.master.irr |= 1 << CASCADE_IRQ;
    else this.master.irr &= ~(1 << CASCADE_IRQ);
    const level = this.master.pending() >= 0;
    if (level !== this.outputLevel) {
      this.outputLevel = level;
      this.onOutput(level);
    }
  }

  /** OCW3 poll: acknowledge as INTA would, answer 0x80|irq or 0. */
  private poll(chip: Pic8259): number {
    chip.pollNext = false;
    const irq = chip.pending();
    if (irq < 0) return 0;
    if (chip === this.master && irq === CASCADE_IRQ) {
      const s = this.slave.pending();
      if (s >= 0) this.slave.intack(s);
    }
    chip.intack(irq);
    this.update();
    return 0x80 | irq;
  }

  ioRead(port: number, _size: AccessSize): number {
    switch (port) {
      case 0x20: case 0xa0: {
        const chip = port === 0x20 ? this.master : this.slave;
        if (chip.pollNext) return this.poll(chip);
        return chip.readIsr ? chip.isr : chip.irr;
      }
      case 0x21: return this.master.imr;
      case 0xa1: return this.slave.imr;
      case 0x4d0: return this.master.elcr;
      case 0x4d1: return this.slave.elcr;
      default: return 0xff;
    }
  }

  ioWrite(port: number, _size: AccessSize, value: number): void {
    value &= 0xff;
    switch (port) {
      case 0x20: this.master.writeCommand(value); break;
      case 0xa0: this.slave.writeCommand(value); break;
      case 0x21: this.master.writeData(value); break;
      case 0xa1: this.slave.writeData(value); break;
      case 0x4d0: this.setElcr(this.master, value); break;
      case 0x4d1: this.setElcr(this.slave, value); break;
      default: return;
    }
    this.update();
  }

  private setElcr(chip: Pic8259, value: number): void {
    chip.elcr = value & chip.elcrMask;
    // A line switched to level mode requests while it is high; one switched to edge keeps its IRR.
    chip.irr = (chip.irr & ~chip.elcr) | (chip.lineLevels & chip.elcr);
  }

  saveState(): DualPicState {
    return { master: savePic(this.master), slave: savePic(this.slave) };
  }

  /** Load both chips and drive the INT output to what they now present. */
  restoreState(s: DualPicState): void {
    restorePic(this.master, s.master);
    restorePic(this.slave, s.slave);
    this.outputLevel = false;
    this.onOutput(false);
    this.update();
  }

  /** Debug/test view of one chip's registers. */
  state(chip: 'master' | 'slave'): { irr: number; isr: number; imr: number; vectorBase: number; elcr: number } {
    const c = chip === 'master' ? this.master : this.slave;
    return { irr: c.irr, isr: c.isr, imr: c.imr, vectorBase: c.vectorBase, elcr: c.elcr };
  }

  register(bus: PortBus): void {
    bus.register(0x20, 2, this, 'pic-master');
    bus.register(0xa0, 2, this, 'pic-slave');
    bus.register(0x4d0, 2, this, 'elcr');
  }
}
