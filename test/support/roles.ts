// Login roles for tests about privileges (roles are cluster-wide: a unique name, dropped afterwards).
import { randomBytes } from 'node:crypto';
import { tables } from '../../src/db/tables.js';
import type { TestDb } from './db.js';

export interface TestRole {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createRole(db: TestDb, grants: (role: string) => string[]): Promise<TestRole> {
  const name = `tc_role_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(8).toString('hex');
  await db.pool.query(`CREATE ROLE ${name} LOGIN PASSWORD '${password}'`);
  for (const g of grants(name)) await db.pool.query(g);
  const u = new URL(db.url);
  u.username = name;
  u.password = password;
  return {
    name,
    url: u.toString(),
    async drop() {
      await db.pool.query(`DROP OWNED BY ${name}`);
      await db.pool.query(`DROP ROLE ${name}`);
    },
  };
}

/** Exactly the grants of the README's "Privileges" (schema public). */
export function readmeGrants(role: string): string[] {
  const t = tables('public');
  return [
    `GRANT USAGE ON SCHEMA public TO ${role}`,
    `GRANT SELECT, UPDATE (used_for_training, training_run_id) ON public.annotations TO ${role}`,
    `GRANT SELECT, INSERT, UPDATE ON public.training_runs TO ${role}`,
    `GRANT SELECT, UPDATE ON public.training_control TO ${role}`,
    `GRANT USAGE ON SEQUENCE public.training_runs_id_seq TO ${role}`,
    `GRANT SELECT ON SEQUENCE ${t.verifiedSeq} TO ${role}`,
    `GRANT SELECT, UPDATE ON SEQUENCE ${t.notifyAtSeq} TO ${role}`,
  ];
}
