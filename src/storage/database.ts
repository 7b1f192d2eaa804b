import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import { Kysely, PostgresDialect, SqliteDialect, type LogEvent } from 'kysely'
import type PgModule from 'pg'
import type { DB } from './schema.ts'
import { openSqlite, withStatementCache } from './sqlite.ts'

export type Dialect = 'sqlite' | 'postgres'

/**
 * The database seam: one Kysely handle over SQLite (embedded default) or PostgreSQL.
 * Timestamps are integer milliseconds since the epoch in both; booleans are 0/1 integers.
 */
export interface Database {
  readonly db: Kysely<DB>
  readonly dialect: Dialect
  /** SQLite only: the database file, for the decision writer's own connection. */
  readonly sqlitePath: string | undefined
  close(): Promise<void>
}

export interface DatabaseOptions {
  /** postgres://… ; undefined selects SQLite at `<dataDir>/tollgate.db`. */
  readonly url: string | undefined
  readonly dataDir: string
  /** Receives SQL text and duration only; parameters are never passed to the logger. */
  readonly onQuery?: (sql: string, ms: number) => void
  readonly poolSize?: number
}

const require = createRequire(import.meta.url)

/** `pg` is loaded only when PostgreSQL is used (it is ~15 MB of an SQLite instance's memory otherwise). */
export function loadPg(): typeof PgModule {
  const pg = require('pg') as typeof PgModule
  // int8 (bigint, count(*)) as JS numbers: our ms timestamps and counts stay far below 2^53.
  pg.types.setTypeParser(20, (v) => Number.parseInt(v, 10))
  return pg
}

export function openDatabase(opts: DatabaseOptions): Database {
  const log = opts.onQuery
    ? (e: LogEvent) => opts.onQuery!(e.query.sql, e.queryDurationMillis)
    : undefined
  if (opts.url) {
    const pool = new (loadPg().Pool)({ connectionString: opts.url, max: opts.poolSize ?? 10 })
    // An idle client's error (server restart) must not crash the process; the next query reconnects.
    pool.on('error', () => {})
    const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }), ...(log ? { log } : {}) })
    return { db, dialect: 'postgres', sqlitePath: undefined, close: () => db.destroy() }
  }
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 })
  const path = join(opts.dataDir, 'tollgate.db')
  const conn = openSqlite(path)
  const db = new Kysely<DB>({ dialect: new SqliteDialect({ database: withStatementCache(conn) }), ...(log ? { log } : {}) })
  return { db, dialect: 'sqlite', sqlitePath: path, close: () => db.destroy() }
}
