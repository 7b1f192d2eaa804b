import type { Span } from './periods.ts'
import { K, suppress, type Atom, type Cell, type Family, type Nest } from './suppress.ts'

/**
 * One month's published figures, built from per-person contributions and passed through the
 * suppression rules (suppress.ts) as ONE block. Pure. A figure that is not shown is the string
 * "<5" — never a number — and nothing per person leaves this module: only sums over cells.
 *
 * A block is a three-way table: time (the month, its weeks, its days: periods.ts monthSpans) ×
 * environment (all, sandbox, production) × value (a report's total and its parts), with every
 * margin. Each cell sums the records of its (day, environment, value) atoms. The floor, the
 * differencing guard, complementary suppression and the exact audit run over the whole block, so
 * a day series, a week series and a month figure of the same month, read together, single out
 * no one; months share no record, so blocks are independent. Decisions depend on the month's
 * records only, so a cell reads the same in every response, whatever window it was asked in.
 *
 * Every report first decides the block's totals (per period and scope) from the same records by
 * the same rules, then pins them: a total is shown or hidden alike in every report.
 *
 * Teams (a fixed cohort: the member's team when each request was decided) are part of every
 * block: each team's total sits under the org's total at every (time, environment), its atoms the
 * team's share of each (day, environment, value). So a team's figure, the org's and every
 * report's cells are floored, guarded and audited together, and pinned like the totals. A person
 * who changed teams within the month is in each team they had requests in. The teams of a block
 * are those in its month's records.
 */
export const SCOPES = ['all', 'sandbox', 'production'] as const
export type Scope = (typeof SCOPES)[number]
const ENVS = ['sandbox', 'production'] as const

export const HIDDEN = '<5'
export type Figure = number | typeof HIDDEN

/** What one person (or no person: `actor` null) contributed to one (day, environment, value). */
export interface Contribution {
  /** The day in the block: 0 for the month's 1st. */
  readonly day: number
  readonly environment: string
  /** The breakdown value (an outcome, a domain…); `none` when the record has none. */
  readonly value: string
  readonly actor: string | null
  /** The actor's team when the request was decided (a cohort id), or null. */
  readonly team?: string | null
  readonly requests: number
  /** Sum of reasoning scores (challenge reports). */
  readonly scoreSum?: number
}

interface AtomSum {
  readonly people: Set<string>
  requests: number
  scoreSum: number
}

/** One axis of a block: its nodes (each covers some leaves), families and nests. */
interface Axis {
  readonly nodes: ReadonlyArray<{ readonly id: string; readonly leaves: readonly string[] }>
  readonly families: ReadonlyArray<{ readonly total: string; readonly parts: readonly string[] }>
  readonly nests: ReadonlyArray<readonly [inner: string, outer: string]>
}

const ENV_AXIS: Axis = {
  nodes: SCOPES.map((s) => ({ id: s, leaves: s === 'all' ? ENVS : [s] })),
  families: [{ total: 'all', parts: ENVS }],
  nests: ENVS.map((e) => [e, 'all'] as const),
}

/** Time: each span covers its days; a span is the sum of its children and nested in its ancestors. */
function timeAxis(spans: readonly Span[]): Axis {
  const parent = new Map(spans.map((s) => [s.id, s.parent]))
  const nests: Array<readonly [string, string]> = []
  for (const s of spans) for (let a = s.parent; a !== undefined; a = parent.get(a)) nests.push([s.id, a])
  return {
    nodes: spans.map((s) => ({ id: s.id, leaves: s.days.map(String) })),
    families: spans.map((s) => ({ total: s.id, parts: spans.filter((c) => c.parent === s.id).map((c) => c.id) })).filter((f) => f.parts.length > 0),
    nests,
  }
}

const SEP = '\u0000'
const cellId = (t: string, e: string, v: string) => `${t}|${e}|${v}`
/** The totals' node on every report's value axis: pinned to the same id. */
const TOTAL = 't'
/** A team's total: a node of the value axis under TOTAL (`t` and report nodes never start so). */
const teamNode = (team: string) => `team:${team}`
/** A leaf of the value axis is a (value, team) pair; records of no team carry NO_TEAM (a team id is never empty). */
const NO_TEAM = ''
const leaf = (value: string, team: string) => `${value}\u0001${team}`

/** The teams in a block's records, sorted. */
const teamsIn = (rows: readonly Contribution[]) => [...new Set(rows.flatMap((r) => (r.team ? [r.team] : [])))].sort()

/** A report's value axis split by team, with each team's total nested in the report's TOTAL. */
function withTeams(values: Axis, teams: readonly string[]): Axis {
  const all = [...teams, NO_TEAM]
  const total = values.nodes.find((n) => n.id === TOTAL)!
  return {
    nodes: [
      ...values.nodes.map((n) => ({ id: n.id, leaves: n.leaves.flatMap((l) => all.map((t) => leaf(l, t))) })),
      ...teams.map((t) => ({ id: teamNode(t), leaves: total.leaves.map((l) => leaf(l, t)) })),
    ],
    families: values.families,
    nests: [...values.nests, ...teams.map((t) => [teamNode(t), TOTAL] as const)],
  }
}

interface Block {
  readonly m: Map<string, AtomSum>
  readonly cells: Map<string, readonly string[]>
  readonly shown: Set<string>
}

/** Builds the block's cells as the product of the three axes and suppresses it as a whole. */
function block(rows: readonly Contribution[], spans: readonly Span[], values: Axis, value: (r: Contribution) => string, pinned: ReadonlyMap<string, boolean> | undefined, k: number): Block {
  const m = new Map<string, AtomSum>()
  for (const r of rows) {
    if (!(ENVS as readonly string[]).includes(r.environment)) continue
    const id = [r.day, r.environment, leaf(value(r), r.team ?? NO_TEAM)].join(SEP)
    const a = m.get(id) ?? { people: new Set<string>(), requests: 0, scoreSum: 0 }
    if (r.actor !== null) a.people.add(r.actor)
    a.requests += r.requests
    a.scoreSum += r.scoreSum ?? 0
    m.set(id, a)
  }
  const axes = [timeAxis(spans), ENV_AXIS, withTeams(values, teamsIn(rows))] as const
  const cells = new Map<string, readonly string[]>()
  for (const t of axes[0].nodes) for (const e of axes[1].nodes) for (const v of axes[2].nodes) {
    const atoms: string[] = []
    for (const d of t.leaves) for (const en of e.leaves) for (const x of v.leaves) if (m.has([d, en, x].join(SEP))) atoms.push([d, en, x].join(SEP))
    cells.set(cellId(t.id, e.id, v.id), atoms)
  }
  // A family or nest of one axis holds at every node of the other two.
  const at = (axis: number, id: string, o: readonly [string, string]) => (axis === 0 ? cellId(id, o[0], o[1]) : axis === 1 ? cellId(o[0], id, o[1]) : cellId(o[0], o[1], id))
  const families: Family[] = []
  const nests: Nest[] = []
  axes.forEach((axis, i) => {
    const [a, b] = axes.filter((_, j) => j !== i)
    for (const x of a!.nodes) for (const y of b!.nodes) {
      const o = [x.id, y.id] as const
      for (const f of axis.families) families.push({ total: at(i, f.total, o), parts: f.parts.map((p) => at(i, p, o)) })
      for (const [inner, outer] of axis.nests) nests.push({ inner: at(i, inner, o), outer: at(i, outer, o) })
    }
  })
  const atoms: Atom[] = [...m].map(([id, a]) => ({ id, people: a.people }))
  const plan: Cell[] = [...cells].map(([id, a]) => ({ id, atoms: a }))
  return { m, cells, shown: suppress({ atoms, cells: plan, families, nests, ...(pinned ? { pinned } : {}) }, k) }
}

const sum = (b: Block, id: string, f: (a: AtomSum) => number) => b.cells.get(id)!.reduce((s, a) => s + f(b.m.get(a)!), 0)
const peopleIn = (b: Block, id: string) => new Set(b.cells.get(id)!.flatMap((a) => [...b.m.get(a)!.people])).size
/** Per span, one entry per scope. */
const perSpan = <T>(spans: readonly Span[], f: (span: string, scope: Scope) => T): Map<string, T[]> => new Map(spans.map((s) => [s.id, SCOPES.map((sc) => f(s.id, sc))]))

const TOTALS_AXIS: Axis = { nodes: [{ id: TOTAL, leaves: ['*'] }], families: [], nests: [] }
const totalsBlock = (rows: readonly Contribution[], spans: readonly Span[], k: number) => block(rows, spans, TOTALS_AXIS, () => '*', undefined, k)

/** Which of the block's totals (every span and scope) are shown: the same answer in every report. */
export function totalsShown(rows: readonly Contribution[], spans: readonly Span[], k = K): ReadonlyMap<string, boolean> {
  const b = totalsBlock(rows, spans, k)
  return new Map([...b.cells.keys()].map((id) => [id, b.shown.has(id)]))
}

export interface TotalsFigures {
  readonly environment: Scope
  /** Present on a team's figures only (the org's have none). */
  readonly team?: string
  readonly requests: Figure
  readonly people: Figure
}

/** Requests and distinct people per span and scope; with `byTeam`, then per team and scope (the month's teams). */
export function overTime(rows: readonly Contribution[], spans: readonly Span[], k = K, byTeam = false): Map<string, TotalsFigures[]> {
  const b = totalsBlock(rows, spans, k)
  const figures = (t: string, s: Scope, node: string): { requests: Figure; people: Figure } => {
    const id = cellId(t, s, node)
    const show = b.shown.has(id)
    return { requests: show ? sum(b, id, (a) => a.requests) : HIDDEN, people: show ? peopleIn(b, id) : HIDDEN }
  }
  const teams = byTeam ? teamsIn(rows) : []
  return new Map(spans.map((sp): [string, TotalsFigures[]] => [sp.id, [
    ...SCOPES.map((s) => ({ environment: s, ...figures(sp.id, s, TOTAL) })),
    ...teams.flatMap((team) => SCOPES.map((s) => ({ environment: s, team, ...figures(sp.id, s, teamNode(team)) }))),
  ]]))
}

export interface BreakdownFigures {
  readonly environment: Scope
  readonly total: Figure
  readonly cells: Array<{ readonly value: string; readonly requests: Figure }>
}

/** Requests per value of one dimension, per span and scope, with the scope's total. */
export function breakdown(rows: readonly Contribution[], values: readonly string[], spans: readonly Span[], k = K): Map<string, BreakdownFigures[]> {
  const axis: Axis = {
    nodes: [{ id: TOTAL, leaves: values }, ...values.map((v) => ({ id: `c:${v}`, leaves: [v] }))],
    families: [{ total: TOTAL, parts: values.map((v) => `c:${v}`) }],
    nests: values.map((v) => [`c:${v}`, TOTAL] as const),
  }
  const b = block(rows, spans, axis, (r) => r.value, totalsShown(rows, spans, k), k)
  const fig = (id: string): Figure => (b.shown.has(id) ? sum(b, id, (a) => a.requests) : HIDDEN)
  return perSpan(spans, (t, s) => ({ environment: s, total: fig(cellId(t, s, TOTAL)), cells: values.map((v) => ({ value: v, requests: fig(cellId(t, s, `c:${v}`)) })) }))
}

export interface ChallengeFigures {
  readonly environment: Scope
  readonly challenged: Figure
  readonly passed: Figure
  readonly failed: Figure
  readonly pass_rate: Figure
  readonly mean_reasoning_score: Figure
}

const CHALLENGE_AXIS: Axis = {
  nodes: [{ id: TOTAL, leaves: ['passed', 'failed', 'none'] }, { id: 'g', leaves: ['passed', 'failed'] }, { id: 'p', leaves: ['passed'] }, { id: 'f', leaves: ['failed'] }],
  families: [{ total: 'g', parts: ['p', 'f'] }],
  nests: [['g', TOTAL], ['p', 'g'], ['f', 'g']],
}

/**
 * Challenge outcomes per span and scope. Rows carry `value` passed / failed / none (not
 * challenged): the graded records are a sub-population, floored on their own people, with the
 * totals pinned as in every report (so "requests − challenged" is audited too).
 */
export function challenges(rows: readonly Contribution[], spans: readonly Span[], k = K): Map<string, ChallengeFigures[]> {
  const b = block(rows, spans, CHALLENGE_AXIS, (r) => r.value, totalsShown(rows, spans, k), k)
  return perSpan(spans, (t, s) => {
    const show = (x: string) => b.shown.has(cellId(t, s, x))
    const n = sum(b, cellId(t, s, 'g'), (a) => a.requests)
    const passed = sum(b, cellId(t, s, 'p'), (a) => a.requests)
    return {
      environment: s,
      challenged: show('g') ? n : HIDDEN,
      passed: show('p') ? passed : HIDDEN,
      failed: show('f') ? n - passed : HIDDEN,
      pass_rate: show('g') && show('p') && n > 0 ? round(passed / n) : HIDDEN,
      mean_reasoning_score: show('g') && n > 0 ? round(sum(b, cellId(t, s, 'g'), (a) => a.scoreSum) / n) : HIDDEN,
    }
  })
}

const round = (x: number) => Math.round(x * 1000) / 1000
