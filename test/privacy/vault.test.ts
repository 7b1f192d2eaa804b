import assert from 'node:assert/strict'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { withAudit } from '../../src/audit/audit.ts'
import { ArtifactStore } from '../../src/artifacts/artifacts.ts'
import { restoreBackup } from '../../src/backup/restore.ts'
import { keyVaultCheck, type DoctorHost } from '../../src/cli/doctor.ts'
import { systemClock } from '../../src/core/clock.ts'
import { buildStores } from '../../src/deps.ts'
import { silentLogger } from '../../src/observe/log.ts'
import { OrgKeyDestroyed } from '../../src/privacy/org-keys.ts'
import { FileKeyVault, KekMissing } from '../../src/privacy/vault.ts'
import { OrgPurge } from '../../src/rights/purge.ts'
import { call, person } from '../api/world.ts'
import { artifactOf } from '../artifacts/seed.ts'
import { emptyTarget, KEY, tempDir, TEST_BACKUP_KEY, type Backend } from '../backup/world.ts'
import { DIALECTS, OPERATOR, storageWorld, storesOn, uniqueSlug } from '../contract/storage-world.ts'
import { orgWithKeys, startApp, testConfig, type TestApp } from '../helpers/app.ts'
import { aiCall } from '../keys/helpers.ts'

/**
 * D13, RIGHTS-2, RIGHTS-3: with a key vault (TOLLGATE_KEY_VAULT_DIR) every org key is sealed under
 * its org's key-encryption key, kept outside the database and its backups, before it is wrapped
 * under the master key. Terminating the org deletes the KEK, so a backup taken before the
 * termination, restored with the same master key and vault, no longer opens the org's keys: its
 * artifacts, pseudonyms and fingerprints are gone while every other org restores fully. Without a
 * vault the same backup still opens them — the documented limit.
 */

const kekFiles = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => !f.startsWith('.')) : [])

test('D13: FileKeyVault — one 0600 KEK file per org in a 0700 directory, bound to its org, never created by open, refused once destroyed', async (t) => {
  const dir = join(tempDir(t, 'vault'), 'keks')
  const vault = new FileKeyVault(dir)
  const secret = Buffer.from('an org key of 32 bytes, exactly!')
  await assert.rejects(vault.open('orgA', 'v1.x.y.z'), KekMissing, 'open never creates a KEK')
  assert.equal(existsSync(dir), false)
  const sealed = await vault.seal('orgA', secret)
  assert.ok(!sealed.includes(secret.toString('base64url')) && !sealed.includes(secret.toString('hex')))
  assert.equal(statSync(dir).mode & 0o777, 0o700)
  assert.deepEqual(kekFiles(dir), ['orgA.kek'])
  assert.equal(statSync(join(dir, 'orgA.kek')).mode & 0o777, 0o600)
  assert.equal(statSync(join(dir, 'orgA.kek')).size, 32)
  assert.deepEqual(await vault.open('orgA', sealed), secret)
  assert.notEqual(await vault.seal('orgA', secret), sealed, 'a fresh nonce each time')
  // Bound to its org: another org's KEK (or the id alone) does not open it.
  await vault.seal('orgB', secret)
  await assert.rejects(vault.open('orgB', sealed))
  await assert.rejects(vault.seal('../escape', secret), /invalid org id/)
  await vault.destroy('orgA')
  await vault.destroy('orgA')
  assert.deepEqual(kekFiles(dir), ['orgB.kek'])
  await assert.rejects(vault.open('orgA', sealed), KekMissing)
})

for (const dialect of DIALECTS) {
  test(`D13: two keyrings creating the same org's KEK and keys at once end with one KEK, and both open the same key [${dialect}]`, async (t) => {
    const vaultDir = join(tempDir(t, 'vault'), 'keks')
    const w = await storageWorld(t, dialect, { vaultDir })
    if (!w) return
    // Orgs made before their keys existed (no org_key rows, no KEK yet): the first use creates both.
    const orgIds: string[] = []
    for (let i = 0; i < 8; i++) orgIds.push((await w.orgs.create(uniqueSlug('race'), OPERATOR))!.id)
    await w.database.db.deleteFrom('org_key').where('org_id', 'in', orgIds).execute()
    for (const id of orgIds) await new FileKeyVault(vaultDir).destroy(id)
    assert.deepEqual(kekFiles(vaultDir), [])
    const a = storesOn(t, w.place, { vaultDir })
    const b = storesOn(t, w.place, { vaultDir })
    const got = await Promise.all(orgIds.flatMap((id) => [a.keyring.key(id, 'data'), b.keyring.key(id, 'data'), a.keyring.key(id), b.keyring.key(id)]))
    assert.deepEqual(kekFiles(vaultDir).sort(), orgIds.map((id) => `${id}.kek`).sort(), 'exactly one KEK per org, no temporary file left')
    for (let i = 0; i < orgIds.length; i++) {
      const [ad, bd, af, bf] = got.slice(i * 4, i * 4 + 4)
      assert.deepEqual(ad, bd, 'both instances hold the same data key')
      assert.deepEqual(af, bf, 'both instances hold the same fingerprint key')
      assert.notDeepEqual(ad, af)
    }
    const rows = await w.database.db.selectFrom('org_key').select(['org_id', 'vault']).where('org_id', 'in', orgIds).execute()
    assert.equal(rows.length, orgIds.length * 2, 'one row per org and purpose')
    assert.ok(rows.every((r) => r.vault === 1))
    // A third instance, nothing cached, opens them through the one KEK.
    const c = storesOn(t, w.place, { vaultDir })
    for (let i = 0; i < orgIds.length; i++) assert.deepEqual(await c.keyring.key(orgIds[i]!, 'data'), got[i * 4])
  })

  test(`RIGHTS-2 D13: the KEK is deleted only after the termination commits — never for a live org; a crash in between is finished by the org_keks_destroyed job or the purge [${dialect}]`, async (t) => {
    const vaultDir = join(tempDir(t, 'vault'), 'keks')
    const w = await storageWorld(t, dialect, { vaultDir })
    if (!w) return
    const [live, crashed, purged] = [await w.orgs.create(uniqueSlug('live'), OPERATOR), await w.orgs.create(uniqueSlug('crash'), OPERATOR), await w.orgs.create(uniqueSlug('purge'), OPERATOR)].map((o) => o!.id) as [string, string, string]
    const liveKey = await w.keyring.key(live, 'data')
    // shred on a live org does nothing to the vault.
    await w.keyring.shred(live)
    assert.ok(kekFiles(vaultDir).includes(`${live}.kek`))
    // A rolled-back termination leaves the org alive and its keys opening.
    await assert.rejects(withAudit(w.database.db, async (trx) => {
      await w.keyring.destroy(trx, crashed)
      throw new Error('rollback')
    }), /rollback/)
    await w.keyring.shred(crashed)
    assert.ok(kekFiles(vaultDir).includes(`${crashed}.kek`))
    assert.equal((await storesOn(t, w.place, { vaultDir }).keyring.key(crashed)).length, 32)
    // Committed terminations, then a "crash" before shred: the rows say the deletion is pending.
    for (const id of [crashed, purged]) {
      await withAudit(w.database.db, async (trx) => {
        await trx.updateTable('org').set({ terminated_at: w.clock.now() }).where('id', '=', id).execute()
        await w.keyring.destroy(trx, id)
      })
    }
    assert.ok(kekFiles(vaultDir).includes(`${crashed}.kek`) && kekFiles(vaultDir).includes(`${purged}.kek`))
    // The purge deletes the KEK with the rows (in its transaction, before them).
    assert.equal(await new OrgPurge(w.database.db, w.clock, w.audit, w.keyring, { delayMs: 0, everyMs: 60_000 }).purge(purged), true)
    assert.ok(!kekFiles(vaultDir).includes(`${purged}.kek`))
    // The job finishes the other one, once.
    assert.equal(await w.keyring.shredPending(), 1)
    assert.equal(await w.keyring.shredPending(), 0)
    assert.deepEqual(kekFiles(vaultDir), [`${live}.kek`])
    assert.deepEqual(await storesOn(t, w.place, { vaultDir }).keyring.key(live, 'data'), liveKey, 'the live org is untouched')
  })
}

interface Seeded {
  readonly orgId: string
  readonly slug: string
  readonly sandbox: string
  readonly owner: Awaited<ReturnType<typeof person>>
  readonly ownerPseudonym: string
  readonly fingerprint: string
  readonly artifactId: string
  readonly content: string
}

async function seed(tg: TestApp, tag: string): Promise<Seeded> {
  const slug = uniqueSlug(tag)
  const { org, sandbox } = await orgWithKeys(tg.deps, slug)
  const owner = await person(tg, org.id, 'OWNER')
  const content = `the saved answer of ${tag}`
  const artifactId = await artifactOf(tg, org.id, owner.userId, content)
  assert.equal((await aiCall(tg.url, '/v1/intercept', sandbox, 'local-echo')).status, 200)
  return {
    orgId: org.id, slug, sandbox, owner, content, artifactId,
    ownerPseudonym: await tg.deps.keyring.pseudonym(org.id, owner.userId),
    fingerprint: await tg.deps.keyring.fingerprint(org.id, 'the same prompt'),
  }
}

/** The backup restored into a new, empty database; its place for stores or an app. */
async function restoreInto(t: TestContext, backend: Backend, file: string): Promise<{ dataDir: string; databaseUrl?: string }> {
  const target = await emptyTarget(t, backend)
  await restoreBackup({ file, keys: [KEY], target, workDir: tempDir(t, 'restore-work'), force: false, clock: systemClock, actor: { type: 'operator', id: null }, name: basename(file) })
  return target.dialect === 'sqlite' ? { dataDir: dirname(target.path) } : { dataDir: tempDir(t, 'restored-data'), databaseUrl: target.url }
}

const openArtifact = (d: TestApp['deps'], s: Seeded) => new ArtifactStore(d.db.db, d.clock, d.audit, d.keyring).open(s.orgId, s.ownerPseudonym, s.artifactId)

for (const backend of DIALECTS) {
  for (const vault of [true, false]) {
    const name = vault
      ? `RIGHTS-2 RIGHTS-3 D13: with a key vault, a backup taken before an org's termination, restored with the same master key and vault, no longer opens that org's artifact, pseudonyms or fingerprints (its requests refused, not 500), while another org from the same backup works fully; before the termination the same backup opens it [${backend}]`
      : `RIGHTS-2 RIGHTS-3 D13: without a key vault, the documented limit — a backup taken before an org's termination still opens its artifact after a restore [${backend}]`
    test(name, async (t) => {
      const vaultDir = join(tempDir(t, 'vault'), 'keks')
      const vaultEnv: Record<string, string> = vault ? { TOLLGATE_KEY_VAULT_DIR: vaultDir } : {}
      const env = { TOLLGATE_BACKUP_KEY: TEST_BACKUP_KEY, TOLLGATE_BACKUP_DIR: tempDir(t, 'vault-backups'), ...vaultEnv }
      const tg = await startApp(t, { postgres: backend === 'postgres', env })
      if (!tg) return
      const gone = await seed(tg, 'shred-gone')
      const kept = await seed(tg, 'shred-kept')
      await tg.deps.decisions.drain()
      assert.deepEqual(kekFiles(vaultDir).sort(), vault ? [`${gone.orgId}.kek`, `${kept.orgId}.kek`].sort() : [])
      const backup = await tg.deps.backups!.run(OPERATOR)

      // Positive control: before the termination, the backup restores the org's artifact and pseudonyms.
      const before = await restoreInto(t, backend, backup.location)
      const control = await buildStores(testConfig({ TOLLGATE_DATA_DIR: before.dataDir, ...(before.databaseUrl ? { TOLLGATE_DATABASE_URL: before.databaseUrl } : {}), ...vaultEnv }), { log: silentLogger })
      try {
        assert.equal((await new ArtifactStore(control.db.db, control.clock, control.audit, control.keyring).open(gone.orgId, gone.ownerPseudonym, gone.artifactId))?.content, gone.content)
        assert.equal(await control.keyring.pseudonym(gone.orgId, gone.owner.userId), gone.ownerPseudonym)
      } finally {
        await control.close()
      }

      // The OWNER terminates the org.
      const res = await call(tg, gone.owner, 'DELETE', `/api/orgs/${gone.orgId}`, { confirm: gone.slug })
      assert.equal(res.status, 200, res.text)
      assert.deepEqual(kekFiles(vaultDir), vault ? [`${kept.orgId}.kek`] : [], 'its KEK left the vault with the termination')
      await tg.close()

      // The OLD backup restored, with the same master key and vault, as a running instance.
      const after = await restoreInto(t, backend, backup.location)
      const r = await startApp(t, { dataDir: after.dataDir, ...(after.databaseUrl ? { databaseUrl: after.databaseUrl } : {}), env: vaultEnv })
      if (!r) return
      const row = await r.deps.db.db.selectFrom('artifact').select('sealed').where('id', '=', gone.artifactId).executeTakeFirst()
      assert.ok(row && row.sealed.length > 0, 'the sealed artifact is in the restored database')

      // The other org restored from the same backup works fully, through the stores and the API.
      assert.equal((await openArtifact(r.deps, kept))?.content, kept.content)
      assert.equal(await r.deps.keyring.pseudonym(kept.orgId, kept.owner.userId), kept.ownerPseudonym)
      assert.equal(await r.deps.keyring.fingerprint(kept.orgId, 'the same prompt'), kept.fingerprint)
      assert.equal((await aiCall(r.url, '/v1/intercept', kept.sandbox, 'local-echo')).status, 200)
      const keptRead = await call(r, kept.owner, 'GET', `/api/orgs/${kept.orgId}/artifacts/${kept.artifactId}`)
      assert.equal(keptRead.status, 200, keptRead.text)
      assert.equal(keptRead.json.content, kept.content)

      if (!vault) {
        // The limit, documented in the README and on the trust page: the master key opens the old copy.
        assert.equal((await openArtifact(r.deps, gone))?.content, gone.content)
        assert.equal(await r.deps.keyring.pseudonym(gone.orgId, gone.owner.userId), gone.ownerPseudonym)
        return
      }
      // The shredded org: nothing under its keys opens or can be computed.
      await assert.rejects(openArtifact(r.deps, gone), OrgKeyDestroyed)
      await assert.rejects(r.deps.keyring.key(gone.orgId, 'data'), OrgKeyDestroyed)
      await assert.rejects(r.deps.keyring.pseudonym(gone.orgId, gone.owner.userId), OrgKeyDestroyed)
      await assert.rejects(r.deps.keyring.fingerprint(gone.orgId, 'the same prompt'), OrgKeyDestroyed)
      assert.deepEqual(kekFiles(vaultDir), [`${kept.orgId}.kek`], 'no KEK was minted again for it')
      // Its requests fail closed with a clear code: its key is refused, its admin routes answer 404.
      const ai = await aiCall(r.url, '/v1/intercept', gone.sandbox, 'local-echo')
      assert.equal(ai.status, 401)
      assert.match(ai.body, /invalid_api_key/)
      const read = await call(r, gone.owner, 'GET', `/api/orgs/${gone.orgId}/artifacts/${gone.artifactId}`)
      assert.equal(read.status, 404, read.text)
      assert.equal(read.json.error.code, 'not_found')
      const patch = await call(r, gone.owner, 'PATCH', `/api/orgs/${gone.orgId}/settings`, { training_consent: true })
      assert.equal(patch.status, 404, patch.text)
      // Its OWNER (or the operator) terminates it again on the restored instance; the purge then deletes its rows.
      const again = await call(r, gone.owner, 'DELETE', `/api/orgs/${gone.orgId}`, { confirm: gone.slug })
      assert.equal(again.status, 200, again.text)
      assert.ok(await new OrgPurge(r.deps.db.db, r.deps.clock, r.deps.audit, r.deps.keyring, { delayMs: 0, everyMs: 60_000 }).purge(gone.orgId))
      assert.equal((await r.deps.db.db.selectFrom('artifact').select('id').where('org_id', '=', gone.orgId).execute()).length, 0)
      assert.equal((await aiCall(r.url, '/v1/intercept', kept.sandbox, 'local-echo')).status, 200)
    })
  }
}

test('D13: tollgate doctor warns in production without a key vault, and about a vault inside the data dir or open to others', () => {
  const host = (mode?: number): DoctorHost => ({ readText: () => undefined, mode: () => (mode === undefined ? undefined : { mode, dir: true }), shellCoreLimit: () => undefined })
  const prod = { TOLLGATE_MODE: 'production', TOLLGATE_DATA_DIR: '/srv/tollgate/data', TOLLGATE_SMTP_URL: 'smtps://mail.example.test' }
  assert.equal(keyVaultCheck(host(), testConfig(prod)).status, 'warn')
  assert.equal(keyVaultCheck(host(), testConfig({ TOLLGATE_DATA_DIR: '/srv/tollgate/data' })).status, 'ok', 'development: no vault is fine')
  assert.equal(keyVaultCheck(host(0o700), testConfig({ ...prod, TOLLGATE_KEY_VAULT_DIR: '/srv/tollgate/keks' })).status, 'ok')
  assert.equal(keyVaultCheck(host(0o755), testConfig({ ...prod, TOLLGATE_KEY_VAULT_DIR: '/srv/tollgate/keks' })).status, 'fail')
  assert.equal(keyVaultCheck(host(0o700), testConfig({ ...prod, TOLLGATE_KEY_VAULT_DIR: '/srv/tollgate/data/keks' })).status, 'warn')
})
