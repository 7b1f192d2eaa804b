import type { Dialect } from '../database.ts'

/** The few column types that differ between SQLite and PostgreSQL. */
export function columnTypes(d: Dialect) {
  return {
    /** Milliseconds since the epoch, counts. */
    bigint: d === 'postgres' ? ('bigint' as const) : ('integer' as const),
    float: d === 'postgres' ? ('double precision' as const) : ('real' as const),
  }
}
