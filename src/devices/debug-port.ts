// Port 0x80, the POST diagnostic port (firmware writes progress codes; Linux uses it as an I/O
// delay with outb_p): accepted and ignored. Port 0xE9, the Bochs/QEMU debug console: bytes the
// guest writes go to a sink, batched per microtask; reading it answers 0xE9 so a guest can tell
// the port is there (the Bochs "port E9 hack" convention).
import type { AccessSize, PortBus, PortDevice } from './bus.ts';

export const POST_PORT = 0x80;
export const DEBUG_CONSOLE_PORT = 0xe9;

export class DebugPort implements PortDevice {
  private buf: number[] = [];
  private flushQueued = false;
  /** Last POST code written, for diagnostics. */
  lastPostCode = 0;

  constructor(private readonly sink: (bytes: Uint8Array) => void = () => {}) {}

  flush(): void {
    if (this.buf.length === 0) return;
    const bytes = Uint8Array.from(this.buf);
    this.buf = [];
    this.sink(bytes);
  }

  ioRead(port: number, _size: AccessSize): number {
    return port === DEBUG_CONSOLE_PORT ? DEBUG_CONSOLE_PORT : 0xff;
  }

  ioWrite(port: number, size: AccessSize, value: number): void {
    if (port === POST_PORT) {
      this.lastPostCode = value & 0xff;
      return;
    }
    for (let i = 0; i < size; i++) this.buf.push((value >>> (8 * i)) & 0xff);
    if (this.buf.length >= 4096) this.flush();
    else if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
  }

  register(bus: PortBus): void {
    bus.register(POST_PORT, 1, this, 'post');
    bus.register(DEBUG_CONSOLE_PORT, 1, this, 'debugcon');
  }
}
