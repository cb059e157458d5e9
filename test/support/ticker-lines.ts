// The values of test/support/ticker.c on a serial console (test/manager-migrate.test.ts's boot test), read from the
// console's lines even where a kernel message cut one of them in two.
//
// Why a kernel message can land inside a ticker line: the ticker's write(2) goes through the tty into the 8250
// driver's transmit buffer, which the UART's THR-empty interrupt drains a few bytes at a time; a printk goes to the
// same UART through the console's write (serial8250_console_write), which writes its whole record at once and does
// not wait for the tty's buffer to drain. So a record printed while a ticker line is half sent lands between two of
// its characters: "C1827 12" "[   45.123456] hrtimer: interrupt took 1234 ns\r\n" "34567\r\n". Line by line, neither
// half parses and C1827 looks lost. Other writers through the tty (the shell, its echo) cannot do this: the tty
// copies each write whole into the driver's buffer. With console=ttyS0 and no `quiet`, the guest's kernel prints
// at its default level, so a warning at a migration's switch-over (a long hrtimer interrupt while the destination's
// emulator is cold, a stall report after a long pause of the VMM on a loaded host) can do it there.

/** One value of the ticker: n, the guest's clock when it woke for it (ms), when its line arrived here. */
export interface Tick { n: number; g: number; at: number }

// At the end of a line, not necessarily its start: the shell's echo of a command being typed has no newline yet when
// the ticker writes, so its line can start with that ('echo Q""7: C3514 37432329'); each value is one write(2), whole.
const TICK = /C(\d+) (\d+)$/;
/** A kernel record's prefix on the console (CONFIG_PRINTK_TIME: "[seconds.microseconds] "). */
const KERNEL_RECORD = /\[ *\d+\.\d{6}\] /;

/**
 * The ticker's values in `lines` (a console's lines, without their line ends), in order. `carry`: the start of a line
 * the previous VMM printed before it stopped (a migration may pause the guest mid-line: the source's console has the
 * start, the destination's the rest). A kernel record starting inside a line ends that line's own text: what came
 * before it is joined to the next line that is not a kernel record (the rest of the interrupted line, after the
 * record's own line end). Only text the console had is joined; no value is made up, so a value really lost is still
 * missing. `kernel` (if given) receives the kernel records found inside other lines; `end` (if given), in `head`, the
 * start of a line cut by a kernel record whose rest is not in `lines` (a console that stopped there: the next VMM's
 * console has the rest, so it is part of that one's carry).
 */
export function tickerValues(lines: ReadonlyArray<{ line: string; at: number }>, carry = '', kernel?: string[], end?: { head: string }): Tick[] {
  const out: Tick[] = [];
  let head = carry;
  for (const { line, at } of lines) {
    const k = line.search(KERNEL_RECORD);
    if (k >= 0) {
      // (a record at a line's start, with nothing pending, is an ordinary kernel line: not a splice)
      if (k > 0 || head !== '') kernel?.push(line.slice(k));
      head += line.slice(0, k);
      continue;
    }
    const m = TICK.exec(head + line);
    head = '';
    if (m) out.push({ n: Number(m[1]), g: Number(m[2]) / 1000, at });
  }
  if (end) end.head = head;
  return out;
}
