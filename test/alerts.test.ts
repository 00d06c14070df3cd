// deploy/monitoring/prometheus-rules.yaml with the real tools (issue 15): `promtool check rules` on its spec,
// `promtool test rules` on scenarios whose series are checked against what the running service exposes on
// /metrics, and a real Prometheus scraping the service and firing TrainingRunFailed. promtool and prometheus
// come from Debian's `prometheus` package (.ci/run installs it); without them these tests are skipped.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dump, load } from 'js-yaml';
import { packageRoot } from '../src/core/paths.js';
import { verifyNew } from './support/db.js';
import { eventually, useStack } from './support/harness.js';
import { ALERT_SCENARIOS, PROMETHEUS_SERIES } from './support/alertScenarios.js';
import { installed, needsPromtool, startPrometheus, type Prometheus } from './support/prometheus.js';
import { withoutTrainingName } from './support/metricsScrape.js';

interface Rule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const manifest = load(readFileSync(join(packageRoot(), 'deploy/monitoring/prometheus-rules.yaml'), 'utf8')) as {
  kind: string;
  spec: { groups: { name: string; rules: Rule[] }[] };
};
const rules = manifest.spec.groups.flatMap((g) => g.rules);
const skip = needsPromtool();

/** Metric names declared on a scrape (`# TYPE`), and every series line as written. */
async function scrape(port: number): Promise<{ names: Set<string>; series: Set<string> }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const names = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string));
  const series = new Set(
    text
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => withoutTrainingName(l.slice(0, l.lastIndexOf(' ')))),
  );
  return { names, series };
}

describe('Prometheus alert rules', { skip }, () => {
  const s = useStack({ RECONCILE_INTERVAL_SECONDS: '1' });
  const dir = mkdtempSync(join(tmpdir(), 'alerts-'));
  const rulesFile = join(dir, 'rules.yaml');
  let prometheus: Prometheus | null = null;
  before(() => writeFileSync(rulesFile, dump(manifest.spec)));
  after(async () => {
    await prometheus?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is a PrometheusRule whose spec passes promtool check rules', () => {
    assert.equal(manifest.kind, 'PrometheusRule');
    const out = execFileSync('promtool', ['check', 'rules', rulesFile], { encoding: 'utf8' });
    assert.match(out, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  // Issue 22: each alert links to what to check first, an entry of the runbook (docs/operating.md) that exists.
  it('every alert has a runbook_url into a heading of docs/operating.md', () => {
    const readme = readFileSync(join(packageRoot(), 'docs', 'operating.md'), 'utf8');
    // GitHub's anchors: the heading lowercased, punctuation dropped, spaces as hyphens.
    const anchors = new Set(
      [...readme.matchAll(/^#+ (.+)$/gm)].map((m) =>
        (m[1] as string)
          .toLowerCase()
          .replace(/[^\w\- ]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    for (const rule of rules) {
      const anchor = /docs\/operating\.md#([\w-]+)$/.exec(rule.annotations?.runbook_url ?? '')?.[1];
      assert.ok(anchor, `${rule.alert}: runbook_url into docs/operating.md`);
      assert.ok(anchors.has(anchor), `${rule.alert}: docs/operating.md has no heading for #${anchor}`);
    }
  });

  it('names only metrics the running service exposes', async () => {
    const { names } = await scrape(s.c.service.httpPort);
    for (const rule of rules)
      for (const [name] of rule.expr.matchAll(/training_controller_\w+/g))
        assert.ok(names.has(name), `${rule.alert}: ${name} is not on /metrics`);
  });

  it('promtool test rules: each alert fires when it should and not when it should not', async () => {
    const { names, series } = await scrape(s.c.service.httpPort);
    // Every input series is one the service writes: the exact series when it exists from the start (the
    // labelled counters at 0), else at least its metric (run_pod_waiting has a series only while a pod waits).
    for (const sc of ALERT_SCENARIOS)
      for (const input of Object.keys(sc.series).filter((x) => !PROMETHEUS_SERIES.includes(x)))
        assert.ok(series.has(input) || names.has(input.split('{')[0] ?? ''), `${sc.name}: ${input} is not on /metrics`);
    assert.deepEqual(
      new Set(ALERT_SCENARIOS.filter((sc) => sc.fires).map((sc) => sc.alert)),
      new Set(rules.map((r) => r.alert)),
    );
    const tests = ALERT_SCENARIOS.map((sc) => {
      const rule = rules.find((r) => r.alert === sc.alert);
      assert.ok(rule, sc.alert);
      return {
        name: sc.name,
        interval: '1m',
        input_series: Object.entries(sc.series).map(([name, values]) => ({ series: name, values })),
        alert_rule_test: [
          {
            eval_time: sc.evalTime,
            alertname: sc.alert,
            exp_alerts: sc.fires
              ? [{ exp_labels: { ...rule.labels, ...sc.labels }, exp_annotations: rule.annotations ?? {} }]
              : [],
          },
        ],
      };
    });
    const testFile = join(dir, 'rules.test.yaml');
    writeFileSync(testFile, dump({ rule_files: [rulesFile], evaluation_interval: '1m', tests }));
    const out = execFileSync('promtool', ['test', 'rules', testFile], { encoding: 'utf8' });
    assert.match(out, /SUCCESS/);
  });

  it('a real Prometheus scrapes the service, sees the pending count, and fires TrainingRunFailed', {
    skip: installed('prometheus') ? false : 'prometheus not installed',
  }, async () => {
    prometheus = await startPrometheus(dir, rulesFile, `127.0.0.1:${s.c.service.httpPort}`);
    await verifyNew(s.db.pool, 10);
    await eventually(
      async () => (await prometheus?.query('training_controller_pending_annotations')) === 10,
      'pending 10 in Prometheus',
      20_000,
      250,
    );
    await verifyNew(s.db.pool, 40);
    await eventually(() => s.kube.creates.length === 1, 'a Job');
    s.kube.setPhase(s.kube.creates[0]?.name ?? '', 'failed');
    const alert = await eventually(
      async () => (await prometheus?.firing())?.find((a) => a.labels.alertname === 'TrainingRunFailed'),
      'TrainingRunFailed firing',
      30_000,
      250,
    );
    assert.equal(alert?.labels.severity, 'warning');
  });
});
