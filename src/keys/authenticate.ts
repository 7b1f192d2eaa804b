import { ok, stop, type Result } from '../core/result.ts'
import type { Stop } from '../core/stop.ts'
import type { KeyStore, VerifiedKey } from './keys.repo.ts'

/**
 * Step 1: the API key from `Authorization: Bearer …` or `x-api-key` (the Anthropic SDK sends the
 * first, older clients the second). Missing, malformed, unknown, wrong, revoked and expired all
 * answer the same `invalid_api_key`.
 */
export async function authenticate(headers: Record<string, string | string[] | undefined>, keys: KeyStore): Promise<Result<VerifiedKey, Stop>> {
  const presented = presentedKey(headers)
  if (presented === undefined) return stop({ code: 'invalid_api_key' })
  const key = await keys.verify(presented)
  // An admin-scope key is for the admin API only: here it is as good as no key.
  return key && key.scope === 'gateway' ? ok(key) : stop({ code: 'invalid_api_key' })
}

export function presentedKey(headers: Record<string, string | string[] | undefined>): string | undefined {
  const auth = headers['authorization']
  const bearer = typeof auth === 'string' && auth.length < 512 ? /^Bearer ([!-~]+)$/i.exec(auth)?.[1] : undefined
  const xApiKey = typeof headers['x-api-key'] === 'string' && headers['x-api-key'].length < 512 ? headers['x-api-key'] : undefined
  // Two different keys in one request is ambiguous: refuse rather than pick one.
  if (bearer !== undefined && xApiKey !== undefined && bearer !== xApiKey) return undefined
  return bearer ?? xApiKey
}
