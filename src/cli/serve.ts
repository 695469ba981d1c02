// `cner serve`: the stream processor. Configuration comes from environment
// variables only (README.md, Configuration); logs are JSON lines on stdout.

import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { type RunningService, StartAborted, startService } from '../service.js';
import { describeError } from '../errors.js';
import { createLogger, flushLogger } from '../observability/logger.js';
import { type Command, type CommandIo, EXIT } from './command.js';

const USAGE = `Usage: cner serve

Runs the stream processor: reads EMR records from KAFKA_INPUT_TOPIC, tags
them, and publishes one ClinicalEntities event per record to
KAFKA_OUTPUT_TOPIC (bad records to KAFKA_DLT_TOPIC), exactly once, in Kafka
transactions. Configured by environment variables (see README.md, Configuration);
KAFKA_BROKERS and SCHEMA_REGISTRY_URL are required. Serves /livez, /readyz and
/metrics on CNER_HTTP_PORT. SIGTERM or SIGINT: drops work not yet in a
transaction (the partition's next owner reads it again), waits for a commit
in flight, leaves the group and exits 0, at the latest 5 s before
CNER_SHUTDOWN_GRACE_SECONDS end (a second signal exits at once).
`;

/** Left of the grace period for exiting by ourselves before SIGKILL. */
const SHUTDOWN_MARGIN_MS = 5_000;

export const command: Command = {
  usage: USAGE,
  async run(argv: readonly string[], _io: CommandIo): Promise<number> {
    parseArgs({ args: [...argv], options: {}, strict: true });
    const { config, warnings } = loadConfig(process.env, 'serve');
    const log = createLogger({ level: config.logLevel });
    for (const w of warnings) log.warn(w);

    // Signals are handled from the start: a SIGTERM while we wait for the
    // broker or the registry stops the wait instead of killing the process.
    const abort = new AbortController();
    let service: RunningService | null = null;
    let resolveExit: (code: number) => void = () => {};
    const exit = new Promise<number>((resolve) => (resolveExit = resolve));
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting without waiting');
        resolveExit(EXIT.failures);
        return;
      }
      stopping = true;
      const guardMs = Math.max(1_000, config.shutdownGraceMs - SHUTDOWN_MARGIN_MS);
      log.info({ signal, guardMs }, 'stopping: dropping work not yet in a transaction, waiting for a commit in flight, leaving the group');
      setTimeout(() => {
        log.error({ timeoutMs: guardMs }, 'graceful stop took too long: exiting');
        resolveExit(EXIT.failures);
      }, guardMs).unref();
      abort.abort();
      if (service !== null) {
        service.stop().then(
          () => resolveExit(EXIT.ok),
          (e: unknown) => {
            log.error({ err: e }, 'stopping failed');
            resolveExit(EXIT.failures);
          },
        );
      }
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);

    try {
      service = await startService({ config, log, signal: abort.signal });
    } catch (e) {
      if (e instanceof StartAborted) {
        log.info('stopped');
        return finish(log, EXIT.ok);
      }
      log.fatal({ err: e, code: describeError(e).code }, 'the stream processor could not start');
      await flushLogger(log);
      throw e;
    }
    if (stopping) {
      // A signal arrived as the start completed.
      await service.stop();
      resolveExit(EXIT.ok);
    }
    // A fatal error in the loop (a bug, bad credentials) ends the process; unavailability never does.
    const running = service;
    running.done.catch(async () => {
      await running.stop().catch(() => {});
      resolveExit(EXIT.failures);
    });

    const code = await exit;
    if (code === EXIT.ok) log.info('stopped');
    return finish(log, code);
  },
};

async function finish(log: ReturnType<typeof createLogger>, code: number): Promise<number> {
  await flushLogger(log);
  // Kafka sockets and timers must not keep a stopped processor alive.
  setTimeout(() => process.exit(code), 100).unref();
  return code;
}
