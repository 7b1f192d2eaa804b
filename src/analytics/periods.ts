/**
 * Fixed calendar cohorts (D10), all UTC: days, weeks of the month and calendar months, counted
 * back from the one that contains `now`. No free-form date ranges exist.
 *
 * The periods nest as a strict tree, month ⊃ week ⊃ day: a month's weeks are its days 1–7,
 * 8–14, 15–21, 22–28 and 29–end (none in a 28-day February). ISO weeks are not used: they
 * straddle months, and a figure that spans two months would chain their suppression decisions
 * together. With the tree, each month is one block that is suppressed as a whole (cube.ts).
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

export const DAY = 86_400_000

/** The period of `granularity` that contains `t`. */
export function periodOf(granularity: Granularity, t: number): Period {
  const d = new Date(t)
  const month = { start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) }
  if (granularity === 'month') return month
  const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())
  if (granularity === 'day') return { start: day, end: day + DAY }
  const week = Math.min(Math.floor((d.getUTCDate() - 1) / 7), 4)
  const start = month.start + week * 7 * DAY
  return { start, end: week === 4 ? month.end : start + 7 * DAY }
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

/** A period inside a month block, by the month's day indices (0 = the 1st) it covers. */
export interface Span {
  readonly id: string
  readonly days: readonly number[]
  /** The span it is part of (a day's week, a week's month); none for the month. */
  readonly parent?: string
}

export const spanId = (granularity: Granularity, p: Period): string => `${granularity}:${p.start}`

/** The month that starts at `monthStart` as a tree of spans: the month, its weeks, its days. */
export function monthSpans(monthStart: number): Span[] {
  const month = periodOf('month', monthStart)
  const n = Math.round((month.end - month.start) / DAY)
  const all = Array.from({ length: n }, (_, i) => i)
  const spans: Span[] = [{ id: spanId('month', month), days: all }]
  for (let w = 0; w * 7 < n; w++) {
    const week = periodOf('week', month.start + w * 7 * DAY)
    const days = all.filter((i) => i >= w * 7 && (w === 4 || i < w * 7 + 7))
    spans.push({ id: spanId('week', week), days, parent: spans[0]!.id })
    for (const i of days) spans.push({ id: spanId('day', periodOf('day', month.start + i * DAY)), days: [i], parent: spanId('week', week) })
    if (w === 4) break
  }
  return spans
}
