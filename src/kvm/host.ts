// Does this host have KVM, and what kind: hardware-assisted (kvm_intel / kvm_amd with vmx / svm), kvm_pvm (a
// pagetable-based hypervisor without VT-x/AMD-V: unmodified guests run through KVM's instruction emulator, so only
// small programs are practical), or none. Unlike a look at /proc alone, this opens /dev/kvm and asks its API version.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { IOCTL, KVM_API_VERSION } from './abi.ts';

export type KvmVerdict = 'hardware' | 'pvm' | 'none';

export interface KvmDetection {
  verdict: KvmVerdict;
  /** One line: why this verdict. */
  reason: string;
  /** /dev/kvm exists. */
  devicePresent: boolean;
  /** /dev/kvm could be opened read-write and answered KVM_GET_API_VERSION. */
  deviceOpenable: boolean;
  apiVersion: number | undefined;
  /** Loaded KVM modules among kvm, kvm_intel, kvm_amd, kvm_pvm (from /sys/module). */
  modules: string[];
  /** vmx (Intel VT-x) or svm (AMD-V) in /proc/cpuinfo's flags. */
  cpuFlag: 'vmx' | 'svm' | undefined;
}

export interface HostProbe {
  exists(path: string): boolean;
  readText(path: string): string;
  /** Open /dev/kvm and return its API version; throws if it cannot. */
  apiVersion(path: string): number;
}

const realProbe: HostProbe = {
  exists: (p) => fs.existsSync(p),
  readText: (p) => {
    try {
      return fs.readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  },
  apiVersion: (p) => apiVersionOf(p),
};

// koffi is loaded on the first probe, not with this module: every CLI command imports this module (src/cli/host.ts,
// for `run`'s engine choice and `doctor`), and koffi with the KVM wrappers of ./kvm.ts cost about 20 ms of CPU per
// process start that --help, `list` and the other daemon calls never use (bench/startup.ts). Hence a bare ioctl here
// rather than Kvm.open, which needs them (the messages name the call and errno as KvmError's do).
const requireCommonJs = createRequire(import.meta.url);
let ioctlInt: ((fd: number, request: number, arg: number) => number) | undefined;

/** Open `path` read-write, ask KVM_GET_API_VERSION (it must be 12: the only stable KVM ABI), close it. */
function apiVersionOf(path: string): number {
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDWR);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`open(${path}) failed: ${err.code} (errno ${-(err.errno ?? 0)})`);
  }
  try {
    const koffi = requireCommonJs('koffi') as typeof import('koffi');
    ioctlInt ??= koffi.load('libc.so.6').func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']) as (fd: number, request: number, arg: number) => number;
    const version = ioctlInt(fd, IOCTL.KVM_GET_API_VERSION, 0);
    if (version < 0) {
      const errno = koffi.errno();
      const name = Object.entries(os.constants.errno).find(([, value]) => value === errno)?.[0] ?? `E${errno}`;
      throw new Error(`KVM_GET_API_VERSION failed: ${name} (errno ${errno})`);
    }
    if (version !== KVM_API_VERSION) throw new Error(`KVM_GET_API_VERSION: API version ${version}, expected ${KVM_API_VERSION}`);
    return version;
  } finally {
    fs.closeSync(fd);
  }
}

const MODULES = ['kvm', 'kvm_intel', 'kvm_amd', 'kvm_pvm'];

function cpuFlag(cpuinfo: string): 'vmx' | 'svm' | undefined {
  const line = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '';
  const flags = new Set(line.trim().split(/\s+/));
  return flags.has('vmx') ? 'vmx' : flags.has('svm') ? 'svm' : undefined;
}

/** Inspect /dev/kvm, /sys/module and /proc/cpuinfo (through `probe`, replaceable in tests). */
export function detectKvm(probe: HostProbe = realProbe, devicePath = '/dev/kvm'): KvmDetection {
  const modules = MODULES.filter((m) => probe.exists(`/sys/module/${m}`));
  const flag = cpuFlag(probe.readText('/proc/cpuinfo'));
  const devicePresent = probe.exists(devicePath);
  let apiVersion: number | undefined;
  let openError = '';
  if (devicePresent) {
    try {
      apiVersion = probe.apiVersion(devicePath);
    } catch (e) {
      openError = (e as Error).message;
    }
  }
  const base = { devicePresent, deviceOpenable: apiVersion !== undefined, apiVersion, modules, cpuFlag: flag };
  const none = (reason: string): KvmDetection => ({ ...base, verdict: 'none', reason });
  if (!devicePresent) {
    return none(flag ? `${devicePath} does not exist (the CPU has ${flag}: load kvm_${flag === 'vmx' ? 'intel' : 'amd'})` : `${devicePath} does not exist`);
  }
  if (apiVersion === undefined) return none(`${devicePath} cannot be used: ${openError}`);
  if (modules.includes('kvm_pvm')) {
    return { ...base, verdict: 'pvm', reason: `${devicePath} is kvm_pvm (no VT-x/AMD-V): unmodified guests run in KVM's instruction emulator, small programs only` };
  }
  const vendor = modules.find((m) => m === 'kvm_intel' || m === 'kvm_amd');
  if (vendor && flag) return { ...base, verdict: 'hardware', reason: `${vendor} with ${flag}, KVM API ${apiVersion}` };
  if (vendor) return { ...base, verdict: 'hardware', reason: `${vendor} loaded (no vmx/svm flag visible in /proc/cpuinfo), KVM API ${apiVersion}` };
  return none(`${devicePath} answers (API ${apiVersion}) but neither kvm_intel, kvm_amd nor kvm_pvm is loaded`);
}
