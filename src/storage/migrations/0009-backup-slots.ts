import type { Kysely, Migration } from 'kysely'
import type { Dialect } from '../database.ts'
import { columnTypes } from './types.ts'

/**
 * Scheduled backups (BACKUP-1): one row per cron slot claimed. The primary key makes the claim
 * a lease — with several instances, only the one whose insert wins runs that slot's backup.
 */
export function backupSlots(d: Dialect): Migration {
  const t = columnTypes(d)
  return {
    async up(db: Kysely<any>) {
      await db.schema.createTable('backup_slot')
        .addColumn('slot_at', t.bigint, (c) => c.primaryKey())
        .addColumn('claimed_at', t.bigint, (c) => c.notNull())
        .execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable('backup_slot').execute()
    },
  }
}
