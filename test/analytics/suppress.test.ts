import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { decideMonth, HIDDEN, SCOPES, type BreakdownFigures, type ChallengeFigures, type Contribution, type Figure, type TotalsFigures } from '../../src/analytics/cube.ts'
import { monthSpans, type Span } from '../../src/analytics/periods.ts'
import { suppress } from '../../src/analytics/suppress.ts'
import { assertSafe, leaks, type Shown } from './attacker.ts'

/**
 * RBAC-3 (D10, security-tests §2.9): the suppression rules against an adversary who knows the
 * structure of every response and every number in them (attacker.ts). A month is one block: its
 * day series, week series (weeks of the month: days 1–7, 8–14, 15–21, 22–28, 29–end) and month
 * figure, for every scope and value, are checked TOGETHER — what someone gets by asking for all
 * three granularities and every environment.
 */

const ENVS = ['sandbox', 'production'] as const
const VALUES = ['a', 'b', 'c'] as const
const RUNS = process.env['TOLLGATE_TEST_LEVEL'] === 'full' ? 1000 : 200
// March 2025: 31 days, so five weeks, the last of three days.
const MONTH = monthSpans(Date.UTC(2025, 2, 1))

interface Rec { person: number | null; day: number; env: (typeof ENVS)[number]; value: string; n: number }

/**
 * 0–20 people with 1–4 records each, plus a few records of no person, over a month. Most records
 * fall on a handful of busy days (so day figures reach 5 people and are shown), the rest anywhere.
 */
const population = fc.tuple(fc.uniqueArray(fc.integer({ min: 0, max: 30 }), { minLength: 1, maxLength: 5 }), fc.integer({ min: 0, max: 20 })).chain(([busy, people]) => {
  const day = fc.oneof({ arbitrary: fc.constantFrom(...busy), weight: 4 }, { arbitrary: fc.integer({ min: 0, max: 30 }), weight: 1 })
  const rec = (n: number) => fc.record({ day, env: fc.constantFrom(...ENVS), value: fc.constantFrom(...VALUES), n: fc.integer({ min: 1, max: n }) })
  return fc.tuple(
    ...Array.from({ length: people }, (_, person) => fc.array(rec(4), { minLength: 1, maxLength: 4 }).map((rs) => rs.map((r): Rec => ({ person, ...r })))),
    fc.array(rec(2).map((r): Rec => ({ person: null, ...r })), { maxLength: 2 }),
  ).map((groups) => groups.flat())
})

const contributions = (recs: readonly Rec[]): Contribution[] => recs.map((r) => ({ day: r.day, environment: r.env, values: { v: r.value }, actor: r.person === null ? null : `p${r.person}`, requests: r.n }))
/** The month block of `recs` with its one dimension, `v`. */
const decide = (rows: readonly Contribution[], spans: readonly Span[] = MONTH) => decideMonth(rows, spans, { v: VALUES })
const atomOf = (day: number, env: string, value: string) => `${day}|${env}|${value}`
/** The attacker's knowledge: who is behind each (day, environment, value). */
const peopleOf = (recs: readonly Rec[]) => {
  const m = new Map<string, Set<string>>()
  for (const r of recs) {
    const a = atomOf(r.day, r.env, r.value)
    const s = m.get(a) ?? new Set<string>()
    if (r.person !== null) s.add(`p${r.person}`)
    m.set(a, s)
  }
  return m
}
const envsOf = (s: string) => (s === 'all' ? [...ENVS] : [s])
const isShown = (f: Figure) => f !== HIDDEN
const atomsOf = (span: Span, scope: string, values: readonly string[]) => span.days.flatMap((d) => envsOf(scope).flatMap((e) => values.map((v) => atomOf(d, e, v))))
const ancestors = (span: Span, spans: readonly Span[]): string[] => {
  const parent = spans.find((s) => s.id === span.parent)
  return parent ? [parent.id, ...ancestors(parent, spans)] : []
}

/** Each (span, scope, x) figure as a row the attacker reads, with the nests between them (time, environment, value). */
function rows<F extends { environment: string }>(figures: ReadonlyMap<string, readonly F[]>, spans: readonly Span[], read: (f: F) => Array<{ x: string; values: readonly string[]; figure: Figure; within?: string }>) {
  const cells: Shown[] = []
  const nests: Array<[string, string]> = []
  for (const span of spans) for (const f of figures.get(span.id)!) for (const c of read(f)) {
    const id = `${span.id}|${f.environment}|${c.x}`
    cells.push({ id, atoms: atomsOf(span, f.environment, c.values), shown: isShown(c.figure) })
    if (c.within) nests.push([id, `${span.id}|${f.environment}|${c.within}`])
    if (f.environment !== 'all') nests.push([id, `${span.id}|all|${c.x}`])
    for (const a of ancestors(span, spans)) nests.push([id, `${a}|${f.environment}|${c.x}`])
  }
  return { cells, nests }
}

const breakdownRows = (figures: ReadonlyMap<string, readonly BreakdownFigures[]>, spans: readonly Span[]) =>
  rows(figures, spans, (f) => [{ x: 't', values: VALUES, figure: f.total }, ...f.cells.map((c) => ({ x: c.value, values: [c.value], figure: c.requests, within: 't' }))])

test('RBAC-3: property — a month\'s day, week and month breakdowns read together (time × environment × value, every margin) show no cell of <5 people and single out no individual or group of 1–4', () => {
  let mixed = 0
  let daysShown = 0
  fc.assert(fc.property(population, (recs) => {
    const month = decide(contributions(recs))
    const figures = month.breakdown('v')
    const { cells, nests } = breakdownRows(figures, MONTH)
    if (cells.some((c) => c.shown) && !cells.every((c) => c.shown)) mixed++
    if (cells.some((c) => c.shown && c.id.startsWith('day:'))) daysShown++
    // Shown figures are the true sums; hidden ones are the string "<5", never a number.
    for (const span of MONTH) for (const f of figures.get(span.id)!) for (const c of f.cells) {
      const truth = recs.filter((r) => span.days.includes(r.day) && envsOf(f.environment).includes(r.env) && r.value === c.value).reduce((s, r) => s + r.n, 0)
      assert.ok(c.requests === HIDDEN || c.requests === truth)
    }
    assertSafe(peopleOf(recs), cells, nests)
    // The totals agree with the over-time report's (one block): no report can be differenced against another.
    const totals = month.requests()
    for (const span of MONTH) for (const s of SCOPES) {
      assert.equal(isShown(figures.get(span.id)!.find((f) => f.environment === s)!.total), isShown(totals.get(span.id)!.find((t) => t.environment === s)!.requests))
    }
  }), { numRuns: RUNS })
  // The populations exercise the rules: many blocks show some cells and hide others, and show days.
  assert.ok(mixed > RUNS / 4, `${mixed} of ${RUNS} runs mixed shown and hidden cells`)
  assert.ok(daysShown > RUNS / 20, `${daysShown} of ${RUNS} runs showed a day figure`)
})

test('RBAC-3: property — a month\'s challenge figures (challenged, passed, failed under the request totals) at every granularity single out no one', () => {
  const graded = population.map((recs) => recs.map((r) => ({ ...r, value: r.value === 'a' ? 'passed' : r.value === 'b' ? 'failed' : 'none' })))
  fc.assert(fc.property(graded, (recs) => {
    const month = decideMonth(recs.map((r) => ({ ...contributions([r])[0]!, values: {}, graded: r.value === 'none' ? null : r.value as 'passed' | 'failed' })), MONTH)
    const figures = month.challenges()
    const totals = month.requests()
    const { cells, nests } = rows(figures, MONTH, (f) => [
      { x: 'g', values: ['passed', 'failed'], figure: f.challenged, within: 't' },
      { x: 'p', values: ['passed'], figure: f.passed, within: 'g' },
      { x: 'f', values: ['failed'], figure: f.failed, within: 'g' },
    ])
    const t = rows(totals, MONTH, (f) => [{ x: 't', values: ['passed', 'failed', 'none'], figure: f.requests }])
    for (const span of MONTH) for (const f of figures.get(span.id)!) {
      // A rate or a mean is shown only with the counts it is computed from.
      if (isShown(f.pass_rate)) assert.ok(isShown(f.passed) && isShown(f.challenged))
      if (isShown(f.mean_reasoning_score)) assert.ok(isShown(f.challenged))
    }
    assertSafe(peopleOf(recs), [...t.cells, ...cells], [...t.nests, ...nests])
  }), { numRuns: RUNS })
})

test('RBAC-3: the adversary check itself finds a planted leak (positive control)', () => {
  // 12 people in `a`, one person alone in `b`: showing the total and `a` reveals `b` by subtraction.
  const people = new Map([['0|sandbox|a', new Set(Array.from({ length: 12 }, (_, i) => `p${i}`))], ['0|sandbox|b', new Set(['p99'])]])
  const atomsA = ['0|sandbox|a']
  const atomsT = ['0|sandbox|a', '0|sandbox|b']
  assert.throws(() => assertSafe(people, [{ id: 't', atoms: atomsT, shown: true }, { id: 'a', atoms: atomsA, shown: true }, { id: 'b', atoms: ['0|sandbox|b'], shown: false }], []), /single out|differ by/)
  // And the module suppresses exactly that: b by the floor, then a by the differencing guard (12 vs 13 people).
  const shown = suppress({
    atoms: [{ id: 'sandbox|a', people: people.get('0|sandbox|a')! }, { id: 'sandbox|b', people: new Set(['p99']) }],
    cells: [{ id: 't', atoms: atomsT.map((a) => a.slice(2)) }, { id: 'a', atoms: ['sandbox|a'] }, { id: 'b', atoms: ['sandbox|b'] }],
    families: [{ total: 't', parts: ['a', 'b'] }],
  })
  assert.deepEqual([...shown], ['t'])
})

/** The old behaviour, simulated: every period decided on its own records, as if no other granularity existed. */
function perPeriod(recs: readonly Rec[]) {
  const figures = new Map(MONTH.map((span) => {
    const own = contributions(recs.filter((r) => span.days.includes(r.day)))
    return [span.id, decide(own, [{ id: span.id, days: span.days }]).breakdown('v').get(span.id)!] as const
  }))
  return breakdownRows(figures, MONTH)
}

test('RBAC-3: positive control for differencing across granularities — decided per period (the old behaviour), a shown week minus its shown days gives a hidden day; decided per month block, it does not', () => {
  // Days 1 and 2: six people each; day 3: one person alone. The week (13 people) and days 1 and 2
  // are each fine on their own, and week − day 1 − day 2 = day 3.
  const recs: Rec[] = [
    ...Array.from({ length: 6 }, (_, i): Rec => ({ person: i, day: 0, env: 'production', value: 'a', n: 1 })),
    ...Array.from({ length: 6 }, (_, i): Rec => ({ person: 10 + i, day: 1, env: 'production', value: 'a', n: 1 })),
    { person: 99, day: 2, env: 'production', value: 'a', n: 2 },
  ]
  const old = perPeriod(recs)
  assert.throws(() => assertSafe(peopleOf(recs), old.cells, old.nests), /single out people .*p99/)
  const now = breakdownRows(decide(contributions(recs)).breakdown('v'), MONTH)
  assertSafe(peopleOf(recs), now.cells, now.nests)
  // Complementary suppression along time: a second day goes with day 3; the week is still shown.
  const shown = new Set(now.cells.filter((c) => c.shown).map((c) => c.id))
  const day = (d: number) => `${MONTH.find((s) => s.id.startsWith('day:') && s.days[0] === d)!.id}|all|t`
  assert.ok(shown.has(`${MONTH.find((s) => s.id.startsWith('week:'))!.id}|all|t`))
  assert.deepEqual([0, 1, 2].map((d) => shown.has(day(d))).filter(Boolean).length, 1)

  // And over random populations, the per-period decisions leak for some — the check can fail.
  const found = fc.check(fc.property(population, (r) => {
    const p = perPeriod(r)
    return !leaks(peopleOf(r), p.cells, p.nests)
  }), { numRuns: 2000 })
  assert.ok(found.failed, 'fast-check found a population that per-period decisions expose')
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

// ---- teams (a fixed cohort: the member's team when each request was decided) ----

const TEAMS = ['red', 'blue', 'green'] as const
interface TeamRec extends Rec { team: string | null }

/**
 * The population above with teams: each person is in no team or in one, and some move to another
 * mid-month (churn: a record carries the team it was decided under, so a mover is in two teams).
 */
const teamed = population.chain((recs) => {
  const persons = [...new Set(recs.flatMap((r) => (r.person === null ? [] : [r.person])))]
  const plan = fc.array(fc.record({ from: fc.option(fc.constantFrom(...TEAMS), { nil: null }), to: fc.option(fc.constantFrom(...TEAMS), { nil: null }), moveOn: fc.integer({ min: 0, max: 31 }) }), { minLength: persons.length, maxLength: persons.length })
  return fc.tuple(plan, fc.option(fc.constantFrom(...TEAMS), { nil: null })).map(([p, keyless]) => recs.map((r): TeamRec => {
    if (r.person === null) return { ...r, team: keyless }
    const t = p[persons.indexOf(r.person)]!
    return { ...r, team: r.day < t.moveOn ? t.from : t.to }
  }))
})

const teamAtom = (day: number, env: string, value: string, team: string | null) => `${day}|${env}|${value}|${team ?? ''}`
const teamPeople = (recs: readonly TeamRec[]) => {
  const m = new Map<string, Set<string>>()
  for (const r of recs) {
    const a = teamAtom(r.day, r.env, r.value, r.team)
    const s = m.get(a) ?? new Set<string>()
    if (r.person !== null) s.add(`p${r.person}`)
    m.set(a, s)
  }
  return m
}
const teamContributions = (recs: readonly TeamRec[]): Contribution[] => recs.map((r) => ({ ...contributions([r])[0]!, team: r.team }))

/** Every published figure of a month with teams: the breakdown (org cells) and the per-team totals, as the attacker reads them. */
function teamRows(breakdownFigures: ReadonlyMap<string, readonly BreakdownFigures[]>, totals: ReadonlyMap<string, readonly TotalsFigures[]>, spans: readonly Span[]) {
  const teamsOf = [...TEAMS, null]
  const atoms = (span: Span, scope: string, values: readonly string[], teams: ReadonlyArray<string | null>) =>
    span.days.flatMap((d) => envsOf(scope).flatMap((e) => values.flatMap((v) => teams.map((t) => teamAtom(d, e, v, t)))))
  const cells: Shown[] = []
  const nests: Array<[string, string]> = []
  const add = (span: Span, scope: string, x: string, values: readonly string[], teams: ReadonlyArray<string | null>, figure: Figure, within?: string) => {
    const id = `${span.id}|${scope}|${x}`
    cells.push({ id, atoms: atoms(span, scope, values, teams), shown: isShown(figure) })
    if (within) nests.push([id, `${span.id}|${scope}|${within}`])
    if (scope !== 'all') nests.push([id, `${span.id}|all|${x}`])
    for (const a of ancestors(span, spans)) nests.push([id, `${a}|${scope}|${x}`])
  }
  for (const span of spans) {
    for (const f of breakdownFigures.get(span.id)!) {
      add(span, f.environment, 't', VALUES, teamsOf, f.total)
      for (const c of f.cells) add(span, f.environment, c.value, [c.value], teamsOf, c.requests, 't')
    }
    for (const f of totals.get(span.id)!) if (f.team !== undefined) {
      assert.equal(f.requests === HIDDEN, f.people === HIDDEN, 'a team\'s requests and people are shown together')
      add(span, f.environment, `team:${f.team}`, VALUES, [f.team], f.requests, 't')
    }
  }
  return { cells, nests }
}

test('RBAC-3: property — with random teams and churn (people moving between teams mid-month), a month\'s team figures read together with the org\'s breakdown at every granularity show no cell of <5 people and single out no one', () => {
  let teamShown = 0
  let teamHidden = 0
  fc.assert(fc.property(teamed, (recs) => {
    const rows = teamContributions(recs)
    const month = decide(rows)
    const figures = month.breakdown('v')
    const totals = month.requests(true)
    // Teams listed are those in the month's records; shown figures are the true sums and distinct people.
    const present = [...new Set(recs.flatMap((r) => (r.team === null ? [] : [r.team])))].sort()
    for (const span of MONTH) {
      const listed = totals.get(span.id)!.filter((f) => f.team !== undefined)
      assert.deepEqual([...new Set(listed.map((f) => f.team))].sort(), present)
      for (const f of listed) {
        const mine = recs.filter((r) => r.team === f.team && span.days.includes(r.day) && envsOf(f.environment).includes(r.env))
        if (f.requests !== HIDDEN) {
          teamShown++
          assert.equal(f.requests, mine.reduce((s, r) => s + r.n, 0))
          assert.equal(f.people, new Set(mine.flatMap((r) => (r.person === null ? [] : [r.person]))).size)
        } else if (mine.length > 0) teamHidden++
      }
      // The org's figures are the same with or without the team entries.
      assert.deepEqual(totals.get(span.id)!.filter((f) => f.team === undefined), month.requests().get(span.id))
    }
    const { cells, nests } = teamRows(figures, totals, MONTH)
    assertSafe(teamPeople(recs), cells, nests)
  }), { numRuns: RUNS })
  assert.ok(teamShown > 0 && teamHidden > 0, `team figures both shown (${teamShown}) and hidden (${teamHidden})`)
})

test('RBAC-3: positive control for teams — a team figure published next to the org total singles out the one person outside the team; the module hides it', () => {
  // Day 1: five people in red, one person (p9) in no team. Org total (6 people) minus red (5) = p9.
  const recs: TeamRec[] = [
    ...Array.from({ length: 5 }, (_, i): TeamRec => ({ person: i, day: 0, env: 'production', value: 'a', n: 1, team: 'red' })),
    { person: 9, day: 0, env: 'production', value: 'a', n: 3, team: null },
  ]
  const day = MONTH.find((s) => s.id.startsWith('day:') && s.days[0] === 0)!
  const naive = [
    { id: 'org', atoms: [teamAtom(0, 'production', 'a', 'red'), teamAtom(0, 'production', 'a', null)], shown: true },
    { id: 'red', atoms: [teamAtom(0, 'production', 'a', 'red')], shown: true },
  ]
  assert.throws(() => assertSafe(teamPeople(recs), naive, [['red', 'org']]), /single out|differ by/)
  const totals = decide(teamContributions(recs)).requests(true).get(day.id)!
  assert.deepEqual(totals.filter((f) => f.environment === 'production').map((f) => [f.team ?? 'org', f.requests]), [['org', 8], ['red', HIDDEN]])
})

// ---- every report of a month together: two dimensions, the challenge figures and the teams ----

const WS = ['x', 'y'] as const
type Graded = 'passed' | 'failed' | null
interface JointRec extends TeamRec { w: string; graded: Graded }

/** The population with teams, and each record also in a second dimension (`w`) and graded or not. */
const joint = teamed.chain((recs) => fc.tuple(
  fc.array(fc.constantFrom(...WS), { minLength: recs.length, maxLength: recs.length }),
  fc.array(fc.constantFrom<Graded>(null, null, 'passed', 'failed'), { minLength: recs.length, maxLength: recs.length }),
).map(([ws, gs]) => recs.map((r, i): JointRec => ({ ...r, w: ws[i]!, graded: gs[i]! }))))

const jointAtom = (day: number, env: string, r: { value: string; w: string; graded: Graded; team: string | null }) => `${day}|${env}|${r.value}|${r.w}|${r.graded ?? ''}|${r.team ?? ''}`
const jointPeople = (recs: readonly JointRec[]) => {
  const m = new Map<string, Set<string>>()
  for (const r of recs) {
    const a = jointAtom(r.day, r.env, r)
    const s = m.get(a) ?? new Set<string>()
    if (r.person !== null) s.add(`p${r.person}`)
    m.set(a, s)
  }
  return m
}
const jointContributions = (recs: readonly JointRec[]): Contribution[] => recs.map((r) => ({ ...teamContributions([r])[0]!, values: { v: r.value, w: r.w }, graded: r.graded }))
const JOINT_DIMS = { v: VALUES, w: WS }

interface Reports {
  readonly v: ReadonlyMap<string, readonly BreakdownFigures[]>
  readonly w: ReadonlyMap<string, readonly BreakdownFigures[]>
  readonly challenges: ReadonlyMap<string, readonly ChallengeFigures[]>
  readonly totals: ReadonlyMap<string, readonly TotalsFigures[]>
}

/**
 * Every figure of every report of a month as the attacker reads them, over the joint atoms
 * (day, environment, v, w, grading, team), and as nests every pair of shown figures whose records
 * nest — within a report or across reports, whatever the dimension (D10's differencing guard).
 */
function jointRows(r: Reports, people: ReadonlyMap<string, ReadonlySet<string>>, spans: readonly Span[]) {
  const teamsOf = [...TEAMS, null]
  const cells: Shown[] = []
  const add = (span: Span, scope: string, id: string, figure: Figure, keep: (x: { value: string; w: string; graded: Graded; team: string | null }) => boolean) => {
    const atoms: string[] = []
    for (const d of span.days) for (const e of envsOf(scope)) for (const value of VALUES) for (const w of WS) for (const graded of [null, 'passed', 'failed'] as const) for (const team of teamsOf) {
      if (keep({ value, w, graded, team })) atoms.push(jointAtom(d, e, { value, w, graded, team }))
    }
    cells.push({ id: `${span.id}|${scope}|${id}`, atoms, shown: isShown(figure) })
  }
  for (const span of spans) {
    for (const f of r.totals.get(span.id)!) {
      if (f.team === undefined) add(span, f.environment, 't', f.requests, () => true)
      else add(span, f.environment, `team:${f.team}`, f.requests, (x) => x.team === f.team)
    }
    for (const dim of ['v', 'w'] as const) for (const f of r[dim].get(span.id)!) {
      assert.equal(isShown(f.total), isShown(r.totals.get(span.id)!.find((t) => t.environment === f.environment && t.team === undefined)!.requests), 'every report shows the same totals')
      for (const c of f.cells) add(span, f.environment, `${dim}=${c.value}`, c.requests, (x) => (dim === 'v' ? x.value : x.w) === c.value)
    }
    for (const f of r.challenges.get(span.id)!) {
      add(span, f.environment, 'g', f.challenged, (x) => x.graded !== null)
      add(span, f.environment, 'p', f.passed, (x) => x.graded === 'passed')
      add(span, f.environment, 'f', f.failed, (x) => x.graded === 'failed')
    }
  }
  // Nests by the records: every pair of shown figures where one's records are among the other's.
  const held = (c: Shown) => c.atoms.filter((a) => people.has(a))
  const shown = cells.filter((c) => c.shown).map((c) => ({ id: c.id, atoms: new Set(held(c)) }))
  const nests: Array<[string, string]> = []
  for (const i of shown) for (const o of shown) if (i !== o && i.atoms.size <= o.atoms.size && [...i.atoms].every((a) => o.atoms.has(a))) nests.push([i.id, o.id])
  return { cells, nests }
}

const reportsOf = (m: ReturnType<typeof decideMonth>): Reports => ({ v: m.breakdown('v'), w: m.breakdown('w'), challenges: m.challenges(), totals: m.requests(true) })

/**
 * Across reports (D10's guard): no two shown figures whose records nest — a value of one
 * dimension inside a value of another, a team inside an outcome, a week inside a month total —
 * differ by 1–4 people, or hold records of 1–4 people in the outer one only (outer minus inner
 * would give them).
 */
function assertGuarded(people: ReadonlyMap<string, ReadonlySet<string>>, cells: readonly Shown[], nests: ReadonlyArray<readonly [string, string]>): void {
  const byId = new Map(cells.map((c) => [c.id, c]))
  const peopleOf = (atoms: readonly string[]) => new Set(atoms.flatMap((a) => [...(people.get(a) ?? [])]))
  for (const c of cells) if (c.shown) assert.ok(peopleOf(c.atoms).size >= 5, `${c.id} is shown with ${peopleOf(c.atoms).size} people`)
  for (const [inner, outer] of nests) {
    const i = byId.get(inner)!
    const o = byId.get(outer)!
    const d = peopleOf(o.atoms).size - peopleOf(i.atoms).size
    assert.ok(d === 0 || d >= 5, `${inner} and ${outer} are both shown and differ by ${d} people`)
    const rest = peopleOf(o.atoms.filter((a) => !i.atoms.includes(a))).size
    assert.ok(rest === 0 || rest >= 5, `${outer} minus ${inner} gives the records of ${rest} people`)
  }
}

/** Two reports read with the totals and teams, on their atoms (day, environment, their values, team): the linear audit's view. */
function assertReportsSafe(people: ReadonlyMap<string, ReadonlySet<string>>, cells: readonly Shown[], reports: ReadonlyArray<'v' | 'w' | 'g'>): void {
  const fields = reports.map((r) => (r === 'v' ? 2 : r === 'w' ? 3 : 4))
  const coarse = (a: string) => { const f = a.split('|'); return [f[0], f[1], ...fields.map((i) => f[i]), f[5]].join('|') }
  const keep = (id: string) => { const x = id.split('|')[2]!; return x === 't' || x.startsWith('team:') || reports.some((r) => (r === 'g' ? ['g', 'p', 'f'].includes(x) : x.startsWith(`${r}=`))) }
  const coarsePeople = new Map<string, Set<string>>()
  for (const [a, p] of people) coarsePeople.set(coarse(a), new Set([...(coarsePeople.get(coarse(a)) ?? []), ...p]))
  assertSafe(coarsePeople, cells.filter((c) => keep(c.id)).map((c) => ({ ...c, atoms: [...new Set(c.atoms.map(coarse))] })), [])
}

test('RBAC-3: property — every report of a month read together (two breakdown dimensions, the challenge figures and the team totals, at every granularity and environment): no cell of <5 people; no two nested figures of any reports differing by 1–4 people or leaving 1–4 people\'s records between them; any two reports with the totals and teams single out no one', () => {
  let both = 0
  fc.assert(fc.property(joint, (recs) => {
    const people = jointPeople(recs)
    const { cells, nests } = jointRows(reportsOf(decideMonth(jointContributions(recs), MONTH, JOINT_DIMS)), people, MONTH)
    const shown = (dim: string) => new Set(cells.filter((c) => c.shown && c.id.split('|')[2]!.startsWith(`${dim}=`)).map((c) => c.id.split('|').slice(0, 2).join('|')))
    const w = shown('w')
    if ([...shown('v')].some((at) => w.has(at))) both++
    assertGuarded(people, cells, nests)
    for (const pair of [['v', 'w'], ['v', 'g'], ['w', 'g']] as const) assertReportsSafe(people, cells, pair)
  }), { numRuns: Math.ceil(RUNS / 2) })
  assert.ok(both > RUNS / 20, `${both} runs showed figures of both dimensions for the same period and scope`)
})

test('RBAC-3: positive control across dimensions — decided per report (one dimension at a time), "a" minus "x" gives the one person who is in a but not in x; decided as one block, the guard hides it', () => {
  // Day 1, production: six people on (a, x), six on (b, y), and p99 alone on (a, y). Each dimension
  // alone is safe — a has 7 people, b 6, x 6, y 7 — but x's records are among a's: a − x = p99's.
  const recs: JointRec[] = [
    ...Array.from({ length: 6 }, (_, i): JointRec => ({ person: i, day: 0, env: 'production', value: 'a', w: 'x', n: 1, team: null, graded: null })),
    ...Array.from({ length: 6 }, (_, i): JointRec => ({ person: 10 + i, day: 0, env: 'production', value: 'b', w: 'y', n: 1, team: null, graded: null })),
    { person: 99, day: 0, env: 'production', value: 'a', w: 'y', n: 3, team: null, graded: null },
  ]
  const people = jointPeople(recs)
  const rows = jointContributions(recs)
  const byV = decideMonth(rows, MONTH, { v: VALUES })
  const byW = decideMonth(rows, MONTH, { w: WS })
  const old = jointRows({ v: byV.breakdown('v'), w: byW.breakdown('w'), challenges: byV.challenges(), totals: byV.requests(true) }, people, MONTH)
  const day = MONTH.find((s) => s.id.startsWith('day:') && s.days[0] === 0)!.id
  assert.ok(old.cells.find((c) => c.id === `${day}|production|v=a`)!.shown && old.cells.find((c) => c.id === `${day}|production|w=x`)!.shown, 'each report alone shows a and x')
  assert.throws(() => assertGuarded(people, old.cells, old.nests), /minus .* gives the records of 1 people|differ by 1 people/)
  assert.throws(() => assertSafe(people, old.cells, old.nests), /single out people p99|differ by 1 people/)
  const now = jointRows(reportsOf(decideMonth(rows, MONTH, JOINT_DIMS)), people, MONTH)
  assertGuarded(people, now.cells, now.nests)
  assertSafe(people, now.cells, now.nests)
  assert.ok(now.cells.some((c) => c.id === `${day}|production|t` && c.shown), 'the day\'s total is still shown')
})
