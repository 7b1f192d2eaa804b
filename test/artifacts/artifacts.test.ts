import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { sql } from 'kysely'
import { openStored } from '../../src/artifacts/sealing.ts'
import { loadConfig } from '../../src/config/load.ts'
import { newId } from '../../src/core/ids.ts'
import { OrgKeyDestroyed, OrgKeyring } from '../../src/privacy/org-keys.ts'
import { masterKeyFromHex } from '../../src/privacy/wrap.ts'
import { call, keyFor, person, type Person, type Res } from '../api/world.ts'
import { ManualClock } from '../fakes/clock.ts'
import { startApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.ts'
import { rowsHolding } from '../rights/dump.ts'

/**
 * RIGHTS-3 (opt-in workspace artifacts) and GW-8 (reports of harmful output): what a person
 * explicitly chooses to store — sealed under the org's data key, readable only by whom it is for,
 * deleted one by one, purged on time (an injected clock), and unreadable once the org's key is
 * destroyed (D13). Every scenario runs on SQLite and on PostgreSQL.
 */
const HOUR = 3600_000
const DAY = 24 * HOUR
const DIALECTS = ['sqlite', 'postgres'] as const

const mark = (what: string) => `TG-${what}-${randomBytes(8).toString('hex')}-Ωé漢字`

interface World {
  readonly tg: TestApp
  readonly orgId: string
  readonly slug: string
  readonly owner: Person
  readonly admin: Person
  readonly analyst: Person
  readonly alice: Person
  readonly bob: Person
}

async function world(t: Parameters<typeof startApp>[0], dialect: (typeof DIALECTS)[number], opts: { clock?: ManualClock; env?: Record<string, string> } = {}): Promise<World | undefined> {
  const tg = await startApp(t, { postgres: dialect === 'postgres', ...opts })
  if (!tg) return undefined
  const slug = `art-${randomBytes(4).toString('hex')}`
  const orgId = (await tg.deps.orgs.create(slug, { type: 'operator', id: null }))!.id
  return {
    tg, orgId, slug,
    owner: await person(tg, orgId, 'OWNER'), admin: await person(tg, orgId, 'ADMIN'), analyst: await person(tg, orgId, 'ANALYST'),
    alice: await person(tg, orgId, 'MEMBER'), bob: await person(tg, orgId, 'MEMBER'),
  }
}

const api = (w: World, who: Person, method: string, path: string, body?: unknown): Promise<Res> => call(w.tg, who, method, `/api/orgs/${w.orgId}${path}`, body)

/** Audit entries of the org's chain for these actions: [action, actor, target]. */
async function audited(w: World, actions: readonly string[]) {
  return (await w.tg.deps.db.db.selectFrom('audit_event').select(['action', 'actor_id', 'target_type', 'target_id']).where('chain_id', '=', w.orgId)
    .where('action', 'in', [...actions]).orderBy('seq').execute()).map((e) => [e.action, e.actor_id, e.target_id])
}

/**
 * Every byte of the SQLite database files (main file and WAL) or, on PostgreSQL, every row as
 * text: the raw stored view a scan for plaintext reads.
 */
async function rawStore(tg: TestApp): Promise<Buffer> {
  if (tg.deps.db.dialect === 'sqlite') {
    const base = join(tg.dataDir, 'tollgate.db')
    return Buffer.concat([base, `${base}-wal`].filter((f) => existsSync(f)).map((f) => readFileSync(f)))
  }
  const tables = (await sql<{ n: string }>`select tablename as n from pg_tables where schemaname = current_schema()`.execute(tg.deps.db.db)).rows
  const parts: string[] = []
  for (const { n } of tables) parts.push(...(await sql<{ r: string }>`select t::text as r from ${sql.table(n)} t`.execute(tg.deps.db.db)).rows.map((x) => x.r))
  return Buffer.from(parts.join('\n'))
}

/** Needles in the encodings a careless write would leave: UTF-8, base64 and hex of the text. */
const encodings = (s: string) => [Buffer.from(s), Buffer.from(Buffer.from(s).toString('base64')), Buffer.from(Buffer.from(s).toString('hex'))]
const holds = (raw: Buffer, s: string) => encodings(s).some((n) => raw.includes(n))

/** Proves the scan sees plaintext that is really there: a decoy row in a throwaway table. */
async function plantDecoy(tg: TestApp, decoy: string): Promise<void> {
  const db = tg.deps.db.db
  await sql`create table if not exists test_decoy (note text not null)`.execute(db)
  await sql`insert into test_decoy (note) values (${decoy})`.execute(db)
}

for (const dialect of DIALECTS) {
  test(`RIGHTS-3: saving needs the OWNER's opt-in (403 before); the stored row holds no plaintext; only the owner lists, reads and deletes an artifact (a MEMBER, an ADMIN and an OWNER get 404), one by one; audited without content [${dialect}]`, async (t) => {
    const w = await world(t, dialect)
    if (!w) return
    const content = `${mark('content')} — the model's answer`
    const title = mark('title')

    // Off by default: nothing is stored, and the refusal says why.
    assert.equal((await api(w, w.owner, 'GET', '/settings')).json.workspace, false)
    const refused = await api(w, w.alice, 'POST', '/artifacts', { content, title })
    assert.deepEqual([refused.status, refused.json.error.code], [403, 'workspace_disabled'])
    assert.equal(Number((await w.tg.deps.db.db.selectFrom('artifact').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n), 0)
    // Only an OWNER turns it on (settings.write: an ADMIN is refused), audited.
    assert.equal((await api(w, w.admin, 'PATCH', '/settings', { workspace: true })).status, 403)
    const on = await api(w, w.owner, 'PATCH', '/settings', { workspace: true })
    assert.deepEqual([on.status, on.json.workspace, on.json.training_consent], [200, true, false])
    const ownerP = await w.tg.deps.keyring.pseudonym(w.orgId, w.owner.userId)
    assert.deepEqual(await audited(w, ['workspace_enabled', 'workspace_disabled']), [['workspace_enabled', ownerP, w.orgId]])

    // Alice saves two; the answer is metadata only.
    const saved = await api(w, w.alice, 'POST', '/artifacts', { content, title })
    assert.equal(saved.status, 201, saved.text)
    assert.deepEqual(Object.keys(saved.json).sort(), ['created_at', 'expires_at', 'id', 'size_bytes', 'temporary'])
    assert.deepEqual([saved.json.size_bytes, saved.json.temporary, saved.json.expires_at], [Buffer.byteLength(content), false, null])
    assert.ok(!saved.text.includes(content) && !saved.text.includes(title))
    const second = await api(w, w.alice, 'POST', '/artifacts', { content: 'another answer', temporary: true })
    assert.equal(second.status, 201)
    const id = saved.json.id as string

    // No plaintext at rest: the raw database (SQLite file + WAL, or every PostgreSQL row) and
    // every row of every table — after proving the same scans find a planted plaintext.
    const decoy = mark('decoy')
    await plantDecoy(w.tg, decoy)
    const raw = await rawStore(w.tg)
    assert.ok(holds(raw, decoy), 'positive control: the raw scan finds plaintext that is there')
    assert.equal((await rowsHolding(w.tg, [decoy])).length, 1, 'positive control: the row scan finds it')
    for (const secret of [content, title, content.slice(3, 40)]) {
      assert.ok(!holds(raw, secret), 'an artifact is stored in plaintext in the database files')
      assert.deepEqual(await rowsHolding(w.tg, [secret]), [], 'an artifact is stored in plaintext in a row')
    }
    const row = await w.tg.deps.db.db.selectFrom('artifact').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
    const aliceP = await w.tg.deps.keyring.pseudonym(w.orgId, w.alice.userId)
    assert.equal(row.owner_id, aliceP, 'the owner is a pseudonym, not a user id')

    // Alice lists (metadata only) and reads hers, decrypted, not cached.
    const list = await api(w, w.alice, 'GET', '/artifacts')
    assert.deepEqual(list.json.artifacts.map((a: any) => a.id).sort(), [id, second.json.id].sort())
    assert.ok(list.json.artifacts.every((a: any) => !('content' in a) && !('title' in a)))
    const read = await api(w, w.alice, 'GET', `/artifacts/${id}`)
    assert.deepEqual([read.status, read.json.content, read.json.title], [200, content, title])
    assert.equal(read.headers.get('cache-control'), 'no-store')
    // …and through her own admin-scope key (it acts as her); the ADMIN's key does not.
    for (const [who, want] of [[w.alice, 200], [w.admin, 404]] as const) {
      const key = await keyFor(w.tg, w.orgId, who.userId, 'admin')
      const r = await fetch(`${w.tg.url}/api/orgs/${w.orgId}/artifacts/${id}`, { headers: { authorization: `Bearer ${key.key}` } })
      assert.equal(r.status, want)
    }

    // Nobody else — a MEMBER, an ADMIN, an OWNER — lists, reads or deletes it: 404, as for no artifact.
    for (const other of [w.bob, w.admin, w.owner, w.analyst]) {
      assert.deepEqual((await api(w, other, 'GET', '/artifacts')).json.artifacts, [])
      const r = await api(w, other, 'GET', `/artifacts/${id}`)
      assert.deepEqual([r.status, r.json.error.code], [404, 'not_found'])
      assert.equal((await api(w, other, 'DELETE', `/artifacts/${id}`)).status, 404)
      assert.equal((await api(w, other, 'GET', `/artifacts/${newId()}`)).text.replace(/req_\w+/, ''), r.text.replace(/req_\w+/, ''), 'another person\'s artifact answers like one that does not exist')
    }

    // Deleted one by one, at once.
    assert.equal((await api(w, w.alice, 'DELETE', `/artifacts/${id}`)).status, 200)
    assert.equal((await api(w, w.alice, 'GET', `/artifacts/${id}`)).status, 404)
    assert.equal((await api(w, w.alice, 'DELETE', `/artifacts/${id}`)).status, 404)
    assert.equal(await w.tg.deps.db.db.selectFrom('artifact').select('id').where('id', '=', id).executeTakeFirst(), undefined)
    assert.deepEqual((await api(w, w.alice, 'GET', '/artifacts')).json.artifacts.map((a: any) => a.id), [second.json.id])
    assert.deepEqual(await audited(w, ['artifact_saved', 'artifact_deleted']), [['artifact_saved', aliceP, id], ['artifact_saved', aliceP, second.json.id], ['artifact_deleted', aliceP, id]])

    // Bounded: 64 KiB of UTF-8 is kept, one byte more is refused (413, nothing stored).
    const max = 'é'.repeat(32 * 1024)
    assert.equal((await api(w, w.alice, 'POST', '/artifacts', { content: max })).status, 201)
    const over = await api(w, w.alice, 'POST', '/artifacts', { content: `${max}x` })
    assert.deepEqual([over.status, over.json.error.code, over.json.error.param], [413, 'text_too_large', 'body.content'])
    assert.equal((await api(w, w.alice, 'POST', '/artifacts', { content: 'x', title: 'y'.repeat(201) })).status, 400)

    // Turned off again: no new saves; what people saved stays theirs to read and delete.
    assert.equal((await api(w, w.owner, 'PATCH', '/settings', { workspace: false })).json.workspace, false)
    assert.equal((await api(w, w.alice, 'POST', '/artifacts', { content })).json.error.code, 'workspace_disabled')
    assert.equal((await api(w, w.alice, 'GET', `/artifacts/${second.json.id}`)).status, 200)
    assert.deepEqual((await audited(w, ['workspace_enabled', 'workspace_disabled'])).map((e) => e[0]), ['workspace_enabled', 'workspace_disabled'])
    // The audit log never holds the text.
    assert.deepEqual((await rowsHolding(w.tg, [content, title])).map((f) => f.table), [])
  })

  test(`RIGHTS-3: a temporary artifact is there at 23 h 59 min, unreadable from 24 h, and deleted by the retention job within one job period (≤ 1 h) [${dialect}]`, async (t) => {
    const clock = new ManualClock()
    const w = await world(t, dialect, { clock, env: { TOLLGATE_ARTIFACT_PURGE_S: '3600' } })
    if (!w) return
    const job = w.tg.deps.jobs.jobs.find((j) => j.name === 'artifacts_expired')
    assert.ok(job && job.everyMs <= HOUR, 'the purge runs on its own schedule, at least hourly')
    assert.equal((await api(w, w.owner, 'PATCH', '/settings', { workspace: true })).status, 200)
    const t0 = clock.now()
    const temp = (await api(w, w.alice, 'POST', '/artifacts', { content: 'for today only', temporary: true })).json
    const kept = (await api(w, w.alice, 'POST', '/artifacts', { content: 'keep this' })).json
    assert.equal(temp.expires_at, new Date(t0 + DAY).toISOString())
    const exists = async (id: string) => (await w.tg.deps.db.db.selectFrom('artifact').select('id').where('id', '=', id).executeTakeFirst()) !== undefined

    clock.set(t0 + DAY - 60_000)
    assert.equal((await w.tg.deps.jobs.runAll())['artifacts_expired'], 0)
    assert.equal((await api(w, w.alice, 'GET', `/artifacts/${temp.id}`)).status, 200, 'still there at 23 h 59 min')

    // From its expiry it no longer opens or lists, even before the job deletes it…
    clock.set(t0 + DAY)
    assert.equal((await api(w, w.alice, 'GET', `/artifacts/${temp.id}`)).status, 404)
    assert.deepEqual((await api(w, w.alice, 'GET', '/artifacts')).json.artifacts.map((a: any) => a.id), [kept.id])
    // …and the job's next run (at most one period later) deletes the row, audited as the system.
    clock.set(t0 + DAY + job.everyMs)
    assert.equal((await w.tg.deps.jobs.runAll())['artifacts_expired'], 1)
    assert.equal(await exists(temp.id), false)
    assert.equal(await exists(kept.id), true, 'kept artifacts do not expire')
    assert.deepEqual(await audited(w, ['artifact_expired']), [['artifact_expired', null, temp.id]])
    assert.equal((await w.tg.deps.jobs.runAll())['artifacts_expired'], 0)
  })

  test(`RIGHTS-3 GW-8 D13: terminating the org destroys its data key — its artifacts and reports cannot be decrypted any more, even from raw rows copied before [${dialect}]`, async (t) => {
    const w = await world(t, dialect, { env: { TOLLGATE_ORG_PURGE_DELAY_S: '0' } })
    if (!w) return
    const db = w.tg.deps.db.db
    const content = mark('artifact')
    const text = mark('report')
    assert.equal((await api(w, w.owner, 'PATCH', '/settings', { workspace: true })).status, 200)
    assert.equal((await api(w, w.alice, 'POST', '/artifacts', { content })).status, 201)
    assert.equal((await api(w, w.alice, 'POST', '/reports', { text, category: 'S2' })).status, 201)
    // Another org, whose keys live on: its key must not open these rows either.
    const other = (await w.tg.deps.orgs.create(`${w.slug}-other`, { type: 'operator', id: null }))!.id
    // The copies an attacker might hold (a backup of the rows, a disk image).
    const artifacts = await db.selectFrom('artifact').selectAll().where('org_id', '=', w.orgId).execute()
    const reports = await db.selectFrom('harm_report').selectAll().where('org_id', '=', w.orgId).execute()
    assert.deepEqual([artifacts.length, reports.length], [1, 1])
    const openAll = (key: Buffer, now: number) => [
      ...artifacts.map((r) => openStored<{ c: string }>(key, 'artifact', r.org_id, r.id, r.sealed, now)?.c),
      ...reports.map((r) => openStored<{ x: string }>(key, 'report', r.org_id, r.id, r.sealed, now)?.x),
    ]
    // Positive control: with the org's data key the copies open to the text.
    const dataKey = await w.tg.deps.keyring.key(w.orgId, 'data')
    assert.deepEqual(openAll(dataKey, Date.now()), [content, text])
    // Bound to their row and org: the other org's key, or the right key on another row id, opens nothing.
    assert.deepEqual(openAll(await w.tg.deps.keyring.key(other, 'data'), Date.now()), [undefined, undefined])
    assert.equal(openStored(dataKey, 'artifact', w.orgId, reports[0]!.id, artifacts[0]!.sealed, Date.now()), undefined)

    const res = await api(w, w.owner, 'DELETE', '', { confirm: w.slug })
    assert.equal(res.status, 200, res.text)
    // The data key is gone: cleared in the database, refused by this keyring and by a fresh one (another instance).
    const keys = await db.selectFrom('org_key').selectAll().where('org_id', '=', w.orgId).execute()
    assert.ok(keys.length >= 2 && keys.every((k) => k.wrapped === '' && k.destroyed_at !== null))
    const fresh = new OrgKeyring(db, masterKeyFromHex(TEST_MASTER_KEY), w.tg.deps.clock)
    for (const ring of [w.tg.deps.keyring, fresh]) await assert.rejects(ring.key(w.orgId, 'data'), OrgKeyDestroyed)
    // No key left anywhere opens the copies: every live org's data key, the instance keys.
    const live = (await db.selectFrom('org_key').select('org_id').where('destroyed_at', 'is', null).distinct().execute()).map((r) => r.org_id)
    assert.ok(live.includes(other))
    for (const orgId of live) assert.deepEqual(openAll(await fresh.key(orgId, 'data'), Date.now()), [undefined, undefined])
    for (const purpose of ['identity', 'flow', 'csrf', 'replay'] as const) assert.deepEqual(openAll(await fresh.instanceKey(purpose), Date.now()), [undefined, undefined])
    // The rows themselves go with the org at the retention run.
    await w.tg.deps.jobs.runAll()
    assert.deepEqual(await rowsHolding(w.tg, [artifacts[0]!.id, reports[0]!.id]), [])
  })

  test(`GW-8: a member reports a harmful output; OWNER and ADMIN review it decrypted, the reporter only a pseudonym; MEMBER and ANALYST get 403; resolving deletes it at once and is audited; the reporter can withdraw [${dialect}]`, async (t) => {
    const w = await world(t, dialect)
    if (!w) return
    const db = w.tg.deps.db.db
    // A real decision id, as the gateway returns it in x-tollgate-decision.
    const key = await keyFor(w.tg, w.orgId, w.alice.userId)
    const ai = await fetch(`${w.tg.url}/v1/intercept`, { method: 'POST', headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'local-echo', prompt: 'hello' }) })
    const decisionId = ai.headers.get('x-tollgate-decision')!
    assert.equal(ai.status, 200)
    const text = `${mark('harmful')} the model said something it should not`

    // A safety channel: no workspace opt-in needed. Bounded, categorised, format-checked.
    assert.equal((await api(w, w.owner, 'GET', '/settings')).json.workspace, false)
    assert.equal((await api(w, w.alice, 'POST', '/reports', { text, category: 'S99' })).status, 400)
    assert.equal((await api(w, w.alice, 'POST', '/reports', { text, category: 'S1', decision_id: 'not a decision' })).status, 400)
    assert.equal((await api(w, w.alice, 'POST', '/reports', { text: 'x'.repeat(16 * 1024 + 1), category: 'S1' })).json.error.code, 'text_too_large')
    const sent = await api(w, w.alice, 'POST', '/reports', { text, category: 'S1', decision_id: decisionId })
    assert.equal(sent.status, 201, sent.text)
    assert.deepEqual([sent.json.category, sent.json.decision_id, sent.json.purge_by], ['S1', decisionId, new Date(Date.parse(sent.json.created_at) + 30 * DAY).toISOString()])
    assert.ok(!sent.text.includes(text))
    const id = sent.json.id as string

    // Encrypted at rest (with the scan's positive control).
    const decoy = mark('decoy')
    await plantDecoy(w.tg, decoy)
    const raw = await rawStore(w.tg)
    assert.ok(holds(raw, decoy))
    assert.ok(!holds(raw, text) && !holds(raw, text.slice(3, 30)))
    assert.deepEqual(await rowsHolding(w.tg, [text]), [])

    // The queue: OWNER and ADMIN only; the reporter appears as the org pseudonym, never their email or user id.
    for (const who of [w.alice, w.bob, w.analyst]) {
      const r = await api(w, who, 'GET', '/reports')
      assert.deepEqual([r.status, r.json.error.code], [403, 'forbidden'])
    }
    const aliceP = await w.tg.deps.keyring.pseudonym(w.orgId, w.alice.userId)
    for (const reviewer of [w.owner, w.admin]) {
      const q = await api(w, reviewer, 'GET', '/reports')
      assert.equal(q.status, 200)
      assert.equal(q.headers.get('cache-control'), 'no-store')
      assert.deepEqual(q.json.reports.map((r: any) => [r.id, r.text, r.category, r.decision_id, r.reporter]), [[id, text, 'S1', decisionId, aliceP]])
      assert.ok(!q.text.includes(w.alice.email) && !q.text.includes(w.alice.userId), 'the reporter is named only by pseudonym')
    }
    assert.equal((await db.selectFrom('harm_report').select('reporter_id').where('id', '=', id).executeTakeFirstOrThrow()).reporter_id, aliceP)

    // Resolved: gone at once (well within 24 h of review), the outcome audited by the reviewer's pseudonym.
    assert.equal((await api(w, w.alice, 'POST', `/reports/${id}/resolve`, { outcome: 'dismissed' })).status, 403)
    const done = await api(w, w.admin, 'POST', `/reports/${id}/resolve`, { outcome: 'actioned' })
    assert.deepEqual([done.status, done.json.id, done.json.outcome], [200, id, 'actioned'])
    assert.equal(await db.selectFrom('harm_report').select('id').where('id', '=', id).executeTakeFirst(), undefined)
    assert.deepEqual((await api(w, w.owner, 'GET', '/reports')).json.reports, [])
    assert.equal((await api(w, w.owner, 'POST', `/reports/${id}/resolve`, { outcome: 'dismissed' })).status, 404)
    const adminP = await w.tg.deps.keyring.pseudonym(w.orgId, w.admin.userId)
    assert.deepEqual(await audited(w, ['report_submitted', 'report_actioned', 'report_dismissed']), [['report_submitted', aliceP, id], ['report_actioned', adminP, id]])

    // Withdrawn by its reporter only (anyone else: 404, whatever the role).
    const again = (await api(w, w.alice, 'POST', '/reports', { text, category: 'S5' })).json.id as string
    for (const other of [w.bob, w.admin, w.owner]) assert.equal((await api(w, other, 'DELETE', `/reports/${again}`)).status, 404)
    assert.equal((await api(w, w.alice, 'DELETE', `/reports/${again}`)).status, 200)
    assert.equal(await db.selectFrom('harm_report').select('id').where('id', '=', again).executeTakeFirst(), undefined)
    assert.deepEqual((await audited(w, ['report_withdrawn'])), [['report_withdrawn', aliceP, again]])
    assert.deepEqual((await rowsHolding(w.tg, [text])).map((f) => f.table), [], 'the text is in no row, the audit log included')
  })

  test(`GW-8: an unreviewed report is deleted by the retention job by its 30-day deadline, never later (ManualClock) [${dialect}]`, async (t) => {
    const clock = new ManualClock()
    const w = await world(t, dialect, { clock, env: { TOLLGATE_ARTIFACT_PURGE_S: '3600' } })
    if (!w) return
    const t0 = clock.now()
    const id = (await api(w, w.alice, 'POST', '/reports', { text: 'left unreviewed', category: 'S10' })).json.id as string
    const there = async () => (await w.tg.deps.db.db.selectFrom('harm_report').select('id').where('id', '=', id).executeTakeFirst()) !== undefined
    // Up to one job period before the deadline it stays in the queue…
    clock.set(t0 + 30 * DAY - HOUR - 1)
    assert.equal((await w.tg.deps.jobs.runAll())['artifacts_expired'], 0)
    assert.equal(await there(), true)
    assert.deepEqual((await api(w, w.admin, 'GET', '/reports')).json.reports.map((r: any) => r.id), [id])
    // …and the run that comes before the deadline deletes it, audited as the system.
    clock.set(t0 + 30 * DAY - HOUR)
    assert.equal((await w.tg.deps.jobs.runAll())['artifacts_expired'], 1)
    assert.equal(await there(), false)
    assert.deepEqual(await audited(w, ['report_expired']), [['report_expired', null, id]])
  })

  test(`RIGHTS-1 RIGHTS-3 GW-8: my account export holds my artifacts decrypted and my open reports' metadata, nobody else's; deleting my account deletes them [${dialect}]`, async (t) => {
    const w = await world(t, dialect)
    if (!w) return
    const mine = mark('mine')
    const theirs = mark('theirs')
    const reportText = mark('report-text')
    assert.equal((await api(w, w.owner, 'PATCH', '/settings', { workspace: true })).status, 200)
    const a = (await api(w, w.alice, 'POST', '/artifacts', { content: mine, title: 'my title', temporary: true })).json
    await api(w, w.bob, 'POST', '/artifacts', { content: theirs })
    const r = (await api(w, w.alice, 'POST', '/reports', { text: reportText, category: 'S6' })).json
    await api(w, w.bob, 'POST', '/reports', { text: theirs, category: 'S6' })

    const ex = await call(w.tg, w.alice, 'GET', '/api/account/export')
    assert.equal(ex.status, 200, ex.text)
    assert.deepEqual(ex.json.artifacts, [{ id: a.id, org_id: w.orgId, created_at: a.created_at, size_bytes: a.size_bytes, temporary: true, expires_at: a.expires_at, title: 'my title', content: mine }])
    assert.deepEqual(ex.json.reports, [{ id: r.id, org_id: w.orgId, category: 'S6', decision_id: null, created_at: r.created_at, purge_by: r.purge_by }])
    assert.ok(!ex.text.includes(theirs), 'nothing of another person\'s')
    assert.ok(!ex.text.includes(reportText), 'a report\'s text went to the reviewers: the export lists its metadata')

    const del = await call(w.tg, w.alice, 'DELETE', '/api/account')
    assert.equal(del.status, 204, del.text)
    const aliceP = await w.tg.deps.keyring.pseudonym(w.orgId, w.alice.userId)
    const db = w.tg.deps.db.db
    assert.deepEqual(await db.selectFrom('artifact').select('id').where('owner_id', '=', aliceP).execute(), [])
    assert.deepEqual(await db.selectFrom('harm_report').select('id').where('reporter_id', '=', aliceP).execute(), [])
    assert.equal((await db.selectFrom('artifact').select('id').execute()).length, 1, 'Bob keeps his')
  })
}

test('RIGHTS-3: the purge job period is a setting of at most one hour', () => {
  const base = { TOLLGATE_MASTER_KEY: TEST_MASTER_KEY }
  const ok = loadConfig({ ...base, TOLLGATE_ARTIFACT_PURGE_S: '3600' })
  assert.ok(ok.ok && ok.config.retention.artifactJobS === 3600)
  const d = loadConfig(base)
  assert.ok(d.ok && d.config.retention.artifactJobS <= 3600)
  assert.equal(loadConfig({ ...base, TOLLGATE_ARTIFACT_PURGE_S: '3601' }).ok, false)
})
