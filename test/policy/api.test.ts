// The policy admin API (GW-4, GW-6, GW-7, AUDIT-1, AUTH-6, RBAC-1, LIMIT-3): draft → sandbox
// test → promote, exact validation problems with nothing stored, step-up for what production
// enforces, every change audited.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { sql } from 'kysely'
import { DEFAULT_POLICY } from '../../src/policy/default-policy.ts'
import { policyWorld } from './api-world.ts'
import { markerClassifier } from './fixtures.ts'

const DOC = {
  version: 1,
  default_action: 'allow',
  rules: [
    { id: 'redact-email', when: { pii: { kinds: ['EMAIL_ADDRESS'] } }, action: 'redact', reason: 'pii_redacted' },
    { id: 'medical-learn', when: { domains: ['medical'] }, action: 'challenge', reason: 'show_reasoning', shadow: true },
  ],
  filters: { prompt: { S9: { min_severity: 'medium', action: 'block' } }, output: { S9: { min_severity: 'medium', action: 'block' } } },
}

const base = (orgId: string) => `/api/orgs/${orgId}/policies`

test('GW-4 GW-6 GW-7 AUDIT-1: draft → activate in sandbox → sandbox test (dry run, nothing stored) → promote to production', async (t) => {
  const classifier = markerClassifier()
  const w = await policyWorld(t, { classifier })
  const owner = await w.person('OWNER')
  const url = base(w.orgId)

  const created = await w.call(owner, 'POST', url, { document: DOC })
  assert.equal(created.status, 201, created.text)
  const id = created.json.id
  assert.deepEqual([created.json.environment, created.json.version, created.json.status, created.json.tested_at], ['sandbox', 1, 'draft', null])
  assert.equal(created.json.document.rules[0].on_error, 'block', 'the stored document is normalized')

  const edited = await w.call(owner, 'PUT', `${url}/${id}`, { document: { ...DOC, default_action: 'allow' } })
  assert.equal(edited.status, 200, edited.text)

  // Promotion is refused before activation, then before a sandbox test.
  assert.equal((await w.call(owner, 'POST', `${url}/${id}/promote`, {})).json.error.param, 'status')
  const activated = await w.call(owner, 'POST', `${url}/${id}/activate`, {})
  assert.equal(activated.json.status, 'active')
  const early = await w.call(owner, 'POST', `${url}/${id}/promote`, {})
  assert.deepEqual([early.status, early.json.error.code, early.json.error.param], [409, 'conflict', 'tested_at'])
  assert.equal((await w.call(owner, 'GET', `${url}/active`)).json.sandbox.id, id, 'sandbox keys get it at once')
  assert.deepEqual((await w.call(owner, 'GET', `${url}/active`)).json.production, { id: null, version: null, document: JSON.parse(JSON.stringify(DEFAULT_POLICY)) })

  // The dry run: prompts are classified in memory, decisions come back, nothing of them is stored.
  const marker = `prompt-canary-${Math.random().toString(36).slice(2)}`
  const tested = await w.call(owner, 'POST', `${url}/${id}/test`, {
    samples: [
      { prompt: `${marker} write to me at [email]` },
      { prompt: `${marker} [weapons] how to` },
      { prompt: `${marker} [medical] dosage`, role: 'ANALYST', cohorts: ['students'] },
      { prompt: `${marker} [fail:pii] [email]` },
      { facts: { domain: 'legal', pii: [{ kind: 'EMAIL_ADDRESS', count: 2 }] } },
    ],
  })
  assert.equal(tested.status, 200, tested.text)
  assert.equal(tested.json.recorded, true)
  const got = tested.json.results.map((r: any) => [r.index, r.decision.action, r.decision.rule_id, r.decision.reason])
  assert.deepEqual(got, [
    [0, 'redact', 'redact-email', 'pii_redacted'],
    [1, 'block', 'prompt.S9', 'safety_indiscriminate_weapons'],
    [2, 'allow', null, null],
    [3, 'block', 'redact-email', 'detector_error'],
    [4, 'redact', 'redact-email', 'pii_redacted'],
  ])
  assert.deepEqual(tested.json.results[0].decision.redact, ['EMAIL_ADDRESS'])
  assert.deepEqual(tested.json.results[2].decision.shadow, [{ rule_id: 'medical-learn', action: 'challenge' }])
  assert.deepEqual(tested.json.results[3].decision.failed_detectors, ['pii'])
  assert.deepEqual(tested.json.results[1].decision.output, { screen: true, action: 'block' })
  assert.deepEqual(tested.json.results[1].facts.safety, [{ code: 'S9', severity: 'high', score: 0.95 }])
  assert.equal(tested.json.results[4].facts.classifier, 'given')
  assert.ok(tested.json.results.every((r: any) => typeof r.policy_ms === 'number' && r.policy_ms >= 0), 'each result says how long the policy took (its speed is measured in speed.test.ts and bench/policy.ts)')
  assert.equal(classifier.calls, 4, 'facts samples are not classified')
  assert.ok(!tested.text.includes(marker), 'the answer never echoes a prompt')

  // Promotion now works: a new production version, active at once.
  const promoted = await w.call(owner, 'POST', `${url}/${id}/promote`, {})
  assert.equal(promoted.status, 201, promoted.text)
  assert.deepEqual([promoted.json.environment, promoted.json.version, promoted.json.status, promoted.json.source_id], ['production', 1, 'active', id])
  const active = (await w.call(owner, 'GET', `${url}/active`)).json
  assert.deepEqual([active.production.id, active.production.version, active.production.document], [promoted.json.id, 1, created.json.document])
  const list = await w.call(owner, 'GET', `${url}?environment=production`)
  assert.deepEqual(list.json.policies.map((p: any) => [p.id, p.status]), [[promoted.json.id, 'active']])
  assert.equal(list.json.policies[0].document, undefined, 'lists carry no documents')
  assert.deepEqual((await w.call(owner, 'GET', `${url}/${promoted.json.id}`)).json.document, created.json.document)

  const retired = await w.call(owner, 'POST', `${url}/${promoted.json.id}/retire`, {})
  assert.equal(retired.json.status, 'retired')
  assert.equal((await w.call(owner, 'GET', `${url}/active`)).json.production.id, null, 'back to the default policy')

  // AUDIT-1: every change, by the owner's pseudonym, with the request id.
  const entries = await w.audit('policy_')
  assert.deepEqual(entries.map((e) => [e.action, e.target_id]), [
    ['policy_created', id], ['policy_updated', id], ['policy_activated', id], ['policy_tested', id], ['policy_promoted', promoted.json.id], ['policy_retired', promoted.json.id],
  ])
  const pseudonym = await w.tg.deps.keyring.pseudonym(w.orgId, owner.userId)
  assert.ok(entries.every((e) => e.actor_type === 'user' && e.actor_id === pseudonym && e.outcome === 'success' && e.request_id?.startsWith('req_')))

  // Nothing about the samples was stored. Positive control: a rule id planted in a stored policy is found by the same scan.
  const planted = `planted-${Math.random().toString(36).slice(2, 10)}`
  await w.call(owner, 'POST', url, { document: { ...DOC, rules: [{ id: planted, when: {}, action: 'allow', reason: 'ok' }] } })
  const dump = await w.dump()
  assert.ok(dump.includes(planted), 'the scan finds what is stored')
  assert.ok(!dump.includes(marker), 'no sample prompt in any table')
  assert.ok(!dump.includes('write to me at'), 'no sample text in any table')
})

test('GW-4 AUTH-6: promote and retire need a fresh step-up; the refusal is audited and changes nothing', async (t) => {
  const w = await policyWorld(t, { classifier: markerClassifier() })
  const owner = await w.person('OWNER')
  const stale = await w.person('OWNER', { staleAuth: true })
  const url = base(w.orgId)
  const id = (await w.call(owner, 'POST', url, { document: DOC })).json.id
  assert.equal((await w.call(stale, 'POST', `${url}/${id}/activate`, {})).status, 200, 'sandbox changes need no step-up')
  assert.equal((await w.call(stale, 'POST', `${url}/${id}/test`, { samples: [{ prompt: 'hello' }] })).status, 200)
  const refused = await w.call(stale, 'POST', `${url}/${id}/promote`, {})
  assert.deepEqual([refused.status, refused.json.error.code], [403, 'step_up_required'])
  assert.deepEqual([(await w.call(stale, 'POST', `${url}/${id}/retire`, {})).json.error.code], ['step_up_required'])
  assert.equal((await w.call(owner, 'GET', `${url}/active`)).json.production.id, null, 'nothing was promoted')
  assert.equal((await w.call(owner, 'GET', `${url}/${id}`)).json.status, 'active', 'nothing was retired')
  const denied = (await w.audit()).filter((e) => e.outcome === 'denied')
  assert.deepEqual(denied.map((e) => [e.action, e.target_id]), [['authz_fail', 'POST /api/orgs/:org/policies/:id/promote'], ['authz_fail', 'POST /api/orgs/:org/policies/:id/retire']])
  assert.equal((await w.call(owner, 'POST', `${url}/${id}/promote`, {})).status, 201, 'a fresh authentication may')
})

test('GW-4 LIMIT-3: a malformed document gets 400 with the exact path of every problem, and nothing is stored or audited', async (t) => {
  const w = await policyWorld(t)
  const owner = await w.person('OWNER')
  const url = base(w.orgId)
  const before = (await w.audit()).length
  const bad = {
    version: 1, default_action: 'deny',
    rules: [{ id: 'ok', when: { domains: ['coding', 'cooking'] }, action: 'redact', reason: 'Free text!' }],
    filters: { prompt: { S9: { min_score: 2, action: 'block' } }, output: { S1: { min_severity: 'high', action: 'challenge' } } },
  }
  const r = await w.call(owner, 'POST', url, { document: bad })
  assert.equal(r.status, 400)
  assert.equal(r.json.error.code, 'invalid_request')
  assert.equal(r.json.error.param, 'body.document')
  assert.deepEqual(r.json.error.problems, [
    { path: '$.document.default_action', message: 'must be one of: allow, challenge, block' },
    { path: '$.document.rules[0].when.domains[1]', message: 'must be one of: coding, math, writing, science, medical, legal, finance, other' },
    { path: '$.document.rules[0].reason', message: 'must be a reason code: 1-64 characters, lowercase letters, digits and _, starting with a letter' },
    { path: '$.document.filters.prompt.S9.min_score', message: 'must be from 0 to 1' },
    { path: '$.document.filters.output.S1.action', message: 'must be one of: allow, block' },
  ])
  assert.ok(!r.text.includes('cooking') && !r.text.includes('Free text'), 'nothing from the document is echoed')

  // The same problems from the validate endpoint, which never stores anything either.
  const v = await w.call(owner, 'POST', `${url}/validate`, { document: bad })
  assert.deepEqual(v.json, { ok: false, problems: r.json.error.problems })
  assert.deepEqual((await w.call(owner, 'POST', `${url}/validate`, { document: DOC })).json, { ok: true, problems: [] })

  // An update with a bad document leaves the draft as it was.
  const id = (await w.call(owner, 'POST', url, { document: DOC })).json.id
  const put = await w.call(owner, 'PUT', `${url}/${id}`, { document: { ...DOC, rules: 'none' } })
  assert.deepEqual([put.status, put.json.error.problems], [400, [{ path: '$.document.rules', message: 'must be a list (it may be empty)' }]])
  assert.equal((await w.call(owner, 'GET', `${url}/${id}`)).json.document.rules.length, 2)

  // Envelope problems are caught by the route schema (unknown fields, a document that is not an object).
  assert.equal((await w.call(owner, 'POST', url, { document: DOC, extra: 1 })).status, 400)
  assert.equal((await w.call(owner, 'POST', url, { document: 'x' })).status, 400)

  const rows = await sql<{ n: number }>`select count(*) as n from policy`.execute(w.tg.deps.db.db)
  assert.equal(Number(rows.rows[0]!.n), 1, 'only the valid draft was stored')
  assert.deepEqual((await w.audit()).slice(before).map((e) => e.action), ['policy_created'])
})

test('GW-4: the sandbox test — bad samples get exact paths; prompts are classified by the instance’s classifier, facts samples are taken as given', async (t) => {
  const w = await policyWorld(t)
  const owner = await w.person('OWNER')
  const url = base(w.orgId)
  const id = (await w.call(owner, 'POST', url, { document: DOC })).json.id
  const badFacts = await w.call(owner, 'POST', `${url}/${id}/test`, { samples: [{ facts: {} }, { facts: { domain: 'cooking', pii: [{ kind: 'EMAIL' }] } }] })
  assert.equal(badFacts.status, 400)
  assert.deepEqual(badFacts.json.error.problems, [
    { path: '$.samples[1].facts.pii[0].kind', message: 'must be one of: EMAIL_ADDRESS, PHONE_NUMBER, US_SSN, CREDIT_CARD, IBAN_CODE, IP_ADDRESS, PERSON, MEDICAL_RECORD_NUMBER, HEALTH_PLAN_ID, DATE_OF_BIRTH, US_PASSPORT, US_DRIVER_LICENSE' },
    { path: '$.samples[1].facts.domain', message: 'must be one of: coding, math, writing, science, medical, legal, finance, other' },
  ])
  assert.equal((await w.call(owner, 'POST', `${url}/${id}/test`, { samples: [{ prompt: 'x', facts: {} }] })).status, 400, 'a prompt or facts, not both')
  assert.equal((await w.call(owner, 'POST', `${url}/${id}/test`, { samples: [] })).status, 400)
  assert.equal((await w.call(owner, 'GET', `${url}/${id}`)).json.tested_at, null, 'a refused test is not recorded')

  // Prompts are classified by the instance's own classifier (every instance has one).
  const prompted = await w.call(owner, 'POST', `${url}/${id}/test`, { samples: [{ prompt: 'hello' }] })
  assert.deepEqual([prompted.status, prompted.json.results[0].decision.action], [200, 'allow'])
  const ok = await w.call(owner, 'POST', `${url}/${id}/test`, { samples: [{ facts: { safety: [{ code: 'S9', severity: 'medium' }] } }] })
  assert.deepEqual([ok.status, ok.json.results[0].decision.action], [200, 'block'])
  assert.notEqual((await w.call(owner, 'GET', `${url}/${id}`)).json.tested_at, null)
})

test('RBAC-1 DATA-3: OWNER and ADMIN manage policies; ANALYST reads; MEMBER sees nothing; another org\'s policies are not found', async (t) => {
  const w = await policyWorld(t, { classifier: markerClassifier() })
  const [owner, admin, analyst, member] = [await w.person('OWNER'), await w.person('ADMIN'), await w.person('ANALYST'), await w.person('MEMBER')]
  const url = base(w.orgId)
  const id = (await w.call(owner, 'POST', url, { document: DOC })).json.id
  const expect = async (who: typeof owner, method: string, path: string, body: unknown, status: number) => {
    const r = await w.call(who, method, path, body)
    assert.equal(r.status, status, `${method} ${path}: ${r.text}`)
  }
  for (const who of [analyst]) {
    await expect(who, 'GET', url, undefined, 200)
    await expect(who, 'GET', `${url}/${id}`, undefined, 200)
    await expect(who, 'GET', `${url}/active`, undefined, 200)
    await expect(who, 'POST', url, { document: DOC }, 403)
    await expect(who, 'POST', `${url}/${id}/test`, { samples: [{ prompt: 'x' }] }, 403)
    await expect(who, 'POST', `${url}/${id}/promote`, {}, 403)
  }
  await expect(member, 'GET', url, undefined, 403)
  await expect(member, 'POST', url, { document: DOC }, 403)
  await expect(admin, 'POST', `${url}/${id}/activate`, {}, 200)
  await expect(admin, 'POST', `${url}/${id}/test`, { samples: [{ prompt: 'x' }] }, 200)
  await expect(admin, 'POST', `${url}/${id}/promote`, {}, 201)
  // Another org's policies, on the same instance: not found, whether they exist or not (DATA-3).
  const org2 = await w.otherOrg()
  const stranger = await w.person('OWNER', { orgId: org2 })
  const theirs = (await w.call(stranger, 'POST', base(org2), { document: DOC })).json.id
  await expect(owner, 'GET', `${url}/${theirs}`, undefined, 404)
  await expect(owner, 'POST', `${url}/${theirs}/activate`, {}, 404)
  await expect(owner, 'POST', `${url}/${theirs}/test`, { samples: [{ prompt: 'x' }] }, 404)
  await expect(owner, 'GET', base(org2), undefined, 404)
  await expect(owner, 'GET', `${base(org2)}/${theirs}`, undefined, 404)
  await expect(owner, 'PATCH', `/api/orgs/${org2}/settings`, { training_consent: true }, 404)
  await expect(stranger, 'GET', `${url}/${id}`, undefined, 404)
  assert.equal((await w.call(stranger, 'GET', `${base(org2)}/${theirs}`)).json.status, 'draft', 'untouched')
})

test('DATA-4 GW-3: training consent is off by default and the org’s LLM classification follows the instance; only an OWNER with a fresh step-up changes them; every change is audited', async (t) => {
  const w = await policyWorld(t)
  const owner = await w.person('OWNER')
  const admin = await w.person('ADMIN')
  const analyst = await w.person('ANALYST')
  const staleOwner = await w.person('OWNER', { staleAuth: true })
  const url = `/api/orgs/${w.orgId}/settings`
  assert.deepEqual((await w.call(analyst, 'GET', url)).json, { training_consent: false, classifier_llm: null, workspace: false, updated_at: null })
  assert.equal((await w.call(admin, 'PATCH', url, { training_consent: true })).status, 403)
  assert.equal((await w.call(staleOwner, 'PATCH', url, { training_consent: true })).json.error.code, 'step_up_required')
  assert.equal((await w.call(owner, 'PATCH', url, { training_consent: 'yes' })).status, 400)
  assert.equal((await w.call(owner, 'PATCH', url, { training_consent: true, other: 1 })).status, 400)
  assert.equal((await w.call(owner, 'GET', url)).json.training_consent, false, 'refusals changed nothing')

  const on = await w.call(owner, 'PATCH', url, { training_consent: true })
  assert.deepEqual([on.status, on.json.training_consent, typeof on.json.updated_at], [200, true, 'string'])
  assert.equal((await w.call(owner, 'PATCH', url, { training_consent: true })).json.training_consent, true, 'setting the same value again changes nothing')
  assert.equal((await w.call(owner, 'PATCH', url, { training_consent: false })).json.training_consent, false)
  const pseudonym = await w.tg.deps.keyring.pseudonym(w.orgId, owner.userId)
  const entries = await w.audit('training_consent')
  assert.deepEqual(entries.map((e) => [e.action, e.actor_id, e.outcome]), [['training_consent_granted', pseudonym, 'success'], ['training_consent_withdrawn', pseudonym, 'success']])
  const denied = (await w.audit()).filter((e) => e.outcome === 'denied').map((e) => e.target_id)
  assert.deepEqual(denied, ['PATCH /api/orgs/:org/settings', 'PATCH /api/orgs/:org/settings'], 'the ADMIN and the stale OWNER were refused, on the record')
  const row = await sql<{ training_consent: number; updated_by: string }>`select training_consent, updated_by from org_setting where org_id = ${w.orgId}`.execute(w.tg.deps.db.db)
  assert.deepEqual(row.rows, [{ training_consent: 0, updated_by: pseudonym }])

  // GW-3: the org's choice of LLM classification (null follows the instance); audited; consent untouched.
  assert.equal((await w.call(owner, 'PATCH', url, { classifier_llm: 'sometimes' })).status, 400)
  assert.equal((await w.call(owner, 'PATCH', url, {})).status, 400, 'an empty change is refused')
  const off = await w.call(owner, 'PATCH', url, { classifier_llm: 'off' })
  assert.deepEqual([off.status, off.json.classifier_llm, off.json.training_consent], [200, 'off', false])
  assert.equal((await w.call(owner, 'PATCH', url, { classifier_llm: null })).json.classifier_llm, null)
  assert.deepEqual((await w.audit('classifier_llm')).map((e) => e.action), ['classifier_llm_changed', 'classifier_llm_changed'])
})
