// The PS/2 keyboard controller (Intel 8042 as on PC/AT and PS/2 machines) at 0x60 (data) and
// 0x64 (status/command), with a keyboard attached and no mouse. It is here so Linux's i8042 and
// atkbd drivers find what they probe for, and for the reset line: command 0xFE (and an output
// port write clearing bit 0) pulses CPU reset, which Linux uses to reboot.
//
// Command set: IBM PS/2 Technical Reference, "Keyboard/Auxiliary Device Controller"; the exchange
// Linux expects is in drivers/input/serio/i8042.c (self test, CTR read/write, AUX loopback with
// its IRQ12 test) and drivers/input/keyboard/atkbd.c (reset, GETID, set LEDs/rate, enable).
import type { AccessSize, PortBus, PortDevice } from './bus.ts';
import type { IrqLine } from './irq/router.ts';

export const I8042_KBD_IRQ = 1;
export const I8042_AUX_IRQ = 12;

// Status register bits.
const STR_OBF = 0x01, STR_SYS = 0x04, STR_CMD = 0x08, STR_UNLOCKED = 0x10, STR_AUXDATA = 0x20, STR_TIMEOUT = 0x40;
// Controller command byte (CTR) bits.
const CTR_KBDINT = 0x01, CTR_AUXINT = 0x02, CTR_SYS = 0x04, CTR_KBDDIS = 0x10, CTR_AUXDIS = 0x20, CTR_XLATE = 0x40;
// Output port: bit 0 is the CPU reset line (active low), bit 1 the A20 gate.
const OUTPUT_RESET_HIGH = 0x01, OUTPUT_A20 = 0x02;

const KBD_ACK = 0xfa, KBD_RESEND = 0xfe, KBD_BAT_OK = 0xaa, KBD_ECHO = 0xee;

/** Bytes the controller holds for the host; its hardware buffer is one byte, device replies queue behind it. */
const MAX_QUEUE = 64;

interface OutputByte { byte: number; aux: boolean; timeout: boolean }

/** The controller and keyboard state, for snapshots. */
export interface I8042State {
  queue: OutputByte[];
  lastRead: number;
  ctr: number;
  outputPort: number;
  lastWasCommand: boolean;
  pendingCommand: number | null;
  pendingKbdCommand: number | null;
  scanning: boolean;
  scancodeSet: number;
}

export class I8042 implements PortDevice {
  private queue: OutputByte[] = [];
  private lastRead = 0;
  /** As firmware leaves it: keyboard and AUX interrupts on, system flag, scancode translation. */
  private ctr = CTR_KBDINT | CTR_AUXINT | CTR_SYS | CTR_XLATE;
  private outputPort = OUTPUT_RESET_HIGH | OUTPUT_A20;
  private lastWasCommand = false;
  /** Controller command waiting for its data byte. */
  private pendingCommand: number | undefined;
  /** Keyboard command waiting for its parameter. */
  private pendingKbdCommand: number | undefined;
  private scanning = true;
  private scancodeSet = 2;
  private irq1Level = false;
  private irq12Level = false;

  constructor(
    private readonly irq1: IrqLine,
    private readonly irq12: IrqLine,
    private readonly onReset: () => void,
  ) {}

  reset(): void {
    this.queue = [];
    this.ctr = CTR_KBDINT | CTR_AUXINT | CTR_SYS | CTR_XLATE;
    this.outputPort = OUTPUT_RESET_HIGH | OUTPUT_A20;
    this.pendingCommand = undefined;
    this.pendingKbdCommand = undefined;
    this.scanning = true;
    this.scancodeSet = 2;
    this.updateIrq();
  }

  saveState(): I8042State {
    return {
      queue: this.queue.map((q) => ({ ...q })), lastRead: this.lastRead, ctr: this.ctr, outputPort: this.outputPort,
      lastWasCommand: this.lastWasCommand, pendingCommand: this.pendingCommand ?? null,
      pendingKbdCommand: this.pendingKbdCommand ?? null, scanning: this.scanning, scancodeSet: this.scancodeSet,
    };
  }

  restoreState(s: I8042State): void {
    this.queue = s.queue.slice(0, MAX_QUEUE).map((q) => ({ byte: q.byte & 0xff, aux: !!q.aux, timeout: !!q.timeout }));
    this.lastRead = s.lastRead & 0xff;
    this.ctr = s.ctr & 0xff;
    this.outputPort = s.outputPort & 0xff;
    this.lastWasCommand = !!s.lastWasCommand;
    this.pendingCommand = s.pendingCommand === null ? undefined : s.pendingCommand & 0xff;
    this.pendingKbdCommand = s.pendingKbdCommand === null ? undefined : s.pendingKbdCommand & 0xff;
    this.scanning = !!s.scanning;
    this.scancodeSet = s.scancodeSet >= 1 && s.scancodeSet <= 3 ? s.scancodeSet | 0 : 2;
    this.irq1Level = this.irq12Level = false;
    this.irq1.set(false);
    this.irq12.set(false);
    this.updateIrq();
  }

  /** Host keystrokes, as scancodes already in the set the guest expects (set 1 when translating). */
  injectScancodes(bytes: Uint8Array): void {
    if (!this.scanning || this.ctr & CTR_KBDDIS) return;
    for (const b of bytes) this.push(b, false);
  }

  private push(byte: number, aux: boolean, timeout = false): void {
    if (this.queue.length >= MAX_QUEUE) return;
    this.queue.push({ byte: byte & 0xff, aux, timeout });
    this.updateIrq();
  }

  private updateIrq(): void {
    const head = this.queue[0];
    const kbd = head !== undefined && !head.aux && (this.ctr & CTR_KBDINT) !== 0;
    const aux = head !== undefined && head.aux && (this.ctr & CTR_AUXINT) !== 0;
    if (kbd !== this.irq1Level) { this.irq1Level = kbd; this.irq1.set(kbd); }
    if (aux !== this.irq12Level) { this.irq12Level = aux; this.irq12.set(aux); }
  }

  private status(): number {
    let s = STR_UNLOCKED;
    if (this.ctr & CTR_SYS) s |= STR_SYS;
    if (this.lastWasCommand) s |= STR_CMD;
    const head = this.queue[0];
    if (head) {
      s |= STR_OBF;
      if (head.aux) s |= STR_AUXDATA;
      if (head.timeout) s |= STR_TIMEOUT;
    }
    return s;
  }

  private readData(): number {
    const head = this.queue.shift();
    if (head) this.lastRead = head.byte;
    // Reading empties the buffer and drops the IRQ; the next queued byte raises it again, so an
    // edge-triggered IRQ1/IRQ12 sees one edge per byte.
    if (this.irq1Level) { this.irq1Level = false; this.irq1.set(false); }
    if (this.irq12Level) { this.irq12Level = false; this.irq12.set(false); }
    this.updateIrq();
    return this.lastRead; // an empty buffer reads as the last byte, as on real controllers
  }

  private controllerCommand(cmd: number): void {
    switch (cmd) {
      case 0x20: this.push(this.ctr, false); return; // read CTR
      case 0x60: case 0xd1: case 0xd2: case 0xd3: case 0xd4:
        this.pendingCommand = cmd; // these take a data byte
        return;
      case 0xa7: this.ctr |= CTR_AUXDIS; break;
      case 0xa8: this.ctr &= ~CTR_AUXDIS; break;
      case 0xa9: this.push(0x00, false); return; // AUX interface test: no error
      case 0xaa: this.push(0x55, false); return; // controller self test passed
      case 0xab: this.push(0x00, false); return; // keyboard interface test: no error
      case 0xad: this.ctr |= CTR_KBDDIS; break;
      case 0xae: this.ctr &= ~CTR_KBDDIS; break;
      case 0xc0: this.push(0x00, false); return; // input port
      case 0xd0: this.push(this.outputPort, false); return;
      case 0xdd: this.outputPort &= ~OUTPUT_A20; return; // A20 is not modelled by the memory system
      case 0xdf: this.outputPort |= OUTPUT_A20; return;
      case 0xe0: this.push(0x00, false); return; // test inputs
      default:
        if (cmd >= 0x21 && cmd <= 0x3f) { this.push(0x00, false); return; } // controller RAM reads
        if (cmd >= 0x61 && cmd <= 0x7f) { this.pendingCommand = cmd; return; } // RAM writes (discarded)
        // 0xF0-0xFF pulse output port bits 3:0 low for 6 us; bit 0 is the reset line.
        if (cmd >= 0xf0 && !(cmd & 1)) this.onReset();
        return;
    }
    this.updateIrq();
  }

  private controllerData(cmd: number, value: number): void {
    switch (cmd) {
      case 0x60:
        this.ctr = value;
        this.updateIrq();
        return;
      case 0xd1:
        this.outputPort = value;
        if (!(value & OUTPUT_RESET_HIGH)) this.onReset();
        return;
      case 0xd2: this.push(value, false); return; // as if the keyboard sent it
      case 0xd3: this.push(value, true); return; // AUX loopback: as if the mouse sent it
      case 0xd4:
        // Write to the AUX device: there is none, so the transfer times out (the status register's
        // timeout bit with 0xFE, which Linux's psmouse treats as an aborted command at once).
        this.push(KBD_RESEND, true, true);
        return;
      default: return;
    }
  }

  private keyboardWrite(value: number): void {
    const pending = this.pendingKbdCommand;
    if (pending !== undefined) {
      this.pendingKbdCommand = undefined;
      if (pending === 0xf0 && value === 0) {
        this.push(KBD_ACK, false);
        this.push(this.scancodeSet, false);
        return;
      }
      if (pending === 0xf0 && value >= 1 && value <= 3) this.scancodeSet = value;
      this.push(KBD_ACK, false); // LEDs (0xED), typematic rate (0xF3), scancode set (0xF0)
      return;
    }
    switch (value) {
      case 0xff: // reset: ACK, then the basic assurance test result
        this.scanning = true;
        this.scancodeSet = 2;
        this.push(KBD_ACK, false);
        this.push(KBD_BAT_OK, false);
        return;
      case 0xf2: // identify: MF2 keyboard, 0x83 reported as 0x41 when the controller translates
        this.push(KBD_ACK, false);
        this.push(0xab, false);
        this.push(this.ctr & CTR_XLATE ? 0x41 : 0x83, false);
        return;
      case 0xed: case 0xf3: case 0xf0:
        this.pendingKbdCommand = value;
        this.push(KBD_ACK, false);
        return;
      case 0xf4: this.scanning = true; this.push(KBD_ACK, false); return;
      case 0xf5: this.scanning = false; this.push(KBD_ACK, false); return;
      case 0xf6: this.scanning = true; this.push(KBD_ACK, false); return;
      case 0xee: this.push(KBD_ECHO, false); return;
      default:
        if (value >= 0xf7 && value <= 0xfd) { this.push(KBD_ACK, false); return; } // set-3 key modes
        this.push(KBD_RESEND, false);
    }
  }

  ioRead(port: number, _size: AccessSize): number {
    if (port === 0x60) return this.readData();
    if (port === 0x64) return this.status();
    return 0xff;
  }

  ioWrite(port: number, _size: AccessSize, value: number): void {
    value &= 0xff;
    if (port === 0x64) {
      this.lastWasCommand = true;
      this.pendingCommand = undefined;
      this.controllerCommand(value);
    } else if (port === 0x60) {
      this.lastWasCommand = false;
      const cmd = this.pendingCommand;
      if (cmd !== undefined) {
        this.pendingCommand = undefined;
        this.controllerData(cmd, value);
      } else {
        this.keyboardWrite(value);
      }
    }
  }

  register(bus: PortBus): void {
    bus.register(0x60, 1, this, 'i8042-data');
    bus.register(0x64, 1, this, 'i8042-command');
  }
}
