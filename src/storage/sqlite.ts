import SqliteDatabase from 'better-sqlite3-multiple-ciphers'

/** SQLite durability settings (D8): WAL, fsync on every commit, deleted pages zeroed. */
export const SQLITE_PRAGMAS = ['journal_mode = WAL', 'synchronous = FULL', 'foreign_keys = ON', 'busy_timeout = 5000', 'secure_delete = ON'] as const

export type SqliteConnection = SqliteDatabase.Database

/** Opens a connection with Tollgate's pragmas (used by the main handle and the decision writer thread). */
export function openSqlite(path: string): SqliteConnection {
  const conn = new SqliteDatabase(path)
  for (const p of SQLITE_PRAGMAS) conn.pragma(p)
  return conn
}

/**
 * The connection as Kysely's SQLite dialect sees it, with prepared statements reused by SQL text:
 * Kysely prepares every query afresh, and preparing costs ~10x running a small indexed lookup.
 * Safe because Kysely runs one query at a time per connection and never keeps a statement busy.
 */
export function withStatementCache(conn: SqliteConnection, max = 500): SqliteConnection {
  const cache = new Map<string, SqliteDatabase.Statement>()
  const prepare = (sql: string): SqliteDatabase.Statement => {
    let stmt = cache.get(sql)
    if (!stmt) {
      stmt = conn.prepare(sql)
      if (cache.size >= max) cache.delete(cache.keys().next().value!)
      cache.set(sql, stmt)
    }
    return stmt
  }
  return new Proxy(conn, {
    get(target, prop, receiver) {
      if (prop === 'prepare') return prepare
      const v = Reflect.get(target, prop, receiver) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
}
