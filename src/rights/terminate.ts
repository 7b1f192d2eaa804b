import type { Kysely } from 'kysely'
import { INSTANCE_CHAIN, type AuditLog } from '../audit/audit.ts'
import type { Clock } from '../core/clock.ts'
import { TollgateError } from '../core/errors.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'

export interface RightsDeps {
  readonly db: Kysely<DB>
  readonly clock: Clock
  readonly audit: AuditLog
  readonly keyring: OrgKeyring
}

/** Who ended the org: an OWNER, or its sole member deleting their account. */
export interface TerminatedBy {
  readonly userId: string
  readonly requestId: string | null
}

/**
 * Terminates an org inside the caller's transaction (RIGHTS-2, D13). At once: the org is marked
 * terminated (every admin route answers 404, every key is refused: both read the database on
 * every request, so on every instance), its keys revoked, its SSO sessions ended, its invites
 * and memberships deleted, and its per-org keys destroyed — fingerprints and pseudonyms under
 * them can never be computed again, so its audit entries and any copy in a backup are unlinkable.
 * The rest of its rows go with the retention job (`purge.ts`). Audited as `org_terminated` in
 * the instance chain (the org's own chain is deleted with the org). Call
 * `keyring.shred(orgId)` once the transaction commits: it forgets the keys and deletes the org's
 * KEK from the key vault, so copies of its keys in old backups stop opening too (D13).
 */
export async function terminateOrgIn(trx: Kysely<DB>, d: RightsDeps, orgId: string, by: TerminatedBy): Promise<number> {
  const now = d.clock.now()
  // The actor's pseudonym under the org key, computed before the key is destroyed (then unlinkable);
  // none when the key is already gone (a shredded org brought back by a restore, D13, terminated again).
  const actorId = (await d.keyring.livePseudonym(orgId, by.userId, trx)) ?? null
  const marked = await trx.updateTable('org').set({ terminated_at: now }).where('id', '=', orgId).where('terminated_at', 'is', null).executeTakeFirst()
  if (Number(marked.numUpdatedRows) !== 1) throw new TollgateError('not_found')
  await trx.updateTable('api_key').set({ revoked_at: now }).where('org_id', '=', orgId)
    .where((eb) => eb.or([eb('revoked_at', 'is', null), eb('revoked_at', '>', now)])).execute()
  await trx.updateTable('session').set({ ended_at: now, end_reason: 'org_terminated', prev_token_hash: null, prev_valid_until: null })
    .where('org_id', '=', orgId).where('ended_at', 'is', null).execute()
  // Invites hold the invitees' emails: gone now, not at the purge.
  await trx.deleteFrom('invite').where('org_id', '=', orgId).execute()
  await trx.deleteFrom('membership').where('org_id', '=', orgId).execute()
  await d.keyring.destroy(trx, orgId)
  await d.audit.append(trx, {
    chainId: INSTANCE_CHAIN, actorType: 'user', actorId, action: 'org_terminated', targetType: 'org', targetId: orgId,
    outcome: 'success', requestId: by.requestId,
  })
  return now
}
