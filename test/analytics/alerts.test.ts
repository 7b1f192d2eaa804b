import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import { withAudit } from '../../src/audit/audit.ts'
import { auditPerson } from '../../src/identity/auth-events.ts'
import { ManualClock } from '../fakes/clock.ts'
import { orgWithKeys, startApp, type TestApp } from '../helpers/app.ts'
import { call, person } from '../api/world.ts'
import { people, seedDecisions, type Spec } from './seed.ts'

/**
 * AUDIT-4: anomaly alerts to an org's webhook — a local HTTP receiver on 127.0.0.1 — driven by
 * running the job directly under an injected clock (never by sleeping).
 */

interface Hit { readonly headers: IncomingHttpHeaders; readonly body: string; readonly path: string }

async function receiver(t: TestContext, status = 200, location?: string) {
  const hits: Hit[] = []
  const srv = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      hits.push({ headers: req.headers, body, path: req.url ?? '' })
      res.writeHead(status, location ? { location } : {}).end()
    })
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => srv.close(() => r())))
  return { hits, url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}` }
}

const ALERT_ENV = { TOLLGATE_ALERT_BLOCKS_PER_5MIN: '3', TOLLGATE_ALERT_SIGNIN_FAILURES_PER_5MIN: '2', TOLLGATE_ALERT_RATE_LIMITED_PER_5MIN: '2' }

/** HMAC over `<t>.<body>`, as a receiver verifies it. */
function verifies(secret: string, h: Hit): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(h.headers['x-tollgate-signature']))
  if (!m) return false
  return createHmac('sha256', secret).update(`${m[1]}.${h.body}`).digest('hex') === m[2]
}

async function spike(tg: TestApp, orgId: string, keys: { sandbox: string; production: string }, now: number) {
  const specs: Spec[] = []
  for (const p of people('b', 3)) specs.push({ person: p, environment: 'production', at: now - 60_000, outcome: 'blocked', status: 403 })
  for (const p of people('r', 2)) specs.push({ person: p, environment: 'production', at: now - 30_000, outcome: 'rejected', status: 429 })
  // Under the threshold for blocks on its own, and outside the window: never counted.
  specs.push({ person: 'old', environment: 'production', at: now - 20 * 60_000, outcome: 'blocked', status: 403 })
  const seeded = await seedDecisions(tg, orgId, keys, specs)
  // Failed SSO sign-ins to this org, audited as the sign-in route does.
  for (let i = 0; i < 2; i++) await withAudit(tg.deps.db.db, (trx) => auditPerson(trx, tg.deps.audit, tg.deps.keyring, { userId: null, action: 'authn_login_fail', outcome: 'failure', requestId: null, targetType: 'sign_in', targetId: 'idp_error', orgId }))
  return seeded
}

const alertsTotal = async (tg: TestApp, kind: string, outcome: string) => {
  const text = await (await fetch(`${tg.url}/metrics`)).text()
  const m = new RegExp(`^tollgate_alerts_total\\{kind="${kind}",outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)
  return m ? Number(m[1]) : 0
}

test('AUDIT-4: a spike of blocks, failed sign-ins and 429s alerts the webhook once per window, signed, with counts only — even with two instances on one PostgreSQL', async (t) => {
  const clock = new ManualClock(Date.UTC(2025, 2, 26, 12, 2))
  const a = await startApp(t, { postgres: true, clock, env: ALERT_ENV })
  if (!a) return
  const b = await startApp(t, { databaseUrl: a.config.storage.databaseUrl!.reveal(), clock, env: ALERT_ENV })
  if (!b) return
  const rx = await receiver(t)
  const o = await orgWithKeys(a.deps)
  const owner = await person(a, o.org.id, 'OWNER')

  const put = await call(a, owner, 'PUT', `/api/orgs/${o.org.id}/alerts/webhook`, { url: `${rx.url}/hook` })
  assert.equal(put.status, 200, put.text)
  const secret = put.json.secret as string
  assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/)

  // Nothing to report yet.
  assert.equal(await a.deps.alerts.run(), 0)
  const seeded = await spike(a, o.org.id, { sandbox: o.sandboxId, production: o.productionId }, clock.now())

  // Both instances run the job at once: each alert is sent by one of them only.
  await Promise.all([a.deps.alerts.run(), b.deps.alerts.run(), a.deps.alerts.run(), b.deps.alerts.run()])
  const kinds = rx.hits.map((h) => JSON.parse(h.body).kind).sort()
  assert.deepEqual(kinds, ['blocks', 'rate_limited', 'signin_failures'])
  // The same window: not sent again.
  clock.advance(60_000)
  await Promise.all([a.deps.alerts.run(), b.deps.alerts.run()])
  assert.equal(rx.hits.length, 3)

  for (const h of rx.hits) {
    assert.equal(h.path, '/hook')
    assert.equal(h.headers['content-type'], 'application/json')
    const body = JSON.parse(h.body)
    assert.deepEqual(Object.keys(body).sort(), ['count', 'kind', 'org', 'sent_at', 'threshold', 'type', 'window_end', 'window_seconds', 'window_start'])
    assert.equal(body.org, o.org.slug)
    assert.equal(body.window_seconds, 300)
    assert.equal(body.count, { blocks: 3, rate_limited: 2, signin_failures: 2 }[body.kind as string])
    assert.equal(body.threshold, { blocks: 3, rate_limited: 2, signin_failures: 2 }[body.kind as string])
    // The signature verifies with the secret shown once, and not with another.
    assert.ok(verifies(secret, h), 'signature verifies')
    assert.ok(!verifies(secret.slice(0, -2) + (secret.endsWith('AA') ? 'BB' : 'AA'), h), 'a wrong secret fails')
    // No person, key or request id travels (positive control: the same check sees one planted).
    for (const id of seeded.ids) assert.ok(!h.body.includes(id) && !JSON.stringify(h.headers).includes(id))
    assert.ok(JSON.stringify({ ...body, x: seeded.ids[0] }).includes(seeded.ids[0]!))
  }
  // tollgate_alerts_total counts each alert once, on the instance that sent it.
  for (const kind of ['blocks', 'rate_limited', 'signin_failures']) {
    assert.equal(await alertsTotal(a, kind, 'delivered') + await alertsTotal(b, kind, 'delivered'), 1, kind)
  }
  // Past the window with no new events: quiet.
  clock.advance(10 * 60_000)
  await Promise.all([a.deps.alerts.run(), b.deps.alerts.run()])
  assert.equal(rx.hits.length, 3)
})

test('AUDIT-4: an alert webhook that redirects is not followed and counts as failed; DELETE stops alerts', async (t) => {
  const clock = new ManualClock(Date.UTC(2025, 2, 26, 12, 2))
  const tg = await startApp(t, { clock, env: ALERT_ENV })
  if (!tg) return
  const target = await receiver(t)
  const rx = await receiver(t, 302, `${target.url}/elsewhere`)
  const o = await orgWithKeys(tg.deps)
  const owner = await person(tg, o.org.id, 'OWNER')
  assert.equal((await call(tg, owner, 'PUT', `/api/orgs/${o.org.id}/alerts/webhook`, { url: rx.url })).status, 200)
  await spike(tg, o.org.id, { sandbox: o.sandboxId, production: o.productionId }, clock.now())
  await tg.deps.alerts.run()
  assert.equal(rx.hits.length, 3)
  assert.equal(target.hits.length, 0, 'the redirect was not followed')
  assert.equal(await alertsTotal(tg, 'blocks', 'failed'), 1)
  const rows = await tg.deps.db.db.selectFrom('alert_sent').select(['kind', 'outcome']).where('org_id', '=', o.org.id).execute()
  assert.deepEqual(rows.map((r) => r.outcome), ['failed', 'failed', 'failed'])

  assert.equal((await call(tg, owner, 'DELETE', `/api/orgs/${o.org.id}/alerts/webhook`)).status, 200)
  clock.advance(5 * 60_000)
  await spike(tg, o.org.id, { sandbox: o.sandboxId, production: o.productionId }, clock.now())
  await tg.deps.alerts.run()
  assert.equal(rx.hits.length, 3, 'no webhook, no alert')
})

test('AUDIT-4: the webhook takes https (or http to loopback) only, shows its secret once, keeps it sealed, and every change is audited', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  const o = await orgWithKeys(tg.deps)
  const owner = await person(tg, o.org.id, 'OWNER')
  const analyst = await person(tg, o.org.id, 'ANALYST')
  const path = `/api/orgs/${o.org.id}/alerts/webhook`
  for (const url of ['http://hooks.example.com/x', 'ftp://127.0.0.1/x', 'https://user:pw@hooks.example.com/x', 'http://10.0.0.1/x']) {
    const r = await call(tg, owner, 'PUT', path, { url })
    assert.equal(r.status, 400, url)
    assert.equal(r.json.error.param, 'body.url')
  }
  assert.deepEqual((await call(tg, owner, 'GET', path)).json, { webhook: null })
  const first = await call(tg, owner, 'PUT', path, { url: 'https://hooks.example.com/tollgate/T0KEN' })
  assert.equal(first.status, 200, first.text)
  assert.match(first.json.secret, /^whsec_/)
  // Changing the URL keeps the secret (not shown again); rotating makes and shows a new one.
  const again = await call(tg, owner, 'PUT', path, { url: 'http://127.0.0.1:9/hook' })
  assert.equal(again.json.secret, null)
  const rotated = await call(tg, owner, 'PUT', path, { url: 'http://127.0.0.1:9/hook', rotate_secret: true })
  assert.match(rotated.json.secret, /^whsec_/)
  assert.notEqual(rotated.json.secret, first.json.secret)
  const view = await call(tg, owner, 'GET', path)
  assert.equal(view.json.webhook.url, 'http://127.0.0.1:9/hook')
  assert.ok(!view.text.includes(rotated.json.secret))
  // ANALYSTs read figures, not where alerts go.
  assert.equal((await call(tg, analyst, 'GET', path)).status, 403)
  // Stored sealed: neither the secret nor the URL is in the row (positive control: the row is read).
  const row = await tg.deps.db.db.selectFrom('alert_webhook').selectAll().where('org_id', '=', o.org.id).executeTakeFirstOrThrow()
  assert.ok(row.config_sealed.length > 40)
  for (const s of [rotated.json.secret, first.json.secret, '127.0.0.1', 'T0KEN']) assert.ok(!JSON.stringify(row).includes(s))
  assert.equal((await call(tg, owner, 'DELETE', path)).status, 200)
  assert.equal((await call(tg, owner, 'DELETE', path)).status, 404)
  const actions = (await tg.deps.db.db.selectFrom('audit_event').select('action').where('chain_id', '=', o.org.id).orderBy('seq').execute()).map((e) => e.action)
  assert.deepEqual(actions.filter((a) => a.startsWith('alert_webhook')), ['alert_webhook_set', 'alert_webhook_set', 'alert_webhook_set', 'alert_webhook_removed'])
})
