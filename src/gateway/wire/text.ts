import { hmacSha256 } from '../../core/crypto.ts'
import type { ModelRequest } from '../../core/model.ts'

/**
 * The prompt fingerprint (D1, TRANSIT-4): HMAC-SHA-256 under the org's own key over the system
 * prompt and every text part, base64url. Stable within an org, unlinkable across orgs, not
 * confirmable by guessing without the key.
 */
export function promptFingerprint(r: ModelRequest, orgKey: Buffer): string {
  const h = [r.system?.reveal() ?? '']
  for (const m of r.messages) for (const p of m.parts) if (p.kind === 'text') h.push(`${m.role}\0${p.text.reveal()}`)
  return hmacSha256(orgKey, `prompt\0${h.join('\u0001')}`).toString('base64url')
}
