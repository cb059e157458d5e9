// What the host offers for running VMs, and which engine `--engine auto` picks. KVM is judged by detectKvm()
// (src/kvm/host.ts), which opens /dev/kvm and asks its API version besides reading /sys/module and /proc/cpuinfo.
// Hardware KVM shows vmx (Intel VT-x) or svm (AMD-V) in /proc/cpuinfo and a kvm_intel or kvm_amd module. A /dev/kvm
// backed by kvm_pvm (a pagetable-based hypervisor for specially built, deprivileged guests) runs an unmodified
// kernel through KVM's instruction emulator, far slower than our software engine (see the project's notes).
//
// RINGZERO_ALLOW_PVM=1 lets `--engine kvm` (never `auto`) run on kvm_pvm: for testing the KVM path on PVM hosts
// with small guest programs; Linux will not boot there.

import { readFileSync } from 'node:fs';
import { detectKvm, type KvmDetection } from '../kvm/host.ts';

export type KvmDeviceState = 'absent' | 'no-access' | 'usable';

export interface HostInfo {
  cpuModel: string;
  cpuVendor: string;
  logicalCpus: number;
  /** vmx or svm in the cpu flags. */
  virtualizationFlag: 'vmx' | 'svm' | undefined;
  /** The `hypervisor` flag: this host is itself a VM. */
  underHypervisor: boolean;
  kvmDevice: KvmDeviceState;
  /** Which of kvm, kvm_intel, kvm_amd, kvm_pvm are loaded (from /sys/module). */
  kvmModules: string[];
  /** detectKvm()'s full answer (detectHost fills it; hand-made HostInfos may leave it out). */
  kvm?: KvmDetection;
}

/** The environment variable that allows `--engine kvm` on kvm_pvm (for testing the KVM path; Linux will not boot). */
export const ALLOW_PVM_ENV = 'RINGZERO_ALLOW_PVM';

export interface EngineChoiceOptions {
  /** Let `kvm` (never `auto`) run on kvm_pvm. Default: RINGZERO_ALLOW_PVM=1 in the environment. */
  allowPvm?: boolean;
}

import type { EngineRequest } from './validate.ts';
export { ENGINE_REQUESTS, type EngineRequest } from './validate.ts';

export type EngineChoice =
  | { ok: true; engine: 'soft' | 'kvm'; reason: string }
  | { ok: false; error: string };

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Parse the first processor block of /proc/cpuinfo (x86 layout: "key\t: value"). */
export function parseCpuinfo(text: string): Pick<HostInfo, 'cpuModel' | 'cpuVendor' | 'logicalCpus' | 'virtualizationFlag' | 'underHypervisor'> {
  const blocks = text.split(/\n\s*\n/).filter((block) => /^processor\s*:/m.test(block));
  const first = blocks[0] ?? '';
  const field = (name: string): string => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(first)?.[1]?.trim() ?? '';
  const flags = new Set(field('flags').split(/\s+/).filter((flag) => flag !== ''));
  return {
    cpuModel: field('model name') || 'unknown',
    cpuVendor: field('vendor_id') || 'unknown',
    logicalCpus: blocks.length,
    virtualizationFlag: flags.has('vmx') ? 'vmx' : flags.has('svm') ? 'svm' : undefined,
    underHypervisor: flags.has('hypervisor'),
  };
}

export function detectHost(kvm: KvmDetection = detectKvm()): HostInfo {
  const kvmDevice: KvmDeviceState = !kvm.devicePresent ? 'absent' : kvm.deviceOpenable ? 'usable' : 'no-access';
  return { ...parseCpuinfo(readText('/proc/cpuinfo')), kvmDevice, kvmModules: kvm.modules, kvm };
}

/** Why hardware KVM can't be used here, or undefined if it can. */
export function hardwareKvmProblem(host: HostInfo): string | undefined {
  if (host.kvmModules.includes('kvm_pvm')) {
    // A PVM guest can itself have kvm_pvm loaded without a /dev/kvm of its own (no nesting): say which it is.
    if (host.kvmDevice === 'absent') return 'kvm_pvm (PVM, no VT-x/AMD-V) is loaded but there is no /dev/kvm';
    return '/dev/kvm is provided by kvm_pvm (PVM, no VT-x/AMD-V): an unmodified kernel would run in KVM\'s slow '
      + 'instruction emulator';
  }
  if (host.virtualizationFlag === undefined) {
    return `the CPU has no vmx or svm flag${host.underHypervisor ? ' (this host is a VM without nested virtualization)' : ''}`;
  }
  if (host.kvmDevice === 'absent') return '/dev/kvm does not exist (load kvm_intel or kvm_amd)';
  // detectKvm opened the device: its reason names the errno or the API version that was wrong.
  if (host.kvm && host.kvm.verdict === 'none') return host.kvm.reason;
  if (host.kvmDevice === 'no-access') return '/dev/kvm is not readable and writable by this user';
  const vendorModule = host.virtualizationFlag === 'vmx' ? 'kvm_intel' : 'kvm_amd';
  if (!host.kvmModules.includes(vendorModule)) return `${vendorModule} is not loaded`;
  return undefined;
}

/** kvm_pvm with a /dev/kvm that answered (detectKvm's 'pvm' verdict, or the modules and device of a hand-made HostInfo). */
function isUsablePvm(host: HostInfo): boolean {
  if (host.kvm) return host.kvm.verdict === 'pvm';
  return host.kvmModules.includes('kvm_pvm') && host.kvmDevice === 'usable';
}

export function chooseEngine(host: HostInfo, request: EngineRequest, options: EngineChoiceOptions = {}): EngineChoice {
  const problem = hardwareKvmProblem(host);
  const vendorModule = host.virtualizationFlag === 'vmx' ? 'kvm_intel' : 'kvm_amd';
  const allowPvm = options.allowPvm ?? process.env[ALLOW_PVM_ENV] === '1';
  switch (request) {
    case 'soft':
      return { ok: true, engine: 'soft', reason: 'software engine requested' };
    case 'kvm':
      if (problem === undefined) return { ok: true, engine: 'kvm', reason: `hardware KVM (${vendorModule}, ${host.virtualizationFlag})` };
      if (allowPvm && isUsablePvm(host)) {
        return { ok: true, engine: 'kvm', reason: `kvm_pvm allowed by ${ALLOW_PVM_ENV}=1: for testing the KVM path on PVM hosts; Linux will not boot` };
      }
      return { ok: false, error: `cannot use the KVM engine: ${problem}; use --engine soft` };
    case 'auto':
      return problem === undefined
        ? { ok: true, engine: 'kvm', reason: `hardware KVM is usable (${vendorModule}, ${host.virtualizationFlag})` }
        : { ok: true, engine: 'soft', reason: problem };
  }
}

/** The lines `ringzero doctor` prints. */
export function describeHost(host: HostInfo): string[] {
  const auto = chooseEngine(host, 'auto');
  const kvmDevice = {
    absent: 'absent',
    'no-access': 'present, but not readable and writable by this user',
    usable: 'present, readable and writable',
  }[host.kvmDevice];
  return [
    `cpu: ${host.cpuModel} (${host.cpuVendor}), ${host.logicalCpus} logical cpu${host.logicalCpus === 1 ? '' : 's'}`,
    `running under a hypervisor: ${host.underHypervisor ? 'yes' : 'no'}`,
    `virtualization extensions: ${host.virtualizationFlag ?? 'none (no vmx or svm in /proc/cpuinfo)'}`,
    `/dev/kvm: ${kvmDevice}`,
    `kvm modules loaded: ${host.kvmModules.length > 0 ? host.kvmModules.join(', ') : 'none'}`,
    ...(host.kvm ? [`kvm: ${host.kvm.verdict === 'none' ? 'not usable' : host.kvm.verdict}, ${host.kvm.reason}`] : []),
    `engine auto picks: ${auto.ok ? `${auto.engine}, because ${auto.reason}` : auto.error}`,
  ];
}
