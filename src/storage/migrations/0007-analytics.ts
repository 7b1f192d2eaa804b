import type { Kysely, Migration } from 'kysely'
import type { Dialect } from '../database.ts'
import { columnTypes } from './types.ts'

/**
 * Anomaly alerts (AUDIT-4): each org's alert webhook (URL and signing secret, sealed under the
 * org's data key) and one row per alert sent — its (org, kind, window) key makes "sent once per
 * window" hold across instances: only the instance whose INSERT lands sends.
 */
export function analytics(d: Dialect): Migration {
  const t = columnTypes(d)
  return {
    async up(db: Kysely<any>) {
      await db.schema.createTable('alert_webhook')
        .addColumn('org_id', 'text', (c) => c.primaryKey())
        .addColumn('config_sealed', 'text', (c) => c.notNull())
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .addColumn('updated_at', t.bigint, (c) => c.notNull())
        .execute()
      await db.schema.createTable('alert_sent')
        .addColumn('org_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('window_start', t.bigint, (c) => c.notNull())
        .addColumn('count', t.bigint, (c) => c.notNull())
        .addColumn('threshold', t.bigint, (c) => c.notNull())
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('sent_at', t.bigint, (c) => c.notNull())
        .addPrimaryKeyConstraint('alert_sent_pk', ['org_id', 'kind', 'window_start'])
        .execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable('alert_sent').execute()
      await db.schema.dropTable('alert_webhook').execute()
    },
  }
}
