// What a VM is made of, after validation: the CLI, VM definitions and the API all produce one of these.

export type EngineKind = 'soft' | 'kvm';

export interface VmConfig {
  engine: EngineKind;
  /** Path of a bzImage. */
  kernel: string;
  /** Path of an initramfs (cpio, optionally compressed), if any. */
  initrd?: string;
  cmdline: string;
  cpus: number;
  /** Bytes of guest RAM. */
  memory: number;
  /** What a guest reboot does: start the VM again, or end ringzero (status 0). */
  onReboot: 'restart' | 'exit';
  /** virtio-blk disks, in guest order (/dev/vda, /dev/vdb, ...). Default: none. */
  disks?: DiskConfig[];
  /** A virtio-rng device fed by the host's getrandom. Default: false. */
  rng?: boolean;
  /** A virtio-console (hvc0) on the console, which also takes the console's input. Default: false. */
  virtioConsole?: boolean;
  /** virtio-net devices on host TAP interfaces, in guest order (eth0, eth1, ...). Default: none. */
  nets?: NetConfig[];
  /** A virtio-vsock device (host side on Unix sockets, as Firecracker's). Default: none. */
  vsock?: VsockConfig;
  /** A virtio-balloon device; its target is set at run time through the control socket. Default: false. */
  balloon?: boolean;
  /** A Unix socket on which the VMM takes run-time commands (src/vmm/control.ts). Default: none. */
  controlSocket?: string;
  /** Soft engine: run hot code from the decoded-block cache (src/cpu/soft/code-cache.ts). Default: true. */
  translate?: boolean;
  /** Print engine statistics (instructions, MIPS, block cache) on stderr when the VM ends. Default: false. */
  stats?: boolean;
}

export interface NetConfig {
  /** Host TAP interface name (at most 15 bytes). */
  tap: string;
  /** The guest's MAC, "xx:xx:xx:xx:xx:xx" (lower case, unicast). */
  mac: string;
}

/** One virtio-net per TAP; with MAX_DISKS disks, rng, console, vsock and balloon this still fits PCI slots 1..31. */
export const MAX_NICS = 4;
/** virtio-pci functions sit in PCI slots 1..31 of bus 0, one device each. */
export const MAX_VIRTIO_DEVICES = 31;

export interface VsockConfig {
  /** The guest's context ID, 3 to 2^32-2 (virtio 1.2 §5.10.4). */
  cid: number;
  /** Unix socket for host-initiated connections ("CONNECT <port>\n"); guest connects to port P go to PATH_P. */
  path: string;
}

export interface DiskConfig {
  /** Raw image file. */
  path: string;
  readonly: boolean;
  /** Up to 20 bytes (VIRTIO_BLK_ID_BYTES): /dev/disk/by-id/virtio-<serial>. */
  serial?: string;
  /** The image format, opened without probing; absent: probed by the qcow2 magic. */
  format?: 'raw' | 'qcow2';
}

/** One virtio-pci function per disk, on PCI slots 1..31 next to the other virtio devices. */
export const MAX_DISKS = 24;

/** The serial console's host side: bytes the guest writes come out of `write`; `onInput` feeds keystrokes in. */
export interface ConsoleIo {
  write(data: Uint8Array): void;
  /** Register the receiver of host input; returns a function that unregisters it. */
  onInput(receiver: (data: Uint8Array) => void): () => void;
}

export const MAX_CPUS = 64;

/**
 * The default kernel command line. `panic=-1` reboots at once on a panic (which ends ringzero under the default
 * --on-reboot exit). `cryptomgr.notests` skips the kernel's crypto self-tests: their RSA private-key test vectors
 * run in generic C bignum code and took about two thirds of the boot on the software CPU (a boot to the shell
 * went from ~110 s to ~40 s here). Give --cmdline to run them.
 *
 * The others are for idle guests (issue 6: a fleet of idle VMs must cost next to nothing). Traced in an idle
 * guest (tracefs timer, hrtimer, workqueue and sched_wakeup events), some of its wakeups came from periodic work a VM
 * does not need, and every wakeup costs about a millisecond of host CPU on the software engine (thousands of
 * kernel instructions through caches that went cold while the VMM slept):
 * - `tsc=nowatchdog`: the clocksource watchdog checked the TSC against kvm-clock every 0.5 s (the TSC is
 *   registered as a clocksource that must be verified because ringzero does not show it invariant, so that kvm-clock
 *   stays the clocksource); the guest's clock is kvm-clock, which needs no watchdog.
 * - `sysctl.vm.compaction_proactiveness=0` (sysctl on the command line: Linux 5.8+): kcompactd woke every 0.5 s
 *   to score memory fragmentation for proactive compaction (huge pages for a 128 MiB guest are not worth it; on-demand
 *   compaction stays).
 * - `nowatchdog`: the soft-lockup detector's hrtimer (watchdog_timer_fn) fired every 4 s and woke the per-CPU
 *   stopper thread; the hard-lockup detector needs a PMU the VM does not have. In a VM the detector mostly reports
 *   the VMM being descheduled by its host, not a guest kernel stuck.
 * - `psi=0`: pressure-stall accounting recomputed its averages every 2 s (psi_avgs_work, a workqueue timer that is not
 *   deferrable, so it woke an idle CPU by itself); nothing in a small guest reads /proc/pressure.
 * The last non-deferrable periodic work, the %p hashing key's retry every 2 s while the guest's RNG is not ready
 * (fill_ptr_key_workfn, with the memory cgroup's deferrable statistics flush riding on its wakeup), is gone because
 * the loader seeds the RNG (SETUP_RNG_SEED, src/boot/linux.ts). Local timer interrupts of the idle guest over a 40 s
 * trace: 105 with none of the last two options and no seed, 47 with the options, 1 with the options and the seed.
 * Measured on the software engine, one idle 128 MiB guest at its shell (loaded 2-core host): 1.8-2.2% of a host CPU
 * with none of these, ~0.9% with the first two. With all four and the seed (bundled VMM, 2.5 min after boot, side by
 * side in 3 rounds): 0.033% of a host CPU, against 0.35-0.47% with the first two only, and QEMU TCG on the same kernel
 * 0.033-0.067% with this line (0.05-0.12% with the old one); 0.017% once the run loop stopped polling every second.
 * - `ringzero.iosched=none` (the image's /init, src/image/build.ts): the virtio disks without an I/O scheduler, as
 *   Linux itself chooses for a multi-queue disk; the host's page cache and scheduler order the requests anyway. With
 *   mq-deadline (the kernel's choice for a single-queue disk) each unplugged request is dispatched from a kblockd
 *   worker: ~7 k of a 4 KiB O_DIRECT random read's ~17-20 k guest instructions under ringzero and QEMU alike. bench/io
 *   (both VMMs on the same line; session 30): random reads 18.7 k -> 11.0 k guest instructions per read; quiet host,
 *   one run each, against QEMU TCG in the same run: random reads 0.62x -> 0.84x, reads 0.20x -> 0.20x, writes 0.38x
 *   -> 0.34x (loaded host, per guest-thread CPU-s: 0.17x -> 0.30x, 0.18x -> 0.29x, 0.23x -> 0.38x).
 */
export const DEFAULT_CMDLINE = 'console=ttyS0 panic=-1 cryptomgr.notests tsc=nowatchdog sysctl.vm.compaction_proactiveness=0 nowatchdog psi=0 ringzero.iosched=none';
/** The default with the console on virtio-console (hvc0). */
export const VIRTIO_CONSOLE_CMDLINE = 'console=hvc0 panic=-1 cryptomgr.notests tsc=nowatchdog sysctl.vm.compaction_proactiveness=0 nowatchdog psi=0 ringzero.iosched=none';
