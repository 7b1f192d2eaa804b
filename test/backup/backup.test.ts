import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { test } from 'node:test'
import { withAudit, INSTANCE_CHAIN } from '../../src/audit/audit.ts'
import { DAY_MS, type BackupResult } from '../../src/backup/backup.ts'
import { parseCron, type Cron } from '../../src/backup/cron.ts'
import { backupName, openDestination, type DestinationSettings } from '../../src/backup/destination.ts'
import { BackupError, backupKeyFromHex, decodeHeader, MAGIC } from '../../src/backup/format.ts'
import { restoreBackup } from '../../src/backup/restore.ts'
import { backupJob } from '../../src/backup/schedule.ts'
import { targetHasTables } from '../../src/backup/snapshot.ts'
import { buildStores } from '../../src/deps.ts'
import { Jobs } from '../../src/ops/jobs.ts'
import { silentLogger } from '../../src/observe/log.ts'
import { orgWithKeys, testConfig } from '../helpers/app.ts'
import { BACKENDS, emptyTarget, KEY, startS3, tempDir, world } from './world.ts'

const OPERATOR = { type: 'operator' as const, id: null }

async function fetchBytes(dest: DestinationSettings, name: string, dir: string): Promise<Buffer> {
  const d = openDestination(dest)
  try {
    const f = join(dir, `${name}.fetched`)
    await d.fetch(name, f)
    return readFileSync(f)
  } finally {
    d.close()
  }
}

for (const backend of BACKENDS) {
  test(`BACKUP-1: a backup to a folder and to an S3 bucket (s3rver) is AES-256-GCM with the header first, a fresh nonce each time, no plaintext, and restores [${backend}]`, async (t) => {
    const w = await world(t, backend)
    if (!w) return
    await orgWithKeys(w.stores, 'acme-backup')
    const scratch = tempDir(t, 'backup-scratch')
    const folder: DestinationSettings = { kind: 'dir', dir: join(scratch, 'folder') }
    const s3 = await startS3(t)
    for (const dest of [folder, s3.settings()]) {
      const a: BackupResult = await w.backups(dest).run(OPERATOR)
      const b: BackupResult = await w.backups(dest).run(OPERATOR)
      assert.equal(a.keyId, KEY.id)
      assert.match(a.name, /^tollgate-\d{8}T\d{6}Z-[0-9a-f]{8}\.tgbk$/)
      const fa: Buffer = await fetchBytes(dest, a.name, scratch)
      const fb: Buffer = await fetchBytes(dest, b.name, scratch)
      assert.equal(fa.length, a.bytes)
      assert.ok(fa.subarray(0, MAGIC.length).equals(MAGIC), 'the file starts with the magic')
      const ha = decodeHeader(fa).header
      const hb = decodeHeader(fb).header
      assert.equal(ha.alg, 'AES-256-GCM')
      assert.equal(ha.key_id, KEY.id)
      assert.equal(ha.dialect, backend)
      assert.match(ha.schema, /^\d{4}-/)
      assert.match(ha.nonce, /^[0-9a-f]{24}$/)
      assert.notEqual(ha.nonce, hb.nonce, 'a fresh nonce per backup')
      assert.ok(!fa.subarray(decodeHeader(fa).length).equals(fb.subarray(decodeHeader(fb).length)), 'two backups of the same data differ')
      assert.ok(!fa.includes(Buffer.from(TEST_KEY_HEX())), 'the key is not in the backup')
      for (const word of ['audit_event', 'org_key', 'acme-backup', 'CREATE TABLE', 'SQLite format']) assert.ok(!fa.includes(Buffer.from(word)), `no plaintext "${word}" in the encrypted file`)
      // It restores into an empty database.
      const f = join(scratch, `${a.name}.restore-me`)
      writeFileSync(f, fa)
      const target = await emptyTarget(t, backend)
      const r = await restoreBackup({ file: f, keys: [KEY], target, workDir: scratch, force: false, clock: w.stores.clock, actor: OPERATOR, name: a.name })
      assert.ok(r.chains.length > 0 && r.chains.every((c) => !c.broken))
    }
    const objects = await openDestination(s3.settings()).list()
    assert.equal(objects.length, 2, 'two objects in the bucket')
    assert.equal(readdirSync(join(scratch, 'folder')).length, 2, 'two files in the folder, no partial files left')
    // Each run is audited as the operator's, in the instance chain.
    const audited = await w.stores.db.db.selectFrom('audit_event').selectAll().where('action', '=', 'backup_created').execute()
    assert.equal(audited.length, 4)
    assert.ok(audited.every((e) => e.chain_id === INSTANCE_CHAIN && e.actor_type === 'operator' && e.outcome === 'success'))
  })

  test(`BACKUP-1: a backup with one byte changed anywhere, truncated, or under another key is refused and the target is left untouched [${backend}]`, async (t) => {
    const w = await world(t, backend)
    if (!w) return
    await orgWithKeys(w.stores)
    const scratch = tempDir(t, 'backup-tamper')
    const r = await w.backups({ kind: 'dir', dir: scratch }).run(OPERATOR)
    const good = readFileSync(join(scratch, r.name))
    const headerLength = decodeHeader(good).length
    const target = await emptyTarget(t, backend)
    const positions = [0, 9, 20, headerLength - 2, headerLength, headerLength + 1, Math.floor(good.length / 3), Math.floor(good.length / 2), good.length - 17, good.length - 16, good.length - 1]
    const cases: [string, Buffer][] = positions.map((p) => {
      const b = Buffer.from(good)
      b[p] = b[p]! ^ 0x01
      return [`byte ${p} flipped`, b]
    })
    cases.push(['truncated by one byte', good.subarray(0, good.length - 1)], ['truncated to half', good.subarray(0, good.length >> 1)], ['header only', good.subarray(0, headerLength)])
    for (const [label, bytes] of cases) {
      const f = join(scratch, `case-${cases.findIndex((c) => c[0] === label)}.tgbk`)
      writeFileSync(f, bytes)
      await assert.rejects(restoreBackup({ file: f, keys: [KEY], target, workDir: scratch, force: true, clock: w.stores.clock, actor: OPERATOR, name: 'x' }),
        (e: unknown) => e instanceof BackupError && ['tampered', 'not_a_backup', 'unsupported_version', 'unknown_key', 'wrong_dialect'].includes(e.problem), label)
      assert.equal(await targetHasTables(target), false, `${label}: nothing was restored`)
    }
    assert.deepEqual(readdirSync(scratch).filter((n) => n.startsWith('.tollgate-restore')), [], 'no decrypted leftovers')
    // Another key: refused by key id, and the message names the id it needs (never a key).
    const other = backupKeyFromHex('c'.repeat(64))
    const f = join(scratch, 'good.tgbk')
    writeFileSync(f, good)
    await assert.rejects(restoreBackup({ file: f, keys: [other], target, workDir: scratch, force: false, clock: w.stores.clock, actor: OPERATOR, name: 'x' }),
      (e: unknown) => e instanceof BackupError && e.problem === 'unknown_key' && e.message.includes(KEY.id))
    // A key claiming the right id but wrong bytes cannot pass the tag.
    await assert.rejects(restoreBackup({ file: f, keys: [{ id: KEY.id, key: other.key }], target, workDir: scratch, force: false, clock: w.stores.clock, actor: OPERATOR, name: 'x' }),
      (e: unknown) => e instanceof BackupError && e.problem === 'tampered')
    assert.equal(await targetHasTables(target), false)
    // Several candidate keys: the one named by id is picked.
    await restoreBackup({ file: f, keys: [other, KEY], target, workDir: scratch, force: false, clock: w.stores.clock, actor: OPERATOR, name: 'x' })
    assert.equal(await targetHasTables(target), true)
    // Now the target is not empty: refused without --force.
    await assert.rejects(restoreBackup({ file: f, keys: [KEY], target, workDir: scratch, force: false, clock: w.stores.clock, actor: OPERATOR, name: 'x' }),
      (e: unknown) => e instanceof BackupError && e.problem === 'not_empty')
  })

  test(`BACKUP-1: retention deletes exactly the backups older than 30 days — folder and bucket — and nothing when the new backup failed [${backend}]`, async (t) => {
    let now = Date.UTC(2026, 5, 15, 12, 0, 0)
    const clock = { now: () => now }
    const w = await world(t, backend, { clock })
    if (!w) return
    const s3 = await startS3(t)
    const folder: DestinationSettings = { kind: 'dir', dir: tempDir(t, 'backup-retention') }
    for (const dest of [folder, s3.settings('r/')]) {
      // 41 daily backups aged 0-40 days (a name carries its time), plus a file that is not ours.
      const d = openDestination(dest)
      const seeded: string[] = []
      for (let age = 0; age <= 40; age++) {
        const name = backupName(now - age * DAY_MS)
        seeded.push(name)
        await d.write(name, Readable.from([Buffer.from(`old backup ${age}`)]))
      }
      if (dest.kind === 'dir') writeFileSync(join(dest.dir, 'notes.txt'), 'not a backup')
      // A run that fails for real deletes nothing.
      const failing = w.backups(dest, { database: backend === 'sqlite' ? { dialect: 'sqlite', path: join(w.dataDir, 'missing.db') } : { dialect: 'postgres', url: w.target.dialect === 'postgres' ? w.target.url.replace(/\/[^/]+$/, '/no_such_database') : '' } })
      await assert.rejects(failing.run(OPERATOR))
      assert.equal((await d.list()).length, 41, 'a failed run deleted nothing')
      // A good run: exactly the 10 older than 30 days go; the new one and the one exactly 30 days old stay.
      const r = await w.backups(dest, { clock }).run(OPERATOR)
      assert.equal(r.deleted.length, 10)
      const left = await d.list()
      assert.equal(left.length, 41 - 10 + 1)
      assert.ok(left.includes(r.name), 'the new backup is kept')
      assert.deepEqual([...r.deleted].sort(), seeded.slice(31).sort(), 'the deleted ones are those aged 31-40 days')
      if (dest.kind === 'dir') assert.ok(existsSync(join(dest.dir, 'notes.txt')), 'files that are not backups are never touched')
      d.close()
    }
    // An unreachable bucket: the run fails and reports it.
    const unreachable: DestinationSettings = { ...s3.settings(), endpoint: 'http://127.0.0.1:9' } as DestinationSettings
    await assert.rejects(w.backups(unreachable).run(OPERATOR))
    const failures = await w.stores.db.db.selectFrom('audit_event').selectAll().where('action', '=', 'backup_created').where('outcome', '=', 'failure').execute()
    assert.equal(failures.length, 3, 'every failed run is audited as a failure')
  })

  test(`BACKUP-1: the snapshot is consistent while writes go on — the restored audit chains verify [${backend}]`, async (t) => {
    const w = await world(t, backend)
    if (!w) return
    const { org } = await orgWithKeys(w.stores)
    const scratch = tempDir(t, 'backup-live')
    // A second connection appends to the org's chain the whole time the backup runs.
    const writer = await buildStores(testConfig(w.env), { log: silentLogger })
    t.after(() => writer.close())
    let stop = false
    let appended = 0
    const loop = (async () => {
      while (!stop) {
        await withAudit(writer.db.db, (trx) => writer.audit.append(trx, { chainId: org.id, actorType: 'system', actorId: null, action: 'test_write', outcome: 'success' }))
        appended++
        if (backend === 'sqlite') await new Promise((r) => setImmediate(r))
      }
    })()
    while (appended < 20) await new Promise((r) => setTimeout(r, 5))
    const before = appended
    const r = await w.backups({ kind: 'dir', dir: scratch }).run(OPERATOR)
    const during = appended - before
    stop = true
    await loop
    t.diagnostic(`${during} audit entries appended while the backup ran; ${appended} in all`)
    assert.ok(during > 0, 'the writer really wrote while the backup ran')
    const target = await emptyTarget(t, backend)
    const restored = await restoreBackup({ file: join(scratch, r.name), keys: [KEY], target, workDir: scratch, force: false, clock: w.stores.clock, actor: OPERATOR, name: r.name })
    assert.deepEqual(restored.chains.filter((c) => c.broken), [], 'every chain of the copy verifies')
    const orgChain = restored.chains.find((c) => c.chainId === org.id)!
    assert.ok(orgChain.entries >= before, 'the copy holds what was written before the backup started')
    assert.ok(orgChain.entries <= appended + 10, 'and no more than was ever written')
  })

  test(`BACKUP-1: TOLLGATE_BACKUP_CRON — one slot runs once with two job runners on the same database, and not again in that minute [${backend}]`, async (t) => {
    let now = Date.UTC(2026, 0, 1, 2, 59, 50)
    const clock = { now: () => now }
    const w = await world(t, backend, { clock })
    if (!w) return
    const other = await buildStores(testConfig(w.env), { log: silentLogger, clock })
    t.after(() => other.close())
    const dir = tempDir(t, 'backup-cron')
    const cron = parseCron('0 3 * * *') as Cron
    const runners = [w.stores, other].map((s) => {
      const b = w.backups({ kind: 'dir', dir }, { clock })
      return new Jobs([backupJob(cron, s.db.db, clock, () => b.run({ type: 'system', id: null }))], silentLogger)
    })
    const runAll = async () => (await Promise.all(runners.map((j) => j.runAll()))).reduce((n, r) => n + (r['backup'] ?? 0), 0)
    assert.equal(await runAll(), 0, 'not yet 03:00')
    now = Date.UTC(2026, 0, 1, 3, 0, 5)
    assert.equal(await runAll(), 1, 'exactly one runner took the 03:00 slot')
    now += 20_000
    assert.equal(await runAll(), 0, 'the slot does not run twice')
    assert.equal(readdirSync(dir).length, 1, 'one backup was written')
    now = Date.UTC(2026, 0, 2, 3, 0, 1)
    assert.equal(await runAll(), 1, 'the next day\'s slot runs once')
    assert.equal(readdirSync(dir).length, 2)
    const rows = await w.stores.db.db.selectFrom('backup_slot').selectAll().orderBy('slot_at').execute()
    assert.deepEqual(rows.map((r) => r.slot_at), [Date.UTC(2026, 0, 1, 3, 0), Date.UTC(2026, 0, 2, 3, 0)])
  })
}

function TEST_KEY_HEX(): string {
  return KEY.key.toString('hex')
}
