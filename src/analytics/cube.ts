import type { Span } from './periods.ts'
import { K, suppress, type Atom, type Cell, type Family } from './suppress.ts'

/**
 * One month's published figures — every report's — built from per-person contributions and
 * passed through the suppression rules (suppress.ts) as ONE block. Pure. A figure that is not
 * shown is the string "<5" — never a number — and nothing per person leaves this module: only
 * sums over cells.
 *
 * A block is a three-way table: time (the month, its weeks, its days: periods.ts monthSpans) ×
 * environment (all, sandbox, production) × value, with every margin. The value axis holds every
 * report's figures at once: the total, each team's total, each breakdown dimension's values
 * (outcome, domain, intent, rule: each a partition of the total) and the challenge figures
 * (graded, passed, failed). Its leaves are the records' full (dimension values, grading, team)
 * tuples, so a cell of one dimension and a cell of another are sums over the same atoms. The
 * floor, the differencing guard (between any two cells whose records nest, whatever their
 * report: a team all of whose requests were "allowed" inside "allowed", a week inside a month
 * total) and complementary suppression run over the whole block. The exact audit reads the
 * reports two at a time (the totals and teams with two reports' cells, over atoms of those two
 * values and the team), so "allowed" + "coding" − the total, a team against an outcome, a week of
 * one value against the month of another, are combinations it sees; a combination that needs
 * three dimensions at once is outside it (auditing all of them together over the finest atoms
 * costs minutes per month and hides most figures of a small org). Months share no record, so
 * blocks are independent. Decisions depend on the month's records only, so a cell reads the same
 * in every response, whatever report or window it was asked in.
 *
 * Teams (a fixed cohort: the member's team when each request was decided): a person who changed
 * teams within the month is in each team they had requests in. The teams of a block are those in
 * its month's records.
 */
export const SCOPES = ['all', 'sandbox', 'production'] as const
export type Scope = (typeof SCOPES)[number]
const ENVS = ['sandbox', 'production'] as const

export const HIDDEN = '<5'
export type Figure = number | typeof HIDDEN

/** What one person (or no person: `actor` null) contributed to one (day, environment, values, team). */
export interface Contribution {
  /** The day in the block: 0 for the month's 1st. */
  readonly day: number
  readonly environment: string
  readonly actor: string | null
  /** The actor's team when the request was decided (a cohort id), or null. */
  readonly team?: string | null
  /** The records' value in each breakdown dimension of the block (an outcome, a domain…; `none` when they have none). */
  readonly values?: Readonly<Record<string, string>>
  /** A challenge on the records was passed or failed; null or absent when none was graded. */
  readonly graded?: 'passed' | 'failed' | null
  readonly requests: number
  /** Sum of reasoning scores (graded records). */
  readonly scoreSum?: number
}

/** The breakdown dimensions of a block, each with the values it lists (every value its records carry, `none` included). */
export type Dimensions = Readonly<Record<string, readonly string[]>>

interface AtomSum {
  readonly people: Set<string>
  requests: number
  scoreSum: number
}

/** One axis of a block: its nodes and families (a total and the nodes that partition it). */
interface Axis {
  readonly ids: readonly string[]
  readonly families: ReadonlyArray<{ readonly total: string; readonly parts: readonly string[] }>
}

const ENV_AXIS: Axis = { ids: SCOPES, families: [{ total: 'all', parts: ENVS }] }

/** Time: a span is the sum of its children. */
const timeAxis = (spans: readonly Span[]): Axis => ({
  ids: spans.map((s) => s.id),
  families: spans.map((s) => ({ total: s.id, parts: spans.filter((c) => c.parent === s.id).map((c) => c.id) })).filter((f) => f.parts.length > 0),
})

const cellId = (t: string, e: string, v: string) => `${t}|${e}|${v}`
/** Value nodes: the total, a team's total, a dimension's value, the challenge figures. */
const TOTAL = 't'
const teamNode = (team: string) => `team:${team}`
const valueNode = (dim: string, value: string) => `${dim}=${value}`
const GRADED = 'g'
const PASSED = 'p'
const FAILED = 'f'

/** The teams in a block's records, sorted. */
const teamsIn = (rows: readonly Contribution[]) => [...new Set(rows.flatMap((r) => (r.team ? [r.team] : [])))].sort()

interface Leaf {
  readonly team: string | null
  readonly values: Readonly<Record<string, string>>
  readonly graded: 'passed' | 'failed' | null
}

/** The value nodes a leaf belongs to. */
function nodesOf(leaf: Leaf, dims: Dimensions): string[] {
  const out = [TOTAL]
  if (leaf.team) out.push(teamNode(leaf.team))
  for (const d of Object.keys(dims)) out.push(valueNode(d, leaf.values[d]!))
  if (leaf.graded) out.push(GRADED, leaf.graded === 'passed' ? PASSED : FAILED)
  return out
}

/** The value axis of a block: the total, the teams, every dimension's values, the challenge figures. */
function valueAxis(dims: Dimensions, teams: readonly string[]): Axis {
  const families = Object.entries(dims).map(([d, values]) => ({ total: TOTAL, parts: values.map((v) => valueNode(d, v)) }))
  families.push({ total: GRADED, parts: [PASSED, FAILED] })
  return { ids: [TOTAL, ...teams.map(teamNode), GRADED, PASSED, FAILED, ...families.flatMap((f) => (f.total === TOTAL ? f.parts : []))], families }
}

/** A month's decided block: every report's figures read from it. */
export interface Month {
  /** Requests and distinct people per span and scope; with `byTeam`, then per team and scope (the month's teams). */
  requests(byTeam?: boolean): Map<string, TotalsFigures[]>
  /** Requests per value of one of the block's dimensions, per span and scope, with the scope's total. */
  breakdown(dim: string): Map<string, BreakdownFigures[]>
  /** Challenge outcomes per span and scope. */
  challenges(): Map<string, ChallengeFigures[]>
}

/**
 * Decides a month: builds its cells (time × environment × value) from the contributions and
 * suppresses them as one block. `dims` lists each breakdown dimension's values; a contribution
 * carries its value in each (a value it does not list is an error: every record must fall in
 * exactly one value of every dimension, or the dimension's cells would not partition the total).
 */
export function decideMonth(rows: readonly Contribution[], spans: readonly Span[], dims: Dimensions = {}, k = K): Month {
  const leaves = new Map<string, Leaf>()
  const m = new Map<string, AtomSum>()
  /** Where each atom sits: its day, environment and leaf. */
  const place = new Map<string, { readonly day: number; readonly env: string; readonly leaf: string }>()
  for (const r of rows) {
    if (!(ENVS as readonly string[]).includes(r.environment)) continue
    const values = Object.fromEntries(Object.entries(dims).map(([d, listed]) => {
      const v = r.values?.[d]
      if (v === undefined || !listed.includes(v)) throw new Error(`decideMonth: a record's ${d} is not listed`)
      return [d, v]
    }))
    const leaf: Leaf = { team: r.team ?? null, values, graded: r.graded ?? null }
    const leafId = JSON.stringify([leaf.team, leaf.graded, ...Object.keys(dims).map((d) => values[d])])
    leaves.set(leafId, leaf)
    const id = `${r.day}|${r.environment}|${leafId}`
    place.set(id, { day: r.day, env: r.environment, leaf: leafId })
    const a = m.get(id) ?? { people: new Set<string>(), requests: 0, scoreSum: 0 }
    if (r.actor !== null) a.people.add(r.actor)
    a.requests += r.requests
    a.scoreSum += r.scoreSum ?? 0
    m.set(id, a)
  }
  const teams = teamsIn(rows)
  const time = timeAxis(spans)
  const values = valueAxis(dims, teams)
  const leafNodes = new Map([...leaves].map(([id, leaf]) => [id, nodesOf(leaf, dims)]))
  // Every cell of the product, then each atom into the cells that hold it.
  const cells = new Map<string, string[]>()
  const valueOf = new Map<string, string>()
  for (const t of time.ids) for (const e of ENV_AXIS.ids) for (const v of values.ids) {
    cells.set(cellId(t, e, v), [])
    valueOf.set(cellId(t, e, v), v)
  }
  const spansOfDay = new Map<number, string[]>()
  for (const s of spans) for (const d of s.days) spansOfDay.set(d, [...(spansOfDay.get(d) ?? []), s.id])
  for (const [id, { day, env, leaf }] of place) {
    for (const t of spansOfDay.get(day) ?? []) for (const e of [env, 'all']) for (const v of leafNodes.get(leaf)!) cells.get(cellId(t, e, v))!.push(id)
  }
  // A family of one axis holds at every node of the other two.
  const axes = [time, ENV_AXIS, values] as const
  const at = (axis: number, id: string, o: readonly [string, string]) => (axis === 0 ? cellId(id, o[0], o[1]) : axis === 1 ? cellId(o[0], id, o[1]) : cellId(o[0], o[1], id))
  const families: Family[] = []
  axes.forEach((axis, i) => {
    const [a, b] = axes.filter((_, j) => j !== i)
    for (const x of a!.ids) for (const y of b!.ids) for (const f of axis.families) families.push({ total: at(i, f.total, [x, y]), parts: f.parts.map((p) => at(i, p, [x, y])) })
  })
  const atoms: Atom[] = [...m].map(([id, a]) => ({ id, people: a.people }))
  const plan: Cell[] = [...cells].map(([id, a]) => ({ id, atoms: a }))
  // The audit reads the reports two at a time, on their atoms (day, environment, the two values,
  // team): "allowed" + "coding" − total, a team against an outcome, are combinations it sees.
  const single: Array<{ nodes: (v: string) => boolean; coarse: (leaf: Leaf) => string }> = [
    ...Object.keys(dims).map((d) => ({ nodes: (v: string) => v.startsWith(`${d}=`), coarse: (leaf: Leaf) => leaf.values[d]! })),
    { nodes: (v: string) => v === GRADED || v === PASSED || v === FAILED, coarse: (leaf: Leaf) => leaf.graded ?? '' },
  ]
  const reports = single.length < 2 ? single : single.flatMap((x, i) => single.slice(i + 1).map((y) => ({ nodes: (v: string) => x.nodes(v) || y.nodes(v), coarse: (leaf: Leaf) => JSON.stringify([x.coarse(leaf), y.coarse(leaf)]) })))
  const views = reports.map((r) => {
    const keep = (id: string) => { const v = valueOf.get(id)!; return v === TOTAL || v.startsWith('team:') || r.nodes(v) }
    const coarseOf = new Map([...place].map(([id, { day, env, leaf }]) => [id, `${day}|${env}|${JSON.stringify([r.coarse(leaves.get(leaf)!), leaves.get(leaf)!.team])}`]))
    const people = new Map<string, Set<string>>()
    for (const [id, a] of m) {
      const c = coarseOf.get(id)!
      const set = people.get(c) ?? new Set<string>()
      for (const p of a.people) set.add(p)
      people.set(c, set)
    }
    return {
      atoms: [...people].map(([id, p]) => ({ id, people: p })),
      cells: plan.filter((c) => keep(c.id)).map((c) => ({ id: c.id, atoms: [...new Set(c.atoms.map((a) => coarseOf.get(a)!))] })),
      families: families.filter((f) => keep(f.total) && f.parts.every(keep)),
    }
  })
  const shown = suppress({ atoms, cells: plan, families, views }, k)

  const sum = (id: string, f: (a: AtomSum) => number) => cells.get(id)!.reduce((s, a) => s + f(m.get(a)!), 0)
  const peopleIn = (id: string) => new Set(cells.get(id)!.flatMap((a) => [...m.get(a)!.people])).size
  const fig = (id: string): Figure => (shown.has(id) ? sum(id, (a) => a.requests) : HIDDEN)
  const perSpan = <T>(f: (span: string, scope: Scope) => T): Map<string, T[]> => new Map(spans.map((s) => [s.id, SCOPES.map((sc) => f(s.id, sc))]))
  return {
    requests(byTeam = false) {
      const figures = (t: string, s: Scope, node: string): { requests: Figure; people: Figure } => {
        const id = cellId(t, s, node)
        return shown.has(id) ? { requests: sum(id, (a) => a.requests), people: peopleIn(id) } : { requests: HIDDEN, people: HIDDEN }
      }
      return new Map(spans.map((sp): [string, TotalsFigures[]] => [sp.id, [
        ...SCOPES.map((s) => ({ environment: s, ...figures(sp.id, s, TOTAL) })),
        ...(byTeam ? teams : []).flatMap((team) => SCOPES.map((s) => ({ environment: s, team, ...figures(sp.id, s, teamNode(team)) }))),
      ]]))
    },
    breakdown(dim) {
      const listed = dims[dim]
      if (!listed) throw new Error(`decideMonth: no dimension ${dim} in the block`)
      return perSpan((t, s) => ({ environment: s, total: fig(cellId(t, s, TOTAL)), cells: listed.map((v) => ({ value: v, requests: fig(cellId(t, s, valueNode(dim, v))) })) }))
    },
    challenges() {
      return perSpan((t, s) => {
        const show = (x: string) => shown.has(cellId(t, s, x))
        const n = sum(cellId(t, s, GRADED), (a) => a.requests)
        const passed = sum(cellId(t, s, PASSED), (a) => a.requests)
        return {
          environment: s,
          challenged: show(GRADED) ? n : HIDDEN,
          passed: show(PASSED) ? passed : HIDDEN,
          failed: show(FAILED) ? n - passed : HIDDEN,
          pass_rate: show(GRADED) && show(PASSED) && n > 0 ? round(passed / n) : HIDDEN,
          mean_reasoning_score: show(GRADED) && n > 0 ? round(sum(cellId(t, s, GRADED), (a) => a.scoreSum) / n) : HIDDEN,
        }
      })
    },
  }
}

export interface TotalsFigures {
  readonly environment: Scope
  /** Present on a team's figures only (the org's have none). */
  readonly team?: string
  readonly requests: Figure
  readonly people: Figure
}

export interface BreakdownFigures {
  readonly environment: Scope
  readonly total: Figure
  readonly cells: Array<{ readonly value: string; readonly requests: Figure }>
}

export interface ChallengeFigures {
  readonly environment: Scope
  readonly challenged: Figure
  readonly passed: Figure
  readonly failed: Figure
  readonly pass_rate: Figure
  readonly mean_reasoning_score: Figure
}

const round = (x: number) => Math.round(x * 1000) / 1000
