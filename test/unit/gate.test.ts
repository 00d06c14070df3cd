import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crossedSince, missedWhilePublishing, NEVER, notifyAt } from '../../src/core/gate.js';

describe('notification gate', () => {
  it('targets the verification that can first reach the threshold', () => {
    assert.equal(notifyAt({ gateBefore: 1000n, pending: 0, threshold: 50, quiet: false }), 1050n);
    assert.equal(notifyAt({ gateBefore: 1000n, pending: 49, threshold: 50, quiet: false }), 1001n);
  });

  it('goes quiet when the controller will recount on its own', () => {
    assert.equal(notifyAt({ gateBefore: 5n, pending: 50, threshold: 50, quiet: false }), NEVER);
    assert.equal(notifyAt({ gateBefore: 5n, pending: 10, threshold: 50, quiet: true }), NEVER);
  });

  it('notices a target the sequence passed while it was being published', () => {
    assert.equal(missedWhilePublishing(1050n, 1049n), false);
    assert.equal(missedWhilePublishing(1050n, 1050n), true);
    assert.equal(missedWhilePublishing(NEVER, 2000n), false);
  });

  it('the gate watch recounts once per crossing, as the trigger would notify, and never on a quiet gate', () => {
    assert.equal(crossedSince(null, 1050n, 1050n), true, 'the first look at a crossed gate');
    assert.equal(crossedSince(1049n, 1050n, 1050n), true, 'the verification that reached the target');
    assert.equal(crossedSince(1050n, 1050n, 1050n), false, 'no verification since the last look');
    assert.equal(crossedSince(1040n, 1049n, 1050n), false, 'below the target');
    assert.equal(crossedSince(1050n, 1051n, 1050n), true, 'past the target: every new one, as the trigger does');
    assert.equal(crossedSince(null, 2000n, NEVER), false, 'the controller needs no hint');
  });
});
