// The counter guest (./counter-guest.ts) running at a source Machine in this process, and a destination listening for
// it on a free loopback port: the migration tests' common start (test/migrate-downtime, test/migrate-warm-up).
import { Machine } from '../../src/vmm/machine.ts';
import { MiB } from '../../src/memory/guest-memory.ts';
import { captureConsole } from './capture-console.ts';
import { counterKernel, config } from './counter-guest.ts';

/** The listening address every destination here takes, and the callback that reports its port. */
export interface Listen { host: string; port: number; onListening(a: { port: number }): void }

/**
 * Start the source and call `listen` (receiveMigration or receiveMigrationHeld, with the test's own options) with the
 * address to listen on and the destination's console; `stop` powers the source off (resumed if the migration left it
 * paused) and closes both Machines.
 */
export function counterPair<T>(listen: (at: Listen, dio: ReturnType<typeof captureConsole>) => Promise<T>) {
  const io = captureConsole();
  const src = new Machine(config(counterKernel(0xffff), 64 * MiB), io);
  src.loadKernel();
  const running = src.run();
  const dio = captureConsole();
  let gotPort!: (p: number) => void;
  const port = new Promise<number>((r) => { gotPort = r; });
  const incoming = listen({ host: '127.0.0.1', port: 0, onListening: (a) => gotPort(a.port) }, dio);
  const stop = async (dest: Machine | undefined) => {
    src.requestExit({ kind: 'poweroff' });
    if (src.paused) src.resume();
    await running;
    src.close();
    dest?.close();
  };
  return { io, src, dio, port, incoming, stop };
}
