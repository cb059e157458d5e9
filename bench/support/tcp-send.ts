// The host side of bench/io's TCP test, run inside the bench's network namespace (`ip netns exec NS node --import
// tsx bench/support/tcp-send.ts HOST PORT BYTES`): connect to the guest (retrying while nobody listens yet), print
// "connected" on stdout the moment the connection is up, send BYTES bytes and half-close, print "sent", and exit
// when the guest closes its side. The bench times from "connected" to the guest's report of what it received.
import net from 'node:net';

const [host, portText, bytesText] = process.argv.slice(2);
const port = Number(portText);
const total = Number(bytesText);
if (!host || !Number.isInteger(port) || !Number.isInteger(total) || total <= 0) {
  console.error('usage: tcp-send.ts HOST PORT BYTES');
  process.exit(2);
}
const deadline = Date.now() + 60_000;
const chunk = Buffer.alloc(256 * 1024, 0x5a);

function attempt(): void {
  const socket = net.createConnection({ host, port, allowHalfOpen: true });
  socket.once('error', (error: NodeJS.ErrnoException) => {
    if (!socket.remoteAddress && Date.now() < deadline && (error.code === 'ECONNREFUSED' || error.code === 'EHOSTUNREACH')) {
      setTimeout(attempt, 20);
      return;
    }
    console.error(`tcp-send: ${error.message}`);
    process.exit(1);
  });
  socket.once('connect', () => {
    socket.removeAllListeners('error');
    socket.on('error', (error) => { console.error(`tcp-send: ${error.message}`); process.exit(1); });
    const t0 = performance.now();
    process.stdout.write('connected\n');
    let left = total;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end(() => process.stdout.write(`sent ${(performance.now() - t0).toFixed(0)} ms\n`));
    };
    pump();
    socket.resume();
    socket.on('close', () => { process.stdout.write(`closed ${(performance.now() - t0).toFixed(0)} ms\n`); process.exit(0); });
  });
}
attempt();
