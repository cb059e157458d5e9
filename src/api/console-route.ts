// GET /vms/{name}/console: a running VM's serial console through the daemon's API, for clients that cannot reach
// the VMM's console socket (the TCP listener, from another host). As Docker's attach, the HTTP connection is
// upgraded (RFC 9110 §7.8; `Connection: Upgrade`, `Upgrade: ringzero-console`) and then carries the console's raw
// bytes both ways: the client's bytes go to the guest's UART, the guest's output (after the VMM's scrollback) comes
// back. It is one more viewer of the VMM's console socket, so several can attach at once, beside `ringzero console`;
// the client detaches by closing the connection, and the stream ends when the VM stops. The daemon only relays: a
// daemon restart ends the relayed viewers, not the VM.
//
// Node hands a request with an Upgrade header to the server's 'upgrade' listener (with the HTTP parser detached), not
// to fastify's routes, so this path is served there: the same bearer token as every other request on a TCP
// listener, and errors as the API's JSON error bodies. The same path without the Upgrade header is answered 400.

import net from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { VmManager } from '../manager/manager.ts';
import { ManagerError, type ErrorCode } from '../manager/schema.ts';

export const CONSOLE_PROTOCOL = 'ringzero-console';
const CONSOLE_PATH = /^\/vms\/([^/?#]+)\/console(?:\?.*)?$/;

/** An HTTP error on a socket the parser has let go of: the API's JSON body, then the connection closed. */
function refuse(socket: Duplex, status: number, code: ErrorCode, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ error: { code, message } });
  const reason = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 409: 'Conflict', 426: 'Upgrade Required', 500: 'Internal Server Error' }[status] ?? 'Error';
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`);
}

export function registerConsoleRoute(app: FastifyInstance, manager: VmManager, authorized: (header: string | undefined) => boolean): void {
  app.get('/vms/:name/console', async () => {
    throw new ManagerError('invalid', `the console is a stream: ask with 'Connection: Upgrade' and 'Upgrade: ${CONSOLE_PROTOCOL}'`);
  });

  const relays = new Set<{ client: Duplex; vm: net.Socket }>();
  app.addHook('onClose', async () => {
    for (const { client, vm } of relays) { client.destroy(); vm.destroy(); }
  });

  app.server.on('upgrade', (request: IncomingMessage, client: Duplex, head: Buffer) => {
    client.on('error', () => {});
    const match = CONSOLE_PATH.exec(request.url ?? '');
    if (!match) return refuse(client, 404, 'not_found', `no such resource: ${request.method} ${request.url} (with Upgrade)`);
    if (!authorized(request.headers.authorization)) return refuse(client, 401, 'unauthorized', 'a valid bearer token is required', { 'www-authenticate': 'Bearer' });
    if (request.method !== 'GET') return refuse(client, 404, 'not_found', `no such resource: ${request.method} ${request.url}`);
    const asked = String(request.headers.upgrade ?? '').split(',').map((p) => p.trim().toLowerCase());
    if (!asked.includes(CONSOLE_PROTOCOL)) return refuse(client, 426, 'invalid', `the console speaks only '${CONSOLE_PROTOCOL}'`, { upgrade: CONSOLE_PROTOCOL, connection: 'Upgrade' });
    let name: string;
    try {
      name = decodeURIComponent(match[1]);
    } catch {
      return refuse(client, 400, 'invalid', `invalid VM name in ${request.url}`);
    }
    let socketPath: string | undefined;
    try {
      const vm = manager.get(name);
      socketPath = vm.consoleSocket;
      if (socketPath === undefined) throw new ManagerError('conflict', `VM '${name}' is ${vm.state}: no console to attach to`);
    } catch (error) {
      if (error instanceof ManagerError) return refuse(client, error.httpStatus, error.code, error.message);
      return refuse(client, 500, 'internal', (error as Error).message);
    }
    const vm = net.connect(socketPath);
    const relay = { client, vm };
    vm.once('error', (error: NodeJS.ErrnoException) => {
      if (relays.has(relay)) { client.destroy(); return; }
      refuse(client, 409, 'conflict', `VM '${name}': its console does not answer (${error.code ?? error.message})`);
    });
    vm.once('connect', () => {
      relays.add(relay);
      client.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${CONSOLE_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
      if (head.length > 0) vm.write(head);
      client.pipe(vm);
      vm.pipe(client);
      // The client gone: so is this viewer. The VM's console gone (the VM stopped): what it sent still reaches the client.
      client.once('close', () => { relays.delete(relay); vm.destroy(); });
      vm.once('close', () => { relays.delete(relay); client.end(); });
    });
  });
}
