// XML writing for the EC2 test server. EC2 responses have a fixed convention: `<ActionResponse
// xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">` with `<requestId>` first, lists as `<xxxSet>`
// of `<item>` elements, timestamps in ISO 8601 with milliseconds, booleans as true/false.
// Reference: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Query-Requests.html (responses)
// and the Examples section of each action's page.

/** The EC2 API version this server speaks. */
export const API_VERSION = '2016-11-15';
/** The namespace of its response documents. */
export const XML_NAMESPACE = `http://ec2.amazonaws.com/doc/${API_VERSION}/`;

/** A value written as XML: objects keep their key order, arrays become `<item>` children, undefined is omitted. */
export type XmlValue = string | number | boolean | Date | undefined | readonly XmlValue[] | { readonly [key: string]: XmlValue };

/** Escapes text for element content. */
function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' }[c] ?? ''};`);
}

/** One element and its content. */
export function element(name: string, value: XmlValue): string {
  if (value === undefined) return '';
  if (Array.isArray(value)) {
    const items = (value as readonly XmlValue[]).map((item) => element('item', item)).join('');
    return items === '' ? `<${name}/>` : `<${name}>${items}</${name}>`;
  }
  if (value instanceof Date) return `<${name}>${value.toISOString()}</${name}>`;
  if (typeof value === 'object') {
    const children = Object.entries(value as Record<string, XmlValue>)
      .map(([key, child]) => element(key, child))
      .join('');
    return children === '' ? `<${name}/>` : `<${name}>${children}</${name}>`;
  }
  return `<${name}>${escape(String(value))}</${name}>`;
}

/** A successful response document: `<{action}Response xmlns=...><requestId>...` then the body's fields. */
export function responseDocument(action: string, requestId: string, body: Readonly<Record<string, XmlValue>>): string {
  const fields = Object.entries(body)
    .map(([key, value]) => element(key, value))
    .join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${XML_NAMESPACE}"><requestId>${requestId}</requestId>${fields}</${action}Response>`;
}

/** An error document, exactly the shape of the API reference's "Example error response". */
export function errorDocument(code: string, message: string, requestId: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${escape(code)}</Code>` +
    `<Message>${escape(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`
  );
}

/** Tags as EC2 writes them: a tagSet of key/value items. */
export function tagSet(tags: ReadonlyMap<string, string>): XmlValue {
  return [...tags].map(([key, value]) => ({ key, value }));
}
