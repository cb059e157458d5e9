import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AcpiPm, PM_TIMER_HZ, PWRBTN_STS, SCI_EN, SLP_EN, TMR_STS } from '../src/devices/acpi-pm.ts';
import { PortBus } from '../src/devices/bus.ts';
import { VmClock } from '../src/vmm/clock.ts';
import { ACPI_PM1A_CNT_PORT as CNT, ACPI_PM1A_EVT_PORT as EVT, ACPI_PM_TMR_PORT as TMR, ACPI_RESET_PORT as RST, ACPI_S5_SLP_TYP } from '../src/boot/platform.ts';

function machine() {
  const clock = new VmClock();
  clock.pause();
  clock.set(0);
  const events: string[] = [];
  const sci: boolean[] = [];
  const pm = new AcpiPm({ clock, onPowerOff: () => events.push('off'), onReset: () => events.push('reset'), setSci: (l) => sci.push(l) });
  const bus = new PortBus();
  pm.register(bus);
  return { clock, pm, bus, events, sci };
}

/** The first guest nanosecond at which the PM timer has counted `ticks`. */
const nsFor = (ticks: number) => Math.ceil((ticks * 1e9) / PM_TIMER_HZ);

test('registers the FADT ports and the reset register', () => {
  const { bus, pm } = machine();
  for (const port of [EVT, EVT + 3, CNT, CNT + 1, TMR, TMR + 3, RST]) {
    assert.throws(() => bus.register(port, 1, pm, 'other'), /already belongs/);
  }
  // 0xCF8 and 0xCFA stay free for the PCI configuration mechanism.
  assert.doesNotThrow(() => bus.register(0xcf8, 1, pm, 'pci-address'));
  assert.doesNotThrow(() => bus.register(0xcfa, 2, pm, 'pci-other'));
});

test('PM timer counts at 3.579545 MHz of guest time and wraps at 32 bits', () => {
  const { clock, bus } = machine();
  assert.equal(bus.read(TMR, 4), 0);
  clock.set(1e9);
  assert.equal(bus.read(TMR, 4), PM_TIMER_HZ);
  clock.set(1e9 + 1e3);
  assert.equal(bus.read(TMR, 4), PM_TIMER_HZ + 3); // 1 µs = 3.58 ticks
  clock.set(10 * 1e9);
  assert.equal(bus.read(TMR, 4), 10 * PM_TIMER_HZ);
  // Byte and word reads see the same counter.
  const v = bus.read(TMR, 4);
  assert.equal(bus.read(TMR, 2), v & 0xffff);
  assert.equal(bus.read(TMR + 2, 1), (v >>> 16) & 0xff);
  // 2^32 ticks is about 1200 s: the counter wraps.
  clock.set(nsFor(2 ** 32 + 1000));
  assert.equal(bus.read(TMR, 4), 1000);
  // Writes are ignored.
  bus.write(TMR, 4, 0x12345678);
  assert.equal(bus.read(TMR, 4), 1000);
});

test('TMR_STS follows bit 31 of the counter; write 1 clears it; with TMR_EN it raises the SCI', () => {
  const { clock, bus, sci } = machine();
  clock.set(nsFor(2 ** 31 - 1));
  assert.equal(bus.read(EVT, 2) & TMR_STS, 0);
  clock.set(nsFor(2 ** 31));
  assert.equal(bus.read(EVT, 2) & TMR_STS, TMR_STS);
  bus.write(EVT, 2, TMR_STS);
  assert.equal(bus.read(EVT, 2) & TMR_STS, 0, 'cleared');
  assert.deepEqual(sci, []);
  // Enable the timer interrupt: the next carry (at 2^32 ticks) fires the clock timer and the SCI.
  bus.write(EVT + 2, 2, TMR_STS);
  assert.equal(bus.read(EVT + 2, 2), TMR_STS);
  assert.equal(clock.nextDeadline(), nsFor(2 ** 32));
  clock.set(nsFor(2 ** 32));
  assert.equal(clock.runDue(), 1);
  assert.deepEqual(sci, [true]);
  bus.write(EVT, 2, TMR_STS);
  assert.deepEqual(sci, [true, false], 'clearing the status drops the SCI');
  bus.write(EVT + 2, 2, 0);
  assert.equal(clock.nextDeadline(), Infinity);
});

test('PM1_EN keeps only defined enable bits', () => {
  const { bus } = machine();
  bus.write(EVT + 2, 2, 0xffff);
  assert.equal(bus.read(EVT + 2, 2), 0x4721);
  bus.write(EVT + 3, 1, 0);
  assert.equal(bus.read(EVT + 2, 2), 0x0021);
});

test('PM1_CNT: SCI_EN always set, SLP_EN reads 0, SLP_EN with the _S5 type powers off', () => {
  const { bus, events } = machine();
  assert.equal(bus.read(CNT, 2) & SCI_EN, SCI_EN);
  bus.write(CNT, 2, 0);
  assert.equal(bus.read(CNT, 2) & SCI_EN, SCI_EN);
  // SLP_TYP alone: stored, nothing happens.
  bus.write(CNT, 2, (ACPI_S5_SLP_TYP << 10) | SCI_EN);
  assert.equal(bus.read(CNT, 2), (ACPI_S5_SLP_TYP << 10) | SCI_EN);
  assert.deepEqual(events, []);
  // SLP_EN with another type: no such sleep state.
  bus.write(CNT, 2, (1 << 10) | SLP_EN | SCI_EN);
  assert.deepEqual(events, []);
  assert.equal(bus.read(CNT, 2) & SLP_EN, 0);
  // As ACPICA does: SLP_TYP then SLP_TYP | SLP_EN.
  bus.write(CNT, 2, (ACPI_S5_SLP_TYP << 10) | SCI_EN);
  bus.write(CNT, 2, (ACPI_S5_SLP_TYP << 10) | SLP_EN | SCI_EN);
  assert.deepEqual(events, ['off']);
  // A byte write to the high half works too.
  bus.write(CNT + 1, 1, ((ACPI_S5_SLP_TYP << 10) | SLP_EN) >> 8);
  assert.deepEqual(events, ['off', 'off']);
});

test('reset register: 0x06 and 0x0E reset, other values do not', () => {
  const { bus, events } = machine();
  bus.write(RST, 1, 0x02);
  assert.deepEqual(events, []);
  assert.equal(bus.read(RST, 1), 0x02);
  bus.write(RST, 1, 0x06);
  assert.deepEqual(events, ['reset']);
  bus.write(RST, 1, 0x0e);
  assert.deepEqual(events, ['reset', 'reset']);
  assert.equal(bus.read(RST, 1) & 0x04, 0, 'RST_CPU does not stick');
});

test('reset() and save/restore', () => {
  const { bus, pm, clock } = machine();
  bus.write(EVT + 2, 2, 0x0100);
  bus.write(CNT, 2, 3 << 10);
  const saved = pm.saveState();
  pm.reset();
  assert.equal(bus.read(EVT + 2, 2), 0);
  assert.equal(bus.read(CNT, 2), SCI_EN);
  pm.restoreState(saved);
  assert.equal(bus.read(EVT + 2, 2), 0x0100);
  assert.equal(bus.read(CNT, 2), (3 << 10) | SCI_EN);
  // Restoring hostile state is clamped to what the registers can hold.
  pm.restoreState({ status: -1, enable: -1, control: -1, resetControl: -1, timerEpoch: 0 });
  assert.equal(bus.read(EVT + 2, 2), 0x4721);
  assert.equal(bus.read(CNT, 2) & SLP_EN, 0);
  assert.equal(clock.now(), 0);
});

test('any access from the guest is handled without throwing', () => {
  const { bus, pm } = machine();
  // A dword read at PM1_CNT runs past the two decoded bytes: the rest floats high.
  assert.equal(bus.read(CNT, 4) >>> 16, 0xffff);
  let seed = 1;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0);
  for (let i = 0; i < 5000; i++) {
    const port = [EVT, EVT + 1, EVT + 2, EVT + 3, CNT, CNT + 1, TMR, TMR + 1, TMR + 3][rnd() % 9];
    const size = ([1, 2, 4] as const)[rnd() % 3];
    const value = rnd();
    // Never the sleep or reset callbacks' business here: only that nothing throws and values stay in range.
    pm.ioWrite(port, size, value);
    const r = pm.ioRead(port, size);
    assert.ok(r >= 0 && r <= 2 ** (8 * size) - 1);
  }
});

test('power button: PWRBTN_STS is set by a press, raises the SCI only with PWRBTN_EN, write 1 clears it', () => {
  const { bus, pm, sci, events } = machine();
  // Before the OS enabled it: the status latches, no interrupt, and the press reports that nobody listens.
  assert.equal(pm.pressPowerButton(), false);
  assert.equal(bus.read(EVT, 2) & PWRBTN_STS, PWRBTN_STS);
  assert.deepEqual(sci, []);
  // Enabling it with the status still set raises the SCI (level: it stays up until the status is cleared).
  bus.write(EVT + 2, 2, PWRBTN_STS);
  assert.deepEqual(sci, [true]);
  bus.write(EVT, 2, PWRBTN_STS);
  assert.equal(bus.read(EVT, 2) & PWRBTN_STS, 0);
  assert.deepEqual(sci, [true, false]);
  // Enabled: a press raises the SCI at once; a second press before the OS cleared the status is the same event.
  assert.equal(pm.pressPowerButton(), true);
  assert.equal(pm.pressPowerButton(), true);
  assert.deepEqual(sci, [true, false, true]);
  // Clearing another status bit leaves the button's SCI up; writing 0 clears nothing.
  bus.write(EVT, 2, TMR_STS);
  bus.write(EVT, 2, 0);
  assert.deepEqual(sci, [true, false, true]);
  // The high byte alone clears it (PWRBTN_STS is bit 8).
  bus.write(EVT + 1, 1, PWRBTN_STS >> 8);
  assert.deepEqual(sci, [true, false, true, false]);
  // The button itself never powers off: the OS does, through PM1_CNT.
  assert.deepEqual(events, []);
  // Disabling the event: a press latches the status without an interrupt.
  bus.write(EVT + 2, 2, 0);
  assert.equal(pm.pressPowerButton(), false);
  assert.deepEqual(sci, [true, false, true, false]);
  // A pending press survives a snapshot.
  const saved = pm.saveState();
  pm.reset();
  assert.equal(bus.read(EVT, 2) & PWRBTN_STS, 0, 'reset clears it');
  pm.restoreState(saved);
  assert.equal(bus.read(EVT, 2) & PWRBTN_STS, PWRBTN_STS);
});
