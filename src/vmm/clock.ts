// The VM's clock: nanoseconds of guest time. It follows the host's monotonic clock while the VM
// runs and stands still while it is paused (or being snapshotted), so guest time never jumps.
// Devices schedule timers on it; the run loop fires the due ones and, when every vCPU is halted,
// sleeps until the earliest deadline instead of spinning.

export type TimerCallback = (nowNs: number) => void;

export interface Timer {
  deadline: number;
  readonly callback: TimerCallback;
  armed: boolean;
}

export class VmClock {
  private offsetNs: number;
  private pausedAt: number | undefined;
  private timers: Timer[] = [];

  constructor(startNs = 0) {
    this.offsetNs = hostNs() - startNs;
  }

  /** Guest nanoseconds since the VM was created. */
  now(): number {
    return (this.pausedAt ?? hostNs()) - this.offsetNs;
  }

  pause(): void {
    if (this.pausedAt === undefined) this.pausedAt = hostNs();
  }

  resume(): void {
    if (this.pausedAt !== undefined) {
      this.offsetNs += hostNs() - this.pausedAt;
      this.pausedAt = undefined;
    }
  }

  /** Set the clock to `ns` (snapshot restore). */
  set(ns: number): void {
    this.offsetNs = (this.pausedAt ?? hostNs()) - ns;
  }

  createTimer(callback: TimerCallback): Timer {
    const t: Timer = { deadline: Infinity, callback, armed: false };
    this.timers.push(t);
    return t;
  }

  arm(t: Timer, deadlineNs: number): void {
    t.deadline = deadlineNs;
    t.armed = true;
  }

  disarm(t: Timer): void {
    t.armed = false;
    t.deadline = Infinity;
  }

  /** Earliest armed deadline, or Infinity. */
  nextDeadline(): number {
    let d = Infinity;
    for (const t of this.timers) if (t.armed && t.deadline < d) d = t.deadline;
    return d;
  }

  /** Fire every timer whose deadline has passed. Returns how many fired. */
  runDue(): number {
    const now = this.now();
    let fired = 0;
    for (const t of this.timers) {
      if (t.armed && t.deadline <= now) {
        t.armed = false;
        t.deadline = Infinity;
        t.callback(now);
        fired++;
      }
    }
    return fired;
  }
}

/**
 * The host's monotonic clock in ns: the same integer as Number(process.hrtime.bigint()) (exact below 2^53 ns, ~104
 * days), without a BigInt to allocate and convert (translated RDTSC reads it once per guest system call: Linux's
 * kernel-stack offset randomisation).
 */
function hostNs(): number {
  const t = process.hrtime();
  return t[0] * 1e9 + t[1];
}
