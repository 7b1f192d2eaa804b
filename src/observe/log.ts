import pino, { type DestinationStream } from 'pino'

/**
 * The only fields a log line may carry. Anything else handed to the logger is dropped before
 * the line is written, so an accidental `log.info({ body })` writes nothing of the body.
 * Routes are logged as patterns (`/api/keys/:id`), never raw URLs.
 */
export const LOG_FIELDS = [
  'event', 'reqId', 'method', 'route', 'status', 'ms', 'orgId', 'keyId', 'code', 'provider', 'upstreamStatus',
  'reason', 'count', 'bytes', 'err', 'host', 'port', 'url', 'mode', 'storage', 'cache', 'environments', 'providers',
  'fingerprint', 'batch', 'version', 'signal', 'migrations', 'action', 'outcome', 'id', 'kind', 'outbox', 'link',
] as const
export type LogField = (typeof LOG_FIELDS)[number]
export type LogFields = Partial<Record<LogField, string | number | boolean | readonly string[] | null | undefined | SafeError>>

/** An error reduced to its type, code and stack frames: messages are dropped (drivers quote values in them). */
export interface SafeError {
  readonly type: string
  readonly code: string | undefined
  readonly frames: string
}

export function safeError(err: unknown): SafeError {
  const e = err as { name?: string; code?: unknown; stack?: string }
  const frames = typeof e?.stack === 'string' ? e.stack.split('\n').filter((l) => l.trimStart().startsWith('at ')).slice(0, 12).join('\n') : ''
  return { type: typeof e?.name === 'string' ? e.name : typeof err, code: typeof e?.code === 'string' ? e.code : undefined, frames }
}

export interface Logger {
  info(fields: LogFields, msg: string): void
  warn(fields: LogFields, msg: string): void
  error(fields: LogFields, msg: string): void
  debug(fields: LogFields, msg: string): void
}

const ALLOWED = new Set<string>(LOG_FIELDS)

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const base = pino({
    level,
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      level: (label) => ({ level: label }),
      // The allowlist, applied to every line whatever the call site passed.
      log: (obj) => {
        const out: Record<string, unknown> = {}
        for (const k of Object.keys(obj)) if (ALLOWED.has(k)) out[k] = obj[k]
        return out
      },
    },
  }, destination ?? pino.destination({ fd: 1, sync: false }))
  return {
    info: (f, m) => base.info(f, m),
    warn: (f, m) => base.warn(f, m),
    error: (f, m) => base.error(f, m),
    debug: (f, m) => base.debug(f, m),
  }
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} }
