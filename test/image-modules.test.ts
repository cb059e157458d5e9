import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatModulesDep, moduleLoadOrder, moduleNameOf, parseModulesDep } from '../src/image/modules.ts';

// The virtio part of the modules.dep that depmod writes for bookworm's 6.1 cloud kernel.
const BOOKWORM_DEP = `kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_balloon.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
`;

test('module names: file name without .ko*, dashes as underscores', () => {
  assert.equal(moduleNameOf('kernel/drivers/char/hw_random/virtio-rng.ko'), 'virtio_rng');
  assert.equal(moduleNameOf('kernel/net/core/failover.ko.xz'), 'failover');
  assert.equal(moduleNameOf('virtio.ko.zst'), 'virtio');
});

test('the load order of the virtio modules is the one modprobe would use', () => {
  const modules = parseModulesDep(BOOKWORM_DEP);
  const { order, missing } = moduleLoadOrder(modules,
    ['virtio_pci', 'virtio_mmio', 'virtio_blk', 'virtio_net', 'virtio_console', 'virtio-rng', 'no_such_module']);
  assert.deepEqual(order.map((m) => m.name), [
    'virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'virtio_mmio',
    'virtio_blk', 'failover', 'net_failover', 'virtio_net', 'virtio_console', 'virtio_rng',
  ]);
  assert.deepEqual(missing, ['no_such_module']);
});

test('every module comes after all of its dependencies, whatever order the dependency list has', () => {
  // Dependency lists in "wrong" order and not transitively closed: recursion must still get it right.
  const modules = parseModulesDep(`a.ko: b.ko
b.ko: c.ko
c.ko:
d.ko: c.ko a.ko
`);
  const { order } = moduleLoadOrder(modules, ['d']);
  assert.deepEqual(order.map((m) => m.name), ['c', 'b', 'a', 'd']);
});

test('cycles and dangling dependencies are errors, not hangs', () => {
  assert.throws(() => moduleLoadOrder(parseModulesDep('a.ko: b.ko\nb.ko: a.ko\n'), ['a']), /cycle/);
  assert.throws(() => moduleLoadOrder(parseModulesDep('a.ko: gone.ko\n'), ['a']), /no entry/);
  assert.throws(() => parseModulesDep('no colon here\n'), /malformed/);
});

test('the trimmed modules.dep lists exactly the chosen modules with their dependencies', () => {
  const modules = parseModulesDep(BOOKWORM_DEP);
  const { order } = moduleLoadOrder(modules, ['virtio_net']);
  const trimmed = parseModulesDep(formatModulesDep(order));
  assert.deepEqual([...trimmed.keys()].sort(), [
    'kernel/drivers/net/net_failover.ko', 'kernel/drivers/net/virtio_net.ko', 'kernel/drivers/virtio/virtio.ko',
    'kernel/drivers/virtio/virtio_ring.ko', 'kernel/net/core/failover.ko',
  ]);
  assert.deepEqual(trimmed.get('kernel/drivers/net/virtio_net.ko')!.deps, modules.get('kernel/drivers/net/virtio_net.ko')!.deps);
});
