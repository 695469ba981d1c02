// The adapter's error mapping and options; its I/O is covered by test/integration.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import { classify, kafkaConfig } from '../../src/consumers/kafka.js';
import { CnerError } from '../../src/errors.js';
import { silent } from './helpers.js';

const { KafkaJSConnectionError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError, KafkaJSSASLAuthenticationError, KafkaJSNonRetriableError } = kafkajs;

const protocolError = (type: string, code: number, retriable: boolean): Error =>
  new KafkaJSProtocolError({ message: type, type, code, retriable } as never);

describe('classify', () => {
  it('connection trouble → BROKER_UNAVAILABLE (retriable)', () => {
    const e = classify(new KafkaJSNumberOfRetriesExceeded(new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092'), { retryCount: 5, retryTime: 100 }), 'connecting');
    assert.equal(e.code, 'BROKER_UNAVAILABLE');
    assert.equal(e.retriable, true);
    assert.match(e.message, /^connecting: Kafka is unavailable \(.*ECONNREFUSED/);
    assert.equal(classify(protocolError('LEADER_NOT_AVAILABLE', 5, true), 'x').code, 'BROKER_UNAVAILABLE');
  });
  it('fencing → PRODUCER_FENCED, including the PRODUCER_FENCED code kafkajs does not know', () => {
    assert.equal(classify(protocolError('INVALID_PRODUCER_EPOCH', 47, false), 'commit').code, 'PRODUCER_FENCED');
    assert.equal(classify(protocolError('KAFKAJS_UNKNOWN_ERROR_CODE', 90, false), 'commit').code, 'PRODUCER_FENCED');
  });
  it('credentials and ACLs → KAFKA_NOT_AUTHORIZED (not retriable)', () => {
    // (kafkajs's typings declare no constructor argument; the class takes a message)
    const SaslError = KafkaJSSASLAuthenticationError as unknown as new (message: string) => Error;
    const e = classify(new SaslError('SASL PLAIN authentication failed'), 'connecting');
    assert.equal(e.code, 'KAFKA_NOT_AUTHORIZED');
    assert.equal(e.retriable, false);
    assert.equal(classify(protocolError('TOPIC_AUTHORIZATION_FAILED', 29, false), 'x').code, 'KAFKA_NOT_AUTHORIZED');
  });
  it('other kafkajs errors → KAFKA_ERROR (session restarted); non-kafkajs errors are bugs', () => {
    assert.equal(classify(new KafkaJSNonRetriableError('Transaction state exception: Invalid transition'), 'x').code, 'KAFKA_ERROR');
    assert.equal(classify(new TypeError('x is undefined'), 'x').code, 'INTERNAL');
    const ours = new CnerError('TRANSACTION_FAILED', 'aborted');
    assert.equal(classify(ours, 'x'), ours);
  });
});

describe('kafkaConfig', () => {
  const base = { brokers: ['a:1'], clientId: 'c', log: silent(), tls: null, sasl: null };
  it('maps SASL mechanisms and plain TLS', () => {
    const c = kafkaConfig({ ...base, tls: { caFile: null, certFile: null, keyFile: null }, sasl: { mechanism: 'scram-sha-256', username: 'u', password: 'p' } });
    assert.equal(c.ssl, true);
    assert.deepEqual(c.sasl, { mechanism: 'scram-sha-256', username: 'u', password: 'p' });
    const none = kafkaConfig(base);
    assert.equal(none.ssl, undefined);
    assert.equal(none.sasl, undefined);
  });
});
