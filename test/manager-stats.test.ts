// Statistics through a real daemon with two running synthetic guests (one busy polling COM1, one halted) and one shut
// off: GET /vms/:name/stats, GET /host/stats, GET /metrics in the Prometheus text format, and `ringzero top --once`.
import test, { before } from 'node:test';
import assert from 'node:assert/strict';
import { api, cli, daemonFixture, guestKernel } from './support/manager-harness.ts';

const fx = daemonFixture('stats');
const { dir } = fx;

before(async () => {
  await fx.ready;
  const echoKernel = guestKernel(dir, 'echo');
  const idleKernel = guestKernel(dir, 'idle');
  const s = { socket: fx.daemon.socket };
  for (const [name, kernel] of [['busy', echoKernel], ['idle', idleKernel], ['off', idleKernel]]) {
    assert.equal((await api(s, 'POST', '/vms', { name, kernel, memory: 64 })).status, 201);
  }
  for (const name of ['busy', 'idle']) {
    const started = await api(s, 'POST', `/vms/${name}/start`);
    assert.equal(started.status, 200, JSON.stringify(started.body));
  }
});

const get = (urlPath: string) => api({ socket: fx.daemon.socket }, 'GET', urlPath);

/** Parse the Prometheus text format 0.0.4 strictly: every sample belongs to a family declared by # TYPE before it. */
function parsePrometheus(text: string): Map<string, { type: string; samples: Array<{ labels: Record<string, string>; value: number }> }> {
  const families = new Map<string, { type: string; samples: Array<{ labels: Record<string, string>; value: number }> }>();
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      assert.ok(!families.has(type[1]), `${type[1]} declared twice`);
      families.set(type[1], { type: type[2], samples: [] });
      continue;
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$/.test(line)) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (\S+)$/.exec(line);
    assert.ok(sample, `not a valid sample line: ${JSON.stringify(line)}`);
    const family = families.get(sample[1]);
    assert.ok(family, `${sample[1]} has no # TYPE before it`);
    const labels: Record<string, string> = {};
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2];
    const value = Number(sample[3]);
    assert.ok(Number.isFinite(value), `${line}: value`);
    if (family.type === 'counter') assert.ok(value >= 0, `${line}: a counter is never negative`);
    family.samples.push({ labels, value });
  }
  return families;
}

test('GET /vms/:name/stats: the VMM process from /proc and the machine\'s counters; a busy guest counts instructions and port I/O', async () => {
  const first = await get('/vms/busy/stats');
  assert.equal(first.status, 200, JSON.stringify(first.body));
  const s = first.body;
  assert.equal(s.name, 'busy');
  assert.equal(s.state, 'running');
  assert.equal(s.vcpus, 1);
  assert.equal(s.memoryBytes, 64 * 2 ** 20);
  assert.ok(s.pid > 0);
  assert.ok(s.process.cpuSeconds > 0, 'the VMM has used CPU time');
  assert.ok(s.process.residentBytes > 10 * 2 ** 20, `resident set ${s.process.residentBytes}`);
  assert.ok(s.process.threads >= 1);
  assert.equal(typeof s.process.cpuPercent, 'number');
  assert.ok(s.counters, 'the VMM answered {"cmd":"stats"}');
  assert.equal(s.counters.engine, 'soft');
  assert.ok(s.counters.instructions > 0);
  // The echo guest polls COM1's line status register in a loop: port reads keep coming.
  assert.ok(s.counters.exits.pio > 0);
  assert.deepEqual(Object.keys(s.counters.disk).sort(), ['readBytes', 'writeBytes']);
  assert.deepEqual(Object.keys(s.counters.net).sort(), ['rxBytes', 'rxFrames', 'txBytes', 'txFrames']);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const second = (await get('/vms/busy/stats')).body;
  assert.ok(second.counters.instructions > s.counters.instructions, 'counters grow while the guest runs');
  assert.ok(second.counters.exits.pio > s.counters.exits.pio);
  // Per second since the previous sample, by reason: the polling guest traps on port I/O, never on MMIO or HLT.
  assert.equal(s.rates, null, 'no rates from a first sample');
  assert.ok(second.rates.seconds > 0.2, `interval ${second.rates.seconds}`);
  const expected = (second.counters.exits.pio - s.counters.exits.pio) / second.rates.seconds;
  assert.ok(Math.abs(second.rates.exits.pio - expected) <= 0.2 * expected, `pio/s ${second.rates.exits.pio} vs ${expected}`);
  assert.ok(second.rates.exits.pio > 0 && second.rates.instructions > 0);
  assert.equal(second.rates.exits.mmio, 0);
  assert.equal(second.rates.halts, 0);

  const idle = (await get('/vms/idle/stats')).body;
  assert.equal(idle.counters.haltedVcpus, 1, 'the idle guest is halted');

  const off = await get('/vms/off/stats');
  assert.equal(off.status, 200);
  assert.equal(off.body.state, 'shut off');
  assert.equal(off.body.process, null);
  assert.equal(off.body.counters, null);
});

test('unknown VM: not_found', async () => {
  const r = await get('/vms/nosuch/stats');
  assert.equal(r.status, 404);
  assert.equal(r.body.error.code, 'not_found');
});

test('GET /host/stats: CPU seconds by mode, memory, VM counts', async () => {
  const r = await get('/host/stats');
  assert.equal(r.status, 200);
  assert.ok(r.body.cpus >= 1);
  assert.ok(r.body.cpuSeconds.user > 0 && r.body.cpuSeconds.idle >= 0);
  assert.ok(r.body.memory.totalBytes > r.body.memory.availableBytes && r.body.memory.availableBytes > 0);
  assert.deepEqual(r.body.vms, { defined: 3, running: 2 });
});

test('GET /metrics: valid Prometheus text listing the host and both running VMs', async () => {
  const r = await get('/metrics');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const families = parsePrometheus(r.body as string);
  const vmsOf = (name: string) => new Set(families.get(name)?.samples.map((x) => x.labels.vm));
  for (const name of ['ringzero_vm_cpu_seconds_total', 'ringzero_vm_resident_bytes', 'ringzero_vm_instructions_total']) {
    assert.deepEqual(vmsOf(name), new Set(['busy', 'idle']), name);
  }
  assert.deepEqual(vmsOf('ringzero_vm_running'), new Set(['busy', 'idle', 'off']));
  assert.equal(families.get('ringzero_vm_cpu_seconds_total')!.type, 'counter');
  assert.equal(families.get('ringzero_vm_resident_bytes')!.type, 'gauge');
  const exits = families.get('ringzero_vm_io_exits_total')!.samples.filter((x) => x.labels.vm === 'busy');
  assert.deepEqual(exits.map((x) => x.labels.kind).sort(), ['mmio', 'pio']);
  assert.ok(exits.find((x) => x.labels.kind === 'pio')!.value > 0);
  assert.deepEqual(families.get('ringzero_vm_disk_bytes_total')!.samples.filter((x) => x.labels.vm === 'idle').map((x) => x.labels.dir).sort(), ['read', 'write']);
  assert.deepEqual(families.get('ringzero_vm_net_bytes_total')!.samples.filter((x) => x.labels.vm === 'idle').map((x) => x.labels.dir).sort(), ['rx', 'tx']);
  assert.ok(families.get('ringzero_host_cpu_seconds_total')!.samples.some((x) => x.labels.mode === 'user' && x.value > 0));
  assert.ok(families.get('ringzero_host_memory_bytes')!.samples.some((x) => x.labels.kind === 'total' && x.value > 0));
});

test('ringzero top --once: the host line and one row per VM', async () => {
  const r = await cli(['top', '--once', '--interval', '0.5'], fx.daemon.socket);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[1], /^Host: \d+ CPUs, [\d.]+% busy/);
  const header = lines.findIndex((l) => l.startsWith('NAME'));
  assert.ok(header > 0, r.stdout);
  assert.match(lines[header], /STATE\s+VCPUS\s+CPU%\s+RSS\s+MIPS\s+PIO\/S\s+MMIO\/S\s+DISK R\/S\s+DISK W\/S\s+NET RX\/S\s+NET TX\/S\s+HALTS\/S$/);
  const rows = lines.slice(header + 1).map((l) => l.split(/\s{2,}/));
  assert.deepEqual(rows.map((row) => row[0]), ['busy', 'idle', 'off']);
  const busy = rows[0];
  assert.equal(busy[1], 'running');
  assert.ok(Number(busy[3]) > 0, `busy CPU% ${busy[3]}`);
  assert.ok(Number(busy[5]) > 0, `busy MIPS ${busy[5]}`);
  assert.ok(Number(busy[6]) > 0, `busy port I/O exits/s ${busy[6]}`);
  assert.equal(busy[7], '0', 'the polling guest makes no MMIO exits');
  assert.equal(busy[12], '0', 'nor halts');
  assert.equal(rows[2][1], 'shut off');
  assert.equal(rows[2][3], '-');

  const bad = await cli(['top', '--once', '--interval', 'x'], fx.daemon.socket);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /invalid --interval/);
});
