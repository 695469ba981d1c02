// `cner model publish DIR | list | live VERSION`: model versions on the
// model topic (docs/model-versions.md). Kafka, registry and topic come from
// the same environment variables as `cner serve`.

import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { createKafkaClient } from '../kafka/adapter.js';
import { ModelTopicWriter, listVersions } from '../versions/topic.js';
import { SchemaRegistry } from '../records/registry.js';
import { DEFAULT_PART_BYTES } from '../versions/archive.js';
import { createLogger } from '../observability/logger.js';
import { type Command, type CommandIo, EXIT } from './command.js';

const USAGE = `Usage: cner model <subcommand>

  publish DIR [--live] [--reason TEXT] [--part-bytes N] [--uri URI]
      put the bundle in DIR on KAFKA_MODEL_TOPIC (created compacted if missing):
      its announcement, then its archive in parts of at most N bytes
      (default ${DEFAULT_PART_BYTES}), or only the announcement of an archive
      stored at URI; --live also makes it the live version
  list
      the versions on the topic, oldest first, and which one is live
  live VERSION [--reason TEXT]
      make VERSION (already on the topic) the live one: every processor
      switches to it; naming an older version rolls back

Needs KAFKA_BROKERS and SCHEMA_REGISTRY_URL (and the TLS/SASL variables as
for 'cner serve'); KAFKA_MODEL_TOPIC defaults to ner.models.versions.
`;

export const command: Command = {
  usage: USAGE,
  async run(argv: readonly string[], io: CommandIo): Promise<number> {
    const { values, positionals } = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: { live: { type: 'boolean' }, reason: { type: 'string' }, 'part-bytes': { type: 'string' }, uri: { type: 'string' } },
    });
    const [sub, arg] = positionals;
    if (sub === undefined || !['publish', 'list', 'live'].includes(sub) || ((sub === 'publish' || sub === 'live') && arg === undefined)) {
      io.stderr.write(USAGE);
      return EXIT.usage;
    }
    const partBytes = values['part-bytes'] === undefined ? DEFAULT_PART_BYTES : Number(values['part-bytes']);
    if (!Number.isInteger(partBytes) || partBytes < 1 || partBytes > 1_000_000 - 16_384) {
      io.stderr.write('cner model: --part-bytes must be an integer between 1 and 983616 (a part must fit a 1 MB message)\n');
      return EXIT.usage;
    }
    const { config } = loadConfig(process.env, 'serve');
    const log = createLogger({ level: 'warn', destination: { write: (s: string) => void io.stderr.write(s) } });
    const kafka = createKafkaClient({ ...config.kafka, log });
    const registry = new SchemaRegistry({ url: config.registry.url!, auth: config.registry.auth });
    const topic = config.kafka.modelTopic;
    const writer = new ModelTopicWriter(kafka, registry, topic, config.kafka.topicReplicationFactor);
    switch (sub) {
      case 'publish': {
        const published = await writer.publish(arg!, {
          live: values.live === true,
          partBytes,
          ...(values.reason === undefined ? {} : { reason: values.reason }),
          ...(values.uri === undefined ? {} : { uri: values.uri }),
        });
        io.stdout.write(`${JSON.stringify({ topic, ...published, live: values.live === true })}\n`);
        return EXIT.ok;
      }
      case 'live': {
        const { rows } = await listVersions(kafka, registry, topic);
        if (!rows.some((r) => r.version === arg)) {
          io.stderr.write(`cner model: version ${JSON.stringify(arg)} is not on ${topic} (cner model list shows what is)\n`);
          return EXIT.failures;
        }
        await writer.setLive(arg!, values.reason === undefined ? {} : { reason: values.reason });
        io.stdout.write(`${JSON.stringify({ topic, live: arg })}\n`);
        return EXIT.ok;
      }
      default: {
        const { rows, live } = await listVersions(kafka, registry, topic);
        const header = ['', 'VERSION', 'CREATED', 'SIZE', 'PARTS', 'LABELS', 'MEAN F1', 'SHA256', 'PUBLISHED BY'];
        const table = [header, ...rows.map((r) => [r.live ? '*' : '', r.version, r.created, String(r.size), r.parts, r.labelsOk ? 'ok' : 'DIFFERENT', r.f1, r.sha256.slice(0, 12), r.publishedBy])];
        const widths = header.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
        for (const row of table) io.stdout.write(`${row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
        io.stdout.write(live === null ? `no live version on ${topic}: processors serve their bundled model\n` : `live: ${live}\n`);
        return EXIT.ok;
      }
    }
  },
};
