// STI's effect on RFLAGS.IF and on event delivery, shared by the interpreter's handler (../system/control.ts), the
// block cache's fast form (../fast-forms.ts sti) and the wasm translator's helper (../wasm/runtime.ts `sy`).
import type { SoftCpu } from '../cpu.ts';
import * as C from '../constants.ts';

/**
 * STI after its privilege check: sets IF. Returns true when the CPU must look for an interrupt at the next
 * instruction boundary (the caller then ends its block or chain), false when nothing changes that.
 *
 * STI blocks interrupts until the end of the next instruction (SDM vol. 2B STI; vol. 3A §6.8.3), so an interrupt
 * already pending is taken after that instruction: the CPU records the shadow and an event check. With nothing
 * pending (the local APIC, which also carries the 8259's ExtINT, has no interrupt to give) there is nothing to
 * deliver at that boundary, and an interrupt raised later arrives through notifyEvent like any other (nothing can
 * raise one before the next instruction ends except that instruction itself, e.g. a store to the APIC, and the
 * boundary after it is where the shadow would have let it in). Then no shadow and no event check are needed: Linux
 * enables interrupts with STI on every system call (syscall_enter_from_user_mode) and at every
 * local_irq_enable/restore, and each event check ended the translated chain twice (at the STI, then again at the
 * next helper call, the shadow having set eventPending once more).
 */
export function stiSetsIf(c: SoftCpu): boolean {
  if (c.flags & C.IF) return false;
  c.flags |= C.IF;
  const lapic = c.env.lapic;
  if (lapic === undefined || !lapic.hasInterrupt()) return false;
  c.interruptShadow = true;
  c.eventPending = true;
  return true;
}

/**
 * After an instruction that loaded RFLAGS wholesale (SoftCpu.setFlagsValue asks for an event check whenever the
 * new value has IF set) and that opens no interrupt shadow: SYSRET (SDM vol. 2B SYSRET: RFLAGS from R11; unlike STI,
 * no shadow is described). `wasPending`: eventPending before the instruction. When nothing asked for a check
 * before it and the local APIC has neither an interrupt nor an NMI to give, the check would find nothing (as in
 * stiSetsIf): the request is dropped, so the chain of translated blocks goes on into the user code SYSRET returns
 * to (Linux returns from most system calls with SYSRETQ; each return ended the chain). An interrupt raised later
 * arrives through notifyEvent like any other.
 */
export function settleRestoredIf(c: SoftCpu, wasPending: boolean): void {
  if (wasPending || !c.eventPending || c.interruptShadow) return;
  const lapic = c.env.lapic;
  if (lapic !== undefined && (lapic.hasInterrupt() || lapic.hasNmi?.() === true)) return;
  c.eventPending = false;
}
