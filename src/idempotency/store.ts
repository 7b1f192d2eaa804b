import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import type { DB } from '../storage/schema.ts'
import { keepsOutcome } from './claim.ts'
import { decideIdempotency } from './decide.ts'

/** Who and where: an Idempotency-Key is unique per (org, credential); method and route must match too. */
export interface IdempotencyScope {
  readonly orgId: string
  readonly principal: string
  readonly method: string
  readonly route: string
}

export interface Recorded {
  readonly status: number
  readonly responseSealed: string | null
  readonly decisionId: string | null
  /**
   * Admin API: the audited target (`type:id`) of an effect that committed but whose response was
   * never recorded (the claimer died in between): replayed as that target, never executed again.
   */
  readonly effect: string | null
}

/** The status an effect-only replay answers with: the operation happened; here is what it made. */
export const EFFECT_REPLAY_STATUS = 200

export type Claim =
  | { readonly kind: 'claimed' }
  | { readonly kind: 'replay'; readonly recorded: Recorded }
  | { readonly kind: 'mismatch' }
  | { readonly kind: 'in_flight' }

export interface IdempotencySettings {
  /** How long a completed key is remembered (LIMIT-2: 24 h by default). */
  readonly ttlMs: number
  /** How long a claim holds before another instance may take it over (a crashed claimer). */
  readonly lockMs: number
}

/**
 * Idempotency records in the primary database (D2: never only in Redis, so a Redis restart
 * loses nothing). Claiming is one INSERT that either wins or finds the existing record; every
 * other step is a conditional UPDATE, so two instances can never both execute one key.
 */
export class IdempotencyStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    readonly settings: IdempotencySettings,
  ) {}

  /**
   * `decisionId` (AI endpoints): the decision record this claimer will commit, kept with the claim
   * so that a taker-over can tell whether the claimer died before or after committing it.
   */
  async claim(scope: IdempotencyScope, keyHash: string, fingerprint: string, decisionId?: string): Promise<Claim> {
    const now = this.clock.now()
    const where = this.#where(scope.orgId, scope.principal, keyHash)
    // An expired record is as good as none: drop it first (the sweep job also removes them).
    await where(this.db.deleteFrom('idempotency')).where('expires_at', '<=', now).execute()
    const inserted = await this.db.insertInto('idempotency').values({
      org_id: scope.orgId, credential_id: scope.principal, key_hash: keyHash, method: scope.method, route: scope.route, fingerprint,
      state: 'in_flight', lock_until: now + this.settings.lockMs, status: null, response_sealed: null, decision_id: decisionId ?? null, effect: null,
      created_at: now, expires_at: now + this.settings.ttlMs,
    }).onConflict((oc) => oc.columns(['org_id', 'credential_id', 'key_hash']).doNothing()).executeTakeFirst()
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1) return { kind: 'claimed' }

    const row = await where(this.db.selectFrom('idempotency').selectAll()).executeTakeFirst()
    if (!row) return this.claim(scope, keyHash, fingerprint, decisionId) // removed in between (expired): try again
    // The same key on another method or route is a different request (422), whatever the body.
    const sameRequest = row.method === scope.method && row.route === scope.route ? fingerprint : `${fingerprint}:other-route`
    const decision = decideIdempotency({ fingerprint: row.fingerprint, state: row.state as 'in_flight' | 'done', lockUntil: row.lock_until }, sameRequest, now)
    if (decision === 'replay') return { kind: 'replay', recorded: { status: row.status!, responseSealed: row.response_sealed, decisionId: row.decision_id, effect: row.effect } }
    if (decision === 'mismatch') return { kind: 'mismatch' }
    if (decision === 'in_flight') return { kind: 'in_flight' }
    // take_over: the claimer died. If its effect had already committed — an AI decision the key
    // remembers, or an audited admin effect (marked in the effect's own transaction) — it died
    // after the commit, before marking the key done (kill -9, T10): that effect is the outcome.
    // Mark it done and replay it; never a second execution. Exactly one taker wins.
    const committed = await this.#committedEffect(scope.orgId, row)
    if (committed) {
      const done = await where(this.db.updateTable('idempotency').set({ state: 'done', status: committed.status }))
        .where('state', '=', 'in_flight').where('lock_until', '<=', now).executeTakeFirst()
      return Number(done.numUpdatedRows) === 1 ? { kind: 'replay', recorded: committed } : { kind: 'in_flight' }
    }
    const took = await where(this.db.updateTable('idempotency').set({ lock_until: now + this.settings.lockMs, decision_id: decisionId ?? null }))
      .where('state', '=', 'in_flight').where('lock_until', '<=', now).executeTakeFirst()
    return Number(took.numUpdatedRows) === 1 ? { kind: 'claimed' } : { kind: 'in_flight' }
  }

  /** The outcome a dead claimer committed, if any: its decision record, or its audited admin effect. */
  async #committedEffect(orgId: string, row: { decision_id: string | null; effect: string | null }): Promise<Recorded | undefined> {
    if (row.effect !== null) return { status: EFFECT_REPLAY_STATUS, responseSealed: null, decisionId: null, effect: row.effect }
    if (row.decision_id === null) return undefined
    const d = await this.db.selectFrom('decision').select('status').where('org_id', '=', orgId).where('id', '=', row.decision_id).executeTakeFirst()
    return d && keepsOutcome(d.status) ? { status: d.status, responseSealed: null, decisionId: row.decision_id, effect: null } : undefined
  }

  /**
   * Records, in the caller's transaction, that a claimed admin request's effect committed
   * (`target`: the audited `type:id`). The first effect of a request is the one remembered.
   */
  async markEffect(trx: Kysely<DB>, scope: IdempotencyScope, keyHash: string, target: string): Promise<void> {
    await this.#where(scope.orgId, scope.principal, keyHash)(trx.updateTable('idempotency').set({ effect: target }))
      .where('state', '=', 'in_flight').where('effect', 'is', null).execute()
  }

  /** Records the outcome; later requests with the key get it replayed. */
  async complete(scope: IdempotencyScope, keyHash: string, recorded: Omit<Recorded, 'effect'>): Promise<void> {
    await this.#where(scope.orgId, scope.principal, keyHash)(this.db.updateTable('idempotency').set({
      state: 'done', status: recorded.status, response_sealed: recorded.responseSealed, decision_id: recorded.decisionId,
    })).execute()
  }

  /**
   * Forgets a claim whose request did not complete an operation (invalid input, transient
   * failure): the key may be retried. A request that failed *after* its effect committed did
   * complete one: its key keeps that effect (replayed, never executed again).
   */
  async release(scope: IdempotencyScope, keyHash: string): Promise<void> {
    const where = this.#where(scope.orgId, scope.principal, keyHash)
    await where(this.db.updateTable('idempotency').set({ state: 'done', status: EFFECT_REPLAY_STATUS }))
      .where('state', '=', 'in_flight').where('effect', 'is not', null).execute()
    await where(this.db.deleteFrom('idempotency')).where('state', '=', 'in_flight').execute()
  }

  /** Deletes records past their retention; returns how many. */
  async sweep(): Promise<number> {
    const r = await this.db.deleteFrom('idempotency').where('expires_at', '<=', this.clock.now()).executeTakeFirst()
    return Number(r.numDeletedRows)
  }

  #where(orgId: string, principal: string, keyHash: string) {
    return <Q extends { where: (...a: any[]) => Q }>(q: Q): Q => q.where('org_id', '=', orgId).where('credential_id', '=', principal).where('key_hash', '=', keyHash)
  }
}
