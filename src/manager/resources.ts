// Per-VM resource control for the daemon: a cgroup per running VM holding its VMM process (CPU quota, CPU weight,
// memory limit) and the CPU affinity of the threads that run its vCPUs.
//
// cgroups: the unified hierarchy (cgroup v2, Documentation/admin-guide/cgroup-v2.rst) when it has the cpu controller:
// ROOT/ringzero/VM.ID with cpu.max ("QUOTA PERIOD"), cpu.weight (1-10000) and memory.max; else the v1 hierarchies
// (Documentation/admin-guide/cgroup-v1/, scheduler/sched-bwc.rst) that a hybrid host mounts per controller, with the
// same three knobs as cpu.cfs_quota_us/cpu.cfs_period_us, cpu.shares and memory.limit_in_bytes. ID is a hash of the
// state directory, so two daemons (or two test runs) with a VM of the same name never share a cgroup. Where neither
// is there or writable (a container without delegation, not root), `available()` says why in one line and the VMs
// run without limits.
//
// Pinning: sched_setaffinity(2) on each vCPU thread's id (the soft engine runs every vCPU on the VMM's main thread,
// whose tid is the pid; the KVM engine one worker thread per vCPU), through koffi.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { koffi } from '../sys/libc.ts';
import { ManagerError, type VmResources } from './schema.ts';

/** The CFS bandwidth period: 100 ms, the kernel's default (sched-bwc.rst) and what systemd uses for CPUQuota=. */
export const CPU_PERIOD_US = 100_000;

interface Hierarchy {
  kind: 'v2' | 'v1';
  /** Directory under which ringzero/ is made, per controller (v2: the same for both). */
  cpu: string;
  memory: string | undefined;
}

export type CgroupSupport = { ok: true; kind: 'v2' | 'v1'; root: string } | { ok: false; reason: string };

/** Mount points of cgroup file systems from /proc/self/mountinfo (proc(5)): [mount point, fstype, super options]. */
function cgroupMounts(): Array<{ dir: string; type: string; options: string[] }> {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: Array<{ dir: string; type: string; options: string[] }> = [];
  for (const line of text.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const before = line.slice(0, dash).split(' ');
    const [type, , superOptions] = line.slice(dash + 3).split(' ');
    if (type !== 'cgroup' && type !== 'cgroup2') continue;
    // Octal escapes (\040 for a space) in the mount point.
    const dir = before[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.push({ dir, type, options: (superOptions ?? '').split(',') });
  }
  return out;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function detect(): Hierarchy | string {
  const mounts = cgroupMounts();
  if (mounts.length === 0) return 'no cgroup file system is mounted';
  const v2 = mounts.find((m) => m.type === 'cgroup2' && (readText(path.join(m.dir, 'cgroup.controllers')) ?? '').split(' ').includes('cpu'));
  if (v2) return { kind: 'v2', cpu: v2.dir, memory: (readText(path.join(v2.dir, 'cgroup.controllers')) ?? '').split(' ').includes('memory') ? v2.dir : undefined };
  const cpu = mounts.find((m) => m.type === 'cgroup' && m.options.includes('cpu'));
  if (cpu) return { kind: 'v1', cpu: cpu.dir, memory: mounts.find((m) => m.type === 'cgroup' && m.options.includes('memory'))?.dir };
  return mounts.some((m) => m.type === 'cgroup2')
    ? 'the cgroup v2 hierarchy has no cpu controller (it is bound to no hierarchy ringzero can use)'
    : 'no cgroup hierarchy with the cpu controller is mounted';
}

/** Host CPUs from a CPU list ("0-2,5"), checked against the host's CPU count. */
export function parseCpuList(list: string, hostCpus = os.cpus().length): number[] {
  const cpus = new Set<number>();
  for (const part of list.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new ManagerError('invalid', `invalid CPU list '${list}': use e.g. 0, 0-1 or 0,2`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from) throw new ManagerError('invalid', `invalid CPU list '${list}': ${from}-${to} is backwards`);
    if (to >= hostCpus) throw new ManagerError('invalid', `CPU list '${list}' names CPU ${to}, but the host has CPUs 0-${hostCpus - 1}`);
    for (let c = from; c <= to; c++) cpus.add(c);
  }
  return [...cpus].sort((a, b) => a - b);
}

let affinityFns: { set: (tid: number, len: number, mask: Buffer) => number; get: (tid: number, len: number, mask: Buffer) => number } | undefined;

/** sched_setaffinity(2) of one thread (a tid; the kernel takes any thread id, not only the caller's). */
export function setThreadAffinity(tid: number, cpus: readonly number[]): void {
  affinityFns ??= (() => {
    const libc = koffi.load('libc.so.6');
    return {
      set: libc.func('int sched_setaffinity(int pid, size_t cpusetsize, void *mask)') as (tid: number, len: number, mask: Buffer) => number,
      get: libc.func('int sched_getaffinity(int pid, size_t cpusetsize, void *mask)') as (tid: number, len: number, mask: Buffer) => number,
    };
  })();
  const mask = Buffer.alloc(128); // cpu_set_t: 1024 bits
  for (const c of cpus) mask[c >> 3] |= 1 << (c & 7);
  if (affinityFns.set(tid, mask.length, mask) !== 0) {
    throw new ManagerError('internal', `sched_setaffinity(${tid}) failed: errno ${koffi.errno()}`);
  }
}

/** The CPUs a thread may run on, from /proc (Cpus_allowed_list), or undefined if it is gone. */
export function threadAffinity(pid: number, tid = pid): string | undefined {
  const status = readText(`/proc/${pid}/task/${tid}/status`);
  return status === undefined ? undefined : /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1];
}

export class ResourceController {
  private hierarchy: Hierarchy | string | undefined;
  private readonly id: string;

  constructor(stateRoot: string, private readonly log: (line: string) => void = () => {}) {
    this.id = crypto.createHash('sha256').update(path.resolve(stateRoot)).digest('hex').slice(0, 8);
  }

  /** Whether per-VM cgroups can be made here, and if not, why (one line). */
  available(): CgroupSupport {
    const h = this.usable();
    return typeof h === 'string' ? { ok: false, reason: h } : { ok: true, kind: h.kind, root: path.join(h.cpu, 'ringzero') };
  }

  private usable(): Hierarchy | string {
    if (this.hierarchy !== undefined) return this.hierarchy;
    const h = detect();
    if (typeof h !== 'string') {
      try {
        for (const base of new Set([h.cpu, h.memory].filter((d): d is string => d !== undefined))) {
          fs.mkdirSync(path.join(base, 'ringzero'), { recursive: true });
          // v2: a child gets a controller only when its parent lists it in cgroup.subtree_control.
          if (h.kind === 'v2') {
            const wanted = h.memory ? '+cpu +memory' : '+cpu';
            fs.writeFileSync(path.join(base, 'cgroup.subtree_control'), wanted);
            fs.writeFileSync(path.join(base, 'ringzero', 'cgroup.subtree_control'), wanted);
          }
        }
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
        this.hierarchy = `cgroups are not writable here (${h.kind} at ${h.cpu}: ${code})`;
        return this.hierarchy;
      }
    }
    this.hierarchy = h;
    return h;
  }

  /** The VM's cgroup directories (cpu, memory), whether they exist or not. */
  private dirs(vm: string, h: Hierarchy): { cpu: string; memory: string | undefined } {
    const leaf = `${vm}.${this.id}`;
    return { cpu: path.join(h.cpu, 'ringzero', leaf), memory: h.memory ? path.join(h.memory, 'ringzero', leaf) : undefined };
  }

  /**
   * Put the VMM process `pid` in the VM's cgroup (made if needed) and set the CPU and memory knobs of `r` (an absent
   * knob means no limit). Returns the cgroup directory, or throws ManagerError('unsupported'...) naming why not.
   */
  apply(vm: string, pid: number, r: VmResources): string {
    const h = this.usable();
    if (typeof h === 'string') throw new ManagerError('conflict', `CPU and memory limits need cgroups: ${h}`);
    const dirs = this.dirs(vm, h);
    // v1: the memory hierarchy is a separate tree; the VMM joins it only for a memory limit (asked now or before), so
    // a CPU limit alone leaves its memory accounted where it was.
    if (h.kind === 'v1' && dirs.memory && r.memoryMax === undefined && !fs.existsSync(dirs.memory)) dirs.memory = undefined;
    if (r.memoryMax !== undefined && !dirs.memory) throw new ManagerError('conflict', `a memory limit needs the memory cgroup controller, which this host's ${h.kind} hierarchy lacks`);
    fs.mkdirSync(dirs.cpu, { recursive: true });
    if (dirs.memory) fs.mkdirSync(dirs.memory, { recursive: true });
    const write = (dir: string, file: string, value: string): void => {
      try {
        fs.writeFileSync(path.join(dir, file), value);
      } catch (error) {
        throw new ManagerError('internal', `cannot write ${value} to ${path.join(dir, file)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
    };
    // Limits first, then the process: it never runs a moment in the group without them.
    if (h.kind === 'v2') {
      write(dirs.cpu, 'cpu.max', r.cpuQuotaPercent !== undefined ? `${Math.round((r.cpuQuotaPercent * CPU_PERIOD_US) / 100)} ${CPU_PERIOD_US}` : `max ${CPU_PERIOD_US}`);
      write(dirs.cpu, 'cpu.weight', String(r.cpuWeight ?? 100));
      if (dirs.memory) write(dirs.memory, 'memory.max', r.memoryMax !== undefined ? String(r.memoryMax * 2 ** 20) : 'max');
    } else {
      write(dirs.cpu, 'cpu.cfs_period_us', String(CPU_PERIOD_US));
      write(dirs.cpu, 'cpu.cfs_quota_us', r.cpuQuotaPercent !== undefined ? String(Math.round((r.cpuQuotaPercent * CPU_PERIOD_US) / 100)) : '-1');
      // cpu.shares (default 1024) for cpu.weight (default 100): the scale systemd uses between the two.
      write(dirs.cpu, 'cpu.shares', String(Math.max(2, Math.round(((r.cpuWeight ?? 100) * 1024) / 100))));
      if (dirs.memory) write(dirs.memory, 'memory.limit_in_bytes', r.memoryMax !== undefined ? String(r.memoryMax * 2 ** 20) : '-1');
    }
    write(dirs.cpu, 'cgroup.procs', String(pid));
    if (dirs.memory && dirs.memory !== dirs.cpu) write(dirs.memory, 'cgroup.procs', String(pid));
    return dirs.cpu;
  }

  /** What the VM's cgroup reports: CPU throttling (cpu.stat), or undefined without one. */
  usage(vm: string): { throttledPeriods: number; throttledSeconds: number } | undefined {
    const h = this.usable();
    if (typeof h === 'string') return undefined;
    const stat = readText(path.join(this.dirs(vm, h).cpu, 'cpu.stat'));
    if (stat === undefined) return undefined;
    const field = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(stat)?.[1] ?? 0);
    // v2: throttled_usec; v1: throttled_time in ns.
    return {
      throttledPeriods: field('nr_throttled'),
      throttledSeconds: h.kind === 'v2' ? field('throttled_usec') / 1e6 : field('throttled_time') / 1e9,
    };
  }

  /** Remove the VM's cgroup once its VMM has ended (an empty cgroup is removed with rmdir). */
  remove(vm: string): void {
    const h = this.usable();
    if (typeof h === 'string') return;
    const dirs = this.dirs(vm, h);
    for (const dir of [dirs.cpu, dirs.memory]) {
      if (dir === undefined || !fs.existsSync(dir)) continue;
      try {
        fs.rmdirSync(dir);
      } catch (error) {
        this.log(`cannot remove cgroup ${dir}: ${(error as NodeJS.ErrnoException).code}`);
      }
    }
  }

  /** Whether the VM has a cgroup now. */
  has(vm: string): boolean {
    const h = this.usable();
    return typeof h !== 'string' && fs.existsSync(this.dirs(vm, h).cpu);
  }
}
