// Small HTTP helpers the ARM test server's handlers share: body reading and ARM-shaped replies.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ArmError } from './errors.ts';

/** Reads the whole request body first, so that a refusal never races the client's upload. */
export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Headers ARM puts on every answer (request and correlation ids). */
function armHeaders(): Record<string, string> {
  const id = randomUUID();
  return { 'x-ms-request-id': id, 'x-ms-correlation-request-id': id, 'Cache-Control': 'no-cache' };
}

/** Sends a JSON body (or none for 204 and for `undefined`). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (body === undefined || status === 204) {
    res.writeHead(status, { ...armHeaders(), 'Content-Length': '0', ...headers });
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...armHeaders(),
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** Sends an ArmError in ARM's error shape. */
export function sendError(res: ServerResponse, err: ArmError): void {
  sendJson(res, err.status, err.toJSON(), err.headers);
}

/** A request header as one string (the last value when repeated), or undefined. */
export function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[value.length - 1] : value;
}
