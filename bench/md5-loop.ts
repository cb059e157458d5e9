// bench/md5-loop (issue 4): the md5 of bench/engines' md5 workload without the kernel. busybox's own md5 code
// (md5_hash -> md5_process_block64, then md5_end), taken from the default image's initramfs, runs on the soft CPU
// in flat long mode (identity-mapped, CPL 0) over N passes of a 64 KiB buffer of zeros, and the digest it writes is
// checked against node:crypto's. Prints the main thread's CPU after a warm-up (translation and V8's tier-up done),
// per guest instruction and per 64-byte md5 block, so a translator change can be A/B-tested on the loop alone:
//
//   node --import tsx bench/md5-loop.ts [N=512] [WARM=40000000] [ENGINE=wasm|interp]
//
// Why it exists (session 22): in the VM, `md5sum /tmp/z` (32 MiB in tmpfs) took 1.0-1.2 s of main-thread CPU and
// `dd if=/dev/zero bs=1M count=32 | md5sum` 2.4-2.7 s, while this loop runs the same ~790 guest instructions per
// 64-byte block at ~1.3 ns each (~0.5 s per 32 MiB), on the same loaded host: most of the workload's time is not the
// md5 code's translation.
//
// The addresses are those of Debian bookworm's busybox-static 1:1.35.0-4+deb12u1+b1 (the image's busybox): checked
// against md5's first round constant in its table before running.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { GuestMemory, MiB } from '../src/memory/guest-memory.ts';
import { PortBus, MmioBus } from '../src/devices/bus.ts';
import { VmClock } from '../src/vmm/clock.ts';
import { SoftCpu, setupFlatLongMode } from '../src/cpu/soft/index.ts';
import { requireImage } from './support/common.ts';

const MD5_HASH = 0x57aa79, MD5_END = 0x57aae4, MD5_BLOCK = 0x579eae, K_TABLE = 0x5a3040;
const CODE = 0x100000, CTX = 0x1000000, BUF = 0x1100000, OUT = 0x1200000, STACK_TOP = 0x1800000;

const engine = process.env.ENGINE ?? 'wasm';
const N = Number(process.env.N ?? 512);
const WARM = Number(process.env.WARM ?? 40_000_000);

const image = requireImage('md5-loop');
const busybox = execFileSync('cpio', ['-i', '--quiet', '--to-stdout', 'bin/busybox'], { input: fs.readFileSync(image.initrd), maxBuffer: 64 * MiB });

const wasm = engine === 'wasm';
const mem = new GuestMemory(64 * MiB, undefined, { wasm });
const cpu = new SoftCpu({ mem, ports: new PortBus(), mmio: new MmioBus(), clock: new VmClock(), blockCache: engine !== 'interp', wasm });
cpu.jitEnabled = wasm;
setupFlatLongMode(cpu, { pml4: 0x10000, identityMapBytes: 1 << 30, cpl: 0 });
// The ELF's PT_LOAD segments at their addresses (ELF-64: e_phoff at 0x20, e_phentsize 0x36, e_phnum 0x38;
// a program header's p_type at 0, p_offset 8, p_vaddr 0x10, p_filesz 0x20). Its .bss is zero already.
const phoff = Number(busybox.readBigUInt64LE(0x20)), phsize = busybox.readUInt16LE(0x36), phnum = busybox.readUInt16LE(0x38);
for (let i = 0; i < phnum; i++) {
  const ph = phoff + i * phsize;
  if (busybox.readUInt32LE(ph) !== 1) continue;
  const off = Number(busybox.readBigUInt64LE(ph + 8)), va = Number(busybox.readBigUInt64LE(ph + 0x10)), size = Number(busybox.readBigUInt64LE(ph + 0x20));
  mem.write(va, busybox.subarray(off, off + size));
}
if (Buffer.from(mem.read(K_TABLE, 4)).readUInt32LE(0) !== 0xd76aa478) {
  console.error('bench/md5-loop: the image\'s busybox is not the build this bench knows (md5 table not at 0x5a3040)');
  process.exit(2);
}
// mov r15d,N / 1: mov rdi,CTX / mov rsi,BUF / mov edx,65536 / mov rax,md5_hash / call rax / dec r15d / jnz 1b
// mov rdi,CTX / mov rsi,OUT / mov rax,md5_end / call rax / hlt
const driver = Buffer.from('41bf1111111148c7c70000000148c7c600001001ba0000010048c7c079aa5700ffd041ffcf75df' +
  '48c7c70000000148c7c60000200148c7c0e4aa5700ffd0f4', 'hex');
driver.writeUInt32LE(N, 2);
mem.write(CODE, driver);
// md5_begin's context: 64-byte buffer, the block function at 0x40, the byte count at 0x48, the state at 0x50.
const ctx = Buffer.alloc(0x60);
ctx.writeBigUInt64LE(BigInt(MD5_BLOCK), 0x40);
ctx.writeBigUInt64LE(0xefcdab8967452301n, 0x50);
ctx.writeBigUInt64LE(0x1032547698badcfen, 0x58);
mem.write(CTX, ctx);
cpu.setGpr(4, BigInt(STACK_TOP));
cpu.rip = CODE;

const mainCpuMs = () => {
  const f = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
};
while (!cpu.halted && cpu.instructions < WARM) cpu.run(1_000_000);
const i1 = cpu.instructions, m1 = mainCpuMs();
while (!cpu.halted) cpu.run(1_000_000);
const ms = mainCpuMs() - m1, hot = cpu.instructions - i1;
if (cpu.lastException !== -1) throw new Error(`guest exception ${cpu.lastException}`);
const digest = Buffer.from(mem.read(OUT, 16)).toString('hex');
const want = createHash('md5').update(Buffer.alloc(N * 65536)).digest('hex');
if (digest !== want) throw new Error(`md5 ${digest}, expected ${want}`);
const blocks = hot / (cpu.instructions / (N * 1024));
console.log(JSON.stringify({
  engine, N, instructions: cpu.instructions, perBlock: Math.round(cpu.instructions / (N * 1024)), hotMainMs: ms,
  nsPerInstruction: +(ms * 1e6 / hot).toFixed(3), usPerBlock: +(ms * 1e3 / blocks).toFixed(3), md5: digest,
}));
