import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { test } from 'node:test'
import { INSTANCE_CHAIN } from '../../src/audit/audit.ts'
import { startApp } from '../helpers/app.ts'
import { KEY, tempDir, TEST_BACKUP_KEY } from './world.ts'

for (const backend of ['sqlite', 'postgres'] as const) {
  test(`BACKUP-1: POST /ops/backup behind the operator secret takes a backup now and answers 201 with its name, size and key id (never the key), audited [${backend}]`, async (t) => {
    const secret = randomBytes(32).toString('hex')
    const dir = tempDir(t, 'ops-backup')
    const tg = await startApp(t, { postgres: backend === 'postgres', env: { TOLLGATE_OPS_SECRET: secret, TOLLGATE_BACKUP_KEY: TEST_BACKUP_KEY, TOLLGATE_BACKUP_DIR: dir } })
    if (!tg) return
    const call = (value?: string) => fetch(`${tg.url}/ops/backup`, { method: 'POST', headers: value === undefined ? {} : { 'x-backup-secret': value } })
    const refused = await call('wrong')
    assert.equal(refused.status, 401)
    assert.deepEqual(readdirSync(dir), [], 'no backup without the secret')
    const res = await call(secret)
    assert.equal(res.status, 201)
    const text = await res.text()
    const body = JSON.parse(text) as { name: string; size: number; key_id: string; created_at: number; deleted: number }
    assert.deepEqual(Object.keys(body).sort(), ['created_at', 'deleted', 'key_id', 'name', 'size'])
    assert.equal(body.key_id, KEY.id)
    assert.deepEqual(readdirSync(dir), [body.name])
    assert.ok(body.size > 0)
    assert.ok(!text.includes(TEST_BACKUP_KEY), 'the key is not in the answer')
    const events = await tg.deps.db.db.selectFrom('audit_event').selectAll().where('chain_id', '=', INSTANCE_CHAIN).where('action', 'in', ['ops_backup', 'backup_created']).orderBy('seq').execute()
    assert.deepEqual(events.map((e) => [e.action, e.outcome, e.actor_type]), [['ops_backup', 'failure', 'operator'], ['ops_backup', 'success', 'operator'], ['backup_created', 'success', 'operator']])
    assert.equal(events[2]!.target_id, body.name)
    assert.equal(events[2]!.request_id, res.headers.get('x-request-id'))
  })
}

test('BACKUP-1: in production mode without TOLLGATE_BACKUP_KEY, POST /ops/backup answers 503 backup_unavailable', async (t) => {
  const secret = randomBytes(32).toString('hex')
  const tg = await startApp(t, { env: { TOLLGATE_OPS_SECRET: secret, TOLLGATE_MODE: 'production', TOLLGATE_SMTP_URL: 'smtp://127.0.0.1:1' } })
  if (!tg) return
  const res = await fetch(`${tg.url}/ops/backup`, { method: 'POST', headers: { 'x-backup-secret': secret } })
  assert.equal(res.status, 503)
  assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'backup_unavailable')
})
