/** The logger the core writes to; the CLI decides where lines go and which levels show. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  notice(message: string): void;
  warn(message: string): void;
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = { debug() {}, info() {}, notice() {}, warn() {} };
