import type { Kysely, Migration } from 'kysely'
import { sql } from 'kysely'
import type { Dialect } from '../database.ts'
import { columnTypes } from './types.ts'

/** Versioned policy documents per org and environment (GW-4), and org settings (DATA-4 training consent). */
export function policy(d: Dialect): Migration {
  const t = columnTypes(d)
  return {
    async up(db: Kysely<any>) {
      // A policy document is validated JSON of labels, codes, numbers and flags — no free text.
      // Lifecycle: sandbox draft → active in sandbox → tested → promoted (a new production row) → retired.
      await db.schema.createTable('policy')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('org_id', 'text', (c) => c.notNull().references('org.id'))
        .addColumn('environment', 'text', (c) => c.notNull())
        .addColumn('version', t.bigint, (c) => c.notNull())
        .addColumn('document', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('source_id', 'text', (c) => c.references('policy.id'))
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .addColumn('created_by', 'text')
        .addColumn('updated_at', t.bigint, (c) => c.notNull())
        .addColumn('activated_at', t.bigint)
        .addColumn('tested_at', t.bigint)
        .addColumn('retired_at', t.bigint)
        .execute()
      await db.schema.createIndex('policy_version').on('policy').columns(['org_id', 'environment', 'version']).unique().execute()
      // At most one active policy per org and environment, whatever the races between instances.
      await sql`create unique index policy_active on policy (org_id, environment) where status = 'active'`.execute(db)

      // Org-level settings. training_consent (DATA-4): 0 unless an OWNER explicitly opted in.
      await db.schema.createTable('org_setting')
        .addColumn('org_id', 'text', (c) => c.primaryKey().references('org.id'))
        .addColumn('training_consent', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('updated_at', t.bigint, (c) => c.notNull())
        .addColumn('updated_by', 'text')
        .execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable('org_setting').execute()
      await db.schema.dropTable('policy').execute()
    },
  }
}
