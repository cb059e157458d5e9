// The integer instruction set: arithmetic/logic/data movement (./alu.ts) and control flow, stack, strings (./flow.ts).
import './alu.ts';
import './flow.ts';
