// The CLI's exit codes, one meaning each, so that scripts can branch on them.

/** The command did what it was asked; a waited-on job succeeded. */
export const EXIT_OK = 0;
/** The service refused or could not be reached, or a waited-on job failed or was cancelled. */
export const EXIT_FAILED = 1;
/** The command line was wrong: an unknown command or option, or a value refused before or by the API as invalid (400). */
export const EXIT_USAGE = 2;
