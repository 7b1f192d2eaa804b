import type { FastifyInstance } from 'fastify'
import type { Cache } from '../cache/cache.ts'
import type { Database } from '../storage/database.ts'
import { sql } from 'kysely'
import type { Metrics } from './metrics.ts'
import type { Classifier } from '../classify/facts.ts'

export interface OpsDeps {
  readonly db: Database
  readonly cache: Cache
  readonly metrics: Metrics
  readonly classifier: Classifier
}

/** Whether the classifier's model has loaded (a readiness check never waits for it). */
export function classifierLoaded(c: Classifier): Promise<boolean> {
  const ready = c.ready?.()
  if (!ready) return Promise.resolve(true)
  return Promise.race([ready.then(() => true, () => false), new Promise<boolean>((r) => setImmediate(() => r(false)))])
}

/** Liveness, readiness and Prometheus metrics (OPS-1). None reveals configuration or data. */
export function registerOpsRoutes(app: FastifyInstance, d: OpsDeps): void {
  app.get('/healthz', async (_req, reply) => reply.type('application/json; charset=utf-8').send({ status: 'ok' }))

  app.get('/readyz', async (_req, reply) => {
    const [database, cache, classifier] = await Promise.all([
      sql`select 1 as ok`.execute(d.db.db).then(() => true, () => false),
      d.cache.ping(),
      classifierLoaded(d.classifier),
    ])
    const ready = database && cache && classifier
    return reply.code(ready ? 200 : 503).type('application/json; charset=utf-8')
      .send({ status: ready ? 'ready' : 'not_ready', checks: { database: database ? 'ok' : 'failing', cache: cache ? 'ok' : 'failing', classifier: classifier ? 'ok' : 'loading' } })
  })

  app.get('/metrics', async (_req, reply) => {
    const body = await d.metrics.registry.metrics()
    return reply.type(d.metrics.registry.contentType).send(body)
  })
}
