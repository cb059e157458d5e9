import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import {
  NEWC_HEADER_SIZE, parseCpio, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, writeCpio, type CpioEntry,
} from '../src/image/cpio.ts';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

const SAMPLE: CpioEntry[] = [
  { name: 'bin', type: 'dir', perm: 0o755 },
  { name: 'bin/busybox', type: 'file', perm: 0o755, data: text('#!fake busybox, 29 bytes long') },
  { name: 'bin/sh', type: 'symlink', perm: 0o777, target: '/bin/busybox' },
  { name: 'dev', type: 'dir', perm: 0o755 },
  { name: 'dev/console', type: 'char', perm: 0o600, major: 5, minor: 1 },
  { name: 'empty', type: 'file', perm: 0o644 },
  { name: 'init', type: 'file', perm: 0o755, data: text('#!/bin/sh\necho hi\n'), uid: 7, gid: 9, mtime: 1234567 },
];

test('writeCpio output parses back to the same members', () => {
  const members = parseCpio(writeCpio(SAMPLE));
  assert.deepEqual(members.map((m) => m.name), SAMPLE.map((e) => e.name));
  const byName = new Map(members.map((m) => [m.name, m]));
  assert.equal(byName.get('bin')!.mode, S_IFDIR | 0o755);
  assert.equal(byName.get('bin')!.nlink, 2);
  assert.equal(byName.get('bin/busybox')!.mode, S_IFREG | 0o755);
  assert.equal(new TextDecoder().decode(byName.get('bin/busybox')!.data), '#!fake busybox, 29 bytes long');
  assert.equal(byName.get('bin/sh')!.mode & S_IFMT, S_IFLNK);
  assert.equal(new TextDecoder().decode(byName.get('bin/sh')!.data), '/bin/busybox');
  const consoleNode = byName.get('dev/console')!;
  assert.equal(consoleNode.mode, S_IFCHR | 0o600);
  assert.equal(consoleNode.rdevMajor, 5);
  assert.equal(consoleNode.rdevMinor, 1);
  assert.equal(consoleNode.data.length, 0);
  assert.equal(byName.get('empty')!.data.length, 0);
  const init = byName.get('init')!;
  assert.equal(init.uid, 7);
  assert.equal(init.gid, 9);
  assert.equal(init.mtime, 1234567);
  assert.equal(new Set(members.map((m) => m.ino)).size, members.length, 'each member has its own inode number');
  assert.ok(members.filter((m) => (m.mode & S_IFMT) === S_IFREG).every((m) => m.nlink === 1), 'files are not hard links');
});

test('headers, names and data are 4-byte aligned and the archive ends with the trailer', () => {
  const archive = writeCpio(SAMPLE);
  assert.equal(archive.length % 4, 0);
  for (const member of parseCpio(archive)) {
    assert.equal(member.offset % 4, 0, `${member.name} header aligned`);
    const dataStart = member.data.byteOffset - archive.byteOffset;
    assert.equal(dataStart % 4, 0, `${member.name} data aligned`);
    // Padding between name and data is NULs.
    const nameEnd = member.offset + NEWC_HEADER_SIZE + member.name.length + 1;
    assert.ok(archive.subarray(nameEnd, dataStart).every((b) => b === 0));
  }
  const tail = archive.toString('latin1', archive.length - 124);
  assert.match(tail, /070701[0-9a-f]{104}TRAILER!!!\0+$/);
  // Header of the first member, field by field: magic, ino 1, mode 040755, uid 0, gid 0, nlink 2, ...
  assert.equal(archive.toString('latin1', 0, 54), '070701' + '00000001' + '000041ed' + '00000000' + '00000000' + '00000002' + '00000000');
  // ... namesize 4 ("bin" + NUL) in the twelfth field, checksum 0 in the thirteenth.
  assert.equal(archive.toString('latin1', 94, 110), '00000004' + '00000000');
  assert.equal(archive.toString('latin1', 110, 114), 'bin\0');
});

test('the same entries give the same bytes', () => {
  assert.deepEqual(writeCpio(SAMPLE), writeCpio(SAMPLE));
});

test('bad entries are refused', () => {
  assert.throws(() => writeCpio([{ name: '/abs', type: 'file', perm: 0o644 }]), /bad member name/);
  assert.throws(() => writeCpio([{ name: 'a/../b', type: 'file', perm: 0o644 }]), /bad member name/);
  assert.throws(() => writeCpio([{ name: 'x', type: 'dir', perm: 0o755 }, { name: 'x', type: 'dir', perm: 0o755 }]), /duplicate/);
  assert.throws(() => writeCpio([{ name: 'l', type: 'symlink', perm: 0o777 }]), /no target/);
  assert.throws(() => writeCpio([{ name: 'd', type: 'char', perm: 0o600 }]), /major and minor/);
  assert.throws(() => writeCpio([{ name: 'f', type: 'file', perm: 0o10000 }]), /permissions/);
});

test('parseCpio rejects damaged archives', () => {
  const archive = writeCpio(SAMPLE);
  assert.throws(() => parseCpio(archive.subarray(0, archive.length - 200)), /truncated|trailer|bad magic/);
  const badMagic = Buffer.from(archive);
  badMagic.write('070707', 0, 'latin1');
  assert.throws(() => parseCpio(badMagic), /bad magic/);
  const badHex = Buffer.from(archive);
  badHex.write('zz', 8, 'latin1');
  assert.throws(() => parseCpio(badHex), /bad header field/);
});

const haveCpioTool = spawnSync('cpio', ['--version'], { stdio: 'ignore' }).status === 0;

test('GNU cpio lists the archive the same way', { skip: haveCpioTool ? false : 'the cpio tool is not installed' }, () => {
  const archive = writeCpio(SAMPLE);
  const listing = execFileSync('cpio', ['-t', '--quiet'], { input: archive, encoding: 'utf8' });
  assert.deepEqual(listing.trim().split('\n'), SAMPLE.map((e) => e.name));
  const verbose = execFileSync('cpio', ['-tv', '--quiet'], { input: archive, encoding: 'utf8' });
  assert.match(verbose, /^crw------- .* 5, +1 .*dev\/console$/m);
  assert.match(verbose, /^lrwxrwxrwx .*bin\/sh -> \/bin\/busybox$/m);
  assert.match(verbose, /^-rwxr-xr-x .* 29 .*bin\/busybox$/m);
});
