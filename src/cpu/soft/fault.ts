// The guest-exception sentinel, in a module of its own so the op handlers and translators need not import cpu.ts
// at run time (see lazy.ts).
/** Thrown (one shared instance) to unwind an instruction that raised a guest exception. */
export const CPU_FAULT = { name: 'CpuFault' } as const;
