import { sql, type Kysely } from 'kysely'
import { DOMAINS, INTENTS } from '../classify/facts.ts'
import type { DB } from '../storage/schema.ts'
import { breakdown, challenges, HIDDEN, overTime, type BreakdownFigures, type ChallengeFigures, type Contribution, type TotalsFigures } from './cube.ts'
import { K } from './suppress.ts'
import { DAY, monthSpans, periodOf, recentPeriods, spanId, type Granularity, type Period, type Span } from './periods.ts'

/**
 * Cohort analytics over decision records (AUDIT-4, RBAC-3): fixed cohorts only — the org, its
 * environments, its teams (each record's decision-time team), calendar periods. Per-person rows are read from the database (grouped by the
 * actor pseudonym, to count distinct people) and never leave this module: responses carry only
 * suppressed sums (cube.ts). Each month is decided as one block (its month, week and day cells
 * together) on its own records, so a cell reads the same whatever granularity and number of
 * periods is asked for, and no series can be differenced against another.
 */
export const DIMENSIONS = ['outcome', 'domain', 'intent', 'rule'] as const
export type Dimension = (typeof DIMENSIONS)[number]

/** Every outcome a decision record can carry (src/gateway/context.ts), listed whether or not it occurred. */
const OUTCOMES = ['allowed', 'redacted', 'challenged', 'challenge_failed', 'blocked', 'output_blocked', 'rejected', 'upstream_error', 'aborted', 'error'] as const
const COLUMN = { outcome: 'outcome', domain: 'domain', intent: 'intent', rule: 'rule_id' } as const
export const NONE = 'none'

export interface PeriodOf<T> {
  readonly start: number
  readonly end: number
  readonly scopes: T[]
}

export class Analytics {
  constructor(private readonly db: Kysely<DB>, readonly k = K) {}

  /** Requests and distinct people per period and scope; with `byTeam`, also per team (those of the period's month). */
  async requests(orgId: string, g: Granularity, count: number, now: number, byTeam = false): Promise<Array<PeriodOf<TotalsFigures>>> {
    return this.#months(g, count, now, async (month, spans) => overTime(await this.#rows(orgId, month, undefined), spans, this.k, byTeam))
  }

  /** Decisions per value of one dimension, per period and scope, with the scope totals. */
  async breakdown(orgId: string, dim: Dimension, g: Granularity, count: number, now: number): Promise<{ values: string[]; periods: Array<PeriodOf<BreakdownFigures>> }> {
    const fixed: readonly string[] = dim === 'outcome' ? OUTCOMES : dim === 'domain' ? DOMAINS : dim === 'intent' ? INTENTS : []
    // Rule ids are the org's own codes: a month's block lists those that occur in that month, so
    // its decisions do not depend on the window; the response lists those of every month in it.
    const listed = (rows: readonly Contribution[]) => [...new Set([...fixed, ...rows.map((r) => r.value).filter((v) => v !== NONE).sort(), NONE])]
    const seen = new Set<string>()
    const periods = await this.#months(g, count, now, async (month, spans) => {
      const rows = await this.#rows(orgId, month, dim)
      const values = listed(rows)
      for (const v of values) seen.add(v)
      return breakdown(rows, values, spans, this.k)
    })
    const values = listed([...seen].map((value) => ({ value, day: 0, environment: '', actor: null, requests: 0 })))
    // A value that did not occur in a period's month has no records there: "<5" like any empty cell.
    const fill = (f: BreakdownFigures): BreakdownFigures => {
      const by = new Map(f.cells.map((c) => [c.value, c.requests]))
      return { ...f, cells: values.map((value) => ({ value, requests: by.get(value) ?? HIDDEN })) }
    }
    return { values, periods: periods.map((p) => ({ ...p, scopes: p.scopes.map(fill) })) }
  }

  /** Challenge pass rates and mean reasoning scores per period and scope. */
  async challenges(orgId: string, g: Granularity, count: number, now: number): Promise<Array<PeriodOf<ChallengeFigures>>> {
    return this.#months(g, count, now, async (month, spans) => {
      const rows = await this.db.selectFrom('decision')
        .select(['environment', 'actor_id', 'cohort', 'passed', dayOf(month).as('day')])
        .select((eb) => [eb.fn.countAll<number | string>().as('n'), eb.fn.sum<number | string | null>('reasoning_score').as('s')])
        .where('org_id', '=', orgId).where('created_at', '>=', month.start).where('created_at', '<', month.end)
        .groupBy(['environment', 'actor_id', 'cohort', 'passed', dayOf(month)]).execute()
      return challenges(rows.map((r) => ({
        day: Number(r.day), environment: r.environment, actor: r.actor_id, team: r.cohort, requests: Number(r.n), scoreSum: Number(r.s ?? 0),
        value: r.passed === null ? NONE : Number(r.passed) === 1 ? 'passed' : 'failed',
      })), spans, this.k)
    })
  }

  /**
   * The requested periods, each read from its month's block: every month the window touches is
   * decided as a whole (day, week and month cells together) from that month's records alone.
   */
  async #months<T>(g: Granularity, count: number, now: number, decide: (month: Period, spans: Span[]) => Promise<Map<string, T[]>>): Promise<Array<PeriodOf<T>>> {
    const periods = recentPeriods(g, count, now)
    const blocks = new Map<number, Map<string, T[]>>()
    for (const p of periods) {
      const month = periodOf('month', p.start)
      if (!blocks.has(month.start)) blocks.set(month.start, await decide(month, monthSpans(month.start)))
    }
    return periods.map((p) => ({ ...p, scopes: blocks.get(periodOf('month', p.start).start)!.get(spanId(g, p))! }))
  }

  /** One month's contributions per (day, environment, value, person, team): read here, summed in cube.ts. */
  async #rows(orgId: string, month: Period, dim: Dimension | undefined): Promise<Contribution[]> {
    const base = this.db.selectFrom('decision')
      .where('org_id', '=', orgId).where('created_at', '>=', month.start).where('created_at', '<', month.end)
    if (dim === undefined) {
      const rows = await base.select(['environment', 'actor_id', 'cohort', dayOf(month).as('day')]).select((eb) => eb.fn.countAll<number | string>().as('n'))
        .groupBy(['environment', 'actor_id', 'cohort', dayOf(month)]).execute()
      return rows.map((r) => ({ day: Number(r.day), environment: r.environment, value: NONE, actor: r.actor_id, team: r.cohort, requests: Number(r.n) }))
    }
    const col = COLUMN[dim]
    const rows = await base.select(['environment', 'actor_id', 'cohort', `${col} as value`, dayOf(month).as('day')]).select((eb) => eb.fn.countAll<number | string>().as('n'))
      .groupBy(['environment', 'actor_id', 'cohort', col, dayOf(month)]).execute()
    return rows.map((r) => ({ day: Number(r.day), environment: r.environment, value: r.value === null ? NONE : String(r.value), actor: r.actor_id, team: r.cohort, requests: Number(r.n) }))
  }
}

/** The day of the month a record falls on (0 = the 1st): integer division in both dialects (created_at is a bigint ≥ month.start). */
const dayOf = (month: Period) => sql<number | string>`(created_at - ${sql.lit(month.start)}) / ${sql.lit(DAY)}`
