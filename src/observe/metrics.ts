import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Prometheus metrics (OPS-1). Labels are route patterns, codes and provider names — never request text. */
export class Metrics {
  readonly registry = new Registry()
  readonly httpRequests = new Counter({ name: 'tollgate_http_requests_total', help: 'HTTP responses by route pattern, method and status.', labelNames: ['route', 'method', 'status'] as const, registers: [this.registry] })
  readonly httpDuration = new Histogram({ name: 'tollgate_http_request_duration_seconds', help: 'Time from request start to the end of the response.', labelNames: ['route'] as const, buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: [this.registry] })
  readonly decisions = new Counter({ name: 'tollgate_decisions_total', help: 'Decision records by outcome.', labelNames: ['outcome', 'endpoint'] as const, registers: [this.registry] })
  readonly decisionBatch = new Histogram({ name: 'tollgate_decision_batch_size', help: 'Decision records per group commit.', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], registers: [this.registry] })
  readonly decisionCommit = new Histogram({ name: 'tollgate_decision_commit_seconds', help: 'Duration of one commit of decision records (a group commit, or one record committed inline while a single request is in flight).', buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1], registers: [this.registry] })
  readonly decisionWriteFailures = new Counter({ name: 'tollgate_decision_write_failures_total', help: 'Group commits that failed (their requests were answered 503).', registers: [this.registry] })
  readonly upstream = new Counter({ name: 'tollgate_upstream_requests_total', help: 'Upstream calls by provider and result code.', labelNames: ['provider', 'result'] as const, registers: [this.registry] })
  readonly rateLimited = new Counter({ name: 'tollgate_ratelimit_refused_total', help: 'Requests refused with 429, by endpoint group.', labelNames: ['group'] as const, registers: [this.registry] })
  readonly rateStoreFallback = new Counter({ name: 'tollgate_ratelimit_store_failures_total', help: 'Rate-limit decisions made without the shared store (Redis down): auth refused, others limited per instance (D7). Alert on any increase.', labelNames: ['group'] as const, registers: [this.registry] })
  readonly classifierFallbacks = new Counter({ name: 'tollgate_classifier_fallbacks_total', help: 'LLM classifications that fell back to the embedded result (timeout, error, bad answer).', labelNames: ['provider'] as const, registers: [this.registry] })
  readonly alerts = new Counter({ name: 'tollgate_alerts_total', help: 'Anomaly alerts sent to org webhooks (AUDIT-4), by kind and outcome (delivered, failed).', labelNames: ['kind', 'outcome'] as const, registers: [this.registry] })
  readonly upstreamDuration = new Histogram({ name: 'tollgate_upstream_duration_seconds', help: 'Upstream time to the end of the answer.', labelNames: ['provider'] as const, buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers: [this.registry] })

  constructor(defaults = true) {
    if (defaults) collectDefaultMetrics({ register: this.registry, prefix: 'tollgate_' })
  }

  /** `tollgate_ai_requests_in_flight`: the AI requests this instance is answering, read at each scrape. */
  inFlight(read: () => number): void {
    new Gauge({ name: 'tollgate_ai_requests_in_flight', help: 'AI requests being answered by this instance now (streams count until they end).', registers: [this.registry], collect() { this.set(read()) } })
  }
}
