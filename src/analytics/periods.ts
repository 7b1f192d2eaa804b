/**
 * Fixed calendar cohorts (D10): UTC days, ISO weeks (Monday 00:00 UTC) and calendar months,
 * counted back from the one that contains `now`. No free-form date ranges exist.
 */
export const GRANULARITIES = ['day', 'week', 'month'] as const
export type Granularity = (typeof GRANULARITIES)[number]

/** How many periods one response may cover, per granularity. */
export const MAX_PERIODS: Readonly<Record<Granularity, number>> = { day: 31, week: 26, month: 12 }
export const DEFAULT_PERIODS: Readonly<Record<Granularity, number>> = { day: 14, week: 8, month: 3 }

export interface Period {
  readonly start: number
  readonly end: number
}

const DAY = 86_400_000

/** The period of `granularity` that contains `t`. */
export function periodOf(granularity: Granularity, t: number): Period {
  const d = new Date(t)
  if (granularity === 'month') {
    const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)
    return { start, end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) }
  }
  const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())
  if (granularity === 'day') return { start: day, end: day + DAY }
  const start = day - ((d.getUTCDay() + 6) % 7) * DAY
  return { start, end: start + 7 * DAY }
}

/** The last `count` periods up to and including the current one, oldest first. */
export function recentPeriods(granularity: Granularity, count: number, now: number): Period[] {
  const n = Math.min(Math.max(Math.trunc(count), 1), MAX_PERIODS[granularity])
  const out: Period[] = []
  let p = periodOf(granularity, now)
  for (let i = 0; i < n; i++) {
    out.unshift(p)
    p = periodOf(granularity, p.start - 1)
  }
  return out
}
