// `stackrail webhook send`: a GitHub-style delivery signed with the installation's webhook secret,
// to test an installation end to end (signature, allow-list, routing, a job) without GitHub.
import { createHmac, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { repoRefSchema } from "../core/jobs.ts";
import { UsageError } from "./usage-error.ts";

/** The same rule as the ingress's X-GitHub-Event check. */
const EVENT = /^[a-z_]{1,64}$/;
const DELIVERY = /^[A-Za-z0-9-]{1,100}$/;

export const deliveryAnswerSchema = z.looseObject({
  deliveryId: z.string(),
  jobs: z.array(z.string()),
  ignored: z.string().optional(),
  duplicateOf: z.string().optional(),
});

/** The secret a delivery is signed with: the first of a comma-separated rotation list. */
export function webhookSecret(env: Readonly<Record<string, string | undefined>>): string {
  for (const name of ["STACKRAIL_WEBHOOK_SECRET", "GITHUB_WEBHOOK_SECRET"] as const) {
    const first = env[name]
      ?.split(",")
      .map((s) => s.trim())
      .find((s) => s.length > 0);
    if (first) return first;
  }
  throw new UsageError("STACKRAIL_WEBHOOK_SECRET", "is not set (nor GITHUB_WEBHOOK_SECRET): a delivery cannot be signed without the installation's secret");
}

export function signature(secret: string, body: Buffer): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

export interface DeliveryInput {
  readonly event: string;
  /** A payload file, `-` for stdin; without one only `ping` has a payload (an empty one). */
  readonly file?: string | undefined;
  /** `owner/name`: written into the payload's `repository` (full_name, name, owner.login). */
  readonly repo?: string | undefined;
  readonly deliveryId?: string | undefined;
  readonly readStdin: () => Promise<Buffer>;
}

export interface Delivery {
  readonly event: string;
  readonly deliveryId: string;
  readonly body: Buffer;
}

/** Reads and checks a delivery's parts; the body is sent byte for byte as signed. */
export async function buildDelivery(input: DeliveryInput): Promise<Delivery> {
  if (!EVENT.test(input.event)) throw new UsageError("EVENT", "must be a GitHub event name such as push, pull_request, release or ping");
  const deliveryId = input.deliveryId ?? randomUUID();
  if (!DELIVERY.test(deliveryId)) throw new UsageError("--delivery", "must be 1 to 100 letters, digits or dashes");

  let body: Buffer;
  if (input.file === undefined) {
    if (input.event !== "ping") {
      throw new UsageError(
        "--file",
        `is required for ${input.event}: a JSON payload as GitHub sends it (the repository's Settings → Webhooks → Recent Deliveries shows real ones)`,
      );
    }
    body = Buffer.from(JSON.stringify({ zen: "Stackrail test delivery", hook_id: 0 }));
  } else {
    try {
      body = input.file === "-" ? await input.readStdin() : await readFile(input.file);
    } catch (err) {
      throw new UsageError("--file", `cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
    }
  }
  if (input.repo === undefined) {
    if (input.file !== undefined) parsePayload(body, input.file);
    return { event: input.event, deliveryId, body };
  }

  const [owner = "", name = ""] = input.repo.split("/", 2);
  const repo = repoRefSchema.safeParse({ owner, name });
  if (!repo.success || input.repo.split("/").length !== 2) throw new UsageError("--repo", "must be owner/name");
  const payload = parsePayload(body, input.file ?? "payload");
  const existing = payload.repository !== null && typeof payload.repository === "object" ? (payload.repository as Record<string, unknown>) : {};
  const ownerObject = existing.owner !== null && typeof existing.owner === "object" ? (existing.owner as Record<string, unknown>) : {};
  payload.repository = {
    default_branch: "main",
    ...existing,
    name: repo.data.name,
    full_name: `${repo.data.owner}/${repo.data.name}`,
    owner: { ...ownerObject, login: repo.data.owner },
  };
  return { event: input.event, deliveryId, body: Buffer.from(JSON.stringify(payload)) };
}

function parsePayload(body: Buffer, file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch {
    throw new UsageError("--file", `${file} is not JSON`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new UsageError("--file", `${file} must hold a JSON object`);
  return value as Record<string, unknown>;
}

export function deliveryHeaders(delivery: Delivery, secret: string): Record<string, string> {
  return {
    "content-type": "application/json",
    "x-github-event": delivery.event,
    "x-github-delivery": delivery.deliveryId,
    "x-hub-signature-256": signature(secret, delivery.body),
  };
}
