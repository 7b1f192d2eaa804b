// GW-4: a member's team is the request's cohort. Policies match `cohorts` through the real
// request path; the decision record keeps the team the request was decided under.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startMockUpstream, upstreamEnv } from '../fakes/upstreams.ts'
import { orgWithKeys, promotePolicy, startApp, type TestApp } from '../helpers/app.ts'
import { call, newUser, person } from '../api/world.ts'

const CODING = 'Write a Python function that merges two sorted lists into one sorted list.'
const DOC = {
  version: 1, default_action: 'allow',
  rules: [
    { id: 'students-blocked', when: { cohorts: ['students'] }, action: 'block', reason: 'students_paused' },
    { id: 'interns-challenged', when: { cohorts: ['interns'] }, action: 'challenge', reason: 'show_reasoning' },
  ],
}

const ask = (tg: TestApp, key: string) =>
  fetch(`${tg.url}/v1/intercept`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gemini-2.5-flash', prompt: CODING }) })

async function recordOf(tg: TestApp, requestId: string | null) {
  assert.ok(requestId, 'the answer names its request')
  for (let i = 0; i < 50; i++) {
    const row = await tg.deps.db.db.selectFrom('decision').select(['outcome', 'rule_id', 'cohort']).where('request_id', '=', requestId).executeTakeFirst()
    if (row) return row
    await new Promise((r) => setTimeout(r, 20))
  }
  assert.fail('no decision record')
}

test('GW-4: a policy rule on cohorts applies to the team\'s members only — the team (set by PATCH …/members/:user) blocks or challenges its members, not another member, not a key without a member; the record keeps the team', async (t) => {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tg = (await startApp(t, { env: upstreamEnv(mock) }))!
  const { org, production: memberless } = await orgWithKeys(tg.deps)
  await promotePolicy(tg.deps, org.id, DOC)
  const owner = await person(tg, org.id, 'OWNER')
  const [student, intern, other] = [await newUser(tg, org.id), await newUser(tg, org.id), await newUser(tg, org.id)]
  for (const [u, team] of [[student, 'students'], [intern, 'interns']] as const) {
    const r = await call(tg, owner, 'PATCH', `/api/orgs/${org.id}/members/${u.userId}`, { team })
    assert.equal(r.status, 200, JSON.stringify(r.json))
  }
  const keyOf = async (userId: string) => (await tg.deps.keys.create({ orgId: org.id, environment: 'production', userId, actor: { type: 'operator', id: null } })).key

  const s = await ask(tg, await keyOf(student.userId))
  const sb = (await s.json()) as any
  assert.deepEqual([s.status, sb.error.code, sb.error.reason], [403, 'blocked_by_policy', 'students_paused'], JSON.stringify(sb))
  assert.deepEqual(await recordOf(tg, s.headers.get('x-request-id')), { outcome: 'blocked', rule_id: 'students-blocked', cohort: 'students' })

  const i = await ask(tg, await keyOf(intern.userId))
  const ib = (await i.json()) as any
  assert.equal(ib.decision?.outcome, 'challenge', JSON.stringify(ib))
  assert.deepEqual(await recordOf(tg, i.headers.get('x-request-id')), { outcome: 'challenged', rule_id: 'interns-challenged', cohort: 'interns' })

  const before = mock.received.length
  for (const key of [await keyOf(other.userId), memberless]) {
    const r = await ask(tg, key)
    assert.equal(r.status, 200)
    assert.deepEqual(await recordOf(tg, r.headers.get('x-request-id')), { outcome: 'allowed', rule_id: null, cohort: null })
  }
  assert.equal(mock.received.length, before + 2, 'only the requests outside the cohorts reached the upstream')
})
