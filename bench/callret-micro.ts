// A guest loop of CALL g / add / dec / jnz with g = add / ret, translated to wasm, with CALLRET (src/cpu/soft/wasm/translate.ts)
// off and on in one process: CPU ns per iteration, alternating. BT=1: BATCH_TAIL on (g is translated in the caller's batch).
//   node --import tsx bench/callret-micro.ts
import { hexBytes, runBlocksToHalt, CODE, interpreterOrWasmMachine } from '../test/support/soft-cpu.ts';
import { setHotThreshold, setJitThreshold } from '../src/cpu/soft/code-cache.ts';
import { setAsync, setBatchTail } from '../src/cpu/soft/wasm/runtime.ts';
import { setCallRet } from '../src/cpu/soft/wasm/translate.ts';
import type { GuestMemory } from '../src/memory/guest-memory.ts';
setHotThreshold(0); setJitThreshold(3); setAsync(false); setBatchTail(process.env.BT === '1');
const memories: GuestMemory[] = [];
const G = CODE + 0x1000;
function rel32(from: number, to: number): string {
  return Array.from(new Uint8Array(Int32Array.of(to - from).buffer), (x) => x.toString(16).padStart(2, '0')).join(' ');
}
const N = 3_000_000;
const code = `b9 ${rel32(0, N)} 31 c0 e8 ${rel32(CODE + 12, G)} 83 c0 02 ff c9 75 f4 f4`;
const ms = [false, true].map((on) => {
  setCallRet(on);
  const m = interpreterOrWasmMachine('wasm', memories);
  m.mem.write(CODE, Uint8Array.from(hexBytes(code)));
  m.mem.write(G, Uint8Array.from(hexBytes('83 c0 01 c3')));
  runBlocksToHalt(m, 100_000_000);
  return m;
});
function run(on: boolean): number {
  const m = ms[on ? 1 : 0];
  m.cpu.setGpr(0, 0n);
  const t0 = process.cpuUsage();
  runBlocksToHalt(m, 100_000_000);
  const t = process.cpuUsage(t0);
  if (m.cpu.getGpr(0) !== BigInt(N * 3)) throw new Error('bad ' + m.cpu.getGpr(0));
  return (t.user + t.system) * 1000 / N;
}
console.log(ms[1].cpu.wasm!.callRetCounts(), ms[0].cpu.wasm!.callRetCounts());
for (let i = 0; i < 8; i++) { const a = run(false), b = run(true); console.log(`off ${a.toFixed(1)} ns/iter, on ${b.toFixed(1)} ns/iter`); }
for (const m of memories) m.close();
