// The Triage API's writers, part 2 (issue 21): writers and schemas we had not met. A writer that commits in two
// phases, a `verified` that the Triage API's own trigger derives from another column. The trigger must never
// fail their write, and the crossing must train within seconds, with the poll off (it is only a fallback).
// Row-level security on annotations must never make the controller see less than is pending without saying so.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { runCli, spawnCli } from './support/child.js';
import { invariantViolations, runRows, verifyNew, type TestDb } from './support/db.js';
import { eventually, startController, useEachRun, useOwnServer, type Running } from './support/harness.js';
import { createRole, readmeGrants, type TestRole } from './support/roles.js';

const THRESHOLD = 50;

/** One verification the way an XA/JTA transaction manager commits it: prepare, then commit the prepared one. */
async function verifyInTwoPhases(writer: pg.Client, id: number): Promise<void> {
  await writer.query('BEGIN');
  await writer.query('UPDATE annotations SET verified = true WHERE id = $1', [id]);
  await writer.query(`PREPARE TRANSACTION 'triage-${id}'`);
  await writer.query(`COMMIT PREPARED 'triage-${id}'`);
}

describe('a writer that commits in two phases (PREPARE TRANSACTION, max_prepared_transactions > 0)', () => {
  // Its own server: two-phase commit needs max_prepared_transactions > 0, a setting only a restart changes.
  const s = useOwnServer({ max_prepared_transactions: '10' });

  it('every verification commits, from the very first on a fresh database, and the crossing trains within seconds', async () => {
    const { db, kube } = s;
    await db.pool.query('INSERT INTO annotations (verified) SELECT false FROM generate_series(1, $1)', [THRESHOLD]);
    const writer = new pg.Client({ connectionString: db.url });
    await writer.connect();
    try {
      // Before the service ever ran: the gate is open (notify on every verification) until its first recount.
      await verifyInTwoPhases(writer, 1);
      s.c = await startController(db.url, kube, { POLL_INTERVAL_SECONDS: '0', TRAINING_THRESHOLD: String(THRESHOLD) });
      const crossedAt = Date.now();
      for (let id = 2; id <= THRESHOLD; id++) await verifyInTwoPhases(writer, id);
      await eventually(() => kube.creates.length === 1, 'the Job for the 50th verification', 5_000);
      const seconds = (Date.now() - crossedAt) / 1000;
      assert.ok(seconds < 5, `trained ${seconds} s after the first verification`);
    } finally {
      await writer.end();
    }
    const [run] = await runRows(db.pool);
    assert.equal(run?.annotation_count, THRESHOLD);
    assert.deepEqual(await invariantViolations(db.pool), []);
  });
});

/** The Triage API's own BEFORE trigger: `verified` follows `status`, never written by its statements. */
async function deriveVerifiedFromStatus(db: TestDb): Promise<void> {
  await db.pool.query(`ALTER TABLE annotations ADD COLUMN status text NOT NULL DEFAULT 'new'`);
  await db.pool.query(`CREATE FUNCTION triage_derive_verified() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN NEW.verified := NEW.status = 'approved'; RETURN NEW; END $$`);
  await db.pool.query(`CREATE TRIGGER triage_derive_verified BEFORE INSERT OR UPDATE ON annotations
    FOR EACH ROW EXECUTE FUNCTION triage_derive_verified()`);
}

describe("a verified column derived by the Triage API's own BEFORE trigger", () => {
  const s = useEachRun();

  it('UPDATE … SET status = approved verifies through their trigger, and the crossing trains at once with the poll off', async () => {
    await deriveVerifiedFromStatus(s.db);
    await s.db.pool.query('INSERT INTO annotations (status) SELECT $1 FROM generate_series(1, $2)', ['new', THRESHOLD]);
    s.c = await startController(s.db.url, s.kube, {
      POLL_INTERVAL_SECONDS: '0',
      TRAINING_THRESHOLD: String(THRESHOLD),
    });
    for (let id = 1; id <= THRESHOLD; id++)
      await s.db.pool.query(`UPDATE annotations SET status = 'approved' WHERE id = $1`, [id]);
    await eventually(() => s.kube.creates.length === 1, 'the Job for the 50th approval', 5_000);
    assert.equal((await runRows(s.db.pool))[0]?.annotation_count, THRESHOLD);
  });

  it('an INSERT of an approved row verifies through their trigger too', async () => {
    await deriveVerifiedFromStatus(s.db);
    s.c = await startController(s.db.url, s.kube, {
      POLL_INTERVAL_SECONDS: '0',
      TRAINING_THRESHOLD: String(THRESHOLD),
    });
    await s.db.pool.query('INSERT INTO annotations (status) SELECT $1 FROM generate_series(1, $2)', [
      'approved',
      THRESHOLD,
    ]);
    await eventually(() => s.kube.creates.length === 1, 'the Job for 50 inserted approved rows', 5_000);
  });
});

describe('row-level security on annotations', () => {
  const s = useEachRun();
  let role: TestRole;
  const hideFromOthers = async () => {
    await s.db.pool.query('ALTER TABLE annotations ENABLE ROW LEVEL SECURITY');
    await s.db.pool.query(`CREATE POLICY triage_team ON annotations USING (current_user = 'triage_api')`);
  };
  const metric = async (c: Running, name: string) => {
    const text = await (await fetch(`http://127.0.0.1:${c.service.httpPort}/metrics`)).text();
    return new RegExp(`^${name}(?:\\{training_name="[^"]*"\\})? (\\S+)$`, 'm').exec(text)?.[1];
  };
  beforeEach(async () => {
    role = await createRole(s.db, readmeGrants);
    s.onCleanup(role.drop);
  });

  it('a policy the controller role does not pass: run refuses in one line naming row-level security and the fix', async () => {
    await hideFromOthers();
    await verifyNew(s.db.pool, 60);
    await assert.rejects(startController(role.url, s.kube), (err: Error) => {
      assert.equal(err.message.split('\n').length, 1, err.message);
      assert.match(
        err.message,
        /row-level security on "public".annotations applies to role tc_role_\w+ and no policy shows it every row/,
      );
      assert.match(err.message, /BYPASSRLS/);
      return true;
    });
    // status counts what this role may see, and says why that may be short of what waits.
    const status = await runCli(['status'], { DATABASE_URL: role.url });
    assert.match(status.stdout, /^warning: +row-level security on "public".annotations applies to role/m);
    // baseline refuses: it would mark only the rows a policy shows.
    const baseline = await runCli(['baseline', '--yes'], { DATABASE_URL: role.url });
    assert.notEqual(baseline.code, 0);
    assert.match(baseline.stderr, /row-level security/);
  });

  it('enabled while it runs: /readyz and the ready gauge say so until the role may see every row, then it trains', async () => {
    s.c = await startController(role.url, s.kube, { POLL_INTERVAL_SECONDS: '0' });
    const c = s.c;
    assert.equal(await metric(c, 'training_controller_ready'), '1');
    await hideFromOthers();
    await verifyNew(s.db.pool, 60); // the trigger notifies; the recount must not read "0 pending" and go quiet
    await eventually(() => /row-level security/.test(c.service.health.failing.recount ?? ''), 'the refusal on /readyz');
    assert.equal(await metric(c, 'training_controller_ready'), '0');
    assert.equal(s.kube.creates.length, 0);
    await s.db.pool.query(`ALTER ROLE ${role.name} BYPASSRLS`);
    await eventually(() => s.kube.creates.length === 1, 'the Job once the role bypasses row-level security', 15_000);
    assert.equal((await runRows(s.db.pool))[0]?.annotation_count, 60);
    await eventually(async () => (await metric(c, 'training_controller_ready')) === '1', 'ready again');
  });

  it("a permissive policy that shows the controller's role every row: it trains", async () => {
    await hideFromOthers();
    await s.db.pool.query(`CREATE POLICY controller ON annotations TO ${role.name} USING (true) WITH CHECK (true)`);
    s.c = await startController(role.url, s.kube, { POLL_INTERVAL_SECONDS: '0' });
    await verifyNew(s.db.pool, 60);
    await eventually(() => s.kube.creates.length === 1, 'the Job');
    assert.equal((await runRows(s.db.pool))[0]?.annotation_count, 60);
  });

  it('turned on while a run trains: the settle waits for it instead of recording success with nothing trained', async () => {
    s.c = await startController(role.url, s.kube, { TRAINING_THRESHOLD: '5' });
    const c = s.c;
    await verifyNew(s.db.pool, 5);
    const job = (await eventually(() => s.kube.creates[0], 'the Job'))!;
    await hideFromOthers();
    s.kube.setPhase(job.name, 'complete');
    await eventually(
      () => /row-level security/.test(c.service.health.failing.reconcile ?? ''),
      'the refusal on /readyz',
    );
    assert.equal((await runRows(s.db.pool))[0]?.state, 'running', 'no outcome recorded while rows are hidden');
    await s.db.pool.query(`ALTER ROLE ${role.name} BYPASSRLS`);
    await eventually(async () => (await runRows(s.db.pool))[0]?.state === 'succeeded', 'the settle', 20_000);
    const used = await s.db.pool.query('SELECT count(*)::int AS n FROM annotations WHERE used_for_training');
    assert.equal(used.rows[0].n, 5, 'every annotation of the run marked used');
  });

  it('a baseline interrupted part way is not finished while a policy hides rows from the role', async () => {
    await verifyNew(s.db.pool, 20_000);
    const used = async () =>
      (await s.db.pool.query('SELECT count(*)::int AS n FROM annotations WHERE used_for_training')).rows[0].n;
    // Interrupted: the walk held between two chunks by a lock on its run's row, then killed.
    const b = spawnCli(['baseline', '--yes'], { DATABASE_URL: s.db.url, CHUNK_ROWS: '100', LOG_LEVEL: 'warn' });
    const holder = new pg.Client({ connectionString: s.db.url });
    await holder.connect();
    try {
      await eventually(async () => (await used()) > 0, 'the first chunk of the baseline');
      await holder.query('BEGIN');
      await holder.query("SELECT 1 FROM training_runs WHERE state = 'baseline' FOR UPDATE");
      b.proc.kill('SIGKILL');
      await b.exited;
    } finally {
      await holder.query('COMMIT');
      await holder.end();
    }
    const marked = await used();
    assert.ok(marked > 0 && marked < 20_000, `${marked} marked before the kill`);
    await hideFromOthers();
    for (const args of [['baseline'], ['baseline', '--yes']]) {
      const r = await runCli([...args], { DATABASE_URL: role.url, CHUNK_ROWS: '100' });
      assert.notEqual(r.code, 0, `${args.join(' ')} went on`);
      assert.match(r.stderr, /row-level security/);
    }
    assert.equal(await used(), marked, 'nothing more marked');
    // Leave it finished for the invariant check.
    assert.equal((await runCli(['baseline', '--yes'], { DATABASE_URL: s.db.url })).code, 0);
  });
});

describe("a Triage transaction at each isolation level, while a claim takes its rows (README: What the Triage API's writers see)", () => {
  const s = useEachRun();

  for (const level of ['READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE'] as const) {
    it(`${level}: ${level === 'READ COMMITTED' ? 'its update goes through' : 'its update fails with 40001, as with any concurrent writer'}`, async () => {
      await verifyNew(s.db.pool, THRESHOLD);
      const triage = new pg.Client({ connectionString: s.db.url });
      await triage.connect();
      try {
        // Its snapshot is taken before the claim (the first statement of the transaction).
        await triage.query(`BEGIN ISOLATION LEVEL ${level}`);
        await triage.query('SELECT count(*) FROM annotations WHERE verified');
        s.c = await startController(s.db.url, s.kube, { TRAINING_THRESHOLD: String(THRESHOLD) });
        await eventually(() => s.kube.creates.length === 1, 'the claim and its Job');
        const relabel = triage.query("UPDATE annotations SET label = 'relabelled' WHERE id = 1").then(
          () => null,
          (err: { code?: string }) => err.code ?? 'error',
        );
        if (level === 'READ COMMITTED') assert.equal(await relabel, null);
        else assert.equal(await relabel, '40001');
      } finally {
        await triage.query('ROLLBACK').catch(() => undefined);
        await triage.end();
      }
    });
  }
});
