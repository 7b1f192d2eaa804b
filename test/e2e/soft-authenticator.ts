import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'
import type {
  AuthenticationResponseJSON, PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON, RegistrationResponseJSON,
} from '@simplewebauthn/server'
import { isoCBOR } from '@simplewebauthn/server/helpers'

interface Credential {
  readonly id: string
  readonly key: KeyObject
  readonly rpId: string
  readonly userHandle: string
  counter: number
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest()

/**
 * A software WebAuthn authenticator (ES256, `none` attestation, user verified) for driving the
 * passkey endpoints over plain HTTP. `counter: false` models synced passkeys, which always
 * report a signature counter of 0 — so a replay cannot be caught by the counter and must be
 * caught by the server's single-use challenge.
 */
export class SoftAuthenticator {
  readonly #creds = new Map<string, Credential>()

  constructor(
    readonly origin: string,
    readonly opts: { readonly counter?: boolean } = {},
  ) {}

  #clientData(type: 'webauthn.create' | 'webauthn.get', challenge: string): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin: this.origin, crossOrigin: false }), 'utf8')
  }

  register(options: PublicKeyCredentialCreationOptionsJSON): RegistrationResponseJSON {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const jwk = publicKey.export({ format: 'jwk' })
    const rpId = options.rp.id ?? new URL(this.origin).hostname
    const idBytes = randomBytes(16)
    const cred: Credential = { id: idBytes.toString('base64url'), key: privateKey, rpId, userHandle: options.user.id, counter: 0 }
    const cose = new Map<number, number | Uint8Array>([
      [1, 2], [3, -7], [-1, 1], [-2, new Uint8Array(Buffer.from(jwk.x!, 'base64url'))], [-3, new Uint8Array(Buffer.from(jwk.y!, 'base64url'))],
    ])
    const coseBytes = Buffer.from(isoCBOR.encode(cose))
    const credIdLen = Buffer.alloc(2)
    credIdLen.writeUInt16BE(idBytes.length)
    // flags: UP (0x01) | UV (0x04) | AT (0x40)
    const authData = Buffer.concat([sha256(rpId), Buffer.from([0x45]), Buffer.alloc(4), Buffer.alloc(16), credIdLen, idBytes, coseBytes])
    const attestationObject = Buffer.from(isoCBOR.encode(new Map<string, unknown>([['fmt', 'none'], ['attStmt', new Map()], ['authData', new Uint8Array(authData)]]) as never))
    this.#creds.set(cred.id, cred)
    return {
      id: cred.id, rawId: cred.id, type: 'public-key', clientExtensionResults: {}, authenticatorAttachment: 'platform',
      response: {
        clientDataJSON: this.#clientData('webauthn.create', options.challenge).toString('base64url'),
        attestationObject: attestationObject.toString('base64url'),
        transports: ['internal'],
        publicKeyAlgorithm: -7,
      },
    }
  }

  /** An assertion with the first allowed credential (or any, for discoverable sign-in). */
  assert(options: PublicKeyCredentialRequestOptionsJSON, credentialId?: string): AuthenticationResponseJSON {
    const allowed = (options.allowCredentials ?? []).map((c) => c.id)
    const cred = credentialId !== undefined ? this.#creds.get(credentialId)
      : [...this.#creds.values()].find((c) => allowed.length === 0 || allowed.includes(c.id))
    if (!cred) throw new Error('SoftAuthenticator: no matching credential')
    if (this.opts.counter !== false) cred.counter++
    const counter = Buffer.alloc(4)
    counter.writeUInt32BE(cred.counter)
    const authData = Buffer.concat([sha256(cred.rpId), Buffer.from([0x05]), counter])
    const clientData = this.#clientData('webauthn.get', options.challenge)
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientData)]), cred.key)
    return {
      id: cred.id, rawId: cred.id, type: 'public-key', clientExtensionResults: {}, authenticatorAttachment: 'platform',
      response: {
        clientDataJSON: clientData.toString('base64url'),
        authenticatorData: authData.toString('base64url'),
        signature: signature.toString('base64url'),
        userHandle: cred.userHandle,
      },
    }
  }

  get credentialIds(): string[] {
    return [...this.#creds.keys()]
  }
}
