import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newHealth, readiness } from '../../src/core/health.js';

const limits = { recountMaxAgeMs: 60_000, clusterMaxAgeMs: 90_000 };

describe('readiness', () => {
  it('is ready when listening, recently recounted, and the cluster answered', () => {
    const h = newHealth(true);
    Object.assign(h, { listenerConnected: true, lastRecountAt: 1000 });
    h.cluster!.okAt = 1000;
    assert.deepEqual(readiness(h, 2000, limits), { ready: true, reasons: [] });
  });

  it('names every reason it is not ready', () => {
    const h = newHealth(true);
    h.lastRecountAt = 0;
    h.cluster = { okAt: 0, error: 'create Job x: timed out' };
    const r = readiness(h, 100_000, limits);
    assert.equal(r.ready, false);
    assert.deepEqual(r.reasons, [
      'listener not connected to PostgreSQL',
      'last recount 100 s ago',
      'cluster unreachable: create Job x: timed out',
    ]);
  });

  it('does not require a cluster when none is configured', () => {
    const h = newHealth(false);
    Object.assign(h, { listenerConnected: true, lastRecountAt: 1 });
    assert.equal(readiness(h, 2, limits).ready, true);
  });
});
