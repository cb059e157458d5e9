// Blocks translated in an earlier run (issue 4; RINGZERO_WASM_SEEN=1, off by default): the translator's runtime
// (./runtime.ts WasmEngine) writes, when the process exits, a key for every 64-bit block it queued for translation, and
// a later run queues a block whose key is in that file at its first replay instead of after WASM_HOT replays in the
// JavaScript tier. A boot of the same kernel and initramfs then runs the code that became hot last time in wasm from
// its first batches on: to the prompt, ~5.5M instructions of a boot were replayed in JavaScript while their block
// warmed towards WASM_HOT (session 26, RINGZERO_TIER_STATS=1), at several times the cost of an instruction in wasm.
//
// A key is the block's content, not its address: Linux places its kernel at a random physical and virtual address
// each boot (KASLR; our RDTSC is not deterministic) and userspace is position independent, but neither moves code
// within its page. So the key hashes the block's code bytes, its offset in its page and its instruction count. A
// key that matches the wrong block (a 32-bit hash: ~15k keys against a few ten thousand blocks) only has that block
// translated sooner: the file decides when a block is translated, never what it is translated into, so a stale or
// foreign file (another kernel, code changed since) costs at most some translations that do not pay back.
import { readFileSync, writeFileSync, mkdirSync, renameSync } from 'node:fs';
import { join, dirname } from 'node:path';
import type { Block } from '../code-cache.ts';
import { cacheDir } from '../../../image/build.ts';

/** RINGZERO_WASM_SEEN=1: queue blocks translated in an earlier run at their first replay. */
export const SEEN = process.env.RINGZERO_WASM_SEEN === '1';
/**
 * RINGZERO_WASM_AGAIN=1: queue at their first replay, too, blocks of the same key translated earlier in this run (no
 * file needed). A write into a page of code drops every block of the page (code-cache.ts page generations), and Linux
 * writes into its text while it boots (alternatives, jump labels and static calls patched as initcalls enable them:
 * ~1000 page invalidations to the prompt), so the hot blocks of such a page warmed up again in JavaScript, byte for
 * byte the code they were, before they were translated again (~2000 of a boot's ~15600 translations had the key of
 * one translated before).
 */
export const AGAIN = process.env.RINGZERO_WASM_AGAIN === '1';

/** The file: RINGZERO_WASM_SEEN_FILE, else wasm-seen.bin in ringzero's cache directory. */
function seenFile(env: NodeJS.ProcessEnv = process.env): string {
  return env.RINGZERO_WASM_SEEN_FILE || join(cacheDir(env), 'wasm-seen.bin');
}

/**
 * The key of block `b` in `ram` (its physical page must be `ram`'s: SoftCpu only caches blocks there): FNV-1a over its
 * bytes up to its last instruction and 8 bytes of that (whose length a Block does not keep; clipped at the page's
 * end), with its page offset and instruction count.
 */
export function blockKey(ram: Uint8Array, b: Block): number {
  const es = b.entries;
  let len = 8;
  for (let i = 0; i < b.n - 1; i++) len += es[i].len;
  const pa = b.pa, end = Math.min(pa + len, pa - (pa & 0xfff) + 4096, ram.length);
  let h = Math.imul(0x811c9dc5 ^ (pa & 0xfff), 0x01000193) ^ b.n;
  for (let p = pa; p < end; p++) h = Math.imul(h ^ ram[p], 0x01000193);
  return h >>> 0;
}

/** The keys read from the file at start, and those of this run (written at exit). */
export class SeenSet {
  private readonly old = new Set<number>();
  private readonly now = new Set<number>();
  private readonly file: string | null;
  /** `file`: null for none (AGAIN alone); `again`: has() answers for this run's keys too. */
  constructor(file: string | null = seenFile(), readonly again = AGAIN) {
    this.file = file;
    if (file !== null) try {
      const buf = readFileSync(file);
      const keys = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2);
      for (let i = 0; i < keys.length; i++) this.old.add(keys[i]);
    } catch { /* none yet, or unreadable: a first run */ }
  }
  /** Keys read from the file, and keys of this run so far. */
  get known(): number { return this.old.size; }
  get added(): number { return this.now.size; }
  /** Whether `key` is known: 1 from the file, 2 from this run (AGAIN), else 0. */
  has(key: number): number { return this.old.has(key) ? 1 : this.again && this.now.has(key) ? 2 : 0; }
  add(key: number): void { this.now.add(key); }
  /**
   * Write this run's keys, unless it translated less than half as many blocks as the file holds (a short run, a test:
   * it would replace a boot's profile with a part of it). Written to a new file then renamed, so that two processes
   * that end at once leave one whole file.
   */
  save(): void {
    if (this.file === null || this.now.size === 0 || this.now.size < this.old.size / 2) return;
    try {
      mkdirSync(dirname(this.file), { recursive: true });
      const tmp = `${this.file}.${process.pid}.tmp`;
      writeFileSync(tmp, new Uint8Array(Uint32Array.from(this.now).buffer));
      renameSync(tmp, this.file);
    } catch { /* a read-only cache: the next run warms as before */ }
  }
}

let shared: SeenSet | null = null;
/** A set tests give the engines made after (null: none, undefined: RINGZERO_WASM_SEEN decides). */
let given: SeenSet | null | undefined;
/** Tests: the SeenSet of engines made after (null: off; undefined: as RINGZERO_WASM_SEEN says); returns the old one. */
export function useSeenSet(s: SeenSet | null | undefined): SeenSet | null | undefined {
  const old = given;
  given = s;
  return old;
}
/** The process's SeenSet (read once, saved when the process exits), or null when RINGZERO_WASM_SEEN and _AGAIN are off. */
export function seenSet(): SeenSet | null {
  if (given !== undefined) return given;
  if (!SEEN && !AGAIN) return null;
  if (shared === null) {
    const s = (shared = new SeenSet(SEEN ? seenFile() : null));
    if (SEEN) process.once('exit', () => s.save());
  }
  return shared;
}
