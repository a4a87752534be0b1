// Keys the API writes and the worker reads to control running jobs.

/** Set by `POST /v1/jobs/:id/cancel` for a running job; the worker polls it and cancels the operation. */
export function cancelKey(prefix: string, jobId: string): string {
  return `${prefix}:cancel:${jobId}`;
}
