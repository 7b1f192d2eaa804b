import { createHash } from 'node:crypto'
import { sql, type Kysely } from 'kysely'
import { DOMAINS, INTENTS } from '../classify/facts.ts'
import type { DB } from '../storage/schema.ts'
import { decideMonth, HIDDEN, type BreakdownFigures, type ChallengeFigures, type Contribution, type Dimensions, type Month, type TotalsFigures } from './cube.ts'
import { K } from './suppress.ts'
import { DAY, monthSpans, periodOf, recentPeriods, spanId, type Granularity, type Period } from './periods.ts'

/**
 * Cohort analytics over decision records (AUDIT-4, RBAC-3): fixed cohorts only — the org, its
 * environments, its teams (each record's decision-time team), calendar periods. Per-person rows are read from the database (grouped by the
 * actor pseudonym, to count distinct people) and never leave this module: responses carry only
 * suppressed sums (cube.ts). Each month is decided as one block — every report (totals, teams,
 * each dimension's breakdown, challenges) and its month, week and day cells together — on its own
 * records, so a cell reads the same whatever report, granularity and number of periods it is
 * asked in, and no figure can be differenced against another.
 */
export const DIMENSIONS = ['outcome', 'domain', 'intent', 'rule'] as const
export type Dimension = (typeof DIMENSIONS)[number]

/** Every outcome a decision record can carry (src/gateway/context.ts), listed whether or not it occurred. */
const OUTCOMES = ['allowed', 'redacted', 'challenged', 'challenge_failed', 'blocked', 'output_blocked', 'rejected', 'upstream_error', 'aborted', 'error'] as const
export const NONE = 'none'

export interface PeriodOf<T> {
  readonly start: number
  readonly end: number
  readonly scopes: T[]
}

export class Analytics {
  /** Decided months by org and month, with a digest of the records they were decided on: decided again when those change. */
  readonly #decided = new Map<string, { readonly digest: string; readonly month: Month }>()

  constructor(private readonly db: Kysely<DB>, readonly k = K) {}

  /** Requests and distinct people per period and scope; with `byTeam`, also per team (those of the period's month). */
  async requests(orgId: string, g: Granularity, count: number, now: number, byTeam = false): Promise<Array<PeriodOf<TotalsFigures>>> {
    return this.#months(orgId, g, count, now, (month) => month.requests(byTeam))
  }

  /** Decisions per value of one dimension, per period and scope, with the scope totals. */
  async breakdown(orgId: string, dim: Dimension, g: Granularity, count: number, now: number): Promise<{ values: string[]; periods: Array<PeriodOf<BreakdownFigures>> }> {
    const seen = new Set<string>()
    const periods = await this.#months(orgId, g, count, now, (month, dims) => {
      for (const v of dims[dim]!) seen.add(v)
      return month.breakdown(dim)
    })
    const values = listed(dim, seen)
    // A value that did not occur in a period's month has no records there: "<5" like any empty cell.
    const fill = (f: BreakdownFigures): BreakdownFigures => {
      const by = new Map(f.cells.map((c) => [c.value, c.requests]))
      return { ...f, cells: values.map((value) => ({ value, requests: by.get(value) ?? HIDDEN })) }
    }
    return { values, periods: periods.map((p) => ({ ...p, scopes: p.scopes.map(fill) })) }
  }

  /** Challenge pass rates and mean reasoning scores per period and scope. */
  async challenges(orgId: string, g: Granularity, count: number, now: number): Promise<Array<PeriodOf<ChallengeFigures>>> {
    return this.#months(orgId, g, count, now, (month) => month.challenges())
  }

  /**
   * The requested periods, each read from its month's block: every month the window touches is
   * decided as a whole (every report, day, week and month cells together) from that month's
   * records alone.
   */
  async #months<T>(orgId: string, g: Granularity, count: number, now: number, read: (month: Month, dims: Dimensions) => Map<string, T[]>): Promise<Array<PeriodOf<T>>> {
    const periods = recentPeriods(g, count, now)
    const blocks = new Map<number, Map<string, T[]>>()
    for (const p of periods) {
      const month = periodOf('month', p.start)
      if (blocks.has(month.start)) continue
      const { decided, dims } = await this.#month(orgId, month)
      blocks.set(month.start, read(decided, dims))
    }
    return periods.map((p) => ({ ...p, scopes: blocks.get(periodOf('month', p.start).start)!.get(spanId(g, p))! }))
  }

  /** One month's contributions per (day, environment, person, team, outcome, domain, intent, rule, grading), decided as one block. */
  async #month(orgId: string, month: Period): Promise<{ decided: Month; dims: Dimensions }> {
    const group = ['environment', 'actor_id', 'cohort', 'outcome', 'domain', 'intent', 'rule_id', 'passed'] as const
    const rows = await this.db.selectFrom('decision')
      .select([...group, dayOf(month).as('day')])
      .select((eb) => [eb.fn.countAll<number | string>().as('n'), eb.fn.sum<number | string | null>('reasoning_score').as('s')])
      .where('org_id', '=', orgId).where('created_at', '>=', month.start).where('created_at', '<', month.end)
      .groupBy([...group, dayOf(month)]).execute()
    const contributions: Contribution[] = rows.map((r) => ({
      day: Number(r.day), environment: r.environment, actor: r.actor_id, team: r.cohort, requests: Number(r.n), scoreSum: Number(r.s ?? 0),
      values: { outcome: r.outcome, domain: r.domain ?? NONE, intent: r.intent ?? NONE, rule: r.rule_id ?? NONE },
      graded: r.passed === null ? null : Number(r.passed) === 1 ? 'passed' : 'failed',
    }))
    const dims = Object.fromEntries(DIMENSIONS.map((d) => [d, listed(d, new Set(contributions.map((c) => c.values![d]!)))]))
    const key = `${orgId}|${month.start}`
    const digest = createHash('sha256').update(JSON.stringify(contributions)).digest('base64url')
    const cached = this.#decided.get(key)
    const decided = cached?.digest === digest ? cached.month : decideMonth(contributions, monthSpans(month.start), dims, this.k)
    this.#decided.delete(key)
    this.#decided.set(key, { digest, month: decided })
    for (const old of this.#decided.keys()) if (this.#decided.size > CACHED_MONTHS) this.#decided.delete(old)
    return { decided, dims }
  }
}

/**
 * How many decided months are kept in memory, least recently read first out (a month is 0.1–5 s
 * of CPU to decide). Memory only: per-atom sums and the pseudonyms behind them, replaced as soon
 * as the month's records change (a deleted account's records are gone from it at the next read).
 */
const CACHED_MONTHS = 24

/**
 * The values a dimension lists: its fixed ones (every outcome, domain, intent) whether or not they
 * occurred, then the others that occur (rule ids are the org's own codes), then `none`.
 */
function listed(dim: Dimension, occurring: ReadonlySet<string>): string[] {
  const fixed: readonly string[] = dim === 'outcome' ? OUTCOMES : dim === 'domain' ? DOMAINS : dim === 'intent' ? INTENTS : []
  return [...new Set([...fixed, ...[...occurring].filter((v) => v !== NONE).sort(), NONE])]
}

/** The day of the month a record falls on (0 = the 1st): integer division in both dialects (created_at is a bigint ≥ month.start). */
const dayOf = (month: Period) => sql<number | string>`(created_at - ${sql.lit(month.start)}) / ${sql.lit(DAY)}`
