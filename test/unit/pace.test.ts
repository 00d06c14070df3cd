import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COMMIT_TARGET_MS, MAX_PAUSE_MS, MIN_CHUNK_ROWS, Pace } from '../../src/core/pace.js';

describe('the pace of bulk writes', () => {
  it('starts at CHUNK_ROWS and stays there while commits are fast', () => {
    const p = new Pace(2000);
    assert.equal(p.rows, 2000);
    assert.equal(p.committed(3), 3, 'pauses as long as the commit took');
    assert.equal(p.rows, 2000);
  });

  it('halves the chunk after each slow commit, down to MIN_CHUNK_ROWS, and grows back by a quarter', () => {
    const p = new Pace(2000);
    const sizes: number[] = [];
    for (let i = 0; i < 6; i++) {
      p.committed(COMMIT_TARGET_MS + 1);
      sizes.push(p.rows);
    }
    assert.deepEqual(sizes, [1000, 500, 250, 125, MIN_CHUNK_ROWS, MIN_CHUNK_ROWS]);
    p.committed(1);
    assert.equal(p.rows, 125);
    for (let i = 0; i < 20; i++) p.committed(1);
    assert.equal(p.rows, 2000, 'never above CHUNK_ROWS');
  });

  it('keeps its size between half the target and the target', () => {
    const p = new Pace(2000);
    p.committed(COMMIT_TARGET_MS + 5);
    p.committed(COMMIT_TARGET_MS * 0.75);
    assert.equal(p.rows, 1000);
  });

  it('never pauses longer than MAX_PAUSE_MS, and a CHUNK_ROWS below the minimum is kept', () => {
    const p = new Pace(10);
    assert.equal(p.committed(60_000), MAX_PAUSE_MS);
    assert.equal(p.rows, 10);
  });
});
