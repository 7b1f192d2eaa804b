import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import { sha256Hex } from '../core/crypto.ts'
import { newId } from '../core/ids.ts'
import type { DB, SessionTable } from '../storage/schema.ts'

/**
 * Session classes (D5): Google, bootstrap-link and passkey sign-ins are AAL1-style 30-day
 * sessions; org SSO sessions are 8 h absolute with a 1 h idle timeout. Re-authentication
 * (step-up) resets both clocks; activity resets the idle clock.
 */
export type SessionKind = 'google' | 'sso' | 'bootstrap' | 'passkey'

export interface SessionPolicy {
  readonly longAbsoluteMs: number
  readonly ssoAbsoluteMs: number
  readonly ssoIdleMs: number
  /** last_seen_at is written at most this often, so the idle clock has this granularity. */
  readonly idleWriteMs: number
  /** Tokens are rotated at least this often while a session is used. */
  readonly rotateEveryMs: number
  /** How long a replaced token still works, for a browser's requests already in flight. */
  readonly rotationGraceMs: number
}

export interface SessionInfo {
  readonly id: string
  readonly userId: string
  readonly kind: SessionKind
  readonly orgId: string | null
  readonly createdAt: number
  readonly expiresAt: number
  readonly idleExpiresAt: number | null
  readonly lastSeenAt: number
  readonly authAt: number
}

export type SessionCheck =
  | { readonly ok: true; readonly session: SessionInfo; readonly userId: string; /** Set when the token was rotated: the caller must send it as the new cookie. */ readonly newToken?: string }
  | { readonly ok: false; readonly reason: 'unknown' | 'ended' | 'expired' | 'idle'; readonly session?: SessionInfo; /** True on the one check that ended the session for `expired`/`idle`: audit the expiry once. */ readonly firstSeen?: boolean }

const TOKEN_BYTES = 32

/** A 256-bit session token from the OS CSPRNG, base64url (AUTH-3). Only its SHA-256 is stored. */
export function newSessionToken(): string {
  return randomBytes(TOKEN_BYTES).toString('base64url')
}

export function tokenHash(token: string): string {
  return sha256Hex(token)
}

const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/

export class SessionStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    readonly policy: SessionPolicy,
  ) {}

  #lifetimes(kind: SessionKind, now: number): { absolute: number; idle: number | null } {
    return kind === 'sso'
      ? { absolute: now + this.policy.ssoAbsoluteMs, idle: this.policy.ssoIdleMs }
      : { absolute: now + this.policy.longAbsoluteMs, idle: null }
  }

  /** A new session after a successful sign-in (a fresh token: fixation is impossible). */
  async create(userId: string, kind: SessionKind, orgId: string | null, authAt?: number): Promise<{ token: string; session: SessionInfo }> {
    const now = this.clock.now()
    const token = newSessionToken()
    const { absolute, idle } = this.#lifetimes(kind, now)
    const row: SessionTable = {
      id: newId(), user_id: userId, token_hash: tokenHash(token), prev_token_hash: null, prev_valid_until: null, kind, org_id: orgId,
      created_at: now, absolute_expires_at: absolute, idle_timeout_ms: idle, last_seen_at: now, auth_at: authAt ?? now, rotated_at: now,
      rotate_after: null, ended_at: null, end_reason: null,
    }
    await this.db.insertInto('session').values(row).execute()
    return { token, session: present(row) }
  }

  /**
   * Checks a presented token. Expired sessions are ended (with the reason) on first sight;
   * the idle clock is advanced (throttled); a due rotation returns a new token.
   */
  async check(token: string): Promise<SessionCheck> {
    if (!TOKEN_SHAPE.test(token)) return { ok: false, reason: 'unknown' }
    const now = this.clock.now()
    const hash = tokenHash(token)
    // The lookup is by hash (an index probe on a value derived from a 256-bit secret), so there
    // is no secret-dependent comparison to time.
    const row = await this.db.selectFrom('session').selectAll()
      .where((eb) => eb.or([eb('token_hash', '=', hash), eb.and([eb('prev_token_hash', '=', hash), eb('prev_valid_until', '>', now)])]))
      .executeTakeFirst()
    if (!row) return { ok: false, reason: 'unknown' }
    const session = present(row)
    if (row.ended_at !== null) return { ok: false, reason: 'ended', session }
    if (now >= row.absolute_expires_at) return this.#expire(row, 'expired', now)
    if (row.idle_timeout_ms !== null && now >= row.last_seen_at + row.idle_timeout_ms) return this.#expire(row, 'idle', now)
    const current = row.token_hash === hash
    const dueRotation = current && (now - row.rotated_at >= this.policy.rotateEveryMs || (row.rotate_after !== null && now >= row.rotate_after))
    if (dueRotation) {
      const newToken = await this.#rotate(row.id, row.token_hash, now)
      return { ok: true, session: { ...session, lastSeenAt: now }, userId: row.user_id, newToken }
    }
    if (now - row.last_seen_at >= this.policy.idleWriteMs) {
      await this.db.updateTable('session').set({ last_seen_at: now }).where('id', '=', row.id).execute()
    }
    return { ok: true, session, userId: row.user_id }
  }

  async #expire(row: SessionTable, reason: 'expired' | 'idle', now: number): Promise<SessionCheck> {
    const res = await this.db.updateTable('session').set({ ended_at: now, end_reason: reason }).where('id', '=', row.id).where('ended_at', 'is', null).executeTakeFirst()
    return { ok: false, reason, session: present(row), ...(Number(res.numUpdatedRows) === 1 ? { firstSeen: true } : {}) }
  }

  async #rotate(id: string, oldHash: string, now: number): Promise<string> {
    const token = newSessionToken()
    await this.db.updateTable('session').set({
      token_hash: tokenHash(token), prev_token_hash: oldHash, prev_valid_until: now + this.policy.rotationGraceMs,
      rotated_at: now, rotate_after: null, last_seen_at: now,
    }).where('id', '=', id).execute()
    return token
  }

  /** Rotates now (sign-in, step-up): returns the new token. */
  async rotate(id: string): Promise<string> {
    const row = await this.db.selectFrom('session').select(['token_hash']).where('id', '=', id).executeTakeFirstOrThrow()
    return this.#rotate(id, row.token_hash, this.clock.now())
  }

  /** A fresh authentication (passkey, IdP re-login): resets both clocks and rotates the token. */
  async reauthenticated(id: string, authAt: number): Promise<string> {
    const now = this.clock.now()
    const row = await this.db.selectFrom('session').select(['kind', 'token_hash']).where('id', '=', id).executeTakeFirstOrThrow()
    const { absolute } = this.#lifetimes(row.kind as SessionKind, now)
    await this.db.updateTable('session').set({ auth_at: authAt, absolute_expires_at: absolute, last_seen_at: now }).where('id', '=', id).execute()
    return this.#rotate(id, row.token_hash, now)
  }

  /** Every live session of the user rotates its token on its next request (privilege change). */
  async rotateOnNextUse(userId: string): Promise<void> {
    await this.db.updateTable('session').set({ rotate_after: this.clock.now() }).where('user_id', '=', userId).where('ended_at', 'is', null).execute()
  }

  /** Ends one session; `db` is the caller's transaction when it audits the effect (see `endAll`). */
  async end(id: string, reason: string, db: Kysely<DB> = this.db): Promise<boolean> {
    const res = await db.updateTable('session').set({ ended_at: this.clock.now(), end_reason: reason, prev_token_hash: null, prev_valid_until: null })
      .where('id', '=', id).where('ended_at', 'is', null).executeTakeFirst()
    return Number(res.numUpdatedRows) === 1
  }

  /**
   * Ends every live session of a user, optionally keeping one; returns how many ended. Pass the
   * caller's transaction as `db` when it audits the effect (on SQLite a query on the root handle
   * inside an open transaction waits for that transaction forever).
   */
  async endAll(userId: string, reason: string, exceptId?: string, db: Kysely<DB> = this.db): Promise<number> {
    let q = db.updateTable('session').set({ ended_at: this.clock.now(), end_reason: reason, prev_token_hash: null, prev_valid_until: null })
      .where('user_id', '=', userId).where('ended_at', 'is', null)
    if (exceptId !== undefined) q = q.where('id', '!=', exceptId)
    const res = await q.executeTakeFirst()
    return Number(res.numUpdatedRows)
  }

  async live(userId: string): Promise<SessionInfo[]> {
    const now = this.clock.now()
    const rows = await this.db.selectFrom('session').selectAll().where('user_id', '=', userId).where('ended_at', 'is', null)
      .where('absolute_expires_at', '>', now).orderBy('created_at', 'desc').execute()
    return rows.filter((r) => r.idle_timeout_ms === null || now < r.last_seen_at + r.idle_timeout_ms).map(present)
  }
}

function present(row: SessionTable): SessionInfo {
  return {
    id: row.id, userId: row.user_id, kind: row.kind as SessionKind, orgId: row.org_id, createdAt: row.created_at,
    expiresAt: row.absolute_expires_at, idleExpiresAt: row.idle_timeout_ms === null ? null : row.last_seen_at + row.idle_timeout_ms,
    lastSeenAt: row.last_seen_at, authAt: row.auth_at,
  }
}
