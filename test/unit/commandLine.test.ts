// Issue 15: `status --bogus` and `render-job extra` were ignored with exit 0, and `run --help` started the
// service. Each command now takes exactly the flags it declares.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseArgs, parseInstant, UsageError } from '../../src/cli/commandLine.js';
import { COMMANDS, commandUsage, usage } from '../../src/cli/commands.js';

const rejects = (args: string[], spec = {}, expected: RegExp) =>
  assert.throws(
    () => parseArgs('cmd', spec, args),
    (err: unknown) => err instanceof UsageError && expected.test(err.message) && !err.message.includes('\n'),
  );

describe('command arguments', () => {
  it('takes the declared flags, in either form', () => {
    const spec = { '--json': 'switch', '--before': 'value', '--yes': 'switch' } as const;
    assert.deepEqual(parseArgs('cmd', spec, []), { flags: {}, help: false });
    assert.deepEqual(parseArgs('cmd', spec, ['--json', '--before', '2026-01-01', '--yes']), {
      flags: { '--json': true, '--before': '2026-01-01', '--yes': true },
      help: false,
    });
    assert.deepEqual(parseArgs('cmd', spec, ['--before=2026-01-01']).flags, { '--before': '2026-01-01' });
  });

  it('answers --help and -h for every command', () => {
    assert.equal(parseArgs('run', {}, ['--help']).help, true);
    assert.equal(parseArgs('run', {}, ['-h']).help, true);
  });

  for (const [args, spec, expected] of [
    [['--bogus'], { '--json': 'switch' }, /^cmd: unknown argument "--bogus"$/],
    [['extra'], {}, /^cmd: unknown argument "extra"$/],
    [['--json', '--json'], { '--json': 'switch' }, /^cmd: --json given twice$/],
    [['--json=yes'], { '--json': 'switch' }, /^cmd: --json takes no value$/],
    [['--before'], { '--before': 'value' }, /^cmd: --before needs a value$/],
    [['--before', '--yes'], { '--before': 'value', '--yes': 'switch' }, /^cmd: --before needs a value$/],
  ] as const) {
    it(`rejects ${args.join(' ')} in one line`, () => rejects([...args], spec, expected));
  }

  it('the usage lists every command of the table, each with its own usage', () => {
    for (const name of Object.keys(COMMANDS)) {
      assert.match(usage(), new RegExp(`^  ${name}\\b`, 'm'));
      assert.match(commandUsage(name), new RegExp(`^usage: training-controller ${name}`));
    }
  });
});

// Issue 21, item 8: `baseline --before` took whatever `new Date()` took: `2026-01-02T00:00:00` in the local
// time zone of the machine running it (under TZ=Asia/Tokyo, "Nothing pending" with 2 pending), `12` and
// `1/2/2026` as dates. An instant now needs an explicit offset, and is carried on as its UTC form.
describe('an instant on the command line (baseline --before)', () => {
  const MIDNIGHT = '2026-01-02T00:00:00.000Z';
  for (const [text, utc] of [
    ['2026-01-02T00:00:00Z', MIDNIGHT],
    ['2026-01-02T09:00:00+09:00', MIDNIGHT],
    ['2026-01-01T19:00:00-05:00', MIDNIGHT],
    ['2026-01-02T05:30+05:30', MIDNIGHT],
    ['2026-01-02T00:00:00-00:00', MIDNIGHT],
    ['2026-01-02t00:00:00z', MIDNIGHT],
    ['2026-01-02 00:00:00Z', MIDNIGHT],
    ['2026-01-02T00:00:00+0000', MIDNIGHT],
    ['2026-01-02T00:00:00+00', MIDNIGHT],
    ['2026-01-02T00:00:00.25Z', '2026-01-02T00:00:00.250Z'],
    ['2026-01-02T00:00:00.123456Z', '2026-01-02T00:00:00.123Z'],
    ['2024-02-29T23:59:59Z', '2024-02-29T23:59:59.000Z'],
  ] as const) {
    it(`${text} is ${utc}`, () => assert.deepEqual(parseInstant(text), { at: new Date(utc) }));
  }

  for (const [text, why] of [
    ['2026-01-02', /a date alone names no time zone: for midnight UTC write 2026-01-02T00:00:00Z/],
    ['2026-01-02T00:00:00', /no offset: add Z for UTC, or the offset such as \+09:00/],
    ['2026-01-02T00:00', /no offset/],
    ['12', /^$/],
    ['1/2/2026', /^$/],
    ['yesterday', /^$/],
    ['Fri, 02 Jan 2026 00:00:00 GMT', /^$/],
    ['1767312000000', /^$/],
    ['2026-02-29T00:00:00Z', /no such date or time/],
    ['2026-13-01T00:00:00Z', /no such date or time/],
    ['2026-01-02T24:00:00Z', /no such date or time/],
    ['2026-01-02T00:60:00Z', /no such date or time/],
    ['2026-01-02T00:00:00+24:00', /no such date or time/],
  ] as const) {
    it(`refuses ${text}`, () => {
      const r = parseInstant(text);
      assert.ok('why' in r, `took ${text} as ${'at' in r ? r.at.toISOString() : ''}`);
      assert.match(r.why, why);
    });
  }

  it('a flag of kind instant carries the UTC form, or is refused in one line naming it with an example', () => {
    const spec = { '--before': 'instant' } as const;
    assert.deepEqual(parseArgs('baseline', spec, ['--before', '2026-01-02T09:00:00+09:00']).flags, {
      '--before': MIDNIGHT,
    });
    assert.deepEqual(parseArgs('baseline', spec, ['--before=2026-01-02T00:00:00Z']).flags, { '--before': MIDNIGHT });
    rejects(
      ['--before', '12'],
      spec,
      /^cmd: --before must be an ISO 8601 timestamp with an offset, such as 2026-01-02T00:00:00Z or 2026-01-02T09:00:00\+09:00 \(got "12"\)$/,
    );
    rejects(
      ['--before', '2026-01-02T00:00:00'],
      spec,
      /^cmd: --before must be .* \(got "2026-01-02T00:00:00": no offset: /,
    );
  });
});
