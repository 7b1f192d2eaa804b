import { createRequire } from 'node:module'
import type { Redis } from 'ioredis'
import type { Cache } from './cache.ts'

// ioredis is loaded only when Redis is configured.
const require = createRequire(import.meta.url)

// INCR then set the TTL only when this call created the key, atomically.
const INCREMENT = `local v = redis.call('INCR', KEYS[1]) if v == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return v`

/** The shared cache for several instances. Keys are namespaced by `prefix`. */
export class RedisCache implements Cache {
  readonly kind = 'redis' as const
  readonly redis: Redis

  constructor(url: string, private readonly prefix = 'tollgate:') {
    const { Redis: RedisClient } = require('ioredis') as typeof import('ioredis')
    this.redis = new RedisClient(url, {
      lazyConnect: false,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: true,
      // Keep retrying the connection in the background; commands fail fast meanwhile.
      retryStrategy: (times) => Math.min(times * 100, 2000),
    })
    // Connection errors surface on the commands that need Redis; the client's own error event
    // must not crash the process.
    this.redis.on('error', () => {})
    this.redis.defineCommand('tgIncrement', { numberOfKeys: 1, lua: INCREMENT })
  }

  async get(key: string): Promise<string | undefined> {
    return (await this.redis.get(this.prefix + key)) ?? undefined
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    await this.redis.set(this.prefix + key, value, 'PX', Math.round(ttlSeconds * 1000))
  }

  async setIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    return (await this.redis.set(this.prefix + key, value, 'PX', Math.round(ttlSeconds * 1000), 'NX')) === 'OK'
  }

  async increment(key: string, ttlSeconds: number): Promise<number> {
    const r = await (this.redis as unknown as { tgIncrement(k: string, ms: number): Promise<number> }).tgIncrement(this.prefix + key, Math.round(ttlSeconds * 1000))
    return Number(r)
  }

  async delete(key: string): Promise<void> {
    await this.redis.del(this.prefix + key)
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.redis.ping()) === 'PONG'
    } catch {
      return false
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect()
  }
}
