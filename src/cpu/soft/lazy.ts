// The lazy-flag operation kinds, in a module of their own: the interpreter (cpu.ts), its op handlers, the fast forms and
// the translators all use them, and taking them from cpu.ts made an import cycle (fast-forms -> cpu -> wasm/translate,
// which reads fast-forms' Form at load).
/** Lazy-flag operation kinds: which computation produced the current arithmetic flags. */
export const enum Lazy {
  None = 0, // flags are explicit in `flags`
  Add = 1,
  Adc = 2,
  Sub = 3,
  Sbb = 4,
  Logic = 5,
  Inc = 6,
  Dec = 7,
}
