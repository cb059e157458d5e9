// The storage verbs of the CLI, through the daemon's API: `vol create|list|info|delete` (virsh's vol-*), `template
// create|list|info|delete`, and `clone --from T --count N [--name-prefix P] [--full]`.

import fs from 'node:fs';
import type { Command } from 'commander';
import type { VolumeView } from '../manager/volumes.ts';
import type { CloneResult, TemplateView } from '../manager/templates.ts';
import { UsageError } from './validate.ts';
import { type SocketOption, socketFlag, socketHelp, client, call, out, table } from './api-call.ts';

/** A size like 10G, 512M, 1T, 4096 (bytes), 1.5G: a whole number of 512-byte sectors. */
export function parseVolumeSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt])?(?:i?b)?\s*$/i.exec(text);
  const shift = match?.[2] ? ({ k: 10, m: 20, g: 30, t: 40 } as Record<string, number>)[match[2].toLowerCase()] : 0;
  const bytes = match ? Number(match[1]) * 2 ** shift : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 512 || bytes % 512 !== 0) {
    throw new UsageError(`invalid size '${text}': e.g. 10G, 512M, or bytes (a whole number of 512-byte sectors)`);
  }
  return bytes;
}

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

const id = encodeURIComponent;

export function registerStorageCommands(cli: Command): void {
  const vol = cli.command('vol').description('volumes of the storage pool (raw and qcow2 images in the state directory)');
  vol.command('create').argument('<name>', 'the volume\'s file name, e.g. data.qcow2')
    .description('create a volume: --size for an empty one, --backing for a qcow2 overlay of another volume')
    .option('--size <size>', 'virtual size, e.g. 10G (default with --backing: the backing volume\'s)')
    .option('--format <format>', 'raw or qcow2', 'qcow2')
    .option('--backing <volume>', 'make a qcow2 overlay (copy-on-write) of this volume')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption & { size?: string; format: string; backing?: string }) => {
      if (options.format !== 'raw' && options.format !== 'qcow2') throw new UsageError(`invalid --format '${options.format}': raw or qcow2`);
      if (options.size === undefined && options.backing === undefined) throw new UsageError('give --size (or --backing)');
      const body = { name, format: options.format, ...(options.size !== undefined ? { size: parseVolumeSize(options.size) } : {}), ...(options.backing !== undefined ? { backing: options.backing } : {}) };
      const api = await client(options);
      const created = await call(() => api.request<VolumeView>('POST', '/volumes', body));
      out(`volume '${created.name}' created: ${created.format}, ${human(created.virtualSize)}${created.backingFile ? `, backing ${created.backingFile}` : ''}`);
    });
  vol.command('list').description('the volumes')
    .option('--json', 'print the API\'s JSON')
    .option(socketFlag, socketHelp)
    .action(async (options: SocketOption & { json?: boolean }) => {
      const api = await client(options);
      const volumes = await call(() => api.request<VolumeView[]>('GET', '/volumes'));
      if (options.json) return out(JSON.stringify(volumes, null, 2));
      const rows = [['NAME', 'FORMAT', 'SIZE', 'ON DISK', 'BACKING', 'USED BY']];
      for (const v of volumes) rows.push([v.name, v.format, human(v.virtualSize), human(v.actualSize), v.backingFile ?? '-', v.usedBy.join(',') || '-']);
      for (const line of table(rows)) out(line);
    });
  vol.command('info').argument('<name>').description('a volume\'s format, sizes, backing file and users')
    .option('--json', 'print the API\'s JSON')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption & { json?: boolean }) => {
      const api = await client(options);
      const v = await call(() => api.request<VolumeView>('GET', `/volumes/${id(name)}`));
      if (options.json) return out(JSON.stringify(v, null, 2));
      const lines: [string, string][] = [['Name', v.name], ['Path', v.path], ['Format', v.format], ['Virtual size', `${human(v.virtualSize)} (${v.virtualSize} bytes)`],
        ['On disk', human(v.actualSize)]];
      if (v.clusterSize) lines.push(['Cluster size', String(v.clusterSize)]);
      if (v.backingFile) lines.push(['Backing file', `${v.backingFile}${v.backingFormat ? ` (${v.backingFormat})` : ''}`]);
      lines.push(['Used by', v.usedBy.join(', ') || '-'], ['Overlays', v.backs.join(', ') || '-']);
      for (const [key, value] of lines) out(`${`${key}:`.padEnd(14)}${value}`);
    });
  vol.command('delete').argument('<name>').description('delete a volume no running VM uses and no overlay depends on')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption) => {
      const api = await client(options);
      await call(() => api.request('DELETE', `/volumes/${id(name)}`));
      out(`volume '${name}' deleted`);
    });

  const template = cli.command('template').description('templates: a shut-off VM\'s definition and disks, to clone from');
  template.command('create').argument('<name>')
    .description('make a template from a shut-off VM (its disks are copied, flattened and made read-only)')
    .requiredOption('--from <vm>', 'the VM (shut off)')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption & { from: string }) => {
      const api = await client(options);
      const t = await call(() => api.request<TemplateView>('POST', '/templates', { name, from: options.from }));
      out(`template '${t.name}' created from VM '${t.from}' (${t.disks.length} disk${t.disks.length === 1 ? '' : 's'})`);
    });
  template.command('list').description('the templates')
    .option('--json', 'print the API\'s JSON')
    .option(socketFlag, socketHelp)
    .action(async (options: SocketOption & { json?: boolean }) => {
      const api = await client(options);
      const templates = await call(() => api.request<TemplateView[]>('GET', '/templates'));
      if (options.json) return out(JSON.stringify(templates, null, 2));
      const rows = [['NAME', 'FROM', 'CPUS', 'MEMORY', 'DISKS', 'LINKED CLONES', 'CREATED']];
      for (const t of templates) {
        rows.push([t.name, t.from, String(t.definition.cpus), `${t.definition.memory}M`, t.disks.map((d) => human(d.virtualSize)).join(',') || '-', String(t.linkedVolumes.length), t.createdAt]);
      }
      for (const line of table(rows)) out(line);
    });
  template.command('info').argument('<name>').description('a template')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption) => {
      const api = await client(options);
      out(JSON.stringify(await call(() => api.request<TemplateView>('GET', `/templates/${id(name)}`)), null, 2));
    });
  template.command('delete').argument('<name>').description('delete a template no linked clone depends on')
    .option(socketFlag, socketHelp)
    .action(async (name: string, options: SocketOption) => {
      const api = await client(options);
      await call(() => api.request('DELETE', `/templates/${id(name)}`));
      out(`template '${name}' deleted`);
    });

  cli.command('clone')
    .description('define VMs from a template: linked clones (qcow2 overlays of its disks) or full copies, each with its own hostname and MAC')
    .requiredOption('--from <template>', 'the template')
    .option('--count <n>', 'how many VMs (1 to 100)', '1')
    .option('--name-prefix <prefix>', 'name them PREFIX-1, PREFIX-2, ... (the next free numbers; default: the template\'s name)')
    .option('--full', 'full copies of the disks (virt-clone style) instead of linked clones')
    .option('--no-seed', 'no NoCloud seed disk (the identity is then only on the kernel command line)')
    .option('--ssh-key <file>', 'a public key file for the seed (repeatable)', (value: string, previous: string[] | undefined) => [...(previous ?? []), value])
    .option('--user-data <file>', 'the seed\'s user-data (a #cloud-config or a #! start-up script)')
    .option(socketFlag, socketHelp)
    .action(async (options: SocketOption & { from: string; count: string; namePrefix?: string; full?: boolean; seed: boolean; sshKey?: string[]; userData?: string }) => {
      const count = Number(options.count);
      if (!/^\d+$/.test(options.count) || count < 1 || count > 100) throw new UsageError(`invalid --count '${options.count}': 1 to 100`);
      const read = (file: string, what: string): string => {
        try {
          return fs.readFileSync(file, 'utf8');
        } catch (error) {
          throw new UsageError(`cannot read ${what} '${file}' (${(error as NodeJS.ErrnoException).code})`);
        }
      };
      const sshKeys = (options.sshKey ?? []).flatMap((file) => read(file, 'the key file').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')));
      const body = {
        count, full: options.full === true, seed: options.seed, sshKeys,
        ...(options.namePrefix !== undefined ? { namePrefix: options.namePrefix } : {}),
        ...(options.userData !== undefined ? { userData: read(options.userData, 'the user-data file') } : {}),
      };
      const api = await client(options);
      const clones = await call(() => api.request<CloneResult[]>('POST', `/templates/${id(options.from)}/clone`, body));
      for (const c of clones) out(`VM '${c.name}' defined (${options.full ? 'full copy' : 'linked clone'}): hostname ${c.hostname}, MAC ${c.mac}`);
    });
}
