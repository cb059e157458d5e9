// Whether a checkout's bundle (dist/esm/main.js, built by scripts/build.mjs) is fresh: nothing under src/, nor
// scripts/build.mjs, changed after the build started (the build writes its start time as main.js's mtime). ctime as
// well as mtime: a file copied in with its old mtime, a rename or a chmod still counts as a change. bin/ringzero runs
// the bundle only while it is fresh (else the sources through tsx), and the benches refuse a stale one
// (bench/support/common.ts requireFreshBundle), so both read this one rule.
import fs from 'node:fs';

/**
 * Why the bundle of the checkout at `base` (a directory path ending in '/') is stale, or null when it is fresh.
 * Plain path strings: a few hundred stats, ~2 ms, and bin/ringzero runs this on every start.
 */
export function bundleStaleReason(base) {
  let stamp;
  try {
    stamp = fs.statSync(`${base}dist/esm/main.js`).mtimeMs;
  } catch {
    return 'no dist/esm/main.js';
  }
  const newer = (file) => {
    const st = fs.statSync(file);
    return st.mtimeMs > stamp || st.ctimeMs > stamp;
  };
  const changed = (file) => `${file.slice(base.length)} changed after the build`;
  try {
    if (newer(`${base}scripts/build.mjs`)) return changed(`${base}scripts/build.mjs`);
    const pending = [`${base}src`];
    while (pending.length > 0) {
      const dir = pending.pop();
      if (newer(dir)) return changed(dir);
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const file = `${dir}/${entry.name}`;
        if (entry.isDirectory()) pending.push(file);
        else if (newer(file)) return changed(file);
      }
    }
  } catch (err) {
    return `cannot check it: ${err instanceof Error ? err.message : String(err)}`;
  }
  return null;
}
