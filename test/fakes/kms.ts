import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A local stand-in for AWS KMS speaking its JSON 1.1 wire protocol (POST /, `X-Amz-Target:
 * TrentService.<Operation>`, `application/x-amz-json-1.1`), for the operations Tollgate's KMS key
 * vault uses: CreateKey, CreateAlias, DescribeKey, Encrypt, Decrypt, ScheduleKeyDeletion,
 * DeleteAlias. Key material never leaves it; ciphertext blobs name their key and bind the
 * encryption context, as KMS's do. Errors use KMS's `__type` names. Signatures are not checked
 * (the official SDK signs every request; the test checks that a signature is present).
 */
export interface KmsStandIn {
  readonly url: string
  readonly calls: { readonly op: string; readonly signed: boolean }[]
  /** Key state by key id (Enabled | PendingDeletion). */
  state(keyId: string): string | undefined
  close(): Promise<void>
}

interface Key {
  readonly id: string
  readonly arn: string
  readonly material: Buffer
  state: 'Enabled' | 'PendingDeletion'
}

class KmsError extends Error {
  constructor(readonly type: string, message: string) {
    super(message)
  }
}

export async function startKms(): Promise<KmsStandIn> {
  const keys = new Map<string, Key>()
  const aliases = new Map<string, string>()
  const calls: { op: string; signed: boolean }[] = []
  const region = 'us-east-1'
  const account = '111122223333'

  const resolve = (keyId: unknown): Key => {
    if (typeof keyId !== 'string') throw new KmsError('ValidationException', 'KeyId is required')
    const id = keyId.startsWith('alias/') ? aliases.get(keyId) : keyId.replace(/^arn:aws:kms:[^:]+:\d+:key\//, '')
    const key = id === undefined ? undefined : keys.get(id)
    if (!key) throw new KmsError('NotFoundException', 'Key not found')
    return key
  }
  const context = (c: unknown) => Buffer.from(JSON.stringify(Object.entries((c ?? {}) as Record<string, string>).sort()))
  const metadata = (k: Key) => ({ KeyId: k.id, Arn: k.arn, KeyState: k.state, Enabled: k.state === 'Enabled', KeyUsage: 'ENCRYPT_DECRYPT', KeySpec: 'SYMMETRIC_DEFAULT', CreationDate: 1_700_000_000 })

  const ops: Record<string, (b: Record<string, unknown>) => unknown> = {
    CreateKey: () => {
      const id = randomUUID()
      const key: Key = { id, arn: `arn:aws:kms:${region}:${account}:key/${id}`, material: randomBytes(32), state: 'Enabled' }
      keys.set(id, key)
      return { KeyMetadata: metadata(key) }
    },
    CreateAlias: (b) => {
      const name = String(b['AliasName'])
      if (aliases.has(name)) throw new KmsError('AlreadyExistsException', 'Alias already exists')
      aliases.set(name, resolve(b['TargetKeyId']).id)
      return {}
    },
    DeleteAlias: (b) => {
      if (!aliases.delete(String(b['AliasName']))) throw new KmsError('NotFoundException', 'Alias not found')
      return {}
    },
    DescribeKey: (b) => ({ KeyMetadata: metadata(resolve(b['KeyId'])) }),
    Encrypt: (b) => {
      const key = resolve(b['KeyId'])
      if (key.state !== 'Enabled') throw new KmsError('KMSInvalidStateException', `${key.arn} is pending deletion.`)
      const nonce = randomBytes(12)
      const c = createCipheriv('aes-256-gcm', key.material, nonce)
      c.setAAD(context(b['EncryptionContext']))
      const ct = Buffer.concat([c.update(Buffer.from(String(b['Plaintext']), 'base64')), c.final()])
      const blob = Buffer.concat([Buffer.from(key.id, 'utf8'), Buffer.from([0]), nonce, c.getAuthTag(), ct])
      return { CiphertextBlob: blob.toString('base64'), KeyId: key.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' }
    },
    Decrypt: (b) => {
      const blob = Buffer.from(String(b['CiphertextBlob']), 'base64')
      const sep = blob.indexOf(0)
      const key = resolve(sep > 0 ? blob.subarray(0, sep).toString('utf8') : '')
      if (b['KeyId'] !== undefined && resolve(b['KeyId']).id !== key.id) throw new KmsError('IncorrectKeyException', 'The key ID in the request does not identify the key that encrypted the ciphertext.')
      if (key.state !== 'Enabled') throw new KmsError('KMSInvalidStateException', `${key.arn} is pending deletion.`)
      try {
        const d = createDecipheriv('aes-256-gcm', key.material, blob.subarray(sep + 1, sep + 13))
        d.setAAD(context(b['EncryptionContext']))
        d.setAuthTag(blob.subarray(sep + 13, sep + 29))
        const plain = Buffer.concat([d.update(blob.subarray(sep + 29)), d.final()])
        return { Plaintext: plain.toString('base64'), KeyId: key.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' }
      } catch {
        throw new KmsError('InvalidCiphertextException', '')
      }
    },
    ScheduleKeyDeletion: (b) => {
      const key = resolve(b['KeyId'])
      const days = Number(b['PendingWindowInDays'] ?? 30)
      if (days < 7 || days > 30) throw new KmsError('ValidationException', 'PendingWindowInDays must be 7 to 30')
      key.state = 'PendingDeletion'
      return { KeyId: key.arn, KeyState: key.state, PendingWindowInDays: days, DeletionDate: Math.floor(Date.now() / 1000) + days * 86_400 }
    },
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '')
      const op = target.startsWith('TrentService.') ? target.slice('TrentService.'.length) : ''
      calls.push({ op, signed: /^AWS4-HMAC-SHA256 /.test(String(req.headers['authorization'] ?? '')) })
      let status = 200
      let out: unknown
      try {
        const handler = ops[op]
        if (req.method !== 'POST' || !handler) throw new KmsError('UnsupportedOperationException', `${op} is not supported here`)
        out = handler(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>)
      } catch (err) {
        status = 400
        out = err instanceof KmsError ? { __type: err.type, message: err.message } : { __type: 'ValidationException', message: 'bad request' }
      }
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() }).end(JSON.stringify(out))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    state: (keyId) => keys.get(keyId)?.state,
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}
