// The host side of bench/io's guest -> host TCP test, run inside the bench's network namespace (`ip netns exec NS
// node --import tsx bench/support/tcp-recv.ts HOST PORT`): listen, print "listening", accept one connection, count
// its bytes to the end, close, and print "received BYTES bytes in MS ms" (from the accept to the sender's
// half-close, this host's clock), then exit.
import net from 'node:net';

const [host, portText] = process.argv.slice(2);
const port = Number(portText);
if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
  console.error('usage: tcp-recv.ts HOST PORT');
  process.exit(2);
}
const server = net.createServer({ allowHalfOpen: true }, (socket) => {
  server.close();
  const t0 = performance.now();
  let total = 0;
  socket.on('data', (d: Buffer) => { total += d.length; });
  socket.on('end', () => {
    process.stdout.write(`received ${total} bytes in ${(performance.now() - t0).toFixed(1)} ms\n`);
    socket.end(() => process.exit(0));
  });
  socket.on('error', (error) => { console.error(`tcp-recv: ${error.message}`); process.exit(1); });
});
server.on('error', (error) => { console.error(`tcp-recv: ${error.message}`); process.exit(1); });
server.listen(port, host, () => process.stdout.write('listening\n'));
