// Integration on the KVM engine: the scenario of test/vm-boot.test.ts (Debian's cloud kernel with the default
// initramfs through the real CLI, `--engine kvm --cpus 2`, commands typed at the shell: kernel release, CPU count,
// the guest clock against the host's, then `poweroff -f` and status 0). It needs hardware KVM (vmx/svm with
// kvm_intel/kvm_amd): on kvm_pvm an unmodified kernel would run in KVM's instruction emulator and never get far, and
// without /dev/kvm there is nothing to run on. There it is skipped with one loud line naming the reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findDefaultImage } from '../src/image/build.ts';
import { detectKvm } from '../src/kvm/host.ts';
import { bootToShellScenario, BOOT_TIMEOUT_MS } from './support/guest.ts';

const image = findDefaultImage();
const kvm = detectKvm();

const skip = kvm.verdict !== 'hardware'
  ? `no hardware KVM (${kvm.verdict === 'pvm' ? 'kvm_pvm' : 'no usable /dev/kvm'}): ${kvm.reason}`
  : !image ? 'no default image: run `bin/ringzero image build`' : false;
if (skip) process.stderr.write(`*** vm-boot-kvm: Linux boot on the KVM engine SKIPPED: ${skip}\n`);

test('boots the default guest to a shell on the KVM engine and powers off', { skip, timeout: BOOT_TIMEOUT_MS + 120_000 },
  () => bootToShellScenario('kvm', assert));
