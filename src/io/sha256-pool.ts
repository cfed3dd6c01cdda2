/**
 * SHA-256 on worker threads, reading shared memory: the hashing side of PartWorkers, under the
 * name restore imports it by. See part-workers.ts for why hashing leaves the main thread.
 */
export { PartWorkers as Sha256Pool, hashOnThisThread, sharedBuffer, type HashRange, type RangeHasher } from './part-workers.ts';
