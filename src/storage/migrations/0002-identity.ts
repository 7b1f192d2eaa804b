import type { Kysely, Migration } from 'kysely'
import { sql } from 'kysely'
import type { Dialect } from '../database.ts'
import { columnTypes } from './types.ts'

/** People, their sign-in identities, sessions, passkeys, memberships, invites, SSO and login links. */
export function identity(d: Dialect): Migration {
  const t = columnTypes(d)
  return {
    async up(db: Kysely<any>) {
      // `email` is the one piece of PII stored about a person (DATA-1). Accounts are never keyed on it (D3).
      await db.schema.createTable('user')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('email', 'text', (c) => c.notNull())
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .addColumn('disabled_at', t.bigint)
        .execute()

      // A sign-in identity: HMAC(server key, issuer ‖ sub) — pseudonymous, never the raw sub (D3).
      await db.schema.createTable('user_identity')
        .addColumn('subject_hash', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('user.id'))
        .addColumn('provider', 'text', (c) => c.notNull())
        .addColumn('org_id', 'text', (c) => c.references('org.id'))
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .execute()
      await db.schema.createIndex('user_identity_user').on('user_identity').column('user_id').execute()

      await db.schema.createTable('membership')
        .addColumn('org_id', 'text', (c) => c.notNull().references('org.id'))
        .addColumn('user_id', 'text', (c) => c.notNull().references('user.id'))
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .addPrimaryKeyConstraint('membership_pk', ['org_id', 'user_id'])
        .execute()
      await db.schema.createIndex('membership_user').on('membership').column('user_id').execute()

      // Sessions: only SHA-256 of the token (AUTH-3). The previous token stays valid for a few
      // seconds after a rotation so a browser's requests already in flight do not fail.
      await db.schema.createTable('session')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('user.id'))
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('prev_token_hash', 'text')
        .addColumn('prev_valid_until', t.bigint)
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('org_id', 'text', (c) => c.references('org.id'))
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .addColumn('absolute_expires_at', t.bigint, (c) => c.notNull())
        .addColumn('idle_timeout_ms', t.bigint)
        .addColumn('last_seen_at', t.bigint, (c) => c.notNull())
        .addColumn('auth_at', t.bigint, (c) => c.notNull())
        .addColumn('rotated_at', t.bigint, (c) => c.notNull())
        .addColumn('rotate_after', t.bigint)
        .addColumn('ended_at', t.bigint)
        .addColumn('end_reason', 'text')
        .execute()
      await db.schema.createIndex('session_user').on('session').column('user_id').execute()
      await sql`create unique index session_prev_token on session (prev_token_hash) where prev_token_hash is not null`.execute(db)

      await db.schema.createTable('passkey')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('user.id'))
        .addColumn('public_key', 'text', (c) => c.notNull())
        .addColumn('counter', t.bigint, (c) => c.notNull())
        .addColumn('transports', 'text')
        .addColumn('backed_up', 'integer', (c) => c.notNull())
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .addColumn('last_used_at', t.bigint)
        .execute()
      await db.schema.createIndex('passkey_user').on('passkey').column('user_id').execute()

      // Invites: the addressee's email until accepted or expired (then purged), the token only hashed.
      await db.schema.createTable('invite')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('org_id', 'text', (c) => c.notNull().references('org.id'))
        .addColumn('email', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('created_by', 'text')
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .addColumn('expires_at', t.bigint, (c) => c.notNull())
        .addColumn('accepted_at', t.bigint)
        .addColumn('revoked_at', t.bigint)
        .execute()
      await db.schema.createIndex('invite_org').on('invite').column('org_id').execute()

      // Per-org OpenID Connect SSO. The client secret is encrypted under the org's key.
      await db.schema.createTable('sso_config')
        .addColumn('org_id', 'text', (c) => c.primaryKey().references('org.id'))
        .addColumn('issuer', 'text', (c) => c.notNull())
        .addColumn('client_id', 'text', (c) => c.notNull())
        .addColumn('client_secret_sealed', 'text')
        .addColumn('allowed_domains', 'text', (c) => c.notNull())
        .addColumn('updated_at', t.bigint, (c) => c.notNull())
        .execute()

      // Single-use sign-in links (bootstrap): only the token's hash, 15-minute life.
      await db.schema.createTable('login_link')
        .addColumn('token_hash', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('user.id'))
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .addColumn('expires_at', t.bigint, (c) => c.notNull())
        .addColumn('used_at', t.bigint)
        .execute()

      // Instance-wide secrets (identity pseudonyms, flow-cookie sealing), wrapped under the master key.
      await db.schema.createTable('instance_key')
        .addColumn('purpose', 'text', (c) => c.primaryKey())
        .addColumn('wrapped', 'text', (c) => c.notNull())
        .addColumn('master_key_id', 'text', (c) => c.notNull())
        .addColumn('created_at', t.bigint, (c) => c.notNull())
        .execute()

      await db.schema.alterTable('api_key').addColumn('scope', 'text', (c) => c.notNull().defaultTo('gateway')).execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.alterTable('api_key').dropColumn('scope').execute()
      for (const table of ['instance_key', 'login_link', 'sso_config', 'invite', 'passkey', 'session', 'membership', 'user_identity', 'user']) await db.schema.dropTable(table).execute()
    },
  }
}
