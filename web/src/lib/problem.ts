// What the console tells a person when the API or a socket says no: every problem+json
// answer shows its title and detail, and a refusal that passes says when to try again.

export interface ProblemBody {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  errors?: { field?: string; message?: string; code?: string }[];
  [key: string]: unknown;
}

/** An API answer that was not a success, with what the server said about it. */
export class ApiProblem extends Error {
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly code: string;
  readonly retryAfterSecs: number | null;
  readonly fields: { field: string; message: string }[];

  constructor(status: number, body: ProblemBody | null, retryAfter: string | null) {
    const title = body?.title ?? statusTitle(status);
    const detail = body?.detail ?? "";
    super(detail ? `${title}: ${detail}` : title);
    this.name = "ApiProblem";
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.code = body?.code ?? "";
    this.retryAfterSecs = parseRetryAfter(retryAfter);
    this.fields = (body?.errors ?? []).map((e) => ({
      field: e.field ?? "",
      message: e.message ?? e.code ?? "invalid",
    }));
  }
}

/** A network failure: the server could not be reached at all. */
export class Unreachable extends Error {
  constructor(cause: unknown) {
    super(`The server cannot be reached (${cause instanceof Error ? cause.message : String(cause)}).`);
    this.name = "Unreachable";
  }
}

export function parseRetryAfter(value: string | null): number | null {
  if (value === null || value.trim() === "") return null;
  const secs = Number(value);
  if (Number.isFinite(secs) && secs >= 0) return Math.ceil(secs);
  const at = Date.parse(value);
  if (Number.isNaN(at)) return null;
  return Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

function statusTitle(status: number): string {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return `Error ${status}`;
  }
}

export interface Described {
  title: string;
  detail: string;
  /** A sentence on when to try again, for refusals that pass (429, 503). */
  retry: string | null;
  fields: { field: string; message: string }[];
}

export function seconds(n: number): string {
  return n === 1 ? "1 second" : `${n} seconds`;
}

/** Turns anything thrown by an API call into words for a person. */
export function describe(error: unknown): Described {
  if (error instanceof ApiProblem) {
    let retry: string | null = null;
    if (error.status === 429 || error.status === 503) {
      retry = error.retryAfterSecs !== null
        ? `Try again in ${seconds(error.retryAfterSecs)}.`
        : "Try again in a moment.";
    }
    return { title: error.title, detail: error.detail, retry, fields: error.fields };
  }
  if (error instanceof Unreachable) {
    return { title: "Offline", detail: error.message, retry: "It is tried again when the connection is back.", fields: [] };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { title: "Something went wrong", detail: message, retry: null, fields: [] };
}

const CLOSE_REASONS: Record<string, string> = {
  membership_revoked: "You were removed from this workspace.",
  left: "You left this workspace.",
  workspace_deleted: "This workspace was deleted.",
  document_deleted: "This document was deleted.",
  token_expired: "Your session expired; signing in again.",
  logged_out: "You signed out in another window.",
  session_ended: "Your session was ended.",
  sso_required: "A workspace you belong to now requires single sign-on: sign in with it.",
  account_claimed: "Your address was proved through single sign-on: sign in with it.",
  slow_consumer: "The connection could not keep up and was closed; reconnecting.",
  rate_limited: "Too many messages were sent too fast; reconnecting.",
  heartbeat_timeout: "The connection went quiet and was closed; reconnecting.",
  role_changed: "Your role changed; reconnecting with the new rights.",
  document_too_large: "The document reached its size limit: the last change was not saved.",
};

/** Why the server closed a socket, in words. */
export function closeReason(code: number, reason: string): string {
  const known = CLOSE_REASONS[reason];
  if (known) return known;
  switch (code) {
    case 1009: return "A message was too large for the server and the connection was closed.";
    case 1011: return "The server hit an internal error on this connection; reconnecting.";
    case 1001: return "The server is restarting; reconnecting.";
    case 1006: return "The connection was lost; reconnecting.";
    default: return reason ? `The server closed the connection (${reason}).` : `The connection closed (code ${code}).`;
  }
}

/** Close reasons after which reconnecting cannot help: the editor stays closed. */
export const TERMINAL_REASONS = new Set([
  "membership_revoked",
  "left",
  "workspace_deleted",
  "document_deleted",
  "logged_out",
  "session_ended",
  "sso_required",
  "account_claimed",
]);
