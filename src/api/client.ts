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
  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : { contentType: 'application/json', text: JSON.stringify(body) };
    const { text } = await this.send(method, path, payload);
    try {
      return (text === '' ? undefined : JSON.parse(text)) as T;
    } catch {
      return undefined as T;
    }
  }

  /**
   * One request with a body of a given media type (a YAML definition), answered as text (GET /vms/{name}/definition);
   * rejects with an ApiError on an error status.
   */
  requestText(method: string, path: string, payload?: { contentType: string; text: string }, accept?: string): Promise<{ contentType: string; text: string }> {
    return this.send(method, path, payload, accept);
  }

  private send(method: string, path: string, payload?: { contentType: string; text: string }, accept?: string): Promise<{ contentType: string; text: string }> {
    const data = payload === undefined ? undefined : Buffer.from(payload.text);
    return new Promise((resolve, reject) => {
      const request = http.request({
        socketPath: this.socketPath, method, path,
        headers: {
          ...(payload && data ? { 'content-type': payload.contentType, 'content-length': data.length } : {}),
          ...(accept !== undefined ? { accept } : {}),
        },
      }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = response.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            resolve({ contentType: String(response.headers['content-type'] ?? ''), text });
            return;
          }
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
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
      request.end(data);
    });
  }
}
