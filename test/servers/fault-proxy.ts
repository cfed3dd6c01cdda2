/**
 * A fault-injecting HTTP proxy for tests: it sits on 127.0.0.1 between cloudbarman and a store
 * server (s3rver, azurite, the GCS test server) and, under a seeded schedule, answers a share of
 * the requests with what real object stores and networks do to clients: 500 and 503 answers, S3's
 * SlowDown (with a Retry-After when asked), a connection reset while the client uploads or while
 * it downloads, a response that stalls, and a body cut short of its Content-Length. Every other request passes through unchanged
 * (the Host header included, so that signatures still verify).
 *
 * Some faults are injected before the request reaches the server (nothing was applied), others
 * after the server answered (the request was applied, the client cannot know): that is the case
 * a retry policy must get right for create-if-absent writes.
 */
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** What the proxy can do to one request. */
export type FaultKind =
  /** 500 InternalError, before the server sees the request, or (half the time) after it applied it. */
  | 'error-500'
  /** 503 ServiceUnavailable (Azure: ServerBusy), before the server sees the request. */
  | 'error-503'
  /** 503 SlowDown with S3's XML body, before the server sees the request. */
  | 'slow-down'
  /** Reads part of the request body, then resets the connection; the server never sees the request. */
  | 'reset-request'
  /** Forwards, then resets the connection after part of the response body (before the headers when it has none). */
  | 'reset-response'
  /** Forwards, then holds the response (before the headers or after part of the body) until the client gives up. */
  | 'stall'
  /** Forwards, then sends fewer body bytes than the Content-Length and closes the connection cleanly. */
  | 'truncate';

/** Every fault kind, in the order the schedule indexes them. */
export const FAULT_KINDS: readonly FaultKind[] = ['error-500', 'error-503', 'slow-down', 'reset-request', 'reset-response', 'stall', 'truncate'];

/** The error body dialect of the server behind the proxy. */
export type ProxyFlavor = 's3' | 'azure' | 'gcs';

/** The schedule's verdict for one request. */
export interface FaultDecision {
  /** 0-based position of the request in arrival order. */
  seq: number;
  /** undefined: the request passes. */
  kind: FaultKind | undefined;
  /** Where in the body (request or response, by kind) the fault strikes, as a fraction in [0, 1). */
  at: number;
  /** For error-500: the request is forwarded and applied before the error is sent. */
  afterUpstream: boolean;
}

/**
 * mulberry32: a small, fast, well-mixed 32-bit PRNG. Reproducible across platforms, which is all a
 * test schedule needs.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The seeded schedule: the n-th request gets the same verdict for the same seed, rate and kinds.
 * Each verdict draws exactly four numbers, so changing the rate or the kinds never shifts the
 * draws of later requests.
 */
export class FaultSchedule {
  #random: () => number;
  #seq = 0;
  #rate: number;
  readonly #kinds: readonly FaultKind[];

  constructor(options: { seed: number; rate: number; kinds?: readonly FaultKind[] }) {
    this.#random = seededRandom(options.seed);
    this.#rate = checkRate(options.rate);
    this.#kinds = options.kinds ?? FAULT_KINDS;
    if (this.#kinds.length === 0) throw new Error('FaultSchedule: kinds must not be empty');
  }

  /** The share of requests that get a fault, 0..1. */
  get rate(): number {
    return this.#rate;
  }

  set rate(rate: number) {
    this.#rate = checkRate(rate);
  }

  /** The verdict for the next request. */
  next(): FaultDecision {
    const hit = this.#random();
    const pick = this.#random();
    const at = this.#random();
    const after = this.#random();
    const kind = hit < this.#rate ? this.#kinds[Math.min(this.#kinds.length - 1, Math.floor(pick * this.#kinds.length))] : undefined;
    return { seq: this.#seq++, kind, at, afterUpstream: kind === 'error-500' && after < 0.5 };
  }
}

function checkRate(rate: number): number {
  if (!(rate >= 0 && rate <= 1)) throw new Error(`fault rate ${rate} is not in 0..1`);
  return rate;
}

/** One fault the proxy injected, for assertions and failure messages. */
export interface InjectedFault {
  seq: number;
  kind: FaultKind;
  method: string;
  /** The request path with its query. */
  path: string;
  /** The server applied the request before the fault (the client cannot tell). */
  afterUpstream: boolean;
  /** Body bytes the client received (response faults) or sent (reset-request) before the fault. */
  bytes: number;
}

/** How to start a proxy: where it forwards, and the schedule of its faults. */
export interface FaultProxyOptions {
  /** The server to forward to, e.g. http://127.0.0.1:PORT (s3rver's endpoint). */
  target: string;
  seed: number;
  /** Share of requests that get a fault, 0..1; changeable later with setRate. */
  rate: number;
  /** The faults to choose from; all by default. */
  kinds?: readonly FaultKind[];
  /** Error bodies in this server's dialect; s3 by default. */
  flavor?: ProxyFlavor;
  /** Longest a stalled response is held when the client never gives up; 30 s by default. */
  stallCapMs?: number;
  /**
   * Headers added to the 503 and SlowDown answers, to say when to come back: `{ 'retry-after': '3' }`,
   * an HTTP date, or Azure's `{ 'x-ms-retry-after-ms': '2500' }`. A function is called per answer
   * (for a date relative to now). None by default: the stores behind the proxy send none either.
   */
  throttleHeaders?: OutgoingHttpHeaders | (() => OutgoingHttpHeaders);
}

/** A running proxy. */
export interface FaultProxyHandle {
  /** Where clients connect instead of the target: http://127.0.0.1:PORT. */
  endpoint: string;
  /** Faults injected so far, in order. */
  readonly faults: readonly InjectedFault[];
  /** Requests seen so far, faulted or not. */
  readonly requests: number;
  /** Changes the fault rate for the requests that follow. */
  setRate(rate: number): void;
  /**
   * Changes the fault rate once a request matching pattern (tested against "METHOD /path?query")
   * has been seen: from the request after it on. Lets a test fail a command at a chosen step.
   */
  switchRateAfter(pattern: RegExp, rate: number): void;
  /** Stops listening, ends every connection and stalled response. Safe to call twice. */
  stop(): Promise<void>;
}

/** Headers that describe one hop, not the message: never copied from one connection to another. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect']);

/** Starts the proxy on a free port of 127.0.0.1. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxyHandle> {
  const target = new URL(options.target);
  if (target.protocol !== 'http:') throw new Error(`fault proxy: only http targets are supported, not ${target.protocol}`);
  const schedule = new FaultSchedule({ seed: options.seed, rate: options.rate, ...(options.kinds === undefined ? {} : { kinds: options.kinds }) });
  const flavor = options.flavor ?? 's3';
  const stallCapMs = options.stallCapMs ?? 30_000;
  const faults: InjectedFault[] = [];
  const sockets = new Set<Socket>();
  const stalls = new Set<NodeJS.Timeout>();
  const upstreamAgent = new Agent({ keepAlive: true, maxSockets: 64 });
  let requests = 0;
  let endpoint = '';
  let trigger: { pattern: RegExp; rate: number } | undefined;

  const record = (decision: FaultDecision, kind: FaultKind, req: IncomingMessage, bytes: number): void => {
    faults.push({ seq: decision.seq, kind, method: req.method ?? '', path: req.url ?? '', afterUpstream: decision.afterUpstream, bytes });
  };

  /** Sends req to the target (with `body` when it was read already, else streaming it); resolves with the answer. */
  const forward = (req: IncomingMessage, body: Buffer | undefined): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      const headers = copyHeaders(req.headers);
      if (body !== undefined) headers['content-length'] = String(body.length);
      const upstream = httpRequest({
        host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent: upstreamAgent,
      }, resolve);
      upstream.once('error', reject);
      if (body !== undefined) upstream.end(body);
      else req.pipe(upstream);
      // The client went away mid-upload: the server must not get a half request as if it were whole.
      req.once('close', () => {
        if (!req.complete) upstream.destroy();
      });
    });

  /** Response headers for the client: the server's, with its Location pointing back at the proxy. */
  const responseHeaders = (res: IncomingMessage, length: number | undefined): OutgoingHttpHeaders => {
    const headers = copyHeaders(res.headers);
    const location = headers['location'];
    if (typeof location === 'string' && location.startsWith(target.origin)) headers['location'] = endpoint + location.slice(target.origin.length);
    if (length !== undefined) headers['content-length'] = String(length);
    return headers;
  };

  const pass = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const up = await forward(req, undefined);
    // Without a Content-Length the server streams, and Node frames the body as chunked for the client.
    res.writeHead(up.statusCode ?? 502, responseHeaders(up, undefined));
    up.pipe(res);
    res.once('close', () => up.destroy());
  };

  const inject = async (decision: FaultDecision, kind: FaultKind, req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const socket = req.socket;
    switch (kind) {
      case 'error-500':
      case 'error-503':
      case 'slow-down': {
        const sent = await readAll(req);
        if (decision.afterUpstream) {
          const up = await forward(req, sent);
          await readAll(up);
        }
        record(decision, kind, req, 0);
        const extra = kind === 'error-500' ? {} : typeof options.throttleHeaders === 'function' ? options.throttleHeaders() : (options.throttleHeaders ?? {});
        sendError(res, req, flavor, kind, decision.seq, extra);
        return;
      }
      case 'reset-request': {
        const declared = Number(req.headers['content-length'] ?? 0);
        const limit = Math.floor(decision.at * declared);
        let seen = 0;
        const reset = (): void => {
          req.removeAllListeners('data');
          record(decision, kind, req, seen);
          socket.resetAndDestroy();
        };
        if (limit === 0 || req.complete) {
          reset();
          return;
        }
        req.on('data', (chunk: Buffer) => {
          seen += chunk.length;
          if (seen >= limit) reset();
        });
        req.once('end', () => {
          if (!socket.destroyed) reset();
        });
        return;
      }
      case 'reset-response':
      case 'stall':
      case 'truncate': {
        const up = await forward(req, await readAll(req));
        const body = hasNoBody(req, up) ? Buffer.alloc(0) : await readAll(up);
        const status = up.statusCode ?? 502;
        // A response without a body can only be broken before its headers (or held before them).
        const cut = body.length === 0 ? -1 : Math.floor(decision.at * body.length);
        const headersThenPart = (then: () => void): void => {
          if (cut < 0) {
            then();
            return;
          }
          res.writeHead(status, responseHeaders(up, body.length));
          res.flushHeaders();
          if (cut === 0) then();
          else res.write(body.subarray(0, cut), () => then());
        };
        if (kind === 'stall') {
          record(decision, kind, req, Math.max(0, cut));
          headersThenPart(() => {
            const timer = setTimeout(() => {
              stalls.delete(timer);
              socket.destroy();
            }, stallCapMs);
            stalls.add(timer);
            socket.once('close', () => {
              clearTimeout(timer);
              stalls.delete(timer);
            });
          });
          return;
        }
        if (kind === 'truncate' && cut >= 0) {
          record(decision, kind, req, cut);
          // A clean FIN after too few bytes: only the length tells the client something is missing.
          headersThenPart(() => socket.end());
          return;
        }
        record(decision, 'reset-response', req, Math.max(0, cut));
        headersThenPart(() => socket.resetAndDestroy());
        return;
      }
    }
  };

  const server = createServer((req, res) => {
    requests++;
    const decision = schedule.next();
    if (trigger !== undefined && trigger.pattern.test(`${req.method ?? ''} ${req.url ?? ''}`)) {
      schedule.rate = trigger.rate;
      trigger = undefined;
    }
    const handled = decision.kind === undefined ? pass(req, res) : inject(decision, decision.kind, req, res);
    handled.catch(() => {
      // The target failed or the client went away: a gateway error, or nothing when no one listens.
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' });
        res.end('fault proxy: the target did not answer');
      } else {
        req.socket.destroy();
      }
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // A client that resets its own connection (our resets make it do so, too) is no error of ours.
  server.on('clientError', (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error(`fault proxy: unexpected address ${String(address)}`);
  endpoint = `http://127.0.0.1:${address.port}`;

  let stopped: Promise<void> | undefined;
  return {
    endpoint,
    faults,
    get requests() {
      return requests;
    },
    setRate(rate: number): void {
      schedule.rate = rate;
    },
    switchRateAfter(pattern: RegExp, rate: number): void {
      checkRate(rate);
      trigger = { pattern, rate };
    },
    stop: () =>
      (stopped ??= new Promise<void>((resolve) => {
        for (const timer of stalls) clearTimeout(timer);
        stalls.clear();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
        upstreamAgent.destroy();
      })),
  };
}

/** The end-to-end headers of a message, for the next hop. */
function copyHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

/** True when the response carries no body by definition (HEAD, 204, 304). */
function hasNoBody(req: IncomingMessage, res: IncomingMessage): boolean {
  return req.method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304;
}

/** A message's whole body. */
async function readAll(message: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of message) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The error answer of a fault, in the dialect of the server behind the proxy. */
function sendError(
  res: ServerResponse,
  req: IncomingMessage,
  flavor: ProxyFlavor,
  kind: 'error-500' | 'error-503' | 'slow-down',
  seq: number,
  extraHeaders: OutgoingHttpHeaders,
): void {
  const status = kind === 'error-500' ? 500 : 503;
  const code = kind === 'slow-down' ? 'SlowDown' : kind === 'error-500' ? 'InternalError' : flavor === 'azure' ? 'ServerBusy' : 'ServiceUnavailable';
  const message = kind === 'slow-down' ? 'Please reduce your request rate.' : 'We encountered an internal error. Please try again.';
  const headers: OutgoingHttpHeaders = { ...extraHeaders };
  let body: string;
  if (flavor === 'gcs') {
    headers['content-type'] = 'application/json; charset=UTF-8';
    body = JSON.stringify({ error: { code: status, message, errors: [{ message, domain: 'global', reason: kind === 'error-500' ? 'backendError' : 'rateLimitExceeded' }] } });
  } else {
    headers['content-type'] = 'application/xml';
    if (flavor === 'azure') headers['x-ms-error-code'] = code;
    body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-${seq}</RequestId></Error>`;
  }
  if (req.method === 'HEAD') {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  headers['content-length'] = String(Buffer.byteLength(body));
  res.writeHead(status, headers);
  res.end(body);
}
