import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { breakdown, challenges, HIDDEN, overTime, SCOPES, type Contribution, type Figure } from '../../src/analytics/cube.ts'
import { rank, suppress } from '../../src/analytics/suppress.ts'

/**
 * RBAC-3 (D10, security-tests §2.9): the suppression rules against an adversary who knows the
 * structure of a response and every number in it. For random populations the test rebuilds, on
 * its own, what each shown cell sums over (records grouped by environment × value) and checks
 *  - no shown cell has fewer than 5 distinct people;
 *  - no two nested shown cells differ by 1–4 people;
 *  - no linear combination of the shown numbers (totals minus parts, margins minus cells, any
 *    mix) adds up records that come only from a group of 1–4 people — checked exactly, for
 *    every group of 4 people, by rank: such a combination exists iff the shown rows restricted to
 *    the atoms of people outside the group have a lower rank than the shown rows.
 */

const ENVS = ['sandbox', 'production'] as const
const VALUES = ['a', 'b', 'c'] as const
const RUNS = process.env['TOLLGATE_TEST_LEVEL'] === 'full' ? 1000 : 200

interface Rec { person: number | null; env: (typeof ENVS)[number]; value: string; n: number }

/** 0–14 people with 1–4 records each (random environment and value), plus a few records of no person. */
const population = fc.integer({ min: 0, max: 14 }).chain((people) => fc.tuple(
  ...Array.from({ length: people }, (_, person) => fc.array(fc.record({ env: fc.constantFrom(...ENVS), value: fc.constantFrom(...VALUES), n: fc.integer({ min: 1, max: 4 }) }), { minLength: 1, maxLength: 4 })
    .map((rs) => rs.map((r): Rec => ({ person, ...r })))),
  fc.array(fc.record({ env: fc.constantFrom(...ENVS), value: fc.constantFrom(...VALUES), n: fc.integer({ min: 1, max: 2 }) }).map((r): Rec => ({ person: null, ...r })), { maxLength: 2 }),
).map((groups) => groups.flat()))

const contributions = (recs: readonly Rec[]): Contribution[] => recs.map((r) => ({ environment: r.env, value: r.value, actor: r.person === null ? null : `p${r.person}`, requests: r.n }))

type Atom = string // `${env}|${value}`
interface Shown { id: string; atoms: Atom[]; shown: boolean }

/** Everything an adversary can see, checked exactly (see the header). */
function assertSafe(recs: readonly Rec[], cells: readonly Shown[], nests: ReadonlyArray<[string, string]>): void {
  const peopleOf = (atoms: readonly Atom[]) => new Set(recs.filter((r) => atoms.includes(`${r.env}|${r.value}`) && r.person !== null).map((r) => r.person!))
  const byId = new Map(cells.map((c) => [c.id, c]))
  for (const c of cells) if (c.shown) assert.ok(peopleOf(c.atoms).size >= 5, `${c.id} is shown with ${peopleOf(c.atoms).size} people`)
  for (const [inner, outer] of nests) {
    const i = byId.get(inner)!
    const o = byId.get(outer)!
    if (!i.shown || !o.shown) continue
    const d = peopleOf(o.atoms).size - peopleOf(i.atoms).size
    assert.ok(d === 0 || d >= 5, `${inner} and ${outer} are both shown and differ by ${d} people`)
  }
  const used = [...new Set(recs.map((r) => `${r.env}|${r.value}`))]
  const rows = cells.filter((c) => c.shown)
  if (rows.length === 0 || used.length === 0) return
  const matrix = (cols: readonly Atom[]) => rows.map((r) => cols.map((a) => (r.atoms.includes(a) ? 1 : 0)))
  const full = rank(matrix(used))
  const everyone = [...new Set(recs.filter((r) => r.person !== null).map((r) => r.person!))]
  for (const group of groupsOf(everyone, Math.min(4, everyone.length))) {
    // Atoms whose records all come from the group (or from no person): what would single the group out.
    const inside = new Set(used.filter((a) => [...peopleOf([a])].every((p) => group.includes(p))))
    if (inside.size === 0) continue
    const outside = used.filter((a) => !inside.has(a))
    assert.equal(rank(matrix(outside)), full, `the shown cells single out people ${group.join(',')}: ${rows.map((r) => r.id).join(' ')}`)
  }
}

function groupsOf<T>(xs: readonly T[], size: number): T[][] {
  if (size === 0) return [[]]
  const out: T[][] = []
  xs.forEach((x, i) => { for (const rest of groupsOf(xs.slice(i + 1), size - 1)) out.push([x, ...rest]) })
  return out
}

const envsOf = (s: string) => (s === 'all' ? [...ENVS] : [s])
const isShown = (f: Figure) => f !== HIDDEN

test('RBAC-3: property — in a breakdown (environment × value, both margins) no shown cell has <5 people and no individual or group of 1–4 can be derived', () => {
  let mixed = 0
  fc.assert(fc.property(population, (recs) => {
    const figures = breakdown(contributions(recs), VALUES)
    const all = figures.flatMap((f) => [f.total, ...f.cells.map((c) => c.requests)])
    if (all.some(isShown) && !all.every(isShown)) mixed++
    const cells: Shown[] = []
    const nests: Array<[string, string]> = []
    for (const f of figures) {
      cells.push({ id: `t:${f.environment}`, atoms: envsOf(f.environment).flatMap((e) => VALUES.map((v) => `${e}|${v}`)), shown: isShown(f.total) })
      for (const c of f.cells) {
        cells.push({ id: `c:${f.environment}:${c.value}`, atoms: envsOf(f.environment).map((e) => `${e}|${c.value}`), shown: isShown(c.requests) })
        nests.push([`c:${f.environment}:${c.value}`, `t:${f.environment}`])
        if (f.environment !== 'all') nests.push([`c:${f.environment}:${c.value}`, `c:all:${c.value}`])
      }
      if (f.environment !== 'all') nests.push([`t:${f.environment}`, 't:all'])
    }
    // Shown figures are the true sums; hidden ones are the string "<5", never a number.
    for (const f of figures) for (const c of f.cells) {
      const truth = recs.filter((r) => envsOf(f.environment).includes(r.env) && r.value === c.value).reduce((s, r) => s + r.n, 0)
      assert.ok(c.requests === HIDDEN || c.requests === truth)
    }
    assertSafe(recs, cells, nests)
    // The totals agree with the over-time report's (pinned): no report can be differenced against another.
    const totals = overTime(contributions(recs))
    for (const s of SCOPES) assert.equal(isShown(figures.find((f) => f.environment === s)!.total), isShown(totals.find((t) => t.environment === s)!.requests))
  }), { numRuns: RUNS })
  // The populations exercise the rules: many responses show some cells and hide others.
  assert.ok(mixed > RUNS / 4, `${mixed} of ${RUNS} runs mixed shown and hidden cells`)
})

test('RBAC-3: property — challenge figures (challenged, passed, failed under the request totals) single out no one', () => {
  const graded = population.map((recs) => recs.map((r) => ({ ...r, value: r.value === 'a' ? 'passed' : r.value === 'b' ? 'failed' : 'none' })))
  fc.assert(fc.property(graded, (recs) => {
    const figures = challenges(contributions(recs))
    const cells: Shown[] = []
    const nests: Array<[string, string]> = []
    const totals = overTime(contributions(recs))
    for (const f of figures) {
      const at = (st: string[]) => envsOf(f.environment).flatMap((e) => st.map((s) => `${e}|${s}`))
      cells.push({ id: `t:${f.environment}`, atoms: at(['passed', 'failed', 'none']), shown: isShown(totals.find((t) => t.environment === f.environment)!.requests) })
      cells.push({ id: `g:${f.environment}`, atoms: at(['passed', 'failed']), shown: isShown(f.challenged) })
      cells.push({ id: `p:${f.environment}`, atoms: at(['passed']), shown: isShown(f.passed) })
      cells.push({ id: `f:${f.environment}`, atoms: at(['failed']), shown: isShown(f.failed) })
      nests.push([`g:${f.environment}`, `t:${f.environment}`], [`p:${f.environment}`, `g:${f.environment}`], [`f:${f.environment}`, `g:${f.environment}`])
      if (f.environment !== 'all') for (const x of ['t', 'g', 'p', 'f']) nests.push([`${x}:${f.environment}`, `${x}:all`])
      // A rate or a mean is shown only with the counts it is computed from.
      if (isShown(f.pass_rate)) assert.ok(isShown(f.passed) && isShown(f.challenged))
      if (isShown(f.mean_reasoning_score)) assert.ok(isShown(f.challenged))
    }
    assertSafe(recs, cells, nests)
  }), { numRuns: RUNS })
})

test('RBAC-3: the adversary check itself finds a planted leak (positive control)', () => {
  // 12 people in `a`, one person alone in `b`: showing the total and `a` reveals `b` by subtraction.
  const recs: Rec[] = [...Array.from({ length: 12 }, (_, i) => ({ person: i, env: 'sandbox' as const, value: 'a', n: 1 })), { person: 99, env: 'sandbox', value: 'b', n: 3 }]
  const atomsA = ['sandbox|a']
  const atomsT = ['sandbox|a', 'sandbox|b']
  assert.throws(() => assertSafe(recs, [{ id: 't', atoms: atomsT, shown: true }, { id: 'a', atoms: atomsA, shown: true }, { id: 'b', atoms: ['sandbox|b'], shown: false }], []), /single out|differ by/)
  // And the module suppresses exactly that: b by the floor, then a by the differencing guard (12 vs 13 people).
  const shown = suppress({
    atoms: [{ id: 'sandbox|a', people: new Set(Array.from({ length: 12 }, (_, i) => `p${i}`)) }, { id: 'sandbox|b', people: new Set(['p99']) }],
    cells: [{ id: 't', atoms: atomsT }, { id: 'a', atoms: atomsA }, { id: 'b', atoms: ['sandbox|b'] }],
    families: [{ total: 't', parts: ['a', 'b'] }],
    nests: [{ inner: 'a', outer: 't' }, { inner: 'b', outer: 't' }],
  })
  assert.deepEqual([...shown], ['t'])
})

test('RBAC-3: complementary suppression hides the next-smallest part; the floor hides small totals too', () => {
  // Total of 16 people: x has 9, y 5, z 2 — z is floored, so y (next smallest) goes with it.
  const ppl = (from: number, n: number) => new Set(Array.from({ length: n }, (_, i) => `p${from + i}`))
  const plan = {
    atoms: [{ id: 'x', people: ppl(0, 9) }, { id: 'y', people: ppl(9, 5) }, { id: 'z', people: ppl(14, 2) }],
    cells: [{ id: 'T', atoms: ['x', 'y', 'z'] }, { id: 'X', atoms: ['x'] }, { id: 'Y', atoms: ['y'] }, { id: 'Z', atoms: ['z'] }],
    families: [{ total: 'T', parts: ['X', 'Y', 'Z'] }],
  }
  assert.deepEqual([...suppress(plan)].sort(), ['T', 'X'])
  // A total of 4 people is itself "<5": nothing is shown.
  assert.deepEqual([...suppress({ ...plan, atoms: [{ id: 'x', people: ppl(0, 2) }, { id: 'y', people: ppl(2, 1) }, { id: 'z', people: ppl(3, 1) }] })], [])
})
