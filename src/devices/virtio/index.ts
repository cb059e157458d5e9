// The machine's virtio devices: one virtio-pci function per device, on bus 0 from slot 1 up, in the order
// disks (so --disk order is /dev/vda, /dev/vdb, ... as the guest probes slots in order), rng, console,
// network cards (--net order is eth0, eth1, ...), vsock, balloon.
import type { GuestMemory } from '../../memory/guest-memory.ts';
import type { PciHost } from '../pci/host.ts';
import type { ConsoleIo, VmConfig } from '../../vmm/config.ts';
import { VirtioPciFunction } from './pci.ts';
import { VirtioBlock } from './blk.ts';
import { VirtioRng } from './rng.ts';
import { VirtioConsole } from './console.ts';
import { VirtioNet, parseMac, txPollFromEnv, type SliceTimer } from './net.ts';
import { VirtioVsock } from './vsock.ts';
import { VirtioBalloon } from './balloon.ts';
import type { VirtioDevice } from './device.ts';
import { Tap } from '../../net/tap.ts';
import { ControlServer } from '../../vmm/control.ts';

export { VirtioPciFunction } from './pci.ts';
export { VirtioBlock } from './blk.ts';
export { VirtioRng } from './rng.ts';
export { VirtioConsole } from './console.ts';
export { VirtioNet } from './net.ts';
export { VirtioVsock } from './vsock.ts';
export { VirtioBalloon } from './balloon.ts';

/** First PCI slot for virtio devices (slot 0 is the host bridge). */
export const VIRTIO_FIRST_SLOT = 1;

export interface VirtioMachine {
  mem: GuestMemory;
  /** Wake the run loop (host input arrived for the guest). */
  kick?(): void;
  /**
   * Soft engine: a one-shot that runs `callback` between the run loop's slices (right after the current one, or at
   * once if every vCPU is halted): virtio-net's transmit polling (RINGZERO_NET_TX_POLL) looks at its ring there.
   */
  sliceTimer?(callback: () => void): SliceTimer;
}

export interface VirtioDevices {
  functions: VirtioPciFunction[];
  /** The network cards, in --net order. */
  nets: VirtioNet[];
  vsock?: VirtioVsock;
  /** The balloon: setTarget(pages), stats(), refreshStats(). */
  balloon?: VirtioBalloon;
  /** The VMM's control socket (config.controlSocket), which steers the balloon. */
  control?: ControlServer;
  /** Close the disk images, TAP devices and sockets, and stop taking console input. */
  close(): void;
}

/** Create the devices `config` asks for and plug them into `pci`. Throws if a disk image cannot be opened. */
export function attachVirtioDevices(machine: VirtioMachine, pci: PciHost, config: VmConfig, console: ConsoleIo): VirtioDevices {
  const devices: VirtioDevice[] = [];
  const nets: VirtioNet[] = [];
  let vsock: VirtioVsock | undefined;
  let balloon: VirtioBalloon | undefined;
  let control: ControlServer | undefined;
  try {
    for (const disk of config.disks ?? []) devices.push(new VirtioBlock(disk));
    if (config.rng) devices.push(new VirtioRng());
    if (config.virtioConsole) devices.push(new VirtioConsole(console, { input: true, onInput: () => machine.kick?.() }));
    for (const n of config.nets ?? []) {
      const mac = parseMac(n.mac);
      if (!mac) throw new Error(`invalid MAC '${n.mac}' for TAP '${n.tap}'`);
      const poll = txPollFromEnv() && machine.sliceTimer ? machine.sliceTimer : undefined;
      const nic = new VirtioNet(new Tap(n.tap, { writerThread: process.env.RINGZERO_NET_TX_THREAD !== '0' }), mac, undefined, undefined, poll);
      nets.push(nic);
      devices.push(nic);
    }
    if (config.vsock) devices.push(vsock = new VirtioVsock({ cid: config.vsock.cid, path: config.vsock.path }));
    if (config.balloon) devices.push(balloon = new VirtioBalloon());
    if (config.controlSocket !== undefined) control = new ControlServer(config.controlSocket, { balloon }, (line) => process.stderr.write(`ringzero: ${line}\n`));
  } catch (error) {
    for (const d of devices) d.close();
    throw error;
  }
  const functions = devices.map((device, i) => {
    const fn = new VirtioPciFunction(device, machine.mem);
    pci.addDevice(fn, VIRTIO_FIRST_SLOT + i);
    return fn;
  });
  return {
    functions, nets, vsock, balloon, control,
    close: () => {
      control?.close();
      for (const fn of functions) fn.close();
    },
  };
}
