import type { Kysely } from 'kysely'
import { withAudit, type AuditLog } from '../audit/audit.ts'
import type { SafetyCode } from '../classify/facts.ts'
import type { Clock } from '../core/clock.ts'
import { TollgateError } from '../core/errors.ts'
import { newId } from '../core/ids.ts'
import type { Actor } from '../keys/keys.repo.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'
import { expireEach } from './expire.ts'
import { openStored, REPORT_MAX_AGE_MS, REPORT_MAX_BYTES, sealStored, utf8Bytes } from './sealing.ts'

export const REPORT_OUTCOMES = ['actioned', 'dismissed'] as const
export type ReportOutcome = (typeof REPORT_OUTCOMES)[number]

/** What is shown about a report without opening it (the reporter's own view). */
export interface ReportInfo {
  readonly id: string
  readonly category: SafetyCode
  readonly decisionId: string | null
  readonly createdAt: number
  /** When it is deleted if nobody reviews it first: 30 days after submission. */
  readonly purgeBy: number
}

/** A report in the review queue: opened, the reporter named only by their pseudonym in the org. */
export interface OpenedReport extends ReportInfo {
  readonly reporter: string
  readonly text: string
}

type Sealed = { x: string }
type Row = { id: string; category: string; decision_id: string | null; created_at: number }
const info = (r: Row): ReportInfo => ({ id: r.id, category: r.category as SafetyCode, decisionId: r.decision_id, createdAt: Number(r.created_at), purgeBy: Number(r.created_at) + REPORT_MAX_AGE_MS })
const META = ['id', 'category', 'decision_id', 'created_at'] as const
/** The queue shows the oldest reports first, this many at a time (the oldest are the nearest to deletion). */
export const QUEUE_PAGE = 100

/**
 * GW-8: reports of harmful output. A report holds only what the reporter explicitly submitted —
 * the text, a hazard category, optionally the decision id the gateway returned — sealed under the
 * org's data key until an OWNER or ADMIN reviews it. It is deleted at review (in the audited
 * transaction that resolves it), when the reporter withdraws it, or 30 days after submission by
 * the retention job at the latest; its seal stops opening at that deadline too.
 */
export class ReportStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly keyring: OrgKeyring,
  ) {}

  /** Stores a report, audited `report_submitted`; 413 text_too_large over 16 KiB. */
  async submit(input: { orgId: string; reporterId: string; text: string; category: SafetyCode; decisionId: string | null; actor: Actor }): Promise<ReportInfo> {
    const size = utf8Bytes(input.text)
    if (size > REPORT_MAX_BYTES) throw new TollgateError('text_too_large', { bytes: size }, 'body.text')
    return withAudit(this.db, async (trx) => {
      const now = this.clock.now()
      const id = newId()
      const key = await this.keyring.key(input.orgId, 'data', trx)
      const sealed = sealStored<Sealed>(key, 'report', input.orgId, id, { x: input.text }, now + REPORT_MAX_AGE_MS)
      const row = { id, org_id: input.orgId, reporter_id: input.reporterId, category: input.category, decision_id: input.decisionId, sealed, size_bytes: size, created_at: now }
      await trx.insertInto('harm_report').values(row).execute()
      await this.audit.append(trx, {
        chainId: input.orgId, actorType: input.actor.type, actorId: input.actor.id, action: 'report_submitted',
        targetType: 'report', targetId: id, outcome: 'success', requestId: input.actor.requestId ?? null,
      })
      return info(row)
    })
  }

  /** The review queue: open reports, oldest first, opened. */
  async queue(orgId: string): Promise<OpenedReport[]> {
    const now = this.clock.now()
    const rows = await this.db.selectFrom('harm_report').select([...META, 'reporter_id', 'sealed'])
      .where('org_id', '=', orgId).where('created_at', '>', now - REPORT_MAX_AGE_MS)
      .orderBy('created_at').orderBy('id').limit(QUEUE_PAGE).execute()
    const key = await this.keyring.key(orgId, 'data')
    const out: OpenedReport[] = []
    for (const r of rows) {
      const opened = openStored<Sealed>(key, 'report', orgId, r.id, r.sealed, now)
      if (opened) out.push({ ...info(r), reporter: r.reporter_id, text: opened.x })
    }
    return out
  }

  /**
   * Review: the report is deleted, in the transaction that records the outcome in the audit log
   * (`report_actioned` or `report_dismissed`, by the reviewer's pseudonym). False when it is not open.
   */
  async resolve(input: { orgId: string; id: string; outcome: ReportOutcome; actor: Actor }): Promise<boolean> {
    return this.#remove(input.orgId, input.id, undefined, input.outcome === 'actioned' ? 'report_actioned' : 'report_dismissed', input.actor)
  }

  /** The reporter takes back their own open report: deleted at once, audited `report_withdrawn`. */
  async withdraw(input: { orgId: string; reporterId: string; id: string; actor: Actor }): Promise<boolean> {
    return this.#remove(input.orgId, input.id, input.reporterId, 'report_withdrawn', input.actor)
  }

  /**
   * The retention job: deletes every report whose 30-day deadline falls before the job's next run
   * (so none outlives it), each audited `report_expired` by the system. Safe on several instances.
   */
  async purgeExpired(everyMs: number): Promise<number> {
    const cutoff = this.clock.now() - REPORT_MAX_AGE_MS + everyMs
    const due = await this.db.selectFrom('harm_report').select(['id', 'org_id']).where('created_at', '<=', cutoff).orderBy('created_at').execute()
    return expireEach(this.db, this.audit, due, async (trx, id) => {
      const r = await trx.deleteFrom('harm_report').where('id', '=', id).where('created_at', '<=', cutoff).executeTakeFirst()
      return Number(r.numDeletedRows) === 1
    }, { action: 'report_expired', targetType: 'report' })
  }

  async #remove(orgId: string, id: string, reporterId: string | undefined, action: string, actor: Actor): Promise<boolean> {
    return withAudit(this.db, async (trx) => {
      let q = trx.deleteFrom('harm_report').where('id', '=', id).where('org_id', '=', orgId)
      if (reporterId !== undefined) q = q.where('reporter_id', '=', reporterId)
      const r = await q.executeTakeFirst()
      if (Number(r.numDeletedRows) !== 1) return false
      await this.audit.append(trx, {
        chainId: orgId, actorType: actor.type, actorId: actor.id, action, targetType: 'report', targetId: id, outcome: 'success', requestId: actor.requestId ?? null,
      })
      return true
    })
  }
}

/** The reporter's own open reports at `now`, metadata only (the account export, RIGHTS-1). */
export async function reportsBy(db: Kysely<DB>, orgId: string, reporterId: string, now: number): Promise<ReportInfo[]> {
  const rows = await db.selectFrom('harm_report').select([...META])
    .where('org_id', '=', orgId).where('reporter_id', '=', reporterId).where('created_at', '>', now - REPORT_MAX_AGE_MS)
    .orderBy('created_at').orderBy('id').execute()
  return rows.map(info)
}
