import assert from 'node:assert/strict'
import { test } from 'node:test'
import { checksum62 } from '../../src/core/crypto.ts'
import { startMockUpstream } from '../fakes/upstreams.ts'
import { orgWithKeys, startApp, type TestApp } from '../helpers/app.ts'
import { aiCall, credentialFront, ENDPOINTS, providerEnv, signedInOwner, type Credentials, type UpstreamName } from './helpers.ts'

/**
 * KEY-2 (security-tests T43): keys are scoped to one org and one environment, and sandbox and
 * production are fully separated. Two mock upstreams stand for the two sets of provider
 * credentials: production credentials point at P, TOLLGATE_SANDBOX_* at S, each behind a front
 * that accepts only its own environment's credential values.
 */

const PROD: Credentials = { anthropic: 'prod-anthropic-credential', openai: 'prod-openai-credential', gemini: 'prod-gemini-credential' }
const SANDBOX: Credentials = { anthropic: 'sandbox-anthropic-credential', openai: 'sandbox-openai-credential', gemini: 'sandbox-gemini-credential' }
const MODELS: readonly { model: string; provider: UpstreamName }[] = [
  { model: 'claude-sonnet-4-5', provider: 'anthropic' },
  { model: 'gpt-4o', provider: 'openai' },
  { model: 'gemini-2.5-flash', provider: 'gemini' },
]

async function decisionsByRequest(tg: TestApp) {
  await tg.deps.decisions.drain()
  const rows = await tg.deps.db.db.selectFrom('decision').selectAll().execute()
  return new Map(rows.map((r) => [r.request_id, r]))
}

async function world(t: import('node:test').TestContext) {
  const mockP = await startMockUpstream()
  const mockS = await startMockUpstream()
  const frontP = await credentialFront(mockP, PROD)
  const frontS = await credentialFront(mockS, SANDBOX)
  t.after(async () => {
    await Promise.all([frontP.close(), frontS.close()])
    await Promise.all([mockP.close(), mockS.close()])
  })
  return { mockP, mockS, frontP, frontS }
}

test('KEY-2: the matrix {sandbox key, production key} × 3 AI endpoints × 3 providers × JSON/stream — sandbox keys reach only the sandbox upstream (or the local provider), production keys only production; decision records carry the key\'s environment', async (t) => {
  const { mockP, mockS, frontP, frontS } = await world(t)
  // Instance 1: both environments have credentials. Instance 2: production credentials only.
  const both = await startApp(t, { env: { ...providerEnv('', frontP, PROD), ...providerEnv('TOLLGATE_SANDBOX_', frontS, SANDBOX) } })
  const prodOnlyCreds = await startApp(t, { env: providerEnv('', frontP, PROD) })
  if (!both || !prodOnlyCreds) return

  let probes = 0
  for (const [name, tg, sandboxHasCreds] of [['sandbox credentials set', both, true], ['no sandbox credentials', prodOnlyCreds, false]] as const) {
    const keys = await orgWithKeys(tg.deps)
    assert.match(keys.sandbox, /^tg_test_/, 'the prefix says sandbox')
    assert.match(keys.production, /^tg_live_/, 'the prefix says production')
    const expected = new Map<string, { environment: string; provider: string; keyId: string; model: string }>()
    for (const env of ['sandbox', 'production'] as const) {
      const key = env === 'sandbox' ? keys.sandbox : keys.production
      for (const endpoint of ENDPOINTS) {
        for (const { model, provider } of MODELS) {
          for (const stream of [false, true]) {
            const label = `${name}: ${env} key → ${endpoint} ${model}${stream ? ' (stream)' : ''}`
            const before = { p: frontP.seen.length, s: frontS.seen.length, mp: mockP.received.length, ms: mockS.received.length }
            const r = await aiCall(tg.url, endpoint, key, model, { stream })
            probes++
            assert.equal(r.status, 200, `${label}: ${r.body.slice(0, 200)}`)
            assert.doesNotMatch(r.body, /event: error|"error"/, label)
            const reachedP = frontP.seen.slice(before.p)
            const reachedS = frontS.seen.slice(before.s)
            if (env === 'production') {
              assert.equal(r.provider, provider, label)
              assert.deepEqual(reachedP.map((x) => [x.provider, x.credential]), [[provider, PROD[provider]]], `${label}: exactly one call to the production upstream, with the production credential`)
              assert.equal(reachedS.length, 0, `${label}: nothing reached the sandbox upstream`)
              assert.equal(mockP.received.length, before.mp + 1, label)
            } else if (sandboxHasCreds) {
              assert.equal(r.provider, provider, label)
              assert.deepEqual(reachedS.map((x) => [x.provider, x.credential]), [[provider, SANDBOX[provider]]], `${label}: exactly one call to the sandbox upstream, with the sandbox credential`)
              assert.equal(reachedP.length, 0, `${label}: nothing reached the production upstream`)
              assert.equal(mockS.received.length, before.ms + 1, label)
            } else {
              assert.equal(r.provider, 'local', `${label}: without sandbox credentials the local provider answers`)
              assert.match(r.body, /built-in local provider/, label)
              assert.equal(reachedP.length + reachedS.length, 0, `${label}: no upstream was called`)
            }
            assert.ok(r.requestId, label)
            expected.set(r.requestId!, {
              environment: env, keyId: env === 'sandbox' ? keys.sandboxId : keys.productionId, model,
              provider: env === 'sandbox' && !sandboxHasCreds ? 'local' : provider,
            })
          }
        }
      }
    }
    // Every request left a decision record naming the key's own environment, key and provider.
    const rows = await decisionsByRequest(tg)
    for (const [requestId, want] of expected) {
      const row = rows.get(requestId)
      assert.ok(row, `decision record for ${requestId}`)
      assert.deepEqual({ environment: row.environment, keyId: row.key_id, provider: row.provider, model: row.model, outcome: row.outcome, orgId: row.org_id },
        { environment: want.environment, keyId: want.keyId, provider: want.provider, model: want.model, outcome: 'allowed', orgId: keys.org.id }, requestId)
    }
    assert.equal(expected.size, 36)

    // /v1/models shows each key only its own environment's routing.
    const models = async (key: string) => {
      const res = await fetch(`${tg.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })
      assert.equal(res.status, 200)
      return new Map(((await res.json()) as { data: { id: string; owned_by: string }[] }).data.map((m) => [m.id, m.owned_by]))
    }
    const sandboxModels = await models(keys.sandbox)
    const productionModels = await models(keys.production)
    for (const { model, provider } of MODELS) {
      assert.equal(productionModels.get(model), provider)
      assert.equal(sandboxModels.get(model), sandboxHasCreds ? provider : 'local', `${name}: /v1/models for a sandbox key`)
    }
  }
  // Across both instances: every production credential use was at P, every sandbox one at S.
  assert.ok(frontP.seen.every((x) => x.credential === PROD[x.provider]), 'the production upstream only ever saw production credentials')
  assert.ok(frontS.seen.every((x) => x.credential === SANDBOX[x.provider]), 'the sandbox upstream only ever saw sandbox credentials')
  assert.equal(frontP.seen.length, 36, '18 production calls per instance')
  assert.equal(frontS.seen.length, 18, '18 sandbox calls, all on the instance with sandbox credentials')
  t.diagnostic(`KEY-2 matrix: ${probes} probes`)
})

test('KEY-2: the prefix cannot be flipped — a sandbox key rewritten as tg_live_ (even with a valid checksum) and vice versa is refused', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  const keys = await orgWithKeys(tg.deps)
  const flip = (key: string, to: 'live' | 'test', fixChecksum: boolean) => {
    const body = key.slice(0, -6).replace(/^tg_(live|test)_/, `tg_${to}_`)
    return fixChecksum ? body + checksum62(body) : body + key.slice(-6)
  }
  for (const forged of [flip(keys.sandbox, 'live', false), flip(keys.sandbox, 'live', true), flip(keys.production, 'test', false), flip(keys.production, 'test', true)]) {
    for (const endpoint of ENDPOINTS) {
      const r = await aiCall(tg.url, endpoint, forged, 'local-echo')
      assert.equal(r.status, 401, `${forged.slice(0, 8)}… → ${endpoint}`)
    }
  }
  // The genuine keys still work (the refusals above were about the forgery, not the setup).
  assert.equal((await aiCall(tg.url, '/v1/intercept', keys.sandbox, 'local-echo')).status, 200)
  assert.equal((await aiCall(tg.url, '/v1/intercept', keys.production, 'local-echo')).status, 200)
})

test('KEY-2: admin-scope keys are refused by the AI endpoints (401) and gateway keys by the admin API (401); an admin key acts only inside its own org', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  const a = await orgWithKeys(tg.deps)
  const b = await orgWithKeys(tg.deps)
  // One person, OWNER of both orgs, with an admin key in org A.
  const owner = await signedInOwner(tg, a.org.id)
  await tg.deps.members.add(tg.deps.db.db, b.org.id, owner.userId, 'OWNER')
  const adminKeys = await Promise.all((['production', 'sandbox'] as const).map((environment) =>
    tg.deps.keys.create({ orgId: a.org.id, environment, userId: owner.userId, scope: 'admin', actor: { type: 'operator', id: null } })))
  const memberKey = await tg.deps.keys.create({ orgId: a.org.id, environment: 'production', userId: owner.userId, scope: 'gateway', actor: { type: 'operator', id: null } })

  const api = (path: string, key: string, header: 'bearer' | 'x-api-key' = 'bearer') =>
    fetch(tg.url + path, { headers: header === 'bearer' ? { authorization: `Bearer ${key}` } : { 'x-api-key': key } }).then(async (r) => ({ status: r.status, json: (await r.json()) as any }))

  for (const admin of adminKeys) {
    for (const endpoint of ENDPOINTS) {
      for (const header of ['bearer', 'x-api-key'] as const) {
        const r = await aiCall(tg.url, endpoint, admin.key, 'local-echo', { header })
        assert.equal(r.status, 401, `admin key (${admin.info.environment}) → ${endpoint} via ${header}`)
      }
    }
    const models = await fetch(`${tg.url}/v1/models`, { headers: { authorization: `Bearer ${admin.key}` } })
    assert.equal(models.status, 401, 'admin key → /v1/models')
  }
  for (const gateway of [a.production, a.sandbox, memberKey.key]) {
    for (const path of ['/api/me', `/api/orgs/${a.org.id}`, `/api/orgs/${a.org.id}/keys`, '/api/orgs']) {
      for (const header of ['bearer', 'x-api-key'] as const) {
        const r = await api(path, gateway, header)
        assert.equal(r.status, 401, `gateway key → ${path} via ${header}`)
        assert.equal(r.json.error.code, 'unauthenticated')
      }
    }
  }

  const admin = adminKeys[0]!.key
  // Inside its own org the admin key acts as its member…
  assert.equal((await api(`/api/orgs/${a.org.id}`, admin)).status, 200)
  const listA = await api(`/api/orgs/${a.org.id}/keys`, admin)
  assert.equal(listA.status, 200)
  assert.ok(listA.json.keys.some((k: { id: string }) => k.id === a.productionId))
  // …but not in org B, although its member is an OWNER there: the same 404 as a stranger gets.
  for (const path of [`/api/orgs/${b.org.id}`, `/api/orgs/${b.org.id}/keys`, `/api/orgs/${b.org.id}/audit`, `/api/orgs/${b.org.id}/members`]) {
    const r = await api(path, admin)
    assert.equal(r.status, 404, path)
    assert.equal(r.json.error.code, 'not_found')
  }
  // Positive control: the same person's session does reach org B.
  assert.equal((await owner.call('GET', `/api/orgs/${b.org.id}/keys`)).status, 200)
  // An admin key is no step-up: it cannot create, rotate or revoke keys.
  const create = await fetch(`${tg.url}/api/orgs/${a.org.id}/keys`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ environment: 'production' }) })
  assert.equal(create.status, 403)
  assert.equal(((await create.json()) as any).error.code, 'step_up_required')
})

test('KEY-2: a sandbox key on a production-only instance (TOLLGATE_ENVIRONMENTS=production) gets 403 on every AI endpoint, /v1/models and the admin API, recorded as a sandbox decision; production keys still work', async (t) => {
  const { frontP, frontS } = await world(t)
  const tg = await startApp(t, { env: { TOLLGATE_ENVIRONMENTS: 'production', ...providerEnv('', frontP, PROD), ...providerEnv('TOLLGATE_SANDBOX_', frontS, SANDBOX) } })
  if (!tg) return
  const keys = await orgWithKeys(tg.deps)
  const refused: string[] = []
  for (const endpoint of ENDPOINTS) {
    for (const { model } of MODELS) {
      for (const stream of [false, true]) {
        const r = await aiCall(tg.url, endpoint, keys.sandbox, model, { stream })
        assert.equal(r.status, 403, `${endpoint} ${model}`)
        assert.match(r.body, /environment_not_served|does not serve the key's environment/, `${endpoint}: the error names the reason in the endpoint's own format`)
        refused.push(r.requestId!)
      }
    }
  }
  const models = await fetch(`${tg.url}/v1/models`, { headers: { authorization: `Bearer ${keys.sandbox}` } })
  assert.equal(models.status, 403, '/v1/models does not list models for an environment this instance does not serve')
  assert.equal(frontS.seen.length + frontP.seen.length, 0, 'no upstream was called for a refused sandbox key')

  const ok = await aiCall(tg.url, '/v1/messages', keys.production, 'claude-sonnet-4-5')
  assert.equal(ok.status, 200)
  assert.equal(frontP.seen.length, 1)

  const rows = await decisionsByRequest(tg)
  for (const id of refused) {
    const row = rows.get(id)
    assert.ok(row, `decision for ${id}`)
    assert.deepEqual({ environment: row.environment, key: row.key_id, outcome: row.outcome, status: row.status, code: row.error_code, provider: row.provider },
      { environment: 'sandbox', key: keys.sandboxId, outcome: 'rejected', status: 403, code: 'environment_not_served', provider: null })
  }
  assert.equal(rows.get(ok.requestId!)?.environment, 'production')

  // The admin API follows the same rule: a sandbox admin key does not act here either.
  const owner = await tg.deps.users.create(tg.deps.db.db, 'env-owner@example.test')
  await tg.deps.members.add(tg.deps.db.db, keys.org.id, owner.id, 'OWNER')
  for (const environment of ['sandbox', 'production'] as const) {
    const admin = await tg.deps.keys.create({ orgId: keys.org.id, environment, userId: owner.id, scope: 'admin', actor: { type: 'operator', id: null } })
    const res = await fetch(`${tg.url}/api/orgs/${keys.org.id}/keys`, { headers: { authorization: `Bearer ${admin.key}` } })
    const body = (await res.json()) as any
    if (environment === 'sandbox') {
      assert.equal(res.status, 403, 'a sandbox admin key on a production-only instance')
      assert.equal(body.error.code, 'environment_not_served')
    } else {
      assert.equal(res.status, 200, 'a production admin key works (positive control)')
    }
  }
})
