// test/support/ticker-lines.ts: the ticker's values read from a console where a kernel record cut a line in two (as
// the 8250 console does when a printk comes while a tty line is half sent), and a value really lost still missing.
import test from 'node:test';
import assert from 'node:assert/strict';
import { tickerValues } from './support/ticker-lines.ts';

const lines = (text: string) => text.split('\n').slice(0, -1).map((line, k) => ({ line: line.replace(/\r$/, ''), at: k }));

test('a kernel record inside a ticker line: the halves are joined, the record set aside', () => {
  const kernel: string[] = [];
  const text = 'C1825 100\r\nC1826 110\r\nC1827 12[   45.123456] hrtimer: interrupt took 4817 ns\r\n0345\r\nC1828 130\r\n';
  assert.deepEqual(tickerValues(lines(text), '', kernel).map((t) => t.n), [1825, 1826, 1827, 1828]);
  assert.equal(tickerValues(lines(text))[2].g, 120.345);
  assert.deepEqual(kernel, ['[   45.123456] hrtimer: interrupt took 4817 ns']);
  // Read line by line, as before, C1827 is on neither line.
  assert.deepEqual(lines(text).map((l) => /C(\d+) (\d+)$/.exec(l.line)?.[1]).filter(Boolean), ['1825', '1826', '1828']);
});

test('several records, one cutting the rest of the line again, and a line carried from the previous VMM', () => {
  const text = '[  46.000001] rcu: INFO: rcu_preempt detected stalls\r\n[  46.000002]  0-...!: (1 GPs behind)\r\n34[  46.000003] second\r\n5\r\nC1828 13000\r\n';
  assert.deepEqual(tickerValues(lines(text), 'C1827 12').map((t) => [t.n, t.g]), [[1827, 12.345], [1828, 13]]);
});

test('ordinary kernel lines and other output change nothing; a value lost is still missing', () => {
  const text = '[    1.000000] Linux version 6.1\r\nW12\r\necho Q""7: C3514 37432329\r\nC3515 37442329\r\nC3517 37462329\r\n';
  assert.deepEqual(tickerValues(lines(text)).map((t) => t.n), [3514, 3515, 3517]);
  // A cut line whose rest never came: its start joins nothing that makes a value up.
  assert.deepEqual(tickerValues(lines('C1 10\r\nC2 2[  3.000000] x\r\nC3 30\r\n')).map((t) => t.n), [1, 3]);
});

test('a line cut by a kernel record just before a console stopped: its start carries to the next console', () => {
  const end = { head: '' };
  const before = tickerValues(lines('C1826 110\r\nC1827 12[  45.000000] clocksource: x\r\n'), '', undefined, end);
  assert.deepEqual(before.map((t) => t.n), [1826]);
  assert.equal(end.head, 'C1827 12');
  assert.deepEqual(tickerValues(lines('0345\r\nC1828 130\r\n'), end.head + '').map((t) => [t.n, t.g]), [[1827, 120.345], [1828, 0.13]]);
});

test('the shapes seen on ringzero\'s serial console: a record between a line\'s text and its line end, one more after it', () => {
  // (the default image, 3000 tty lines of one write each beside 300 writes to /dev/kmsg: 2 records landed inside tty
  // lines, both like these; the tail of the cut line is its bare "\r\n")
  const kernel: string[] = [];
  const text = 'C64 640000\r\nC65 650000[  243.874478] kk48\r\n\r\nC66 660000\r\nC67 670000[  246.400774] kk138\r\n[  246.438342] kk139\r\n\r\nC68 680000\r\n';
  assert.deepEqual(tickerValues(lines(text), '', kernel).map((t) => t.n), [64, 65, 66, 67, 68]);
  assert.deepEqual(kernel, ['[  243.874478] kk48', '[  246.400774] kk138', '[  246.438342] kk139']);
});
