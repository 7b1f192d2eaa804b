import type { Kysely, Migration } from 'kysely'
import type { Dialect } from '../database.ts'

/**
 * D13: whether an org key is also sealed under the org's key-encryption key in the key vault
 * (TOLLGATE_KEY_VAULT_DIR), outside the database and its backups. Existing keys are master-only (0).
 */
export function orgKeyVault(_d: Dialect): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema.alterTable('org_key').addColumn('vault', 'integer', (c) => c.notNull().defaultTo(0)).execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.alterTable('org_key').dropColumn('vault').execute()
    },
  }
}
