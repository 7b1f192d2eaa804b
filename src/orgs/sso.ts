import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import { Secret } from '../core/secret.ts'
import { seal, unseal } from '../identity/seal.ts'
import type { OidcProvider } from '../identity/oidc.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'

export interface SsoSettings {
  readonly issuer: string
  readonly clientId: string
  /** Write-only: presented as `has_client_secret`, never returned. */
  readonly clientSecret: string | undefined
  readonly allowedDomains: readonly string[]
}

export interface SsoView {
  readonly issuer: string
  readonly clientId: string
  readonly hasClientSecret: boolean
  readonly allowedDomains: readonly string[]
  readonly updatedAt: number
}

const FOREVER = Number.MAX_SAFE_INTEGER

/** Per-org OpenID Connect SSO settings (AUTH-2). The client secret is sealed under the org's data key. */
export class SsoStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    private readonly keyring: OrgKeyring,
  ) {}

  async view(orgId: string): Promise<SsoView | undefined> {
    const row = await this.db.selectFrom('sso_config').selectAll().where('org_id', '=', orgId).executeTakeFirst()
    return row && { issuer: row.issuer, clientId: row.client_id, hasClientSecret: row.client_secret_sealed !== null, allowedDomains: splitDomains(row.allowed_domains), updatedAt: row.updated_at }
  }

  /** The provider to sign people in with, secret unsealed in memory. */
  async provider(orgId: string): Promise<OidcProvider | undefined> {
    const row = await this.db.selectFrom('sso_config').selectAll().where('org_id', '=', orgId).executeTakeFirst()
    if (!row) return undefined
    let clientSecret: Secret | undefined
    if (row.client_secret_sealed !== null) {
      const opened = unseal<{ s: string }>(await this.keyring.key(orgId, 'data'), row.client_secret_sealed, 0, `sso:${orgId}`)
      if (!opened) return undefined
      clientSecret = new Secret(opened.s)
    }
    return { kind: 'oidc', orgId, issuer: row.issuer, clientId: row.client_id, clientSecret, allowedDomains: splitDomains(row.allowed_domains) }
  }

  async put(trx: Kysely<DB>, orgId: string, s: SsoSettings): Promise<void> {
    const sealed = s.clientSecret === undefined ? null : seal(await this.keyring.key(orgId, 'data', trx), { s: s.clientSecret }, FOREVER, `sso:${orgId}`)
    const row = { org_id: orgId, issuer: s.issuer, client_id: s.clientId, client_secret_sealed: sealed, allowed_domains: s.allowedDomains.join(','), updated_at: this.clock.now() }
    await trx.insertInto('sso_config').values(row)
      .onConflict((oc) => oc.column('org_id').doUpdateSet({ issuer: row.issuer, client_id: row.client_id, client_secret_sealed: row.client_secret_sealed, allowed_domains: row.allowed_domains, updated_at: row.updated_at }))
      .execute()
  }

  async remove(trx: Kysely<DB>, orgId: string): Promise<boolean> {
    const r = await trx.deleteFrom('sso_config').where('org_id', '=', orgId).executeTakeFirst()
    return Number(r.numDeletedRows) === 1
  }
}

function splitDomains(v: string): string[] {
  return v.split(',').map((d) => d.trim()).filter((d) => d.length > 0)
}
