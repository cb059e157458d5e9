// bench/provision: how fast a fleet comes up from a template. A real daemon; a template made from a VM whose data
// disk is a real ext4 image (default 256 MiB, half of it file data, so a full copy costs real I/O); then, for linked
// clones (qcow2 overlays) and for full copies (virt-clone style), the time to clone N VMs (default 10) through the
// API and to boot all of them at once to their shell (the default guest on the soft engine), total and per VM.
//
// The reference in the same run: the same clones made with QEMU's tools (`qemu-img create -b` for linked ones, `cp`
// of the image for full ones, as virt-clone copies), and the same N guests booted at once with
// `qemu-system-x86_64 -accel tcg` on those qemu-img overlays. Prints ratios, ends with one JSON line.
//
//   node --import tsx bench/provision.ts [--count 10] [--disk-mib 256] [--memory 128] [--no-boot] [--no-qemu]
//
// The machine is noisy (2 cores shared): only ratios measured in the same run mean much.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../src/api/client.ts';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { DEFAULT_CMDLINE } from '../src/vmm/config.ts';
import { benchArgs } from './support/common.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = benchArgs(import.meta.url, {
  options: {
    count: { type: 'string', default: '10' },
    'disk-mib': { type: 'string', default: '256' },
    memory: { type: 'string', default: '128' },
    'no-boot': { type: 'boolean', default: false },
    'no-qemu': { type: 'boolean', default: false },
    timeout: { type: 'string', default: '900' },
  },
});
const count = Number(values.count);
const diskMib = Number(values['disk-mib']);
const memory = Number(values.memory);
const boot = !values['no-boot'];
const timeoutMs = Number(values.timeout) * 1000;
const image = findDefaultImage();
if (boot && !image) {
  console.error('bench/provision: no default image; run `bin/ringzero image build` first (or --no-boot)');
  process.exit(2);
}
const haveQemu = !values['no-qemu'] && spawnSync('qemu-img', ['--version']).status === 0 && spawnSync('qemu-system-x86_64', ['--version']).status === 0;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rz-prov-'));
const stateDir = path.join(work, 'state');
const socket = path.join(stateDir, 'ringzero.sock');
const children: ChildProcess[] = [];
let daemon: ChildProcess | undefined;
let apiClient: ApiClient | undefined;

function log(line: string): void {
  process.stderr.write(`bench/provision: ${line}\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function cleanUp(): Promise<void> {
  for (const child of children) try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
  if (apiClient) {
    const vms = await apiClient.request<Array<{ name: string; pid?: number }>>('GET', '/vms').catch(() => []);
    for (const vm of vms) if (vm.pid) try { process.kill(vm.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  daemon?.kill('SIGTERM');
  await sleep(300);
  fs.rmSync(work, { recursive: true, force: true });
}

/** The golden data disk: ext4 with half its size in file data (random, so nothing compresses or dedups it away). */
function makeDataDisk(file: string): void {
  const content = path.join(work, 'content');
  fs.mkdirSync(content);
  const dataBytes = Math.floor(diskMib / 2) * 2 ** 20;
  const chunk = crypto.randomBytes(2 ** 20);
  const fd = fs.openSync(path.join(content, 'data.bin'), 'w');
  for (let i = 0; i < dataBytes / 2 ** 20; i++) {
    chunk[0] = i & 0xff;
    fs.writeSync(fd, chunk);
  }
  fs.closeSync(fd);
  fs.writeFileSync(path.join(content, 'hello.txt'), 'hello from the template\n');
  fs.closeSync(fs.openSync(file, 'w'));
  fs.truncateSync(file, diskMib * 2 ** 20);
  const mkfs = spawnSync('mkfs.ext4', ['-q', '-F', '-d', content, file], { encoding: 'utf8' });
  if (mkfs.status !== 0) throw new Error(`mkfs.ext4: ${mkfs.stderr}`);
  fs.rmSync(content, { recursive: true });
}

/** Resolve when `text` appears on the console socket (connected now: the VM just started). */
function waitForConsole(socketPath: string, text: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const connection = net.connect(socketPath);
    const timer = setTimeout(() => { connection.destroy(); reject(new Error(`no '${text}' on ${socketPath} within ${ms / 1000} s: ${seen.slice(-500)}`)); }, ms);
    connection.setEncoding('utf8');
    connection.on('data', (s: string) => {
      seen = (seen + s).slice(-4096);
      if (seen.includes(text)) {
        clearTimeout(timer);
        connection.destroy();
        resolve();
      }
    });
    connection.on('error', (error) => { clearTimeout(timer); reject(error); });
  });
}

interface FleetResult { cloneMs: number; bootAllMs: number; perVmBootMs: number[]; totalMs: number; diskBytes: number }

/** Clone N VMs through the API, start them all, wait for every shell. */
async function ringzeroFleet(full: boolean): Promise<FleetResult> {
  const api = apiClient!;
  const prefix = full ? 'full' : 'linked';
  const t0 = performance.now();
  const clones = await api.request<Array<{ name: string }>>('POST', '/templates/gold-t/clone', { count, namePrefix: prefix, full });
  const cloneMs = performance.now() - t0;
  const volumes = await api.request<Array<{ name: string; actualSize: number }>>('GET', '/volumes');
  const diskBytes = volumes.filter((v) => v.name.startsWith(`${prefix}-`)).reduce((sum, v) => sum + v.actualSize, 0);
  let bootAllMs = 0;
  let perVmBootMs: number[] = [];
  if (boot) {
    const t1 = performance.now();
    perVmBootMs = await Promise.all(clones.map(async (clone) => {
      const started = performance.now();
      const vm = await api.request<{ consoleSocket: string }>('POST', `/vms/${clone.name}/start`);
      await waitForConsole(vm.consoleSocket, GUEST_PROMPT, timeoutMs);
      return performance.now() - started;
    }));
    bootAllMs = performance.now() - t1;
    for (const clone of clones) await api.request('POST', `/vms/${clone.name}/destroy`).catch(() => undefined);
  }
  return { cloneMs, bootAllMs, perVmBootMs, totalMs: performance.now() - t0, diskBytes };
}

/** The same with QEMU's tools: qemu-img overlays or cp copies, then N qemu TCG guests at once. */
async function qemuFleet(templateDisk: string, full: boolean): Promise<FleetResult> {
  const dir = path.join(work, full ? 'qemu-full' : 'qemu-linked');
  fs.mkdirSync(dir);
  const t0 = performance.now();
  const disks: string[] = [];
  for (let i = 1; i <= count; i++) {
    const disk = path.join(dir, `vm${i}.${full ? 'raw' : 'qcow2'}`);
    const r = full
      ? spawnSync('cp', ['--sparse=auto', templateDisk, disk])
      : spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', templateDisk, disk]);
    if (r.status !== 0) throw new Error(`${full ? 'cp' : 'qemu-img create'} failed: ${r.stderr}`);
    if (full) spawnSync('sync', [disk]);
    disks.push(disk);
  }
  const cloneMs = performance.now() - t0;
  const diskBytes = disks.reduce((sum, d) => sum + fs.statSync(d).blocks * 512, 0);
  let bootAllMs = 0;
  let perVmBootMs: number[] = [];
  if (boot) {
    const t1 = performance.now();
    perVmBootMs = await Promise.all(disks.map((disk, i) => new Promise<number>((resolve, reject) => {
      const started = performance.now();
      const child = spawn('qemu-system-x86_64', ['-accel', 'tcg', '-M', 'q35', '-m', String(memory), '-nographic', '-no-reboot',
        '-kernel', image!.kernel, '-initrd', image!.initrd,
        '-append', `${DEFAULT_CMDLINE} ringzero.hostname=q${i + 1}`, '-drive', `file=${disk},if=virtio,format=${full ? 'raw' : 'qcow2'}`],
      { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
      children.push(child);
      let out = '';
      const timer = setTimeout(() => reject(new Error(`qemu VM ${i + 1}: no prompt within ${timeoutMs / 1000} s`)), timeoutMs);
      child.stdout!.setEncoding('utf8').on('data', (s: string) => {
        out = (out + s).slice(-4096);
        if (out.includes(GUEST_PROMPT)) {
          clearTimeout(timer);
          resolve(performance.now() - started);
          try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
        }
      });
    })));
    bootAllMs = performance.now() - t1;
  }
  return { cloneMs, bootAllMs, perVmBootMs, totalMs: performance.now() - t0, diskBytes };
}

const median = (xs: number[]) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function describe(label: string, r: FleetResult): void {
  console.log(`${label.padEnd(24)} clone ${secs(r.cloneMs).padStart(9)} (${(r.cloneMs / count).toFixed(1)} ms/VM)  `
    + (boot ? `boot all ${secs(r.bootAllMs).padStart(9)}  per VM median ${secs(median(r.perVmBootMs))}, max ${secs(Math.max(...r.perVmBootMs))}  ` : '')
    + `total ${secs(r.totalMs)}  disks ${(r.diskBytes / 2 ** 20).toFixed(1)} MiB`);
}

async function main(): Promise<void> {
  const goldDisk = path.join(work, 'gold.ext4');
  log(`making a ${diskMib} MiB ext4 data disk (${Math.floor(diskMib / 2)} MiB of file data)`);
  makeDataDisk(goldDisk);
  daemon = spawn(process.execPath, [path.join(root, 'bin', 'ringzero'), 'daemon', '--state-dir', stateDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let daemonErr = '';
  daemon.stderr!.setEncoding('utf8').on('data', (s: string) => { daemonErr += s; });
  apiClient = new ApiClient(socket);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (await apiClient.request('GET', '/host').then(() => true, () => false)) break;
    if (Date.now() > deadline) throw new Error(`the daemon did not come up: ${daemonErr}`);
    await sleep(100);
  }
  await apiClient.request('POST', '/vms', { name: 'gold', engine: 'soft', memory, disks: [{ path: goldDisk }] });
  const t = performance.now();
  const template = await apiClient.request<{ disks: Array<{ path: string }> }>('POST', '/templates', { name: 'gold-t', from: 'gold' });
  const templateMs = performance.now() - t;
  console.log(`template create (copies the ${diskMib} MiB disk): ${secs(templateMs)}`);
  console.log(`${count} VMs of ${memory} MiB each, ${boot ? 'booted at once to their shell (soft engine)' : 'not booted (--no-boot)'}; host: ${os.cpus().length} CPUs`);

  const linked = await ringzeroFleet(false);
  describe('ringzero linked clones', linked);
  const full = await ringzeroFleet(true);
  describe('ringzero full copies', full);
  let qLinked: FleetResult | undefined;
  let qFull: FleetResult | undefined;
  if (haveQemu) {
    qLinked = await qemuFleet(template.disks[0].path, false);
    describe('qemu-img -b + QEMU TCG', qLinked);
    qFull = await qemuFleet(template.disks[0].path, true);
    describe('cp + QEMU TCG', qFull);
  } else {
    console.log('QEMU reference skipped (--no-qemu, or qemu-img / qemu-system-x86_64 missing)');
  }
  console.log(`linked vs full (ringzero): clone ${(full.cloneMs / linked.cloneMs).toFixed(1)}x faster, ${(full.diskBytes / Math.max(1, linked.diskBytes)).toFixed(0)}x less disk`
    + (boot ? `, total ${(full.totalMs / linked.totalMs).toFixed(2)}x` : ''));
  if (qLinked && qFull) {
    console.log(`ringzero / QEMU tools: linked clone ${(linked.cloneMs / qLinked.cloneMs).toFixed(2)}x the time, full copy ${(full.cloneMs / qFull.cloneMs).toFixed(2)}x`
      + (boot ? `; boot all (soft engine / TCG) ${(linked.bootAllMs / qLinked.bootAllMs).toFixed(2)}x` : ''));
  }
  const figures = (r: FleetResult | undefined) => r && {
    cloneMs: Math.round(r.cloneMs), cloneMsPerVm: +(r.cloneMs / count).toFixed(2), bootAllMs: Math.round(r.bootAllMs),
    bootMsPerVmMedian: Math.round(median(r.perVmBootMs)), totalMs: Math.round(r.totalMs), diskBytes: r.diskBytes,
  };
  console.log(JSON.stringify({
    bench: 'provision', count, diskMib, memoryMib: memory, booted: boot, templateCreateMs: Math.round(templateMs),
    ringzero: { linked: figures(linked), full: figures(full) },
    qemu: haveQemu ? { linked: figures(qLinked), full: figures(qFull) } : null,
  }));
}

try {
  await main();
} catch (error) {
  console.error(`bench/provision: ${(error as Error).message}`);
  process.exitCode = 1;
} finally {
  await cleanUp();
}
