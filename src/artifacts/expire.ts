import type { Kysely, Transaction } from 'kysely'
import { withAudit, type AuditLog } from '../audit/audit.ts'
import type { DB } from '../storage/schema.ts'

/**
 * The retention jobs' loop (RIGHTS-3, GW-8): deletes each due row in its own transaction with its
 * audit entry (`action`, by the system, in the org's chain). `remove` deletes one row only if it
 * is still due and tells whether it did, so a row another instance took is skipped. Returns how
 * many rows this run deleted.
 */
export async function expireEach(db: Kysely<DB>, audit: AuditLog, due: readonly { readonly id: string; readonly org_id: string }[],
  remove: (trx: Transaction<DB>, id: string) => Promise<boolean>, event: { readonly action: string; readonly targetType: string }): Promise<number> {
  let n = 0
  for (const { id, org_id: orgId } of due) {
    const deleted = await withAudit(db, async (trx) => {
      if (!(await remove(trx, id))) return false
      await audit.append(trx, { chainId: orgId, actorType: 'system', actorId: null, action: event.action, targetType: event.targetType, targetId: id, outcome: 'success', requestId: null })
      return true
    })
    if (deleted) n++
  }
  return n
}
