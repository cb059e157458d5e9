// `ringzero migrate NAME --to HOST:PORT`: live migration of a daemon's VM to another daemon (its
// `--migration-listen` address), through the API (src/api/migration-routes.ts). The command starts the migration,
// follows it (GET /vms/NAME/migration; `--progress` prints each change on stderr) and ends when it is over: status 0
// once the VM runs at the destination, 1 when it failed (the VM then runs on here).
// Ctrl-C while it waits cancels the migration (as `ringzero migrate-abort NAME`, DELETE /vms/NAME/migration).
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
}

function int(text: string, flag: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new UsageError(`${flag} '${text}' must be an integer from ${min} to ${max}`);
  return n;
}

const mib = (bytes: number | undefined) => `${((bytes ?? 0) / 2 ** 20).toFixed(1)} MiB`;

/** One progress line: what changed since the last. */
export function progressLine(m: MigrationView): string {
  const parts = [`${m.phase}`];
  if (m.iteration !== undefined && (m.phase === 'precopy' || m.phase === 'stop-and-copy')) parts.push(`iteration ${m.iteration}`);
  if (m.bytesSent !== undefined) parts.push(`${mib(m.bytesSent)} sent`);
  if (m.dirtyPages !== undefined && m.phase === 'precopy') parts.push(`${m.dirtyPages} pages dirty (${mib(m.dirtyRate)}/s)`);
  if (m.bandwidth) parts.push(`${mib(m.bandwidth)}/s`);
  if (m.expectedDowntimeMs !== undefined && m.phase === 'precopy') parts.push(`expected downtime ${m.expectedDowntimeMs.toFixed(0)} ms (limit ${m.downtimeLimitMs} ms)`);
  parts.push(`${(m.totalMs / 1000).toFixed(1)} s`);
  return parts.join(', ');
}

/** `ringzero migrate-abort NAME` (virsh domjobabort): cancel the VM's outgoing migration. */
export function registerMigrateCommands(cli: Command): void {
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
  };
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
