/**
 * Five-field cron in UTC (minute hour day-of-month month day-of-week), the standard subset:
 * numbers, `*`, `*\/n`, lists `a,b`, ranges `a-b` and stepped ranges `a-b/n`. Day of week is
 * 0-7 (0 and 7 are Sunday). As in Vixie cron, when both day fields are restricted a day matches
 * either of them.
 */
export interface Cron {
  readonly minutes: ReadonlySet<number>
  readonly hours: ReadonlySet<number>
  readonly days: ReadonlySet<number>
  readonly months: ReadonlySet<number>
  readonly weekdays: ReadonlySet<number>
  readonly anyDay: boolean
  readonly anyWeekday: boolean
}

const FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 7 },
] as const

function field(text: string, min: number, max: number): Set<number> | undefined {
  const out = new Set<number>()
  for (const item of text.split(',')) {
    const m = /^(\*|(\d{1,2})(?:-(\d{1,2}))?)(?:\/(\d{1,2}))?$/.exec(item)
    if (!m) return undefined
    const from = m[1] === '*' ? min : Number(m[2])
    const to = m[1] === '*' ? max : m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? max : from
    const step = m[4] !== undefined ? Number(m[4]) : 1
    if (from < min || to > max || from > to || step < 1) return undefined
    for (let v = from; v <= to; v += step) out.add(v)
  }
  return out
}

/** The parsed expression, or a sentence saying what is wrong with it. */
export function parseCron(expr: string): Cron | string {
  const parts = expr.trim().split(/\s+/)
  if (parts.length !== 5) return 'must have 5 fields: minute hour day-of-month month day-of-week (UTC), e.g. "0 3 * * *"'
  const sets: Set<number>[] = []
  for (const [i, f] of FIELDS.entries()) {
    const s = field(parts[i]!, f.min, f.max)
    if (!s) return `the ${f.name} field must be *, */n, a number from ${f.min} to ${f.max}, a range a-b (optionally /n), or a comma-separated list of those`
    sets.push(s)
  }
  const weekdays = sets[4]!
  if (weekdays.delete(7)) weekdays.add(0)
  return { minutes: sets[0]!, hours: sets[1]!, days: sets[2]!, months: sets[3]!, weekdays, anyDay: parts[2] === '*', anyWeekday: parts[4] === '*' }
}

/** Whether the minute that contains `ms` (UTC) is one of the expression's. */
export function cronMatches(c: Cron, ms: number): boolean {
  const d = new Date(ms)
  if (!c.minutes.has(d.getUTCMinutes()) || !c.hours.has(d.getUTCHours()) || !c.months.has(d.getUTCMonth() + 1)) return false
  const day = c.days.has(d.getUTCDate())
  const weekday = c.weekdays.has(d.getUTCDay())
  if (c.anyDay || c.anyWeekday) return day && weekday
  return day || weekday
}

export const MINUTE = 60_000

/** The latest matching minute (its start, ms) in (after, upTo], looking back at most a day; undefined if none. */
export function latestSlot(c: Cron, after: number, upTo: number): number | undefined {
  const last = Math.floor(upTo / MINUTE) * MINUTE
  for (let m = last, n = 0; m > after && n < 1440; m -= MINUTE, n++) if (cronMatches(c, m)) return m
  return undefined
}
