import type { Kysely } from 'kysely'
import type { DB } from '../storage/schema.ts'
import type { DecisionRecord } from './record.ts'

/** Reads decision records back (idempotent replays, exports, analytics), always within one org. */
export class DecisionRecords {
  constructor(private readonly db: Kysely<DB>) {}

  async byId(orgId: string, id: string): Promise<DecisionRecord | undefined> {
    return this.db.selectFrom('decision').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst()
  }
}
