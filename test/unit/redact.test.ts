// Issue 10, item 2: a password given as a query parameter (which pg honours) was printed verbatim, because
// redaction covered only the userinfo part of the URL.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { safeUrl, scrubSecrets } from '../../src/core/redact.js';

describe('safeUrl', () => {
  it('masks the userinfo password and keeps the rest', () => {
    assert.equal(
      safeUrl('postgres://app:hunter2@db.internal:5432/annotations'),
      'postgres://app:***@db.internal:5432/annotations',
    );
  });

  it('masks password, sslpassword and sslkey given as query parameters, and keeps the others as written', () => {
    const printed = safeUrl(
      'postgres://app@db/annotations?sslmode=verify-full&password=hunter2&sslrootcert=/etc/ca.pem&sslpassword=pass%20phrase&sslkey=/etc/key.pem&application_name=a%20b',
    );
    assert.equal(
      printed,
      'postgres://app@db/annotations?sslmode=verify-full&password=***&sslrootcert=/etc/ca.pem&sslpassword=***&sslkey=***&application_name=a%20b',
    );
  });

  it('masks a password in both places, a repeated parameter, and any case of the name', () => {
    const printed = safeUrl('postgresql://app:one@db/x?password=two&PASSWORD=three&password=four');
    for (const secret of ['one', 'two', 'three', 'four'])
      assert.ok(!printed.includes(secret), `${secret} in ${printed}`);
    assert.equal(printed, 'postgresql://app:***@db/x?password=***&PASSWORD=***&password=***');
  });

  it('masks a percent-encoded parameter name, which pg decodes to password', () => {
    assert.equal(safeUrl('postgres://app@db/x?pass%77ord=hunter2'), 'postgres://app@db/x?pass%77ord=***');
  });

  it('masks parameters pg ignores but whose name says secret', () => {
    assert.equal(
      safeUrl('postgres://app@db/x?db_password=a&api_token=b&client_secret=c&connect_timeout=5'),
      'postgres://app@db/x?db_password=***&api_token=***&client_secret=***&connect_timeout=5',
    );
  });

  it('leaves a URL without secrets unchanged, and never prints one it cannot parse', () => {
    assert.equal(safeUrl('postgres://app@db:5432/x?sslmode=require'), 'postgres://app@db:5432/x?sslmode=require');
    assert.equal(safeUrl('not a url hunter2'), '<unparseable url>');
  });
});

describe('scrubSecrets', () => {
  it('masks an sslkey value that pg echoes when it cannot open it (a key pasted in place of a path)', () => {
    const url = 'postgres://app@db/x?sslmode=require&sslkey=-----BEGIN%20PRIVATE%20KEY-----MIIEv';
    const pgMessage = "ENOENT: no such file or directory, open '-----BEGIN PRIVATE KEY-----MIIEv'";
    assert.equal(scrubSecrets(pgMessage, url), "ENOENT: no such file or directory, open '***'");
  });

  it('masks the passwords of every URL given, raw or decoded', () => {
    const text = 'failed: hunter2 / p@ss w0rd / pass%20w0rd';
    assert.equal(
      scrubSecrets(
        text,
        'postgres://a:hunter2@db/x',
        'postgres://a@db/x?password=p%40ss%20w0rd&sslpassword=pass%20w0rd',
      ),
      'failed: *** / *** / ***',
    );
  });

  it('keeps a password that equals the user name, which the message names as the user anyway', () => {
    const text = 'password authentication failed for user "postgres"';
    assert.equal(scrubSecrets(text, 'postgres://postgres:postgres@127.0.0.1:54329/training'), text);
  });

  it('leaves secrets under 4 characters, which would match by coincidence', () => {
    assert.equal(scrubSecrets('spec.template.spec', 'postgres://u:p@127.0.0.1:1/x'), 'spec.template.spec');
  });

  it('changes nothing without secrets or without a parseable URL', () => {
    assert.equal(
      scrubSecrets('connect ECONNREFUSED 127.0.0.1:1', 'postgres://app@127.0.0.1:1/x', ''),
      'connect ECONNREFUSED 127.0.0.1:1',
    );
  });
});
