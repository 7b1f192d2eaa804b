import { randomBytes } from 'node:crypto'
import { mkdir, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { AuditLog, INSTANCE_CHAIN, verifyChains, withAudit, type ChainReport } from '../audit/audit.ts'
import type { Clock } from '../core/clock.ts'
import { openDatabase } from '../storage/database.ts'
import { MIGRATION_NAMES, migrateToLatest } from '../storage/migrations/index.ts'
import type { Actor } from './backup.ts'
import { BackupError, decryptFile, readHeader, type BackupHeader, type BackupKey } from './format.ts'
import { applySnapshot, targetHasTables, type DatabaseTarget } from './snapshot.ts'

export interface RestoreOptions {
  /** The encrypted backup, as a local file. */
  readonly file: string
  /** Candidate keys: the one whose id the header names is used. */
  readonly keys: readonly BackupKey[]
  readonly target: DatabaseTarget
  /** A private folder for the decrypted copy (the data dir: the same protection as the database). */
  readonly workDir: string
  /** Replace a database that is not empty. */
  readonly force: boolean
  readonly clock: Clock
  readonly actor: Actor
  /** The backup's name, for the audit entry. */
  readonly name: string
}

export interface RestoreResult {
  readonly header: BackupHeader
  /** Migrations applied after the restore (the backup was older than this version). */
  readonly migrated: readonly string[]
  readonly chains: readonly ChainReport[]
}

/**
 * BACKUP-2: authenticate the whole file first (decrypt to a private file, GCM tag verified),
 * refuse a target that is not empty unless forced, then apply it, bring the schema up to date,
 * verify every audit chain, and audit the restore itself. A refused backup changes nothing.
 */
export async function restoreBackup(o: RestoreOptions): Promise<RestoreResult> {
  const { header } = await readHeader(o.file)
  if (!o.keys.some((k) => k.id === header.key_id)) throw new BackupError('unknown_key', `key id ${header.key_id}`)
  if (header.dialect !== o.target.dialect) throw new BackupError('wrong_dialect', `backup of ${header.dialect}`)
  if (header.schema !== '' && !MIGRATION_NAMES.includes(header.schema)) throw new BackupError('newer_schema', `schema ${header.schema}`)
  await mkdir(o.workDir, { recursive: true, mode: 0o700 })
  const plain = join(o.workDir, `.tollgate-restore-${randomBytes(6).toString('hex')}`)
  try {
    const verified = await decryptFile(o.file, plain, o.keys)
    if (JSON.stringify(verified) !== JSON.stringify(header)) throw new BackupError('tampered')
    const occupied = await targetHasTables(o.target)
    if (occupied && !o.force) throw new BackupError('not_empty')
    await applySnapshot(o.target, plain, occupied)
  } finally {
    await unlink(plain).catch(() => undefined)
  }
  const db = openDatabase({ url: o.target.dialect === 'postgres' ? o.target.url : undefined, dataDir: o.target.dialect === 'sqlite' ? dirname(o.target.path) : o.workDir })
  try {
    const { applied } = await migrateToLatest(db.db, db.dialect)
    const chains = await verifyChains(db.db)
    const audit = new AuditLog(o.clock, db.dialect)
    await withAudit(db.db, (trx) => audit.append(trx, { chainId: INSTANCE_CHAIN, actorType: o.actor.type, actorId: o.actor.id, action: 'backup_restored', targetType: 'backup', targetId: o.name, outcome: chains.some((c) => c.broken) ? 'failure' : 'success' }))
    return { header, migrated: applied, chains }
  } finally {
    await db.close()
  }
}
