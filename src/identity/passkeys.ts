import type {
  AuthenticationResponseJSON, AuthenticatorTransport, PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON, RegistrationResponseJSON,
} from '@simplewebauthn/server'
import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import type { DB } from '../storage/schema.ts'

export interface PasskeyInfo {
  readonly id: string
  readonly createdAt: number
  readonly lastUsedAt: number | null
  readonly backedUp: boolean
}

/**
 * Passkeys (WebAuthn, AUTH-6): registration and assertion with user verification required.
 * Only public keys and counters are stored. Challenges live in the sealed flow cookie.
 */
/** @simplewebauthn/server (~20 MB of memory) is imported on the first passkey ceremony, not at start. */
let webauthn: Promise<typeof import('@simplewebauthn/server')> | undefined
const sdk = () => (webauthn ??= import('@simplewebauthn/server'))

export class Passkeys {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    /** The relying party: this instance's hostname and origin. */
    private readonly rp: { readonly id: string; readonly name: string; readonly origin: string },
  ) {}

  async registrationOptions(user: { id: string; email: string }): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const existing = await this.db.selectFrom('passkey').select(['id', 'transports']).where('user_id', '=', user.id).execute()
    const { generateRegistrationOptions } = await sdk()
    return generateRegistrationOptions({
      rpName: this.rp.name,
      rpID: this.rp.id,
      userName: user.email,
      userID: Uint8Array.from(Buffer.from(user.id, 'utf8')),
      attestationType: 'none',
      excludeCredentials: existing.map((c) => ({ id: c.id, ...(c.transports ? { transports: c.transports.split(',') as AuthenticatorTransport[] } : {}) })),
      authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
    })
  }

  /** Verifies and stores a new passkey; false when the response does not verify. */
  async register(userId: string, expectedChallenge: string, response: RegistrationResponseJSON): Promise<PasskeyInfo | undefined> {
    const { verifyRegistrationResponse } = await sdk()
    let v
    try {
      v = await verifyRegistrationResponse({ response, expectedChallenge, expectedOrigin: this.rp.origin, expectedRPID: this.rp.id, requireUserVerification: true })
    } catch {
      return undefined
    }
    if (!v.verified || !v.registrationInfo) return undefined
    const { credential, credentialBackedUp } = v.registrationInfo
    const row = {
      id: credential.id, user_id: userId, public_key: Buffer.from(credential.publicKey).toString('base64url'), counter: credential.counter,
      transports: credential.transports?.join(',') ?? null, backed_up: credentialBackedUp ? 1 : 0, created_at: this.clock.now(), last_used_at: null,
    }
    try {
      await this.db.insertInto('passkey').values(row).execute()
    } catch {
      return undefined // the same credential registered twice
    }
    return { id: row.id, createdAt: row.created_at, lastUsedAt: null, backedUp: credentialBackedUp }
  }

  /** Options for an assertion: for one user's passkeys (step-up) or any discoverable one (sign-in). */
  async authenticationOptions(userId?: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const allow = userId === undefined ? [] : await this.db.selectFrom('passkey').select(['id', 'transports']).where('user_id', '=', userId).execute()
    const { generateAuthenticationOptions } = await sdk()
    return generateAuthenticationOptions({
      rpID: this.rp.id,
      userVerification: 'required',
      allowCredentials: allow.map((c) => ({ id: c.id, ...(c.transports ? { transports: c.transports.split(',') as AuthenticatorTransport[] } : {}) })),
    })
  }

  /**
   * Verifies an assertion; returns the user it proves, or undefined. With `userId`, the passkey
   * must belong to that user (step-up). The signature counter must advance (clone detection).
   */
  async authenticate(expectedChallenge: string, response: AuthenticationResponseJSON, userId?: string): Promise<string | undefined> {
    if (typeof response?.id !== 'string' || response.id.length > 1024) return undefined
    const row = await this.db.selectFrom('passkey').selectAll().where('id', '=', response.id).executeTakeFirst()
    if (!row || (userId !== undefined && row.user_id !== userId)) return undefined
    const { verifyAuthenticationResponse } = await sdk()
    let v
    try {
      v = await verifyAuthenticationResponse({
        response, expectedChallenge, expectedOrigin: this.rp.origin, expectedRPID: this.rp.id, requireUserVerification: true,
        credential: { id: row.id, publicKey: Buffer.from(row.public_key, 'base64url'), counter: row.counter, ...(row.transports ? { transports: row.transports.split(',') as AuthenticatorTransport[] } : {}) },
      })
    } catch {
      return undefined
    }
    if (!v.verified) return undefined
    await this.db.updateTable('passkey').set({ counter: v.authenticationInfo.newCounter, last_used_at: this.clock.now() }).where('id', '=', row.id).execute()
    return row.user_id
  }

  async list(userId: string): Promise<PasskeyInfo[]> {
    const rows = await this.db.selectFrom('passkey').selectAll().where('user_id', '=', userId).orderBy('created_at').execute()
    return rows.map((r) => ({ id: r.id, createdAt: r.created_at, lastUsedAt: r.last_used_at, backedUp: r.backed_up === 1 }))
  }

  /** `db` is the caller's transaction when it audits the removal (effect and entry commit together). */
  async remove(userId: string, id: string, db: Kysely<DB> = this.db): Promise<boolean> {
    const res = await db.deleteFrom('passkey').where('id', '=', id).where('user_id', '=', userId).executeTakeFirst()
    return Number(res.numDeletedRows) === 1
  }
}
