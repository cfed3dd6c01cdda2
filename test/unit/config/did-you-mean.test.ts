import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { closestMatch, editDistance } from '../../../src/config/did-you-mean.ts';

describe('editDistance', () => {
  it('counts insertions, deletions and substitutions', () => {
    assert.equal(editDistance('compresion', 'compression'), 1);
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('same', 'same'), 0);
  });
});

describe('closestMatch', () => {
  const names = ['compression', 'backup_compression', 'destination', 'slot_name'];

  it('suggests a near miss, case-insensitively', () => {
    assert.equal(closestMatch('compresion', names), 'compression');
    assert.equal(closestMatch('DESTINATON', names), 'destination');
    assert.equal(closestMatch('backup_compresion', names), 'backup_compression');
  });

  it('suggests nothing for a word far from every candidate', () => {
    assert.equal(closestMatch('ssh_command', names), undefined);
    assert.equal(closestMatch('x', []), undefined);
  });
});
