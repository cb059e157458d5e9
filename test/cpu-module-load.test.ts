// Each module that a program may load first (the CLI, the daemon, the migration's source and destination, the hot-block
// list, the soft CPU itself) loads on its own in a fresh Node process: an import cycle through the soft CPU's modules
// once left fast-forms' Form undefined when src/migration/source.ts was imported before src/vmm/machine.ts ("Cannot read
// properties of undefined (reading 'MovRR64')"). A cycle that comes back fails here at load, whatever the order the
// other tests happen to import in.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ENTRIES = [
  'src/cpu/soft/hot-list.ts',
  'src/cpu/soft/fast-forms.ts',
  'src/cpu/soft/wasm/translate.ts',
  'src/cpu/soft/cpu.ts',
  'src/migration/source.ts',
  'src/migration/destination.ts',
  'src/migration/warm-up.ts',
  'src/vmm/machine.ts',
];

test('each entry module of the soft CPU and the migration loads first in a fresh process', () => {
  // One process per module: a module cached by an earlier import would hide the order that fails.
  for (const entry of ENTRIES) {
    const url = new URL(entry, `file://${ROOT}/`).href;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `await import(${JSON.stringify(url)}); console.log('loaded')`], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(out.trim(), 'loaded', entry);
  }
});
