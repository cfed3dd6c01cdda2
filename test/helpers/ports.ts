// A free TCP port on the loopback interface, for servers that tests start (PostgreSQL, s3rver, ...).
import { createServer } from 'node:net';

/** Asks the kernel for an unused port on 127.0.0.1 and releases it. Another process can take it
 *  before the caller binds, so servers started on it should retry on "address in use". */
export async function freePort(): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error(`freePort: unexpected server address ${String(address)}`));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}
