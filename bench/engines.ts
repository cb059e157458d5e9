// bench/engines (issue 4): the software engine with its block cache/translation (ringzero's default), without it
// (`--no-translate`), and QEMU's binary translator (`qemu-system-x86_64 -accel tcg`, q35) on the same kernel,
// initramfs, memory size and command line, in one run. Workloads:
//   boot     boot to the shell + `uname -r` + `poweroff -f` (as bench/boot, from spawn to the VMM's exit; measured
//            in the same session as the others: time to the prompt + the command + poweroff to exit)
//   md5      dd if=/dev/zero bs=1M count=64 | md5sum             (CPU-bound)
//   ash      an ash loop of 200k iterations                     (shell-heavy)
//   syscall  dd if=/dev/zero of=/dev/null bs=1 count=200000     (400k small read/write system calls)
// md5, ash and syscall are timed host-side between console markers printed around each command (see
// bench/support/session.ts), so boot time is excluded; the guest's own /proc/uptime delta is kept as a check.
// Also reported: the CPU seconds the VMM process used (all threads; boot: from spawn to the command's answer,
// poweroff excluded), which a host shared with other work disturbs much less than wall time.
// Each session boots once and runs the workloads in order; runs alternate between the VMMs. Prints medians and
// each ratio against TCG, then one JSON line.
//
//   node --import tsx bench/engines.ts [--runs 3] [--only md5,ash,qemu,...] [--cpus 1] [--memory 256M] [--timeout 1800] [--help]
//
// --only takes workload names (boot, md5, ash, syscall) and/or VMM names (translate, interp, qemu); each list left
// empty means all of it. The machine is noisy: only the ratios measured in the same run mean anything.
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { CMDLINE, median, positiveInt, printTable, qemuPresent, qemuTcgArgs, ratioText, requireImage } from './support/common.ts';
import { BenchGuest } from './support/session.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    only: { type: 'string', default: '' },
    cpus: { type: 'string', default: '1' },
    memory: { type: 'string', default: '256M' },
    timeout: { type: 'string', default: '1800' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(`usage: node --import tsx bench/engines.ts [--runs N] [--only LIST] [--cpus N] [--memory SIZE] [--timeout SECONDS]

Boots the default image on ringzero's soft engine with translation ('translate'), without it ('interp',
--no-translate) and on QEMU TCG ('qemu'), and times in each session: boot + uname + poweroff ('boot'),
dd 64 MiB | md5sum ('md5'), an ash loop of 200k iterations ('ash'), 200k one-byte dd reads/writes ('syscall').
Prints medians, CPU seconds and each ratio against TCG, then one JSON line.

  --runs N        sessions per VMM, alternating (default 3)
  --only LIST     comma-separated workloads (boot, md5, ash, syscall) and/or VMMs (translate, interp, qemu);
                  an empty list of either kind means all of it. The interpreter is the slow one: --only
                  translate,qemu skips it
  --cpus N        vCPUs (default 1)
  --memory SIZE   guest memory (default 256M)
  --timeout S     per-workload timeout in seconds (default 1800)`);
  process.exit(0);
}
const runs = positiveInt('runs', values.runs);
const cpus = positiveInt('cpus', values.cpus);
const timeoutMs = positiveInt('timeout', values.timeout) * 1000;
const image = requireImage('engines');

const MD5_ZEROS_64M = createHash('md5').update(Buffer.alloc(64 << 20)).digest('hex');

interface Workload { key: string; what: string; command: string; check(out: string): boolean }
const WORKLOADS: Workload[] = [
  { key: 'md5', what: 'dd 64 MiB | md5sum', command: 'dd if=/dev/zero bs=1M count=64 2>/dev/null | md5sum', check: (o) => o.includes(MD5_ZEROS_64M) },
  { key: 'ash', what: 'ash loop 200k', command: 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo $i', check: (o) => /(^|\n)200000\n/.test(o) },
  { key: 'syscall', what: 'dd bs=1 x 200k', command: 'dd if=/dev/zero of=/dev/null bs=1 count=200000', check: (o) => /200000\+0 records out/.test(o) },
];

interface Vmm { key: string; label: string; start(): BenchGuest }
const ringzeroArgs = ['--engine', 'soft', '--cpus', String(cpus), '--memory', values.memory!, '--cmdline', CMDLINE];
const VMMS: Vmm[] = [
  { key: 'translate', label: 'ringzero soft', start: () => BenchGuest.ringzero('ringzero soft', ringzeroArgs) },
  { key: 'interp', label: 'ringzero --no-translate', start: () => BenchGuest.ringzero('ringzero --no-translate', [...ringzeroArgs, '--no-translate']) },
  { key: 'qemu', label: 'qemu -accel tcg', start: () => BenchGuest.qemu('qemu -accel tcg', qemuTcgArgs({ ...image, cmdline: CMDLINE, cpus, memory: values.memory! })) },
];

const only = values.only!.split(',').map((s) => s.trim()).filter(Boolean);
const known = new Set(['boot', ...WORKLOADS.map((w) => w.key), ...VMMS.map((v) => v.key)]);
for (const o of only) {
  if (!known.has(o)) {
    console.error(`--only: unknown '${o}': use ${[...known].join(', ')}`);
    process.exit(2);
  }
}
const onlyWorkloads = only.filter((o) => o === 'boot' || WORKLOADS.some((w) => w.key === o));
const onlyVmms = only.filter((o) => VMMS.some((v) => v.key === o));
const wantBoot = onlyWorkloads.length === 0 || onlyWorkloads.includes('boot');
const workloads = WORKLOADS.filter((w) => onlyWorkloads.length === 0 || onlyWorkloads.includes(w.key));
let vmms = VMMS.filter((v) => onlyVmms.length === 0 || onlyVmms.includes(v.key));
if (!qemuPresent()) {
  console.error('bench/engines: qemu-system-x86_64 not found (apt-get install qemu-system-x86): no ratios');
  vmms = vmms.filter((v) => v.key !== 'qemu');
}

/** samples[vmm][workload] = seconds */
const samples: Record<string, Record<string, number[]>> = {};
const guestSamples: Record<string, Record<string, number[]>> = {};
const cpuSamples: Record<string, Record<string, number[]>> = {};
const add = (table: typeof samples, vmm: string, workload: string, s: number) => {
  ((table[vmm] ??= {})[workload] ??= []).push(s);
};

async function session(vmm: Vmm, run: number): Promise<void> {
  const guest = vmm.start();
  try {
    const promptMs = await guest.waitForShell();
    const promptCpu = guest.cpuSeconds();
    console.error(`  ${vmm.label}: at the prompt after ${(promptMs / 1000).toFixed(1)} s`);
    const uname = await guest.timed('uname', 'uname -r', 60_000);
    if (!/cloud-amd64/.test(uname.output)) throw new Error(`${vmm.label}: uname -r said ${JSON.stringify(uname.output)}`);
    const parts: string[] = [`prompt ${(promptMs / 1000).toFixed(2)} s`];
    for (const w of workloads) {
      console.error(`  ${vmm.label}: ${w.key} ...`);
      const r = await guest.timed(w.key, w.command, timeoutMs);
      if (r.status !== 0 || !w.check(r.output)) throw new Error(`${vmm.label}: ${w.key} failed (status ${r.status}): ${r.output.slice(-500)}`);
      add(samples, vmm.key, w.key, r.hostMs / 1000);
      add(guestSamples, vmm.key, w.key, r.guestS);
      add(cpuSamples, vmm.key, w.key, r.cpuS);
      parts.push(`${w.key} ${(r.hostMs / 1000).toFixed(2)} s (guest ${r.guestS.toFixed(2)}, cpu ${r.cpuS.toFixed(2)})`);
    }
    const offMs = await guest.poweroff();
    if (wantBoot) {
      const total = (promptMs + uname.hostMs + offMs) / 1000;
      add(samples, vmm.key, 'boot', total);
      add(cpuSamples, vmm.key, 'boot', promptCpu + uname.cpuS);
      parts.unshift(`boot ${total.toFixed(2)} s`);
    }
    console.log(`run ${run}: ${vmm.label}: ${parts.join(', ')}`);
  } finally {
    guest.close();
  }
}

console.log(`bench/engines: ${runs} run(s) of [${[...(wantBoot ? ['boot'] : []), ...workloads.map((w) => w.key)].join(', ')}] on ${vmms.map((v) => v.label).join(', ')}; ${cpus} vCPU, ${values.memory}`);
for (let i = 1; i <= runs; i++) {
  for (const v of vmms) await session(v, i);
}

const keys = [...(wantBoot ? [{ key: 'boot', what: 'boot+cmd+poweroff' }] : []), ...workloads];
const figures: Record<string, number | string> = { bench: 'engines', runs, cpus, memory: values.memory! };
const rows: string[][] = [];
const cpuRows: string[][] = [];
for (const w of keys) {
  const cpuQemu = cpuSamples.qemu?.[w.key] ? median(cpuSamples.qemu[w.key]) : undefined;
  const cpuRow = [`${w.key} (${w.what})`];
  for (const v of vmms) {
    const c = cpuSamples[v.key]?.[w.key] ? median(cpuSamples[v.key][w.key]) : undefined;
    if (c !== undefined) figures[`${v.key}_${w.key}_cpu_s`] = Number(c.toFixed(3));
    if (v.key !== 'qemu' && c !== undefined && cpuQemu !== undefined) figures[`${v.key}_${w.key}_cpu_ratio`] = Number((c / cpuQemu).toFixed(3));
    cpuRow.push(c === undefined ? '-' : `${c.toFixed(2)} s`);
  }
  for (const v of vmms.filter((x) => x.key !== 'qemu')) cpuRow.push(ratioText(cpuSamples[v.key]?.[w.key] && median(cpuSamples[v.key][w.key]), cpuQemu));
  cpuRows.push(cpuRow);
  const row = [`${w.key} (${w.what})`];
  const qemuS = samples.qemu?.[w.key] ? median(samples.qemu[w.key]) : undefined;
  for (const v of vmms) {
    const xs = samples[v.key]?.[w.key];
    const s = xs ? median(xs) : undefined;
    if (s !== undefined) figures[`${v.key}_${w.key}_s`] = Number(s.toFixed(3));
    const g = guestSamples[v.key]?.[w.key];
    if (g) figures[`${v.key}_${w.key}_guest_s`] = Number(median(g).toFixed(3));
    row.push(s === undefined ? '-' : `${s.toFixed(2)} s`);
    if (v.key !== 'qemu' && s !== undefined && qemuS !== undefined) figures[`${v.key}_${w.key}_ratio`] = Number((s / qemuS).toFixed(3));
  }
  for (const v of vmms.filter((x) => x.key !== 'qemu')) row.push(ratioText(samples[v.key]?.[w.key] && median(samples[v.key][w.key]), qemuS));
  rows.push(row);
}
console.log('\nmedians (host seconds; md5/ash/syscall between console markers) and ratios against QEMU TCG:');
printTable(['workload', ...vmms.map((v) => v.label), ...vmms.filter((v) => v.key !== 'qemu').map((v) => `${v.key}/tcg`)], rows);
console.log('\nCPU seconds of the VMM process (all threads) and ratios against QEMU TCG:');
printTable(['workload', ...vmms.map((v) => v.label), ...vmms.filter((v) => v.key !== 'qemu').map((v) => `${v.key}/tcg`)], cpuRows);
console.log('goal (issue 4): <= 2x TCG on boot, <= 1.5x on the programs; v86 on i386 here: 2.5x boot, 1.7x md5, 1.9x ash');
console.log(JSON.stringify(figures));
