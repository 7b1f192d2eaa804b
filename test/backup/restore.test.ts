import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { verifyChains } from '../../src/audit/audit.ts'
import { buildStores } from '../../src/deps.ts'
import { silentLogger } from '../../src/observe/log.ts'
import { DEFAULT_POLICY } from '../../src/policy/default-policy.ts'
import { orgWithKeys, promotePolicy, startApp, TEST_MASTER_KEY, testConfig } from '../helpers/app.ts'
import { BACKENDS, recreatePostgres, tableCounts, tempDir, TEST_BACKUP_KEY, tollgate } from './world.ts'

const ROTATED_MASTER_KEY = 'd'.repeat(64)

for (const backend of BACKENDS) {
  test(`BACKUP-2: restore drill with the real tollgate command — seed, back up while the server runs, destroy, restore: every table's row count and every audit chain match; an old master key still opens the old backup [${backend}]`, async (t) => {
    const backups = tempDir(t, 'drill-backups')
    const tg = await startApp(t, { postgres: backend === 'postgres', env: { TOLLGATE_BACKUP_KEY: TEST_BACKUP_KEY, TOLLGATE_BACKUP_DIR: backups } })
    if (!tg) return
    // Seed: orgs, keys, a promoted policy, decisions (AI requests through the gateway), audit events.
    const a = await orgWithKeys(tg.deps, 'drill-a')
    const b = await orgWithKeys(tg.deps, 'drill-b')
    await promotePolicy(tg.deps, b.org.id, DEFAULT_POLICY)
    for (const key of [a.sandbox, b.sandbox, a.sandbox]) {
      const res = await fetch(`${tg.url}/v1/intercept`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ model: 'local-echo', prompt: 'hello there' }) })
      assert.equal(res.status, 200)
      await res.arrayBuffer()
    }
    await tg.deps.decisions.drain()
    await tg.deps.keys.revoke({ id: a.productionId, actor: { type: 'operator', id: null } })
    const counts = await tableCounts(tg.deps.db.db, backend)
    assert.ok(counts['decision']! >= 3 && counts['policy']! >= 1 && counts['api_key']! >= 4 && counts['audit_event']! >= 6, JSON.stringify(counts))
    const pseudonym = await tg.deps.keyring.pseudonym(a.org.id, 'someone')

    const env: Record<string, string> = {
      TOLLGATE_DATA_DIR: tg.dataDir, TOLLGATE_MASTER_KEY: TEST_MASTER_KEY, TOLLGATE_BACKUP_KEY: TEST_BACKUP_KEY, TOLLGATE_BACKUP_DIR: backups,
      ...(tg.config.storage.databaseUrl ? { TOLLGATE_DATABASE_URL: tg.config.storage.databaseUrl.reveal() } : {}),
    }
    // The backup, by the operator's command, while the server is up.
    const made = await tollgate(['backup', '--json'], env, tg.dataDir)
    assert.equal(made.code, 0, made.err)
    const backup = JSON.parse(made.out) as { name: string; location: string; size: number; key_id: string }
    assert.equal(backup.location, join(backups, backup.name))
    assert.ok(!made.out.includes(TEST_BACKUP_KEY), 'the key is never printed')
    await tg.close()

    // Destroy.
    if (backend === 'sqlite') for (const f of ['tollgate.db', 'tollgate.db-wal', 'tollgate.db-shm']) rmSync(join(tg.dataDir, f), { force: true })
    else await recreatePostgres(env['TOLLGATE_DATABASE_URL']!)

    // Restore by name from the configured folder, then check everything.
    const restored = await tollgate(['restore', backup.name, '--json'], env, tg.dataDir)
    assert.equal(restored.code, 0, restored.err)
    const report = JSON.parse(restored.out) as { dialect: string; key_id: string; master_key_matches: boolean; chains: { chain: string; ok: boolean }[] }
    assert.equal(report.dialect, backend)
    assert.equal(report.master_key_matches, true)
    assert.ok(report.chains.length >= 2 && report.chains.every((c) => c.ok))
    const again = await tollgate(['restore', backup.name], env, tg.dataDir)
    assert.equal(again.code, 1, 'a second restore into the now non-empty database is refused')
    assert.match(again.err, /not empty/)
    const verified = await tollgate(['audit', 'verify', '--json'], env, tg.dataDir)
    assert.equal(verified.code, 0, verified.out + verified.err)

    const stores = await buildStores(testConfig(env), { log: silentLogger })
    try {
      assert.deepEqual(await tableCounts(stores.db.db, backend), { ...counts, audit_event: counts['audit_event']! + 1 }, "every table's rows, plus the restore's own audit entry")
      assert.deepEqual((await verifyChains(stores.db.db)).filter((c) => c.broken), [])
      assert.equal(await stores.keyring.pseudonym(a.org.id, 'someone'), pseudonym, 'the org keys open with the master key')
      const restoredEvent = await stores.db.db.selectFrom('audit_event').selectAll().where('action', '=', 'backup_restored').execute()
      assert.equal(restoredEvent.length, 1)
      assert.equal(restoredEvent[0]!.actor_type, 'operator')
    } finally {
      await stores.close()
    }

    // CRYPTO-2: the instance moved on to another master key; the old backup still restores
    // (the backup key is its own), the command says which master key its org keys need, and
    // with that old master key they open.
    const moved = tempDir(t, 'drill-rotated')
    const rotatedEnv: Record<string, string> = { ...env, TOLLGATE_DATA_DIR: moved, TOLLGATE_MASTER_KEY: ROTATED_MASTER_KEY }
    if (backend === 'postgres') await recreatePostgres(env['TOLLGATE_DATABASE_URL']!)
    const old = await tollgate(['restore', join(backups, backup.name), '--json'], rotatedEnv, moved)
    assert.equal(old.code, 0, old.err)
    assert.equal((JSON.parse(old.out) as { master_key_matches: boolean }).master_key_matches, false, 'the report says the org keys need the old master key')
    const withNew = await buildStores(testConfig(rotatedEnv), { log: silentLogger })
    await assert.rejects(withNew.keyring.pseudonym(a.org.id, 'someone'), 'the new master key does not open the old keys (they need re-wrapping)')
    await withNew.close()
    const withOld = await buildStores(testConfig({ ...rotatedEnv, TOLLGATE_MASTER_KEY: TEST_MASTER_KEY }), { log: silentLogger })
    try {
      assert.equal(await withOld.keyring.pseudonym(a.org.id, 'someone'), pseudonym, 'old backup + old master key: restorable')
    } finally {
      await withOld.close()
    }
  })
}

test('BACKUP-2: tollgate restore names an unknown key id, takes older keys with --key-file, and refuses a tampered file without touching the database', async (t) => {
  const dir = tempDir(t, 'restore-cli')
  const env = { TOLLGATE_DATA_DIR: join(dir, 'a'), TOLLGATE_MASTER_KEY: TEST_MASTER_KEY, TOLLGATE_BACKUP_KEY: TEST_BACKUP_KEY }
  assert.equal((await tollgate(['org', 'create', 'acme'], env, dir)).code, 0)
  const made = JSON.parse((await tollgate(['backup', '--json'], env, dir)).out) as { name: string; location: string; key_id: string }
  // Another instance whose backup key was rotated since: the id is named, and --key-file opens it.
  const other = { ...env, TOLLGATE_DATA_DIR: join(dir, 'b'), TOLLGATE_BACKUP_KEY: 'e'.repeat(64) }
  const unknown = await tollgate(['restore', made.location], other, dir)
  assert.equal(unknown.code, 1)
  assert.ok(unknown.err.includes(made.key_id), unknown.err)
  assert.ok(!unknown.err.includes(TEST_BACKUP_KEY))
  const { writeFileSync, readFileSync, existsSync } = await import('node:fs')
  const bytes = readFileSync(made.location)
  bytes[bytes.length - 40] = bytes[bytes.length - 40]! ^ 0x80
  writeFileSync(join(dir, 'tampered.tgbk'), bytes)
  writeFileSync(join(dir, 'old.key'), `${TEST_BACKUP_KEY}\n`, { mode: 0o600 })
  const tampered = await tollgate(['restore', join(dir, 'tampered.tgbk'), '--key-file', join(dir, 'old.key')], other, dir)
  assert.equal(tampered.code, 1)
  assert.match(tampered.err, /failed authentication/)
  assert.equal(existsSync(join(dir, 'b', 'tollgate.db')), false, 'nothing was restored')
  const ok = await tollgate(['restore', made.location, '--key-file', join(dir, 'old.key')], other, dir)
  assert.equal(ok.code, 0, ok.err)
  assert.match((await tollgate(['org', 'list'], other, dir)).out, /^acme\t/m)
})
