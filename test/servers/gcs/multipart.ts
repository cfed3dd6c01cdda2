// The body of an `uploadType=multipart` insert: multipart/related with a JSON metadata part and a
// media part. Reference: https://cloud.google.com/storage/docs/uploading-objects#uploading-an-object
// (multipart upload) and RFC 2387.
import { invalid } from './errors.ts';

/** One part of a multipart/related body. */
export interface MultipartPart {
  headers: Map<string, string>;
  body: Buffer;
}

/** Splits a multipart/related body into its two parts, metadata first; anything else is a 400. */
export function parseMultipartRelated(contentType: string | undefined, body: Buffer): { metadata: MultipartPart; media: MultipartPart } {
  if (contentType === undefined || !/^multipart\/related\s*;/i.test(contentType)) {
    throw invalid(`Invalid multipart request: Content-Type must be multipart/related, got '${contentType ?? ''}'.`);
  }
  const boundaryMatch = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = boundaryMatch?.[1] ?? boundaryMatch?.[2];
  if (boundary === undefined) throw invalid('Invalid multipart request: no boundary in Content-Type.');
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: MultipartPart[] = [];
  let pos = body.indexOf(delimiter);
  if (pos === -1) throw invalid('Invalid multipart request: boundary not found in the body.');
  for (;;) {
    pos += delimiter.length;
    // "--" right after a delimiter closes the body; whatever follows is epilogue.
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) break;
    if (body[pos] !== 0x0d || body[pos + 1] !== 0x0a) throw invalid('Invalid multipart request: delimiter not followed by CRLF.');
    pos += 2;
    const headerEnd = body.indexOf('\r\n\r\n', pos);
    if (headerEnd === -1) throw invalid('Invalid multipart request: part headers do not end.');
    const headers = new Map<string, string>();
    for (const line of body.subarray(pos, headerEnd).toString('latin1').split('\r\n')) {
      if (line === '') continue;
      const colon = line.indexOf(':');
      if (colon <= 0) throw invalid(`Invalid multipart request: malformed part header '${line}'.`);
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const contentStart = headerEnd + 4;
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), contentStart);
    if (next === -1) throw invalid('Invalid multipart request: closing boundary not found.');
    parts.push({ headers, body: body.subarray(contentStart, next) });
    pos = next + 2;
  }
  const [metadata, media] = parts;
  if (parts.length !== 2 || metadata === undefined || media === undefined) {
    throw invalid(`Invalid multipart request with ${parts.length} parts; expected metadata and media.`);
  }
  const metadataType = metadata.headers.get('content-type') ?? '';
  if (!/^application\/json\s*(;|$)/i.test(metadataType)) {
    throw invalid(`Invalid multipart request: the first part must be application/json, got '${metadataType}'.`);
  }
  return { metadata, media };
}
