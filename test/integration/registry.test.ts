// Our registry adapter against the real registry (Apicurio's Confluent-
// compatible API here): idempotent registration, BACKWARD compatibility on
// the subjects we create, what an incompatible change gets, ids that resolve.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { loadSchema } from '../../src/records/avro.js';
import { SchemaRegistry } from '../../src/records/registry.js';
import { registerSchemas } from '../../src/service.js';
import { CnerError } from '../../src/errors.js';
import { type Services, getServices, silentLogger, uniqueName } from './helpers.js';

const services = await getServices();
const skip = typeof services === 'string' ? services : false;

describe('schema registry', { skip, timeout: 60_000 }, () => {
  const s = services as Services;

  it('registers both schemas idempotently, BACKWARD, and resolves their ids', async () => {
    const run = uniqueName('it.reg');
    const { config } = loadConfig({ KAFKA_BROKERS: 'x:1', SCHEMA_REGISTRY_URL: s.registryUrl, KAFKA_INPUT_TOPIC: `${run}.raw`, KAFKA_OUTPUT_TOPIC: `${run}.entities` });
    const registry = new SchemaRegistry({ url: s.registryUrl, auth: null });
    const input = loadSchema('EmrRecord');
    const output = loadSchema('ClinicalEntities');
    const id1 = await registerSchemas(registry, config, input.text, output.text, silentLogger());
    const id2 = await registerSchemas(registry, config, input.text, output.text, silentLogger());
    assert.equal(id1, id2, 'same schema, same id');
    assert.deepEqual(await versions(s.registryUrl, `${run}.entities-value`), [1]);
    assert.deepEqual(await versions(s.registryUrl, `${run}.raw-value`), [1]);
    assert.equal(await registry.latestSchemaId(`${run}.entities-value`), id1);
    assert.equal(await registry.compatibility(`${run}.entities-value`), 'BACKWARD');
    assert.equal(await registry.compatibility(`${run}.raw-value`), 'BACKWARD');
    const type = await registry.writerType(id1);
    assert.equal(type.name, 'health.cner.ClinicalEntities');
    assert.match(JSON.stringify(type.schema({ exportAttrs: true })), /疾病和诊断/, 'non-ASCII docs survive');

    // A new field with a default is a compatible change; one without is refused.
    const schema = JSON.parse(output.text) as { fields: unknown[] };
    const compatible = { ...schema, fields: [...schema.fields, { name: 'pipelineRun', type: ['null', 'string'], default: null, doc: 'x' }] };
    const added = await registry.register(`${run}.entities-value`, JSON.stringify(compatible));
    assert.notEqual(added, id1);
    const incompatible = { ...schema, fields: [...schema.fields, { name: 'required', type: 'string', doc: 'x' }] };
    await assert.rejects(registry.register(`${run}.entities-value`, JSON.stringify(incompatible)), (e: unknown) => e instanceof CnerError && e.code === 'REGISTRY_REJECTED');
  });

  it('processors starting together on a fresh topic all register, with one id (a 409 on the compatibility rule is success)', async () => {
    // The race (Apicurio: two PUTs creating the subject's COMPATIBILITY rule at once, one gets 409) is
    // not hit on every try: several fresh topics, several processors each.
    const input = loadSchema('EmrRecord');
    const output = loadSchema('ClinicalEntities');
    for (let round = 0; round < 5; round++) {
      const run = uniqueName('it.race');
      const { config } = loadConfig({ KAFKA_BROKERS: 'x:1', SCHEMA_REGISTRY_URL: s.registryUrl, KAFKA_INPUT_TOPIC: `${run}.raw`, KAFKA_OUTPUT_TOPIC: `${run}.entities` });
      // One registry client per processor, as separate processes would have.
      const ids = await Promise.all(Array.from({ length: 6 }, () => registerSchemas(new SchemaRegistry({ url: s.registryUrl, auth: null }), config, input.text, output.text, silentLogger())));
      assert.equal(new Set(ids).size, 1, `one id for all: ${ids.join(', ')}`);
      assert.deepEqual(await versions(s.registryUrl, `${run}.entities-value`), [1]);
      const registry = new SchemaRegistry({ url: s.registryUrl, auth: null });
      assert.equal(await registry.compatibility(`${run}.entities-value`), 'BACKWARD');
      assert.equal(await registry.compatibility(`${run}.raw-value`), 'BACKWARD');
      // Setting a level concurrently, directly, hits the same rule creation.
      const subject = `${run}.direct-value`;
      await registry.register(subject, output.text);
      await registry.deleteSubject(subject).catch(() => {});
      await registry.register(subject, output.text);
      await Promise.all(Array.from({ length: 6 }, () => new SchemaRegistry({ url: s.registryUrl, auth: null }).setCompatibility(subject, 'FULL')));
      assert.equal(await registry.compatibility(subject), 'FULL');
    }
  });

  it('UNKNOWN_SCHEMA for an id the registry never issued', async () => {
    const registry = new SchemaRegistry({ url: s.registryUrl, auth: null });
    await assert.rejects(registry.writerType(2_000_000_001), (e: unknown) => e instanceof CnerError && e.code === 'UNKNOWN_SCHEMA');
  });

  it('raises a subject at NONE to BACKWARD, keeps any other level', async () => {
    const run = uniqueName('it.lvl');
    const { config } = loadConfig({ KAFKA_BROKERS: 'x:1', SCHEMA_REGISTRY_URL: s.registryUrl, KAFKA_INPUT_TOPIC: `${run}.raw`, KAFKA_OUTPUT_TOPIC: `${run}.entities` });
    const registry = new SchemaRegistry({ url: s.registryUrl, auth: null });
    const input = loadSchema('EmrRecord');
    const output = loadSchema('ClinicalEntities');
    // Subjects made earlier or by someone else: the output one at NONE, the input one at FULL.
    await registry.register(`${run}.entities-value`, output.text);
    await registry.setCompatibility(`${run}.entities-value`, 'NONE');
    await registry.register(`${run}.raw-value`, input.text);
    await registry.setCompatibility(`${run}.raw-value`, 'FULL');
    // The library registers only under a subject whose level it is given: register passes the subject's own.
    const outputId = await registerSchemas(registry, config, input.text, output.text, silentLogger());
    assert.equal(await registry.latestSchemaId(`${run}.entities-value`), outputId);
    assert.equal(await registry.compatibility(`${run}.entities-value`), 'BACKWARD');
    assert.equal(await registry.register(`${run}.raw-value`, input.text), await registry.lookup(`${run}.raw-value`, input.text));
    assert.equal(await registry.compatibility(`${run}.raw-value`), 'FULL');
  });
});

/** Version numbers of a subject (a listing the library does not offer; only this test needs it). */
async function versions(registryUrl: string, subject: string): Promise<number[]> {
  const res = await fetch(`${registryUrl}/subjects/${encodeURIComponent(subject)}/versions`);
  assert.equal(res.status, 200);
  return (await res.json()) as number[];
}
