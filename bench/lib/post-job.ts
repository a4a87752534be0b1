import { randomUUID } from "node:crypto";

/**
 * POSTs a request that queues a job and returns its id, as a control plane would: a 503 (Redis did
 * not take it in time) is retried a few times with the same Idempotency-Key, so a request that was
 * accepted before its answer was lost gets its own job back instead of a 409.
 */
export async function postJob(baseUrl: string, token: string, url: string, body: unknown): Promise<string> {
  const key = randomUUID();
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(`${baseUrl}${url}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "idempotency-key": key },
      body: JSON.stringify(body),
    });
    const answer = (await res.json()) as { jobId?: string };
    if (res.status === 503 && attempt < 5) {
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      continue;
    }
    if (res.status !== 202 || !answer.jobId) throw new Error(`POST ${url}: ${res.status} ${JSON.stringify(answer)}`);
    return answer.jobId;
  }
}
