import type { Kysely, Migration } from 'kysely'
import type { Dialect } from '../database.ts'

/**
 * A member's team (a cohort id, the policy COHORT pattern): fed to policies as the request's
 * cohort, and kept on each decision record as the team the request was decided under, so that
 * analytics by team count decision-time teams (RBAC-3).
 */
export function memberTeams(_d: Dialect): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema.alterTable('membership').addColumn('team', 'text').execute()
      await db.schema.alterTable('decision').addColumn('cohort', 'text').execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.alterTable('decision').dropColumn('cohort').execute()
      await db.schema.alterTable('membership').dropColumn('team').execute()
    },
  }
}
