import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ImageBuildError, parseKernelDependency, parsePolicyCandidates } from '../src/image/apt.ts';

test('apt-cache policy output: the candidate of each package', () => {
  const policy = `linux-image-cloud-amd64:
  Installed: (none)
  Candidate: 6.1.192-2
  Version table:
     6.1.192-2 500
        500 http://deb.example/debian-security bookworm-security/main amd64 Packages
     6.1.176-1 500
        500 http://deb.example/debian bookworm/main amd64 Packages
busybox-static:
  Installed: 1:1.35.0-4+deb12u1+b1
  Candidate: 1:1.35.0-4+deb12u1+b1
  Version table:
 *** 1:1.35.0-4+deb12u1+b1 500
        100 /var/lib/dpkg/status
not-in-lists:
  Installed: (none)
  Candidate: (none)
`;
  assert.deepEqual([...parsePolicyCandidates(policy)], [
    ['linux-image-cloud-amd64', '6.1.192-2'],
    ['busybox-static', '1:1.35.0-4+deb12u1+b1'],
  ]);
  assert.equal(parsePolicyCandidates('').size, 0);
});

test('apt-cache show of the meta-package: the real kernel package and its exact version', () => {
  const show = `Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)
Description-en: Linux for x86-64 cloud (meta-package)
`;
  assert.deepEqual(parseKernelDependency(show, '6.1.192-2'), { name: 'linux-image-6.1.0-56-cloud-amd64', version: '6.1.192-2' });
  assert.deepEqual(parseKernelDependency('Depends: foo, linux-image-6.1.0-50-cloud-amd64\n', '6.1.176-1'),
    { name: 'linux-image-6.1.0-50-cloud-amd64', version: '6.1.176-1' });
  assert.throws(() => parseKernelDependency('Depends: linux-image-6.1.0-56-amd64 (= 1)\n', '1'), ImageBuildError);
});
