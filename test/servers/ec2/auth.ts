// Signature Version 4 for the EC2 test server: the server knows the one access key's secret, so it
// checks the signature in full, not only that a header is present. Reference:
// https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Ec2Error } from './errors.ts';

/** The credentials the server accepts and the scope they must be signed for. */
export interface SigningScope {
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  service: string;
}

/** How far a request's X-Amz-Date may be from the server's clock (the service allows 15 minutes). */
const MAX_SKEW_MS = 15 * 60 * 1000;

/** The wording EC2 uses whenever it cannot validate credentials. */
const NOT_VALIDATED = 'AWS was not able to validate the provided access credentials';

/** sha256 as lower-case hex. */
export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** RFC 3986 encoding, as SigV4 canonicalises query strings. */
function encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The canonical request SigV4 hashes: method, path, sorted query, signed headers and the payload hash. */
export function canonicalRequest(
  method: string,
  url: string,
  headers: Readonly<Record<string, string | readonly string[] | undefined>>,
  signedHeaders: readonly string[],
  payloadHash: string,
): string {
  const [path = '/', query = ''] = url.split('?', 2);
  const canonicalQuery = [...new URLSearchParams(query)]
    .map(([k, v]) => [encodeRfc3986(k), encodeRfc3986(v)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalHeaders = signedHeaders
    .map((name) => {
      const raw = headers[name];
      const value = Array.isArray(raw) ? raw.join(',') : String(raw ?? '');
      return `${name}:${value.trim().replace(/\s+/g, ' ')}\n`;
    })
    .join('');
  return [method, path === '' ? '/' : path, canonicalQuery, canonicalHeaders, signedHeaders.join(';'), payloadHash].join('\n');
}

/** The signature over a canonical request for a credential scope `date/region/service/aws4_request`. */
export function signature(secretAccessKey: string, amzDate: string, scope: string, canonical: string): string {
  const [date = '', region = '', service = ''] = scope.split('/');
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonical)].join('\n');
  let key: Buffer = createHmac('sha256', `AWS4${secretAccessKey}`).update(date).digest();
  for (const part of [region, service, 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  return createHmac('sha256', key).update(stringToSign).digest('hex');
}

/** The X-Amz-Date form of a time: 20240101T000000Z. */
export function amzDate(time: Date): string {
  return time.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/**
 * Throws the service's error unless the request carries a valid SigV4 Authorization header for
 * the scope: 403 MissingAuthenticationToken without one, 400 IncompleteSignature when it cannot be
 * parsed, 400 RequestExpired for a stale date, 401 AuthFailure for an unknown key, a wrong region
 * or service, or a wrong signature.
 */
export function verifySignature(
  scope: SigningScope,
  request: { method: string; url: string; headers: IncomingHttpHeaders; body: Buffer },
  now: Date = new Date(),
): void {
  const header = request.headers.authorization;
  if (header === undefined || header === '') {
    throw new Ec2Error(403, 'MissingAuthenticationToken', 'The request must contain valid credentials.');
  }
  const match = /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(header.trim());
  const credential = match?.[1]?.split('/');
  if (match === null || credential === undefined || credential.length !== 5 || credential[4] !== 'aws4_request') {
    throw new Ec2Error(400, 'IncompleteSignature', `Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters: ${header.split(' ')[0] ?? ''}`);
  }
  const [keyId, date, region, service] = credential as [string, string, string, string, string];
  const signedHeaders = (match[2] ?? '').split(';');
  const requestDate = request.headers['x-amz-date'];
  if (typeof requestDate !== 'string' || !/^\d{8}T\d{6}Z$/.test(requestDate) || !signedHeaders.includes('x-amz-date') || !signedHeaders.includes('host')) {
    throw new Ec2Error(400, 'IncompleteSignature', 'The request must sign the host and x-amz-date headers.');
  }
  const time = Date.parse(`${requestDate.slice(0, 4)}-${requestDate.slice(4, 6)}-${requestDate.slice(6, 8)}T${requestDate.slice(9, 11)}:${requestDate.slice(11, 13)}:${requestDate.slice(13, 15)}Z`);
  if (!Number.isFinite(time) || Math.abs(time - now.getTime()) > MAX_SKEW_MS) {
    throw new Ec2Error(400, 'RequestExpired', `Request has expired. Timestamp date is ${requestDate}`);
  }
  if (keyId !== scope.accessKeyId) throw new Ec2Error(401, 'AuthFailure', NOT_VALIDATED);
  if (region !== scope.region) throw new Ec2Error(401, 'AuthFailure', `Credential should be scoped to a valid region. `);
  if (service !== scope.service || date !== requestDate.slice(0, 8)) throw new Ec2Error(401, 'AuthFailure', 'Credential should be scoped to correct service and date.');
  const payloadHash = sha256Hex(request.body);
  const claimed = request.headers['x-amz-content-sha256'];
  if (claimed !== undefined && claimed !== payloadHash) throw new Ec2Error(401, 'AuthFailure', NOT_VALIDATED);
  const canonical = canonicalRequest(request.method, request.url, request.headers, signedHeaders, payloadHash);
  const expected = Buffer.from(signature(scope.secretAccessKey, requestDate, credential.slice(1).join('/'), canonical), 'hex');
  const given = Buffer.from(match[3] ?? '', 'hex');
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw new Ec2Error(401, 'AuthFailure', NOT_VALIDATED);
}

/**
 * Signs a raw request the way an SDK would (tests use it to send what the SDK never sends):
 * returns the headers to add, Authorization included.
 */
export function signRequest(
  scope: SigningScope,
  request: { method: string; url: string; host: string; contentType: string; body: string },
  now: Date = new Date(),
): Record<string, string> {
  const date = amzDate(now);
  const headers: Record<string, string> = {
    'content-type': request.contentType,
    host: request.host,
    'x-amz-date': date,
  };
  const signedHeaders = Object.keys(headers).sort();
  const credentialScope = `${date.slice(0, 8)}/${scope.region}/${scope.service}/aws4_request`;
  const canonical = canonicalRequest(request.method, request.url, headers, signedHeaders, sha256Hex(request.body));
  const sig = signature(scope.secretAccessKey, date, credentialScope, canonical);
  return {
    ...headers,
    authorization: `AWS4-HMAC-SHA256 Credential=${scope.accessKeyId}/${credentialScope}, SignedHeaders=${signedHeaders.join(';')}, Signature=${sig}`,
  };
}
