// The Grafana dashboard (deploy/monitoring/dashboard.json, issue 22): a ConfigMap Grafana's sidecar loads, from
// kustomize and from the chart with the same JSON; every panel's query parses (promtool); every metric it reads
// is one a running controller exposes on /metrics.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { dump } from 'js-yaml';
import { packageRoot } from '../src/core/paths.js';
import { helmTemplate, kustomize } from './support/helm.js';
import { useStack } from './support/harness.js';
import { scrapeMetrics } from './support/metricsScrape.js';
import { needsPromtool } from './support/prometheus.js';

const root = packageRoot();
const read = (path: string) => readFileSync(join(root, path), 'utf8');

interface Target {
  expr: string;
  refId: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
interface Dashboard {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
}
const text = read('deploy/monitoring/dashboard.json');
const dashboard = JSON.parse(text) as Dashboard;
const queries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p, target: t })));

// Grafana's variables as Prometheus would receive them: $__rate_interval is at least four scrape intervals,
// $__range the dashboard's time range, $job, $namespace and $training_name their variables' defaults.
const GRAFANA_VARIABLES: Record<string, string> = {
  $__rate_interval: '2m',
  $__range: '1d',
  $__interval: '30s',
  $job: 'training-controller',
  $training_name: 'sentinel-training',
  $namespace: '.*',
};
const expand = (expr: string) =>
  Object.entries(GRAFANA_VARIABLES).reduce((e, [name, value]) => e.replaceAll(name, value), expr);

/** Metric names an expression reads (ours, Node's and the process's), a histogram's _bucket as the histogram. */
const metricNames = (expr: string) => [
  ...new Set(
    [...expr.matchAll(/\b(?:training_controller|process|nodejs)_[a-z0-9_]+\b/g)].map((m) =>
      m[0].replace(/_bucket$/, ''),
    ),
  ),
];

describe('Grafana dashboard', () => {
  it('queries the data source variable (type prometheus) in every panel and target', () => {
    const variable = dashboard.templating.list.find((v) => v.name === 'datasource');
    assert.deepEqual({ type: variable?.type, query: variable?.query }, { type: 'datasource', query: 'prometheus' });
    const panels = dashboard.panels.filter((p) => p.type !== 'row');
    assert.ok(panels.length >= 15, `${panels.length} panels`);
    for (const p of panels) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JS template
      assert.deepEqual(p.datasource, { type: 'prometheus', uid: '${datasource}' }, p.title);
      assert.ok(p.targets?.length, `${p.title}: no query`);
      for (const t of p.targets ?? []) assert.deepEqual(t.datasource, p.datasource, `${p.title} ${t.refId}`);
    }
  });

  it('lays its panels out on the 24-column grid without overlaps, with unique ids', () => {
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    const cells = new Map<string, string>();
    for (const p of dashboard.panels) {
      const { x, y, w, h } = p.gridPos;
      assert.ok(x >= 0 && w > 0 && x + w <= 24, `${p.title}: x ${x} w ${w}`);
      for (let i = x; i < x + w; i++)
        for (let j = y; j < y + h; j++) {
          const other = cells.get(`${i},${j}`);
          assert.ok(!other, `${p.title} overlaps ${other}`);
          cells.set(`${i},${j}`, p.title);
        }
    }
  });

  it('has a panel for each thing an operator asks about', () => {
    const exprs = queries.map((q) => q.target.expr).join('\n');
    for (const [what, pattern] of [
      ['pending against the threshold', /pending_annotations[\s\S]*training_controller_threshold/],
      ['runs by final state', /sum by \(state\) \(increase\(training_controller_runs_finished_total/],
      ['time since the last success', /time\(\) - max\(training_controller_last_success_timestamp_seconds/],
      [
        'Job create latency',
        /histogram_quantile\([\d.]+, sum by \(le\) \(increase\(training_controller_job_create_seconds_bucket/,
      ],
      ['listener health', /listener_connected[\s\S]*time\(\) - max\(training_controller_listener_last_alive/],
      ['API server health', /cluster_reachable[\s\S]*time\(\) - max\(training_controller_cluster_last_answer/],
      ['run duration by state', /sum by \(le, state\) \(increase\(training_controller_run_duration_seconds_bucket/],
      ['memory and CPU', /process_resident_memory_bytes[\s\S]*rate\(process_cpu_seconds_total/],
    ] as const)
      assert.match(exprs, pattern, what);
  });

  it('every query parses: promtool check rules, one recording rule per query', {
    skip: needsPromtool(),
  }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'dashboard-'));
    try {
      const rules = queries.map(({ panel, target }) => {
        const expr = expand(target.expr);
        // A variable left over is one Prometheus would get verbatim: a parse error at best.
        assert.doesNotMatch(expr, /\$/, `${panel.title} ${target.refId}: ${expr}`);
        return { record: `dashboard:panel_${panel.id}_${target.refId}`, expr };
      });
      const file = join(dir, 'rules.yaml');
      writeFileSync(file, dump({ groups: [{ name: 'dashboard', rules }] }));
      const out = execFileSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
      assert.match(out, new RegExp(`SUCCESS: ${rules.length} rules found`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is a ConfigMap labelled grafana_dashboard "1" from deploy/monitoring and from the chart, the same JSON', () => {
    const fromKustomize = kustomize(join(root, 'deploy/monitoring')).find((o) => o.kind === 'ConfigMap');
    const fromChart = helmTemplate({ flags: ['--set', 'dashboard.enabled=true'] }).find((o) =>
      o.metadata.name?.endsWith('-dashboard'),
    );
    for (const [source, cm] of [
      ['deploy/monitoring', fromKustomize],
      ['the chart', fromChart],
    ] as const) {
      assert.ok(cm, source);
      assert.equal((cm.metadata.labels as Record<string, string>).grafana_dashboard, '1', source);
      assert.deepEqual(cm.data, { 'training-controller.json': text }, source);
    }
    assert.equal(
      read('charts/training-controller/files/dashboard.json'),
      text,
      'the chart’s copy: cp deploy/monitoring/dashboard.json charts/training-controller/files/',
    );
  });

  // The names are the ones main exports after issue 22's metric changes; the test names each one missing.
  describe('against a running controller', () => {
    const s = useStack();

    it('reads only metrics the service exposes on /metrics', async () => {
      const exposed = await scrapeMetrics(s.c.service.httpPort);
      const missing = [...new Set(queries.flatMap((q) => metricNames(q.target.expr)))]
        .filter((name) => !exposed.has(name))
        .sort();
      assert.deepEqual(missing, [], `not on /metrics: ${missing.join(', ')}`);
    });
  });
});
