// TRAINING_NAME (issue 23): what one controller calls its own. The default keeps every name of earlier
// versions, so an upgrade keeps following the Jobs it created; another name changes every one of them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig, ConfigError } from '../../src/core/config.js';
import {
  baseName,
  DEFAULT_INSTANCE,
  instanceNamed,
  jobName,
  nameOfJob,
  ownsJobName,
  TRAINING_NAME_MAX,
} from '../../src/core/instance.js';
import { dispatchLock, LOCK_KEYS } from '../../src/db/locks.js';
import { listenApplicationName } from '../../src/db/pool.js';
import { buildJob, defaultTemplate, freeName } from '../../src/kube/jobTemplate.js';

const at = new Date('2026-12-07T04:05:06Z');

describe('TRAINING_NAME', () => {
  it('defaults to sentinel-training: the label, run-id label, finalizer, Job names and lock of earlier versions', () => {
    assert.equal(loadConfig({}).trainingName, 'sentinel-training');
    assert.deepEqual(DEFAULT_INSTANCE, {
      name: 'sentinel-training',
      appLabel: 'app',
      appValue: 'sentinel-training',
      selector: 'app=sentinel-training',
      runIdLabel: 'sentinel-training/run-id',
      jobPrefix: 'sentinel-training-',
      finalizer: 'sentinel-training.io/settle',
    });
    assert.equal(jobName(DEFAULT_INSTANCE, at), 'sentinel-training-20261207-040506');
    assert.equal(dispatchLock('public'), LOCK_KEYS.dispatch);
  });

  it('another name scopes every one of them', () => {
    const ranker = instanceNamed('ranker');
    const job = buildJob(
      defaultTemplate('alpine', 60),
      { name: jobName(ranker, at), namespace: 'ml', runId: 7, annotationCount: 3 },
      ranker,
    );
    assert.equal(job.metadata?.name, 'ranker-20261207-040506');
    assert.deepEqual(job.metadata?.labels, { app: 'ranker', 'ranker/run-id': '7' });
    assert.deepEqual(job.spec?.template.metadata?.labels, { app: 'ranker', 'ranker/run-id': '7' });
    assert.deepEqual(job.metadata?.finalizers, ['ranker.io/settle']);
    assert.equal(baseName(ranker, 'ranker-20261207-040506-2'), 'ranker-20261207-040506');
    assert.ok(ownsJobName(ranker, 'ranker-20261207-040506') && ownsJobName(ranker, 'ranker-20261207-040506-3'));
    assert.ok(!ownsJobName(ranker, 'ranker-v2-20261207-040506'), 'a longer name that starts with ours is not ours');
    assert.ok(!ownsJobName(instanceNamed('sentinel'), 'sentinel-training-20261207-040506'));
    // Another instance's names are not ours to shorten.
    assert.equal(baseName(ranker, 'sentinel-training-20261207-040506-2'), 'sentinel-training-20261207-040506-2');
  });

  it('gives each schema its own dispatch lock, none of them the default one or the migrate lock', () => {
    const keys = ['ranker', 'detector', 'a', 'public2'].map(dispatchLock);
    assert.equal(new Set([...keys, LOCK_KEYS.dispatch, LOCK_KEYS.migrate]).size, keys.length + 2);
    for (const k of keys) assert.ok(k > 0n && k < 2n ** 63n, `${k} fits a bigint`);
    assert.equal(dispatchLock('ranker'), dispatchLock('ranker'), 'the same schema, the same lock, in every process');
  });

  it('the longest name still makes Job names of at most 63 characters with a -99 suffix', () => {
    const longest = instanceNamed('a'.repeat(TRAINING_NAME_MAX));
    const name = freeName(jobName(longest, at), new Set());
    assert.ok(`${name}-99`.length <= 63, `${name}-99`);
  });

  it('refuses a name that cannot label a Job, in one line naming the variable', () => {
    for (const bad of ['Ranker', 'ranker_1', '-ranker', 'a'.repeat(TRAINING_NAME_MAX + 1), 'a.b']) {
      assert.throws(
        () => loadConfig({ TRAINING_NAME: bad }),
        (err: unknown) => err instanceof ConfigError && /^TRAINING_NAME must be a DNS-1123 label/.test(err.message),
        bad,
      );
    }
    assert.equal(loadConfig({ TRAINING_NAME: 'ranker-2' }).trainingName, 'ranker-2');
  });

  it('reads the name back from a Job name of ours, for a schema that never published one', () => {
    assert.equal(nameOfJob('ranker-20261207-040506'), 'ranker');
    assert.equal(nameOfJob('ranker-v2-20261207-040506-3'), 'ranker-v2');
    assert.equal(nameOfJob('sentinel-training-20261207-040506'), 'sentinel-training');
    assert.equal(nameOfJob('my-job'), null);
  });

  // Found by review: two schemas sharing their first 36 characters got one LISTEN application_name, so a
  // service of one refused the uninstall (and a second name) of the other.
  it("names each schema's LISTEN connection apart, in at most 63 characters", () => {
    assert.equal(listenApplicationName('public'), 'training-controller-listen public');
    const eu = listenApplicationName('triage_annotations_production_region_eu_west');
    const us = listenApplicationName('triage_annotations_production_region_us_east');
    assert.notEqual(eu, us);
    for (const n of [eu, us, listenApplicationName('x'.repeat(63))]) assert.ok(n.length <= 63, n);
  });
});
