// A network namespace holding the host end of a bench guest's TAP device, so the bench configures nothing in the
// host's own namespace (as test/virtio-net-guest.test.ts does). The VMM creates its TAP in the host namespace as it
// starts (ringzero's src/net/tap.ts, QEMU's -netdev tap); adopt() moves it here and gives it an address. When the
// VMM exits the non-persistent TAP disappears with its last file descriptor; close() deletes the namespace.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { onCleanup } from './common.ts';

const sh = (...args: string[]) => execFileSync(args[0], args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** Why TAP benches cannot run here, or undefined. */
export function tapUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for TAP devices and a network namespace';
  if (!fs.existsSync('/dev/net/tun')) return 'no /dev/net/tun';
  try { sh('ip', '-V'); } catch { return 'no ip(8) (iproute2)'; }
  return undefined;
}

export class NetNamespace {
  private closed = false;
  private readonly unregister: () => void;

  constructor(readonly name: string, readonly hostAddress: string) {
    sh('ip', 'netns', 'add', name);
    this.unregister = onCleanup(() => this.close());
  }

  /** Wait for the VMM's TAP `tap` to appear, move it into the namespace, address it and bring it up. */
  async adopt(tap: string, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!fs.existsSync(`/sys/class/net/${tap}`)) {
      if (Date.now() > deadline) throw new Error(`TAP ${tap} did not appear within ${ms / 1000} s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    sh('ip', 'link', 'set', tap, 'netns', this.name);
    sh('ip', '-n', this.name, 'addr', 'add', `${this.hostAddress}/24`, 'dev', tap);
    sh('ip', '-n', this.name, 'link', 'set', tap, 'up');
  }

  /** argv that runs `args` inside the namespace. */
  exec(args: readonly string[]): [string, string[]] {
    return ['ip', ['netns', 'exec', this.name, ...args]];
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try { sh('ip', 'netns', 'del', this.name); } catch { /* already gone */ }
    this.unregister();
  }
}

/** Delete a TAP left in the host namespace (a VMM that died before adopt()); ignores a missing one. */
export function deleteTap(tap: string): void {
  if (!fs.existsSync(`/sys/class/net/${tap}`)) return;
  try { sh('ip', 'link', 'del', tap); } catch { /* gone meanwhile */ }
}
