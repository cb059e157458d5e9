// What every CLI verb that talks to the daemon shares: finding the API socket, turning an API error into the CLI's
// one-line failure, and printing lines and aligned tables. The API client loads only when a verb runs, so
// `ringzero run` does not pay for it.

import type { ApiClient } from '../api/client.ts';

export interface SocketOption {
  socket?: string;
}

export const socketFlag = '--socket <path>';
export const socketHelp = 'the daemon\'s API socket (default: $RINGZERO_SOCKET, or the default state directory\'s)';

/** A client for the daemon at --socket, else the default socket path. */
export async function client(options: SocketOption): Promise<ApiClient> {
  const { ApiClient } = await import('../api/client.ts');
  const { defaultSocketPath } = await import('../manager/store.ts');
  return new ApiClient(options.socket ?? defaultSocketPath());
}

/** Run an API call; an API error becomes the CLI's one-line failure, naming the error code. */
export async function call<T>(work: () => Promise<T>): Promise<T> {
  const { ApiError } = await import('../api/client.ts');
  try {
    return await work();
  } catch (error) {
    if (error instanceof ApiError) throw new Error(`${error.message} [${error.code}]`);
    throw error;
  }
}

export function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Rows padded into columns two spaces apart (the first row is the header). */
export function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd());
}
