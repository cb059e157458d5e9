// The CLI verbs of disk snapshots and backups, through the daemon's API (src/api/backup-routes.ts):
//   ringzero snapshot create NAME [SNAP | --name SNAP] --disk-only   external qcow2 snapshot of the disks
//   ringzero snapshot list NAME --disk-only | snapshot delete NAME SNAP --disk-only | snapshot revert NAME SNAP
//   ringzero backup NAME [--to DIR]      consistent backup of a running VM (prints how long the guest was paused)
//   ringzero backup list [--vm NAME]     the backups
//   ringzero restore BACKUP [--as NEW [--nic tap=NAME[,mac=MAC]]...]   start the VM (or a new one, a clone: its own
//                                        TAP per card, a new MAC from its next boot) from the backup's instant
//   ringzero blockcommit NAME DISK [--delete]   write a disk's overlay into its backing image (virsh blockcommit)
// (`backup create NAME` also works, for a VM named "list".)

import path from 'node:path';
import type { Command } from 'commander';
import type { BlockCommitResult, DiskSnapshotView } from '../manager/disk-snapshots.ts';
import type { BackupView } from '../manager/backups.ts';
import type { VmView } from '../manager/manager.ts';
import { SNAPSHOT_NAME_RE, VM_NAME_RE } from '../manager/schema.ts';
import { UsageError, parseTapSpec } from './validate.ts';
import { type SocketOption, socketFlag, socketHelp, client, call, out, table } from './api-call.ts';


function vmName(name: string): string {
  if (!VM_NAME_RE.test(name)) throw new UsageError(`invalid VM name '${name}': letters, digits, '.', '_' and '-' (at most 63), starting with a letter or digit`);
  return encodeURIComponent(name);
}

function snapName(snap: string, what = 'snapshot name'): string {
  if (!SNAPSHOT_NAME_RE.test(snap)) throw new UsageError(`invalid ${what} '${snap}': letters, digits, '_' and '-' (at most 63), starting with a letter or digit`);
  return encodeURIComponent(snap);
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)}M`;

/** `snapshot create NAME [SNAP] --disk-only` (called from daemon-commands.ts). */
export async function createDiskSnapshot(name: string, snap: string | undefined, options: SocketOption): Promise<void> {
  const vm = vmName(name);
  if (snap !== undefined) snapName(snap);
  const api = await client(options);
  const created = await call(() => api.request<DiskSnapshotView>('POST', `/vms/${vm}/disk-snapshots`, snap === undefined ? {} : { name: snap }));
  out(`VM '${name}': disk snapshot '${created.name}' created${created.pausedMs !== undefined ? ` (guest paused ${created.pausedMs.toFixed(1)} ms)` : ''}`);
  for (const d of created.disks) out(`  vd${String.fromCharCode(97 + d.index)}: ${path.basename(d.image)} frozen, writes go to ${path.basename(d.overlay)}`);
}

/** `snapshot list NAME --disk-only`. */
export async function listDiskSnapshots(name: string, options: SocketOption & { json?: boolean }): Promise<void> {
  const vm = vmName(name);
  const api = await client(options);
  const snapshots = await call(() => api.request<DiskSnapshotView[]>('GET', `/vms/${vm}/disk-snapshots`));
  if (options.json) {
    out(JSON.stringify(snapshots, null, 2));
    return;
  }
  const rows = [['NAME', 'CREATED', 'LIVE', 'DISKS']];
  for (const s of snapshots) rows.push([s.name, s.createdAt, s.live ? `yes (${s.pausedMs ?? '?'} ms)` : 'no', s.disks.map((d) => path.basename(d.image)).join(',')]);
  for (const line of table(rows)) out(line);
}

/** `snapshot delete NAME SNAP --disk-only`. */
export async function deleteDiskSnapshot(name: string, snap: string, options: SocketOption): Promise<void> {
  const vm = vmName(name);
  const id = snapName(snap);
  const api = await client(options);
  await call(() => api.request('DELETE', `/vms/${vm}/disk-snapshots/${id}`));
  out(`VM '${name}': disk snapshot '${snap}' deleted`);
}

export function registerBackupCommands(cli: Command): void {
  cli.command('blockcommit').argument('<name>').argument('<disk>', 'vda, vdb, ... (or 0, 1, ...)')
    .description('write what a disk\'s qcow2 overlay holds into its backing image (or, with --base, into an image deeper in its chain, the images between included), which becomes the disk (virsh blockcommit --active --pivot): the chain gets shorter; a running VM is paused only for what it wrote during the copy')
    .option('--base <image>', 'the image of the disk\'s backing chain to commit into: a pool volume\'s name or an absolute path (default: the overlay\'s backing file)')
    .option('--delete', 'delete the committed files afterwards (the overlay, and the images between) when nothing else needs them')
    .option(socketFlag, socketHelp)
    .action(async (name: string, disk: string, options: SocketOption & { delete?: boolean; base?: string }) => {
      const vm = vmName(name);
      if (!/^(vd[a-z]|\d{1,2})$/.test(disk)) throw new UsageError(`invalid disk '${disk}': vda, vdb, ... or its number`);
      if (options.base !== undefined && (options.base === '' || (options.base.includes('/') && !path.isAbsolute(options.base)))) {
        throw new UsageError(`invalid --base '${options.base}': a pool volume's name or an absolute path`);
      }
      const api = await client(options);
      const body = { ...(options.delete ? { delete: true } : {}), ...(options.base !== undefined ? { base: options.base } : {}) };
      const r = await call(() => api.request<BlockCommitResult>('POST', `/vms/${vm}/disks/${disk}/commit`, body));
      const what = [r.committed, ...r.intermediates].map((f) => path.basename(f)).join(', ');
      const deleted = r.removedFiles.map((f) => path.basename(f)).join(', ');
      out(`VM '${name}': ${r.disk} committed ${what} into ${path.basename(r.into)} (${mib(r.dataBytes)} written, ${mib(r.zeroBytes)} zeroed)`
        + `${r.pausedMs !== undefined ? `, guest paused ${r.pausedMs.toFixed(1)} ms${r.pausedBytes ? ` for the last ${mib(r.pausedBytes)}` : ''}` : ''}; the disk is now ${path.basename(r.into)}${deleted ? `, ${deleted} deleted` : ''}`);
      if (r.droppedSnapshots.length > 0) {
        const frozen = [...r.intermediates, r.into].map((f) => path.basename(f)).join(' or ');
        out(`VM '${name}': disk snapshot(s) ${r.droppedSnapshots.join(', ')} dropped (they froze ${frozen})`);
      }
    });

  const snapshot = cli.commands.find((c) => c.name() === 'snapshot');
  snapshot?.command('revert').argument('<name>').argument('<snap>')
    .description('make a shut-off VM\'s disks fresh overlays of a disk snapshot\'s frozen images (the current disk state is discarded)')
    .option(socketFlag, socketHelp)
    .action(async (name: string, snap: string, options: SocketOption) => {
      const vm = vmName(name);
      const id = snapName(snap);
      const api = await client(options);
      const reverted = await call(() => api.request<DiskSnapshotView>('POST', `/vms/${vm}/disk-snapshots/${id}/revert`));
      out(`VM '${name}': disks reverted to disk snapshot '${snap}' (${(reverted.reverts ?? []).slice(-reverted.disks.length).map((f) => path.basename(f)).join(', ')})`);
    });

  cli.command('backup').argument('<name>', 'the running VM to back up; or `list`; or `create NAME`').argument('[vm]')
    .description('consistent backup of a running VM: memory, devices and disks at one instant (the guest pauses only for that instant); `backup list` lists backups')
    .option('--to <dir>', 'put the backup in DIR/ID (default: the state directory\'s backups/)')
    .option('--vm <name>', 'with list: only this VM\'s backups')
    .option('--json', 'print the API\'s JSON')
    .option(socketFlag, socketHelp)
    .action(async (first: string, second: string | undefined, options: SocketOption & { to?: string; vm?: string; json?: boolean }) => {
      const api = await client(options);
      if (first === 'list' && second === undefined) {
        const backups = await call(() => api.request<BackupView[]>('GET', options.vm !== undefined ? `/vms/${vmName(options.vm)}/backups` : '/backups'));
        if (options.json) {
          out(JSON.stringify(backups, null, 2));
          return;
        }
        const rows = [['ID', 'VM', 'CREATED', 'PAUSED', 'SIZE', 'PATH']];
        for (const b of backups) rows.push([b.id, b.vm, b.createdAt, `${b.pausedMs.toFixed(1)} ms`, mib(b.bytes), b.path]);
        for (const line of table(rows)) out(line);
        return;
      }
      const name = first === 'create' && second !== undefined ? second : first;
      if (second !== undefined && first !== 'create') throw new UsageError(`backup takes one VM name (got '${first}' and '${second}')`);
      const vm = vmName(name);
      if (options.to !== undefined && !path.isAbsolute(path.resolve(options.to))) throw new UsageError(`--to '${options.to}' is not a directory path`);
      const body = options.to !== undefined ? { to: path.resolve(options.to) } : {};
      const backup = await call(() => api.request<BackupView>('POST', `/vms/${vm}/backups`, body));
      if (options.json) {
        out(JSON.stringify(backup, null, 2));
        return;
      }
      out(`VM '${name}': backup '${backup.id}' in ${backup.path}`);
      out(`  guest paused ${backup.pausedMs.toFixed(1)} ms (memory, devices and disks at that instant); ${mib(backup.bytes)} on disk`);
      for (const d of backup.disks) out(`  vd${String.fromCharCode(97 + d.index)}: ${d.file} (${d.format}, ${mib(d.virtualSize)}, sha256 ${d.sha256.slice(0, 16)}...)`);
    });

  cli.command('restore').argument('<backup>', 'a backup id (ringzero backup list)')
    .description('start the backed-up VM from the backup\'s instant (it must be shut off), or with --as a new VM: a clone with its own copies of the disks. '
      + 'A clone of a VM with network cards needs one --nic per card: its own TAP, and a new MAC in its definition; the running clone\'s guest read its MAC '
      + 'when its driver started (virtio 1.2 §5.1.4) and keeps sending with the original\'s until it is next booted from its definition (shutdown, start): '
      + 'keep its TAP on another bridge or network namespace than the original\'s until then')
    .option('--as <name>', 'restore as a new VM of this name')
    .option('--nic <tap=NAME[,mac=XX:XX:XX:XX:XX:XX]>', 'with --as: the clone\'s TAP (and MAC; default: derived from the new name) for the backup\'s next card (repeatable, in the order of its cards)',
      (value: string, previous: string[] = []) => [...previous, value])
    .option(socketFlag, socketHelp)
    .action(async (id: string, options: SocketOption & { as?: string; nic?: string[] }) => {
      const backup = snapName(id, 'backup id');
      if (options.as !== undefined) vmName(options.as);
      if (options.nic !== undefined && options.as === undefined) throw new UsageError('--nic names a clone\'s TAPs: give it with --as NAME');
      const nics = options.nic?.map((spec) => parseTapSpec(spec, '--nic'));
      const api = await client(options);
      const body = { ...(options.as !== undefined ? { as: options.as } : {}), ...(nics !== undefined ? { nics } : {}) };
      const vm = await call(() => api.request<VmView>('POST', `/backups/${backup}/restore`, body));
      out(`VM '${vm.name}' restored from backup '${id}' (running, pid ${vm.pid ?? '?'})`);
      for (const [i, nic] of (nics ?? []).entries()) {
        const saved = vm.definition.nics?.[i];
        out(`  eth${i}: TAP ${saved?.tap ?? nic.tap}, MAC ${saved?.mac ?? '?'} from its next boot (the running guest keeps the backed-up guest's MAC until then)`);
      }
    });
}
