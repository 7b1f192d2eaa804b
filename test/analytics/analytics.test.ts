import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { ManualClock } from '../fakes/clock.ts'
import { orgWithKeys, startApp, type TestApp } from '../helpers/app.ts'
import { call, person } from '../api/world.ts'
import { decideMonth, type Contribution } from '../../src/analytics/cube.ts'
import { assertSafe, breakdownRows, type PublishedPeriod, type Shown } from './attacker.ts'
import { people, seedDecisions, type Spec } from './seed.ts'

/**
 * RBAC-3 and AUDIT-4 over HTTP, on SQLite and PostgreSQL: k-floored cohort analytics with
 * decision records of known populations, read as OWNER, ADMIN, ANALYST and MEMBER.
 */

const DAY = 86_400_000
// Wednesday 26 March 2025, 12:00 UTC: its week of the month is 22–28 March.
const NOW = Date.UTC(2025, 2, 26, 12)
const WEEK0 = Date.UTC(2025, 2, 24)
/** The start of the week of the month `n` weeks back from this one (all in March). */
const weekStart = (n: number) => Date.UTC(2025, 2, 22 - 7 * n)
const at = (weekStart: number, hour = 10) => weekStart + hour * 3_600_000

async function world(t: TestContext, postgres: boolean) {
  const clock = new ManualClock(NOW)
  const tg = await startApp(t, { postgres, clock })
  if (!tg) return undefined
  const o = await orgWithKeys(tg.deps)
  return { tg, clock, orgId: o.org.id, keys: { sandbox: o.sandboxId, production: o.productionId } }
}

/** An ANALYST's GET of an analytics path, asserting 200, as parsed JSON. */
async function analystReader(tg: TestApp, orgId: string): Promise<(path: string) => Promise<any>> {
  const analyst = await person(tg, orgId, 'ANALYST')
  return async (path) => {
    const r = await call(tg, analyst, 'GET', `/api/orgs/${orgId}/analytics/${path}`)
    assert.equal(r.status, 200, r.text)
    return r.json
  }
}

/** Every response's text, for the "no per-person ids" scan. */
const leaks = (texts: readonly string[], ids: readonly string[]) => ids.filter((id) => texts.some((t) => t.includes(id)))

for (const postgres of [false, true]) {
  const db = postgres ? 'PostgreSQL' : 'SQLite'

  test(`RBAC-3: k = 5 floor, complementary suppression and the differencing guard over HTTP; ADMIN and ANALYST see the same aggregates, MEMBER 403, no ids (${db})`, async (t) => {
    const w = await world(t, postgres)
    if (!w) return
    const { tg, orgId } = w
    const specs: Spec[] = []
    const week = (n: number) => WEEK0 - n * 7 * DAY
    // This week, production only: coding by 12 people, legal by 5 (2 each), medical by 4.
    for (const p of people('c', 12)) specs.push({ person: p, environment: 'production', at: at(week(0)), domain: 'coding' })
    for (const p of people('l', 5)) specs.push({ person: p, environment: 'production', at: at(week(0)), domain: 'legal' }, { person: p, environment: 'production', at: at(week(0), 11), domain: 'legal' })
    for (const p of people('m', 4)) specs.push({ person: p, environment: 'production', at: at(week(0)), domain: 'medical' })
    // Last week: 12 people in production, 3 others in sandbox only (all = 15: differs from production by 3).
    for (const p of people('c', 12)) specs.push({ person: p, environment: 'production', at: at(week(1)) })
    for (const p of people('s', 3)) specs.push({ person: p, environment: 'sandbox', at: at(week(1)) })
    // Two weeks ago: 4 people. Three weeks ago: 5 people.
    for (const p of people('c', 4)) specs.push({ person: p, environment: 'production', at: at(week(2)) })
    for (const p of people('c', 5)) specs.push({ person: p, environment: 'production', at: at(week(3)) })
    const seeded = await seedDecisions(tg, orgId, w.keys, specs)

    const owner = await person(tg, orgId, 'OWNER')
    const admin = await person(tg, orgId, 'ADMIN')
    const analyst = await person(tg, orgId, 'ANALYST')
    const member = await person(tg, orgId, 'MEMBER')
    const texts: string[] = []
    const get = async (who: typeof admin, path: string) => {
      const r = await call(tg, who, 'GET', `/api/orgs/${orgId}/analytics/${path}`)
      texts.push(r.text)
      return r
    }

    // Requests over time, by week, oldest first.
    const req = await get(analyst, 'requests?granularity=week&periods=4')
    assert.equal(req.status, 200, req.text)
    const byScope = (p: any) => Object.fromEntries(p.scopes.map((s: any) => [s.environment, [s.requests, s.people]]))
    assert.deepEqual(req.json.periods.map((p: any) => p.start), [3, 2, 1, 0].map((n) => new Date(weekStart(n)).toISOString()))
    // The month is one block with its weeks (and days): all environments had 24 people in March.
    // Week 1–7 has 5 people (c0–c4) and is shown: the weeks hidden beside it (8–14: 4 people;
    // this week's `all`: 21) hold more than 4 people together, so the month minus the shown
    // weeks singles out no one.
    assert.deepEqual(byScope(req.json.periods[0]), { all: [5, 5], sandbox: ['<5', '<5'], production: [5, 5] }, 'five people, shown')
    assert.deepEqual(byScope(req.json.periods[1]), { all: ['<5', '<5'], sandbox: ['<5', '<5'], production: ['<5', '<5'] }, 'four people: "<5" everywhere, never a number')
    // Differencing guard: production (12 people) inside all environments (15) differ by 3: the inner one goes.
    assert.deepEqual(byScope(req.json.periods[2]), { all: [15, 15], sandbox: ['<5', '<5'], production: ['<5', '<5'] })
    // Differencing guard along time and environment: this week's 21 people (all, and production
    // alone) sit inside the month's 24 (all environments) — they differ by 3, so both go.
    assert.deepEqual(byScope(req.json.periods[3]), { all: ['<5', '<5'], sandbox: ['<5', '<5'], production: ['<5', '<5'] })
    const month = await get(analyst, 'requests?granularity=month&periods=1')
    assert.deepEqual(byScope(month.json.periods[0]), { all: [50, 24], sandbox: ['<5', '<5'], production: ['<5', '<5'] })

    // By domain this week: every figure is "<5". Medical (4 people) is floored, and every other
    // figure this week sits inside a month figure of 1–4 more people: the week's total inside the
    // month's (21 vs 24), this week's 12 coders inside March's 15 (3 in sandbox, week 15–21), legal's
    // 5 inside the week's total with medical's 4 hidden beside it.
    const dom = await get(analyst, 'decisions?by=domain&granularity=week&periods=1')
    assert.equal(dom.status, 200, dom.text)
    const totals = Object.fromEntries(dom.json.periods[0].scopes.map((s: any) => [s.environment, s.total]))
    assert.deepEqual(totals, { all: '<5', sandbox: '<5', production: '<5' }, 'totals agree with the over-time report')
    const shown = dom.json.periods[0].scopes.flatMap((s: any) => s.cells.filter((c: any) => c.requests !== '<5').map((c: any) => `${s.environment}/${c.value}`))
    assert.deepEqual(shown, [])
    // Over the month, medical (4 people) is floored, and legal (5) goes with it.
    const domMonth = await get(analyst, 'decisions?by=domain&granularity=month&periods=1')
    const monthCells = Object.fromEntries(domMonth.json.periods[0].scopes.find((s: any) => s.environment === 'all').cells.map((c: any) => [c.value, c.requests]))
    assert.equal(monthCells['medical'], '<5')
    assert.equal(monthCells['legal'], '<5', 'complementary suppression')

    // ADMIN and ANALYST get the same aggregate-only shape (and OWNER); MEMBER gets 403.
    for (const path of ['requests?granularity=week&periods=4', 'decisions?by=domain&granularity=week&periods=1', 'decisions?by=outcome', 'decisions?by=intent&granularity=month&periods=2', 'decisions?by=rule&granularity=day&periods=31', 'challenges?granularity=month']) {
      const a = await get(admin, path)
      const b = await get(analyst, path)
      const o = await get(owner, path)
      assert.equal(a.status, 200, `${path}: ${a.text}`)
      assert.equal(a.text, b.text, path)
      assert.equal(a.text, o.text, path)
      const m = await get(member, path)
      assert.equal(m.status, 403, path)
      assert.equal(m.json.error.code, 'forbidden')
    }
    // No fixed cohort beyond the bound, no free-form filters.
    assert.equal((await get(analyst, 'requests?granularity=day&periods=32')).status, 400)
    assert.equal((await get(analyst, 'requests?from=2025-01-01')).status, 400)
    assert.equal((await get(analyst, 'requests?actor=x')).status, 400)

    // No actor, key, request or decision id in any response — and the scan finds a planted one.
    assert.ok(seeded.ids.length > 100)
    assert.deepEqual(leaks(texts, seeded.ids), [], 'a response carries a per-person id')
    assert.deepEqual(leaks([...texts, JSON.stringify({ planted: seeded.ids[3] })], seeded.ids), [seeded.ids[3]], 'positive control: the scan finds a planted id')
  })

  test(`RBAC-3: the day, week and month series of a month read together single out no one — a hidden day cannot be had from a shown week or month minus shown days; a cell reads the same in every window (${db})`, async (t) => {
    const w = await world(t, postgres)
    if (!w) return
    const { tg, orgId } = w
    const MARCH = Date.UTC(2025, 2, 1)
    const on = (day: number, hour = 10) => MARCH + (day - 1) * DAY + hour * 3_600_000
    const specs: Spec[] = []
    // Week 1–7: days 3 and 4 have six coders each, day 5 one person alone — per-period decisions
    // showed the week and days 3 and 4, so the week minus them gave day 5.
    for (const p of people('a', 6)) specs.push({ person: p, environment: 'production', at: on(3) })
    for (const p of people('b', 6)) specs.push({ person: p, environment: 'production', at: on(4) })
    specs.push({ person: 'x0', environment: 'production', at: on(5) }, { person: 'x0', environment: 'production', at: on(5, 11), domain: 'legal' })
    // Week 8–14: seven people on days 10–12, two of them on legal on day 11.
    for (const d of [10, 11, 12]) for (const p of people('c', 7)) specs.push({ person: p, environment: 'production', at: on(d), domain: d === 11 && ['c0', 'c1'].includes(p) ? 'legal' : 'coding' })
    // Week 15–21: eight in sandbox on day 17, three of them in production too; week 22–28: ten, five on medical.
    for (const p of people('d', 8)) specs.push({ person: p, environment: 'sandbox', at: on(17) })
    for (const p of people('d', 3)) specs.push({ person: p, environment: 'production', at: on(17, 12), domain: 'legal' })
    for (const p of people('e', 10)) specs.push({ person: p, environment: 'production', at: on(24), domain: p < 'e5' ? 'medical' : 'coding' })
    await seedDecisions(tg, orgId, w.keys, specs)
    const get = await analystReader(tg, orgId)
    // What the attacker knows: who is behind each (day of March, environment, domain).
    const know = new Map<string, Set<string>>()
    for (const s of specs) {
      const a = `${Math.floor((s.at - MARCH) / DAY)}|${s.environment}|${s.domain ?? 'coding'}`
      know.set(a, (know.get(a) ?? new Set()).add(s.person!))
    }
    const published = (r: any): PublishedPeriod[] => r.periods.map((p: any) => ({ ...p, granularity: r.granularity, start: Date.parse(p.start), end: Date.parse(p.end) }))
    const days = await get('decisions?by=domain&granularity=day&periods=26')
    const weeks = await get('decisions?by=domain&granularity=week&periods=4')
    const month = await get('decisions?by=domain&granularity=month&periods=1')
    assert.deepEqual(weeks.periods.map((p: any) => [p.start.slice(5, 10), p.end.slice(5, 10)]), [['03-01', '03-08'], ['03-08', '03-15'], ['03-15', '03-22'], ['03-22', '03-29']])
    const union = [...published(days), ...published(weeks), ...published(month)]
    const rows = breakdownRows(union, days.values, MARCH, know)
    rows.assertTime()
    assertSafe(know, rows.cells, rows.nests)
    // The populations exercise it: some day figures are shown, some hidden under shown weeks.
    const dayShown = rows.cells.filter((c) => c.id.startsWith('day:') && c.shown)
    assert.ok(dayShown.length > 0 && rows.cells.some((c) => c.id.startsWith('week:') && c.shown))

    // Positive control: the same figures decided per period (the old behaviour) are caught.
    const contributions = (from: number, to: number): Contribution[] => specs.filter((s) => s.at >= from && s.at < to)
      .map((s) => ({ day: 0, environment: s.environment, values: { domain: s.domain ?? 'coding' }, actor: s.person, requests: 1 }))
    const old = union.map((p) => ({ ...p, scopes: decideMonth(contributions(p.start, p.end), [{ id: 'p', days: [0] }], { domain: days.values }).breakdown('domain').get('p')! }))
    const oldRows = breakdownRows(old.filter((p) => p.granularity !== 'month'), days.values, MARCH, know)
    assert.throws(() => oldRows.assertTime(), /under week:2025-03-01T00:00:00.000Z\|all\|t, the hidden days involve 1 people/)
    assert.throws(() => assertSafe(know, oldRows.cells, oldRows.nests), /single out people .*x0/)

    // A cell reads the same whatever window holds it; the totals agree with the requests report.
    const shortDays = await get('decisions?by=domain&granularity=day&periods=5')
    assert.deepEqual(shortDays.periods, days.periods.slice(-5))
    const longWeeks = await get('decisions?by=domain&granularity=week&periods=9')
    assert.deepEqual(longWeeks.periods.slice(-4), weeks.periods)
    const req = await get('requests?granularity=day&periods=26')
    for (const [i, p] of req.periods.entries()) for (const s of p.scopes) {
      assert.equal(s.requests, days.periods[i].scopes.find((x: any) => x.environment === s.environment).total)
    }
  })

  test(`AUDIT-4: requests over time, outcomes, domains, intents and challenge figures are exact for a population of 8 (${db})`, async (t) => {
    const w = await world(t, postgres)
    if (!w) return
    const { tg, orgId } = w
    const today = Date.UTC(2025, 2, 26)
    const specs: Spec[] = []
    for (const p of people('u', 8)) {
      specs.push(
        { person: p, environment: 'production', at: today + 3_600_000, outcome: 'allowed', domain: 'coding', intent: 'do_it' },
        { person: p, environment: 'production', at: today + 3_600_000, outcome: 'allowed', domain: 'coding', intent: 'do_it' },
        { person: p, environment: 'production', at: today + 7_200_000, outcome: 'blocked', status: 403, domain: 'coding', intent: 'learn', ruleId: 'no-homework' },
        // A challenge passed (score 0.8) and one failed (0.2).
        { person: p, environment: 'production', at: today + 7_200_000, outcome: 'allowed', domain: 'math', intent: 'learn', passed: 1, score: 0.8, ruleId: 'explain-first' },
        { person: p, environment: 'production', at: today + 7_200_000, outcome: 'challenge_failed', domain: 'math', intent: 'learn', passed: 0, score: 0.2, ruleId: 'explain-first' },
      )
      // Yesterday: one request each.
      specs.push({ person: p, environment: 'production', at: today - DAY + 1000, outcome: 'allowed' })
    }
    await seedDecisions(tg, orgId, w.keys, specs)
    const get = await analystReader(tg, orgId)
    const prod = (p: any) => p.scopes.find((s: any) => s.environment === 'production')

    const days = await get('requests?granularity=day&periods=3')
    assert.deepEqual(days.periods.map((p: any) => prod(p).requests), ['<5', 8, 40])
    assert.deepEqual(days.periods.map((p: any) => prod(p).people), ['<5', 8, 8])
    assert.equal(days.periods[2].scopes.find((s: any) => s.environment === 'all').requests, 40)
    assert.equal(days.periods[2].scopes.find((s: any) => s.environment === 'sandbox').requests, '<5')

    const figures = async (by: string) => {
      const r = await get(`decisions?by=${by}&granularity=day&periods=1`)
      return Object.fromEntries(prod(r.periods[0]).cells.filter((c: any) => c.requests !== '<5').map((c: any) => [c.value, c.requests]))
    }
    assert.deepEqual(await figures('outcome'), { allowed: 24, blocked: 8, challenge_failed: 8 })
    assert.deepEqual(await figures('domain'), { coding: 24, math: 16 })
    assert.deepEqual(await figures('intent'), { do_it: 16, learn: 24 })
    assert.deepEqual(await figures('rule'), { 'explain-first': 16, 'no-homework': 8, none: 16 })

    const ch = await get('challenges?granularity=day&periods=1')
    assert.deepEqual(prod(ch.periods[0]), { environment: 'production', challenged: 16, passed: 8, failed: 8, pass_rate: 0.5, mean_reasoning_score: 0.5 })
    // The week holds both days: the same figures summed.
    const wk = await get('requests?granularity=week&periods=1')
    assert.deepEqual([prod(wk.periods[0]).requests, prod(wk.periods[0]).people], [48, 8])
  })

  test(`RBAC-3: the outcome and domain breakdowns read together single out no one — "allowed" + "math" − total would give the one person in both; and a month is decided again when its records change (${db})`, async (t) => {
    const w = await world(t, postgres)
    if (!w) return
    const { tg, orgId } = w
    const on = Date.UTC(2025, 2, 24, 10)
    // Six people allowed on coding, six blocked on math, x0 alone allowed on math: each breakdown
    // alone is safe (allowed 7, blocked 6; coding 6, math 7), but allowed + math − total = x0's.
    const specs: Spec[] = [
      ...people('a', 6).map((p): Spec => ({ person: p, environment: 'production', at: on, outcome: 'allowed', domain: 'coding' })),
      ...people('b', 6).map((p): Spec => ({ person: p, environment: 'production', at: on, outcome: 'blocked', status: 403, domain: 'math' })),
      { person: 'x0', environment: 'production', at: on, outcome: 'allowed', domain: 'math' },
    ]
    await seedDecisions(tg, orgId, w.keys, specs)
    const get = await analystReader(tg, orgId)
    // What the attacker knows: who is behind each (outcome, domain) on that day in production.
    const know = new Map<string, Set<string>>()
    for (const s of specs) know.set(`${s.outcome}|${s.domain}`, (know.get(`${s.outcome}|${s.domain}`) ?? new Set()).add(s.person!))
    const atoms = [...know.keys()]
    const cells: Shown[] = []
    for (const g of ['day', 'week', 'month'] as const) {
      const periods = g === 'day' ? 3 : 1
      const pick = (r: any) => r.periods[periods - 1].scopes.find((x: any) => x.environment === 'production')
      const total = pick(await get(`requests?granularity=${g}&periods=${periods}`)).requests
      cells.push({ id: `${g}|total`, atoms, shown: total !== '<5' })
      for (const [dim, at] of [['outcome', 0], ['domain', 1]] as const) {
        const scope = pick(await get(`decisions?by=${dim}&granularity=${g}&periods=${periods}`))
        assert.equal(scope.total, total, 'every report shows the same total')
        for (const c of scope.cells) cells.push({ id: `${g}|${dim}=${c.value}`, atoms: atoms.filter((a) => a.split('|')[at] === c.value), shown: c.requests !== '<5' })
      }
    }
    assert.ok(cells.some((c) => c.shown && c.id.endsWith('total')), 'the total is shown')
    assertSafe(know, cells, [])
    // Positive control: had "allowed" and "math" been shown beside the total, the check finds x0.
    const naive = cells.map((c) => ({ ...c, shown: c.shown || c.id === 'day|outcome=allowed' || c.id === 'day|domain=math' }))
    assert.throws(() => assertSafe(know, naive, []), /single out people .*x0/)

    // The month is decided again when its records change: x0's records deleted (as an account
    // deletion does), the next read no longer counts them.
    const before = (await get('requests?granularity=month&periods=1')).periods[0].scopes.find((x: any) => x.environment === 'production')
    assert.deepEqual([before.requests, before.people], [13, 13])
    await tg.deps.db.db.deleteFrom('decision').where('actor_id', '=', await tg.deps.keyring.pseudonym(orgId, 'x0')).execute()
    const after = (await get('requests?granularity=month&periods=1')).periods[0].scopes.find((x: any) => x.environment === 'production')
    assert.deepEqual([after.requests, after.people], [12, 12])
  })
}

export type { TestApp }
