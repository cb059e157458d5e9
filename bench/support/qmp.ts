// A minimal QMP client for the benches that drive QEMU's monitor (bench/snapshot, bench/migrate): the greeting,
// qmp_capabilities, then one JSON reply per command in order (QEMU docs/interop/qmp-spec); events are skipped.
import net from 'node:net';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A minimal QMP client (docs/interop/qmp-spec: greeting, qmp_capabilities, then one JSON reply per command). */
export class Qmp {
  private buffered = '';
  private replies: Array<(r: Record<string, unknown>) => void> = [];
  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8').on('data', (s: string) => {
      this.buffered += s;
      let nl;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl).trim();
        this.buffered = this.buffered.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('QMP' in msg || 'event' in msg) continue;
        this.replies.shift()?.(msg);
      }
    });
  }

  static async connect(file: string): Promise<Qmp> {
    const deadline = performance.now() + 30_000;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(file);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const qmp = new Qmp(socket);
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (error) {
        if (performance.now() > deadline) throw error;
        await sleep(2);
      }
    }
  }

  execute(command: string, args?: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.replies.push((r) => ('error' in r ? reject(new Error(`QMP ${command}: ${JSON.stringify(r.error)}`)) : resolve(r.return as Record<string, unknown>)));
      this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    });
  }

  async status(): Promise<string> {
    return String((await this.execute('query-status')).status);
  }

  close(): void { this.socket.destroy(); }
}
