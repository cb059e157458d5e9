// Statistics of the host and of each VM, for GET /host/stats, GET /vms/:name/stats, GET /metrics and `ringzero top`.
//
// Two sources per VM, so a busy VM still reports: the kernel's view of its VMM process (CPU time and resident set from
// /proc/PID/stat and /proc/PID/status, proc(5)), which needs nothing from the VMM, and the machine's own counters
// (instructions, device accesses, disk and network bytes) asked over its control socket ({"cmd":"stats"}), which a
// soft-engine VMM answers between run slices and which may be missing (counters: null) if it does not answer in time.
// Every counter is cumulative; rates come from two samples (the CPU percentage here is since the previous sample
// this collector took of the same process, or over the process's life for the first one).

import fs from 'node:fs';
import os from 'node:os';
import { CLOCK_TICKS, readProcStat, statCpuSeconds } from '../sys/proc-stat.ts';
import { controlRequest } from '../vmm/control.ts';
import type { VmCounters } from '../vmm/machine.ts';
import type { VmManager, VmView } from './manager.ts';
import type { PoolView } from './pool.ts';

/** How long a VMM may take to answer {"cmd":"stats"} before its counters are reported as null. */
const COUNTERS_TIMEOUT_MS = 1500;

export interface ProcessStats {
  /** User + system CPU time of the VMM process (all its threads), seconds. */
  cpuSeconds: number;
  /** CPU use since the previous sample (or over the process's life), in percent of one host CPU. */
  cpuPercent: number;
  residentBytes: number;
  threads: number;
}

/** A VMM's answer to {"cmd":"stats"}: what Machine.stats() counts. */
export type VmCountersSample = VmCounters;

export interface VmStats {
  name: string;
  state: string;
  vcpus: number;
  memoryBytes: number;
  pid: number | null;
  /** Milliseconds since the epoch when this sample was taken. */
  sampledAt: number;
  process: ProcessStats | null;
  counters: VmCountersSample | null;
  /**
   * The counters per second since this collector's previous sample of the same VMM (null for its first, or without
   * counters): guest instructions, traps (VM exits on KVM) by reason (port I/O, MMIO, halts), disk and network bytes.
   */
  rates: VmRates | null;
}

export interface VmRates {
  seconds: number;
  instructions: number;
  exits: { pio: number; mmio: number };
  halts: number;
  disk: { readBytes: number; writeBytes: number };
  net: { rxBytes: number; txBytes: number };
}

/** `after` minus `before` per second (a counter that went back, a VMM restarted in place, counts from 0). */
function ratesBetween(before: VmCountersSample, after: VmCountersSample, seconds: number): VmRates {
  const per = (a: number, b: number) => round(Math.max(0, a - b) / seconds);
  return {
    seconds: round(seconds),
    instructions: per(after.instructions, before.instructions),
    exits: { pio: per(after.exits.pio, before.exits.pio), mmio: per(after.exits.mmio, before.exits.mmio) },
    halts: per(after.halts, before.halts),
    disk: { readBytes: per(after.disk.readBytes, before.disk.readBytes), writeBytes: per(after.disk.writeBytes, before.disk.writeBytes) },
    net: { rxBytes: per(after.net.rxBytes, before.net.rxBytes), txBytes: per(after.net.txBytes, before.net.txBytes) },
  };
}

export interface HostStats {
  hostname: string;
  cpus: number;
  /** Cumulative CPU seconds of all host CPUs by mode (/proc/stat "cpu" line). */
  cpuSeconds: Record<string, number>;
  /** Host CPU busy (not idle or iowait) since the previous sample (or since boot), percent of all CPUs. */
  cpuPercent: number;
  memory: { totalBytes: number; availableBytes: number; freeBytes: number };
  loadAverage: number[];
  uptimeSeconds: number;
  vms: { defined: number; running: number };
  sampledAt: number;
}

const CPU_MODES = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'];

/** CPU time and resident set of a process, or undefined if it is gone. */
export function readProcess(pid: number): { cpuSeconds: number; residentBytes: number; threads: number; startTicks: number } | undefined {
  const stat = readProcStat(`/proc/${pid}/stat`);
  let status: string;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  if (stat === undefined) return undefined;
  const fields = stat.fields; // fields[0] is field 3
  const threads = Number(fields[17]); // field 20
  const startTicks = Number(fields[19]); // field 22
  const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return {
    cpuSeconds: statCpuSeconds(stat),
    residentBytes: rss ? Number(rss[1]) * 1024 : 0,
    threads: Number.isFinite(threads) ? threads : 0,
    startTicks,
  };
}

function readHostCpu(): Record<string, number> {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith('cpu '));
  const values = (line ?? '').trim().split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(CPU_MODES.map((mode, i) => [mode, (values[i] ?? 0) / CLOCK_TICKS]));
}

function readMeminfo(): { totalBytes: number; availableBytes: number; freeBytes: number } {
  const text = fs.readFileSync('/proc/meminfo', 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { totalBytes: kb('MemTotal'), availableBytes: kb('MemAvailable'), freeBytes: kb('MemFree') };
}

function bootTimeSeconds(): number {
  const btime = /^btime\s+(\d+)/m.exec(fs.readFileSync('/proc/stat', 'utf8'));
  return btime ? Number(btime[1]) : Date.now() / 1000 - os.uptime();
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** The machine's answer to {"cmd":"stats"}, checked field by field (a VMM of another version may lack some). */
function parseCounters(answer: Record<string, unknown>): VmCountersSample | null {
  if (answer.ok !== true) return null;
  const obj = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null ? v as Record<string, unknown> : {});
  const exits = obj(answer.exits);
  const disk = obj(answer.disk);
  const net = obj(answer.net);
  const cache = answer.codeCache === null || answer.codeCache === undefined ? null : obj(answer.codeCache);
  return {
    engine: typeof answer.engine === 'string' ? answer.engine : 'unknown',
    vcpus: num(answer.vcpus),
    haltedVcpus: num(answer.haltedVcpus),
    instructions: num(answer.instructions),
    blockInstructions: num(answer.blockInstructions),
    codeCache: cache ? { blocks: num(cache.blocks), instructionsCached: num(cache.instructionsCached), invalidations: num(cache.invalidations) } : null,
    exits: { pio: num(exits.pio), mmio: num(exits.mmio) },
    disk: { readBytes: num(disk.readBytes), writeBytes: num(disk.writeBytes) },
    net: { rxBytes: num(net.rxBytes), txBytes: num(net.txBytes), rxFrames: num(net.rxFrames), txFrames: num(net.txFrames) },
    devices: (Array.isArray(answer.devices) ? answer.devices : []).map(obj)
      .filter((d) => typeof d.name === 'string' && /^(vd[a-z]|eth\d{1,2})$/.test(d.name) && (d.kind === 'disk' || d.kind === 'net'))
      .map((d) => ({ name: d.name as string, kind: d.kind as 'disk' | 'net', readBytes: num(d.readBytes), writeBytes: num(d.writeBytes) })),
    halts: num(answer.halts),
    guestNs: num(answer.guestNs),
  };
}

const ACTIVE = new Set(['starting', 'running', 'paused', 'shutting down']);

export class StatsCollector {
  /** The previous CPU sample per pid (for the CPU percentage between two requests). */
  private readonly lastProcess = new Map<number, { cpuSeconds: number; at: number }>();
  /** The previous counters per pid (for the rates between two requests). */
  private readonly lastCounters = new Map<number, { counters: VmCountersSample; at: number }>();
  private lastHost: { busy: number; total: number } | undefined;

  constructor(private readonly manager: VmManager) {}

  /** One VM's statistics; throws the manager's not_found for an unknown name. */
  async vm(name: string): Promise<VmStats> {
    return this.sample(this.manager.get(name));
  }

  async allVms(): Promise<VmStats[]> {
    const all = await Promise.all(this.manager.list().map((view) => this.sample(view)));
    // The previous samples of VMMs that are gone (a restarted VM has a new pid) are dropped here, where all are seen.
    const live = new Set(all.map((v) => v.pid));
    for (const pid of this.lastCounters.keys()) if (!live.has(pid)) this.lastCounters.delete(pid);
    for (const pid of this.lastProcess.keys()) if (!live.has(pid)) this.lastProcess.delete(pid);
    return all;
  }

  host(): HostStats {
    const cpuSeconds = readHostCpu();
    const total = Object.values(cpuSeconds).reduce((a, b) => a + b, 0);
    const busy = total - cpuSeconds.idle - cpuSeconds.iowait;
    const previous = this.lastHost ?? { busy: 0, total: 0 };
    this.lastHost = { busy, total };
    const cpuPercent = total > previous.total ? (100 * (busy - previous.busy)) / (total - previous.total) : 0;
    const vms = this.manager.list();
    return {
      hostname: os.hostname(),
      cpus: os.cpus().length,
      cpuSeconds,
      cpuPercent: round(cpuPercent),
      memory: readMeminfo(),
      loadAverage: os.loadavg(),
      uptimeSeconds: os.uptime(),
      vms: { defined: vms.length, running: vms.filter((v) => ACTIVE.has(v.state)).length },
      sampledAt: Date.now(),
    };
  }

  private async sample(view: VmView): Promise<VmStats> {
    const d = view.definition;
    const base: VmStats = {
      name: view.name, state: view.state, vcpus: d.cpus, memoryBytes: d.memory * 2 ** 20, pid: view.pid ?? null,
      sampledAt: Date.now(), process: null, counters: null, rates: null,
    };
    if (!ACTIVE.has(view.state) || view.pid === undefined) return base;
    const pid = view.pid;
    const proc = readProcess(pid);
    if (proc) {
      const now = Date.now();
      const previous = this.lastProcess.get(pid)
        ?? { cpuSeconds: 0, at: (bootTimeSeconds() + proc.startTicks / CLOCK_TICKS) * 1000 };
      this.lastProcess.set(pid, { cpuSeconds: proc.cpuSeconds, at: now });
      const elapsed = (now - previous.at) / 1000;
      base.process = {
        cpuSeconds: proc.cpuSeconds,
        cpuPercent: elapsed > 0 ? round((100 * (proc.cpuSeconds - previous.cpuSeconds)) / elapsed) : 0,
        residentBytes: proc.residentBytes,
        threads: proc.threads,
      };
    }
    try {
      base.counters = parseCounters(await controlRequest(this.manager.state.controlSocket(view.name), { cmd: 'stats' }, COUNTERS_TIMEOUT_MS));
    } catch {
      base.counters = null; // not answering (busy, starting, an older VMM): the process figures still stand
    }
    if (base.counters) {
      const at = Date.now();
      const previous = this.lastCounters.get(pid);
      if (previous && at > previous.at) base.rates = ratesBetween(previous.counters, base.counters, (at - previous.at) / 1000);
      this.lastCounters.set(pid, { counters: base.counters, at });
    }
    return base;
  }
}

function round(x: number): number {
  return Math.round(Math.max(0, x) * 10) / 10;
}

// ---- Prometheus text exposition format 0.0.4 (prometheus.io/docs/instrumenting/exposition_formats) ----

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** A label value: backslash, double quote and newline escaped, as the format requires. */
function labelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: 'counter' | 'gauge', help: string, samples: Array<[Record<string, string>, number]>): void {
    if (samples.length === 0) return;
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      const text = Object.entries(labels).map(([k, v]) => `${k}="${labelValue(v)}"`).join(',');
      this.lines.push(`${name}${text ? `{${text}}` : ''} ${Number.isFinite(value) ? value : 'NaN'}`);
    }
  }

  toString(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

/** The host's and every VM's statistics as Prometheus metrics. */
export function prometheusText(host: HostStats, vms: VmStats[], pool?: PoolView): string {
  const out = new Exposition();
  out.family('ringzero_host_cpu_seconds_total', 'counter', 'Host CPU time by mode, all CPUs (/proc/stat).',
    Object.entries(host.cpuSeconds).map(([mode, s]) => [{ mode }, s]));
  out.family('ringzero_host_cpus', 'gauge', 'Logical CPUs of the host.', [[{}, host.cpus]]);
  out.family('ringzero_host_memory_bytes', 'gauge', 'Host memory by kind (/proc/meminfo).', [
    [{ kind: 'total' }, host.memory.totalBytes], [{ kind: 'available' }, host.memory.availableBytes], [{ kind: 'free' }, host.memory.freeBytes]]);
  out.family('ringzero_host_load_average', 'gauge', 'Host load average.',
    host.loadAverage.map((v, i) => [{ period: ['1m', '5m', '15m'][i] ?? String(i) }, v]));
  out.family('ringzero_vms', 'gauge', 'Defined and running VMs.', [[{ state: 'defined' }, host.vms.defined], [{ state: 'running' }, host.vms.running]]);
  if (pool && pool.size > 0) {
    // (`daemon --vmm-pool`: src/manager/pool.ts)
    out.family('ringzero_vmm_pool_size', 'gauge', 'Spare VMM processes the daemon keeps (daemon --vmm-pool).', [[{}, pool.size]]);
    out.family('ringzero_vmm_pool_spares', 'gauge', 'Spare VMM processes by state (starting, warming, ready).',
      (['starting', 'warming', 'ready'] as const).map((state) => [{ state }, pool.spares.filter((s) => s.state === state).length]));
    out.family('ringzero_vmm_pool_resident_bytes', 'gauge', 'Resident set of the spare VMM processes, all together.', [[{}, pool.residentBytes]]);
    out.family('ringzero_vmm_pool_taken_total', 'counter', 'Spare VMMs taken by incoming migrations and restores.', [[{}, pool.taken]]);
    out.family('ringzero_vmm_pool_died_total', 'counter', 'Spare VMMs that ended before being taken (replaced).', [[{}, pool.died]]);
  }

  const each = (pick: (vm: VmStats) => Array<[Record<string, string>, number]>) =>
    vms.flatMap((vm) => pick(vm).map(([labels, value]) => [{ vm: vm.name, ...labels }, value] as [Record<string, string>, number]));
  out.family('ringzero_vm_running', 'gauge', '1 while the VM\'s VMM process runs.', each((vm) => [[{}, vm.process ? 1 : 0]]));
  out.family('ringzero_vm_vcpus', 'gauge', 'vCPUs of the VM.', each((vm) => [[{}, vm.vcpus]]));
  out.family('ringzero_vm_memory_bytes', 'gauge', 'Guest RAM of the VM\'s definition.', each((vm) => [[{}, vm.memoryBytes]]));
  const running = (pick: (vm: VmStats & { process: ProcessStats }) => Array<[Record<string, string>, number]>) =>
    each((vm) => (vm.process ? pick(vm as VmStats & { process: ProcessStats }) : []));
  out.family('ringzero_vm_cpu_seconds_total', 'counter', 'CPU time of the VM\'s VMM process (user + system).', running((vm) => [[{}, vm.process.cpuSeconds]]));
  out.family('ringzero_vm_resident_bytes', 'gauge', 'Resident set of the VM\'s VMM process.', running((vm) => [[{}, vm.process.residentBytes]]));
  const counted = (pick: (c: VmCountersSample) => Array<[Record<string, string>, number]>) =>
    each((vm) => (vm.process && vm.counters ? pick(vm.counters) : []));
  out.family('ringzero_vm_instructions_total', 'counter', 'Guest instructions executed (soft engine).', counted((c) => [[{}, c.instructions]]));
  out.family('ringzero_vm_io_exits_total', 'counter', 'Guest device accesses by kind (port I/O, MMIO).',
    counted((c) => [[{ kind: 'pio' }, c.exits.pio], [{ kind: 'mmio' }, c.exits.mmio]]));
  out.family('ringzero_vm_disk_bytes_total', 'counter', 'virtio-blk bytes by direction.',
    counted((c) => [[{ dir: 'read' }, c.disk.readBytes], [{ dir: 'write' }, c.disk.writeBytes]]));
  out.family('ringzero_vm_halts_total', 'counter', 'Times every vCPU was halted and the VM slept until its next timer or interrupt (soft engine; HLT exits).',
    counted((c) => [[{}, c.halts]]));
  out.family('ringzero_vm_device_bytes_total', 'counter', 'Bytes per device: disks (vda, ...) read/write, NICs (eth0, ...) rx as read, tx as write.',
    counted((c) => c.devices.flatMap((d) => [[{ device: d.name, dir: 'read' }, d.readBytes], [{ device: d.name, dir: 'write' }, d.writeBytes]] as Array<[Record<string, string>, number]>)));
  out.family('ringzero_vm_net_bytes_total', 'counter', 'virtio-net frame bytes by direction (guest view).',
    counted((c) => [[{ dir: 'rx' }, c.net.rxBytes], [{ dir: 'tx' }, c.net.txBytes]]));
  return out.toString();
}
