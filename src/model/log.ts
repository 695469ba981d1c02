// The slice of a logger the model layer needs; a pino Logger fits it.
// Messages carry ids, sizes and reasons only: never record text.

export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const silentLogger: Logger = Object.freeze({
  info: () => {},
  warn: () => {},
  error: () => {},
});
