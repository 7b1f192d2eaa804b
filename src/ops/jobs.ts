import type { Logger } from '../observe/log.ts'
import { safeError } from '../observe/log.ts'

export interface Job {
  readonly name: string
  readonly everyMs: number
  run(): Promise<number>
}

/**
 * Scheduled housekeeping (retention sweeps, audit checkpoints). Each job runs on its own interval, never twice at
 * once; a failure is logged and retried at the next tick. Tests call `runAll()` with an
 * injected clock instead of waiting.
 */
export class Jobs {
  readonly #timers: NodeJS.Timeout[] = []
  readonly #running = new Set<string>()

  constructor(
    readonly jobs: readonly Job[],
    private readonly log: Logger,
  ) {}

  start(): void {
    for (const job of this.jobs) {
      const t = setInterval(() => void this.#run(job), job.everyMs)
      t.unref()
      this.#timers.push(t)
    }
  }

  async runAll(): Promise<Record<string, number>> {
    const out: Record<string, number> = {}
    for (const job of this.jobs) out[job.name] = await this.#run(job)
    return out
  }

  stop(): void {
    for (const t of this.#timers.splice(0)) clearInterval(t)
  }

  async #run(job: Job): Promise<number> {
    if (this.#running.has(job.name)) return 0
    this.#running.add(job.name)
    try {
      const n = await job.run()
      if (n > 0) this.log.info({ event: 'job', kind: job.name, count: n }, 'scheduled job done')
      return n
    } catch (err) {
      this.log.error({ event: 'job', kind: job.name, err: safeError(err) }, 'scheduled job failed')
      return 0
    } finally {
      this.#running.delete(job.name)
    }
  }
}
