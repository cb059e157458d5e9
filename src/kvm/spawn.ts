// Start a worker thread on a module of this source tree. The modules are TypeScript run through tsx; Node 20 does not
// apply the parent's `--import tsx` hooks to a worker's entry module, so a two-line bootstrap registers tsx's loader
// in the worker and then imports the module. Compiled (.js) modules start directly.
import { Worker } from 'node:worker_threads';

/** `moduleUrl`: the worker's module (a .ts URL beside the caller's import.meta.url, or its compiled .js). */
export function spawnModuleWorker(moduleUrl: URL, workerData: unknown): Worker {
  if (!moduleUrl.pathname.endsWith('.ts')) return new Worker(moduleUrl, { workerData });
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${JSON.stringify(moduleUrl.href)}); });`;
  return new Worker(boot, { eval: true, workerData });
}

/** The URL of sibling module `name` (without extension) of `base`, .ts under tsx and .js when compiled. */
export function siblingModule(base: string, name: string): URL {
  return new URL(`./${name}${base.endsWith('.ts') ? '.ts' : '.js'}`, base);
}
