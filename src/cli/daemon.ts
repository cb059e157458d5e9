// `ringzero daemon`: the VM manager of one host, serving the REST API on a Unix socket (and on TCP with a bearer
// token when asked). One daemon per state directory (a lock file holds its pid and start time). Stopping the daemon
// (SIGTERM, SIGINT) leaves the VMs running: the next daemon re-attaches to them.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createApi } from '../api/server.ts';
import { VmManager } from '../manager/manager.ts';
import { Subreaper } from '../manager/subreaper.ts';
import { isSameProcess, processStartTime } from '../manager/proc.ts';
import { defaultSocketPath, defaultStateDir, MAX_SOCKET_PATH, writeFileAtomic } from '../manager/store.ts';
import { UsageError } from './validate.ts';
import { DEFAULT_POOL_WARM_UP_MS, poolSizeError } from '../manager/pool.ts';

export interface DaemonOptions {
  stateDir?: string;
  socket?: string;
  /** HOST:PORT for a TCP listener (needs tokenFile). */
  listen?: string;
  tokenFile?: string;
  /** Default shutdown timeout in seconds. */
  shutdownTimeout?: string;
  /** HOST:PORT on which to accept live migrations from other daemons (src/manager/migration.ts). */
  migrationListen?: string;
  /** The secret the daemons of a cluster share for migrations (needed to send or accept one). */
  migrationTokenFile?: string;
  /** Spare VMM processes kept warm for incoming migrations and restores (src/manager/pool.ts), and their warm-up's CPU. */
  vmmPool?: string;
  vmmPoolWarmUpMs?: string;
}

function say(line: string): void {
  process.stderr.write(`ringzero daemon: ${line}\n`);
}

/** Is something accepting connections on this Unix socket? */
function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
}

/** Take the state directory's lock, or fail naming the daemon that holds it. */
function lockStateDir(stateDir: string): string {
  const lockFile = path.join(stateDir, 'daemon.pid');
  try {
    const held = JSON.parse(fs.readFileSync(lockFile, 'utf8')) as { pid: number; startTime: number };
    if (held.pid !== process.pid && isSameProcess(held.pid, held.startTime)) {
      throw new UsageError(`another daemon (pid ${held.pid}) owns the state directory ${stateDir}`);
    }
  } catch (error) {
    if (error instanceof UsageError) throw error;
    // no lock, or a torn one: ours now
  }
  writeFileAtomic(lockFile, `${JSON.stringify({ pid: process.pid, startTime: processStartTime(process.pid) })}\n`);
  return lockFile;
}

function parseListen(text: string, flag = '--listen'): { host: string; port: number } {
  const match = /^(.*):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[2]) : NaN;
  if (!match || match[1] === '' || port > 65535) throw new UsageError(`invalid ${flag} '${text}': use HOST:PORT, e.g. 127.0.0.1:8086`);
  return { host: match[1].replace(/^\[(.*)\]$/, '$1'), port };
}

function readToken(file: string): string {
  let token: string;
  try {
    token = fs.readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new UsageError(`cannot read the token file '${file}' (${(error as NodeJS.ErrnoException).code})`);
  }
  if (token.length < 16) throw new UsageError(`the token in '${file}' is too short: at least 16 characters`);
  return token;
}

/** Run the daemon until SIGTERM or SIGINT. */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  const stateDir = path.resolve(options.stateDir ?? defaultStateDir());
  const socketPath = path.resolve(options.socket ?? defaultSocketPath(options.stateDir === undefined ? undefined : stateDir));
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) throw new UsageError(`the socket path '${socketPath}' is longer than ${MAX_SOCKET_PATH} bytes`);
  const tcp = options.listen !== undefined ? parseListen(options.listen) : undefined;
  if (tcp && options.tokenFile === undefined) throw new UsageError('--listen needs --token-file: the TCP API always requires a bearer token');
  const token = options.tokenFile !== undefined ? readToken(options.tokenFile) : undefined;
  const migrationAt = options.migrationListen !== undefined ? parseListen(options.migrationListen, '--migration-listen') : undefined;
  if (migrationAt && options.migrationTokenFile === undefined) throw new UsageError('--migration-listen needs --migration-token-file: a migrating daemon must prove it holds the same secret');
  const migrationToken = options.migrationTokenFile !== undefined ? readToken(options.migrationTokenFile) : undefined;
  const shutdownTimeoutS = options.shutdownTimeout !== undefined ? Number(options.shutdownTimeout) : undefined;
  if (shutdownTimeoutS !== undefined && !(shutdownTimeoutS >= 0)) throw new UsageError(`invalid --shutdown-timeout '${options.shutdownTimeout}'`);
  // (the environment's RINGZERO_VMM_POOL and RINGZERO_VMM_POOL_WARM_UP_MS when not given: a whole test suite's daemons
  // can run with a pool for an A/B)
  const poolText = options.vmmPool ?? process.env.RINGZERO_VMM_POOL ?? '0';
  const poolSize = /^\d+$/.test(poolText) ? Number(poolText) : NaN;
  const poolWhy = poolSizeError(poolSize);
  if (poolWhy) throw new UsageError(`invalid --vmm-pool '${poolText}': ${poolWhy}`);
  const warmUpText = options.vmmPoolWarmUpMs ?? process.env.RINGZERO_VMM_POOL_WARM_UP_MS ?? String(DEFAULT_POOL_WARM_UP_MS);
  const warmUpMs = /^\d+$/.test(warmUpText) ? Number(warmUpText) : NaN;
  if (!(warmUpMs >= 0 && warmUpMs <= 600_000)) throw new UsageError(`invalid --vmm-pool-warm-up-ms '${warmUpText}': must be an integer from 0 to 600000`);

  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const lockFile = lockStateDir(stateDir);
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  if (fs.existsSync(socketPath)) {
    if (await socketAnswers(socketPath)) throw new UsageError(`something already listens on ${socketPath}`);
    if (fs.lstatSync(socketPath).isSocket()) fs.unlinkSync(socketPath);
    else throw new UsageError(`${socketPath} exists and is not a socket`);
  }

  // Before any VMM starts: what a VMM leaves behind when it dies comes to the daemon, which reaps it.
  const reaper = new Subreaper(say);
  const manager = new VmManager(stateDir, { log: say, pool: { size: poolSize, warmUpMs } });
  await manager.open();
  if (poolSize > 0) say(`VMM pool: ${poolSize} spare VMM${poolSize > 1 ? 's' : ''} for incoming migrations and restores, each warmed up for ${warmUpMs} ms of CPU (GET /host/pool)`);
  manager.migrations.setToken(migrationToken);
  if (migrationAt) {
    const at = await manager.migrations.listen(migrationAt.host, migrationAt.port);
    say(`accepting live migrations on ${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}`);
  }
  const apps: FastifyInstance[] = [];
  // The TCP listener first: once the Unix socket answers, the daemon is wholly ready.
  if (tcp) {
    const tcpApi = await createApi(manager, { token, shutdownTimeoutS });
    const address = await tcpApi.listen({ host: tcp.host, port: tcp.port });
    apps.push(tcpApi);
    say(`API on ${address} (bearer token required)`);
  }
  const unixApi = await createApi(manager, { shutdownTimeoutS });
  await unixApi.listen({ path: socketPath });
  fs.chmodSync(socketPath, 0o600);
  apps.push(unixApi);
  say(`state in ${stateDir}, API on ${socketPath}`);

  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      say(`${signal}: stopping (VMs keep running)`);
      manager.close();
      reaper.close();
      Promise.allSettled(apps.map((app) => app.close())).then(() => {
        fs.rmSync(lockFile, { force: true });
        resolve(0);
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
