// ringzero's command line: `image build`, `image path`, `run`, `doctor`, and the management verbs of daemon-commands.ts.
// User mistakes end with one line on stderr ("ringzero: ...") and status 2; other failures with one line and
// status 1 (set RINGZERO_DEBUG=1 to see the stack).
//
// Every command starts a process, so this module imports statically only what defining the commands needs (their
// options and help): each action imports its own modules when it runs (the image builder, the host and KVM probe,
// the VMM, the consoles), so `ringzero list` does not load the VMM and `run --restore` not the image builder.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import { DEFAULT_CMDLINE, MAX_CPUS, type ConsoleIo, type VmConfig } from '../vmm/config.ts';
import type { GuestProfile, KernelSymbol } from '../vmm/guest-profile.ts';
import { registerDaemonCommands } from './daemon-commands.ts';
import { registerStorageCommands } from './storage-commands.ts';
import { registerBackupCommands } from './backup-commands.ts';
import { registerMigrateCommands, hotBlocksOption, resumeBoostOption } from './migrate-commands.ts';
import type { RunOptions } from './run-config.ts';
import { checkSocketPath, DEFAULT_MEMORY, ENGINE_REQUESTS, UsageError } from './validate.ts';


const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

type RunVm = (config: VmConfig, io: ConsoleIo, options?: { profile?: GuestProfile }) => Promise<number>;

function say(line: string): void {
  process.stderr.write(`ringzero: ${line}\n`);
}

/** A balloon size: 0, or a memory size in whole MiB (a bare number is MiB), below 64 GiB. */
function parseBalloonSize(text: string): number {
  if (/^\s*0+\s*$/.test(text)) return 0;
  const match = /^\s*(\d+)\s*([kmg])?(?:i?b)?\s*$/i.exec(text);
  const shift = match ? ({ k: 10, m: 20, g: 30 } as Record<string, number>)[(match[2] ?? 'm').toLowerCase()] : 0;
  const bytes = match ? Number(match[1]) * 2 ** shift : NaN;
  if (!Number.isSafeInteger(bytes) || bytes % 4096 !== 0 || bytes > 64 * 2 ** 30) {
    throw new UsageError(`invalid balloon size '${text}': a size like 64M (whole 4 KiB pages, at most 64G), or 0`);
  }
  return bytes;
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

async function loadRunVm(): Promise<RunVm> {
  // Loaded on demand so `image` and `doctor` work whatever state the VMM is in. RINGZERO_RUNVM_MODULE (a file path)
  // stands in another runVm: the CLI's tests use it to check what `run` hands over.
  // The default is a static specifier so that the bundle (scripts/build.mjs) includes the VMM.
  const override = process.env.RINGZERO_RUNVM_MODULE;
  let module: { runVm?: RunVm };
  try {
    module = override ? await import(pathToFileURL(override).href) as { runVm?: RunVm } : await import('../vmm/run.ts');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && String((error as Error).message).includes('run.ts')) {
      throw new Error('this build of ringzero has no VM runner yet (src/vmm/run.ts is missing)');
    }
    throw error;
  }
  if (typeof module.runVm !== 'function') throw new Error('src/vmm/run.ts exports no runVm function');
  return module.runVm;
}

/** `run` options for a VM started by the daemon: the console on a Unix socket, and the exit status in a file. */
interface ManagedRunOptions {
  consoleSocket?: string;
  statusFile?: string;
}

/** Options of `run` that describe the machine: with --restore the snapshot describes it, so none may be given. */
const MACHINE_OPTIONS = ['engine', 'kernel', 'initrd', 'cmdline', 'cpus', 'memory', 'onReboot', 'disk', 'rng', 'net', 'vsock', 'balloon', 'console', 'translate'];

/** `run --restore DIR`: a snapshot directory, and no option that would describe another machine. */
async function restoreRunner(dir: string, options: RunOptions & { verify?: boolean }, givenOnCommandLine: (option: string) => boolean): Promise<(io: ConsoleIo) => Promise<number>> {
  const given = MACHINE_OPTIONS.filter(givenOnCommandLine);
  if (given.length > 0) {
    const flag = given[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    throw new UsageError(`--restore takes the machine from the snapshot: --${flag === 'translate' ? 'no-translate' : flag} cannot be given with it`);
  }
  if (!existsSync(join(dir, 'state.json'))) throw new UsageError(`--restore '${dir}' is not a snapshot directory (no state.json)`);
  if (options.controlSocket !== undefined) checkSocketPath(options.controlSocket, '--control-socket');
  const { restoreVm } = await import('../vmm/run.ts');
  // --verify: the memory image against the SHA-256 its state file records, read whole before anything starts (a
  // restore otherwise maps it without reading it, so only its size is checked).
  return (io) => restoreVm(dir, io, { controlSocket: options.controlSocket, verifyMemory: options.verify === true });
}

/** `run --incoming tcp:HOST:PORT`: the machine comes from the migration source, so none of its options may be given. */
async function incomingRunner(uri: string, options: RunOptions & { restore?: string; diskTarget?: string[] }, givenOnCommandLine: (option: string) => boolean): Promise<(io: ConsoleIo) => Promise<number>> {
  const given = MACHINE_OPTIONS.filter(givenOnCommandLine);
  if (given.length > 0 || options.restore !== undefined) {
    const flag = options.restore !== undefined ? 'restore' : given[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    throw new UsageError(`--incoming takes the machine from the migration source: --${flag === 'translate' ? 'no-translate' : flag} cannot be given with it`);
  }
  const { parseIncoming, runIncoming } = await import('../migration/destination.ts');
  try {
    parseIncoming(uri);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (options.controlSocket !== undefined) checkSocketPath(options.controlSocket, '--control-socket');
  const diskTargets = options.diskTarget;
  for (const target of diskTargets ?? []) {
    if (!target.startsWith('/') || target.includes('\0') || target.endsWith('/')) throw new UsageError(`--disk-target '${target}' is not an absolute file path`);
    if (existsSync(target)) throw new UsageError(`--disk-target '${target}' already exists: the copy is made there, never over a file`);
  }
  if (diskTargets && new Set(diskTargets).size !== diskTargets.length) throw new UsageError('--disk-target names one file twice');
  return (io) => runIncoming(uri, io, { controlSocket: options.controlSocket, ...(diskTargets ? { diskTargets } : {}) });
}

/** `run --profile-guest FILE [--kallsyms FILE]`. */
interface ProfileOptions {
  profileGuest?: string;
  kallsyms?: string;
}

/** The guest profile asked for, with its symbols read up front (a bad path fails before the VM starts). */
async function guestProfileFor(options: ProfileOptions, engine: string): Promise<{ profile: GuestProfile; report(): void } | undefined> {
  if (options.profileGuest === undefined) return undefined;
  if (engine !== 'soft') throw new UsageError('--profile-guest samples the soft engine\'s run loop: use --engine soft');
  const { GuestProfile, parseKallsyms, formatProfile } = await import('../vmm/guest-profile.ts');
  const { SLICE } = await import('../vmm/machine.ts');
  let symbols: KernelSymbol[] = [];
  if (options.kallsyms !== undefined) {
    let text: string;
    try {
      text = readFileSync(options.kallsyms, 'utf8');
    } catch (error) {
      throw new UsageError(`--kallsyms '${options.kallsyms}': ${(error as Error).message}`);
    }
    symbols = parseKallsyms(text);
    if (symbols.length === 0) throw new UsageError(`--kallsyms '${options.kallsyms}' holds no text symbols (lines like "ffffffff81000000 T _text")`);
  }
  const profile = new GuestProfile(SLICE);
  const file = options.profileGuest;
  return { profile, report: () => process.stderr.write(formatProfile(profile.write(file, symbols))) };
}

async function runCommand(options: RunOptions & ManagedRunOptions & ProfileOptions & { restore?: string; incoming?: string; diskTarget?: string[]; verify?: boolean }, givenOnCommandLine: (option: string) => boolean): Promise<number> {
  // The VMM: keep the C heap's pages between V8's background compiles (src/sys/libc.ts keepMallocPages).
  (await import('../sys/libc.ts')).keepMallocPages();
  if (options.diskTarget !== undefined && options.incoming === undefined) throw new UsageError('--disk-target is where an incoming migration copies a disk: it needs --incoming');
  if (options.verify === true && options.restore === undefined) throw new UsageError('--verify checks the memory image of a snapshot: it needs --restore');
  if (options.kallsyms !== undefined && options.profileGuest === undefined) throw new UsageError('--kallsyms names the symbols of --profile-guest: give both');
  let run: (io: ConsoleIo) => Promise<number>;
  if (options.incoming !== undefined) {
    if (options.profileGuest !== undefined) throw new UsageError('--profile-guest is for a VM booted here, not with --incoming');
    run = await incomingRunner(options.incoming, options, givenOnCommandLine);
  } else if (options.restore !== undefined) {
    if (options.profileGuest !== undefined) throw new UsageError('--profile-guest is for a VM booted here, not with --restore');
    run = await restoreRunner(options.restore, options, givenOnCommandLine);
  } else {
    const [{ buildVmConfig }, { detectHost }] = await Promise.all([import('./run-config.ts'), import('./host.ts')]);
    const config = buildVmConfig(options, detectHost(), say);
    const profiling = await guestProfileFor(options, config.engine);
    const runVm = await loadRunVm();
    run = async (io) => {
      if (profiling === undefined) return runVm(config, io);
      try {
        return await runVm(config, io, { profile: profiling.profile });
      } finally {
        profiling.report();
      }
    };
  }
  // (the console's writes with their host times when RINGZERO_CONSOLE_STAMPS asks; a no-op else)
  const { stampConsole } = await import('../vmm/console-stamps.ts');
  if (options.consoleSocket !== undefined) {
    const { createSocketConsole, writeStatusFile } = await import('./console-socket.ts');
    const socketConsole = await createSocketConsole(options.consoleSocket);
    stampConsole(socketConsole);
    try {
      const status = await run(socketConsole);
      if (options.statusFile !== undefined) writeStatusFile(options.statusFile, status);
      return status;
    } finally {
      socketConsole.close();
    }
  }
  const { createHostConsole } = await import('./console.ts');
  const console = createHostConsole({
    onQuit: () => {
      process.stderr.write('\nringzero: quit from the console\n');
      process.exit(0);
    },
  });
  stampConsole(console);
  try {
    return await run(console);
  } finally {
    console.close();
  }
}

function program(): Command {
  const cli = new Command('ringzero')
    .description('Run x86-64 virtual machines: a software CPU engine (and KVM), virtio devices, a serial console')
    .showSuggestionAfterError(true)
    .configureOutput({
      // Commander's own messages ("error: unknown option ...") in the same one-line form as ours.
      writeErr: (text) => process.stderr.write(text.replace(/^error: /, 'ringzero: ')),
    })
    .exitOverride();

  const image = cli.command('image').description('the default guest image (Debian bookworm cloud kernel + busybox initramfs)');
  image.command('build')
    .description('build the default image into the cache (downloads the Debian packages with apt); does nothing if already built')
    .option('--force', 'rebuild even if an image built from the same packages is cached')
    .action(async (options: { force?: boolean }) => {
      const { buildDefaultImage } = await import('../image/build.ts');
      const result = await buildDefaultImage({ force: options.force, log: say });
      const m = result.manifest;
      say(`${result.cached ? 'cached image' : 'built image'}: kernel ${m.kernelVersion} (${mib(m.kernelBytes)}), `
        + `initramfs ${mib(m.initrdBytes)} with busybox ${m.busyboxVersion} and ${m.modules.length} modules`);
      process.stdout.write(`${result.kernel}\n${result.initrd}\n`);
    });
  image.command('path')
    .description('print the kernel, initramfs and (when built) ext4 root disk paths of the default image, one a line')
    .action(async () => {
      const { findDefaultImage } = await import('../image/build.ts');
      const found = findDefaultImage();
      if (found === undefined) throw new UsageError('no default image built yet: run `ringzero image build`');
      process.stdout.write(`${found.kernel}\n${found.initrd}\n${found.rootfs !== undefined ? `${found.rootfs}\n` : ''}`);
    });

  cli.command('run')
    .description('boot a VM with its serial console on this terminal')
    .option('--engine <engine>', `CPU engine: ${ENGINE_REQUESTS.join(', ')}`, 'auto')
    .option('--kernel <path>', 'bzImage to boot (default: the built default image)')
    .option('--initrd <path>', 'initramfs (default: the default image\'s, when --kernel is not given)')
    .option('--cmdline <text>', 'kernel command line', DEFAULT_CMDLINE)
    .option('--cpus <n>', `number of vCPUs, 1 to ${MAX_CPUS}`, '1')
    .option('--memory <size>', 'guest RAM, 64M to 64G (e.g. 256M, 4G, 512MiB; a bare number is MiB)', DEFAULT_MEMORY)
    .option('--on-reboot <action>', 'what a guest reboot does: restart or exit', 'exit')
    .option('--disk <file[,readonly][,serial=S][,format=raw|qcow2]>', 'a raw or qcow2 disk image on virtio-blk (repeatable: /dev/vda, /dev/vdb, ...; format probed unless given)',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value])
    .option('--rng', 'a virtio-rng device fed by the host\'s random numbers')
    .option('--net <tap=NAME[,mac=XX:XX:XX:XX:XX:XX]>', 'a virtio-net device on a host TAP interface (repeatable: eth0, eth1, ...)',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value])
    .option('--vsock <CID[,path=SOCKET]>', 'a virtio-vsock device: host connects to SOCKET with "CONNECT <port>", guest connects to CID 2 reach SOCKET_<port>')
    .option('--balloon', 'a virtio-balloon device (target set at run time: ringzero balloon)')
    .option('--control-socket <path>', 'take run-time commands (shutdown: the ACPI power button, snapshot, balloon target and statistics) as JSON lines on this Unix socket')
    .option('--restore <dir>', 'start the VM saved in this snapshot directory (on the engine it names) instead of booting a kernel')
    .option('--verify', 'with --restore: check the memory image against the SHA-256 in the snapshot first (reads all of it; without it a restore maps the image and checks its size only)')
    .option('--incoming <tcp:HOST:PORT>', 'wait for a live migration on this address (port 0: any free port, printed) and run the VM it brings')
    .option('--disk-target <path>', 'with --incoming, when the source copies its disks (migrate --copy-storage-all): create the copy of the next disk (vda, vdb, ... in order) at PATH, which must not exist (repeatable)',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value])
    .option('--console <kind>', 'the console: serial (ttyS0) or virtio (hvc0; sets console=hvc0 unless --cmdline is given)', 'serial')
    .option('--console-socket <path>', 'serve the console on this Unix socket (any number of clients) instead of the terminal')
    .option('--status-file <path>', 'with --console-socket: write the exit status here as JSON when the VM ends')
    .option('--no-translate', 'soft engine: interpret every instruction (no decoded-block cache), to compare')
    .option('--stats', 'print engine statistics (instructions, MIPS, block cache) on stderr when the VM ends')
    .option('--profile-guest <file>', 'soft engine: sample where the guest runs (one RIP per 20000 instructions) and write the profile to FILE as JSON when the VM ends')
    .option('--kallsyms <file>', 'with --profile-guest: the guest\'s /proc/kallsyms, to name kernel functions (boot with nokaslr)')
    .option('--resume-boost <nice>', 'the priority (nice value, -20 to 0; 0: none) of this VMM\'s session while its guest stands still for a migration\'s switch-over, and of it and its guest thread for 3 s after a resume (a migration\'s destination, --restore); needs CAP_SYS_NICE (default -10)')
    .action(async (options: RunOptions & ManagedRunOptions & ProfileOptions & { restore?: string; incoming?: string; diskTarget?: string[]; verify?: boolean; resumeBoost?: string }, command: Command) => {
      const boost = resumeBoostOption(options.resumeBoost).resumeBoost;
      if (boost !== undefined) (await import('../vmm/resume-priority.ts')).setResumeBoost(boost);
      process.exitCode = await runCommand(options, (option) => command.getOptionValueSource(option) === 'cli');
    });

  // A spare VMM of the daemon's pool (src/vmm/spare.ts, src/manager/pool.ts): not for users, so not in --help.
  cli.command('vmm-spare', { hidden: true })
    .description('a pre-started VMM that warms up, then waits for the command line of a VM to run (the daemon\'s --vmm-pool)')
    // (no defaults here: the pool (src/manager/pool.ts Spare.spawn), the only starter, always gives all three)
    .requiredOption('--warm-up-ms <ms>', 'main-thread CPU of its warm-up on the default image (0: none)')
    .requiredOption('--warm-up-wall-ms <ms>', 'wall time of its warm-up at most')
    .requiredOption('--nice <n>', 'its priority while a spare (0 to 19), given back when taken')
    .action(async (options: { warmUpMs: string; warmUpWallMs: string; nice: string }) => {
      const num = (text: string, flag: string, max: number) => {
        const n = Number(text);
        if (!/^\d+$/.test(text) || n > max) throw new UsageError(`${flag} '${text}' must be an integer from 0 to ${max}`);
        return n;
      };
      const opts = { warmUpMs: num(options.warmUpMs, '--warm-up-ms', 600_000), wallMs: num(options.warmUpWallMs, '--warm-up-wall-ms', 3_600_000), nice: num(options.nice, '--nice', 19) };
      (await import('../sys/libc.ts')).keepMallocPages();
      const { runSpare } = await import('../vmm/spare.ts');
      process.exitCode = await runSpare(opts, main);
    });

  cli.command('balloon')
    .description('show a running VM\'s balloon (target, actual, guest statistics), or set its target: SIZE of RAM taken from the guest')
    .requiredOption('--control-socket <path>', 'the VM\'s --control-socket')
    .argument('[size]', 'memory to take from the guest, e.g. 64M (0 gives it all back)')
    .action(async (size: string | undefined, options: { controlSocket: string }) => {
      const { controlRequest } = await import('../vmm/control.ts');
      const request = size === undefined ? { cmd: 'balloon-stats' } : { cmd: 'balloon-set', bytes: parseBalloonSize(size) };
      const answer = await controlRequest(options.controlSocket, request);
      if (answer.ok !== true) throw new Error(String(answer.error));
      process.stdout.write(`${JSON.stringify(answer)}\n`);
    });

  cli.command('migrate')
    .description('live-migrate a daemon\'s VM NAME to another daemon (its --migration-listen address), or a VMM (--control-socket) to a VMM started with `run --incoming tcp:HOST:PORT`')
    .argument('[name]', 'the daemon\'s VM (src/cli/migrate-commands.ts)')
    .option('--control-socket <path>', 'without NAME: the VM\'s --control-socket')
    .option('--socket <path>', 'with NAME: the daemon\'s API socket (default: $RINGZERO_SOCKET, or the default state directory\'s)')
    .option('--link-timeout-ms <ms>', 'with NAME: give up (the VM runs on here) when the destination daemon is silent this long', '10000')
    .option('--json', 'with NAME: print the finished migration as JSON')
    .requiredOption('--to <host:port>', 'the destination daemon\'s --migration-listen address, or the destination VMM\'s --incoming address')
    .option('--downtime-ms <ms>', 'longest pause of the guest to aim for', '300')
    .option('--max-iterations <n>', 'pre-copy rounds before giving up (the VM then runs on here)', '30')
    .option('--bandwidth <bytes-per-second>', 'cap on the transfer rate')
    .option('--progress', 'print the progress on stderr while migrating (JSON lines with --control-socket)')
    .option('--verify', 'check a SHA-256 of all guest RAM at the destination before it resumes (longer downtime)')
    .option('--copy-storage-all', 'copy the VM\'s disks to the destination while it runs (no shared storage needed; the destination daemon puts them in its pool)')
    .option('--disk-target <vdX=PATH|VOLUME>', 'with NAME and --copy-storage-all: where the destination puts the copy of disk vdX (an absolute path there, or a volume name in its pool; repeatable)',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value])
    .option('--hot-blocks <n>', 'soft engine: send the destination at most N of the guest\'s most recently translated code blocks, which it translates during the pre-copy (0 to 65536; default 2048)')
    .option('--no-hot-blocks', 'send no hot-block list (the destination starts with no translated code)')
    .option('--resume-boost <nice>', 'the priority (nice value, -20 to 0; 0: none) the VMMs\' sessions (and, with NAME, the daemons\') take while the guest stands still for the switch-over, and the destination\'s for 3 s after; needs CAP_SYS_NICE (default: the VM\'s resumeBoost, else -10)')
    .action(async (name: string | undefined, options: { controlSocket?: string; socket?: string; linkTimeoutMs: string; json?: boolean; to: string; downtimeMs: string; maxIterations: string; bandwidth?: string; progress?: boolean; verify?: boolean; copyStorageAll?: boolean; diskTarget?: string[]; hotBlocks?: string | boolean; resumeBoost?: string }) => {
      if ((name === undefined) === (options.controlSocket === undefined)) throw new UsageError('migrate takes a VM NAME (through the daemon) or --control-socket (a VMM), one of the two');
      if (name !== undefined) {
        const { migrateThroughDaemon } = await import('./migrate-commands.ts');
        await migrateThroughDaemon(name, options);
        return;
      }
      const controlSocket = options.controlSocket!;
      const int = (text: string, flag: string, max: number) => {
        const n = Number(text);
        if (!/^\d+$/.test(text) || n < 1 || n > max) throw new UsageError(`${flag} '${text}' must be an integer from 1 to ${max}`);
        return n;
      };
      const request = {
        cmd: 'migrate', to: options.to,
        downtimeMs: int(options.downtimeMs, '--downtime-ms', 600_000),
        maxIterations: int(options.maxIterations, '--max-iterations', 10_000),
        ...(options.bandwidth !== undefined ? { bandwidth: int(options.bandwidth, '--bandwidth', 2 ** 40) } : {}),
        ...(options.verify ? { verify: true } : {}),
        ...(options.copyStorageAll ? { copyStorage: true } : {}),
        ...hotBlocksOption(options.hotBlocks),
        ...resumeBoostOption(options.resumeBoost),
      };
      if (options.diskTarget !== undefined) throw new UsageError('--disk-target is for a daemon\'s VM (NAME): between VMMs the destination names its copies (run --incoming --disk-target)');
      const { controlRequest } = await import('../vmm/control.ts');
      const timer = options.progress ? setInterval(() => {
        controlRequest(controlSocket, { cmd: 'migrate-status' }).then((p) => process.stderr.write(`${JSON.stringify(p)}\n`), () => {});
      }, 500) : undefined;
      try {
        const answer = await controlRequest(controlSocket, request, 24 * 3600_000);
        if (answer.ok !== true) throw new Error(String(answer.error));
        process.stdout.write(`${JSON.stringify(answer)}\n`);
      } finally {
        clearInterval(timer);
      }
    });

  registerDaemonCommands(cli);
  registerStorageCommands(cli);
  registerBackupCommands(cli); // after registerDaemonCommands: adds `snapshot revert`
  registerMigrateCommands(cli); // migrate-abort (src/cli/migrate-commands.ts)

  cli.command('doctor')
    .description('what this host offers for running VMs, and which engine auto picks')
    .action(async () => {
      const [{ describeHost, detectHost }, { findDefaultImage }] = await Promise.all([import('./host.ts'), import('../image/build.ts')]);
      for (const line of describeHost(detectHost())) process.stdout.write(`${line}\n`);
      const found = findDefaultImage();
      process.stdout.write(found === undefined
        ? 'default image: not built (run `ringzero image build`)\n'
        : `default image: kernel ${found.manifest.kernelVersion}, ${found.kernel}\n`);
    });
  return cli;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its one-line message (or the help, or the version).
      return error.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (process.env.RINGZERO_DEBUG) console.error(error);
    if (error instanceof UsageError) {
      say(error.message);
      return EXIT_USAGE;
    }
    // Only `image build` and `run`'s default image can fail so: the image builder is loaded already then.
    const { ImageBuildError } = await import('../image/build.ts');
    if (error instanceof ImageBuildError) {
      say(`image build failed: ${error.message}`);
      return EXIT_FAILURE;
    }
    say(error instanceof Error ? error.message : String(error));
    return EXIT_FAILURE;
  }
}

main(process.argv.slice(2)).then((status) => process.exit(status));
