// Types of ./bundle-fresh.mjs (plain JavaScript: bin/ringzero imports it without a loader).
/** Why the bundle of the checkout at `base` (a directory path ending in /) is stale, or null when it is fresh. */
export function bundleStaleReason(base: string): string | null;
