import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { AuditLog } from '../../src/audit/audit.ts'
import type { Clock } from '../../src/core/clock.ts'
import { KeyStore } from '../../src/keys/keys.repo.ts'
import { OrgStore } from '../../src/orgs/orgs.repo.ts'
import { OrgKeyring } from '../../src/privacy/org-keys.ts'
import { masterKeyFromHex } from '../../src/privacy/wrap.ts'
import { FileKeyVault, type KeyVault } from '../../src/privacy/vault.ts'
import { openDatabase, type Database, type Dialect } from '../../src/storage/database.ts'
import { migrateToLatest } from '../../src/storage/migrations/index.ts'
import { TEST_MASTER_KEY } from '../helpers/app.ts'
import { freshPostgres, needService } from '../helpers/services.ts'

/** Every storage implementation the contract suites run against. */
export const DIALECTS: readonly Dialect[] = ['sqlite', 'postgres']

export const OPERATOR = { type: 'operator' as const, id: null }

/** A clock the test moves by hand: expiry is tested by moving time, never by sleeping. */
export class ManualClock implements Clock {
  constructor(public t = Date.UTC(2030, 0, 1)) {}
  now(): number {
    return this.t
  }
  advance(ms: number): void {
    this.t += ms
  }
}

/** Where a world's database lives, so a second "instance" can open the same one. */
export interface Place {
  readonly dialect: Dialect
  readonly url: string | undefined
  readonly dataDir: string
}

export interface StorageWorld {
  readonly place: Place
  readonly database: Database
  readonly clock: Clock
  readonly audit: AuditLog
  readonly keyring: OrgKeyring
  readonly orgs: OrgStore
  readonly keys: KeyStore
}

/**
 * A new, empty database of the given dialect (SQLite in a temp dir, or a fresh PostgreSQL
 * database), not yet migrated. Undefined when the service is missing (the test was skipped;
 * under CI=true it failed instead).
 */
export async function freshPlace(t: TestContext, dialect: Dialect): Promise<Place | undefined> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-contract-'))
  t.after(() => rmSync(dataDir, { recursive: true, force: true }))
  if (dialect === 'sqlite') return { dialect, url: undefined, dataDir }
  if (!(await needService(t, 'postgres'))) return undefined
  return { dialect, url: await freshPostgres(t), dataDir }
}

/** Opens a handle on `place`, closed after the test. */
export function openPlace(t: TestContext, place: Place): Database {
  const database = openDatabase({ url: place.url, dataDir: place.dataDir })
  t.after(() => database.close())
  return database
}

/** The stores as one instance would build them, over an already-migrated place. */
export function storesOn(t: TestContext, place: Place, opts: { clock?: Clock; masterKeyHex?: string; previousMasterKeysHex?: readonly string[]; vaultDir?: string; vault?: KeyVault } = {}): StorageWorld {
  const database = openPlace(t, place)
  const clock = opts.clock ?? { now: () => Date.now() }
  const audit = new AuditLog(clock, place.dialect)
  const keyring = new OrgKeyring(database.db, masterKeyFromHex(opts.masterKeyHex ?? TEST_MASTER_KEY), clock, (opts.previousMasterKeysHex ?? []).map(masterKeyFromHex),
    opts.vault ?? (opts.vaultDir === undefined ? undefined : new FileKeyVault(opts.vaultDir)))
  const orgs = new OrgStore(database.db, clock, audit, keyring)
  const keys = new KeyStore(database.db, clock, audit)
  return { place, database, clock, audit, keyring, orgs, keys }
}

/** A fresh, migrated database with the stores on top. */
export async function storageWorld(t: TestContext, dialect: Dialect, opts: { clock?: Clock; masterKeyHex?: string; vaultDir?: string; vault?: KeyVault } = {}): Promise<StorageWorld | undefined> {
  const place = await freshPlace(t, dialect)
  if (!place) return undefined
  const world = storesOn(t, place, opts)
  await migrateToLatest(world.database.db, dialect)
  return world
}

let slugCounter = 0
export function uniqueSlug(prefix = 'org'): string {
  return `${prefix}-${process.pid}-${++slugCounter}-${Math.random().toString(36).slice(2, 8)}`
}
