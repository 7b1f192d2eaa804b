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
  if (chains.length === 0) chains = [INSTANCE_CHAIN]
  for (const chainId of chains) {
    const actorId = e.userId === null || chainId === INSTANCE_CHAIN ? null : await keyring.pseudonym(chainId, e.userId, trx)
    await audit.append(trx, {
      chainId, actorType: e.actorType ?? (e.userId ? 'user' : 'anonymous'), actorId, action: e.action,
      targetType: e.targetType ?? null, targetId: e.targetId ?? null, outcome: e.outcome, requestId: e.requestId,
    })
  }
}
