// The two patch formats the fake kube-apiserver accepts, as pure functions on JSON values. They follow what
// the real server runs rather than the letter of the RFCs where the two differ: k8s.io/apiserver
// pkg/endpoints/handlers/patch.go applies both with gopkg.in/evanphx/json-patch.v4 (jsonpatch.MergePatch and
// jsonpatch.DecodePatch(...).Apply), and the messages below are that library's.
//   mergePatch:     RFC 7386. A patch that is not a JSON object throws BadPatch (the server: 400 "Invalid JSON Patch").
//   applyJsonPatch: RFC 6902 add, remove, replace, move, copy, test; JSON pointers with ~0/~1; `-` appends.
//                   A body that is not an array of operations throws BadPatch (400); any operation that fails
//                   throws PatchFailed (the server: 422, see fakeKube.ts). Kept from evanphx v4: `replace` of a
//                   missing member of an existing object adds it (its partialDoc.get never fails), `test` of a
//                   missing member passes when the value is null. Not kept: negative array indices.
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Container = Json[] | { [key: string]: Json };

/** The patch document itself is malformed: the real server answers 400 BadRequest. */
export class BadPatch extends Error {}
/** An operation could not be applied to the object: the real server answers 422. */
export class PatchFailed extends Error {}

const isObject = (v: Json | undefined): v is { [key: string]: Json } =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) throw new BadPatch('Invalid JSON Patch');
  return merge(target, patch);
}

function merge(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: { [key: string]: Json } = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = merge(out[k], v);
  }
  return out;
}

export function jsonEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b))
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  if (!isObject(a) || !isObject(b)) return false;
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => k in b && jsonEqual(a[k], b[k]));
}

const missing = 'missing value';
const unescape = (token: string) => token.replace(/~1/g, '/').replace(/~0/g, '~');

/** evanphx's findObject: the container that holds the last token of `path`, or null when any step is missing. */
function findObject(doc: Json, path: string): { con: Container; key: string } | null {
  const split = path.split('/');
  if (split.length < 2) return null;
  let cur: Json = doc;
  for (const token of split.slice(1, -1)) {
    if (cur === null || typeof cur !== 'object') return null;
    const key = unescape(token);
    const next: Json | undefined = Array.isArray(cur) ? (/^\d+$/.test(key) ? cur[Number(key)] : undefined) : cur[key];
    if (next === undefined || next === null || typeof next !== 'object') return null;
    cur = next;
  }
  if (cur === null || typeof cur !== 'object') return null;
  return { con: cur, key: unescape(split[split.length - 1] as string) };
}

function index(key: string, length: number): number {
  if (!/^\d+$/.test(key)) throw new PatchFailed(`value was not a proper array index: '${key}'`);
  const i = Number(key);
  if (i >= length) throw new PatchFailed(`Unable to access invalid index: ${i}: invalid index referenced`);
  return i;
}

function get(con: Container, key: string): Json | undefined {
  return Array.isArray(con) ? con[index(key, con.length)] : con[key];
}

function add(doc: Json, path: string, value: Json): void {
  const at = findObject(doc, path);
  if (!at) throw new PatchFailed(`add operation does not apply: doc is missing path: "${path}": ${missing}`);
  if (!Array.isArray(at.con)) at.con[at.key] = value;
  else if (at.key === '-') at.con.push(value);
  else at.con.splice(index(at.key, at.con.length + 1), 0, value);
}

function remove(doc: Json, path: string): Json {
  const at = findObject(doc, path);
  if (!at) throw new PatchFailed(`remove operation does not apply: doc is missing path: "${path}": ${missing}`);
  if (Array.isArray(at.con)) return at.con.splice(index(at.key, at.con.length), 1)[0] as Json;
  const old = at.con[at.key];
  if (old === undefined)
    throw new PatchFailed(
      `error in remove for path: '${path}': Unable to remove nonexistent key: ${at.key}: ${missing}`,
    );
  delete at.con[at.key];
  return old;
}

function read(doc: Json, path: string, op: string): Json {
  if (path === '') return doc;
  const at = findObject(doc, path);
  const v = at ? get(at.con, at.key) : undefined;
  if (v === undefined)
    throw new PatchFailed(`${op} operation does not apply: doc is missing from path: ${path}: ${missing}`);
  return v;
}

export function applyJsonPatch(original: Json, ops: unknown): Json {
  if (!Array.isArray(ops))
    throw new BadPatch(
      `json: cannot unmarshal ${ops === null ? 'null' : typeof ops} into Go value of type jsonpatch.Patch`,
    );
  let doc = structuredClone(original);
  for (const raw of ops as unknown[]) {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new BadPatch('json: cannot unmarshal into Go value of type jsonpatch.Operation');
    const op = raw as { op?: unknown; path?: unknown; from?: unknown; value?: Json };
    if (typeof op.path !== 'string') throw new PatchFailed(`operation missing path field: ${missing}`);
    const path = op.path;
    const value = op.value;
    const needValue = () => {
      if (value === undefined) throw new PatchFailed(`operation, missing value field: ${missing}`);
      return structuredClone(value);
    };
    switch (op.op) {
      case 'add':
        add(doc, path, needValue());
        break;
      case 'remove':
        remove(doc, path);
        break;
      case 'replace': {
        const v = needValue();
        if (path === '') {
          if (v === null || typeof v !== 'object')
            throw new PatchFailed('replace operation value must be object or array');
          doc = v;
          break;
        }
        const at = findObject(doc, path);
        if (!at) throw new PatchFailed(`replace operation does not apply: doc is missing path: ${path}: ${missing}`);
        if (Array.isArray(at.con)) {
          if (!/^\d+$/.test(at.key) || Number(at.key) >= at.con.length)
            throw new PatchFailed(`replace operation does not apply: doc is missing key: ${path}: ${missing}`);
          at.con[Number(at.key)] = v;
        } else at.con[at.key] = v; // a missing member is added, as evanphx v4 does
        break;
      }
      case 'move':
      case 'copy': {
        if (typeof op.from !== 'string') throw new PatchFailed(`operation, missing from field: ${missing}`);
        const v =
          op.op === 'move'
            ? (read(doc, op.from, 'move'), remove(doc, op.from))
            : structuredClone(read(doc, op.from, 'copy'));
        add(doc, path, v);
        break;
      }
      case 'test': {
        let actual: Json | undefined;
        if (path === '') actual = doc;
        else {
          const at = findObject(doc, path);
          if (!at) throw new PatchFailed(`test operation does not apply: is missing path: ${path}: ${missing}`);
          actual = get(at.con, at.key);
        }
        const passes =
          actual === undefined
            ? value === undefined || value === null
            : value !== undefined && jsonEqual(actual, value);
        if (!passes) throw new PatchFailed(`testing value ${path} failed: test failed`);
        break;
      }
      default:
        throw new PatchFailed(`Unexpected kind: ${String(op.op)}`);
    }
  }
  return doc;
}
