// A 16550A UART (National Semiconductor PC16550D data sheet) as found at COM1 (0x3F8, IRQ4).
// Transmission is instantaneous: THR and the transmitter are always empty again right after a
// write, so LSR always shows THRE|TEMT and a THR-empty interrupt follows every write. Bytes the
// guest sends are batched and handed to the sink on a microtask (or when 4 KiB have piled up, or
// on flush()), never one call per byte. Host input is queued without limit (up to a cap) behind
// the 16-byte receive FIFO, so pasted text is not lost; the FIFO refills as the guest reads.
import type { AccessSize, PortBus, PortDevice } from './bus.ts';
import type { IrqLine } from './irq/router.ts';
import { CONSOLE_STAMPS, noteUartByte } from '../vmm/console-stamps.ts';

export const COM1_BASE = 0x3f8;
export const COM1_IRQ = 4;

const FIFO_SIZE = 16;
/** Host input kept beyond the FIFO; more than this is dropped with an overrun. */
const HOST_QUEUE_LIMIT = 1 << 20;
const OUTPUT_FLUSH_BYTES = 4096;

// Register offsets (data sheet table II).
const RBR_THR_DLL = 0, IER_DLM = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

const IER_RDI = 0x01, IER_THRI = 0x02, IER_RLSI = 0x04, IER_MSI = 0x08;

const IIR_NO_INT = 0x01;
const IIR_MSI = 0x00, IIR_THRI = 0x02, IIR_RDI = 0x04, IIR_RLSI = 0x06, IIR_TIMEOUT = 0x0c;
const IIR_FIFO_ENABLED = 0xc0;

const FCR_ENABLE = 0x01, FCR_CLEAR_RX = 0x02;
const LCR_DLAB = 0x80;
const MCR_DTR = 0x01, MCR_RTS = 0x02, MCR_OUT1 = 0x04, MCR_OUT2 = 0x08, MCR_LOOP = 0x10;

const LSR_DR = 0x01, LSR_OE = 0x02, LSR_THRE = 0x20, LSR_TEMT = 0x40;

const MSR_DCTS = 0x01, MSR_DDSR = 0x02, MSR_TERI = 0x04, MSR_DDCD = 0x08;
const MSR_CTS = 0x10, MSR_DSR = 0x20, MSR_RI = 0x40, MSR_DCD = 0x80;
/** A terminal is attached and ready: CTS, DSR and DCD asserted. */
const MSR_CONNECTED = MSR_CTS | MSR_DSR | MSR_DCD;

/** RX FIFO trigger levels selected by FCR bits 7:6. */
const RX_TRIGGER = [1, 4, 8, 14];

/** The UART's registers and pending input, for snapshots (plain data, JSON-safe). */
export interface Serial16550State {
  ier: number; lcr: number; mcr: number; lsrErrors: number; msrLines: number; msrDeltas: number; scr: number;
  divisor: number; fcr: number; fifoEnabled: boolean; thrPending: boolean;
  /** Bytes in the receive FIFO, then host input queued behind it. */
  rxFifo: number[];
  hostQueue: number[];
  irqLevel: boolean;
}

export class Serial16550 implements PortDevice {
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private lsrErrors = 0;
  private msrLines = MSR_CONNECTED;
  private msrDeltas = 0;
  private scr = 0;
  private divisor = 1;
  private fcr = 0;
  private fifoEnabled = false;
  private thrPending = false;

  private readonly rxFifo: number[] = [];
  private hostQueue: Uint8Array[] = [];
  private hostQueueOffset = 0;
  private hostQueueBytes = 0;

  private outBuf = new Uint8Array(OUTPUT_FLUSH_BYTES);
  private outLen = 0;
  private flushQueued = false;
  private irqLevel = false;

  constructor(private readonly irq: IrqLine, private readonly sink: (bytes: Uint8Array) => void) {}

  reset(): void {
    this.flush();
    this.ier = 0;
    this.lcr = 0;
    this.mcr = 0;
    this.lsrErrors = 0;
    this.msrLines = MSR_CONNECTED;
    this.msrDeltas = 0;
    this.scr = 0;
    this.divisor = 1;
    this.fcr = 0;
    this.fifoEnabled = false;
    this.thrPending = false;
    this.rxFifo.length = 0;
    this.updateIrq();
  }

  // ---- snapshots ----

  /** Output still buffered is handed to the sink first, so nothing the guest wrote is lost or written twice. */
  saveState(): Serial16550State {
    this.flush();
    const queued: number[] = [];
    this.hostQueue.forEach((chunk, i) => { for (const b of chunk.subarray(i === 0 ? this.hostQueueOffset : 0)) queued.push(b); });
    return {
      ier: this.ier, lcr: this.lcr, mcr: this.mcr, lsrErrors: this.lsrErrors, msrLines: this.msrLines,
      msrDeltas: this.msrDeltas, scr: this.scr, divisor: this.divisor, fcr: this.fcr, fifoEnabled: this.fifoEnabled,
      thrPending: this.thrPending, rxFifo: this.rxFifo.slice(), hostQueue: queued, irqLevel: this.irqLevel,
    };
  }

  /** Values are masked to what the registers can hold; the IRQ line is driven to the saved level. */
  restoreState(s: Serial16550State): void {
    this.ier = s.ier & 0x0f;
    this.lcr = s.lcr & 0xff;
    this.mcr = s.mcr & 0x1f;
    this.lsrErrors = s.lsrErrors & LSR_OE;
    this.msrLines = s.msrLines & 0xf0;
    this.msrDeltas = s.msrDeltas & 0x0f;
    this.scr = s.scr & 0xff;
    this.divisor = s.divisor & 0xffff;
    this.fifoEnabled = !!s.fifoEnabled;
    this.fcr = this.fifoEnabled ? s.fcr & 0xc9 : 0;
    this.thrPending = !!s.thrPending;
    this.rxFifo.length = 0;
    for (const b of s.rxFifo.slice(0, FIFO_SIZE)) this.rxFifo.push(b & 0xff);
    const queued = Uint8Array.from(s.hostQueue.slice(0, HOST_QUEUE_LIMIT), (b) => b & 0xff);
    this.hostQueue = queued.length > 0 ? [queued] : [];
    this.hostQueueOffset = 0;
    this.hostQueueBytes = queued.length;
    this.irqLevel = false;
    this.irq.set(false);
    this.updateIrq();
  }

  // ---- host side ----

  /** Host input (keystrokes, pasted text). */
  receive(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const room = HOST_QUEUE_LIMIT - this.hostQueueBytes;
    if (room <= 0) {
      this.lsrErrors |= LSR_OE;
    } else {
      const taken = bytes.length > room ? bytes.slice(0, room) : bytes.slice();
      if (taken.length < bytes.length) this.lsrErrors |= LSR_OE;
      this.hostQueue.push(taken);
      this.hostQueueBytes += taken.length;
    }
    this.refillRx();
    this.updateIrq();
  }

  /** Hand buffered output to the sink now. */
  flush(): void {
    if (this.outLen === 0) return;
    const bytes = this.outBuf.slice(0, this.outLen);
    this.outLen = 0;
    this.sink(bytes);
  }

  private emit(byte: number): void {
    if (CONSOLE_STAMPS && this.outLen === 0) noteUartByte();
    this.outBuf[this.outLen++] = byte;
    if (this.outLen === this.outBuf.length) {
      this.flush();
    } else if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
  }

  private refillRx(): void {
    // In loopback the receiver is disconnected from the outside line (data sheet, MCR bit 4).
    if (this.mcr & MCR_LOOP) return;
    const capacity = this.fifoEnabled ? FIFO_SIZE : 1;
    while (this.rxFifo.length < capacity && this.hostQueueBytes > 0) {
      const chunk = this.hostQueue[0];
      this.rxFifo.push(chunk[this.hostQueueOffset++]);
      this.hostQueueBytes--;
      if (this.hostQueueOffset === chunk.length) {
        this.hostQueue.shift();
        this.hostQueueOffset = 0;
      }
    }
  }

  private receiveLoopback(byte: number): void {
    const capacity = this.fifoEnabled ? FIFO_SIZE : 1;
    if (this.rxFifo.length >= capacity) {
      this.lsrErrors |= LSR_OE;
      if (!this.fifoEnabled) this.rxFifo[0] = byte; // the holding register is overwritten
      return;
    }
    this.rxFifo.push(byte);
  }

  // ---- interrupts ----

  /** Highest-priority pending interrupt as IIR bits 3:0 (data sheet table IV). */
  private pendingInterrupt(): number {
    if (this.ier & IER_RLSI && this.lsrErrors) return IIR_RLSI;
    if (this.ier & IER_RDI && this.rxFifo.length > 0) {
      if (!this.fifoEnabled || this.rxFifo.length >= RX_TRIGGER[this.fcr >> 6]) return IIR_RDI;
      // Fewer bytes than the trigger level: the character timeout interrupt. Nothing more can
      // arrive before the guest reads (host input is already queued), so it is due at once.
      return IIR_TIMEOUT;
    }
    if (this.ier & IER_THRI && this.thrPending) return IIR_THRI;
    if (this.ier & IER_MSI && this.msrDeltas) return IIR_MSI;
    return IIR_NO_INT;
  }

  private updateIrq(): void {
    // On a PC, OUT2 gates the UART's interrupt output onto the ISA IRQ line; loopback forces
    // the OUT pins inactive, so no IRQ reaches the PIC then.
    const level = this.pendingInterrupt() !== IIR_NO_INT && (this.mcr & (MCR_OUT2 | MCR_LOOP)) === MCR_OUT2;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq.set(level);
    }
  }

  // ---- registers ----

  private modemStatus(): number {
    return this.msrLines | this.msrDeltas;
  }

  private setModemLines(lines: number): void {
    const changed = lines ^ this.msrLines;
    if (changed & MSR_CTS) this.msrDeltas |= MSR_DCTS;
    if (changed & MSR_DSR) this.msrDeltas |= MSR_DDSR;
    if (changed & MSR_DCD) this.msrDeltas |= MSR_DDCD;
    if (this.msrLines & MSR_RI && !(lines & MSR_RI)) this.msrDeltas |= MSR_TERI; // trailing edge of RI
    this.msrLines = lines;
  }

  /** Loopback ties DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD (data sheet, MCR bit 4). */
  private loopbackLines(): number {
    let l = 0;
    if (this.mcr & MCR_DTR) l |= MSR_DSR;
    if (this.mcr & MCR_RTS) l |= MSR_CTS;
    if (this.mcr & MCR_OUT1) l |= MSR_RI;
    if (this.mcr & MCR_OUT2) l |= MSR_DCD;
    return l;
  }

  private readByte(offset: number): number {
    switch (offset) {
      case RBR_THR_DLL: {
        if (this.lcr & LCR_DLAB) return this.divisor & 0xff;
        const byte = this.rxFifo.length > 0 ? this.rxFifo.shift()! : 0;
        this.refillRx();
        this.updateIrq();
        return byte;
      }
      case IER_DLM:
        return this.lcr & LCR_DLAB ? (this.divisor >> 8) & 0xff : this.ier;
      case IIR_FCR: {
        this.flush();
        const pending = this.pendingInterrupt();
        // Reading IIR while THR empty is the reported source clears it (data sheet table IV).
        if (pending === IIR_THRI) {
          this.thrPending = false;
          this.updateIrq();
        }
        return pending | (this.fifoEnabled ? IIR_FIFO_ENABLED : 0);
      }
      case LCR: return this.lcr;
      case MCR: return this.mcr;
      case LSR: {
        let lsr = LSR_THRE | LSR_TEMT | this.lsrErrors;
        if (this.rxFifo.length > 0) lsr |= LSR_DR;
        this.lsrErrors = 0;
        this.updateIrq();
        return lsr;
      }
      case MSR: {
        const msr = this.modemStatus();
        this.msrDeltas = 0;
        this.updateIrq();
        return msr;
      }
      default: return this.scr;
    }
  }

  private writeByte(offset: number, value: number): void {
    switch (offset) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) {
          this.divisor = (this.divisor & 0xff00) | value;
          return;
        }
        if (this.mcr & MCR_LOOP) this.receiveLoopback(value);
        else this.emit(value);
        // The byte leaves at once: THR is empty again, which is itself an interrupt condition.
        this.thrPending = true;
        break;
      case IER_DLM:
        if (this.lcr & LCR_DLAB) {
          this.divisor = (this.divisor & 0x00ff) | (value << 8);
          return;
        }
        // Enabling the THR-empty interrupt with THR empty raises it (Linux's THRE re-assert test).
        if (value & IER_THRI && !(this.ier & IER_THRI)) this.thrPending = true;
        this.ier = value & 0x0f; // bits 7:4 are always zero on the 16550A
        break;
      case IIR_FCR: {
        const enable = (value & FCR_ENABLE) !== 0;
        if (enable !== this.fifoEnabled) {
          // Changing FIFO mode clears both FIFOs.
          this.rxFifo.length = 0;
          this.fifoEnabled = enable;
        }
        if (value & FCR_CLEAR_RX) this.rxFifo.length = 0;
        // FCR_CLEAR_TX: the transmit FIFO is always empty already.
        // Only bits 7:6 (RX trigger) and 3 (DMA mode) are kept; bits 5:4 are reserved on the 16550A.
        this.fcr = enable ? value & 0xc9 : 0;
        this.refillRx();
        break;
      }
      case LCR: this.lcr = value; return;
      case MCR: {
        const wasLoop = (this.mcr & MCR_LOOP) !== 0;
        this.mcr = value & 0x1f;
        if (this.mcr & MCR_LOOP) this.setModemLines(this.loopbackLines());
        else if (wasLoop) {
          this.setModemLines(MSR_CONNECTED);
          this.msrDeltas = 0; // leaving loopback is not a modem event on the line
        }
        if (wasLoop && !(this.mcr & MCR_LOOP)) this.refillRx();
        break;
      }
      case LSR: return; // factory test only
      case MSR: return;
      default: this.scr = value; return;
    }
    this.updateIrq();
  }

  ioRead(port: number, size: AccessSize): number {
    let value = 0;
    for (let i = 0; i < size; i++) value |= this.readByte((port + i) & 7) << (8 * i);
    return value >>> 0;
  }

  ioWrite(port: number, size: AccessSize, value: number): void {
    for (let i = 0; i < size; i++) this.writeByte((port + i) & 7, (value >>> (8 * i)) & 0xff);
  }

  register(bus: PortBus, base = COM1_BASE): void {
    bus.register(base, 8, this, `serial@0x${base.toString(16)}`);
  }
}

