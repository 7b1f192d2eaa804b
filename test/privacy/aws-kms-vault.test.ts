import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { withAudit } from '../../src/audit/audit.ts'
import { loadConfig } from '../../src/config/load.ts'
import { AwsKmsKeyVault } from '../../src/privacy/aws-kms-vault.ts'
import { OrgKeyDestroyed } from '../../src/privacy/org-keys.ts'
import { KekMissing } from '../../src/privacy/vault.ts'
import { DIALECTS, OPERATOR, storageWorld, storesOn, uniqueSlug } from '../contract/storage-world.ts'
import { startKms, type KmsStandIn } from '../fakes/kms.ts'

/**
 * D13 with the key vault on AWS KMS: the official @aws-sdk/client-kms against a local stand-in
 * speaking KMS's JSON wire protocol. One KMS key per org (found by alias); its deletion, scheduled
 * at termination, makes the org's keys unopenable at once — in copies of the database too.
 */

async function kms(t: TestContext): Promise<KmsStandIn> {
  const k = await startKms()
  t.after(() => k.close())
  return k
}

const vaultOn = (k: KmsStandIn, aliasPrefix = 'alias/tollgate-test/') => new AwsKmsKeyVault({
  region: 'us-east-1', endpoint: k.url, aliasPrefix, deletionWindowDays: 7,
  credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' },
})

test('D13: AwsKmsKeyVault — seal/open through KMS with the org as encryption context; one key per org under concurrency; destroy makes every sealed copy unopenable', async (t) => {
  const k = await kms(t)
  const a = vaultOn(k)
  const b = vaultOn(k)
  const secret = Buffer.alloc(32, 7)
  // Two instances seal for a new org at once: the alias picks one key, both open each other's.
  const [sa, sb] = await Promise.all([a.seal('org1', secret), b.seal('org1', secret)])
  assert.deepEqual(await a.open('org1', sb), secret)
  assert.deepEqual(await b.open('org1', sa), secret)
  assert.ok(k.calls.every((c) => c.signed), 'every request is SigV4-signed by the SDK')
  assert.ok(k.calls.some((c) => c.op === 'Encrypt') && k.calls.some((c) => c.op === 'Decrypt'))
  // Bound to its org: another org's name does not open it.
  await a.seal('org2', secret)
  await assert.rejects(a.open('org2', sa), KekMissing)
  await assert.rejects(a.open('org1', 'not-a-kms-blob'), KekMissing)

  await a.destroy('org1')
  await assert.rejects(a.open('org1', sa), KekMissing, 'the alias is gone')
  await assert.rejects(b.open('org1', sb), KekMissing)
  assert.ok(k.calls.some((c) => c.op === 'ScheduleKeyDeletion'))
  await a.destroy('org1') // idempotent
  assert.deepEqual(await a.open('org2', await a.seal('org2', secret)), secret, 'other orgs are untouched')
})

for (const dialect of DIALECTS) {
  test(`RIGHTS-2 D13: with the AWS KMS vault, an org's keys copied before its termination (a backup) no longer open after it; other orgs do [${dialect}]`, async (t) => {
    const k = await kms(t)
    const w = await storageWorld(t, dialect, { vault: vaultOn(k) })
    if (!w) return
    const gone = (await w.orgs.create(uniqueSlug('kms-gone'), OPERATOR))!.id
    const kept = (await w.orgs.create(uniqueSlug('kms-kept'), OPERATOR))!.id
    const before = { gone: await w.keyring.pseudonym(gone, 'user-1'), kept: await w.keyring.pseudonym(kept, 'user-1') }
    // The "backup": a copy of the org's key rows as they were.
    const copy = await w.database.db.selectFrom('org_key').selectAll().where('org_id', '=', gone).execute()
    assert.ok(copy.length === 2 && copy.every((r) => r.vault === 1), 'both keys are sealed in KMS')

    // Positive control: a fresh instance opens the copied rows while the org lives.
    const fresh = () => storesOn(t, w.place, { vault: vaultOn(k) })
    assert.equal(await fresh().keyring.pseudonym(gone, 'user-1'), before.gone)

    // Termination: the rows are destroyed in the transaction, the KMS key after the commit.
    await withAudit(w.database.db, async (trx) => {
      await trx.updateTable('org').set({ terminated_at: Date.now() }).where('id', '=', gone).execute()
      await w.keyring.destroy(trx, gone)
    })
    await w.keyring.shred(gone)
    // "Restore the backup": put the copied rows back as they were.
    await w.database.db.deleteFrom('org_key').where('org_id', '=', gone).execute()
    await w.database.db.insertInto('org_key').values(copy).execute()
    await w.database.db.updateTable('org').set({ terminated_at: null }).where('id', '=', gone).execute()

    const restored = fresh()
    await assert.rejects(restored.keyring.pseudonym(gone, 'user-1'), OrgKeyDestroyed)
    await assert.rejects(restored.keyring.key(gone, 'data'), OrgKeyDestroyed)
    assert.equal(await restored.keyring.pseudonym(kept, 'user-1'), before.kept, 'the other org opens as before')
  })
}

test('D13: the AWS KMS vault settings — region, endpoint, alias prefix, deletion window; never together with TOLLGATE_KEY_VAULT_DIR; credentials in pairs', () => {
  const base = { TOLLGATE_DATA_DIR: '/tmp/x' }
  const ok = loadConfig({ ...base, TOLLGATE_KEY_VAULT_AWS_KMS_REGION: 'eu-west-1', TOLLGATE_KEY_VAULT_AWS_KMS_ENDPOINT: 'https://kms.eu-west-1.amazonaws.com' }, '/tmp')
  assert.ok(ok.ok)
  assert.deepEqual(ok.ok && { ...ok.config.keyVaultKms, secretAccessKey: undefined }, { region: 'eu-west-1', endpoint: 'https://kms.eu-west-1.amazonaws.com', aliasPrefix: 'alias/tollgate/', deletionWindowDays: 7, accessKeyId: undefined, secretAccessKey: undefined })
  const problems = (env: Record<string, string>) => { const r = loadConfig({ ...base, ...env }, '/tmp'); return r.ok ? [] : r.problems }
  assert.equal(problems({ TOLLGATE_KEY_VAULT_AWS_KMS_REGION: 'eu-west-1', TOLLGATE_KEY_VAULT_DIR: '/srv/keks' }).length, 1)
  assert.equal(problems({ TOLLGATE_KEY_VAULT_AWS_KMS_REGION: 'Europe' }).length, 1)
  assert.equal(problems({ TOLLGATE_KEY_VAULT_AWS_KMS_REGION: 'eu-west-1', TOLLGATE_KEY_VAULT_AWS_ACCESS_KEY_ID: 'AKID' }).length, 1)
  assert.equal(problems({ TOLLGATE_KEY_VAULT_AWS_KMS_REGION: 'eu-west-1', TOLLGATE_KEY_VAULT_AWS_KMS_DELETION_DAYS: '3' }).length, 1)
})
