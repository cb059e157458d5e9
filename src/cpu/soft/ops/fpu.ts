// Floating-point and vector instructions: SSE/SSE2 floating point and the 0F AE group (./sse.ts), MMX and
// SSE2 integer (./sse-int.ts), and the x87 FPU (./x87.ts). Each registers its opcodes in ../tables.ts.
import './sse.ts';
import './sse-int.ts';
import './x87.ts';
