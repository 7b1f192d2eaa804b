import assert from 'node:assert/strict'
import { rank } from '../../src/analytics/suppress.ts'

/**
 * The adversary of RBAC-3 (D10, security-tests §2.9), written apart from the module it checks: it
 * knows which records each published figure sums (its atoms: day × environment × value) and every
 * number shown, across any set of responses, and checks
 *  - no shown figure has fewer than 5 distinct people;
 *  - no two nested shown figures differ by 1–4 people;
 *  - no linear combination of the shown figures (totals minus parts, a week minus its days, a
 *    month minus its weeks, margins minus cells, any mix) adds up records that come only from a
 *    group of 1–4 people — exactly, for every group of up to 4 people, by rank: such a combination
 *    exists iff the shown rows restricted to the atoms of people outside the group have a lower
 *    rank than the shown rows. (When the shown rows restricted to the atoms of ≥ 5 people keep the
 *    full rank, no group's restriction can lose any: the groups need not be enumerated.)
 */
export interface Shown {
  readonly id: string
  readonly atoms: readonly string[]
  readonly shown: boolean
}

/** `people`: every atom with records → the distinct people behind them (empty for records of no person). */
export function assertSafe(people: ReadonlyMap<string, ReadonlySet<string>>, cells: readonly Shown[], nests: ReadonlyArray<readonly [string, string]>): void {
  const peopleOf = (atoms: readonly string[]) => new Set(atoms.flatMap((a) => [...(people.get(a) ?? [])]))
  const byId = new Map(cells.map((c) => [c.id, c]))
  for (const c of cells) if (c.shown) assert.ok(peopleOf(c.atoms).size >= 5, `${c.id} is shown with ${peopleOf(c.atoms).size} people`)
  for (const [inner, outer] of nests) {
    const i = byId.get(inner)!
    const o = byId.get(outer)!
    if (!i.shown || !o.shown) continue
    const d = peopleOf(o.atoms).size - peopleOf(i.atoms).size
    assert.ok(d === 0 || d >= 5, `${inner} and ${outer} are both shown and differ by ${d} people`)
  }
  const used = [...people.keys()]
  const rows = cells.filter((c) => c.shown).map((c) => new Set(c.atoms))
  if (rows.length === 0 || used.length === 0) return
  const matrix = (cols: readonly string[]) => rows.map((r) => cols.map((a) => (r.has(a) ? 1 : 0)))
  const full = rank(matrix(used))
  if (rank(matrix(used.filter((a) => people.get(a)!.size >= 5))) === full) return
  const everyone = [...new Set([...people.values()].flatMap((p) => [...p]))].sort()
  const seen = new Set<string>()
  for (const group of groupsOf(everyone, Math.min(4, everyone.length))) {
    // Atoms whose records all come from the group (or from no person): what would single the group out.
    const inside = used.filter((a) => [...people.get(a)!].every((p) => group.includes(p)))
    const key = inside.join('\n')
    if (inside.length === 0 || seen.has(key)) continue
    seen.add(key)
    const outside = used.filter((a) => !inside.includes(a))
    assert.equal(rank(matrix(outside)), full, `the shown figures single out people ${group.join(',')}: ${cells.filter((c) => c.shown).map((c) => c.id).join(' ')}`)
  }
}

function groupsOf<T>(xs: readonly T[], size: number): T[][] {
  if (size === 0) return [[]]
  const out: T[][] = []
  xs.forEach((x, i) => { for (const rest of groupsOf(xs.slice(i + 1), size - 1)) out.push([x, ...rest]) })
  return out
}

/** True when assertSafe finds something; for positive controls. */
export function leaks(people: ReadonlyMap<string, ReadonlySet<string>>, cells: readonly Shown[], nests: ReadonlyArray<readonly [string, string]>): boolean {
  try {
    assertSafe(people, cells, nests)
    return false
  } catch (e) {
    if (e instanceof assert.AssertionError) return true
    throw e
  }
}

/** A published breakdown period as a response carries it (times in ms). */
export interface PublishedPeriod {
  readonly granularity: 'day' | 'week' | 'month'
  readonly start: number
  readonly end: number
  readonly scopes: ReadonlyArray<{ readonly environment: string; readonly total: number | string; readonly cells: ReadonlyArray<{ readonly value: string; readonly requests: number | string }> }>
}

/**
 * The rows of breakdown periods of any granularities, over atoms `${day}|${environment}|${value}`
 * (day: whole days since `origin`), with the nests between them: value in total, environment in
 * `all`, a period in any longer one that holds it; and `assertTime`, complementary suppression
 * along time checked directly: under a shown figure, the hidden figures of a finer granularity it
 * holds involve 0 or ≥ 5 people (else it minus the shown ones gives them).
 */
export function breakdownRows(periods: readonly PublishedPeriod[], values: readonly string[], origin: number, people: ReadonlyMap<string, ReadonlySet<string>>) {
  const DAY = 86_400_000
  const envs = (s: string) => (s === 'all' ? ['sandbox', 'production'] : [s])
  const days = (p: PublishedPeriod) => Array.from({ length: Math.round((p.end - p.start) / DAY) }, (_, i) => Math.round((p.start - origin) / DAY) + i)
  const cells: Shown[] = []
  const nests: Array<[string, string]> = []
  const id = (p: PublishedPeriod, scope: string, x: string) => `${p.granularity}:${new Date(p.start).toISOString()}|${scope}|${x}`
  for (const p of periods) for (const s of p.scopes) {
    const atoms = (vs: readonly string[]) => days(p).flatMap((d) => envs(s.environment).flatMap((e) => vs.map((v) => `${d}|${e}|${v}`)))
    cells.push({ id: id(p, s.environment, 't'), atoms: atoms(values), shown: s.total !== '<5' })
    for (const c of s.cells) {
      cells.push({ id: id(p, s.environment, c.value), atoms: atoms([c.value]), shown: c.requests !== '<5' })
      nests.push([id(p, s.environment, c.value), id(p, s.environment, 't')])
    }
  }
  for (const p of periods) for (const q of periods) {
    if (p === q || q.start > p.start || q.end < p.end) continue
    for (const s of p.scopes) for (const x of ['t', ...s.cells.map((c) => c.value)]) {
      nests.push([id(p, s.environment, x), id(q, s.environment, x)])
      if (s.environment !== 'all') nests.push([id(p, s.environment, x), id(p, 'all', x)])
    }
  }
  // Complementary suppression along time, checked directly.
  const byId = new Map(cells.map((c) => [c.id, c]))
  const order = ['day', 'week', 'month']
  const assertTime = () => { for (const q of periods) for (const s of q.scopes) for (const x of ['t', ...s.cells.map((c) => c.value)]) {
    if (!byId.get(id(q, s.environment, x))!.shown) continue
    for (const g of order.slice(0, order.indexOf(q.granularity))) {
      const inner = periods.filter((p) => p.granularity === g && p.start >= q.start && p.end <= q.end)
      const hidden = inner.map((p) => byId.get(id(p, s.environment, x))!).filter((c) => !c.shown)
      const n = new Set(hidden.flatMap((c) => c.atoms.flatMap((a) => [...(people.get(a) ?? [])]))).size
      assert.ok(n === 0 || n >= 5, `under ${id(q, s.environment, x)}, the hidden ${g}s involve ${n} people`)
    }
  } }
  return { cells, nests, assertTime }
}
