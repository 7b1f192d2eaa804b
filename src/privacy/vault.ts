import { randomBytes } from 'node:crypto'
import { chmod, link, mkdir, open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { unwrapKey, wrapKey, type MasterKey } from './wrap.ts'

/**
 * Per-org key-encryption keys kept outside the database and therefore outside its backups (D13):
 * an org key is sealed under its org's KEK here before it is wrapped under the master key, so
 * destroying the KEK makes every copy of the org key — in old backups too — unopenable. An
 * implementation holds one KEK per org, creates it on first `seal`, never on `open`, and binds
 * the org id to everything it seals. A KMS (e.g. AWS KMS: `seal` = Encrypt with the org id as
 * encryption context, `destroy` = ScheduleKeyDeletion) fits the same interface.
 */
export interface KeyVault {
  /** What the trust page and the doctor may say about it (never a path or a secret). */
  readonly kind: string
  /** Seals `plain` under the org's KEK, creating the KEK if the org has none yet. */
  seal(orgId: string, plain: Buffer): Promise<string>
  /** Opens what `seal` returned; throws KekMissing when the org's KEK was destroyed (or never existed here). */
  open(orgId: string, sealed: string): Promise<Buffer>
  /** Destroys the org's KEK for good; idempotent. */
  destroy(orgId: string): Promise<void>
}

/** The org's KEK is not in the vault: destroyed at termination, or the vault is not the one its keys were sealed in. */
export class KekMissing extends Error {
  constructor() {
    super('org key-encryption key not in the vault')
    this.name = 'KekMissing'
  }
}

/** Org ids are generated (core/ids.ts); anything else never becomes a path. */
const ORG_ID = /^[A-Za-z0-9_-]{1,64}$/

/**
 * KEKs as files: `<dir>/<orgId>.kek`, 32 random bytes, mode 0600 in a 0700 directory. A KEK is
 * written whole to a private temporary file, fsynced, then hard-linked to its name — a link never
 * replaces an existing file, so of two concurrent creators (two instances, two requests) exactly
 * one wins and the other reads the winner's, and nobody ever reads a half-written KEK. `destroy`
 * unlinks the file and fsyncs the directory. With several instances the directory must be shared
 * storage (the same KEKs everywhere), and it must not be inside anything that is backed up with
 * the database: it is what makes shredding reach old backups.
 */
export class FileKeyVault implements KeyVault {
  readonly kind = 'file'
  #ready: Promise<void> | undefined

  constructor(private readonly dir: string) {}

  async seal(orgId: string, plain: Buffer): Promise<string> {
    return wrapKey(await this.#kek(orgId, true), orgId, 'kek', plain)
  }

  async open(orgId: string, sealed: string): Promise<Buffer> {
    return unwrapKey(await this.#kek(orgId, false), orgId, 'kek', sealed)
  }

  async destroy(orgId: string): Promise<void> {
    try {
      await unlink(this.#path(orgId))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    await this.#syncDir()
  }

  #path(orgId: string): string {
    if (!ORG_ID.test(orgId)) throw new Error('invalid org id for the key vault')
    return join(this.dir, `${orgId}.kek`)
  }

  async #kek(orgId: string, create: boolean): Promise<MasterKey> {
    const path = this.#path(orgId)
    try {
      return asKek(await readFile(path))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      if (!create) throw new KekMissing()
    }
    await this.#ensureDir()
    const tmp = join(this.dir, `.${orgId}.${randomBytes(6).toString('hex')}.tmp`)
    const f = await open(tmp, 'wx', 0o600)
    try {
      await f.writeFile(randomBytes(32))
      await f.sync()
    } finally {
      await f.close()
    }
    try {
      await link(tmp, path)
      await this.#syncDir()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    } finally {
      await unlink(tmp).catch(() => undefined)
    }
    return asKek(await readFile(path))
  }

  #ensureDir(): Promise<void> {
    return (this.#ready ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 })
      await chmod(this.dir, 0o700)
    })().catch((err: unknown) => {
      this.#ready = undefined
      throw err
    }))
  }

  async #syncDir(): Promise<void> {
    const d = await open(this.dir, 'r')
    try {
      await d.sync()
    } finally {
      await d.close()
    }
  }
}

function asKek(bytes: Buffer): MasterKey {
  if (bytes.length !== 32) throw new Error('a key-encryption key in the vault is not 32 bytes')
  return { id: 'kek', key: bytes }
}
