// The cache contract: the same tests on MemoryCache (time moved by an injected clock) and
// RedisCache (a unique key prefix per run; time passes for real, in a few hundred ms).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, test, type TestContext } from 'node:test'
import type { Cache } from '../../src/cache/cache.ts'
import { MemoryCache } from '../../src/cache/memory.ts'
import { RedisCache } from '../../src/cache/redis.ts'
import { needService, REDIS_URL } from '../helpers/services.ts'
import { ManualClock } from './storage-world.ts'

interface CacheWorld {
  readonly cache: Cache
  /** Lets `ms` of cache time pass: moves the clock (memory) or waits (Redis). */
  advance(ms: number): Promise<void>
}

const IMPLEMENTATIONS: Record<'memory' | 'redis', (t: TestContext) => Promise<CacheWorld | undefined>> = {
  async memory(t) {
    const clock = new ManualClock()
    const cache = new MemoryCache(clock)
    t.after(() => cache.close())
    return { cache, advance: async (ms) => clock.advance(ms) }
  },
  async redis(t) {
    if (!(await needService(t, 'redis'))) return undefined
    const prefix = `tollgate-test:${randomBytes(6).toString('hex')}:`
    const cache = new RedisCache(REDIS_URL, prefix)
    t.after(async () => {
      const keys = await cache.redis.keys(`${prefix}*`)
      if (keys.length > 0) await cache.redis.del(...keys)
      await cache.close()
    })
    return { cache, advance: (ms) => new Promise((r) => setTimeout(r, ms)) }
  },
}

// Short TTLs keep the Redis run fast; the memory clock makes the same numbers exact.
const TTL_S = 0.3

// First, so ioredis's leftover reconnect timer (about 2 s) runs out while the suites run.
test('OPS-1: RedisCache.ping reports false, without throwing, when Redis is unreachable', async () => {
  // Port 1 on loopback: connection refused at once.
  const cache = new RedisCache('redis://127.0.0.1:1', `tollgate-test:${randomBytes(4).toString('hex')}:`)
  try {
    const started = Date.now()
    assert.equal(await cache.ping(), false)
    assert.ok(Date.now() - started < 5000, 'answers promptly')
  } finally {
    await cache.close()
  }
})

for (const [kind, make] of Object.entries(IMPLEMENTATIONS)) {
  describe(`cache contract [${kind}]`, () => {
    test(`OPS-1: get/set round-trips, overwrites, and delete removes [${kind}]`, async (t) => {
      const w = await make(t)
      if (!w) return
      const { cache } = w
      assert.equal(cache.kind, kind)
      assert.equal(await cache.get('missing'), undefined)
      await cache.set('a', 'one', 60)
      assert.equal(await cache.get('a'), 'one')
      await cache.set('a', 'two', 60)
      assert.equal(await cache.get('a'), 'two')
      await cache.set('unicode', 'ünï ✓', 60)
      assert.equal(await cache.get('unicode'), 'ünï ✓')
      await cache.delete('a')
      assert.equal(await cache.get('a'), undefined)
      await cache.delete('never-set')
      assert.equal(await cache.setIfAbsent('a', 'three', 60), true, 'a deleted key is absent again')
    })

    test(`LIMIT-1: set and setIfAbsent expire after their TTL [${kind}]`, async (t) => {
      const w = await make(t)
      if (!w) return
      const { cache } = w
      await cache.set('s', 'v', TTL_S)
      assert.equal(await cache.setIfAbsent('n', 'v', TTL_S), true)
      await cache.set('long', 'v', 60)
      assert.equal(await cache.get('s'), 'v')
      await w.advance(TTL_S * 1000 + 100)
      assert.equal(await cache.get('s'), undefined, 'set expired')
      assert.equal(await cache.get('n'), undefined, 'setIfAbsent expired')
      assert.equal(await cache.get('long'), 'v', 'a longer TTL is still there')
      assert.equal(await cache.setIfAbsent('n', 'again', 60), true, 'an expired key counts as absent')
    })

    test(`LIMIT-2: setIfAbsent is atomic: 50 concurrent callers, exactly one wins [${kind}]`, async (t) => {
      const w = await make(t)
      if (!w) return
      const { cache } = w
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => cache.setIfAbsent('claim', `caller-${i}`, 60)))
      assert.equal(results.filter(Boolean).length, 1)
      const winner = results.indexOf(true)
      assert.equal(await cache.get('claim'), `caller-${winner}`, 'the winner’s value is the one stored')
      assert.equal(await cache.setIfAbsent('claim', 'late', 60), false)
    })

    test(`LIMIT-1: increment is atomic under 100 concurrent callers, and its TTL is applied once, never extended [${kind}]`, async (t) => {
      const w = await make(t)
      if (!w) return
      const { cache } = w
      const values = await Promise.all(Array.from({ length: 100 }, () => cache.increment('counter', TTL_S * 2)))
      assert.deepEqual([...values].sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i + 1), 'each caller saw a distinct value')
      assert.equal(await cache.get('counter'), '100')

      // Increments after creation do not push the expiry back.
      await w.advance(TTL_S * 1000)
      assert.equal(await cache.increment('counter', TTL_S * 2), 101)
      await w.advance(TTL_S * 1000 + 100)
      assert.equal(await cache.get('counter'), undefined, 'expired at creation + TTL despite later increments')
      assert.equal(await cache.increment('counter', 60), 1, 'a new window starts at 1')
    })

    test(`OPS-1: ping reports a live backend [${kind}]`, async (t) => {
      const w = await make(t)
      if (!w) return
      assert.equal(await w.cache.ping(), true)
    })
  })
}
