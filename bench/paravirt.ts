// bench/paravirt (issue 5): the same guest output through an emulated device and a paravirtual one — 1 MiB of text
// written with dd to the 16550A UART (/dev/ttyS0, a trap per register access) and to virtio-console (/dev/hvc0, a
// virtqueue: one notification per buffer) — in one boot of the default guest on ringzero's soft engine, with QEMU
// TCG (q35, the same two devices: its 16550A and virtio-serial-pci + virtconsole) as the reference.
//
// Per device: bytes per second (host time between console markers, bench/support/session.ts) and, for ringzero,
// traps into the device model per KiB: the port-I/O and MMIO accesses the machine's buses count
// (src/devices/bus.ts, read before and after through the control socket's {"cmd":"stats"}). On the soft engine a
// "trap" is a call from the CPU into a device model, not a VM exit; the LAPIC is not on those buses. A `sleep 1` in
// the same guest gives the background rate (timer and console traffic) to set the figures against. QEMU's counts
// are not visible from outside, so only its bytes per second are compared.
//
// Second half, the engines themselves (bench/support/paravirt-programs.ts): a tiny 64-bit guest program writes the
// same text to the same UART model (polled: LSR then THR per byte) and to the same virtio-console (one 4 KiB
// descriptor per notification), with no kernel in between, on the soft engine and on the KVM engine when /dev/kvm
// works; on KVM each counted access is a VM exit. On kvm_pvm (this kind of host: no VT-x/AMD-V) every guest
// instruction goes through KVM's instruction emulator, so its bytes per second say little about hardware KVM;
// the exits per KiB are the same as they would be there.
//
//   node --import tsx bench/paravirt.ts [--runs 3] [--kib 1024] [--program-kib 64] [--skip-boot]
//
// The text is 64-byte lines; both ttys expand LF to CR LF (OPOST|ONLCR), so each device moves 65/64 of the payload.
// The shell stays on ttyS0 (console=ttyS0) while hvc0 is a second console device. Ends with one JSON line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { controlRequest } from '../src/vmm/control.ts';
import { detectKvm } from '../src/kvm/host.ts';
import { runPrograms, type ProgramResults } from './support/paravirt-programs.ts';
import { median, onCleanup, positiveInt, printTable, qemuPresent, qemuTcgArgs, requireImage, benchArgs } from './support/common.ts';
import { BenchGuest } from './support/session.ts';

const { values } = benchArgs(import.meta.url, {
  options: {
    runs: { type: 'string', default: '3' },
    kib: { type: 'string', default: '1024' },
    'program-kib': { type: 'string', default: '64' },
    'skip-boot': { type: 'boolean', default: false },
    memory: { type: 'string', default: '256M' },
    timeout: { type: 'string', default: '900' },
  },
});
const runs = positiveInt('runs', values.runs);
const kib = positiveInt('kib', values.kib);
const programKib = positiveInt('program-kib', values['program-kib']);
if (programKib % 4 !== 0) {
  console.error('--program-kib: a multiple of 4 (the virtio program sends 4 KiB buffers)');
  process.exit(2);
}
const timeoutMs = positiveInt('timeout', values.timeout) * 1000;
const image = requireImage('paravirt');
const qemu = qemuPresent();
if (!qemu) console.error('bench/paravirt: qemu-system-x86_64 not found (apt-get install qemu-system-x86): ringzero alone');

// console=ttyS0 keeps the shell on the UART; not spelt as the default command line, so `--console virtio` does not
// move the console to hvc0 (src/cli/run-config.ts).
const CMDLINE = 'panic=-1 console=ttyS0 cryptomgr.notests';
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ringzero-bench-paravirt-'));
onCleanup(() => fs.rmSync(work, { recursive: true, force: true }));
const LINE = 'ringzero bench/paravirt: the same 64-byte line for both devices';
if (LINE.length !== 63) throw new Error(`line is ${LINE.length} bytes`);
const BYTES = kib * 1024;

const DEVICES = [
  { key: 'uart', label: '16550A UART (ttyS0)', path: '/dev/ttyS0' },
  { key: 'virtio', label: 'virtio-console (hvc0)', path: '/dev/hvc0' },
] as const;
type DeviceKey = typeof DEVICES[number]['key'];

interface Sample { bps: number; pio?: number; mmio?: number }
const samples: Record<string, Record<DeviceKey, Sample[]>> = {};
const background: { pioPerS: number; mmioPerS: number }[] = [];

interface Counters { pio: number; mmio: number }
async function counters(socket: string): Promise<Counters> {
  const r = await controlRequest(socket, { cmd: 'stats' }, 10_000);
  if (r.ok !== true) throw new Error(`control stats: ${JSON.stringify(r)}`);
  const exits = r.exits as Counters;
  return { pio: exits.pio, mmio: exits.mmio };
}

async function measure(vmm: 'ringzero' | 'qemu', run: number): Promise<void> {
  const socket = path.join(work, `control-${run}.sock`);
  const hvcFile = path.join(work, `hvc0-${run}.out`);
  const guest = vmm === 'ringzero'
    ? BenchGuest.ringzero('ringzero soft', ['--engine', 'soft', '--memory', values.memory!, '--cmdline', CMDLINE, '--console', 'virtio', '--control-socket', socket])
    : BenchGuest.qemu('qemu -accel tcg', qemuTcgArgs({ ...image, cmdline: CMDLINE, cpus: 1, memory: values.memory! },
      ['-chardev', `file,id=hvc,path=${hvcFile}`, '-device', 'virtio-serial-pci', '-device', 'virtconsole,chardev=hvc']));
  const parts: string[] = [];
  try {
    const promptMs = await guest.waitForShell();
    console.error(`  ${guest.label}: at the prompt after ${(promptMs / 1000).toFixed(1)} s`);
    const ok = await guest.ask('PREP', `yes '${LINE}' | head -c ${BYTES} > /tmp/pv.txt; wc -c < /tmp/pv.txt; ls /dev/hvc0`, timeoutMs);
    if (!ok.startsWith(String(BYTES)) || !ok.includes('/dev/hvc0')) throw new Error(`${vmm}: preparing the text: ${ok}`);
    if (vmm === 'ringzero') {
      const c0 = await counters(socket);
      const idle = await guest.timed('idle', 'sleep 1', 60_000);
      const c1 = await counters(socket);
      background.push({ pioPerS: (c1.pio - c0.pio) / (idle.hostMs / 1000), mmioPerS: (c1.mmio - c0.mmio) / (idle.hostMs / 1000) });
    }
    for (const d of DEVICES) {
      const before = vmm === 'ringzero' ? await counters(socket) : undefined;
      const hvcBefore = fs.existsSync(hvcFile) ? fs.statSync(hvcFile).size : 0;
      const r = await guest.timed(`${d.key}${vmm}`, `dd if=/tmp/pv.txt of=${d.path} bs=4k 2>/dev/null`, timeoutMs);
      if (r.status !== 0) throw new Error(`${vmm}: dd to ${d.path} failed (${r.status})`);
      // What reached the host: the console stream between the markers (ringzero: both devices; QEMU: the UART),
      // QEMU's hvc0 file otherwise. ONLCR makes it 65/64 of the payload.
      const arrived = vmm === 'qemu' && d.key === 'virtio' ? fs.statSync(hvcFile).size - hvcBefore : Buffer.byteLength(r.output, 'latin1');
      if (arrived < BYTES) throw new Error(`${vmm}: only ${arrived} of ${BYTES} bytes written to ${d.path} reached the host`);
      const s: Sample = { bps: BYTES / (r.hostMs / 1000) };
      if (before) {
        const after = await counters(socket);
        s.pio = (after.pio - before.pio) / kib;
        s.mmio = (after.mmio - before.mmio) / kib;
      }
      ((samples[vmm] ??= { uart: [], virtio: [] })[d.key]).push(s);
      console.error(`  ${guest.label}: ${d.key} ${(s.bps / 1024).toFixed(0)} KiB/s`);
      parts.push(`${d.key} ${(s.bps / 1024).toFixed(0)} KiB/s${s.pio !== undefined ? ` (${s.pio.toFixed(1)} pio + ${s.mmio!.toFixed(2)} mmio traps/KiB)` : ''}`);
    }
    await guest.poweroff();
    console.log(`run ${run}: ${guest.label}: ${parts.join(', ')}`);
  } finally {
    guest.close();
  }
}

console.log(`bench/paravirt: ${runs} run(s), ${kib} KiB through ttyS0 and hvc0 of the booted guest; ${programKib} KiB from the guest programs`);
for (let i = 1; i <= runs && !values['skip-boot']; i++) {
  await measure('ringzero', i);
  if (qemu) await measure('qemu', i);
}

// The engines with the guest programs.
const kvm = detectKvm();
const programEngines: ('soft' | 'kvm')[] = kvm.verdict === 'none' ? ['soft'] : ['soft', 'kvm'];
if (kvm.verdict === 'none') console.log(`KVM engine: not measured: ${kvm.reason}`);
const programRuns: ProgramResults[] = [];
for (let i = 1; i <= runs; i++) {
  for (const e of programEngines) {
    const r = await runPrograms(e, programKib * 1024);
    programRuns.push(r);
    console.log(`run ${i}: program on ${e}: uart ${(r.uart.bytesPerS / 1024).toFixed(0)} KiB/s (${r.uart.pioPerKiB} pio/KiB), virtio ${(r.virtio.bytesPerS / 1024).toFixed(0)} KiB/s (${r.virtio.mmioPerKiB} mmio/KiB)`);
  }
}

const figures: Record<string, number | string> = { bench: 'paravirt', engine: 'soft', runs, kib };
const rows: string[][] = [];
const med = (xs: Sample[] | undefined, f: (s: Sample) => number | undefined) => {
  const v = (xs ?? []).map(f).filter((x): x is number => x !== undefined);
  return v.length ? median(v) : undefined;
};
for (const d of DEVICES) {
  const ours = samples.ringzero?.[d.key];
  const bps = med(ours, (s) => s.bps);
  const pio = med(ours, (s) => s.pio);
  const mmio = med(ours, (s) => s.mmio);
  const qbps = med(samples.qemu?.[d.key], (s) => s.bps);
  if (bps !== undefined) figures[`ringzero_${d.key}_bytes_per_s`] = Math.round(bps);
  if (pio !== undefined) figures[`ringzero_${d.key}_pio_per_kib`] = Number(pio.toFixed(2));
  if (mmio !== undefined) figures[`ringzero_${d.key}_mmio_per_kib`] = Number(mmio.toFixed(3));
  if (qbps !== undefined) figures[`qemu_tcg_${d.key}_bytes_per_s`] = Math.round(qbps);
  if (bps !== undefined && qbps !== undefined) figures[`${d.key}_ratio`] = Number((bps / qbps).toFixed(3));
  rows.push([d.label, bps === undefined ? '-' : `${(bps / 1024).toFixed(0)}`, pio === undefined ? '-' : (pio + mmio!).toFixed(2),
    pio === undefined ? '-' : pio.toFixed(2), mmio === undefined ? '-' : mmio.toFixed(3), qbps === undefined ? '-' : `${(qbps / 1024).toFixed(0)}`,
    bps !== undefined && qbps !== undefined ? `${(bps / qbps).toFixed(2)}x` : 'n/a']);
}
const uart = med(samples.ringzero?.uart, (s) => s.bps);
const virtio = med(samples.ringzero?.virtio, (s) => s.bps);
if (uart !== undefined && virtio !== undefined) figures.ringzero_virtio_over_uart = Number((virtio / uart).toFixed(2));
const quart = med(samples.qemu?.uart, (s) => s.bps);
const qvirtio = med(samples.qemu?.virtio, (s) => s.bps);
if (quart !== undefined && qvirtio !== undefined) figures.qemu_tcg_virtio_over_uart = Number((qvirtio / quart).toFixed(2));
if (background.length) {
  figures.ringzero_background_pio_per_s = Number(median(background.map((b) => b.pioPerS)).toFixed(1));
  figures.ringzero_background_mmio_per_s = Number(median(background.map((b) => b.mmioPerS)).toFixed(1));
}
console.log(`\nmedians; traps = device-model calls counted by ringzero's buses per KiB written (soft engine, ${runs} run(s)):`);
printTable(['device', 'ringzero KiB/s', 'traps/KiB', 'pio/KiB', 'mmio/KiB', 'qemu tcg KiB/s', 'ratio'], rows);
if (uart !== undefined && virtio !== undefined) console.log(`virtio-console over the UART: ${(virtio / uart).toFixed(1)}x on ringzero${quart && qvirtio ? `, ${(qvirtio / quart).toFixed(1)}x on QEMU TCG` : ''}`);
if (programRuns.length) {
  console.log(`\nguest programs, ${programKib} KiB each (medians; traps are VM exits on KVM${kvm.verdict === 'pvm' ? '; kvm_pvm emulates every instruction' : ''}):`);
  const prow: string[][] = [];
  for (const e of programEngines) {
    const mine = programRuns.filter((r) => r.engine === e);
    for (const d of DEVICES) {
      const bps = median(mine.map((r) => r[d.key].bytesPerS));
      const traps = median(mine.map((r) => r[d.key].pioPerKiB + r[d.key].mmioPerKiB));
      const perCpu = median(mine.map((r) => r[d.key].bytesPerCpuS));
      figures[`program_${e}_${d.key}_bytes_per_s`] = Math.round(bps);
      figures[`program_${e}_${d.key}_bytes_per_cpu_s`] = Math.round(perCpu);
      figures[`program_${e}_${d.key}_traps_per_kib`] = Number(traps.toFixed(3));
      prow.push([`${e}: ${d.label}`, (bps / 1024).toFixed(0), (perCpu / 1024).toFixed(0), traps.toFixed(2)]);
    }
    const over = median(mine.map((r) => r.virtio.bytesPerS)) / median(mine.map((r) => r.uart.bytesPerS));
    figures[`program_${e}_virtio_over_uart`] = Number(over.toFixed(1));
  }
  printTable(['engine: device', 'KiB/s', 'KiB/CPU-s', 'traps/KiB'], prow);
  if (kvm.verdict !== 'none') figures.kvm = kvm.verdict;
}
if (background.length) console.log(`background while idle (sleep 1): ${figures.ringzero_background_pio_per_s} pio/s, ${figures.ringzero_background_mmio_per_s} mmio/s`);
console.log(JSON.stringify(figures));
