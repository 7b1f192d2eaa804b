import assert from 'node:assert/strict'
import { test } from 'node:test'
import { INSTANCE_CHAIN, verifyChains } from '../../src/audit/audit.ts'
import { OrgKeyDestroyed, OrgKeyring } from '../../src/privacy/org-keys.ts'
import { masterKeyFromHex } from '../../src/privacy/wrap.ts'
import { ManualClock } from '../fakes/clock.ts'
import { startApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.ts'
import { freshPostgres, needService } from '../helpers/services.ts'
import { aiCall } from '../keys/helpers.ts'
import { call, inviteIn, keyFor, person, signIn, ssoIn } from '../api/world.ts'
import { rowsHolding, tablesHolding } from './dump.ts'

/**
 * RIGHTS-2 (security-tests T105), org termination: at once the org's keys are refused, its admin
 * routes answer 404, its SSO sessions end and its per-org keys are destroyed; the retention job
 * deletes every row of it by the purge deadline (30 days), proven with the injected clock —
 * nothing before, everything after, checked by a scan of every table.
 */
const DAY = 24 * 3600_000
const HOUR = 3600_000
const DOC = { version: 1, default_action: 'allow', rules: [] }

/** The instance-chain entries that record the termination and the purge (the deletion's own record). */
const tombstone = (f: { table: string; row: Record<string, unknown> }) =>
  f.table === 'audit_event' && f.row['chain_id'] === INSTANCE_CHAIN && ['org_terminated', 'org_purged'].includes(String(f.row['action']))

/** An org with something in every table an org owns: keys, decisions, policy, settings, tier, invite, SSO, SSO session, identity, idempotency, audit, checkpoints. */
async function populated(tg: TestApp, slug: string) {
  const orgId = (await tg.deps.orgs.create(slug, { type: 'operator', id: null }))!.id
  const owner = await person(tg, orgId, 'OWNER')
  const admin = await person(tg, orgId, 'ADMIN')
  const key = await keyFor(tg, orgId, admin.userId)
  assert.equal((await aiCall(tg.url, '/v1/intercept', key.key, 'local-echo')).status, 200)
  await tg.deps.decisions.drain()
  assert.equal((await call(tg, owner, 'POST', `/api/orgs/${orgId}/policies`, { document: DOC }, { headers: { 'idempotency-key': `k-${slug}` } })).status, 201)
  assert.equal((await call(tg, owner, 'PATCH', `/api/orgs/${orgId}/settings`, { training_consent: true })).status, 200)
  await tg.deps.tiers.set(orgId, 'api', 500, { type: 'operator', id: null })
  await inviteIn(tg, orgId)
  await ssoIn(tg, orgId)
  const sso = await tg.deps.sessions.create(admin.userId, 'sso', orgId)
  await tg.deps.users.link(tg.deps.db.db, admin.userId, `sso-subject-${slug}`, 'oidc', orgId)
  return { orgId, owner, admin, key, ssoToken: sso.token }
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  test(`RIGHTS-2: an OWNER terminates an org — keys refused, admin routes 404, SSO sessions ended, org keys destroyed at once; every row of it deleted by the 30-day deadline and not before; other chains verify [${dialect}]`, async (t) => {
    const clock = new ManualClock()
    const tg = await startApp(t, { clock, postgres: dialect === 'postgres', env: { TOLLGATE_RETENTION_JOB_S: '3600' } })
    if (!tg) return
    const db = tg.deps.db.db
    const gone = await populated(tg, 'term-gone')
    const kept = await populated(tg, 'term-kept')
    // Checkpoints of every chain (an idle chain gets one each interval).
    clock.advance(301_000)
    await tg.deps.checkpoints.tick()
    const owner = await signIn(tg, { userId: gone.owner.userId, email: gone.owner.email })
    const path = `/api/orgs/${gone.orgId}`

    // Positive control: the scan finds the org's id in every table an org owns.
    const ORG_TABLES = ['api_key', 'audit_checkpoint', 'audit_event', 'decision', 'idempotency', 'invite', 'membership', 'org', 'org_key', 'org_setting', 'policy', 'rate_tier', 'session', 'sso_config', 'user_identity']
    assert.deepEqual((await tablesHolding(tg, [gone.orgId])).filter((x) => ORG_TABLES.includes(x)), ORG_TABLES)

    // Only an OWNER, with a fresh step-up, naming the org.
    assert.equal((await call(tg, gone.admin, 'DELETE', path, { confirm: 'term-gone' })).json.error.code, 'forbidden')
    const stale = await signIn(tg, { userId: gone.owner.userId, email: gone.owner.email }, clock.now() - tg.deps.stepUpWindowMs - 1000)
    assert.equal((await call(tg, stale, 'DELETE', path, { confirm: 'term-gone' })).json.error.code, 'step_up_required')
    const wrong = await call(tg, owner, 'DELETE', path, { confirm: 'term-kept' })
    assert.equal(wrong.status, 400)
    assert.equal(wrong.json.error.code, 'confirmation_mismatch')
    assert.equal((await aiCall(tg.url, '/v1/intercept', gone.key.key, 'local-echo')).status, 200, 'nothing happened yet')

    const res = await call(tg, owner, 'DELETE', path, { confirm: 'term-gone' })
    assert.equal(res.status, 200, res.text)
    const terminatedAt = clock.now()
    assert.equal(res.json.terminated_at, new Date(terminatedAt).toISOString())
    assert.equal(res.json.purge_by, new Date(terminatedAt + 30 * DAY).toISOString())

    // At once: keys refused, admin routes 404 (as for an org that never existed), SSO session ended.
    assert.equal((await aiCall(tg.url, '/v1/intercept', gone.key.key, 'local-echo')).status, 401)
    for (const p of ['', '/members', '/keys', '/audit', '/policies', '/settings']) {
      const r = await call(tg, owner, 'GET', path + p)
      assert.equal(r.status, 404, `${p}: ${r.text}`)
    }
    assert.equal((await call(tg, owner, 'DELETE', path, { confirm: 'term-gone' })).status, 404)
    assert.equal((await tg.deps.sessions.check(gone.ssoToken)).ok, false)
    assert.deepEqual((await call(tg, owner, 'GET', '/api/orgs')).json.orgs, [])
    // Org keys destroyed: wrapped material cleared, and nothing can be computed under them any more — here, or by a fresh keyring.
    const orgKeys = await db.selectFrom('org_key').selectAll().where('org_id', '=', gone.orgId).execute()
    assert.ok(orgKeys.length >= 2 && orgKeys.every((k) => k.wrapped === '' && k.destroyed_at === terminatedAt))
    const fresh = new OrgKeyring(db, masterKeyFromHex(TEST_MASTER_KEY), clock)
    for (const ring of [tg.deps.keyring, fresh]) {
      await assert.rejects(ring.pseudonym(gone.orgId, gone.admin.userId), OrgKeyDestroyed)
      await assert.rejects(ring.fingerprint(gone.orgId, 'any prompt'), OrgKeyDestroyed)
    }
    // The other org is untouched.
    assert.equal((await aiCall(tg.url, '/v1/intercept', kept.key.key, 'local-echo')).status, 200)
    assert.equal((await call(tg, kept.owner, 'GET', `/api/orgs/${kept.orgId}/members`)).status, 200)
    const termEntry = await db.selectFrom('audit_event').selectAll().where('chain_id', '=', INSTANCE_CHAIN).where('action', '=', 'org_terminated').execute()
    assert.deepEqual(termEntry.map((e) => [e.target_id, e.request_id]), [[gone.orgId, res.headers.get('x-request-id')]])

    // The retention job before the deadline (one job period early is the earliest it may act): nothing purged.
    clock.set(terminatedAt + 30 * DAY - HOUR - 1)
    assert.equal((await tg.deps.jobs.runAll())['orgs_purged'], 0)
    assert.ok((await rowsHolding(tg, [gone.orgId])).filter((f) => !tombstone(f)).length > 10, 'the data is still there before the deadline')
    // By the deadline: every row of the org is gone, in every table; only the instance chain's record of it remains.
    clock.set(terminatedAt + 30 * DAY)
    assert.equal((await tg.deps.jobs.runAll())['orgs_purged'], 1)
    const left = await rowsHolding(tg, [gone.orgId])
    assert.deepEqual(left.filter((f) => !tombstone(f)).map((f) => f.table), [], 'rows of the purged org remain')
    assert.deepEqual(left.map((f) => f.row['action']).sort(), ['org_purged', 'org_terminated'])
    // The other org keeps everything; the instance chain and the other org's chain verify.
    // (Its idempotency records and invite expired meanwhile: 24 h and 7 days, swept by their own jobs.)
    assert.deepEqual((await tablesHolding(tg, [kept.orgId])).filter((x) => ORG_TABLES.includes(x)), ORG_TABLES.filter((x) => x !== 'idempotency' && x !== 'invite'))
    const chains = await verifyChains(db)
    assert.deepEqual(chains.filter((c) => c.broken), [])
    assert.deepEqual(chains.map((c) => c.chainId).sort(), [INSTANCE_CHAIN, kept.orgId].sort())
    // A second run finds nothing more; the slug is free again.
    assert.equal((await tg.deps.jobs.runAll())['orgs_purged'], 0)
    assert.ok(await tg.deps.orgs.create('term-gone', { type: 'operator', id: null }))
  })
}

test('RIGHTS-2: with TOLLGATE_ORG_PURGE_DELAY_S=0 a terminated org is purged at the next run; a purge delay over 30 days is refused', async (t) => {
  const clock = new ManualClock()
  const tg = await startApp(t, { clock, env: { TOLLGATE_ORG_PURGE_DELAY_S: '0' } })
  if (!tg) return
  const o = await populated(tg, 'term-now')
  const res = await call(tg, await signIn(tg, { userId: o.owner.userId, email: o.owner.email }), 'DELETE', `/api/orgs/${o.orgId}`, { confirm: 'term-now' })
  assert.equal(res.json.purge_by, res.json.terminated_at)
  assert.equal((await tg.deps.jobs.runAll())['orgs_purged'], 1)
  assert.deepEqual((await rowsHolding(tg, [o.orgId])).filter((f) => !tombstone(f)), [])
  const { loadConfig } = await import('../../src/config/load.ts')
  const over = loadConfig({ TOLLGATE_ORG_PURGE_DELAY_S: String(30 * 86400 + 1), TOLLGATE_MASTER_KEY: TEST_MASTER_KEY })
  assert.equal(over.ok, false)
})

test('RIGHTS-2: a termination on one instance refuses the org\'s keys on the other at once, and the other drops its copy of the destroyed keys (PostgreSQL + Redis)', async (t) => {
  if (!(await needService(t, 'postgres')) || !(await needService(t, 'redis'))) return
  const databaseUrl = await freshPostgres(t)
  const a = await startApp(t, { databaseUrl, redis: true })
  const b = await startApp(t, { databaseUrl, redis: true })
  if (!a || !b) return
  const orgId = (await a.deps.orgs.create('term-two', { type: 'operator', id: null }))!.id
  const owner = await person(a, orgId, 'OWNER')
  const key = await keyFor(a, orgId, owner.userId)
  // B serves the key, so it holds the org's key in memory (its pseudonym is cached).
  assert.equal((await aiCall(b.url, '/v1/intercept', key.key, 'local-echo')).status, 200)
  const before = await b.deps.keyring.pseudonym(orgId, owner.userId)
  assert.equal((await call(a, owner, 'DELETE', `/api/orgs/${orgId}`, { confirm: 'term-two' })).status, 200)
  assert.equal((await aiCall(b.url, '/v1/intercept', key.key, 'local-echo')).status, 401)
  assert.equal((await call(b, owner, 'GET', `/api/orgs/${orgId}`)).status, 404)
  // Positive control: B's memory still has it until its job runs; then it is gone.
  assert.equal(await b.deps.keyring.pseudonym(orgId, owner.userId), before)
  assert.equal((await b.deps.jobs.runAll())['org_keys_forgotten'], 1)
  await assert.rejects(b.deps.keyring.pseudonym(orgId, owner.userId), OrgKeyDestroyed)
})
