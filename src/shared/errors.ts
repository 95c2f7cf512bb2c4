/**
 * Every error a user can see is a NemoclawError: it names what went wrong and what to do next.
 * The CLI prints `message` and `nextStep`, and exits with `exitCode`. Library code throws these
 * instead of calling process.exit.
 */
export type ErrorCode =
  | 'invalid_input'
  | 'policy_invalid'
  | 'policy_static_change'
  | 'not_running'
  | 'already_running'
  | 'io'
  | 'prerequisite_missing'
  | 'audit_corrupt'
  | 'not_found'
  | 'conflict'
  | 'denied'
  | 'internal';

export class NemoclawError extends Error {
  readonly code: ErrorCode;
  readonly nextStep: string | undefined;
  readonly exitCode: number;
  readonly details: unknown;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { nextStep?: string; exitCode?: number; details?: unknown; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'NemoclawError';
    this.code = code;
    this.nextStep = opts.nextStep;
    this.exitCode = opts.exitCode ?? 1;
    this.details = opts.details;
  }

  toJSON(): Record<string, unknown> {
    return { error: this.code, message: this.message, next_step: this.nextStep, details: this.details };
  }
}

export function isNemoclawError(err: unknown): err is NemoclawError {
  return err instanceof NemoclawError;
}

/** Render any thrown value for a human on stderr. */
export function describeError(err: unknown): string {
  if (isNemoclawError(err)) {
    return err.nextStep ? `${err.message}\n  next step: ${err.nextStep}` : err.message;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * A bounded, single-line JSON rendering of a client-sent value for an error message: never throws
 * (cycles, BigInt, nesting too deep for JSON.stringify) and never echoes more than `max` characters.
 */
export function previewJson(value: unknown, max = 80): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = Array.isArray(value) ? '[…]' : typeof value === 'object' && value !== null ? '{…}' : String(value);
  }
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}
