// The default guest image: Debian bookworm's cloud kernel (a bzImage) and an uncompressed initramfs with a static
// busybox, the virtio modules and an /init that ends at an interactive shell on the console.
// Built once per set of inputs into the cache (see cacheDir()); later builds find it there.

import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { aptPackageSource, ImageBuildError, type PackageSource, type ResolvedPackages } from './apt.ts';
import { type CpioEntry, parseCpio, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, writeCpio } from './cpio.ts';
import { formatModulesDep, moduleLoadOrder, parseModulesDep, type ModuleInfo } from './modules.ts';

export { ImageBuildError } from './apt.ts';

const execFileAsync = promisify(execFile);

/** Bump when the way images are assembled changes, so old cache entries are not reused. */
export const BUILDER_VERSION = 5;

/**
 * Modules in the image, and when /init loads each (with its dependencies, computed from modules.dep), as udev would
 * for the hardware present: `always`, `virtio-pci` (some PCI function has the virtio vendor ID 0x1AF4), or a virtio
 * device ID (virtio 1.2 §5) seen under /sys/bus/virtio/devices once virtio_pci has bound. Loading only what the
 * machine has matters on the software CPU: every module load hashes the module and checks its RSA signature, and
 * loading all of them took about a third of the boot. In Debian's cloud config these are =m while the 8250 serial
 * console, PCI and ACPI are built in.
 */
export const MODULE_TRIGGERS: readonly { module: string; when: 'always' | 'virtio-pci' | 'never' | number }[] = [
  // The ACPI power button (ringzero's graceful shutdown) reaches user space as KEY_POWER on an input device: the
  // button driver (CONFIG_ACPI_BUTTON=m) makes that device and evdev (CONFIG_INPUT_EVDEV=m) its /dev/input/event*
  // node, which busybox acpid reads. evdev comes after button so it attaches to the button's input device at load.
  { module: 'button', when: 'always' },
  { module: 'evdev', when: 'always' },
  { module: 'virtio_pci', when: 'virtio-pci' },
  { module: 'virtio_net', when: 1 },
  { module: 'virtio_blk', when: 2 },
  { module: 'virtio_console', when: 3 },
  { module: 'virtio_rng', when: 4 },
  { module: 'virtio_balloon', when: 5 },
  { module: 'vmw_vsock_virtio_transport', when: 19 },
  // In the image for a machine that announces virtio-mmio devices; ringzero's machine has none, so never loaded.
  { module: 'virtio_mmio', when: 'never' },
];

/** Every module the image carries (with dependencies). */
export const DEFAULT_MODULES: readonly string[] = MODULE_TRIGGERS.map((t) => t.module);

/** The prompt of the guest's shell; tests and scripts wait for it. */
export const GUEST_PROMPT = '~ # ';
/** The line /init prints once the modules are loaded, just before the shell starts. */
export const INIT_OK_LINE = 'ringzero: init ok';

/** The root disk's label: `root=LABEL=ringzero-root` finds it as well as `root=/dev/vda`. */
export const ROOTFS_LABEL = 'ringzero-root';

// What both inits end with: the by-id links udev would make, the power button, the ready line and the shell.
const SESSION = `# /dev/disk/by-id/virtio-<serial>, named as udev's persistent-storage rules name virtio disks (spaces become
# underscores); busybox mdev makes no such links. The serial is the device's VIRTIO_BLK_T_GET_ID answer.
for blk in /sys/block/vd*; do
  [ -e "\$blk/serial" ] || continue
  read -r serial < "\$blk/serial"
  serial=\${serial// /_}
  [ -n "\$serial" ] || continue
  mkdir -p /dev/disk/by-id
  name=\${blk##*/}
  ln -sf ../../\$name /dev/disk/by-id/virtio-\$serial
  for part in "\$blk"/\$name*; do
    [ -e "\$part/partition" ] && ln -sf ../../\${part##*/} /dev/disk/by-id/virtio-\$serial-part\$(cat "\$part/partition")
  done
done
# ringzero.iosched=NAME on the command line: the virtio disks' I/O scheduler (e.g. none), else the kernel's choice
# (mq-deadline for a single-queue disk). mq-deadline dispatches each unplugged request (O_DIRECT reads, most
# synchronous I/O) from a kblockd worker: a switch to it and back per request, ~7 k of a 4 KiB random read's
# ~17-20 k guest instructions under either VMM (README, bench/io session 30).
# (Shell builtins only: no process is started for it at boot.)
read -r cmdline < /proc/cmdline
case " \$cmdline " in
  *" ringzero.iosched="*) iosched=\${cmdline#*ringzero.iosched=}; iosched=\${iosched%% *} ;;
  *) iosched= ;;
esac
if [ -n "\$iosched" ]; then
  for sched in /sys/block/vd*/queue/scheduler; do
    [ -w "\$sched" ] && { echo "\$iosched" > "\$sched" || echo "ringzero: no I/O scheduler \$iosched for \$sched"; }
  done
fi
# ringzero.hostname= on the command line (VM templates set it, src/manager/templates.ts), else "ringzero": its last
# occurrence, up to the first character that is not a letter, digit, dot or hyphen. Written to the kernel's
# hostname file, as hostname(1) would set it (sethostname(2)), without starting a process.
case " \$cmdline " in
  *"ringzero.hostname="*) host=\${cmdline##*ringzero.hostname=}; host=\${host%%[!A-Za-z0-9.-]*} ;;
  *) host= ;;
esac
echo "\${host:-ringzero}" > /proc/sys/kernel/hostname
# The kernel's on-demand module loads (request_module) run /proc/sys/kernel/modprobe, from now on busybox's modprobe.
# The image keeps it out of /sbin, the kernel's default path, so the kernel's requests before /init runs fail at
# once instead of starting a modprobe that could find nothing (the initramfs holds no module such a request names:
# six crypto-* requests at boot, each a process: ~1 s of the software engine's boot on session 37's host). Linux
# Documentation/admin-guide/sysctl/kernel.rst "modprobe".
[ -x /bin/modprobe ] && echo /bin/modprobe > /proc/sys/kernel/modprobe
# The power button: busybox acpid maps KEY_POWER to the action PWRF/00000080 (its built-in tables, used when
# /etc/acpid.conf and /etc/acpi.map are absent) and runs /etc/acpi/PWRF/00000080 (part of the image). This init is
# PID 1 and does not handle poweroff's signal, so the handler powers off itself (poweroff -f syncs the disks first).
# (The initramfs has /var/log and /var/run; a root disk's init may not. acpid in the foreground as a job of this
# shell: one process, where acpid on its own forks again to leave a daemon.)
[ -d /var/log ] && [ -d /var/run ] || mkdir -p /var/log /var/run
if [ -e /dev/input/event0 ]; then acpid -f & else echo "ringzero: no input devices: the power button is ignored"; fi
echo "${INIT_OK_LINE}"
export PS1='${GUEST_PROMPT}'
# cttyhack opens the real console device (ttyS0) as the controlling terminal, so job control and Ctrl-C work.
setsid cttyhack sh
poweroff -f
`;

// The initramfs /init. @KERNEL_VERSION@ and @MODULES@ are filled in per kernel. Kept as one constant so its hash is
// part of the cache key.
const INIT_TEMPLATE = `#!/bin/sh
# ringzero's default guest init, generated by src/image/build.ts.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=\${TERM:-linux}
# proc, sysfs and devtmpfs from the initramfs's /etc/fstab (INIT_FSTAB) in one mount process instead of three; devpts
# needs /dev/pts, made in the devtmpfs just mounted.
mount -a
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
# Load the drivers of the devices this machine has (see MODULE_TRIGGERS in src/image/build.ts).
# The checks below are shell builtins (no process each: every process is a fork and exec the software CPU runs
# through cold kernel paths, ~50 ms each at boot on it).
load() {
  for path; do
    name=\${path##*/}; name=\${name%.ko}; name=\${name//-/_}
    [ -d /sys/module/\$name ] || insmod /lib/modules/@KERNEL_VERSION@/\$path 2>/dev/null || echo "ringzero: could not load \$path"
  done
}
# has_id ID FILE...: some FILE's first line is ID (read's status is not used: it is 1 for a last line without a newline).
has_id() {
  want=\$1; shift
  for f; do
    [ -r "\$f" ] || continue
    id=; read -r id < "\$f"
    [ "\$id" = "\$want" ] && return 0
  done
  return 1
}
virtio_device() { has_id "\$1" /sys/bus/virtio/devices/*/device; }
@LOAD_MODULES@
# A root disk: root=/dev/vdX, root=LABEL=... or root=UUID=... with rootfstype= (default ext4), rootflags=, ro (the
# default, as the kernel's own root mount) or rw, and init= (default /sbin/init), the kernel's parameters of those
# names (Documentation/admin-guide/kernel-parameters.txt). The kernel leaves the root to an initramfs that has an
# /init, so this mounts it and switch_roots; without root= (or when it fails) the shell runs here.
root= rootfstype=ext4 rootflags= rootmode=ro rootinit=/sbin/init
read -r cmdline < /proc/cmdline
for arg in \$cmdline; do
  case "\$arg" in
    root=*) root=\${arg#root=} ;;
    rootfstype=*) rootfstype=\${arg#rootfstype=} ;;
    rootflags=*) rootflags=\${arg#rootflags=} ;;
    ro) rootmode=ro ;;
    rw) rootmode=rw ;;
    init=*) rootinit=\${arg#init=} ;;
  esac
done
if [ -n "\$root" ]; then
  dev= tries=0
  # virtio_blk probed its disks during insmod; the node (or the label, for findfs) is normally there already.
  while [ -z "\$dev" ] && [ \$tries -lt 50 ]; do
    case "\$root" in
      LABEL=*|UUID=*) dev=\$(findfs "\$root" 2>/dev/null) ;;
      *) [ -b "\$root" ] && dev=\$root ;;
    esac
    [ -n "\$dev" ] || usleep 100000
    tries=\$((tries + 1))
  done
  mkdir -p /newroot
  if [ -z "\$dev" ]; then
    echo "ringzero: root device \$root not found: staying in the initramfs"
  elif ! mount -t "\$rootfstype" -o "\$rootmode\${rootflags:+,\$rootflags}" "\$dev" /newroot; then
    echo "ringzero: cannot mount \$dev as \$rootfstype: staying in the initramfs"
  elif [ ! -x "/newroot\$rootinit" ]; then
    echo "ringzero: \$dev has no \$rootinit: staying in the initramfs"
    umount /newroot
  else
    echo "ringzero: root \$dev (\$rootfstype, \$rootmode): switch_root to \$rootinit"
    # The mounts move along (/dev/pts with /dev); switch_root empties the initramfs and execs the new init as PID 1.
    # The new root's own modprobe is at the kernel's default path.
    echo /sbin/modprobe > /proc/sys/kernel/modprobe
    mount --move /dev /newroot/dev
    mount --move /proc /newroot/proc
    mount --move /sys /newroot/sys
    exec switch_root /newroot "\$rootinit"
  fi
fi
${SESSION}`;

/**
 * /sbin/init on the root disk (buildRootfsImage): the initramfs moved /dev, /proc and /sys onto it; anything missing
 * (booted without the initramfs, or with another one) is mounted here. /run and /tmp are tmpfs so a read-only root
 * works; /var/run and /var/log point into /run.
 */
export const ROOTFS_INIT = `#!/bin/sh
# ringzero's root-disk init, generated by src/image/build.ts.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=\${TERM:-linux}
mounted() { grep -qs " \$1 " /proc/mounts; }
mounted /proc || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && { mounted /dev/pts || mount -t devpts devpts /dev/pts; }
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /run/log
${SESSION}`;

/**
 * The initramfs's /etc/fstab: what its /init mounts with one `mount -a` (proc, sysfs and devtmpfs, as the three
 * commands it replaces mounted them). fstab(5) fields: device, mount point, type, options, dump, pass. A root disk
 * made from the initramfs (writeRootfsImage) does not take it: its init mounts its own.
 */
const INIT_FSTAB = `proc /proc proc defaults 0 0
sysfs /sys sysfs defaults 0 0
devtmpfs /dev devtmpfs defaults 0 0
`;

/** The power-button handler acpid runs (see SESSION). */
const POWER_BUTTON_HANDLER = `#!/bin/sh
echo "ringzero: power button: powering off" > /dev/console
poweroff -f
`;

/** Applets linked when the busybox binary cannot be asked for its list (e.g. on a non-x86 build host). */
const FALLBACK_APPLETS = [
  'bin/sh', 'bin/ash', 'bin/cat', 'bin/chmod', 'bin/cp', 'bin/dd', 'bin/dmesg', 'bin/echo', 'bin/grep', 'bin/hostname',
  'bin/ls', 'bin/mkdir', 'bin/mount', 'bin/mv', 'bin/ps', 'bin/rm', 'bin/sleep', 'bin/umount', 'bin/uname', 'bin/vi',
  'bin/modprobe', 'sbin/acpid', 'sbin/halt', 'sbin/insmod', 'sbin/lsmod', 'sbin/poweroff', 'sbin/reboot', 'sbin/rmmod',
  'usr/bin/cttyhack', 'usr/bin/free', 'usr/bin/md5sum', 'usr/bin/setsid', 'usr/bin/top', 'usr/bin/wc',
];

export interface DefaultImage {
  kernel: string;
  initrd: string;
  /** The ext4 root disk built from the same busybox tree (images built since builder 3). */
  rootfs?: string;
}

export interface ImageManifest {
  builder: number;
  key: string;
  kernelPackage: string;
  kernelPackageVersion: string;
  busyboxVersion: string;
  kernelVersion: string;
  modules: string[];
  kernelBytes: number;
  initrdBytes: number;
  /** Size of rootfs.ext4 (sparse), when the image has one. */
  rootfsBytes?: number;
  builtAt: string;
}

export interface BuildOptions {
  /** Cache root (default: cacheDir()). */
  cacheDir?: string;
  /** Where the packages come from (default: apt). */
  source?: PackageSource;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** Rebuild even if a cached image with the same inputs exists. */
  force?: boolean;
}

export interface BuildResult extends DefaultImage {
  manifest: ImageManifest;
  /** True when the image came from the cache and nothing was built. */
  cached: boolean;
}

const KERNEL_FILE = 'bzImage';
const INITRD_FILE = 'initramfs.cpio';
const MANIFEST_FILE = 'manifest.json';
const ROOTFS_FILE = 'rootfs.ext4';
/** Size of the default root disk: room to spare over the ~15 MiB tree (the file is sparse). */
export const ROOTFS_SIZE_MIB = 64;

/** ${RINGZERO_CACHE} or ${XDG_CACHE_HOME}/ringzero or ~/.cache/ringzero. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.RINGZERO_CACHE) return env.RINGZERO_CACHE;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, 'ringzero');
  return join(homedir(), '.cache', 'ringzero');
}

export function imageKey(packages: ResolvedPackages): string {
  const inputs = JSON.stringify({
    builder: BUILDER_VERSION,
    kernel: `${packages.kernel.name}=${packages.kernel.version}`,
    busybox: `${packages.busybox.name}=${packages.busybox.version}`,
    init: INIT_TEMPLATE,
    rootfsInit: ROOTFS_INIT,
    powerButton: POWER_BUTTON_HANDLER,
    fstab: INIT_FSTAB,
    modules: MODULE_TRIGGERS,
  });
  return createHash('sha256').update(inputs).digest('hex').slice(0, 16);
}

function imagePaths(dir: string): DefaultImage {
  const rootfs = join(dir, ROOTFS_FILE);
  return { kernel: join(dir, KERNEL_FILE), initrd: join(dir, INITRD_FILE), ...(existsSync(rootfs) ? { rootfs } : {}) };
}

function readManifest(dir: string): ImageManifest | undefined {
  try {
    const manifest = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')) as ImageManifest;
    if (!existsSync(join(dir, KERNEL_FILE)) || !existsSync(join(dir, INITRD_FILE))) return undefined;
    return manifest;
  } catch {
    return undefined;
  }
}

/** The most recently built complete image in the cache, without touching the network; undefined if none. */
export function findDefaultImage(options: { cacheDir?: string } = {}): (DefaultImage & { manifest: ImageManifest }) | undefined {
  const images = join(options.cacheDir ?? cacheDir(), 'images');
  let best: { dir: string; manifest: ImageManifest } | undefined;
  let names: string[];
  try {
    names = readdirSync(images);
  } catch {
    return undefined;
  }
  for (const name of names) {
    if (name.startsWith('.')) continue; // build in progress, or left by a killed build
    const manifest = readManifest(join(images, name));
    if (manifest === undefined) continue;
    if (best === undefined || manifest.builtAt > best.manifest.builtAt) best = { dir: join(images, name), manifest };
  }
  if (best === undefined) return undefined;
  return { ...imagePaths(best.dir), manifest: best.manifest };
}

/** The Debian package of each host tool the build runs. */
const TOOL_PACKAGES: Record<string, string> = { depmod: 'kmod', 'dpkg-deb': 'dpkg', 'mkfs.ext4': 'e2fsprogs' };

function findTool(name: string): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin', '/bin']) {
    if (dir !== '' && existsSync(join(dir, name))) return join(dir, name);
  }
  const pkg = TOOL_PACKAGES[name] ?? name;
  throw new ImageBuildError(`${name} not found: install ${pkg} (apt-get install ${pkg}, or scripts/host-deps.sh as root)`);
}

async function tool(name: string, args: string[]): Promise<void> {
  try {
    await execFileAsync(findTool(name), args, { maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    if (error instanceof ImageBuildError) throw error;
    const stderr = ((error as { stderr?: string }).stderr ?? '').trim();
    throw new ImageBuildError(`${name} ${args.join(' ')} failed${stderr === '' ? '' : `: ${stderr.split('\n').pop()}`}`);
  }
}

/** Paths (relative, e.g. "bin/sh") of the applets a busybox binary offers. */
function busyboxApplets(busybox: string): string[] {
  try {
    const list = execFileSync(busybox, ['--list-full'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const applets = list.split('\n').map((line) => line.trim().replace(/^\/+/, ''))
      .filter((line) => /^[a-z0-9_./[\]-]+$/i.test(line) && !line.includes('..') && line !== 'bin/busybox');
    if (applets.includes('bin/sh')) return applets;
  } catch {
    // Not runnable here: use the fixed list.
  }
  return FALLBACK_APPLETS;
}

export function renderInit(kernelVersion: string, modules: Map<string, ModuleInfo>): string {
  const closure = (name: string) => moduleLoadOrder(modules, [name]).order.map((info) => info.path).join(' ');
  const lines: string[] = [];
  for (const t of MODULE_TRIGGERS) {
    if (!moduleLoadOrder(modules, [t.module]).order.length) continue; // built in or absent in this kernel
    if (t.when === 'always') lines.push(`load ${closure(t.module)}`);
    else if (t.when === 'virtio-pci') lines.push(`has_id 0x1af4 /sys/bus/pci/devices/*/vendor && load ${closure(t.module)}`);
    else if (typeof t.when === 'number') lines.push(`virtio_device 0x${t.when.toString(16).padStart(4, '0')} && load ${closure(t.module)}`);
  }
  return INIT_TEMPLATE.replaceAll('@KERNEL_VERSION@', kernelVersion).replace('@LOAD_MODULES@', lines.join('\n'));
}

export interface AssembledImage {
  kernelVersion: string;
  modules: string[];
  kernelBytes: number;
  initrdBytes: number;
}

/**
 * Make bzImage and initramfs.cpio in `outDir` from a tree where the kernel and busybox packages were extracted
 * (boot/vmlinuz-*, lib/modules/<version>/, bin/busybox). Runs depmod if the tree has no modules.dep.
 */
export async function assembleImage(root: string, outDir: string, log: (line: string) => void = () => {}): Promise<AssembledImage> {
  const vmlinuz = (await readdir(join(root, 'boot')).catch(() => [] as string[])).filter((file) => file.startsWith('vmlinuz-'));
  if (vmlinuz.length !== 1) throw new ImageBuildError(`expected one boot/vmlinuz-* in the kernel package, found ${vmlinuz.length}`);
  const kernelVersion = vmlinuz[0].slice('vmlinuz-'.length);
  const moduleDir = join(root, 'lib', 'modules', kernelVersion);
  if (!existsSync(moduleDir)) throw new ImageBuildError(`the kernel package has no lib/modules/${kernelVersion}`);
  const busybox = join(root, 'bin', 'busybox');
  if (!existsSync(busybox)) throw new ImageBuildError('the busybox package has no bin/busybox');

  if (!existsSync(join(moduleDir, 'modules.dep'))) {
    log(`depmod ${kernelVersion}`);
    await tool('depmod', ['-b', root, kernelVersion]);
  }
  const modules = parseModulesDep(await readFile(join(moduleDir, 'modules.dep'), 'utf8'));
  const { order, missing } = moduleLoadOrder(modules, DEFAULT_MODULES);
  if (missing.length > 0) log(`not modules in this kernel (built in or absent): ${missing.join(', ')}`);

  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  const addDir = (path: string): void => {
    const parts = path.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!dirs.has(dir)) {
        dirs.add(dir);
        entries.push({ name: dir, type: 'dir', perm: 0o755 });
      }
    }
  };
  const parentOf = (path: string): string => path.slice(0, Math.max(0, path.lastIndexOf('/')));

  for (const dir of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'proc', 'sys', 'dev', 'run', 'mnt', 'root', 'tmp', 'var/log', 'var/run']) addDir(dir);
  entries.push({ name: 'etc/fstab', type: 'file', perm: 0o644, data: Buffer.from(INIT_FSTAB) });
  // The kernel opens /dev/console for init's stdio before /init can mount devtmpfs (init/main.c console_on_rootfs).
  // Character device 5:1 is /dev/console (Documentation/admin-guide/devices.txt).
  entries.push({ name: 'dev/console', type: 'char', perm: 0o600, major: 5, minor: 1 });
  entries.push({ name: 'bin/busybox', type: 'file', perm: 0o755, data: await readFile(busybox) });
  // modprobe is linked as bin/modprobe, not at the kernel's default /sbin/modprobe: see SESSION.
  for (const applet of [...new Set(busyboxApplets(busybox).map((a) => (a === 'sbin/modprobe' ? 'bin/modprobe' : a)))].sort()) {
    if (dirs.has(applet)) continue;
    addDir(parentOf(applet) || 'bin');
    entries.push({ name: applet, type: 'symlink', perm: 0o777, target: '/bin/busybox' });
  }
  const modulesRoot = `lib/modules/${kernelVersion}`;
  addDir(modulesRoot);
  for (const info of order) {
    addDir(parentOf(`${modulesRoot}/${info.path}`));
    entries.push({ name: `${modulesRoot}/${info.path}`, type: 'file', perm: 0o644, data: await readFile(join(moduleDir, info.path)) });
  }
  entries.push({ name: `${modulesRoot}/modules.dep`, type: 'file', perm: 0o644, data: Buffer.from(formatModulesDep(order)) });
  addDir('etc/acpi/PWRF');
  entries.push({ name: 'etc/acpi/PWRF/00000080', type: 'file', perm: 0o755, data: Buffer.from(POWER_BUTTON_HANDLER) });
  entries.push({ name: 'init', type: 'file', perm: 0o755, data: Buffer.from(renderInit(kernelVersion, modules)) });

  const archive = writeCpio(entries);
  await mkdir(outDir, { recursive: true });
  await copyFile(join(root, 'boot', vmlinuz[0]), join(outDir, KERNEL_FILE));
  await writeFile(join(outDir, INITRD_FILE), archive);
  return {
    kernelVersion,
    modules: order.map((info) => info.name),
    kernelBytes: statSync(join(outDir, KERNEL_FILE)).size,
    initrdBytes: archive.length,
  };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove work dirs of builds that were killed (their process is gone). */
async function removeStaleWorkDirs(images: string): Promise<void> {
  for (const name of await readdir(images).catch(() => [] as string[])) {
    const match = /^\.build-[0-9a-f]+-(\d+)-/.exec(name);
    if (match !== null && !pidAlive(Number(match[1]))) await rm(join(images, name), { recursive: true, force: true });
  }
}

/**
 * Build the default image (or find it in the cache when built from the same inputs) and return its paths.
 * A build works in a hidden temp dir under the cache and renames the finished image into place, so a killed
 * build never leaves a half image behind.
 */
export async function buildDefaultImage(options: BuildOptions = {}): Promise<BuildResult> {
  const log = options.log ?? (() => {});
  const root = options.cacheDir ?? cacheDir();
  const images = join(root, 'images');
  const source = options.source ?? aptPackageSource(log);
  const packages = await source.resolve();
  const key = imageKey(packages);
  const finalDir = join(images, key);

  const existing = readManifest(finalDir);
  if (existing !== undefined && !options.force) {
    return { ...imagePaths(finalDir), manifest: existing, cached: true };
  }

  await mkdir(images, { recursive: true });
  await removeStaleWorkDirs(images);
  const work = await mkdtemp(join(images, `.build-${key}-${process.pid}-`));
  try {
    const debs = join(work, 'debs');
    const tree = join(work, 'tree');
    const out = join(work, 'out');
    await mkdir(debs);
    await mkdir(tree);
    for (const deb of await source.download(packages, debs)) {
      log(`extracting ${deb.slice(deb.lastIndexOf('/') + 1)}`);
      await tool('dpkg-deb', ['-x', deb, tree]);
    }
    const assembled = await assembleImage(tree, out, log);
    log(`root disk ${ROOTFS_FILE} (${ROOTFS_SIZE_MIB} MiB ext4)`);
    await writeRootfsImage(join(out, INITRD_FILE), join(out, ROOTFS_FILE));
    const manifest: ImageManifest = {
      builder: BUILDER_VERSION,
      key,
      kernelPackage: packages.kernel.name,
      kernelPackageVersion: packages.kernel.version,
      busyboxVersion: packages.busybox.version,
      kernelVersion: assembled.kernelVersion,
      modules: assembled.modules,
      kernelBytes: assembled.kernelBytes,
      initrdBytes: assembled.initrdBytes,
      rootfsBytes: statSync(join(out, ROOTFS_FILE)).size,
      builtAt: new Date().toISOString(),
    };
    // The manifest is written last: a directory without one is never taken for an image.
    await writeFile(join(out, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    if (existsSync(finalDir)) await rm(finalDir, { recursive: true, force: true }); // forced rebuild, or a broken entry
    try {
      await rename(out, finalDir);
    } catch (error) {
      // Another build of the same inputs finished first: its image is as good as ours.
      if (readManifest(finalDir) === undefined) throw error;
    }
    const done = readManifest(finalDir) ?? manifest;
    return { ...imagePaths(finalDir), manifest: done, cached: false };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

// =====================================================================================================
// The root disk: an ext4 image of the initramfs's tree (busybox, the modules) with ROOTFS_INIT as /sbin/init.

export interface RootfsFile {
  /** Path inside the root file system, e.g. "usr/bin/vsock-echo". */
  path: string;
  data: Uint8Array;
  /** Permission bits (default 0o644). */
  mode?: number;
}

export interface RootfsOptions {
  /** Size of the ext4 file system in MiB (default ROOTFS_SIZE_MIB). */
  sizeMiB?: number;
  /** Volume label (default ROOTFS_LABEL). */
  label?: string;
  /** More files to put in (a test's helper binaries). */
  files?: readonly RootfsFile[];
}

/** A relative path inside the tree: no absolute paths, no "..", nothing empty. */
function treePath(path: string): string {
  const clean = path.replace(/^\/+/, '');
  if (clean === '' || clean.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new ImageBuildError(`invalid path in the root file system: '${path}'`);
  }
  return clean;
}

/**
 * Members of the initramfs that a root disk made from it does not take: the initramfs's inits (the disk gets
 * ROOTFS_INIT at sbin/init), /var/run and /var/log (links into /run on the disk, made below, where the initramfs has
 * directories) and etc/fstab (what the initramfs's /init mounts, not the disk's: its init mounts its own).
 */
const NOT_ON_ROOTFS = new Set(['init', 'sbin/init', 'var/run', 'var/log', 'etc/fstab']);

/**
 * Write an ext4 image at `out` holding the tree of the initramfs `initrd` (without its /init and device nodes: the
 * kernel's devtmpfs provides /dev) plus ROOTFS_INIT as /sbin/init and `options.files`. `mkfs.ext4 -d` copies a
 * directory into the new file system, so nothing is mounted and no privilege is needed.
 */
export async function writeRootfsImage(initrd: string, out: string, options: RootfsOptions = {}): Promise<void> {
  const sizeMiB = options.sizeMiB ?? ROOTFS_SIZE_MIB;
  if (!Number.isInteger(sizeMiB) || sizeMiB < 8 || sizeMiB > 65536) throw new ImageBuildError(`root disk size ${sizeMiB} MiB: use 8 to 65536`);
  const label = options.label ?? ROOTFS_LABEL;
  if (!/^[A-Za-z0-9._-]{1,16}$/.test(label)) throw new ImageBuildError(`invalid ext4 label '${label}' (1-16 of A-Z a-z 0-9 . _ -)`);
  const members = parseCpio(await readFile(initrd));
  const tree = await mkdtemp(join(dirname(out), '.rootfs-'));
  try {
    for (const m of members) {
      const name = m.name.replace(/^\.?\/+/, '');
      if (name === '' || name === '.' || NOT_ON_ROOTFS.has(name)) continue;
      const path = join(tree, treePath(name));
      const type = m.mode & S_IFMT;
      if (type === S_IFDIR) await mkdir(path, { recursive: true, mode: m.mode & 0o7777 });
      else if (type === S_IFREG) {
        await mkdir(dirname(path), { recursive: true });
        await writeFile(path, m.data);
        await chmod(path, m.mode & 0o7777);
      } else if (type === S_IFLNK) {
        await mkdir(dirname(path), { recursive: true });
        await symlink(Buffer.from(m.data).toString('utf8'), path);
      } // device nodes: devtmpfs has them
    }
    for (const dir of ['run', 'tmp', 'var', 'dev', 'proc', 'sys', 'root', 'mnt']) await mkdir(join(tree, dir), { recursive: true });
    await chmod(join(tree, 'tmp'), 0o1777);
    // /var/run and /var/log live on the /run tmpfs, so the services work on a read-only root.
    await symlink('../run', join(tree, 'var', 'run'));
    await symlink('../run/log', join(tree, 'var', 'log'));
    await mkdir(join(tree, 'sbin'), { recursive: true });
    await writeFile(join(tree, 'sbin', 'init'), ROOTFS_INIT, { mode: 0o755 });
    for (const file of options.files ?? []) {
      const path = join(tree, treePath(file.path));
      await mkdir(dirname(path), { recursive: true });
      await rm(path, { force: true });
      await writeFile(path, file.data);
      await chmod(path, file.mode ?? 0o644);
    }
    await rm(out, { force: true });
    // -E root_owner: the root directory belongs to root whoever builds; -F: the target is a regular file.
    await tool('mkfs.ext4', ['-q', '-F', '-L', label, '-E', 'root_owner=0:0', '-d', tree, out, `${sizeMiB}M`]);
  } finally {
    await rm(tree, { recursive: true, force: true });
  }
}

/** The cache key of a root disk: what goes into it. */
export function rootfsKey(initrdBytes: Uint8Array, options: RootfsOptions = {}): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ builder: BUILDER_VERSION, init: ROOTFS_INIT, size: options.sizeMiB ?? ROOTFS_SIZE_MIB, label: options.label ?? ROOTFS_LABEL }));
  hash.update(initrdBytes);
  for (const file of options.files ?? []) {
    hash.update(JSON.stringify({ path: file.path, mode: file.mode ?? 0o644, bytes: file.data.length }));
    hash.update(file.data);
  }
  return hash.digest('hex').slice(0, 16);
}

/**
 * A root disk for `initrd` with extra files, built once per set of inputs under <cache>/rootfs/<key>.ext4 and
 * reused after. Callers that let a guest write to it boot a copy.
 */
export async function buildRootfsImage(initrd: string, options: RootfsOptions & { cacheDir?: string } = {}): Promise<{ path: string; cached: boolean }> {
  const dir = join(options.cacheDir ?? cacheDir(), 'rootfs');
  const key = rootfsKey(await readFile(initrd), options);
  const path = join(dir, `${key}.ext4`);
  if (existsSync(path)) return { path, cached: true };
  await mkdir(dir, { recursive: true });
  const work = join(dir, `.${key}-${process.pid}.ext4`);
  try {
    await writeRootfsImage(initrd, work, options);
    await rename(work, path); // atomic: a killed build never leaves a half image under the final name
  } finally {
    await rm(work, { force: true });
  }
  return { path, cached: false };
}
