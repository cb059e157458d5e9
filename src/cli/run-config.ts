// From the options of `ringzero run` to a validated VmConfig.

import { findDefaultImage } from '../image/build.ts';
import { DEFAULT_CMDLINE, MAX_VIRTIO_DEVICES, VIRTIO_CONSOLE_CMDLINE, type VmConfig } from '../vmm/config.ts';
import { chooseEngine, type HostInfo } from './host.ts';
import { checkBzImage, checkInitrd, checkSocketPath, CONSOLE_KINDS, ENGINE_REQUESTS, parseCpuCount, parseDisks, parseMemorySize, parseNets, parseVsockSpec, UsageError, type EngineRequest } from './validate.ts';

export { DEFAULT_CMDLINE, VIRTIO_CONSOLE_CMDLINE };
export { DEFAULT_MEMORY } from './validate.ts';

export interface RunOptions {
  engine: string;
  kernel?: string;
  initrd?: string;
  cmdline: string;
  cpus: string;
  memory: string;
  onReboot: string;
  /** `--disk FILE[,readonly][,serial=S]`, repeatable. */
  disk?: string[];
  rng?: boolean;
  /** serial (default) or virtio. */
  console?: string;
  /** `--net tap=NAME[,mac=XX:..]`, repeatable. */
  net?: string[];
  /** `--vsock CID[,path=SOCKET]`. */
  vsock?: string;
  balloon?: boolean;
  /** `--control-socket PATH`: run-time commands (balloon target, statistics). */
  controlSocket?: string;
  /** false with `--no-translate`: the soft engine interprets every instruction (no decoded-block cache). */
  translate?: boolean;
  /** `--stats`: engine statistics on stderr at exit. */
  stats?: boolean;
}

/** Turn the `run` options into a VmConfig, or throw a UsageError. */
export function buildVmConfig(options: RunOptions, host: HostInfo, log: (line: string) => void,
  defaultImage: () => { kernel: string; initrd: string } | undefined = findDefaultImage): VmConfig {
  if (!(ENGINE_REQUESTS as readonly string[]).includes(options.engine)) {
    throw new UsageError(`unknown engine '${options.engine}': use ${ENGINE_REQUESTS.join(', ')}`);
  }
  if (options.onReboot !== 'restart' && options.onReboot !== 'exit') {
    throw new UsageError(`invalid --on-reboot '${options.onReboot}': use restart or exit`);
  }
  const cpus = parseCpuCount(options.cpus);
  const memory = parseMemorySize(options.memory);
  const consoleKind = options.console ?? 'serial';
  if (!(CONSOLE_KINDS as readonly string[]).includes(consoleKind)) {
    throw new UsageError(`invalid --console '${consoleKind}': use ${CONSOLE_KINDS.join(' or ')}`);
  }
  const disks = parseDisks(options.disk ?? []);
  const nets = parseNets(options.net ?? []);
  const vsock = options.vsock !== undefined ? parseVsockSpec(options.vsock) : undefined;
  if (options.controlSocket !== undefined) checkSocketPath(options.controlSocket, '--control-socket');
  if (vsock && options.controlSocket !== undefined && vsock.path === options.controlSocket) {
    throw new UsageError(`--vsock path and --control-socket are both '${vsock.path}'`);
  }
  const virtioCount = disks.length + nets.length + [options.rng, consoleKind === 'virtio', vsock, options.balloon].filter(Boolean).length;
  if (virtioCount > MAX_VIRTIO_DEVICES) throw new UsageError(`too many virtio devices (${virtioCount}): PCI slots 1 to 31 hold at most ${MAX_VIRTIO_DEVICES}`);
  // Devices are only named when asked for, so a plain VM's config stays as it was.
  const devices = {
    ...(disks.length > 0 ? { disks } : {}),
    ...(options.rng ? { rng: true } : {}),
    ...(consoleKind === 'virtio' ? { virtioConsole: true } : {}),
    ...(nets.length > 0 ? { nets } : {}),
    ...(vsock ? { vsock } : {}),
    ...(options.balloon ? { balloon: true } : {}),
    ...(options.controlSocket !== undefined ? { controlSocket: options.controlSocket } : {}),
    ...(options.translate === false ? { translate: false } : {}),
    ...(options.stats ? { stats: true } : {}),
  };
  // With --console virtio and no --cmdline, the kernel's console moves to hvc0.
  const cmdline = consoleKind === 'virtio' && options.cmdline === DEFAULT_CMDLINE ? VIRTIO_CONSOLE_CMDLINE : options.cmdline;

  let kernel = options.kernel;
  let initrd = options.initrd;
  if (kernel === undefined) {
    const image = defaultImage();
    if (image === undefined) throw new UsageError('no default image built yet: run `ringzero image build` first, or pass --kernel');
    kernel = image.kernel;
    // The default initramfs carries modules of the default kernel, so it only goes with it.
    initrd ??= image.initrd;
  }
  checkBzImage(kernel);
  if (initrd !== undefined) checkInitrd(initrd);

  const choice = chooseEngine(host, options.engine as EngineRequest);
  if (!choice.ok) throw new UsageError(choice.error);
  if (options.engine === 'auto') log(`engine auto picks ${choice.engine}: ${choice.reason}`);

  return { engine: choice.engine, kernel, initrd, cmdline, cpus, memory, onReboot: options.onReboot, ...devices };
}
