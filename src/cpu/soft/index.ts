// The software x86-64 engine: the CPU core plus every instruction family (each registers itself in ./tables.ts).
import './ops/integer.ts';
import './ops/fpu.ts';
import './system/index.ts';
export * from './cpu.ts';
export { setupFlatLongMode } from './setup.ts';
