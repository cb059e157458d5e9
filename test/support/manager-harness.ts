// Shared by the manager and API tests: a real `ringzero daemon` process in a temp state directory, the real CLI,
// plain HTTP over the Unix socket, and two tiny synthetic guests (bzImages whose 64-bit entry runs the code below).

import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { writeTinyKernel } from './guest.ts';
import { readProcStat } from '../../src/sys/proc-stat.ts';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const bin = path.join(root, 'bin', 'ringzero');

// Assembled with GNU as (Intel syntax), entry at payload offset 0x200:
// echo guest: print "ringzero test guest: ready\n" on COM1 (polling LSR.THRE), then echo every byte received on COM1;
//   'q' writes SLP_TYP=5|SLP_EN (0x3400) to PM1a_CNT (0x604): ACPI soft-off.
const ECHO_GUEST = '488d354d000000b91b00000066bafd03eca82074fb66baf803aceeffc975ed66bafd03ecf390a80174f966baf803ec3c71741488c366'
  + 'bafd03eca82074fb66baf80388d8eeebd866ba040666b8003466eff4ebfd72696e677a65726f20746573742067756573743a2072656164790a';
// button guest: print "ringzero test guest: button\n", set PWRBTN_EN in PM1_EN (0x602), poll PM1_STS (0x600) with
//   pause until PWRBTN_STS, clear it, write SLP_TYP=5|SLP_EN to PM1a_CNT: soft-off when the power button is pressed.
const BUTTON_GUEST = '488d3543000000b91c00000066bafd03eca82074f766baf803aceeffc975ed66ba020666b8000166eff39066ba000666ed66a900017'
  + '4f266b8000166ef66ba040666b8003466eff4ebfd72696e677a65726f20746573742067756573743a20627574746f6e0a';
// idle guest: print "ringzero test guest: idle\n", then cli; hlt forever (a halted vCPU: no host CPU).
const IDLE_GUEST = '488d351c000000b91a00000066bafd03eca82074fb66baf803aceeffc975edfaf4ebfd72696e677a65726f20746573742067756573743a2069646c650a';

export function guestKernel(dir: string, kind: 'echo' | 'idle' | 'button'): string {
  return writeTinyKernel(path.join(dir, `${kind}.bzImage`), { echo: ECHO_GUEST, idle: IDLE_GUEST, button: BUTTON_GUEST }[kind]);
}

/** A short temp dir (Unix socket paths are limited to 107 bytes). */
export function tempDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `rz-${tag}-`));
}

/**
 * Two daemons' state dirs under `dir` (`a`, `b`) that trust each other for live migration: a shared token file, and
 * the arguments that have a daemon accept migrations with it on a free loopback port (`listen`).
 */
export function migrationPair(dir: string): { a: string; b: string; token: string; listen: string[] } {
  const a = path.join(dir, 'a'), b = path.join(dir, 'b'), token = path.join(dir, 'token');
  fs.writeFileSync(token, 'the-shared-migration-secret\n');
  return { a, b, token, listen: ['--migration-listen', '127.0.0.1:0', '--migration-token-file', token] };
}

export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
}

/** Whether `pid` runs (a zombie does not: a VMM orphaned by a killed daemon may wait for a reaper that never comes). */
export function processAlive(pid: number): boolean {
  const state = readProcStat(`/proc/${pid}/stat`)?.fields[0];
  return state !== undefined && state !== 'Z' && state !== 'X';
}

/**
 * Every daemon a test started that has not ended: killed after the file's last test. A test that fails before its
 * own stop() would otherwise leave its daemon running, and the daemon's stderr pipe keeps the test process (and so
 * the whole suite) waiting for ever: a CI run at load ~33 hung there after test/manager-subreaper's first test failed.
 */
const liveDaemons = new Set<ChildProcess>();
after(() => {
  for (const child of liveDaemons) child.kill('SIGKILL');
});

export class Daemon {
  stderr = '';
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly child: ChildProcess, readonly stateDir: string, readonly socket: string) {
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { this.stderr += s; });
    liveDaemons.add(child);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => { liveDaemons.delete(child); resolve({ code, signal }); }));
  }

  /** `ownSession`: the daemon leads a session of its own (setsid), as systemd starts a service. */
  static async start(stateDir: string, args: string[] = [], env: Record<string, string> = {}, options: { ownSession?: boolean } = {}): Promise<Daemon> {
    const socketAt = args.indexOf('--socket');
    const socket = socketAt >= 0 ? args[socketAt + 1] : path.join(stateDir, 'ringzero.sock');
    const child = spawn(process.execPath, [bin, 'daemon', '--state-dir', stateDir, ...args], {
      env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'], detached: options.ownSession === true,
    });
    const daemon = new Daemon(child, stateDir, socket);
    let gone = false;
    void daemon.exited.then(() => { gone = true; });
    await waitFor(`the daemon's socket (${daemon.stderr})`, async () => gone || socketAnswers(socket));
    if (gone) throw new Error(`the daemon ended: ${daemon.stderr}`);
    return daemon;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    await this.exited;
  }
}

export interface HttpResult {
  status: number;
  body: any;
  headers: http.IncomingHttpHeaders;
}

/** One HTTP request over a Unix socket or to a TCP address; `rawBody` is sent as is. */
export function api(target: { socket: string } | { port: number }, method: string, urlPath: string,
  body?: unknown, options: { rawBody?: string; headers?: Record<string, string> } = {}): Promise<HttpResult> {
  const payload = options.rawBody !== undefined ? Buffer.from(options.rawBody) : body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const request = http.request({
      ...('socket' in target ? { socketPath: target.socket } : { host: '127.0.0.1', port: target.port }),
      method, path: urlPath,
      headers: { ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}), ...options.headers },
    }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (c: Buffer) => chunks.push(c));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try { parsed = text === '' ? undefined : JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: response.statusCode ?? 0, body: parsed, headers: response.headers });
      });
    });
    request.on('error', reject);
    request.end(payload);
  });
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run the real CLI; `input` chunks are written to its stdin with the given delays before each. */
export function cli(args: string[], socket: string, input: Array<{ afterMs: number; data: string }> = [], timeoutMs = 30_000,
  onStdout?: (all: string, child: ChildProcess) => void): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, RINGZERO_SOCKET: socket }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => { stdout += s; onStdout?.(stdout, child); });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    child.stdin!.on('error', () => {});
    let delay = 0;
    for (const chunk of input) {
      delay += chunk.afterMs;
      setTimeout(() => child.stdin!.write(chunk.data), delay);
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    // The result once stdout has ended as well ('exit' can come before the last bytes are read; at most 2 s later).
    const ended = new Promise<void>((r) => { child.stdout!.once('end', r).once('close', r); });
    child.once('exit', (status) => {
      clearTimeout(timer);
      void Promise.race([ended, new Promise<void>((r) => setTimeout(r, 2000))]).then(() => resolve({ status, stdout, stderr }));
    });
  });
}

/** Every file of the state directory but logs and sockets, with a hash of its content: to check "nothing changed". */
export function snapshot(stateDir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      const rel = path.relative(stateDir, full);
      if (entry.isDirectory()) {
        if (rel !== 'logs') walk(full);
      } else if (entry.isFile() && rel !== 'daemon.pid') {
        out[rel] = crypto.createHash('sha256').update(fs.readFileSync(full)).digest('hex');
      }
    }
  };
  walk(stateDir);
  return out;
}

/** SIGKILL every VMM process the state directory records (test clean-up, whatever state the daemon is in). */
export function killRecordedVmms(stateDir: string): void {
  const runDir = path.join(stateDir, 'run');
  for (const file of fs.existsSync(runDir) ? fs.readdirSync(runDir) : []) {
    if (!file.endsWith('.json')) continue;
    const pid = JSON.parse(fs.readFileSync(path.join(runDir, file), 'utf8')).pid;
    if (pid) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

/** A guest console reached through a VM's console socket (the daemon's, or a VMM's --console-socket). */
export interface GuestConsole {
  socket: net.Socket;
  /** Everything received so far, carriage returns dropped. */
  output(): string;
  /**
   * Type `command` followed by an echo of `token` (written split in two quoted halves, so the echo of the command
   * line never matches) and wait for the token on a line of its own; returns what arrived since the command was
   * typed, carriage returns dropped.
   */
  run(command: string, token: string, timeoutMs?: number): Promise<string>;
  /** As run, returning only the lines the command printed (between the command line and the token). */
  lines(command: string, token: string, timeoutMs?: number): Promise<string>;
}

export async function guestConsole(socketPath: string, defaultTimeoutMs = 180_000): Promise<GuestConsole> {
  const socket = net.connect(socketPath);
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  let text = '';
  socket.setEncoding('latin1').on('data', (d: string) => { text += d; });
  /** The token as typed: split in two quoted halves, so only the echoed command line holds this text. */
  const split = (token: string): string => `"${token.slice(0, 2)}""${token.slice(2)}"`;
  const run = async (command: string, token: string, timeoutMs = defaultTimeoutMs): Promise<string> => {
    const from = text.length;
    socket.write(`${command}; echo ${split(token)}\n`);
    await waitFor(`'${token}' after ${command} (${text.slice(-500)})`, () => text.slice(from).replace(/\r/g, '').includes(`\n${token}\n`), timeoutMs);
    return text.slice(from).replace(/\r/g, '');
  };
  return {
    socket,
    output: () => text.replace(/\r/g, ''),
    run,
    async lines(command: string, token: string, timeoutMs?: number): Promise<string> {
      const out = await run(command, token, timeoutMs);
      // After the echoed command line, found by its split token (its end): what arrives before it is not always one
      // line (a CI run saw a line break ahead of the prompt, which made the echo look like the command's output).
      const echoed = out.indexOf(split(token));
      const start = echoed < 0 ? out.indexOf('\n') + 1 : out.indexOf('\n', echoed) + 1;
      return out.slice(start, out.indexOf(`\n${token}\n`) + 1).split('\n').filter((l) => l !== '').join('\n');
    },
  };
}

export interface DaemonFixture {
  /** A fresh temp directory (exists as soon as the fixture is made); removed after the file's tests. */
  readonly dir: string;
  /** DIR/state: the daemon's state directory. */
  readonly stateDir: string;
  /** The daemon, from the file's first `before` on; a test that restarts it sets the new one here (stopped after). */
  daemon: Daemon;
  /** Resolves with the daemon once started: a file's own root-level `before` awaits it (Node runs those concurrently). */
  readonly ready: Promise<Daemon>;
  /** One HTTP request to the daemon's Unix socket. */
  call(method: string, url: string, body?: unknown): Promise<HttpResult>;
}

/**
 * The set-up most manager test files share, registered at the file's top level: a temp directory, a real daemon on
 * DIR/state started before the file's tests and, after them, every VMM the state directory records killed, the daemon
 * stopped, `cleanup` run and the directory removed. Root-level `before` hooks run concurrently (Node 20): one that
 * needs the daemon awaits `ready`. `args` may be a function of the fixture's directory (daemon files kept there),
 * called when the daemon starts.
 */
export function daemonFixture(tag: string, options: { args?: string[] | ((dir: string) => string[]); cleanup?: () => void } = {}): DaemonFixture {
  const dir = tempDir(tag);
  const stateDir = path.join(dir, 'state');
  let daemon: Daemon | undefined;
  let started!: (d: Daemon) => void;
  let failed!: (error: unknown) => void;
  const ready = new Promise<Daemon>((resolve, reject) => { started = resolve; failed = reject; });
  ready.catch(() => {}); // reported by the hook below
  before(async () => {
    try {
      daemon = await Daemon.start(stateDir, typeof options.args === 'function' ? options.args(dir) : options.args ?? []);
      started(daemon);
    } catch (error) {
      failed(error);
      throw error;
    }
  });
  after(async () => {
    killRecordedVmms(stateDir); // leave no VMM behind, whatever failed
    await daemon?.stop();
    options.cleanup?.();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir, stateDir, ready,
    get daemon(): Daemon {
      if (!daemon) throw new Error('the fixture\'s daemon is not started yet (use it in a test or a later before)');
      return daemon;
    },
    set daemon(next: Daemon) {
      daemon = next;
    },
    call: (method, url, body) => api({ socket: daemon!.socket }, method, url, body),
  };
}

/** The port of a daemon's live-migration listener (`--migration-listen HOST:0`), from the line it logs. */
export function listenPort(daemon: Daemon): number {
  const m = /accepting live migrations on [^\s]+:(\d+)/.exec(daemon.stderr);
  if (!m) throw new Error(`no migration listener: ${daemon.stderr}`);
  return Number(m[1]);
}
