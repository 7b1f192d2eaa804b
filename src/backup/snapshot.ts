import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createReadStream, existsSync, writeFileSync } from 'node:fs'
import { rename, stat, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Transform, type Readable } from 'node:stream'
import SqliteDatabase from 'better-sqlite3-multiple-ciphers'
import { loadPg } from '../storage/database.ts'
import { BackupError } from './format.ts'

/** The database a backup copies and a restore replaces. */
export type DatabaseTarget =
  | { readonly dialect: 'sqlite'; readonly path: string }
  | { readonly dialect: 'postgres'; readonly url: string }

export interface Snapshot {
  /** The plaintext, as it is read. */
  readonly stream: Readable
  /** Bytes the stream will carry, when known in advance (SQLite). */
  readonly size: number | undefined
  /** Removes what the snapshot left behind; safe to call twice. */
  dispose(): Promise<void>
}

/**
 * A consistent copy of the live database.
 *
 * SQLite: the online backup API (`db.backup`) from a connection of its own, copying every page in
 * in one step, so the copy is one read transaction (writers go on, WAL mode) — into a 0600 file
 * beside the database (the same disk, the same protection as the database itself), read into the
 * encryption and deleted. PostgreSQL: `pg_dump -Fc` (one repeatable-read snapshot), streamed
 * straight into the encryption; a dump that exits non-zero fails the stream, so its truncated
 * output never becomes a backup.
 */
export async function takeSnapshot(target: DatabaseTarget, onPages?: (done: number, total: number) => void): Promise<Snapshot> {
  if (target.dialect === 'sqlite') {
    const tmp = join(dirname(target.path), `.tollgate-snapshot-${randomBytes(6).toString('hex')}.db`)
    const dispose = () => unlink(tmp).catch(() => undefined)
    writeFileSync(tmp, '', { mode: 0o600, flag: 'wx' })
    const conn = new SqliteDatabase(target.path, { readonly: true, fileMustExist: true })
    try {
      // better-sqlite3 steps 0 pages first, then asks the handler for the next step's size: all of
      // them, so every page is copied in one step — one consistent read, never restarted by writers.
      const done = await conn.backup(tmp, { progress: () => 0x7fffffff })
      onPages?.(done.totalPages - done.remainingPages, done.totalPages)
    } catch {
      await dispose()
      throw new BackupError('snapshot_failed', 'sqlite backup')
    } finally {
      conn.close()
    }
    return { stream: createReadStream(tmp), size: (await stat(tmp)).size, dispose }
  }
  const { url, env } = pgConnection(target.url)
  const child = spawn('pg_dump', ['--format=custom', '--no-owner', '--no-privileges', `--dbname=${url}`], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  // pg_dump's stderr names objects and connection problems, never row data; it is not kept.
  child.stderr.resume()
  const exited = new Promise<number>((resolve) => {
    child.once('error', () => resolve(-1))
    child.once('close', (code) => resolve(code ?? -1))
  })
  const guard = new Transform({
    transform: (chunk, _e, cb) => cb(null, chunk),
    flush: (cb) => void exited.then((code) => cb(code === 0 ? null : new BackupError('snapshot_failed', `pg_dump exit ${code}`))),
  })
  child.stdout.pipe(guard)
  child.once('error', () => guard.destroy(new BackupError('snapshot_failed', 'pg_dump could not start')))
  return {
    stream: guard,
    size: undefined,
    dispose: async () => {
      if (child.exitCode === null) child.kill()
    },
  }
}

/** A libpq URL without its password (which would show in the process list) and the environment that carries it. */
function pgConnection(databaseUrl: string): { url: string; env: NodeJS.ProcessEnv } {
  const u = new URL(databaseUrl)
  const password = decodeURIComponent(u.password)
  u.password = ''
  const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...(password ? { PGPASSWORD: password } : {}) }
  return { url: u.toString(), env }
}

/** Whether the target database holds any table (an empty one may be restored into without --force). */
export async function targetHasTables(target: DatabaseTarget): Promise<boolean> {
  if (target.dialect === 'sqlite') {
    if (!existsSync(target.path)) return false
    const conn = new SqliteDatabase(target.path, { readonly: true })
    try {
      const row = conn.prepare(`select count(*) as n from sqlite_master where type = 'table' and name not like 'sqlite_%'`).get() as { n: number }
      return row.n > 0
    } finally {
      conn.close()
    }
  }
  const c = new (loadPg().Client)({ connectionString: target.url })
  await c.connect()
  try {
    const r = await c.query<{ n: number }>(`select count(*)::int as n from information_schema.tables where table_schema = current_schema()`)
    return r.rows[0]!.n > 0
  } finally {
    await c.end()
  }
}

/**
 * Puts an authenticated, decrypted snapshot in place of the target database.
 * SQLite: the file replaces the database (the server must be stopped: it holds the old file open),
 * its stale -wal and -shm removed first so they cannot be replayed into the restored copy.
 * PostgreSQL: `pg_restore` in one transaction; with `replace`, the schema is emptied first.
 */
export async function applySnapshot(target: DatabaseTarget, plainFile: string, replace: boolean): Promise<void> {
  if (target.dialect === 'sqlite') {
    for (const suffix of ['-wal', '-shm', '-journal']) await unlink(`${target.path}${suffix}`).catch(() => undefined)
    await rename(plainFile, target.path)
    return
  }
  if (replace) {
    const c = new (loadPg().Client)({ connectionString: target.url })
    await c.connect()
    try {
      await c.query('drop schema public cascade')
      await c.query('create schema public')
    } finally {
      await c.end()
    }
  }
  const { url, env } = pgConnection(target.url)
  const child = spawn('pg_restore', ['--no-owner', '--no-privileges', '--exit-on-error', '--single-transaction', `--dbname=${url}`, plainFile], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  child.stderr.resume()
  const code = await new Promise<number>((resolve) => {
    child.once('error', () => resolve(-1))
    child.once('close', (c) => resolve(c ?? -1))
  })
  if (code !== 0) throw new Error(`pg_restore exited with ${code}`)
}
