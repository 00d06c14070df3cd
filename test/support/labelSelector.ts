// Label selectors as the API server parses them: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`,
// joined by commas (AND). Used by the fake kube-apiserver for list and watch.

type Requirement = (labels: Record<string, string>) => boolean;

export function parseSelector(selector: string): Requirement[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else current += ch;
  }
  if (current.trim() !== '') parts.push(current);
  return parts.map((raw) => {
    const p = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(p))) {
      const [, key, op, list] = m as unknown as [string, string, string, string];
      const values = list.split(',').map((v) => v.trim());
      return op === 'in'
        ? (l) => key in l && values.includes(l[key] as string)
        : (l) => !(key in l) || !values.includes(l[key] as string);
    }
    if ((m = /^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/.exec(p))) {
      const [, key, op, value] = m as unknown as [string, string, string, string];
      return op === '!=' ? (l) => l[key] !== value : (l) => l[key] === value;
    }
    if ((m = /^!([\w./-]+)$/.exec(p))) {
      const key = m[1] as string;
      return (l) => !(key in l);
    }
    if ((m = /^([\w./-]+)$/.exec(p))) {
      const key = m[1] as string;
      return (l) => key in l;
    }
    throw new Error(`unable to parse requirement: ${p}`);
  });
}

export function matches(selector: string | null, labels: Record<string, string> | undefined): boolean {
  if (!selector) return true;
  return parseSelector(selector).every((req) => req(labels ?? {}));
}
