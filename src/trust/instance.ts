/**
 * What the trust page may say about this instance (TRUST-1): the live settings that govern the
 * promises, reduced to values that are safe to publish. Built once from the loaded Config in
 * deps.ts. It never holds a secret: a credential, a database or Redis URL, the SMTP URL or the
 * operator secret appears here only as whether it is configured.
 */
export interface TrustInstance {
  readonly mode: 'development' | 'production'
  readonly environments: readonly string[]
  readonly storage: 'sqlite' | 'postgres'
  readonly cache: 'memory' | 'redis'
  readonly transport: {
    /** Tollgate terminates TLS itself (TOLLGATE_TLS_CERT/KEY). */
    readonly tls: boolean
    /** TOLLGATE_PUBLIC_URL starts with https:// (a TLS proxy in front). */
    readonly publicHttps: boolean
    readonly hstsMaxAgeS: number
    readonly trustedProxies: number
  }
  /** Upstream providers with credentials (or, for OpenAI-compatible servers, a base URL) per environment. */
  readonly providers: Readonly<Record<string, readonly string[]>>
  readonly identity: {
    readonly googleSignIn: boolean
    readonly stepUpWindowS: number
    readonly sessionMaxAgeS: number
    readonly ssoSessionMaxAgeS: number
    readonly ssoSessionIdleS: number
    readonly sessionRotateS: number
  }
  readonly mail: 'smtp' | 'log'
  readonly opsSecret: boolean
  /** The master key comes from TOLLGATE_MASTER_KEY (`setting`) or a development file in the data dir. */
  readonly masterKey: 'setting' | 'generated'
  /** D13: whether per-org KEKs are kept in a key vault (TOLLGATE_KEY_VAULT_DIR), so shredding reaches old backups. */
  readonly keyVault: 'file' | 'aws-kms' | undefined
  readonly limits: {
    readonly authPerMin: number
    readonly interceptPerMin: number
    readonly apiPerMin: number
    readonly idempotencyTtlS: number
    readonly idempotencyLockS: number
    readonly bodyLimitBytes: number
    readonly maxHeaderBytes: number
    readonly headersTimeoutMs: number
    readonly requestTimeoutMs: number
    readonly maxConnections: number
    readonly jsonMaxDepth: number
    readonly maxAttachments: number
    readonly maxAttachmentBytes: number
    readonly maxAttachmentsTotalBytes: number
  }
  readonly classifier: {
    readonly model: 'always' | 'as_needed'
    readonly llm: 'off' | 'low_margin' | 'always'
    /** Whether an LLM classifier is actually in use (the mode is not off and a production key exists). */
    readonly llmActive: boolean
  }
  readonly challenge: { readonly ttlS: number; readonly attempts: number; readonly maxHolds: number }
  readonly audit: { readonly checkpointEvents: number; readonly checkpointS: number }
  readonly decisionBatchMax: number
  readonly security: SecurityTxtSettings
}

/** RFC 9116 fields, from TOLLGATE_SECURITY_*. */
export interface SecurityTxtSettings {
  readonly contacts: readonly string[]
  /** Epoch ms; set whenever `contacts` is not empty (the configuration requires it). */
  readonly expiresAt: number | undefined
  readonly policyUrl: string | undefined
  readonly languages: readonly string[]
  /** Where the file lives, when the public URL is https (the Canonical field). */
  readonly canonical: string | undefined
}

/** One live setting as shown on the trust page: its environment variable and its value. */
export interface LiveSetting {
  readonly setting: string
  readonly value: string | number | boolean | readonly string[]
  readonly unit?: string
}
