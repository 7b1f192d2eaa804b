import * as client from 'openid-client'
import { TollgateError } from '../core/errors.ts'
import { sha256Hex } from '../core/crypto.ts'
import type { Secret } from '../core/secret.ts'

/** The clock skew tolerated between Tollgate and an IdP (openid-client's own default). */
const CLOCK_TOLERANCE_S = 30

/** One OpenID Connect provider Tollgate signs people in with: Google, or an org's own IdP. */
export interface OidcProvider {
  readonly kind: 'google' | 'oidc'
  /** The org whose SSO this is (undefined for Google). */
  readonly orgId: string | undefined
  readonly issuer: string
  readonly clientId: string
  readonly clientSecret: Secret | undefined
  /** Email domains allowed to sign in; empty = any. For Google these must also match `hd`. */
  readonly allowedDomains: readonly string[]
}

/** What the browser carries between the start and the callback (sealed in the flow cookie). */
export interface OidcFlow {
  readonly state: string
  readonly nonce: string
  readonly verifier: string
  /** Set for a step-up: the IdP must have authenticated the person at most this many seconds ago. */
  readonly maxAge?: number
}

export interface VerifiedClaims {
  readonly issuer: string
  readonly sub: string
  readonly email: string
  readonly authTime: number | undefined
}

/**
 * Authorization code + PKCE (S256) with `state` and `nonce`, an exact redirect URI, and every
 * check openid-client makes on the ID token (signature via the IdP's JWKS, `iss`, `aud`/`azp`,
 * `exp`, nonce, `auth_time` against `max_age`, RFC 9207 `iss` when advertised), plus no `iat` or
 * `auth_time` in the future. Then:
 * `email_verified` must be true and the domain (and Google's `hd`) allowed.
 */
export class Oidc {
  readonly #configs = new Map<string, Promise<client.Configuration>>()

  constructor(
    private readonly redirectUri: string,
    /** Plain-http issuers are accepted only when explicitly allowed (local IdPs in development and tests). */
    private readonly allowInsecureIssuers: boolean,
  ) {}

  #config(p: OidcProvider): Promise<client.Configuration> {
    // The secret is part of the key: a rotated secret takes effect at once, and an org that names
    // another org's issuer and client id never borrows that org's cached credentials.
    const cacheKey = `${p.issuer}\0${p.clientId}\0${p.clientSecret ? sha256Hex(p.clientSecret.reveal()) : ''}`
    let c = this.#configs.get(cacheKey)
    if (!c) {
      // ID token signatures are verified against the IdP's JWKS (openid-client skips that by default
      // for tokens fetched from the token endpoint); HS*, `none` and unknown keys are refused.
      const execute = [client.enableNonRepudiationChecks, ...(this.allowInsecureIssuers ? [client.allowInsecureRequests] : [])]
      const options = { execute, timeout: 10 }
      c = client.discovery(new URL(p.issuer), p.clientId, { redirect_uris: [this.redirectUri], response_types: ['code'] },
        p.clientSecret ? client.ClientSecretPost(p.clientSecret.reveal()) : client.None(), options)
      // A failed discovery is not cached: the next sign-in tries again.
      c.catch(() => this.#configs.delete(cacheKey))
      this.#configs.set(cacheKey, c)
    }
    return c
  }

  /** The IdP URL to send the browser to, and the flow values to seal into its cookie. */
  async start(p: OidcProvider, opts: { stepUp?: boolean; loginHint?: string } = {}): Promise<{ url: URL; flow: OidcFlow }> {
    const config = await this.#config(p).catch(() => {
      throw new TollgateError('sign_in_failed', { reason: 'discovery_failed' })
    })
    const verifier = client.randomPKCECodeVerifier()
    const flow: OidcFlow = { state: client.randomState(), nonce: client.randomNonce(), verifier, ...(opts.stepUp ? { maxAge: 0 } : {}) }
    const params: Record<string, string> = {
      redirect_uri: this.redirectUri,
      scope: 'openid email',
      response_type: 'code',
      state: flow.state,
      nonce: flow.nonce,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    }
    // Step-up: max_age=0 (= prompt=login); the callback then insists on a fresh auth_time (D4).
    if (opts.stepUp) Object.assign(params, { max_age: '0', prompt: 'login' })
    if (p.kind === 'google' && p.allowedDomains.length === 1) params['hd'] = p.allowedDomains[0]!
    return { url: client.buildAuthorizationUrl(config, params), flow }
  }

  /** Completes the flow from the callback URL; throws `sign_in_failed` for every kind of failure. */
  async finish(p: OidcProvider, callbackUrl: URL, flow: OidcFlow): Promise<VerifiedClaims> {
    let claims: client.IDToken | undefined
    try {
      const config = await this.#config(p)
      const tokens = await client.authorizationCodeGrant(config, callbackUrl, {
        pkceCodeVerifier: flow.verifier,
        expectedState: flow.state,
        expectedNonce: flow.nonce,
        idTokenExpected: true,
        ...(flow.maxAge !== undefined ? { maxAge: flow.maxAge } : {}),
      })
      claims = tokens.claims()
    } catch (err) {
      throw new TollgateError('sign_in_failed', { reason: oidcReason(err) })
    }
    if (!claims) throw new TollgateError('sign_in_failed', { reason: 'no_id_token' })
    // openid-client checks exp but not an iat or auth_time in the future: such a token is forged or
    // from a broken clock, and a future auth_time would stretch the step-up window.
    const now = Math.floor(Date.now() / 1000)
    if (claims.iat > now + CLOCK_TOLERANCE_S) throw new TollgateError('sign_in_failed', { reason: 'iat_in_future' })
    if (typeof claims.auth_time === 'number' && claims.auth_time > now + CLOCK_TOLERANCE_S) throw new TollgateError('sign_in_failed', { reason: 'auth_time_in_future' })
    const email = typeof claims['email'] === 'string' ? claims['email'].toLowerCase() : undefined
    if (!email || claims['email_verified'] !== true) throw new TollgateError('sign_in_failed', { reason: 'email_not_verified' })
    const domain = email.slice(email.lastIndexOf('@') + 1)
    if (p.allowedDomains.length > 0) {
      if (!p.allowedDomains.includes(domain)) throw new TollgateError('sign_in_failed', { reason: 'domain_not_allowed' })
      // Google Workspace: the `hd` claim, not the email's domain, proves the account belongs to the domain.
      if (p.kind === 'google' && (typeof claims['hd'] !== 'string' || !p.allowedDomains.includes(claims['hd']))) {
        throw new TollgateError('sign_in_failed', { reason: 'hd_mismatch' })
      }
    }
    return { issuer: claims.iss, sub: claims.sub, email, authTime: typeof claims.auth_time === 'number' ? claims.auth_time : undefined }
  }
}

function oidcReason(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown }
  return typeof e?.code === 'string' ? e.code.slice(0, 64) : typeof e?.name === 'string' ? e.name.slice(0, 64) : 'unknown'
}
