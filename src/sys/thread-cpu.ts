// The calling thread's CPU time, for measurements of the VMM's own work (restore timing, a migration's warm-up).
import { readFileSync } from 'node:fs';
import { libc } from './libc.ts';

/**
 * The calling thread's CPU time in ms: clock_gettime(CLOCK_THREAD_CPUTIME_ID) through koffi (exact), else the
 * thread's schedstat (whose run time the kernel brings up to date only at scheduler ticks: 4 ms steps at HZ=250).
 */
export function threadCpuClock(): () => number {
  const schedstat = (): number => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
  try {
    const clockGettime = libc.func('int clock_gettime(int clockid, _Out_ uint8_t *tp)') as (clock: number, tp: Uint8Array) => number;
    const ts = new Uint8Array(16), view = new DataView(ts.buffer);
    const CLOCK_THREAD_CPUTIME_ID = 3; // <linux/time.h>
    if (clockGettime(CLOCK_THREAD_CPUTIME_ID, ts) !== 0) return schedstat;
    return () => {
      clockGettime(CLOCK_THREAD_CPUTIME_ID, ts);
      return Number(view.getBigInt64(0, true)) * 1e3 + Number(view.getBigInt64(8, true)) / 1e6;
    };
  } catch {
    return schedstat;
  }
}
