// Issue 15: `status --bogus` and `render-job extra` were ignored with exit 0, and `run --help` started the
// service. Each command now takes exactly the flags it declares.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseArgs, UsageError } from '../../src/cli/commandLine.js';
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
