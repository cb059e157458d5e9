// Running the real CLI in a test: bin/ringzero (or a copy of it elsewhere) as a child process of this Node, with its
// exit status and output collected. The CLI test files share it instead of each carrying its own copy.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const RINGZERO_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'ringzero');

export interface RingzeroResult {
  /** The exit code; -1 when the process was killed (the timeout) or did not start. */
  status: number;
  stdout: string;
  stderr: string;
}

export interface RingzeroOptions {
  /** Added to this process's environment (an empty string clears a variable for the CLI's purposes). */
  env?: Record<string, string>;
  /** Written to the CLI's stdin, which is then closed (default: nothing, closed at once). */
  input?: string;
  cwd?: string;
  /** Default 60 s. */
  timeoutMs?: number;
  /** Another bin/ringzero (a copy of the tree); default this tree's. */
  bin?: string;
}

/** Run `ringzero ARGS` and resolve with its status and output (never rejects). */
export function ringzero(args: string[], options: RingzeroOptions = {}): Promise<RingzeroResult> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [options.bin ?? RINGZERO_BIN, ...args], {
      cwd: options.cwd, env: { ...process.env, ...options.env }, timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 2 ** 20,
    }, (error, stdout, stderr) => resolve({ status: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }));
    child.stdin?.on('error', () => {}); // a CLI that exits before reading its stdin
    child.stdin?.end(options.input ?? '');
  });
}
