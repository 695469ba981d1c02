import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EXECUTION_PROVIDERS, isExecutionProvider } from '../../src/model/session-options.js';

describe('isExecutionProvider', () => {
  it('accepts exactly the names of the provider table', () => {
    for (const name of Object.keys(EXECUTION_PROVIDERS)) assert.ok(isExecutionProvider(name), name);
    for (const name of ['tpu', 'CPU', '', 'toString', 'constructor', '__proto__']) assert.equal(isExecutionProvider(name), false, name);
  });
});
