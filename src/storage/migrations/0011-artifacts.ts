import type { Kysely, Migration } from 'kysely'
import type { Dialect } from '../database.ts'
import { columnTypes } from './types.ts'

/**
 * What a person explicitly chooses to store (RIGHTS-3, GW-8): workspace artifacts (an org opts in
 * with `org_setting.workspace`) and reports of harmful output. Text and title are sealed under the
 * org's data key (AES-256-GCM, bound to the org and row id); the owner and reporter are pseudonyms.
 */
export function artifacts(d: Dialect): Migration {
  const t = columnTypes(d)
  return {
    async up(db: Kysely<any>) {
      await db.schema.alterTable('org_setting').addColumn('workspace', 'integer', (c) => c.notNull().defaultTo(0)).execute()
      await db.schema.createTable('artifact')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('org_id', 'text', (c) => c.notNull())
        .addColumn('owner_id', 'text', (c) => c.notNull())
        .addColumn('sealed', 'text', (c) => c.notNull())
        .addColumn('size_bytes', t.bigint, (c) => c.notNull())
        .addColumn('temporary', 'integer', (c) => c.notNull())
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .addColumn('expires_at', t.bigint)
        .execute()
      await db.schema.createIndex('artifact_owner').on('artifact').columns(['org_id', 'owner_id', 'created_at']).execute()
      await db.schema.createIndex('artifact_expiry').on('artifact').column('expires_at').execute()
      await db.schema.createTable('harm_report')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('org_id', 'text', (c) => c.notNull())
        .addColumn('reporter_id', 'text', (c) => c.notNull())
        .addColumn('category', 'text', (c) => c.notNull())
        .addColumn('decision_id', 'text')
        .addColumn('sealed', 'text', (c) => c.notNull())
        .addColumn('size_bytes', t.bigint, (c) => c.notNull())
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .execute()
      await db.schema.createIndex('harm_report_queue').on('harm_report').columns(['org_id', 'created_at']).execute()
      await db.schema.createIndex('harm_report_age').on('harm_report').column('created_at').execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable('harm_report').execute()
      await db.schema.dropTable('artifact').execute()
      await db.schema.alterTable('org_setting').dropColumn('workspace').execute()
    },
  }
}
