import { Transform } from 'node:stream'
import { pipeline } from 'node:stream'
import { sql, type Kysely } from 'kysely'
import { INSTANCE_CHAIN, withAudit, type ActorType, type AuditLog } from '../audit/audit.ts'
import type { Clock } from '../core/clock.ts'
import type { DB } from '../storage/schema.ts'
import { encryptStream, newHeader, type BackupKey } from './format.ts'
import { backupName, backupTime, openDestination, type Destination, type DestinationSettings } from './destination.ts'
import { takeSnapshot, type DatabaseTarget } from './snapshot.ts'

export const DAY_MS = 86_400_000

/** Everything a backup needs, secrets already revealed by deps.ts. */
export interface BackupSettings {
  readonly key: BackupKey
  readonly destination: DestinationSettings
  readonly retentionDays: number
  readonly database: DatabaseTarget
}

export interface BackupResult {
  readonly name: string
  readonly location: string
  readonly bytes: number
  readonly keyId: string
  readonly createdAt: number
  /** Names of the older backups this run deleted (retention). */
  readonly deleted: readonly string[]
}

export type BackupProgress = { readonly phase: 'snapshot'; readonly done: number; readonly total: number } | { readonly phase: 'write'; readonly bytes: number; readonly total: number | undefined }

export interface Actor {
  readonly type: ActorType
  readonly id: string | null
}

/** Backups older than the retention (strictly: one exactly `days` old stays), never `keep`. */
export function expiredBackups(names: readonly string[], now: number, days: number, keep: string): string[] {
  return names.filter((n) => {
    const at = backupTime(n)
    return n !== keep && at !== undefined && now - at > days * DAY_MS
  })
}

/**
 * BACKUP-1 (D12): snapshot → AES-256-GCM → destination (atomically), then retention in that
 * destination — only after the new backup is complete; a failed run deletes nothing. Each run
 * is audited in the instance chain (after the snapshot, so the entry is not inside it).
 */
export class Backups {
  /** `settings` is called on first use (it may generate the development key file). */
  constructor(
    private readonly load: () => BackupSettings,
    private readonly db: Kysely<DB>,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
  ) {}

  get settings(): BackupSettings {
    return this.load()
  }

  destination(): Destination {
    return openDestination(this.settings.destination)
  }

  async run(actor: Actor, opts: { requestId?: string; onProgress?: (p: BackupProgress) => void } = {}): Promise<BackupResult> {
    const dest = this.destination()
    const createdAt = this.clock.now()
    const name = backupName(createdAt)
    const record = (outcome: 'success' | 'failure') => withAudit(this.db, (trx) => this.audit.append(trx, {
      chainId: INSTANCE_CHAIN, actorType: actor.type, actorId: actor.id, action: 'backup_created', targetType: 'backup', targetId: name, outcome, requestId: opts.requestId ?? null,
    }))
    let bytes = 0
    try {
      const header = newHeader(this.settings.key, { dialect: this.settings.database.dialect, created_at: createdAt, ...(await this.#describe()) })
      const snap = await takeSnapshot(this.settings.database, (done, total) => opts.onProgress?.({ phase: 'snapshot', done, total }))
      try {
        const meter = new Transform({
          transform: (chunk: Buffer, _e, cb) => {
            bytes += chunk.length
            opts.onProgress?.({ phase: 'write', bytes, total: snap.size })
            cb(null, chunk)
          },
        })
        const encrypted = pipeline(snap.stream, encryptStream(this.settings.key, header), meter, () => {})
        try {
          await dest.write(name, encrypted)
        } finally {
          encrypted.destroy()
        }
      } finally {
        await snap.dispose()
      }
    } catch (err) {
      dest.close()
      await record('failure').catch(() => undefined)
      throw err
    }
    try {
      await record('success')
      const deleted: string[] = []
      for (const old of expiredBackups(await dest.list(), this.clock.now(), this.settings.retentionDays, name)) {
        await dest.remove(old)
        deleted.push(old)
      }
      return { name, location: dest.locate(name), bytes, keyId: this.settings.key.id, createdAt, deleted }
    } finally {
      dest.close()
    }
  }

  /** The schema version and the master key id the copy will carry in its header. */
  async #describe(): Promise<{ schema: string; master_key_id: string | null }> {
    const m = (await sql<{ name: string }>`select name from tollgate_migration order by name desc limit 1`.execute(this.db)).rows[0]
    const k = await this.db.selectFrom('instance_key').select('master_key_id').executeTakeFirst()
      ?? await this.db.selectFrom('org_key').select('master_key_id').where('destroyed_at', 'is', null).limit(1).executeTakeFirst()
    return { schema: m?.name ?? '', master_key_id: k?.master_key_id ?? null }
  }
}
