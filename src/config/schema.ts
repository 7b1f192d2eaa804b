import { Secret } from '../core/secret.ts'

/**
 * Every setting Tollgate reads: its environment variable, default, unit and a one-line doc.
 * `load()` parses them all, collects every problem (with how to fix it), and deep-freezes the
 * result. The README's configuration reference lists exactly these (a test checks it).
 */
export interface SettingDoc {
  readonly env: string
  readonly default: string
  readonly unit: string
  readonly doc: string
}

export type Problems = string[]

type Raw = Record<string, string | undefined>

export class Reader {
  readonly docs: SettingDoc[] = []
  readonly problems: Problems = []
  constructor(private readonly env: Raw) {}

  #raw(env: string, def: string, unit: string, doc: string): string | undefined {
    this.docs.push({ env, default: def, unit, doc })
    const v = this.env[env]
    return v === undefined || v.trim() === '' ? undefined : v.trim()
  }

  string(env: string, def: string, doc: string, check?: (v: string) => string | undefined): string {
    const v = this.#raw(env, def, '', doc) ?? def
    const why = check?.(v)
    if (why) this.problems.push(`${env}: ${why}`)
    return v
  }

  optional(env: string, doc: string, check?: (v: string) => string | undefined): string | undefined {
    const v = this.#raw(env, '(unset)', '', doc)
    if (v === undefined) return undefined
    const why = check?.(v)
    if (why) this.problems.push(`${env}: ${why}`)
    return v
  }

  secret(env: string, doc: string, check?: (v: string) => string | undefined): Secret | undefined {
    const v = this.#raw(env, '(unset)', 'secret', doc)
    if (v === undefined) return undefined
    const why = check?.(v)
    if (why) this.problems.push(`${env}: ${why}`)
    return new Secret(v)
  }

  int(env: string, def: number, unit: string, doc: string, min: number, max: number): number {
    const v = this.#raw(env, String(def), unit, doc)
    if (v === undefined) return def
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      this.problems.push(`${env} must be a whole number from ${min} to ${max}${unit ? ` (${unit})` : ''}; got a value that is not — unset it to use ${def}.`)
      return def
    }
    return Number(v)
  }

  bool(env: string, def: boolean, doc: string): boolean {
    const v = this.#raw(env, String(def), '', doc)
    if (v === undefined) return def
    if (v === 'true' || v === '1') return true
    if (v === 'false' || v === '0') return false
    this.problems.push(`${env} must be true or false.`)
    return def
  }

  oneOf<T extends string>(env: string, def: T, choices: readonly T[], doc: string): T {
    const v = this.#raw(env, def, '', doc)
    if (v === undefined) return def
    if (!(choices as readonly string[]).includes(v)) {
      this.problems.push(`${env} must be one of ${choices.join(', ')}.`)
      return def
    }
    return v as T
  }

  list(env: string, def: string, doc: string): string[] {
    const v = this.#raw(env, def === '' ? '(unset)' : def, 'comma-separated list', doc) ?? def
    return v.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
  }
}

export function httpUrl(v: string): string | undefined {
  try {
    const u = new URL(v)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must be an http:// or https:// URL.'
    if (u.username || u.password) return 'must not carry credentials in the URL; use the matching API key setting.'
    return undefined
  } catch {
    return 'must be an absolute http:// or https:// URL.'
  }
}

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '')
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h)
}
