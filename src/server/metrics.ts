/**
 * Prometheus metrics (prom-client, one registry, injectable): Triton's per-model names with
 * `model` and `version` labels, nimify's own, and the process/Node metrics (event-loop delay
 * included) from prom-client's default collectors.
 *
 * Request-level counts — nv_inference_request_success and _duration_us, and the latency
 * histogram — are tallied per version as each request ends (plain numbers: RequestTally) and
 * added to the metrics when the registry is scraped; failures by reason are counted as they
 * end. Figures the native scheduler keeps (rows, executions, queue and compute time, batch
 * sizes, pending) are read from model.stats() when the registry is scraped and added as deltas,
 * so the hot path pays nothing for them. A reloaded version starts a new Model whose counters start at zero: the
 * deltas are kept per Model object, so the exported counters never go backwards. Warmup runs
 * are not counted: a version is read only once it left LOADING, and the repository zeroes its
 * model's counters when the warmup settled.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { Model } from '../runtime/model';
import type { ModelRepository, ServedVersion } from '../repository/repository';
import type { CacheCounts } from './cache';

export type FailureReason = 'REJECTED' | 'CANCELED' | 'BACKEND' | 'OTHER';

interface Snapshot {
  rows: number;
  batches: number;
  queueUs: number;
  inputUs: number;
  inferUs: number;
  outputUs: number;
  histogram: Record<string, number>;
}

const MODEL_LABELS = ['model', 'version'] as const;

export interface MetricsOptions {
  /** The registry to use (default: a new one). */
  registry?: Registry;
  /** Register prom-client's process and Node.js metrics (default true; skipped if already registered). */
  processMetrics?: boolean;
}

/**
 * One version's request counts since the last scrape, bumped on the request path
 * (src/server/admission.ts) and added to nv_inference_request_success / _duration_us and to
 * nimify_request_duration_seconds by ServerMetrics.refresh(): two prom-client increments and an
 * observe per request (label hashing each time) were ~3 % of the event loop's time serving a
 * tiny model.
 */
export interface RequestTally {
  readonly labels: { model: string; version: string };
  success: number;
  durationUs: number;
  /** The successes' durations (s) per latency bucket (TalliedHistogram.bucketOf; the last one +Inf) and their sum. */
  readonly latency: Float64Array;
  latencySum: number;
  /** Queued for the next scrape (ServerMetrics.tally()). */
  queued: boolean;
}

/** Upper bounds (s) of nimify_request_duration_seconds' buckets. */
const LATENCY_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A version's empty tally (ServerMetrics.tally() queues it once it counts something). */
export function newTally(model: string, version: string): RequestTally {
  return { labels: { model, version }, success: 0, durationUs: 0, latency: new Float64Array(LATENCY_BUCKETS.length + 1), latencySum: 0, queued: false };
}

/** One exported sample, as prom-client's Registry reads a metric's values. */
interface Sample {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

interface HistogramSeries {
  readonly labels: Record<string, string>;
  /** Observations per bucket (not cumulative); the last one is +Inf's. */
  readonly counts: Float64Array;
  sum: number;
}

/** Marks a TalliedHistogram, whichever copy of this module made it (two copies of nimify may share an app's registry). */
const TALLIED = Symbol.for('nimify.TalliedHistogram');

/**
 * A Prometheus histogram whose observations arrive in bulk: the request path counts a request
 * into its version's tally (a bucket and a sum, plain numbers) and refresh() adds the tallies
 * here when the registry is scraped. prom-client's Histogram takes one observation a call and
 * hashes its labels each time (~230 ns a request on the 2-core VM, ~1 % of a tiny model's HTTP
 * request). Registered on the registry as prom-client's own metrics are (the Metric shape its
 * Registry reads: name, help, type, aggregator, get(), reset()), and exposed as prom-client
 * exposes a histogram: cumulative `_bucket` series (`le` first, then the labels), `_sum`, `_count`.
 * Event-loop thread only.
 */
export class TalliedHistogram {
  readonly [TALLIED] = true;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #series = new Map<string, HistogramSeries>();

  /** `collect` runs before each read (it flushes the tallies). */
  constructor(
    readonly name: string,
    readonly help: string,
    readonly upperBounds: readonly number[],
    private readonly collect: () => void,
  ) {}

  /** Index of the bucket `seconds` falls in (the first whose bound it does not exceed; upperBounds.length: +Inf). */
  bucketOf(seconds: number): number {
    const b = this.upperBounds;
    let i = 0;
    while (i < b.length && seconds > b[i]) i++;
    return i;
  }

  /** Adds `counts` observations (per bucket, +Inf last) summing to `sum` to the series of `labels`. */
  add(labels: Record<string, string>, counts: Float64Array, sum: number): void {
    const key = JSON.stringify(labels);
    let s = this.#series.get(key);
    if (s === undefined) this.#series.set(key, (s = { labels: { ...labels }, counts: new Float64Array(this.upperBounds.length + 1), sum: 0 }));
    for (let i = 0; i < counts.length; i++) s.counts[i] += counts[i];
    s.sum += sum;
  }

  async get(): Promise<{ name: string; help: string; type: 'histogram'; values: Sample[]; aggregator: 'sum' }> {
    this.collect();
    const values: Sample[] = [];
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i < this.upperBounds.length; i++) {
        acc += s.counts[i];
        values.push({ metricName: `${this.name}_bucket`, labels: { le: this.upperBounds[i], ...s.labels }, value: acc });
      }
      const count = acc + s.counts[this.upperBounds.length];
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...s.labels }, value: count });
      values.push({ metricName: `${this.name}_sum`, labels: { ...s.labels }, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: { ...s.labels }, value: count });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.#series.clear();
  }
}

/**
 * Queued tallies of every ServerMetrics on a registry. Servers sharing an embedding app's
 * registry share its counters, whose collect callback is the refresh() of the server that
 * registered them: that one flushes every server's requests.
 */
const talliesByRegistry = new WeakMap<Registry, Set<RequestTally>>();

export class ServerMetrics {
  readonly registry: Registry;
  readonly success: Counter<'model' | 'version'>;
  readonly failure: Counter<'model' | 'version' | 'reason'>;
  readonly requestDuration: Counter<'model' | 'version'>;
  readonly requestLatency: TalliedHistogram;
  readonly count: Counter<'model' | 'version'>;
  readonly execCount: Counter<'model' | 'version'>;
  readonly queueDuration: Counter<'model' | 'version'>;
  readonly computeInput: Counter<'model' | 'version'>;
  readonly computeInfer: Counter<'model' | 'version'>;
  readonly computeOutput: Counter<'model' | 'version'>;
  readonly pending: Gauge<'model' | 'version'>;
  readonly batchExecutions: Counter<'model' | 'version' | 'batch_size'>;
  readonly ready: Gauge<'model' | 'version'>;
  readonly breakerState: Gauge<'model'>;
  readonly shed: Counter<'reason'>;
  readonly rateLimited: Counter<string>;
  readonly unauthorized: Counter<string>;
  readonly inFlight: Gauge<string>;
  readonly predictItems: Counter<'model' | 'version'>;
  readonly preprocessDuration: Counter<'model' | 'version'>;
  readonly preprocessQueue: Gauge<string>;

  /** Triton's per-model response cache counters (registered by enableCache(), when the server has a cache). */
  cacheHits: Counter<'model' | 'version'> | null = null;
  cacheMisses: Counter<'model' | 'version'> | null = null;
  cacheHitDuration: Counter<'model' | 'version'> | null = null;
  cacheMissDuration: Counter<'model' | 'version'> | null = null;
  #cacheCounts: ((v: ServedVersion) => CacheCounts) | null = null;
  readonly #cacheSeen = new WeakMap<ServedVersion, CacheCounts>();

  #repository: ModelRepository | null = null;
  #inFlightNow: () => number = () => 0;
  #preprocessQueueNow: () => number = () => 0;
  readonly #seen = new WeakMap<Model, Snapshot>();
  #refreshedAt = 0;
  /** Tallies to flush, one set per registry: the counters are the registry's, and so is whichever refresh() runs first. */
  readonly #tallies: Set<RequestTally>;

  constructor(options: MetricsOptions = {}) {
    const registry = (this.registry = options.registry ?? new Registry());
    let tallies = talliesByRegistry.get(registry);
    if (tallies === undefined) talliesByRegistry.set(registry, (tallies = new Set()));
    this.#tallies = tallies;
    const refresh = () => this.refresh();
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[], collect?: boolean): Counter<L> =>
      (registry.getSingleMetric(name) as Counter<L> | undefined) ??
      new Counter<L>({ name, help, labelNames, registers: [registry], ...(collect ? { collect: refresh } : {}) });
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], collect?: boolean): Gauge<L> =>
      (registry.getSingleMetric(name) as Gauge<L> | undefined) ??
      new Gauge<L>({ name, help, labelNames, registers: [registry], ...(collect ? { collect: refresh } : {}) });

    this.success = counter('nv_inference_request_success', 'Number of successful inference requests, all batch sizes', MODEL_LABELS, true);
    this.failure = counter('nv_inference_request_failure', 'Number of failed inference requests, all batch sizes', [...MODEL_LABELS, 'reason'] as const);
    this.requestDuration = counter('nv_inference_request_duration_us', 'Cumulative inference request duration in microseconds (receipt to response)', MODEL_LABELS, true);
    // Latency quantiles (p50/p99 in the generated Grafana dashboard, src/deploy/grafana.ts) need a
    // histogram; Triton's duration counters only give means. Successful requests, receipt to response.
    const latency = registry.getSingleMetric('nimify_request_duration_seconds') as unknown as Partial<TalliedHistogram> | undefined;
    if (latency?.[TALLIED] === true) {
      this.requestLatency = latency as TalliedHistogram;
    } else {
      this.requestLatency = new TalliedHistogram('nimify_request_duration_seconds', 'Successful inference request duration in seconds (receipt to response)', LATENCY_BUCKETS, refresh);
      registry.registerMetric(this.requestLatency as unknown as Metric);
    }
    this.count = counter('nv_inference_count', 'Number of inferences performed (a batch of n counts n)', MODEL_LABELS, true);
    this.execCount = counter('nv_inference_exec_count', 'Number of model executions performed (batches)', MODEL_LABELS, true);
    this.queueDuration = counter('nv_inference_queue_duration_us', 'Cumulative inference queuing duration in microseconds', MODEL_LABELS, true);
    this.computeInput = counter('nv_inference_compute_input_duration_us', 'Cumulative compute input duration in microseconds', MODEL_LABELS, true);
    this.computeInfer = counter('nv_inference_compute_infer_duration_us', 'Cumulative compute inference duration in microseconds', MODEL_LABELS, true);
    this.computeOutput = counter('nv_inference_compute_output_duration_us', 'Cumulative compute output duration in microseconds', MODEL_LABELS, true);
    this.pending = gauge('nv_inference_pending_request_count', 'Instantaneous number of pending requests awaiting execution per model', MODEL_LABELS, true);
    this.batchExecutions = counter('nimify_batch_executions_total', 'Model executions by batch size (rows), from the dynamic batcher', [...MODEL_LABELS, 'batch_size'] as const, true);
    this.ready = gauge('nimify_model_ready', '1 when the model version is ready to serve, else 0', MODEL_LABELS, true);
    this.breakerState = gauge('nimify_circuit_breaker_state', 'Circuit breaker state per model: 0 closed, 1 half-open, 2 open', ['model'] as const);
    this.shed = counter('nimify_requests_shed_total', 'Requests answered 503 by load shedding, by reason', ['reason'] as const);
    this.rateLimited = counter('nimify_requests_rate_limited_total', 'Requests answered 429 by the rate limiter', []);
    this.unauthorized = counter('nimify_requests_unauthorized_total', 'Requests answered 401 for a missing or wrong API key', []);
    this.inFlight = gauge('nimify_inference_in_flight', 'Inference requests being served (decoded, queued or running)', [], true);
    this.predictItems = counter('nimify_predict_items_total', 'Images or texts predicted by the predict route (a request of n items counts n)', MODEL_LABELS);
    this.preprocessDuration = counter('nimify_preprocess_duration_us', 'Cumulative time predict requests spent in preprocessing (worker pool queue + decode or tokenization), in microseconds', MODEL_LABELS);
    this.preprocessQueue = gauge('nimify_preprocess_queue_size', 'Preprocessing tasks waiting for a worker of the pool', [], true);

    if (options.processMetrics !== false) {
      try {
        collectDefaultMetrics({ register: registry });
      } catch {
        /* the registry already has them (the embedding app registered its own) */
      }
    }
  }

  /** Where scrape-time figures come from: the repository's models, the server's in-flight count, the preprocessing queue. */
  attach(repository: ModelRepository, inFlight: () => number, preprocessQueue: () => number = () => 0): void {
    this.#repository = repository;
    this.#inFlightNow = inFlight;
    this.#preprocessQueueNow = preprocessQueue;
  }

  /**
   * Registers Triton's response cache counters, read from `countsOf` at scrape time like the
   * scheduler's figures (the request path only bumps plain numbers).
   */
  enableCache(countsOf: (v: ServedVersion) => CacheCounts): void {
    const refresh = () => this.refresh();
    const counter = (name: string, help: string): Counter<'model' | 'version'> =>
      (this.registry.getSingleMetric(name) as Counter<'model' | 'version'> | undefined) ??
      new Counter({ name, help, labelNames: MODEL_LABELS, registers: [this.registry], collect: refresh });
    this.cacheHits = counter('nv_cache_num_hits_per_model', 'Number of response cache hits per model');
    this.cacheMisses = counter('nv_cache_num_misses_per_model', 'Number of response cache misses per model');
    this.cacheHitDuration = counter('nv_cache_hit_duration_per_model', 'Cumulative time requests spent looking up and extracting results on a cache hit, in microseconds');
    this.cacheMissDuration = counter('nv_cache_miss_duration_per_model', 'Cumulative time requests spent looking up and inserting results on a cache miss, in microseconds');
    this.#cacheCounts = countsOf;
  }

  /**
   * Queues `t`'s counts for the next scrape: the request path bumps plain numbers (success,
   * durationUs) and calls this when it bumped a tally that was not queued; refresh() adds them
   * to the counters. A tally stays queued (referenced) only until then, so a version unloaded
   * meanwhile still has every request counted.
   */
  tally(t: RequestTally): void {
    t.queued = true;
    this.#tallies.add(t);
  }

  /** A successful request of `t`'s version that took `ms`: counted, timed and put in its latency bucket (in the metrics at the next scrape). */
  countSuccess(t: RequestTally, ms: number): void {
    const seconds = ms / 1000;
    t.success++;
    t.durationUs += Math.round(ms * 1000);
    t.latency[this.requestLatency.bucketOf(seconds)]++;
    t.latencySum += seconds;
    if (!t.queued) this.tally(t);
  }

  /** A failed request of `t`'s version that took `ms`: its duration (the failure itself is counted by reason as it ends). */
  countFailure(t: RequestTally, ms: number): void {
    t.durationUs += Math.round(ms * 1000);
    if (!t.queued) this.tally(t);
  }

  /** Adds the queued tallies to their counters. */
  #flushTallies(): void {
    for (const t of this.#tallies) {
      if (t.success > 0) {
        this.success.inc(t.labels, t.success);
        this.requestLatency.add(t.labels, t.latency, t.latencySum);
      }
      if (t.durationUs > 0) this.requestDuration.inc(t.labels, t.durationUs);
      t.success = 0;
      t.durationUs = 0;
      t.latency.fill(0);
      t.latencySum = 0;
      t.queued = false;
    }
    this.#tallies.clear();
  }

  /** Pulls the scheduler-side figures of every loaded version into the counters (deduplicated per scrape). */
  refresh(): void {
    // Every scrape sees every request that ended before it (not deduplicated: cheap).
    if (this.#tallies.size > 0) this.#flushTallies();
    const now = Date.now();
    if (now - this.#refreshedAt < 20 || this.#repository === null) return;
    this.#refreshedAt = now;
    this.inFlight.set(this.#inFlightNow());
    this.preprocessQueue.set(this.#preprocessQueueNow());
    const repo = this.#repository;
    this.pending.reset();
    this.ready.reset();
    for (const name of repo.names()) {
      for (const v of repo.versions(name)) {
        const labels = { model: name, version: v.version };
        this.ready.set(labels, v.ready ? 1 : 0);
        if (this.#cacheCounts !== null) this.#refreshCache(v, labels, this.#cacheCounts(v));
        const model = v.model;
        // A LOADING version is warming up: its counters are zeroed once the warmup settled.
        if (model === null || model.disposed || v.state === 'LOADING') continue;
        const s = model.stats();
        let rows = 0;
        for (const [size, n] of Object.entries(s.batchSizeHistogram)) rows += Number(size) * n;
        const current: Snapshot = {
          rows,
          batches: s.batches,
          queueUs: s.queueTimeUs.sum,
          inputUs: s.computeInputUs,
          inferUs: s.computeInferUs,
          outputUs: s.computeOutputUs,
          histogram: s.batchSizeHistogram,
        };
        let last = this.#seen.get(model);
        // Counters that went back were reset (model.resetStats()): count from zero again.
        if (last !== undefined && (current.rows < last.rows || current.batches < last.batches)) last = undefined;
        this.#seen.set(model, current);
        const inc = (c: Counter<'model' | 'version'>, d: number) => {
          if (d > 0) c.inc(labels, d);
        };
        inc(this.count, current.rows - (last?.rows ?? 0));
        inc(this.execCount, current.batches - (last?.batches ?? 0));
        inc(this.queueDuration, current.queueUs - (last?.queueUs ?? 0));
        inc(this.computeInput, current.inputUs - (last?.inputUs ?? 0));
        inc(this.computeInfer, current.inferUs - (last?.inferUs ?? 0));
        inc(this.computeOutput, current.outputUs - (last?.outputUs ?? 0));
        for (const [size, n] of Object.entries(current.histogram)) {
          const d = n - (last?.histogram[size] ?? 0);
          if (d > 0) this.batchExecutions.inc({ ...labels, batch_size: size }, d);
        }
        this.pending.set(labels, s.queueDepth);
      }
    }
  }

  #refreshCache(v: ServedVersion, labels: { model: string; version: string }, now: CacheCounts): void {
    const last = this.#cacheSeen.get(v);
    this.#cacheSeen.set(v, { ...now });
    const inc = (c: Counter<'model' | 'version'> | null, d: number) => {
      if (c !== null && d > 0) c.inc(labels, d);
    };
    inc(this.cacheHits, now.hits - (last?.hits ?? 0));
    inc(this.cacheMisses, now.misses - (last?.misses ?? 0));
    inc(this.cacheHitDuration, (now.hitNs - (last?.hitNs ?? 0)) / 1000);
    inc(this.cacheMissDuration, (now.missNs - (last?.missNs ?? 0)) / 1000);
  }
}
