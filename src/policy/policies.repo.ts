import { PostgresAdapter, sql, type Kysely, type Transaction } from 'kysely'
import { withAudit, type AuditLog } from '../audit/audit.ts'
import type { Clock } from '../core/clock.ts'
import { TollgateError } from '../core/errors.ts'
import { newId } from '../core/ids.ts'
import type { Environment } from '../core/model.ts'
import type { Actor } from '../keys/keys.repo.ts'
import type { DB } from '../storage/schema.ts'
import { DEFAULT_POLICY } from './default-policy.ts'
import type { PolicyDocument } from './document.ts'
import { validatePolicy } from './validate.ts'
import { needsModel } from './evaluate.ts'

/** Row type of the `policy` table (migration 0003-policy). Timestamps in ms since the epoch. */
export interface PolicyTable {
  id: string
  org_id: string
  environment: string
  /** 1, 2, 3… per (org, environment). A draft keeps its number while it is edited; an active policy never changes. */
  version: number
  /** The normalized document as JSON: labels, codes, numbers and flags only. */
  document: string
  status: string
  /** For a production policy: the sandbox policy it was promoted from. */
  source_id: string | null
  created_at: number
  /** The creator's pseudonym in the org (D13); null for the operator. */
  created_by: string | null
  updated_at: number
  activated_at: number | null
  /** When the current document last passed through a sandbox test (reset by every edit). */
  tested_at: number | null
  retired_at: number | null
}

/** Row type of the `org_setting` table (migration 0003-policy). */
export interface OrgSettingTable {
  org_id: string
  /** DATA-4: 1 only after an explicit, audited opt-in. Tollgate itself never trains on content. */
  training_consent: number
  /** GW-3: `off`, `low_margin` or `always`; null follows TOLLGATE_CLASSIFIER_LLM. */
  classifier_llm: string | null
  /** RIGHTS-3: 1 only after an OWNER's audited opt-in: members may then save outputs (migration 0011). */
  workspace: number
  updated_at: number
  updated_by: string | null
}

/** The tables of migration 0003, beside the shared `DB` row types. */
export type PolicyDB = DB & { policy: PolicyTable; org_setting: OrgSettingTable }

export const POLICY_STATUSES = ['draft', 'active', 'retired'] as const
export type PolicyStatus = (typeof POLICY_STATUSES)[number]

export interface StoredPolicy {
  readonly id: string
  readonly orgId: string
  readonly environment: Environment
  readonly version: number
  readonly document: PolicyDocument
  readonly status: PolicyStatus
  readonly sourceId: string | null
  readonly createdAt: number
  readonly createdBy: string | null
  readonly updatedAt: number
  readonly activatedAt: number | null
  readonly testedAt: number | null
  readonly retiredAt: number | null
}

/** The policy in force for an org and environment: a stored one, or the built-in default (`id` null). */
export interface ActivePolicy {
  readonly id: string | null
  readonly version: number | null
  readonly document: PolicyDocument
}

/**
 * Served when a stored document no longer validates (it never should: documents are validated
 * before they are stored). Fail-closed: everything is blocked with a reason code that says why.
 */
export const INVALID_STORED_POLICY: PolicyDocument = (() => {
  const r = validatePolicy({ version: 1, default_action: 'block', rules: [{ id: 'stored-policy-invalid', when: {}, action: 'block', reason: 'policy_invalid' }] })
  if (!r.ok) throw new Error('unreachable')
  return r.doc
})()

export interface PolicyStoreOptions {
  /**
   * How long `activeFor` serves a cached policy before reading the database again. Changes made
   * through this store are seen at once on this instance; other instances see them within this
   * time (a TTL, not a version check, so the hot path never waits on the database). Default 5 s.
   */
  readonly cacheTtlMs?: number
}

interface CacheEntry {
  readonly value: ActivePolicy
  readonly loadedAt: number
  /** Bumped by `invalidate`: a load that started before an invalidation is not cached. */
  readonly generation: number
}

/**
 * Policies per org and environment (GW-4). The lifecycle, each step audited in the org's chain
 * together with its effect (no audit entry, no change):
 *
 *   createDraft (sandbox) → updateDraft* → activate (sandbox) → recordTest → promote → a new
 *   production version, active; the production version it replaces is retired. retire: any time.
 *
 * Promotion needs a sandbox policy that is active and whose current document was tested.
 * Documents are validated before they are stored and stored normalized.
 */
export class PolicyStore {
  readonly #cache = new Map<string, CacheEntry>()
  readonly #loading = new Map<string, Promise<ActivePolicy>>()
  #generation = 0
  readonly #ttlMs: number
  readonly #db: Kysely<PolicyDB>
  readonly #postgres: boolean

  constructor(
    db: Kysely<DB>,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    opts: PolicyStoreOptions = {},
  ) {
    this.#db = db as unknown as Kysely<PolicyDB>
    this.#postgres = db.getExecutor().adapter instanceof PostgresAdapter
    this.#ttlMs = opts.cacheTtlMs ?? 5_000
  }

  async list(orgId: string, filter: { environment?: Environment; status?: PolicyStatus } = {}): Promise<StoredPolicy[]> {
    let q = this.#db.selectFrom('policy').selectAll().where('org_id', '=', orgId)
    if (filter.environment !== undefined) q = q.where('environment', '=', filter.environment)
    if (filter.status !== undefined) q = q.where('status', '=', filter.status)
    const rows = await q.orderBy('environment').orderBy('version', 'desc').execute()
    return rows.map(present)
  }

  async get(orgId: string, id: string, db: Kysely<PolicyDB> = this.#db): Promise<StoredPolicy | undefined> {
    const row = await db.selectFrom('policy').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst()
    return row && present(row)
  }

  /** A new sandbox draft. `document` is untrusted input: invalid → TollgateError invalid_request (validate first to get the problems). */
  async createDraft(input: { orgId: string; document: unknown; actor: Actor }): Promise<StoredPolicy> {
    const doc = mustValidate(input.document)
    return this.#change(input.orgId, input.actor, 'policy_created', async (trx, now) => {
      const row: PolicyTable = {
        id: newId(), org_id: input.orgId, environment: 'sandbox', version: await nextVersion(trx, input.orgId, 'sandbox'), document: JSON.stringify(doc),
        status: 'draft', source_id: null, created_at: now, created_by: input.actor.id, updated_at: now, activated_at: null, tested_at: null, retired_at: null,
      }
      await trx.insertInto('policy').values(row).execute()
      return present(row)
    })
  }

  /** Replaces a draft's document (its earlier sandbox test no longer counts). Only drafts change. */
  async updateDraft(input: { orgId: string; id: string; document: unknown; actor: Actor }): Promise<StoredPolicy> {
    const doc = mustValidate(input.document)
    return this.#change(input.orgId, input.actor, 'policy_updated', async (trx, now) => {
      const p = await this.#load(trx, input.orgId, input.id)
      if (p.status !== 'draft') throw new TollgateError('conflict', { reason: 'policy_not_draft' }, 'status')
      await trx.updateTable('policy').set({ document: JSON.stringify(doc), updated_at: now, tested_at: null }).where('id', '=', p.id).execute()
      return { ...p, document: doc, updatedAt: now, testedAt: null }
    })
  }

  /** Makes a sandbox draft the active sandbox policy; the one it replaces is retired. */
  async activate(input: { orgId: string; id: string; actor: Actor }): Promise<StoredPolicy> {
    return this.#change(input.orgId, input.actor, 'policy_activated', async (trx, now) => {
      const p = await this.#load(trx, input.orgId, input.id)
      if (p.environment !== 'sandbox' || p.status !== 'draft') throw new TollgateError('conflict', { reason: 'policy_not_sandbox_draft' }, 'status')
      await this.#retireActive(trx, input.orgId, 'sandbox', now, input.actor)
      await trx.updateTable('policy').set({ status: 'active', activated_at: now, updated_at: now }).where('id', '=', p.id).execute()
      return { ...p, status: 'active' as const, activatedAt: now, updatedAt: now }
    })
  }

  /**
   * Records that the policy's current document went through a sandbox dry run (the samples and
   * results themselves are never stored). Only sandbox drafts and active sandbox policies.
   */
  async recordTest(input: { orgId: string; id: string; actor: Actor }): Promise<StoredPolicy> {
    return this.#change(input.orgId, input.actor, 'policy_tested', async (trx, now) => {
      const p = await this.#load(trx, input.orgId, input.id)
      if (p.environment !== 'sandbox' || p.status === 'retired') throw new TollgateError('conflict', { reason: 'policy_not_testable' }, 'status')
      await trx.updateTable('policy').set({ tested_at: now }).where('id', '=', p.id).execute()
      return { ...p, testedAt: now }
    })
  }

  /**
   * Promotes an active, tested sandbox policy: its document becomes a new production version,
   * active at once; the production version it replaces is retired.
   */
  async promote(input: { orgId: string; id: string; actor: Actor }): Promise<StoredPolicy> {
    return this.#change(input.orgId, input.actor, 'policy_promoted', async (trx, now) => {
      const p = await this.#load(trx, input.orgId, input.id)
      if (p.environment !== 'sandbox' || p.status !== 'active') throw new TollgateError('conflict', { reason: 'policy_not_active_in_sandbox' }, 'status')
      if (p.testedAt === null) throw new TollgateError('conflict', { reason: 'policy_not_tested' }, 'tested_at')
      await this.#retireActive(trx, input.orgId, 'production', now, input.actor)
      const row: PolicyTable = {
        id: newId(), org_id: input.orgId, environment: 'production', version: await nextVersion(trx, input.orgId, 'production'), document: JSON.stringify(p.document),
        status: 'active', source_id: p.id, created_at: now, created_by: input.actor.id, updated_at: now, activated_at: now, tested_at: p.testedAt, retired_at: null,
      }
      await trx.insertInto('policy').values(row).execute()
      return present(row)
    }, (created) => created.id)
  }

  /** Retires a draft or an active policy (an environment left without one falls back to the default policy). */
  async retire(input: { orgId: string; id: string; actor: Actor }): Promise<StoredPolicy> {
    return this.#change(input.orgId, input.actor, 'policy_retired', async (trx, now) => {
      const p = await this.#load(trx, input.orgId, input.id)
      if (p.status === 'retired') throw new TollgateError('conflict', { reason: 'policy_already_retired' }, 'status')
      await trx.updateTable('policy').set({ status: 'retired', retired_at: now, updated_at: now }).where('id', '=', p.id).execute()
      return { ...p, status: 'retired' as const, retiredAt: now, updatedAt: now }
    })
  }

  /**
   * The policy in force for an org and environment, or the built-in default. Cached in memory
   * (see `cacheTtlMs`); concurrent misses share one read; if the database cannot be read, a
   * stale cached policy keeps being served until it can.
   */
  /** Whether any org's active policy needs the embedding model (then it is loaded at start). */
  async anyActiveNeedsModel(): Promise<boolean> {
    const rows = await this.#db.selectFrom('policy').select('document').where('status', '=', 'active').execute()
    return rows.some((r) => needsModel(JSON.parse(r.document) as PolicyDocument))
  }

  async activeFor(orgId: string, environment: Environment): Promise<ActivePolicy> {
    const key = `${orgId}\0${environment}`
    const hit = this.#cache.get(key)
    if (hit && hit.generation === this.#generation && this.clock.now() - hit.loadedAt < this.#ttlMs) return hit.value
    const inflight = this.#loading.get(key)
    if (inflight) return inflight
    const generation = this.#generation
    const load = this.#readActive(orgId, environment).then(
      (value) => {
        if (generation === this.#generation) {
          if (this.#cache.size >= 10_000) this.#cache.clear()
          this.#cache.set(key, { value, loadedAt: this.clock.now(), generation })
        }
        return value
      },
      (err: unknown) => {
        if (hit) return hit.value
        throw err
      },
    ).finally(() => {
      if (this.#loading.get(key) === load) this.#loading.delete(key)
    })
    this.#loading.set(key, load)
    return load
  }

  /** Forgets cached policies (all of them: changes are rare and reloading is cheap). */
  invalidate(_orgId?: string): void {
    this.#generation++
    this.#cache.clear()
    this.#loading.clear()
  }

  async #readActive(orgId: string, environment: Environment): Promise<ActivePolicy> {
    const row = await this.#db.selectFrom('policy').select(['id', 'version', 'document'])
      .where('org_id', '=', orgId).where('environment', '=', environment).where('status', '=', 'active').executeTakeFirst()
    if (!row) return { id: null, version: null, document: DEFAULT_POLICY }
    return { id: row.id, version: row.version, document: parseStored(row.document) }
  }

  async #load(trx: Kysely<PolicyDB>, orgId: string, id: string): Promise<StoredPolicy> {
    const p = await this.get(orgId, id, trx)
    if (!p) throw new TollgateError('not_found')
    return p
  }

  /** Retires the active policy of an environment, if any, with its own audit entry. */
  async #retireActive(trx: Transaction<PolicyDB>, orgId: string, environment: Environment, now: number, actor: Actor): Promise<void> {
    const current = await trx.selectFrom('policy').select('id').where('org_id', '=', orgId).where('environment', '=', environment).where('status', '=', 'active').executeTakeFirst()
    if (!current) return
    await trx.updateTable('policy').set({ status: 'retired', retired_at: now, updated_at: now }).where('id', '=', current.id).execute()
    await this.audit.append(trx as unknown as Transaction<DB>, { chainId: orgId, actorType: actor.type, actorId: actor.id, action: 'policy_retired', targetType: 'policy', targetId: current.id, outcome: 'success', requestId: actor.requestId ?? null })
  }

  /** Runs a change and its audit entry in one transaction, then drops cached policies. */
  async #change<T extends { id: string }>(
    orgId: string, actor: Actor, action: string,
    fn: (trx: Transaction<PolicyDB>, now: number) => Promise<T>, target: (r: T) => string = (r) => r.id,
  ): Promise<T> {
    const result = await withAudit(this.#db as unknown as Kysely<DB>, async (trx) => {
      const t = trx as unknown as Transaction<PolicyDB>
      // PostgreSQL: one policy change per org at a time, so version numbers and the single active
      // policy per environment are decided in order instead of by unique-index races and retries.
      // (SQLite runs one write transaction at a time already.)
      if (this.#postgres) await sql`select pg_advisory_xact_lock(hashtextextended(${`tollgate_policy:${orgId}`}, 0))`.execute(trx)
      const r = await fn(t, this.clock.now())
      await this.audit.append(trx, { chainId: orgId, actorType: actor.type, actorId: actor.id, action, targetType: 'policy', targetId: target(r), outcome: 'success', requestId: actor.requestId ?? null })
      return r
    })
    // After the commit: a load that raced with the change is not cached (generation bump).
    this.invalidate(orgId)
    return result
  }
}

function mustValidate(document: unknown): PolicyDocument {
  const r = validatePolicy(document)
  if (!r.ok) throw new TollgateError('invalid_request', { reason: 'invalid_policy', problems: r.problems.length }, 'document')
  return r.doc
}

async function nextVersion(trx: Kysely<PolicyDB>, orgId: string, environment: Environment): Promise<number> {
  const row = await trx.selectFrom('policy').select((eb) => eb.fn.max('version').as('v')).where('org_id', '=', orgId).where('environment', '=', environment).executeTakeFirst()
  return Number(row?.v ?? 0) + 1
}

function parseStored(json: string): PolicyDocument {
  let raw: unknown
  try {
    raw = JSON.parse(json)
  } catch {
    return INVALID_STORED_POLICY
  }
  const r = validatePolicy(raw)
  return r.ok ? r.doc : INVALID_STORED_POLICY
}

function present(row: PolicyTable): StoredPolicy {
  return {
    id: row.id, orgId: row.org_id, environment: row.environment as Environment, version: Number(row.version), document: parseStored(row.document),
    status: row.status as PolicyStatus, sourceId: row.source_id, createdAt: row.created_at, createdBy: row.created_by, updatedAt: row.updated_at,
    activatedAt: row.activated_at, testedAt: row.tested_at, retiredAt: row.retired_at,
  }
}
