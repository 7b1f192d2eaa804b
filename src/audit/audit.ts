import { sql, type Kysely, type Transaction } from 'kysely'
import type { Clock } from '../core/clock.ts'
import { sha256Hex } from '../core/crypto.ts'
import type { Dialect } from '../storage/database.ts'
import type { DB, AuditEventTable } from '../storage/schema.ts'

export type ActorType = 'operator' | 'user' | 'api_key' | 'system' | 'anonymous'

/** One audit event. Names follow the OWASP logging vocabulary; ids are pseudonymous; no secrets, no text. */
export interface AuditEvent {
  /** The org whose chain receives the event, or `instance` for instance-level events. */
  readonly chainId: string
  readonly actorType: ActorType
  readonly actorId: string | null
  readonly action: string
  readonly targetType?: string | null
  readonly targetId?: string | null
  readonly outcome: 'success' | 'failure' | 'denied'
  readonly requestId?: string | null
}

export const INSTANCE_CHAIN = 'instance'
export const GENESIS = '0'.repeat(64)

type Hashed = Omit<AuditEventTable, 'hash'>

/** The link hash: SHA-256 over the previous hash and every field of the entry, in a fixed order. */
export function linkHash(e: Hashed): string {
  return sha256Hex(JSON.stringify([e.prev_hash, e.chain_id, e.seq, e.at, e.actor_type, e.actor_id, e.action, e.target_type, e.target_id, e.outcome, e.request_id]))
}

/**
 * Append-only, hash-chained audit log (AUDIT-1, AUDIT-3): one chain per org. `append` runs in
 * the caller's transaction, so an effect and its audit entry commit together or not at all —
 * an admin operation whose audit write fails does not happen (D8, fail closed).
 */
export class AuditLog {
  /** Signs checkpoints (D9); set once the signing key is loaded. Without it the chain is unsigned. */
  checkpointer: { appended(trx: Transaction<DB> | Kysely<DB>, entry: Pick<AuditEventTable, 'chain_id' | 'seq' | 'hash'>): Promise<void> } | undefined
  /** Told of every entry in its transaction: marks an idempotent admin request's effect (LIMIT-2). */
  onAppend: ((trx: Transaction<DB> | Kysely<DB>, e: AuditEvent) => Promise<void>) | undefined

  constructor(private readonly clock: Clock, private readonly dialect: Dialect) {}

  async append(trx: Transaction<DB> | Kysely<DB>, e: AuditEvent): Promise<void> {
    // PostgreSQL: appenders to one chain queue on a transaction-scoped lock instead of racing for
    // the same seq; racing made bursts of concurrent appends exhaust withAudit's retries and fail.
    // (SQLite already runs one write transaction at a time.)
    if (this.dialect === 'postgres') await sql`select pg_advisory_xact_lock(hashtextextended(${`tollgate_audit:${e.chainId}`}, 0))`.execute(trx)
    const last = await trx.selectFrom('audit_event').select(['seq', 'hash'])
      .where('chain_id', '=', e.chainId).orderBy('seq', 'desc').limit(1).executeTakeFirst()
    const row: Hashed = {
      chain_id: e.chainId,
      seq: (last?.seq ?? 0) + 1,
      at: this.clock.now(),
      actor_type: e.actorType,
      actor_id: e.actorId,
      action: e.action,
      target_type: e.targetType ?? null,
      target_id: e.targetId ?? null,
      outcome: e.outcome,
      request_id: e.requestId ?? null,
      prev_hash: last?.hash ?? GENESIS,
    }
    // A concurrent appender on another instance makes this insert hit the (chain_id, seq) key
    // and the whole transaction fail; callers retry it (see `withAudit`).
    const hash = linkHash(row)
    await trx.insertInto('audit_event').values({ ...row, hash }).execute()
    await this.checkpointer?.appended(trx, { chain_id: row.chain_id, seq: row.seq, hash })
    await this.onAppend?.(trx, e)
  }
}

/**
 * Runs `effect` and its audit entries in one transaction, retrying when a concurrent writer
 * took the same chain position. If the audit write cannot happen, neither does the effect.
 */
export async function withAudit<T>(db: Kysely<DB>, fn: (trx: Transaction<DB>) => Promise<T>, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await db.transaction().execute(fn)
    } catch (err) {
      if (i >= attempts || !isConflict(err)) throw err
      await new Promise((r) => setTimeout(r, 5 * i * Math.random()))
    }
  }
}

function isConflict(err: unknown): boolean {
  const e = err as { code?: string; message?: string }
  // SQLITE_BUSY_SNAPSHOT: in WAL mode a transaction that read first and then writes after another
  // connection (the decision writer thread) committed fails at once, without busy_timeout;
  // rerunning the whole transaction takes a fresh snapshot.
  return e?.code === '23505' || e?.code === '40001' || e?.code === '40P01' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || e?.code === 'SQLITE_BUSY' || e?.code === 'SQLITE_BUSY_SNAPSHOT'
}

export interface ChainReport {
  readonly chainId: string
  readonly entries: number
  /** The first broken link, if any: which seq and why. */
  readonly broken?: { readonly seq: number; readonly reason: string }
}

/** Walks every chain and reports the first broken link of each (edits, deletions, reorders, inserts). */
export async function verifyChains(db: Kysely<DB>): Promise<ChainReport[]> {
  const chains = await db.selectFrom('audit_event').select('chain_id').distinct().orderBy('chain_id').execute()
  const reports: ChainReport[] = []
  for (const { chain_id } of chains) {
    let prev = GENESIS
    let expected = 1
    let entries = 0
    let broken: ChainReport['broken']
    const rows = await db.selectFrom('audit_event').selectAll().where('chain_id', '=', chain_id).orderBy('seq').execute()
    for (const row of rows) {
      entries++
      if (broken) continue
      if (row.seq !== expected) broken = { seq: row.seq, reason: `expected seq ${expected} (an entry was removed or inserted)` }
      else if (row.prev_hash !== prev) broken = { seq: row.seq, reason: 'prev_hash does not match the previous entry (removed, reordered or inserted)' }
      else if (linkHash(row) !== row.hash) broken = { seq: row.seq, reason: 'hash does not match the entry (edited)' }
      prev = row.hash
      expected++
    }
    reports.push(broken ? { chainId: chain_id, entries, broken } : { chainId: chain_id, entries })
  }
  return reports
}
