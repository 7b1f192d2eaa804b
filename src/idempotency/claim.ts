import type { Kysely } from 'kysely'
import { hmacSha256 } from '../core/crypto.ts'
import type { ErrorCode } from '../core/errors.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'
import { canonicalJson, parseIdempotencyKey } from './key.ts'
import type { IdempotencyScope, IdempotencyStore, Recorded } from './store.ts'

export interface Claimed {
  readonly scope: IdempotencyScope
  readonly keyHash: string
  /** The key the response is sealed under (org data key, or the instance key for personal calls). */
  readonly sealKey: Buffer
}

export type IdempotencyStep =
  | { readonly kind: 'none' }
  | { readonly kind: 'claimed'; readonly claim: Claimed }
  | { readonly kind: 'replay'; readonly recorded: Recorded; readonly sealKey: Buffer }
  | { readonly kind: 'stop'; readonly code: ErrorCode }

/**
 * Step 3 (LIMIT-2, D2): an Idempotency-Key is kept only as an HMAC under the org's key, the
 * request only as an HMAC of its canonical JSON — never the key or the body themselves.
 */
export async function claimIdempotency(store: IdempotencyStore, keyring: OrgKeyring, header: string | string[] | undefined, scope: IdempotencyScope, body: unknown, db?: Kysely<DB>, decisionId?: string): Promise<IdempotencyStep> {
  const parsed = parseIdempotencyKey(header)
  if (parsed === undefined) return { kind: 'none' }
  if (!parsed.ok) return { kind: 'stop', code: 'idempotency_key_invalid' }
  const key = scope.orgId ? await keyring.key(scope.orgId, 'fingerprint', db) : await keyring.instanceKey('replay', db)
  const sealKey = scope.orgId ? await keyring.key(scope.orgId, 'data', db) : key
  const keyHash = hmacSha256(key, `idem-key\0${parsed.value}`).toString('base64url')
  const fingerprint = hmacSha256(key, `idem-req\0${canonicalJson(body ?? null)}`).toString('base64url')
  const c = await store.claim(scope, keyHash, fingerprint, decisionId)
  if (c.kind === 'claimed') return { kind: 'claimed', claim: { scope, keyHash, sealKey } }
  if (c.kind === 'replay') return { kind: 'replay', recorded: c.recorded, sealKey }
  return { kind: 'stop', code: c.kind === 'in_flight' ? 'idempotency_in_flight' : 'idempotency_conflict' }
}

/**
 * Which outcomes a key remembers: completed operations (2xx) and decisions (403: a policy block,
 * a permission refusal). Invalid input, missing things, limits and transient failures are
 * forgotten, so the client may fix the request or retry it with the same key.
 */
export function keepsOutcome(status: number): boolean {
  return status < 400 || status === 403
}
