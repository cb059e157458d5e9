// The real Debian kernel for tests that want it: RINGZERO_TEST_KERNEL, else the built default image's bzImage
// (src/image/build.ts findDefaultImage, which honours RINGZERO_CACHE and XDG_CACHE_HOME). Undefined when neither
// exists; such tests skip with REAL_KERNEL_MISSING.
import { existsSync } from 'node:fs';
import { findDefaultImage } from '../../src/image/build.ts';

export const REAL_KERNEL_MISSING = 'no built default image (bin/ringzero image build) and no RINGZERO_TEST_KERNEL';

export function findRealKernel(): string | undefined {
  const fromEnv = process.env.RINGZERO_TEST_KERNEL;
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  return findDefaultImage()?.kernel;
}
