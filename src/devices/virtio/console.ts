// virtio-console (virtio 1.2 §5.3) with a single port (no VIRTIO_CONSOLE_F_MULTIPORT): receiveq 0 carries
// host input to the guest, transmitq 1 guest output to the host, so `console=hvc0` works. Output goes to
// the same ConsoleIo the 16550A uses; input is taken from it when this console is the selected one.
// VIRTIO_CONSOLE_F_EMERG_WRITE lets the guest write single bytes through the configuration space.
import type { ConsoleIo } from '../../vmm/config.ts';
import { VirtqueueError, gather, scatter } from './queue.ts';
import { VirtioDevice, VIRTIO_ID_CONSOLE, bit, readLe } from './device.ts';

export const VIRTIO_CONSOLE_F_EMERG_WRITE = 2n;
const RECEIVE_QUEUE = 0, TRANSMIT_QUEUE = 1;
/** Config: cols u16, rows u16, max_nr_ports u32, emerg_wr u32 (§5.3.4). */
const CONFIG_BYTES = 12;
const EMERG_WR_OFFSET = 8;
/** Host input kept while the guest has posted no receive buffers; beyond this it is dropped. */
export const CONSOLE_INPUT_LIMIT = 64 * 1024;

export class VirtioConsole extends VirtioDevice {
  readonly deviceType = VIRTIO_ID_CONSOLE;
  readonly classCode = 0x078000; // simple communication controller, other
  readonly queueMaxSizes = [64, 64];
  readonly configSize = CONFIG_BYTES;
  readonly deviceFeatures = bit(VIRTIO_CONSOLE_F_EMERG_WRITE);
  private readonly config = new Uint8Array(CONFIG_BYTES);
  private pendingInput: Uint8Array[] = [];
  private pendingBytes = 0;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly io: ConsoleIo, opts: { input: boolean; onInput?: () => void }) {
    super();
    new DataView(this.config.buffer).setUint32(4, 1, true); // max_nr_ports (only read with MULTIPORT)
    if (opts.input) {
      this.unsubscribe = io.onInput((data) => {
        this.receive(data);
        opts.onInput?.();
      });
    }
  }

  readConfig(offset: number, size: number): number {
    return readLe(this.config, offset, size);
  }

  writeConfig(offset: number, size: number, value: number): void {
    // Emergency write: the low byte is one character of output (§5.3.4).
    if (offset === EMERG_WR_OFFSET && size === 4 && this.transport.negotiated & bit(VIRTIO_CONSOLE_F_EMERG_WRITE)) {
      this.io.write(Uint8Array.of(value & 0xff));
    }
  }

  /** Host input for the guest: delivered now if receive buffers are posted, else kept (bounded). */
  receive(data: Uint8Array): void {
    if (this.pendingBytes + data.length > CONSOLE_INPUT_LIMIT) data = data.subarray(0, CONSOLE_INPUT_LIMIT - this.pendingBytes);
    if (data.length === 0) return;
    this.pendingInput.push(Uint8Array.from(data));
    this.pendingBytes += data.length;
    this.transport?.processLater(RECEIVE_QUEUE);
  }

  onNotify(index: number): void {
    if (index === TRANSMIT_QUEUE) {
      this.drain(TRANSMIT_QUEUE, (chain) => {
        if (chain.writable.length > 0) throw new VirtqueueError('virtio-console transmit buffer is device-writable');
        const out = new Uint8Array(chain.readableBytes);
        gather(chain.readable, 0, out);
        if (out.length > 0) this.io.write(out);
        return 0;
      });
    } else if (index === RECEIVE_QUEUE) {
      this.deliverInput();
    }
  }

  /** Move pending input into posted receive buffers, one chain per piece that fits. */
  private deliverInput(): void {
    const q = this.transport.queue(RECEIVE_QUEUE);
    if (!q || this.pendingBytes === 0) return;
    let used = 0;
    while (this.pendingBytes > 0) {
      const chain = q.pop();
      if (!chain) break;
      if (chain.readable.length > 0) throw new VirtqueueError('virtio-console receive buffer is device-readable');
      const data = this.takeInput(chain.writableBytes);
      q.push(chain.head, scatter(chain.writable, 0, data));
      used++;
    }
    q.enableNotification();
    if (used > 0) this.transport.usedBuffers(RECEIVE_QUEUE);
  }

  private takeInput(max: number): Uint8Array {
    const out = new Uint8Array(Math.min(max, this.pendingBytes));
    let filled = 0;
    while (filled < out.length) {
      const head = this.pendingInput[0];
      const n = Math.min(head.length, out.length - filled);
      out.set(head.subarray(0, n), filled);
      filled += n;
      if (n === head.length) this.pendingInput.shift();
      else this.pendingInput[0] = head.subarray(n);
    }
    this.pendingBytes -= filled;
    return out;
  }

  /** Snapshot: host input typed but not yet taken by the guest (bounded by CONSOLE_INPUT_LIMIT). */
  override saveDeviceState(): { pendingInput: string } {
    return { pendingInput: Buffer.concat(this.pendingInput).toString('base64') };
  }

  override restoreDeviceState(state: unknown): void {
    const s = state as { pendingInput?: unknown } | undefined;
    const input = typeof s?.pendingInput === 'string' ? Buffer.from(s.pendingInput, 'base64') : Buffer.alloc(0);
    this.pendingInput = [];
    this.pendingBytes = 0;
    if (input.length > 0) this.receive(new Uint8Array(input));
  }

  onReset(): void {
    // Input typed before the reset stays queued for the next driver; nothing else is held.
  }

  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }
}
