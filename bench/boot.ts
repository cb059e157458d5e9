// bench/boot: boot the default guest to its shell, run one command, power off — on ringzero's software
// engine against QEMU's binary translator (`qemu-system-x86_64 -accel tcg`), or with `--engine kvm` on ringzero's
// KVM engine against `qemu-system-x86_64 -accel kvm -M microvm` (hardware KVM only: on kvm_pvm or without /dev/kvm
// it says so and exits 2). Same kernel, initramfs and command line, N runs each, alternating. Prints the medians
// and the ratio, then one JSON line.
//
//   node --import tsx bench/boot.ts [--runs 5] [--cpus 1] [--memory 256M] [--engine soft|kvm]
//
// The machine is noisy: only the ratio measured in the same run means anything.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findDefaultImage, GUEST_PROMPT } from '../src/image/build.ts';
import { DEFAULT_CMDLINE } from '../src/vmm/config.ts';
import { detectKvm } from '../src/kvm/host.ts';
import { median, qemuTcgArgs, benchArgs, requireFreshBundle } from './support/common.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = benchArgs(import.meta.url, {
  options: {
    runs: { type: 'string', default: '5' },
    cpus: { type: 'string', default: '1' },
    memory: { type: 'string', default: '256M' },
    engine: { type: 'string', default: 'soft' },
    timeout: { type: 'string', default: '900' },
  },
});
const runs = Number(values.runs);
const image = findDefaultImage();
if (!image) {
  console.error('bench/boot: no default image; run `bin/ringzero image build` first');
  process.exit(2);
}
/** The same command line for both: ringzero's default (see src/vmm/config.ts). */
const CMDLINE = DEFAULT_CMDLINE;
const onKvm = values.engine === 'kvm';
if (onKvm) {
  const kvm = detectKvm();
  if (kvm.verdict !== 'hardware') {
    console.error(`bench/boot: --engine kvm needs hardware KVM: ${kvm.reason}`);
    process.exit(2);
  }
}
/** The reference: QEMU's TCG against the soft engine; QEMU on KVM with its minimal machine against the KVM engine. */
const reference = onKvm ? 'qemu-kvm-microvm' : 'qemu-tcg';
const referenceArgs = (cpus: string, memory: string): string[] => onKvm
  ? ['-accel', 'kvm', '-cpu', 'host', '-M', 'microvm', '-smp', cpus, '-m', memory, '-nographic', '-no-reboot',
    '-kernel', image!.kernel, '-initrd', image!.initrd, '-append', CMDLINE]
  : qemuTcgArgs({ kernel: image!.kernel, initrd: image!.initrd, cmdline: CMDLINE, cpus, memory });
const COMMAND = 'uname -r';

interface Sample { total: number; toPrompt: number }

/** Run a VM command line, answer the prompt with one command and `poweroff -f`, time it. */
function bootOnce(cmd: string, args: string[]): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let out = '';
    let state: 'boot' | 'command' | 'poweroff' = 'boot';
    let toPrompt = 0;
    const timer = setTimeout(() => {
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
      reject(new Error(`${cmd}: timed out; last output:\n${out.slice(-2000)}`));
    }, Number(values.timeout) * 1000);
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (state === 'boot' && out.includes(GUEST_PROMPT)) {
        toPrompt = performance.now() - t0;
        state = 'command';
        child.stdin.write(`${COMMAND}; echo BENCH-DONE\n`);
      } else if (state === 'command' && /\nBENCH-DONE/.test(out)) {
        state = 'poweroff';
        child.stdin.write('poweroff -f\n');
      }
    });
    child.stderr.resume();
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (state !== 'poweroff') return reject(new Error(`${cmd} exited (${code}) before the command ran:\n${out.slice(-2000)}`));
      resolve({ total: performance.now() - t0, toPrompt });
    });
  });
}

const qemu = spawnSync('qemu-system-x86_64', ['--version']).status === 0;
if (!qemu) console.error('bench/boot: qemu-system-x86_64 not found (apt-get install qemu-system-x86): ringzero alone');

const ours: Sample[] = [];
const theirs: Sample[] = [];
requireFreshBundle(path.join(root, 'bin', 'ringzero'));
for (let i = 0; i < runs; i++) {
  ours.push(await bootOnce(path.join(root, 'bin', 'ringzero'), ['run', '--engine', values.engine!, '--cpus', values.cpus!, '--memory', values.memory!, '--cmdline', CMDLINE]));
  console.log(`run ${i + 1}: ringzero ${(ours[i].total / 1000).toFixed(2)} s (prompt at ${(ours[i].toPrompt / 1000).toFixed(2)} s)`);
  if (qemu) {
    theirs.push(await bootOnce('qemu-system-x86_64', referenceArgs(values.cpus!, values.memory!)));
    console.log(`run ${i + 1}: ${reference} ${(theirs[i].total / 1000).toFixed(2)} s (prompt at ${(theirs[i].toPrompt / 1000).toFixed(2)} s)`);
  }
}
const ringzeroS = median(ours.map((s) => s.total)) / 1000;
const ringzeroPromptS = median(ours.map((s) => s.toPrompt)) / 1000;
const figures: Record<string, number | string> = { bench: 'boot', engine: values.engine!, runs, ringzero_s: ringzeroS, ringzero_prompt_s: ringzeroPromptS };
console.log(`ringzero (${values.engine}): median ${ringzeroS.toFixed(2)} s (prompt ${ringzeroPromptS.toFixed(2)} s)`);
if (qemu) {
  const qemuS = median(theirs.map((s) => s.total)) / 1000;
  const qemuPromptS = median(theirs.map((s) => s.toPrompt)) / 1000;
  const key = reference.replace(/-/g, '_');
  figures[`${key}_s`] = qemuS;
  figures[`${key}_prompt_s`] = qemuPromptS;
  figures.ratio = ringzeroS / qemuS;
  console.log(`${reference}: median ${qemuS.toFixed(2)} s (prompt ${qemuPromptS.toFixed(2)} s)`);
  console.log(`ratio ringzero/${reference}: ${(ringzeroS / qemuS).toFixed(2)}x (goal: ${onKvm ? '<= 1.0x (issue 3)' : '<= 2x (issue 4; issue 2 asked <= 10x)'})`);
}
console.log(JSON.stringify(figures));
