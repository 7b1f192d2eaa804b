import type { ModelEvent, ModelRequest, ModelResponse, ProviderName, WireFormat } from '../core/model.ts'

export interface ProviderCall {
  /** Aborted when the client goes away or the gateway gives up: the upstream request is cancelled. */
  readonly signal: AbortSignal
  /** The model name to send upstream. */
  readonly model: string
}

/**
 * One upstream provider. Errors are thrown as `TollgateError` with an `upstream_*` code; an
 * upstream error body is read and discarded — never forwarded, never logged (it may quote the prompt).
 */
export interface Provider {
  readonly name: ProviderName
  readonly format: WireFormat | 'local'
  complete(r: ModelRequest, call: ProviderCall): Promise<ModelResponse>
  /** Resolves once the upstream accepted the stream (status 200), so errors before any event map to a plain error response. */
  stream(r: ModelRequest, call: ProviderCall): Promise<AsyncIterable<ModelEvent>>
}
