import { sql } from 'kysely'
import type { TestApp } from '../helpers/app.ts'
import { rowCounts } from '../api/world.ts'

/** One stored row that holds a needle somewhere in one of its columns. */
export interface Found {
  readonly table: string
  readonly row: Record<string, unknown>
}

/**
 * Every row of every table (the list read from the database itself) in which some column's text
 * contains one of `needles`. The "nothing left" checks of RIGHTS-2 run it before the deletion too:
 * a positive control that it finds what is there.
 */
export async function rowsHolding(tg: TestApp, needles: readonly string[]): Promise<Found[]> {
  const db = tg.deps.db.db
  const out: Found[] = []
  for (const table of Object.keys(await rowCounts(tg))) {
    const { rows } = await sql<Record<string, unknown>>`select * from ${sql.table(table)}`.execute(db)
    for (const row of rows) {
      const text = Object.values(row).map((v) => (v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : String(v))).join('\u0000')
      if (needles.some((n) => text.includes(n))) out.push({ table, row })
    }
  }
  return out
}

/** Which tables hold a needle. */
export async function tablesHolding(tg: TestApp, needles: readonly string[]): Promise<string[]> {
  return [...new Set((await rowsHolding(tg, needles)).map((f) => f.table))].sort()
}
