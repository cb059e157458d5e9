// Console output with its host times, for measuring where a migration's or restore's console gap goes (issue 7):
// RINGZERO_CONSOLE_STAMPS=1, or RINGZERO_MIGRATE_HOT_STATS=1, keeps the last writes of the guest's serial console
// with two times in one clock (epoch ms with a fraction: performance.timeOrigin + performance.now(), comparable
// across the processes of one host): when the UART took the first byte of the batch (the guest's OUT to THR) and when
// the VMM handed the batch to its console (the socket's or stdout's write; the UART batches on a microtask, which runs
// at the run loop's next await). src/migration/source.ts prints the source's last writes before its pause and
// destination.ts the destination's first ones after its resume, so bench/restore-hot can split the gap on the console
// into the source's tail, the switch-over, the destination's way to its first value and the console's delivery.
import type { ConsoleIo } from './config.ts';

export const CONSOLE_STAMPS = process.env.RINGZERO_CONSOLE_STAMPS === '1' || process.env.RINGZERO_MIGRATE_HOT_STATS === '1';

/** Host time as epoch ms with a fraction, comparable between processes of one host. */
export const epochMs = (): number => performance.timeOrigin + performance.now();

export interface ConsoleStamp {
  /** When the UART took the batch's first byte (epoch ms). */
  uart: number;
  /** When the batch went to the console (epoch ms). */
  write: number;
  /** The batch (latin1). */
  text: string;
}

const RING = 4096;
const ring: ConsoleStamp[] = [];
let uartAt = NaN;

/** The UART took a byte into an empty batch (src/devices/serial.ts, only while CONSOLE_STAMPS). */
export function noteUartByte(): void {
  if (Number.isNaN(uartAt)) uartAt = epochMs();
}

/**
 * Forget a UART byte taken since the last console write: a migration destination's warm-up machine (its own UART,
 * whose output goes nowhere: src/migration/warm-up.ts) calls this after each step, so that the guest's first batch
 * is not stamped with the scratch guest's time.
 */
export function forgetUartByte(): void {
  uartAt = NaN;
}

/** Record every write to `io` (a no-op unless CONSOLE_STAMPS). */
export function stampConsole(io: ConsoleIo): void {
  if (!CONSOLE_STAMPS) return;
  const write = io.write;
  io.write = function (this: ConsoleIo, data: Uint8Array) {
    const at = epochMs();
    ring.push({ uart: Number.isNaN(uartAt) ? at : uartAt, write: at, text: Buffer.from(data).toString('latin1') });
    uartAt = NaN;
    // (trimmed by halves: the last RING to 2*RING writes are kept)
    if (ring.length >= 2 * RING) ring.splice(0, RING);
    return write.call(this, data);
  };
}

/** The recorded writes from `from` (epoch ms) on, at most `max`. */
export function stampsSince(from: number, max = 64): ConsoleStamp[] {
  return ring.filter((s) => s.write >= from).slice(0, max);
}

/** The last `n` recorded writes up to `to` (epoch ms). */
export function stampsBefore(to: number, n = 16): ConsoleStamp[] {
  return ring.filter((s) => s.write <= to).slice(-n);
}

/** For a stderr line: times rounded to 0.1 ms. */
export function stampsJson(stamps: ConsoleStamp[]): string {
  const r = (x: number) => Math.round(x * 10) / 10;
  return JSON.stringify(stamps.map((s) => [r(s.uart), r(s.write), s.text]));
}
