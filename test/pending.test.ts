// The recount's view of verifying transactions still open: the settle recount waits for exactly these.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { recount, stillWriting } from '../src/db/annotations.js';
import { tables } from '../src/db/tables.js';

const PUBLIC = tables('public');
import { freshDatabase, type TestDb } from './support/db.js';

interface OpenTransaction {
  vxid: string;
  commit(): Promise<void>;
}

/** A transaction that has run `sql` and stays open until commit(). */
async function openTransaction(url: string, sql: string): Promise<OpenTransaction> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('BEGIN');
  await client.query(sql);
  const { rows } = await client.query<{ vxid: string }>(
    "SELECT virtualtransaction AS vxid FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'virtualxid'",
  );
  return {
    vxid: rows[0]?.vxid ?? '',
    async commit() {
      await client.query('COMMIT');
      await client.end();
    },
  };
}

const VERIFY = 'INSERT INTO annotations (verified) VALUES (true)';

describe('recount: verifying transactions still open', () => {
  let ours: TestDb;
  let other: TestDb;
  before(async () => {
    ours = await freshDatabase();
    other = await freshDatabase();
  });
  after(async () => {
    await ours?.drop();
    await other?.drop();
  });

  it('lists one that is verifying in this database, and not after it commits', async () => {
    const tx = await openTransaction(ours.url, VERIFY);
    const open = await recount(ours.pool, PUBLIC, 50);
    assert.deepEqual(open.writers, [tx.vxid]);
    assert.equal(open.pending, 0, 'its row is not visible yet');
    assert.deepEqual(await stillWriting(ours.pool, PUBLIC, open.writers), [tx.vxid]);
    await tx.commit();
    assert.deepEqual(await stillWriting(ours.pool, PUBLIC, open.writers), []);
    const after = await recount(ours.pool, PUBLIC, 50);
    assert.deepEqual(after.writers, []);
    assert.equal(after.pending, 1);
  });

  it('leaves out one that is verifying in another database on the same server', async () => {
    const tx = await openTransaction(other.url, VERIFY);
    try {
      assert.deepEqual((await recount(ours.pool, PUBLIC, 50)).writers, []);
    } finally {
      await tx.commit();
    }
  });

  it('leaves out one that only reads annotations', async () => {
    const tx = await openTransaction(ours.url, 'SELECT count(*) FROM annotations');
    try {
      assert.deepEqual((await recount(ours.pool, PUBLIC, 50)).writers, []);
    } finally {
      await tx.commit();
    }
  });
});
