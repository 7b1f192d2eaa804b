import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ManualClock } from '../fakes/clock.ts'
import { orgWithKeys, startApp } from '../helpers/app.ts'
import { call, person } from '../api/world.ts'
import { people, seedDecisions, type Spec } from './seed.ts'

/**
 * RBAC-3 over HTTP, on SQLite and PostgreSQL: analytics by team (each record's decision-time
 * team) next to the org's figures, in the same k-floored month block.
 */

// Wednesday 26 March 2025, 12:00 UTC; the records fall on Monday 24 March.
const NOW = Date.UTC(2025, 2, 26, 12)
const AT = Date.UTC(2025, 2, 24, 10)

for (const postgres of [false, true]) {
  const db = postgres ? 'PostgreSQL' : 'SQLite'
  test(`RBAC-3: teams of 3, 5 and 8 people — the team of 3 is "<5", and so is the team of 5 (else the org minus the others gives the 3); the org and the team of 8 are shown; ADMIN and ANALYST see the same, MEMBER 403, no ids (${db})`, async (t) => {
    const tg = await startApp(t, { postgres, clock: new ManualClock(NOW) })
    if (!tg) return
    const o = await orgWithKeys(tg.deps)
    const orgId = o.org.id
    const specs: Spec[] = []
    for (const p of people('e', 8)) specs.push({ person: p, environment: 'production', at: AT, team: 'eng' }, { person: p, environment: 'production', at: AT + 60_000, team: 'eng' })
    for (const p of people('l', 5)) specs.push({ person: p, environment: 'production', at: AT, team: 'legal' })
    for (const p of people('o', 3)) specs.push({ person: p, environment: 'production', at: AT, team: 'ops' })
    const seeded = await seedDecisions(tg, orgId, { sandbox: o.sandboxId, production: o.productionId }, specs)

    const texts: string[] = []
    const get = async (who: Awaited<ReturnType<typeof person>>, path: string) => {
      const r = await call(tg, who, 'GET', `/api/orgs/${orgId}/analytics/${path}`)
      texts.push(r.text)
      return r
    }
    const admin = await person(tg, orgId, 'ADMIN')
    const analyst = await person(tg, orgId, 'ANALYST')
    const member = await person(tg, orgId, 'MEMBER')
    const cells = (p: any) => Object.fromEntries(p.scopes.map((s: any) => [`${s.team ?? 'org'}/${s.environment}`, [s.requests, s.people]]))
    const hidden = ['<5', '<5']
    // The month, its week 22–28, and the day 24 March (periods oldest first: 24, 25, 26 March).
    for (const [g, n] of [['month', 1], ['week', 1], ['day', 3]] as const) {
      const r = await get(analyst, `requests?granularity=${g}&periods=${n}&cohort=team`)
      assert.equal(r.status, 200, r.text)
      assert.deepEqual(cells(r.json.periods[0]), {
        'org/all': [24, 16], 'org/sandbox': hidden, 'org/production': [24, 16],
        'eng/all': [16, 8], 'eng/sandbox': hidden, 'eng/production': [16, 8],
        'legal/all': hidden, 'legal/sandbox': hidden, 'legal/production': hidden,
        'ops/all': hidden, 'ops/sandbox': hidden, 'ops/production': hidden,
      }, g)
      const same = await get(admin, `requests?granularity=${g}&periods=${n}&cohort=team`)
      assert.deepEqual(same.json, r.json, 'ADMIN and ANALYST get the same aggregates')
    }
    // Without cohort=team: the org's figures only, the same numbers.
    const plain = await get(analyst, 'requests?granularity=month&periods=1')
    assert.deepEqual(cells(plain.json.periods[0]), { 'org/all': [24, 16], 'org/sandbox': hidden, 'org/production': [24, 16] })
    // The teams' totals are pinned into every report: the decisions report agrees on the org's total.
    const decisions = await get(analyst, 'decisions?granularity=month&periods=1&by=outcome')
    assert.deepEqual(decisions.json.periods[0].scopes.map((s: any) => s.total), [24, '<5', 24])
    assert.equal((await get(member, 'requests?cohort=team')).status, 403)
    assert.equal((await get(analyst, 'requests?cohort=role')).status, 400)
    assert.deepEqual(seeded.ids.filter((id) => texts.some((x) => x.includes(id))), [], 'no actor, key, request or decision id in any response')
  })
}
