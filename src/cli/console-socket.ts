// The guest's serial console served on a Unix socket by the VMM process itself (`ringzero run --console-socket PATH`),
// so that console clients (`ringzero console NAME`, through the daemon or not) can come and go, several at once,
// and survive a restart of the daemon that started the VM: the console belongs to the VM's process, not the daemon.
//
// Every connected client receives everything the guest writes; whatever any client sends goes to the guest's input.
// A client that connects late first receives the last SCROLLBACK_BYTES of output, so it sees what happened before.
// A client that does not read fast enough is disconnected rather than let the VMM's memory grow without bound.

import fs from 'node:fs';
import net from 'node:net';
import type { ConsoleIo } from '../vmm/config.ts';
import { ConsoleInput } from './console.ts';

/** Output kept for clients that attach later (enough for a screenful of boot messages). */
export const SCROLLBACK_BYTES = 64 * 1024;
/** A client with more than this many bytes queued unsent is dropped. */
const MAX_CLIENT_BACKLOG = 4 * 1024 * 1024;

export interface SocketConsole extends ConsoleIo {
  /** Stop listening, disconnect the clients, remove the socket file. Safe to call more than once. */
  close(): void;
  /** Number of clients connected now. */
  readonly clients: number;
}

/** Listen on `socketPath` (a stale socket file there is replaced) and resolve once clients can connect. */
export async function createSocketConsole(socketPath: string): Promise<SocketConsole> {
  const clients = new Set<net.Socket>();
  const consoleInput = new ConsoleInput();
  let scrollback: Buffer[] = [];
  let scrollbackBytes = 0;
  let closed = false;

  const deliver = (data: Uint8Array): void => consoleInput.deliver(data);

  const server = net.createServer((socket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    clients.add(socket);
    socket.on('data', (chunk: Buffer) => deliver(new Uint8Array(chunk)));
    socket.on('error', () => {});
    socket.on('close', () => clients.delete(socket));
    if (scrollbackBytes > 0) socket.write(Buffer.concat(scrollback));
  });

  // Only a socket file may be replaced: never delete some other file a wrong path points at.
  try {
    if (fs.lstatSync(socketPath).isSocket()) fs.unlinkSync(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // The console is the guest's keyboard: only the owner may connect.
  fs.chmodSync(socketPath, 0o600);

  const close = (): void => {
    if (closed) return;
    closed = true;
    for (const socket of clients) socket.end();
    server.close();
    try {
      fs.unlinkSync(socketPath);
    } catch {
      // already gone
    }
  };

  return {
    write(data: Uint8Array): void {
      if (data.length === 0) return;
      const chunk = Buffer.from(data);
      scrollback.push(chunk);
      scrollbackBytes += chunk.length;
      while (scrollbackBytes - scrollback[0].length >= SCROLLBACK_BYTES) scrollbackBytes -= scrollback.shift()!.length;
      for (const socket of clients) {
        if (socket.writableLength > MAX_CLIENT_BACKLOG) {
          socket.destroy();
          continue;
        }
        socket.write(chunk);
      }
    },
    onInput: (receiver) => consoleInput.onInput(receiver),
    close,
    get clients() {
      return clients.size;
    },
  };
}

/**
 * Record how the VMM ended (`--status-file`): written atomically just before a normal exit, so the daemon can tell a
 * guest poweroff (status 0) from a failure even after it lost the VMM as its child. No file means the process died
 * without getting there (a signal, a crash).
 */
export function writeStatusFile(file: string, exitCode: number): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, `${JSON.stringify({ exitCode, endedAt: new Date().toISOString() })}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}
