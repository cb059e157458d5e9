// A client of the daemon's REST API over its Unix socket: what the CLI verbs use.

import http from 'node:http';

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export class ApiClient {
  constructor(readonly socketPath: string) {}

  /** One request; resolves with the parsed JSON body (undefined for 204), rejects with an ApiError on an error status. */
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const request = http.request({
        socketPath: this.socketPath, method, path,
        headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
      }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          const status = response.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            resolve(parsed as T);
            return;
          }
          const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
          reject(new ApiError(status, error?.code ?? 'internal', error?.message ?? `HTTP ${status}: ${text.slice(0, 200)}`));
        });
      });
      request.on('error', (error: NodeJS.ErrnoException) => {
        const why = error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
          ? `no ringzero daemon answers on ${this.socketPath} (start one with \`ringzero daemon\`, or set --socket / RINGZERO_SOCKET)`
          : `cannot reach the daemon on ${this.socketPath}: ${error.message}`;
        reject(new ApiError(0, 'unreachable', why));
      });
      request.end(payload);
    });
  }
}
