/** JSON Schemas shared by admin routes: validation (unknown fields rejected) and presenters (only listed fields leave). */
export const ID = { type: 'string', pattern: '^[0-9A-Za-z]{16,20}$' } as const
export const TIME = { type: 'string', format: 'date-time' } as const
export const NULLABLE_TIME = { type: ['string', 'null'], format: 'date-time' } as const
export const ROLE = { type: 'string', enum: ['OWNER', 'ADMIN', 'ANALYST', 'MEMBER'] } as const
export const ENVIRONMENT = { type: 'string', enum: ['sandbox', 'production'] } as const
export const EMPTY_BODY = { type: 'object', additionalProperties: false, properties: {} } as const
export const OK = { type: 'object', additionalProperties: false, required: ['ok'], properties: { ok: { type: 'boolean' } } } as const
export const ORG_PARAMS = { type: 'object', additionalProperties: false, required: ['org'], properties: { org: ID } } as const

export function object(properties: Record<string, unknown>, required: string[] = Object.keys(properties)) {
  return { type: 'object', additionalProperties: false, required, properties } as const
}

export function iso(ms: number): string
export function iso(ms: number | null): string | null
export function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString()
}
