import type { Environment, ProviderName, UpstreamProvider } from '../core/model.ts'
import type { Secret } from '../core/secret.ts'
import { AnthropicProvider } from './anthropic/anthropic.ts'
import { GeminiProvider } from './gemini/gemini.ts'
import type { UpstreamHttp } from './http.ts'
import { LocalProvider } from './local/local.ts'
import { OpenAiProvider } from './openai/openai.ts'
import type { Provider } from './provider.ts'

export type { ProviderName }

export interface RegistryOptions {
  readonly upstreams: Readonly<Record<Environment, Readonly<Partial<Record<UpstreamProvider, { readonly apiKey: Secret | undefined; readonly baseUrl: string }>>>>>
  readonly routes: readonly { readonly pattern: string; readonly provider: ProviderName }[]
  readonly models: readonly string[]
}

export interface Route {
  readonly provider: Provider
  /** The name sent upstream: the client's own model string. */
  readonly model: string
  /** What the decision record stores: a catalog name, or `other` (the raw string is never stored). */
  readonly recordedModel: string
  /** True when the route's provider is not configured here and the local provider answers instead (D17). */
  readonly fallback: boolean
}

function matches(pattern: string, model: string): boolean {
  return pattern.endsWith('*') ? model.startsWith(pattern.slice(0, -1)) : model === pattern
}

/**
 * Model name → provider, per key environment. A sandbox key only ever reaches providers built
 * from sandbox credentials (KEY-2); without them it is answered by the local provider.
 */
export class ProviderRegistry {
  readonly #byEnv: Record<Environment, Partial<Record<UpstreamProvider, Provider>>> = { sandbox: {}, production: {} }
  readonly #local = new LocalProvider()
  readonly #catalog: ReadonlySet<string>

  constructor(private readonly opts: RegistryOptions, http: UpstreamHttp) {
    for (const env of ['sandbox', 'production'] as const) {
      const u = opts.upstreams[env]
      if (u.anthropic) this.#byEnv[env].anthropic = new AnthropicProvider(http, u.anthropic.baseUrl, u.anthropic.apiKey)
      if (u.openai) this.#byEnv[env].openai = new OpenAiProvider(http, u.openai.baseUrl, u.openai.apiKey)
      if (u.gemini) this.#byEnv[env].gemini = new GeminiProvider(http, u.gemini.baseUrl, u.gemini.apiKey)
    }
    this.#catalog = new Set(opts.models)
  }

  /** Undefined when no route matches the model name (the client gets `model_not_found`). */
  resolve(model: string, env: Environment): Route | undefined {
    const route = this.opts.routes.find((r) => matches(r.pattern, model))
    if (!route) return undefined
    const recordedModel = this.#catalog.has(model) ? model : 'other'
    if (route.provider === 'local') return { provider: this.#local, model, recordedModel, fallback: false }
    const provider = this.#byEnv[env][route.provider]
    return provider
      ? { provider, model, recordedModel, fallback: false }
      : { provider: this.#local, model, recordedModel, fallback: true }
  }

  /** Catalog models that route somewhere, with the provider that would answer them for `env`. */
  models(env: Environment): { id: string; provider: ProviderName }[] {
    const out: { id: string; provider: ProviderName }[] = []
    for (const id of this.opts.models) {
      const r = this.resolve(id, env)
      if (r) out.push({ id, provider: r.provider.name })
    }
    return out
  }

  /** Which upstreams are configured per environment (for the start-up banner and the trust page). */
  configured(): Record<Environment, UpstreamProvider[]> {
    return {
      sandbox: Object.keys(this.#byEnv.sandbox) as UpstreamProvider[],
      production: Object.keys(this.#byEnv.production) as UpstreamProvider[],
    }
  }
}
