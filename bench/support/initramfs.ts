// An initramfs for benches (and test/manager-migrate's ticker): the default image's initramfs with small static
// programs appended as a second newc archive (the kernel unpacks concatenated archives in order, each starting on a 4-byte boundary: Linux
// Documentation/driver-api/early-userspace/buffer-format.rst). The programs are C sources beside this file,
// compiled on the host with `gcc -static`; the result is cached under <cache>/bench/<key>/, the key being a hash of
// the base initramfs, the sources and the compiler's version, so a changed source or image builds a new one.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { cacheDir } from '../../src/image/build.ts';
import { writeCpio, type CpioEntry } from '../../src/image/cpio.ts';

const HERE = path.dirname(new URL(import.meta.url).pathname);

/**
 * The base initramfs plus /bin/<name> for each C file `sources` names (e.g. ['randread']: bench/support/randread.c;
 * an absolute path to a .c file elsewhere installs /bin/ with its base name: '/x/test/support/ticker.c' -> /bin/ticker).
 * Returns the path of the combined archive. Throws with gcc's message when a program does not build.
 */
export function initrdWithPrograms(baseInitrd: string, sources: readonly string[]): string {
  const base = fs.readFileSync(baseInitrd);
  const texts = sources.map((source) => {
    const file = path.isAbsolute(source) ? source : path.join(HERE, `${source}.c`);
    return { name: path.basename(file, '.c'), file, text: fs.readFileSync(file, 'utf8') };
  });
  let gcc: string;
  try {
    gcc = execFileSync('gcc', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  } catch {
    throw new Error('bench: gcc is needed to build the guest programs (apt-get install gcc libc6-dev)');
  }
  const key = createHash('sha256').update(base).update(JSON.stringify({ gcc, texts: texts.map(({ name, text }) => ({ name, text })) })).digest('hex').slice(0, 16);
  const dir = path.join(cacheDir(), 'bench', key);
  const out = path.join(dir, 'initramfs.cpio');
  if (fs.existsSync(out)) return out;

  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    const entries: CpioEntry[] = [];
    for (const { name, file } of texts) {
      const binary = path.join(tmp, name);
      try {
        execFileSync('gcc', ['-static', '-O2', '-Wall', '-o', binary, file], { stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (error) {
        throw new Error(`bench: gcc -static ${name}.c failed: ${String((error as { stderr?: Buffer }).stderr ?? error)}`);
      }
      entries.push({ name: `bin/${name}`, type: 'file', perm: 0o755, data: fs.readFileSync(binary) });
    }
    // The base archive ends 4-byte aligned (newc pads every member); pad to 512 anyway, as cpio(1) does.
    const padding = Buffer.alloc((512 - (base.length % 512)) % 512);
    fs.writeFileSync(path.join(tmp, 'initramfs.cpio'), Buffer.concat([base, padding, writeCpio(entries)]));
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}
