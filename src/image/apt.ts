// Where the default image's packages come from: Debian's apt, through its ordinary command-line clients.
// This file is the image builder's only contact with the network (apt-get update / apt-get download);
// everything else works on the downloaded .deb files, so tests can stand in their own PackageSource.

import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The meta-package that always points at the current bookworm cloud kernel. */
export const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
export const BUSYBOX_PACKAGE = 'busybox-static';

export interface PackageRef {
  name: string;
  version: string;
}

export interface ResolvedPackages {
  /** The real kernel package, e.g. linux-image-6.1.0-56-cloud-amd64. */
  kernel: PackageRef;
  busybox: PackageRef;
}

export interface PackageSource {
  /** Which package versions a build would use (no download). */
  resolve(): Promise<ResolvedPackages>;
  /** Put the .deb files of `packages` into `dir`; returns their paths. */
  download(packages: ResolvedPackages, dir: string): Promise<string[]>;
}

export class ImageBuildError extends Error {}

async function run(command: string, args: string[], options: { cwd?: string } = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, {
      cwd: options.cwd,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, LC_ALL: 'C' },
    });
    return stdout;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') {
      throw new ImageBuildError(`${command} not found: the default image is built from Debian bookworm packages with apt`);
    }
    const detail = (failure.stderr ?? '').trim().split('\n').filter((line) => line !== '').pop() ?? failure.message;
    throw new ImageBuildError(`${command} ${args.join(' ')} failed: ${detail}`);
  }
}

/** Candidate version per package in `apt-cache policy` output (packages without a candidate are left out). */
export function parsePolicyCandidates(policy: string): Map<string, string> {
  const versions = new Map<string, string>();
  let current: string | undefined;
  for (const line of policy.split('\n')) {
    const section = /^(\S+):$/.exec(line);
    if (section !== null) current = section[1];
    const candidate = /^\s+Candidate:\s*(\S+)/.exec(line);
    if (candidate !== null && current !== undefined && candidate[1] !== '(none)') versions.set(current, candidate[1]);
  }
  return versions;
}

/** The candidate versions apt would install, from one `apt-cache policy` call (reads local lists only). */
async function candidateVersions(names: string[]): Promise<Map<string, string>> {
  return parsePolicyCandidates(await run('apt-cache', ['policy', ...names]));
}

/**
 * The real kernel package that the meta-package's candidate depends on, with its exact version:
 * "Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)".
 */
export function parseKernelDependency(show: string, metaVersion: string): PackageRef {
  const depends = /^Depends:\s*(.*)$/m.exec(show)?.[1] ?? '';
  for (const dep of depends.split(',')) {
    const match = /^\s*(linux-image-\d\S*-cloud-amd64)\s*(?:\(\s*=\s*([^\s)]+)\s*\))?/.exec(dep);
    if (match !== null) return { name: match[1], version: match[2] ?? metaVersion };
  }
  throw new ImageBuildError(`${KERNEL_META_PACKAGE} ${metaVersion} depends on no linux-image-*-cloud-amd64 package`);
}

async function kernelPackageOf(metaVersion: string): Promise<PackageRef> {
  return parseKernelDependency(await run('apt-cache', ['show', `${KERNEL_META_PACKAGE}=${metaVersion}`]), metaVersion);
}

async function resolveFromLists(): Promise<ResolvedPackages | undefined> {
  const versions = await candidateVersions([KERNEL_META_PACKAGE, BUSYBOX_PACKAGE]);
  const metaVersion = versions.get(KERNEL_META_PACKAGE);
  const busyboxVersion = versions.get(BUSYBOX_PACKAGE);
  if (metaVersion === undefined || busyboxVersion === undefined) return undefined;
  return { kernel: await kernelPackageOf(metaVersion), busybox: { name: BUSYBOX_PACKAGE, version: busyboxVersion } };
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export function aptPackageSource(log: (line: string) => void = () => {}): PackageSource {
  return {
    async resolve() {
      let resolved = await resolveFromLists();
      if (resolved === undefined && isRoot()) {
        // A fresh Debian machine often has empty package lists: fill them once (network).
        log('apt lists do not know the packages yet: running apt-get update');
        await run('apt-get', ['update']);
        resolved = await resolveFromLists();
      }
      if (resolved === undefined) {
        throw new ImageBuildError(
          `apt knows no candidate for ${KERNEL_META_PACKAGE} or ${BUSYBOX_PACKAGE}: run apt-get update (as root) on a Debian bookworm host`);
      }
      return resolved;
    },
    async download(packages, dir) {
      const args = ['download'];
      // As root, apt drops to the _apt user for downloads, who cannot write our private temp dir.
      if (isRoot()) args.push('-o', 'APT::Sandbox::User=root');
      args.push(`${packages.kernel.name}=${packages.kernel.version}`, `${packages.busybox.name}=${packages.busybox.version}`);
      log(`downloading ${packages.kernel.name} ${packages.kernel.version} and ${packages.busybox.name} ${packages.busybox.version}`);
      await run('apt-get', args, { cwd: dir });
      const debs = (await readdir(dir)).filter((file) => file.endsWith('.deb')).sort().map((file) => join(dir, file));
      if (debs.length !== 2) throw new ImageBuildError(`apt-get download left ${debs.length} .deb files, expected 2`);
      return debs;
    },
  };
}
