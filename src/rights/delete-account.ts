import type { Kysely, Transaction } from 'kysely'
import { deleteStoredBy } from '../artifacts/erase.ts'
import { INSTANCE_CHAIN, withAudit } from '../audit/audit.ts'
import type { DB } from '../storage/schema.ts'
import { terminateOrgIn, type RightsDeps } from './terminate.ts'

export type DeletionResult =
  /** Deleted; `terminated` are the orgs the person was the sole member of (terminated with the account). */
  | { readonly ok: true; readonly terminated: readonly string[] }
  /** Refused: the person is the last OWNER of these orgs, which have other members. */
  | { readonly ok: false; readonly blockedBy: readonly string[] }

/**
 * RIGHTS-2: deletes a person's account in one transaction. Refused (and the refusal audited in
 * each org concerned) while they are the last OWNER of an org with other members: ownership must
 * move first, or the org be terminated. An org whose sole member they are is terminated with the
 * account (nobody would be left to administer it, delete it, or stop its keys).
 *
 * Otherwise: every session and login link deleted (the cookie is refused at once), every key of
 * theirs revoked and unlinked (user and label cleared; verification reads the database on every
 * request, so every instance refuses it at once), their decision records deleted (found by their
 * pseudonym in each org and by their keys), their saved artifacts and open reports deleted, their idempotency records deleted, invites they sent
 * unlinked, memberships, passkeys and sign-in identities deleted, and the user row — the email,
 * the only PII (DATA-1) — deleted. Audit entries stay (an append-only chain), naming them only by
 * per-org pseudonyms that nothing in the database links to a person any more (D13): the
 * `account_deleted` entry is appended in each of their orgs' chains.
 */
export async function deleteAccount(d: RightsDeps, userId: string, requestId: string | null): Promise<DeletionResult> {
  const result = await withAudit(d.db, async (trx): Promise<DeletionResult> => {
    const now = d.clock.now()
    const memberships = await trx.selectFrom('membership').innerJoin('org', 'org.id', 'membership.org_id')
      .select(['membership.org_id', 'membership.role']).where('membership.user_id', '=', userId).where('org.terminated_at', 'is', null)
      .orderBy('membership.org_id').execute()
    const blockedBy: string[] = []
    const soleMember: string[] = []
    for (const m of memberships) {
      if (m.role !== 'OWNER') continue
      // Lock the org's OWNER rows first (as MemberStore does), so a concurrent demotion of the other OWNER serializes with this.
      await trx.updateTable('membership').set((eb) => ({ role: eb.ref('role') })).where('org_id', '=', m.org_id).where('role', '=', 'OWNER').execute()
      const others = await trx.selectFrom('membership').select('role').where('org_id', '=', m.org_id).where('user_id', '!=', userId).execute()
      if (others.length === 0) soleMember.push(m.org_id)
      else if (!others.some((o) => o.role === 'OWNER')) blockedBy.push(m.org_id)
    }
    const pseudonym = (orgId: string) => d.keyring.pseudonym(orgId, userId, trx)
    if (blockedBy.length > 0) {
      for (const orgId of blockedBy) {
        const p = await pseudonym(orgId)
        await d.audit.append(trx, { chainId: orgId, actorType: 'user', actorId: p, action: 'account_deletion_refused', targetType: 'member', targetId: p, outcome: 'denied', requestId })
      }
      return { ok: false, blockedBy }
    }

    const keys = await trx.selectFrom('api_key').select(['id', 'org_id']).where('user_id', '=', userId).execute()
    const keyOrgs = [...new Set(keys.map((k) => k.org_id))]
    const liveKeyOrgs = keyOrgs.length === 0 ? [] : (await trx.selectFrom('org').select('id').where('id', 'in', keyOrgs).where('terminated_at', 'is', null).execute()).map((r) => r.id)
    const pseudonyms = new Map<string, string>()
    for (const orgId of [...new Set([...memberships.map((m) => m.org_id), ...liveKeyOrgs])]) pseudonyms.set(orgId, await pseudonym(orgId))

    if (memberships.length === 0) {
      await d.audit.append(trx, { chainId: INSTANCE_CHAIN, actorType: 'user', actorId: null, action: 'account_deleted', targetType: 'account', targetId: null, outcome: 'success', requestId })
    }
    for (const m of memberships) {
      const p = pseudonyms.get(m.org_id)!
      await d.audit.append(trx, { chainId: m.org_id, actorType: 'user', actorId: p, action: 'account_deleted', targetType: 'member', targetId: p, outcome: 'success', requestId })
    }

    await deleteDecisions(trx, pseudonyms, keys.map((k) => k.id))
    // RIGHTS-3, GW-8: what they chose to store — their workspace artifacts and open reports.
    await deleteStoredBy(trx, pseudonyms)
    // Keys: refused from now on, and no longer linked to the person (a label may name them).
    await trx.updateTable('api_key').set({ revoked_at: now }).where('user_id', '=', userId)
      .where((eb) => eb.or([eb('revoked_at', 'is', null), eb('revoked_at', '>', now)])).execute()
    await trx.updateTable('api_key').set({ user_id: null, label: null }).where('user_id', '=', userId).execute()
    const credentials = [`user:${userId}`, ...keys.map((k) => `key:${k.id}`)]
    await trx.deleteFrom('idempotency').where('credential_id', 'in', credentials).execute()
    await trx.updateTable('invite').set({ created_by: null }).where('created_by', '=', userId).execute()
    for (const orgId of soleMember) await terminateOrgIn(trx, d, orgId, { userId, requestId })
    for (const table of ['membership', 'session', 'login_link', 'passkey', 'user_identity'] as const) await trx.deleteFrom(table).where('user_id', '=', userId).execute()
    await trx.deleteFrom('user').where('id', '=', userId).execute()
    return { ok: true, terminated: soleMember }
  })
  // D13: after the commit, as for a termination by an OWNER (a failure is retried by the org_keks_destroyed job).
  if (result.ok) for (const orgId of result.terminated) await d.keyring.shred(orgId).catch(() => undefined)
  return result
}

/** Decision records made by the person: their pseudonym in each org, or one of their keys. */
async function deleteDecisions(trx: Transaction<DB> | Kysely<DB>, pseudonyms: ReadonlyMap<string, string>, keyIds: readonly string[]): Promise<void> {
  for (const [orgId, p] of pseudonyms) await trx.deleteFrom('decision').where('org_id', '=', orgId).where('actor_id', '=', p).execute()
  if (keyIds.length > 0) await trx.deleteFrom('decision').where('key_id', 'in', [...keyIds]).execute()
}
