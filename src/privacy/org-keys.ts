import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import { hmacSha256, sha256Hex } from '../core/crypto.ts'
import { newId } from '../core/ids.ts'
import type { DB } from '../storage/schema.ts'

/** The key that wraps every per-org key. Lives outside the database (env var or a 0600 file). */
export interface MasterKey {
  readonly id: string
  readonly key: Buffer
}

export function masterKeyFromHex(hex: string): MasterKey {
  const key = Buffer.from(hex, 'hex')
  if (key.length !== 32) throw new Error('master key must be 32 bytes')
  return { id: sha256Hex(key).slice(0, 16), key }
}

/** `fingerprint`: prompt fingerprints and pseudonyms (D1, D13); `data`: sealing the org's stored secrets and artifacts. */
export type OrgKeyPurpose = 'fingerprint' | 'data'

/** AES-256-GCM with a fresh 96-bit nonce; the org id and purpose are bound in as associated data. */
export function wrapKey(master: MasterKey, orgId: string, purpose: string, plain: Buffer): string {
  const nonce = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', master.key, nonce)
  c.setAAD(Buffer.from(`${orgId}\0${purpose}`))
  const ct = Buffer.concat([c.update(plain), c.final()])
  return ['v1', nonce.toString('base64url'), ct.toString('base64url'), c.getAuthTag().toString('base64url')].join('.')
}

export function unwrapKey(master: MasterKey, orgId: string, purpose: string, wrapped: string): Buffer {
  const [v, n, ct, tag] = wrapped.split('.')
  if (v !== 'v1' || !n || !ct || !tag) throw new Error('unknown wrapped key format')
  const d = createDecipheriv('aes-256-gcm', master.key, Buffer.from(n, 'base64url'))
  d.setAAD(Buffer.from(`${orgId}\0${purpose}`))
  d.setAuthTag(Buffer.from(tag, 'base64url'))
  return Buffer.concat([d.update(Buffer.from(ct, 'base64url')), d.final()])
}

/** The org's keys were destroyed (the org was terminated): nothing can be computed under them any more. */
export class OrgKeyDestroyed extends Error {
  constructor() {
    super('org keys destroyed')
    this.name = 'OrgKeyDestroyed'
  }
}

/**
 * Per-org keys (D1, D13): prompt fingerprints and actor pseudonyms are HMACs under the org's own
 * key, so they cannot be linked across orgs, cannot be confirmed by guessing without the key,
 * and become unlinkable when the key is destroyed. Unwrapped keys are cached in memory only.
 */
export class OrgKeyring {
  readonly #cache = new Map<string, Buffer>()
  /** Pseudonyms are recomputed on every request otherwise; bounded, and forgotten with the keys. */
  readonly #pseudonyms = new Map<string, string>()

  /**
   * `previous`: master keys being rotated out (CRYPTO-2). Keys wrapped under one of them still
   * unwrap (each row names its master key id), new keys are wrapped under `master` only, and
   * `rewrap` moves every row to `master`; then the previous keys can be dropped.
   */
  constructor(
    private readonly db: Kysely<DB>,
    private readonly master: MasterKey,
    private readonly clock: Clock,
    private readonly previous: readonly MasterKey[] = [],
  ) {}

  /** The id of the master key new keys are wrapped under (public: a hash prefix, not the key). */
  get masterKeyId(): string {
    return this.master.id
  }

  /** The master key a row was wrapped under: the current one or one being rotated out. */
  #masterFor(id: string): MasterKey {
    const m = id === this.master.id ? this.master : this.previous.find((p) => p.id === id)
    if (!m) throw new Error(`wrapped under master key ${id}, which is neither TOLLGATE_MASTER_KEY nor in TOLLGATE_MASTER_KEY_PREVIOUS`)
    return m
  }

  /** Creates the org's keys inside the caller's transaction (used at org creation). */
  async createFor(trx: Kysely<DB>, orgId: string): Promise<void> {
    await this.#insert(trx, orgId, 'fingerprint')
    await this.#insert(trx, orgId, 'data')
  }

  /**
   * The org's key for `purpose`. Inside a transaction pass it as `db`: SQLite has one connection,
   * and a query through the shared handle would wait for the transaction forever.
   */
  async key(orgId: string, purpose: OrgKeyPurpose = 'fingerprint', db: Kysely<DB> = this.db): Promise<Buffer> {
    const cacheKey = `${orgId}\0${purpose}`
    const hit = this.#cache.get(cacheKey)
    if (hit) return hit
    let row = await db.selectFrom('org_key').select(['wrapped', 'master_key_id'])
      .where('org_id', '=', orgId).where('purpose', '=', purpose).where('destroyed_at', 'is', null)
      .executeTakeFirst()
    if (!row) {
      // A terminated (or purged) org's keys were destroyed: never mint it a new one (D13).
      const org = await db.selectFrom('org').select('terminated_at').where('id', '=', orgId).executeTakeFirst()
      if (!org || org.terminated_at !== null) throw new OrgKeyDestroyed()
      // An org created before this key existed: create it now. A concurrent creator wins the
      // unique index; we then read theirs.
      await this.#insert(db, orgId, purpose).catch(() => undefined)
      row = await db.selectFrom('org_key').select(['wrapped', 'master_key_id'])
        .where('org_id', '=', orgId).where('purpose', '=', purpose).where('destroyed_at', 'is', null)
        .executeTakeFirstOrThrow()
    }
    const key = unwrapKey(this.#masterFor(row.master_key_id), orgId, purpose, row.wrapped)
    this.#cache.set(cacheKey, key)
    return key
  }

  /** HMAC-SHA-256 of a prompt under the org key, base64url (43 chars). */
  async fingerprint(orgId: string, text: string, db?: Kysely<DB>): Promise<string> {
    return hmacSha256(await this.key(orgId, 'fingerprint', db), `prompt\0${text}`).toString('base64url')
  }

  /** A stable pseudonym for a principal (user or key id) within one org: 128 bits, base64url. */
  async pseudonym(orgId: string, principalId: string, db?: Kysely<DB>): Promise<string> {
    const cacheKey = `${orgId}\0${principalId}`
    const hit = this.#pseudonyms.get(cacheKey)
    if (hit) return hit
    const p = hmacSha256(await this.key(orgId, 'fingerprint', db), `actor\0${principalId}`).subarray(0, 16).toString('base64url')
    if (this.#pseudonyms.size >= 10_000) this.#pseudonyms.clear()
    this.#pseudonyms.set(cacheKey, p)
    return p
  }

  /**
   * An instance-wide secret for `purpose` (derived with HKDF from one random instance key that
   * is wrapped under the master key like org keys): identity pseudonyms, flow-cookie sealing, CSRF.
   */
  async instanceKey(purpose: 'identity' | 'flow' | 'csrf' | 'replay', db: Kysely<DB> = this.db): Promise<Buffer> {
    const cacheKey = `instance\0${purpose}`
    const hit = this.#cache.get(cacheKey)
    if (hit) return hit
    let row = await db.selectFrom('instance_key').select(['wrapped', 'master_key_id']).where('purpose', '=', 'instance').executeTakeFirst()
    if (!row) {
      const wrapped = wrapKey(this.master, '', 'instance', randomBytes(32))
      await db.insertInto('instance_key').values({ purpose: 'instance', wrapped, master_key_id: this.master.id, created_at: this.clock.now() })
        .onConflict((oc) => oc.column('purpose').doNothing()).execute()
      row = await db.selectFrom('instance_key').select(['wrapped', 'master_key_id']).where('purpose', '=', 'instance').executeTakeFirstOrThrow()
    }
    const base = unwrapKey(this.#masterFor(row.master_key_id), '', 'instance', row.wrapped)
    const key = Buffer.from(hkdfSync('sha256', base, Buffer.alloc(0), `tollgate ${purpose}`, 32))
    this.#cache.set(cacheKey, key)
    return key
  }

  /**
   * Crypto-shreds every key of the org inside the caller's transaction (D13, RIGHTS-2): the
   * wrapped key is cleared and `destroyed_at` set, so fingerprints and pseudonyms under it can
   * never be computed again. Call `forget(orgId)` once the transaction commits; other instances
   * drop their copies with `forgetDestroyed` (a scheduled job).
   */
  async destroy(trx: Kysely<DB>, orgId: string): Promise<number> {
    const r = await trx.updateTable('org_key').set({ wrapped: '', destroyed_at: this.clock.now() })
      .where('org_id', '=', orgId).where('destroyed_at', 'is', null).executeTakeFirst()
    return Number(r.numUpdatedRows)
  }

  /** Drops from memory the keys of orgs whose keys another instance destroyed; returns how many orgs. */
  async forgetDestroyed(): Promise<number> {
    const cached = new Set([...this.#cache.keys(), ...this.#pseudonyms.keys()].map((k) => k.slice(0, k.indexOf('\0'))).filter((o) => o !== 'instance'))
    if (cached.size === 0) return 0
    const live = new Set((await this.db.selectFrom('org_key').select('org_id').distinct()
      .where('org_id', 'in', [...cached]).where('destroyed_at', 'is', null).execute()).map((r) => r.org_id))
    let n = 0
    for (const orgId of cached) {
      if (live.has(orgId)) continue
      this.forget(orgId)
      n++
    }
    return n
  }

  /** Forgets cached keys (after destruction or master-key rotation). */
  forget(orgId?: string): void {
    if (orgId === undefined) {
      this.#cache.clear()
      this.#pseudonyms.clear()
    } else {
      for (const m of [this.#cache, this.#pseudonyms]) for (const k of m.keys()) if (k.startsWith(`${orgId}\0`)) m.delete(k)
    }
  }

  /**
   * CRYPTO-2: re-wraps every live org key and the instance key still wrapped under a previous
   * master key under the current one, row by row — each a conditional UPDATE (`master_key_id`
   * unchanged), so concurrent rewraps or instances never clobber each other, and instances that
   * hold both keys serve throughout. The unwrapped keys are unchanged: fingerprints, pseudonyms
   * and sealed data stay valid. Returns how many rows moved.
   */
  async rewrap(): Promise<{ orgKeys: number; instanceKeys: number; remaining: number }> {
    let orgKeys = 0
    const rows = await this.db.selectFrom('org_key').select(['id', 'org_id', 'purpose', 'wrapped', 'master_key_id'])
      .where('destroyed_at', 'is', null).where('master_key_id', '!=', this.master.id).execute()
    for (const r of rows) {
      const plain = unwrapKey(this.#masterFor(r.master_key_id), r.org_id, r.purpose, r.wrapped)
      const u = await this.db.updateTable('org_key').set({ wrapped: wrapKey(this.master, r.org_id, r.purpose, plain), master_key_id: this.master.id })
        .where('id', '=', r.id).where('master_key_id', '=', r.master_key_id).where('destroyed_at', 'is', null).executeTakeFirst()
      orgKeys += Number(u.numUpdatedRows)
    }
    let instanceKeys = 0
    const inst = await this.db.selectFrom('instance_key').select(['purpose', 'wrapped', 'master_key_id']).where('master_key_id', '!=', this.master.id).execute()
    for (const r of inst) {
      const plain = unwrapKey(this.#masterFor(r.master_key_id), '', 'instance', r.wrapped)
      const u = await this.db.updateTable('instance_key').set({ wrapped: wrapKey(this.master, '', 'instance', plain), master_key_id: this.master.id })
        .where('purpose', '=', r.purpose).where('master_key_id', '=', r.master_key_id).executeTakeFirst()
      instanceKeys += Number(u.numUpdatedRows)
    }
    const left = await this.db.selectFrom('org_key').select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('destroyed_at', 'is', null).where('master_key_id', '!=', this.master.id).executeTakeFirstOrThrow()
    return { orgKeys, instanceKeys, remaining: Number(left.n) }
  }

  async #insert(db: Kysely<DB>, orgId: string, purpose: OrgKeyPurpose): Promise<void> {
    await db.insertInto('org_key').values({
      id: newId(), org_id: orgId, purpose, wrapped: wrapKey(this.master, orgId, purpose, randomBytes(32)),
      master_key_id: this.master.id, created_at: this.clock.now(), destroyed_at: null,
    }).execute()
  }
}
