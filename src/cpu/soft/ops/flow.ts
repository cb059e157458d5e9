// Control flow, stack, string and simple system instructions. Each file registers its opcodes in ../tables.ts
// when imported; the FF /2, /4 and /6 forms go into the shared FF group table.
import { groupFF } from '../tables.ts';
import { callNearIndirect, jmpNearIndirect } from './flow-branch.ts';
import { pushRm } from './flow-stack.ts';
import './flow-string.ts';
import './flow-misc.ts';
import '../system/control.ts';
import '../system/msr.ts';
import '../system/cpuid.ts';

groupFF[2] = callNearIndirect;
groupFF[4] = jmpNearIndirect;
groupFF[6] = pushRm;
