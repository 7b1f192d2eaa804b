// PolicyStore (GW-4, AUDIT-1) on SQLite and PostgreSQL: the sandbox → production lifecycle,
// versions, audit entries committed with each change, and the activeFor cache.
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { TollgateError } from '../../src/core/errors.ts'
import type { Actor } from '../../src/keys/keys.repo.ts'
import { DEFAULT_POLICY } from '../../src/policy/default-policy.ts'
import { PolicyStore } from '../../src/policy/policies.repo.ts'
import { orgWithKeys, startApp } from '../helpers/app.ts'
import { policy } from './fixtures.ts'

const ACTOR: Actor = { type: 'user', id: 'pseudo-1', requestId: 'req_test' }
const docA = { version: 1, default_action: 'allow', rules: [{ id: 'a', when: { domains: ['medical'] }, action: 'challenge', reason: 'med' }] }
const docB = { version: 1, default_action: 'block', rules: [] }

async function world(t: TestContext, postgres: boolean) {
  let now = 1_800_000_000_000
  const clock = { now: () => now }
  const tg = await startApp(t, { postgres, clock })
  if (!tg) return undefined
  const { org } = await orgWithKeys(tg.deps)
  const store = new PolicyStore(tg.deps.db.db, clock, tg.deps.audit, { cacheTtlMs: 5_000 })
  const audit = async () => (await tg.deps.db.db.selectFrom('audit_event').select(['action', 'target_id', 'actor_id', 'outcome', 'request_id']).where('chain_id', '=', org.id).orderBy('seq').execute())
    .filter((e) => e.action.startsWith('policy_'))
  const refused = async (p: Promise<unknown>, code: string, param?: string) => {
    await assert.rejects(p, (err: unknown) => err instanceof TollgateError && err.code === code && (param === undefined || err.param === param))
  }
  return { tg, org, store, clock, audit, refused, advance: (ms: number) => { now += ms } }
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  test(`GW-4 AUDIT-1: draft → sandbox → tested → promoted to a new production version; each step audited [${dialect}]`, async (t) => {
    const w = await world(t, dialect === 'postgres')
    if (!w) return
    const { store, org, refused } = w
    const d1 = await store.createDraft({ orgId: org.id, document: docA, actor: ACTOR })
    assert.deepEqual([d1.environment, d1.version, d1.status, d1.testedAt, d1.createdBy], ['sandbox', 1, 'draft', null, 'pseudo-1'])
    assert.deepEqual(d1.document, policy(docA), 'stored normalized')
    const d2 = await store.createDraft({ orgId: org.id, document: docB, actor: ACTOR })
    assert.equal(d2.version, 2)

    // A draft can be tested and edited; an edit voids the test.
    await store.recordTest({ orgId: org.id, id: d1.id, actor: ACTOR })
    assert.notEqual((await store.get(org.id, d1.id))!.testedAt, null)
    w.advance(1000)
    const edited = await store.updateDraft({ orgId: org.id, id: d1.id, document: { ...docA, default_action: 'challenge' }, actor: ACTOR })
    assert.deepEqual([edited.version, edited.testedAt, edited.document.default_action], [1, null, 'challenge'])

    // Promotion needs an active, tested sandbox policy.
    await refused(store.promote({ orgId: org.id, id: d1.id, actor: ACTOR }), 'conflict', 'status')
    const active1 = await store.activate({ orgId: org.id, id: d1.id, actor: ACTOR })
    assert.equal(active1.status, 'active')
    await refused(store.promote({ orgId: org.id, id: d1.id, actor: ACTOR }), 'conflict', 'tested_at')
    await refused(store.updateDraft({ orgId: org.id, id: d1.id, document: docB, actor: ACTOR }), 'conflict', 'status')
    await store.recordTest({ orgId: org.id, id: d1.id, actor: ACTOR })
    const p1 = await store.promote({ orgId: org.id, id: d1.id, actor: ACTOR })
    assert.deepEqual([p1.environment, p1.version, p1.status, p1.sourceId], ['production', 1, 'active', d1.id])
    assert.deepEqual(p1.document, edited.document)
    assert.equal((await store.get(org.id, d1.id))!.status, 'active', 'the sandbox policy stays active in sandbox')

    // Activating d2 retires d1 in sandbox; promoting d2 makes production version 2 and retires version 1.
    await store.activate({ orgId: org.id, id: d2.id, actor: ACTOR })
    assert.equal((await store.get(org.id, d1.id))!.status, 'retired')
    await store.recordTest({ orgId: org.id, id: d2.id, actor: ACTOR })
    const p2 = await store.promote({ orgId: org.id, id: d2.id, actor: ACTOR })
    assert.equal(p2.version, 2)
    assert.equal((await store.get(org.id, p1.id))!.status, 'retired')
    assert.deepEqual((await store.activeFor(org.id, 'production')), { id: p2.id, version: 2, document: policy(docB) })
    await refused(store.recordTest({ orgId: org.id, id: p2.id, actor: ACTOR }), 'conflict', 'status')

    // Retiring the production policy falls back to the built-in default.
    await store.retire({ orgId: org.id, id: p2.id, actor: ACTOR })
    assert.deepEqual(await store.activeFor(org.id, 'production'), { id: null, version: null, document: DEFAULT_POLICY })
    await refused(store.retire({ orgId: org.id, id: p2.id, actor: ACTOR }), 'conflict', 'status')
    await refused(store.activate({ orgId: org.id, id: d1.id, actor: ACTOR }), 'conflict', 'status')
    await refused(store.get(org.id, 'x').then((p) => { if (!p) throw new TollgateError('not_found') }), 'not_found')

    const list = await store.list(org.id)
    assert.deepEqual(list.map((p) => [p.environment, p.version, p.status]), [['production', 2, 'retired'], ['production', 1, 'retired'], ['sandbox', 2, 'active'], ['sandbox', 1, 'retired']])

    assert.deepEqual((await w.audit()).map((e) => [e.action, e.target_id]), [
      ['policy_created', d1.id], ['policy_created', d2.id], ['policy_tested', d1.id], ['policy_updated', d1.id],
      ['policy_activated', d1.id], ['policy_tested', d1.id], ['policy_promoted', p1.id],
      ['policy_retired', d1.id], ['policy_activated', d2.id], ['policy_tested', d2.id], ['policy_retired', p1.id], ['policy_promoted', p2.id],
      ['policy_retired', p2.id],
    ])
    assert.ok((await w.audit()).every((e) => e.actor_id === 'pseudo-1' && e.outcome === 'success' && e.request_id === 'req_test'))
  })

  test(`GW-4: an invalid document is refused and nothing is stored or audited; refused changes leave no trace [${dialect}]`, async (t) => {
    const w = await world(t, dialect === 'postgres')
    if (!w) return
    const count = async () => Number((await w.tg.deps.db.db.selectFrom('audit_event').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)
    const before = await count()
    await w.refused(w.store.createDraft({ orgId: w.org.id, document: { version: 1, rules: [] }, actor: ACTOR }), 'invalid_request', 'document')
    await w.refused(w.store.promote({ orgId: w.org.id, id: 'nope', actor: ACTOR }), 'not_found')
    assert.deepEqual(await w.store.list(w.org.id), [])
    assert.equal(await count(), before)
  })

  test(`GW-4: activeFor — the default until one is active; cached; a change here is seen at once, a change by another instance within the TTL [${dialect}]`, async (t) => {
    const w = await world(t, dialect === 'postgres')
    if (!w) return
    const { store, org } = w
    assert.deepEqual(await store.activeFor(org.id, 'sandbox'), { id: null, version: null, document: DEFAULT_POLICY })
    const d = await store.createDraft({ orgId: org.id, document: docA, actor: ACTOR })
    await store.activate({ orgId: org.id, id: d.id, actor: ACTOR })
    assert.equal((await store.activeFor(org.id, 'sandbox')).id, d.id, 'seen at once on the instance that made the change')
    assert.equal((await store.activeFor(org.id, 'production')).id, null, 'sandbox and production are separate')

    // Another instance (its own store and cache) retires it: this one still serves its cached copy until the TTL passes.
    const other = new PolicyStore(w.tg.deps.db.db, w.clock, w.tg.deps.audit)
    assert.equal((await other.activeFor(org.id, 'sandbox')).id, d.id)
    await other.retire({ orgId: org.id, id: d.id, actor: ACTOR })
    assert.equal((await other.activeFor(org.id, 'sandbox')).id, null)
    assert.equal((await store.activeFor(org.id, 'sandbox')).id, d.id, 'within the TTL: cached')
    w.advance(5_000)
    assert.equal((await store.activeFor(org.id, 'sandbox')).id, null, 'after the TTL: reloaded')

    // Concurrent misses share one read.
    store.invalidate()
    const results = await Promise.all(Array.from({ length: 20 }, () => store.activeFor(org.id, 'sandbox')))
    assert.ok(results.every((r) => r === results[0]))
  })

  test(`GW-4: concurrent activations leave exactly one active sandbox policy [${dialect}]`, async (t) => {
    const w = await world(t, dialect === 'postgres')
    if (!w) return
    const drafts = await Promise.all(Array.from({ length: 6 }, () => w.store.createDraft({ orgId: w.org.id, document: docB, actor: ACTOR })))
    assert.deepEqual(drafts.map((d) => d.version).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6], 'versions are unique even when created concurrently')
    await Promise.all(drafts.map((d) => w.store.activate({ orgId: w.org.id, id: d.id, actor: ACTOR })))
    const active = await w.store.list(w.org.id, { status: 'active' })
    assert.equal(active.length, 1)
    assert.equal((await w.store.list(w.org.id, { status: 'retired' })).length, 5)
  })
}
