// The instruction families of the differential test that ringzero's software CPU is known to pass. The default
// test run holds these to zero mismatches; the other families still run, reported as TODO (their failures do not
// fail the run). RINGZERO_DIFF_FULL=1 holds every family to zero mismatches.
// Move a family here once `RINGZERO_DIFF_FULL=1 RINGZERO_DIFF_FAMILIES=<family>` passes with a few seeds.
//
// Not yet passing (known soft CPU gaps, found by this suite):
// - sse-float-rc: with a non-default MXCSR rounding mode (and FTZ/DAZ), about 0.5% of cases differ: the last bit of
//   a result near the overflow/denormal boundary (e.g. subpd rounding toward +inf), or MXCSR.UE not set where the
//   host sets it for a tiny result.
export const KNOWN_PASSING_FAMILIES: readonly string[] = [
  'alu', 'unary', 'test', 'rotate', 'shift', 'shiftd', 'mul', 'div', 'bt', 'bitscan', 'popcnt', 'lea', 'mov', 'movx',
  'cmov', 'xchg', 'convert', 'stack', 'flags', 'string', 'branch',
  'sse-int', 'sse-shuffle', 'sse-shift', 'sse-move', 'sse-cmp', 'sse-cmp-rc', 'sse-float', 'sse-cvt', 'sse-cvt-rc',
];
