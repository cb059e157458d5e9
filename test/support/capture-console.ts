// A ConsoleIo for in-process machine tests: keeps everything the guest writes, feeds no input.
import type { ConsoleIo } from '../../src/vmm/config.ts';

export function captureConsole(): ConsoleIo & { text(): string } {
  const chunks: Buffer[] = [];
  return {
    write: (data) => { chunks.push(Buffer.from(data)); },
    onInput: () => () => {},
    text: () => Buffer.concat(chunks).toString('latin1'),
  };
}
