// virtio-rng (virtio 1.2 §5.4): one request queue whose device-writable buffers the device fills with
// random bytes from the host's CSPRNG (crypto.getRandomValues reads getrandom(2)). Linux registers it as
// a hw_random source ("virtio_rng.0" in /sys/class/misc/hw_random/rng_current).
import { webcrypto } from 'node:crypto';
import { VirtqueueError, type DescriptorChain } from './queue.ts';
import { VirtioDevice, VIRTIO_ID_RNG } from './device.ts';

/** getRandomValues fills at most 65536 bytes per call (Web Crypto). */
const RANDOM_CHUNK = 65536;
/** Bytes handed out per request: Linux asks for at most a page or so; more is not refused, only capped. */
export const RNG_MAX_REQUEST = 1 << 20;

export class VirtioRng extends VirtioDevice {
  readonly deviceType = VIRTIO_ID_RNG;
  readonly classCode = 0x00ff00; // unclassified
  readonly queueMaxSizes = [64];
  readonly configSize = 0;
  readonly deviceFeatures = 0n;

  readConfig(): number {
    return 0;
  }

  onNotify(index: number): void {
    this.drain(index, (chain) => this.fill(chain));
  }

  private fill(chain: DescriptorChain): number {
    // §5.4.6.1: the driver only places device-writable buffers on requestq.
    if (chain.readable.length > 0) throw new VirtqueueError('virtio-rng request with device-readable buffers');
    let written = 0;
    for (const buffer of chain.writable) {
      for (let at = 0; at < buffer.length && written < RNG_MAX_REQUEST; at += RANDOM_CHUNK) {
        const piece = buffer.subarray(at, Math.min(buffer.length, at + RANDOM_CHUNK, at + RNG_MAX_REQUEST - written));
        webcrypto.getRandomValues(piece);
        written += piece.length;
      }
    }
    return written;
  }
}
