// The management verbs of the CLI (virsh's names): `daemon` runs the manager; define, undefine, start, shutdown,
// destroy, reboot, suspend, resume, set, setmem, list, info, top, console, edit and snapshot create|list|restore|delete talk to it through its REST API on the Unix socket given by
// --socket or RINGZERO_SOCKET (default: see defaultSocketPath). The modules behind them load only when used, so
// `ringzero run` does not pay for the HTTP framework.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Command } from 'commander';
import type { VmView } from '../manager/manager.ts';
import { CPU_LIST_PATTERN, SNAPSHOT_NAME_RE, type SnapshotView } from '../manager/schema.ts';
import { MAX_CPUS } from '../vmm/config.ts';
import { UsageError } from './validate.ts';
import { type SocketOption, socketFlag, socketHelp, client, call, out, table } from './api-call.ts';

/**
 * A definition file's text and format (JSON or YAML: src/manager/definition-text.ts), its syntax checked here so a
 * typo is a usage error naming the line and column before any request. `-` reads standard input.
 */
async function readDefinitionFile(file: string): Promise<{ format: 'json' | 'yaml'; text: string }> {
  let text: string;
  try {
    text = fs.readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read '${file}' (${(error as NodeJS.ErrnoException).code})`);
  }
  const { formatOfFile } = await import('../manager/definition-text.ts');
  const format = formatOfFile(file, text);
  await checkSyntax(text, format, `'${file}' is not valid`, '');
  return { format, text };
}

/** Parse `text` as `format`; a syntax error is a usage error: "<prefix> YAML: line L, column C: reason<suffix>". */
async function checkSyntax(text: string, format: 'json' | 'yaml', prefix: string, suffix: string): Promise<void> {
  const { DefinitionSyntaxError, parseDefinitionText } = await import('../manager/definition-text.ts');
  try {
    parseDefinitionText(text, format);
  } catch (error) {
    if (!(error instanceof DefinitionSyntaxError)) throw error;
    const where = error.line !== undefined ? `line ${error.line}, column ${error.column}: ` : '';
    throw new UsageError(`${prefix} ${format === 'yaml' ? 'YAML' : 'JSON'}: ${where}${error.reason}${suffix}`);
  }
}

const MEDIA_TYPE = { json: 'application/json', yaml: 'application/yaml' } as const;

/** GET/PUT /vms/{name}/balloon: guest memory left, the balloon's target and actual size (bytes). */
interface BalloonView {
  memoryBytes: number;
  guestMemoryBytes: number;
  targetBytes: number;
  actualBytes: number;
}

function mib(bytes: number): string {
  return `${Math.round(bytes / 2 ** 20)} MiB`;
}

function balloonLine(b: BalloonView): string {
  return `guest has ${mib(b.guestMemoryBytes)} of ${mib(b.memoryBytes)} (balloon target ${mib(b.targetBytes)}, inflated ${mib(b.actualBytes)})`;
}

function resourceLine(r: NonNullable<VmView['resources']>): string {
  const parts = [
    `CPU quota ${r.cpuQuotaPercent !== undefined ? `${r.cpuQuotaPercent}%` : 'none'}`,
    `weight ${r.cpuWeight ?? 100}`,
    `memory max ${r.memoryMax !== undefined ? `${r.memoryMax} MiB` : 'none'}`,
    `CPUs ${r.cpuPinning ?? 'any'}`,
  ];
  if (r.cgroup) parts.push(`cgroup ${r.cgroup}`);
  return parts.join(', ');
}

/** The state, and a migration in progress or left unsettled (src/manager/migration.ts vmAnnotation). */
function stateText(vm: VmView): string {
  return vm.migration ? `${vm.state} (migration ${vm.migration.direction === 'outgoing' ? 'to' : 'from'} ${vm.migration.peer}: ${vm.migration.phase})` : vm.state;
}

function infoLines(vm: VmView): string[] {
  const d = vm.definition;
  const lines = [
    ['Name', vm.name], ['State', stateText(vm)], ['Engine', d.engine], ['CPUs', String(d.cpus)], ['Memory', `${d.memory} MiB`],
    ['Kernel', d.kernel ?? '(default image)'], ['Initrd', d.initrd ?? (d.kernel ? '(none)' : '(default image)')], ['Cmdline', d.cmdline],
    ['Console', d.console],
    ['Disks', d.disks.length === 0 ? '(none)' : d.disks.map((k) => `${k.path}${k.format ? ` ${k.format}` : ''}${k.readonly ? ' (ro)' : ''}`).join(', ')],
    ['NICs', (d.nics ?? []).length === 0 ? '(none)' : d.nics!.map((n, i) => `eth${i} ${n.mac ?? '(MAC from the TAP name)'} on TAP ${n.tap}`).join(', ')],
    ['RNG', d.rng ? 'yes' : 'no'], ['Autostart', d.autostart ? 'yes' : 'no'],
  ];
  if (vm.pid !== undefined) lines.push(['PID', String(vm.pid)]);
  if (vm.startedAt) lines.push(['Started', vm.startedAt]);
  if (vm.consoleSocket) lines.push(['Console socket', vm.consoleSocket]);
  const wanted = [d.cpuQuotaPercent !== undefined ? `quota ${d.cpuQuotaPercent}%` : '', d.cpuWeight !== undefined ? `weight ${d.cpuWeight}` : '',
    d.memoryMax !== undefined ? `memory max ${d.memoryMax} MiB` : '', d.cpuPinning !== undefined ? `pinned to CPUs ${d.cpuPinning}` : ''].filter(Boolean);
  if (wanted.length > 0) lines.push(['Resources', wanted.join(', ')]);
  if (vm.resources) lines.push(['In force', resourceLine(vm.resources)]);
  if (vm.resources?.note) lines.push(['Note', vm.resources.note]);
  if (vm.lastExit) lines.push(['Last exit', `${vm.lastExit.reason} (${vm.lastExit.at})`]);
  return lines.map(([key, value]) => `${`${key}:`.padEnd(16)}${value}`);
}

export function registerDaemonCommands(cli: Command): void {

  cli.command('daemon')
    .description('run the VM manager: state directory, one VMM process per running VM, REST API on a Unix socket')
    .option('--state-dir <dir>', 'state directory (default: /var/lib/ringzero for root, else $XDG_STATE_HOME/ringzero)')
    .option(socketFlag, 'API socket (default: /run/ringzero/ringzero.sock for root, else in the state directory)')
    .option('--listen <host:port>', 'also serve the API on TCP (needs --token-file)')
    .option('--token-file <file>', 'bearer token required on the TCP listener')
    .option('--migration-listen <host:port>', 'accept live migrations of VMs from other daemons on this TCP address (needs --migration-token-file; the stream is not encrypted)')
    .option('--migration-token-file <file>', 'the secret shared by the daemons that migrate VMs between them (at least 16 characters)')
    .option('--shutdown-timeout <seconds>', 'default time a shutdown waits before destroying the VM', '60')
    .option('--vmm-pool <n>', 'keep N spare VMM processes (0 to 8), warmed up ahead of need, that incoming migrations and snapshot restores take instead of starting a new VMM (each ~100-200 MB resident; GET /host/pool; default $RINGZERO_VMM_POOL, else 0)')
    .option('--vmm-pool-warm-up-ms <ms>', 'CPU (ms of its main thread) each spare may spend warming up on a scratch boot of the default image, at a low priority (0: none, the spare only saves the process start; default $RINGZERO_VMM_POOL_WARM_UP_MS, else 1500)')
    .action(async (options) => {
      const { runDaemon } = await import('./daemon.ts');
      process.exitCode = await runDaemon(options);
    });

  cli.command('define').argument('<file>', 'VM definition, JSON or YAML (by its extension .json, .yaml or .yml, else by its content; - reads stdin)')
    .description('define a VM from a JSON or YAML definition (see GET /openapi.json for the schema)')
    .option(socketFlag, socketHelp)
    .action(async (file: string, options: SocketOption) => {
      const { format, text } = await readDefinitionFile(file);
      const api = await client(options);
      // The text as written: a YAML definition is kept by the daemon so `edit` reopens it, comments included.
      const answer = await call(() => api.requestText('POST', '/vms', { contentType: MEDIA_TYPE[format], text }));
      const vm = JSON.parse(answer.text) as VmView;
      out(`VM '${vm.name}' defined from ${file === '-' ? 'standard input' : file}`);
    });

  cli.command('undefine').argument('<name>').description('remove a VM that is not running')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption) => {
      const api = await client(options);
      await call(() => api.request('DELETE', `/vms/${encodeURIComponent(name)}`));
      out(`VM '${name}' undefined`);
    });

  for (const [verb, description, done] of [
    ['start', 'start a VM in its own VMM process', 'started'],
    ['destroy', 'stop a VM at once (its VMM process is killed)', 'destroyed'],
    ['suspend', 'pause a running VM\'s vCPUs (its process, memory and console stay; resume continues it)', 'suspended'],
    ['resume', 'let a suspended VM run again', 'resumed'],
  ] as const) {
    cli.command(verb).argument('<name>').description(description)
      .option(socketFlag, socketHelp)
      .action(async (name: string, options: SocketOption) => {
        const api = await client(options);
        await call(() => api.request('POST', `/vms/${encodeURIComponent(name)}/${verb}`));
        out(`VM '${name}' ${done}`);
      });
  }

  cli.command('reboot').argument('<name>')
    .description('reboot a VM: in place (power button, the guest\'s poweroff becomes a reset; reset if the guest ignores the button), or shutdown then start for onReboot exit')
    .option('--timeout <seconds>', 'onReboot exit: how long the shutdown waits before destroying (default: the daemon\'s, 60)')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption & { timeout?: string }) => {
      const body: { timeout?: number } = {};
      if (options.timeout !== undefined) {
        if (!/^\d+(\.\d+)?$/.test(options.timeout) || Number(options.timeout) > 3600) throw new UsageError(`invalid --timeout '${options.timeout}': seconds, 0 to 3600`);
        body.timeout = Number(options.timeout);
      }
      const api = await client(options);
      const result = await call(() => api.request<VmView & { how: string }>('POST', `/vms/${encodeURIComponent(name)}/reboot`, body));
      out(`VM '${name}' ${{ 'in-place': 'is rebooting', reset: 'was reset (its guest ignores the power button)', restarted: 'restarted' }[result.how] ?? 'rebooted'}`);
    });

  cli.command('set').argument('<name>')
    .description('resource control (virsh schedinfo/vcpupin/memtune): CPU quota and weight, memory limit (cgroups), CPU pinning; at once while running')
    .option('--cpu-quota <percent>', 'CPU time the VM may use, percent of one host CPU (200: two CPUs), or none')
    .option('--cpu-weight <n>', 'share under contention, 1 to 10000 (default 100), or none')
    .option('--memory-max <size>', 'hard limit on the VMM process\'s memory (e.g. 512M; MiB if bare), or none')
    .option('--pin <cpus>', 'host CPUs the VM\'s threads may run on (e.g. 0, 0-1, 1,3), or none')
    .option('--config', 'also save the values in the definition (a VM that is not running always has them saved)')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption & { cpuQuota?: string; cpuWeight?: string; memoryMax?: string; pin?: string; config?: boolean }) => {
      const body: Record<string, unknown> = {};
      const integer = (flag: string, text: string, min: number, max: number): number | null => {
        if (text === 'none') return null;
        const n = Number(text);
        if (!/^\d+$/.test(text) || n < min || n > max) throw new UsageError(`invalid ${flag} '${text}': a whole number, ${min} to ${max}, or none`);
        return n;
      };
      if (options.cpuQuota !== undefined) body.cpuQuotaPercent = integer('--cpu-quota', options.cpuQuota.replace(/%$/, ''), 1, 100 * MAX_CPUS);
      if (options.cpuWeight !== undefined) body.cpuWeight = integer('--cpu-weight', options.cpuWeight, 1, 10000);
      if (options.memoryMax !== undefined) {
        if (options.memoryMax === 'none') body.memoryMax = null;
        else {
          const m = /^(\d+)(M|MiB|G|GiB)?$/i.exec(options.memoryMax);
          if (!m) throw new UsageError(`invalid --memory-max '${options.memoryMax}': a size like 512M or 2G, or none`);
          body.memoryMax = Number(m[1]) * (/^g/i.test(m[2] ?? '') ? 1024 : 1);
        }
      }
      if (options.pin !== undefined) {
        if (options.pin !== 'none' && !new RegExp(CPU_LIST_PATTERN).test(options.pin)) throw new UsageError(`invalid --pin '${options.pin}': a CPU list like 0, 0-1 or 1,3, or none`);
        body.cpuPinning = options.pin === 'none' ? null : options.pin;
      }
      if (Object.keys(body).length === 0) throw new UsageError('nothing to set: give --cpu-quota, --cpu-weight, --memory-max or --pin');
      if (options.config) body.config = true;
      const api = await client(options);
      const vm = await call(() => api.request<VmView>('PATCH', `/vms/${encodeURIComponent(name)}/resources`, body));
      out(`VM '${name}': ${vm.resources ? resourceLine(vm.resources) : 'saved in the definition'}`);
      if (vm.resources?.note) out(`VM '${name}': ${vm.resources.note}`);
    });

  cli.command('setmem').argument('<name>').argument('<size>', 'guest memory to leave the guest, e.g. 96M (MiB if bare); the balloon takes the rest')
    .description('set a running VM\'s memory through its balloon (virsh setmem; the definition needs "balloon": true)')
    .option(socketFlag, socketHelp)
    .action(async (name: string, size: string, options: SocketOption) => {
      const m = /^(\d+)(M|MiB|G|GiB)?$/i.exec(size);
      if (!m) throw new UsageError(`invalid size '${size}': e.g. 96M or 1G`);
      const mib = Number(m[1]) * (/^g/i.test(m[2] ?? '') ? 1024 : 1);
      const api = await client(options);
      const balloon = await call(() => api.request<BalloonView>('PUT', `/vms/${encodeURIComponent(name)}/balloon`, { memory: mib }));
      out(`VM '${name}': ${balloonLine(balloon)}`);
    });

  cli.command('shutdown').argument('<name>')
    .description('stop a VM gracefully (presses its ACPI power button); destroy it if it has not stopped after the timeout')
    .option('--timeout <seconds>', 'how long to wait before destroying it (default: the daemon\'s, 60)')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption & { timeout?: string }) => {
      const body: { timeout?: number } = {};
      if (options.timeout !== undefined) {
        const timeout = Number(options.timeout);
        if (!/^\d+(\.\d+)?$/.test(options.timeout) || timeout > 3600) throw new UsageError(`invalid --timeout '${options.timeout}': seconds, 0 to 3600`);
        body.timeout = timeout;
      }
      const api = await client(options);
      const result = await call(() => api.request<VmView & { graceful: boolean }>('POST', `/vms/${encodeURIComponent(name)}/shutdown`, body));
      out(result.graceful ? `VM '${name}' shut down` : `VM '${name}' did not stop within the timeout: destroyed`);
    });

  const snapshot = cli.command('snapshot').description('snapshots of a VM: create (of a running VM), list, restore (into a shut-off VM), delete');
  const snapName = (snap: string): string => {
    if (!SNAPSHOT_NAME_RE.test(snap)) throw new UsageError(`invalid snapshot name '${snap}': letters, digits, '_' and '-' (at most 63), starting with a letter or digit`);
    return encodeURIComponent(snap);
  };
  snapshot.command('create').argument('<name>').argument('[snap]', 'the snapshot\'s name (default: snap-YYYYMMDD-HHMMSS-mmm)')
    .description('snapshot a running VM: it is paused while its state and memory are written, then runs on')
    .option('--name <snap>', 'the snapshot\'s name (as the second argument)')
    .option('--disk-only', 'an external qcow2 snapshot of the disks only (running or shut-off VM; src/cli/backup-commands.ts)')
    .option(socketFlag, socketHelp)
    .action(async (name: string, snapArgument: string | undefined, options: SocketOption & { name?: string; diskOnly?: boolean }) => {
      if (snapArgument !== undefined && options.name !== undefined) throw new UsageError('give the snapshot\'s name once (argument or --name)');
      const snap = snapArgument ?? options.name;
      if (options.diskOnly) return (await import('./backup-commands.ts')).createDiskSnapshot(name, snap, options);
      if (snap !== undefined) snapName(snap);
      const body = snap === undefined ? {} : { name: snap };
      const api = await client(options);
      const created = await call(() => api.request<SnapshotView>('POST', `/vms/${encodeURIComponent(name)}/snapshots`, body));
      out(`VM '${name}': snapshot '${created.name}' created`);
    });
  snapshot.command('list').argument('<name>').description('a VM\'s snapshots, oldest first')
    .option('--json', 'print the API\'s JSON')
    .option('--disk-only', 'the external disk snapshots instead')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption & { json?: boolean; diskOnly?: boolean }) => {
      if (options.diskOnly) return (await import('./backup-commands.ts')).listDiskSnapshots(name, options);
      const api = await client(options);
      const snapshots = await call(() => api.request<SnapshotView[]>('GET', `/vms/${encodeURIComponent(name)}/snapshots`));
      if (options.json) {
        out(JSON.stringify(snapshots, null, 2));
        return;
      }
      const rows = [['NAME', 'CREATED', 'MEMORY', 'ON DISK']];
      for (const s of snapshots) {
        rows.push([s.name, s.createdAt, s.memory !== undefined ? `${s.memory}M` : '-', s.diskBytes !== undefined ? `${(s.diskBytes / 2 ** 20).toFixed(1)}M` : '-']);
      }
      for (const line of table(rows)) out(line);
    });
  snapshot.command('restore').argument('<name>').argument('<snap>')
    .description('start a shut-off VM from one of its snapshots')
    .option('--verify', 'check the snapshot\'s memory image against its SHA-256 first (reads all of it)')
    .option(socketFlag, socketHelp)
    .action(async (name: string, snap: string, options: SocketOption & { verify?: boolean }) => {
      const id = snapName(snap);
      const api = await client(options);
      await call(() => api.request('POST', `/vms/${encodeURIComponent(name)}/snapshots/${id}/restore`, options.verify ? { verify: true } : undefined));
      out(`VM '${name}' restored from snapshot '${snap}'`);
    });
  snapshot.command('delete').argument('<name>').argument('<snap>').description('delete a snapshot')
    .option('--disk-only', 'an external disk snapshot (refused while it has dependants)')
    .option(socketFlag, socketHelp)
    .action(async (name: string, snap: string, options: SocketOption & { diskOnly?: boolean }) => {
      if (options.diskOnly) return (await import('./backup-commands.ts')).deleteDiskSnapshot(name, snap, options);
      const id = snapName(snap);
      const api = await client(options);
      await call(() => api.request('DELETE', `/vms/${encodeURIComponent(name)}/snapshots/${id}`));
      out(`VM '${name}': snapshot '${snap}' deleted`);
    });

  cli.command('list').description('list the VMs')
    .option('--json', 'print the API\'s JSON')
    .option(socketFlag, socketHelp)
    .action(async (options: SocketOption & { json?: boolean }) => {
      const api = await client(options);
      const vms = await call(() => api.request<VmView[]>('GET', '/vms'));
      if (options.json) {
        out(JSON.stringify(vms, null, 2));
        return;
      }
      const rows = [['NAME', 'STATE', 'CPUS', 'MEMORY', 'PID']];
      for (const vm of vms) rows.push([vm.name, stateText(vm), String(vm.definition.cpus), `${vm.definition.memory}M`, vm.pid !== undefined ? String(vm.pid) : '-']);
      for (const line of table(rows)) out(line);
    });

  cli.command('top').description('live statistics of the host and each VM: CPU %, RSS, MIPS, exits/s by reason (port I/O, MMIO, halts), disk and network bytes/s')
    .option('--once', 'print one table (rates over one interval) and exit')
    .option('--interval <seconds>', 'seconds between samples (default 2; 1 with --once)')
    .option(socketFlag, socketHelp)
    .action(async (options: SocketOption & { once?: boolean; interval?: string }) => {
      const intervalS = options.interval === undefined ? (options.once ? 1 : 2) : Number(options.interval);
      if (options.interval !== undefined && (!/^\d+(\.\d+)?$/.test(options.interval) || intervalS < 0.1 || intervalS > 3600)) {
        throw new UsageError(`invalid --interval '${options.interval}': seconds, 0.1 to 3600`);
      }
      const api = await client(options);
      const { runTop } = await import('./top.ts');
      await call(() => runTop(api, { once: options.once === true, intervalS }));
    });

  cli.command('info').argument('<name>').description('a VM\'s definition and state')
    .option('--json', 'print the API\'s JSON')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption & { json?: boolean }) => {
      const api = await client(options);
      const vm = await call(() => api.request<VmView>('GET', `/vms/${encodeURIComponent(name)}`));
      // The balloon's figures come from the VM's VMM (only while it runs with a balloon).
      const balloon = vm.definition.balloon === true && vm.pid !== undefined
        ? await api.request<BalloonView>('GET', `/vms/${encodeURIComponent(name)}/balloon`).catch(() => undefined)
        : undefined;
      if (options.json) out(JSON.stringify(balloon ? { ...vm, balloon } : vm, null, 2));
      else {
        for (const line of infoLines(vm)) out(line);
        if (balloon) out(`${'Balloon:'.padEnd(16)}${balloonLine(balloon)}`);
      }
    });

  cli.command('console').argument('<name>')
    .description('attach to a running VM\'s serial console (Ctrl-A x detaches; several viewers may attach at once)')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption) => {
      const api = await client(options);
      const vm = await call(() => api.request<VmView>('GET', `/vms/${encodeURIComponent(name)}`));
      if (vm.consoleSocket === undefined) throw new Error(`VM '${name}' is ${vm.state}: no console to attach to [conflict]`);
      const { attachConsole } = await import('./daemon-console.ts');
      process.exitCode = await attachConsole(vm.consoleSocket, name);
    });

  cli.command('edit').argument('<name>')
    .description('edit a shut-off VM\'s definition in $EDITOR, in the format it was written in (a YAML definition: the text as written, comments included, unless it was changed another way since)')
    .option('--format <format>', 'edit it as json or yaml instead (saving it then keeps that format)')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption & { format?: string }) => {
      if (options.format !== undefined && options.format !== 'json' && options.format !== 'yaml') {
        throw new UsageError(`invalid --format '${options.format}': json or yaml`);
      }
      const api = await client(options);
      const query = options.format !== undefined ? `?format=${options.format}` : '';
      const current = await call(() => api.requestText('GET', `/vms/${encodeURIComponent(name)}/definition${query}`));
      const format = /yaml/i.test(current.contentType) ? 'yaml' : 'json';
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringzero-edit-'));
      const file = path.join(dir, `${name}.${format}`);
      const before = current.text;
      fs.writeFileSync(file, before, { mode: 0o600 });
      try {
        const editor = process.env.VISUAL || process.env.EDITOR || 'vi';
        // Through the shell, as git and virsh do, so EDITOR may carry arguments ("code --wait").
        const result = spawnSync('/bin/sh', ['-c', `${editor} "$1"`, 'editor', file], { stdio: 'inherit' });
        if (result.status !== 0) throw new UsageError(`the editor (${editor}) failed: the definition is unchanged`);
        const after = fs.readFileSync(file, 'utf8');
        if (after === before && options.format === undefined) {
          out(`VM '${name}': definition unchanged`);
          return;
        }
        await checkSyntax(after, format, 'the edited definition is not valid', ': unchanged');
        await call(() => api.requestText('PUT', `/vms/${encodeURIComponent(name)}`, { contentType: MEDIA_TYPE[format], text: after }));
        out(`VM '${name}' definition updated`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
}
