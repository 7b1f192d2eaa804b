import type { Kysely, Migration } from 'kysely'
import type { Dialect } from '../database.ts'

/**
 * LIMIT-2: the audited target (`type:id`) of an admin request's effect, written in the effect's
 * own transaction, so a retry after a crash between commit and completion never executes twice.
 */
export function idempotentEffects(_d: Dialect): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema.alterTable('idempotency').addColumn('effect', 'text').execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.alterTable('idempotency').dropColumn('effect').execute()
    },
  }
}
