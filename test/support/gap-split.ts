// Where a migration's gap on the console goes (issue 7), from the two VMMs' RINGZERO_MIGRATE_HOT_STATS lines on
// stderr (src/migration/source.ts's "source timeline" and "console writes before the pause", destination.ts's
// "destination timeline" and "console writes after the resume": epoch ms with a fraction, one host's clock, so
// comparable with performance.timeOrigin + performance.now() of the process that read the consoles).
// Used by bench/restore-hot --hops and test/manager-migrate's two-host test (their logs only: nothing is asserted).

/** The gap between the source's last value and the destination's first, in ms, part by part (undefined: lines missing). */
export interface GapSplit {
  /** The source's last value: its console write to the reader's receipt (taken off: the gap is between two receipts). */
  srcDelivery: number;
  /** The source's last value's console write to the source's pause (its guest ran on meanwhile). */
  srcTail: number;
  /** The pause to the state's arrival at the destination (the last pages, the state, the relays between). */
  pauseToState: number;
  /** Applying the state there. */
  apply: number;
  /** "loaded" to "go" (the round trip to the source, relayed). */
  loadedToGo: number;
  /** "go" to the guest's first instruction there (its clock starts again). */
  goToRun: number;
  /** That to the UART's first byte of the destination's first value (the guest's way to it: timer, wake-up, write(2), tty, 8250 driver). */
  runToUart: number;
  /** The UART to the VMM's console write (the run loop's next await). */
  uartToWrite: number;
  /** The console write to the reader's receipt. */
  dstDelivery: number;
  /** The pause to "resumed" at the source: the downtime it reports. */
  resumedAtSource: number;
  /** Console writes at the destination before its first value's. */
  writesBefore: number;
}

type Stamps = [number, number, string][];

function json<T>(text: string, what: string): T | undefined {
  const m = new RegExp(`migration: ${what} (.*)$`, 'm').exec(text);
  if (!m) return undefined;
  try { return JSON.parse(m[1]) as T; } catch { return undefined; }
}

/**
 * `srcErr`/`dstErr`: the VMMs' stderr (or log); `lastN`/`firstN`: the last value before the pause and the first after;
 * `lastAt`/`firstAt`: when the reader got them (epoch ms).
 */
export function gapSplit(srcErr: string, dstErr: string, lastN: number, firstN: number, lastAt: number, firstAt: number): GapSplit | undefined {
  const s = json<Record<string, number>>(srcErr, 'source timeline'), d = json<Record<string, number>>(dstErr, 'destination timeline');
  const sw = json<Stamps>(srcErr, 'console writes before the pause'), dw = json<Stamps>(dstErr, 'console writes after the resume');
  if (!s || !d || !sw || !dw) return undefined;
  // (a value's line may be cut by the UART's batches, or by the pause: the batch with its "C<n> " gives when the guest
  // began writing it, the one with the newline after it when the reader could have it)
  const locate = (w: Stamps, n: number, fromEnd: boolean): { start: Stamps[number]; end: Stamps[number]; index: number } | undefined => {
    const text = w.map((x) => x[2]).join('');
    const at = fromEnd ? text.lastIndexOf(`C${n} `) : text.indexOf(`C${n} `);
    if (at < 0) return undefined;
    const nl = text.indexOf('\n', at);
    let off = 0, start: number | undefined, end: number | undefined;
    w.forEach((x, k) => {
      if (start === undefined && at < off + x[2].length) start = k;
      if (end === undefined && nl >= 0 && nl < off + x[2].length) end = k;
      off += x[2].length;
    });
    return start === undefined || end === undefined ? undefined : { start: w[start], end: w[end], index: start };
  };
  const lastL = locate(sw, lastN, true), firstL = locate(dw, firstN, false);
  if (!lastL || !firstL) return undefined;
  const lastW = lastL.end, firstW: [number, number, string] = [firstL.start[0], firstL.end[1], ''];
  const r = (x: number) => Math.round(x * 10) / 10;
  return {
    srcDelivery: r(lastAt - lastW[1]), srcTail: r(s.paused - lastW[1]), pauseToState: r(d.state - s.paused), apply: r(d.applied - d.state),
    loadedToGo: r(d.go - d.applied), goToRun: r(d.run - d.go), runToUart: r(firstW[0] - d.run), uartToWrite: r(firstW[1] - firstW[0]),
    dstDelivery: r(firstAt - firstW[1]), resumedAtSource: r(s.resumed - s.paused), writesBefore: firstL.index,
  };
}
