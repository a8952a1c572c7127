// The `fledge` command's exit codes, one per kind of outcome, so scripts can branch on them
// (docs/cli.md lists them; `fledge --help` ends with them).
export const EXIT = {
  ok: 0,
  /** a deploy that was followed did not succeed (FAILED, CANCELED, OVERDUE...) */
  deployFailed: 1,
  /** bad flags, arguments or input files; a 400 from the API */
  usage: 2,
  /** what was named does not exist (404) */
  notFound: 3,
  /** the state does not allow it now (409: a deploy is pending, the phase does not take that) */
  conflict: 4,
  /** no answer from the server (refused, timed out, DNS), or it cannot serve now (502-504) */
  unreachable: 5,
  /** the token was refused (401) or is too weak (403) */
  denied: 6,
  /** anything else the server or the command could not do (500) */
  failed: 7,
  /** interrupted (Ctrl-C) while following something: it goes on on the server */
  interrupted: 130,
} as const;

export const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    the deploy followed (--watch, deploy watch) did not succeed
  2    usage: bad flags, arguments or input (also a 400 from the server)
  3    not found (404)
  4    conflict: not possible in the current state (409)
  5    server unreachable, or unable to serve now (502-504)
  6    token refused (401) or not allowed (403)
  7    any other error
  130  interrupted (the deploy goes on on the server)`;

/** The exit code for an API answer's status. */
export function exitForStatus(status: number): number {
  if (status === 404) return EXIT.notFound;
  if (status === 409) return EXIT.conflict;
  if (status === 401 || status === 403) return EXIT.denied;
  if (status === 502 || status === 503 || status === 504) return EXIT.unreachable;
  if (status >= 400 && status < 500) return EXIT.usage;
  return EXIT.failed;
}
