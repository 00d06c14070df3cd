// What a running controller exposes on /metrics, by metric name: every `# TYPE` name, every sample's name, and
// a histogram's _bucket, _sum and _count even before its first observation (a labelled histogram has no
// samples until then, yet a query of its buckets is right).
export async function scrapeMetrics(port: number): Promise<Set<string>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const names = new Set<string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name as string);
    if (type === 'histogram' || type === 'summary')
      for (const s of ['_bucket', '_sum', '_count']) names.add(`${name}${s}`);
  }
  for (const [, name] of text.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)) names.add(name as string);
  return names;
}

/**
 * A series as written on /metrics without the training_name label every series carries (TRAINING_NAME), so a
 * test names `training_controller_runs_finished_total{state="failed"}` as one controller writes it.
 */
export function withoutTrainingName(series: string): string {
  return series
    .replace(/\{training_name="[^"]*"\}/, '')
    .replace(/,training_name="[^"]*"/, '')
    .replace(/training_name="[^"]*",/, '');
}
