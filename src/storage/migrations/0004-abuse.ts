import type { Kysely, Migration } from 'kysely'
import type { Dialect } from '../database.ts'
import { columnTypes } from './types.ts'

/** Per-org rate-limit tiers (LIMIT-1) and Idempotency-Key records (LIMIT-2, D2). */
export function abuse(d: Dialect): Migration {
  const t = columnTypes(d)
  return {
    async up(db: Kysely<any>) {
      await db.schema.createTable('rate_tier')
        .addColumn('org_id', 'text', (c) => c.notNull().references('org.id'))
        .addColumn('endpoint_group', 'text', (c) => c.notNull())
        .addColumn('per_minute', 'integer', (c) => c.notNull())
        .addColumn('updated_at', t.bigint, (c) => c.notNull())
        .addPrimaryKeyConstraint('rate_tier_pk', ['org_id', 'endpoint_group'])
        .execute()

      // One row per (org, credential, key). The key itself is stored only as an HMAC under the
      // org key; an AI request's row holds its decision id, never output; an admin request's row
      // holds its response, sealed under the org's data key.
      // org_id is the org of an org-scoped call, or '' for a person's own calls (/api/me/…).
      await db.schema.createTable('idempotency')
        .addColumn('org_id', 'text', (c) => c.notNull())
        .addColumn('credential_id', 'text', (c) => c.notNull())
        .addColumn('key_hash', 'text', (c) => c.notNull())
        .addColumn('method', 'text', (c) => c.notNull())
        .addColumn('route', 'text', (c) => c.notNull())
        .addColumn('fingerprint', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('lock_until', t.bigint, (c) => c.notNull())
        .addColumn('status', 'integer')
        .addColumn('response_sealed', 'text')
        .addColumn('decision_id', 'text')
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .addColumn('expires_at', t.bigint, (c) => c.notNull())
        .addPrimaryKeyConstraint('idempotency_pk', ['org_id', 'credential_id', 'key_hash'])
        .execute()
      await db.schema.createIndex('idempotency_expiry').on('idempotency').column('expires_at').execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable('idempotency').execute()
      await db.schema.dropTable('rate_tier').execute()
    },
  }
}
