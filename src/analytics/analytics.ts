import type { Kysely } from 'kysely'
import { DOMAINS, INTENTS } from '../classify/facts.ts'
import type { DB } from '../storage/schema.ts'
import { breakdown, challenges, overTime, type BreakdownFigures, type ChallengeFigures, type Contribution, type TotalsFigures } from './cube.ts'
import { K } from './suppress.ts'
import { recentPeriods, type Granularity, type Period } from './periods.ts'

/**
 * Cohort analytics over decision records (AUDIT-4, RBAC-3): fixed cohorts only — the org, its
 * environments, calendar periods. Per-person rows are read from the database (grouped by the
 * actor pseudonym, to count distinct people) and never leave this module: responses carry only
 * suppressed sums (cube.ts). Each period is decided on its own records, so a cell reads the same
 * whatever number of periods is asked for.
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

  /** Requests and distinct people per period and scope. */
  async requests(orgId: string, g: Granularity, count: number, now: number): Promise<Array<PeriodOf<TotalsFigures>>> {
    return this.#each(g, count, now, async (p) => overTime(await this.#rows(orgId, p, undefined), this.k))
  }

  /** Decisions per value of one dimension, per period and scope, with the scope totals. */
  async breakdown(orgId: string, dim: Dimension, g: Granularity, count: number, now: number): Promise<{ values: string[]; periods: Array<PeriodOf<BreakdownFigures>> }> {
    const periods = recentPeriods(g, count, now)
    const rows = await Promise.all(periods.map((p) => this.#rows(orgId, p, dim)))
    const fixed: readonly string[] = dim === 'outcome' ? OUTCOMES : dim === 'domain' ? DOMAINS : dim === 'intent' ? INTENTS : []
    // Rule ids are the org's own codes: listed when they occur anywhere in the window, so a
    // period's list does not tell who triggered what.
    const values = [...new Set([...fixed, ...rows.flat().map((r) => r.value).filter((v) => v !== NONE).sort(), NONE])]
    return { values, periods: periods.map((p, i) => ({ ...p, scopes: breakdown(rows[i]!, values, this.k) })) }
  }

  /** Challenge pass rates and mean reasoning scores per period and scope. */
  async challenges(orgId: string, g: Granularity, count: number, now: number): Promise<Array<PeriodOf<ChallengeFigures>>> {
    return this.#each(g, count, now, async (p) => {
      const rows = await this.db.selectFrom('decision')
        .select(['environment', 'actor_id', 'passed'])
        .select((eb) => [eb.fn.countAll<number | string>().as('n'), eb.fn.sum<number | string | null>('reasoning_score').as('s')])
        .where('org_id', '=', orgId).where('created_at', '>=', p.start).where('created_at', '<', p.end)
        .groupBy(['environment', 'actor_id', 'passed']).execute()
      return challenges(rows.map((r) => ({
        environment: r.environment, actor: r.actor_id, requests: Number(r.n), scoreSum: Number(r.s ?? 0),
        value: r.passed === null ? NONE : Number(r.passed) === 1 ? 'passed' : 'failed',
      })), this.k)
    })
  }

  async #each<T>(g: Granularity, count: number, now: number, f: (p: Period) => Promise<T[]>): Promise<Array<PeriodOf<T>>> {
    const out: Array<PeriodOf<T>> = []
    for (const p of recentPeriods(g, count, now)) out.push({ ...p, scopes: await f(p) })
    return out
  }

  /** One period's contributions per (environment, value, person): read here, summed in cube.ts. */
  async #rows(orgId: string, p: Period, dim: Dimension | undefined): Promise<Contribution[]> {
    const base = this.db.selectFrom('decision')
      .where('org_id', '=', orgId).where('created_at', '>=', p.start).where('created_at', '<', p.end)
    if (dim === undefined) {
      const rows = await base.select(['environment', 'actor_id']).select((eb) => eb.fn.countAll<number | string>().as('n')).groupBy(['environment', 'actor_id']).execute()
      return rows.map((r) => ({ environment: r.environment, value: NONE, actor: r.actor_id, requests: Number(r.n) }))
    }
    const col = COLUMN[dim]
    const rows = await base.select(['environment', 'actor_id', `${col} as value`]).select((eb) => eb.fn.countAll<number | string>().as('n'))
      .groupBy(['environment', 'actor_id', col]).execute()
    return rows.map((r) => ({ environment: r.environment, value: r.value === null ? NONE : String(r.value), actor: r.actor_id, requests: Number(r.n) }))
  }
}
