import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/observability/logger.js';
import { CnerError } from '../../src/errors.js';

function capture() {
  const lines: string[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(l) } });
  return { log, lines, json: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('logger', () => {
  it('writes JSON lines with a level label, time and service', () => {
    const { log, json } = capture();
    log.info({ offset: '5' }, 'hello');
    const [line] = json();
    assert.equal(line!['level'], 'info');
    assert.equal(line!['service'], 'cner');
    assert.equal(line!['msg'], 'hello');
    assert.equal(typeof line!['time'], 'string');
  });

  it('redacts credentials wherever an options object is logged', () => {
    const { log, lines } = capture();
    log.info({ sasl: { mechanism: 'plain', username: 'u', password: 'hunter2' }, registry: { auth: { password: 'hunter2' } }, headers: { authorization: 'Basic aHVudGVyMg==' } }, 'options');
    assert.doesNotMatch(lines.join(''), /hunter2|aHVudGVyMg/);
  });

  it('serializes errors with code and context but withholds messages that may quote data', () => {
    const { log, json, lines } = capture();
    let parseError: unknown;
    try {
      JSON.parse('{"text":"CANARY-TEXT');
    } catch (e) {
      parseError = e;
    }
    log.error({ err: new CnerError('TRANSACTION_FAILED', 'transaction aborted', { cause: parseError, context: { partition: 3 } }) }, 'failed');
    const err = json()[0]!['err'] as Record<string, unknown>;
    assert.equal(err['code'], 'TRANSACTION_FAILED');
    assert.deepEqual(err['context'], { partition: 3 });
    assert.equal((err['cause'] as Record<string, unknown>)['type'], 'SyntaxError');
    assert.doesNotMatch(lines.join(''), /CANARY/);
  });
});
