// `ringzero console NAME`: a viewer of a running VM's serial console, connected to the console socket that the VM's
// own process serves (so it works across daemon restarts, and several viewers can attach at once).
// On a terminal the keys go raw to the guest; Ctrl-A x detaches, Ctrl-A Ctrl-A sends Ctrl-A (as `ringzero run`).
// On a pipe the same escape detaches, and the end of the input does not: the viewer stays until the VM ends or the
// escape comes (so `printf 'cmd\n'` can be piped in and the answer read).

import net from 'node:net';
import { EscapeFilter } from './console.ts';

export async function attachConsole(socketPath: string, name: string): Promise<number> {
  const input = process.stdin;
  const interactive = input.isTTY === true;
  const socket = net.connect(socketPath);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (error: NodeJS.ErrnoException) => reject(new Error(`cannot attach to the console of VM '${name}': ${error.code ?? error.message}`)));
  });
  const filter = new EscapeFilter();
  const restore = (): void => {
    if (interactive && input.isRaw) input.setRawMode(false);
  };
  if (interactive) {
    input.setRawMode(true);
    process.on('exit', restore);
    process.stderr.write(`ringzero: connected to the console of VM '${name}'; Ctrl-A x detaches\n`);
  }

  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (status: number, message?: string): void => {
      if (done) return;
      done = true;
      input.off('data', onData);
      input.pause();
      restore();
      socket.destroy();
      if (message) process.stderr.write(`\nringzero: ${message}\n`);
      resolve(status);
    };
    const onData = (chunk: Buffer): void => {
      const { forward, quit } = filter.feed(chunk);
      if (forward.length > 0) socket.write(forward);
      if (quit) finish(0, interactive ? 'detached' : undefined);
    };
    socket.on('data', (data: Buffer) => process.stdout.write(data));
    socket.on('error', () => {});
    socket.on('close', () => finish(0, `the console of VM '${name}' closed (the VM stopped)`));
    input.on('data', onData);
    input.on('error', () => {});
    input.resume();
  });
}
