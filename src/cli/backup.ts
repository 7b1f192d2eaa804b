import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { unlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import cliProgress from 'cli-progress'
import type { Command } from 'commander'
import { Backups, type BackupProgress } from '../backup/backup.ts'
import { BACKUP_NAME, openDestination } from '../backup/destination.ts'
import { BackupError, backupKeyFromHex, type BackupKey } from '../backup/format.ts'
import { restoreBackup } from '../backup/restore.ts'
import type { Config } from '../config/load.ts'
import { systemClock } from '../core/clock.ts'
import { backupDestination, backupSettings, configuredBackupKeys, databaseTarget, loadMasterKey, type Stores } from '../deps.ts'
import type { Logger } from '../observe/log.ts'

export interface BackupCliContext {
  readonly cwd: string
  config(): Config
  withStores<T>(fn: (s: Stores) => Promise<T>): Promise<T>
  out(text: string): void
  err(text: string): void
  print(json: boolean, value: unknown, text: string): void
  fail(code: number): void
  log: Logger
}

const OPERATOR = { type: 'operator' as const, id: null }
const MB = 1024 * 1024

/**
 * `tollgate backup` and `tollgate restore` (BACKUP-1, BACKUP-2, D12). Both talk to the database
 * directly; the backup is audited as the operator's, and so is the restore (in the restored database).
 */
export function registerBackupCommands(program: Command, c: BackupCliContext): void {
  program.command('backup').description('Take an encrypted (AES-256-GCM) snapshot of the database to the backup folder or bucket, then delete backups older than the retention.')
    .option('--json', 'print one JSON result object')
    .action(async (o: { json?: boolean }) => {
      const settings = backupSettings(c.config(), c.log)
      if (!settings) {
        c.err(new BackupError('no_key').message)
        return c.fail(78)
      }
      await c.withStores(async (s) => {
        const show = progress(!!o.json, c)
        try {
          const r = await new Backups(settings, s.db.db, s.audit, s.clock).run(OPERATOR, { onProgress: show.update })
          show.stop()
          c.print(!!o.json, { name: r.name, location: r.location, size: r.bytes, key_id: r.keyId, created_at: new Date(r.createdAt).toISOString(), deleted: r.deleted },
            `Backup ${r.name} written to ${r.location} (${r.bytes} bytes, key id ${r.keyId}).${r.deleted.length > 0 ? `\nRetention: deleted ${r.deleted.length} older backup(s): ${r.deleted.join(', ')}` : ''}`)
        } catch (err) {
          show.stop()
          c.err(`The backup failed${err instanceof BackupError ? `: ${err.message}` : ` (${err instanceof Error ? (err as NodeJS.ErrnoException).code ?? err.name : 'error'})`}. No older backup was deleted.`)
          c.fail(1)
        }
      })
    })

  program.command('restore <backup>').description('Restore a backup (a file, a backup name in the configured folder or bucket, or s3://bucket/key). Stop the server first; the target database must be empty unless --force.')
    .option('--force', 'replace a database that is not empty')
    .option('--key-file <file...>', 'file(s) holding older backup keys (64 hex); the one the backup names by key id is used')
    .option('--json', 'print one JSON result object')
    .action(async (backup: string, o: { force?: boolean; keyFile?: string[]; json?: boolean }) => {
      const config = c.config()
      const keys: BackupKey[] = [...configuredBackupKeys(config)]
      for (const f of o.keyFile ?? []) {
        try {
          keys.push(backupKeyFromHex(readFileSync(resolve(c.cwd, f), 'utf8')))
        } catch {
          c.err(`--key-file ${f}: not a readable file holding a 64-hex backup key.`)
          return c.fail(2)
        }
      }
      let file = resolve(c.cwd, backup)
      let fetched: string | undefined
      try {
        if (!existsSync(file)) {
          const s3 = /^s3:\/\/([^/]+)\/(.+)$/.exec(backup)
          const configured = backupDestination(config)
          if (!s3 && !BACKUP_NAME.test(backup)) {
            c.err(`No backup file at ${backup}: give a file, a backup name (tollgate-…Z-….tgbk) in the configured destination, or s3://bucket/key.`)
            return c.fail(1)
          }
          const dest = openDestination(s3 && configured.kind === 's3' ? { ...configured, bucket: s3[1]!, prefix: '' }
            : s3 ? { kind: 's3', bucket: s3[1]!, prefix: '', region: config.backup.s3?.region ?? 'us-east-1', endpoint: undefined, credentials: undefined }
            : configured)
          mkdirSync(config.storage.dataDir, { recursive: true, mode: 0o700 })
          fetched = join(config.storage.dataDir, `.tollgate-fetch-${randomBytes(6).toString('hex')}.tgbk`)
          try {
            await dest.fetch(s3 ? s3[2]! : backup, fetched)
          } finally {
            dest.close()
          }
          file = fetched
        }
        const r = await restoreBackup({ file, keys, target: databaseTarget(config), workDir: config.storage.dataDir, force: !!o.force, clock: systemClock, actor: OPERATOR, name: backup.split('/').pop()! })
        const broken = r.chains.filter((x) => x.broken)
        const master = loadMasterKey(config, c.log).id
        const masterNote = r.header.master_key_id !== null && r.header.master_key_id !== master
          ? `\nwarning: the restored org keys are wrapped under master key ${r.header.master_key_id}, but this configuration's master key is ${master}: start Tollgate with the master key of that time (CRYPTO-2).`
          : ''
        c.print(!!o.json, {
          restored: backup, dialect: r.header.dialect, key_id: r.header.key_id, created_at: new Date(r.header.created_at).toISOString(), schema: r.header.schema,
          migrated: r.migrated, master_key_id: r.header.master_key_id, master_key_matches: r.header.master_key_id === null || r.header.master_key_id === master,
          chains: r.chains.map((x) => ({ chain: x.chainId, entries: x.entries, ok: !x.broken })),
        }, `Restored ${backup} (${r.header.dialect}, taken ${new Date(r.header.created_at).toISOString()}, schema ${r.header.schema}).`
          + (r.migrated.length > 0 ? `\nMigrated: ${r.migrated.join(', ')}` : '')
          + `\nAudit chains: ${r.chains.length - broken.length}/${r.chains.length} verify.${broken.map((x) => `\n  ${x.chainId}: BROKEN at seq ${x.broken!.seq}`).join('')}${masterNote}`)
        if (broken.length > 0) c.fail(1)
      } catch (err) {
        if (!(err instanceof BackupError)) throw err
        c.err(err.message)
        c.fail(1)
      } finally {
        if (fetched) await unlink(fetched).catch(() => undefined)
      }
    })
}

/** A progress bar on a terminal (stderr), a plain line per phase otherwise; nothing with --json. */
function progress(json: boolean, c: BackupCliContext): { update(p: BackupProgress): void; stop(): void } {
  if (json) return { update() {}, stop() {} }
  if (!process.stderr.isTTY) {
    let snapshotDone = false
    return {
      update(p) {
        if (p.phase === 'snapshot' && p.done === p.total && !snapshotDone) {
          snapshotDone = true
          c.err(`snapshot: ${p.total} pages copied`)
        }
      },
      stop() {},
    }
  }
  const bar = new cliProgress.SingleBar({ stream: process.stderr, format: '{phase} |{bar}| {mb} MB', hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic)
  let started = false
  return {
    update(p) {
      const total = p.phase === 'snapshot' ? p.total : p.total ?? 0
      const value = p.phase === 'snapshot' ? p.done : p.bytes
      const mb = ((p.phase === 'write' ? p.bytes : 0) / MB).toFixed(1)
      if (!started) {
        started = true
        bar.start(total, value, { phase: p.phase, mb })
      } else {
        if (total > 0) bar.setTotal(total)
        bar.update(value, { phase: p.phase, mb })
      }
    },
    stop() {
      if (started) bar.stop()
    },
  }
}
