import type { Clock } from '../core/clock.ts'
import type { Cache } from './cache.ts'

interface Entry {
  value: string
  expiresAt: number
}

/** The single-instance cache. Expired entries are dropped on read and by a periodic sweep. */
export class MemoryCache implements Cache {
  readonly kind = 'memory' as const
  readonly #map = new Map<string, Entry>()
  readonly #sweep: NodeJS.Timeout

  constructor(private readonly clock: Clock, sweepMs = 30_000) {
    this.#sweep = setInterval(() => this.#purge(), sweepMs)
    this.#sweep.unref()
  }

  #live(key: string): Entry | undefined {
    const e = this.#map.get(key)
    if (e && e.expiresAt <= this.clock.now()) {
      this.#map.delete(key)
      return undefined
    }
    return e
  }

  async get(key: string): Promise<string | undefined> {
    return this.#live(key)?.value
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    this.#map.set(key, { value, expiresAt: this.clock.now() + ttlSeconds * 1000 })
  }

  async setIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    if (this.#live(key)) return false
    this.#map.set(key, { value, expiresAt: this.clock.now() + ttlSeconds * 1000 })
    return true
  }

  async increment(key: string, ttlSeconds: number): Promise<number> {
    const e = this.#live(key)
    if (!e) {
      this.#map.set(key, { value: '1', expiresAt: this.clock.now() + ttlSeconds * 1000 })
      return 1
    }
    e.value = String(Number(e.value) + 1)
    return Number(e.value)
  }

  async delete(key: string): Promise<void> {
    this.#map.delete(key)
  }

  async ping(): Promise<boolean> {
    return true
  }

  async close(): Promise<void> {
    clearInterval(this.#sweep)
    this.#map.clear()
  }

  /** Number of live entries (tests). */
  get size(): number {
    this.#purge()
    return this.#map.size
  }

  #purge(): void {
    const now = this.clock.now()
    for (const [k, e] of this.#map) if (e.expiresAt <= now) this.#map.delete(k)
  }
}
