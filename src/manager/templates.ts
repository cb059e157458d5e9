// Templates and fast provisioning. `template create T --from VM` copies a shut-off VM's definition and disks into
// DIR/templates/T (the disks flattened to standalone images, made read-only); `clone --from T --count N` defines N
// VMs whose disks are either qcow2 overlays over the template's disks (linked clones: created in milliseconds, only
// what a clone writes takes space) or full copies of them (--full, as virt-clone does). Each clone gets its own
// identity: a hostname and a MAC address, on the kernel command line (ringzero.hostname=, ringzero.mac=) and in a
// NoCloud seed (a small ext4 disk labelled `cidata` holding meta-data, user-data and network-config, attached
// read-only as the clone's last disk), which cloud-init or a few lines of shell can read.
//
// Crash consistency: a template is built in a temporary directory and renamed into place. A clone first writes a
// journal (templates/.clone-PID-N.json) naming every VM and volume it will make; each VM's volumes are created
// (atomically) before its definition is written, and the journal is removed at the end. A daemon that starts and
// finds a journal removes the volumes of the journal's VMs that were not defined: every clone is then whole or absent.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { detectFormat, type ImageFormat } from '../storage/backend.ts';
import { copyImage, createQcow2, imageInfo } from '../storage/qcow2.ts';
import { ManagerError, type DiskDefinition, type NicDefinition, type VmDefinition } from './schema.ts';
import { cloneTapName, randomMac } from './nics.ts';
import { fsyncDir, removeFileDurable, writeFileAtomic } from './store.ts';
import { storageToManagerError, tempSibling, VolumePool, type VmLookup } from './volumes.ts';

/** Template names are directory names: no dots, so `.T.tmp-*` and `.T.deleting-*` can never be taken for one. */
export const TEMPLATE_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$';
export const TEMPLATE_NAME_RE = new RegExp(TEMPLATE_NAME_PATTERN);
/** A clone name prefix; clones are PREFIX-1, PREFIX-2, ... (VM names, so at most 63 characters in all). */
export const CLONE_PREFIX_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,50}$';
export const MAX_CLONES = 100;
/** The serial of the seed disk: /dev/disk/by-id/virtio-cidata; template create leaves such disks out. */
export const SEED_SERIAL = 'cidata';
const SEED_BYTES = 1 << 20;

export const createTemplateSchema = {
  $id: 'TemplateCreate',
  type: 'object',
  additionalProperties: false,
  required: ['name', 'from'],
  properties: {
    name: { type: 'string', pattern: TEMPLATE_NAME_PATTERN },
    from: { type: 'string', minLength: 1, maxLength: 63, description: 'a shut-off VM' },
  },
} as const;

export const cloneSchema = {
  $id: 'CloneRequest',
  type: 'object',
  additionalProperties: false,
  properties: {
    count: { type: 'integer', minimum: 1, maximum: MAX_CLONES, default: 1 },
    namePrefix: { type: 'string', pattern: CLONE_PREFIX_PATTERN, description: 'default: the template\'s name' },
    full: { type: 'boolean', default: false, description: 'full copies of the disks instead of qcow2 overlays' },
    seed: { type: 'boolean', default: true, description: 'attach a NoCloud seed disk (label cidata)' },
    sshKeys: { type: 'array', maxItems: 16, items: { type: 'string', minLength: 1, maxLength: 8192, pattern: '^[^\\n]+$' }, default: [] },
    userData: { type: 'string', maxLength: 65536, description: 'user-data (e.g. #cloud-config or a #! start-up script); default: #cloud-config with the hostname and keys' },
  },
} as const;

export interface CloneRequest {
  count: number;
  namePrefix?: string;
  full: boolean;
  seed: boolean;
  sshKeys: string[];
  userData?: string;
}

export interface TemplateDisk {
  /** File name inside the template's directory. */
  file: string;
  format: ImageFormat;
  virtualSize: number;
  readonly: boolean;
  serial?: string;
}

/** DIR/templates/T/template.json. */
export interface TemplateRecord {
  name: string;
  createdAt: string;
  from: string;
  /** The VM's definition (its disks are the template's disks, in order). */
  definition: VmDefinition;
  disks: TemplateDisk[];
}

export interface TemplateView extends Omit<TemplateRecord, 'disks'> {
  disks: Array<TemplateDisk & { path: string; actualSize: number }>;
  /** Volumes that are linked clones (overlays) of the template's disks. */
  linkedVolumes: string[];
}

export const templateSchema = {
  $id: 'Template',
  type: 'object',
  required: ['name', 'createdAt', 'from', 'definition', 'disks'],
  properties: {
    name: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    from: { type: 'string', description: 'the VM it was made from' },
    definition: { type: 'object' },
    disks: { type: 'array', items: { type: 'object' } },
    linkedVolumes: { type: 'array', items: { type: 'string' } },
  },
} as const;

export interface CloneResult {
  name: string;
  hostname: string;
  mac: string;
  disks: string[];
  seed?: string;
}

/** What templates need of the VM manager. */
export interface TemplateHost extends VmLookup {
  get(name: string): { name: string; state: string; definition: VmDefinition };
  define(definition: VmDefinition): unknown;
}

interface CloneJournal {
  template: string;
  vms: Array<{ name: string; volumes: string[] }>;
}

/** For the crash tests only: RINGZERO_TEST_CRASH_AT=clone-mid kills the daemon in the middle of a clone. */
function crashPoint(where: string): void {
  if (process.env.RINGZERO_TEST_CRASH_AT === where) process.kill(process.pid, 'SIGKILL');
}

let journalCounter = 0;

export class TemplateStore {
  readonly dir: string;

  constructor(stateRoot: string, private readonly vms: TemplateHost, private readonly volumes: VolumePool, private readonly log: (line: string) => void = () => {}) {
    this.dir = path.join(stateRoot, 'templates');
  }

  /** Create the directory; remove half-built templates; finish (roll back) clones a crash interrupted. */
  open(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const vmsDir = path.join(path.dirname(this.dir), 'vms');
    for (const entry of fs.readdirSync(this.dir)) {
      const full = path.join(this.dir, entry);
      if (/^\..*\.(tmp|deleting)-\d+-\d+$/.test(entry)) {
        fs.rmSync(full, { recursive: true, force: true });
      } else if (/^\.clone-\d+-\d+\.json$/.test(entry)) {
        let journal: CloneJournal | undefined;
        try {
          journal = JSON.parse(fs.readFileSync(full, 'utf8')) as CloneJournal;
        } catch {
          journal = undefined; // torn: written atomically, so this cannot be, but leave nothing behind
        }
        for (const vm of journal?.vms ?? []) {
          if (fs.existsSync(path.join(vmsDir, `${vm.name}.json`))) continue;
          for (const volume of vm.volumes) if (this.volumes.exists(volume)) fs.rmSync(this.volumes.pathOf(volume), { force: true });
          this.log(`clone of template '${journal!.template}' was interrupted: removed the volumes of '${vm.name}'`);
        }
        fsyncDir(this.volumes.dir);
        removeFileDurable(full);
      }
    }
  }

  names(): string[] {
    return fs.readdirSync(this.dir).filter((entry) => TEMPLATE_NAME_RE.test(entry) && fs.existsSync(path.join(this.dir, entry, 'template.json'))).sort();
  }

  list(): TemplateView[] {
    return this.names().map((name) => this.get(name));
  }

  get(name: string): TemplateView {
    const record = this.record(name);
    const disks = record.disks.map((disk) => {
      const file = path.join(this.dir, name, disk.file);
      let actualSize = 0;
      try { actualSize = fs.statSync(file).blocks * 512; } catch { /* reported by clone */ }
      return { ...disk, path: file, actualSize };
    });
    const linkedVolumes = [...new Set(disks.flatMap((disk) => this.volumes.overlaysOf(disk.path)))].sort();
    return { ...record, disks, linkedVolumes };
  }

  /** Make template `name` from the shut-off VM `from`: its definition, and a standalone copy of each disk. */
  create(name: string, from: string): TemplateView {
    if (!TEMPLATE_NAME_RE.test(name)) throw new ManagerError('invalid', `invalid template name '${name}': letters, digits, '_' and '-' (at most 63), starting with a letter or digit`);
    if (fs.existsSync(path.join(this.dir, name))) throw new ManagerError('conflict', `template '${name}' already exists`);
    const vm = this.vms.get(from);
    if (vm.state !== 'shut off' && vm.state !== 'crashed') throw new ManagerError('conflict', `VM '${from}' is ${vm.state}: shut it off before making a template of it`);
    const tmp = tempSibling(path.join(this.dir, name));
    fs.mkdirSync(tmp, { mode: 0o700 });
    try {
      const disks: TemplateDisk[] = [];
      for (const disk of vm.definition.disks) {
        if (disk.serial === SEED_SERIAL) continue; // a clone's identity is not part of a template
        let format: ImageFormat;
        let info;
        try {
          format = detectFormat(disk.path);
          info = imageInfo(disk.path, format);
        } catch (error) {
          throw storageToManagerError(error, `disk '${disk.path}' of VM '${from}'`);
        }
        const file = `disk${disks.length}.${format}`;
        const target = path.join(tmp, file);
        try {
          // A standalone image: a qcow2 overlay is flattened (the template must not depend on its backing chain).
          if (format === 'qcow2' && info.backingPath !== undefined) copyImage(disk.path, target, 'qcow2', 'qcow2');
          else copyFileDurable(disk.path, target);
        } catch (error) {
          throw storageToManagerError(error, `copying disk '${disk.path}' of VM '${from}'`);
        }
        fs.chmodSync(target, 0o444);
        disks.push({ file, format, virtualSize: info.virtualSize, readonly: disk.readonly, ...(disk.serial !== undefined ? { serial: disk.serial } : {}) });
      }
      const definition: VmDefinition = {
        ...vm.definition, name: from, autostart: false,
        disks: disks.map((disk) => ({ path: path.join(this.dir, name, disk.file), readonly: disk.readonly, ...(disk.serial !== undefined ? { serial: disk.serial } : {}) })),
      };
      const record: TemplateRecord = { name, createdAt: new Date().toISOString(), from, definition, disks };
      writeFileAtomic(path.join(tmp, 'template.json'), `${JSON.stringify(record, null, 2)}\n`);
      fsyncDir(tmp);
      fs.renameSync(tmp, path.join(this.dir, name));
      fsyncDir(this.dir);
    } catch (error) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw error;
    }
    return this.get(name);
  }

  /** Delete a template no volume is an overlay of and no VM uses directly. */
  delete(name: string): void {
    const view = this.get(name);
    if (view.linkedVolumes.length > 0) {
      throw new ManagerError('conflict', `template '${name}' backs linked clone volume(s) ${view.linkedVolumes.join(', ')}: delete those first`);
    }
    const users = [...new Set(view.disks.flatMap((disk) => this.volumes.definedUsers(disk.path)))];
    if (users.length > 0) throw new ManagerError('conflict', `template '${name}' has disks used by VM(s) ${users.join(', ')}`);
    const doomed = path.join(this.dir, `.${name}.deleting-${process.pid}-${journalCounter++}`);
    fs.renameSync(path.join(this.dir, name), doomed);
    fsyncDir(this.dir);
    fs.rmSync(doomed, { recursive: true, force: true });
  }

  /** Define `count` clones of template `name` (see the top of this file). */
  /** One clone at a time: each plans its names from what exists when it starts. */
  private cloning: Promise<unknown> = Promise.resolve();

  clone(name: string, request: CloneRequest): Promise<CloneResult[]> {
    const run = this.cloning.then(() => this.cloneNow(name, request));
    this.cloning = run.catch(() => undefined);
    return run;
  }

  private async cloneNow(name: string, request: CloneRequest): Promise<CloneResult[]> {
    const template = this.record(name);
    const count = request.count;
    if (!Number.isInteger(count) || count < 1 || count > MAX_CLONES) throw new ManagerError('invalid', `count must be 1 to ${MAX_CLONES}`);
    const prefix = request.namePrefix ?? name;
    if (!new RegExp(CLONE_PREFIX_PATTERN).test(prefix)) throw new ManagerError('invalid', `invalid name prefix '${prefix}'`);
    const taken = new Set(this.vms.list().map((vm) => vm.name));
    if (request.seed && !haveMkfsExt4()) {
      throw new ManagerError('unsupported', 'building the NoCloud seed disk needs mkfs.ext4 (Debian: e2fsprogs); or clone with seed: false');
    }
    for (const disk of template.disks) {
      if (!fs.existsSync(path.join(this.dir, name, disk.file))) throw new ManagerError('corrupt', `template '${name}' lost its disk ${disk.file}`);
    }

    // Plan every name first (the next free PREFIX-i), so a conflict fails before anything is written.
    const plans: Array<{ name: string; hostname: string; mac: string; nics: NicDefinition[]; disks: string[]; seed?: string }> = [];
    // Every clone's MACs differ from each other and from every defined VM's (the template's own VM's included).
    const macs = new Set<string>(this.vms.list().flatMap((vm) => (vm.definition.nics ?? []).map((nic) => nic.mac ?? '')));
    const freshMac = (): string => {
      let mac: string;
      do mac = randomMac(); while (macs.has(mac));
      macs.add(mac);
      return mac;
    };
    for (let i = 1; plans.length < count; i++) {
      const vmName = `${prefix}-${i}`;
      const diskNames = template.disks.map((disk, k) => `${vmName}-disk${k}.${request.full ? disk.format : 'qcow2'}`);
      const seedName = request.seed ? `${vmName}-seed.img` : undefined;
      if (taken.has(vmName) || [...diskNames, ...(seedName ? [seedName] : [])].some((v) => this.volumes.exists(v))) continue;
      // The template's cards, each on the clone's own TAP with its own MAC; the first card's MAC is the identity the
      // seed and the command line carry (a template without cards still gets one there, for a card added later).
      const nics = (template.definition.nics ?? []).map((nic, k) => ({ ...nic, tap: cloneTapName(vmName, k), mac: freshMac() }));
      const mac = nics[0]?.mac ?? freshMac();
      plans.push({ name: vmName, hostname: hostnameOf(vmName), mac, nics, disks: diskNames, ...(seedName ? { seed: seedName } : {}) });
    }

    const journal = path.join(this.dir, `.clone-${process.pid}-${journalCounter++}.json`);
    const record: CloneJournal = { template: name, vms: plans.map((p) => ({ name: p.name, volumes: [...p.disks, ...(p.seed ? [p.seed] : [])] })) };
    writeFileAtomic(journal, `${JSON.stringify(record)}\n`);
    const results: CloneResult[] = [];
    /** Volumes this clone put in place (only these are rolled back: a name may have been taken meanwhile). */
    const created: string[] = [];
    const place = (tmp: string, volume: string): void => {
      // The seeds were built while other requests ran: a volume of that name may have appeared since the plan.
      if (this.volumes.exists(volume)) throw new ManagerError('conflict', `volume '${volume}' appeared while cloning`);
      fs.renameSync(tmp, this.volumes.pathOf(volume));
      created.push(volume);
    };
    const seedTmps = new Map<string, string>();
    try {
      // The seeds first, a few mkfs.ext4 at a time (most of a linked clone's cost), into temporary files.
      const queue = plans.filter((plan) => plan.seed !== undefined);
      const worker = async () => {
        for (let plan = queue.shift(); plan; plan = queue.shift()) {
          const tmp = tempSibling(this.volumes.pathOf(plan.seed!));
          seedTmps.set(plan.name, tmp);
          await buildSeed(tmp, plan.name, plan.hostname, plan.mac, request.sshKeys, request.userData);
        }
      };
      await Promise.all(Array.from({ length: Math.min(4, queue.length) }, worker));
      for (const [index, plan] of plans.entries()) {
        const disks: DiskDefinition[] = [];
        for (const [k, disk] of template.disks.entries()) {
          const source = path.join(this.dir, name, disk.file);
          const target = this.volumes.pathOf(plan.disks[k]);
          const tmp = tempSibling(target);
          try {
            if (request.full) copyFileDurable(source, tmp);
            // Linked: the backing file name is relative (from the pool to the template), so the state directory may move.
            else createQcow2(tmp, { size: disk.virtualSize, backingFile: path.relative(this.volumes.dir, source), backingFormat: disk.format });
            place(tmp, plan.disks[k]);
          } catch (error) {
            fs.rmSync(tmp, { force: true });
            throw storageToManagerError(error, `clone '${plan.name}'`);
          }
          disks.push({ path: target, readonly: disk.readonly, ...(disk.serial !== undefined ? { serial: disk.serial } : {}) });
        }
        if (plan.seed) {
          const target = this.volumes.pathOf(plan.seed);
          place(seedTmps.get(plan.name)!, plan.seed);
          seedTmps.delete(plan.name);
          disks.push({ path: target, readonly: true, serial: SEED_SERIAL });
        }
        fsyncDir(this.volumes.dir);
        if (index === 1) crashPoint('clone-mid');
        const cmdline = `${template.definition.cmdline.trim()} ringzero.hostname=${plan.hostname} ringzero.mac=${plan.mac}`.trim();
        this.vms.define({ ...template.definition, name: plan.name, disks, cmdline, autostart: false, ...(template.definition.nics !== undefined ? { nics: plan.nics } : {}) });
        results.push({ name: plan.name, hostname: plan.hostname, mac: plan.mac, disks: plan.disks, ...(plan.seed ? { seed: plan.seed } : {}) });
      }
    } catch (error) {
      for (const tmp of seedTmps.values()) fs.rmSync(tmp, { force: true });
      // The clones not defined yet are rolled back now, as a restart would.
      const defined = new Set(results.map((r) => r.name));
      for (const plan of plans) {
        if (defined.has(plan.name)) continue;
        for (const volume of [...plan.disks, ...(plan.seed ? [plan.seed] : [])]) if (created.includes(volume)) fs.rmSync(this.volumes.pathOf(volume), { force: true });
      }
      removeFileDurable(journal);
      throw error;
    }
    removeFileDurable(journal);
    return results;
  }

  private record(name: string): TemplateRecord {
    if (!TEMPLATE_NAME_RE.test(name)) throw new ManagerError('not_found', `no template named '${name}'`);
    let text: string;
    try {
      text = fs.readFileSync(path.join(this.dir, name, 'template.json'), 'utf8');
    } catch {
      throw new ManagerError('not_found', `no template named '${name}'`);
    }
    try {
      return JSON.parse(text) as TemplateRecord;
    } catch (error) {
      throw new ManagerError('corrupt', `template '${name}': template.json is not JSON (${(error as Error).message})`);
    }
  }
}

/** Copy a file (reflinked where the file system can), synced. */
function copyFileDurable(source: string, target: string): void {
  fs.copyFileSync(source, target, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE);
  fs.chmodSync(target, 0o644);
  const fd = fs.openSync(target, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}


/** A VM name as a hostname (RFC 1123 label: letters, digits, '-', at most 63, no '-' at either end). */
export function hostnameOf(vmName: string): string {
  return vmName.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63) || 'vm';
}

let mkfsChecked: boolean | undefined;
function haveMkfsExt4(): boolean {
  mkfsChecked ??= spawnSync('mkfs.ext4', ['-V'], { stdio: 'ignore' }).status === 0;
  return mkfsChecked;
}

/**
 * A NoCloud seed (cloud-init's "nocloud" data source): a file system labelled `cidata` holding meta-data (instance
 * id and hostname), user-data and network-config (version 1: eth0 with the clone's MAC, DHCP). ext4 built by
 * mkfs.ext4 -d (no mount needed); Debian's cloud kernel has ext4 built in.
 */
export async function buildSeed(file: string, vmName: string, hostname: string, mac: string, sshKeys: string[], userData?: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(path.dirname(file), `.seed-${vmName}.tmp-${process.pid}-`));
  try {
    fs.writeFileSync(path.join(dir, 'meta-data'), `instance-id: iid-${vmName}-${crypto.randomBytes(4).toString('hex')}\nlocal-hostname: ${hostname}\n`
      + (sshKeys.length > 0 ? `public-keys:\n${sshKeys.map((k) => `  - ${JSON.stringify(k)}\n`).join('')}` : ''));
    fs.writeFileSync(path.join(dir, 'user-data'), userData ?? `#cloud-config\nhostname: ${hostname}\n`
      + (sshKeys.length > 0 ? `ssh_authorized_keys:\n${sshKeys.map((k) => `  - ${JSON.stringify(k)}\n`).join('')}` : ''));
    fs.writeFileSync(path.join(dir, 'network-config'), `version: 1\nconfig:\n  - type: physical\n    name: eth0\n    mac_address: "${mac}"\n    subnets:\n      - type: dhcp\n`);
    const fd = fs.openSync(file, 'wx', 0o644);
    fs.ftruncateSync(fd, SEED_BYTES);
    fs.closeSync(fd);
    const failure = await new Promise<string | undefined>((resolve) => {
      const child = spawn('mkfs.ext4', ['-q', '-F', '-L', SEED_SERIAL, '-O', '^has_journal', '-b', '1024', '-N', '16', '-m', '0', '-E', 'root_owner=0:0', '-d', dir, file],
        { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (text: string) => { stderr += text; });
      child.once('error', (error) => resolve(error.message));
      child.once('close', (code) => resolve(code === 0 ? undefined : stderr.trim() || `status ${code}`));
    });
    if (failure !== undefined) throw new ManagerError('internal', `mkfs.ext4 failed building the seed of '${vmName}': ${failure}`);
    const sync = fs.openSync(file, 'r');
    fs.fsyncSync(sync);
    fs.closeSync(sync);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
