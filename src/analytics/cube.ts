import { K, suppress, type Atom, type Cell, type Family, type Nest } from './suppress.ts'

/**
 * One period's published figures, built from per-person contributions and passed through the
 * suppression rules (suppress.ts). Pure. A figure that is not shown is the string "<5" — never a
 * number — and nothing per person leaves this module: only sums over cells.
 *
 * Every report first decides the period's three totals (all environments, sandbox, production)
 * from the same records by the same rules, then pins them: a total is shown or hidden alike in
 * every report, so no report can be differenced against another's total.
 */
export const SCOPES = ['all', 'sandbox', 'production'] as const
export type Scope = (typeof SCOPES)[number]
const ENVS = ['sandbox', 'production'] as const

export const HIDDEN = '<5'
export type Figure = number | typeof HIDDEN

/** What one person (or no person: `actor` null) contributed to one (environment, value) in a period. */
export interface Contribution {
  readonly environment: string
  /** The breakdown value (an outcome, a domain…); `none` when the record has none. */
  readonly value: string
  readonly actor: string | null
  readonly requests: number
  /** Sum of reasoning scores (challenge reports). */
  readonly scoreSum?: number
}

interface AtomSum {
  readonly people: Set<string>
  requests: number
  scoreSum: number
}

function atoms(rows: readonly Contribution[], key: (r: Contribution) => string): Map<string, AtomSum> {
  const out = new Map<string, AtomSum>()
  for (const r of rows) {
    if (!(ENVS as readonly string[]).includes(r.environment)) continue
    const k = key(r)
    const a = out.get(k) ?? { people: new Set<string>(), requests: 0, scoreSum: 0 }
    if (r.actor !== null) a.people.add(r.actor)
    a.requests += r.requests
    a.scoreSum += r.scoreSum ?? 0
    out.set(k, a)
  }
  return out
}

const envsOf = (scope: Scope): readonly string[] => (scope === 'all' ? ENVS : [scope])
const atomList = (m: Map<string, AtomSum>): Atom[] => [...m].map(([id, a]) => ({ id, people: a.people }))
const sum = (m: Map<string, AtomSum>, ids: readonly string[], f: (a: AtomSum) => number) => ids.reduce((s, id) => s + (m.has(id) ? f(m.get(id)!) : 0), 0)
const people = (m: Map<string, AtomSum>, ids: readonly string[]) => new Set(ids.flatMap((id) => [...(m.get(id)?.people ?? [])])).size

/** The totals' plan: one atom per environment; the org total is the family of the two. */
function totalsPlan(rows: readonly Contribution[]) {
  const m = atoms(rows, (r) => r.environment)
  const cells: Cell[] = SCOPES.map((s) => ({ id: `t:${s}`, atoms: envsOf(s) }))
  const families: Family[] = [{ total: 't:all', parts: ['t:sandbox', 't:production'] }]
  const nests: Nest[] = [{ inner: 't:sandbox', outer: 't:all' }, { inner: 't:production', outer: 't:all' }]
  return { m, plan: { atoms: atomList(m), cells, families, nests } }
}

/** Which of the period's three totals are shown (the same answer in every report). */
export function totalsShown(rows: readonly Contribution[], k = K): ReadonlyMap<string, boolean> {
  const { plan } = totalsPlan(rows)
  const shown = suppress(plan, k)
  return new Map(SCOPES.map((s) => [`t:${s}`, shown.has(`t:${s}`)]))
}

export interface TotalsFigures {
  readonly environment: Scope
  readonly requests: Figure
  readonly people: Figure
}

/** Requests and distinct people per scope. */
export function overTime(rows: readonly Contribution[], k = K): TotalsFigures[] {
  const { m } = totalsPlan(rows)
  const shown = totalsShown(rows, k)
  return SCOPES.map((s) => {
    const ids = envsOf(s)
    const show = shown.get(`t:${s}`)!
    return { environment: s, requests: show ? sum(m, ids, (a) => a.requests) : HIDDEN, people: show ? people(m, ids) : HIDDEN }
  })
}

export interface BreakdownFigures {
  readonly environment: Scope
  readonly total: Figure
  readonly cells: Array<{ readonly value: string; readonly requests: Figure }>
}

/**
 * Requests per value of one dimension, per scope, with the scope's total: a two-way table
 * (environment × value) with both margins, suppressed as a whole.
 */
export function breakdown(rows: readonly Contribution[], values: readonly string[], k = K): BreakdownFigures[] {
  const m = atoms(rows, (r) => `${r.environment}\u0000${r.value}`)
  const at = (scope: Scope, v: string) => envsOf(scope).map((e) => `${e}\u0000${v}`)
  const cells: Cell[] = []
  const families: Family[] = []
  const nests: Nest[] = []
  for (const s of SCOPES) {
    cells.push({ id: `t:${s}`, atoms: values.flatMap((v) => at(s, v)) })
    for (const v of values) {
      cells.push({ id: `c:${s}:${v}`, atoms: at(s, v) })
      nests.push({ inner: `c:${s}:${v}`, outer: `t:${s}` })
    }
    families.push({ total: `t:${s}`, parts: values.map((v) => `c:${s}:${v}`) })
  }
  for (const v of values) {
    families.push({ total: `c:all:${v}`, parts: ENVS.map((e) => `c:${e}:${v}`) })
    for (const e of ENVS) nests.push({ inner: `c:${e}:${v}`, outer: `c:all:${v}` })
  }
  const shown = suppress({ atoms: atomList(m), cells, families, nests, pinned: totalsShown(rows, k) }, k)
  const fig = (id: string, ids: readonly string[]): Figure => (shown.has(id) ? sum(m, ids, (a) => a.requests) : HIDDEN)
  return SCOPES.map((s) => ({
    environment: s,
    total: fig(`t:${s}`, values.flatMap((v) => at(s, v))),
    cells: values.map((v) => ({ value: v, requests: fig(`c:${s}:${v}`, at(s, v)) })),
  }))
}

export interface ChallengeFigures {
  readonly environment: Scope
  readonly challenged: Figure
  readonly passed: Figure
  readonly failed: Figure
  readonly pass_rate: Figure
  readonly mean_reasoning_score: Figure
}

/**
 * Challenge outcomes per scope. Rows carry `value` passed / failed / none (not challenged): the
 * graded records are a sub-population, floored on their own people, with the scope totals
 * pinned as in every report (so "requests − challenged" is audited too).
 */
export function challenges(rows: readonly Contribution[], k = K): ChallengeFigures[] {
  const m = atoms(rows, (r) => `${r.environment}\u0000${r.value}`)
  const at = (scope: Scope, statuses: readonly string[]) => envsOf(scope).flatMap((e) => statuses.map((st) => `${e}\u0000${st}`))
  const cells: Cell[] = []
  const families: Family[] = []
  const nests: Nest[] = []
  for (const s of SCOPES) {
    cells.push({ id: `t:${s}`, atoms: at(s, ['passed', 'failed', 'none']) })
    cells.push({ id: `g:${s}`, atoms: at(s, ['passed', 'failed']) }, { id: `p:${s}`, atoms: at(s, ['passed']) }, { id: `f:${s}`, atoms: at(s, ['failed']) })
    families.push({ total: `g:${s}`, parts: [`p:${s}`, `f:${s}`] })
    nests.push({ inner: `g:${s}`, outer: `t:${s}` }, { inner: `p:${s}`, outer: `g:${s}` }, { inner: `f:${s}`, outer: `g:${s}` })
  }
  for (const x of ['g', 'p', 'f']) {
    families.push({ total: `${x}:all`, parts: ENVS.map((e) => `${x}:${e}`) })
    for (const e of ENVS) nests.push({ inner: `${x}:${e}`, outer: `${x}:all` })
  }
  const shown = suppress({ atoms: atomList(m), cells, families, nests, pinned: totalsShown(rows, k) }, k)
  return SCOPES.map((s) => {
    const g = at(s, ['passed', 'failed'])
    const n = sum(m, g, (a) => a.requests)
    const passed = sum(m, at(s, ['passed']), (a) => a.requests)
    const show = (x: string) => shown.has(`${x}:${s}`)
    return {
      environment: s,
      challenged: show('g') ? n : HIDDEN,
      passed: show('p') ? passed : HIDDEN,
      failed: show('f') ? n - passed : HIDDEN,
      pass_rate: show('g') && show('p') && n > 0 ? round(passed / n) : HIDDEN,
      mean_reasoning_score: show('g') && n > 0 ? round(sum(m, g, (a) => a.scoreSum) / n) : HIDDEN,
    }
  })
}

const round = (x: number) => Math.round(x * 1000) / 1000
