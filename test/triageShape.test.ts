// The Triage API's database is not shaped like ours (issue #9, cases 1–4): its writers run with any
// search_path and the least privilege, its `verified` may be NULL, its table may live in another schema, and
// the controller's role may lack a grant. The trigger must never fail their write, and the loop must never go
// quiet with work pending.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { createLogger } from '../src/core/logger.js';
import { migrate } from '../src/db/migrate.js';
import { tables } from '../src/db/tables.js';
import { RECOUNTED } from '../src/loop/recountStep.js';
import { runCli } from './support/child.js';
import { freshDatabase, type TestDb } from './support/db.js';
import { FakeKube } from './support/fakeKube.js';
import { createRole } from './support/roles.js';
import { eventually, killListener, startController, type Running } from './support/harness.js';

const jobsCreated = (kube: FakeKube) => kube.creates.length;

describe("the Triage API's database, shaped its own way", () => {
  let db: TestDb;
  let kube: FakeKube;
  let c: Running | null = null;
  const cleanups: (() => Promise<void>)[] = [];

  beforeEach(async () => {
    kube = await FakeKube.start();
  });
  afterEach(async () => {
    await c?.stop();
    c = null;
    for (const fn of cleanups.splice(0).reverse()) await fn();
    await kube.stop();
    await db.drop();
  });

  for (const searchPath of ['other', "''"]) {
    it(`a least-privilege writer whose search_path is ${searchPath} verifies without error, and the crossing trains`, async () => {
      db = await freshDatabase();
      await db.pool.query('CREATE SCHEMA other');
      const writer = await createRole(db, (r) => [
        `GRANT USAGE ON SCHEMA other TO ${r}`,
        `GRANT SELECT (id), UPDATE (verified) ON annotations TO ${r}`,
        `ALTER ROLE ${r} SET search_path = ${searchPath}`,
      ]);
      cleanups.push(writer.drop);
      await db.pool.query('INSERT INTO annotations (verified) SELECT false FROM generate_series(1, 50)');
      c = await startController(db.url, kube, { POLL_INTERVAL_SECONDS: '0' });
      const triage = new pg.Client({ connectionString: writer.url });
      await triage.connect();
      try {
        assert.equal(
          (await triage.query('SHOW search_path')).rows[0].search_path,
          searchPath === "''" ? '""' : searchPath,
        );
        // Their statements name the table qualified, as a client with such a search_path must.
        for (let id = 1; id <= 50; id++)
          await triage.query('UPDATE public.annotations SET verified = true WHERE id = $1', [id]);
      } finally {
        await triage.end();
      }
      await eventually(
        () => jobsCreated(kube) === 1,
        'the Job for the 50th verification (poll off: the trigger notified)',
      );
    });
  }

  it('a writer through a view in its own schema, with no privilege on ours (PostgREST-style), verifies and trains', async () => {
    db = await freshDatabase();
    await db.pool.query('CREATE SCHEMA api');
    await db.pool.query('CREATE VIEW api.annotations AS SELECT id, label, verified FROM public.annotations');
    // A locked-down database: nothing for PUBLIC in public, not even our sequences.
    await db.pool.query('REVOKE ALL ON SCHEMA public FROM PUBLIC');
    await db.pool.query('REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC');
    const writer = await createRole(db, (r) => [
      `GRANT USAGE ON SCHEMA api TO ${r}`,
      `GRANT SELECT, UPDATE ON api.annotations TO ${r}`,
      `ALTER ROLE ${r} SET search_path = api`,
    ]);
    cleanups.push(writer.drop);
    await db.pool.query('INSERT INTO annotations (verified) SELECT false FROM generate_series(1, 50)');
    c = await startController(db.url, kube, { POLL_INTERVAL_SECONDS: '0' });
    const triage = new pg.Client({ connectionString: writer.url });
    await triage.connect();
    try {
      for (let id = 1; id <= 50; id++) await triage.query('UPDATE annotations SET verified = true WHERE id = $1', [id]);
    } finally {
      await triage.end();
    }
    await eventually(() => jobsCreated(kube) === 1, 'the Job for the 50th verification through the view');
  });

  it('a nullable verified column: NULL -> true notifies, and 55 pending train at once, not at the poll', async () => {
    db = await freshDatabase(undefined, { migrate: false });
    // The Triage API's table, created before our migrations: NULL means "not yet reviewed".
    await db.pool.query(
      'CREATE TABLE annotations (id bigserial PRIMARY KEY, image_uri text NOT NULL, verified boolean)',
    );
    await migrate(db.pool, createLogger('silent'), tables('public'));
    await db.pool.query("INSERT INTO annotations (image_uri) SELECT 's3://img/' || g FROM generate_series(1, 55) g");
    c = await startController(db.url, kube, { POLL_INTERVAL_SECONDS: '0' });
    await db.pool.query('UPDATE annotations SET verified = true WHERE verified IS NULL');
    await eventually(() => jobsCreated(kube) === 1, 'the Job for 55 verified from NULL');
    assert.equal((await db.pool.query('SELECT annotation_count FROM training_runs')).rows[0].annotation_count, 55);
  });

  it('annotations in another schema: everything lands there, a decoy `annotations` first on the search_path is ignored', async () => {
    db = await freshDatabase(undefined, { migrate: false });
    await db.pool.query('CREATE SCHEMA triage');
    await db.pool.query(
      'CREATE TABLE triage.annotations (id bigserial PRIMARY KEY, verified boolean NOT NULL DEFAULT false)',
    );
    // Every session of this database resolves `annotations` to an empty decoy first.
    await db.pool.query('CREATE SCHEMA decoy');
    await db.pool.query(
      'CREATE TABLE decoy.annotations (id bigserial PRIMARY KEY, verified boolean NOT NULL DEFAULT false)',
    );
    await db.pool.query(`ALTER DATABASE ${db.name} SET search_path = decoy, public`);
    const migrated = await runCli(['migrate'], { DATABASE_URL: db.url, ANNOTATIONS_SCHEMA: 'triage' });
    assert.match(migrated.stdout, /Applied \d+ migration/);
    const objects = await db.pool.query(
      "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname IN ('training_runs', 'training_controller_verified_seq', 'annotations_pending') ORDER BY 2",
    );
    assert.deepEqual(
      objects.rows.map((r) => `${r.nspname}.${r.relname}`),
      ['triage.annotations_pending', 'triage.training_controller_verified_seq', 'triage.training_runs'],
    );

    c = await startController(db.url, kube, { ANNOTATIONS_SCHEMA: 'triage', POLL_INTERVAL_SECONDS: '0' });
    const triage = new pg.Client({ connectionString: db.url });
    await triage.connect();
    try {
      await triage.query('INSERT INTO triage.annotations (verified) SELECT true FROM generate_series(1, 61)');
    } finally {
      await triage.end();
    }
    await eventually(() => jobsCreated(kube) === 1, 'a Job for the 61 in triage.annotations');
    const claimed = await db.pool.query(
      'SELECT count(*)::int AS n FROM triage.annotations WHERE training_run_id IS NOT NULL',
    );
    assert.equal(claimed.rows[0].n, 61);
  });

  it('migrate never creates an annotations table that would shadow the real one in another schema', async () => {
    db = await freshDatabase(undefined, { migrate: false });
    await db.pool.query('CREATE SCHEMA triage');
    await db.pool.query(
      'CREATE TABLE triage.annotations (id bigserial PRIMARY KEY, verified boolean NOT NULL DEFAULT false)',
    );
    const r = await runCli(['migrate'], { DATABASE_URL: db.url });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /annotations is in schema triage, not in schema public: set ANNOTATIONS_SCHEMA/);
    assert.equal((await db.pool.query("SELECT to_regclass('public.annotations') AS t")).rows[0].t, null);
  });

  it('a controller role that can read but not write: run exits 1 naming every missing privilege', async () => {
    db = await freshDatabase();
    const reader = await createRole(db, (r) => [
      `GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${r}`,
      `GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO ${r}`,
    ]);
    cleanups.push(reader.drop);
    const r = await runCli(
      ['run'],
      { DATABASE_URL: reader.url, KUBECONFIG: kube.kubeconfigPath, HTTP_PORT: '0' },
      20_000,
    );
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(
      r.stderr,
      /lacks privileges the service needs: UPDATE \(used_for_training, training_run_id\) on "public".annotations; SELECT, INSERT, UPDATE on "public".training_runs; SELECT, UPDATE on "public".training_control; USAGE on sequence public.training_runs_id_seq; UPDATE on sequence "public".training_controller_notify_at_seq/,
    );
  });

  it('a grant revoked while running: the failing gate publish stays on /readyz until the grant is back', async () => {
    db = await freshDatabase();
    const t = tables('public');
    const ctl = await createRole(db, (r) => [
      `GRANT SELECT, UPDATE (used_for_training, training_run_id) ON annotations TO ${r}`,
      `GRANT SELECT, INSERT, UPDATE ON training_runs TO ${r}`,
      `GRANT SELECT, UPDATE ON training_control TO ${r}`,
      `GRANT USAGE ON SEQUENCE training_runs_id_seq TO ${r}`,
      `GRANT SELECT ON SEQUENCE ${t.verifiedSeq} TO ${r}`,
      `GRANT SELECT, UPDATE ON SEQUENCE ${t.notifyAtSeq} TO ${r}`,
    ]);
    cleanups.push(ctl.drop);
    c = await startController(ctl.url, kube, { POLL_INTERVAL_SECONDS: '0' });
    assert.deepEqual(c.service.health.failing, {});
    await db.pool.query(`REVOKE UPDATE ON SEQUENCE ${t.notifyAtSeq} FROM ${ctl.name}`);
    // A recount now (the LISTEN reconnect recounts): the count works, publishing the gate does not.
    await killListener(db.pool);
    await eventually(() => c!.service.health.failing.gate, 'the gate failure on /readyz');
    assert.match(c.service.health.failing.gate ?? '', /permission denied/);
    assert.equal(c.service.health.failing.recount, undefined, 'the recount itself works');
    // Two more recounts (the gate's retries) succeed meanwhile: the failure must stay.
    for (let i = 0; i < 2; i++) await c.logs.waitForMsg(RECOUNTED, 10_000, c.logs.lines.length);
    assert.match(c.service.health.failing.gate ?? '', /permission denied/);
    await db.pool.query(`GRANT UPDATE ON SEQUENCE ${t.notifyAtSeq} TO ${ctl.name}`);
    await eventually(() => c!.service.health.failing.gate === undefined, 'the retry to clear it', 15_000);
  });
});
