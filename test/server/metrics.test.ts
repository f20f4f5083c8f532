/**
 * ServerMetrics' tallied request metrics (src/server/metrics.ts): the latency histogram whose
 * observations arrive in bulk (TalliedHistogram) exposes what prom-client's own Histogram
 * exposes for the same observations, in the text format and as JSON; tallies are flushed before
 * any read, whichever metric is read first; a registry's reset clears it; a second
 * ServerMetrics on the same registry shares it.
 */
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ServerMetrics, TalliedHistogram, newTally } from '../../src/server/metrics';

const NAME = 'nimify_request_duration_seconds';

/** The text exposition of `name` alone, from `registry`. */
async function exposition(registry: Registry, name: string): Promise<string> {
  return registry.getSingleMetricAsString(name);
}

describe('TalliedHistogram', () => {
  it('exposes what prom-client\'s Histogram exposes for the same observations', async () => {
    const metrics = new ServerMetrics({ processMetrics: false });
    const reference = new Registry();
    const h = new Histogram({ name: NAME, help: metrics.requestLatency.help, labelNames: ['model', 'version'], buckets: [...metrics.requestLatency.upperBounds], registers: [reference] });
    // Bucket edges, both sides of them, past the last bound, and zero.
    const values = [0, 0.0005, 0.00050001, 0.0001, 0.001, 0.002, 0.0025, 0.3, 1, 2.5, 9.99, 10, 10.5, 120, 0.04, 0.04];
    const a = newTally('a', '1');
    const b = newTally('b "q"', '2');
    values.forEach((v, i) => {
      const t = i % 3 === 0 ? b : a;
      t.success++;
      t.latency[metrics.requestLatency.bucketOf(v)]++;
      t.latencySum += v;
      h.observe({ model: t.labels.model, version: t.labels.version }, v);
    });
    metrics.tally(a);
    metrics.tally(b);
    // Line for line (series may come in another order: prom-client's first observed first).
    const ours = await exposition(metrics.registry, NAME);
    expect(ours.split('\n').sort()).toEqual((await exposition(reference, NAME)).split('\n').sort());
    expect(ours).toMatch(/^nimify_request_duration_seconds_count\{model="a",version="1"\} 10$/m);
    // JSON too (what getMetricsAsJSON and cluster aggregation read).
    const [mine] = (await metrics.registry.getMetricsAsJSON()).filter((m) => m.name === NAME);
    const [theirs] = await reference.getMetricsAsJSON();
    expect(mine.type).toBe(theirs.type);
    expect(mine.aggregator).toBe(theirs.aggregator);
    const rows = (m: typeof mine) => m.values.map((v) => JSON.stringify([(v as { metricName?: string }).metricName, { ...v.labels }, v.value])).sort();
    expect(rows(mine)).toEqual(rows(theirs));
  });

  it('adds tallies flushed at several scrapes, and flushes them before it is read', async () => {
    const metrics = new ServerMetrics({ processMetrics: false });
    const t = newTally('m', '1');
    for (let scrape = 1; scrape <= 3; scrape++) {
      t.success += 2;
      t.latency[metrics.requestLatency.bucketOf(0.003)] += 2;
      t.latencySum += 0.006;
      if (!t.queued) metrics.tally(t);
      // Read alone: the counters' collect callbacks (which flush too) do not run.
      const text = await exposition(metrics.registry, NAME);
      expect(text).toMatch(new RegExp(`^${NAME}_count\\{model="m",version="1"\\} ${2 * scrape}$`, 'm'));
      expect(text).toMatch(new RegExp(`^${NAME}_bucket\\{le="0.0025",model="m",version="1"\\} 0$`, 'm'));
      expect(text).toMatch(new RegExp(`^${NAME}_bucket\\{le="0.005",model="m",version="1"\\} ${2 * scrape}$`, 'm'));
      expect(t.queued).toBe(false);
    }
    metrics.registry.resetMetrics();
    expect(await exposition(metrics.registry, NAME)).not.toMatch(/_count/);
  });

  it('is shared by every ServerMetrics on one registry', () => {
    const registry = new Registry();
    const first = new ServerMetrics({ registry, processMetrics: false });
    const second = new ServerMetrics({ registry, processMetrics: false });
    expect(second.requestLatency).toBe(first.requestLatency);
    expect(first.requestLatency).toBeInstanceOf(TalliedHistogram);
    expect(registry.getSingleMetric(NAME)).toBe(first.requestLatency);
  });

  it('puts each duration in the first bucket whose bound it does not exceed', () => {
    const h = new ServerMetrics({ processMetrics: false }).requestLatency;
    const b = h.upperBounds;
    expect(h.bucketOf(0)).toBe(0);
    expect(h.bucketOf(b[0])).toBe(0);
    expect(h.bucketOf(b[0] * 1.0001)).toBe(1);
    expect(h.bucketOf(b[b.length - 1])).toBe(b.length - 1);
    expect(h.bucketOf(b[b.length - 1] + 1)).toBe(b.length);
    expect(h.bucketOf(Infinity)).toBe(b.length);
  });
});
