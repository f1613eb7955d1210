/*
 * control.sock: how `xl` talks to a running machine daemon.
 *
 * JSON lines over a unix socket. A request is `{"id":N,"verb":"...","args":{...}}`;
 * the daemon answers `{"id":N,"ok":true,"result":...}` or
 * `{"id":N,"ok":false,"error":"one clear line"}`. A verb may also stream:
 * it sends `{"id":N,"data":"..."}` lines (console output, progress) before
 * its final answer, and the client may send `{"id":N,"input":"..."}` lines
 * to a streaming verb (console input).
 */
import net from 'node:net';
import { StringDecoder } from 'node:string_decoder';

export interface ControlRequest {
  readonly id: number;
  readonly verb: string;
  readonly args: Record<string, unknown>;
}

export type ControlReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string };

export interface StreamChannel {
  /** Send a chunk of streamed output to the client. */
  data(chunk: string): void;
  /** Called with input the client sends to this verb. */
  onInput(fn: (chunk: string) => void): void;
  /** Called when the client goes away. */
  onClose(fn: () => void): void;
}

export type VerbHandler = (args: Record<string, unknown>, stream: StreamChannel) => Promise<unknown>;

/** Thrown by verb handlers for an error the user should see as one line. */
export class ControlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ControlError';
  }
}

const MAX_LINE = 16 * 1024 * 1024;

/** Split a byte stream into JSON lines; bad lines are reported, not thrown. */
function lineReader(sock: net.Socket, onLine: (line: string) => void, onOverflow: () => void): void {
  const dec = new StringDecoder('utf8');
  let buf = '';
  sock.on('data', (chunk: Buffer) => {
    buf += dec.write(chunk);
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() !== '') onLine(line);
    }
    if (buf.length > MAX_LINE) {
      buf = '';
      onOverflow();
    }
  });
}

export class ControlServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly verbs: ReadonlyMap<string, VerbHandler>) {
    this.server = net.createServer((sock) => this.serve(sock));
  }

  listen(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(path, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private serve(sock: net.Socket): void {
    this.sockets.add(sock);
    const inputs = new Map<number, (chunk: string) => void>();
    const closers = new Set<() => void>();
    sock.on('close', () => {
      this.sockets.delete(sock);
      for (const c of closers) c();
    });
    sock.on('error', () => sock.destroy());
    const send = (obj: unknown): void => {
      if (!sock.destroyed) sock.write(JSON.stringify(obj) + '\n');
    };
    lineReader(sock, (line) => {
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        send({ id: 0, ok: false, error: 'control: request is not JSON' });
        return;
      }
      if (typeof msg !== 'object' || msg === null) return;
      const m = msg as Record<string, unknown>;
      const id = typeof m['id'] === 'number' ? m['id'] : 0;
      if (typeof m['input'] === 'string') {
        inputs.get(id)?.(m['input']);
        return;
      }
      const verb = typeof m['verb'] === 'string' ? m['verb'] : '';
      const handler = this.verbs.get(verb);
      if (!handler) {
        send({ id, ok: false, error: `unknown verb ${JSON.stringify(verb)}` });
        return;
      }
      const args = typeof m['args'] === 'object' && m['args'] !== null ? (m['args'] as Record<string, unknown>) : {};
      const stream: StreamChannel = {
        data: (chunk) => send({ id, data: chunk }),
        onInput: (fn) => inputs.set(id, fn),
        onClose: (fn) => closers.add(fn),
      };
      handler(args, stream).then(
        (result) => {
          inputs.delete(id);
          send({ id, ok: true, result: result ?? null });
        },
        (e: unknown) => {
          inputs.delete(id);
          const message = e instanceof ControlError ? e.message : `internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`;
          send({ id, ok: false, error: message });
        },
      );
    }, () => {
      send({ id: 0, ok: false, error: 'control: request line too long' });
      sock.destroy();
    });
  }
}

/** Thrown when no daemon answers at a machine dir. */
export class NoMachineError extends Error {
  constructor(readonly dir: string, cause: string) {
    super(`no machine running at ${dir} (${cause}); start one with: xl machine start --dir ${dir}`);
    this.name = 'NoMachineError';
  }
}

export class ControlClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; onData?: (d: string) => void }>();
  private closedError: Error | null = null;

  private constructor(private readonly sock: net.Socket) {
    lineReader(sock, (line) => this.onLine(line), () => sock.destroy());
    sock.on('close', () => {
      this.closedError ??= new Error('machine daemon closed the connection');
      for (const p of this.pending.values()) p.reject(this.closedError);
      this.pending.clear();
    });
    sock.on('error', (e) => {
      this.closedError = e;
    });
  }

  static connect(dir: string, socketPath: string): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(socketPath);
      sock.once('connect', () => {
        sock.removeAllListeners('error');
        resolve(new ControlClient(sock));
      });
      sock.once('error', (e: NodeJS.ErrnoException) => reject(new NoMachineError(dir, e.code ?? e.message)));
    });
  }

  private onLine(line: string): void {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const id = typeof m['id'] === 'number' ? m['id'] : -1;
    const p = this.pending.get(id);
    if (!p) return;
    if (typeof m['data'] === 'string') {
      p.onData?.(m['data']);
      return;
    }
    this.pending.delete(id);
    if (m['ok'] === true) p.resolve(m['result']);
    else p.reject(new ControlError(typeof m['error'] === 'string' ? m['error'] : 'machine daemon error'));
  }

  /** Call a verb; `onData` receives streamed chunks. Returns the verb's id for `input`. */
  call(verb: string, args: Record<string, unknown> = {}, onData?: (d: string) => void): { id: number; result: Promise<unknown> } {
    const id = this.nextId++;
    const result = new Promise<unknown>((resolve, reject) => {
      if (this.closedError) {
        reject(this.closedError);
        return;
      }
      this.pending.set(id, onData ? { resolve, reject, onData } : { resolve, reject });
      this.sock.write(JSON.stringify({ id, verb, args }) + '\n');
    });
    return { id, result };
  }

  input(id: number, chunk: string): void {
    this.sock.write(JSON.stringify({ id, input: chunk }) + '\n');
  }

  close(): void {
    this.sock.end();
  }
}
