import { AsyncLocalStorage } from 'node:async_hooks'
import type { Kysely } from 'kysely'
import type { DB } from '../storage/schema.ts'
import type { Claimed } from './claim.ts'
import type { IdempotencyStore } from './store.ts'

/**
 * The claim an admin request runs under (LIMIT-2). The request's effect commits in its own
 * transaction and the claim is completed after the response is built, so a `kill -9` between
 * the two used to leave an executed request whose key a retry could take over and execute again.
 * Instead, the first audited effect of a claimed request marks its claim *in the effect's own
 * transaction* (`markEffect`): a taker-over then finds the effect committed and answers with it.
 */
const current = new AsyncLocalStorage<Claimed>()

/** Runs `fn` (the rest of the request) with `claim` as the request's claim. */
export function runUnderClaim<T>(claim: Claimed, fn: () => T): T {
  return current.run(claim, fn)
}

/**
 * An audit hook: when a claimed request appends a successful audit entry, record its target as
 * the claim's committed effect in the same transaction (first one wins; rolled back with it).
 */
export function effectMarker(store: IdempotencyStore) {
  return async (trx: Kysely<DB>, e: { readonly outcome: string; readonly targetType?: string | null; readonly targetId?: string | null }): Promise<void> => {
    const claim = current.getStore()
    if (!claim || e.outcome !== 'success') return
    await store.markEffect(trx, claim.scope, claim.keyHash, `${e.targetType ?? ''}:${e.targetId ?? ''}`)
  }
}
