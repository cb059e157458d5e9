// A VMM process that can snapshot and restore (either engine: the engine the config or the snapshot names), with its
// serial console on stdin/stdout (until `ringzero run` has snapshot verbs of its own):
//   node --import tsx src/vmm/snapshot-run.ts boot <config.json> <snapshot-dir>
//       run the VM (a VmConfig as JSON); on SIGUSR2 pause it, write the snapshot to <snapshot-dir> and exit 0
//   node --import tsx src/vmm/snapshot-run.ts restore <snapshot-dir> [<next-snapshot-dir>]
//       a fresh VMM from the snapshot: the guest carries on where it was; SIGUSR2 snapshots again (if a dir is given)
// Exit status: 0 after the guest powers off or after a snapshot, 1 on an error (one line on stderr).
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Machine } from './machine.ts';
import type { ConsoleIo, VmConfig } from './config.ts';

function stdioConsole(): ConsoleIo & { close(): void } {
  const receivers = new Set<(data: Uint8Array) => void>();
  const early: Uint8Array[] = [];
  const onData = (chunk: Buffer) => {
    if (receivers.size === 0) early.push(new Uint8Array(chunk));
    else for (const r of receivers) r(new Uint8Array(chunk));
  };
  process.stdin.on('data', onData);
  return {
    write: (data) => { process.stdout.write(data); },
    onInput(receiver) {
      receivers.add(receiver);
      for (const chunk of early.splice(0)) receiver(chunk);
      return () => receivers.delete(receiver);
    },
    close: () => { process.stdin.off('data', onData); process.stdin.pause(); },
  };
}

/** Run `machine` until the guest powers off (0) or SIGUSR2 asks for a snapshot into `snapshotDir` (0). */
export async function runWithSnapshotSignal(machine: Machine, snapshotDir: string | undefined): Promise<number> {
  let snapshotError: unknown;
  const onSignal = () => {
    if (!snapshotDir) return;
    // Paused first and ended while still paused: a snapshot that resumed the guest would let it run (and print) a
    // little past the saved instant before the exit, and the restored VM would repeat that output.
    machine.pause().then(() => machine.snapshot(snapshotDir)).then(
      () => machine.requestExit({ kind: 'poweroff' }),
      (error) => { snapshotError = error; machine.requestExit({ kind: 'error', message: `snapshot failed: ${(error as Error).message}` }); },
    );
  };
  process.on('SIGUSR2', onSignal);
  try {
    const exit = await machine.run();
    if (snapshotError || exit.kind === 'error') {
      process.stderr.write(`ringzero: ${exit.kind === 'error' ? exit.message : String(snapshotError)}\n`);
      return 1;
    }
    return 0;
  } finally {
    process.off('SIGUSR2', onSignal);
  }
}

async function main(argv: string[]): Promise<number> {
  const [verb, a, b] = argv;
  const io = stdioConsole();
  try {
    let machine: Machine;
    let next: string | undefined;
    if (verb === 'boot' && a && b) {
      const config = JSON.parse(fs.readFileSync(a, 'utf8')) as VmConfig;
      machine = new Machine(config, io);
      machine.loadKernel();
      next = b;
    } else if (verb === 'restore' && a) {
      machine = Machine.restore(a, io);
      next = b;
    } else {
      process.stderr.write('usage: snapshot-run.ts boot <config.json> <snapshot-dir> | restore <snapshot-dir> [<next-snapshot-dir>]\n');
      return 2;
    }
    process.stderr.write('ringzero: ready\n');
    try {
      return await runWithSnapshotSignal(machine, next);
    } finally {
      machine.close();
    }
  } catch (error) {
    process.stderr.write(`ringzero: ${(error as Error).message}\n`);
    return 1;
  } finally {
    io.close();
  }
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
