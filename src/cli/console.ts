// The guest's serial console on the user's terminal (ConsoleIo over process.stdin/stdout).
// On a TTY the terminal goes raw so every key (Ctrl-C included) reaches the guest, and an escape prefix, Ctrl-A,
// gives the user a way out: Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A (the convention of QEMU's -nographic).
// On a pipe the bytes pass through unchanged and the end of input leaves the VM running.

import type { ConsoleIo } from '../vmm/config.ts';

export const ESCAPE_BYTE = 0x01; // Ctrl-A
const QUIT_KEYS = new Set([0x78, 0x58]); // 'x', 'X'

export const ESCAPE_HINT = 'ringzero: console attached; press Ctrl-A then x to quit, Ctrl-A Ctrl-A to send Ctrl-A';

/**
 * The escape-key state machine. Keeps its state between chunks, so a Ctrl-A at the end of one read and the x at
 * the start of the next still quit. After Ctrl-A, any key other than x or Ctrl-A is passed on with the Ctrl-A.
 */
export class EscapeFilter {
  private pendingEscape = false;
  private quitting = false;

  /** Bytes to send to the guest, and whether the user asked to quit (bytes after the quit key are dropped). */
  feed(input: Uint8Array): { forward: Uint8Array; quit: boolean } {
    if (this.quitting) return { forward: new Uint8Array(0), quit: true };
    const out: number[] = [];
    for (const byte of input) {
      if (this.pendingEscape) {
        this.pendingEscape = false;
        if (QUIT_KEYS.has(byte)) {
          this.quitting = true;
          break;
        }
        if (byte === ESCAPE_BYTE) {
          out.push(ESCAPE_BYTE);
        } else {
          out.push(ESCAPE_BYTE, byte);
        }
      } else if (byte === ESCAPE_BYTE) {
        this.pendingEscape = true;
      } else {
        out.push(byte);
      }
    }
    return { forward: Uint8Array.from(out), quit: this.quitting };
  }
}

export interface HostConsole extends ConsoleIo {
  /** Put the terminal back as it was and stop reading input. Safe to call more than once. */
  close(): void;
}

export interface HostConsoleOptions {
  input?: NodeJS.ReadStream;
  output?: NodeJS.WriteStream;
  errors?: NodeJS.WriteStream;
  /** Called after the user typed the quit sequence (the terminal is already restored). */
  onQuit: () => void;
}

/** Input that arrives before the guest's UART registers a receiver is kept, up to this many bytes. */
const MAX_EARLY_INPUT = 64 * 1024;

/**
 * Host input for a guest console: handed to the registered receivers, or, while none is registered yet (the VM is
 * still being built), kept up to MAX_EARLY_INPUT bytes and handed to the first receiver that registers.
 */
export class ConsoleInput {
  private readonly receivers = new Set<(data: Uint8Array) => void>();
  private early: Uint8Array[] = [];
  private earlyBytes = 0;

  deliver(data: Uint8Array): void {
    if (data.length === 0) return;
    if (this.receivers.size === 0) {
      if (this.earlyBytes + data.length <= MAX_EARLY_INPUT) {
        this.early.push(data);
        this.earlyBytes += data.length;
      }
      return;
    }
    for (const receiver of this.receivers) receiver(data);
  }

  /** ConsoleIo.onInput. */
  onInput(receiver: (data: Uint8Array) => void): () => void {
    this.receivers.add(receiver);
    if (this.early.length > 0) {
      const queued = this.early;
      this.early = [];
      this.earlyBytes = 0;
      for (const data of queued) receiver(data);
    }
    return () => {
      this.receivers.delete(receiver);
    };
  }
}

export function createHostConsole(options: HostConsoleOptions): HostConsole {
  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stdout;
  const errors = options.errors ?? process.stderr;
  const interactive = input.isTTY === true;
  const filter = new EscapeFilter();
  const consoleInput = new ConsoleInput();
  let closed = false;

  const deliver = (data: Uint8Array): void => consoleInput.deliver(data);

  const restore = (): void => {
    if (interactive && input.isRaw) input.setRawMode(false);
  };

  const onData = (chunk: Buffer): void => {
    if (!interactive) {
      deliver(new Uint8Array(chunk));
      return;
    }
    const { forward, quit } = filter.feed(chunk);
    deliver(forward);
    if (quit) {
      close();
      options.onQuit();
    }
  };
  // The end of piped input is not the end of the VM: the guest keeps running until it powers off.
  const onEnd = (): void => {};
  const onError = (): void => {};
  // A raw terminal must not outlive us: on SIGTERM/SIGHUP restore it, then end as the signal would have (128 + n).
  const onSignal = (signal: NodeJS.Signals): void => {
    restore();
    process.exit(128 + (signal === 'SIGHUP' ? 1 : 15));
  };

  function close(): void {
    if (closed) return;
    closed = true;
    input.off('data', onData);
    input.off('end', onEnd);
    input.off('error', onError);
    restore();
    input.pause();
    process.off('exit', restore);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }

  if (interactive) {
    input.setRawMode(true);
    // Leave the terminal usable however the process ends.
    process.on('exit', restore);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal);
    errors.write(`${ESCAPE_HINT}\n`);
  }
  input.on('data', onData);
  input.on('end', onEnd);
  input.on('error', onError);
  input.resume();

  return {
    write(data: Uint8Array): void {
      output.write(data);
    },
    onInput: (receiver) => consoleInput.onInput(receiver),
    close,
  };
}
