import type { Kysely, Migration } from 'kysely'
import type { Dialect } from '../database.ts'

/** An org's choice of LLM classification (GW-3): null follows the instance setting. */
export function orgClassifier(_d: Dialect): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema.alterTable('org_setting').addColumn('classifier_llm', 'text').execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.alterTable('org_setting').dropColumn('classifier_llm').execute()
    },
  }
}
