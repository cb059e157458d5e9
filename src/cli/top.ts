// `ringzero top`: a live table of the host and its VMs, as virt-top shows libvirt's. Rates (CPU %, MIPS, exits/s by
// reason, disk and network bytes/s) come from two samples of the daemon's cumulative statistics (GET /host/stats,
// GET /vms/:name/stats) taken `interval` seconds apart; `--once` prints one table and exits.

import type { ApiClient } from '../api/client.ts';
import type { HostStats, VmStats } from '../manager/stats.ts';
import type { VmView } from '../manager/manager.ts';
import { table } from './api-call.ts';

interface Sample {
  at: number;
  host: HostStats;
  vms: Map<string, VmStats>;
}

async function takeSample(api: ApiClient): Promise<Sample> {
  const host = await api.request<HostStats>('GET', '/host/stats');
  const views = await api.request<VmView[]>('GET', '/vms');
  const vms = await Promise.all(views.map((v) => api.request<VmStats>('GET', `/vms/${encodeURIComponent(v.name)}/stats`).catch(() => undefined)));
  return { at: Date.now(), host, vms: new Map(vms.filter((v): v is VmStats => v !== undefined).map((v) => [v.name, v])) };
}

function bytes(n: number): string {
  const units = ['B', 'K', 'M', 'G', 'T'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n.toFixed(0) : n.toFixed(1)}${units[i]}`;
}

/** The table for the interval between two samples. */
export function renderTop(before: Sample, after: Sample): string[] {
  const seconds = Math.max((after.at - before.at) / 1000, 1e-3);
  const h = after.host;
  const hostBusy = (s: HostStats) => Object.entries(s.cpuSeconds).reduce((a, [mode, v]) => a + (mode === 'idle' || mode === 'iowait' ? 0 : v), 0);
  const hostTotal = (s: HostStats) => Object.values(s.cpuSeconds).reduce((a, b) => a + b, 0);
  const totalDelta = hostTotal(h) - hostTotal(before.host);
  const hostCpu = totalDelta > 0 ? (100 * (hostBusy(h) - hostBusy(before.host))) / totalDelta : 0;
  const lines = [
    `ringzero top - ${h.hostname}  ${new Date(after.at).toISOString().slice(11, 19)}  interval ${seconds.toFixed(1)}s`,
    `Host: ${h.cpus} CPUs, ${hostCpu.toFixed(1)}% busy, load ${h.loadAverage.map((l) => l.toFixed(2)).join(' ')}; `
      + `memory ${bytes(h.memory.totalBytes - h.memory.availableBytes)} used of ${bytes(h.memory.totalBytes)} (${bytes(h.memory.availableBytes)} available)`,
    `VMs: ${h.vms.defined} defined, ${h.vms.running} running`,
    '',
  ];
  const rows = [['NAME', 'STATE', 'VCPUS', 'CPU%', 'RSS', 'MIPS', 'PIO/S', 'MMIO/S', 'DISK R/S', 'DISK W/S', 'NET RX/S', 'NET TX/S', 'HALTS/S']];
  for (const vm of [...after.vms.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const old = before.vms.get(vm.name);
    const same = old !== undefined && old.pid === vm.pid;
    const rate = (pick: (s: VmStats) => number | undefined, format: (x: number) => string): string => {
      const now = pick(vm);
      const then = same ? pick(old) : undefined;
      return now === undefined || then === undefined ? '-' : format(Math.max(0, now - then) / seconds);
    };
    const p = vm.process;
    rows.push([
      vm.name, vm.state, String(vm.vcpus),
      p ? rate((s) => s.process?.cpuSeconds, (x) => (100 * x).toFixed(1)) : '-',
      p ? bytes(p.residentBytes) : '-',
      rate((s) => s.counters?.instructions, (x) => (x / 1e6).toFixed(1)),
      // Traps (VM exits on KVM) by reason: port I/O, MMIO; halts are the last column.
      rate((s) => s.counters?.exits.pio, (x) => x.toFixed(0)),
      rate((s) => s.counters?.exits.mmio, (x) => x.toFixed(0)),
      rate((s) => s.counters?.disk.readBytes, bytes),
      rate((s) => s.counters?.disk.writeBytes, bytes),
      rate((s) => s.counters?.net.rxBytes, bytes),
      rate((s) => s.counters?.net.txBytes, bytes),
      rate((s) => s.counters?.halts, (x) => x.toFixed(0)),
    ]);
  }
  return [...lines, ...table(rows)];
}

export async function runTop(api: ApiClient, options: { once: boolean; intervalS: number }): Promise<void> {
  let before = await takeSample(api);
  const tty = process.stdout.isTTY === true && !options.once;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, options.intervalS * 1000));
    const after = await takeSample(api);
    const text = renderTop(before, after).join('\n');
    // On a terminal: home the cursor and clear the screen (ECMA-48 CUP and ED) so the table updates in place.
    process.stdout.write(tty ? `\x1b[H\x1b[2J${text}\n` : `${text}\n`);
    if (options.once) return;
    if (!tty) process.stdout.write('\n');
    before = after;
  }
}
