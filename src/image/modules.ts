// Kernel module dependencies, from the modules.dep file that depmod writes.
// Format (depmod(8), modules.dep(5)): one line per module, "path/of/module.ko: dep1.ko dep2.ko ...", the paths
// relative to /lib/modules/<version>/. The dependency list is already the transitive closure, and modprobe loads it
// from the last entry to the first; we recurse anyway so the order is right whatever the list order is.

export interface ModuleInfo {
  /** Canonical module name: file name without ".ko*", dashes turned into underscores (as the kernel does). */
  name: string;
  /** Path relative to /lib/modules/<version>/. */
  path: string;
  /** Paths of the modules it needs, in modules.dep order. */
  deps: string[];
}

/** "kernel/drivers/char/hw_random/virtio-rng.ko" -> "virtio_rng". */
export function moduleNameOf(path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return base.replace(/\.ko(\.(xz|gz|zst))?$/, '').replace(/-/g, '_');
}

/** Parse modules.dep into a map from module path to its entry. */
export function parseModulesDep(text: string): Map<string, ModuleInfo> {
  const modules = new Map<string, ModuleInfo>();
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`modules.dep: malformed line ${JSON.stringify(rawLine)}`);
    const path = line.slice(0, colon).trim();
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter((dep) => dep !== '');
    modules.set(path, { name: moduleNameOf(path), path, deps });
  }
  return modules;
}

export interface LoadOrder {
  /** Modules to insmod, each after everything it depends on. */
  order: ModuleInfo[];
  /** Requested names that this kernel does not have as modules (built in, or absent). */
  missing: string[];
}

/**
 * The load order for the requested modules and their dependencies: requests are taken in the given order,
 * each preceded by its not-yet-loaded dependencies (dependencies of dependencies first; for siblings, the order
 * modprobe would use: the last one in modules.dep first).
 */
export function moduleLoadOrder(modules: Map<string, ModuleInfo>, requested: readonly string[]): LoadOrder {
  const byName = new Map<string, ModuleInfo>();
  for (const info of modules.values()) byName.set(info.name, info);
  const order: ModuleInfo[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (info: ModuleInfo): void => {
    if (done.has(info.path)) return;
    if (visiting.has(info.path)) throw new Error(`modules.dep: dependency cycle through ${info.name}`);
    visiting.add(info.path);
    for (const depPath of [...info.deps].reverse()) {
      const dep = modules.get(depPath);
      if (dep === undefined) throw new Error(`modules.dep: ${info.name} needs ${depPath}, which has no entry`);
      visit(dep);
    }
    visiting.delete(info.path);
    done.add(info.path);
    order.push(info);
  };
  const missing: string[] = [];
  for (const wanted of requested) {
    const info = byName.get(wanted.replace(/-/g, '_'));
    if (info === undefined) missing.push(wanted);
    else visit(info);
  }
  return { order, missing };
}

/** modules.dep text restricted to the given modules (so busybox modprobe works inside the guest too). */
export function formatModulesDep(order: readonly ModuleInfo[]): string {
  return order.map((info) => `${info.path}:${info.deps.map((dep) => ` ${dep}`).join('')}\n`).join('');
}
