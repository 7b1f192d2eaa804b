import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { decryptFile } from '../../src/backup/format.ts'
import { call, person, signIn } from '../api/world.ts'
import { ManualClock } from '../fakes/clock.ts'
import { startApp } from '../helpers/app.ts'
import { tablesHolding } from './dump.ts'

/**
 * RIGHTS-2 T104/T105 (D13): after an account is deleted, its email leaves the live database at
 * once and the backups within their retention — 30 days after the deletion, no live row and no
 * backup holds it. Daily backups, an injected clock; every backup left is decrypted and scanned,
 * after proving the scan finds the email in a backup taken before the deletion.
 */
const DAY = 86_400_000

test('RIGHTS-2 T104 T105: 30 days after an account deletion, neither a live row nor any backup holds its email', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 5, 3, 0))
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-age-out-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const backupsDir = join(dir, 'backups')
  const tg = await startApp(t, { clock, env: { TOLLGATE_BACKUP_DIR: backupsDir, TOLLGATE_BACKUP_RETENTION_DAYS: '30' } })
  if (!tg) return
  const backups = tg.deps.backups
  assert.ok(backups, 'backups are on')
  const orgId = (await tg.deps.orgs.create('age-out', { type: 'operator', id: null }))!.id
  await person(tg, orgId, 'OWNER') // the org keeps an owner
  const me = await person(tg, orgId, 'MEMBER')

  const holding = async (needle: string) => {
    const found: string[] = []
    for (const name of readdirSync(backupsDir).filter((n) => n.endsWith('.tgbk'))) {
      const plain = join(dir, `plain-${name}`)
      await decryptFile(join(backupsDir, name), plain, [backups.settings.key])
      if (readFileSync(plain).includes(Buffer.from(needle))) found.push(name)
      rmSync(plain)
    }
    return found
  }

  // Daily backups before the deletion: they hold the email (the positive control).
  for (let d = 0; d < 3; d++) {
    await backups.run({ type: 'system', id: null })
    clock.advance(DAY)
  }
  assert.equal((await holding(me.email)).length, 3, 'the scan finds the email in the backups taken before the deletion')
  assert.deepEqual(await tablesHolding(tg, [me.email]), ['user'])

  const fresh = await signIn(tg, me)
  const deleted = await call(tg, fresh, 'DELETE', '/api/account')
  assert.equal(deleted.status, 204, deleted.text)
  assert.deepEqual(await tablesHolding(tg, [me.email]), [], 'the live database holds it no more, at once')

  // Daily backups after the deletion, until 30 days have passed since it.
  for (let d = 1; d <= 30; d++) {
    clock.advance(DAY)
    await backups.run({ type: 'system', id: null })
    const left = await holding(me.email)
    if (d < 28) assert.ok(left.length > 0, `day ${d}: older backups still hold it (they age out under the retention)`)
  }
  assert.deepEqual(await holding(me.email), [], '30 days after the deletion no backup holds the email')
  assert.ok(readdirSync(backupsDir).filter((n) => n.endsWith('.tgbk')).length >= 29, 'the backups of the last 30 days are all there')
})
