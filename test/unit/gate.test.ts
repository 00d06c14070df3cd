import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { missedWhilePublishing, needsSettleRecount, NEVER, notifyAt } from '../../src/gate.js';

describe('notification gate', () => {
  it('targets the verification that can first reach the threshold', () => {
    assert.equal(notifyAt({ gateBefore: 1000n, pending: 0, threshold: 50, quiet: false }), 1050n);
    assert.equal(notifyAt({ gateBefore: 1000n, pending: 49, threshold: 50, quiet: false }), 1001n);
  });

  it('goes quiet when the controller will recount on its own', () => {
    assert.equal(notifyAt({ gateBefore: 5n, pending: 50, threshold: 50, quiet: false }), NEVER);
    assert.equal(notifyAt({ gateBefore: 5n, pending: 10, threshold: 50, quiet: true }), NEVER);
  });

  it('asks for a settle recount only for unseen gate numbers with transactions in flight', () => {
    assert.equal(needsSettleRecount(10n, 5n, ['3/17']), true);
    assert.equal(needsSettleRecount(10n, 10n, ['3/17']), false, 'every number up to 10 already settled');
    assert.equal(needsSettleRecount(10n, 5n, []), false);
  });

  it('notices a target the sequence passed while it was being published', () => {
    assert.equal(missedWhilePublishing(1050n, 1049n), false);
    assert.equal(missedWhilePublishing(1050n, 1050n), true);
    assert.equal(missedWhilePublishing(NEVER, 2000n), false);
  });
});
