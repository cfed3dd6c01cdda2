// FileCompletion: the writer of a file's last chunk, and only it, learns that the file is complete,
// even when a part is fetched and written again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FileCompletion } from '../../../../src/core/restore/file-completion.ts';
import type { PlannedChunk, PlannedFile, PlannedPart } from '../../../../src/core/restore/restore-plan.ts';

const file = (path: string): PlannedFile => ({ path, local: `/d/${path}`, size: 0, mode: 0o600, mtime: new Date(0), sha256: undefined });
const chunk = (id: number, fileIndex: number): PlannedChunk => ({ id, file: fileIndex, fileOffset: 0, partOffset: 0, length: 1, sha256: '' });
const part = (index: number, chunks: PlannedChunk[]): PlannedPart => ({ index, key: `k${index}`, rawSize: chunks.length, storedSize: chunks.length, chunks });

test('a file split over parts completes with its last chunk, whatever the order; empty files are listed', () => {
  const [big0, small, big1, big2] = [chunk(0, 0), chunk(1, 1), chunk(2, 0), chunk(3, 0)] as const;
  const completion = new FileCompletion({ files: [file('big'), file('small'), file('empty')], parts: [part(0, [big0, small]), part(1, [big1]), part(2, [big2])], chunkCount: 4 });
  assert.deepEqual(completion.chunkless, [2]);
  assert.equal(completion.complete, false);
  assert.equal(completion.chunkWritten(big2), false);
  assert.equal(completion.chunkWritten(small), true, 'small has one chunk');
  assert.equal(completion.chunkWritten(small), false, 'a chunk written again (part retried) counts once');
  assert.equal(completion.chunkWritten(big0), false);
  assert.equal(completion.complete, false);
  assert.equal(completion.chunkWritten(big1), true, 'the last of big');
  assert.equal(completion.chunkWritten(big1), false);
  assert.equal(completion.complete, true);
});
