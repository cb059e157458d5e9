// QEMU TCG's own guest instruction count (issue 5: instructions per MiB on both VMMs), through the plugin
// ./qemu-icount-plugin.c: built with gcc once per source text into the bench cache, loaded with `-plugin`, read back
// from the counter file it rewrites every millisecond. bench/io-passes (--qemu-count) and bench/io
// (RINGZERO_BENCH_QEMU_COUNT=1) use it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The plugin's shared object, built on first use (gcc; QEMU must have been built with plugin support). */
export function icountPlugin(): string {
  const src = path.join(path.dirname(fileURLToPath(import.meta.url)), 'qemu-icount-plugin.c');
  const key = createHash('sha256').update(fs.readFileSync(src)).digest('hex').slice(0, 16);
  const dir = path.join(os.homedir(), '.cache', 'ringzero', 'bench', `icount-${key}`);
  const so = path.join(dir, 'icount.so');
  if (!fs.existsSync(so)) {
    fs.mkdirSync(dir, { recursive: true });
    execFileSync('gcc', ['-O2', '-Wall', '-shared', '-fPIC', '-o', `${so}.tmp`, src, '-lpthread'], { stdio: ['ignore', 'pipe', 'pipe'] });
    fs.renameSync(`${so}.tmp`, so);
  }
  return so;
}

/** One QEMU's counter: `args` go on its command line; `instructions()` reads the count so far. */
export class QemuInstructionCounter {
  readonly args: string[];
  constructor(readonly file: string) {
    this.args = ['-plugin', `${icountPlugin()},out=${file}`];
  }

  /** Guest instructions QEMU has run since it started (as of the plugin's last write, at most ~1 ms old; 0 before). */
  instructions(): number {
    try {
      const b = fs.readFileSync(this.file);
      return b.length >= 8 ? Number(b.readBigUInt64LE(0)) : 0;
    } catch {
      return 0;
    }
  }

  /** The instructions run so far by translation-block start address (hex), from the plugin's dump into `scratch`. */
  async blocks(scratch: string): Promise<Map<string, number>> {
    fs.writeFileSync(`${this.file}.req`, scratch);
    for (let i = 0; i < 2000 && fs.existsSync(`${this.file}.req`); i++) await new Promise((r) => setTimeout(r, 5));
    const out = new Map<string, number>();
    for (const line of fs.readFileSync(scratch, 'utf8').split('\n')) {
      const [a, n] = line.split(' ');
      if (n) out.set(a, (out.get(a) ?? 0) + Number(n));
    }
    return out;
  }
}
