import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { withAudit } from '../../src/audit/audit.ts'
import { OrgKeyDestroyed } from '../../src/privacy/org-keys.ts'
import { masterKeyFromHex } from '../../src/privacy/wrap.ts'
import { FileKeyVault } from '../../src/privacy/vault.ts'
import { DIALECTS, OPERATOR, storageWorld, storesOn, uniqueSlug, type StorageWorld } from '../contract/storage-world.ts'

/**
 * CRYPTO-2: the master key rotates without downtime. Every instance is given the new key as
 * TOLLGATE_MASTER_KEY and the old one in TOLLGATE_MASTER_KEY_PREVIOUS; `rewrap` moves every org
 * key (and the instance key) under the new one while requests keep being served; then the old
 * key opens nothing and can be dropped. The keys themselves never change, so fingerprints,
 * pseudonyms and everything sealed under them stay valid.
 */

const OLD = '1'.repeat(64)
const NEW = '2'.repeat(64)

async function derived(w: StorageWorld, orgIds: readonly string[]) {
  const out: string[] = []
  for (const id of orgIds) {
    out.push(await w.keyring.pseudonym(id, 'user-1'), await w.keyring.fingerprint(id, 'the same prompt'), (await w.keyring.key(id, 'data')).toString('hex'))
  }
  out.push((await w.keyring.instanceKey('csrf')).toString('hex'))
  return out
}

for (const dialect of DIALECTS) {
  test(`CRYPTO-2: a new master key re-wraps every org key while requests are served; old key then opens nothing; derived values unchanged [${dialect}]`, async (t) => {
    const before = await storageWorld(t, dialect, { masterKeyHex: OLD })
    if (!before) return
    const orgIds: string[] = []
    for (let i = 0; i < 6; i++) orgIds.push((await before.orgs.create(uniqueSlug('rot'), OPERATOR))!.id)
    // A terminated org's destroyed keys stay destroyed through a rotation.
    const gone = (await before.orgs.create(uniqueSlug('gone'), OPERATOR))!.id
    await withAudit(before.database.db, async (trx) => {
      await trx.updateTable('org').set({ terminated_at: Date.now() }).where('id', '=', gone).execute()
      await before.keyring.destroy(trx, gone)
    })
    const baseline = await derived(before, orgIds)

    // Positive control: the new key alone cannot open keys wrapped under the old one.
    const newOnlyEarly = storesOn(t, before.place, { masterKeyHex: NEW })
    await assert.rejects(newOnlyEarly.keyring.key(orgIds[0]!), /TOLLGATE_MASTER_KEY_PREVIOUS/)

    // Step 1: instances restart with NEW + previous OLD. Same keys; new orgs are wrapped under NEW.
    const rotating = storesOn(t, before.place, { masterKeyHex: NEW, previousMasterKeysHex: [OLD] })
    assert.deepEqual(await derived(rotating, orgIds), baseline)
    const newer = (await rotating.orgs.create(uniqueSlug('new'), OPERATOR))!.id
    const newerBaseline = await derived(rotating, [newer])

    // Step 2: rewrap while another instance (with both keys, nothing cached) keeps serving.
    const serving = storesOn(t, before.place, { masterKeyHex: NEW, previousMasterKeysHex: [OLD] })
    let stop = false
    let served = 0
    const failures: string[] = []
    const load = (async () => {
      while (!stop && served < 5000) {
        const fresh = storesOn(t, before.place, { masterKeyHex: NEW, previousMasterKeysHex: [OLD] })
        try {
          assert.deepEqual(await derived(fresh, orgIds), baseline)
          served++
        } catch (err) {
          failures.push((err as Error).message)
          break
        } finally {
          await fresh.database.close()
        }
      }
    })()
    const moved = await rotating.keyring.rewrap()
    await new Promise((r) => setTimeout(r, 50))
    stop = true
    await load
    assert.deepEqual(failures, [], 'no request failed during the rewrap')
    assert.ok(served > 0)
    assert.equal(moved.orgKeys, orgIds.length * 2, 'both keys of every live org moved (destroyed ones untouched)')
    assert.equal(moved.instanceKeys, 1)
    assert.equal(moved.remaining, 0)
    assert.deepEqual(await rotating.keyring.rewrap(), { orgKeys: 0, instanceKeys: 0, remaining: 0 }, 'a second run has nothing to do')
    assert.deepEqual(await derived(serving, orgIds), baseline)

    // Step 3: drop the old key. NEW alone opens everything, with the same derived values; OLD opens nothing.
    const after = storesOn(t, before.place, { masterKeyHex: NEW })
    assert.deepEqual(await derived(after, orgIds), baseline)
    assert.deepEqual(await derived(after, [newer]), newerBaseline)
    const ids = await after.database.db.selectFrom('org_key').select(['master_key_id', 'destroyed_at', 'wrapped']).execute()
    assert.ok(ids.filter((r) => r.destroyed_at === null).every((r) => r.master_key_id === masterKeyFromHex(NEW).id))
    assert.ok(ids.filter((r) => r.destroyed_at !== null).every((r) => r.wrapped === ''), 'destroyed keys stay destroyed')
    const oldOnly = storesOn(t, before.place, { masterKeyHex: OLD })
    for (const id of orgIds) await assert.rejects(oldOnly.keyring.key(id), 'the old master key opens no org key any more')
    await assert.rejects(oldOnly.keyring.instanceKey('csrf'))
    await assert.rejects(after.keyring.key(gone))
  })
}

for (const dialect of DIALECTS) {
  test(`CRYPTO-2 D13: with a key vault, rewrap moves only the master layer of vault-sealed keys, and seals keys made before the vault in it; derived values unchanged [${dialect}]`, async (t) => {
    const vaultDir = join(mkdtempSync(join(tmpdir(), 'tollgate-rot-vault-')), 'keks')
    t.after(() => rmSync(dirname(vaultDir), { recursive: true, force: true }))
    const before = await storageWorld(t, dialect, { masterKeyHex: OLD })
    if (!before) return
    const legacy = (await before.orgs.create(uniqueSlug('legacy'), OPERATOR))!.id
    const withVault = storesOn(t, before.place, { masterKeyHex: OLD, vaultDir })
    const sealed = (await withVault.orgs.create(uniqueSlug('sealed'), OPERATOR))!.id
    const baseline = await derived(withVault, [legacy, sealed])
    const rows = () => before.database.db.selectFrom('org_key').select(['org_id', 'vault', 'master_key_id']).orderBy('org_id').execute()
    assert.deepEqual((await rows()).map((r) => [r.org_id === sealed, r.vault]).sort(), [[false, 0], [false, 0], [true, 1], [true, 1]])

    const rotating = storesOn(t, before.place, { masterKeyHex: NEW, previousMasterKeysHex: [OLD], vaultDir })
    assert.deepEqual(await derived(rotating, [legacy, sealed]), baseline)
    const moved = await rotating.keyring.rewrap()
    assert.equal(moved.orgKeys, 4, 'both orgs moved under the new master key; the legacy one also sealed in the vault')
    assert.equal(moved.remaining, 0)
    assert.ok((await rows()).every((r) => r.vault === 1 && r.master_key_id === masterKeyFromHex(NEW).id))
    assert.deepEqual(await derived(storesOn(t, before.place, { masterKeyHex: NEW, vaultDir }), [legacy, sealed]), baseline, 'the new master key and the vault open everything')
    await assert.rejects(storesOn(t, before.place, { masterKeyHex: NEW }).keyring.key(sealed), /TOLLGATE_KEY_VAULT_DIR/, 'the master key alone no longer opens them')
    // The legacy org is now shreddable too: its KEK gone, a fresh instance cannot open its keys.
    await new FileKeyVault(vaultDir).destroy(legacy)
    await assert.rejects(storesOn(t, before.place, { masterKeyHex: NEW, vaultDir }).keyring.key(legacy), OrgKeyDestroyed)
  })
}
