import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { chmod, copyFile, mkdir, readdir, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { S3Client } from '@aws-sdk/client-s3'

/** Where backups go: a local folder, or an S3-compatible bucket (AWS S3, R2, MinIO). */
export type DestinationSettings =
  | { readonly kind: 'dir'; readonly dir: string }
  | {
    readonly kind: 's3'
    readonly bucket: string
    /** Prepended to every object key (e.g. `tollgate/`). */
    readonly prefix: string
    readonly region: string
    /** For R2, MinIO and other S3-compatible services (path-style addressing is then used). */
    readonly endpoint: string | undefined
    /** Unset: the AWS SDK's default credential chain (environment, instance role…). */
    readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string } | undefined
  }

export interface Destination {
  /** Where a backup of this name is, for people: a path or s3://bucket/key. */
  locate(name: string): string
  /** Writes the whole stream under `name`, atomically: afterwards the backup is complete or absent. */
  write(name: string, body: Readable): Promise<void>
  /** Names of the backups there (only names this module writes). */
  list(): Promise<string[]>
  remove(name: string): Promise<void>
  /** Copies a backup to a local file (created 0600). */
  fetch(name: string, toFile: string): Promise<void>
  close(): void
}

/** `tollgate-20260102T030405Z-1a2b3c4d.tgbk`: the creation time (UTC, seconds) is in the name. */
export const BACKUP_NAME = /^tollgate-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-[0-9a-f]{8}\.tgbk$/

export function backupName(at: number): string {
  const iso = new Date(at).toISOString() // 2026-01-02T03:04:05.678Z
  return `tollgate-${iso.slice(0, 19).replace(/[-:]/g, '')}Z-${randomBytes(4).toString('hex')}.tgbk`
}

/** When the backup of this name was made (ms), or undefined for a name this module did not write. */
export function backupTime(name: string): number | undefined {
  const m = BACKUP_NAME.exec(name)
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])) : undefined
}

export function openDestination(s: DestinationSettings): Destination {
  return s.kind === 'dir' ? new FolderDestination(s.dir) : new S3Destination(s)
}

class FolderDestination implements Destination {
  constructor(private readonly dir: string) {}

  locate(name: string): string {
    return join(this.dir, name)
  }

  async write(name: string, body: Readable): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    const partial = join(this.dir, `.${name}.${randomBytes(4).toString('hex')}.partial`)
    try {
      const out = createWriteStream(partial, { mode: 0o600, flags: 'wx', flush: true })
      await pipeline(body, out)
      await rename(partial, join(this.dir, name))
    } catch (err) {
      await unlink(partial).catch(() => undefined)
      throw err
    }
  }

  async list(): Promise<string[]> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[]
      throw err
    })
    return names.filter((n) => BACKUP_NAME.test(n)).sort()
  }

  async remove(name: string): Promise<void> {
    await unlink(join(this.dir, name))
  }

  async fetch(name: string, toFile: string): Promise<void> {
    await copyFile(join(this.dir, name), toFile)
    await chmod(toFile, 0o600)
  }

  close(): void {}
}

/** The AWS SDK (~20 MB of memory) is imported on the first S3 call, not with this module. */
const s3Sdk = () => Promise.all([import('@aws-sdk/client-s3'), import('@aws-sdk/lib-storage')]).then(([s3, storage]) => ({ ...s3, Upload: storage.Upload }))
type S3Sdk = Awaited<ReturnType<typeof s3Sdk>>

class S3Destination implements Destination {
  #ready: Promise<{ sdk: S3Sdk; client: S3Client }> | undefined

  constructor(private readonly s: Extract<DestinationSettings, { kind: 's3' }>) {}

  #open(): Promise<{ sdk: S3Sdk; client: S3Client }> {
    this.#ready ??= s3Sdk().then((sdk) => {
      const client = new sdk.S3Client({
        region: this.s.region,
        ...(this.s.endpoint ? { endpoint: this.s.endpoint, forcePathStyle: true } : {}),
        ...(this.s.credentials ? { credentials: this.s.credentials } : {}),
        maxAttempts: 3,
      })
      return { sdk, client }
    })
    return this.#ready
  }

  locate(name: string): string {
    return `s3://${this.s.bucket}/${this.s.prefix}${name}`
  }

  /** A multipart upload: it completes whole, or is aborted (no partial object is ever visible). */
  async write(name: string, body: Readable): Promise<void> {
    const { sdk, client } = await this.#open()
    const upload = new sdk.Upload({
      client,
      params: { Bucket: this.s.bucket, Key: `${this.s.prefix}${name}`, Body: body, ContentType: 'application/octet-stream' },
      leavePartsOnError: false,
    })
    // A source that fails mid-way (the snapshot or the encryption) must abort the upload, not end it.
    const failed = new Promise<never>((_, reject) => body.once('error', reject))
    failed.catch(() => undefined)
    try {
      await Promise.race([upload.done(), failed])
    } catch (err) {
      await upload.abort().catch(() => undefined)
      throw err
    }
  }

  async list(): Promise<string[]> {
    const { sdk, client } = await this.#open()
    const names: string[] = []
    let token: string | undefined
    do {
      const page = await client.send(new sdk.ListObjectsV2Command({ Bucket: this.s.bucket, Prefix: this.s.prefix, ContinuationToken: token }))
      for (const o of page.Contents ?? []) {
        const name = o.Key?.slice(this.s.prefix.length)
        if (name && BACKUP_NAME.test(name)) names.push(name)
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
    return names.sort()
  }

  async remove(name: string): Promise<void> {
    const { sdk, client } = await this.#open()
    await client.send(new sdk.DeleteObjectCommand({ Bucket: this.s.bucket, Key: `${this.s.prefix}${name}` }))
  }

  async fetch(name: string, toFile: string): Promise<void> {
    const { sdk, client } = await this.#open()
    const r = await client.send(new sdk.GetObjectCommand({ Bucket: this.s.bucket, Key: `${this.s.prefix}${name}` }))
    await pipeline(r.Body as Readable, createWriteStream(toFile, { mode: 0o600, flags: 'wx' }))
  }

  close(): void {
    void this.#ready?.then(({ client }) => client.destroy(), () => undefined)
  }
}
