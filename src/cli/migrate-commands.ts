// `ringzero migrate NAME --to HOST:PORT`: live migration of a daemon's VM to another daemon (its
// `--migration-listen` address), through the API (src/api/migration-routes.ts). The command starts the migration,
// follows it (GET /vms/NAME/migration; `--progress` prints each change on stderr) and ends when it is over: status 0
// once the VM runs at the destination, 1 when it failed (the VM then runs on here).
// Ctrl-C while it waits cancels the migration (as `ringzero migrate-abort NAME`, DELETE /vms/NAME/migration).
// `ringzero migrate-info NAME` (virsh domjobinfo) prints the VM's latest migration; `ringzero migrate-resolve NAME
// [--resume|--abandon] [--force]` settles one left in 'switch-over-unknown' (POST /vms/NAME/migration/resolve).
// (`ringzero migrate --control-socket S --to H:P` is the VMM-to-VMM form, src/cli/main.ts.)

import type { Command } from 'commander';
import type { MigrationView } from '../manager/migration.ts';
import { VM_NAME_RE } from '../manager/schema.ts';
import { UsageError } from './validate.ts';
import { type SocketOption, client, call, out } from './api-call.ts';

export interface DaemonMigrateOptions extends SocketOption {
  to: string;
  downtimeMs: string;
  maxIterations: string;
  bandwidth?: string;
  linkTimeoutMs?: string;
  progress?: boolean;
  verify?: boolean;
  json?: boolean;
  copyStorageAll?: boolean;
  diskTarget?: string[];
  /** --hot-blocks N (a string), --no-hot-blocks (false). */
  hotBlocks?: string | boolean;
  /** --resume-boost NICE (a string). */
  resumeBoost?: string;
}

/** The most --hot-blocks takes (src/cpu/soft/hot-list.ts MAX_LISTED_LIMIT, which the VMM checks too). */
const MAX_HOT_BLOCKS = 65536;

/** `--hot-blocks N` / `--no-hot-blocks` as the request's hotBlocks (nothing when neither is given: the VMM's default). */
export function hotBlocksOption(value: string | boolean | undefined): { hotBlocks?: number } {
  if (value === undefined || value === true) return {};
  if (value === false) return { hotBlocks: 0 };
  return { hotBlocks: int(value, '--hot-blocks', 0, MAX_HOT_BLOCKS, ' (0: no hot-block list)') };
}

/**
 * `--resume-boost NICE` (-20 to 0; 0: none) as a request's or definition's resumeBoost (nothing when not given). Also
 * `run --resume-boost`. (-20..0: src/vmm/resume-priority.ts MIN_RESUME_BOOST, MAX_RESUME_BOOST, which the VMM and the
 * API check too.)
 */
export function resumeBoostOption(value: string | undefined): { resumeBoost?: number } {
  if (value === undefined) return {};
  if (!/^(0|-?[1-9]\d*)$/.test(value) || Number(value) < -20 || Number(value) > 0) {
    throw new UsageError(`--resume-boost '${value}' must be an integer from -20 to 0 (a nice value; 0: no boost)`);
  }
  return { resumeBoost: Number(value) };
}

/** `--disk-target vdX=TARGET` (repeatable) as the request's diskTargets. */
export function diskTargetsOf(values: string[] | undefined, copyStorage: boolean | undefined): Record<string, string> | undefined {
  if (values === undefined) return undefined;
  if (!copyStorage) throw new UsageError('--disk-target names where a disk is copied: it needs --copy-storage-all');
  const out: Record<string, string> = {};
  for (const value of values) {
    const m = /^(vd[a-z])=(.+)$/.exec(value);
    if (!m) throw new UsageError(`--disk-target '${value}' is not vdX=PATH or vdX=VOLUME (e.g. vda=/srv/vm/web.qcow2)`);
    if (out[m[1]] !== undefined) throw new UsageError(`--disk-target names ${m[1]} twice`);
    out[m[1]] = m[2];
  }
  return out;
}

function int(text: string, flag: string, min: number, max: number, note = ''): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new UsageError(`${flag} '${text}' must be an integer from ${min} to ${max}${note}`);
  return n;
}

const mib = (bytes: number | undefined) => `${((bytes ?? 0) / 2 ** 20).toFixed(1)} MiB`;

/** The hot-block list: its size and what it cost the source, and what the destination translated of it. */
function hotText(m: MigrationView): string {
  return `hot blocks ${m.hotBlocks} (${((m.hotBytes ?? 0) / 1024).toFixed(0)} KiB, ${m.hotPages ?? 0} pages first, ${m.hotMs ?? 0} ms to list)`
    + (m.hotTranslated !== undefined ? `, ${m.hotTranslated} translated there` : '');
}

/** One progress line: what changed since the last. */
export function progressLine(m: MigrationView): string {
  const parts = [`${m.phase}`];
  if (m.iteration !== undefined && (m.phase === 'precopy' || m.phase === 'stop-and-copy')) parts.push(`iteration ${m.iteration}`);
  if (m.bytesSent !== undefined) parts.push(`${mib(m.bytesSent)} sent`);
  if (m.diskTotal !== undefined && m.phase === 'precopy') {
    parts.push(`disks ${mib(m.diskTransferred)} of ${mib(m.diskTotal)}${m.diskDirtyBytes ? `, ${mib(m.diskDirtyBytes)} dirty (${mib(m.diskDirtyRate)}/s)` : ''}`);
  }
  if (m.dirtyPages !== undefined && m.phase === 'precopy') parts.push(`${m.dirtyPages} pages dirty (${mib(m.dirtyRate)}/s)`);
  if (m.bandwidth) parts.push(`${mib(m.bandwidth)}/s`);
  if (m.hotBlocks !== undefined && m.phase === 'precopy') parts.push(hotText(m));
  if (m.expectedDowntimeMs !== undefined && m.phase === 'precopy') parts.push(`expected downtime ${m.expectedDowntimeMs.toFixed(0)} ms (limit ${m.downtimeLimitMs} ms)`);
  parts.push(`${(m.totalMs / 1000).toFixed(1)} s`);
  return parts.join(', ');
}

interface ResolveOptions extends SocketOption {
  resume?: boolean;
  abandon?: boolean;
  force?: boolean;
  json?: boolean;
}

/** The request body of `migrate-resolve`'s flags. */
export function resolveBody(options: ResolveOptions): { action: 'ask' | 'resume' | 'abandon'; force?: boolean } {
  if (options.resume && options.abandon) throw new UsageError('--resume and --abandon exclude each other');
  if (options.force && !options.resume && !options.abandon) throw new UsageError('--force needs --resume or --abandon: it says which way to settle when the destination cannot be asked');
  const action = options.resume ? 'resume' : options.abandon ? 'abandon' : 'ask';
  return { action, ...(options.force ? { force: true } : {}) };
}

/** `migrate-info`'s lines: the migration's phase and progress, one field a line. */
export function migrationLines(m: MigrationView): string[] {
  const rows: Array<[string, string | undefined]> = [
    ['Migration', m.id], ['Direction', m.direction], ['Peer', m.peer], ['Phase', m.phase], ['Started', m.startedAt], ['Ended', m.endedAt],
    ['Time', `${(m.totalMs / 1000).toFixed(1)} s`], ['Iteration', m.iteration?.toString()], ['Sent', m.bytesSent !== undefined ? mib(m.bytesSent) : undefined],
    ['Received', m.bytesReceived !== undefined ? mib(m.bytesReceived) : undefined], ['Dirty pages', m.dirtyPages?.toString()],
    ['Dirty rate', m.dirtyRate !== undefined ? `${mib(m.dirtyRate)}/s` : undefined],
    ['Disks copied', m.diskTotal !== undefined ? `${mib(m.diskTransferred)} of ${mib(m.diskTotal)} (${mib(m.diskBytesSent)} sent)` : undefined],
    ['Disk dirty', m.diskDirtyBytes !== undefined ? `${mib(m.diskDirtyBytes)} (${mib(m.diskDirtyRate)}/s)` : undefined],
    ['Disk copies', m.diskTargets?.join(', ')], ['Hot blocks', m.hotBlocks !== undefined ? hotText(m).replace(/^hot blocks /, '') : undefined], ['Expected downtime', m.expectedDowntimeMs !== undefined ? `${m.expectedDowntimeMs.toFixed(0)} ms` : undefined],
    ['Downtime limit', m.downtimeLimitMs !== undefined ? `${m.downtimeLimitMs} ms` : undefined], ['Downtime', m.downtimeMs !== undefined ? `${m.downtimeMs} ms` : undefined],
    ['Source definition', m.sourceDefinition], ['Error', m.error],
  ];
  return rows.filter((r): r is [string, string] => r[1] !== undefined).map(([k, v]) => `${`${k}:`.padEnd(19)}${v}`);
}

/**
 * `ringzero migrate-abort NAME` (virsh domjobabort): cancel the VM's outgoing migration; `migrate-info NAME` (virsh
 * domjobinfo); `migrate-resolve NAME` (a switch-over left unknown).
 */
export function registerMigrateCommands(cli: Command): void {
  cli.command('migrate-info').argument('<name>', 'the daemon\'s VM')
    .description('a VM\'s latest live migration, either way: phase, progress, downtime, error (virsh domjobinfo)')
    .option('--socket <path>', 'the daemon\'s API socket (default: $RINGZERO_SOCKET, or the default state directory\'s)')
    .option('--json', 'print it as JSON')
    .action(async (name: string, options: SocketOption & { json?: boolean }) => {
      if (!VM_NAME_RE.test(name)) throw new UsageError(`invalid VM name '${name}'`);
      const api = await client(options);
      const m = await call(() => api.request<MigrationView>('GET', `/vms/${encodeURIComponent(name)}/migration`));
      if (options.json) out(JSON.stringify(m, null, 2));
      else for (const line of migrationLines(m)) out(line);
    });
  cli.command('migrate-resolve').argument('<name>', 'the daemon\'s VM')
    .description('settle a migration left in switch-over-unknown (paused here, maybe running at the destination): ask the destination daemon '
      + 'again, then resume the VM here (it is not there) or end it here (it runs there)')
    .option('--resume', 'the VM should run here: done only if the destination says it does not have it (or, with --force, cannot be asked)')
    .option('--abandon', 'the VM runs at the destination: end it here, only if the destination says so (or, with --force, cannot be asked)')
    .option('--force', 'with --resume or --abandon: act when the destination daemon cannot be reached (never against its answer)')
    .option('--socket <path>', 'the daemon\'s API socket (default: $RINGZERO_SOCKET, or the default state directory\'s)')
    .option('--json', 'print the settled migration as JSON')
    .action(async (name: string, options: ResolveOptions) => {
      if (!VM_NAME_RE.test(name)) throw new UsageError(`invalid VM name '${name}'`);
      const body = resolveBody(options);
      const api = await client(options);
      const m = await call(() => api.request<MigrationView>('POST', `/vms/${encodeURIComponent(name)}/migration/resolve`, body));
      if (options.json) out(JSON.stringify(m, null, 2));
      else if (m.phase === 'completed') out(`VM '${name}' runs at ${m.peer}: ended here${m.sourceDefinition === 'kept' ? ' (its definition stays, shut off: it has snapshots)' : ', definition removed'}`);
      else out(`VM '${name}' resumed here: ${m.error ?? ''}`);
    });

  cli.command('migrate-abort').argument('<name>', 'the daemon\'s VM')
    .description('cancel a VM\'s live migration before its switch-over: the destination forgets it, the guest runs on here')
    .option('--socket <path>', 'the daemon\'s API socket (default: $RINGZERO_SOCKET, or the default state directory\'s)')
    .action(async (name: string, options: SocketOption) => {
      if (!VM_NAME_RE.test(name)) throw new UsageError(`invalid VM name '${name}'`);
      const api = await client(options);
      const m = await call(() => api.request<MigrationView>('DELETE', `/vms/${encodeURIComponent(name)}/migration`));
      out(`VM '${name}': migration to ${m.peer} ${m.phase}${m.error ? ` (${m.error})` : ''}`);
    });
}

export async function migrateThroughDaemon(name: string, options: DaemonMigrateOptions): Promise<void> {
  if (!VM_NAME_RE.test(name)) throw new UsageError(`invalid VM name '${name}'`);
  if (!/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(options.to) || !(Number(options.to.slice(options.to.lastIndexOf(':') + 1)) >= 1 && Number(options.to.slice(options.to.lastIndexOf(':') + 1)) <= 65535)) {
    throw new UsageError(`--to '${options.to}' is not HOST:PORT (the destination daemon's --migration-listen address)`);
  }
  const body = {
    to: options.to,
    downtimeMs: int(options.downtimeMs, '--downtime-ms', 1, 600_000),
    maxIterations: int(options.maxIterations, '--max-iterations', 1, 10_000),
    ...(options.bandwidth !== undefined ? { bandwidth: int(options.bandwidth, '--bandwidth', 1, 2 ** 40) } : {}),
    ...(options.linkTimeoutMs !== undefined ? { linkTimeoutMs: int(options.linkTimeoutMs, '--link-timeout-ms', 500, 600_000) } : {}),
    ...(options.verify ? { verify: true } : {}),
    ...(options.copyStorageAll ? { copyStorage: true } : {}),
    ...hotBlocksOption(options.hotBlocks),
    ...resumeBoostOption(options.resumeBoost),
  };
  const targets = diskTargetsOf(options.diskTarget, options.copyStorageAll);
  if (targets) Object.assign(body, { diskTargets: targets });
  const api = await client(options);
  const vm = encodeURIComponent(name);
  const started = await call(() => api.request<MigrationView>('POST', `/vms/${vm}/migrate`, body));
  let last = '';
  let m = started;
  // Ctrl-C: cancel it (the guest runs on here), then report as usual.
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('cancelling the migration (Ctrl-C again to leave it running)\n');
    api.request('DELETE', `/vms/${vm}/migration`).catch((error: Error) => process.stderr.write(`cannot cancel: ${error.message}\n`));
  };
  process.on('SIGINT', onSigint);
  for (;;) {
    if (options.progress) {
      const line = progressLine(m).replace(/, [\d.]+ s$/, '');
      if (line !== last) process.stderr.write(`${progressLine(m)}\n`);
      last = line;
    }
    if (m.phase === 'completed' || m.phase === 'failed' || (m.phase === 'switch-over-unknown' && m.endedAt !== undefined)) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
    const next = await call(() => api.request<MigrationView>('GET', `/vms/${vm}/migration`));
    // The VM's latest migration is this one unless another began meanwhile (then this one is over).
    if (next.id !== started.id) throw new Error(`VM '${name}': another migration (${next.id}) began meanwhile`);
    m = next;
  }
  process.off('SIGINT', onSigint);
  if (options.json) out(JSON.stringify(m, null, 2));
  // Paused here, maybe running there: src/manager/migration.ts settleSwitchover could not find out.
  if (m.phase === 'switch-over-unknown') throw new Error(`VM '${name}': migration to ${options.to}: ${m.error ?? 'switch-over unknown'}`);
  if (m.phase === 'failed') throw new Error(`VM '${name}': migration to ${options.to} failed, the VM runs on here: ${m.error ?? 'no reason given'}`);
  if (!options.json) {
    out(`VM '${name}' migrated to ${options.to}: downtime ${m.downtimeMs ?? '?'} ms, ${(m.totalMs / 1000).toFixed(1)} s in all, ${mib(m.bytesSent)} sent in ${(m.iteration ?? 0) + 1} pass(es)`
      + `${m.sourceDefinition === 'kept' ? ' (its definition stays here, shut off: it has snapshots)' : ''}`);
  }
}
