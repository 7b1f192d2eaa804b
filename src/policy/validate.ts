import { DOMAINS, INTENTS, PII_KINDS, SAFETY_CODES, SEVERITIES, type PiiKind, type SafetyCode } from '../classify/facts.ts'
import { ROLES } from '../orgs/rbac.ts'
import {
  COHORT, IMAGE_LABEL, LIMITS, MIME_TYPE, REASON, RULE_ID,
  type OnError, type OutputFilter, type PolicyDocument, type PolicyRule, type PromptFilter, type RuleConditions,
} from './document.ts'
import { ACTIONS } from './types.ts'

/** One problem in a policy document: where (a JSONPath such as `$.rules[2].when.safety.min_score`) and what. */
export interface PolicyProblem {
  readonly path: string
  readonly message: string
}

export type PolicyValidation = { readonly ok: true; readonly doc: PolicyDocument } | { readonly ok: false; readonly problems: readonly PolicyProblem[] }

/**
 * Validates untrusted JSON as a policy document and returns it normalized (every default filled
 * in, deep-frozen), or every problem found, each with its exact path. Messages are fixed text
 * and paths are built from the schema's own names and indexes: nothing from the input is echoed,
 * except an unknown field's name when it is a plain identifier (`[A-Za-z0-9_]{1,64}`).
 */
export function validatePolicy(input: unknown): PolicyValidation {
  const v = new Validator()
  const doc = v.document(input)
  if (v.problems.length > 0 || doc === undefined) return { ok: false, problems: v.problems }
  return { ok: true, doc: deepFreeze(doc) }
}

const ON_ERROR = ['block', 'allow', 'skip'] as const
const DEFAULT_ACTIONS = ['allow', 'challenge', 'block'] as const
const OUTPUT_ACTIONS = ['allow', 'block'] as const
const SAFE_KEY = /^[A-Za-z0-9_]{1,64}$/

type Json = Record<string, unknown>

class Validator {
  readonly problems: PolicyProblem[] = []
  #overflow = false

  problem(path: string, message: string): undefined {
    if (this.problems.length < LIMITS.problems) this.problems.push({ path, message })
    else if (!this.#overflow) {
      this.#overflow = true
      this.problems.push({ path: '$', message: `more than ${LIMITS.problems} problems: fix these first` })
    }
    return undefined
  }

  /** An object with only the allowed keys (each unknown key is one problem). */
  object(value: unknown, path: string, allowed: readonly string[], required: readonly string[] = []): Json | undefined {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return this.problem(path, 'must be an object')
    const obj = value as Json
    for (const key of Object.keys(obj)) {
      if (allowed.includes(key)) continue
      if (SAFE_KEY.test(key)) this.problem(`${path}.${key}`, `is not a known field (allowed: ${allowed.join(', ')})`)
      else this.problem(path, `has a field that is not known (allowed: ${allowed.join(', ')}); its name is not shown`)
    }
    for (const key of required) if (!Object.hasOwn(obj, key)) this.problem(`${path}.${key}`, 'is required')
    return obj
  }

  oneOf<T extends string>(value: unknown, path: string, allowed: readonly T[]): T | undefined {
    if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T
    return this.problem(path, `must be one of: ${allowed.join(', ')}`)
  }

  matching(value: unknown, path: string, re: RegExp, what: string): string | undefined {
    if (typeof value === 'string' && re.test(value)) return value
    return this.problem(path, `must be ${what}`)
  }

  boolean(value: unknown, path: string): boolean | undefined {
    if (typeof value === 'boolean') return value
    return this.problem(path, 'must be true or false')
  }

  number(value: unknown, path: string, min: number, max: number, integer = false): number | undefined {
    if (typeof value !== 'number' || !Number.isFinite(value)) return this.problem(path, integer ? `must be a whole number from ${min} to ${max}` : `must be a number from ${min} to ${max}`)
    if (integer && !Number.isInteger(value)) return this.problem(path, `must be a whole number from ${min} to ${max}`)
    if (value < min || value > max) return this.problem(path, `must be from ${min} to ${max}`)
    return value
  }

  /** A non-empty list of distinct items, each checked by `item`. */
  list<T>(value: unknown, path: string, item: (v: unknown, p: string) => T | undefined): T[] | undefined {
    if (!Array.isArray(value)) return this.problem(path, 'must be a list')
    if (value.length === 0) return this.problem(path, 'must not be empty (leave the condition out to match anything)')
    if (value.length > LIMITS.listItems) return this.problem(path, `must have at most ${LIMITS.listItems} items`)
    const out: T[] = []
    value.forEach((raw, i) => {
      const p = `${path}[${i}]`
      const checked = item(raw, p)
      if (checked === undefined) return
      const first = out.indexOf(checked)
      if (first >= 0) this.problem(p, `repeats ${path}[${value.indexOf(raw)}]`)
      else out.push(checked)
    })
    return out
  }

  document(input: unknown): PolicyDocument | undefined {
    const o = this.object(input, '$', ['version', 'default_action', 'rules', 'filters', 'output_moderation'], ['version', 'default_action', 'rules'])
    if (!o) return undefined
    if (Object.hasOwn(o, 'version') && o['version'] !== 1) this.problem('$.version', 'must be 1 (the only format version this Tollgate reads)')
    let defaultAction: PolicyDocument['default_action'] | undefined
    if (Object.hasOwn(o, 'default_action')) {
      if (o['default_action'] === 'redact') this.problem('$.default_action', 'cannot be redact: redaction needs PII kinds, so use a rule with when.pii and action redact')
      else defaultAction = this.oneOf(o['default_action'], '$.default_action', DEFAULT_ACTIONS)
    }
    const rules = Object.hasOwn(o, 'rules') ? this.rules(o['rules']) : undefined
    const filters = this.filters(o['filters'])
    const outputModeration = this.outputModeration(o['output_moderation'])
    if (defaultAction === undefined || rules === undefined || filters === undefined || outputModeration === undefined) return undefined
    return { version: 1, default_action: defaultAction, rules, filters, output_moderation: outputModeration }
  }

  rules(value: unknown): PolicyRule[] | undefined {
    if (!Array.isArray(value)) return this.problem('$.rules', 'must be a list (it may be empty)')
    if (value.length > LIMITS.rules) return this.problem('$.rules', `must have at most ${LIMITS.rules} rules`)
    const out: PolicyRule[] = []
    const ids = new Map<string, number>()
    value.forEach((raw, i) => {
      const rule = this.rule(raw, `$.rules[${i}]`)
      if (rule === undefined) return
      const first = ids.get(rule.id)
      if (first !== undefined) this.problem(`$.rules[${i}].id`, `is the same id as $.rules[${first}].id: rule ids must be unique`)
      else ids.set(rule.id, i)
      out.push(rule)
    })
    return out.length === value.length ? out : undefined
  }

  rule(value: unknown, path: string): PolicyRule | undefined {
    const o = this.object(value, path, ['id', 'when', 'action', 'reason', 'on_error', 'shadow'], ['id', 'when', 'action', 'reason'])
    if (!o) return undefined
    const id = Object.hasOwn(o, 'id') ? this.matching(o['id'], `${path}.id`, RULE_ID, '1-64 characters: lowercase letters, digits, _ and -, starting with a letter or digit') : undefined
    const when = Object.hasOwn(o, 'when') ? this.conditions(o['when'], `${path}.when`) : undefined
    const action = Object.hasOwn(o, 'action') ? this.oneOf(o['action'], `${path}.action`, ACTIONS) : undefined
    if (action === 'redact' && when !== undefined && when.pii === undefined) {
      this.problem(`${path}.action`, 'redact needs a when.pii condition: it names the PII kinds to redact')
    }
    const reason = Object.hasOwn(o, 'reason') ? this.matching(o['reason'], `${path}.reason`, REASON, 'a reason code: 1-64 characters, lowercase letters, digits and _, starting with a letter') : undefined
    const onError: OnError | undefined = Object.hasOwn(o, 'on_error') ? this.oneOf(o['on_error'], `${path}.on_error`, ON_ERROR) : 'block'
    const shadow = Object.hasOwn(o, 'shadow') ? this.boolean(o['shadow'], `${path}.shadow`) : false
    if (id === undefined || when === undefined || action === undefined || reason === undefined || onError === undefined || shadow === undefined) return undefined
    if (action === 'redact' && when.pii === undefined) return undefined
    return { id, when, action, reason, on_error: onError, shadow }
  }

  conditions(value: unknown, path: string): RuleConditions | undefined {
    const o = this.object(value, path, ['domains', 'intents', 'safety', 'pii', 'prompt_injection', 'attachments', 'roles', 'cohorts'])
    if (!o) return undefined
    const before = this.problems.length
    const out: { -readonly [K in keyof RuleConditions]: RuleConditions[K] } = {}
    if (Object.hasOwn(o, 'domains')) out.domains = this.list(o['domains'], `${path}.domains`, (v, p) => this.oneOf(v, p, DOMAINS))
    if (Object.hasOwn(o, 'intents')) out.intents = this.list(o['intents'], `${path}.intents`, (v, p) => this.oneOf(v, p, INTENTS))
    if (Object.hasOwn(o, 'safety')) out.safety = this.safetyCondition(o['safety'], `${path}.safety`)
    if (Object.hasOwn(o, 'pii')) out.pii = this.piiCondition(o['pii'], `${path}.pii`)
    if (Object.hasOwn(o, 'prompt_injection')) out.prompt_injection = this.boolean(o['prompt_injection'], `${path}.prompt_injection`)
    if (Object.hasOwn(o, 'attachments')) out.attachments = this.attachmentCondition(o['attachments'], `${path}.attachments`)
    if (Object.hasOwn(o, 'roles')) out.roles = this.list(o['roles'], `${path}.roles`, (v, p) => this.oneOf(v, p, ROLES))
    if (Object.hasOwn(o, 'cohorts')) out.cohorts = this.list(o['cohorts'], `${path}.cohorts`, (v, p) => this.matching(v, p, COHORT, 'a cohort id: 1-64 characters, lowercase letters, digits, _ . and -'))
    return this.problems.length === before ? out : undefined
  }

  safetyCondition(value: unknown, path: string): RuleConditions['safety'] {
    const o = this.object(value, path, ['codes', 'min_severity', 'min_score'], ['codes'])
    if (!o) return undefined
    const codes = Object.hasOwn(o, 'codes') ? this.list(o['codes'], `${path}.codes`, (v, p) => this.oneOf(v, p, SAFETY_CODES)) : undefined
    const t = this.threshold(o, path, false)
    return codes && t && { codes, ...t }
  }

  /** `min_severity` or `min_score`: exactly one when `required`, else at most one. */
  threshold(o: Json, path: string, required: boolean): { min_severity?: (typeof SEVERITIES)[number]; min_score?: number } | undefined {
    const hasSeverity = Object.hasOwn(o, 'min_severity')
    const hasScore = Object.hasOwn(o, 'min_score')
    if (hasSeverity && hasScore) return this.problem(path, 'must have min_severity or min_score, not both')
    if (required && !hasSeverity && !hasScore) return this.problem(path, 'must have a threshold: min_severity (low, medium, high) or min_score (0 to 1)')
    if (hasSeverity) {
      const s = this.oneOf(o['min_severity'], `${path}.min_severity`, SEVERITIES)
      return s === undefined ? undefined : { min_severity: s }
    }
    if (hasScore) {
      const n = this.number(o['min_score'], `${path}.min_score`, 0, 1)
      return n === undefined ? undefined : { min_score: n }
    }
    return {}
  }

  piiCondition(value: unknown, path: string): RuleConditions['pii'] {
    const o = this.object(value, path, ['kinds', 'min_count', 'min_confidence'])
    if (!o) return undefined
    const before = this.problems.length
    const out: { kinds?: PiiKind[]; min_count?: number; min_confidence?: number } = {}
    if (Object.hasOwn(o, 'kinds')) out.kinds = this.list(o['kinds'], `${path}.kinds`, (v, p) => this.oneOf(v, p, PII_KINDS))
    if (Object.hasOwn(o, 'min_count')) out.min_count = this.number(o['min_count'], `${path}.min_count`, 1, 1_000_000, true)
    if (Object.hasOwn(o, 'min_confidence')) out.min_confidence = this.number(o['min_confidence'], `${path}.min_confidence`, 0, 1)
    return this.problems.length === before ? out : undefined
  }

  attachmentCondition(value: unknown, path: string): RuleConditions['attachments'] {
    const o = this.object(value, path, ['min_count', 'mime_types', 'image_labels'])
    if (!o) return undefined
    if (Object.keys(o).length === 0) return this.problem(path, 'must have at least one of min_count, mime_types, image_labels')
    const before = this.problems.length
    const out: { min_count?: number; mime_types?: string[]; image_labels?: string[] } = {}
    if (Object.hasOwn(o, 'min_count')) out.min_count = this.number(o['min_count'], `${path}.min_count`, 1, 1000, true)
    if (Object.hasOwn(o, 'mime_types')) out.mime_types = this.list(o['mime_types'], `${path}.mime_types`, (v, p) => this.matching(v, p, MIME_TYPE, 'a lowercase MIME type such as text/csv or image/*'))
    if (Object.hasOwn(o, 'image_labels')) out.image_labels = this.list(o['image_labels'], `${path}.image_labels`, (v, p) => this.matching(v, p, IMAGE_LABEL, 'an image label: 1-64 characters, lowercase letters, digits, spaces, _ and -'))
    return this.problems.length === before ? out : undefined
  }

  filters(value: unknown): PolicyDocument['filters'] | undefined {
    if (value === undefined) return { prompt: {}, output: {} }
    const o = this.object(value, '$.filters', ['prompt', 'output'])
    if (!o) return undefined
    const prompt = this.filterSet(o['prompt'], '$.filters.prompt', (f, p) => this.promptFilter(f, p))
    const output = this.filterSet(o['output'], '$.filters.output', (f, p) => this.outputFilter(f, p))
    return prompt && output && { prompt, output }
  }

  filterSet<F>(value: unknown, path: string, one: (v: unknown, p: string) => F | undefined): Partial<Record<SafetyCode, F>> | undefined {
    if (value === undefined) return {}
    const o = this.object(value, path, SAFETY_CODES)
    if (!o) return undefined
    const before = this.problems.length
    const out: Partial<Record<SafetyCode, F>> = {}
    // In S-code order, whatever order the input used: the normalized document is canonical.
    for (const code of SAFETY_CODES) {
      if (!Object.hasOwn(o, code)) continue
      const f = one(o[code], `${path}.${code}`)
      if (f !== undefined) out[code] = f
    }
    return this.problems.length === before ? out : undefined
  }

  promptFilter(value: unknown, path: string): PromptFilter | undefined {
    const o = this.object(value, path, ['min_severity', 'min_score', 'action', 'on_error', 'shadow'], ['action'])
    if (!o) return undefined
    const t = this.threshold(o, path, true)
    let action: PromptFilter['action'] | undefined
    if (o['action'] === 'redact') this.problem(`${path}.action`, 'cannot be redact: a safety category has nothing to redact (use allow, challenge or block)')
    else if (Object.hasOwn(o, 'action')) action = this.oneOf(o['action'], `${path}.action`, DEFAULT_ACTIONS)
    const onError: OnError | undefined = Object.hasOwn(o, 'on_error') ? this.oneOf(o['on_error'], `${path}.on_error`, ON_ERROR) : 'block'
    const shadow = Object.hasOwn(o, 'shadow') ? this.boolean(o['shadow'], `${path}.shadow`) : false
    if (!t || action === undefined || onError === undefined || shadow === undefined) return undefined
    return { ...t, action, on_error: onError, shadow }
  }

  outputFilter(value: unknown, path: string): OutputFilter | undefined {
    const o = this.object(value, path, ['min_severity', 'min_score', 'action', 'shadow'], ['action'])
    if (!o) return undefined
    const t = this.threshold(o, path, true)
    const action = Object.hasOwn(o, 'action') ? this.oneOf(o['action'], `${path}.action`, OUTPUT_ACTIONS) : undefined
    const shadow = Object.hasOwn(o, 'shadow') ? this.boolean(o['shadow'], `${path}.shadow`) : false
    if (!t || action === undefined || shadow === undefined) return undefined
    return { ...t, action, shadow }
  }

  outputModeration(value: unknown): PolicyDocument['output_moderation'] | undefined {
    if (value === undefined) return { enabled: true, on_error: 'block' }
    const o = this.object(value, '$.output_moderation', ['enabled', 'on_error'], ['enabled'])
    if (!o) return undefined
    const enabled = Object.hasOwn(o, 'enabled') ? this.boolean(o['enabled'], '$.output_moderation.enabled') : undefined
    const onError = Object.hasOwn(o, 'on_error') ? this.oneOf(o['on_error'], '$.output_moderation.on_error', OUTPUT_ACTIONS) : 'block'
    if (enabled === undefined || onError === undefined) return undefined
    return { enabled, on_error: onError }
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
