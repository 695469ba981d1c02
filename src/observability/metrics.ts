// Prometheus metrics of the processor (prom-client), on a registry of their
// own so tests and a second processor in one process do not collide.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Dependency = 'kafka' | 'registry' | 'model';

export interface Metrics {
  readonly registry: Registry;
  /** Records consumed, by value format (avro, json, unknown). */
  readonly recordsIn: Counter<'format'>;
  /** ClinicalEntities events committed to the output topic. */
  readonly eventsOut: Counter;
  /** Records committed to the dead-letter topic, by error code. */
  readonly deadLettered: Counter<'code'>;
  /** Entities found, by type code. */
  readonly entities: Counter<'type'>;
  /** Records per committed transaction. */
  readonly batchSize: Histogram;
  /** Time to tag one record (tagRecord: batcher wait + inference + decoding). */
  readonly inferenceSeconds: Histogram;
  /** Linking one record's entities (when a linker is configured). */
  readonly linkingSeconds: Histogram;
  /** Kafka record timestamp → committed publish. */
  readonly endToEndSeconds: Histogram;
  /** Records of the partition not yet committed (high watermark − next offset). */
  readonly consumerLag: Gauge<'topic' | 'partition'>;
  readonly transactions: Counter<'result'>;
  /** Batches read again after a retriable failure, by error code. */
  readonly retries: Counter<'code'>;
  /** Fetched records not processed because an earlier owner of their partition had committed them (a duplicate prevented). */
  readonly skippedCommitted: Counter;
  /** 1 while the dependency answers, 0 while it is unavailable. */
  readonly dependencyUp: Gauge<'dependency'>;
  /** Times a dependency was found unavailable. */
  readonly unavailable: Counter<'dependency'>;
  readonly ready: Gauge;
  /** Model versions from the model topic that failed verification, by reason. */
  readonly modelRejected: Counter<'reason'>;
  /** 1 for the model version serving live traffic (0 for earlier ones). */
  readonly modelLive: Gauge<'version'>;
  /** From seeing a new live selection to serving it (download, verify, load, switch). */
  readonly modelSwitchSeconds: Histogram;
  /** 1 for the linker bundle in use (absent without one). */
  readonly linkerInfo: Gauge<'version' | 'reranker'>;
  /** Shadow run: entity-level F1 of the candidate against the live model, per type (and `all`). */
  readonly shadowF1: Gauge<'type' | 'candidate' | 'live'>;
  /** Records also tagged by the candidate model in shadow. */
  readonly shadowRecords: Counter<'candidate'>;
}

export function createMetrics(options: { readonly defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'cner_' });
  const registers = [registry];
  const metrics: Metrics = {
    registry,
    recordsIn: new Counter({ name: 'cner_records_in_total', help: 'Input records consumed, by value format.', labelNames: ['format'], registers }),
    eventsOut: new Counter({ name: 'cner_events_out_total', help: 'ClinicalEntities events committed to the output topic.', registers }),
    deadLettered: new Counter({ name: 'cner_dead_lettered_total', help: 'Records committed to the dead-letter topic, by error code.', labelNames: ['code'], registers }),
    entities: new Counter({ name: 'cner_entities_total', help: 'Entities published, by type code.', labelNames: ['type'], registers }),
    batchSize: new Histogram({
      name: 'cner_batch_size',
      help: 'Input records per committed transaction.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers,
    }),
    inferenceSeconds: new Histogram({
      name: 'cner_inference_duration_seconds',
      help: 'Time to tag one record: dynamic-batch wait, inference and decoding.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    linkingSeconds: new Histogram({
      name: 'cner_linking_duration_seconds',
      help: 'Time to link one record\'s entities to their codes: batching wait, inference, decision (answers from the cache included).',
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    endToEndSeconds: new Histogram({
      name: 'cner_end_to_end_latency_seconds',
      help: 'From the input record\'s Kafka timestamp to the commit of its event.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    }),
    consumerLag: new Gauge({ name: 'cner_consumer_lag', help: 'Records of a partition not yet committed.', labelNames: ['topic', 'partition'], registers }),
    transactions: new Counter({ name: 'cner_transactions_total', help: 'Kafka transactions, by result (committed, aborted).', labelNames: ['result'], registers }),
    retries: new Counter({ name: 'cner_retries_total', help: 'Batches read again after a retriable failure, by error code.', labelNames: ['code'], registers }),
    skippedCommitted: new Counter({
      name: 'cner_skipped_committed_records_total',
      help: 'Fetched records skipped because an earlier owner of their partition had committed them (duplicates prevented after a partition moved).',
      registers,
    }),
    dependencyUp: new Gauge({ name: 'cner_dependency_up', help: '1 while a dependency (kafka, registry, model) is available, else 0.', labelNames: ['dependency'], registers }),
    unavailable: new Counter({ name: 'cner_dependency_unavailable_total', help: 'Times a dependency was found unavailable.', labelNames: ['dependency'], registers }),
    ready: new Gauge({ name: 'cner_ready', help: '1 while /readyz answers 200.', registers }),
    modelRejected: new Counter({ name: 'cner_model_versions_rejected_total', help: 'Model versions that failed verification, by reason.', labelNames: ['reason'], registers }),
    modelLive: new Gauge({ name: 'cner_model_live_info', help: '1 for the model version serving live traffic, 0 for versions served before.', labelNames: ['version'], registers }),
    linkerInfo: new Gauge({ name: 'cner_linker_info', help: '1 for the ICD-10 linker bundle in use; reranker="true" when it re-ranks its candidates.', labelNames: ['version', 'reranker'], registers }),
    modelSwitchSeconds: new Histogram({
      name: 'cner_model_switch_seconds',
      help: 'From seeing a new live model version to serving it: reassemble, verify, load, switch.',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    }),
    shadowF1: new Gauge({
      name: 'cner_model_shadow_agreement_f1',
      help: 'Entity-level F1 of the shadow candidate against the live model (live = reference), per entity type and all.',
      labelNames: ['type', 'candidate', 'live'],
      registers,
    }),
    shadowRecords: new Counter({ name: 'cner_model_shadow_records_total', help: 'Records also tagged by the candidate model in shadow.', labelNames: ['candidate'], registers }),
  };
  for (const d of ['kafka', 'registry', 'model'] satisfies Dependency[]) metrics.dependencyUp.set({ dependency: d }, 0);
  metrics.transactions.inc({ result: 'committed' }, 0);
  metrics.transactions.inc({ result: 'aborted' }, 0);
  return metrics;
}
