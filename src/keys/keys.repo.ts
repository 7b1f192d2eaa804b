import { CompiledQuery, type Kysely } from 'kysely'
import type { AuditLog } from '../audit/audit.ts'
import { withAudit } from '../audit/audit.ts'
import type { Clock } from '../core/clock.ts'
import { digestsEqual, sha256, sha256Hex } from '../core/crypto.ts'
import type { DB } from '../storage/schema.ts'
import { mintKey, parseKey, type KeyEnvironment } from './key-format.ts'

/** What a verified key tells the pipeline: whose it is and where it may go. */
export interface VerifiedKey {
  readonly id: string
  readonly orgId: string
  readonly environment: KeyEnvironment
  readonly userId: string | null
  readonly scope: KeyScope
}

/** `gateway` keys reach the AI endpoints only; `admin` keys reach the admin API only, as their member. */
export type KeyScope = 'gateway' | 'admin'

export interface Actor {
  readonly type: 'operator' | 'user' | 'api_key' | 'system'
  readonly id: string | null
  readonly requestId?: string | null
}

/** Metadata shown for a key: never its secret or hash. */
export interface KeyInfo {
  readonly id: string
  readonly orgId: string
  readonly environment: KeyEnvironment
  readonly userId: string | null
  readonly label: string | null
  readonly scope: KeyScope
  readonly createdAt: number
  readonly expiresAt: number | null
  readonly revokedAt: number | null
  readonly lastUsedAt: number | null
  readonly replacedBy: string | null
}

const DUMMY_HASH = sha256('tollgate: no such key')

type LookupRow = Pick<DB['api_key'], 'id' | 'org_id' | 'environment' | 'user_id' | 'scope' | 'secret_hash' | 'expires_at' | 'revoked_at'> & { terminated_at: number | null }
/** last_used_at is written at most once per key per this interval (it is a coarse signal). */
const TOUCH_INTERVAL_MS = 60_000

export const LABEL = /^[A-Za-z0-9 ._-]{1,64}$/

export interface KeyInput {
  readonly orgId: string
  readonly environment: KeyEnvironment
  readonly userId?: string | null
  readonly label?: string | null
  readonly scope?: KeyScope
  readonly actor: Actor
}

/**
 * API keys (KEY-1..3). Only SHA-256 of the full key is stored. Verification reads the database
 * on every request (no key cache), so a revocation is refused by every instance at once.
 */
export class KeyStore {
  readonly #touched = new Map<string, number>()
  /** The per-request lookup, compiled once by the dialect (building a query costs more than running it). */
  readonly #lookup: string

  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly onTouchError: (err: unknown) => void = () => {},
  ) {
    this.#lookup = db.selectFrom('api_key')
      .innerJoin('org', 'org.id', 'api_key.org_id')
      .select(['api_key.id', 'api_key.org_id', 'api_key.environment', 'api_key.user_id', 'api_key.scope', 'api_key.secret_hash',
        'api_key.expires_at', 'api_key.revoked_at', 'org.terminated_at'])
      .where('api_key.id', '=', '')
      .compile().sql
  }

  /** Verifies a presented key. Every failure (malformed, unknown, wrong secret, revoked, expired) looks the same. */
  async verify(presented: string): Promise<VerifiedKey | undefined> {
    const parsed = parseKey(presented)
    if (!parsed) return undefined
    // Read on every request, never cached: a revocation is refused by every instance at once (KEY-3).
    const row = (await this.db.executeQuery<LookupRow>(CompiledQuery.raw(this.#lookup, [parsed.id]))).rows[0]
    // Compare even when there is no row, so "no such key" and "wrong secret" take the same time.
    const match = digestsEqual(sha256(presented), row ? Buffer.from(row.secret_hash, 'hex') : DUMMY_HASH)
    if (!row || !match) return undefined
    const now = this.clock.now()
    if (row.revoked_at !== null && row.revoked_at <= now) return undefined
    if (row.expires_at !== null && row.expires_at <= now) return undefined
    if (row.terminated_at !== null) return undefined
    if (row.environment !== parsed.environment) return undefined
    this.#touch(row.id, now)
    return { id: row.id, orgId: row.org_id, environment: parsed.environment, userId: row.user_id, scope: row.scope as KeyScope }
  }

  /** Creates a key and returns it once; only its hash is stored. Audited as `authn_token_created`. */
  async create(input: KeyInput): Promise<{ info: KeyInfo; key: string }> {
    return withAudit(this.db, async (trx) => {
      const minted = await this.#insert(trx, input)
      await this.audit.append(trx, {
        chainId: input.orgId, actorType: input.actor.type, actorId: input.actor.id, action: 'authn_token_created',
        targetType: 'api_key', targetId: minted.info.id, outcome: 'success', requestId: input.actor.requestId ?? null,
      })
      return minted
    })
  }

  /**
   * Rotation without downtime (KEY-3): a new key now; the old one keeps working for `graceSeconds`
   * (0 = revoked at once). Returns undefined when the key does not exist in `orgId` or is already dead.
   */
  async rotate(input: { orgId: string; id: string; graceSeconds: number; actor: Actor }): Promise<{ info: KeyInfo; key: string } | undefined> {
    return withAudit(this.db, async (trx) => {
      const now = this.clock.now()
      const old = await trx.selectFrom('api_key').selectAll().where('id', '=', input.id).where('org_id', '=', input.orgId).executeTakeFirst()
      if (!old || (old.revoked_at !== null && old.revoked_at <= now) || (old.expires_at !== null && old.expires_at <= now)) return undefined
      const minted = await this.#insert(trx, { orgId: old.org_id, environment: old.environment as KeyEnvironment, userId: old.user_id, label: old.label, scope: old.scope as KeyScope, actor: input.actor })
      // A rotation never lets the old key live longer than it already would (a second rotation of a key in its grace period).
      const graceEnd = Math.min(now + input.graceSeconds * 1000, old.expires_at ?? Infinity)
      await trx.updateTable('api_key').set(input.graceSeconds === 0 ? { revoked_at: now, replaced_by: minted.info.id } : { expires_at: graceEnd, replaced_by: minted.info.id })
        .where('id', '=', old.id).execute()
      for (const [action, id] of [['authn_token_created', minted.info.id], ['authn_token_rotated', old.id]] as const) {
        await this.audit.append(trx, { chainId: old.org_id, actorType: input.actor.type, actorId: input.actor.id, action, targetType: 'api_key', targetId: id, outcome: 'success', requestId: input.actor.requestId ?? null })
      }
      return minted
    })
  }

  /** Revokes a key at once (KEY-3). Returns false when no live key has that id in `orgId` (or any org when undefined). */
  async revoke(input: { id: string; orgId?: string; actor: Actor }): Promise<boolean> {
    return withAudit(this.db, async (trx) => {
      const now = this.clock.now()
      let q = trx.selectFrom('api_key').select(['id', 'org_id']).where('id', '=', input.id).where('revoked_at', 'is', null)
      if (input.orgId !== undefined) q = q.where('org_id', '=', input.orgId)
      const row = await q.executeTakeFirst()
      if (!row) return false
      await trx.updateTable('api_key').set({ revoked_at: now }).where('id', '=', row.id).execute()
      await this.audit.append(trx, { chainId: row.org_id, actorType: input.actor.type, actorId: input.actor.id, action: 'authn_token_revoked', targetType: 'api_key', targetId: row.id, outcome: 'success', requestId: input.actor.requestId ?? null })
      return true
    })
  }

  async list(filter: { orgId?: string; environment?: KeyEnvironment } = {}): Promise<KeyInfo[]> {
    let q = this.db.selectFrom('api_key').selectAll()
    if (filter.orgId !== undefined) q = q.where('org_id', '=', filter.orgId)
    if (filter.environment !== undefined) q = q.where('environment', '=', filter.environment)
    const rows = await q.orderBy('created_at').orderBy('id').execute()
    return rows.map(present)
  }

  async #insert(trx: Kysely<DB>, input: KeyInput): Promise<{ info: KeyInfo; key: string }> {
    if (input.label != null && !LABEL.test(input.label)) throw new Error('invalid key label')
    if (input.scope === 'admin' && !input.userId) throw new Error('an admin key acts for a member: userId is required')
    const { id, key } = mintKey(input.environment)
    const row = {
      id, org_id: input.orgId, environment: input.environment, user_id: input.userId ?? null, label: input.label ?? null, scope: input.scope ?? 'gateway',
      secret_hash: sha256Hex(key), created_at: this.clock.now(), expires_at: null, revoked_at: null, last_used_at: null,
      replaced_by: null, created_by_type: input.actor.type, created_by: input.actor.id,
    }
    await trx.insertInto('api_key').values(row).execute()
    return { info: present(row), key }
  }

  #touch(id: string, now: number): void {
    const last = this.#touched.get(id)
    if (last !== undefined && now - last < TOUCH_INTERVAL_MS) return
    this.#touched.set(id, now)
    this.db.updateTable('api_key').set({ last_used_at: now }).where('id', '=', id).execute().catch(this.onTouchError)
  }
}

function present(row: DB['api_key']): KeyInfo {
  return {
    id: row.id, orgId: row.org_id, environment: row.environment as KeyEnvironment, userId: row.user_id, label: row.label, scope: row.scope as KeyScope,
    createdAt: row.created_at, expiresAt: row.expires_at, revokedAt: row.revoked_at, lastUsedAt: row.last_used_at, replacedBy: row.replaced_by,
  }
}
