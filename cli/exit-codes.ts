// The CLI's exit codes, one meaning each, so that scripts can branch on them.

/** The command did what it was asked; a waited-on job succeeded. */
export const EXIT_OK = 0;
/** The service refused or could not be reached, or a waited-on job failed or was cancelled. */
export const EXIT_FAILED = 1;
/** The command line was wrong: an unknown command or option, or a value refused before or by the API as invalid (400). */
export const EXIT_USAGE = 2;
/**
 * A waited-on release rollout stopped at a wave that waits for an approval nobody has given yet:
 * the rollout goes on once someone runs `stackrail releases approve JOB` (or rejects it). Not a
 * failure, and not an end: a script can approve, then `stackrail releases approve JOB --wait`.
 */
export const EXIT_AWAITING_APPROVAL = 3;

/** Of several waited-on jobs, the outcome a script must see: a failure first, then a wait for approval. */
export function worstExit(codes: readonly number[]): number {
  const rank = (code: number) => (code === EXIT_OK ? 0 : code === EXIT_AWAITING_APPROVAL ? 1 : 2);
  return codes.reduce((worst, code) => (rank(code) > rank(worst) ? code : worst), EXIT_OK);
}
