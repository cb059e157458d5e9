// The machine's virtio devices: one virtio-pci function per device, on bus 0 from slot 1 up, in the order
// disks (so --disk order is /dev/vda, /dev/vdb, ... as the guest probes slots in order), rng, console.
import type { GuestMemory } from '../../memory/guest-memory.ts';
import type { PciHost } from '../pci/host.ts';
import type { ConsoleIo, VmConfig } from '../../vmm/config.ts';
import { VirtioPciFunction } from './pci.ts';
import { VirtioBlock } from './blk.ts';
import { VirtioRng } from './rng.ts';
import { VirtioConsole } from './console.ts';
import type { VirtioDevice } from './device.ts';

export { VirtioPciFunction } from './pci.ts';
export { VirtioBlock } from './blk.ts';
export { VirtioRng } from './rng.ts';
export { VirtioConsole } from './console.ts';

/** First PCI slot for virtio devices (slot 0 is the host bridge). */
export const VIRTIO_FIRST_SLOT = 1;

export interface VirtioMachine {
  mem: GuestMemory;
  /** Wake the run loop (host input arrived for the guest). */
  kick?(): void;
}

export interface VirtioDevices {
  functions: VirtioPciFunction[];
  /** Close the disk images and stop taking console input. */
  close(): void;
}

/** Create the devices `config` asks for and plug them into `pci`. Throws if a disk image cannot be opened. */
export function attachVirtioDevices(machine: VirtioMachine, pci: PciHost, config: VmConfig, console: ConsoleIo): VirtioDevices {
  const devices: VirtioDevice[] = [];
  try {
    for (const disk of config.disks ?? []) devices.push(new VirtioBlock(disk));
    if (config.rng) devices.push(new VirtioRng());
    if (config.virtioConsole) devices.push(new VirtioConsole(console, { input: true, onInput: () => machine.kick?.() }));
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
    functions,
    close: () => { for (const fn of functions) fn.close(); },
  };
}
