// The instruction families of the differential test that ringzero's software CPU is known to pass. The default
// test run holds these to zero mismatches; the other families still run, reported as TODO (their failures do not
// fail the run). RINGZERO_DIFF_FULL=1 holds every family to zero mismatches.
// Move a family here once `RINGZERO_DIFF_FULL=1 RINGZERO_DIFF_FAMILIES=<family>` passes with a few seeds.
//
// Not yet passing (known soft CPU gaps, found by this suite):
// - sse-float, sse-cvt: MXCSR.DE (denormal) is set where the host does not set it: when the same element also
//   raises invalid (a NaN operand), for denormal / 0 (only ZE), and by conversions to integer (CVT*2SI, CVT*2DQ),
//   which signal only invalid and precision (SDM vol. 2 per-instruction "SIMD Floating-Point Exceptions").
// - sse-float-rc, sse-cvt-rc: MXCSR rounding control (and FTZ/DAZ) is not applied: results differ in the last bit.
export const KNOWN_PASSING_FAMILIES: readonly string[] = [
  'alu', 'unary', 'test', 'rotate', 'shift', 'shiftd', 'mul', 'div', 'bt', 'bitscan', 'popcnt', 'lea', 'mov', 'movx',
  'cmov', 'xchg', 'convert', 'stack', 'flags', 'string', 'branch',
  'sse-int', 'sse-shuffle', 'sse-shift', 'sse-move', 'sse-cmp', 'sse-cmp-rc',
];
