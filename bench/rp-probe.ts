// throwaway: replayed sites of N dd passes (RINGZERO_WASM_PROFILE=1, --stats at exit)
import fs from 'node:fs';
import { CMDLINE } from './support/common.ts';
import { BenchGuest } from './support/session.ts';
const [cmd, passes, mb, out] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5]];
const disk = `/tmp/s30blk/rp/disk-${process.pid}.raw`;
fs.writeFileSync(disk, ''); fs.truncateSync(disk, Math.max(mb, 64) << 20);
const c = cmd === 'write' ? `dd if=/dev/zero of=/dev/vda bs=1M count=${mb} conv=fsync` : `dd if=/dev/vda of=/dev/null bs=1M count=${mb} iflag=direct`;
const g = BenchGuest.ringzero('rz', ['--engine', 'soft', '--memory', '256M', '--cmdline', CMDLINE + ' nokaslr', '--disk', disk, '--stats']);
await g.waitForShell();
for (let p = 0; p < passes; p++) await g.timed(`p${p}`, c, 1_800_000);
await g.poweroff();
fs.writeFileSync(out, g.session.stderr);
fs.rmSync(disk);
process.exit(0);
