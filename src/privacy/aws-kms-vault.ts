import {
  CreateAliasCommand, CreateKeyCommand, DecryptCommand, DeleteAliasCommand, DescribeKeyCommand, EncryptCommand, KMSClient, ScheduleKeyDeletionCommand,
  type KMSClientConfig,
} from '@aws-sdk/client-kms'
import { KekMissing, type KeyVault } from './vault.ts'

export interface AwsKmsVaultSettings {
  readonly region: string
  /** A custom endpoint (a KMS-compatible service, or a local stand-in in tests). */
  readonly endpoint?: string | undefined
  /** Explicit credentials; otherwise the AWS SDK's default chain (instance role, environment, profile). */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string } | undefined
  /** Alias prefix of the per-org keys, e.g. `alias/tollgate/`. */
  readonly aliasPrefix: string
  /** Days a destroyed org's KMS key waits before AWS deletes it (7–30); it is unusable at once. */
  readonly deletionWindowDays: number
}

const ORG_ID = /^[A-Za-z0-9_-]{1,64}$/
const PREFIX = 'kms1.'

/**
 * The key vault on AWS KMS (D13): one symmetric KMS key per org, found by its alias
 * (`<prefix><orgId>`). The KEK never leaves KMS: `seal` is Encrypt and `open` is Decrypt, both with
 * the org id as encryption context (bound into the ciphertext; a blob moved to another org does
 * not open). `destroy` schedules the key's deletion — KMS refuses to use a key pending deletion,
 * so the org's keys stop opening at once, in every copy of the database, and AWS deletes the key
 * after the window — and removes the alias. Every instance shares it: no shared storage needed.
 */
export class AwsKmsKeyVault implements KeyVault {
  readonly kind = 'aws-kms'
  readonly #kms: KMSClient

  constructor(private readonly s: AwsKmsVaultSettings, client?: KMSClient) {
    const config: KMSClientConfig = { region: s.region, maxAttempts: 3, ...(s.endpoint ? { endpoint: s.endpoint } : {}), ...(s.credentials ? { credentials: { ...s.credentials } } : {}) }
    this.#kms = client ?? new KMSClient(config)
  }

  async seal(orgId: string, plain: Buffer): Promise<string> {
    const keyId = await this.#ensureKey(orgId)
    const r = await this.#kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: plain, EncryptionContext: context(orgId) }))
    if (!r.CiphertextBlob) throw new Error('KMS returned no ciphertext')
    return PREFIX + Buffer.from(r.CiphertextBlob).toString('base64url')
  }

  async open(orgId: string, sealed: string): Promise<Buffer> {
    if (!sealed.startsWith(PREFIX)) throw new KekMissing()
    try {
      const r = await this.#kms.send(new DecryptCommand({ KeyId: this.#alias(orgId), CiphertextBlob: Buffer.from(sealed.slice(PREFIX.length), 'base64url'), EncryptionContext: context(orgId) }))
      if (!r.Plaintext) throw new Error('KMS returned no plaintext')
      return Buffer.from(r.Plaintext)
    } catch (err) {
      // The alias is gone (destroyed), the key is pending deletion, or the blob is not this org's.
      if (isKmsError(err, ['NotFoundException', 'KMSInvalidStateException', 'DisabledException', 'IncorrectKeyException', 'InvalidCiphertextException'])) throw new KekMissing()
      throw err
    }
  }

  async destroy(orgId: string): Promise<void> {
    let keyId: string | undefined
    try {
      keyId = (await this.#kms.send(new DescribeKeyCommand({ KeyId: this.#alias(orgId) }))).KeyMetadata?.KeyId
    } catch (err) {
      if (isKmsError(err, ['NotFoundException'])) return
      throw err
    }
    if (keyId) {
      try {
        await this.#kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: this.s.deletionWindowDays }))
      } catch (err) {
        if (!isKmsError(err, ['KMSInvalidStateException'])) throw err // already pending deletion
      }
    }
    await this.#kms.send(new DeleteAliasCommand({ AliasName: this.#alias(orgId) })).catch((err: unknown) => {
      if (!isKmsError(err, ['NotFoundException'])) throw err
    })
  }

  #alias(orgId: string): string {
    if (!ORG_ID.test(orgId)) throw new Error('invalid org id for the key vault')
    return `${this.s.aliasPrefix}${orgId}`
  }

  /** The org's key (by alias), created on first use; of two concurrent creators the alias picks one, the other's key is scheduled for deletion. */
  async #ensureKey(orgId: string): Promise<string> {
    const alias = this.#alias(orgId)
    try {
      const d = await this.#kms.send(new DescribeKeyCommand({ KeyId: alias }))
      if (d.KeyMetadata?.KeyState === 'Enabled') return alias
      throw new KekMissing() // pending deletion or disabled: a destroyed org gets no new key
    } catch (err) {
      if (!isKmsError(err, ['NotFoundException'])) throw err
    }
    const created = await this.#kms.send(new CreateKeyCommand({ Description: `Tollgate key-encryption key of org ${orgId}`, KeyUsage: 'ENCRYPT_DECRYPT', KeySpec: 'SYMMETRIC_DEFAULT', Tags: [{ TagKey: 'tollgate:org', TagValue: orgId }] }))
    const keyId = created.KeyMetadata?.KeyId
    if (!keyId) throw new Error('KMS returned no key id')
    try {
      await this.#kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: keyId }))
    } catch (err) {
      if (!isKmsError(err, ['AlreadyExistsException'])) throw err
      await this.#kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: this.s.deletionWindowDays })).catch(() => undefined)
    }
    return alias
  }
}

function context(orgId: string): Record<string, string> {
  return { tollgate_org: orgId }
}

function isKmsError(err: unknown, names: readonly string[]): boolean {
  const name = (err as { name?: unknown })?.name
  return typeof name === 'string' && names.includes(name)
}
