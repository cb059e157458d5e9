// virtio-net's announce after a restore (src/devices/virtio/net.ts): a snapshot started again or a live migration
// received sends a broadcast RARP from the guest's MAC, three times, so the bridges on the way learn the guest's new
// port without the guest sending anything (test/manager-migrate.test.ts moves a real guest between two bridges).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtioNet, NET_HDR_BYTES, parseMac, type NetBackend } from '../src/devices/virtio/net.ts';

const MAC = parseMac('52:54:00:12:34:56')!;

class Recorder implements NetBackend {
  sent: Uint8Array[] = [];
  read(): number | undefined { return undefined; }
  write(frame: Uint8Array): boolean { this.sent.push(Uint8Array.from(frame)); return true; }
  whenReadable(): void {}
  close(): void {}
}

test('a restored card announces itself: broadcast RARP from its MAC, three times in 150 ms; not when its link is down', async () => {
  const backend = new Recorder();
  const net = new VirtioNet(backend, MAC);
  const state = net.saveDeviceState();
  assert.equal(backend.sent.length, 0, 'nothing sent before the restore');
  net.restoreDeviceState(state);
  assert.equal(backend.sent.length, 1, 'the first one at once');
  await new Promise((resolve) => setTimeout(resolve, 250));
  assert.equal(backend.sent.length, 3);
  for (const frame of backend.sent) {
    assert.deepEqual([...frame.subarray(0, NET_HDR_BYTES)], new Array(NET_HDR_BYTES).fill(0), 'a zero virtio_net_hdr for the TAP');
    const f = frame.subarray(NET_HDR_BYTES);
    assert.equal(f.length, 60, 'the minimum Ethernet frame');
    assert.deepEqual([...f.subarray(0, 6)], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 'broadcast');
    assert.deepEqual([...f.subarray(6, 12)], [...MAC], 'from the guest\'s MAC');
    assert.deepEqual([...f.subarray(12, 22)], [0x80, 0x35, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03], 'RARP request (RFC 903)');
    assert.deepEqual([...f.subarray(22, 28)], [...MAC], 'sender hardware address');
    assert.deepEqual([...f.subarray(32, 38)], [...MAC], 'target hardware address');
  }

  const quiet = new Recorder();
  const down = new VirtioNet(quiet, MAC);
  down.restoreDeviceState({ ...state, linkUp: false });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(quiet.sent.length, 0, 'a card whose link is down says nothing');
});
