import type { Kysely } from 'kysely'
import type { DB } from '../storage/schema.ts'

/**
 * RIGHTS-2: deletes, inside the caller's transaction, everything a person stored under their
 * pseudonyms (`org id → pseudonym`): their artifacts and their open reports.
 */
export async function deleteStoredBy(trx: Kysely<DB>, pseudonyms: ReadonlyMap<string, string>): Promise<void> {
  for (const [orgId, p] of pseudonyms) {
    await trx.deleteFrom('artifact').where('org_id', '=', orgId).where('owner_id', '=', p).execute()
    await trx.deleteFrom('harm_report').where('org_id', '=', orgId).where('reporter_id', '=', p).execute()
  }
}
