import { hkdfSync, randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import { hmacSha256 } from '../core/crypto.ts'
import { TollgateError } from '../core/errors.ts'
import { newId } from '../core/ids.ts'
import type { DB } from '../storage/schema.ts'
import { KekMissing, type KeyVault } from './vault.ts'
import { unwrapKey, wrapKey, type MasterKey } from './wrap.ts'


/** `fingerprint`: prompt fingerprints and pseudonyms (D1, D13); `data`: sealing the org's stored secrets and artifacts. */
export type OrgKeyPurpose = 'fingerprint' | 'data'

/**
 * The org's keys were destroyed (the org was terminated, or — in a restored backup — its KEK is no
 * longer in the key vault): nothing can be computed under them any more. A route that meets it
 * answers 404, as for an org that does not exist.
 */
export class OrgKeyDestroyed extends TollgateError {
  constructor() {
    super('not_found')
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
   *
   * `vault` (D13, TOLLGATE_KEY_VAULT_DIR): new org keys are sealed under the org's KEK in the vault
   * first, then wrapped under the master key (row `vault` = 1), so both are needed to open them and
   * destroying the KEK makes the copies in old backups unopenable. Rows without it (`vault` = 0,
   * made before a vault was configured) open with the master key alone until `rewrap` seals them.
   */
  constructor(
    private readonly db: Kysely<DB>,
    private readonly master: MasterKey,
    private readonly clock: Clock,
    private readonly previous: readonly MasterKey[] = [],
    private readonly vault?: KeyVault,
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
    let row = await db.selectFrom('org_key').select(['wrapped', 'master_key_id', 'vault'])
      .where('org_id', '=', orgId).where('purpose', '=', purpose).where('destroyed_at', 'is', null)
      .executeTakeFirst()
    if (!row) {
      // A terminated (or purged) org's keys were destroyed: never mint it a new one (D13).
      const org = await db.selectFrom('org').select('terminated_at').where('id', '=', orgId).executeTakeFirst()
      if (!org || org.terminated_at !== null) throw new OrgKeyDestroyed()
      // An org created before this key existed: create it now. A concurrent creator wins the
      // unique index; we then read theirs.
      await this.#insert(db, orgId, purpose).catch(() => undefined)
      row = await db.selectFrom('org_key').select(['wrapped', 'master_key_id', 'vault'])
        .where('org_id', '=', orgId).where('purpose', '=', purpose).where('destroyed_at', 'is', null)
        .executeTakeFirstOrThrow()
    }
    const outer = unwrapKey(this.#masterFor(row.master_key_id), orgId, purpose, row.wrapped)
    const key = row.vault === 1 ? await this.#openInner(orgId, outer) : outer
    this.#cache.set(cacheKey, key)
    return key
  }

  /** The inner layer: the org key sealed under the org's KEK. A KEK no longer in the vault means the org was shredded. */
  async #openInner(orgId: string, inner: Buffer): Promise<Buffer> {
    if (!this.vault) throw new Error('this org key is sealed in a key vault: configure the key vault it was created with (TOLLGATE_KEY_VAULT_DIR or TOLLGATE_KEY_VAULT_AWS_KMS_REGION)')
    try {
      return await this.vault.open(orgId, inner.toString('utf8'))
    } catch (err) {
      if (err instanceof KekMissing) throw new OrgKeyDestroyed()
      throw err
    }
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
   * The pseudonym, or undefined when the org's keys cannot be opened any more (OrgKeyDestroyed: a
   * terminated org, or a shredded one in a restored backup), for audit entries about a person that
   * go to each of their orgs' chains: a shredded org's chain takes none.
   */
  async livePseudonym(orgId: string, principalId: string, db?: Kysely<DB>): Promise<string | undefined> {
    try {
      return await this.pseudonym(orgId, principalId, db)
    } catch (err) {
      if (err instanceof OrgKeyDestroyed) return undefined
      throw err
    }
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
   * never be computed again. Call `shred(orgId)` once the transaction commits; other instances
   * drop their copies with `forgetDestroyed` (a scheduled job).
   *
   * The KEK in the vault is deleted only after that commit (`shred`), never inside the
   * transaction: a rollback must not leave a live org whose keys cannot open. A crash between the
   * commit and the deletion leaves the rows destroyed with `vault` = 1 — the deletion still
   * pending — and `shredPending` (a scheduled job) or the purge finishes it.
   */
  async destroy(trx: Kysely<DB>, orgId: string): Promise<number> {
    const r = await trx.updateTable('org_key').set({ wrapped: '', destroyed_at: this.clock.now() })
      .where('org_id', '=', orgId).where('destroyed_at', 'is', null).executeTakeFirst()
    return Number(r.numUpdatedRows)
  }

  /**
   * After the transaction that destroyed the org's keys commits: forgets them here and deletes the
   * org's KEK from the vault (D13: copies of its keys in old backups stop opening), then marks the
   * destroyed rows done (`vault` = 0). Does nothing to the vault while the org has any live key,
   * so it is safe to call at any time; idempotent.
   */
  async shred(orgId: string, db: Kysely<DB> = this.db): Promise<void> {
    this.forget(orgId)
    if (!this.vault) return
    const rows = await db.selectFrom('org_key').select('destroyed_at').where('org_id', '=', orgId).where('vault', '=', 1).execute()
    if (rows.length === 0 || rows.some((r) => r.destroyed_at === null)) return
    await this.vault.destroy(orgId)
    await db.updateTable('org_key').set({ vault: 0 }).where('org_id', '=', orgId).where('destroyed_at', 'is not', null).execute()
  }

  /** Finishes KEK deletions a crash interrupted (destroyed rows still marked `vault` = 1); returns how many orgs. */
  async shredPending(): Promise<number> {
    if (!this.vault) return 0
    const orgs = await this.db.selectFrom('org_key').select('org_id').distinct().where('vault', '=', 1).where('destroyed_at', 'is not', null).execute()
    for (const { org_id } of orgs) await this.shred(org_id)
    return orgs.length
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
   * hold both keys serve throughout. Only the outer (master) layer changes: a key sealed in the
   * vault stays sealed under the same KEK. With a vault configured, keys made before it (master
   * only) are sealed in it too (D13). The unwrapped keys are unchanged: fingerprints, pseudonyms
   * and sealed data stay valid. Returns how many rows moved.
   */
  async rewrap(): Promise<{ orgKeys: number; instanceKeys: number; remaining: number }> {
    let orgKeys = 0
    const rows = await this.db.selectFrom('org_key').select(['id', 'org_id', 'purpose', 'wrapped', 'master_key_id', 'vault'])
      .where('destroyed_at', 'is', null)
      .where((eb) => this.vault ? eb.or([eb('master_key_id', '!=', this.master.id), eb('vault', '=', 0)]) : eb('master_key_id', '!=', this.master.id))
      .execute()
    for (const r of rows) {
      let plain = unwrapKey(this.#masterFor(r.master_key_id), r.org_id, r.purpose, r.wrapped)
      let vault = r.vault
      if (this.vault && vault === 0) {
        plain = Buffer.from(await this.vault.seal(r.org_id, plain), 'utf8')
        vault = 1
      }
      const u = await this.db.updateTable('org_key').set({ wrapped: wrapKey(this.master, r.org_id, r.purpose, plain), master_key_id: this.master.id, vault })
        .where('id', '=', r.id).where('master_key_id', '=', r.master_key_id).where('vault', '=', r.vault).where('destroyed_at', 'is', null).executeTakeFirst()
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

  /** A new org key: sealed under the org's KEK when a vault is configured, then wrapped under the master key. */
  async #insert(db: Kysely<DB>, orgId: string, purpose: OrgKeyPurpose): Promise<void> {
    const plain = randomBytes(32)
    const inner = this.vault ? Buffer.from(await this.vault.seal(orgId, plain), 'utf8') : plain
    await db.insertInto('org_key').values({
      id: newId(), org_id: orgId, purpose, wrapped: wrapKey(this.master, orgId, purpose, inner),
      master_key_id: this.master.id, vault: this.vault ? 1 : 0, created_at: this.clock.now(), destroyed_at: null,
    }).execute()
  }
}
