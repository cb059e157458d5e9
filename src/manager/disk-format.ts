// Disk formats in VM definitions. A disk may say `format: raw|qcow2`: the VMM then opens it as that, without
// probing (`ringzero run --disk FILE,format=F`). Without it the VMM probes the qcow2 magic, and a disk probed as raw
// refuses a write of a qcow2 magic to its first sector (src/storage/backend.ts RawBackend, as QEMU does with probed
// raw images: a guest could otherwise turn its disk into a qcow2 image naming a host file as its backing file, and
// the next probe would open that file). With `format: raw` stated, the guest owns every byte of its disk, sector 0
// included, and no probe ever looks at it.

import { detectFormat } from '../storage/backend.ts';
import { ManagerError, type DiskDefinition, type VmDefinition } from './schema.ts';
import { storageToManagerError } from './volumes.ts';

/** `ringzero run --disk` value of a disk of a definition. */
export function diskArgument(disk: DiskDefinition): string {
  return `${disk.path}${disk.readonly ? ',readonly' : ''}${disk.serial ? `,serial=${disk.serial}` : ''}${disk.format ? `,format=${disk.format}` : ''}`;
}

/** Before a start: a disk stated to be qcow2 must be one (else `not_qcow2`, before any VMM is spawned). */
export function checkDiskFormats(definition: VmDefinition): void {
  for (const [index, disk] of definition.disks.entries()) {
    if (disk.format !== 'qcow2') continue;
    let found;
    try {
      found = detectFormat(disk.path);
    } catch (error) {
      throw storageToManagerError(error, `disk ${index} of VM '${definition.name}'`);
    }
    if (found !== 'qcow2') throw new ManagerError('not_qcow2', `disk ${index} of VM '${definition.name}' ('${disk.path}') is defined as qcow2 but has no qcow2 header`);
  }
}
