// The adapter's error mapping and options; its I/O is covered by test/integration.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import { classify, kafkaConfig } from '../../src/kafka/adapter.js';
import { CnerError } from '../../src/errors.js';
import { silent } from '../helpers.js';

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

describe('compression codecs (registered in kafkajs by the adapter)', () => {
  const { CompressionCodecs, CompressionTypes } = kafkajs;
  // Text-like and random bytes: over lz4js's 4 MiB block, so frames have several blocks.
  const big = Buffer.concat([Buffer.from('患者有高血压病史，口服氨氯地平。'.repeat(200_000)), Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251))]);
  for (const [name, type] of [['snappy', CompressionTypes.Snappy], ['lz4', CompressionTypes.LZ4], ['zstd', CompressionTypes.ZSTD], ['gzip', CompressionTypes.GZIP]] as const) {
    it(`${name}: what it writes, it reads (empty, small, ${(big.length / 2 ** 20).toFixed(1)} MiB)`, async () => {
      const codec = CompressionCodecs[type]() as { compress(e: { buffer: Buffer }): Promise<Buffer>; decompress(b: Buffer): Promise<Buffer> };
      for (const data of [Buffer.alloc(0), Buffer.from('胸部CT示右肺结节。'), big]) {
        const packed = await codec.compress({ buffer: data });
        assert.deepEqual(await codec.decompress(packed), data);
      }
    });
  }

  it('lz4 frames say their blocks are independent (Kafka\'s Java reader refuses dependent blocks), with a valid header checksum', async () => {
    const codec = CompressionCodecs[CompressionTypes.LZ4]() as { compress(e: { buffer: Buffer }): Promise<Buffer> };
    const frame = await codec.compress({ buffer: big });
    assert.deepEqual([...frame.subarray(0, 6)], [0x04, 0x22, 0x4d, 0x18, 0x60, 0x70], 'magic, version 01 + block independence, 4 MiB blocks');
    // The header checksum is the second byte of xxHash32 (seed 0) of the descriptor; xxHash32 of [0x60, 0x70] is fixed.
    assert.equal(frame[6], (xxh32(Buffer.from([0x60, 0x70])) >>> 8) & 0xff);
  });
});

/** xxHash32, seed 0, for inputs under 16 bytes (the LZ4 frame descriptor), from its specification. */
function xxh32(input: Buffer): number {
  const P1 = 2654435761, P2 = 2246822519, P3 = 3266489917, P4 = 668265263, P5 = 374761393;
  const rotl = (x: number, r: number): number => ((x << r) | (x >>> (32 - r))) >>> 0;
  let h = (P5 + input.length) >>> 0;
  let i = 0;
  for (; i + 4 <= input.length; i += 4) h = Math.imul(rotl((h + Math.imul(input.readUInt32LE(i), P3)) >>> 0, 17), P4) >>> 0;
  for (; i < input.length; i++) h = Math.imul(rotl((h + Math.imul(input[i]!, P5)) >>> 0, 11), P1) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, P2) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, P3) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}
