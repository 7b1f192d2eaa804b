import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { test, type TestContext } from 'node:test'
import { withAudit } from '../../src/audit/audit.ts'
import { auditPerson } from '../../src/identity/auth-events.ts'
import { isPublicAddress } from '../../src/analytics/outbound.ts'
import { call, person } from '../api/world.ts'
import { ManualClock } from '../fakes/clock.ts'
import { orgWithKeys, startApp } from '../helpers/app.ts'

/**
 * AUDIT-4 (SSRF): an org admin chooses the alert webhook's URL, so an https webhook connects only
 * to public addresses unless the operator allows private ones (TOLLGATE_ALERT_WEBHOOK_PRIVATE).
 * A name is checked as the connection is made (DNS rebinding gains nothing), an IP literal
 * before. The listener counts TCP connections: refused means no connection at all.
 */

test('AUDIT-4: the address classes a webhook may and may not reach', () => {
  for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.9', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', 'not-an-ip']) {
    assert.equal(isPublicAddress(a), false, a)
  }
  for (const a of ['8.8.8.8', '1.1.1.1', '93.184.216.34', '2606:4700:4700::1111', '::ffff:8.8.8.8']) assert.equal(isPublicAddress(a), true, a)
})

async function tcpListener(t: TestContext) {
  const sockets: Socket[] = []
  const srv = createTcpServer((s) => {
    sockets.push(s)
    s.destroy() // no TLS here: the handshake fails; what counts is whether a connection was made
  })
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  t.after(() => srv.close())
  return { port: (srv.address() as AddressInfo).port, connections: () => sockets.length }
}

async function alertOnce(t: TestContext, env: Record<string, string>, url: (port: number) => string) {
  const clock = new ManualClock(Date.UTC(2025, 2, 26, 12, 2))
  const tg = await startApp(t, { clock, env: { TOLLGATE_ALERT_SIGNIN_FAILURES_PER_5MIN: '1', ...env } })
  if (!tg) return undefined
  const listener = await tcpListener(t)
  const o = await orgWithKeys(tg.deps)
  const owner = await person(tg, o.org.id, 'OWNER')
  const set = await call(tg, owner, 'PUT', `/api/orgs/${o.org.id}/alerts/webhook`, { url: url(listener.port) })
  assert.equal(set.status, 200, set.text)
  await withAudit(tg.deps.db.db, (trx) => auditPerson(trx, tg.deps.audit, tg.deps.keyring, { userId: null, action: 'authn_login_fail', outcome: 'failure', requestId: null, targetType: 'sign_in', targetId: 'idp_error', orgId: o.org.id }))
  await tg.deps.alerts.run()
  const rows = await tg.deps.db.db.selectFrom('alert_sent').select('outcome').where('org_id', '=', o.org.id).execute()
  return { connections: listener.connections(), outcomes: rows.map((r) => r.outcome) }
}

test('AUDIT-4: an https webhook aimed at this host (a name or an IP literal) fails without connecting; with TOLLGATE_ALERT_WEBHOOK_PRIVATE=allow it connects', async (t) => {
  for (const url of [(p: number) => `https://localhost:${p}/hook`, (p: number) => `https://127.0.0.1:${p}/hook`, (p: number) => `https://[::ffff:127.0.0.1]:${p}/hook`]) {
    const r = await alertOnce(t, {}, url)
    if (!r) return
    assert.deepEqual(r.outcomes, ['failed'], url(0))
    assert.equal(r.connections, 0, `no connection was made for ${url(0)}`)
  }
  // Positive control: the operator allows private receivers — the same URL now connects (the TLS
  // handshake with a plain TCP listener then fails, so the delivery still counts as failed).
  const allowed = await alertOnce(t, { TOLLGATE_ALERT_WEBHOOK_PRIVATE: 'allow' }, (p) => `https://localhost:${p}/hook`)
  if (!allowed) return
  assert.ok(allowed.connections >= 1, 'with allow, the webhook connects')
  assert.deepEqual(allowed.outcomes, ['failed'])
})
