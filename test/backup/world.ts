import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { sql, type Kysely } from 'kysely'
import pg from 'pg'
import S3rver from 's3rver'
import { Backups, type BackupSettings } from '../../src/backup/backup.ts'
import type { DestinationSettings } from '../../src/backup/destination.ts'
import { backupKeyFromHex } from '../../src/backup/format.ts'
import type { DatabaseTarget } from '../../src/backup/snapshot.ts'
import type { Clock } from '../../src/core/clock.ts'
import { buildStores, databaseTarget, type Stores } from '../../src/deps.ts'
import { silentLogger } from '../../src/observe/log.ts'
import type { DB } from '../../src/storage/schema.ts'
import { testConfig } from '../helpers/app.ts'
import { freshPostgres, needService, POSTGRES_ADMIN_URL } from '../helpers/services.ts'

export type Backend = 'sqlite' | 'postgres'
export const BACKENDS: readonly Backend[] = ['sqlite', 'postgres']
export const TEST_BACKUP_KEY = 'b'.repeat(64)
export const KEY = backupKeyFromHex(TEST_BACKUP_KEY)

export function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `tollgate-${prefix}-`))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export interface World {
  readonly dataDir: string
  readonly env: Record<string, string>
  readonly stores: Stores
  readonly target: DatabaseTarget
  backups(destination: DestinationSettings, opts?: { clock?: Clock; retentionDays?: number; database?: DatabaseTarget }): Backups
}

/** Stores on a fresh SQLite data dir or a fresh PostgreSQL database; undefined when the service is missing (skipped). */
export async function world(t: TestContext, backend: Backend, opts: { clock?: Clock } = {}): Promise<World | undefined> {
  if (backend === 'postgres' && !(await needService(t, 'postgres'))) return undefined
  const dataDir = tempDir(t, 'backup-data')
  const env: Record<string, string> = { TOLLGATE_DATA_DIR: dataDir, TOLLGATE_BACKUP_KEY: TEST_BACKUP_KEY, ...(backend === 'postgres' ? { TOLLGATE_DATABASE_URL: await freshPostgres(t) } : {}) }
  const config = testConfig(env)
  const stores = await buildStores(config, { log: silentLogger, ...(opts.clock ? { clock: opts.clock } : {}) })
  t.after(() => stores.close())
  const target = databaseTarget(config)
  return {
    dataDir, env, stores, target,
    backups: (destination, o = {}) => {
      const settings: BackupSettings = { key: KEY, destination, retentionDays: o.retentionDays ?? 30, database: o.database ?? target }
      return new Backups(() => settings, stores.db.db, stores.audit, o.clock ?? stores.clock)
    },
  }
}

/** An empty database of the same kind to restore into. */
export async function emptyTarget(t: TestContext, backend: Backend): Promise<DatabaseTarget> {
  return backend === 'sqlite' ? { dialect: 'sqlite', path: join(tempDir(t, 'backup-target'), 'tollgate.db') } : { dialect: 'postgres', url: await freshPostgres(t) }
}

/** s3rver on 127.0.0.1 (a free port) with its own directory and one bucket. */
export async function startS3(t: TestContext, bucket = 'backups'): Promise<{ endpoint: string; settings(prefix?: string): DestinationSettings }> {
  const s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: tempDir(t, 's3rver'), configureBuckets: [{ name: bucket }] })
  const { port } = await s3.run()
  t.after(() => s3.close())
  const endpoint = `http://127.0.0.1:${port}`
  return {
    endpoint,
    settings: (prefix = 'tollgate/') => ({ kind: 's3', bucket, prefix, region: 'us-east-1', endpoint, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } }),
  }
}

/** Rows of every table (the migration bookkeeping included), by table name. */
export async function tableCounts(db: Kysely<DB>, dialect: Backend): Promise<Record<string, number>> {
  const tables = dialect === 'sqlite'
    ? (await sql<{ name: string }>`select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name`.execute(db)).rows.map((r) => r.name)
    : (await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = current_schema() order by table_name`.execute(db)).rows.map((r) => r.name)
  const out: Record<string, number> = {}
  for (const name of tables) out[name] = Number((await sql<{ n: number }>`select count(*) as n from ${sql.table(name)}`.execute(db)).rows[0]!.n)
  return out
}

/** Drops and recreates the PostgreSQL database of `url` (empty, same name): the "destroy" of a drill. */
export async function recreatePostgres(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1)
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL })
  await admin.connect()
  try {
    await admin.query(`drop database if exists ${name} with (force)`)
    await admin.query(`create database ${name}`)
  } finally {
    await admin.end()
  }
}

const BIN = new URL('../../bin/tollgate.mjs', import.meta.url).pathname

/** Runs the real `tollgate` command (bin/tollgate.mjs) with only the given environment. */
export function tollgate(args: readonly string[], env: Record<string, string>, cwd: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', TOLLGATE_LOG_LEVEL: 'silent', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.once('error', reject)
    child.once('close', (code) => resolve({ code: code ?? -1, out: Buffer.concat(out).toString('utf8'), err: Buffer.concat(err).toString('utf8') }))
  })
}
