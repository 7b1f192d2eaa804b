import { Writable } from 'node:stream'
import { createLogger, type Logger } from '../../src/observe/log.ts'

/** The real logger (allowlist included) writing into memory, so tests can read every line. */
export function captureLog(level = 'debug'): { logger: Logger; lines: string[]; text(): string } {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l: string) => l.length > 0))
      cb()
    },
  })
  const logger = createLogger(level, stream)
  return { logger, lines, text: () => lines.join('\n') }
}
