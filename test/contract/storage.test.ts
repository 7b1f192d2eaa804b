// The storage contract: the same tests on every implementation (SQLite in a temp dir and a
// fresh PostgreSQL database). Time is an injected clock; nothing here sleeps for expiry.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import SqliteDatabase from 'better-sqlite3-multiple-ciphers'
import { setImmediate as tick } from 'node:timers/promises'
import { linkHash, verifyChains, type ChainReport } from '../../src/audit/audit.ts'
import { checksum62, sha256Hex } from '../../src/core/crypto.ts'
import { newId } from '../../src/core/ids.ts'
import type { DecisionRecord, DecisionSink } from '../../src/decisions/record.ts'
import { KyselyDecisionSink, SqliteWorkerDecisionSink } from '../../src/decisions/sinks.ts'
import { DecisionWriter } from '../../src/decisions/writer.ts'
import { mintKey } from '../../src/keys/key-format.ts'
import { OrgKeyring } from '../../src/privacy/org-keys.ts'
import { masterKeyFromHex } from '../../src/privacy/wrap.ts'
import type { Database } from '../../src/storage/database.ts'
import { MIGRATION_NAMES, migrateToLatest } from '../../src/storage/migrations/index.ts'
import type { DB } from '../../src/storage/schema.ts'
import { TEST_MASTER_KEY } from '../helpers/app.ts'
import { DIALECTS, ManualClock, OPERATOR, freshPlace, openPlace, storageWorld, storesOn, uniqueSlug, type StorageWorld } from './storage-world.ts'

const OTHER_MASTER_KEY = 'b'.repeat(64)

/** The identity a verified key carries (other fields, such as a scope, may be added beside it). */
function who(v: { id: string; orgId: string; environment: string; userId: string | null } | undefined) {
  return v && { id: v.id, orgId: v.orgId, environment: v.environment, userId: v.userId }
}

/** Replaces the checksum so a deliberately altered key still passes the format check. */
function rechecksum(keyWithoutChecksum: string): string {
  return keyWithoutChecksum + checksum62(keyWithoutChecksum)
}

async function newOrg(w: StorageWorld, slug = uniqueSlug()) {
  const org = await w.orgs.create(slug, OPERATOR)
  assert.ok(org, 'org created')
  return org
}

async function chainOf(w: StorageWorld, chainId: string) {
  return w.database.db.selectFrom('audit_event').selectAll().where('chain_id', '=', chainId).orderBy('seq').execute()
}

async function reportFor(db: Database, chainId: string): Promise<ChainReport> {
  const r = (await verifyChains(db.db)).find((x) => x.chainId === chainId)
  assert.ok(r, `a report for chain ${chainId}`)
  return r
}

/** Polls until `check` passes (fire-and-forget writes such as last_used_at). */
async function eventually(check: () => Promise<boolean>, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 10))
  }
  assert.fail(`timed out waiting for: ${what}`)
}

function decisionRow(orgId: string, i: number, at: number): DecisionRecord {
  return {
    id: newId(), org_id: orgId, environment: 'sandbox', key_id: null, actor_id: null, request_id: `req_${i}`,
    endpoint: '/v1/messages', model: 'claude-sonnet-4-5', provider: 'anthropic', outcome: 'allowed', status: 200,
    error_code: null, stream: i % 2, input_tokens: i, output_tokens: 2 * i, attachment_count: 0, attachment_types: null,
    prompt_fingerprint: null, domain: 'math', intent: 'learn', friction: 'allow', passed: null, reasoning_score: null,
    rule_id: null, reason: null, cohort: null, finding_codes: null, classifier: 'embedded', classify_ms: 1.5, policy_ms: 0.25, auth_ms: 0.5,
    upstream_ms: 40, total_ms: 42.25, created_at: at, completed_at: at + 42,
  }
}

function sinkFor(w: StorageWorld): DecisionSink {
  return w.database.dialect === 'sqlite' ? new SqliteWorkerDecisionSink(w.database.sqlitePath!) : new KyselyDecisionSink(w.database.db)
}

async function decisionCount(w: StorageWorld, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0
  const r = await w.database.db.selectFrom('decision').select((eb) => eb.fn.countAll<number>().as('n')).where('id', 'in', [...ids]).executeTakeFirstOrThrow()
  return Number(r.n)
}

for (const dialect of DIALECTS) {
  describe(`storage contract [${dialect}]`, () => {
    test(`OPS-1: migrations create every table and are idempotent [${dialect}]`, async (t) => {
      const place = await freshPlace(t, dialect)
      if (!place) return
      const a = openPlace(t, place)
      const first = await migrateToLatest(a.db, dialect)
      assert.deepEqual(first.applied, [...MIGRATION_NAMES], 'every migration applies, in order')
      assert.deepEqual((await migrateToLatest(a.db, dialect)).applied, [], 'a second run applies nothing')
      // A second instance starting on the same database also finds nothing to do.
      const b = openPlace(t, place)
      assert.deepEqual((await migrateToLatest(b.db, dialect)).applied, [])
      const tables = (await a.db.introspection.getTables()).map((x) => x.name).sort()
      for (const name of ['api_key', 'audit_event', 'decision', 'org', 'org_key', 'user', 'session', 'membership'] satisfies (keyof DB)[]) assert.ok(tables.includes(name), `table ${name} exists`)
    })

    test(`AUDIT-1: OrgStore creates, finds and lists orgs; a duplicate slug is refused; creation is audited [${dialect}]`, async (t) => {
      const w = await storageWorld(t, dialect)
      if (!w) return
      const a = await newOrg(w, 'acme')
      const b = await newOrg(w, 'globex')
      assert.deepEqual(await w.orgs.bySlug('acme'), a)
      assert.deepEqual(await w.orgs.byId(b.id), b)
      assert.equal(await w.orgs.bySlug('nope'), undefined)
      assert.deepEqual((await w.orgs.list()).map((o) => o.slug).sort(), ['acme', 'globex'])
      assert.equal(await w.orgs.create('acme', OPERATOR), undefined, 'duplicate slug → undefined')
      assert.equal((await w.orgs.list()).length, 2, 'the duplicate created nothing')
      await assert.rejects(w.orgs.create('Bad Slug!', OPERATOR), /invalid org slug/)
      const chain = await chainOf(w, a.id)
      assert.equal(chain.length, 1)
      assert.deepEqual([chain[0]!.action, chain[0]!.actor_type, chain[0]!.target_id, chain[0]!.outcome], ['org_created', 'operator', a.id, 'success'])
    })

    test(`KEY-1 KEY-2: a created key verifies; its prefix names its environment; only SHA-256 of it is stored [${dialect}]`, async (t) => {
      const w = await storageWorld(t, dialect)
      if (!w) return
      const org = await newOrg(w)
      const sb = await w.keys.create({ orgId: org.id, environment: 'sandbox', label: 'ci runner', actor: OPERATOR })
      const pr = await w.keys.create({ orgId: org.id, environment: 'production', actor: OPERATOR })
      assert.match(sb.key, /^tg_test_/)
      assert.match(pr.key, /^tg_live_/)
      assert.deepEqual(who(await w.keys.verify(sb.key)), { id: sb.info.id, orgId: org.id, environment: 'sandbox', userId: null })
      assert.deepEqual(who(await w.keys.verify(pr.key)), { id: pr.info.id, orgId: org.id, environment: 'production', userId: null })
      assert.equal(sb.info.label, 'ci runner')

      // The stored rows: the hash of the full key, and no column holding the key or its secret part.
      for (const { key, info } of [sb, pr]) {
        const row = await w.database.db.selectFrom('api_key').selectAll().where('id', '=', info.id).executeTakeFirstOrThrow()
        assert.equal(row.secret_hash, sha256Hex(key))
        const secretPart = key.slice(`tg_live_${info.id}_`.length)
        const everything: string = JSON.stringify(await w.database.db.selectFrom('api_key').selectAll().execute())
          + JSON.stringify(await w.database.db.selectFrom('audit_event').selectAll().execute())
        assert.equal(everything.includes(key), false, 'the key is not stored')
        assert.equal(everything.includes(secretPart), false, 'the secret part is not stored')
        assert.equal(everything.includes(secretPart.slice(0, 20)), false, 'no prefix of the secret is stored')
      }
      // Listing shows metadata, never the secret or its hash.
      const listed = JSON.stringify(await w.keys.list({ orgId: org.id }))
      assert.equal(listed.includes(sha256Hex(sb.key)), false)
      assert.equal(listed.includes(sb.key.slice(-39)), false)
      assert.deepEqual((await w.keys.list({ orgId: org.id, environment: 'sandbox' })).map((k) => k.id), [sb.info.id])
    })

    test(`KEY-1 KEY-2 KEY-3: wrong secret, unknown id, malformed, bad checksum, wrong prefix, revoked and terminated-org keys all fail the same way [${dialect}]`, async (t) => {
      const w = await storageWorld(t, dialect)
      if (!w) return
      const org = await newOrg(w)
      const { key, info } = await w.keys.create({ orgId: org.id, environment: 'production', actor: OPERATOR })
      const body = key.slice(0, -6)
      const secretStart = `tg_live_${info.id}_`.length
      const flip = (c: string) => (c === 'A' ? 'B' : 'A')
      const refused: Record<string, string> = {
        'wrong secret (valid checksum)': rechecksum(body.slice(0, secretStart) + flip(body[secretStart]!) + body.slice(secretStart + 1)),
        'unknown id': mintKey('production').key,
        'bad checksum': body + (key.at(-1) === 'x' ? key.slice(-6, -1) + 'y' : key.slice(-6, -1) + 'x'),
        'sandbox prefix on a production key (valid checksum)': rechecksum(body.replace(/^tg_live_/, 'tg_test_')),
        'empty': '',
        'truncated': key.slice(0, -1),
        'extra character': key + 'a',
        'not a key': 'sk-ant-api03-not-a-tollgate-key',
        'whitespace': ` ${key}`,
        'sql-looking': `tg_live_${info.id}_' or 1=1 --`,
      }
      for (const [why, presented] of Object.entries(refused)) assert.equal(await w.keys.verify(presented), undefined, why)
      assert.ok(await w.keys.verify(key), 'the real key still works')

      // Revocation is instant, also for another instance reading the same database (no key cache).
      const other = storesOn(t, w.place)
      assert.ok(await other.keys.verify(key))
      assert.equal(await w.keys.revoke({ id: info.id, orgId: 'another-org', actor: OPERATOR }), false, 'revoke is scoped to the org')
      assert.ok(await w.keys.verify(key))
      assert.equal(await w.keys.revoke({ id: info.id, orgId: org.id, actor: OPERATOR }), true)
      assert.equal(await w.keys.verify(key), undefined, 'revoked: refused by this instance')
      assert.equal(await other.keys.verify(key), undefined, 'revoked: refused by another instance at once')
      assert.equal(await w.keys.revoke({ id: info.id, actor: OPERATOR }), false, 'revoking twice reports nothing to revoke')

      // A terminated org's keys stop working.
      const org2 = await newOrg(w)
      const k2 = await w.keys.create({ orgId: org2.id, environment: 'sandbox', actor: OPERATOR })
      assert.ok(await w.keys.verify(k2.key))
      await w.database.db.updateTable('org').set({ terminated_at: Date.now() }).where('id', '=', org2.id).execute()
      assert.equal(await w.keys.verify(k2.key), undefined)
    })

    test(`KEY-3: rotation keeps the old key working until the grace period ends, and refuses it at the end [${dialect}]`, async (t) => {
      const clock = new ManualClock()
      const w = await storageWorld(t, dialect, { clock })
      if (!w) return
      const org = await newOrg(w)
      const old = await w.keys.create({ orgId: org.id, environment: 'sandbox', label: 'old', actor: OPERATOR })
      const t0 = clock.now()
      assert.equal(await w.keys.rotate({ orgId: 'another-org', id: old.info.id, graceSeconds: 60, actor: OPERATOR }), undefined, 'rotate is scoped to the org')
      const next = await w.keys.rotate({ orgId: org.id, id: old.info.id, graceSeconds: 60, actor: OPERATOR })
      assert.ok(next)
      assert.match(next.key, /^tg_test_/, 'the new key keeps the environment')
      assert.equal(next.info.label, 'old')
      const row = await w.database.db.selectFrom('api_key').selectAll().where('id', '=', old.info.id).executeTakeFirstOrThrow()
      assert.deepEqual([row.expires_at, row.revoked_at, row.replaced_by], [t0 + 60_000, null, next.info.id])

      assert.ok(await w.keys.verify(old.key), 'old key works right after rotation')
      assert.ok(await w.keys.verify(next.key), 'new key works right after rotation')
      clock.t = t0 + 59_999
      assert.ok(await w.keys.verify(old.key), 'old key works 1 ms before the grace ends')
      clock.t = t0 + 60_000
      assert.equal(await w.keys.verify(old.key), undefined, 'old key refused at the grace end')
      assert.ok(await w.keys.verify(next.key), 'new key still works')
      assert.equal(await w.keys.rotate({ orgId: org.id, id: old.info.id, graceSeconds: 60, actor: OPERATOR }), undefined, 'an expired key cannot be rotated')

      const actions = (await chainOf(w, org.id)).map((e) => [e.action, e.target_id])
      assert.deepEqual(actions, [['org_created', org.id], ['authn_token_created', old.info.id], ['authn_token_created', next.info.id], ['authn_token_rotated', old.info.id]])
    })

    test(`KEY-3: rotation with grace 0 revokes the old key at once [${dialect}]`, async (t) => {
      const clock = new ManualClock()
      const w = await storageWorld(t, dialect, { clock })
      if (!w) return
      const org = await newOrg(w)
      const old = await w.keys.create({ orgId: org.id, environment: 'production', actor: OPERATOR })
      const next = await w.keys.rotate({ orgId: org.id, id: old.info.id, graceSeconds: 0, actor: OPERATOR })
      assert.ok(next)
      assert.match(next.key, /^tg_live_/)
      assert.equal(await w.keys.verify(old.key), undefined, 'old key refused immediately, without moving the clock')
      assert.ok(await w.keys.verify(next.key))
      const row = await w.database.db.selectFrom('api_key').selectAll().where('id', '=', old.info.id).executeTakeFirstOrThrow()
      assert.deepEqual([row.revoked_at, row.replaced_by], [clock.now(), next.info.id])
    })

    test(`KEY-1: last_used_at is written on use, at most once a minute per key [${dialect}]`, async (t) => {
      const clock = new ManualClock()
      const w = await storageWorld(t, dialect, { clock })
      if (!w) return
      const org = await newOrg(w)
      const { key, info } = await w.keys.create({ orgId: org.id, environment: 'sandbox', actor: OPERATOR })
      const lastUsed = async () => (await w.database.db.selectFrom('api_key').select('last_used_at').where('id', '=', info.id).executeTakeFirstOrThrow()).last_used_at
      assert.equal(await lastUsed(), null)
      const t0 = clock.now()
      assert.ok(await w.keys.verify(key))
      await eventually(async () => (await lastUsed()) === t0, 'last_used_at = first use')
      clock.advance(30_000)
      assert.ok(await w.keys.verify(key))
      await new Promise((r) => setTimeout(r, 100))
      assert.equal(await lastUsed(), t0, 'not rewritten within the minute')
      clock.advance(30_001)
      assert.ok(await w.keys.verify(key))
      await eventually(async () => (await lastUsed()) === t0 + 60_001, 'last_used_at rewritten after a minute')
      assert.equal((await w.keys.list({ orgId: org.id }))[0]!.lastUsedAt, t0 + 60_001)
    })

    test(`AUDIT-1 AUDIT-3: concurrent writers (40 parallel key creations${dialect === 'postgres' ? ' from two instances' : ''}) keep each chain contiguous and valid [${dialect}]`, async (t) => {
      const w = await storageWorld(t, dialect)
      if (!w) return
      // PostgreSQL serves several instances; SQLite is one instance (a second in-process handle
      // would only measure better-sqlite3's synchronous busy-wait blocking the other connection).
      const second = dialect === 'postgres' ? storesOn(t, w.place) : w
      const org = await newOrg(w)
      const other = await newOrg(w)
      const created = await Promise.all(Array.from({ length: 40 }, (_, i) =>
        (i % 2 === 0 ? w : second).keys.create({ orgId: i % 4 < 3 ? org.id : other.id, environment: i % 3 === 0 ? 'production' : 'sandbox', actor: OPERATOR })))
      assert.equal(new Set(created.map((c) => c.info.id)).size, 40)

      for (const o of [org, other]) {
        const chain = await chainOf(w, o.id)
        const expected = created.filter((c) => c.info.orgId === o.id).map((c) => c.info.id).sort()
        assert.deepEqual(chain.map((e) => e.seq), Array.from({ length: expected.length + 1 }, (_, i) => i + 1), 'seq is 1..n with no gap')
        assert.deepEqual(chain.filter((e) => e.action === 'authn_token_created').map((e) => e.target_id).sort(), expected, 'one entry per key')
        assert.ok(chain.every((e) => e.actor_type === 'operator' && e.outcome === 'success'))
      }
      const reports = await verifyChains(w.database.db)
      assert.deepEqual(reports.filter((r) => r.broken), [])
      assert.deepEqual(reports.map((r) => [r.chainId, r.entries]).sort(), [[org.id, 31], [other.id, 11]].sort())
    })

    test(`AUDIT-3: verifyChains detects edited, removed, reordered and inserted entries and names the first broken seq [${dialect}]`, async (t) => {
      const w = await storageWorld(t, dialect)
      if (!w) return
      const db = w.database.db
      // One org (one chain of 5 entries) per kind of tampering, plus an untouched control chain.
      const chain5 = async () => {
        const o = await newOrg(w)
        for (let i = 0; i < 4; i++) await w.keys.create({ orgId: o.id, environment: 'sandbox', actor: OPERATOR })
        assert.equal((await chainOf(w, o.id)).length, 5)
        return o.id
      }
      const row = async (chain: string, seq: number) => db.selectFrom('audit_event').selectAll().where('chain_id', '=', chain).where('seq', '=', seq).executeTakeFirstOrThrow()
      const setSeq = (chain: string, from: number, to: number) => db.updateTable('audit_event').set({ seq: to }).where('chain_id', '=', chain).where('seq', '=', from).execute()

      const cases: { name: string; tamper: (chain: string) => Promise<unknown>; brokenAt: number; reason: RegExp }[] = [
        { name: 'edit the action of entry 3', brokenAt: 3, reason: /edited/, tamper: (c) => db.updateTable('audit_event').set({ action: 'org_created' }).where('chain_id', '=', c).where('seq', '=', 3).execute() },
        { name: 'edit the timestamp of entry 2', brokenAt: 2, reason: /edited/, tamper: async (c) => db.updateTable('audit_event').set({ at: (await row(c, 2)).at - 1 }).where('chain_id', '=', c).where('seq', '=', 2).execute() },
        { name: 'edit the actor of the last entry', brokenAt: 5, reason: /edited/, tamper: (c) => db.updateTable('audit_event').set({ actor_type: 'system' }).where('chain_id', '=', c).where('seq', '=', 5).execute() },
        { name: 'edit the outcome of entry 1', brokenAt: 1, reason: /edited/, tamper: (c) => db.updateTable('audit_event').set({ outcome: 'failure' }).where('chain_id', '=', c).where('seq', '=', 1).execute() },
        {
          name: 'edit entry 3 and recompute its own hash', brokenAt: 4, reason: /prev_hash/,
          tamper: async (c) => {
            const { hash: _old, ...r } = { ...(await row(c, 3)), target_id: 'forged' }
            await db.updateTable('audit_event').set({ target_id: 'forged', hash: linkHash(r) }).where('chain_id', '=', c).where('seq', '=', 3).execute()
          },
        },
        { name: 'delete entry 3', brokenAt: 4, reason: /expected seq 3/, tamper: (c) => db.deleteFrom('audit_event').where('chain_id', '=', c).where('seq', '=', 3).execute() },
        { name: 'delete entry 1', brokenAt: 2, reason: /expected seq 1/, tamper: (c) => db.deleteFrom('audit_event').where('chain_id', '=', c).where('seq', '=', 1).execute() },
        {
          name: 'swap the seq of entries 2 and 3', brokenAt: 2, reason: /prev_hash/,
          tamper: async (c) => {
            await setSeq(c, 2, -2)
            await setSeq(c, 3, 2)
            await setSeq(c, -2, 3)
          },
        },
        {
          name: 'insert a forged entry (with a valid own hash) at seq 3', brokenAt: 4, reason: /prev_hash/,
          tamper: async (c) => {
            const prev = await row(c, 2)
            for (const s of [5, 4, 3]) await setSeq(c, s, s + 1)
            const forged = { chain_id: c, seq: 3, at: prev.at, actor_type: 'operator', actor_id: null, action: 'authn_token_revoked', target_type: 'api_key', target_id: 'x', outcome: 'success', request_id: null, prev_hash: prev.hash }
            await db.insertInto('audit_event').values({ ...forged, hash: linkHash(forged) }).execute()
          },
        },
        {
          name: 'append a forged entry with a made-up hash', brokenAt: 6, reason: /edited/,
          tamper: async (c) => {
            const last = await row(c, 5)
            await db.insertInto('audit_event').values({ chain_id: c, seq: 6, at: last.at, actor_type: 'operator', actor_id: null, action: 'org_created', target_type: null, target_id: null, outcome: 'success', request_id: null, prev_hash: last.hash, hash: createHash('sha256').update('forged').digest('hex') }).execute()
          },
        },
      ]
      const control = await chain5()
      const chains = []
      for (const c of cases) chains.push(await chain5())
      assert.deepEqual((await verifyChains(db)).filter((r) => r.broken), [], 'every chain verifies before tampering')
      for (const [i, c] of cases.entries()) await c.tamper(chains[i]!)

      assert.equal((await reportFor(w.database, control)).broken, undefined, 'the untouched chain still verifies')
      for (const [i, c] of cases.entries()) {
        const r = await reportFor(w.database, chains[i]!)
        assert.ok(r.broken, `${c.name}: detected`)
        assert.equal(r.broken.seq, c.brokenAt, `${c.name}: first broken seq`)
        assert.match(r.broken.reason, c.reason, `${c.name}: reason`)
      }
    })

    test(`AUDIT-2 TRANSIT-3: DecisionWriter group-commits concurrent records through the ${dialect} sink [${dialect}]`, async (t) => {
      const w = await storageWorld(t, dialect)
      if (!w) return
      const org = await newOrg(w)
      const batches: number[] = []
      const writer = new DecisionWriter(sinkFor(w), 64, { batch: (size, _ms, ok) => ok && batches.push(size) })
      t.after(() => writer.close())
      const N = 300
      const rows = Array.from({ length: N }, (_, i) => decisionRow(org.id, i, Date.now()))
      // Records arrive over many event-loop turns (like requests finishing), not all at once.
      const pending: Promise<void>[] = []
      for (const [i, r] of rows.entries()) {
        pending.push(writer.record(r))
        if (i % 3 === 0) await tick()
      }
      await Promise.all(pending)
      assert.equal(await decisionCount(w, rows.map((r) => r.id)), N, 'every record is committed once its promise resolves')
      assert.equal(batches.reduce((a, b) => a + b, 0), N)
      assert.ok(Math.max(...batches) > 1, `several records share a commit (batches: ${batches.join(',')})`)
      assert.ok(batches.length < N, 'fewer commits than records')
      assert.ok(batches.every((b) => b <= 64), 'no batch exceeds batchMax')

      // The row round-trips exactly (types and nulls survive both dialects).
      const back = await w.database.db.selectFrom('decision').selectAll().where('id', '=', rows[7]!.id).executeTakeFirstOrThrow()
      assert.deepEqual(back, rows[7])
      await writer.drain()
    })

    if (dialect === 'sqlite') {
      test('AUDIT-2 TRANSIT-3: with one request in flight the SQLite writer commits on the calling thread; with more, or while another connection writes, it queues [sqlite]', async (t) => {
        const w = await storageWorld(t, dialect)
        if (!w) return
        const org = await newOrg(w)
        let alone = true
        const batches: string[] = []
        const writer = new DecisionWriter(sinkFor(w), 64, { batch: (size, _ms, ok) => batches.push(`${size}:${ok}`) }, () => alone)
        t.after(() => writer.close())
        // A third connection sees what is committed, at any moment (no await between record() and the look).
        const other = new SqliteDatabase(w.database.sqlitePath!)
        t.after(() => other.close())
        const committed = (id: string) => (other.prepare('select count(*) as n from decision where id = ?').get(id) as { n: number }).n

        const first = decisionRow(org.id, 1, Date.now())
        const p1 = writer.record(first)
        assert.equal(committed(first.id), 1, 'alone: durable before record() returns')
        await p1
        assert.deepEqual(batches, ['1:true'])

        alone = false
        const second = decisionRow(org.id, 2, Date.now())
        const p2 = writer.record(second)
        assert.equal(committed(second.id), 0, 'not alone: queued for the writer thread')
        await p2
        assert.equal(committed(second.id), 1)

        // Another connection holds the write lock: the row waits in the queue (busy_timeout) instead of failing.
        alone = true
        other.exec('begin immediate')
        const third = decisionRow(org.id, 3, Date.now())
        let done = false
        const p3 = writer.record(third).then(() => { done = true })
        await new Promise((r) => setTimeout(r, 100))
        assert.equal(done, false, 'waits while the lock is held')
        other.exec('commit')
        await p3
        assert.equal(committed(third.id), 1)

        // A row the database refuses: rejected with a code only, nothing written, the writer carries on.
        const bad = decisionRow('no-such-org', 4, Date.now())
        const err = await writer.record(bad).then(() => undefined, (e: unknown) => e as Error & { code?: string })
        assert.ok(err instanceof Error)
        assert.equal(err.message.includes('no-such-org'), false)
        assert.match(String(err.code), /^SQLITE_CONSTRAINT/)
        assert.equal(committed(bad.id), 0)
        const fifth = decisionRow(org.id, 5, Date.now())
        const p5 = writer.record(fifth)
        assert.equal(committed(fifth.id), 1)
        await p5
        assert.deepEqual(batches.slice(-2), ['1:false', '1:true'])
      })
    }

    test(`AUDIT-2: a failing batch rejects every record in it, commits none of them, and the writer carries on [${dialect}]`, async (t) => {
      const w = await storageWorld(t, dialect)
      if (!w) return
      const org = await newOrg(w)
      const outcomes: boolean[] = []
      const writer = new DecisionWriter(sinkFor(w), 512, { batch: (_s, _ms, ok) => outcomes.push(ok) })
      t.after(() => writer.close())

      const before = Array.from({ length: 5 }, (_, i) => decisionRow(org.id, i, Date.now()))
      await Promise.all(before.map((r) => writer.record(r)))

      // One row violates a constraint (unknown org): the whole batch is one transaction.
      const bad = [...Array.from({ length: 10 }, (_, i) => decisionRow(org.id, 100 + i, Date.now())), decisionRow('no-such-org', 999, Date.now())]
      const settled = await Promise.allSettled(bad.map((r) => writer.record(r)))
      assert.deepEqual(settled.map((s) => s.status), bad.map(() => 'rejected'), 'every record of the failed batch rejects')
      for (const s of settled) {
        const err = (s as PromiseRejectedResult).reason as Error
        assert.ok(err instanceof Error)
        assert.equal(err.message.includes('no-such-org'), false, 'the error does not quote row values')
      }
      assert.equal(await decisionCount(w, bad.map((r) => r.id)), 0, 'none of the failed batch is committed')

      const after = Array.from({ length: 5 }, (_, i) => decisionRow(org.id, 200 + i, Date.now()))
      await Promise.all(after.map((r) => writer.record(r)))
      assert.equal(await decisionCount(w, [...before, ...after].map((r) => r.id)), 10, 'batches before and after are unaffected')
      assert.deepEqual(outcomes, [true, false, true])
    })

    test(`TRANSIT-4 DATA-2: org fingerprints and pseudonyms are keyed HMACs: stable in an org, different across orgs, not a bare SHA-256 [${dialect}]`, async (t) => {
      const w = await storageWorld(t, dialect)
      if (!w) return
      const a = await newOrg(w)
      const b = await newOrg(w)
      const prompt = 'What is 2+2?'
      const fa = await w.keyring.fingerprint(a.id, prompt)
      assert.match(fa, /^[A-Za-z0-9_-]{43}$/, '256-bit base64url')
      assert.equal(await w.keyring.fingerprint(a.id, prompt), fa, 'stable within an org')
      // A fresh keyring (another instance, empty cache) unwraps the same stored key.
      const fresh = new OrgKeyring(w.database.db, masterKeyFromHex(TEST_MASTER_KEY), w.clock)
      assert.equal(await fresh.fingerprint(a.id, prompt), fa, 'stable across instances')
      assert.notEqual(await w.keyring.fingerprint(b.id, prompt), fa, 'different in another org')
      assert.notEqual(await w.keyring.fingerprint(a.id, prompt + ' '), fa)
      const bare = createHash('sha256').update(prompt).digest()
      for (const form of [bare.toString('hex'), bare.toString('base64url'), bare.toString('base64'), sha256Hex(`prompt\0${prompt}`)]) assert.notEqual(fa, form, 'not a bare SHA-256')

      const pa = await w.keyring.pseudonym(a.id, 'user-1')
      assert.match(pa, /^[A-Za-z0-9_-]{22}$/, '128-bit base64url')
      assert.equal(await fresh.pseudonym(a.id, 'user-1'), pa)
      assert.notEqual(await w.keyring.pseudonym(b.id, 'user-1'), pa, 'not linkable across orgs')
      assert.notEqual(await w.keyring.pseudonym(a.id, 'user-2'), pa)
      assert.notEqual(pa, (await w.keyring.fingerprint(a.id, 'user-1')).slice(0, 22), 'actor and prompt HMACs are domain-separated')

      // The org key is stored only wrapped, and bound to its org: moving it to another org fails.
      const rows = await w.database.db.selectFrom('org_key').selectAll().execute()
      assert.ok(rows.every((r) => r.master_key_id === masterKeyFromHex(TEST_MASTER_KEY).id && r.wrapped.startsWith('v1.')))
      const fingerprintRows = rows.filter((r) => r.purpose === 'fingerprint')
      assert.deepEqual(fingerprintRows.map((r) => r.org_id).sort(), [a.id, b.id].sort(), 'one fingerprint key per org')
      const rawKeyA = await w.keyring.key(a.id)
      assert.equal(JSON.stringify(rows).includes(rawKeyA.toString('base64url')), false)
      assert.equal(JSON.stringify(rows).includes(rawKeyA.toString('hex')), false)
      const wrappedA = fingerprintRows.find((r) => r.org_id === a.id)!.wrapped
      await w.database.db.updateTable('org_key').set({ wrapped: wrappedA }).where('org_id', '=', b.id).where('purpose', '=', 'fingerprint').execute()
      await assert.rejects(new OrgKeyring(w.database.db, masterKeyFromHex(TEST_MASTER_KEY), w.clock).key(b.id), 'a wrapped key copied to another org does not unwrap')
    })

    test(`TRANSIT-4: org keys are unusable under another master key (unwrap fails) [${dialect}]`, async (t) => {
      const w = await storageWorld(t, dialect)
      if (!w) return
      const org = await newOrg(w)
      await w.keyring.fingerprint(org.id, 'hello')
      const other = new OrgKeyring(w.database.db, masterKeyFromHex(OTHER_MASTER_KEY), w.clock)
      await assert.rejects(other.key(org.id))
      await assert.rejects(other.fingerprint(org.id, 'hello'))
      await assert.rejects(other.pseudonym(org.id, 'user-1'))
    })
  })
}
