import type { Kysely, Migration } from 'kysely'
import type { Dialect } from '../database.ts'

/**
 * The reason code a stop was answered with (a policy rule's validated label, e.g. `no_medical`):
 * a replayed block (LIMIT-2) is then the first answer byte for byte, reason included.
 */
export function decisionReason(_d: Dialect): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema.alterTable('decision').addColumn('reason', 'text').execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.alterTable('decision').dropColumn('reason').execute()
    },
  }
}
