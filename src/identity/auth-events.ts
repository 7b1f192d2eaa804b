import type { Kysely, Transaction } from 'kysely'
import type { ActorType, AuditLog } from '../audit/audit.ts'
import { INSTANCE_CHAIN } from '../audit/audit.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'

export interface PersonEvent {
  readonly userId: string | null
  readonly action: string
  readonly outcome: 'success' | 'failure' | 'denied'
  readonly requestId: string | null
  readonly targetType?: string
  readonly targetId?: string | null
  readonly actorType?: ActorType
  /** Restrict to this org's chain (SSO); otherwise every org the person belongs to. */
  readonly orgId?: string | null
}

/**
 * Audits something a person did (sign-in, sign-out, step-up, session end) in the chain of each
 * org they belong to — so each org sees its own members' events — naming them by that org's
 * pseudonym (D13). Someone with no org (or unknown) goes to the instance chain.
 */
export async function auditPerson(trx: Transaction<DB> | Kysely<DB>, audit: AuditLog, keyring: OrgKeyring, e: PersonEvent): Promise<void> {
  let chains: string[]
  if (e.orgId) chains = [e.orgId]
  else if (e.userId) chains = (await trx.selectFrom('membership').select('org_id').where('user_id', '=', e.userId).orderBy('org_id').execute()).map((r) => r.org_id)
  else chains = []
  const entries: { chainId: string; actorId: string | null }[] = []
  for (const chainId of chains) {
    if (e.userId === null || chainId === INSTANCE_CHAIN) entries.push({ chainId, actorId: null })
    else {
      // An org whose keys are gone (a shredded org in a restored backup, D13) takes no entry.
      const actorId = await keyring.livePseudonym(chainId, e.userId, trx)
      if (actorId !== undefined) entries.push({ chainId, actorId })
    }
  }
  if (entries.length === 0) entries.push({ chainId: INSTANCE_CHAIN, actorId: null })
  for (const { chainId, actorId } of entries) {
    await audit.append(trx, {
      chainId, actorType: e.actorType ?? (e.userId ? 'user' : 'anonymous'), actorId, action: e.action,
      targetType: e.targetType ?? null, targetId: e.targetId ?? null, outcome: e.outcome, requestId: e.requestId,
    })
  }
}
