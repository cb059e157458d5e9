// Network cards in VM definitions: `nics: [{tap, mac?}]`, each a virtio-net card on a host TAP device
// (`ringzero run --net tap=NAME,mac=MAC`, eth0, eth1, ... in order). The definition is the source of truth for the
// MAC: define fills in a default one and stores it, so the guest keeps its address from one start to the next and
// `info` shows what the guest will see; clones get their own (src/manager/templates.ts).
//
// The schema (src/manager/schema.ts) checks the shapes; what a pattern cannot say is checked here: a MAC must be
// unicast and not all zeros (IEEE 802 §8.2: the lowest bit of the first byte is the group bit; the kernel refuses
// such addresses for an interface), a definition names each TAP and each MAC once, and no two defined VMs share a
// MAC. A TAP may be named by several definitions (only one VM can run on it at a time: start checks that).

import crypto from 'node:crypto';
import { ManagerError, MAC_PATTERN, TAP_NAME_PATTERN, type NicDefinition, type VmDefinition } from './schema.ts';
import { MAX_NICS } from '../vmm/config.ts';

const TAP_RE = new RegExp(TAP_NAME_PATTERN);
const MAC_RE = new RegExp(MAC_PATTERN);

/** QEMU's and libvirt's locally assigned range (52:54:00), which virt-clone also uses. */
const MAC_PREFIX = [0x52, 0x54, 0x00];

/**
 * The default MAC of NIC `index` of VM `name`: 52:54:00 and three bytes of SHA-256("ringzero-nic:NAME:INDEX:TRY"),
 * so the same definition always gets the same address; `attempt` moves on when that one is taken.
 */
export function defaultMac(name: string, index: number, attempt = 0): string {
  const hash = crypto.createHash('sha256').update(`ringzero-nic:${name}:${index}:${attempt}`).digest();
  return [...MAC_PREFIX, hash[0], hash[1], hash[2]].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** A random MAC in the same range (clones: each its own). */
export function randomMac(): string {
  return [...MAC_PREFIX, ...crypto.randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Why `mac` cannot be a guest's address, or undefined. */
export function macProblem(mac: string): string | undefined {
  if (!MAC_RE.test(mac)) return 'six hex bytes like 52:54:00:12:34:56';
  if (parseInt(mac.slice(0, 2), 16) & 1) return 'a multicast address (lowest bit of the first byte set)';
  if (/^(00:){5}00$/.test(mac)) return 'all zeros';
  return undefined;
}

/**
 * The definition's NICs checked and completed: MACs lower-cased, a default MAC for each NIC without one (avoiding
 * `taken`, the MACs of the other defined VMs). Throws `invalid` for a bad or repeated TAP or MAC and `conflict` for
 * a MAC another VM has. Returns the definition unchanged when it has no `nics`.
 */
export function completeNics(definition: VmDefinition, taken: Map<string, string>): VmDefinition {
  if (definition.nics === undefined) return definition;
  if (!Array.isArray(definition.nics) || definition.nics.length > MAX_NICS) throw new ManagerError('invalid', `nics: at most ${MAX_NICS} cards`);
  const taps = new Set<string>();
  const macs = new Set<string>();
  // Explicit MACs first, so a generated one never takes an address the definition names further on.
  for (const [i, nic] of definition.nics.entries()) {
    if (typeof nic?.tap !== 'string' || !TAP_RE.test(nic.tap)) {
      throw new ManagerError('invalid', `nics[${i}].tap '${String(nic?.tap)}' is not a TAP name: 1 to 15 letters, digits or _.@+-`);
    }
    if (taps.has(nic.tap)) throw new ManagerError('invalid', `nics[${i}]: TAP '${nic.tap}' is named twice (one card per TAP)`);
    taps.add(nic.tap);
    if (nic.mac === undefined) continue;
    const problem = macProblem(nic.mac);
    if (problem !== undefined) throw new ManagerError('invalid', `nics[${i}].mac '${nic.mac}' is not a usable MAC: ${problem}`);
    const mac = nic.mac.toLowerCase();
    if (macs.has(mac)) throw new ManagerError('invalid', `nics[${i}]: MAC ${mac} is given twice`);
    const owner = taken.get(mac);
    if (owner !== undefined) throw new ManagerError('conflict', `nics[${i}]: MAC ${mac} is already the address of VM '${owner}'`);
    macs.add(mac);
  }
  const nics: NicDefinition[] = definition.nics.map((nic, i) => {
    if (nic.mac !== undefined) return { ...nic, mac: nic.mac.toLowerCase() };
    let mac = defaultMac(definition.name, i);
    for (let attempt = 1; macs.has(mac) || taken.has(mac); attempt++) mac = defaultMac(definition.name, i, attempt);
    macs.add(mac);
    return { ...nic, mac };
  });
  return { ...definition, nics };
}

/** Every MAC of these definitions, with the VM that has it. */
export function macsOf(definitions: Iterable<VmDefinition>, except?: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of definitions) {
    if (d.name === except) continue;
    for (const nic of d.nics ?? []) if (nic.mac !== undefined) out.set(nic.mac.toLowerCase(), d.name);
  }
  return out;
}

/** `ringzero run --net` values of a definition. */
export function netArguments(definition: VmDefinition): string[] {
  return (definition.nics ?? []).flatMap((nic) => ['--net', `tap=${nic.tap}${nic.mac !== undefined ? `,mac=${nic.mac}` : ''}`]);
}

/**
 * A TAP name for NIC `index` of a clone `vmName`: "rz" and 8 hex digits of SHA-256 of the name, then ".INDEX"
 * (12 bytes, under Linux's 15): each clone on its own TAP, so clones of one template can run at once.
 */
export function cloneTapName(vmName: string, index: number): string {
  return `rz${crypto.createHash('sha256').update(`ringzero-tap:${vmName}`).digest('hex').slice(0, 8)}.${index}`;
}
