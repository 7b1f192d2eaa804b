import type { Kysely, Migration } from 'kysely'
import type { Dialect } from '../database.ts'
import { columnTypes } from './types.ts'

/** Signed audit checkpoints (AUDIT-3, D9): each chain's head, signed with a key kept outside the database. */
export function auditCheckpoints(d: Dialect): Migration {
  const t = columnTypes(d)
  return {
    async up(db: Kysely<any>) {
      await db.schema.createTable('audit_checkpoint')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('chain_id', 'text', (c) => c.notNull())
        .addColumn('seq', t.bigint, (c) => c.notNull())
        .addColumn('head_hash', 'text', (c) => c.notNull())
        .addColumn('at', t.bigint, (c) => c.notNull())
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('signature', 'text', (c) => c.notNull())
        .execute()
      await db.schema.createIndex('audit_checkpoint_chain_at').on('audit_checkpoint').columns(['chain_id', 'at']).execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable('audit_checkpoint').execute()
    },
  }
}
